//! The rows the store reads and writes.

use super::browser::BrowserSessionMode;
use super::{Result, StoreError, parse_json};
use crate::protocol::{CollectionMode, RecoveryAction};
use crate::vault::Sealed;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Draft,
    Active,
    Paused,
    Revoked,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Draft => "draft",
            ConnectionStatus::Active => "active",
            ConnectionStatus::Paused => "paused",
            ConnectionStatus::Revoked => "revoked",
        }
    }
    pub(super) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "draft" => ConnectionStatus::Draft,
            "active" => ConnectionStatus::Active,
            "paused" => ConnectionStatus::Paused,
            "revoked" => ConnectionStatus::Revoked,
            other => return Err(StoreError::Corrupt(format!("connection status {other:?}"))),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialStatus {
    Active,
    Revoked,
    Rejected,
}

impl CredentialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialStatus::Active => "active",
            CredentialStatus::Revoked => "revoked",
            CredentialStatus::Rejected => "rejected",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "active" => CredentialStatus::Active,
            "revoked" => CredentialStatus::Revoked,
            "rejected" => CredentialStatus::Rejected,
            other => return Err(StoreError::Corrupt(format!("credential status {other:?}"))),
        })
    }
}

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The owner started it.
    Manual,
    /// A schedule started it.
    Scheduled,
    /// The first sync of a draft (or a reconnected) connection.
    Setup,
    /// A credential bootstrap: the connector creates the credential in the
    /// host's browser; it collects nothing.
    Bootstrap,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Scheduled => "scheduled",
            Trigger::Setup => "setup",
            Trigger::Bootstrap => "bootstrap",
        }
    }
    pub(super) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "manual" => Trigger::Manual,
            "scheduled" => Trigger::Scheduled,
            "setup" => Trigger::Setup,
            "bootstrap" => Trigger::Bootstrap,
            other => return Err(StoreError::Corrupt(format!("run trigger {other:?}"))),
        })
    }
}

/// Where a run is: in progress, or how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
    pub(super) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            other => return Err(StoreError::Corrupt(format!("run status {other:?}"))),
        })
    }
    /// The status of a run that ended with this DONE status.
    pub fn of_done(s: crate::protocol::DoneStatus) -> Self {
        match s {
            crate::protocol::DoneStatus::Succeeded => RunStatus::Succeeded,
            crate::protocol::DoneStatus::Failed => RunStatus::Failed,
            crate::protocol::DoneStatus::Cancelled => RunStatus::Cancelled,
        }
    }
    pub fn is_terminal(self) -> bool {
        self != RunStatus::Running
    }
}

/// Whose state a run reads and commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespace {
    /// Proactive runs of a connection.
    Global,
    /// Continuous runs under one grant.
    Grant(String),
}

impl Namespace {
    pub fn key(&self) -> String {
        match self {
            Namespace::Global => "global".into(),
            Namespace::Grant(id) => format!("grant:{id}"),
        }
    }
}

pub struct NewConnection {
    pub connection_id: Option<String>,
    pub connector_id: String,
    pub status: ConnectionStatus,
    pub display_name: Option<String>,
    /// Non-secret settings chosen at setup; START.settings of every run.
    pub binding_metadata: Value,
    /// Whether browser login material outlives each run.
    pub browser_session: BrowserSessionMode,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Connection {
    pub connection_id: String,
    pub connector_id: String,
    pub status: ConnectionStatus,
    pub display_name: Option<String>,
    pub account_identity: Option<Value>,
    pub binding_metadata: Value,
    pub created_at: i64,
    pub updated_at: i64,
    pub revoked_at: Option<i64>,
    /// When the connection first became active (for a setup: its first ingest).
    pub activated_at: Option<i64>,
    /// Whether browser login material outlives each run.
    pub browser_session: BrowserSessionMode,
}

impl Connection {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Connection {
            connection_id: r.try_get("connection_id")?,
            connector_id: r.try_get("connector_id")?,
            status: ConnectionStatus::parse(&r.try_get::<String, _>("status")?)?,
            display_name: r.try_get("display_name")?,
            account_identity: r
                .try_get::<Option<String>, _>("account_identity")?
                .map(|s| parse_json(&s))
                .transpose()?,
            binding_metadata: parse_json(&r.try_get::<String, _>("binding_metadata")?)?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            revoked_at: r.try_get("revoked_at")?,
            activated_at: r.try_get("activated_at")?,
            browser_session: BrowserSessionMode::parse(&r.try_get::<String, _>("browser_session")?)?,
        })
    }
}

/// A stored credential: the seal plus metadata readable without the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCredential {
    pub connection_id: String,
    pub sealed: Sealed,
    pub status: CredentialStatus,
    pub captured_at: i64,
    pub rotated_at: Option<i64>,
}

