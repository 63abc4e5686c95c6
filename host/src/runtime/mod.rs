//! One run, from request to outcome.
//!
//! The runtime builds START from a run request (scope, state namespace,
//! advertised bindings), refuses before instantiation what cannot run
//! (unknown streams, wildcards, a required binding the host cannot satisfy),
//! validates every message the guest emits against the scope, stages STATE,
//! and turns the guest's exit into a [`RunOutcome`]: DONE validated against
//! what the host counted, and the state to commit only when the run
//! succeeded.

mod checkpoint;
mod connection;
mod probe;
mod runs;
mod session;
mod time;

pub use connection::{BegunRun, ConnectionRun, RunRefused, begin, run_connection};
pub use probe::{PROBE_WALL_CLOCK, ProbeRequest, ProbeVerdict, probe_credential};
pub use runs::{CancelRequest, Runs};

pub use checkpoint::{CommitPlan, KnownGap, Withheld, checkpoint_streams};
pub use session::Session;
pub use time::parse_instant;

use crate::manifest::Manifest;
use crate::protocol::{self as p, CollectionMode, StateMap, StreamScope};
use crate::sandbox::egress::{EgressConfig, Origin};
use crate::sandbox::{EgressSetup, GuestExit, GuestRun, Plugin, RunControl, RunLimits, Sandbox, SecretSet, Usage};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Where a run's state comes from and whether it is persisted.
#[derive(Clone, Debug, PartialEq)]
pub enum StateInput {
    /// Prior committed cursors (possibly empty); the run's STATE is committed on success.
    Persisted(StateMap),
    /// A single-use run: START.state is none and nothing is committed.
    SingleUse,
}

/// Everything needed to run a connector once.
pub struct RunRequest {
    pub run_id: Option<String>,
    pub manifest: Arc<Manifest>,
    pub mode: CollectionMode,
    /// `None` collects every declared stream.
    pub streams: Option<Vec<StreamScope>>,
    pub state: StateInput,
    /// Non-secret connection settings (a JSON object).
    pub settings: Value,
    /// This connection's credential values, by field name.
    pub secrets: BTreeMap<String, Zeroizing<String>>,
    pub limits: RunLimits,
    /// The owner's handle to cancel the run.
    pub control: RunControl,
    /// Bindings the deployment satisfies beyond `interactive` (which comes
    /// with an interaction handler), with the descriptor START carries.
    pub capabilities: BTreeMap<String, Value>,
    /// The deployment's egress settings (origin rewrites, address policy).
    pub egress: Arc<EgressConfig>,
}

impl RunRequest {
    pub fn new(manifest: Arc<Manifest>) -> Self {
        RunRequest {
            run_id: None,
            manifest,
            mode: CollectionMode::Incremental,
            streams: None,
            state: StateInput::Persisted(StateMap::new()),
            settings: json!({}),
            secrets: BTreeMap::new(),
            limits: RunLimits::default(),
            control: RunControl::new(),
            capabilities: BTreeMap::new(),
            egress: Arc::default(),
        }
    }
}

/// Answers INTERACTIONs on the owner's behalf. A run with a handler
/// advertises the `interactive` binding; a run without one does not.
#[async_trait::async_trait]
pub trait InteractionHandler: Send + Sync {
    async fn answer(&self, request: &p::Interaction) -> p::InteractionAnswer;
}

/// Sees the run as it happens: every message in order, and guest logs.
pub trait Observer: Send + Sync {
    fn message(&mut self, _msg: &p::Message) {}
    fn log(&mut self, _level: crate::sandbox::LogLevel, _message: &str, _fields: &[(String, String)]) {}
}

/// Keeps what a run produces, durably. Each call is one transaction.
#[async_trait::async_trait]
pub trait RunSink: Send + Sync {
    /// A batch of validated, redacted records and the timeline entries that
    /// go with it. Returns how many records were written.
    async fn batch(&self, records: &[p::Record], events: &[crate::store::RunEvent]) -> Result<u64, String>;
    /// An INTERACTION is pending; returns its id. The answer is never kept.
    async fn interaction_opened(&self, request: &p::Interaction) -> Result<String, String>;
    async fn interaction_resolved(&self, id: &str, status: p::InteractionStatus) -> Result<(), String>;
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// The pseudo-rule a hook uses when the host itself failed mid-call (the
/// store refused a write); such a run fails as `runtime_error`.
pub(crate) const HOST_FAULT_RULE: &str = "runtime_error";

/// Why a run could not start. Nothing was instantiated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("START.scope must include a non-empty streams array")]
    EmptyScope,
    #[error("scope stream {0:?} is not allowed: wildcards are never valid")]
    Wildcard(String),
    #[error("scope stream {0:?} is not declared by the manifest")]
    UnknownStream(String),
    #[error("scope stream {0:?} is listed twice")]
    DuplicateStream(String),
    #[error("Runtime cannot satisfy required binding: {0}")]
    UnsatisfiedBinding(String),
    #[error("state for stream {0:?} must be a JSON object or null")]
    InvalidState(String),
}

