//! Write PDPP connectors that run as WebAssembly components inside `pdpp-host`.
//!
//! A connector is a type that implements [`Connector`] and is exported with
//! [`export_connector!`]. The host calls [`Connector::run`] once per run with a
//! [`Run`] handle: read the scope and the prior cursors from it, emit records,
//! checkpoints and progress through it, ask the owner a question with
//! [`Run::interact`], and reach the connection's credential fields through
//! [`Run::secret`]. Returning `Ok(())` reports DONE `succeeded`; returning a
//! [`Failure`] reports DONE `failed` (or `cancelled`). The SDK counts the
//! records you emitted and fills in `records_emitted` itself.
//!
//! Build with the plain toolchain, no extra cargo subcommand:
//!
//! ```text
//! cargo build --target wasm32-wasip2 --release
//! ```
//!
//! The `.wasm` in `target/wasm32-wasip2/release/` is the plugin.
//!
//! # A complete connector
//!
//! ```no_run
//! use pdpp_sdk::{export_connector, Connector, Failure, Run};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize)]
//! struct Note { id: String, body: String, updated_at: String }
//!
//! #[derive(Serialize, Deserialize, Default)]
//! struct Cursor { updated_after: Option<String> }
//!
//! struct Notes;
//!
//! impl Connector for Notes {
//!     fn run(run: &mut Run) -> Result<(), Failure> {
//!         if !run.in_scope("notes") {
//!             return Ok(());
//!         }
//!         let cursor: Cursor = run.cursor("notes")?.unwrap_or_default();
//!         let notes = vec![Note {
//!             id: "n1".into(),
//!             body: "hello".into(),
//!             updated_at: "2026-01-02T00:00:00Z".into(),
//!         }];
//!         for note in &notes {
//!             if cursor.updated_after.as_deref() >= Some(note.updated_at.as_str()) {
//!                 continue;
//!             }
//!             run.record("notes", note.id.as_str(), note)?;
//!         }
//!         run.progress(Some("notes"), "notes collected", Some(notes.len() as u64), None);
//!         let newest = notes.iter().map(|n| n.updated_at.clone()).max();
//!         run.checkpoint("notes", &Cursor { updated_after: newest.or(cursor.updated_after) })?;
//!         Ok(())
//!     }
//! }
//!
//! export_connector!(Notes);
//! ```

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "pdpp:connector/connector",
        pub_export_macro: true,
        export_macro_name: "__export_connector_world",
        default_bindings_module: "pdpp_sdk::__bindings",
    });
}

use __bindings::pdpp::connector as wit;

pub mod http;
pub mod time;
pub use time::now_rfc3339;

/// Re-exported so connectors need no direct dependency to build JSON values.
pub use serde_json::{self, Value, json};

/// What a connector implements.
pub trait Connector {
    /// Collect what the run's scope asks for. `Ok(())` is DONE `succeeded`.
    fn run(run: &mut Run) -> Result<(), Failure>;

    /// Check a candidate credential before the host stores it (the
    /// credential probe). The default has no probe: the host then validates
    /// at the first sync. A probe should make one cheap authenticated call
    /// and return the account it belongs to.
    fn validate_credential(probe: &Probe) -> Result<Account, ProbeError> {
        let _ = probe;
        Err(ProbeError::Unsupported)
    }
}

/// What a credential probe sees: the candidate credential (through
/// [`Probe::secret`]) and the connection's non-secret setup fields.
pub struct Probe {
    settings: Value,
}

impl Probe {
    /// The non-secret setup fields (a JSON object).
    pub fn settings(&self) -> &Value {
        &self.settings
    }
    /// One non-secret setup field as text.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings.get(name).and_then(Value::as_str)
    }
    /// A handle to a field of the candidate credential.
    pub fn secret(&self, field: &str) -> Result<Secret, SecretError> {
        wit::secrets::get(field).map(Secret).map_err(SecretError::from)
    }
    /// A structured log line, attributed to the probe.
    pub fn log(&self, level: Level, message: &str) {
        wit::log::write(level.into(), message, &[]);
    }
}

impl From<Level> for wit::log::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => wit::log::Level::Trace,
            Level::Debug => wit::log::Level::Debug,
            Level::Info => wit::log::Level::Info,
            Level::Warn => wit::log::Level::Warn,
            Level::Error => wit::log::Level::Error,
        }
    }
}

