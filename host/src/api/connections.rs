//! Connections and their setup lifecycle: create (a draft), capture the
//! credential (through the credentials service), setup status, update (name, browser session mode),
//! revoke, reconnect, delete.

use super::{ApiError, AppState, ErrorBody, Owner, body, load_connection};
use crate::credentials::{AccountIdentity, Candidate, CredentialSource};
use crate::manifest::Validation;
use crate::setup::{
    CredentialView, NewDraft, NextStep, RunSummary, SetupState, SetupStatus, StatusNeeds, check_display_name,
    create_draft, env_present,
};
use crate::store::{
    BrowserSessionMode, Connection, ConnectionFilter, ConnectionStatus, DeleteReport, PageCursor, Trigger,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

type St = State<Arc<AppState>>;

/// How long a revoke waits for the connection's run to stop.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// A connection as the owner sees it.
#[derive(Serialize, ToSchema)]
pub struct ConnectionView {
    pub connection_id: String,
    pub connector_id: String,
    pub display_name: Option<String>,
    pub status: ConnectionStatus,
    /// See `SetupStatus.setup_state`.
    pub setup_state: SetupState,
    /// Whether a run may be started now (never for a revoked connection).
    pub runnable: bool,
    /// The account the connector reported, when it did.
    #[schema(value_type = Option<Object>)]
    pub account_identity: Option<Value>,
    /// Non-secret settings (START.settings of every run).
    #[schema(value_type = Object)]
    pub settings: Value,
    pub record_counts: BTreeMap<String, i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub activated_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Whether browser login material outlives each run (browser-backed
    /// connectors; `persistent` for every other).
    pub browser_session: BrowserSessionMode,
}

/// The setup status of a connection (of its last run, or of `run_id`).
/// What setup status needs to know of a connection's connector: from its
/// loaded plugin, or nothing when the plugin is not loaded.
fn needs_of(s: &AppState, conn: &Connection) -> StatusNeeds {
    match s.catalog.snapshot().get(&conn.connector_id) {
        Some(p) => StatusNeeds::of(&p.manifest, p.plugin.grants().browser().is_some()),
        None => StatusNeeds::default(),
    }
}

fn status_error(e: crate::setup::StatusError) -> ApiError {
    match e {
        crate::setup::StatusError::UnknownRun(id) => ApiError::not_found("run of this connection", &id),
        crate::setup::StatusError::Store(e) => e.into(),
    }
}

pub(crate) async fn status_of(s: &AppState, conn: &Connection, run_id: Option<&str>) -> Result<SetupStatus, ApiError> {
    crate::setup::status(&s.dep.store, conn, &needs_of(s, conn), run_id)
        .await
        .map_err(status_error)
}

/// The owner's views of connections with their setup statuses: a fixed
/// number of queries however many connections (a page) and however long
/// their histories.
async fn views(s: &AppState, conns: Vec<Connection>) -> Result<Vec<(ConnectionView, SetupStatus)>, ApiError> {
    let needs: Vec<StatusNeeds> = conns.iter().map(|c| needs_of(s, c)).collect();
    let pairs: Vec<(&Connection, &StatusNeeds)> = conns.iter().zip(&needs).collect();
    let statuses = crate::setup::statuses(&s.dep.store, &pairs, None)
        .await
        .map_err(status_error)?;
    let ids: Vec<&str> = conns.iter().map(|c| c.connection_id.as_str()).collect();
    let mut counts = s.dep.store.record_counts_of(&ids).await?;
    Ok(conns
        .into_iter()
        .zip(statuses)
        .map(|(conn, status)| {
            let record_counts = counts.remove(&conn.connection_id).unwrap_or_default();
            (view(conn, &status, record_counts), status)
        })
        .collect())
}

async fn view_of(s: &AppState, conn: Connection) -> Result<ConnectionView, ApiError> {
    Ok(views(s, vec![conn]).await?.pop().expect("one view per connection").0)
}

fn view(conn: Connection, status: &SetupStatus, record_counts: BTreeMap<String, i64>) -> ConnectionView {
    ConnectionView {
        runnable: matches!(conn.status, ConnectionStatus::Active | ConnectionStatus::Draft)
            && status.setup_state != SetupState::AwaitingCredential,
        setup_state: status.setup_state,
        connection_id: conn.connection_id,
        connector_id: conn.connector_id,
        display_name: conn.display_name,
        status: conn.status,
        account_identity: conn.account_identity,
        settings: conn.binding_metadata,
        record_counts,
        created_at: conn.created_at,
        updated_at: conn.updated_at,
        activated_at: conn.activated_at,
        revoked_at: conn.revoked_at,
        browser_session: conn.browser_session,
    }
}

/// Connections per page when the request does not say.
pub const PAGE_DEFAULT: u32 = 100;
/// The most connections one page holds.
pub const PAGE_MAX: u32 = 500;

/// The schema of a connection page size: 1..=[`PAGE_MAX`], default [`PAGE_DEFAULT`].
fn connection_page_limit() -> utoipa::openapi::schema::Object {
    super::openapi::int_range(1, i64::from(PAGE_MAX), Some(i64::from(PAGE_DEFAULT)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only connections with this status.
    pub status: Option<ConnectionStatus>,
    /// Only connections of this connector.
    pub connector_id: Option<String>,
    /// Connections per page.
    #[param(schema_with = connection_page_limit)]
    pub limit: Option<u32>,
    /// Where the page starts: the `next_after` of the page before (opaque).
    #[param(pattern = r"^-?[0-9]{1,18}\.[A-Za-z0-9_]{1,64}$")]
    pub after: Option<String>,
}

/// One page of connections, oldest first.
#[derive(Serialize, ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionView>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/connections", tag = "connections", operation_id = "listConnections",
    params(ListQuery),
    responses((status = 200, body = ConnectionList),
        (status = 400, body = ErrorBody, description = "`invalid_query`: a parameter out of its range or of an unknown value; `invalid_cursor`: `after` is not a cursor this list handed out")),
    security(("owner" = [])))]
pub async fn list(
    _: Owner,
    State(s): St,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ConnectionList>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit is 1 to {PAGE_MAX} connections per page"),
        ));
    }
    let after = match q.after.as_deref() {
        None => None,
        Some(text) => Some(
            PageCursor::decode(text)
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "after is not a cursor this list handed out"))?,
        ),
    };
    let filter = ConnectionFilter {
        status: q.status,
        connector_id: q.connector_id,
    };
    // One more than the page: whether another page follows.
    let mut page = s.dep.store.connections_page(&filter, after.as_ref(), limit + 1).await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next_after = more.then(|| page.last().map(|c| PageCursor::of(c).encode())).flatten();
    let connections = views(&s, page).await?.into_iter().map(|(v, _)| v).collect();
    Ok(Json(ConnectionList {
        connections,
        next_after,
    }))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"connector_id": "demo", "display_name": "Demo account", "settings": {"contacts": 10, "events": 5}}))]
