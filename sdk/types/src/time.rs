//! Instants and the profile's time window.
//!
//! An instant is a count of milliseconds since 1970-01-01T00:00:00Z (an
//! `i64`, negative before 1970). [`parse_instant`] is the one parser both the
//! host and the SDK use, so "is this record inside the scope's time range"
//! has one answer on both sides of the boundary.
//!
//! What it accepts (RFC 3339 §5.6, plus a bare date):
//!
//! - `YYYY-MM-DDTHH:MM:SS` followed by an optional fraction (`.` and one or
//!   more digits; digits past milliseconds are truncated, never rounded, so
//!   an instant never moves later than the text) and a zone: `Z` or
//!   `±HH:MM` (hours 00–23, minutes 00–59). `T`/`Z` may be lower case and the
//!   `T` may be a space, as RFC 3339 allows;
//! - `YYYY-MM-DD`: midnight UTC of that day;
//! - surrounding whitespace is ignored.
//!
//! Every field must be ASCII digits of the exact width, the date must exist
//! (the Gregorian leap-year rule: 2024-02-29 exists, 2025-02-29 and
//! 2100-02-29 do not) and the clock must be in range. A leap second
//! (`:60`) is accepted and counts as the last millisecond of its minute
//! (`23:59:60Z` is `23:59:59.999Z`), so it stays inside the minute, day and
//! year it names: a window ending at the next midnight still contains it.
//!
//! This crate does its own date arithmetic (about forty lines, tested below)
//! instead of depending on a date library: the accepted forms above are the
//! profile's own rules (a bare date, the leap-second choice), so a library's
//! parser would need wrapping anyway, and every connector carries this crate
//! into its `.wasm`.

use serde::{Deserialize, Serialize};
use std::fmt;

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_DAY: i64 = 86_400 * MS_PER_SECOND;

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp
/// (`2026-01-02T03:04:05Z`, `2026-01-02T04:04:05.250+01:00`) or of a date
/// (`2026-01-02`, midnight UTC). `None` when the text is neither; see the
/// [module documentation](self) for exactly what is accepted.
///
/// ```
/// use pdpp_types::parse_instant;
/// assert_eq!(parse_instant("1970-01-01T00:00:00Z"), Some(0));
/// assert_eq!(parse_instant("2026-01-01T01:00:00+01:00"), parse_instant("2026-01-01"));
/// assert_eq!(parse_instant("last tuesday"), None);
/// ```
pub fn parse_instant(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let midnight = days_from_civil(year, month, day) * MS_PER_DAY;
    if b.len() == 10 {
        return Some(midnight);
    }
    // `THH:MM:SS` and at least one byte of zone.
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let mut second = digits(&b[17..19])?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        // Milliseconds from the first three digits, padded: `.5` is 500 ms.
        millis = fraction[..n]
            .iter()
            .chain(std::iter::repeat(&b'0'))
            .take(3)
            .fold(0, |acc, d| acc * 10 + i64::from(d - b'0'));
        rest = &fraction[n..];
    }
    let offset_minutes = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    if second == 60 {
        second = 59;
        millis = 999;
    }
    let clock = (hour * 3_600 + minute * 60 + second - offset_minutes * 60) * MS_PER_SECOND;
    Some(midnight + clock + millis)
}

/// An instant as RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SSZ`, with `.mmm` when
/// the instant has milliseconds. [`parse_instant`] reads it back to the same
/// value for every year from 0000 to 9999.
///
/// ```
/// use pdpp_types::format_instant;
/// assert_eq!(format_instant(0), "1970-01-01T00:00:00Z");
/// assert_eq!(format_instant(1_767_225_600_500), "2026-01-01T00:00:00.500Z");
/// ```
pub fn format_instant(millis: i64) -> String {
    let (y, m, d) = civil_from_days(millis.div_euclid(MS_PER_DAY));
    let in_day = millis.rem_euclid(MS_PER_DAY);
    let (secs, ms) = (in_day / MS_PER_SECOND, in_day % MS_PER_SECOND);
    let (hh, mm, ss) = (secs / 3_600, (secs % 3_600) / 60, secs % 60);
    if ms == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
    }
}

