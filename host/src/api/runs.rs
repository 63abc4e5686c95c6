//! Runs: start (manual, or the setup run of a draft), list, read with the
//! timeline, cancel, and a live Server-Sent Events stream of the timeline.

use super::setup::RunSummary;
use super::{ApiError, AppState, ErrorBody, Owner, load_connection};
use crate::plugins::LoadedPlugin;
use crate::runtime::{ConnectionRun, new_run_id, run_connection};
use crate::store::{Audit, ConnectionStatus, RunEvent, Trigger};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

type St = State<Arc<AppState>>;

/// Start a run of a connection in the background; its id.
pub(crate) async fn spawn(
    s: &Arc<AppState>,
    id: &str,
    plugin: Arc<LoadedPlugin>,
    trigger: Trigger,
) -> Result<String, ApiError> {
    let run_id = new_run_id();
    let mut opts = ConnectionRun::new(trigger);
    opts.run_id = Some(run_id.clone());
    opts.egress = s.egress.clone();
    opts.limits = s.limits.clone();
    opts.interaction = Some(Arc::new(super::interactions::HttpInteractions {
        state: Arc::downgrade(s),
        run_id: run_id.clone(),
        connection_id: id.to_owned(),
    }));
    // One run per connection at a time. A run whose end is already stored
    // (its task is just unwinding) does not count.
    let others: Vec<String> = {
        let active = s.active.lock().expect("active runs");
        active
            .iter()
            .filter(|(_, (c, _))| c == id)
            .map(|(r, _)| r.clone())
            .collect()
    };
    for other in others {
        let finished = s.dep.store.run(&other).await?.is_some_and(|r| r.status != "running");
        if !finished {
            return Err(ApiError::conflict(
                "run_already_active",
                format!("connection {id} already has run {other} in progress"),
            ));
        }
    }
    s.active
        .lock()
        .expect("active runs")
        .insert(run_id.clone(), (id.to_owned(), opts.control.clone()));
    let state = s.clone();
    let rid = run_id.clone();
    let id = id.to_owned();
    tokio::spawn(async move {
        let sandbox = state.catalog.sandbox().clone();
        let result = run_connection(&state.dep, &sandbox, &plugin.plugin, plugin.manifest.clone(), &id, opts).await;
        if let Err(e) = result {
            eprintln!("pdpp-host: run {rid} refused: {}", e.reason());
        }
        state.active.lock().expect("active runs").remove(&rid);
    });
    Ok(run_id)
}

#[derive(Serialize, ToSchema)]
pub struct Started {
    pub run_id: String,
    /// `manual`, or `setup` for the first sync of a draft.
    pub trigger: String,
}

#[utoipa::path(post, path = "/v1/connections/{id}/runs", tag = "runs",
    responses((status = 202, body = Started), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("owner" = [])))]
pub async fn start(_: Owner, State(s): St, Path(id): Path<String>) -> Result<(StatusCode, Json<Started>), ApiError> {
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
    let plugin = s.catalog.get(&conn.connector_id).ok_or_else(|| {
        ApiError::conflict(
            "plugin_unavailable",
            format!("connector {} has no plugin loaded", conn.connector_id),
        )
    })?;
    let run_id = spawn(&s, &id, plugin, trigger).await?;
    s.dep
        .store
        .audit(
            Audit::ok("run.start", &id)
                .run(&run_id)
                .detail(json!({ "trigger": trigger.as_str() })),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            run_id,
            trigger: trigger.as_str().into(),
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunSummary>,
}

#[utoipa::path(get, path = "/v1/connections/{id}/runs", tag = "runs",
    responses((status = 200, body = RunList), (status = 404, body = ErrorBody)), security(("owner" = [])))]
pub async fn of_connection(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<RunList>, ApiError> {
    load_connection(&s, &id).await?;
    let runs = s.dep.store.runs_of(&id).await?;
    Ok(Json(RunList {
        runs: runs.iter().map(RunSummary::of).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct RunDetail {
    #[schema(value_type = Object)]
    pub run: crate::store::RunRow,
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<RunEvent>,
}

#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    responses((status = 200, body = RunDetail), (status = 404, body = ErrorBody)), security(("owner" = [])))]
pub async fn one(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let Some(run) = s.dep.store.run(&id).await? else {
        // Started a moment ago, not stored yet.
        let starting = s.active.lock().expect("active runs").get(&id).map(|(c, _)| c.clone());
        return match starting {
            Some(connection_id) => Ok(Json(json!({
                "run": { "run_id": id, "connection_id": connection_id, "status": "running" },
                "events": [],
            }))),
            None => Err(ApiError::not_found("run", &id)),
        };
    };
    let events = s.dep.store.events(&id).await?;
    Ok(Json(json!(RunDetail { run, events })))
}

#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs",
    responses((status = 200, description = "`cancel_requested` or `already_terminal`"), (status = 404, body = ErrorBody)),
    security(("owner" = [])))]
pub async fn cancel(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let control = s.active.lock().expect("active runs").get(&id).cloned();
    match control {
        Some((connection_id, c)) => {
            c.cancel();
            s.dep
                .store
                .audit(Audit::ok("run.cancel", &connection_id).run(&id))
                .await?;
            Ok(Json(json!({ "run_id": id, "result": "cancel_requested" })))
        }
        None if s.dep.store.run(&id).await?.is_some() => {
            Ok(Json(json!({ "run_id": id, "result": "already_terminal" })))
        }
        None => Err(ApiError::not_found("run", &id)),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct EventsQuery {
    /// Resume after this event sequence number (also read from `Last-Event-ID`).
    pub after: Option<i64>,
}

const TERMINAL: [&str; 3] = ["run.completed", "run.failed", "run.cancelled"];

#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs",
    params(("after" = Option<i64>, Query)),
    responses((status = 200, description = "text/event-stream: one event per timeline entry (`event:` kind, `id:` sequence, `data:` JSON), ending after the terminal one"),
        (status = 404, body = ErrorBody)),
    security(("owner" = [])))]
pub async fn events(
    _: Owner,
    State(s): St,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl futures::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    // A run just started may not be stored yet; the stream waits for it.
    let starting = s.active.lock().expect("active runs").contains_key(&id);
    if !starting && s.dep.store.run(&id).await?.is_none() {
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
                let done = batch.iter().any(|(_, e)| TERMINAL.contains(&e.kind.as_str()));
                let next = (s, id, *last, done);
                return Some((futures::stream::iter(to_events(&batch)), next));
            }
            // The terminal event is written before the run is marked
            // finished, so a finished run with nothing new is the end.
            let running = match s.dep.store.run(&id).await.ok()? {
                Some(run) => run.status == "running",
                None => s.active.lock().expect("active runs").contains_key(&id),
            };
            if !running {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    use futures::StreamExt;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::default()))
}

fn to_events(batch: &[(i64, RunEvent)]) -> Vec<Result<Event, Infallible>> {
    batch
        .iter()
        .map(|(seq, e)| {
            Ok(Event::default()
                .event(e.kind.clone())
                .id(seq.to_string())
                .data(e.data.to_string()))
        })
        .collect()
}