/// The account a credential belongs to. Never a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// A stable identity at the provider (login, user id, workspace).
    pub identity: String,
    /// A human-readable label.
    pub detail: Option<String>,
}

/// Why a probe did not accept a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// The provider refused the credential.
    Rejected(String),
    /// Valid, but missing a permission the connector needs.
    InsufficientScope(String),
    /// The provider could not be asked.
    Unavailable(String),
    /// No probe: validate at the first sync.
    Unsupported,
}

impl From<http::HttpError> for ProbeError {
    fn from(e: http::HttpError) -> Self {
        match &e {
            http::HttpError::Status { status: 401, .. } => ProbeError::Rejected(e.to_string()),
            http::HttpError::Status { status: 403, .. } => ProbeError::InsufficientScope(e.to_string()),
            _ => ProbeError::Unavailable(e.to_string()),
        }
    }
}

impl From<SecretError> for ProbeError {
    fn from(e: SecretError) -> Self {
        ProbeError::Rejected(e.to_string())
    }
}

/// Export a [`Connector`] as the component's `run` function.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        const _: () = {
            struct __PdppExport;
            impl $crate::__bindings::Guest for __PdppExport {
                fn run(
                    start: $crate::__bindings::pdpp::connector::types::Start,
                ) -> $crate::__bindings::pdpp::connector::types::Done {
                    $crate::__private::run::<$connector>(start)
                }
                fn validate_credential(
                    settings: ::std::string::String,
                ) -> ::std::result::Result<
                    $crate::__bindings::pdpp::connector::probe::Account,
                    $crate::__bindings::pdpp::connector::probe::ProbeError,
                > {
                    $crate::__private::probe::<$connector>(settings)
                }
            }
            $crate::__bindings::__export_connector_world!(
                __PdppExport with_types_in $crate::__bindings
            );
        };
    };
}

#[doc(hidden)]
pub mod __private {
    use super::*;

    pub fn probe<C: Connector>(settings: String) -> Result<wit::probe::Account, wit::probe::ProbeError> {
        let settings = serde_json::from_str(&settings).unwrap_or(Value::Object(Default::default()));
        match C::validate_credential(&Probe { settings }) {
            Ok(a) => Ok(wit::probe::Account {
                identity: a.identity,
                detail: a.detail,
            }),
            Err(ProbeError::Rejected(m)) => Err(wit::probe::ProbeError::Rejected(m)),
            Err(ProbeError::InsufficientScope(m)) => Err(wit::probe::ProbeError::InsufficientScope(m)),
            Err(ProbeError::Unavailable(m)) => Err(wit::probe::ProbeError::Unavailable(m)),
            Err(ProbeError::Unsupported) => Err(wit::probe::ProbeError::Unsupported),
        }
    }

    pub fn run<C: Connector>(start: wit::types::Start) -> wit::types::Done {
        let mut run = Run::new(start);
        let result = C::run(&mut run);
        let flushed = run.flush();
        let records_emitted = run.records_emitted;
        let (status, error) = match result.and(flushed) {
            Ok(()) => (wit::types::DoneStatus::Succeeded, None),
            Err(failure) => {
                let status = if failure.cancelled {
                    wit::types::DoneStatus::Cancelled
                } else {
                    wit::types::DoneStatus::Failed
                };
                (status, Some(failure.into_wit()))
            }
        };
        wit::types::Done {
            status,
            records_emitted,
            error,
        }
    }
}

/// Collection mode requested by the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    FullRefresh,
    Incremental,
}

/// A half-open time window `since <= t < until` (RFC 3339 strings).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub since: Option<String>,
    pub until: Option<String>,
}

impl TimeRange {
    /// Whether an RFC 3339 UTC timestamp falls inside the window. Timestamps
    /// in the same format compare correctly as strings.
    pub fn contains(&self, t: &str) -> bool {
        self.since.as_deref().is_none_or(|s| s <= t) && self.until.as_deref().is_none_or(|u| t < u)
    }
}

/// One stream the run may collect, and the limits on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamScope {
    pub name: String,
    pub resources: Option<Vec<String>>,
    pub time_range: Option<TimeRange>,
    pub fields: Option<Vec<String>>,
}

impl StreamScope {
    /// Whether the scope allows this resource (no resource list allows all).
    pub fn allows_resource(&self, resource: &str) -> bool {
        match &self.resources {
            Some(list) if !list.is_empty() => list.iter().any(|r| r == resource),
            _ => true,
        }
    }

