//! The Collection Profile messages in their JSON form.
//!
//! Connectors hand the host typed WIT values; the host turns them into these
//! types, validates them, and prints or stores them as Collection Profile
//! JSON (one object per line, `type` first).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectionMode {
    FullRefresh,
    Incremental,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamScope {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

impl StreamScope {
    pub fn named(name: impl Into<String>) -> Self {
        StreamScope {
            name: name.into(),
            resources: None,
            time_range: None,
            fields: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub streams: Vec<StreamScope>,
}

/// Per-stream cursors: a JSON object or null per stream.
pub type StateMap = BTreeMap<String, Value>;

/// START, as sent to the connector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Start {
    pub run_id: String,
    pub collection_mode: CollectionMode,
    pub scope: Scope,
    /// `None` when this run's state is not persisted.
    pub state: Option<StateMap>,
    pub bindings: BTreeMap<String, Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryAction {
    RetryByRuntime,
    RetryOnConnectorUpgrade,
    RefreshCredentials,
    ManualActionRequired,
    UpdateSelector,
    UpstreamUnblock,
    NotRetriable,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryHint {
    pub action: RecoveryAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub stream: String,
    /// A string, or an array of strings for a composite key.
    pub key: Value,
    /// A JSON object; absent for deletions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// `"delete"`, or absent for an upsert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    pub emitted_at: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub stream: String,
    /// A JSON object, or null.
    pub cursor: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continuation {
    pub boundary: String,
    pub considered: u64,
    pub covered: u64,
    pub slice_start: u64,
    pub slice_end: u64,
    pub remaining: bool,
    pub owner: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkipResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_hint: Option<RecoveryHint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<Continuation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetailCoverage {
    pub reference_only: bool,
    pub state_stream: String,
    pub stream: String,
    pub required_keys: Vec<String>,
    pub hydrated_keys: Vec<String>,
    #[serde(default)]
    pub gap_keys: Vec<String>,
    #[serde(default)]
    pub optional_skip_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub considered: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetailGap {
    pub stream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_stream: Option<String>,
    pub record_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_locator: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_cursor: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionKind {
    Credentials,
    Otp,
    ManualAction,
}

impl InteractionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InteractionKind::Credentials => "credentials",
            InteractionKind::Otp => "otp",
            InteractionKind::ManualAction => "manual_action",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub request_id: String,
    pub kind: InteractionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionStatus {
    Success,
    Cancelled,
    Timeout,
}

/// The answer as the connector receives it. `data` goes to the connector
/// only: it is never printed, logged or stored.
#[derive(Clone, Debug, PartialEq)]
pub struct InteractionAnswer {
    pub status: InteractionStatus,
    pub data: Option<Value>,
}

impl InteractionAnswer {
    pub fn success(data: Value) -> Self {
        InteractionAnswer {
            status: InteractionStatus::Success,
            data: Some(data),
        }
    }
    pub fn cancelled() -> Self {
        InteractionAnswer {
            status: InteractionStatus::Cancelled,
            data: None,
        }
    }
    pub fn timeout() -> Self {
        InteractionAnswer {
            status: InteractionStatus::Timeout,
            data: None,
        }
    }
}

/// INTERACTION_RESPONSE as it appears in the JSONL transcript: no `data`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InteractionResponse {
    pub request_id: String,
    pub status: InteractionStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoneStatus {
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneError {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_hint: Option<RecoveryHint>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub status: DoneStatus,
    pub records_emitted: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DoneError>,
}

/// Every message of a run transcript, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Message {
    #[serde(rename = "START")]
    Start(Start),
    #[serde(rename = "RECORD")]
    Record(Record),
    #[serde(rename = "STATE")]
    State(State),
    #[serde(rename = "PROGRESS")]
    Progress(Progress),
    #[serde(rename = "SKIP_RESULT")]
    SkipResult(SkipResult),
    #[serde(rename = "DETAIL_COVERAGE")]
    DetailCoverage(DetailCoverage),
    #[serde(rename = "DETAIL_GAP")]
    DetailGap(DetailGap),
    #[serde(rename = "INTERACTION")]
    Interaction(Interaction),
    #[serde(rename = "INTERACTION_RESPONSE")]
    InteractionResponse(InteractionResponse),
    #[serde(rename = "DONE")]
    Done(Done),
}

impl Message {
    /// The profile's name for the message type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Start(_) => "START",
            Message::Record(_) => "RECORD",
            Message::State(_) => "STATE",
            Message::Progress(_) => "PROGRESS",
            Message::SkipResult(_) => "SKIP_RESULT",
            Message::DetailCoverage(_) => "DETAIL_COVERAGE",
            Message::DetailGap(_) => "DETAIL_GAP",
            Message::Interaction(_) => "INTERACTION",
            Message::InteractionResponse(_) => "INTERACTION_RESPONSE",
            Message::Done(_) => "DONE",
        }
    }

    /// One JSONL line (without the newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("protocol messages always serialize")
    }
}
