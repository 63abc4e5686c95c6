//! Scope enforcement: streams, resources, fields, time ranges.

use super::*;
use crate::on_both_backends;
use pdpp_host::protocol::{StreamScope, TimeRange};

fn scoped(scope: StreamScope) -> ConnectionRun {
    let mut opts = ConnectionRun::new(Trigger::Manual);
    opts.streams = Some(vec![scope]);
    opts
}

fn with_resources(r: &[&str]) -> StreamScope {
    StreamScope {
        name: "a".into(),
        resources: Some(r.iter().map(|s| s.to_string()).collect()),
        time_range: None,
        fields: None,
    }
}

fn with_fields(f: &[&str]) -> StreamScope {
    StreamScope {
        name: "a".into(),
        fields: Some(f.iter().map(|s| s.to_string()).collect()),
        time_range: None,
        resources: None,
    }
}

fn with_range(since: &str, until: &str) -> StreamScope {
    StreamScope {
        name: "a".into(),
        time_range: Some(TimeRange {
            since: Some(since.into()),
            until: Some(until.into()),
        }),
        fields: None,
        resources: None,
    }
}

fn grouped() -> Arc<Manifest> {
    manifest_with(
        vec![
            stream("a", json!({ "selection": { "resource_field": "group" } })),
            stream("b", json!({})),
        ],
        json!({}),
    )
}

on_both_backends! {
    async fn record_for_a_stream_outside_the_scope_is_a_violation(t: TestDeployment) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.streams = Some(vec![StreamScope::named("a")]);
        let p = play_opts(&t, manifest(&["a", "b"]), vec![state("a", json!({})), rec("b", "1"), done()], opts).await;
        p.assert_violation("record_stream_in_scope");
        assert!(p.out.message.as_deref().unwrap().contains("undeclared stream: b"));
        assert_eq!(p.records, 0);
    }
}

on_both_backends! {
    async fn record_key_outside_the_scope_resources_is_a_violation(t: TestDeployment) {
        let p = play_opts(&t, grouped(), vec![rec("a", "b-key"), done()], scoped(with_resources(&["a-key"]))).await;
        p.assert_violation("record_resource_in_scope");
    }
}

on_both_backends! {
    async fn record_key_in_the_scope_resources_is_accepted(t: TestDeployment) {
        let p = play_opts(&t, grouped(), vec![rec("a", "a-key"), done()], scoped(with_resources(&["a-key"]))).await;
        assert!(p.out.succeeded(), "{:?}", p.out);
    }
}

on_both_backends! {
    async fn record_whose_resource_field_is_in_the_scope_resources_is_accepted(t: TestDeployment) {
        let r = rec_data("a", "k9", json!({ "id": "k9", "group": "family" }));
        let p = play_opts(&t, grouped(), vec![r, done()], scoped(with_resources(&["family"]))).await;
        assert!(p.out.succeeded(), "{:?}", p.out);
        assert_eq!(p.records, 1);
    }
}

on_both_backends! {
    async fn record_field_outside_the_scope_fields_is_a_violation_naming_it(t: TestDeployment) {
        let r = rec_data("a", "1", json!({ "id": "1", "value": 1, "note": "private" }));
        let p = play_opts(&t, manifest(&["a"]), vec![r, done()], scoped(with_fields(&["value"]))).await;
        p.assert_violation("record_fields_in_scope");
        assert!(p.out.message.as_deref().unwrap().contains("note"));
        assert!(!p.out.message.as_deref().unwrap().contains("private"), "violations never echo values");
    }
}

on_both_backends! {
    async fn record_with_only_scoped_and_required_fields_is_accepted(t: TestDeployment) {
        let r = rec_data("a", "1", json!({ "id": "1", "value": 1 }));
        let p = play_opts(&t, manifest(&["a"]), vec![r, done()], scoped(with_fields(&["value"]))).await;
        assert!(p.out.succeeded(), "{:?}", p.out);
    }
}

