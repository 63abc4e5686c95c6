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

pub async fn list(_: Owner, State(s): State<Arc<AppState>>) -> Json<Value> {
    let map = s.pending.map.lock().expect("pending");
    let mut list: Vec<Value> = map
        .iter()
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
    Json(json!({ "interactions": list }))
}

#[derive(Deserialize)]
pub struct AnswerBody {
    status: String,
    #[serde(default)]
    data: Option<Value>,
}

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
        "success" => InteractionAnswer::success(body.data.unwrap_or(Value::Null)),
        "cancelled" => InteractionAnswer::cancelled(),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_status",
                "an owner answers `success` or `cancelled`",
            ));
        }
    };
    let pending = s.pending.map.lock().expect("pending").remove(&id);
    let Some(pending) = pending else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no pending interaction {id}"),
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
    Ok(Json(json!({ "interaction_id": id, "status": status })))
}
