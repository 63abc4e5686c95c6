//! The setup-status projection: where one connection's setup stands, from
//! its stored state (connection, credential, last run and how it ended).
//! Projected, never stored as a parallel state; never carries a secret.

use super::plan::{NextStep, NextStepKind};
use crate::protocol::{CollectionMode, RecoveryAction};
use crate::store::{
    BrowserSessionMode, CommitStatus, Connection, ConnectionStatus, CredentialStatus, RunEndEvent, RunRow, RunStatus,
    StoredCredential, Trigger,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Where a connection's setup stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SetupState {
    AwaitingCredential,
    FirstSyncPending,
    FirstSyncRunning,
    FirstSyncFailed,
    FirstSyncVerifiedEmpty,
    FirstSyncUnverifiedZero,
    Active,
    Paused,
    Revoked,
}

impl SetupState {
    /// Setup is still under way (the owner or the first sync has work to do).
    pub fn pending(self) -> bool {
        matches!(
            self,
            SetupState::AwaitingCredential | SetupState::FirstSyncPending | SetupState::FirstSyncRunning
        )
    }
}

/// Whether the connection needs the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Healthy,
    /// Collecting, but the last run left streams behind that later runs
    /// retry by themselves (a rate limit, a provider outage on one stream):
    /// see `streams_behind`.
    Behind,
    Idle,
    NeedsAttention,
}

/// When a stream left behind is collected again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryWhen {
    /// The next run reads it again from its previous checkpoint (not
    /// before `not_before`, when the provider named a time).
    NextRun,
    /// After the owner acts (a permission, a setting at the provider); the
    /// next run reads it again.
    AfterOwnerAction,
    /// After the owner enters a new credential.
    AfterNewCredential,
    /// After the connector is upgraded.
    AfterConnectorUpgrade,
    /// After the provider lifts a block.
    AfterUpstreamUnblock,
}

impl RetryWhen {
    /// What a recovery action means for the owner.
    pub fn of(action: RecoveryAction) -> Self {
        match action {
            RecoveryAction::RetryByRuntime | RecoveryAction::Unknown => RetryWhen::NextRun,
            RecoveryAction::RefreshCredentials => RetryWhen::AfterNewCredential,
            RecoveryAction::RetryOnConnectorUpgrade | RecoveryAction::UpdateSelector => {
                RetryWhen::AfterConnectorUpgrade
            }
            RecoveryAction::UpstreamUnblock => RetryWhen::AfterUpstreamUnblock,
            RecoveryAction::ManualActionRequired | RecoveryAction::NotRetriable => RetryWhen::AfterOwnerAction,
        }
    }

    /// Whether runs alone bring the stream back.
    pub fn by_itself(self) -> bool {
        self == RetryWhen::NextRun
    }
}

/// A stream the last finished run left behind: which, why, and when it is
/// collected again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct StreamBehindView {
    pub stream: String,
    /// `rate_limited`, `forbidden`, `stream_collection_failed`,
    /// `coverage_missing`, … (the connector's or the host's reason).
    pub reason: String,
    pub message: Option<String>,
    pub retry: RetryWhen,
    /// Not before this instant (Unix ms), when the provider said.
    pub not_before: Option<i64>,
    /// The run that left it behind.
    pub run_id: String,
}

/// How a first sync that succeeded without records is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SetupDisposition {
    /// Nothing was missed: the account is empty.
    VerifiedEmpty,
    /// Zero records, but the run cannot prove nothing was missed.
    UnverifiedZero,
}

/// Credential metadata an owner may see. Never the secret.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct CredentialView {
    pub present: bool,
    pub credential_kind: Option<String>,
    pub status: Option<CredentialStatus>,
    pub fields: Vec<String>,
    pub captured_at: Option<i64>,
    pub rotated_at: Option<i64>,
    /// A keyed HMAC: equal for equal secrets under one vault key, useless without it.
    pub fingerprint: Option<String>,
}

impl CredentialView {
    pub fn of(c: Option<&StoredCredential>) -> Self {
        match c {
            None => CredentialView {
                present: false,
                credential_kind: None,
                status: None,
                fields: Vec::new(),
                captured_at: None,
                rotated_at: None,
                fingerprint: None,
            },
            Some(c) => CredentialView {
                present: true,
                credential_kind: Some(c.sealed.kind.clone()),
                status: Some(c.status),
                fields: c.sealed.field_names.clone(),
                captured_at: Some(c.captured_at),
                rotated_at: c.rotated_at,
                fingerprint: Some(c.sealed.fingerprint.clone()),
            },
        }
    }
}

