//! Runs: start (manual, or the setup run of a draft; incremental, or a full
//! refresh on request), list, read with the timeline, cancel, and a live
//! Server-Sent Events stream of the timeline.

use super::{ApiError, AppState, ErrorBody, Owner, load_connection};
use crate::plugins::LoadedPlugin;
use crate::protocol::CollectionMode;
use crate::runtime::{CancelRequest, ConnectionRun, new_run_id};
use crate::setup::RunSummary;
use crate::store::{Audit, ConnectionStatus, RunEvent, RunStatus, TERMINAL_EVENTS, Trigger};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

type St = State<Arc<AppState>>;

/// Start an incremental run of a connection in the background; its id.
/// When this returns, the run is on record (running, or failed as refused).
pub(crate) async fn spawn(
    s: &Arc<AppState>,
    id: &str,
    plugin: Arc<LoadedPlugin>,
    trigger: Trigger,
) -> Result<String, ApiError> {
    spawn_in(s, id, plugin, trigger, CollectionMode::Incremental).await
}

/// [`spawn`] in a given collection mode.
async fn spawn_in(
    s: &Arc<AppState>,
    id: &str,
    plugin: Arc<LoadedPlugin>,
    trigger: Trigger,
    mode: CollectionMode,
) -> Result<String, ApiError> {
    let run_id = new_run_id();
    let mut opts = ConnectionRun::new(trigger);
    opts.run_id = Some(run_id.clone());
    opts.mode = mode;
    opts.egress = s.egress.clone();
    opts.limits = s.limits.clone();
    opts.interaction = Some(s.runs.interactions(&run_id));
    opts.browser = s.browser.clone();
    match s.runs.start(plugin, id, opts).await {
        Ok(run_id) => Ok(run_id),
        // On record as a failed run: the owner reads why from it.
        Err(refused) if refused.is_recorded() => {
            tracing::info!(run_id = %run_id, reason = refused.reason(), "run refused before start: {refused}");
            Ok(run_id)
        }
        Err(refused) => Err(refused.into()),
    }
}

/// How a run collects (the profile's `collection_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// From each stream's committed cursor: what changed since the last run.
    #[default]
    Incremental,
    /// Everything, ignoring the cursors; when it succeeds, the records of
    /// each stream it covered completely that it no longer returned are
    /// deleted (deletions upstream reach the owner's copy).
    FullRefresh,
}

impl From<RunMode> for CollectionMode {
    fn from(m: RunMode) -> Self {
        match m {
            RunMode::Incremental => CollectionMode::Incremental,
            RunMode::FullRefresh => CollectionMode::FullRefresh,
        }
    }
}

/// The optional body of `POST /v1/connections/{id}/runs`; no body is
/// `{"mode": "incremental"}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    #[serde(default)]
    pub mode: RunMode,
}

#[derive(Serialize, ToSchema)]
pub struct Started {
    pub run_id: String,
    /// `manual`, or `setup` for the first sync of a draft.
    pub trigger: Trigger,
    /// The mode the run collects in.
    pub collection_mode: RunMode,
}

/// The run-start body: none (or empty) is the default; anything else must be
/// a JSON [`StartRun`].
fn start_body(headers: &axum::http::HeaderMap, body: &[u8]) -> Result<StartRun, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(StartRun::default());
    }
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON (content-type: application/json)",
        ));
    }
    let invalid = || {
        ApiError::bad_request(
            "invalid_body",
            "expected {\"mode\": \"incremental\" | \"full_refresh\"} or no body",
        )
    };
    // An object, not just anything serde could read a struct from (an array).
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v @ serde_json::Value::Object(_)) => serde_json::from_value(v).map_err(|_| invalid()),
        // The document's body is optional and nullable: `null` is no body.
        Ok(serde_json::Value::Null) => Ok(StartRun::default()),
        _ => Err(invalid()),
    }
}

