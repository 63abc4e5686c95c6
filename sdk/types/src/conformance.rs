//! The boundary cases the host and the SDK are both tested against.
//!
//! Before this crate existed the SDK compared time-window bounds as text,
//! the provider connectors as whole seconds and the host as milliseconds, and
//! the three disagreed on exactly these inputs. Each side's test suite runs
//! this one table through its own entry point (the host through the rule
//! that validates a RECORD, the SDK through `StreamScope::allows_time`), so
//! a change that makes them disagree again fails on both sides.

/// One record time against one window, and the verdict both sides must reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRangeCase {
    /// The window's `since`, if any.
    pub since: Option<&'static str>,
    /// The window's `until`, if any.
    pub until: Option<&'static str>,
    /// The record's consent time, as the connector wrote it.
    pub time: &'static str,
    /// Whether the record is inside the window.
    pub inside: bool,
    /// Why this case is here.
    pub why: &'static str,
}

const fn case(
    since: Option<&'static str>,
    until: Option<&'static str>,
    time: &'static str,
    inside: bool,
    why: &'static str,
) -> TimeRangeCase {
    TimeRangeCase {
        since,
        until,
        time,
        inside,
        why,
    }
}

/// Every case; see [`TimeRangeCase::why`] for what each one pins down.
pub const TIME_RANGE_CASES: &[TimeRangeCase] = &[
    case(
        Some("2026-01-01T00:30:00Z"),
        None,
        "2026-01-01T01:00:00+01:00",
        false,
        "an offset timestamp is midnight UTC, before since (text comparison said inside)",
    ),
    case(
        Some("2026-01-01T00:00:00Z"),
        None,
        "2026-01-01T00:00:00.5Z",
        true,
        "a fraction is after the whole second (text comparison said outside)",
    ),
    case(
        None,
        Some("2026-01-01T00:00:00Z"),
        "2025-12-31T23:59:59.999Z",
        true,
        "the last millisecond before until is inside (whole seconds said equal)",
    ),
    case(
        None,
        Some("2026-01-01T00:00:00Z"),
        "2026-01-01T00:00:00.000Z",
        false,
        "until is exclusive, however it is spelled",
    ),
    case(
        Some("2026-01-01T00:00:00Z"),
        Some("2026-02-01T00:00:00Z"),
        "2026-01-01T01:00:00+01:00",
        true,
        "since is inclusive, however it is spelled",
    ),
    case(
        Some("2026-01-01T00:00:00Z"),
        None,
        "2025-12-31T23:30:00-01:00",
        true,
        "a negative offset crosses into the next day (text comparison said outside)",
    ),
    case(
        Some("2026-01-01"),
        None,
        "2025-12-31T23:59:59Z",
        false,
        "a bare date bound is midnight UTC",
    ),
    case(
        Some("2026-01-01"),
        Some("2026-01-02"),
        "2026-01-01",
        true,
        "a bare date record time is midnight UTC",
    ),
    case(
        Some("2024-02-29T00:00:00Z"),
        Some("2024-03-01T00:00:00Z"),
        "2024-02-29T23:59:59Z",
        true,
        "a leap day is a day",
    ),
    case(
        Some("2024-02-29T00:00:00Z"),
        Some("2024-03-01T00:00:00Z"),
        "2024-03-01T00:00:00+00:00",
        false,
        "the day after a leap day is outside a window ending there",
    ),
    case(
        None,
        Some("2027-01-01T00:00:00Z"),
        "2026-12-31T23:59:60Z",
        true,
        "a leap second belongs to the day it names",
    ),
    case(
        Some("2026-01-01T00:00:00Z"),
        None,
        "2026-01-01t00:00:00z",
        true,
        "lower-case t and z are RFC 3339",
    ),
    case(
        Some("2026-01-01T00:00:00Z"),
        None,
        "last tuesday",
        false,
        "an unparseable time is never inside (text comparison said inside)",
    ),
    case(
        Some("2025-01-01T00:00:00Z"),
        None,
        "2025-02-29T00:00:00Z",
        false,
        "a date that does not exist is unparseable",
    ),
    case(
        Some("2026-01-01T00:00:00Z"),
        None,
        "2026-01-01T00:00:00+25:00",
        false,
        "an offset beyond 23 hours is unparseable",
    ),
    case(
        None,
        None,
        "2026-01-01T00:00:00Z",
        true,
        "a window without bounds holds every instant",
    ),
    case(
        None,
        None,
        "soon",
        false,
        "even without bounds an unparseable time is outside",
    ),
    case(
        Some("soon"),
        None,
        "1999-01-01T00:00:00Z",
        true,
        "an unparseable bound is no bound (TimeRange::check finds it)",
    ),
];

#[cfg(test)]
mod tests {
    use super::TIME_RANGE_CASES;
    use crate::TimeRange;

    #[test]
    fn time_range_contains_reaches_every_expected_verdict() {
        for c in TIME_RANGE_CASES {
            let window = TimeRange {
                since: c.since.map(str::to_owned),
                until: c.until.map(str::to_owned),
            };
            assert_eq!(window.contains(c.time), c.inside, "{}: {c:?}", c.why);
        }
    }
}
