//! The whole-run memory budget: one [`RunBudget`] per run covers every
//! linear memory and table of the store and every host-side allocation the
//! guest can cause.
//!
//! Guest memory and tables are charged by [`StoreLimiter`], wasmtime's
//! `ResourceLimiter` for the whole store: it adds each growth of any memory
//! (and each table's elements at [`TABLE_ELEMENT_BYTES`]) to one running
//! total, so a component with many memories cannot multiply the limit.
//! Host-side state is charged by the capabilities that allocate it:
//! [`RunBudget::hold`] for something released later (a buffered request or
//! response body, a batch being converted, a screenshot kept for the owner)
//! returns a [`Held`] guard that gives the bytes back when dropped;
//! [`RunBudget::keep`] for something kept until the run ends. Either refuses
//! with [`Breach::Memory`] when the total would pass the limit. The peak of
//! the total is what a run reports as its peak memory.
//!
//! The same budget counts the run's timeline events ([`RunBudget::event`]):
//! every PROGRESS, log line, SKIP_RESULT, INTERACTION and batch becomes one
//! event and a database row, so their number is bounded whatever their size.

use super::limits::Breach;
use std::sync::Arc;

static HARDENING: AtomicBool = AtomicBool::new(true);

/// Turn the run-budget accounting, response scrubbing and structural
/// redaction off (`false`) or on for this process. For `pdpp-host bench`
/// only, which measures what they cost against a baseline in the same run;
/// nothing else calls it, and with it off no memory budget holds.
pub fn set_hardening_for_bench(on: bool) {
    HARDENING.store(on, Ordering::Relaxed);
}

/// Whether accounting, response scrubbing and structural redaction are on
/// (always, except in a bench baseline).
pub fn hardening() -> bool {
    HARDENING.load(Ordering::Relaxed)
}
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use wasmtime::ResourceLimiter;

/// What one table element is charged (a function reference or an
/// `externref` slot with its bookkeeping).
pub const TABLE_ELEMENT_BYTES: u64 = 16;

/// The most elements any one table may have.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

struct Inner {
    limit: u64,
    used: AtomicU64,
    peak: AtomicU64,
    max_events: u64,
    events: AtomicU64,
    breached: AtomicBool,
}

/// The memory and event budget of one run, shared by the store's limiter and
/// every capability (clones share the same totals).
#[derive(Clone)]
pub struct RunBudget(Arc<Inner>);

impl std::fmt::Debug for RunBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunBudget")
            .field("limit", &self.0.limit)
            .field("used", &self.used())
            .field("peak", &self.peak())
            .finish()
    }
}

impl RunBudget {
    /// A run that may hold `limit_bytes` of guest memory, tables and
    /// host-side state at once, and record `max_events` timeline events.
    pub fn new(limit_bytes: u64, max_events: u64) -> Self {
        RunBudget(Arc::new(Inner {
            limit: limit_bytes,
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            max_events,
            events: AtomicU64::new(0),
            breached: AtomicBool::new(false),
        }))
    }

    fn add(&self, bytes: u64) -> Result<(), Breach> {
        if !hardening() {
            return Ok(());
        }
        let i = &self.0;
        let mut cur = i.used.load(Ordering::Relaxed);
        loop {
            let next = cur.saturating_add(bytes);
            if next > i.limit {
                i.breached.store(true, Ordering::Relaxed);
                return Err(Breach::Memory);
            }
            match i
                .used
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    i.peak.fetch_max(next, Ordering::Relaxed);
                    return Ok(());
                }
                Err(now) => cur = now,
            }
        }
    }

    fn release(&self, bytes: u64) {
        if !hardening() {
            return;
        }
        let _ = self
            .0
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| Some(u.saturating_sub(bytes)));
    }

    /// Charge `bytes` the host holds for the guest until the guard drops.
    pub fn hold(&self, bytes: u64) -> Result<Held, Breach> {
        self.add(bytes)?;
        Ok(Held {
            budget: self.clone(),
            bytes,
        })
    }

    /// Charge `bytes` the host keeps for the guest until the run ends.
    pub fn keep(&self, bytes: u64) -> Result<(), Breach> {
        self.add(bytes)
    }

    /// Count one timeline event; past the run's event budget it is an
    /// [`Breach::Events`].
    pub fn event(&self) -> Result<(), Breach> {
        self.events(1)
    }

    /// Count `n` timeline events at once.
    pub fn events(&self, n: u64) -> Result<(), Breach> {
        if !hardening() {
            return Ok(());
        }
        let before = self.0.events.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.0.max_events {
            return Err(Breach::Events);
        }
        Ok(())
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.0.used.load(Ordering::Relaxed)
    }

    /// The most bytes charged at any one time: the run's true peak.
    pub fn peak(&self) -> u64 {
        self.0.peak.load(Ordering::Relaxed)
    }

    /// Whether a charge was ever refused.
    pub fn breached(&self) -> bool {
        self.0.breached.load(Ordering::Relaxed)
    }

    /// The budget in bytes.
    pub fn limit(&self) -> u64 {
        self.0.limit
    }
}

