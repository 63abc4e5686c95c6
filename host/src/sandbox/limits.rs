//! Per-run resource limits and the typed breaches they produce.

use std::fmt;
use std::time::Duration;
use wasmtime::ResourceLimiter;

/// What one run may consume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLimits {
    /// Guest execution time, not counting waits for the owner.
    pub cpu: Duration,
    /// Wall-clock time from instantiation to DONE, waits included.
    pub wall_clock: Duration,
    /// Linear memory of the guest, in bytes.
    pub memory_bytes: usize,
    /// Bytes kept of each of stdout and stderr (the tail).
    pub output_capture_bytes: usize,
    /// Largest single message (e.g. one record's data) in bytes.
    pub message_bytes: usize,
    /// Outgoing HTTP: timeouts, response size, request count.
    pub http: super::caps::http::HttpLimits,
    /// RECORDs one run may emit.
    pub max_records: u64,
    /// Bytes of structured log one run may write.
    pub log_bytes: u64,
}

impl RunLimits {
    /// These limits lowered by what a manifest asks for (never raised).
    pub fn lowered_by(&self, m: Option<&crate::manifest::ManifestLimits>) -> RunLimits {
        match m {
            Some(m) => m.lower(self.clone()),
            None => self.clone(),
        }
    }
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            cpu: Duration::from_secs(300),
            wall_clock: Duration::from_secs(4 * 3600),
            memory_bytes: 256 << 20,
            output_capture_bytes: 16 << 10,
            message_bytes: 4 << 20,
            http: super::caps::http::HttpLimits::default(),
            max_records: 10_000_000,
            log_bytes: 4 << 20,
        }
    }
}

/// A limit the guest ran into. The run stops at once and nothing it staged
/// is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breach {
    Cpu,
    WallClock,
    Memory,
    Records,
    Logs,
}

impl Breach {
    /// The typed failure reason recorded for the run.
    pub fn reason(self) -> &'static str {
        match self {
            Breach::Cpu => "cpu_limit",
            Breach::WallClock => "wall_clock_limit",
            Breach::Memory => "memory_limit",
            Breach::Records => "record_limit",
            Breach::Logs => "log_limit",
        }
    }
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breach::Cpu => write!(f, "the connector used up its CPU time"),
            Breach::WallClock => write!(f, "the run exceeded its wall-clock deadline"),
            Breach::Memory => write!(f, "the connector tried to grow its memory past the limit"),
            Breach::Records => write!(f, "the connector emitted more records than one run may"),
            Breach::Logs => write!(f, "the connector wrote more log than one run may"),
        }
    }
}

impl std::error::Error for Breach {}

/// Enforces the memory cap and remembers the peak.
pub struct Limiter {
    max_memory: usize,
    pub peak_memory: usize,
    pub breached: bool,
}

impl Limiter {
    pub fn new(max_memory: usize) -> Self {
        Limiter {
            max_memory,
            peak_memory: 0,
            breached: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.breached = true;
            return Err(wasmtime::Error::new(Breach::Memory));
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
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