    /// Whether the scope allows a record stamped at `t` (no window allows all).
    pub fn allows_time(&self, t: &str) -> bool {
        self.time_range.as_ref().is_none_or(|w| w.contains(t))
    }
}

/// A record key: a single value or the parts of a composite primary key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Single(String),
    Composite(Vec<String>),
}

impl From<&str> for Key {
    fn from(v: &str) -> Self {
        Key::Single(v.to_owned())
    }
}
impl From<String> for Key {
    fn from(v: String) -> Self {
        Key::Single(v)
    }
}
impl From<&String> for Key {
    fn from(v: &String) -> Self {
        Key::Single(v.clone())
    }
}
impl From<u64> for Key {
    fn from(v: u64) -> Self {
        Key::Single(v.to_string())
    }
}
impl From<Vec<String>> for Key {
    fn from(v: Vec<String>) -> Self {
        Key::Composite(v)
    }
}
impl<const N: usize> From<[&str; N]> for Key {
    fn from(v: [&str; N]) -> Self {
        Key::Composite(v.iter().map(|s| s.to_string()).collect())
    }
}

/// The closed vocabulary of recovery actions (SKIP_RESULT and DONE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    RetryByRuntime,
    RetryOnConnectorUpgrade,
    RefreshCredentials,
    ManualActionRequired,
    UpdateSelector,
    UpstreamUnblock,
    NotRetriable,
    Unknown,
}

impl Recovery {
    fn into_wit(self, retryable: Option<bool>) -> wit::types::RecoveryHint {
        use wit::types::RecoveryAction as A;
        let action = match self {
            Recovery::RetryByRuntime => A::RetryByRuntime,
            Recovery::RetryOnConnectorUpgrade => A::RetryOnConnectorUpgrade,
            Recovery::RefreshCredentials => A::RefreshCredentials,
            Recovery::ManualActionRequired => A::ManualActionRequired,
            Recovery::UpdateSelector => A::UpdateSelector,
            Recovery::UpstreamUnblock => A::UpstreamUnblock,
            Recovery::NotRetriable => A::NotRetriable,
            Recovery::Unknown => A::Unknown,
        };
        wit::types::RecoveryHint { action, retryable }
    }
}

/// Why a run did not succeed: becomes DONE `failed` (or `cancelled`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub code: Option<String>,
    pub retryable: Option<bool>,
    pub recovery: Option<Recovery>,
    pub cancelled: bool,
}

impl Failure {
    /// A failure with a message and nothing else.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: None,
            retryable: None,
            recovery: None,
            cancelled: false,
        }
    }
    /// DONE `cancelled`: the connector stopped on purpose.
    pub fn cancelled(message: impl Into<String>) -> Self {
        Failure {
            cancelled: true,
            ..Failure::new(message)
        }
    }
    /// A machine-readable code (`^[a-z][a-z0-9_]{0,63}$`).
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = Some(retryable);
        self
    }
    pub fn recovery(mut self, action: Recovery) -> Self {
        self.recovery = Some(action);
        self
    }

    fn into_wit(self) -> wit::types::DoneError {
        wit::types::DoneError {
            message: self.message,
            code: self.code,
            retryable: self.retryable,
            recovery_hint: self.recovery.map(|r| r.into_wit(None)),
        }
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::new(format!("JSON error: {e}"))
            .code("serialization_failed")
            .retryable(false)
    }
}

/// SKIP_RESULT: a part of the scope the connector did not collect, and why.
#[derive(Clone, Debug, Default)]
pub struct Skip {
    pub stream: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub recovery: Option<(Recovery, Option<bool>)>,
    pub resources: Option<Vec<String>>,
    pub time_range: Option<TimeRange>,
    pub diagnostics: Option<Value>,
}

impl Skip {
    pub fn stream(stream: impl Into<String>, reason: impl Into<String>) -> Self {
        Skip {
            stream: Some(stream.into()),
            reason: Some(reason.into()),
            ..Default::default()
        }
    }
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
    pub fn recovery(mut self, action: Recovery, retryable: Option<bool>) -> Self {
        self.recovery = Some((action, retryable));
        self
    }
}

/// DETAIL_COVERAGE: which detail keys under a checkpoint were accounted for.
#[derive(Clone, Debug, Default)]
pub struct DetailCoverage {
    pub state_stream: String,
    pub stream: String,
    pub required_keys: Vec<String>,
    pub hydrated_keys: Vec<String>,
    pub gap_keys: Vec<String>,
    pub optional_skip_keys: Vec<String>,
    pub considered: Option<u64>,
    pub covered: Option<u64>,
}

