//! One definition of every run limit that can be set from outside the code.
//!
//! The same knob has the same name everywhere: in a manifest's
//! `runtime_requirements.limits` (where it can only lower the deployment's
//! limit), in the configuration file's `[limits]` table and as a flag of
//! `pdpp-host run` (where it sets it). What a run is given is
//! `sandbox::RunLimits`, which applies these (`with_overrides`, `lowered_by`).
//! Pure data: this module depends on nothing else of the host.

use serde::{Deserialize, Serialize};

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
    /// The whole run's memory in MiB: guest memories and tables plus host-side state.
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
    /// Timeline events (PROGRESS, log lines, skips, questions…) one run may cause.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_events: Option<u64>,
    /// INTERACTIONs one run may ask.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interactions: Option<u64>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
