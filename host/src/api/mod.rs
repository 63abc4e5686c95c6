//! The owner API (`pdpp-host serve`): axum routes under `/v1/`, owner
//! authentication as an extractor, typed JSON errors, an OpenAPI document.
//!
//! Every route but `/healthz` and `/openapi.json` needs the owner's bearer
//! token; the token is printed once at first start and only its SHA-256 is
//! kept. See docs/api.md and docs/setup.md.

mod auth;
mod catalog;
mod connections;
mod interactions;
mod openapi;
mod records;
mod runs;
pub mod setup;

pub use auth::{Owner, OwnerToken};
pub use interactions::PendingInteractions;

use crate::deploy::Deployment;
use crate::plugins::Catalog;
use crate::sandbox::RunControl;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What every handler shares.
pub struct AppState {
    pub dep: Deployment,
    pub catalog: Arc<Catalog>,
    pub token: OwnerToken,
    /// The deployment's run limits (a manifest can only lower them).
    pub limits: crate::sandbox::RunLimits,
    /// The deployment's egress settings (origin rewrites, address policy).
    pub egress: Arc<crate::egress::EgressConfig>,
    /// Runs in progress in this process: run id → (connection id, control).
    pub active: Mutex<HashMap<String, (String, RunControl)>>,
    /// INTERACTIONs waiting for the owner.
    pub pending: interactions::PendingInteractions,
}

/// A typed API error: `{code, message}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn not_found(what: &str, id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} {id} does not exist"),
        )
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }
}

/// The error body every failing route returns.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code.
    pub code: String,
    /// For people; never holds a secret.
    pub message: String,
}

impl From<crate::store::LifecycleError> for ApiError {
    fn from(e: crate::store::LifecycleError) -> Self {
        use crate::store::LifecycleError as L;
        match e {
            L::NotFound(id) => ApiError::not_found("connection", &id),
            L::WrongState { .. } => ApiError::conflict("connection_state_conflict", e.to_string()),
            L::RunActive(_) => ApiError::conflict("connection_run_active", e.to_string()),
            L::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "code": self.code, "message": self.message }))).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        // Store errors carry no secrets, but their details are for the log, not the client.
        eprintln!("pdpp-host: store error: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            "the store could not complete the request",
        )
    }
}

pub fn router(state: Arc<AppState>) -> axum::Router {
    use axum::routing::{get, post, put};
    axum::Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/openapi.json", get(openapi::document))
        .route("/v1/connectors", get(catalog::list))
        .route("/v1/connectors/{id}", get(catalog::one))
        .route("/v1/connections", get(connections::list).post(connections::create))
        .route(
            "/v1/connections/{id}",
            get(connections::one)
                .patch(connections::rename)
                .delete(connections::delete),
        )
        .route("/v1/connections/{id}/setup-status", get(connections::setup_status))
        .route("/v1/connections/{id}/credential", put(connections::put_credential))
        .route("/v1/connections/{id}/revoke", post(connections::revoke))
        .route("/v1/connections/{id}/reconnect", post(connections::reconnect))
        .route("/v1/connections/{id}/runs", post(runs::start).get(runs::of_connection))
        .route("/v1/runs/{id}", get(runs::one))
        .route("/v1/runs/{id}/events", get(runs::events))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/records", get(records::list))
        .route("/v1/audit", get(records::audit))
        .route("/v1/interactions", get(interactions::list))
        .route("/v1/interactions/{id}", post(interactions::answer))
        .with_state(state)
}

/// Parse a JSON body, or a typed 400 that never echoes the body (it may hold a secret).
pub(crate) fn body<T>(
    b: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    expected: &str,
) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|_| ApiError::bad_request("invalid_body", format!("expected {expected}")))
}

/// The connection, or a typed 404.
pub(crate) async fn load_connection(s: &AppState, id: &str) -> Result<crate::store::Connection, ApiError> {
    s.dep
        .store
        .connection(id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection", id))
}
