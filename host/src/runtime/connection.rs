//! Running a stored connection: its own credential from the vault, its own
//! state from the store, its records into the store.

use super::{
    InteractionHandler, Observer, RunOutcome, RunRequest, RunSink, SinkError, StartError, StateInput, Turn,
    build_start_for, execute_with_start, new_run_id,
};
use crate::browser::{BrowserService, ProfileArchive, SealedProfile};
use crate::deploy::Deployment;
use crate::manifest::Manifest;
use crate::protocol::{self as p, CollectionMode, StreamScope};
use crate::sandbox::caps::browser::BrowserSetup;
use crate::sandbox::{Grants, Plugin, RunLimits, Sandbox};
use crate::store::{
    BrowserSessionMode, CommitStatus, ConnectionStatus, CredentialStatus, GapSummary, Namespace, RunEnd, RunEndEvent,
    RunEvent, RunStatus, Store, StoreError, Trigger,
};
use crate::vault::VaultError;
use crate::vault::VaultKey;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::Instrument;

/// Why a connection's run did not start. Nothing was instantiated.
#[derive(Debug, thiserror::Error)]
pub enum RunRefused {
    #[error("connection {0} does not exist")]
    UnknownConnection(String),
    #[error("connection {connection_id} belongs to connector {actual}, not {expected}")]
    WrongConnector {
        connection_id: String,
        expected: String,
        actual: String,
    },
    #[error("connection {connection_id} is {status}; it cannot run")]
    NotRunnable {
        connection_id: String,
        status: &'static str,
    },
    #[error("connection {0} already has a run in progress")]
    AlreadyRunning(String),
    #[error("connection {0} has no stored credential")]
    CredentialMissing(String),
    #[error("the credential of connection {0} was revoked")]
    CredentialRevoked(String),
    #[error("the credential of connection {0} was rejected by the provider; capture a new one")]
    CredentialRejected(String),
    #[error("connector {connector_id} drives a browser and this host has none: {why}")]
    BrowserUnavailable { connector_id: String, why: String },
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RunRefused {
    /// A stable code for the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            RunRefused::UnknownConnection(_) => "unknown_connection",
            RunRefused::WrongConnector { .. } => "wrong_connector",
            RunRefused::NotRunnable { .. } => "connection_not_runnable",
            RunRefused::AlreadyRunning(_) => "run_already_active",
            RunRefused::CredentialMissing(_) => "credential_missing",
            RunRefused::CredentialRevoked(_) => "credential_revoked",
            RunRefused::CredentialRejected(_) => "credential_rejected",
            RunRefused::BrowserUnavailable { .. } => "browser_unavailable",
            RunRefused::Vault(_) => "credential_unreadable",
            RunRefused::Start(_) => "start_refused",
            RunRefused::Store(_) => "runtime_error",
        }
    }
}

/// How to run a connection.
pub struct ConnectionRun {
    pub trigger: Trigger,
    /// The run's id; a fresh one when `None`.
    pub run_id: Option<String>,
    /// Whose state the run reads and commits; `None` for a single-use run
    /// (no prior state, nothing committed).
    pub namespace: Option<Namespace>,
    /// The owner's handle to cancel the run.
    pub control: crate::sandbox::RunControl,
    /// Bindings the deployment satisfies (see [`RunRequest::capabilities`]).
    pub capabilities: BTreeMap<String, serde_json::Value>,
    /// The deployment's egress settings.
    pub egress: Arc<crate::egress::EgressConfig>,
    pub mode: CollectionMode,
    pub streams: Option<Vec<StreamScope>>,
    pub limits: RunLimits,
    pub interaction: Option<Arc<dyn InteractionHandler>>,
    pub observer: Box<dyn Observer>,
    /// The host's browser, for connectors that drive one.
    pub browser: Option<BrowserService>,
    /// A credential bootstrap of this field (trigger `bootstrap`): the
    /// guest's `bootstrap` export runs instead of `run`.
    pub bootstrap_field: Option<String>,
}

