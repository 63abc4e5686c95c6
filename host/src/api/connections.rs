//! Connections and their setup lifecycle: create (a draft), capture the
//! credential (probe first), setup status, rename, revoke, reconnect, delete.

use super::setup::{CredentialView, NextStep, RunSummary, SetupStatus, StatusInputs, project};
use super::{ApiError, AppState, ErrorBody, Owner, body, load_connection};
use crate::manifest::{LifecycleStatus, Manifest};
use crate::plugins::LoadedPlugin;
use crate::runtime::{ProbeRequest, ProbeVerdict, probe_credential};
use crate::store::{Audit, Connection, ConnectionStatus, DeleteReport, NewConnection, Trigger};
use crate::vault::Bundle;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;
use zeroize::Zeroizing;

type St = State<Arc<AppState>>;
type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// The most a credential body may hold.
const MAX_CREDENTIAL_BYTES: usize = 64 * 1024;
const MAX_DISPLAY_NAME: usize = 200;

/// A connection as the owner sees it.
#[derive(Serialize, ToSchema)]
pub struct ConnectionView {
    pub connection_id: String,
    pub connector_id: String,
    pub display_name: Option<String>,
    /// `draft`, `active`, `paused`, `revoked`.
    pub status: String,
    /// See `SetupStatus.setup_state`.
    pub setup_state: String,
    /// Whether a run may be started now (never for a revoked connection).
    pub runnable: bool,
    #[schema(value_type = Object)]
    pub account_identity: Option<Value>,
    /// Non-secret settings (START.settings of every run).
    #[schema(value_type = Object)]
    pub settings: Value,
    pub record_counts: BTreeMap<String, i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub activated_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

fn closed(m: &Manifest) -> Option<ApiError> {
    let (status, reason) = m.closed_for_setup()?;
    let code = match status {
        LifecycleStatus::Removed => "connector_removed",
        _ => "connector_blocked_upstream",
    };
    Some(ApiError::conflict(
        code,
        format!("{} takes no new connections: {reason}", m.connector_id),
    ))
}

/// The loaded plugin of a connector, or why there is none.
fn plugin_of(s: &AppState, connector_id: &str) -> Result<Arc<LoadedPlugin>, ApiError> {
    let snap = s.catalog.snapshot();
    if let Some(p) = snap.get(connector_id) {
        return Ok(p);
    }
    if let Some(e) = snap.listings.get(connector_id).and_then(|m| closed(m)) {
        return Err(e);
    }
    Err(ApiError::conflict(
        "plugin_unavailable",
        format!("connector {connector_id} has no plugin loaded"),
    ))
}

/// Everything the setup-status projection needs, read from the store.
pub(crate) async fn status_of(s: &AppState, conn: &Connection, run_id: Option<&str>) -> Result<SetupStatus, ApiError> {
    let store = &s.dep.store;
    let credential = store.credential(&conn.connection_id).await?;
    let mut runs = store.runs_of(&conn.connection_id).await?;
    // A run started a moment ago is in progress even before it is stored.
    let starting = s
        .active
        .lock()
        .expect("active runs")
        .iter()
        .find(|(r, (c, _))| *c == conn.connection_id && !runs.iter().any(|x| x.run_id == **r))
        .map(|(r, _)| r.clone());
    if let Some(run_id) = starting {
        runs.insert(
            0,
            crate::store::RunRow {
                run_id,
                connection_id: conn.connection_id.clone(),
                connector_id: conn.connector_id.clone(),
                status: "running".into(),
                trigger: Trigger::Setup.as_str().into(),
                started_at: crate::store::now_ms(),
                finished_at: None,
                records_emitted: 0,
                records_written: 0,
                failure_reason: None,
                failure_message: None,
                resource_report: None,
            },
        );
    }
    let run = match run_id {
        Some(id) => Some(
            runs.iter()
                .find(|r| r.run_id == id)
                .ok_or_else(|| ApiError::not_found("run of this connection", id))?,
        ),
        None => runs.first(),
    };
    let terminal = match run {
        Some(r) => store
            .events(&r.run_id)
            .await?
            .into_iter()
            .rev()
            .find(|e| matches!(e.kind.as_str(), "run.completed" | "run.failed" | "run.cancelled"))
            .map(|e| e.data),
        None => None,
    };
    let needs_credential = match s.catalog.snapshot().get(&conn.connector_id) {
        Some(p) => p.manifest.needs_credential(),
        None => credential.is_some(),
    };
    Ok(project(&StatusInputs {
        connection: conn,
        needs_credential,
        credential: credential.as_ref(),
        last_run: run,
        terminal: terminal.as_ref(),
    }))
}

async fn view(s: &AppState, conn: Connection) -> Result<ConnectionView, ApiError> {
    let status = status_of(s, &conn, None).await?;
    let record_counts = s.dep.store.record_counts(&conn.connection_id).await?;
    Ok(ConnectionView {
        runnable: matches!(conn.status, ConnectionStatus::Active | ConnectionStatus::Draft)
            && status.setup_state != "awaiting_credential",
        setup_state: status.setup_state,
        connection_id: conn.connection_id,
        connector_id: conn.connector_id,
        display_name: conn.display_name,
        status: conn.status.as_str().into(),
        account_identity: conn.account_identity,
        settings: conn.binding_metadata,
        record_counts,
        created_at: conn.created_at,
        updated_at: conn.updated_at,
        activated_at: conn.activated_at,
        revoked_at: conn.revoked_at,
    })
}

#[derive(Deserialize, ToSchema)]
pub struct ListQuery {
    /// Only connections with this status.
    pub status: Option<String>,
    /// Only connections of this connector.
    pub connector_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionView>,
}

#[utoipa::path(get, path = "/v1/connections", tag = "connections",
    params(("status" = Option<String>, Query), ("connector_id" = Option<String>, Query)),
    responses((status = 200, body = ConnectionList)), security(("owner" = [])))]