pub struct CreateBody {
    /// A connector of the catalog (`GET /v1/connectors`).
    pub connector_id: String,
    #[schema(schema_with = display_name_or_null)]
    pub display_name: Option<String>,
    /// Non-secret setup fields, checked against the connector's
    /// `settings_schema`; never a credential. Default `{}`.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
    /// For a browser-backed connector: `persistent` (the default) keeps its
    /// login sealed between runs; `ephemeral` destroys it at every run's end
    /// (only where the connector's setup plan offers it).
    pub browser_session: Option<BrowserSessionMode>,
}

fn display_name_or_null() -> utoipa::openapi::schema::Object {
    crate::setup::display_name_schema(true)
}

fn display_name() -> utoipa::openapi::schema::Object {
    crate::setup::display_name_schema(false)
}

/// A field that may be absent but, when present, is not `null`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
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

#[utoipa::path(post, path = "/v1/connections", tag = "connections", operation_id = "createConnection",
    request_body = CreateBody,
    responses((status = 201, description = "A draft; its first sync started when the connector needs no credential", body = Created),
        (status = 400, description = "`invalid_body`, `invalid_display_name`, `invalid_settings`, `secret_in_settings`; nothing was written", body = ErrorBody),
        (status = 404, description = "`not_found`: no such connector", body = ErrorBody),
        (status = 409, description = "`connector_removed`, `connector_blocked_upstream`, `setup_not_supported`, `browser_session_mode_not_offered`, `run_already_active`, `connection_not_runnable`: this connector takes no such connection now", body = ErrorBody),
        (status = 503, description = "`plugins_loading`: plugins are still compiling; retry (`Retry-After`)", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn create(_: Owner, State(s): St, b: JsonBody<CreateBody>) -> Result<(StatusCode, Json<Created>), ApiError> {
    let b = body(
        b,
        "{\"connector_id\": ..., \"display_name\"?: ..., \"settings\"?: {...}, \"browser_session\"?: \"persistent\" | \"ephemeral\"}",
    )?;
    let snap = s.catalog.snapshot();
    let plugin = match (snap.get(&b.connector_id), snap.listings.get(&b.connector_id)) {
        (Some(p), _) => p,
        (None, Some(m)) => {
            return Err(crate::setup::closed(m)
                .map(ApiError::from)
                .unwrap_or_else(|| ApiError::not_found("connector", &b.connector_id)));
        }
        (None, None) if !snap.pending.is_empty() => return Err(ApiError::plugins_loading()),
        (None, None) => return Err(ApiError::not_found("connector", &b.connector_id)),
    };
    let draft = NewDraft {
        settings: b.settings.unwrap_or_else(|| json!({})),
        display_name: b.display_name,
        browser_session: b.browser_session.unwrap_or_default(),
    };
    let conn = create_draft(&s.dep.store, &plugin.manifest, draft, &env_present).await?;
    let id = conn.connection_id.clone();
    let first_sync = if plugin.manifest.needs_credential() {
        None
    } else {
        Some(FirstSync {
            run_id: super::runs::spawn(&s, &id, plugin, Trigger::Setup).await?,
        })
    };
    let (connection, setup) = views(&s, vec![conn]).await?.pop().expect("one view per connection");
    Ok((
        StatusCode::CREATED,
        Json(Created {
            next_step: setup.next_step.clone(),
            setup,
            connection,
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

#[utoipa::path(get, path = "/v1/connections/{id}", tag = "connections", operation_id = "getConnection",
    params(("id" = String, Path, description = "The connection id")),
    responses((status = 200, body = ConnectionDetail), (status = 404, description = "`not_found`: no such connection", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn one(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<ConnectionDetail>, ApiError> {
    let conn = load_connection(&s, &id).await?;
    let (connection, setup) = views(&s, vec![conn]).await?.pop().expect("one view per connection");
    Ok(Json(ConnectionDetail {
        credential: setup.credential.clone(),
        last_run: setup.run.clone(),
        setup,
        connection,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// A specific run of this connection (default: the current or last one).
    pub run_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/connections/{id}/setup-status", tag = "setup", operation_id = "getSetupStatus",
    params(("id" = String, Path, description = "The connection id"), StatusQuery),
    responses((status = 200, body = SetupStatus),
        (status = 404, description = "`not_found`: no such connection, or no such run of it", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn setup_status(
    _: Owner,
    State(s): St,
    Path(id): Path<String>,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SetupStatus>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    // One query: the connection, its credential and its bounded history.
    let (_, status) = crate::setup::status_by_id(&s.dep.store, &id, q.run_id.as_deref(), |conn| needs_of(&s, conn))
        .await
        .map_err(status_error)?
        .ok_or_else(|| ApiError::not_found("connection", &id))?;
    Ok(Json(status))
}

/// At least one field; `null` is not a value of any.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"display_name": "Work calendar"}))]
pub struct UpdateBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = display_name)]
    pub display_name: Option<String>,
    /// New non-secret settings (a JSON object, checked against the
    /// connector's settings schema); the next run starts with them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Object)]
    pub settings: Option<Value>,
    /// `ephemeral` destroys the connection's browser login at every run's
    /// end (and forgets what is stored now); only where the connector's
    /// setup plan offers it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = BrowserSessionMode)]
    pub browser_session: Option<BrowserSessionMode>,
}

#[utoipa::path(patch, path = "/v1/connections/{id}", tag = "connections", operation_id = "updateConnection",
    params(("id" = String, Path, description = "The connection id")),
    request_body = UpdateBody,
    responses((status = 200, body = ConnectionView),
        (status = 400, description = "`invalid_body` (no field, an unknown field, a `null`), `invalid_display_name`, `invalid_settings`, `secret_in_settings`; nothing was written", body = ErrorBody),
        (status = 404, description = "`not_found`: no such connection", body = ErrorBody),
        (status = 409, description = "`browser_session_mode_not_offered`, `plugin_unavailable`: the connector does not take this change", body = ErrorBody),
        (status = 503, description = "`plugins_loading`: plugins are still compiling; retry (`Retry-After`)", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn update(
    _: Owner,
    State(s): St,
    Path(id): Path<String>,
    b: JsonBody<UpdateBody>,
) -> Result<Json<ConnectionView>, ApiError> {
    let shape = "{\"display_name\"?: ..., \"settings\"?: {...}, \"browser_session\"?: \"persistent\" | \"ephemeral\"}";
    let b = body(b, shape)?;
    if b.display_name.is_none() && b.browser_session.is_none() && b.settings.is_none() {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("nothing to change: expected {shape}"),
        ));
    }
    // Everything is checked before anything is written.
    if let Some(name) = &b.display_name {
        check_display_name(name)?;
    }
    let conn = load_connection(&s, &id).await?;
    if b.browser_session.is_some() || b.settings.is_some() {
        let plugin = s.plugin(&conn.connector_id)?;
        if let Some(mode) = b.browser_session {
            crate::setup::check_browser_session(&plugin.manifest, mode)?;
        }
        if let Some(settings) = &b.settings {
            crate::setup::check_settings(&plugin.manifest, settings)?;
        }
    }
    if let Some(name) = &b.display_name {
        s.dep.store.rename_connection(&id, name.trim()).await?;
    }
    if let Some(settings) = &b.settings {
        s.dep.store.set_settings(&id, settings).await?;
    }
    if let Some(mode) = b.browser_session {
        s.dep.store.set_browser_session_mode(&id, mode).await?;
    }
    let conn = load_connection(&s, &id).await?;
    Ok(Json(view_of(&s, conn).await?))
}

#[derive(Serialize, ToSchema)]
pub struct Revoked {
    pub connection_id: String,
    pub connector_id: String,
    pub status: ConnectionStatus,
    pub revoked_at: i64,
    pub record_counts: BTreeMap<String, i64>,
    pub next_step: NextStep,
}

#[utoipa::path(post, path = "/v1/connections/{id}/revoke", tag = "connections", operation_id = "revokeConnection",
    params(("id" = String, Path, description = "The connection id")),
    responses((status = 200, description = "Revoked; its run in progress stopped. The records stay until the connection is deleted", body = Revoked),
        (status = 404, description = "`not_found`: no such connection", body = ErrorBody),
        (status = 409, description = "`connection_state_conflict`: already revoked", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn revoke(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<Revoked>, ApiError> {
    let revoked_at = s.dep.store.revoke_connection(&id).await?;
    // Its run in progress stops now; a batch it still sends is refused by the
    // store (the connection is revoked), so nothing is committed after this.
    s.runs.stop_connection(&id, STOP_WAIT).await;
    let conn = load_connection(&s, &id).await?;
    let setup = status_of(&s, &conn, None).await?;
    Ok(Json(Revoked {
        connection_id: id.clone(),
        connector_id: conn.connector_id,
        status: conn.status,
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

#[utoipa::path(post, path = "/v1/connections/{id}/reconnect", tag = "setup", operation_id = "reconnectConnection",
    params(("id" = String, Path, description = "The connection id")),
    responses((status = 200, description = "The setup path starts again; a setup run started when the credential is usable", body = Reconnected),
        (status = 404, description = "`not_found`: no such connection", body = ErrorBody),
        (status = 409, description = "`connection_state_conflict` (not revoked or paused), `connection_run_active`, `plugin_unavailable`, `run_already_active`, `connection_not_runnable`", body = ErrorBody),
        (status = 503, description = "`plugins_loading`: plugins are still compiling; retry (`Retry-After`)", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn reconnect(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<Reconnected>, ApiError> {
    let conn = load_connection(&s, &id).await?;
    let plugin = s.plugin(&conn.connector_id)?;
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

#[utoipa::path(delete, path = "/v1/connections/{id}", tag = "connections", operation_id = "deleteConnection",
    params(("id" = String, Path, description = "The connection id")),
    responses((status = 200, description = "The connection and everything it collected are erased", body = DeleteReport),
        (status = 404, description = "`not_found`: no such connection", body = ErrorBody),
        (status = 409, description = "`connection_run_active`: a run is in progress (revoke first, which stops it)", body = ErrorBody)),
    security(("owner" = [])))]
pub async fn delete(_: Owner, State(s): St, Path(id): Path<String>) -> Result<Json<DeleteReport>, ApiError> {
    // Refused while a run is in progress on any host sharing the store (the
    // owner revokes first, which stops it).
    Ok(Json(s.dep.store.delete_connection(&id, "connection.delete").await?))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"kind": "api_key", "fields": {"token": "…"}}))]
pub struct CredentialBody {
    /// Must equal the manifest's `setup.credential_capture.kind`.
    pub kind: String,
    /// Field name → value, for the fields the manifest declares.
    pub fields: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
pub struct Captured {
    pub connection_id: String,
    pub connector_id: String,
    pub credential: CredentialView,
    pub identity: Option<AccountIdentity>,
    /// `synchronous` (the probe accepted it) or `first_sync` (no probe).
    pub validation: Validation,
    pub rotated: bool,
    /// The first sync, started by itself for a draft.
    pub first_sync: Option<FirstSync>,
    pub setup: SetupStatus,
}

#[utoipa::path(put, path = "/v1/connections/{id}/credential", tag = "setup", operation_id = "putCredential",
    params(("id" = String, Path, description = "The connection id")),
    request_body = CredentialBody,
    responses((status = 201, description = "first capture", body = Captured), (status = 200, description = "rotation", body = Captured),
        (status = 400, description = "`invalid_body`, `credential_kind_mismatch`, `credential_too_large`, `unknown_credential_field`, `missing_credential`, `invalid_credential`, `nothing_to_save`, or the probe's refusal (`credential_rejected`, `credential_insufficient_scope`); nothing stored", body = ErrorBody),
        (status = 404, description = "`not_found`: no such connection", body = ErrorBody),
        (status = 409, description = "`credential_unsupported` (the connector takes no credential), `connection_inactive`, `credential_identity_mismatch`, `credential_unreadable`, `connection_state_conflict`, `plugin_unavailable`, `run_already_active`", body = ErrorBody),
        (status = 502, description = "`credential_probe_unavailable` (the provider did not answer), `credential_probe_failed` (the probe broke); nothing stored", body = ErrorBody),
        (status = 503, description = "`plugins_loading`: plugins are still compiling; retry (`Retry-After`)", body = ErrorBody)),
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
    let plugin = s.plugin(&conn.connector_id)?;
    let captured = s
        .credentials()
        .capture(
            &conn,
            &plugin,
            Candidate::new(b.kind, b.fields),
            CredentialSource::OwnerForm,
        )
        .await?;
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
        if captured.rotated {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        Json(Captured {
            connection_id: id.clone(),
            connector_id: conn.connector_id,
            credential: setup.credential.clone(),
            identity: captured.identity,
            validation: captured.validation,
            rotated: captured.rotated,
            first_sync,
            setup,
        }),
    ))
}