/// DETAIL_GAP: a detail record that could not be hydrated this run.
#[derive(Clone, Debug, Default)]
pub struct DetailGap {
    pub stream: String,
    pub parent_stream: Option<String>,
    pub record_key: String,
    pub reason: Option<String>,
    pub retryable: Option<bool>,
    pub detail_locator: Option<Value>,
    pub list_cursor: Option<Value>,
    pub last_error: Option<Value>,
}

/// What the owner may be asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InteractionKind {
    Credentials,
    Otp,
    ManualAction,
}

/// An INTERACTION request.
#[derive(Clone, Debug)]
pub struct Interaction {
    pub kind: InteractionKind,
    pub message: String,
    pub stream: Option<String>,
    pub schema: Option<Value>,
    pub timeout_seconds: Option<u32>,
}

impl Interaction {
    pub fn new(kind: InteractionKind, message: impl Into<String>) -> Self {
        Interaction {
            kind,
            message: message.into(),
            stream: None,
            schema: None,
            timeout_seconds: None,
        }
    }
    /// Ask for a one-time code.
    pub fn otp(message: impl Into<String>) -> Self {
        Interaction::new(InteractionKind::Otp, message)
    }
    pub fn timeout_seconds(mut self, seconds: u32) -> Self {
        self.timeout_seconds = Some(seconds);
        self
    }
    pub fn schema(mut self, schema: Value) -> Self {
        self.schema = Some(schema);
        self
    }
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }
}

/// The owner's answer to an INTERACTION.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Success(Value),
    Cancelled,
    Timeout,
}

/// Why an interaction could not be asked at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InteractError {
    /// The run has no `interactive` binding; the text names what is missing.
    NotInteractive(String),
}

impl std::fmt::Display for InteractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InteractError::NotInteractive(what) => write!(f, "no owner can answer: {what}"),
        }
    }
}

/// Why a secret handle could not be had or revealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretError {
    NotDeclared(String),
    Missing(String),
    RevealNotPermitted(String),
}

impl std::fmt::Display for SecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretError::NotDeclared(s) => {
                write!(f, "credential field {s} is not declared by the manifest")
            }
            SecretError::Missing(s) => {
                write!(f, "credential field {s} has no value for this connection")
            }
            SecretError::RevealNotPermitted(s) => {
                write!(f, "credential field {s} may not be revealed")
            }
        }
    }
}

impl From<wit::secrets::SecretError> for SecretError {
    fn from(e: wit::secrets::SecretError) -> Self {
        match e {
            wit::secrets::SecretError::NotDeclared(s) => SecretError::NotDeclared(s),
            wit::secrets::SecretError::Missing(s) => SecretError::Missing(s),
            wit::secrets::SecretError::RevealNotPermitted(s) => SecretError::RevealNotPermitted(s),
        }
    }
}

impl From<SecretError> for Failure {
    fn from(e: SecretError) -> Self {
        Failure::new(e.to_string())
            .code("credential_unavailable")
            .recovery(Recovery::RefreshCredentials)
            .retryable(false)
    }
}

/// A handle to one credential field. The value stays in the host unless the
/// manifest allows [`Secret::reveal`].
pub struct Secret(wit::secrets::Secret);

impl Secret {
    pub fn field(&self) -> String {
        self.0.field()
    }
    /// A token the host substitutes with the value in requests to allowed origins.
    pub fn placeholder(&self) -> String {
        self.0.placeholder()
    }
    pub fn reveal(&self) -> Result<String, SecretError> {
        self.0.reveal().map_err(SecretError::from)
    }
}

/// Log levels for [`Run::log`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Messages buffered before one `emit.send` call.
const BATCH_MESSAGES: usize = 256;
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
    pending: Vec<wit::emit::Message>,
    pending_bytes: usize,
    records_emitted: u64,
    interactions: u64,
}

