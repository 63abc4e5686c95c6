//! The store state of one run: the core every capability shares, plus one
//! field per capability.
//!
//! The core is what the sandbox itself needs to run a guest and stop it:
//! the WASI context (nothing ambient, see [`RunState::new`]), the resource
//! table, the memory limiter, the clock the epoch callback reads, the owner's
//! control, the violation slot and the runtime's hooks. Each capability keeps
//! its own state in its own field and gets a view that borrows its field and
//! the core pieces it needs; this file hands out those views and nothing in
//! it knows what a capability does with them.

use super::budget::{RunBudget, StoreLimiter};
use super::caps::browser::{BrowserSetup, BrowserState, BrowserView};
use super::caps::emit::{EmitState, EmitView};
use super::caps::http::HttpState;
use super::caps::interaction::{InteractionState, InteractionView};
use super::caps::log::{LogState, LogView};
use super::caps::secrets::{SecretSet, SecretsView};
use super::capture::Capture;
use super::control::{Cancelled, RunControl};
use super::grants::Grants;
use super::hooks::{HostFault, SharedHooks, Violation};
use super::limits::{Breach, RunLimits};
use super::{GuestExit, Usage};
use crate::egress::EgressConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::WasiHttpCtxView;

/// Run-time accounting the epoch callback reads.
pub struct RunClock {
    pub started: Instant,
    pub wall_deadline: Instant,
    pub cpu_budget: Duration,
    /// Time the guest spent parked in host calls that wait (interactions,
    /// the browser).
    pub blocked: Duration,
    /// Of which waiting for the owner (interactions).
    pub owner_wait: Duration,
}

impl RunClock {
    pub(crate) fn new(started: Instant, wall_clock: Duration, cpu_budget: Duration) -> Self {
        RunClock {
            started,
            wall_deadline: started + wall_clock,
            cpu_budget,
            blocked: Duration::ZERO,
            owner_wait: Duration::ZERO,
        }
    }

    /// The guest waited `d` for the owner: not guest time, and not time
    /// establishing a browser session either.
    pub(crate) fn parked_for_owner(&mut self, d: Duration) {
        self.blocked += d;
        self.owner_wait += d;
    }

    pub fn guest_time(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.blocked)
    }

    /// The breach, if a limit has been passed now.
    pub fn check(&self) -> Option<Breach> {
        if Instant::now() >= self.wall_deadline {
            Some(Breach::WallClock)
        } else if self.guest_time() > self.cpu_budget {
            Some(Breach::Cpu)
        } else {
            None
        }
    }
}

/// The first violation of a run; once set, the guest is being stopped.
#[derive(Debug, Default)]
pub(crate) struct ViolationSlot(Option<Violation>);

impl ViolationSlot {
    /// Keep `v` unless an earlier violation is kept already, and return the
    /// error that stops the guest.
    pub(crate) fn stop(&mut self, v: Violation) -> wasmtime::Error {
        self.0.get_or_insert(v.clone());
        wasmtime::Error::new(v)
    }

    pub(crate) fn get(&self) -> Option<&Violation> {
        self.0.as_ref()
    }
}

/// What each resource-table entry may hold at most, charged up front for
/// every entry the table may have (HTTP fields are capped at this size).
pub(crate) const RESOURCE_ENTRY_BYTES: u64 = super::caps::http::HTTP_FIELDS_BYTES as u64;

/// What one run's store is built from.
pub(crate) struct StoreInputs<'a> {
    pub hooks: SharedHooks,
    pub secrets: SecretSet,
    pub limits: &'a RunLimits,
    pub control: RunControl,
    pub egress: Arc<EgressConfig>,
    /// The run's browser, when the plugin is granted one and the host has one.
    pub browser: Option<BrowserSetup>,
}

/// Everything a store holds for one run.
pub struct RunState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: StoreLimiter,
    /// The run's whole memory and event budget (the limiter charges it too).
    pub(super) budget: RunBudget,
    pub(super) clock: RunClock,
    pub(super) control: RunControl,
    pub(super) violation: ViolationSlot,
    hooks: SharedHooks,
    stdout: Capture,
    stderr: Capture,
    // One field per capability.
    emit: EmitState,
    interaction: InteractionState,
    secrets: SecretSet,
    log: LogState,
    http: HttpState,
    browser: BrowserState,
}