on_both_backends! {
    async fn record_before_the_time_range_is_a_violation(t: TestDeployment) {
        let r = rec_data("a", "1", json!({ "id": "1", "updated_at": "2025-12-31T23:59:59Z" }));
        let p = play_opts(&t, manifest(&["a"]), vec![r, done()], scoped(with_range("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))).await;
        p.assert_violation("record_time_in_range");
    }
}

on_both_backends! {
    async fn record_at_the_end_of_the_time_range_is_a_violation(t: TestDeployment) {
        let r = rec_data("a", "1", json!({ "id": "1", "updated_at": "2026-02-01T00:00:00Z" }));
        let p = play_opts(&t, manifest(&["a"]), vec![r, done()], scoped(with_range("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))).await;
        p.assert_violation("record_time_in_range");
    }
}

on_both_backends! {
    async fn record_at_the_start_of_the_time_range_is_accepted(t: TestDeployment) {
        let r = rec_data("a", "1", json!({ "id": "1", "updated_at": "2026-01-01T01:00:00+01:00" }));
        let p = play_opts(&t, manifest(&["a"]), vec![r, done()], scoped(with_range("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"))).await;
        assert!(p.out.succeeded(), "{:?}", p.out);
    }
}

on_both_backends! {
    async fn record_without_its_consent_time_in_a_time_range_is_a_violation(t: TestDeployment) {
        let p = play_opts(&t, manifest(&["a"]), vec![rec("a", "1"), done()], scoped(with_range("2026-01-01", "2026-02-01"))).await;
        p.assert_violation("record_time_in_range");
    }
}

on_both_backends! {
    async fn record_with_an_unparseable_consent_time_is_a_violation(t: TestDeployment) {
        let r = rec_data("a", "1", json!({ "id": "1", "updated_at": "last tuesday" }));
        let p = play_opts(&t, manifest(&["a"]), vec![r, done()], scoped(with_range("2026-01-01", "2026-02-01"))).await;
        p.assert_violation("record_time_in_range");
    }
}

on_both_backends! {
    async fn state_for_an_undeclared_stream_is_a_violation(t: TestDeployment) {
        let p = play(&t, manifest(&["a"]), vec![state("ghost", json!({})), done()]).await;
        p.assert_violation("state_stream_in_scope");
    }
}

on_both_backends! {
    async fn detail_gap_for_an_undeclared_stream_is_a_violation(t: TestDeployment) {
        let gap = json!({ "type": "DETAIL_GAP", "stream": "ghost", "record_key": "k" });
        let p = play(&t, manifest(&["a"]), vec![gap, done()]).await;
        p.assert_violation("detail_gap_stream_in_scope");
    }
}

on_both_backends! {
    async fn detail_coverage_for_an_undeclared_stream_is_a_violation(t: TestDeployment) {
        let p = play(&t, manifest(&["a"]), vec![coverage("a", "ghost", &[], &[]), done()]).await;
        p.assert_violation("detail_coverage_stream_in_scope");
    }
}

on_both_backends! {
    async fn delete_record_removes_the_stored_row_and_needs_no_data(t: TestDeployment) {
        let del = json!({ "type": "RECORD", "stream": "a", "key": "1", "op": "delete" });
        let p = play(&t, manifest(&["a"]), vec![rec("a", "1"), rec("a", "2"), del, done()]).await;
        assert!(p.out.succeeded(), "{:?}", p.out);
        assert_eq!(p.records, 1);
        assert_eq!(t.dep.store.records(&p.conn, "a").await.unwrap()[0].key, "2");
    }
}

on_both_backends! {
    async fn skip_result_diagnostics_are_bounded_not_rejected(t: TestDeployment) {
        let deep = json!({ "a": { "b": { "c": { "d": { "e": { "f": { "g": 1 } } } } } } });
        let huge = json!({ "blob": "x".repeat(10_000) });
        let script = vec![
            json!({ "type": "SKIP_RESULT", "stream": "a", "reason": "deep", "diagnostics": deep }),
            json!({ "type": "SKIP_RESULT", "stream": "a", "reason": "huge", "diagnostics": huge }),
            json!({ "type": "SKIP_RESULT", "stream": "a", "reason": "scalar", "diagnostics": 7 }),
            done(),
        ];
        let p = play(&t, manifest(&["a"]), script).await;
        assert!(p.out.succeeded(), "{:?}", p.out);
        let skips: Vec<&RunEvent> = p.events.iter().filter(|e| e.kind == "run.stream_skipped").collect();
        let sentinel = json!({ "reason": "size_overflow", "truncated": true });
        assert_eq!(skips[0].data["diagnostics"], sentinel);
        assert_eq!(skips[1].data["diagnostics"], sentinel);
        assert!(skips[2].data.get("diagnostics").is_none(), "a non-object is dropped");
    }
}