#[utoipa::path(post, path = "/v1/connections/{id}/runs", tag = "runs", operation_id = "startRun",
    params(("id" = String, Path, description = "The connection id")),
    request_body(content = Option<StartRun>, description = "Optional. `{\"mode\": \"full_refresh\"}` reads everything and, when the run succeeds, deletes the records it no longer returned; no body is an incremental run.",
        example = json!({"mode": "full_refresh"})),
    responses((status = 202, description = "The run is on record and runs in the background (a run refused at start is on record as failed, with its reason)", body = Started,
            example = json!({"run_id": "run_0123", "trigger": "manual", "collection_mode": "incremental"})),
        (status = 400, description = "`invalid_body`: not `{\"mode\": …}`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such connection", body = ErrorBody),
        (status = 409, description = "`connection_not_runnable` (revoked or paused), `run_already_active`, `plugin_unavailable`, `browser_unavailable`, …", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body not sent as `application/json`", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn start(
    _: Owner,
    State(s): St,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    let StartRun { mode } = start_body(&headers, &body)?;
    let conn = load_connection(&s, &id).await?;
    // A draft runs its setup (first-sync) run; a revoked connection never runs.
    let trigger = match conn.status {
        ConnectionStatus::Active => Trigger::Manual,
        ConnectionStatus::Draft => Trigger::Setup,
        other => {
            return Err(ApiError::conflict(
                "connection_not_runnable",
                format!("connection {id} is {}; it cannot run", other.as_str()),
            ));
        }
    };
    let plugin = s
        .catalog
        .get(&conn.connector_id)
        .ok_or_else(|| ApiError::plugin_unavailable(&conn.connector_id))?;
    let collection_mode = CollectionMode::from(mode);
    let run_id = spawn_in(&s, &id, plugin, trigger, collection_mode).await?;
    s.dep
        .store
        .audit(
            Audit::ok("run.start", &id)
                .run(&run_id)
                .detail(json!({ "trigger": trigger.as_str(), "collection_mode": collection_mode.as_str() })),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            run_id,
            trigger,
            collection_mode: mode,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunSummary>,
}

#[utoipa::path(get, path = "/v1/connections/{id}/runs", tag = "runs", operation_id = "listRuns",
    params(("id" = String, Path, description = "The connection id")),
    responses((status = 200, body = RunList), (status = 404, description = "`not_found`: no such connection", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn of_connection(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<RunList>, ApiError> {
    load_connection(&s, &id).await?;
    let runs = s.dep.store.runs_of(&id).await?;
    Ok(Json(RunList {
        runs: runs.iter().map(RunSummary::of).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct RunDetail {
    pub run: crate::store::RunRow,
    /// The timeline, oldest first.
    pub events: Vec<RunEvent>,
}

#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", operation_id = "getRun",
    params(("id" = String, Path, description = "The run id")),
    responses((status = 200, description = "The run and its timeline", body = RunDetail),
        (status = 404, description = "`not_found`: no such run", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn one(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<RunDetail>, ApiError> {
    let Some(run) = s.dep.store.run(&id).await? else {
        return Err(ApiError::not_found("run", &id));
    };
    let events = s.dep.store.events(&id).await?;
    Ok(Json(RunDetail { run, events }))
}

/// What a cancel did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelResult {
    /// The run stops at its next step (on whichever host runs it).
    CancelRequested,
    /// The run had ended already.
    AlreadyTerminal,
}

#[derive(Serialize, ToSchema)]
pub struct Cancelled {
    pub run_id: String,
    pub result: CancelResult,
}

fn cancelled(run_id: String, result: CancelResult) -> Json<Cancelled> {
    Json(Cancelled { run_id, result })
}

#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs", operation_id = "cancelRun",
    params(("id" = String, Path, description = "The run id")),
    responses((status = 200, body = Cancelled, example = json!({"run_id": "run_0123", "result": "cancel_requested"})),
        (status = 404, description = "`not_found`: no such run", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn cancel(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<Cancelled>, ApiError> {
    match s.runs.cancel(&id) {
        CancelRequest::Requested { connection_id } => {
            s.dep
                .store
                .audit(Audit::ok("run.cancel", &connection_id).run(&id))
                .await?;
            Ok(cancelled(id, CancelResult::CancelRequested))
        }
        // Executed by another host sharing the store: the request waits on
        // the run's row until that host sees it.
        CancelRequest::NotHere => {
            let Some(run) = s.dep.store.run(&id).await? else {
                return Err(ApiError::not_found("run", &id));
            };
            if s.dep.store.request_cancel(&id).await? {
                s.dep
                    .store
                    .audit(Audit::ok("run.cancel", &run.connection_id).run(&id))
                    .await?;
                Ok(cancelled(id, CancelResult::CancelRequested))
            } else {
                Ok(cancelled(id, CancelResult::AlreadyTerminal))
            }
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this event sequence number (also read from `Last-Event-ID`).
    #[param(schema_with = super::openapi::int64)]
    pub after: Option<i64>,
}

#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs", operation_id = "streamRunEvents",
    params(("id" = String, Path, description = "The run id"), EventsQuery),
    responses((status = 200, description = "Server-Sent Events: one event per timeline entry (`event:` its kind, `id:` its sequence number, `data:` its JSON), live until the run's terminal event, which ends the stream. A host shutting down ends it early; reconnect with `Last-Event-ID`.",
            content_type = "text/event-stream", body = TimelineEvent),
        (status = 404, description = "`not_found`: no such run", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn events(
    _: Owner,
    State(s): St,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl futures::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if s.dep.store.run(&id).await?.is_none() {
        return Err(ApiError::not_found("run", &id));
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let after = q.after.or(resume).unwrap_or(0);
    // The timeline is in the store, so any host sharing the database can
    // serve the stream; poll it until the run's terminal event is sent.
    let stream = futures::stream::unfold((s, id, after, false), |(s, id, after, done)| async move {
        if done {
            return None;
        }
        loop {
            let batch = s.dep.store.events_after(&id, after).await.ok()?;
            if let Some((last, _)) = batch.last() {
                let done = batch.iter().any(|(_, e)| TERMINAL_EVENTS.contains(&e.kind.as_str()));
                let next = (s, id, *last, done);
                return Some((futures::stream::iter(to_events(&batch)), next));
            }
            // The terminal event is written before the run is marked
            // finished, so a finished run with nothing new is the end.
            let running = s.dep.store.run(&id).await.ok()??.status == RunStatus::Running;
            if !running {
                return None;
            }
            // A host that is shutting down closes the stream (a client
            // following a parked run must not hold the shutdown up).
            let mut stopping = s.stopping.clone();
            if *stopping.borrow() {
                return None;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stopping.changed() => return None,
            }
        }
    });
    use futures::StreamExt;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::default()))
}

/// One Server-Sent Event of `GET /v1/runs/{id}/events`: a timeline entry.
#[derive(ToSchema)]
pub struct TimelineEvent {
    /// The entry's kind (`run.started`, …, a terminal `run.succeeded`,
    /// `run.failed`, `run.cancelled`).
    pub event: String,
    /// The entry's sequence number (resume with `after` or `Last-Event-ID`).
    #[schema(pattern = "^[0-9]+$")]
    pub id: String,
    /// The entry's `data`, as JSON text.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

impl TimelineEvent {
    fn of(seq: i64, e: &RunEvent) -> Self {
        TimelineEvent {
            event: e.kind.clone(),
            id: seq.to_string(),
            data: e.data.to_string(),
        }
    }
}

impl From<TimelineEvent> for Event {
    fn from(t: TimelineEvent) -> Self {
        Event::default().event(t.event).id(t.id).data(t.data)
    }
}

fn to_events(batch: &[(i64, RunEvent)]) -> Vec<Result<Event, Infallible>> {
    batch
        .iter()
        .map(|(seq, e)| Ok(TimelineEvent::of(*seq, e).into()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        h
    }

    #[test]
    fn the_run_start_body_is_nothing_or_a_json_object_naming_the_mode() {
        let none = axum::http::HeaderMap::new();
        assert_eq!(start_body(&none, b"").unwrap().mode, RunMode::Incremental);
        assert_eq!(start_body(&json_headers(), b" \n").unwrap().mode, RunMode::Incremental);
        assert_eq!(start_body(&json_headers(), b"{}").unwrap().mode, RunMode::Incremental);
        assert_eq!(start_body(&json_headers(), b"null").unwrap().mode, RunMode::Incremental);
        let full = start_body(&json_headers(), br#"{"mode":"full_refresh"}"#).unwrap();
        assert_eq!(CollectionMode::from(full.mode), CollectionMode::FullRefresh);
        let refused = |headers: &axum::http::HeaderMap, body: &[u8]| start_body(headers, body).unwrap_err().code;
        assert_eq!(refused(&none, br#"{"mode":"full_refresh"}"#), "unsupported_media_type");
        assert_eq!(refused(&json_headers(), br#"["full_refresh"]"#), "invalid_body");
        assert_eq!(refused(&json_headers(), br#"{"mode":"later"}"#), "invalid_body");
        assert_eq!(
            refused(&json_headers(), br#"{"mode":"full_refresh","x":1}"#),
            "invalid_body"
        );
        assert_eq!(refused(&json_headers(), b"full_refresh"), "invalid_body");
    }
}
