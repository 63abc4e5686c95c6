//! Running a plugin: one fresh store per run or probe, and what it ended as.

use super::bindings::wit;
use super::caps::browser::{BrowserSetup, BrowserUsage};
use super::caps::http::RequestSummary;
use super::caps::secrets::SecretSet;
use super::control::{Cancelled, RunControl};
use super::hooks::{self, NullHooks, RunHooks, Violation};
use super::limits::{Breach, RunLimits};
use super::state::{RunState, StoreInputs};
use super::{CapturedText, Plugin, Sandbox, convert};
use crate::egress::EgressConfig;
use crate::protocol as p;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Store, UpdateDeadline};

/// One run's inputs to the sandbox. What the plugin is granted (its network
/// allowlist) comes with the [`Plugin`].
pub struct GuestRun {
    pub start: p::Start,
    pub settings: Value,
    pub secrets: SecretSet,
    pub limits: RunLimits,
    pub control: RunControl,
    /// The deployment's egress settings (rewrites, address rules).
    pub egress: Arc<EgressConfig>,
    /// The run's browser (only used when the plugin is granted one).
    pub browser: Option<BrowserSetup>,
    /// Which export to call.
    pub entry: Entry,
}

/// The guest export a run calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Entry {
    /// `run`: collect.
    #[default]
    Run,
    /// `bootstrap`: create this credential field for the owner.
    Bootstrap { field: String },
}

/// How the guest's `run` ended.
#[derive(Clone, Debug, PartialEq)]
pub enum GuestExit {
    /// It returned DONE.
    Done(p::Done),
    /// The runtime rejected a message; the guest was stopped.
    Violation(Violation),
    /// A limit stopped it.
    Limit(Breach),
    /// It trapped (a panic, `unreachable`, a failed instantiation…) without DONE.
    Trap(String),
    /// The host could not keep what the guest sent.
    HostFault(String),
    /// The owner cancelled the run.
    Cancelled(Cancelled),
    /// The host had no room for the run (its live-run limit, or the kernel
    /// refused memory or a stack): the host's capacity, not the connector's fault.
    HostCapacity(String),
}

/// What the run consumed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Guest time, not counting waits for the owner.
    pub cpu: Duration,
    pub wall: Duration,
    pub peak_memory_bytes: u64,
    pub stdout: CapturedText,
    pub stderr: CapturedText,
    /// HTTP requests in order (no header values).
    pub requests: Vec<RequestSummary>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// How the run's browser ended (default when it had none).
    pub browser: BrowserUsage,
}

/// A credential probe of one plugin: its setup fields, the candidate
/// credential, and the same limits and egress a run would have.
pub struct GuestProbe {
    pub settings: Value,
    pub secrets: SecretSet,
    pub limits: RunLimits,
    pub control: RunControl,
    pub egress: Arc<EgressConfig>,
}

/// What the guest's `validate-credential` answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeAnswer {
    Accepted { identity: String, detail: Option<String> },
    Rejected(String),
    InsufficientScope(String),
    Unavailable(String),
    Unsupported,
}