impl ConnectionRun {
    pub fn new(trigger: Trigger) -> Self {
        ConnectionRun {
            trigger,
            run_id: None,
            namespace: Some(Namespace::Global),
            control: crate::sandbox::RunControl::new(),
            capabilities: BTreeMap::new(),
            egress: Arc::default(),
            mode: CollectionMode::Incremental,
            streams: None,
            limits: RunLimits::default(),
            interaction: None,
            observer: Box::new(super::Quiet),
            browser: None,
            bootstrap_field: None,
        }
    }

    /// A credential bootstrap of `field`: no state read or committed, no
    /// stored credential needed.
    pub fn bootstrap(field: impl Into<String>) -> Self {
        let mut opts = ConnectionRun::new(Trigger::Bootstrap);
        opts.namespace = None;
        opts.bootstrap_field = Some(field.into());
        opts
    }
}

/// The vault purpose a question's screenshot is sealed under (to its run).
pub const SCREENSHOT_PURPOSE: &str = "interaction-screenshot";

/// Writes a run's batches, timeline and interactions into the store.
struct StoreSink {
    store: Store,
    /// Seals the screenshot a question carries (to the run).
    key: Arc<VaultKey>,
    connection_id: String,
    run_id: String,
    /// stream → the data field holding a record's own time.
    time_fields: BTreeMap<String, String>,
    /// A setup run: the first batch that accepts a record activates the draft.
    activate_draft: bool,
}

impl StoreSink {
    fn batch_of<'a>(&'a self, records: &'a [p::Record], events: &'a [RunEvent]) -> crate::store::Batch<'a> {
        crate::store::Batch {
            connection_id: &self.connection_id,
            run_id: &self.run_id,
            records,
            events,
            time_fields: &self.time_fields,
            activate_draft: self.activate_draft,
        }
    }
}

#[async_trait::async_trait]
impl RunSink for StoreSink {
    async fn batch(&self, records: &[p::Record], events: &[RunEvent]) -> Result<u64, SinkError> {
        Ok(self.store.write(self.batch_of(records, events)).await?.written)
    }
    async fn batch_in_turn(&self, records: &[p::Record], events: &[RunEvent], turn: Turn) -> Result<u64, SinkError> {
        // The rows are made ready while the batch ahead is written.
        let prepared = Store::prepare(self.batch_of(records, events));
        turn.wait().await?;
        Ok(self.store.write_prepared(prepared).await?.written)
    }
    async fn interaction_opened(
        &self,
        request: &p::Interaction,
        screenshot: Option<Vec<u8>>,
    ) -> Result<String, SinkError> {
        let sealed = screenshot.map(|png| self.key.seal_blob(&self.run_id, SCREENSHOT_PURPOSE, &png).to_bytes());
        Ok(self
            .store
            .open_interaction(&self.run_id, &self.connection_id, request, sealed)
            .await?)
    }
    async fn interaction_resolved(&self, id: &str, status: p::InteractionStatus) -> Result<(), SinkError> {
        Ok(self.store.resolve_interaction(id, status).await?)
    }
}

impl RunRefused {
    /// Whether the refusal is on record as a (failed) run of the connection,
    /// so an owner sees why nothing ran. An unknown connection, a wrong
    /// connector or a run already in progress are not.
    pub fn is_recorded(&self) -> bool {
        !matches!(
            self,
            RunRefused::UnknownConnection(_) | RunRefused::WrongConnector { .. } | RunRefused::AlreadyRunning(_)
        )
    }
}

/// A run of a stored connection that is on record as running and has not
/// started executing yet: [`begin`] made it, [`BegunRun::execute`] runs it.
pub struct BegunRun {
    run_id: String,
    connection_id: String,
    manifest: Arc<Manifest>,
    req: RunRequest,
    /// Built once, when the run was prepared.
    start: p::Start,
    opts: ConnectionRun,
    /// What becomes of the run's browser material at its end.
    browser: BrowserPlan,
    /// Timeline entries from preparing the run.
    notes: Vec<RunEvent>,
}

