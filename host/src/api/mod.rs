//! The owner API (`pdpp-host serve`): axum routes under `/v1/`, owner
//! authentication as an extractor, typed JSON errors.
//!
//! This is the first slice: catalog, connections, credential capture, runs
//! (start, read with timeline, cancel) and records. Every route but
//! `/healthz` needs the owner's bearer token; the token is printed once at
//! first start and only its SHA-256 is kept.

mod auth;
mod interactions;
mod routes;

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
    /// Runs in progress in this process, for cancellation.
    pub active: Mutex<HashMap<String, RunControl>>,
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
    routes::router(state)
}
