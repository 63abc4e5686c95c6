//! Parsing the timestamps that scope time ranges compare.
//!
//! The parser and the time window are defined once in `pdpp-types` and
//! shared with the SDK, so a connector that filters with the SDK's
//! `StreamScope::allows_time` never trips the host's `record_time_in_range`
//! rule, and the other way round. This module re-exports the parser for the
//! rest of the host and pins that agreement in its tests.

pub use pdpp_types::parse_instant;

#[cfg(test)]
mod tests {
    use crate::manifest::Manifest;
    use crate::protocol::{self as p, TimeRange};
    use crate::runtime::{Quiet, Session};
    use crate::sandbox::{RunControl, RunHooks, SecretSet};
    use pdpp_types::conformance::TIME_RANGE_CASES;
    use serde_json::json;
    use std::path::Path;
    use std::sync::Arc;

    /// Whether the host's RECORD rules accept a `contacts` record of the
    /// demo manifest (consent time field `updated_at`) stamped `time`, in a
    /// scope limited to `range`.
    fn host_accepts(manifest: &Arc<Manifest>, range: &TimeRange, time: &str) -> bool {
        let start = p::Start {
            run_id: "run_time".into(),
            collection_mode: p::CollectionMode::Incremental,
            scope: p::Scope {
                streams: vec![p::StreamScope {
                    time_range: Some(range.clone()),
                    ..p::StreamScope::named("contacts")
                }],
            },
            state: None,
            bindings: Default::default(),
        };
        let mut session = Session::new(
            manifest.clone(),
            &start,
            None,
            Box::new(Quiet),
            SecretSet::default(),
            None,
            RunControl::default(),
        );
        let record = p::Record {
            stream: "contacts".into(),
            key: json!("c1"),
            data: Some(json!({ "id": "c1", "updated_at": time })),
            op: None,
            emitted_at: "2026-06-01T00:00:00Z".into(),
        };
        match session.message(p::Message::Record(record)) {
            Ok(()) => true,
            Err(v) if v.rule == "record_time_in_range" => false,
            Err(v) => panic!("an unrelated rule refused the record: {} ({})", v.rule, v.message),
        }
    }

    /// `record_time_in_range`: for every boundary case the host's verdict is
    /// the shared `TimeRange::contains`, which the SDK's `allows_time` uses.
    #[test]
    fn record_time_in_range_agrees_with_the_sdk_on_every_boundary_case() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/demo.json");
        let manifest = Arc::new(Manifest::from_file(&manifest).expect("the demo manifest loads"));
        for case in TIME_RANGE_CASES {
            let range = TimeRange {
                since: case.since.map(str::to_owned),
                until: case.until.map(str::to_owned),
            };
            let host = host_accepts(&manifest, &range, case.time);
            assert_eq!(host, case.inside, "host: {} ({case:?})", case.why);
            assert_eq!(range.contains(case.time), host, "shared TimeRange: {}", case.why);
        }
    }
}