impl Sandbox {
    /// A fresh store for one run: nothing ambient, limits armed.
    fn store(&self, plugin: &Plugin, inputs: StoreInputs<'_>) -> Store<RunState> {
        let mut store = Store::new(&self.engine, RunState::new(&plugin.grants, inputs));
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if ctx.data().control.forced_due() {
                return Err(wasmtime::Error::new(Cancelled { forced: true }));
            }
            match ctx.data().clock.check() {
                Some(breach) => Err(wasmtime::Error::new(breach)),
                None => Ok(UpdateDeadline::Yield(1)),
            }
        });
        store
    }

    /// Instantiate a plugin in a fresh store and drop it: the fixed cost of a run.
    pub async fn instantiate_only(&self, plugin: &Plugin) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let (_lent, hooks) = hooks::lend(NullHooks);
        let mut store = self.store(
            plugin,
            StoreInputs {
                hooks,
                secrets: SecretSet::default(),
                limits: &RunLimits::default(),
                control: RunControl::new(),
                egress: Arc::default(),
                browser: None,
            },
        );
        plugin.pre.instantiate_async(&mut store).await?;
        Ok(t.elapsed())
    }

    /// Run the guest once in a fresh store, with `hooks` as the runtime's
    /// side of it; the hooks come back with the guest's exit and usage.
    ///
    /// The run is admitted and its store built when this is called; the
    /// future returned keeps only what the run needs while the guest runs or
    /// waits for its owner (the store, the hooks' slot, START as WIT values),
    /// not the inputs it was built from (docs/sandbox.md, "Capacity").
    pub fn run<'a, H: RunHooks + 'static>(
        &'a self,
        plugin: &'a Plugin,
        run: GuestRun,
        hooks: H,
    ) -> impl Future<Output = (GuestExit, Usage, H)> + 'a {
        let slot = self.admit();
        let GuestRun {
            start,
            settings,
            secrets,
            limits,
            control,
            egress,
            browser,
            entry,
        } = run;
        let (lent, shared) = hooks::lend(hooks);
        let store = slot.as_ref().ok().map(|_| {
            self.store(
                plugin,
                StoreInputs {
                    hooks: shared,
                    secrets,
                    limits: &limits,
                    control,
                    egress,
                    browser,
                },
            )
        });
        // The guest gets START as WIT values; the protocol form and the
        // settings are not kept while the run goes on.
        let wit_start = store.as_ref().map(|_| convert::start(&start, &settings));
        drop((start, settings, limits));
        async move {
            let (_slot, mut store, wit_start) = match (slot, store, wit_start) {
                (Ok(slot), Some(store), Some(wit_start)) => (slot, store, wit_start),
                (Err(full), ..) => return (GuestExit::HostCapacity(full.0), Usage::default(), lent.take_back()),
                _ => unreachable!("an admitted run has its store and START"),
            };
            let result = async {
                // Boxed: instantiation's state is not kept in the run's
                // future while the guest runs or waits.
                let instance = Box::pin(plugin.pre.instantiate_async(&mut store))
                    .await
                    .map_err(Instantiation)?;
                match &entry {
                    Entry::Run => instance.call_run(&mut store, &wit_start).await,
                    Entry::Bootstrap { field } => instance.call_bootstrap(&mut store, &wit_start, field).await,
                }
                .map_err(Called)
            }
            .await;
            // Boxed, like instantiation: what follows the guest is not state
            // a waiting run should carry.
            let (exit, usage) = Box::pin(conclude(store, result)).await;
            (exit, usage, lent.take_back())
        }
    }

    /// Call the guest's credential probe once in a fresh store. Emitting and
    /// asking the owner are not available to a probe (the hooks drop and refuse them).
    pub async fn probe(&self, plugin: &Plugin, probe: GuestProbe) -> (Result<ProbeAnswer, GuestExit>, Usage) {
        let _slot = match self.admit() {
            Ok(slot) => slot,
            Err(full) => return (Err(GuestExit::HostCapacity(full.0)), Usage::default()),
        };
        let (_lent, hooks) = hooks::lend(NullHooks);
        let mut store = self.store(
            plugin,
            StoreInputs {
                hooks,
                secrets: probe.secrets,
                limits: &probe.limits,
                control: probe.control,
                egress: probe.egress,
                browser: None,
            },
        );
        let settings = probe.settings.to_string();
        let result = async {
            let instance = Box::pin(plugin.pre.instantiate_async(&mut store))
                .await
                .map_err(Instantiation)?;
            instance
                .call_validate_credential(&mut store, &settings)
                .await
                .map_err(Called)
        }
        .await;
        let state = store.into_data();
        let answer = match result {
            Ok(a) => Ok(convert::probe_answer(a)),
            Err(e) => Err(e.classify(&state)),
        };
        (answer, state.usage())
    }
}

/// After the guest: how it ended, and what it used. The browser ends before
/// the run does: its login material is kept only when the guest returned DONE.
async fn conclude(store: Store<RunState>, result: Result<wit::Done, Failed>) -> (GuestExit, Usage) {
    let mut state = store.into_data();
    let exit = match result {
        Ok(done) => GuestExit::Done(convert::done(done)),
        Err(e) => e.classify(&state),
    };
    let browser = state.take_browser().finish(matches!(exit, GuestExit::Done(_))).await;
    let mut usage = state.usage();
    usage.browser = browser;
    (exit, usage)
}

/// Where a run's error arose: creating the instance or calling it.
enum Failed {
    Instantiation(wasmtime::Error),
    Called(wasmtime::Error),
}
use Failed::{Called, Instantiation};

impl Failed {
    fn classify(self, state: &RunState) -> GuestExit {
        match self {
            Called(e) => state.classify(&e),
            // Instantiation runs no guest code of ours beyond data and
            // element initialisation (which trap) and asks the limiter for
            // memory (a breach): any other failure is the host not finding
            // room for the instance.
            Instantiation(e) => match state.classify(&e) {
                GuestExit::Trap(_) if e.downcast_ref::<wasmtime::Trap>().is_none() => GuestExit::HostCapacity(format!(
                    "the host could not create the run's instance: {}",
                    super::root(&e)
                )),
                other => other,
            },
        }
    }
}
