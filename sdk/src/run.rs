//! [`Run`]: the connector's handle on one run.
//!
//! It holds what START said (scope, mode, prior cursors, bindings, settings)
//! and buffers what the connector emits: messages go to the host in batches
//! of up to 4,096 messages or 1 MiB of JSON, before every interaction, on
//! [`Run::flush`] and when the run returns, so the host makes one call per
//! batch instead of one per record.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::errors::{Failure, hint_into_wit};
use crate::host::Host;
use crate::interaction::{Answer, InteractError, Interaction, InteractionKind};
use crate::log::Level;
use crate::messages::{DetailCoverage, DetailGap, Skip};
use crate::scope::{Key, Mode, StreamScope, TimeRange};
use crate::secrets::{Secret, SecretError};
use crate::time::{format_unix, now_unix};
use crate::wit;
use pdpp_types::{DoneStatus, RecordOp};

/// Messages buffered before one `emit.send` call. The host writes each
/// call's records in one transaction, so a batch is also the unit of
/// durability; larger batches mean fewer commits (docs/storage.md).
pub(crate) const BATCH_MESSAGES: usize = 4096;
/// Bytes of JSON buffered before one `emit.send` call.
const BATCH_BYTES: usize = 1 << 20;

/// The connector's handle on its run.
pub struct Run {
    run_id: String,
    mode: Mode,
    scope: Vec<StreamScope>,
    state: Option<BTreeMap<String, Option<Value>>>,
    bindings: BTreeMap<String, Value>,
    settings: Value,
    host: Host,
    pending: Vec<wit::emit::Message>,
    pending_bytes: usize,
    records_emitted: u64,
    interactions: u64,
    /// The last second a record was emitted in, and its RFC 3339 text:
    /// records of the same second share the formatting.
    emitted_second: (i64, String),
}

/// What START carries, in the SDK's terms.
pub(crate) struct StartParts {
    pub run_id: String,
    pub mode: Mode,
    pub scope: Vec<StreamScope>,
    /// `None` for a single-use run; otherwise each stream's prior cursor.
    pub state: Option<BTreeMap<String, Option<Value>>>,
    pub bindings: BTreeMap<String, Value>,
    pub settings: Value,
}

/// How a run ended, before it becomes DONE.
pub(crate) struct Ending {
    pub status: DoneStatus,
    pub records_emitted: u64,
    pub error: Option<Failure>,
}

impl Run {
    pub(crate) fn from_wit(start: wit::types::Start, host: Host) -> Self {
        let mode = match start.collection_mode {
            wit::types::CollectionMode::FullRefresh => Mode::FullRefresh,
            wit::types::CollectionMode::Incremental => Mode::Incremental,
        };
        let scope = start
            .scope
            .into_iter()
            .map(|s| StreamScope {
                name: s.name,
                resources: s.resources,
                time_range: s.time_range.map(|t| TimeRange {
                    since: t.since,
                    until: t.until,
                }),
                fields: s.fields,
            })
            .collect();
        let state = start.state.map(|cursors| {
            cursors
                .into_iter()
                .map(|c| (c.stream, c.cursor.and_then(|j| serde_json::from_str(&j).ok())))
                .collect()
        });
        let bindings = start
            .bindings
            .into_iter()
            .map(|b| (b.name, serde_json::from_str(&b.descriptor).unwrap_or(Value::Null)))
            .collect();
        let settings = serde_json::from_str(&start.settings).unwrap_or(Value::Null);
        Run::from_parts(
            StartParts {
                run_id: start.run_id,
                mode,
                scope,
                state,
                bindings,
                settings,
            },
            host,
        )
    }

    pub(crate) fn from_parts(start: StartParts, host: Host) -> Self {
        Run {
            run_id: start.run_id,
            mode: start.mode,
            scope: start.scope,
            state: start.state,
            bindings: start.bindings,
            settings: start.settings,
            host,
            pending: Vec::new(),
            pending_bytes: 0,
            records_emitted: 0,
            interactions: 0,
            emitted_second: (i64::MIN, String::new()),
        }
    }

    /// Flush what is buffered and turn the connector's result into DONE's parts.
    pub(crate) fn end(mut self, result: Result<(), Failure>) -> Ending {
        let flushed = self.flush();
        let (status, error) = match result.and(flushed) {
            Ok(()) => (DoneStatus::Succeeded, None),
            Err(failure) if failure.cancelled => (DoneStatus::Cancelled, Some(failure)),
            Err(failure) => (DoneStatus::Failed, Some(failure)),
        };
        Ending {
            status,
            records_emitted: self.records_emitted,
            error,
        }
    }

    /// The run's id (for messages; never a secret).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Full refresh or incremental.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The streams this run may collect.
    pub fn scope(&self) -> &[StreamScope] {
        &self.scope
    }

    /// The scope of one stream, if the run may collect it.
    pub fn stream_scope(&self, stream: &str) -> Option<&StreamScope> {
        self.scope.iter().find(|s| s.name == stream)
    }