/// A run as setup status and run lists show it.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct RunSummary {
    pub run_id: String,
    pub status: RunStatus,
    pub trigger: Trigger,
    #[schema(schema_with = crate::store::collection_mode_schema)]
    pub collection_mode: CollectionMode,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub records_emitted: i64,
    pub records_written: i64,
    pub failure_reason: Option<String>,
}

impl RunSummary {
    pub fn of(r: &RunRow) -> Self {
        RunSummary {
            run_id: r.run_id.clone(),
            status: r.status,
            trigger: r.trigger,
            collection_mode: r.collection_mode,
            started_at: r.started_at,
            finished_at: r.finished_at,
            records_emitted: r.records_emitted,
            records_written: r.records_written,
            failure_reason: r.failure_reason.clone(),
        }
    }
}

/// Where a browser-backed connection's browser session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BrowserSessionState {
    /// No run has driven the browser yet.
    NotStarted,
    /// A run is signing in (the account is not verified yet).
    SigningIn,
    /// The run waits for the owner's login (a `credentials` question).
    AwaitingLogin,
    /// The run waits for a one-time code (an `otp` question).
    AwaitingOtp,
    /// The run waits for the owner to do something on the page (a
    /// `manual_action` question, with a screenshot).
    AwaitingOwnerAction,
    /// The account is verified; the run collects.
    Collecting,
    /// The last run's browser was logged into another account than the
    /// connection's: nothing was kept and its session was discarded.
    SessionMismatch,
    /// The last run ended and its browser left nothing behind.
    CleanupDone,
    /// The last run ended but its teardown could not confirm that nothing
    /// is left (see `cleanup`).
    CleanupIncomplete,
}

/// The browser side of a browser-backed connection's setup status. Never
/// a cookie or any other login material: only whether some is kept.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct BrowserSessionView {
    pub mode: BrowserSessionMode,
    pub state: BrowserSessionState,
    /// Sealed login material is kept for the next run.
    pub profile_stored: bool,
    /// The pending question the run waits on, when it does.
    pub interaction_id: Option<String>,
    /// The last run's cleanup status, as its timeline recorded it.
    #[schema(value_type = Option<Object>)]
    pub cleanup: Option<Value>,
}

/// What the projection reads of a browser-backed connection.
#[derive(Clone, Debug, Default)]
pub struct BrowserInputs {
    pub profile_stored: bool,
    /// The run's pending question: kind and id.
    pub pending: Option<(crate::protocol::InteractionKind, String)>,
    /// The run reported an account the host accepted.
    pub verified: bool,
    /// The run's `run.browser_cleanup` entry.
    pub cleanup: Option<Value>,
}

fn browser_view(c: &Connection, b: &BrowserInputs, running: bool, reason: Option<&str>) -> BrowserSessionView {
    use crate::protocol::InteractionKind as K;
    use BrowserSessionState as S;
    let state = if running {
        match &b.pending {
            Some((K::Credentials, _)) => S::AwaitingLogin,
            Some((K::Otp, _)) => S::AwaitingOtp,
            Some((K::ManualAction, _)) => S::AwaitingOwnerAction,
            None if b.verified => S::Collecting,
            None => S::SigningIn,
        }
    } else if reason == Some("session_account_mismatch") {
        S::SessionMismatch
    } else {
        match b.cleanup.as_ref().map(|c| c["complete"] == Value::Bool(true)) {
            Some(true) => S::CleanupDone,
            Some(false) => S::CleanupIncomplete,
            None => S::NotStarted,
        }
    };
    BrowserSessionView {
        mode: c.browser_session,
        state,
        profile_stored: b.profile_stored,
        interaction_id: b.pending.as_ref().filter(|_| running).map(|(_, id)| id.clone()),
        cleanup: b.cleanup.clone(),
    }
}

/// Why setup or the last run needs the owner, and what to do.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct LastError {
    pub reason: String,
    pub remediation: String,
}

