//! The runs this process executes in the background (the owner API's runs):
//! starting one (on record before its id is returned), the owner's cancel,
//! the owner's answers to their questions, and what is in progress here.
//!
//! Questions and cancels go through the store, so any host sharing it can
//! answer a question or cancel a run, whichever host executes it: an answer
//! waits in the question's row, sealed, until the run's host takes it (and
//! erases it); a cancel waits on the run's row. One poll per host finds what
//! concerns its runs; within one process the API wakes the run at once.
//! "One run per connection" is the store's rule (a unique index across every
//! host), not this registry's.

use super::InteractionHandler;
use super::connection::{ConnectionRun, RunRefused, begin};
use super::refresh::FullRefreshPolicy;
use crate::deploy::Deployment;
use crate::manifest::Manifest;
use crate::plugins::LoadedPlugin;
use crate::protocol::{self as p, InteractionAnswer};
use crate::sandbox::{RunControl, Sandbox, StopCause};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// How often a host looks in the store for answers and cancels of its runs
/// that arrived through another host.
pub const ATTENTION_POLL: Duration = Duration::from_millis(250);

/// The vault purpose of an answer waiting in the store.
pub const ANSWER_PURPOSE: &str = "interaction-answer";

/// What to do with a run's outcome once it ended (see [`Runs::start_then`]).
pub type AfterRun =
    Box<dyn FnOnce(super::RunOutcome) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

/// One run in progress in this process.
struct ActiveRun {
    connection_id: String,
    control: RunControl,
    /// Woken when an answer to its question may be waiting.
    answered: Arc<Notify>,
}

/// The registry of runs executing in this process.
pub struct Runs {
    dep: Deployment,
    sandbox: Arc<Sandbox>,
    active: Mutex<HashMap<String, ActiveRun>>,
    /// The deployment's periodic full-refresh interval, overriding manifests.
    full_refresh_interval_seconds: Option<u64>,
    /// Set while [`Runs::attend_forever`] runs: it wakes each waiting run
    /// whose answer is in the store, so a parked run needs no timer of its own.
    attending: std::sync::atomic::AtomicBool,
}

/// What a cancel request found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelRequest {
    /// The run executes here; it was asked to stop.
    Requested { connection_id: String },
    /// No run of that id executes in this process.
    NotHere,
}

impl Runs {
    /// `full_refresh_interval_seconds` is the deployment's
    /// `[collection]` setting (see [`Runs::full_refresh_policy`]).
    pub fn new(dep: Deployment, sandbox: Arc<Sandbox>, full_refresh_interval_seconds: Option<u64>) -> Arc<Runs> {
        Arc::new(Runs {
            dep,
            sandbox,
            active: Mutex::default(),
            full_refresh_interval_seconds,
            attending: Default::default(),
        })
    }

    /// The interaction handler of a run of this registry: its questions are
    /// answered through the store (by the owner, on any host).
    pub fn interactions(self: &Arc<Self>, run_id: &str) -> Arc<dyn InteractionHandler> {
        Arc::new(StoredInteractions {
            runs: Arc::downgrade(self),
            run_id: run_id.to_owned(),
        })
    }

    /// An answer to a question of `run_id` may be waiting in the store: wake
    /// the run if it executes here.
    pub fn answer_arrived(&self, run_id: &str) {
        if let Some(run) = self.active.lock().expect("active runs").get(run_id) {
            run.answered.notify_one();
        }
    }