/// Why a run failed (or was cancelled), as a stable code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureReason {
    ConnectorReportedFailed,
    ConnectorReportedCancelled,
    /// The rule that was broken.
    ConnectorProtocolViolation(&'static str),
    ConnectorExitWithoutDone,
    CpuLimit,
    WallClockLimit,
    MemoryLimit,
    RecordLimit,
    LogLimit,
    /// The host could not keep what the run produced.
    RuntimeError,
    OwnerCancelled,
    OwnerCancelForced,
}

impl FailureReason {
    pub fn code(&self) -> &'static str {
        match self {
            FailureReason::ConnectorReportedFailed => "connector_reported_failed",
            FailureReason::ConnectorReportedCancelled => "connector_reported_cancelled",
            FailureReason::ConnectorProtocolViolation(_) => "connector_protocol_violation",
            FailureReason::ConnectorExitWithoutDone => "connector_exit_without_done",
            FailureReason::CpuLimit => "cpu_limit",
            FailureReason::WallClockLimit => "wall_clock_limit",
            FailureReason::MemoryLimit => "memory_limit",
            FailureReason::RecordLimit => "record_limit",
            FailureReason::LogLimit => "log_limit",
            FailureReason::RuntimeError => "runtime_error",
            FailureReason::OwnerCancelled => "owner_cancelled",
            FailureReason::OwnerCancelForced => "owner_cancel_forced",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::ConnectorProtocolViolation(rule) => {
                write!(f, "{} ({rule})", self.code())
            }
            _ => f.write_str(self.code()),
        }
    }
}

/// One INTERACTION and how it ended (never the answer's data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InteractionSummary {
    pub request_id: String,
    pub kind: p::InteractionKind,
    /// `None` when nobody could be asked (no `interactive` binding).
    pub status: Option<p::InteractionStatus>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    pub run_id: String,
    pub status: p::DoneStatus,
    pub reason: Option<FailureReason>,
    /// A redacted, human-readable account of a failure.
    pub message: Option<String>,
    /// The DONE the connector returned, if it returned one.
    pub done: Option<p::Done>,
    /// RECORDs the host accepted.
    pub records_emitted: u64,
    /// RECORDs made durable by the run's sink (0 without one).
    pub records_written: u64,
    /// The last STATE per stream, in staging order.
    pub staged: Vec<(String, Value)>,
    /// The staged checkpoints to commit, in staging order (empty when nothing may be).
    pub eligible: Vec<(String, Value)>,
    /// Staged checkpoints not to commit, and why.
    pub withheld: Vec<Withheld>,
    /// DONE failed, certified as a stream-scoped failure.
    pub certified_failure: bool,
    /// What the run did not fully do, for the owner.
    pub known_gaps: Vec<KnownGap>,
    /// The full state to persist; `None` when nothing may be committed.
    pub commit: Option<StateMap>,
    pub interactions: Vec<InteractionSummary>,
    /// Fields whose plaintext the guest read.
    pub secret_reveals: Vec<String>,
    pub usage: Usage,
}

impl RunOutcome {
    pub fn succeeded(&self) -> bool {
        self.status == p::DoneStatus::Succeeded
    }

    /// The DONE to report: the connector's when it was accepted, else one the
    /// runtime writes for the failure.
    pub fn reported_done(&self) -> p::Done {
        match (&self.done, &self.reason) {
            (
                Some(d),
                None | Some(FailureReason::ConnectorReportedFailed | FailureReason::ConnectorReportedCancelled),
            ) => d.clone(),
            _ => p::Done {
                status: self.status,
                records_emitted: self.records_emitted,
                error: Some(p::DoneError {
                    message: self.message.clone().unwrap_or_else(|| "run failed".into()),
                    code: self.reason.as_ref().map(|r| r.code().to_owned()),
                    retryable: None,
                    recovery_hint: None,
                }),
            },
        }
    }
}