impl BegunRun {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }
    /// The owner's handle to cancel this run.
    pub fn control(&self) -> &crate::sandbox::RunControl {
        &self.opts.control
    }
}

/// Prepare a run of one stored connection and put it on record as running,
/// or refuse it. A refusal that [`RunRefused::is_recorded`] is stored as a
/// failed run, with a `run.refused` timeline entry. When this returns `Ok`,
/// the run is visible to every reader of the store.
pub async fn begin(
    dep: &Deployment,
    plugin: &Plugin,
    manifest: Arc<Manifest>,
    connection_id: &str,
    mut opts: ConnectionRun,
) -> Result<BegunRun, RunRefused> {
    let store = &dep.store;
    let run_id = opts.run_id.get_or_insert_with(new_run_id).clone();
    // Prepared and on record as running, or refused (one other run of the
    // connection in progress, on any host, is a refusal too).
    let started = match prepare(dep, &manifest, connection_id, &opts, &run_id, plugin.grants()).await {
        Ok(req) => match store
            .create_run(&run_id, connection_id, &manifest.connector_id, opts.trigger, opts.mode)
            .await
        {
            Ok(()) => Ok(req),
            Err(StoreError::RunInProgress(_)) => Err(RunRefused::AlreadyRunning(connection_id.to_owned())),
            Err(e) => return Err(e.into()),
        },
        Err(refused) => Err(refused),
    };
    match started {
        Ok(Prepared {
            req,
            start,
            browser,
            notes,
        }) => Ok(BegunRun {
            run_id,
            connection_id: connection_id.to_owned(),
            manifest,
            req,
            start,
            opts,
            browser,
            notes,
        }),
        Err(refused) => {
            if refused.is_recorded() {
                record_refusal(store, &run_id, connection_id, &manifest.connector_id, &opts, &refused).await?;
            }
            Err(refused)
        }
    }
}

/// Run one stored connection of `manifest`'s connector: [`begin`], then
/// [`BegunRun::execute`].
pub async fn run_connection(
    dep: &Deployment,
    sandbox: &Sandbox,
    plugin: &Plugin,
    manifest: Arc<Manifest>,
    connection_id: &str,
    opts: ConnectionRun,
) -> Result<RunOutcome, RunRefused> {
    begin(dep, plugin, manifest, connection_id, opts)
        .await?
        .execute(dep, sandbox, plugin)
        .await
}