impl RunState {
    /// A fresh state: nothing ambient, limits armed, every capability's state
    /// built from this run's inputs and the plugin's grants.
    pub(crate) fn new(grants: &Grants, inputs: StoreInputs<'_>) -> Self {
        let StoreInputs {
            hooks,
            secrets,
            limits,
            control,
            egress,
            browser,
        } = inputs;
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
        let clock = RunClock::new(Instant::now(), limits.wall_clock, limits.cpu);
        let budget = RunBudget::new(limits.memory_bytes as u64, limits.max_events);
        let policy = match browser.as_ref().and_then(|b| b.bootstrap_field.as_ref()) {
            Some(_) => grants.bootstrap_policy(egress.clone()),
            None => grants.browser_policy(egress.clone()),
        };
        let browser = BrowserState::new(browser, policy, &control, budget.clone());
        let http = HttpState::new(
            grants.egress_policy(egress),
            limits.http.clone(),
            secrets.clone(),
            clock.wall_deadline,
            budget.clone(),
        );
        // Every entry of the resource table is host memory the guest chose to
        // keep alive: the number is capped, and what each may hold is bounded
        // (HTTP fields by `HTTP_FIELDS_BYTES`), so the worst case is a fixed
        // reserve charged to the run up front.
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.resource_entries);
        let reserve = (limits.resource_entries as u64).saturating_mul(RESOURCE_ENTRY_BYTES);
        let _ = budget.keep(reserve.min(budget.limit() / 4));
        RunState {
            wasi: wasi.build(),
            table,
            limiter: StoreLimiter::new(budget.clone()),
            clock,
            control,
            violation: ViolationSlot::default(),
            hooks,
            stdout,
            stderr,
            emit: EmitState::new(limits.message_bytes, limits.max_records, budget.clone()),
            interaction: InteractionState::new(limits.message_bytes, limits.max_interactions, budget.clone()),
            secrets,
            log: LogState::new(limits.log_bytes, budget.clone()),
            budget,
            http,
            browser,
        }
    }

    pub(super) fn emit_view(&mut self) -> EmitView<'_> {
        EmitView {
            state: &mut self.emit,
            hooks: &self.hooks,
            violation: &mut self.violation,
            control: &self.control,
        }
    }

    pub(super) fn interaction_view(&mut self) -> InteractionView<'_> {
        InteractionView {
            state: &mut self.interaction,
            hooks: &self.hooks,
            violation: &mut self.violation,
            control: &self.control,
            clock: &mut self.clock,
            browser: &mut self.browser,
            secrets: &self.secrets,
        }
    }

    pub(super) fn secrets_view(&mut self) -> SecretsView<'_> {
        SecretsView {
            secrets: &self.secrets,
            table: &mut self.table,
            hooks: &self.hooks,
        }
    }

    pub(super) fn log_view(&mut self) -> LogView<'_> {
        LogView {
            state: &mut self.log,
            hooks: &self.hooks,
        }
    }

    pub(super) fn http_view(&mut self) -> WasiHttpCtxView<'_> {
        self.http.view(&mut self.table)
    }

    pub(super) fn browser_view(&mut self) -> BrowserView<'_> {
        BrowserView {
            state: &mut self.browser,
            secrets: &self.secrets,
            table: &mut self.table,
            hooks: &self.hooks,
            control: &self.control,
            clock: &mut self.clock,
        }
    }

    /// The run's browser, taken out to be ended when the guest has stopped.
    pub(super) fn take_browser(&mut self) -> BrowserState {
        std::mem::replace(&mut self.browser, BrowserState::none())
    }

    /// What the guest used, read when its store is finished.
    pub(super) fn usage(&self) -> Usage {
        let started = self.clock.started;
        let http = self.http.take_usage();
        Usage {
            cpu: self.clock.guest_time().min(started.elapsed()),
            wall: started.elapsed(),
            peak_memory_bytes: self.budget.peak(),
            stdout: self.stdout.snapshot(),
            stderr: self.stderr.snapshot(),
            requests: http.requests,
            bytes_in: http.bytes_in,
            bytes_out: http.bytes_out,
            browser: Default::default(),
        }
    }

    /// How a guest call that failed ended: the owner's cancellation first,
    /// then the run's first violation, a limit, a host fault, else a trap.
    pub(super) fn classify(&self, e: &wasmtime::Error) -> GuestExit {
        if let Some(c) = e.downcast_ref::<Cancelled>() {
            return GuestExit::Cancelled(*c);
        }
        if let Some(v) = self.violation.get() {
            return GuestExit::Violation(v.clone());
        }
        if let Some(b) = e.downcast_ref::<Breach>() {
            return GuestExit::Limit(*b);
        }
        if self.budget.breached() {
            return GuestExit::Limit(Breach::Memory);
        }
        if matches!(
            e.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        ) {
            return GuestExit::Limit(Breach::Resources);
        }
        if let Some(v) = e.downcast_ref::<Violation>() {
            return GuestExit::Violation(v.clone());
        }
        if let Some(f) = e.downcast_ref::<HostFault>() {
            return GuestExit::HostFault(f.0.clone());
        }
        if let Some(full) = e.downcast_ref::<super::OutOfCapacity>() {
            return GuestExit::HostCapacity(full.to_string());
        }
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => GuestExit::Trap(trap.to_string()),
            None => GuestExit::Trap(super::root(e)),
        }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