/// Where one connection's setup stands.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct SetupStatus {
    pub object: String,
    pub connection_id: String,
    pub connector_id: String,
    pub display_name: Option<String>,
    /// The stored status.
    pub status: ConnectionStatus,
    /// Projected from the status, the credential and the runs.
    pub setup_state: SetupState,
    pub health_state: HealthState,
    pub pending: bool,
    pub running: bool,
    #[schema(value_type = Option<Object>)]
    pub account_identity: Option<Value>,
    pub credential: CredentialView,
    pub run: Option<RunSummary>,
    pub last_error: Option<LastError>,
    /// The streams the last finished run left behind, and when each is
    /// collected again; empty when every stream in its scope is up to date.
    pub streams_behind: Vec<StreamBehindView>,
    /// For a draft whose first sync succeeded without records.
    pub terminal_setup_disposition: Option<SetupDisposition>,
    pub created_at: i64,
    pub updated_at: i64,
    pub activated_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub next_step: NextStep,
    /// For a browser-backed connector: where its browser session stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<BrowserSessionView>,
    /// For a connector that declares a credential bootstrap: its last
    /// attempt and what to do next (retry, or paste).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapView>,
}

/// Where a credential bootstrap stands ("create the token for me").
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct BootstrapView {
    /// The credential field it creates.
    pub field: String,
    /// The last bootstrap run, when there was one.
    pub run_id: Option<String>,
    /// `not_started`, `running`, `awaiting_owner`, `stored`, `failed`.
    pub state: String,
    /// Why the last attempt failed: the connector's code (`login_failed`,
    /// `otp_rejected`, `page_changed`, `not_workspace_owner`,
    /// `membership_required`, `rate_limited`, …) or the host's
    /// (`credential_rejected`, `nothing_captured`, `browser_unavailable`).
    pub error_code: Option<String>,
    pub message: Option<String>,
    /// The question the bootstrap waits on (answer it at
    /// `POST /v1/interactions/{id}`).
    pub interaction_id: Option<String>,
    /// Start (again) the bootstrap: `POST /v1/connections/{id}/bootstrap`.
    pub retry: NextStep,
    /// Or paste the credential: `PUT /v1/connections/{id}/credential`.
    pub paste: NextStep,
}

/// What the bootstrap view is projected from.
pub struct BootstrapInputs {
    pub field: String,
    pub last: Option<RunRow>,
    /// Its terminal event's DONE error code, and its timeline's verdict
    /// on the credential (`bootstrap.credential_stored` / `_refused`).
    pub error_code: Option<String>,
    pub stored: bool,
    pub refused: Option<(String, String)>,
    /// The bootstrap handed a credential over (its verdict may follow).
    pub captured: bool,
    pub pending_interaction: Option<String>,
}

/// Codes after which trying again can help; after the others, paste.
const BOOTSTRAP_RETRYABLE: &[&str] = &[
    "login_failed",
    "otp_rejected",
    "rate_limited",
    "browser_timeout",
    "browser_failed",
    "interaction_timeout",
    "cancelled",
];

fn bootstrap_view(id: &str, b: &BootstrapInputs) -> BootstrapView {
    let retry = NextStep::new(
        NextStepKind::BootstrapCredential,
        Some("POST"),
        Some(format!("/v1/connections/{id}/bootstrap")),
        "let the host create the credential in its browser",
    );
    let paste = NextStep::new(
        NextStepKind::CaptureCredential,
        Some("PUT"),
        Some(format!("/v1/connections/{id}/credential")),
        "paste the credential yourself",
    );
    let (state, code, message) = match &b.last {
        None => ("not_started", None, None),
        Some(r) if r.status == RunStatus::Running => {
            let state = if b.pending_interaction.is_some() {
                "awaiting_owner"
            } else {
                "running"
            };
            (state, None, None)
        }
        Some(_) if b.stored => ("stored", None, None),
        Some(_) if b.refused.is_some() => {
            let (code, message) = b.refused.clone().unwrap_or_default();
            ("failed", Some(code), Some(message))
        }
        // Handed over; the credentials service has not answered yet.
        Some(r) if r.status == RunStatus::Succeeded && b.captured => ("running", None, None),
        Some(r) if r.status == RunStatus::Succeeded => (
            "failed",
            Some("nothing_captured".to_owned()),
            Some("the bootstrap ended without handing a credential over".to_owned()),
        ),
        Some(r) => (
            "failed",
            b.error_code.clone().or_else(|| r.failure_reason.clone()),
            r.failure_message.clone(),
        ),
    };
    let (retry, paste) = match code.as_deref() {
        Some(c) if !BOOTSTRAP_RETRYABLE.contains(&c) => (
            NextStep {
                reason: format!(
                    "{}; this attempt cannot succeed as is ({c}): paste instead",
                    retry.reason
                ),
                ..retry
            },
            paste,
        ),
        _ => (retry, paste),
    };
    BootstrapView {
        field: b.field.clone(),
        run_id: b.last.as_ref().map(|r| r.run_id.clone()),
        state: state.into(),
        error_code: code,
        message,
        interaction_id: b.pending_interaction.clone(),
        retry,
        paste,
    }
}