/// The origins a manifest's `network` binding allows (`allowed_origins`).
pub fn allowed_origins(manifest: &Manifest) -> Vec<Origin> {
    manifest
        .runtime_requirements
        .bindings
        .get("network")
        .and_then(|b| b.params.get("allowed_origins"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).filter_map(Origin::parse).collect())
        .unwrap_or_default()
}

/// Build START for a request, or refuse it. `networked` says the plugin was
/// linked with `wasi:http`, which is what satisfies the `network` binding.
pub fn build_start_for(
    req: &RunRequest,
    run_id: &str,
    interactive: bool,
    networked: bool,
) -> Result<p::Start, StartError> {
    let mut req_caps = req.capabilities.clone();
    if networked {
        let origins: Vec<String> = allowed_origins(&req.manifest).iter().map(|o| o.to_string()).collect();
        req_caps.insert("network".into(), json!({ "allowed_origins": origins }));
    }
    build_start_with(req, run_id, interactive, req_caps)
}

/// Build START for a request, or refuse it.
pub fn build_start(req: &RunRequest, run_id: &str, interactive: bool) -> Result<p::Start, StartError> {
    build_start_with(req, run_id, interactive, req.capabilities.clone())
}

fn build_start_with(
    req: &RunRequest,
    run_id: &str,
    interactive: bool,
    capabilities: BTreeMap<String, Value>,
) -> Result<p::Start, StartError> {
    let manifest = &req.manifest;
    let requested = match &req.streams {
        Some(list) => list.clone(),
        None => manifest.streams.iter().map(|s| StreamScope::named(&s.name)).collect(),
    };
    if requested.is_empty() {
        return Err(StartError::EmptyScope);
    }
    let mut streams = Vec::with_capacity(requested.len());
    for mut entry in requested {
        if entry.name.trim().is_empty() || entry.name.contains('*') {
            return Err(StartError::Wildcard(entry.name));
        }
        let spec = manifest
            .stream(&entry.name)
            .ok_or_else(|| StartError::UnknownStream(entry.name.clone()))?;
        if streams.iter().any(|s: &StreamScope| s.name == entry.name) {
            return Err(StartError::DuplicateStream(entry.name));
        }
        if let Some(fields) = &mut entry.fields {
            let required = spec
                .schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            let mut extra: Vec<String> = required.filter_map(|v| v.as_str().map(str::to_owned)).collect();
            extra.extend(spec.primary_key.iter().cloned());
            extra.extend(spec.cursor_field.iter().cloned());
            if entry.time_range.is_some() {
                extra.extend(spec.consent_time_field.iter().cloned());
            }
            // A resource-limited scope must be able to see each record's resource.
            if entry.resources.as_ref().is_some_and(|r| !r.is_empty()) {
                extra.extend(spec.selection.as_ref().and_then(|s| s.resource_field.clone()));
            }
            for f in extra {
                if !fields.contains(&f) {
                    fields.push(f);
                }
            }
        }
        streams.push(entry);
    }

    let mut bindings = capabilities;
    if interactive {
        bindings.insert("interactive".to_owned(), json!({}));
    }
    let offered: Vec<&str> = bindings.keys().map(|k| canonical_binding(k)).collect();
    for name in manifest.required_bindings() {
        if !offered.contains(&canonical_binding(name)) {
            return Err(StartError::UnsatisfiedBinding(name.to_owned()));
        }
    }

    let state = match &req.state {
        StateInput::SingleUse => None,
        StateInput::Persisted(map) => {
            for (stream, cursor) in map {
                if !(cursor.is_object() || cursor.is_null()) {
                    return Err(StartError::InvalidState(stream.clone()));
                }
            }
            Some(map.clone())
        }
    };
    Ok(p::Start {
        run_id: run_id.to_owned(),
        collection_mode: req.mode,
        scope: p::Scope { streams },
        state,
        bindings,
    })
}

/// The profile's name for a binding; the reference implementation's aliases
/// map to it (`browser` is `browser_automation`).
pub fn canonical_binding(name: &str) -> &str {
    match name {
        "browser" => "browser_automation",
        other => other,
    }
}

/// A fresh run id: `run_<unix-ms>_<random>`.
pub fn new_run_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut r = [0u8; 4];
    getrandom::fill(&mut r).expect("system randomness");
    format!("run_{ms}_{:08x}", u32::from_le_bytes(r))
}