impl StoredCredential {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Self::from_columns(r, "")
    }

    /// From columns named with `prefix` (a credential joined to another row).
    pub(super) fn from_columns(r: &AnyRow, prefix: &str) -> Result<Self> {
        let col = |name: &str| format!("{prefix}{name}");
        let names: String = r.try_get(col("field_names").as_str())?;
        Ok(StoredCredential {
            connection_id: r.try_get(col("connection_id").as_str())?,
            sealed: Sealed {
                kind: r.try_get(col("kind").as_str())?,
                field_names: serde_json::from_str(&names).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                format_version: r.try_get(col("format_version").as_str())?,
                key_id: r.try_get(col("key_id").as_str())?,
                nonce: r.try_get(col("nonce").as_str())?,
                ciphertext: r.try_get(col("ciphertext").as_str())?,
                fingerprint: r.try_get(col("fingerprint").as_str())?,
            },
            status: CredentialStatus::parse(&r.try_get::<String, _>(col("status").as_str())?)?,
            captured_at: r.try_get(col("captured_at").as_str())?,
            rotated_at: r.try_get(col("rotated_at").as_str())?,
        })
    }
}

/// One entry of a run's timeline.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunEvent {
    /// `run.started`, `record.batch`, `run.succeeded`, … (see docs/operations.md).
    pub kind: String,
    /// The entry's JSON; never a secret.
    #[schema(value_type = Value)]
    pub data: Value,
}

impl RunEvent {
    pub fn new(kind: &str, data: Value) -> Self {
        RunEvent {
            kind: kind.to_owned(),
            data,
        }
    }
}

/// How a run ended, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RunEnd {
    pub status: RunStatus,
    pub records_emitted: i64,
    pub records_written: i64,
    pub failure_reason: Option<String>,
    pub failure_message: Option<String>,
    pub resource_report: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunRow {
    pub run_id: String,
    pub connection_id: String,
    pub connector_id: String,
    pub status: RunStatus,
    pub trigger: Trigger,
    #[schema(schema_with = collection_mode_schema)]
    pub collection_mode: CollectionMode,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub records_emitted: i64,
    pub records_written: i64,
    pub failure_reason: Option<String>,
    pub failure_message: Option<String>,
    /// What the run used of its limits (memory, fuel, time, bytes), once it ended.
    #[schema(value_type = Option<Object>)]
    pub resource_report: Option<Value>,
}

/// The schema of a run's collection mode: the profile's `collection_mode`
/// spellings.
pub fn collection_mode_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(CollectionMode::ALL.iter().map(|m| m.as_str())))
        .build()
}

impl RunRow {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Self::from_columns(r, "")
    }

    /// From columns named with `prefix` (a run joined to another row).
    pub(super) fn from_columns(r: &AnyRow, prefix: &str) -> Result<Self> {
        let col = |name: &str| format!("{prefix}{name}");
        let mode: String = r.try_get(col("collection_mode").as_str())?;
        Ok(RunRow {
            run_id: r.try_get(col("run_id").as_str())?,
            connection_id: r.try_get(col("connection_id").as_str())?,
            connector_id: r.try_get(col("connector_id").as_str())?,
            status: RunStatus::parse(&r.try_get::<String, _>(col("status").as_str())?)?,
            trigger: Trigger::parse(&r.try_get::<String, _>(col("run_trigger").as_str())?)?,
            collection_mode: mode
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("run collection mode: {e}")))?,
            started_at: r.try_get(col("started_at").as_str())?,
            finished_at: r.try_get(col("finished_at").as_str())?,
            records_emitted: r.try_get(col("records_emitted").as_str())?,
            records_written: r.try_get(col("records_written").as_str())?,
            failure_reason: r.try_get(col("failure_reason").as_str())?,
            failure_message: r.try_get(col("failure_message").as_str())?,
            resource_report: r
                .try_get::<Option<String>, _>(col("resource_report").as_str())?
                .map(|s| parse_json(&s))
                .transpose()?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredRecord {
    pub stream: String,
    /// The record's primary key, as the store orders it.
    pub key: String,
    /// The record, as its stream's schema describes it.
    #[schema(value_type = Object)]
    pub data: Value,
    pub emitted_at: String,
    pub run_id: String,
    /// The record's own time (the stream's time field, else `emitted_at`).
    pub record_time: Option<String>,
}

impl StoredRecord {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(StoredRecord {
            stream: r.try_get("stream")?,
            key: r.try_get("record_key")?,
            data: parse_json(&r.try_get::<String, _>("data")?)?,
            emitted_at: r.try_get("emitted_at")?,
            run_id: r.try_get("run_id")?,
            record_time: r.try_get("record_time")?,
        })
    }
}