/// What the projection reads.
pub struct StatusInputs<'a> {
    pub connection: &'a Connection,
    pub needs_credential: bool,
    pub credential: Option<&'a StoredCredential>,
    pub last_run: Option<&'a RunRow>,
    /// How the last run ended (its terminal timeline event), once it has.
    pub terminal: Option<&'a RunEndEvent>,
    /// For a browser-backed connector: what its browser left.
    pub browser: Option<&'a BrowserInputs>,
    /// The last *finished* run and how it ended: the same as `last_run` and
    /// `terminal` once that has ended, the run before it while it runs.
    pub last_finished: Option<(&'a RunRow, &'a RunEndEvent)>,
    /// For a connector that declares a credential bootstrap.
    pub bootstrap: Option<&'a BootstrapInputs>,
}

const REENTER: &str = "Enter the provider credential again (PUT /v1/connections/{id}/credential); the first sync then \
                       starts again.";
const RETRY: &str = "Start the first sync again (POST /v1/connections/{id}/runs). If it keeps failing, enter the \
                     provider credential again.";
const ZERO: &str = "The first sync finished without records and could not prove the account empty. Check the account \
                    and start the first sync again if you expected data.";
const REJECTED_ACTIVE: &str = "The provider refused the stored credential. Enter a new one (PUT \
                               /v1/connections/{id}/credential); collection resumes on the next run.";
const FAILED_ACTIVE: &str = "The last run failed. Start a run again (POST /v1/connections/{id}/runs); if it keeps \
                             failing, enter the provider credential again.";
const MISMATCH: &str = "The browser was signed into another account than this connection's. Nothing was kept and its \
                        session was discarded. Check the login of this connection (PUT /v1/connections/{id}/credential) \
                        and start a run again; to collect another account, create another connection.";
const NOT_ESTABLISHED: &str = "The browser session was not established in time (the sign-in did not finish). Start a \
                               run again and answer its questions; if it keeps failing, check the login.";

/// The remediation a failure reason calls for, when it is a specific one.
fn specific_remediation(reason: &str) -> Option<&'static str> {
    match reason {
        "session_account_mismatch" => Some(MISMATCH),
        "browser_session_timeout" => Some(NOT_ESTABLISHED),
        _ => None,
    }
}
const STREAMS_NEED_OWNER: &str = "The last run could not collect {streams}: see streams_behind for the provider's \
                                  reason (a permission or a setting at the provider). The next run tries again.";

fn credential_like(reason: &str) -> bool {
    ["credential", "auth", "password", "login", "token"]
        .iter()
        .any(|w| reason.contains(w))
}

