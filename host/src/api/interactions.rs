//! INTERACTIONs answered over HTTP: a run parks on its question until the
//! owner answers it (or its timeout passes, or the run ends). Questions and
//! answers go through the store, so any host sharing it lists every
//! question and delivers the answer to whichever host runs the run (see
//! `runtime::Runs`).

use super::{ApiError, AppState, Owner};
use crate::protocol::{self as p, InteractionAnswer};
use crate::runtime::{ANSWER_PURPOSE, SCREENSHOT_PURPOSE};
use crate::store::PendingInteraction;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ListQuery {
    pub run_id: Option<String>,
    pub connection_id: Option<String>,
}

fn view(p: &PendingInteraction) -> Value {
    json!({
        "interaction_id": p.interaction_id,
        "run_id": p.run_id,
        "connection_id": p.connection_id,
        "kind": p.kind,
        "message": p.message,
        "stream": p.stream,
        "schema": p.schema,
        "timeout_seconds": p.timeout_seconds,
        "created_at": p.created_at,
        "screenshot_url": p.has_screenshot.then(|| format!("/v1/interactions/{}/screenshot", p.interaction_id)),
    })
}

#[utoipa::path(get, path = "/v1/interactions/{id}/screenshot", tag = "interactions",
    responses((status = 200, description = "PNG of the run's browser when the question was asked", content_type = "image/png"),
        (status = 404, body = super::ErrorBody)),
    security(("owner" = [])))]
pub async fn screenshot(
    _: Owner,
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let gone = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("interaction {id} is not pending or has no screenshot"),
        )
    };
    let Some((run_id, sealed)) = s.dep.store.interaction_screenshot(&id).await? else {
        return Err(gone());
    };
    let blob = crate::vault::SealedBlob::from_bytes(&sealed).ok_or_else(gone)?;
    let png = s
        .dep
        .key
        .open_blob(&run_id, SCREENSHOT_PURPOSE, &blob)
        .map_err(|_| gone())?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "image/png"),
            // The page may show personal data: never cached anywhere.
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        png.to_vec(),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/interactions", tag = "interactions",
    params(("run_id" = Option<String>, Query), ("connection_id" = Option<String>, Query)),
    responses((status = 200, description = "`{interactions: [{interaction_id, run_id, connection_id, kind, message, stream, schema, timeout_seconds, created_at, screenshot_url}]}`, oldest first")),
    security(("owner" = [])))]
pub async fn list(
    _: Owner,
    State(s): State<Arc<AppState>>,
    q: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let axum::extract::Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let pending = s
        .dep
        .store
        .pending_interactions(q.run_id.as_deref(), q.connection_id.as_deref())
        .await?;
    let list: Vec<Value> = pending.iter().map(view).collect();
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

/// Check an answer against the schema the connector gave its question.
fn check_against_schema(schema: Option<&Value>, data: &Value) -> Result<(), ApiError> {
    let Some(schema) = schema else { return Ok(()) };
    let Ok(validator) = jsonschema::validator_for(schema) else {
        return Ok(()); // a schema the host cannot read constrains nothing
    };
    match validator.iter_errors(data).next() {
        None => Ok(()),
        // The pointer names where; the value itself (maybe a secret) is never echoed.
        Some(e) => Err(ApiError::bad_request(
            "invalid_answer",
            format!(
                "the answer does not fit the question's schema at {:?}",
                e.instance_path().as_str()
            ),
        )),
    }
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
    let Some(question) = s.dep.store.pending_interaction(&id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no pending interaction {id}"),
        ));
    };
    if let Some(data) = answer.data.as_ref() {
        check_against_schema(question.schema.as_ref(), data)?;
    }
    let saved = if body.save_credentials && body.status == "success" {
        if question.kind != p::InteractionKind::Credentials {
            return Err(ApiError::bad_request(
                "not_a_credentials_question",
                "only a `credentials` answer can be saved",
            ));
        }
        save_answer(&s, &question.connection_id, &question.run_id, body.data.as_ref()).await?
    } else {
        Vec::new()
    };
    let status = answer.status;
    let sealed = s
        .dep
        .key
        .seal_blob(
            &id,
            ANSWER_PURPOSE,
            &serde_json::to_vec(&answer).expect("an answer serializes"),
        )
        .to_bytes();
    if !s.dep.store.submit_answer(&id, status, &sealed).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "interaction_closed",
            "the question was answered already, or its run stopped waiting",
        ));
    }
    s.runs.answer_arrived(&question.run_id);
    // The answer itself is kept only sealed until the run takes it; the
    // trail keeps that it was given.
    s.dep
        .store
        .audit(
            crate::store::Audit::ok("interaction.answer", &question.connection_id)
                .run(&question.run_id)
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
