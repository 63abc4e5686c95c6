//! The Collection Profile messages in their JSON form.
//!
//! Connectors hand the host typed WIT values; the host turns them into these
//! types, validates them, and prints or stores them as Collection Profile
//! JSON (one object per line, `type` first).
//!
//! The vocabulary the SDK spells too (statuses, recovery actions, modes,
//! interaction kinds, the time window) is defined once in `pdpp-types` and
//! re-exported here, so host and SDK cannot disagree on a spelling or on
//! what "inside the time range" means. The message envelopes stay here:
//! only the host reads and writes the profile's JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub use pdpp_types::{
    CollectionMode, DoneStatus, InteractionKind, InteractionStatus, RecordOp, RecoveryAction, RecoveryHint, TimeRange,
};

/// One stream a run may collect, and how far: START's `scope.streams[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamScope {
    /// A stream the manifest declares (never a wildcard).
    pub name: String,
    /// When present and non-empty, only records of these resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
    /// When present, only records whose consent time is inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
    /// When present, only these top-level fields (plus the schema's required ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

impl StreamScope {
    /// The whole stream: no resource, time or field limit.
    pub fn named(name: impl Into<String>) -> Self {
        StreamScope {
            name: name.into(),
            resources: None,
            time_range: None,
            fields: None,
        }
    }
}

/// START's `scope`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Non-empty, one entry per stream.
    pub streams: Vec<StreamScope>,
}

/// Per-stream cursors: a JSON object or null per stream.
pub type StateMap = BTreeMap<String, Value>;

/// START, as sent to the connector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Start {
    /// The run this START opens.
    pub run_id: String,
    /// Incremental runs offer each stream's prior cursor.
    pub collection_mode: CollectionMode,
    /// What the run may collect.
    pub scope: Scope,
    /// `None` when this run's state is not persisted.
    pub state: Option<StateMap>,
    /// The bindings this deployment satisfies, each with its descriptor.
    pub bindings: BTreeMap<String, Value>,
}

/// RECORD: one record to upsert or delete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The stream, in scope.
    pub stream: String,
    /// A string, or an array of strings for a composite key.
    pub key: Value,
    /// A JSON object; absent for deletions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// `"delete"` ([`RecordOp::Delete`]), or absent for an upsert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// When the connector emitted it (RFC 3339).
    pub emitted_at: String,
}

/// STATE: a stream's checkpoint, staged until the run's outcome allows a commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The stream, in scope.
    pub stream: String,
    /// A JSON object, or null.
    pub cursor: Value,
}

/// PROGRESS: how far the run has come.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The stream it is about, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Non-empty, for people.
    pub message: String,
    /// Items done so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Items expected in all, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

/// A SKIP_RESULT's `continuation`: the slice of a bounded pass left for a later run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continuation {
    /// Names where the pass stopped.
    pub boundary: String,
    /// Items looked at.
    pub considered: u64,
    /// Items accounted for.
    pub covered: u64,
    /// First index of the slice.
    pub slice_start: u64,
    /// End of the slice (not before `slice_start`).
    pub slice_end: u64,
    /// Always `true`.
    pub remaining: bool,
    /// Always `"runtime"`.
    pub owner: String,
}

/// SKIP_RESULT: part of the scope the connector did not collect, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkipResult {
    /// The stream skipped, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// A machine-readable reason (`stream_collection_failed` certifies a stream-scoped failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What should happen next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_hint: Option<RecoveryHint>,
    /// The resources skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
    /// The time window skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
    /// The slice left for a later run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<Continuation>,
    /// Bounded connector diagnostics (a JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Value>,
}

/// DETAIL_COVERAGE: which detail keys under a checkpoint were accounted for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetailCoverage {
    /// Always `true` (added by the host).
    pub reference_only: bool,
    /// The stream whose checkpoint this coverage belongs to.
    pub state_stream: String,
    /// The detail stream.
    pub stream: String,
    /// Keys that had to be hydrated.
    pub required_keys: Vec<String>,
    /// Keys that were.
    pub hydrated_keys: Vec<String>,
    /// Keys reported by DETAIL_GAP instead.
    #[serde(default)]
    pub gap_keys: Vec<String>,
    /// Keys skipped on purpose.
    #[serde(default)]
    pub optional_skip_keys: Vec<String>,
    /// Items looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub considered: Option<u64>,
    /// Items accounted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered: Option<u64>,
}

/// DETAIL_GAP: one detail the connector could not hydrate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetailGap {
    /// The detail stream.
    pub stream: String,
    /// The stream of the parent record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_stream: Option<String>,
    /// The key of the record whose detail is missing.
    pub record_key: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether a later run may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// Where the detail would be fetched from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_locator: Option<Value>,
    /// The listing position of the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_cursor: Option<Value>,
    /// The last error seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Value>,
}

