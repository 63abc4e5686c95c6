//! The `/v1/` routes.

use super::{ApiError, AppState, Owner};
use crate::runtime::{ConnectionRun, new_run_id, run_connection};
use crate::store::{ConnectionStatus, NewConnection, Trigger};
use crate::vault::Bundle;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

type St = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/v1/connectors", get(connectors))
        .route("/v1/connections", get(connections).post(create_connection))
        .route("/v1/connections/{id}", get(connection))
        .route("/v1/connections/{id}/credential", put(put_credential))
        .route("/v1/connections/{id}/runs", post(start_run).get(runs_of))
        .route("/v1/runs/{id}", get(run))
        .route("/v1/runs/{id}/cancel", post(cancel_run))
        .route("/v1/records", get(records))
        .route("/v1/interactions", get(super::interactions::list))
        .route("/v1/interactions/{id}", post(super::interactions::answer))
        .with_state(state)
}

/// What a connector needs at setup, derived from its manifest alone.
fn setup_plan(m: &crate::manifest::Manifest) -> Value {
    let capture = m.setup.as_ref().and_then(|s| s.credential_capture.as_ref());
    let modality = m
        .setup
        .as_ref()
        .and_then(|s| s.modality.clone())
        .unwrap_or_else(|| "none".into());
    json!({
        "modality": modality,
        "credential_kind": capture.map(|c| c.kind.clone()),
        "fields": capture.map(|c| c.fields.iter().map(|f| json!({
            "name": f.name, "label": f.label, "secret": f.secret.unwrap_or(true),
            "help_text": f.extra.get("help_text"), "help_url": f.extra.get("help_url"),
        })).collect::<Vec<_>>()).unwrap_or_default(),
    })
}

async fn connectors(_: Owner, State(s): St) -> Json<Value> {
    let snap = s.catalog.snapshot();
    let list: Vec<Value> = snap
        .plugins
        .values()
        .map(|p| {
            json!({
                "connector_id": p.manifest.connector_id,
                "name": p.manifest.name,
                "version": p.manifest.version,
                "sha256": p.sha256,
                "streams": p.manifest.streams.iter().map(|s| &s.name).collect::<Vec<_>>(),
                "setup": setup_plan(&p.manifest),
            })
        })
        .collect();
    let broken: Vec<Value> = snap
        .errors
        .iter()
        .map(|(path, e)| json!({ "path": path.display().to_string(), "error": e.to_string() }))
        .collect();
    Json(json!({ "connectors": list, "unavailable": snap.removed, "broken": broken }))
}

async fn connections(_: Owner, State(s): St) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "connections": s.dep.store.all_connections().await? })))
}

#[derive(Deserialize)]
struct NewConnectionBody {
    connector_id: String,
    display_name: Option<String>,
    #[serde(default)]
    settings: Option<Value>,
}

async fn create_connection(
    _: Owner,
    State(s): St,
    body: Result<Json<NewConnectionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let plugin = s
        .catalog
        .get(&body.connector_id)
        .ok_or_else(|| ApiError::not_found("connector", &body.connector_id))?;
    let settings = body.settings.unwrap_or_else(|| json!({}));
    if !settings.is_object() {
        return Err(ApiError::bad_request(
            "invalid_settings",
            "settings must be a JSON object",
        ));
    }
    let needs_credential = !plugin.manifest.credential_fields().is_empty();
    s.dep
        .store
        .upsert_connector(&plugin.manifest, Some(&plugin.sha256))
        .await?;
    let conn = s
        .dep
        .store
        .create_connection(NewConnection {
            connection_id: None,
            connector_id: body.connector_id,
            // A connection that needs a credential is a draft until one is captured.
            status: if needs_credential {
                ConnectionStatus::Draft
            } else {
                ConnectionStatus::Active
            },
            display_name: body.display_name,
            binding_metadata: settings,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "connection": conn }))))
}