/// Project a connection's setup status. Writes nothing.
pub fn project(i: &StatusInputs<'_>) -> SetupStatus {
    use NextStepKind as K;
    let c = i.connection;
    let id = &c.connection_id;
    let fill = |t: &str| t.replace("{id}", id);
    let last_status = i.last_run.map(|r| r.status);
    let running = last_status == Some(RunStatus::Running);
    let has_credential = i.credential.is_some();
    let cred_status = i.credential.map(|c| c.status);
    let last_failed = matches!(last_status, Some(RunStatus::Failed | RunStatus::Cancelled));
    let last_ok = last_status == Some(RunStatus::Succeeded);
    // The connector's own error code (DONE.error.code) says more than the
    // host's failure reason (`connector_reported_failed`).
    let reason = i
        .terminal
        .and_then(|t| t.error_code.clone())
        .or_else(|| i.last_run.and_then(|r| r.failure_reason.clone()))
        .unwrap_or_else(|| "first_sync_failed".into());
    let runs_url = Some(format!("/v1/connections/{id}/runs"));
    let credential_url = Some(format!("/v1/connections/{id}/credential"));
    let streams_behind = behind(i.last_finished);
    let need_owner: Vec<&str> = streams_behind
        .iter()
        .filter(|b| !b.retry.by_itself())
        .map(|b| b.stream.as_str())
        .collect();

    let mut last_error = None;
    let mut disposition = None;
    let (setup_state, health, next) = match c.status {
        ConnectionStatus::Revoked => (
            SetupState::Revoked,
            HealthState::Idle,
            NextStep::new(
                K::Reconnect,
                Some("POST"),
                Some(format!("/v1/connections/{id}/reconnect")),
                "collection is stopped; reconnect to start the setup path again",
            ),
        ),
        ConnectionStatus::Paused => (
            SetupState::Paused,
            HealthState::Idle,
            NextStep::new(K::None, None, None, "paused"),
        ),
        ConnectionStatus::Active => {
            let rejected = cred_status == Some(CredentialStatus::Rejected)
                || (last_failed && reason == "credential_rejected")
                || (i.needs_credential && !has_credential);
            if rejected {
                last_error = Some(LastError {
                    reason: "credential_rejected".into(),
                    remediation: fill(REJECTED_ACTIVE),
                });
                (
                    SetupState::Active,
                    HealthState::NeedsAttention,
                    NextStep::new(
                        K::CaptureCredential,
                        Some("PUT"),
                        credential_url,
                        "the credential needs replacing",
                    ),
                )
            } else if last_failed && !running {
                last_error = Some(LastError {
                    reason: reason.clone(),
                    remediation: fill(specific_remediation(&reason).unwrap_or(FAILED_ACTIVE)),
                });
                (
                    SetupState::Active,
                    HealthState::NeedsAttention,
                    NextStep::new(K::RunConnection, Some("POST"), runs_url, "the last run failed"),
                )
            } else if !need_owner.is_empty() {
                last_error = Some(LastError {
                    reason: streams_behind
                        .iter()
                        .find(|b| !b.retry.by_itself())
                        .map_or_else(|| "streams_behind".into(), |b| b.reason.clone()),
                    remediation: STREAMS_NEED_OWNER.replace("{streams}", &need_owner.join(", ")),
                });
                (
                    SetupState::Active,
                    HealthState::NeedsAttention,
                    NextStep::new(
                        K::RunConnection,
                        Some("POST"),
                        runs_url,
                        "streams are behind and need you",
                    ),
                )
            } else if !streams_behind.is_empty() {
                (
                    SetupState::Active,
                    HealthState::Behind,
                    NextStep::new(
                        K::RunConnection,
                        Some("POST"),
                        runs_url,
                        "collecting; the next run retries the streams behind",
                    ),
                )
            } else {
                (
                    SetupState::Active,
                    HealthState::Healthy,
                    NextStep::new(K::RunConnection, Some("POST"), runs_url, "collecting"),
                )
            }
        }
        ConnectionStatus::Draft => {
            if i.needs_credential && !has_credential {
                (
                    SetupState::AwaitingCredential,
                    HealthState::Idle,
                    NextStep::new(
                        K::CaptureCredential,
                        Some("PUT"),
                        credential_url,
                        "enter the credential",
                    ),
                )
            } else if running {
                (
                    SetupState::FirstSyncRunning,
                    HealthState::Idle,
                    NextStep::new(
                        K::WaitForFirstSync,
                        Some("GET"),
                        Some(format!("/v1/connections/{id}/setup-status")),
                        "the first sync is running",
                    ),
                )
            } else if last_failed {
                let reenter = credential_like(&reason) || cred_status == Some(CredentialStatus::Rejected);
                last_error = Some(LastError {
                    reason: reason.clone(),
                    remediation: fill(specific_remediation(&reason).unwrap_or(if reenter { REENTER } else { RETRY })),
                });
                let step = if reenter {
                    NextStep::new(
                        K::CaptureCredential,
                        Some("PUT"),
                        credential_url,
                        "re-enter the credential",
                    )
                } else {
                    NextStep::new(K::StartFirstSync, Some("POST"), runs_url, "retry the first sync")
                };
                (SetupState::FirstSyncFailed, HealthState::NeedsAttention, step)
            } else if last_ok {
                let proven_empty = i.terminal.is_some_and(|t| {
                    t.records_emitted == 0
                        && t.known_gaps.is_empty()
                        && matches!(
                            t.checkpoint_commit_status,
                            CommitStatus::Committed | CommitStatus::Disabled
                        )
                });
                let step = NextStep::new(K::StartFirstSync, Some("POST"), runs_url, "retry the first sync");
                if proven_empty {
                    disposition = Some(SetupDisposition::VerifiedEmpty);
                    (SetupState::FirstSyncVerifiedEmpty, HealthState::NeedsAttention, step)
                } else {
                    disposition = Some(SetupDisposition::UnverifiedZero);
                    last_error = Some(LastError {
                        reason: "first_sync_unverified_zero".into(),
                        remediation: fill(ZERO),
                    });
                    (SetupState::FirstSyncUnverifiedZero, HealthState::NeedsAttention, step)
                }
            } else {
                (
                    SetupState::FirstSyncPending,
                    HealthState::Idle,
                    NextStep::new(K::StartFirstSync, Some("POST"), runs_url, "start the first sync"),
                )
            }
        }
    };
    // Where the owner must supply a credential and the connector can make
    // it, the next step is the bootstrap (the paste form stays in `bootstrap.paste`).
    let bootstrap = i.bootstrap.map(|b| bootstrap_view(id, b));
    let next = match &bootstrap {
        Some(b) if next.kind == K::CaptureCredential && b.state != "running" && b.state != "awaiting_owner" => {
            NextStep {
                reason: format!("{}: the host can create it for you (or paste it)", next.reason),
                ..b.retry.clone()
            }
        }
        _ => next,
    };
    SetupStatus {
        object: "connection_setup_status".into(),
        connection_id: id.clone(),
        connector_id: c.connector_id.clone(),
        display_name: c.display_name.clone(),
        status: c.status,
        pending: setup_state.pending(),
        setup_state,
        health_state: health,
        running,
        account_identity: c.account_identity.clone(),
        credential: CredentialView::of(i.credential),
        run: i.last_run.map(RunSummary::of),
        last_error,
        streams_behind,
        terminal_setup_disposition: disposition,
        created_at: c.created_at,
        updated_at: c.updated_at,
        activated_at: c.activated_at,
        revoked_at: c.revoked_at,
        next_step: next,
        browser: i.browser.map(|b| {
            let failure = i.last_run.and_then(|r| r.failure_reason.as_deref());
            browser_view(c, b, running, failure)
        }),
        bootstrap,
    }
}

