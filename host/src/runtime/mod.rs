//! One run, from request to outcome.
//!
//! The runtime builds START from a run request once ([`start`]: scope,
//! state namespace, offered bindings), refusing before instantiation what
//! cannot run; its session ([`session`]) checks every message the guest emits
//! against the profile's rules ([`rules`]) and stages STATE; the verdict
//! ([`outcome`]) turns the guest's exit into a [`RunOutcome`]: DONE
//! validated against what the host counted, and the state to commit only
//! when the run succeeded ([`checkpoint`]).
//!
//! - `start.rs`: START and the refusals before a run.
//! - `session.rs`: the session state and the sandbox hooks.
//! - `rules.rs`: the message and DONE rules.
//! - `redact.rs`: scrubbing the run's secrets from messages.
//! - `outcome.rs`: the verdict and the commit plan hand-off.
//! - `checkpoint.rs`: which staged checkpoints may be committed.
//! - `reconcile.rs`: which streams a full-refresh run covered completely,
//!   so the records it no longer returned are deleted.
//! - `behind.rs`: which streams a run left behind, for setup status.
//! - `refresh.rs`: when a connection's next run should be a full refresh.
//! - `connection.rs`: running a stored connection (vault, store, timeline).
//! - `probe.rs`: the credential probe.

mod behind;
mod checkpoint;
mod connection;
mod outcome;
mod probe;
mod reconcile;
mod redact;
mod refresh;
mod rules;
mod runs;
mod session;
mod start;
mod time;

pub use behind::streams_behind;
pub use checkpoint::{CommitPlan, KnownGap, Withheld, checkpoint_streams};
pub use connection::{BegunRun, ConnectionRun, RunRefused, SCREENSHOT_PURPOSE, begin, run_connection};
pub use outcome::{FailureReason, InteractionSummary, RunOutcome};
pub use probe::{PROBE_WALL_CLOCK, ProbeRequest, ProbeVerdict, probe_credential};
pub use reconcile::{NotReconciled, ReconcilePlan};
pub use refresh::FullRefreshPolicy;
pub use runs::{ANSWER_PURPOSE, ATTENTION_POLL, AfterRun, CancelRequest, Runs};
pub use session::Session;
pub use start::{StartError, build_start, build_start_for};
pub use time::parse_instant;

use crate::egress::EgressConfig;
use crate::manifest::Manifest;
use crate::protocol::{self as p, CollectionMode, StateMap, StreamScope};
use crate::sandbox::caps::browser::BrowserSetup;
use crate::sandbox::{Entry, GuestExit, GuestRun, Plugin, RunControl, RunLimits, Sandbox, SecretSet};
use crate::store::StoreError;
use serde_json::{Value, json};
use std::collections::BTreeMap;
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
    /// with an interaction handler) and the plugin's grants, with the
    /// descriptor START carries.
    pub capabilities: BTreeMap<String, Value>,
    /// The deployment's egress settings (origin rewrites, address policy).
    pub egress: Arc<EgressConfig>,
    /// The run's browser, for a plugin granted one on a host that has one.
    pub browser: Option<BrowserSetup>,
    /// The account the connection's browser session must belong to (its
    /// recorded identity); `None` until a first successful login records it.
    pub session_account: Option<String>,
    /// The guest export to call: `run`, or `bootstrap` of a credential field.
    pub entry: Entry,
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
            browser: None,
            session_account: None,
            entry: Entry::Run,
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

/// Why a [`RunSink`] could not keep what it was given. The run fails as
/// `runtime_error`, with this error's text as its message.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The batch before this one was not written, so this one is not either.
    #[error("the batch before this one was not written")]
    PreviousBatchNotWritten,
}

/// When a batch may be written: after the batch before it is durable.
/// Batches of a run are handed to the sink before the one ahead of them is
/// written (so a sink can prepare them meanwhile), yet each waits its turn,
/// and none is written after one that failed.
pub struct Turn(Option<tokio::sync::watch::Receiver<Option<bool>>>);

impl Turn {
    /// No batch ahead: write at once.
    pub fn now() -> Turn {
        Turn(None)
    }

    /// After the batch whose outcome `ahead` will carry (`true`: durable).
    pub(crate) fn after(ahead: tokio::sync::watch::Receiver<Option<bool>>) -> Turn {
        Turn(Some(ahead))
    }

    /// Wait until the batch ahead is durable; an error when it failed or
    /// its writer stopped.
    pub async fn wait(self) -> Result<(), SinkError> {
        let Some(mut ahead) = self.0 else {
            return Ok(());
        };
        match ahead.wait_for(Option::is_some).await {
            Ok(outcome) if *outcome == Some(true) => Ok(()),
            _ => Err(SinkError::PreviousBatchNotWritten),
        }
    }
}

