//! What a run may collect: its streams and their limits, and record keys.
//!
//! The host checks every RECORD against the scope (stream, resources,
//! fields, consent time). The checks here are the same rules, so a connector
//! that filters with them never has a record refused.

/// START's collection mode, shared with the host (`pdpp_types::CollectionMode`):
/// `FullRefresh` or `Incremental`.
pub use pdpp_types::CollectionMode as Mode;

/// A half-open time window `since <= t < until` (RFC 3339 text), shared with
/// the host: `pdpp_types::TimeRange`. [`TimeRange::contains`] compares
/// instants (offsets and fractions included), exactly as the host's
/// `record_time_in_range` rule does.
pub use pdpp_types::TimeRange;

/// One stream the run may collect, and the limits on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamScope {
    /// The stream's name, as the manifest declares it.
    pub name: String,
    /// When present and non-empty, only records of these resources (record
    /// keys, or the manifest's `selection.resource_field`).
    pub resources: Option<Vec<String>>,
    /// When present, only records whose consent time (the manifest's
    /// `consent_time_field`) is inside it.
    pub time_range: Option<TimeRange>,
    /// When present, only these top-level fields ([`crate::Run::record`]
    /// drops the others itself).
    pub fields: Option<Vec<String>>,
}

impl StreamScope {
    /// The whole stream: no resource, time or field limit.
    pub fn named(name: impl Into<String>) -> Self {
        StreamScope {
            name: name.into(),
            resources: None,
            time_range: None,
            fields: None,
        }
    }

    /// Whether the scope allows this resource (no resource list allows all).
    pub fn allows_resource(&self, resource: &str) -> bool {
        match &self.resources {
            Some(list) if !list.is_empty() => list.iter().any(|r| r == resource),
            _ => true,
        }
    }

    /// Whether the scope allows a record whose consent time is `t` (no
    /// window allows all). With a window, `t` must parse as RFC 3339 and be
    /// inside it: the host's `record_time_in_range` rule, via the shared
    /// [`TimeRange::contains`].
    ///
    /// ```
    /// use pdpp_sdk::{StreamScope, TimeRange};
    /// let scope = StreamScope {
    ///     time_range: Some(TimeRange { since: Some("2026-01-01T00:30:00Z".into()), until: None }),
    ///     ..StreamScope::named("notes")
    /// };
    /// assert!(!scope.allows_time("2026-01-01T01:00:00+01:00"), "midnight UTC is before since");
    /// assert!(scope.allows_time("2026-01-01T00:30:00.5Z"));
    /// ```
    pub fn allows_time(&self, t: &str) -> bool {
        self.time_range.as_ref().is_none_or(|w| w.contains(t))
    }

    /// Whether the scope allows a record with this resource (its key) and
    /// consent time: [`allows_resource`](Self::allows_resource) and, when
    /// the scope has a window, a consent time inside it. A record without a
    /// consent time is refused by a window, as the host refuses it.
    pub fn allows_record(&self, resource: &str, consent_time: Option<&str>) -> bool {
        self.allows_resource(resource)
            && match &self.time_range {
                None => true,
                Some(window) => consent_time.is_some_and(|t| window.contains(t)),
            }
    }
}

/// A record key: a single value or the parts of a composite primary key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// A one-field primary key.
    Single(String),
    /// The parts of a composite primary key, in the manifest's order.
    Composite(Vec<String>),
}

impl From<&str> for Key {
    fn from(v: &str) -> Self {
        Key::Single(v.to_owned())
    }
}
impl From<String> for Key {
    fn from(v: String) -> Self {
        Key::Single(v)
    }
}
impl From<&String> for Key {
    fn from(v: &String) -> Self {
        Key::Single(v.clone())
    }
}
impl From<u64> for Key {
    fn from(v: u64) -> Self {
        Key::Single(v.to_string())
    }
}
impl From<Vec<String>> for Key {
    fn from(v: Vec<String>) -> Self {
        Key::Composite(v)
    }
}
impl<const N: usize> From<[&str; N]> for Key {
    fn from(v: [&str; N]) -> Self {
        Key::Composite(v.iter().map(|s| s.to_string()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdpp_types::conformance::TIME_RANGE_CASES;

    /// The SDK half of the agreement the host's `record_time_in_range`
    /// test pins from the other side: the same table, the same verdicts.
    #[test]
    fn allows_time_agrees_with_the_host_on_every_boundary_case() {
        for case in TIME_RANGE_CASES {
            let scope = StreamScope {
                time_range: Some(TimeRange {
                    since: case.since.map(str::to_owned),
                    until: case.until.map(str::to_owned),
                }),
                ..StreamScope::named("s")
            };
            assert_eq!(scope.allows_time(case.time), case.inside, "{}: {case:?}", case.why);
            assert_eq!(scope.allows_record("k", Some(case.time)), case.inside, "{}", case.why);
        }
    }

    #[test]
    fn without_a_window_every_time_is_allowed_and_a_window_needs_a_time() {
        let open = StreamScope::named("s");
        assert!(
            open.allows_time("not a time"),
            "no window, no time check (the host has none either)"
        );
        assert!(open.allows_record("k", None));
        let windowed = StreamScope {
            time_range: Some(TimeRange::default()),
            ..StreamScope::named("s")
        };
        assert!(
            !windowed.allows_record("k", None),
            "a missing consent time fails a window"
        );
    }

    #[test]
    fn a_resource_list_limits_keys_and_an_empty_one_does_not() {
        let some = StreamScope {
            resources: Some(vec!["a".into()]),
            ..StreamScope::named("s")
        };
        assert!(some.allows_resource("a") && !some.allows_resource("b"));
        assert!(!some.allows_record("b", None));
        let empty = StreamScope {
            resources: Some(vec![]),
            ..StreamScope::named("s")
        };
        assert!(empty.allows_resource("b"));
    }
}
