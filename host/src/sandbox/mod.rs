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

pub use budget::{Held, RunBudget};
pub use caps::http::{HttpLimits, RequestSummary};
pub use caps::secrets::SecretSet;
pub use capture::{Capture, CapturedText};
pub use control::{CANCEL_GRACE, Cancelled, RunControl, StopCause};
pub use grants::{Capability, CapabilitySet, Grants};
pub use hooks::{Asked, HookError, HostFault, LogLevel, RunHooks, Violation};
pub use limits::{Breach, LOG_LINE_MIN_BYTES, RunLimits};
pub use run::{Entry, GuestExit, GuestProbe, GuestRun, ProbeAnswer, Usage};

use bindings::ConnectorPre;
use linker::Linkers;
use state::RunState;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// How often the engine's epoch advances; the granularity of CPU and
/// wall-clock enforcement.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

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
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Sandbox {
    pub fn new() -> anyhow::Result<Self> {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true);
        cfg.epoch_interruption(true);
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
        })
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
