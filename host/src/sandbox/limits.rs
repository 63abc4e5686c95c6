//! Per-run resource limits and the typed breaches they produce.

use crate::limits::LimitsOverride;
use std::fmt;
use std::time::Duration;

const MIB: u64 = 1 << 20;

fn usize_of(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// What one run may consume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLimits {
    /// Guest execution time, not counting waits for the owner.
    pub cpu: Duration,
    /// Wall-clock time from instantiation to DONE, waits included.
    pub wall_clock: Duration,
    /// The whole-run memory budget in bytes: every linear memory and table
    /// of the guest plus the host-side state it causes (see `budget`).
    pub memory_bytes: usize,
    /// Bytes kept of each of stdout and stderr (the tail).
    pub output_capture_bytes: usize,
    /// Largest single message (e.g. one record's data) in bytes.
    pub message_bytes: usize,
    /// Outgoing HTTP: timeouts, response size, request count.
    pub http: super::caps::http::HttpLimits,
    /// RECORDs one run may emit.
    pub max_records: u64,
    /// Bytes of structured log one run may write; each line is charged at
    /// least [`LOG_LINE_MIN_BYTES`].
    pub log_bytes: u64,
    /// Timeline events (PROGRESS, log lines, skips, gaps, questions, batches)
    /// one run may cause.
    pub max_events: u64,
    /// INTERACTIONs one run may ask (answered or not).
    pub max_interactions: u64,
    /// Entries the run's resource table may hold at once (WASI streams,
    /// HTTP fields and bodies, secret handles…).
    pub resource_entries: usize,
}

/// The least a log line is charged against the log budget, however short:
/// each one costs a timeline event and a database row.
pub const LOG_LINE_MIN_BYTES: u64 = 256;

impl RunLimits {
    /// These limits with every knob `o` gives set to its value (the
    /// operator's configuration and flags).
    pub fn with_overrides(&self, o: &LimitsOverride) -> RunLimits {
        let mut l = self.clone();
        if let Some(s) = o.cpu_seconds {
            l.cpu = Duration::from_secs(s);
        }
        if let Some(s) = o.wall_clock_seconds {
            l.wall_clock = Duration::from_secs(s);
        }
        if let Some(m) = o.memory_mib {
            l.memory_bytes = usize_of(m.saturating_mul(MIB));
        }
        if let Some(b) = o.message_bytes {
            l.message_bytes = usize_of(b);
        }
        if let Some(n) = o.max_records {
            l.max_records = n;
        }
        if let Some(n) = o.log_bytes {
            l.log_bytes = n;
        }
        if let Some(n) = o.max_events {
            l.max_events = n;
        }
        if let Some(n) = o.max_interactions {
            l.max_interactions = n;
        }
        if let Some(n) = o.http_max_requests {
            l.http.max_requests = n;
        }
        if let Some(n) = o.http_max_response_bytes {
            l.http.max_response_bytes = n;
        }
        l
    }

    /// These limits lowered by what a manifest asks for, never raised (a
    /// connector can only ask for less than the deployment allows).
    pub fn lowered_by(&self, m: Option<&LimitsOverride>) -> RunLimits {
        let mut l = self.clone();
        let Some(o) = m else { return l };
        let secs = |v: Option<u64>, cur: Duration| v.map_or(cur, |s| cur.min(Duration::from_secs(s)));
        l.cpu = secs(o.cpu_seconds, l.cpu);
        l.wall_clock = secs(o.wall_clock_seconds, l.wall_clock);
        if let Some(m) = o.memory_mib {
            l.memory_bytes = l.memory_bytes.min(usize_of(m.saturating_mul(MIB)));
        }
        if let Some(b) = o.message_bytes {
            l.message_bytes = l.message_bytes.min(usize_of(b));
        }
        let lower = |v: Option<u64>, cur: u64| v.map_or(cur, |v| cur.min(v));
        l.max_records = lower(o.max_records, l.max_records);
        l.log_bytes = lower(o.log_bytes, l.log_bytes);
        l.max_events = lower(o.max_events, l.max_events);
        l.max_interactions = lower(o.max_interactions, l.max_interactions);
        l.http.max_requests = lower(o.http_max_requests, l.http.max_requests);
        l.http.max_response_bytes = lower(o.http_max_response_bytes, l.http.max_response_bytes);
        l
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
            max_events: 50_000,
            max_interactions: 32,
            resource_entries: 1024,
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
    /// More timeline events (PROGRESS, log lines, skips…) than one run may cause.
    Events,
    /// More INTERACTIONs than one run may ask.
    Interactions,
    /// The run's resource table is full (handles, streams, HTTP fields kept alive).
    Resources,
    /// A browser session was not established (its account not reported) in time.
    BrowserSessionTimeout,
    /// The browser is logged into another account than the connection's.
    SessionAccountMismatch,
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
            Breach::Events => "event_limit",
            Breach::Interactions => "interaction_limit",
            Breach::Resources => "resource_limit",
            Breach::BrowserSessionTimeout => "browser_session_timeout",
            Breach::SessionAccountMismatch => "session_account_mismatch",
        }
    }
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breach::Cpu => write!(f, "the connector used up its CPU time"),
            Breach::WallClock => write!(f, "the run exceeded its wall-clock deadline"),
            Breach::Memory => write!(
                f,
                "the run's memory (guest memories, tables and host-side state) would pass its budget"
            ),
            Breach::Records => write!(f, "the connector emitted more records than one run may"),
            Breach::Logs => write!(f, "the connector wrote more log than one run may"),
            Breach::Events => write!(f, "the connector caused more timeline events than one run may"),
            Breach::Interactions => write!(f, "the connector asked more questions than one run may"),
            Breach::Resources => write!(f, "the connector held more resource handles at once than one run may"),
            Breach::BrowserSessionTimeout => write!(
                f,
                "the browser session was not established in time: the connector did not report the logged-in account"
            ),
            Breach::SessionAccountMismatch => write!(
                f,
                "the browser is logged into another account than this connection's; nothing was kept and the \
                 session was discarded"
            ),
        }
    }
}

impl std::error::Error for Breach {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_knob_sets_in_config_and_only_lowers_in_a_manifest() {
        let base = RunLimits::default();
        let o = LimitsOverride {
            memory_mib: Some(64),
            cpu_seconds: Some(10_000),
            ..Default::default()
        };
        let set = base.with_overrides(&o);
        assert_eq!(set.memory_bytes, 64 << 20);
        assert_eq!(set.cpu, Duration::from_secs(10_000), "an operator may raise a limit");
        let lowered = base.lowered_by(Some(&o));
        assert_eq!(lowered.memory_bytes, 64 << 20);
        assert_eq!(lowered.cpu, base.cpu, "a manifest never raises a limit");
    }
}