impl BegunRun {
    /// Execute the run, commit what may be committed, and record how it ended.
    pub async fn execute(self, dep: &Deployment, sandbox: &Sandbox, plugin: &Plugin) -> Result<RunOutcome, RunRefused> {
        let store = &dep.store;
        let BegunRun {
            run_id,
            connection_id,
            manifest,
            req,
            start,
            opts,
            browser,
            notes,
        } = self;
        let connection_id = connection_id.as_str();
        // While the run goes on, a heartbeat tells other processes sharing
        // the database that it is alive: a serving host's one heartbeat
        // covers all its runs; any other process (the CLI) beats for its run.
        let heartbeat = (!crate::store::runner::serving()).then(|| {
            let store = store.clone();
            let run_id = run_id.clone();
            AbortOnDrop(tokio::spawn(async move {
                let every = std::time::Duration::from_millis(crate::store::runner::HEARTBEAT_EVERY_MS);
                loop {
                    tokio::time::sleep(every).await;
                    let _ = store.heartbeat(&run_id).await;
                }
            }))
        });
        let _stop_heartbeat = heartbeat;
        let started = RunEvent::new(
            "run.started",
            json!({
                "trigger": opts.trigger,
                "collection_mode": opts.mode,
                "streams": start.scope.streams,
            }),
        );
        let opening: Vec<RunEvent> = std::iter::once(started).chain(notes).collect();
        Box::pin(store.append_events(&run_id, &opening)).await?;

        // What START scoped, for full-refresh reconciliation after the run.
        let scope = start.scope.streams.clone();
        let sink: Arc<dyn RunSink> = Arc::new(StoreSink {
            store: store.clone(),
            key: dep.key.clone(),
            connection_id: connection_id.to_owned(),
            run_id: run_id.clone(),
            time_fields: manifest
                .streams
                .iter()
                .filter_map(|s| Some((s.name.clone(), s.consent_time_field.clone()?)))
                .collect(),
            activate_draft: opts.trigger == Trigger::Setup,
        });
        let span = tracing::info_span!("run", run_id = %run_id, connection_id = %connection_id);
        async {
            let mut outcome =
                execute_with_start(sandbox, plugin, req, start, opts.interaction, opts.observer, Some(sink)).await;
            tracing::info!(
                status = ?outcome.status,
                reason = outcome.reason.as_ref().map(|r| r.code()),
                records = outcome.records_written,
                "run ended"
            );
            // Boxed, like every step after the guest: the run's future holds
            // only the largest state it is in while the run waits for its
            // owner, not the database writes that follow it.
            let browser_events = Box::pin(settle_browser(dep, connection_id, &run_id, &browser, &outcome)).await?;
            let ended = Ended {
                connection_id,
                run_id: &run_id,
                trigger: opts.trigger,
                mode: opts.mode,
                namespace: opts.namespace.as_ref(),
                manifest: &manifest,
                scope: &scope,
            };
            Box::pin(finish(store, ended, &mut outcome, browser_events)).await?;
            Ok(outcome)
        }
        .instrument(span)
        .await
    }
}

/// What `finish` needs to know about the run that ended.
#[derive(Clone, Copy)]
struct Ended<'a> {
    connection_id: &'a str,
    run_id: &'a str,
    trigger: Trigger,
    mode: CollectionMode,
    namespace: Option<&'a Namespace>,
    manifest: &'a Manifest,
    /// The streams START scoped.
    scope: &'a [StreamScope],
}

