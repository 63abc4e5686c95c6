//! The wasmtime sandbox: one engine, compiled plugins, and one store per run.
//!
//! This module owns everything that touches wasmtime. A [`Sandbox`] holds the
//! engine (component model, epoch interruption) and one linker per set of
//! granted capabilities ([`linker`]), built once and cached.
//! [`Sandbox::compile`] turns a `.wasm` into a [`Plugin`] for the plugin's
//! [`Grants`]: its imports are checked against the grants and resolved once
//! through an `InstancePre`. [`Sandbox::run`] gives each run a fresh store
//! ([`state`]) whose WASI context has no environment, no arguments, no
//! preopened directories, no sockets and no name lookup, and whose stdout and
//! stderr are captured into bounded tails.
//!
//! Each guest capability is a module of its own under [`caps`] (state, host
//! implementation, linking); WIT values become protocol messages in
//! [`convert`]. The sandbox knows no provider and no protocol rule: the
//! capabilities hand what the guest sends to a [`RunHooks`] implementation
//! (the runtime), which validates it. Egress rules are not here either: the
//! `http` capability asks [`crate::egress`].

mod bindings;
pub mod budget;
pub mod caps;
mod capture;
mod control;
mod convert;
mod grants;
mod hooks;
mod limits;
mod linker;
mod run;
mod state;
mod vm;

pub use budget::{Held, RunBudget};
pub use caps::http::{HttpLimits, RequestSummary};
pub use caps::secrets::SecretSet;
pub use capture::{Capture, CapturedText};
pub use control::{CANCEL_GRACE, Cancelled, RunControl, StopCause};
pub use grants::{Capability, CapabilitySet, Grants};
pub use hooks::{Asked, HookError, HostFault, LogLevel, RunHooks, Violation};
pub use limits::{Breach, LOG_LINE_MIN_BYTES, RunLimits};
pub use run::{Entry, GuestExit, GuestProbe, GuestRun, ProbeAnswer, Usage};
pub use vm::OutOfCapacity;

use bindings::ConnectorPre;
use linker::Linkers;
use state::RunState;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// How often the engine's epoch advances; the granularity of CPU and
/// wall-clock enforcement.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Runs (and credential probes) one host holds live at once unless its
/// operator says otherwise (`[capacity] max_live_runs`): each is a guest
/// instance with its memory and stack, parked or not.
pub const DEFAULT_MAX_LIVE_RUNS: usize = 50_000;

/// Why a `.wasm` cannot be a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("the component does not fit the pdpp:connector world: {0}")]
    WrongWorld(String),
    /// It imports an interface of a capability its manifest does not grant.
    #[error(
        "the component does not fit the pdpp:connector world: it imports {import}, but its manifest does not \
         require the {binding} binding"
    )]
    ImportNotGranted { import: String, binding: &'static str },
    /// It imports an interface this host has no implementation of.
    #[error(
        "the component does not fit the pdpp:connector world: it imports {import}, which this host does not provide"
    )]
    ImportNotProvided { import: String },
}

impl LoadError {
    /// What does not fit, without the leading "does not fit the world".
    pub fn mismatch(&self) -> String {
        match self {
            LoadError::NotAComponent(m) | LoadError::WrongWorld(m) => m.clone(),
            LoadError::ImportNotGranted { import, binding } => {
                format!("it imports {import}, but its manifest does not require the {binding} binding")
            }
            LoadError::ImportNotProvided { import } => {
                format!("it imports {import}, which this host does not provide")
            }
        }
    }
}

/// A compiled connector, ready to instantiate, with what it is granted.
#[derive(Clone)]
pub struct Plugin {
    pre: ConnectorPre<RunState>,
    grants: Grants,
}

impl Plugin {
    /// What the plugin was linked with (and the parameters of each grant).
    pub fn grants(&self) -> &Grants {
        &self.grants
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin").field("grants", &self.grants).finish()
    }
}

/// The engine and linkers shared by every plugin and run.
pub struct Sandbox {
    engine: Engine,
    linkers: Linkers,
    ticker_stop: Arc<AtomicBool>,
    live: Arc<LiveRuns>,
    tuning: MemoryTuning,
}

/// How many guest instances are live, against the deployment's limit.
#[derive(Debug)]
struct LiveRuns {
    max: AtomicUsize,
    now: AtomicUsize,
}

