//! The current time and RFC 3339 formatting.
//!
//! Parsing and comparing instants is [`pdpp_types::parse_instant`] and
//! [`pdpp_types::TimeRange`] (re-exported as [`crate::types`]), the same
//! code the host runs.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (whole seconds).
pub fn now_rfc3339() -> String {
    format_unix(now_unix())
}

/// Seconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Format seconds since the Unix epoch as an RFC 3339 UTC timestamp
/// (`YYYY-MM-DDTHH:MM:SSZ`).
///
/// ```
/// assert_eq!(pdpp_sdk::time::format_unix(951_782_400), "2000-02-29T00:00:00Z");
/// ```
pub fn format_unix(secs: i64) -> String {
    pdpp_types::format_instant(secs.saturating_mul(1_000))
}

#[cfg(test)]
mod tests {
    use super::format_unix;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_unix(1_767_225_599), "2025-12-31T23:59:59Z");
        assert_eq!(format_unix(1_798_761_600), "2027-01-01T00:00:00Z");
    }
}
