//! The wasmtime sandbox: one engine, compiled plugins, and one store per run.
//!
//! This module owns everything that touches wasmtime. A [`Sandbox`] holds the
//! engine (component model, epoch interruption) and a linker with the WASI
//! p2 interfaces and the `pdpp:connector` imports. [`Sandbox::compile`] turns
//! a `.wasm` into a [`Plugin`] (compiled once, imports resolved once through
//! an `InstancePre`); [`Sandbox::run`] gives each run a fresh store whose
//! WASI context has no environment, no arguments, no preopened directories,
//! no sockets and no name lookup, and whose stdout and stderr are captured
//! into bounded tails.
//!
//! The sandbox knows no provider and no protocol rule: it converts the
//! guest's WIT values into [`crate::protocol`] messages and hands them to a
//! [`RunHooks`] implementation (the runtime), which validates them.

mod capture;
pub mod egress;
mod host;
mod limits;

pub use capture::{Capture, CapturedText};
pub use limits::{Breach, RunLimits};

use crate::protocol as p;
use host::{ConnectorPre, RunClock, RunState};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use zeroize::Zeroizing;

/// How often the engine's epoch advances; the granularity of CPU and
/// wall-clock enforcement.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How long a cancelled guest may keep computing before it is stopped by force.
pub const CANCEL_GRACE: Duration = Duration::from_millis(250);

/// The owner's handle on a run in progress. Cloning shares it.
#[derive(Clone, Default)]
pub struct RunControl {
    inner: Arc<ControlInner>,
}

#[derive(Default)]
struct ControlInner {
    requested: std::sync::Mutex<Option<Instant>>,
    notify: tokio::sync::Notify,
}

impl RunControl {
    pub fn new() -> Self {
        RunControl::default()
    }

    /// Ask the run to stop. The guest's next host call stops it; a guest that
    /// keeps computing is stopped by force after [`CANCEL_GRACE`]. Idempotent.
    pub fn cancel(&self) {
        let mut at = self.inner.requested.lock().expect("control lock");
        if at.is_none() {
            *at = Some(Instant::now());
        }
        drop(at);
        self.inner.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.requested.lock().expect("control lock").is_some()
    }

    /// When the grace period of a requested cancellation is over.
    fn forced_due(&self) -> bool {
        self.inner
            .requested
            .lock()
            .expect("control lock")
            .is_some_and(|at| at.elapsed() >= CANCEL_GRACE)
    }

    /// Resolves once cancellation is requested.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// The guest was stopped because the owner cancelled the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancelled {
    /// It kept computing past the grace period and was stopped by force.
    pub forced: bool,
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.forced {
            write!(f, "the owner cancelled the run and the connector was stopped by force")
        } else {
            write!(f, "the owner cancelled the run")
        }
    }
}

impl std::error::Error for Cancelled {}

/// A protocol violation found while the guest runs. It stops the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule, e.g. `record_stream_in_scope`.
    pub rule: &'static str,
    /// What happened, naming streams and fields but never payload values.
    pub message: String,
}

impl Violation {
    pub fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Violation {
            rule,
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol violation ({}): {}", self.rule, self.message)
    }
}

impl std::error::Error for Violation {}

/// The host failed to keep what the guest sent (e.g. the database is
/// unavailable). It stops the guest; the run fails as `runtime_error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFault(pub String);

impl fmt::Display for HostFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host failure: {}", self.0)
    }
}

impl std::error::Error for HostFault {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// What an INTERACTION came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Asked {
    /// Nobody can answer: the run has no `interactive` binding. Names it.
    NotInteractive(String),
    Answer(p::InteractionAnswer),
}

/// The runtime's side of a run, called from the guest's imports.
#[async_trait::async_trait]
pub trait RunHooks: Send {
    /// One message, in order. An error stops the guest.
    fn message(&mut self, msg: p::Message) -> Result<(), Violation>;
    /// The end of one `emit.send` batch: make it durable. An error stops the guest.
    async fn end_batch(&mut self) -> Result<(), HostFault>;
    /// A blocking INTERACTION. An error is a violation and stops the guest.
    async fn interact(&mut self, req: p::Interaction) -> Result<Asked, Violation>;
    /// A structured log line from the guest.
    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>);
    /// The guest read the plaintext of a field the manifest lets it reveal.
    fn secret_revealed(&mut self, field: &str);
    /// Give the concrete type back after the run.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