/// INTERACTION: a question to the owner; the run waits for the answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// Unique within the run; the answer names it.
    pub request_id: String,
    /// What is asked for.
    pub kind: InteractionKind,
    /// The stream it is about, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// For the owner.
    pub message: String,
    /// A JSON Schema object the answer should satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// How long to wait (positive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

/// The answer as the connector receives it. `data` goes to the connector
/// only: it is never printed or logged, and stored only sealed while it
/// travels to the run's host (erased when taken).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InteractionAnswer {
    /// Answered, declined or timed out.
    pub status: InteractionStatus,
    /// The answer, for `success` only.
    pub data: Option<Value>,
}

impl InteractionAnswer {
    /// The owner answered with `data`.
    pub fn success(data: Value) -> Self {
        InteractionAnswer {
            status: InteractionStatus::Success,
            data: Some(data),
        }
    }
    /// The owner declined.
    pub fn cancelled() -> Self {
        InteractionAnswer {
            status: InteractionStatus::Cancelled,
            data: None,
        }
    }
    /// Nobody answered in time.
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
    /// The INTERACTION answered.
    pub request_id: String,
    /// How it was answered.
    pub status: InteractionStatus,
}

/// DONE's `error`: why a run did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneError {
    /// For people.
    pub message: String,
    /// Machine-readable (`^[a-z][a-z0-9_]{0,63}$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Whether the same run may succeed later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// What should happen next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_hint: Option<RecoveryHint>,
}

/// DONE: how the run ended, as the connector reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// Succeeded, failed or cancelled.
    pub status: DoneStatus,
    /// Must equal the number of RECORDs the host accepted.
    pub records_emitted: u64,
    /// Why, when not succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DoneError>,
}

/// Every message of a run transcript, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Message {
    /// START: runtime → connector: what to collect.
    #[serde(rename = "START")]
    Start(Start),
    /// RECORD: one record.
    #[serde(rename = "RECORD")]
    Record(Record),
    /// STATE: a checkpoint.
    #[serde(rename = "STATE")]
    State(State),
    /// PROGRESS: how far.
    #[serde(rename = "PROGRESS")]
    Progress(Progress),
    /// SKIP_RESULT: what was not collected.
    #[serde(rename = "SKIP_RESULT")]
    SkipResult(SkipResult),
    /// DETAIL_COVERAGE: detail keys accounted for.
    #[serde(rename = "DETAIL_COVERAGE")]
    DetailCoverage(DetailCoverage),
    /// DETAIL_GAP: a detail not hydrated.
    #[serde(rename = "DETAIL_GAP")]
    DetailGap(DetailGap),
    /// INTERACTION: a question to the owner.
    #[serde(rename = "INTERACTION")]
    Interaction(Interaction),
    /// INTERACTION_RESPONSE: the owner's answer, without its data.
    #[serde(rename = "INTERACTION_RESPONSE")]
    InteractionResponse(InteractionResponse),
    /// DONE: how the run ended.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shared vocabulary keeps the transcript's JSON exactly as before.
    #[test]
    fn transcript_lines_keep_the_profile_spellings() {
        let start = Message::Start(Start {
            run_id: "run_1".into(),
            collection_mode: CollectionMode::FullRefresh,
            scope: Scope {
                streams: vec![StreamScope {
                    time_range: Some(TimeRange {
                        since: Some("2026-01-01T00:00:00Z".into()),
                        until: None,
                    }),
                    ..StreamScope::named("a")
                }],
            },
            state: None,
            bindings: BTreeMap::new(),
        });
        assert_eq!(
            start.to_json_line(),
            r#"{"type":"START","run_id":"run_1","collection_mode":"full_refresh","scope":{"streams":[{"name":"a","time_range":{"since":"2026-01-01T00:00:00Z"}}]},"state":null,"bindings":{}}"#
        );
        let done = Message::Done(Done {
            status: DoneStatus::Failed,
            records_emitted: 0,
            error: Some(DoneError {
                message: "m".into(),
                code: None,
                retryable: None,
                recovery_hint: Some(RecoveryHint {
                    action: RecoveryAction::RetryOnConnectorUpgrade,
                    retryable: Some(true),
                }),
            }),
        });
        assert_eq!(
            serde_json::to_value(&done).unwrap(),
            json!({"type": "DONE", "status": "failed", "records_emitted": 0,
                   "error": {"message": "m", "recovery_hint": {"action": "retry_on_connector_upgrade", "retryable": true}}})
        );
        let asked: Message = serde_json::from_value(json!({
            "type": "INTERACTION", "request_id": "r", "kind": "manual_action", "message": "m"
        }))
        .unwrap();
        assert!(matches!(
            asked,
            Message::Interaction(Interaction {
                kind: InteractionKind::ManualAction,
                ..
            })
        ));
        let answered = Message::InteractionResponse(InteractionResponse {
            request_id: "r".into(),
            status: InteractionStatus::Timeout,
        });
        assert_eq!(
            answered.to_json_line(),
            r#"{"type":"INTERACTION_RESPONSE","request_id":"r","status":"timeout"}"#
        );
    }
}