    /// Whether the run may collect a stream.
    pub fn in_scope(&self, stream: &str) -> bool {
        self.stream_scope(stream).is_some()
    }

    /// Whether the runtime advertised a binding (e.g. `interactive`).
    pub fn has_binding(&self, name: &str) -> bool {
        self.bindings.contains_key(name)
    }

    /// The descriptor of an advertised binding (for `network`,
    /// `{"allowed_origins": [...]}`, each readable with
    /// [`pdpp_types::Origin::parse`]).
    pub fn binding(&self, name: &str) -> Option<&Value> {
        self.bindings.get(name)
    }

    /// Non-secret connection settings (a JSON object, `Null` when none).
    pub fn settings(&self) -> &Value {
        &self.settings
    }

    /// Whether this run's state will be persisted (false for single-use runs).
    pub fn persists_state(&self) -> bool {
        self.state.is_some()
    }

    /// How many RECORDs this run has emitted so far (DONE reports the total).
    pub fn records_emitted(&self) -> u64 {
        self.records_emitted
    }

    /// The prior cursor of a stream. `Ok(None)` when there is none, or in
    /// full-refresh mode; a cursor that does not deserialize as `T` is a
    /// [`Failure`] (`serialization_failed`).
    pub fn cursor<T: DeserializeOwned>(&self, stream: &str) -> Result<Option<T>, Failure> {
        if self.mode == Mode::FullRefresh {
            return Ok(None);
        }
        match self.state.as_ref().and_then(|s| s.get(stream)).cloned().flatten() {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_value(v)?)),
        }
    }

    /// Emit a RECORD. Top-level fields outside the scope's `fields` are
    /// dropped here, so the host's `record_fields_in_scope` rule always holds.
    /// The time window is not checked here (the SDK does not know which field
    /// is the consent time): filter with [`StreamScope::allows_time`].
    pub fn record(&mut self, stream: &str, key: impl Into<Key>, data: &impl Serialize) -> Result<(), Failure> {
        let fields = self.stream_scope(stream).and_then(|s| s.fields.as_ref());
        let data = match fields {
            // Straight to text: no intermediate `Value` (a map and a string
            // per field) for the common case, a stream without a field list.
            None => serde_json::to_string(data)?,
            Some(fields) => {
                let mut value = serde_json::to_value(data)?;
                if let Value::Object(map) = &mut value {
                    map.retain(|k, _| fields.iter().any(|f| f == k));
                }
                serde_json::to_string(&value)?
            }
        };
        self.push_record(stream, key.into(), RecordOp::Upsert, Some(data))
    }

    /// Emit a RECORD with `op: delete`.
    pub fn delete(&mut self, stream: &str, key: impl Into<Key>) -> Result<(), Failure> {
        self.push_record(stream, key.into(), RecordOp::Delete, None)
    }

    fn push_record(&mut self, stream: &str, key: Key, op: RecordOp, data: Option<String>) -> Result<(), Failure> {
        let key = match key {
            Key::Single(k) => wit::types::RecordKey::Single(k),
            Key::Composite(parts) => wit::types::RecordKey::Composite(parts),
        };
        let op = match op {
            RecordOp::Upsert => wit::types::RecordOp::Upsert,
            RecordOp::Delete => wit::types::RecordOp::Delete,
        };
        let size = data.as_ref().map_or(0, |d| d.len()) + stream.len() + 64;
        self.records_emitted += 1;
        let emitted_at = self.emitted_at();
        self.push(
            wit::emit::Message::Record(wit::types::DataRecord {
                stream: stream.to_owned(),
                key,
                op,
                data,
                emitted_at,
            }),
            size,
        )
    }

    /// Emit STATE for a stream (the runtime keeps the last one per stream and
    /// commits it only if the run succeeds, or for a stream that finished in
    /// a certified stream-scoped failure). A cursor serializing to `null`
    /// clears the stream's cursor.
    pub fn checkpoint(&mut self, stream: &str, cursor: &impl Serialize) -> Result<(), Failure> {
        let cursor = serde_json::to_value(cursor)?;
        let cursor = if cursor.is_null() {
            None
        } else {
            Some(serde_json::to_string(&cursor)?)
        };
        let size = cursor.as_ref().map_or(0, |c| c.len()) + 64;
        self.push(
            wit::emit::Message::State(wit::types::Checkpoint {
                stream: stream.to_owned(),
                cursor,
            }),
            size,
        )
    }

    /// Emit PROGRESS: a non-empty message, and optionally counts.
    pub fn progress(&mut self, stream: Option<&str>, message: &str, count: Option<u64>, total: Option<u64>) {
        let msg = wit::types::Progress {
            stream: stream.map(str::to_owned),
            message: message.to_owned(),
            count,
            total,
        };
        // Progress never fails on its own; a host rejection stops the guest.
        let _ = self.push(wit::emit::Message::Progress(msg), message.len() + 64);
    }

    /// Emit SKIP_RESULT.
    pub fn skip(&mut self, skip: Skip) -> Result<(), Failure> {
        let diagnostics = skip.diagnostics.map(|d| serde_json::to_string(&d)).transpose()?;
        let msg = wit::types::SkipResult {
            stream: skip.stream,
            reason: skip.reason,
            message: skip.message,
            recovery_hint: skip.recovery.map(|(a, r)| hint_into_wit(a, r)),
            resources: skip.resources,
            time_range: skip.time_range.map(|t| wit::types::TimeRange {
                since: t.since,
                until: t.until,
            }),
            continuation: None,
            diagnostics,
        };
        self.push(wit::emit::Message::SkipResult(msg), 256)
    }

    /// Emit DETAIL_COVERAGE.
    pub fn detail_coverage(&mut self, c: DetailCoverage) -> Result<(), Failure> {
        let size = 64 + c.required_keys.len() * 16;
        let msg = wit::types::DetailCoverage {
            state_stream: c.state_stream,
            stream: c.stream,
            required_keys: c.required_keys,
            hydrated_keys: c.hydrated_keys,
            gap_keys: c.gap_keys,
            optional_skip_keys: c.optional_skip_keys,
            considered: c.considered,
            covered: c.covered,
        };
        self.push(wit::emit::Message::DetailCoverage(msg), size)
    }

    /// Emit DETAIL_GAP.
    pub fn detail_gap(&mut self, g: DetailGap) -> Result<(), Failure> {
        let json = |v: Option<Value>| v.map(|v| serde_json::to_string(&v)).transpose();
        let msg = wit::types::DetailGap {
            stream: g.stream,
            parent_stream: g.parent_stream,
            record_key: g.record_key,
            reason: g.reason,
            retryable: g.retryable,
            detail_locator: json(g.detail_locator)?,
            list_cursor: json(g.list_cursor)?,
            last_error: json(g.last_error)?,
        };
        self.push(wit::emit::Message::DetailGap(msg), 256)
    }

    /// Ask the owner and wait. Buffered messages are sent first, so the owner
    /// sees everything emitted before the question.
    pub fn interact(&mut self, req: Interaction) -> Result<Answer, InteractError> {
        self.flush().ok();
        self.interactions += 1;
        let kind = match req.kind {
            InteractionKind::Credentials => wit::interaction::InteractionKind::Credentials,
            InteractionKind::Otp => wit::interaction::InteractionKind::Otp,
            InteractionKind::ManualAction => wit::interaction::InteractionKind::ManualAction,
        };
        let request = wit::interaction::Request {
            request_id: format!("{}-ix-{}", self.run_id, self.interactions),
            kind,
            stream: req.stream,
            message: req.message,
            schema: req.schema.map(|s| s.to_string()),
            timeout_seconds: req.timeout_seconds,
        };
        match self.host.ask(&request) {
            Ok(wit::interaction::Response::Success(data)) => Ok(Answer::Success(
                serde_json::from_str(&data).unwrap_or(Value::String(data)),
            )),
            Ok(wit::interaction::Response::Cancelled) => Ok(Answer::Cancelled),
            Ok(wit::interaction::Response::Timeout) => Ok(Answer::Timeout),
            Err(wit::interaction::InteractionError::NotInteractive(what)) => Err(InteractError::NotInteractive(what)),
        }
    }

    /// The browser the host holds for this run (the manifest must require
    /// the `browser` binding, or the host refuses to load the connector).
    pub fn browser(&self) -> crate::browser::Browser {
        crate::browser::Browser::new()
    }

    /// A handle to a declared credential field of this connection.
    pub fn secret(&self, field: &str) -> Result<Secret, SecretError> {
        self.host.secret(field)
    }

    /// The declared credential fields that have a value for this connection.
    pub fn available_secrets(&self) -> Vec<String> {
        self.host.available_secrets()
    }

    /// A structured log line, attributed to this run. The host redacts the
    /// run's secret values from it.
    pub fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.host.log(level, message, &fields);
    }

    /// A log line at [`Level::Info`] without fields.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message, &[]);
    }

    /// Now, as a record's `emitted_at`.
    fn emitted_at(&mut self) -> String {
        let now = now_unix();
        if self.emitted_second.0 != now {
            self.emitted_second = (now, format_unix(now));
        }
        self.emitted_second.1.clone()
    }

    fn push(&mut self, msg: wit::emit::Message, size: usize) -> Result<(), Failure> {
        self.pending.push(msg);
        self.pending_bytes += size;
        if self.pending.len() >= BATCH_MESSAGES || self.pending_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Send everything buffered to the runtime now. A message the host
    /// refuses stops the guest inside this call, so it never returns an
    /// error today; the `Result` leaves room for one.
    pub fn flush(&mut self) -> Result<(), Failure> {
        if !self.pending.is_empty() {
            let batch = std::mem::take(&mut self.pending);
            self.pending_bytes = 0;
            self.host.send(batch);
        }
        Ok(())
    }
}