/// The streams a finished run left behind, as the owner sees them.
fn behind(last_finished: Option<(&RunRow, &RunEndEvent)>) -> Vec<StreamBehindView> {
    let Some((run, ended)) = last_finished else {
        return Vec::new();
    };
    ended
        .streams_behind
        .iter()
        .map(|b| StreamBehindView {
            stream: b.stream.clone(),
            reason: b.reason.clone(),
            message: b.message.clone(),
            retry: RetryWhen::of(b.recovery),
            not_before: b.retry_not_before,
            run_id: run.run_id.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{GapSummary, StreamBehind};
    use serde_json::json;

    fn conn(status: ConnectionStatus) -> Connection {
        Connection {
            connection_id: "con_1".into(),
            connector_id: "x".into(),
            status,
            display_name: None,
            account_identity: None,
            binding_metadata: json!({}),
            created_at: 1,
            updated_at: 1,
            revoked_at: None,
            activated_at: None,
            browser_session: Default::default(),
        }
    }

    fn run(status: RunStatus, reason: Option<&str>) -> RunRow {
        RunRow {
            run_id: "run_1".into(),
            connection_id: "con_1".into(),
            connector_id: "x".into(),
            status,
            trigger: Trigger::Setup,
            collection_mode: CollectionMode::Incremental,
            started_at: 1,
            finished_at: None,
            records_emitted: 0,
            records_written: 0,
            failure_reason: reason.map(str::to_owned),
            failure_message: None,
            resource_report: None,
        }
    }

    fn ended(gaps: usize) -> RunEndEvent {
        RunEndEvent {
            status: RunStatus::Succeeded,
            reason: None,
            error_code: None,
            message: None,
            rule: None,
            records_emitted: 0,
            records_written: 0,
            checkpoint_commit_status: CommitStatus::Committed,
            state_streams_staged: 0,
            state_streams_committed: 0,
            known_gaps: (0..gaps)
                .map(|_| GapSummary {
                    kind: "interaction_required".into(),
                    stream: None,
                    message: "otp interaction ended cancelled".into(),
                })
                .collect(),
            streams_behind: Vec::new(),
            reconciled_deletions: 0,
        }
    }

    #[test]
    fn browser_session_states_follow_the_run_and_its_questions() {
        let active = conn(ConnectionStatus::Active);
        let state = |last: Option<&RunRow>, b: &BrowserInputs| {
            project(&StatusInputs {
                connection: &active,
                needs_credential: true,
                credential: None,
                last_run: last,
                terminal: None,
                browser: Some(b),
                bootstrap: None,
                last_finished: None,
            })
            .browser
            .unwrap()
            .state
        };
        let running = run(RunStatus::Running, None);
        let asking = |kind| BrowserInputs {
            pending: Some((kind, "ixn_1".into())),
            ..Default::default()
        };
        use crate::protocol::InteractionKind as K;
        assert_eq!(state(None, &BrowserInputs::default()), BrowserSessionState::NotStarted);
        assert_eq!(
            state(Some(&running), &BrowserInputs::default()),
            BrowserSessionState::SigningIn
        );
        assert_eq!(
            state(Some(&running), &asking(K::Credentials)),
            BrowserSessionState::AwaitingLogin
        );
        assert_eq!(state(Some(&running), &asking(K::Otp)), BrowserSessionState::AwaitingOtp);
        assert_eq!(
            state(Some(&running), &asking(K::ManualAction)),
            BrowserSessionState::AwaitingOwnerAction
        );
        let verified = BrowserInputs {
            verified: true,
            ..Default::default()
        };
        assert_eq!(state(Some(&running), &verified), BrowserSessionState::Collecting);
        let mismatch = run(RunStatus::Failed, Some("session_account_mismatch"));
        assert_eq!(state(Some(&mismatch), &verified), BrowserSessionState::SessionMismatch);
        let cleaned = |complete: bool| BrowserInputs {
            cleanup: Some(json!({ "complete": complete })),
            ..Default::default()
        };
        let done = run(RunStatus::Succeeded, None);
        assert_eq!(state(Some(&done), &cleaned(true)), BrowserSessionState::CleanupDone);
        assert_eq!(
            state(Some(&done), &cleaned(false)),
            BrowserSessionState::CleanupIncomplete
        );
    }

    #[test]
    fn setup_state_is_projected_from_connection_and_run_state() {
        let draft = conn(ConnectionStatus::Draft);
        let status = |last: Option<&RunRow>, terminal: Option<&RunEndEvent>| {
            project(&StatusInputs {
                connection: &draft,
                needs_credential: false,
                credential: None,
                last_run: last,
                terminal,
                browser: None,
                bootstrap: None,
                last_finished: None,
            })
        };
        assert_eq!(status(None, None).setup_state, SetupState::FirstSyncPending);
        assert_eq!(
            status(Some(&run(RunStatus::Running, None)), None).setup_state,
            SetupState::FirstSyncRunning
        );
        let failed = status(Some(&run(RunStatus::Failed, Some("connector_reported_failed"))), None);
        assert_eq!(failed.setup_state, SetupState::FirstSyncFailed);
        assert!(
            failed
                .last_error
                .unwrap()
                .remediation
                .contains("/v1/connections/con_1/runs")
        );
        let s = status(Some(&run(RunStatus::Succeeded, None)), Some(&ended(0)));
        assert_eq!(
            (s.setup_state, s.terminal_setup_disposition),
            (
                SetupState::FirstSyncVerifiedEmpty,
                Some(SetupDisposition::VerifiedEmpty)
            )
        );
        assert_eq!(
            status(Some(&run(RunStatus::Succeeded, None)), Some(&ended(1))).setup_state,
            SetupState::FirstSyncUnverifiedZero
        );
        let awaiting = project(&StatusInputs {
            connection: &draft,
            needs_credential: true,
            credential: None,
            last_run: None,
            terminal: None,
            browser: None,
            bootstrap: None,
            last_finished: None,
        });
        assert_eq!(
            (awaiting.setup_state, awaiting.pending),
            (SetupState::AwaitingCredential, true)
        );
        let active = conn(ConnectionStatus::Active);
        let healthy = project(&StatusInputs {
            connection: &active,
            needs_credential: false,
            credential: None,
            last_run: Some(&run(RunStatus::Succeeded, None)),
            terminal: None,
            browser: None,
            bootstrap: None,
            last_finished: None,
        });
        assert_eq!(
            (healthy.setup_state, healthy.health_state),
            (SetupState::Active, HealthState::Healthy)
        );
        let json = serde_json::to_value(&healthy).unwrap();
        assert_eq!(
            (
                json["setup_state"].as_str(),
                json["health_state"].as_str(),
                json["status"].as_str()
            ),
            (Some("active"), Some("healthy"), Some("active")),
            "the JSON spellings stay snake_case"
        );
    }

    #[test]
    fn failed_first_sync_with_a_credential_reason_says_to_reenter_the_credential() {
        let draft = conn(ConnectionStatus::Draft);
        let s = project(&StatusInputs {
            connection: &draft,
            needs_credential: false,
            credential: None,
            last_run: Some(&run(RunStatus::Failed, Some("credential_rejected"))),
            terminal: None,
            browser: None,
            bootstrap: None,
            last_finished: None,
        });
        assert_eq!(s.next_step.kind, NextStepKind::CaptureCredential);
        assert!(
            s.last_error
                .unwrap()
                .remediation
                .starts_with("Enter the provider credential again")
        );
    }

    fn behind(stream: &str, reason: &str, recovery: RecoveryAction, not_before: Option<i64>) -> StreamBehind {
        StreamBehind {
            stream: stream.into(),
            reason: reason.into(),
            message: Some(format!("{stream}: {reason}")),
            recovery,
            retry_not_before: not_before,
        }
    }

    #[test]
    fn health_shows_the_streams_a_run_left_behind_why_and_when_they_are_retried() {
        let active = conn(ConnectionStatus::Active);
        let last = run(RunStatus::Succeeded, None);
        let mut end = ended(0);
        end.streams_behind = vec![behind(
            "gists",
            "rate_limited",
            RecoveryAction::RetryByRuntime,
            Some(61_000),
        )];
        let project_with = |end: &RunEndEvent, last_run: &RunRow, finished: &RunRow| {
            project(&StatusInputs {
                connection: &active,
                needs_credential: false,
                credential: None,
                last_run: Some(last_run),
                terminal: None,
                browser: None,
                bootstrap: None,
                last_finished: Some((finished, end)),
            })
        };
        let s = project_with(&end, &last, &last);
        assert_eq!(
            s.health_state,
            HealthState::Behind,
            "not healthy while a stream is behind"
        );
        assert_eq!(s.last_error, None, "runs retry it by themselves");
        let gists = &s.streams_behind[0];
        assert_eq!(
            (
                gists.stream.as_str(),
                gists.reason.as_str(),
                gists.retry,
                gists.not_before
            ),
            ("gists", "rate_limited", RetryWhen::NextRun, Some(61_000))
        );
        assert_eq!(gists.run_id, "run_1");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["health_state"], "behind");
        assert_eq!(json["streams_behind"][0]["retry"], "next_run");

        // A stream only the owner can bring back (a permission at the provider).
        end.streams_behind.push(behind(
            "repositories",
            "forbidden",
            RecoveryAction::ManualActionRequired,
            None,
        ));
        let s = project_with(&end, &last, &last);
        assert_eq!(s.health_state, HealthState::NeedsAttention);
        assert_eq!(s.streams_behind[1].retry, RetryWhen::AfterOwnerAction);
        let error = s.last_error.unwrap();
        assert_eq!(error.reason, "forbidden");
        assert!(error.remediation.contains("repositories"), "{}", error.remediation);
        assert!(!error.remediation.contains("gists"), "{}", error.remediation);

        // While the next run is in progress, the finished one still says what is behind.
        let running = run(RunStatus::Running, None);
        assert_eq!(project_with(&end, &running, &last).streams_behind.len(), 2);
        // A run that left nothing behind is healthy again.
        let s = project_with(&ended(0), &last, &last);
        assert_eq!((s.health_state, s.streams_behind.len()), (HealthState::Healthy, 0));
    }

    #[test]
    fn every_recovery_action_says_when_the_stream_is_retried() {
        use RecoveryAction as A;
        let when: Vec<RetryWhen> = A::ALL.iter().map(|a| RetryWhen::of(*a)).collect();
        assert_eq!(
            when,
            [
                RetryWhen::NextRun,
                RetryWhen::AfterConnectorUpgrade,
                RetryWhen::AfterNewCredential,
                RetryWhen::AfterOwnerAction,
                RetryWhen::AfterConnectorUpgrade,
                RetryWhen::AfterUpstreamUnblock,
                RetryWhen::AfterOwnerAction,
                RetryWhen::NextRun,
            ]
        );
    }
}