/// The credential fields one run may see: the fields its manifest declares
/// and the values its own connection has for them.
#[derive(Clone, Default)]
pub struct SecretSet {
    /// Declared field → may it be revealed to the guest.
    declared: BTreeMap<String, bool>,
    values: BTreeMap<String, Zeroizing<String>>,
    nonce: String,
    redactor: crate::vault::Redactor,
}

impl fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSet")
            .field("declared", &self.declared)
            .field("values", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretSet {
    /// `declared` are (field, revealable) pairs from the manifest; values for
    /// undeclared fields are dropped here, so they can never reach the guest.
    pub fn new(
        declared: impl IntoIterator<Item = (String, bool)>,
        values: impl IntoIterator<Item = (String, Zeroizing<String>)>,
    ) -> Self {
        let declared: BTreeMap<String, bool> = declared.into_iter().collect();
        let values: BTreeMap<String, Zeroizing<String>> =
            values.into_iter().filter(|(k, _)| declared.contains_key(k)).collect();
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).expect("system randomness");
        let nonce = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let redactor = crate::vault::Redactor::new(values.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        SecretSet {
            declared,
            values,
            nonce,
            redactor,
        }
    }

    pub fn available(&self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }

    fn check(&self, field: &str) -> Result<(), host::pdpp::connector::secrets::SecretError> {
        use host::pdpp::connector::secrets::SecretError as E;
        if !self.declared.contains_key(field) {
            return Err(E::NotDeclared(field.to_owned()));
        }
        if !self.values.contains_key(field) {
            return Err(E::Missing(field.to_owned()));
        }
        Ok(())
    }

    fn reveal(&self, field: &str) -> Result<String, host::pdpp::connector::secrets::SecretError> {
        self.check(field)?;
        if self.declared.get(field) != Some(&true) {
            return Err(host::pdpp::connector::secrets::SecretError::RevealNotPermitted(
                field.to_owned(),
            ));
        }
        Ok(self.values[field].to_string())
    }

    /// The token that stands for a field in outgoing requests.
    pub fn placeholder(&self, field: &str) -> String {
        format!("{{{{pdpp-secret:{}:{field}}}}}", self.nonce)
    }

    /// Scrubs every form of this run's secret values from text.
    pub fn redactor(&self) -> &crate::vault::Redactor {
        &self.redactor
    }

    /// The value behind a placeholder, for host-side substitution into a
    /// request to an allowed origin. `None` for anything else.
    pub fn resolve_placeholder(&self, token: &str) -> Option<Zeroizing<String>> {
        let inner = token.strip_prefix("{{pdpp-secret:")?.strip_suffix("}}")?;
        let (nonce, field) = inner.split_once(':')?;
        if nonce != self.nonce {
            return None;
        }
        self.values.get(field).cloned()
    }
}

/// Why a `.wasm` cannot be a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("the component does not fit the pdpp:connector world: {0}")]
    WrongWorld(String),
}

/// A compiled connector, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    pre: ConnectorPre<RunState>,
    /// Linked with `wasi:http/outgoing-handler` (the manifest requires `network`).
    networked: bool,
}

impl Plugin {
    pub fn networked(&self) -> bool {
        self.networked
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Plugin")
    }
}

/// One run's inputs to the sandbox.
pub struct GuestRun {
    pub start: p::Start,
    pub settings: Value,
    pub secrets: SecretSet,
    pub limits: RunLimits,
    pub control: RunControl,
    /// Where this run may send HTTP requests (empty: nowhere).
    pub egress: EgressSetup,
}

/// The run's network permissions: the manifest's origins, the deployment's
/// settings, the run's HTTP limits.
#[derive(Clone, Debug, Default)]
pub struct EgressSetup {
    pub allowed: Vec<egress::Origin>,
    pub config: Arc<egress::EgressConfig>,
    pub limits: egress::HttpLimits,
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
    pub requests: Vec<egress::RequestSummary>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The engine and linker shared by every plugin and run.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<RunState>,
    /// The same, plus `wasi:http`, for connectors that require `network`.
    net_linker: Linker<RunState>,
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