/// After the guest stopped: close pending interactions, commit eligible
/// checkpoints one by one, reconcile a succeeded full refresh (delete the
/// records it no longer returned), mark a credential the provider rejected,
/// write the terminal timeline entry (with the streams left behind) and the
/// run's end.
async fn finish(
    store: &Store,
    ended: Ended<'_>,
    outcome: &mut RunOutcome,
    mut events: Vec<RunEvent>,
) -> Result<(), RunRefused> {
    let Ended {
        connection_id,
        run_id,
        trigger,
        namespace,
        ..
    } = ended;
    if store.cancel_pending_interactions(run_id).await? > 0 {
        events.insert(
            0,
            RunEvent::new(
                "run.interaction_completed",
                json!({ "status": "cancelled", "reason": "run_ended" }),
            ),
        );
    }
    if let Some(super::FailureReason::ConnectorProtocolViolation(rule)) = &outcome.reason {
        events.push(RunEvent::new(
            "run.violation",
            json!({ "rule": rule, "message": outcome.message }),
        ));
    }
    for w in &outcome.withheld {
        events.push(RunEvent::new(
            "run.state_withheld",
            json!({ "stream": w.stream, "reason": w.reason, "detail": w.detail }),
        ));
    }
    // Checkpoints are committed one by one, in staging order; the first
    // failure stops the loop and fails the run, leaving visible which
    // committed and which did not.
    let mut committed = 0u64;
    if let (Some(ns), true) = (namespace, outcome.commit.is_some()) {
        for (stream, cursor) in outcome.eligible.clone() {
            match store
                .commit_state(connection_id, ns, run_id, &[(stream.clone(), cursor)])
                .await
            {
                Ok(()) => {
                    committed += 1;
                    events.push(RunEvent::new(
                        "run.state_advanced",
                        json!({ "stream": stream, "namespace": ns.key() }),
                    ));
                }
                Err(e) => {
                    events.push(RunEvent::new(
                        "run.state_commit_failed",
                        json!({ "stream": stream, "error": e.to_string() }),
                    ));
                    outcome.status = p::DoneStatus::Failed;
                    outcome.reason = Some(super::FailureReason::RuntimeError);
                    outcome.message = Some(format!("committing the checkpoint of {stream} failed: {e}"));
                    outcome.commit = None;
                    break;
                }
            }
        }
    }
    // Full-refresh reconciliation comes after the commits: a commit failure
    // has failed the run by now, and a failed run never deletes.
    let reconciled_deletions = reconcile(store, &ended, outcome, &mut events).await;
    let staged = outcome.staged.len() as u64;
    let commit_status = match (namespace, staged, committed) {
        (None, _, _) => CommitStatus::Disabled,
        (_, 0, _) if outcome.succeeded() => CommitStatus::Committed,
        (_, _, 0) => CommitStatus::NotCommitted,
        (_, staged, c) if c == staged => CommitStatus::Committed,
        _ => CommitStatus::PartiallyCommitted,
    };
    let rejected = outcome
        .done
        .as_ref()
        .and_then(|d| d.error.as_ref())
        .and_then(|e| e.code.as_deref())
        == Some("credential_rejected");
    // The stored credential is marked rejected only when this run actually
    // used it: sent it in a request, typed it into its browser, or read its
    // plaintext.
    let secret_used = outcome.usage.requests.iter().any(|r| r.secret_used)
        || !outcome.secrets_typed.is_empty()
        || !outcome.secret_reveals.is_empty();
    if rejected && secret_used && store.mark_credential_rejected(connection_id, run_id).await? {
        events.push(RunEvent::new("run.credential_rejected", json!({})));
    }
    for r in &outcome.usage.requests {
        events.push(RunEvent::new(
            "run.http_request",
            serde_json::to_value(r).unwrap_or_default(),
        ));
    }
    let status = RunStatus::of_done(outcome.status);
    let end = RunEndEvent {
        status,
        reason: outcome.reason.as_ref().map(|r| r.code().to_owned()),
        error_code: outcome
            .done
            .as_ref()
            .and_then(|d| d.error.as_ref())
            .and_then(|e| e.code.clone()),
        message: outcome.message.clone(),
        rule: match &outcome.reason {
            Some(super::FailureReason::ConnectorProtocolViolation(rule)) => Some((*rule).to_owned()),
            _ => None,
        },
        records_emitted: outcome.records_emitted,
        records_written: outcome.records_written,
        checkpoint_commit_status: commit_status,
        state_streams_staged: staged,
        state_streams_committed: committed,
        known_gaps: outcome
            .known_gaps
            .iter()
            .map(|g| GapSummary {
                kind: g.kind.to_owned(),
                stream: g.stream.clone(),
                message: g.message.clone(),
            })
            .collect(),
        streams_behind: super::streams_behind(outcome, crate::store::now_ms()),
        reconciled_deletions,
    };
    events.push(RunEvent::new(
        end.kind(),
        serde_json::to_value(&end).expect("a run's end serializes"),
    ));
    store.append_events(run_id, &events).await?;
    if trigger == Trigger::Setup && outcome.succeeded() {
        // A reconnected connection was proven before: a succeeded setup run
        // brings it back even without new records.
        store.activate_after_setup_run(connection_id, run_id).await?;
    }
    let u = &outcome.usage;
    store
        .finish_run(
            run_id,
            &RunEnd {
                status,
                records_emitted: outcome.records_emitted as i64,
                records_written: outcome.records_written as i64,
                failure_reason: outcome.reason.as_ref().map(|r| r.code().to_owned()),
                failure_message: outcome.message.clone(),
                resource_report: json!({
                    "cpu_ms": u.cpu.as_secs_f64() * 1e3,
                    "wall_ms": u.wall.as_secs_f64() * 1e3,
                    "peak_memory_bytes": u.peak_memory_bytes,
                    "stdout_bytes": u.stdout.bytes_observed,
                    "stderr_bytes": u.stderr.bytes_observed,
                    "stderr_tail": u.stderr.tail,
                    "http_requests": u.requests.len(),
                    "bytes_in": u.bytes_in,
                    "bytes_out": u.bytes_out,
                    "browser_requests": u.browser.requests.len(),
                }),
            },
        )
        .await?;
    Ok(())
}