/// The UTC day of an instant as `YYYY-MM-DD` (what APIs that page by day
/// take, and what [`parse_instant`] reads back as that day's midnight).
///
/// ```
/// use pdpp_types::format_date;
/// assert_eq!(format_date(1_767_225_599_999), "2025-12-31");
/// ```
pub fn format_date(millis: i64) -> String {
    let (y, m, d) = civil_from_days(millis.div_euclid(MS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// A half-open time window `since <= t < until`, as START's scope carries it
/// (RFC 3339 text; either bound may be absent).
///
/// The bounds stay text so the window travels unchanged through START, the
/// WIT and the JSON transcript; [`TimeRange::contains`] compares instants,
/// never text. A bound that does not parse is treated as absent, which is
/// what the host's `record_time_in_range` rule does with it; use
/// [`TimeRange::check`] to refuse such a window before a run starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeRange {
    /// The first instant inside the window (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The first instant after the window (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

impl TimeRange {
    /// Whether the instant written as `t` is inside the window: `t` parses
    /// and `since <= t < until`. Text that does not parse is never inside
    /// (the profile: "a missing or unparseable value fails the check").
    ///
    /// This is the one definition of `record_time_in_range`; the SDK's
    /// `StreamScope::allows_time` calls it.
    pub fn contains(&self, t: &str) -> bool {
        parse_instant(t).is_some_and(|t| self.contains_instant(t))
    }

    /// Whether an instant (milliseconds since the epoch) is inside the window.
    pub fn contains_instant(&self, t: i64) -> bool {
        self.since_instant().is_none_or(|since| since <= t) && self.until_instant().is_none_or(|until| t < until)
    }

    /// The lower bound as an instant, if present and parseable.
    pub fn since_instant(&self) -> Option<i64> {
        self.since.as_deref().and_then(parse_instant)
    }

    /// The upper bound as an instant, if present and parseable.
    pub fn until_instant(&self) -> Option<i64> {
        self.until.as_deref().and_then(parse_instant)
    }

    /// Whether the window is well formed: every present bound parses, and
    /// `since` is before `until` when both are present.
    pub fn check(&self) -> Result<(), InvalidTimeRange> {
        let since = match &self.since {
            Some(s) => Some(parse_instant(s).ok_or_else(|| InvalidTimeRange::Since(s.clone()))?),
            None => None,
        };
        let until = match &self.until {
            Some(u) => Some(parse_instant(u).ok_or_else(|| InvalidTimeRange::Until(u.clone()))?),
            None => None,
        };
        match (since, until) {
            (Some(s), Some(u)) if s >= u => Err(InvalidTimeRange::Empty),
            _ => Ok(()),
        }
    }
}

/// Why [`TimeRange::check`] refused a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidTimeRange {
    /// `since` is not an RFC 3339 timestamp or date (the text is carried).
    Since(String),
    /// `until` is not an RFC 3339 timestamp or date (the text is carried).
    Until(String),
    /// `since` is not before `until`: the window holds no instant.
    Empty,
}

impl fmt::Display for InvalidTimeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidTimeRange::Since(s) => write!(f, "time_range.since {s:?} is not an RFC 3339 timestamp"),
            InvalidTimeRange::Until(u) => write!(f, "time_range.until {u:?} is not an RFC 3339 timestamp"),
            InvalidTimeRange::Empty => f.write_str("time_range.since is not before time_range.until"),
        }
    }
}

impl std::error::Error for InvalidTimeRange {}