impl Run {
    fn new(start: wit::types::Start) -> Self {
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
        Run {
            run_id: start.run_id,
            mode,
            scope,
            state,
            bindings,
            settings,
            pending: Vec::new(),
            pending_bytes: 0,
            records_emitted: 0,
            interactions: 0,
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// The streams this run may collect.
    pub fn scope(&self) -> &[StreamScope] {
        &self.scope
    }
    pub fn stream_scope(&self, stream: &str) -> Option<&StreamScope> {
        self.scope.iter().find(|s| s.name == stream)
    }
    pub fn in_scope(&self, stream: &str) -> bool {
        self.stream_scope(stream).is_some()
    }
    /// Whether the runtime advertised a binding (e.g. `interactive`).
    pub fn has_binding(&self, name: &str) -> bool {
        self.bindings.contains_key(name)
    }
    /// The descriptor of an advertised binding.
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

    /// The prior cursor of a stream. `Ok(None)` when there is none, or in
    /// full-refresh mode.
    pub fn cursor<T: DeserializeOwned>(&self, stream: &str) -> Result<Option<T>, Failure> {
        if self.mode == Mode::FullRefresh {
            return Ok(None);
        }
        match self.state.as_ref().and_then(|s| s.get(stream)).cloned().flatten() {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_value(v)?)),
        }
    }

    /// Emit a RECORD. Top-level fields outside the scope's `fields` are dropped.
    pub fn record(&mut self, stream: &str, key: impl Into<Key>, data: &impl Serialize) -> Result<(), Failure> {
        let mut value = serde_json::to_value(data)?;
        if let (Some(scope), Value::Object(map)) = (self.stream_scope(stream), &mut value)
            && let Some(fields) = &scope.fields
        {
            map.retain(|k, _| fields.iter().any(|f| f == k));
        }
        let data = serde_json::to_string(&value)?;
        self.push_record(stream, key.into(), wit::types::RecordOp::Upsert, Some(data))
    }

    /// Emit a RECORD with `op: delete`.
    pub fn delete(&mut self, stream: &str, key: impl Into<Key>) -> Result<(), Failure> {
        self.push_record(stream, key.into(), wit::types::RecordOp::Delete, None)
    }

    fn push_record(
        &mut self,
        stream: &str,
        key: Key,
        op: wit::types::RecordOp,
        data: Option<String>,
    ) -> Result<(), Failure> {
        let key = match key {
            Key::Single(k) => wit::types::RecordKey::Single(k),
            Key::Composite(parts) => wit::types::RecordKey::Composite(parts),
        };
        let size = data.as_ref().map_or(0, |d| d.len()) + stream.len() + 64;
        self.records_emitted += 1;
        self.push(
            wit::emit::Message::Record(wit::types::DataRecord {
                stream: stream.to_owned(),
                key,
                op,
                data,
                emitted_at: now_rfc3339(),
            }),
            size,
        )
    }

    /// Emit STATE for a stream (the runtime keeps the last one per stream and
    /// commits it only if the run succeeds).
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

    /// Emit PROGRESS.
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
            recovery_hint: skip.recovery.map(|(a, r)| a.into_wit(r)),
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
        match wit::interaction::ask(&request) {
            Ok(wit::interaction::Response::Success(data)) => Ok(Answer::Success(
                serde_json::from_str(&data).unwrap_or(Value::String(data)),
            )),
            Ok(wit::interaction::Response::Cancelled) => Ok(Answer::Cancelled),
            Ok(wit::interaction::Response::Timeout) => Ok(Answer::Timeout),
            Err(wit::interaction::InteractionError::NotInteractive(what)) => Err(InteractError::NotInteractive(what)),
        }
    }

    /// A handle to a declared credential field of this connection.
    pub fn secret(&self, field: &str) -> Result<Secret, SecretError> {
        wit::secrets::get(field).map(Secret).map_err(SecretError::from)
    }

    /// The declared credential fields that have a value for this connection.
    pub fn available_secrets(&self) -> Vec<String> {
        wit::secrets::available()
    }

    /// Structured log line, attributed to this run.
    pub fn log(&self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        wit::log::write(level.into(), message, &fields);
    }

    pub fn info(&self, message: &str) {
        self.log(Level::Info, message, &[]);
    }

    fn push(&mut self, msg: wit::emit::Message, size: usize) -> Result<(), Failure> {
        self.pending.push(msg);
        self.pending_bytes += size;
        if self.pending.len() >= BATCH_MESSAGES || self.pending_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Send everything buffered to the runtime now.
    pub fn flush(&mut self) -> Result<(), Failure> {
        if !self.pending.is_empty() {
            let batch = std::mem::take(&mut self.pending);
            self.pending_bytes = 0;
            wit::emit::send(&batch);
        }
        Ok(())
    }
}
