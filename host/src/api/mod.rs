//! The owner API (`pdpp-host serve`): axum routes under `/v1/`, owner
//! authentication as an extractor, typed JSON errors, an OpenAPI document.
//!
//! Every route but `/healthz` and `/openapi.json` needs the owner's bearer
//! token; the token is printed once at first start and only its SHA-256 is
//! kept. See docs/api.md and docs/setup.md.

mod auth;
mod bootstrap;
mod catalog;
mod connections;
mod interactions;
mod openapi;
mod records;
mod runs;

pub use auth::{Owner, OwnerToken};

use crate::credentials::{CaptureClass, CaptureError, CredentialService};
use crate::deploy::Deployment;
use crate::plugins::{Catalog, LoadedPlugin};
use crate::runtime::{RunRefused, Runs};
use crate::setup::SetupError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// What every handler shares.
pub struct AppState {
    pub dep: Deployment,
    pub catalog: Arc<Catalog>,
    pub token: OwnerToken,
    /// The deployment's run limits (a manifest can only lower them).
    pub limits: crate::sandbox::RunLimits,
    /// The deployment's egress settings (origin rewrites, address policy).
    pub egress: Arc<crate::egress::EgressConfig>,
    /// The runs this process executes.
    pub runs: Arc<Runs>,
    /// The browser service of browser-backed runs.
    pub browser: Option<crate::browser::BrowserService>,
    /// Becomes `true` when the host starts shutting down: long-lived
    /// responses (event streams) end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// The credentials service with this deployment's egress and limits.
    pub fn credentials(&self) -> CredentialService<'_> {
        CredentialService {
            dep: &self.dep,
            sandbox: self.catalog.sandbox(),
            egress: self.egress.clone(),
            limits: self.limits.clone(),
        }
    }

    /// The loaded plugin of a connector, or why there is none (a
    /// manifest-only listing that takes no connections, or no plugin).
    pub fn plugin(&self, connector_id: &str) -> Result<Arc<LoadedPlugin>, ApiError> {
        let snap = self.catalog.snapshot();
        if let Some(p) = snap.get(connector_id) {
            return Ok(p);
        }
        if let Some(e) = snap.listings.get(connector_id).and_then(|m| crate::setup::closed(m)) {
            return Err(e.into());
        }
        if !snap.pending.is_empty() {
            return Err(ApiError::plugins_loading());
        }
        Err(ApiError::plugin_unavailable(connector_id))
    }
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
    /// Plugins are still compiling (the host started a moment ago); the
    /// client retries.
    pub fn plugins_loading() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "plugins_loading",
            "the host is still loading its plugins; try again in a moment (GET /healthz says when it is ready)",
        )
    }
    /// The connector has no plugin loaded (its file is gone or broken).
    pub fn plugin_unavailable(connector_id: &str) -> Self {
        ApiError::conflict(
            "plugin_unavailable",
            format!("connector {connector_id} has no plugin loaded"),
        )
    }
}