    /// Look once in the store for answers and cancel requests for runs of
    /// this process that arrived through another host.
    pub async fn attend(&self) -> Result<(), crate::store::StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        for (run_id, answered, cancel) in self.dep.store.runs_needing_attention().await? {
            let active = self.active.lock().expect("active runs");
            let Some(run) = active.get(&run_id) else { continue };
            if cancel {
                run.control.cancel();
            }
            if answered {
                run.answered.notify_one();
            }
        }
        Ok(())
    }

    /// Attend forever, every [`ATTENTION_POLL`] (a serving host's task).
    pub async fn attend_forever(self: Arc<Self>) {
        /// Clears `attending` when the task ends (aborted at shutdown).
        struct Attending<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Attending<'_> {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::Release);
            }
        }
        self.attending.store(true, std::sync::atomic::Ordering::Release);
        let _attending = Attending(&self.attending);
        let mut tick = tokio::time::interval(ATTENTION_POLL);
        loop {
            tick.tick().await;
            if let Err(e) = self.attend().await {
                tracing::warn!("cannot look for answers and cancels: {e}");
            }
        }
    }

    /// The periodic full-refresh policy of a connector on this deployment:
    /// what a scheduler asks (with the connection's last full refresh)
    /// before it starts a run.
    pub fn full_refresh_policy(&self, manifest: &Manifest) -> FullRefreshPolicy {
        FullRefreshPolicy::of(manifest, self.full_refresh_interval_seconds)
    }

    /// Start a run of a stored connection in the background. When this
    /// returns `Ok`, the run is on record as running (every reader of the
    /// store sees it); a refusal that [`RunRefused::is_recorded`] is on record
    /// as a failed run under the id in `opts` (set one to know it).
    pub async fn start(
        self: &Arc<Self>,
        plugin: Arc<LoadedPlugin>,
        connection_id: &str,
        opts: ConnectionRun,
    ) -> Result<String, RunRefused> {
        self.start_then(plugin, connection_id, opts, None).await
    }

    /// [`Runs::start`], then `after` with the run's outcome once it has
    /// ended and is on record (in the run's task, before the run leaves
    /// this registry): what a credential bootstrap does with its credential.
    pub async fn start_then(
        self: &Arc<Self>,
        plugin: Arc<LoadedPlugin>,
        connection_id: &str,
        opts: ConnectionRun,
        after: Option<AfterRun>,
    ) -> Result<String, RunRefused> {
        let begun = begin(&self.dep, &plugin.plugin, plugin.manifest.clone(), connection_id, opts).await?;
        let run_id = begun.run_id().to_owned();
        self.active.lock().expect("active runs").insert(
            run_id.clone(),
            ActiveRun {
                connection_id: connection_id.to_owned(),
                control: begun.control().clone(),
                answered: Arc::default(),
            },
        );
        let runs = self.clone();
        let id = run_id.clone();
        tokio::spawn(async move {
            match begun.execute(&runs.dep, &runs.sandbox, &plugin.plugin).await {
                Ok(outcome) => {
                    if let Some(after) = after {
                        after(outcome).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(run_id = %id, reason = e.reason(), "run stopped before it ended normally: {e}");
                }
            }
            runs.active.lock().expect("active runs").remove(&id);
        });
        Ok(run_id)
    }

    /// Ask a run of this process to stop (cooperatively, then by force).
    pub fn cancel(&self, run_id: &str) -> CancelRequest {
        match self.active.lock().expect("active runs").get(run_id) {
            Some(run) => {
                run.control.cancel();
                CancelRequest::Requested {
                    connection_id: run.connection_id.clone(),
                }
            }
            None => CancelRequest::NotHere,
        }
    }

    /// Stop every run of a connection that executes in this process (the
    /// connection was revoked or is being deleted): cancel, then wait until
    /// they ended or `wait` passed. Returns whether none is left.
    pub async fn stop_connection(&self, connection_id: &str, wait: std::time::Duration) -> bool {
        let of_connection = |runs: &HashMap<String, ActiveRun>| {
            runs.values()
                .filter(|r| r.connection_id == connection_id)
                .map(|r| r.control.clone())
                .collect::<Vec<_>>()
        };
        for control in of_connection(&self.active.lock().expect("active runs")) {
            control.stop(StopCause::ConnectionRevoked);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if of_connection(&self.active.lock().expect("active runs")).is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The host is stopping: cancel every run of this process and wait until
    /// they ended or `wait` passed. Returns whether none is left.
    pub async fn shutdown(&self, wait: std::time::Duration) -> bool {
        for run in self.active.lock().expect("active runs").values() {
            run.control.stop(StopCause::HostShutdown);
        }
        let deadline = tokio::time::Instant::now() + wait;
        while !self.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    /// How many runs execute in this process now.
    pub fn len(&self) -> usize {
        self.active.lock().expect("active runs").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Answers a run's questions from the store: the owner answered on this
/// host or another one; the sealed answer is taken once and erased.
struct StoredInteractions {
    runs: Weak<Runs>,
    run_id: String,
}

#[async_trait::async_trait]
impl InteractionHandler for StoredInteractions {
    async fn answer(&self, _request: &p::Interaction) -> InteractionAnswer {
        loop {
            let Some(runs) = self.runs.upgrade() else {
                return InteractionAnswer::cancelled();
            };
            let wake = match runs.active.lock().expect("active runs").get(&self.run_id) {
                Some(run) => run.answered.clone(),
                None => return InteractionAnswer::cancelled(),
            };
            // Registered before looking, so an answer arriving meanwhile wakes us.
            let notified = wake.notified();
            match runs.dep.store.take_answer(&self.run_id).await {
                Ok(Some((id, status, sealed))) => {
                    let opened = crate::vault::SealedBlob::from_bytes(&sealed)
                        .and_then(|blob| runs.dep.key.open_blob(&id, ANSWER_PURPOSE, &blob).ok());
                    return match opened.and_then(|b| serde_json::from_slice::<InteractionAnswer>(&b).ok()) {
                        Some(answer) if answer.status == status => answer,
                        _ => {
                            tracing::error!(run_id = %self.run_id, "an answer in the store does not open; the question is cancelled");
                            InteractionAnswer::cancelled()
                        }
                    };
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(run_id = %self.run_id, "cannot read answers: {e}"),
            }
            // The host's poll (or this process's API) wakes us: it notifies
            // again every poll while the answer waits in the store, so a
            // parked run keeps no timer. Without a poll (a registry nobody
            // attends) the run looks for itself every second.
            let attended = runs.attending.load(std::sync::atomic::Ordering::Acquire);
            drop(runs);
            if attended {
                notified.await;
            } else {
                let _ = tokio::time::timeout(ATTENTION_POLL * 4, notified).await;
            }
        }
    }
}
