//! Setting a connection up: the planner (what a connector needs, from its
//! manifest alone), the status projection (where one connection's setup
//! stands), and the one way a connection is created, as a draft, shared by
//! every owner surface (the owner API and the CLI). See docs/setup.md.

mod plan;
mod status;

pub use plan::*;
pub use status::*;

use crate::manifest::{LifecycleStatus, Manifest};
use crate::store::{
    BrowserSessionMode, Connection, ConnectionStatus, NewConnection, PendingInteraction, RunEndEvent, RunEvent, RunRow,
    RunStatus, StatusHistory, Store, StoreError, StoredCredential, TERMINAL_EVENTS, Trigger,
};
use serde_json::Value;
use std::collections::HashMap;

/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 200;

/// A display name holds at least one character that is not white space:
/// this class is exactly the characters `char::is_whitespace` accepts (the
/// Unicode `White_Space` property), so the OpenAPI document's `pattern`
/// and [`check_display_name`] agree on every string.
pub const DISPLAY_NAME_PATTERN: &str =
    "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// The JSON schema of a display name, from the same constants
/// [`check_display_name`] uses; `nullable` where `null` means "none".
pub fn display_name_schema(nullable: bool) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let ty = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    ObjectBuilder::new()
        .schema_type(ty)
        .min_length(Some(1))
        .max_length(Some(MAX_DISPLAY_NAME))
        .pattern(Some(DISPLAY_NAME_PATTERN))
        .description(Some(format!(
            "1 to {MAX_DISPLAY_NAME} characters, not only white space (stored trimmed)"
        )))
        .examples([serde_json::json!("Work calendar")])
        .build()
}