/// The value of a fixed-width run of ASCII digits (a sign or a space is not a digit).
fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date. The year is shifted
/// to start in March, so the leap day falls at the end of each 400-year era.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (the inverse
/// of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_1_2026: i64 = 1_767_225_600_000;

    #[test]
    fn parses_timestamps_with_offsets_fractions_and_bare_dates() {
        assert_eq!(parse_instant("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_instant("1970-01-01"), Some(0));
        assert_eq!(parse_instant("2026-01-01T00:00:00Z"), Some(JAN_1_2026));
        assert_eq!(parse_instant("2026-01-01T01:00:00+01:00"), Some(JAN_1_2026));
        assert_eq!(parse_instant("2025-12-31T23:00:00-01:00"), Some(JAN_1_2026));
        assert_eq!(parse_instant("2026-01-01T00:00:00.5Z"), Some(JAN_1_2026 + 500));
        assert_eq!(parse_instant("2026-01-01T00:00:00.000Z"), Some(JAN_1_2026));
        assert_eq!(
            parse_instant("2026-01-01T00:00:00.1239Z"),
            Some(JAN_1_2026 + 123),
            "truncated, not rounded"
        );
        assert_eq!(parse_instant("2026-01-01t00:00:00z"), Some(JAN_1_2026));
        assert_eq!(parse_instant("2026-01-01 00:00:00Z"), Some(JAN_1_2026));
        assert_eq!(parse_instant(" 2026-01-01T00:00:00Z\n"), Some(JAN_1_2026));
        assert_eq!(parse_instant("1969-12-31T23:59:59.5Z"), Some(-500));
    }

    #[test]
    fn leap_years_follow_the_gregorian_rule() {
        assert_eq!(parse_instant("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_instant("2000-02-29"), Some(951_782_400_000));
        assert_eq!(parse_instant("2025-02-29"), None);
        assert_eq!(parse_instant("2100-02-29"), None);
        assert_eq!(
            parse_instant("2024-03-01").unwrap() - parse_instant("2024-02-28").unwrap(),
            2 * MS_PER_DAY
        );
    }

    #[test]
    fn a_leap_second_stays_in_the_minute_it_names() {
        assert_eq!(
            parse_instant("2026-12-31T23:59:60Z"),
            Some(parse_instant("2027-01-01").unwrap() - 1)
        );
        assert_eq!(
            parse_instant("2026-12-31T23:59:60.5Z"),
            parse_instant("2026-12-31T23:59:60Z")
        );
    }

    #[test]
    fn rejects_what_is_not_a_timestamp() {
        for s in [
            "",
            "yesterday",
            "2026",
            "2026-1-01",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2026-01-00",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "2026-01-01T00:00:61Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+1:00",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00+01:60",
            "2026-01-01T00:00:00ZZ",
            "2026-01-01X00:00:00Z",
            "+202-01-01",
            "2026-01-01T+1:00:00Z",
            "2026-01-01T00:00: 0Z",
            "２０２６-01-01",
        ] {
            assert_eq!(parse_instant(s), None, "{s:?}");
        }
    }

    #[test]
    fn formatting_round_trips_through_parsing() {
        // Every day boundary of four centuries, with and without milliseconds.
        let start = parse_instant("1900-01-01").unwrap();
        let end = parse_instant("2300-01-01").unwrap();
        let mut t = start;
        while t < end {
            for probe in [t, t + 1, t + MS_PER_DAY - 1] {
                assert_eq!(parse_instant(&format_instant(probe)), Some(probe), "{probe}");
            }
            t += MS_PER_DAY;
        }
        assert_eq!(format_instant(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_date(JAN_1_2026 - 1), "2025-12-31");
        assert_eq!(parse_instant(&format_date(JAN_1_2026 + 5)), Some(JAN_1_2026));
    }

    #[test]
    fn a_time_range_is_half_open_and_compares_instants() {
        let w = TimeRange {
            since: Some("2026-01-01T00:00:00Z".into()),
            until: Some("2026-02-01T00:00:00+00:00".into()),
        };
        assert!(w.contains("2026-01-01T00:00:00.000Z"), "since is inside");
        assert!(w.contains("2026-01-31T23:59:59.999Z"));
        assert!(!w.contains("2026-02-01T00:00:00Z"), "until is outside");
        assert!(
            !w.contains("2026-02-01T01:00:00+01:00"),
            "until, spelled in another zone"
        );
        assert!(
            w.contains("2025-12-31T23:30:00-01:00"),
            "a text comparison would say outside"
        );
        assert!(!w.contains("not a time"));
        assert!(TimeRange::default().contains("2026-01-01"));
        assert!(!TimeRange::default().contains("soon"), "unparseable is never inside");
    }

    #[test]
    fn check_refuses_unparseable_and_empty_windows() {
        let w = |s: &str, u: &str| TimeRange {
            since: Some(s.into()),
            until: Some(u.into()),
        };
        assert_eq!(w("2026-01-01", "2026-01-02").check(), Ok(()));
        assert_eq!(
            w("soon", "2026-01-02").check(),
            Err(InvalidTimeRange::Since("soon".into()))
        );
        assert_eq!(
            w("2026-01-01", "later").check(),
            Err(InvalidTimeRange::Until("later".into()))
        );
        assert_eq!(
            w("2026-01-02", "2026-01-01T23:00:00-01:00").check(),
            Err(InvalidTimeRange::Empty)
        );
        assert_eq!(TimeRange::default().check(), Ok(()));
        // Unchecked, an unparseable bound is no bound: the host's rule does the same.
        assert!(w("soon", "2026-01-02").contains("1999-01-01"));
    }

    #[test]
    fn time_range_json_omits_absent_bounds() {
        let w = TimeRange {
            since: Some("2026-01-01".into()),
            until: None,
        };
        assert_eq!(serde_json::to_string(&w).unwrap(), r#"{"since":"2026-01-01"}"#);
        assert_eq!(serde_json::from_str::<TimeRange>("{}").unwrap(), TimeRange::default());
    }
}
