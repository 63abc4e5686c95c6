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
    BrowserSessionMode, Connection, ConnectionStatus, NewConnection, RunEndEvent, RunRow, RunStatus, Store, StoreError,
    TERMINAL_EVENTS, Trigger,
};
use serde_json::Value;

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

/// Read what the projection needs from the store and project a connection's
/// setup status, for its last run or for `run_id`. `needs_credential` comes
/// from the connector's manifest.
pub async fn status(
    store: &Store,
    conn: &Connection,
    needs_credential: bool,
    browser_bound: bool,
    bootstrap_field: Option<&str>,
    run_id: Option<&str>,
) -> Result<SetupStatus, StatusError> {
    let credential = store.credential(&conn.connection_id).await?;
    let all_runs = store.runs_of(&conn.connection_id).await?;
    // A credential bootstrap collects nothing: the collection status reads
    // the other runs, the bootstrap view reads it (unless asked for by id).
    let bootstrap = match bootstrap_field {
        Some(field) => Some(bootstrap_inputs(store, field, &all_runs).await?),
        None => None,
    };
    let runs: Vec<RunRow> = all_runs
        .into_iter()
        .filter(|r| r.trigger != Trigger::Bootstrap || run_id == Some(r.run_id.as_str()))
        .collect();
    let run = match run_id {
        Some(id) => Some(
            runs.iter()
                .find(|r| r.run_id == id)
                .ok_or_else(|| StatusError::UnknownRun(id.to_owned()))?,
        ),
        None => runs.first(),
    };
    let events = match run {
        Some(r) => store.events(&r.run_id).await?,
        None => Vec::new(),
    };
    // How the run ended: its terminal timeline entry, read back typed.
    let terminal: Option<RunEndEvent> = events
        .iter()
        .rev()
        .find(|e| TERMINAL_EVENTS.contains(&e.kind.as_str()))
        .and_then(|e| serde_json::from_value(e.data.clone()).ok());
    let browser = match (browser_bound, run) {
        (false, _) => None,
        (true, run) => {
            let pending = match run {
                Some(r) => store.pending_interactions(Some(&r.run_id), None).await?,
                None => Vec::new(),
            };
            Some(BrowserInputs {
                profile_stored: store.browser_profile(&conn.connection_id).await?.is_some(),
                pending: pending.last().map(|q| (q.kind, q.interaction_id.clone())),
                verified: events.iter().any(|e| e.kind == "run.browser_session_verified"),
                cleanup: events
                    .iter()
                    .rev()
                    .find(|e| e.kind == "run.browser_cleanup")
                    .map(|e| e.data.clone()),
            })
        }
    };
    // The streams left behind come from the last run that finished: the one
    // asked for, else the newest finished one (the run before a running one).
    let finished = match run {
        Some(r) if run_id.is_some() || r.status.is_terminal() => Some(r),
        _ => runs.iter().find(|r| r.status.is_terminal()),
    };
    let finished_terminal = match finished {
        Some(r) if Some(&r.run_id) == run.map(|r| &r.run_id) => terminal.clone(),
        Some(r) => terminal_of(store, &r.run_id).await?,
        None => None,
    };
    Ok(project(&StatusInputs {
        connection: conn,
        needs_credential,
        credential: credential.as_ref(),
        last_run: run,
        terminal: terminal.as_ref(),
        browser: browser.as_ref(),
        last_finished: finished.zip(finished_terminal.as_ref()),
        bootstrap: bootstrap.as_ref(),
    }))
}

/// The last bootstrap of a connection and what became of its credential.
async fn bootstrap_inputs(store: &Store, field: &str, runs: &[RunRow]) -> Result<BootstrapInputs, StoreError> {
    let last = runs.iter().find(|r| r.trigger == Trigger::Bootstrap).cloned();
    let mut inputs = BootstrapInputs {
        field: field.to_owned(),
        last: None,
        error_code: None,
        stored: false,
        refused: None,
        captured: false,
        pending_interaction: None,
    };
    let Some(run) = last else { return Ok(inputs) };
    let events = store.events(&run.run_id).await?;
    inputs.stored = events.iter().any(|e| e.kind == "bootstrap.credential_stored");
    inputs.captured = events.iter().any(|e| e.kind == "bootstrap.credential_captured");
    inputs.refused = events
        .iter()
        .find(|e| e.kind == "bootstrap.credential_refused")
        .map(|e| {
            let text = |k: &str| e.data.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            (text("code"), text("message"))
        });
    inputs.error_code = events
        .iter()
        .rev()
        .find(|e| TERMINAL_EVENTS.contains(&e.kind.as_str()))
        .and_then(|e| serde_json::from_value::<RunEndEvent>(e.data.clone()).ok())
        .and_then(|t| t.error_code);
    if run.status == RunStatus::Running {
        inputs.pending_interaction = store
            .pending_interactions(Some(&run.run_id), None)
            .await?
            .last()
            .map(|q| q.interaction_id.clone());
    }
    inputs.last = Some(run);
    Ok(inputs)
}

/// How a run ended: its terminal timeline entry, read back typed.
async fn terminal_of(store: &Store, run_id: &str) -> Result<Option<RunEndEvent>, StoreError> {
    Ok(store
        .events(run_id)
        .await?
        .into_iter()
        .rev()
        .find(|e| TERMINAL_EVENTS.contains(&e.kind.as_str()))
        .and_then(|e| serde_json::from_value(e.data).ok()))
}