/// Bytes charged to a run while the host holds them; released on drop.
#[must_use = "the charge is released when the guard drops"]
pub struct Held {
    budget: RunBudget,
    bytes: u64,
}

impl Held {
    /// Charge `more` bytes to this guard (e.g. a body growing as it arrives).
    pub fn grow(&mut self, more: u64) -> Result<(), Breach> {
        self.budget.add(more)?;
        self.bytes += more;
        Ok(())
    }

    /// Give back what this guard holds beyond `bytes`.
    pub fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            self.budget.release(self.bytes - bytes);
            self.bytes = bytes;
        }
    }

    /// The bytes this guard holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({} bytes)", self.bytes)
    }
}

/// wasmtime's resource limiter for a whole store: every memory and table of
/// every instance is charged to the one [`RunBudget`] (memory and tables
/// never shrink, so growth is kept until the run ends).
pub struct StoreLimiter {
    budget: RunBudget,
    /// The last growth charged, refunded if wasmtime reports it failed.
    last_memory: u64,
    last_table: u64,
}

impl StoreLimiter {
    pub fn new(budget: RunBudget) -> Self {
        StoreLimiter {
            budget,
            last_memory: 0,
            last_table: 0,
        }
    }
}

impl ResourceLimiter for StoreLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let delta = desired.saturating_sub(current) as u64;
        self.budget.keep(delta).map_err(wasmtime::Error::new)?;
        self.last_memory = delta;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.budget.release(std::mem::take(&mut self.last_memory));
        // The budget allowed the growth and the host could not map it: the
        // run stops on the host's capacity (a guest would only see -1 and
        // fail as if it were its own fault).
        match error.downcast_ref::<super::OutOfCapacity>() {
            Some(full) => Err(wasmtime::Error::new(full.clone())),
            None => Ok(()),
        }
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let delta = (desired.saturating_sub(current) as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        self.budget.keep(delta).map_err(wasmtime::Error::new)?;
        self.last_table = delta;
        Ok(true)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.budget.release(std::mem::take(&mut self.last_table));
        Ok(())
    }

    fn instances(&self) -> usize {
        64
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_run_budget_sums_every_memory_and_table() {
        let budget = RunBudget::new(10 << 20, 100);
        let mut limiter = StoreLimiter::new(budget.clone());
        // Two memories of 4 MiB each fit; a third does not, although each
        // alone is under the limit.
        assert!(limiter.memory_growing(0, 4 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 4 << 20, None).unwrap());
        let err = limiter.memory_growing(0, 4 << 20, None).unwrap_err();
        assert_eq!(err.downcast_ref::<Breach>(), Some(&Breach::Memory));
        assert!(limiter.table_growing(0, 1000, None).unwrap());
        assert_eq!(budget.used(), (8 << 20) + 1000 * TABLE_ELEMENT_BYTES);
        assert_eq!(budget.peak(), budget.used(), "the peak is the true total");
        assert!(budget.breached());
    }

    #[test]
    fn host_state_held_is_released_on_drop_and_counts_towards_the_peak() {
        let budget = RunBudget::new(1000, 100);
        let held = budget.hold(600).unwrap();
        assert_eq!(budget.hold(500).unwrap_err(), Breach::Memory);
        drop(held);
        assert_eq!(budget.used(), 0);
        let _a = budget.hold(900).unwrap();
        assert_eq!(budget.peak(), 900);
        budget.keep(100).unwrap();
        assert_eq!(budget.keep(1).unwrap_err(), Breach::Memory);
    }

    #[test]
    fn timeline_events_are_bounded_per_run() {
        let budget = RunBudget::new(1000, 3);
        budget.events(2).unwrap();
        budget.event().unwrap();
        assert_eq!(budget.event().unwrap_err(), Breach::Events);
    }

    #[test]
    fn a_failed_growth_is_refunded() {
        let budget = RunBudget::new(1 << 20, 1);
        let mut limiter = StoreLimiter::new(budget.clone());
        limiter.memory_growing(0, 1000, None).unwrap();
        limiter
            .memory_grow_failed(wasmtime::Error::msg("over its maximum"))
            .unwrap();
        assert_eq!(budget.used(), 0);
    }
}