/// The timeline kinds that end a run, one per terminal status.
pub const TERMINAL_EVENTS: [&str; 3] = ["run.completed", "run.failed", "run.cancelled"];

/// Whether the run's checkpoints were committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitStatus {
    /// Every staged checkpoint (or none was staged, and the run succeeded).
    Committed,
    /// Some, not all.
    PartiallyCommitted,
    NotCommitted,
    /// The run's state is not persisted (a single-use run).
    Disabled,
}

/// Something a run did not fully do, for the owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapSummary {
    pub kind: String,
    #[serde(default)]
    pub stream: Option<String>,
    pub message: String,
}

/// A stream a run left behind: in scope, but not collected up to date, and
/// what happens next. Its previous checkpoint stays, so a later run reads it
/// again from there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamBehind {
    pub stream: String,
    /// Why: the SKIP_RESULT's reason (`rate_limited`, `forbidden`,
    /// `stream_collection_failed`, …), or why its checkpoint was withheld
    /// (`coverage_missing`, `coverage_incomplete`, …).
    pub reason: String,
    /// For people (redacted like every message of a run).
    pub message: Option<String>,
    /// What should happen next: the connector's recovery hint, or
    /// `retry_by_runtime` for a checkpoint the host withheld.
    pub recovery: RecoveryAction,
    /// Not before this instant (Unix ms) may the stream be tried again: the
    /// provider's rate-limit wait after the run, when the connector passed
    /// it on (`retry_after_seconds` in the SKIP_RESULT's diagnostics).
    pub retry_not_before: Option<i64>,
}

/// The data of a run's terminal timeline event (`run.completed`,
/// `run.failed` or `run.cancelled`): how the run ended, in one typed record
/// that the setup-status projection reads back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEndEvent {
    pub status: RunStatus,
    /// The host's failure reason code.
    pub reason: Option<String>,
    /// The connector's own DONE.error.code.
    pub error_code: Option<String>,
    pub message: Option<String>,
    /// The protocol rule a violation broke.
    pub rule: Option<String>,
    pub records_emitted: u64,
    pub records_written: u64,
    pub checkpoint_commit_status: CommitStatus,
    pub state_streams_staged: u64,
    pub state_streams_committed: u64,
    #[serde(default)]
    pub known_gaps: Vec<GapSummary>,
    /// The streams this run left behind (skipped, failed, or whose
    /// checkpoint was withheld); empty for a run that failed as a whole,
    /// whose failure says it all.
    #[serde(default)]
    pub streams_behind: Vec<StreamBehind>,
    /// Records deleted after a succeeded full refresh because the run no
    /// longer returned them (full-refresh reconciliation).
    #[serde(default)]
    pub reconciled_deletions: u64,
}

impl RunEndEvent {
    /// The timeline kind of this end.
    pub fn kind(&self) -> &'static str {
        match self.status {
            RunStatus::Succeeded => "run.completed",
            RunStatus::Cancelled
                if matches!(
                    self.reason.as_deref(),
                    Some("owner_cancelled" | "owner_cancel_forced" | "connection_revoked" | "host_shutdown")
                ) =>
            {
                "run.cancelled"
            }
            _ => "run.failed",
        }
    }
}

/// A question of a run waiting for the owner, as any host sees it. Never the answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PendingInteraction {
    pub interaction_id: String,
    pub run_id: String,
    pub connection_id: String,
    pub request_id: String,
    pub kind: crate::protocol::InteractionKind,
    pub message: String,
    pub stream: Option<String>,
    pub schema: Option<Value>,
    pub timeout_seconds: Option<u32>,
    pub created_at: i64,
    /// A screenshot of the run's browser comes with the question.
    pub has_screenshot: bool,
}

impl PendingInteraction {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        let kind: String = r.try_get("kind")?;
        Ok(PendingInteraction {
            interaction_id: r.try_get("interaction_id")?,
            run_id: r.try_get("run_id")?,
            connection_id: r.try_get("connection_id")?,
            request_id: r.try_get("request_id")?,
            kind: kind
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("interaction kind {kind:?}")))?,
            message: r.try_get("message")?,
            stream: r.try_get("stream")?,
            schema: r
                .try_get::<Option<String>, _>("schema")?
                .map(|s| parse_json(&s))
                .transpose()?,
            timeout_seconds: r
                .try_get::<Option<i64>, _>("timeout_seconds")?
                .and_then(|t| u32::try_from(t).ok()),
            created_at: r.try_get("created_at")?,
            has_screenshot: r.try_get::<i64, _>("has_screenshot")? != 0,
        })
    }
}
