//! One definition of every run limit that can be set from outside the code.
//!
//! The same knob has the same name everywhere: in a manifest's
//! `runtime_requirements.limits` (where it can only lower the deployment's
//! limit), in the configuration file's `[limits]` table and as a flag of
//! `pdpp-host run` (where it sets it). [`RunLimits`] is what a run is given.

use crate::sandbox::RunLimits;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Run limits to set or lower, each optional. Field names are the knob names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverride {
    /// Guest CPU time in seconds (waits for the owner do not count).
    #[arg(long, value_name = "SECONDS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<u64>,
    /// Wall-clock time of the whole run in seconds.
    #[arg(long, visible_alias = "wall-seconds", value_name = "SECONDS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_clock_seconds: Option<u64>,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB")]
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "memory_mb")]
    pub memory_mib: Option<u64>,
    /// The largest single message (e.g. one record's data) in bytes.
    #[arg(long, value_name = "BYTES")]
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "record_bytes")]
    pub message_bytes: Option<u64>,
    /// RECORDs one run may emit.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "records")]
    pub max_records: Option<u64>,
    /// Bytes of structured log one run may write.
    #[arg(long, value_name = "BYTES")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_bytes: Option<u64>,
    /// Outgoing HTTP requests one run may make.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "http_requests")]
    pub http_max_requests: Option<u64>,
    /// The largest HTTP response body one request may bring in, in bytes.
    #[arg(long, value_name = "BYTES")]
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "response_bytes")]
    pub http_max_response_bytes: Option<u64>,
}

/// Spellings of earlier versions, still accepted in manifests: (old, new).
pub const DEPRECATED_NAMES: &[(&str, &str)] = &[
    ("memory_mb", "memory_mib"),
    ("record_bytes", "message_bytes"),
    ("records", "max_records"),
    ("http_requests", "http_max_requests"),
    ("response_bytes", "http_max_response_bytes"),
];

const MIB: u64 = 1 << 20;

fn usize_of(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl LimitsOverride {
    /// `limits` with every knob given here set to its value (operator settings).
    pub fn apply(&self, mut l: RunLimits) -> RunLimits {
        if let Some(s) = self.cpu_seconds {
            l.cpu = Duration::from_secs(s);
        }
        if let Some(s) = self.wall_clock_seconds {
            l.wall_clock = Duration::from_secs(s);
        }
        if let Some(m) = self.memory_mib {
            l.memory_bytes = usize_of(m.saturating_mul(MIB));
        }
        if let Some(b) = self.message_bytes {
            l.message_bytes = usize_of(b);
        }
        if let Some(n) = self.max_records {
            l.max_records = n;
        }
        if let Some(n) = self.log_bytes {
            l.log_bytes = n;
        }
        if let Some(n) = self.http_max_requests {
            l.http.max_requests = n;
        }
        if let Some(n) = self.http_max_response_bytes {
            l.http.max_response_bytes = n;
        }
        l
    }

    /// `limits` with every knob given here lowered to its value, never raised
    /// (a connector's manifest can only ask for less than the deployment allows).
    pub fn lower(&self, mut l: RunLimits) -> RunLimits {
        let secs = |v: Option<u64>, cur: Duration| v.map_or(cur, |s| cur.min(Duration::from_secs(s)));
        l.cpu = secs(self.cpu_seconds, l.cpu);
        l.wall_clock = secs(self.wall_clock_seconds, l.wall_clock);
        if let Some(m) = self.memory_mib {
            l.memory_bytes = l.memory_bytes.min(usize_of(m.saturating_mul(MIB)));
        }
        if let Some(b) = self.message_bytes {
            l.message_bytes = l.message_bytes.min(usize_of(b));
        }
        let lower = |v: Option<u64>, cur: u64| v.map_or(cur, |v| cur.min(v));
        l.max_records = lower(self.max_records, l.max_records);
        l.log_bytes = lower(self.log_bytes, l.log_bytes);
        l.http.max_requests = lower(self.http_max_requests, l.http.max_requests);
        l.http.max_response_bytes = lower(self.http_max_response_bytes, l.http.max_response_bytes);
        l
    }
}

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
        let set = o.apply(base.clone());
        assert_eq!(set.memory_bytes, 64 << 20);
        assert_eq!(set.cpu, Duration::from_secs(10_000), "an operator may raise a limit");
        let lowered = o.lower(base.clone());
        assert_eq!(lowered.memory_bytes, 64 << 20);
        assert_eq!(lowered.cpu, base.cpu, "a manifest never raises a limit");
    }

    #[test]
    fn deprecated_manifest_spellings_are_still_read() {
        let old: LimitsOverride =
            serde_json::from_str(r#"{"memory_mb": 32, "records": 5, "record_bytes": 100}"#).unwrap();
        assert_eq!(old.memory_mib, Some(32));
        assert_eq!(old.max_records, Some(5));
        assert_eq!(old.message_bytes, Some(100));
        let written = serde_json::to_value(&old).unwrap();
        assert_eq!(written["memory_mib"], 32, "written back with the current name");
        assert!(serde_json::from_str::<LimitsOverride>(r#"{"memory_gb": 1}"#).is_err());
    }
}