impl From<CaptureError> for ApiError {
    fn from(e: CaptureError) -> Self {
        let status = match e.class() {
            CaptureClass::Invalid | CaptureClass::Refused => StatusCode::BAD_REQUEST,
            CaptureClass::Conflict => StatusCode::CONFLICT,
            CaptureClass::Unavailable => StatusCode::BAD_GATEWAY,
            CaptureClass::NotFound => StatusCode::NOT_FOUND,
            CaptureClass::Internal => return ApiError::internal(&e),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<SetupError> for ApiError {
    fn from(e: SetupError) -> Self {
        let status = match &e {
            // The request is well formed, but this connector does not take it.
            SetupError::Closed { .. } | SetupError::NotSupported { .. } | SetupError::BrowserSessionMode { .. } => {
                StatusCode::CONFLICT
            }
            SetupError::InvalidSettings(_) | SetupError::SecretInSettings(_) | SetupError::InvalidDisplayName => {
                StatusCode::BAD_REQUEST
            }
            SetupError::Store(_) => return ApiError::internal(&e),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<RunRefused> for ApiError {
    fn from(e: RunRefused) -> Self {
        let status = match &e {
            RunRefused::UnknownConnection(_) => StatusCode::NOT_FOUND,
            RunRefused::Store(_) => return ApiError::internal(&e),
            _ => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.reason(), e.to_string())
    }
}

/// The error body every failing route returns. Each response of the
/// OpenAPI document names the `code` values it can carry.
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"code": "not_found", "message": "connection conn_0123 does not exist"}))]
pub struct ErrorBody {
    /// A stable, machine-readable code (`snake_case`).
    #[schema(pattern = "^[a-z][a-z0-9_]*$")]
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
        let mut response = (self.status, Json(json!({ "code": self.code, "message": self.message }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl ApiError {
    /// A failure of the host itself: the details go to the log, not the client.
    fn internal(e: &dyn std::fmt::Display) -> Self {
        tracing::error!("store error: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            "the store could not complete the request",
        )
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        // Store errors carry no secrets, but their details are for the log, not the client.
        ApiError::internal(&e)
    }
}

pub fn router(state: Arc<AppState>) -> axum::Router {
    use axum::routing::{get, post, put};
    axum::Router::new()
        .route("/healthz", get(health))
        .route("/openapi.json", get(openapi::document))
        .route("/v1/connectors", get(catalog::list))
        .route("/v1/connectors/{id}", get(catalog::one))
        .route("/v1/connections", get(connections::list).post(connections::create))
        .route(
            "/v1/connections/{id}",
            get(connections::one)
                .patch(connections::update)
                .delete(connections::delete),
        )
        .route("/v1/connections/{id}/setup-status", get(connections::setup_status))
        .route("/v1/connections/{id}/credential", put(connections::put_credential))
        .route("/v1/connections/{id}/revoke", post(connections::revoke))
        .route("/v1/connections/{id}/reconnect", post(connections::reconnect))
        .route("/v1/connections/{id}/bootstrap", post(bootstrap::start))
        .route("/v1/connections/{id}/runs", post(runs::start).get(runs::of_connection))
        .route("/v1/runs/{id}", get(runs::one))
        .route("/v1/runs/{id}/events", get(runs::events))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/records", get(records::list))
        .route("/v1/audit", get(records::audit))
        .route("/v1/interactions", get(interactions::list))
        .route("/v1/interactions/{id}", post(interactions::answer))
        .route("/v1/interactions/{id}/screenshot", get(interactions::screenshot))
        .fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            ApiError::not_found("route", &format!("{method} {}", uri.path()))
        })
        .layer(axum::middleware::from_fn(typed_errors))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// `GET /healthz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`: the host answers.
    #[schema(value_type = String, pattern = "^ok$")]
    pub status: &'static str,
    pub plugins: PluginsHealth,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PluginsHealth {
    /// Every plugin file has loaded (none is still compiling).
    pub ready: bool,
    #[schema(minimum = 0)]
    pub loaded: usize,
    #[schema(minimum = 0)]
    pub loading: usize,
}

/// Liveness, and whether every plugin file has loaded (a host listens before
/// its plugins are compiled). No authentication.
#[utoipa::path(get, path = "/healthz", tag = "host", operation_id = "getHealth",
    responses((status = 200, body = Health,
        example = json!({"status": "ok", "plugins": {"ready": true, "loaded": 1, "loading": 0}}))))]
async fn health(axum::extract::State(s): axum::extract::State<Arc<AppState>>) -> Json<Health> {
    let snap = s.catalog.snapshot();
    Json(Health {
        status: "ok",
        plugins: PluginsHealth {
            ready: snap.pending.is_empty(),
            loaded: snap.plugins.len(),
            loading: snap.pending.len(),
        },
    })
}

/// Parse a JSON body, or a typed 400 that never echoes the body (it may hold a secret).
pub(crate) fn body<T>(
    b: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    expected: &str,
) -> Result<T, ApiError> {
    use axum::extract::rejection::JsonRejection;
    b.map(|Json(v)| v).map_err(|e| match e {
        JsonRejection::BytesRejection(_) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => body_too_large(),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON (content-type: application/json)",
        ),
        _ => ApiError::bad_request("invalid_body", format!("expected {expected}")),
    })
}

/// The largest request body the API reads. Nothing it takes comes near it.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// The longest request target (path and query) the API reads.
pub const MAX_URI_BYTES: usize = 8 << 10;
/// The most header bytes a request may carry.
pub const MAX_HEADER_BYTES: usize = 32 << 10;

fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("a request body holds at most {MAX_BODY_BYTES} bytes"),
    )
}

/// Every error is `{code, message}`: requests refused before a handler runs
/// (an oversized target or header block) get one here, and any error
/// response a handler did not shape (axum's own rejections: a path that is
/// not UTF-8, a wrong method) is rewritten into one.
async fn typed_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("a request target holds at most {MAX_URI_BYTES} bytes"),
        )
        .into_response();
    }
    let headers: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if headers > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("request headers hold at most {MAX_HEADER_BYTES} bytes"),
        )
        .into_response();
    }
    // A body announced too large is refused before a byte of it is read.
    let announced = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return body_too_large().into_response();
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", format!("no route {method} {path}")),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", format!("{path} does not take {method}")),
        StatusCode::PAYLOAD_TOO_LARGE => return body_too_large().into_response(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send the body as JSON".into()),
        s if s.is_server_error() => ("internal_error", "the host could not complete the request".into()),
        _ => (
            "invalid_request",
            "the request is not valid (path, query or body)".into(),
        ),
    };
    ApiError::new(status, code, message).into_response()
}

/// The connection, or a typed 404.
pub(crate) async fn load_connection(s: &AppState, id: &str) -> Result<crate::store::Connection, ApiError> {
    s.dep
        .store
        .connection(id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection", id))
}