pub async fn list(
    _: Owner,
    State(s): St,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ConnectionList>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let mut connections = Vec::new();
    for c in s.dep.store.all_connections().await? {
        if q.status.as_deref().is_some_and(|st| st != c.status.as_str())
            || q.connector_id.as_deref().is_some_and(|id| id != c.connector_id)
        {
            continue;
        }
        connections.push(view(&s, c).await?);
    }
    Ok(Json(ConnectionList { connections }))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateBody {
    pub connector_id: String,
    pub display_name: Option<String>,
    /// Non-secret setup fields (a JSON object); never a credential.
    #[schema(value_type = Object)]
    pub settings: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct FirstSync {
    pub run_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct Created {
    pub connection: ConnectionView,
    pub setup: SetupStatus,
    pub next_step: NextStep,
    /// The first sync, when it started by itself (connectors without a credential).
    pub first_sync: Option<FirstSync>,
}

fn check_display_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > MAX_DISPLAY_NAME {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            format!("a display name has 1 to {MAX_DISPLAY_NAME} characters"),
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/connections", tag = "connections", request_body = CreateBody,
    responses((status = 201, body = Created), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("owner" = [])))]
pub async fn create(_: Owner, State(s): St, b: JsonBody<CreateBody>) -> Result<(StatusCode, Json<Created>), ApiError> {
    let b = body(
        b,
        "{\"connector_id\": ..., \"display_name\"?: ..., \"settings\"?: {...}}",
    )?;
    let snap = s.catalog.snapshot();
    let manifest = match (snap.get(&b.connector_id), snap.listings.get(&b.connector_id)) {
        (Some(p), _) => p.manifest.clone(),
        (None, Some(m)) => return Err(closed(m).unwrap_or_else(|| ApiError::not_found("connector", &b.connector_id))),
        (None, None) => return Err(ApiError::not_found("connector", &b.connector_id)),
    };
    if let Some(e) = closed(&manifest) {
        return Err(e);
    }
    let plan = super::setup::plan(&manifest, &super::catalog::env_present);
    if !matches!(plan.support_state.as_str(), "supported" | "experimental") {
        return Err(ApiError::conflict(
            "setup_not_supported",
            format!(
                "{} cannot be set up here ({}): {}",
                b.connector_id, plan.support_state, plan.reason
            ),
        ));
    }
    let settings = b.settings.unwrap_or_else(|| json!({}));
    let Some(fields) = settings.as_object() else {
        return Err(ApiError::bad_request(
            "invalid_settings",
            "settings must be a JSON object",
        ));
    };
    // A credential never goes into the plaintext settings.
    if let Some(f) = manifest
        .credential_fields()
        .iter()
        .find(|f| f.secret != Some(false) && fields.contains_key(&f.name))
    {
        return Err(ApiError::bad_request(
            "secret_in_settings",
            format!(
                "{} is a credential field; send it to the credential route, not in settings",
                f.name
            ),
        ));
    }
    if let Some(name) = &b.display_name {
        check_display_name(name)?;
    }
    let store = &s.dep.store;
    store.upsert_connector(&manifest, None).await?;
    let conn = store
        .create_connection(NewConnection {
            connection_id: None,
            connector_id: b.connector_id.clone(),
            // Every setup starts as a draft; the first ingest makes it active.
            status: ConnectionStatus::Draft,
            display_name: b.display_name,
            binding_metadata: settings,
        })
        .await?;
    let id = conn.connection_id.clone();
    let first_sync = if manifest.needs_credential() {
        None
    } else {
        let plugin = plugin_of(&s, &conn.connector_id)?;
        Some(FirstSync {
            run_id: super::runs::spawn(&s, &id, plugin, Trigger::Setup).await?,
        })
    };
    let setup = status_of(&s, &conn, None).await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            next_step: setup.next_step.clone(),
            setup,
            connection: view(&s, conn).await?,
            first_sync,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionDetail {
    pub connection: ConnectionView,
    pub credential: CredentialView,
    pub last_run: Option<RunSummary>,
    pub setup: SetupStatus,
}

#[utoipa::path(get, path = "/v1/connections/{id}", tag = "connections",
    responses((status = 200, body = ConnectionDetail), (status = 404, body = ErrorBody)), security(("owner" = [])))]
pub async fn one(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<ConnectionDetail>, ApiError> {
    let conn = load_connection(&s, &id).await?;
    let setup = status_of(&s, &conn, None).await?;
    Ok(Json(ConnectionDetail {
        credential: setup.credential.clone(),
        last_run: setup.run.clone(),
        setup,
        connection: view(&s, conn).await?,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct StatusQuery {
    /// A specific run of this connection (default: the current or last one).
    pub run_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/connections/{id}/setup-status", tag = "setup",
    params(("run_id" = Option<String>, Query)),
    responses((status = 200, body = SetupStatus), (status = 404, body = ErrorBody)), security(("owner" = [])))]
pub async fn setup_status(
    _: Owner,
    State(s): St,
    Path(id): Path<String>,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SetupStatus>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let conn = load_connection(&s, &id).await?;
    Ok(Json(status_of(&s, &conn, q.run_id.as_deref()).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct RenameBody {
    pub display_name: String,
}

#[utoipa::path(patch, path = "/v1/connections/{id}", tag = "connections", request_body = RenameBody,
    responses((status = 200, body = ConnectionView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("owner" = [])))]
pub async fn rename(
    _: Owner,
    State(s): St,
    Path(id): Path<String>,
    b: JsonBody<RenameBody>,
) -> Result<Json<ConnectionView>, ApiError> {
    let b = body(b, "{\"display_name\": ...}")?;
    check_display_name(&b.display_name)?;
    s.dep.store.rename_connection(&id, b.display_name.trim()).await?;
    let conn = load_connection(&s, &id).await?;
    Ok(Json(view(&s, conn).await?))
}

#[derive(Serialize, ToSchema)]
pub struct Revoked {
    pub connection_id: String,
    pub connector_id: String,
    pub status: String,
    pub revoked_at: i64,
    pub record_counts: BTreeMap<String, i64>,
    pub next_step: NextStep,
}

#[utoipa::path(post, path = "/v1/connections/{id}/revoke", tag = "connections",
    responses((status = 200, body = Revoked), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("owner" = [])))]
pub async fn revoke(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<Revoked>, ApiError> {
    let revoked_at = s.dep.store.revoke_connection(&id).await?;
    let conn = load_connection(&s, &id).await?;
    let setup = status_of(&s, &conn, None).await?;
    Ok(Json(Revoked {
        connection_id: id.clone(),
        connector_id: conn.connector_id,
        status: conn.status.as_str().into(),
        revoked_at,
        record_counts: s.dep.store.record_counts(&id).await?,
        next_step: setup.next_step,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Reconnected {
    pub setup: SetupStatus,
    pub first_sync: Option<FirstSync>,
}

#[utoipa::path(post, path = "/v1/connections/{id}/reconnect", tag = "setup",
    responses((status = 200, body = Reconnected), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("owner" = [])))]
pub async fn reconnect(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<Reconnected>, ApiError> {
    let conn = load_connection(&s, &id).await?;
    let plugin = plugin_of(&s, &conn.connector_id)?;
    s.dep.store.reconnect_connection(&id).await?;
    // With a usable credential (or none needed) the setup run starts now;
    // otherwise the setup status asks for a credential.
    let usable = match s.dep.store.credential(&id).await? {
        Some(c) => c.status == crate::store::CredentialStatus::Active,
        None => !plugin.manifest.needs_credential(),
    };
    let first_sync = if usable {
        Some(FirstSync {
            run_id: super::runs::spawn(&s, &id, plugin, Trigger::Setup).await?,
        })
    } else {
        None
    };
    let conn = load_connection(&s, &id).await?;
    Ok(Json(Reconnected {
        setup: status_of(&s, &conn, None).await?,
        first_sync,
    }))
}

#[utoipa::path(delete, path = "/v1/connections/{id}", tag = "connections",
    responses((status = 200, body = DeleteReport), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("owner" = [])))]
pub async fn delete(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<DeleteReport>, ApiError> {
    // The store knows which runs are in progress, on every host sharing it.
    Ok(Json(s.dep.store.delete_connection(&id, "connection.delete").await?))
}

#[derive(Deserialize, ToSchema)]
pub struct CredentialBody {
    /// Must equal the manifest's `setup.credential_capture.kind`.
    pub kind: String,
    /// Field name → value, for the fields the manifest declares.
    pub fields: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
pub struct Identity {
    pub account_identity: String,
    pub detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Captured {
    pub connection_id: String,
    pub connector_id: String,
    pub credential: CredentialView,
    pub identity: Option<Identity>,
    /// `synchronous` (the probe accepted it) or `first_sync` (no probe).
    pub validation: String,
    pub rotated: bool,
    /// The first sync, started by itself for a draft.
    pub first_sync: Option<FirstSync>,
    pub setup: SetupStatus,
}

/// The candidate bundle, checked against the manifest's capture block.
fn check_credential(m: &Manifest, b: CredentialBody) -> Result<Bundle, ApiError> {
    let capture = m
        .setup
        .as_ref()
        .and_then(|s| s.credential_capture.as_ref())
        .filter(|c| !c.fields.is_empty())
        .ok_or_else(|| {
            ApiError::conflict(
                "credential_unsupported",
                format!("{} takes no credential", m.connector_id),
            )
        })?;
    if b.kind != capture.kind {
        return Err(ApiError::bad_request(
            "credential_kind_mismatch",
            format!("{} takes a {} credential, not {}", m.connector_id, capture.kind, b.kind),
        ));
    }
    let size: usize = b.fields.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_CREDENTIAL_BYTES {
        return Err(ApiError::bad_request(
            "credential_too_large",
            format!("a credential holds at most {MAX_CREDENTIAL_BYTES} bytes"),
        ));
    }
    for name in b.fields.keys() {
        if !capture.fields.iter().any(|f| f.name == *name) {
            return Err(ApiError::bad_request(
                "unknown_credential_field",
                format!("{} declares no credential field {name}", m.connector_id),
            ));
        }
    }
    let mut fields: BTreeMap<String, Zeroizing<String>> = BTreeMap::new();
    for (k, v) in b.fields {
        if !v.trim().is_empty() {
            fields.insert(k, Zeroizing::new(v));
        }
    }
    let missing: Vec<&str> = capture
        .fields
        .iter()
        .filter(|f| f.extra.get("required").and_then(Value::as_bool) != Some(false))
        .filter(|f| !fields.contains_key(&f.name))
        .map(|f| f.name.as_str())
        .collect();
    if !missing.is_empty() || fields.is_empty() {
        return Err(ApiError::bad_request(
            "missing_credential",
            format!("required credential fields are empty: {}", missing.join(", ")),
        ));
    }
    Ok(Bundle { kind: b.kind, fields })
}

#[utoipa::path(put, path = "/v1/connections/{id}/credential", tag = "setup", request_body = CredentialBody,
    responses((status = 201, description = "first capture", body = Captured), (status = 200, description = "rotation", body = Captured),
        (status = 400, description = "invalid or rejected by the probe; nothing stored", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 502, description = "the probe could not reach the provider; nothing stored", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn put_credential(
    _: Owner,
    State(s): St,
    Path(id): Path<String>,
    b: JsonBody<CredentialBody>,
) -> Result<(StatusCode, Json<Captured>), ApiError> {
    // Never echo the body back: it holds the secret.
    let b = body(b, "{\"kind\": ..., \"fields\": {...}}")?;
    let conn = load_connection(&s, &id).await?;
    if conn.status == ConnectionStatus::Revoked {
        return Err(ApiError::conflict(
            "connection_inactive",
            format!("connection {id} is revoked; reconnect it first (POST /v1/connections/{id}/reconnect)"),
        ));
    }
    let plugin = plugin_of(&s, &conn.connector_id)?;
    let manifest = plugin.manifest.clone();
    let bundle = check_credential(&manifest, b)?;
    let store = &s.dep.store;
    let previous = store.credential(&id).await?;
    let rotated = previous.is_some();
    let audit = |outcome: &'static str, code: &'static str| {
        Audit::ok("connection.credential.capture", &id)
            .outcome(outcome)
            .detail(json!({ "kind": bundle.kind, "rotated": rotated, "code": code }))
    };

    let verdict = probe_credential(
        s.catalog.sandbox(),
        &plugin.plugin,
        ProbeRequest {
            manifest: manifest.clone(),
            settings: conn.binding_metadata.clone(),
            secrets: bundle.fields.clone(),
            egress: s.egress.clone(),
            limits: s.limits.clone(),
        },
    )
    .await;
    let identity = match &verdict {
        ProbeVerdict::Accepted { identity, detail } => Some(Identity {
            account_identity: identity.clone(),
            detail: detail.clone(),
        }),
        ProbeVerdict::NoProbe => None,
        ProbeVerdict::Rejected(m) | ProbeVerdict::InsufficientScope(m) => {
            store.audit(audit("rejected", verdict.code())).await?;
            // Nothing is stored. A first-time draft is retired so no setup
            // row stays behind; a working connection keeps its credential.
            let retired = conn.status == ConnectionStatus::Draft && previous.is_none();
            if retired {
                store.retire_draft(&id, verdict.code()).await?;
            }
            let tail = if retired {
                "; nothing was stored and the draft connection was retired: start the setup again"
            } else {
                "; nothing was stored and the connection keeps its current credential"
            };
            return Err(ApiError::bad_request(
                verdict.code(),
                format!("the provider did not accept the credential: {m}{tail}"),
            ));
        }
        ProbeVerdict::Unavailable(m) | ProbeVerdict::Broken(m) => {
            store.audit(audit("probe_failed", verdict.code())).await?;
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                verdict.code(),
                format!("the credential could not be checked ({m}); nothing was stored, try again"),
            ));
        }
    };
    // A rotation must stay on the same account.
    if let (Some(new), Some(Value::String(known))) = (&identity, &conn.account_identity)
        && conn.status == ConnectionStatus::Active
        && new.account_identity != *known
    {
        store.audit(audit("rejected", "credential_identity_mismatch")).await?;
        return Err(ApiError::conflict(
            "credential_identity_mismatch",
            format!(
                "this credential belongs to {}, not to {known}; connect the other account as a new connection",
                new.account_identity
            ),
        ));
    }
    let sealed = s
        .dep
        .key
        .seal(&id, &bundle)
        .map_err(|e| ApiError::bad_request("invalid_credential", e.to_string()))?;
    store.put_credential(&id, &sealed).await?;
    if let Some(i) = &identity {
        store.set_account_identity(&id, &json!(i.account_identity)).await?;
    }
    store.audit(audit("ok", verdict.code())).await?;
    let first_sync = if conn.status == ConnectionStatus::Draft {
        // A sync already in progress (a re-capture during it) is left to finish.
        match super::runs::spawn(&s, &id, plugin, Trigger::Setup).await {
            Ok(run_id) => Some(FirstSync { run_id }),
            Err(e) if e.code == "run_already_active" => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let conn = load_connection(&s, &id).await?;
    let setup = status_of(&s, &conn, None).await?;
    Ok((
        if rotated { StatusCode::OK } else { StatusCode::CREATED },
        Json(Captured {
            connection_id: id.clone(),
            connector_id: conn.connector_id,
            credential: setup.credential.clone(),
            identity,
            validation: if matches!(verdict, ProbeVerdict::NoProbe) {
                "first_sync"
            } else {
                "synchronous"
            }
            .into(),
            rotated,
            first_sync,
            setup,
        }),
    ))
}