/// Full-refresh reconciliation of a finished run (see `reconcile.rs` for
/// which streams qualify): delete, per covered stream, the stored records
/// the run did not write, and record `run.reconciled`. Returns how many
/// records were deleted. A store failure fails the run as `runtime_error`,
/// with nothing deleted.
async fn reconcile(store: &Store, ended: &Ended<'_>, outcome: &mut RunOutcome, events: &mut Vec<RunEvent>) -> u64 {
    let plan = super::reconcile::plan(ended.manifest, ended.mode, ended.scope, outcome);
    if !plan.considered() {
        return 0;
    }
    match store.reconcile(ended.connection_id, ended.run_id, &plan.streams).await {
        Ok(deleted) => {
            let total = deleted.iter().map(|(_, n)| n).sum();
            let streams: Vec<serde_json::Value> = deleted
                .iter()
                .map(|(stream, n)| json!({ "stream": stream, "records_deleted": n }))
                .collect();
            events.push(RunEvent::new(
                "run.reconciled",
                json!({ "streams": streams, "not_reconciled": plan.left }),
            ));
            total
        }
        Err(e) => {
            events.push(RunEvent::new(
                "run.reconcile_failed",
                json!({ "streams": plan.streams, "error": e.to_string() }),
            ));
            outcome.status = p::DoneStatus::Failed;
            outcome.reason = Some(super::FailureReason::RuntimeError);
            outcome.message = Some(format!("deleting what the full refresh no longer returned failed: {e}"));
            0
        }
    }
}

/// A run ready to start: its request, START, and its browser's plan.
struct Prepared {
    req: RunRequest,
    start: p::Start,
    browser: BrowserPlan,
    notes: Vec<RunEvent>,
}

