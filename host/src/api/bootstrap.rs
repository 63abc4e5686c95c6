//! `POST /v1/connections/{id}/bootstrap`: let the host create a
//! connection's credential in its browser (a declared credential
//! bootstrap, docs/bootstrap.md).
//!
//! The bootstrap is a run of the connection with the trigger `bootstrap`:
//! the connector's `bootstrap` export signs in in the connection's own
//! browser profile, asking the owner through the ordinary interaction
//! routes, and hands the token to the host by selector. When it ends, the
//! token goes through the credentials service like a pasted one; a draft's
//! first sync then starts by itself. The owner follows it in the setup
//! status (`bootstrap`) and the run's timeline.

use super::{ApiError, AppState, ErrorBody, Owner, load_connection};
use crate::credentials::BootstrapResult;
use crate::runtime::{AfterRun, ConnectionRun, new_run_id};
use crate::setup::{NextStep, NextStepKind};
use crate::store::{Audit, ConnectionStatus, RunEvent, Trigger};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use utoipa::ToSchema;

/// A bootstrap that started.
#[derive(Serialize, ToSchema)]
pub struct BootstrapStarted {
    /// The bootstrap run (its timeline shows each step; never a value).
    pub run_id: String,
    /// The credential field it creates.
    pub field: String,
    /// Answer its questions (login, one-time code) at `GET /v1/interactions`.
    pub next_step: NextStep,
}

#[utoipa::path(post, path = "/v1/connections/{id}/bootstrap", tag = "setup", operation_id = "startBootstrap",
    params(("id" = String, Path, description = "The connection id")),
    responses((status = 202, description = "The bootstrap run started; answer its questions at `GET /v1/interactions`", body = BootstrapStarted),
        (status = 404, description = "`not_found`: no such connection", body = ErrorBody),
        (status = 409, description = "`bootstrap_not_offered` (the connector declares none), `connection_not_runnable` (revoked or paused), `run_already_active`, `browser_unavailable`, `plugin_unavailable`, …", body = ErrorBody),
        (status = 503, description = "`plugins_loading`: plugins are still compiling; retry (`Retry-After`)", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn start(
    _: Owner,
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<BootstrapStarted>), ApiError> {
    let conn = load_connection(&s, &id).await?;
    let plugin = s.plugin(&conn.connector_id)?;
    let Some(offer) = crate::setup::bootstrap_offer(&plugin.manifest) else {
        return Err(ApiError::conflict(
            "bootstrap_not_offered",
            format!(
                "connector {} declares no credential bootstrap; enter the credential (PUT /v1/connections/{id}/credential)",
                conn.connector_id
            ),
        ));
    };
    if !matches!(conn.status, ConnectionStatus::Draft | ConnectionStatus::Active) {
        return Err(ApiError::conflict(
            "connection_not_runnable",
            format!("connection {id} is {}; reconnect it first", conn.status.as_str()),
        ));
    }
    let run_id = new_run_id();
    let mut opts = ConnectionRun::bootstrap(offer.field.clone());
    opts.run_id = Some(run_id.clone());
    opts.egress = s.egress.clone();
    opts.limits = s.limits.clone();
    opts.interaction = Some(s.runs.interactions(&run_id));
    opts.browser = s.browser.clone();
    let after = after_bootstrap(s.clone(), id.clone(), run_id.clone());
    match s.runs.start_then(plugin, &id, opts, Some(after)).await {
        Ok(_) => {}
        Err(refused) => return Err(refused.into()),
    }
    s.dep
        .store
        .audit(
            Audit::ok("connection.credential.bootstrap", &id)
                .run(&run_id)
                .detail(json!({ "field": offer.field })),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BootstrapStarted {
            next_step: NextStep::new(
                NextStepKind::WaitForFirstSync,
                Some("GET"),
                Some(format!("/v1/interactions?run_id={run_id}")),
                "answer the bootstrap's questions (the login, a one-time code) as they come; the setup status \
                 shows where it stands",
            ),
            run_id,
            field: offer.field,
        }),
    ))
}

/// After the bootstrap run: its credential through the credentials
/// service, then a draft's first sync.
fn after_bootstrap(s: Arc<AppState>, id: String, run_id: String) -> AfterRun {
    Box::new(move |outcome| {
        Box::pin(async move {
            let Ok(conn) = load_connection(&s, &id).await else {
                return;
            };
            let Ok(plugin) = s.plugin(&conn.connector_id) else {
                return;
            };
            let result = s
                .credentials()
                .complete_bootstrap(
                    &conn,
                    &plugin,
                    &run_id,
                    outcome.succeeded(),
                    outcome.usage.browser.captured.as_ref(),
                )
                .await;
            match result {
                Ok(BootstrapResult::Stored(_)) if conn.status == ConnectionStatus::Draft => {
                    let first = super::runs::spawn(&s, &id, plugin, Trigger::Setup).await;
                    let event = match first {
                        Ok(first) => RunEvent::new("bootstrap.first_sync_started", json!({ "run_id": first })),
                        Err(e) => RunEvent::new("bootstrap.first_sync_not_started", json!({ "code": e.code })),
                    };
                    let _ = s.dep.store.append_events(&run_id, &[event]).await;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(run_id = %run_id, "the bootstrap's credential could not be recorded: {e}"),
            }
        })
    })
}