/// Run a plugin once.
pub async fn execute(
    sandbox: &Sandbox,
    plugin: &Plugin,
    req: RunRequest,
    interaction: Option<Arc<dyn InteractionHandler>>,
    observer: Box<dyn Observer>,
    sink: Option<Arc<dyn RunSink>>,
) -> Result<RunOutcome, StartError> {
    let run_id = req.run_id.clone().unwrap_or_else(new_run_id);
    // A manifest may only lower the deployment's limits.
    let mut req = req;
    req.limits = req.limits.lowered_by(req.manifest.runtime_requirements.limits.as_ref());
    let start = build_start_for(&req, &run_id, interaction.is_some(), plugin.networked())?;
    let declared = req
        .manifest
        .credential_fields()
        .iter()
        .map(|f| (f.name.clone(), f.reveal));
    let secrets = SecretSet::new(declared, req.secrets.clone());
    let mut session = Session::new(
        req.manifest.clone(),
        &start,
        interaction,
        observer,
        secrets.clone(),
        sink,
        req.control.clone(),
    );
    session.observe(&p::Message::Start(start.clone()));

    let guest = GuestRun {
        start,
        settings: req.settings.clone(),
        secrets,
        limits: req.limits.clone(),
        control: req.control.clone(),
        egress: EgressSetup {
            allowed: if plugin.networked() {
                allowed_origins(&req.manifest)
            } else {
                Vec::new()
            },
            config: req.egress.clone(),
            limits: req.limits.http.clone(),
        },
    };
    let (exit, usage, hooks) = sandbox.run(plugin, guest, Box::new(session)).await;
    let mut session = *hooks
        .into_any()
        .downcast::<Session>()
        .expect("the runtime's own hooks come back");
    let exit = match session.settle(&exit).await {
        Ok(()) => exit,
        Err(fault) => GuestExit::HostFault(fault.0),
    };
    Ok(session.finish(run_id, exit, usage, &req.state))
}

/// Map a guest exit to an outcome, given what the session saw.
pub(crate) fn evaluate(
    exit: GuestExit,
    counted: u64,
) -> (p::DoneStatus, Option<FailureReason>, Option<String>, Option<p::Done>) {
    use p::DoneStatus::*;
    match exit {
        GuestExit::Done(done) => match session::validate_done(&done, counted) {
            Err(v) => (
                Failed,
                Some(FailureReason::ConnectorProtocolViolation(v.rule)),
                Some(v.message),
                Some(done),
            ),
            Ok(()) => {
                let (reason, message) = match done.status {
                    Succeeded => (None, None),
                    Failed => (
                        Some(FailureReason::ConnectorReportedFailed),
                        done.error.as_ref().map(|e| e.message.clone()),
                    ),
                    Cancelled => (
                        Some(FailureReason::ConnectorReportedCancelled),
                        done.error.as_ref().map(|e| e.message.clone()),
                    ),
                };
                (done.status, reason, message, Some(done))
            }
        },
        // The host failed to record what the guest did (not the guest's fault).
        GuestExit::Violation(v) if v.rule == HOST_FAULT_RULE => {
            (Failed, Some(FailureReason::RuntimeError), Some(v.message), None)
        }
        GuestExit::Violation(v) => (
            Failed,
            Some(FailureReason::ConnectorProtocolViolation(v.rule)),
            Some(v.message),
            None,
        ),
        GuestExit::Limit(b) => {
            let reason = match b {
                crate::sandbox::Breach::Cpu => FailureReason::CpuLimit,
                crate::sandbox::Breach::WallClock => FailureReason::WallClockLimit,
                crate::sandbox::Breach::Memory => FailureReason::MemoryLimit,
                crate::sandbox::Breach::Records => FailureReason::RecordLimit,
                crate::sandbox::Breach::Logs => FailureReason::LogLimit,
            };
            (Failed, Some(reason), Some(b.to_string()), None)
        }
        GuestExit::Trap(t) => (
            Failed,
            Some(FailureReason::ConnectorExitWithoutDone),
            Some(format!("the connector stopped before returning DONE: {t}")),
            None,
        ),
        GuestExit::HostFault(f) => (Failed, Some(FailureReason::RuntimeError), Some(f), None),
        GuestExit::Cancelled(c) => (
            p::DoneStatus::Cancelled,
            Some(if c.forced {
                FailureReason::OwnerCancelForced
            } else {
                FailureReason::OwnerCancelled
            }),
            Some(c.to_string()),
            None,
        ),
    }
}