async fn prepare(
    dep: &Deployment,
    manifest: &Arc<Manifest>,
    connection_id: &str,
    opts: &ConnectionRun,
    run_id: &str,
    grants: &Grants,
) -> Result<Prepared, RunRefused> {
    let store = &dep.store;
    let conn = store
        .connection(connection_id)
        .await?
        .ok_or_else(|| RunRefused::UnknownConnection(connection_id.into()))?;
    if conn.connector_id != manifest.connector_id {
        return Err(RunRefused::WrongConnector {
            connection_id: connection_id.into(),
            expected: manifest.connector_id.clone(),
            actual: conn.connector_id,
        });
    }
    let bootstrap = opts
        .bootstrap_field
        .clone()
        .filter(|_| opts.trigger == Trigger::Bootstrap);
    let runnable = conn.status == ConnectionStatus::Active
        || (conn.status == ConnectionStatus::Draft && matches!(opts.trigger, Trigger::Setup | Trigger::Bootstrap));
    if !runnable {
        return Err(RunRefused::NotRunnable {
            connection_id: connection_id.into(),
            status: conn.status.as_str(),
        });
    }
    // Only this connection's own bundle; never the host's environment. A
    // bootstrap gets none: it makes the credential, it does not use one.
    let mut secrets = BTreeMap::new();
    match store.credential(connection_id).await? {
        _ if bootstrap.is_some() => {}
        Some(c) if c.status == CredentialStatus::Revoked => {
            return Err(RunRefused::CredentialRevoked(connection_id.into()));
        }
        Some(c) if c.status == CredentialStatus::Rejected => {
            return Err(RunRefused::CredentialRejected(connection_id.into()));
        }
        Some(c) => secrets = dep.key.open(connection_id, &c.sealed)?.fields,
        None if manifest.needs_credential() => {
            return Err(RunRefused::CredentialMissing(connection_id.into()));
        }
        None => {}
    }
    let mut req = RunRequest::new(manifest.clone());
    req.run_id = Some(run_id.to_owned());
    req.mode = opts.mode;
    req.streams = opts.streams.clone();
    req.state = match &opts.namespace {
        Some(ns) => StateInput::Persisted(store.state(connection_id, ns).await?),
        None => StateInput::SingleUse,
    };
    req.control = opts.control.clone();
    req.capabilities = opts.capabilities.clone();
    req.egress = opts.egress.clone();
    req.settings = conn.binding_metadata;
    req.secrets = secrets;
    req.limits = opts.limits.clone();
    let mut notes = Vec::new();
    let mut browser = BrowserPlan {
        mode: conn.browser_session,
        known_account: conn
            .account_identity
            .as_ref()
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    };
    if bootstrap.is_some() && grants.bootstrap_browser().is_none() && grants.browser().is_none() {
        return Err(RunRefused::BrowserUnavailable {
            connector_id: manifest.connector_id.clone(),
            why: "the connector declares no credential bootstrap".into(),
        });
    }
    if grants.browser().is_some() || bootstrap.is_some() {
        let service = opts.browser.clone().ok_or_else(|| RunRefused::BrowserUnavailable {
            connector_id: manifest.connector_id.clone(),
            why: "no browser is configured".into(),
        })?;
        if let Some(why) = service.unavailable() {
            return Err(RunRefused::BrowserUnavailable {
                connector_id: manifest.connector_id.clone(),
                why,
            });
        }
        let profile = match browser.mode {
            BrowserSessionMode::Ephemeral => None,
            BrowserSessionMode::Persistent => open_profile(dep, connection_id, &mut notes).await?,
        };
        req.browser = Some(BrowserSetup {
            establish_within: service.config().session_establish,
            service,
            profile,
            bootstrap_field: bootstrap.clone(),
        });
        req.session_account = browser.known_account.clone();
    } else {
        browser.known_account = None;
    }
    if let Some(field) = bootstrap {
        req.entry = crate::sandbox::Entry::Bootstrap { field };
    }
    let start = build_start_for(&req, run_id, opts.interaction.is_some(), grants)?;
    Ok(Prepared {
        req,
        start,
        browser,
        notes,
    })
}

/// The connection's stored login material, opened for this run. Material
/// that does not open (another key, altered bytes) is forgotten: the run
/// starts logged out, and the timeline says why.
async fn open_profile(
    dep: &Deployment,
    connection_id: &str,
    notes: &mut Vec<RunEvent>,
) -> Result<Option<ProfileArchive>, RunRefused> {
    let Some(stored) = dep.store.browser_profile(connection_id).await? else {
        return Ok(None);
    };
    let opened = SealedProfile::from_bytes(&stored.sealed)
        .ok_or_else(|| "the stored profile is not a sealed blob".to_owned())
        .and_then(|s| s.open(&dep.key, connection_id).map_err(|e| e.to_string()));
    match opened {
        Ok(archive) => {
            notes.push(RunEvent::new(
                "run.browser_profile_loaded",
                json!({ "bytes": archive.len(), "from_run": stored.run_id }),
            ));
            Ok(Some(archive))
        }
        Err(why) => {
            dep.store.delete_browser_profile(connection_id).await?;
            notes.push(RunEvent::new(
                "run.browser_profile_discarded",
                json!({ "reason": "unreadable", "detail": why }),
            ));
            Ok(None)
        }
    }
}

/// What the end of a run does with its browser material.
struct BrowserPlan {
    mode: BrowserSessionMode,
    /// The connection's recorded account, when the run drives a browser.
    known_account: Option<String>,
}

/// Timeline entries kept of one run's browser requests; past it, a count.
const BROWSER_REQUEST_EVENTS: usize = 500;