        let mut linker = Linker::<RunState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        host::Connector::add_to_linker::<RunState, host::Marker>(&mut linker, |s| s)?;
        let mut net_linker = linker.clone();
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut net_linker)?;

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
            linker,
            net_linker,
            ticker_stop,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile a component and resolve its imports against the host, without network.
    pub fn compile(&self, wasm: &[u8]) -> Result<Plugin, LoadError> {
        self.compile_for(wasm, false)
    }

    /// Compile a component; `networked` links `wasi:http/outgoing-handler`
    /// (only for connectors whose manifest requires the `network` binding).
    pub fn compile_for(&self, wasm: &[u8], networked: bool) -> Result<Plugin, LoadError> {
        let component = Component::new(&self.engine, wasm).map_err(|e| LoadError::NotAComponent(root(&e)))?;
        self.prepare_component(&component, networked)
    }

    /// Resolve the imports of a component already compiled for this engine
    /// (e.g. loaded from the plugin AOT cache); `networked` as in [`Sandbox::compile_for`].
    pub fn prepare_component(&self, component: &Component, networked: bool) -> Result<Plugin, LoadError> {
        let linker = if networked { &self.net_linker } else { &self.linker };
        if !networked {
            let ty = component.component_type();
            if let Some((name, _)) = ty
                .imports(&self.engine)
                .find(|(name, _)| name.starts_with("wasi:http/"))
            {
                return Err(LoadError::WrongWorld(format!(
                    "it imports {name}, but its manifest does not require the network binding"
                )));
            }
        }
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::WrongWorld(root(&e)))?;
        let pre = ConnectorPre::new(pre).map_err(|e| LoadError::WrongWorld(root(&e)))?;
        Ok(Plugin { pre, networked })
    }

    /// A fresh store for one run: nothing ambient, limits armed.
    fn store(
        &self,
        hooks: Box<dyn RunHooks>,
        secrets: SecretSet,
        limits: &RunLimits,
        control: RunControl,
        egress: EgressSetup,
    ) -> Store<RunState> {
        let stdout = Capture::new(limits.output_capture_bytes);
        let stderr = Capture::new(limits.output_capture_bytes);
        let mut wasi = WasiCtxBuilder::new();
        // Nothing ambient, spelled out rather than left to defaults.
        wasi.envs(&[] as &[(&str, &str)])
            .args(&[] as &[&str])
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .stdout(stdout.clone())
            .stderr(stderr.clone());
        let started = Instant::now();
        let egress = egress::EgressHooks {
            allowed: egress.allowed,
            config: egress.config,
            limits: egress.limits,
            secrets: secrets.clone(),
            deadline: started + limits.wall_clock,
            log: Arc::default(),
        };
        let state = RunState {
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            egress,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: limits::Limiter::new(limits.memory_bytes),
            hooks,
            secrets,
            clock: RunClock {
                started,
                wall_deadline: started + limits.wall_clock,
                cpu_budget: limits.cpu,
                blocked: Duration::ZERO,
            },
            message_bytes: limits.message_bytes,
            stdout,
            stderr,
            violation: None,
            control,
            max_records: limits.max_records,
            records: 0,
            log_budget: limits.log_bytes,
        };
        let mut store = Store::new(&self.engine, state);
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
        let mut store = self.store(
            Box::new(NullHooks),
            SecretSet::default(),
            &RunLimits::default(),
            RunControl::new(),
            EgressSetup::default(),
        );
        plugin.pre.instantiate_async(&mut store).await?;
        Ok(t.elapsed())
    }

    /// Run the guest once in a fresh store.
    pub async fn run(
        &self,
        plugin: &Plugin,
        run: GuestRun,
        hooks: Box<dyn RunHooks>,
    ) -> (GuestExit, Usage, Box<dyn RunHooks>) {
        let mut store = self.store(hooks, run.secrets, &run.limits, run.control, run.egress);
        let started = store.data().clock.started;
        let start = host::start(&run.start, &run.settings);
        let result = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance.call_run(&mut store, &start).await
        }
        .await;

        let state = store.into_data();
        let exit = match result {
            Ok(done) => GuestExit::Done(host::done(done)),
            Err(e) => classify(&e, &state),
        };
        let usage = state.usage(started);
        (exit, usage, state.hooks)
    }
}

impl RunState {
    /// What the guest used, read when its store is finished.
    fn usage(&self, started: Instant) -> Usage {
        let mut log = self.egress.log.lock().expect("egress log");
        Usage {
            cpu: self.clock.guest_time().min(started.elapsed()),
            wall: started.elapsed(),
            peak_memory_bytes: self.limiter.peak_memory as u64,
            stdout: self.stdout.snapshot(),
            stderr: self.stderr.snapshot(),
            requests: std::mem::take(&mut log.requests),
            bytes_in: log.bytes_in,
            bytes_out: log.bytes_out,
        }
    }
}

