//! The runs this process executes in the background (the owner API's runs):
//! starting one (on record before its id is returned), the owner's cancel,
//! and what is in progress here. "One run per connection" is the store's
//! rule (a unique index across every host), not this registry's.

use super::connection::{ConnectionRun, RunRefused, begin};
use super::refresh::FullRefreshPolicy;
use crate::deploy::Deployment;
use crate::manifest::Manifest;
use crate::plugins::LoadedPlugin;
use crate::sandbox::{RunControl, Sandbox};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One run in progress in this process.
struct ActiveRun {
    connection_id: String,
    control: RunControl,
}

/// The registry of runs executing in this process.
pub struct Runs {
    dep: Deployment,
    sandbox: Arc<Sandbox>,
    active: Mutex<HashMap<String, ActiveRun>>,
    /// The deployment's periodic full-refresh interval, overriding manifests.
    full_refresh_interval_seconds: Option<u64>,
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
        })
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
        let begun = begin(&self.dep, &plugin.plugin, plugin.manifest.clone(), connection_id, opts).await?;
        let run_id = begun.run_id().to_owned();
        self.active.lock().expect("active runs").insert(
            run_id.clone(),
            ActiveRun {
                connection_id: connection_id.to_owned(),
                control: begun.control().clone(),
            },
        );
        let runs = self.clone();
        let id = run_id.clone();
        tokio::spawn(async move {
            if let Err(e) = begun.execute(&runs.dep, &runs.sandbox, &plugin.plugin).await {
                tracing::warn!(run_id = %id, reason = e.reason(), "run stopped before it ended normally: {e}");
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
            control.cancel();
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
            run.control.cancel();
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