/// Why a connection cannot be created. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{connector_id} takes no new connections: {reason}")]
    Closed {
        connector_id: String,
        status: LifecycleStatus,
        reason: String,
    },
    #[error("{connector_id} cannot be set up here ({support_state:?}): {reason}")]
    NotSupported {
        connector_id: String,
        support_state: SupportState,
        reason: String,
    },
    #[error(transparent)]
    InvalidSettings(#[from] crate::manifest::SettingsError),
    #[error("{0} is a credential field; send it to the credential route, not in settings")]
    SecretInSettings(String),
    #[error("a display name has 1 to {MAX_DISPLAY_NAME} characters")]
    InvalidDisplayName,
    #[error("{connector_id} cannot keep its browser session {mode:?}: it offers {offered:?}")]
    BrowserSessionMode {
        connector_id: String,
        mode: BrowserSessionMode,
        offered: Vec<BrowserSessionMode>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SetupError {
    /// A stable code for the API and the CLI.
    pub fn code(&self) -> &'static str {
        match self {
            SetupError::Closed {
                status: LifecycleStatus::Removed,
                ..
            } => "connector_removed",
            SetupError::Closed { .. } => "connector_blocked_upstream",
            SetupError::NotSupported { .. } => "setup_not_supported",
            SetupError::InvalidSettings(_) => "invalid_settings",
            SetupError::SecretInSettings(_) => "secret_in_settings",
            SetupError::InvalidDisplayName => "invalid_display_name",
            SetupError::BrowserSessionMode { .. } => "browser_session_mode_not_offered",
            SetupError::Store(_) => "store_error",
        }
    }
}

/// Why new connections of this connector are refused (a tombstone, an upstream block).
pub fn closed(m: &Manifest) -> Option<SetupError> {
    let (status, reason) = m.closed_for_setup()?;
    Some(SetupError::Closed {
        connector_id: m.connector_id.clone(),
        status,
        reason,
    })
}

/// A display name of 1 to [`MAX_DISPLAY_NAME`] characters, not only white
/// space ([`DISPLAY_NAME_PATTERN`]).
pub fn check_display_name(name: &str) -> Result<(), SetupError> {
    if name.chars().all(char::is_whitespace) || name.chars().count() > MAX_DISPLAY_NAME {
        return Err(SetupError::InvalidDisplayName);
    }
    Ok(())
}

/// Settings are a JSON object that fits the connector's settings schema
/// and carries no credential field (those go to the credential route).
pub fn check_settings(manifest: &Manifest, settings: &Value) -> Result<(), SetupError> {
    let Some(fields) = settings.as_object() else {
        return Err(manifest.check_settings(settings).unwrap_err().into());
    };
    if let Some(f) = manifest
        .credential_fields()
        .iter()
        .find(|f| f.secret != Some(false) && fields.contains_key(&f.name))
    {
        return Err(SetupError::SecretInSettings(f.name.clone()));
    }
    manifest.check_settings(settings)?;
    Ok(())
}

/// A browser session mode is one the connector's setup plan offers
/// (`persistent` is also what every other connector has: nothing to keep).
pub fn check_browser_session(manifest: &Manifest, mode: BrowserSessionMode) -> Result<(), SetupError> {
    let offered = browser_session_modes(manifest);
    if mode == BrowserSessionMode::Persistent || offered.contains(&mode) {
        return Ok(());
    }
    Err(SetupError::BrowserSessionMode {
        connector_id: manifest.connector_id.clone(),
        mode,
        offered,
    })
}

/// What an owner asks for when creating a connection.
pub struct NewDraft {
    /// Non-secret settings (START.settings of every run); never a credential.
    pub settings: Value,
    pub display_name: Option<String>,
    /// For a browser-backed connector, whether its login material outlives
    /// each run (`ephemeral` only where the setup plan offers it).
    pub browser_session: BrowserSessionMode,
}

/// Create a connection of `manifest`'s connector as a draft: it becomes
/// active on its first accepted ingest. Refused (nothing written) when the
/// connector takes no new connections, cannot be set up on this host, or the
/// request carries a credential field in its settings. `env` answers whether
/// a deployment setting is present (for the setup plan).
pub async fn create_draft(
    store: &Store,
    manifest: &Manifest,
    draft: NewDraft,
    env: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Connection, SetupError> {
    if let Some(e) = closed(manifest) {
        return Err(e);
    }
    let p = plan(manifest, env);
    if !matches!(p.support_state, SupportState::Supported | SupportState::Experimental) {
        return Err(SetupError::NotSupported {
            connector_id: manifest.connector_id.clone(),
            support_state: p.support_state,
            reason: p.reason,
        });
    }
    check_settings(manifest, &draft.settings)?;
    if let Some(name) = &draft.display_name {
        check_display_name(name)?;
    }
    check_browser_session(manifest, draft.browser_session)?;
    store.upsert_connector(manifest, None).await?;
    Ok(store
        .create_connection(NewConnection {
            connection_id: None,
            connector_id: manifest.connector_id.clone(),
            // Every setup starts as a draft; the first ingest makes it active.
            status: ConnectionStatus::Draft,
            display_name: draft.display_name,
            binding_metadata: draft.settings,
            browser_session: draft.browser_session,
        })
        .await?)
}

/// Whether a deployment setting is present in the process environment
/// (provider-app settings only; never a provider account's credential).
pub fn env_present(key: &str) -> bool {
    std::env::var(key).is_ok_and(|v| !v.trim().is_empty())
}

/// Why a setup status cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("run {0} of this connection does not exist")]
    UnknownRun(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the projection needs to know of a connection besides the store:
/// from its connector's manifest and plugin.
#[derive(Clone, Debug, Default)]
pub struct StatusNeeds {
    /// Whether the connector needs a credential; `None` when its plugin is
    /// not loaded (the connection then needs the credential it has).
    pub needs_credential: Option<bool>,
    /// The connector drives the host's browser.
    pub browser_bound: bool,
    /// The credential field the connector can bootstrap, if any.
    pub bootstrap_field: Option<String>,
}

impl StatusNeeds {
    /// From a loaded connector's manifest; `browser_bound` from its grants.
    pub fn of(manifest: &Manifest, browser_bound: bool) -> Self {
        StatusNeeds {
            needs_credential: Some(manifest.needs_credential()),
            browser_bound,
            bootstrap_field: manifest.bootstraps().next().map(|(f, _)| f.to_owned()),
        }
    }
}

/// The timeline kinds the projection reads; no other entry is loaded.
const STATUS_EVENTS: [&str; 8] = [
    TERMINAL_EVENTS[0],
    TERMINAL_EVENTS[1],
    TERMINAL_EVENTS[2],
    "run.browser_session_verified",
    "run.browser_cleanup",
    "bootstrap.credential_stored",
    "bootstrap.credential_captured",
    "bootstrap.credential_refused",
];

/// Read what the projection needs from the store and project a connection's
/// setup status, for its last run or for `run_id`.
pub async fn status(
    store: &Store,
    conn: &Connection,
    needs: &StatusNeeds,
    run_id: Option<&str>,
) -> Result<SetupStatus, StatusError> {
    let mut one = statuses(store, &[(conn, needs)], run_id).await?;
    Ok(one.pop().expect("one status per connection"))
}

/// The setup status of the connection with this id, read with the
/// connection in one query (`Store::connection_for_status`); `needs` is
/// asked of the connection read. `None` when there is no such connection.
pub async fn status_by_id(
    store: &Store,
    id: &str,
    run_id: Option<&str>,
    needs: impl FnOnce(&Connection) -> StatusNeeds,
) -> Result<Option<(Connection, SetupStatus)>, StatusError> {
    let Some(read) = store.connection_for_status(id, run_id, &STATUS_EVENTS).await? else {
        return Ok(None);
    };
    let needs = needs(&read.connection);
    let conn = &read.connection;
    let credentials = read
        .credential
        .map(|c| (c.connection_id.clone(), c))
        .into_iter()
        .collect();
    let mut one = project_all(store, &[(conn, &needs)], credentials, (read.runs, read.events), run_id).await?;
    let status = one.pop().expect("one status per connection");
    Ok(Some((read.connection, status)))
}

/// The setup status of several connections (of their last runs, or of
/// `run_id`, which must be a run of one of them), in their order. A fixed
/// number of queries, each bounded however long the connections' histories.
pub async fn statuses(
    store: &Store,
    conns: &[(&Connection, &StatusNeeds)],
    run_id: Option<&str>,
) -> Result<Vec<SetupStatus>, StatusError> {
    let ids: Vec<&str> = conns.iter().map(|(c, _)| c.connection_id.as_str()).collect();
    let credentials = store.credentials_of(&ids).await?;
    let history = store.status_history(&ids, run_id, &STATUS_EVENTS).await?;
    project_all(store, conns, credentials, history, run_id).await
}

async fn project_all(
    store: &Store,
    conns: &[(&Connection, &StatusNeeds)],
    credentials: HashMap<String, StoredCredential>,
    (runs, events): StatusHistory,
    run_id: Option<&str>,
) -> Result<Vec<SetupStatus>, StatusError> {
    if let Some(id) = run_id
        && !runs.iter().any(|r| r.run_id == id)
    {
        return Err(StatusError::UnknownRun(id.to_owned()));
    }
    // Questions are read only where the projection shows them: the running
    // run of a browser-backed or bootstrapping connection.
    let asks = |c: &str| {
        conns
            .iter()
            .any(|(k, n)| k.connection_id == c && (n.browser_bound || n.bootstrap_field.is_some()))
    };
    let waiting: Vec<&str> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Running && asks(&r.connection_id))
        .map(|r| r.run_id.as_str())
        .collect();
    let pending = store.pending_of_runs(&waiting).await?;
    let browser_ids: Vec<&str> = conns
        .iter()
        .filter(|(_, n)| n.browser_bound)
        .map(|(c, _)| c.connection_id.as_str())
        .collect();
    let profiles = store.profiles_stored(&browser_ids).await?;
    let history = History { events, pending };
    Ok(conns
        .iter()
        .map(|(conn, needs)| {
            let credential = credentials.get(&conn.connection_id);
            let of_conn: Vec<&RunRow> = runs.iter().filter(|r| r.connection_id == conn.connection_id).collect();
            project_one(
                conn,
                needs,
                credential,
                &of_conn,
                &history,
                profiles.contains(&conn.connection_id),
                run_id,
            )
        })
        .collect())
}

/// The bounded slice of the connections' timelines and questions.
struct History {
    events: HashMap<String, Vec<RunEvent>>,
    pending: HashMap<String, Vec<PendingInteraction>>,
}

impl History {
    fn events(&self, run_id: &str) -> &[RunEvent] {
        self.events.get(run_id).map_or(&[], Vec::as_slice)
    }

    fn has(&self, run_id: &str, kind: &str) -> bool {
        self.events(run_id).iter().any(|e| e.kind == kind)
    }

    fn last(&self, run_id: &str, kind: &str) -> Option<&RunEvent> {
        self.events(run_id).iter().rev().find(|e| e.kind == kind)
    }

    /// How the run ended: its terminal timeline entry, read back typed.
    fn terminal(&self, run_id: &str) -> Option<RunEndEvent> {
        self.events(run_id)
            .iter()
            .rev()
            .find(|e| TERMINAL_EVENTS.contains(&e.kind.as_str()))
            .and_then(|e| serde_json::from_value(e.data.clone()).ok())
    }

    /// The question the run waits on now (its newest).
    fn asking(&self, run_id: &str) -> Option<&PendingInteraction> {
        self.pending.get(run_id).and_then(|q| q.last())
    }
}

/// One connection's status from its candidate runs (newest first).
fn project_one(
    conn: &Connection,
    needs: &StatusNeeds,
    credential: Option<&StoredCredential>,
    all_runs: &[&RunRow],
    history: &History,
    profile_stored: bool,
    run_id: Option<&str>,
) -> SetupStatus {
    // A credential bootstrap collects nothing: the collection status reads
    // the other runs, the bootstrap view reads it (unless asked for by id).
    let bootstrap = needs
        .bootstrap_field
        .as_deref()
        .map(|field| bootstrap_inputs(field, all_runs, history));
    let runs: Vec<&RunRow> = all_runs
        .iter()
        .copied()
        .filter(|r| r.trigger != Trigger::Bootstrap || run_id == Some(r.run_id.as_str()))
        .collect();
    let run = match run_id {
        Some(id) => runs.iter().copied().find(|r| r.run_id == id),
        None => runs.first().copied(),
    };
    let terminal = run.and_then(|r| history.terminal(&r.run_id));
    let browser = needs.browser_bound.then(|| BrowserInputs {
        profile_stored,
        pending: run
            .and_then(|r| history.asking(&r.run_id))
            .map(|q| (q.kind, q.interaction_id.clone())),
        verified: run.is_some_and(|r| history.has(&r.run_id, "run.browser_session_verified")),
        cleanup: run
            .and_then(|r| history.last(&r.run_id, "run.browser_cleanup"))
            .map(|e| e.data.clone()),
    });
    // The streams left behind come from the last run that finished: the one
    // asked for, else the newest finished one (the run before a running one).
    let finished = match run {
        Some(r) if run_id.is_some() || r.status.is_terminal() => Some(r),
        _ => runs.iter().copied().find(|r| r.status.is_terminal()),
    };
    let finished_terminal = finished.and_then(|r| history.terminal(&r.run_id));
    project(&StatusInputs {
        connection: conn,
        needs_credential: needs.needs_credential.unwrap_or(credential.is_some()),
        credential,
        last_run: run,
        terminal: terminal.as_ref(),
        browser: browser.as_ref(),
        last_finished: finished.zip(finished_terminal.as_ref()),
        bootstrap: bootstrap.as_ref(),
    })
}

/// The last bootstrap of a connection and what became of its credential.
fn bootstrap_inputs(field: &str, runs: &[&RunRow], history: &History) -> BootstrapInputs {
    let last = runs.iter().find(|r| r.trigger == Trigger::Bootstrap);
    let mut inputs = BootstrapInputs {
        field: field.to_owned(),
        last: last.map(|r| (*r).clone()),
        error_code: None,
        stored: false,
        refused: None,
        captured: false,
        pending_interaction: None,
    };
    let Some(run) = last else { return inputs };
    let id = run.run_id.as_str();
    inputs.stored = history.has(id, "bootstrap.credential_stored");
    inputs.captured = history.has(id, "bootstrap.credential_captured");
    inputs.refused = history.last(id, "bootstrap.credential_refused").map(|e| {
        let text = |k: &str| e.data.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        (text("code"), text("message"))
    });
    inputs.error_code = history.terminal(id).and_then(|t| t.error_code);
    if run.status == RunStatus::Running {
        inputs.pending_interaction = history.asking(id).map(|q| q.interaction_id.clone());
    }
    inputs
}