fn classify(e: &wasmtime::Error, state: &RunState) -> GuestExit {
    if let Some(c) = e.downcast_ref::<Cancelled>() {
        return GuestExit::Cancelled(*c);
    }
    if let Some(v) = &state.violation {
        return GuestExit::Violation(v.clone());
    }
    if let Some(b) = e.downcast_ref::<Breach>() {
        return GuestExit::Limit(*b);
    }
    if state.limiter.breached {
        return GuestExit::Limit(Breach::Memory);
    }
    if let Some(v) = e.downcast_ref::<Violation>() {
        return GuestExit::Violation(v.clone());
    }
    if let Some(f) = e.downcast_ref::<HostFault>() {
        return GuestExit::HostFault(f.0.clone());
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => GuestExit::Trap(trap.to_string()),
        None => GuestExit::Trap(root(e)),
    }
}

/// The innermost message of an error, without a host backtrace.
fn root(e: &wasmtime::Error) -> String {
    e.root_cause().to_string()
}

/// A credential probe of one plugin: its setup fields, the candidate
/// credential, and the same limits and egress a run would have.
pub struct GuestProbe {
    pub settings: Value,
    pub secrets: SecretSet,
    pub limits: RunLimits,
    pub control: RunControl,
    pub egress: EgressSetup,
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
    /// Call the guest's credential probe once in a fresh store. Emitting and
    /// asking the owner are not available to a probe (the hooks refuse them).
    pub async fn probe(&self, plugin: &Plugin, probe: GuestProbe) -> (Result<ProbeAnswer, GuestExit>, Usage) {
        let mut store = self.store(
            Box::new(NullHooks),
            probe.secrets,
            &probe.limits,
            probe.control,
            probe.egress,
        );
        let started = store.data().clock.started;
        let settings = probe.settings.to_string();
        let result = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance.call_validate_credential(&mut store, &settings).await
        }
        .await;
        let state = store.into_data();
        let answer = match result {
            Ok(Ok(a)) => Ok(ProbeAnswer::Accepted {
                identity: a.identity,
                detail: a.detail,
            }),
            Ok(Err(e)) => Ok(match e {
                host::ProbeError::Rejected(m) => ProbeAnswer::Rejected(m),
                host::ProbeError::InsufficientScope(m) => ProbeAnswer::InsufficientScope(m),
                host::ProbeError::Unavailable(m) => ProbeAnswer::Unavailable(m),
                host::ProbeError::Unsupported => ProbeAnswer::Unsupported,
            }),
            Err(e) => Err(classify(&e, &state)),
        };
        (answer, state.usage(started))
    }
}

/// Hooks for a store that never runs the guest.
struct NullHooks;

#[async_trait::async_trait]
impl RunHooks for NullHooks {
    fn message(&mut self, _msg: p::Message) -> Result<(), Violation> {
        Ok(())
    }
    async fn end_batch(&mut self) -> Result<(), HostFault> {
        Ok(())
    }
    async fn interact(&mut self, _req: p::Interaction) -> Result<Asked, Violation> {
        Ok(Asked::NotInteractive("nobody is listening".into()))
    }
    fn log(&mut self, _level: LogLevel, _message: String, _fields: Vec<(String, String)>) {}
    fn secret_revealed(&mut self, _field: &str) {}
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> SecretSet {
        SecretSet::new(
            [("token".to_string(), false), ("key".to_string(), true)],
            [
                ("token".to_string(), Zeroizing::new("tok-value-123".to_string())),
                ("undeclared".to_string(), Zeroizing::new("undeclared-value".to_string())),
            ],
        )
    }

    #[test]
    fn placeholder_resolves_only_for_this_runs_declared_values() {
        let s = set();
        let token = s.placeholder("token");
        assert_eq!(s.resolve_placeholder(&token).unwrap().as_str(), "tok-value-123");
        assert!(
            s.resolve_placeholder(&s.placeholder("undeclared")).is_none(),
            "undeclared values were dropped"
        );
        assert!(
            s.resolve_placeholder(&s.placeholder("key")).is_none(),
            "declared but no value"
        );
        let other_run = set();
        assert!(
            other_run.resolve_placeholder(&token).is_none(),
            "another run's placeholder does not resolve"
        );
        assert!(s.resolve_placeholder("tok-value-123").is_none());
    }

    #[test]
    fn secret_set_redacts_its_values_and_never_debug_prints_them() {
        let s = set();
        assert_eq!(s.redactor().redact("auth tok-value-123"), "auth [REDACTED:token]");
        assert!(!format!("{s:?}").contains("tok-value-123"));
        assert_eq!(s.available(), vec!["token".to_string()]);
    }
}