/// The connection, or a typed 404.
async fn load_connection(s: &AppState, id: &str) -> Result<crate::store::Connection, ApiError> {
    s.dep
        .store
        .connection(id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection", id))
}

/// Credential metadata an owner may see: never the secret.
async fn credential_view(s: &AppState, id: &str) -> Result<Value, ApiError> {
    Ok(match s.dep.store.credential(id).await? {
        None => json!({ "present": false }),
        Some(c) => json!({
            "present": true,
            "kind": c.sealed.kind,
            "fields": c.sealed.field_names,
            "status": c.status,
            "captured_at": c.captured_at,
            "rotated_at": c.rotated_at,
            "fingerprint": c.sealed.fingerprint,
        }),
    })
}

async fn connection(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let conn = load_connection(&s, &id).await?;
    let last_run = s.dep.store.runs_of(&id).await?.into_iter().next();
    let credential = credential_view(&s, &id).await?;
    Ok(Json(
        json!({ "connection": conn, "credential": credential, "last_run": last_run }),
    ))
}

#[derive(Deserialize)]
struct CredentialBody {
    kind: String,
    fields: BTreeMap<String, String>,
}

async fn put_credential(
    _: Owner,
    State(s): St,
    Path(id): Path<String>,
    body: Result<Json<CredentialBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    // Never echo the body back: it holds the secret.
    let Json(body) =
        body.map_err(|_| ApiError::bad_request("invalid_body", "expected {\"kind\": ..., \"fields\": {...}}"))?;
    let conn = load_connection(&s, &id).await?;
    let bundle = Bundle::new(&body.kind, body.fields);
    let sealed = s
        .dep
        .key
        .seal(&id, &bundle)
        .map_err(|e| ApiError::bad_request("invalid_credential", e.to_string()))?;
    s.dep.store.put_credential(&id, &sealed).await?;
    if conn.status == ConnectionStatus::Draft {
        s.dep.store.set_connection_status(&id, ConnectionStatus::Active).await?;
    }
    Ok(Json(
        json!({ "connection_id": id, "credential": credential_view(&s, &id).await? }),
    ))
}

async fn start_run(_: Owner, State(s): St, Path(id): Path<String>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let conn = load_connection(&s, &id).await?;
    let plugin = s.catalog.get(&conn.connector_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "plugin_unavailable",
            format!("connector {} has no plugin loaded", conn.connector_id),
        )
    })?;
    let run_id = new_run_id();
    let mut opts = ConnectionRun::new(Trigger::Manual);
    opts.run_id = Some(run_id.clone());
    opts.interaction = Some(Arc::new(super::interactions::HttpInteractions {
        state: Arc::downgrade(&s),
        run_id: run_id.clone(),
        connection_id: id.clone(),
    }));
    s.active
        .lock()
        .expect("active runs")
        .insert(run_id.clone(), opts.control.clone());
    let state = s.clone();
    let rid = run_id.clone();
    tokio::spawn(async move {
        let sandbox = state.catalog.sandbox().clone();
        let result = run_connection(&state.dep, &sandbox, &plugin.plugin, plugin.manifest.clone(), &id, opts).await;
        if let Err(e) = result {
            eprintln!("pdpp-host: run {rid} refused: {e}");
        }
        state.active.lock().expect("active runs").remove(&rid);
    });
    Ok((StatusCode::ACCEPTED, Json(json!({ "run_id": run_id }))))
}

async fn runs_of(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "runs": s.dep.store.runs_of(&id).await? })))
}

async fn run(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let run = s
        .dep
        .store
        .run(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("run", &id))?;
    let events = s.dep.store.events(&id).await?;
    Ok(Json(json!({ "run": run, "events": events })))
}

async fn cancel_run(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let control = s.active.lock().expect("active runs").get(&id).cloned();
    match control {
        Some(c) => {
            c.cancel();
            Ok(Json(json!({ "run_id": id, "result": "cancel_requested" })))
        }
        None if s.dep.store.run(&id).await?.is_some() => {
            Ok(Json(json!({ "run_id": id, "result": "already_terminal" })))
        }
        None => Err(ApiError::not_found("run", &id)),
    }
}

#[derive(Deserialize)]
struct RecordsQuery {
    connection_id: String,
    stream: String,
}

async fn records(
    _: Owner,
    State(s): St,
    q: Result<Query<RecordsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    load_connection(&s, &q.connection_id).await?;
    Ok(Json(
        json!({ "records": s.dep.store.records(&q.connection_id, &q.stream).await? }),
    ))
}