/// Keeps what a run produces, durably. Each call is one transaction.
#[async_trait::async_trait]
pub trait RunSink: Send + Sync {
    /// A batch of validated, redacted records and the timeline entries that
    /// go with it. Returns how many records were written.
    async fn batch(&self, records: &[p::Record], events: &[crate::store::RunEvent]) -> Result<u64, SinkError>;
    /// [`RunSink::batch`] once `turn` comes. A sink may do the work that
    /// needs no database before waiting for it.
    async fn batch_in_turn(
        &self,
        records: &[p::Record],
        events: &[crate::store::RunEvent],
        turn: Turn,
    ) -> Result<u64, SinkError> {
        turn.wait().await?;
        self.batch(records, events).await
    }
    /// An INTERACTION is pending, with the page the run's browser showed
    /// (a PNG, kept sealed for the owner until the question is resolved);
    /// returns its id. The answer is never kept.
    async fn interaction_opened(
        &self,
        request: &p::Interaction,
        screenshot: Option<Vec<u8>>,
    ) -> Result<String, SinkError>;
    async fn interaction_resolved(&self, id: &str, status: p::InteractionStatus) -> Result<(), SinkError>;
}

/// The run's secrets as the manifest declares them: which fields may be
/// revealed, where each may be substituted, which are public.
pub(crate) fn secret_set(
    manifest: &crate::manifest::Manifest,
    values: std::collections::BTreeMap<String, zeroize::Zeroizing<String>>,
) -> SecretSet {
    let fields = manifest.credential_fields();
    SecretSet::new(fields.iter().map(|f| (f.name.clone(), f.reveal)), values)
        .with_policies(fields.iter().map(|f| (f.name.clone(), field_policy(f))))
        .with_public_fields(fields.iter().filter(|f| !f.is_secret()).map(|f| f.name.clone()))
}

/// Where a credential field's placeholder may be substituted, from its
/// manifest `inject` (absent: the `authorization` header only).
pub(crate) fn field_policy(f: &crate::manifest::CredentialField) -> crate::sandbox::caps::secrets::FieldPolicy {
    match &f.inject {
        None => Default::default(),
        Some(i) => crate::sandbox::caps::secrets::FieldPolicy {
            headers: i.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            body: i.body,
        },
    }
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

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

/// Run a plugin once: build START, then [`execute_with_start`].
pub fn execute<'a>(
    sandbox: &'a Sandbox,
    plugin: &'a Plugin,
    req: RunRequest,
    interaction: Option<Arc<dyn InteractionHandler>>,
    observer: Box<dyn Observer>,
    sink: Option<Arc<dyn RunSink>>,
) -> impl Future<Output = Result<RunOutcome, StartError>> + 'a {
    use futures::FutureExt;
    use futures::future::Either;
    // Not an `async fn`: its arguments would be kept in the future beside
    // the run's own copy of them for as long as the run lives.
    let run_id = req.run_id.clone().unwrap_or_else(new_run_id);
    match build_start_for(&req, &run_id, interaction.is_some(), plugin.grants()) {
        Ok(start) => Either::Left(execute_with_start(sandbox, plugin, req, start, interaction, observer, sink).map(Ok)),
        Err(e) => Either::Right(std::future::ready(Err(e))),
    }
}

/// Run a plugin once with the START already built for this request by
/// [`build_start_for`] (same plugin, same `interaction.is_some()`); the run
/// id is START's.
///
/// The session and the sandbox's run are built when this is called; the
/// future keeps what the run needs while it goes on or waits for its owner,
/// and no second copy of its inputs (a parked run's host memory,
/// docs/sandbox.md, "Capacity").
pub fn execute_with_start<'a>(
    sandbox: &'a Sandbox,
    plugin: &'a Plugin,
    req: RunRequest,
    start: p::Start,
    interaction: Option<Arc<dyn InteractionHandler>>,
    observer: Box<dyn Observer>,
    sink: Option<Arc<dyn RunSink>>,
) -> impl Future<Output = RunOutcome> + 'a {
    use futures::FutureExt;
    // What the run needs while it goes on, taken out of the request; the
    // rest of the request (its scope, its capabilities) is freed now rather
    // than held for as long as the run waits for its owner.
    let RunRequest {
        manifest,
        state,
        settings,
        secrets,
        limits,
        control,
        egress,
        browser,
        session_account,
        entry,
        ..
    } = { req };
    // A manifest may only lower the deployment's limits.
    let limits = limits.lowered_by(manifest.runtime_requirements.limits.as_ref());
    let secrets = secret_set(&manifest, secrets);
    let mut session = Session::new(
        manifest,
        &start,
        interaction,
        observer,
        secrets.clone(),
        sink,
        control.clone(),
    )
    .expecting_account(session_account)
    .bootstrapping(matches!(entry, Entry::Bootstrap { .. }));
    session.observe(&p::Message::Start(start.clone()));
    let run_id = start.run_id.clone();

    let guest = GuestRun {
        start,
        settings,
        secrets,
        limits,
        control,
        egress,
        browser,
        entry,
    };
    sandbox
        .run(plugin, guest, session)
        .then(move |(exit, usage, mut session)| async move {
            let exit = match session.settle(&exit).await {
                Ok(()) => exit,
                Err(fault) => GuestExit::HostFault(fault.0),
            };
            session.finish(run_id, exit, usage, &state)
        })
}
