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
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only the questions of this run.
    pub run_id: Option<String>,
    /// Only the questions of this connection's runs.
    pub connection_id: Option<String>,
}

/// The kinds of question (`InteractionKind` of the profile).
fn interaction_kind() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(p::InteractionKind::ALL.iter().map(|k| k.as_str())))
        .build()
}

/// A question waiting for the owner.
#[derive(Serialize, ToSchema)]
pub struct InteractionView {
    pub interaction_id: String,
    pub run_id: String,
    pub connection_id: String,
    #[schema(schema_with = interaction_kind)]
    pub kind: p::InteractionKind,
    /// For the owner; text the connector controls.
    pub message: String,
    pub stream: Option<String>,
    /// The JSON schema an answer's `data` must fit, when the connector gave one.
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    #[schema(minimum = 0)]
    pub timeout_seconds: Option<u32>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// `GET` it for a PNG of the run's browser (browser-backed runs).
    pub screenshot_url: Option<String>,
}

fn view(p: &PendingInteraction) -> InteractionView {
    InteractionView {
        interaction_id: p.interaction_id.clone(),
        run_id: p.run_id.clone(),
        connection_id: p.connection_id.clone(),
        kind: p.kind,
        message: p.message.clone(),
        stream: p.stream.clone(),
        schema: p.schema.clone(),
        timeout_seconds: p.timeout_seconds,
        created_at: p.created_at,
        screenshot_url: p
            .has_screenshot
            .then(|| format!("/v1/interactions/{}/screenshot", p.interaction_id)),
    }
}

#[derive(Serialize, ToSchema)]
pub struct InteractionList {
    /// Oldest first.
    pub interactions: Vec<InteractionView>,
}

/// A PNG image (the response body, as bytes).
#[derive(ToSchema)]
#[schema(value_type = String, content_media_type = "image/png")]
pub struct Png(#[allow(dead_code)] Vec<u8>);

#[utoipa::path(get, path = "/v1/interactions/{id}/screenshot", tag = "interactions", operation_id = "getInteractionScreenshot",
    params(("id" = String, Path, description = "The interaction id")),
    responses((status = 200, description = "PNG of the run's browser when the question was asked", content_type = "image/png", body = Png),
        (status = 404, description = "`not_found`: not pending, or no screenshot", body = super::ErrorBody)),
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

#[utoipa::path(get, path = "/v1/interactions", tag = "interactions", operation_id = "listInteractions",
    params(ListQuery),
    responses((status = 200, description = "The questions waiting for the owner, oldest first", body = InteractionList)),
    security(("owner" = [])))]
pub async fn list(
    _: Owner,
    State(s): State<Arc<AppState>>,
    q: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InteractionList>, ApiError> {
    let axum::extract::Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let pending = s
        .dep
        .store
        .pending_interactions(q.run_id.as_deref(), q.connection_id.as_deref())
        .await?;
    Ok(Json(InteractionList {
        interactions: pending.iter().map(view).collect(),
    }))
}

/// How the owner answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnswerStatus {
    /// The answer is `data`.
    Success,
    /// The owner declines; the connector decides what that means.
    Cancelled,
}

impl AnswerStatus {
    fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"status": "success", "data": {"code": "123456"}}))]
pub struct AnswerBody {
    /// An unknown status is `invalid_status`.
    #[schema(value_type = AnswerStatus)]
    status: String,
    /// The answer (for `success`); it must fit the question's `schema`.
    /// Never echoed, logged or kept unsealed.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
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

#[derive(Serialize, ToSchema)]
pub struct Answered {
    pub interaction_id: String,
    #[schema(schema_with = answered_status)]
    pub status: p::InteractionStatus,
    /// The credential fields sealed into the connection's bundle (`save_credentials`).
    pub credentials_saved: Vec<String>,
}

fn answered_status() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["success", "cancelled"]))
        .build()
}

#[utoipa::path(post, path = "/v1/interactions/{id}", tag = "interactions", operation_id = "answerInteraction",
    params(("id" = String, Path, description = "The interaction id")),
    request_body = AnswerBody,
    responses((status = 200, description = "The run takes the answer", body = Answered),
        (status = 400, description = "`invalid_body`, `invalid_status`, `invalid_answer` (does not fit the question's schema; names where, never echoes it), `not_a_credentials_question`, and the credential codes of `save_credentials`; the question stays pending", body = super::ErrorBody),
        (status = 404, description = "`not_found`: no pending question with this id", body = super::ErrorBody),
        (status = 409, description = "`interaction_closed`: answered already, or its run stopped waiting; with `save_credentials`, `plugin_unavailable` and the credential conflicts (`connection_inactive`, `connection_state_conflict`, …)", body = super::ErrorBody),
        (status = 503, description = "`plugins_loading` (with `save_credentials`): plugins are still compiling; retry (`Retry-After`)", body = super::ErrorBody)),
    security(("owner" = [])))]
pub async fn answer(
    _: Owner,
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<AnswerBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Answered>, ApiError> {
    // The body may hold a secret (a password, a code): never echo it.
    let body = super::body(body, "{\"status\": \"success\" | \"cancelled\", \"data\"?: ...}")?;
    let answer = match AnswerStatus::parse(&body.status) {
        Some(AnswerStatus::Success) => InteractionAnswer::success(body.data.clone().unwrap_or(Value::Null)),
        Some(AnswerStatus::Cancelled) => InteractionAnswer::cancelled(),
        None => {
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
    Ok(Json(Answered {
        interaction_id: id,
        status,
        credentials_saved: saved,
    }))
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
