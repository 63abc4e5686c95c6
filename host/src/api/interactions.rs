//! INTERACTIONs answered over HTTP: a run parks on a request until the
//! owner answers it (or its timeout passes, or the run ends).

use super::{ApiError, AppState, Owner};
use crate::protocol::{self as p, InteractionAnswer};
use crate::runtime::InteractionHandler;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::oneshot;

/// One question waiting for the owner.
pub struct Pending {
    pub run_id: String,
    pub connection_id: String,
    pub request: p::Interaction,
    answer: oneshot::Sender<InteractionAnswer>,
}

/// Questions waiting in this process, by interaction id (`<run id>:<request id>`).
#[derive(Default)]
pub struct PendingInteractions {
    map: Mutex<HashMap<String, Pending>>,
}

/// The interaction handler of one run started through the API.
pub struct HttpInteractions {
    pub state: Weak<AppState>,
    pub run_id: String,
    pub connection_id: String,
}

#[async_trait::async_trait]
impl InteractionHandler for HttpInteractions {
    async fn answer(&self, request: &p::Interaction) -> InteractionAnswer {
        let Some(state) = self.state.upgrade() else {
            return InteractionAnswer::cancelled();
        };
        let id = format!("{}:{}", self.run_id, request.request_id);
        let (tx, rx) = oneshot::channel();
        state.pending.map.lock().expect("pending").insert(
            id.clone(),
            Pending {
                run_id: self.run_id.clone(),
                connection_id: self.connection_id.clone(),
                request: request.clone(),
                answer: tx,
            },
        );
        drop(state);
        // However the wait ends (answer, timeout, cancelled run), the question is withdrawn.
        let _withdraw = Withdraw {
            state: self.state.clone(),
            id,
        };
        // Dropped without an answer (the host is stopping): cancelled.
        rx.await.unwrap_or_else(|_| InteractionAnswer::cancelled())
    }
}

struct Withdraw {
    state: Weak<AppState>,
    id: String,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if let Some(state) = self.state.upgrade() {
            state.pending.map.lock().expect("pending").remove(&self.id);
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ListQuery {
    pub run_id: Option<String>,
    pub connection_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/interactions", tag = "interactions",
    params(("run_id" = Option<String>, Query), ("connection_id" = Option<String>, Query)),
    responses((status = 200, description = "`{interactions: [{interaction_id, run_id, connection_id, kind, message, stream, schema, timeout_seconds}]}`")),
    security(("owner" = [])))]
pub async fn list(
    _: Owner,
    State(s): State<Arc<AppState>>,
    q: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let axum::extract::Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let map = s.pending.map.lock().expect("pending");
    let mut list: Vec<Value> = map
        .iter()
        .filter(|(_, p)| q.run_id.as_ref().is_none_or(|r| *r == p.run_id))
        .filter(|(_, p)| q.connection_id.as_ref().is_none_or(|c| *c == p.connection_id))
        .map(|(id, p)| {
            json!({
                "interaction_id": id,
                "run_id": p.run_id,
                "connection_id": p.connection_id,
                "kind": p.request.kind,
                "message": p.request.message,
                "stream": p.request.stream,
                "schema": p.request.schema,
                "timeout_seconds": p.request.timeout_seconds,
            })
        })
        .collect();
    list.sort_by(|a, b| a["interaction_id"].as_str().cmp(&b["interaction_id"].as_str()));
    Ok(Json(json!({ "interactions": list })))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AnswerBody {
    /// `success` or `cancelled`.
    status: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    data: Option<Value>,
    /// For a `credentials` question: also seal the answered fields that the
    /// manifest declares into this connection's credential bundle.
    #[serde(default)]
    save_credentials: bool,
}

#[utoipa::path(post, path = "/v1/interactions/{id}", tag = "interactions", request_body = AnswerBody,
    responses((status = 200, description = "`{interaction_id, status, credentials_saved}`"),
        (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)),
    security(("owner" = [])))]
pub async fn answer(
    _: Owner,
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<AnswerBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    // The body may hold a secret (a password, a code): never echo it.
    let Json(body) =
        body.map_err(|_| ApiError::bad_request("invalid_body", "expected {\"status\": ..., \"data\": ...}"))?;
    let answer = match body.status.as_str() {
        "success" => InteractionAnswer::success(body.data.clone().unwrap_or(Value::Null)),
        "cancelled" => InteractionAnswer::cancelled(),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_status",
                "an owner answers `success` or `cancelled`",
            ));
        }
    };
    // Validate first, then consume: a refused answer leaves the question pending.
    let asked = s
        .pending
        .map
        .lock()
        .expect("pending")
        .get(&id)
        .map(|p| (p.connection_id.clone(), p.run_id.clone(), p.request.kind));
    let Some((connection_id, run_id, kind)) = asked else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no pending interaction {id}"),
        ));
    };
    let saved = if body.save_credentials && body.status == "success" {
        if kind != p::InteractionKind::Credentials {
            return Err(ApiError::bad_request(
                "not_a_credentials_question",
                "only a `credentials` answer can be saved",
            ));
        }
        save_answer(&s, &connection_id, &run_id, body.data.as_ref()).await?
    } else {
        Vec::new()
    };
    let Some(pending) = s.pending.map.lock().expect("pending").remove(&id) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "interaction_closed",
            "the run stopped waiting for this answer",
        ));
    };
    let status = answer.status;
    if pending.answer.send(answer).is_err() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "interaction_closed",
            "the run stopped waiting for this answer",
        ));
    }
    // The answer itself is never stored; only that it was given.
    s.dep
        .store
        .audit(
            crate::store::Audit::ok("interaction.answer", &connection_id)
                .run(&run_id)
                .detail(json!({ "status": status, "credentials_saved": saved })),
        )
        .await?;
    Ok(Json(
        json!({ "interaction_id": id, "status": status, "credentials_saved": saved }),
    ))
}

/// Keep the declared fields of a `credentials` answer in the connection's
/// sealed bundle, through the credentials service; the names saved.
async fn save_answer(
    s: &AppState,
    connection_id: &str,
    run_id: &str,
    data: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    let conn = super::load_connection(s, connection_id).await?;
    let plugin = s.plugin(&conn.connector_id)?;
    Ok(s.credentials()
        .merge_answer(&conn, &plugin.manifest, data, run_id)
        .await?)
}