/// The end of a run's browser: keep its login material sealed (a persistent
/// connection whose run succeeded with a verified account), or make sure
/// none survives (ephemeral, or a session of another account); record the
/// first verified account as the connection's identity; and put the
/// requests and the cleanup status on the timeline.
async fn settle_browser(
    dep: &Deployment,
    connection_id: &str,
    run_id: &str,
    plan: &BrowserPlan,
    outcome: &RunOutcome,
) -> Result<Vec<RunEvent>, RunRefused> {
    let b = &outcome.usage.browser;
    let mut events = Vec::new();
    if !b.started {
        // A start that did not finish left nothing (the engine tears down
        // what it launched); the timeline says why there was no session.
        if let Some(why) = &b.start_interrupted {
            events.push(RunEvent::new("run.browser_start_interrupted", json!({ "reason": why })));
        }
        return Ok(events);
    }
    for r in b.requests.iter().take(BROWSER_REQUEST_EVENTS) {
        events.push(RunEvent::new(
            "run.browser_request",
            serde_json::to_value(r).unwrap_or_default(),
        ));
    }
    if b.requests.len() > BROWSER_REQUEST_EVENTS {
        events.push(RunEvent::new(
            "run.browser_requests_not_listed",
            json!({ "count": b.requests.len() - BROWSER_REQUEST_EVENTS }),
        ));
    }
    let mismatch = outcome.reason == Some(super::FailureReason::SessionAccountMismatch);
    let verified = b.account.is_some() && !mismatch;
    let store = &dep.store;
    let (profile, stored_deleted) = match (plan.mode, &b.profile) {
        (BrowserSessionMode::Ephemeral, _) => ("destroyed", store.delete_browser_profile(connection_id).await?),
        // The stored material logs into another account: it must not be
        // used again for this connection.
        _ if mismatch => ("discarded", store.delete_browser_profile(connection_id).await?),
        (BrowserSessionMode::Persistent, Some(packed)) if outcome.succeeded() && verified => {
            let sealed = packed.0.seal(&dep.key, connection_id).to_bytes();
            let kept = store
                .save_browser_profile(
                    connection_id,
                    run_id,
                    &sealed,
                    packed.0.len() as u64,
                    b.account.as_deref(),
                )
                .await?;
            (if kept { "sealed" } else { "destroyed" }, false)
        }
        _ => ("discarded", false),
    };
    if outcome.succeeded()
        && plan.known_account.is_none()
        && let Some(account) = b.account.as_deref()
    {
        store.set_account_identity(connection_id, &json!(account)).await?;
        events.push(RunEvent::new(
            "connection.account_identified",
            json!({ "account": account, "source": "browser_session" }),
        ));
    }
    let cleanup = b.cleanup.as_ref();
    events.push(RunEvent::new(
        "run.browser_cleanup",
        json!({
            "mode": plan.mode,
            "profile": profile,
            "stored_profile_deleted": stored_deleted,
            "processes_left": cleanup.map(|c| c.processes_left),
            "directory_removed": cleanup.map(|c| c.directory_removed),
            "complete": cleanup.is_some_and(|c| c.complete()),
        }),
    ));
    Ok(events)
}

/// Stops a background task when dropped (however the run ends).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn record_refusal(
    store: &Store,
    run_id: &str,
    connection_id: &str,
    connector_id: &str,
    opts: &ConnectionRun,
    refused: &RunRefused,
) -> Result<(), RunRefused> {
    let end = RunEnd {
        status: RunStatus::Failed,
        records_emitted: 0,
        records_written: 0,
        failure_reason: Some(refused.reason().to_owned()),
        failure_message: Some(refused.to_string()),
        resource_report: json!({}),
    };
    store
        .create_refused_run(run_id, connection_id, connector_id, opts.trigger, opts.mode, &end)
        .await?;
    store
        .append_events(
            run_id,
            &[RunEvent::new(
                "run.refused",
                json!({ "reason": refused.reason(), "message": refused.to_string() }),
            )],
        )
        .await?;
    Ok(())
}