/// One live instance; the count drops with it.
pub(crate) struct LiveSlot(Arc<LiveRuns>);

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// How linear memories and fiber stacks are made: a deployment's
/// `[sandbox] memory` (docs/sandbox.md, "Capacity").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryTuning {
    /// `lean`: one exact-size mapping per memory, bounds checked by the
    /// compiled code, stacks guarded without a mapping of their own: tens of
    /// thousands of runs can be live (parked) under the kernel's default map
    /// limit. The default.
    #[default]
    Lean,
    /// `reserved`: wasmtime's defaults (4 GiB reservation and guard regions
    /// per memory, copy-on-write data images, `PROT_NONE` stack guards):
    /// faster guest code and instantiation, but about seven mappings per
    /// live run, so a host holds only ~9,000 live runs.
    Reserved,
}

impl Sandbox {
    pub fn new() -> anyhow::Result<Self> {
        Self::with_tuning(MemoryTuning::Lean)
    }

    pub fn with_tuning(tuning: MemoryTuning) -> anyhow::Result<Self> {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true);
        cfg.epoch_interruption(true);
        if tuning == MemoryTuning::Lean {
            Self::lean(&mut cfg);
        }
        let engine = Engine::new(&cfg)?;
        let linkers = Linkers::new(&engine);
        // The core linker now, so a linking mistake fails the host at start.
        linkers.get(CapabilitySet::default())?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking = engine.clone();
        std::thread::Builder::new().name("pdpp-epoch".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                ticking.increment_epoch();
            }
        })?;
        Ok(Sandbox {
            engine,
            linkers,
            ticker_stop,
            live: Arc::new(LiveRuns {
                max: AtomicUsize::new(DEFAULT_MAX_LIVE_RUNS),
                now: AtomicUsize::new(0),
            }),
            tuning,
        })
    }

    /// How this engine makes linear memories and fiber stacks.
    pub fn tuning(&self) -> MemoryTuning {
        self.tuning
    }

    /// Parked runs are cheap (docs/sandbox.md, "Capacity"): no virtual
    /// reservation or guard region per linear memory (bounds are checked by
    /// the compiled code), memories and stacks from [`vm`], which cost the
    /// kernel no mapping of their own beyond what merges. Data segments are
    /// copied in (a copy-on-write image would be one more file mapping per run).
    fn lean(cfg: &mut Config) {
        cfg.memory_reservation(0);
        cfg.memory_guard_size(0);
        cfg.memory_reservation_for_growth(0);
        cfg.guard_before_linear_memory(false);
        cfg.memory_init_cow(false);
        cfg.with_host_memory(Arc::new(vm::LeanMemories));
        cfg.with_host_stack(Arc::new(vm::GuardedStacks));
    }

    /// Set how many runs and probes may be live at once; one more is
    /// refused as `host_capacity` (never queued, never blamed on the connector).
    pub fn set_max_live_runs(&self, max: usize) {
        self.live.max.store(max, Ordering::Release);
    }

    /// Runs and probes live right now.
    pub fn live_runs(&self) -> usize {
        self.live.now.load(Ordering::Acquire)
    }

    /// A slot for one more live instance, or the refusal.
    fn admit(&self) -> Result<LiveSlot, OutOfCapacity> {
        let max = self.live.max.load(Ordering::Acquire);
        let taken = self
            .live
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        match taken {
            Ok(_) => Ok(LiveSlot(self.live.clone())),
            Err(_) => Err(OutOfCapacity(format!(
                "this host already holds {max} live runs (its [capacity] max_live_runs)"
            ))),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile a component and resolve its imports for `grants` (see
    /// [`Sandbox::prepare_component`]).
    pub fn compile(&self, wasm: &[u8], grants: &Grants) -> Result<Plugin, LoadError> {
        let component = Component::new(&self.engine, wasm).map_err(|e| LoadError::NotAComponent(root(&e)))?;
        self.prepare_component(&component, grants)
    }

    /// Resolve the imports of a component already compiled for this engine
    /// (e.g. loaded from the plugin AOT cache) with the linker of its grants.
    /// An import of a capability not granted, or of an interface the host
    /// does not provide, is refused with its name.
    pub fn prepare_component(&self, component: &Component, grants: &Grants) -> Result<Plugin, LoadError> {
        let set = grants.capabilities();
        linker::check_imports(&self.engine, component, set)?;
        let linker = self.linkers.get(set).map_err(|e| LoadError::WrongWorld(root(&e)))?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::WrongWorld(root(&e)))?;
        let pre = ConnectorPre::new(pre).map_err(|e| LoadError::WrongWorld(root(&e)))?;
        Ok(Plugin {
            pre,
            grants: grants.clone(),
        })
    }
}

/// Guest-influenced text cut to `max` bytes before it is echoed into an error.
pub fn bounded_text(s: String, max: usize) -> String {
    convert::truncate(s, max)
}

/// The innermost message of an error, without a host backtrace.
fn root(e: &wasmtime::Error) -> String {
    e.root_cause().to_string()
}
