//! Certified stream-scoped failures, the eligible-checkpoint algorithm and
//! DETAIL_COVERAGE / DETAIL_GAP accounting.

use super::*;
use crate::on_both_backends;

fn child(name: &str, parent: &str) -> Value {
    stream(
        name,
        json!({ "state_stream": parent, "coverage_strategy": "checkpoint_window" }),
    )
}

fn detail(name: &str, parents: &[&str]) -> Value {
    stream(
        name,
        json!({ "parent_streams": parents, "coverage_strategy": "parent_detail_accounting" }),
    )
}

fn gap(stream: &str, parent: Option<&str>, key: &str) -> Value {
    let mut g = json!({ "type": "DETAIL_GAP", "stream": stream, "record_key": key, "reason": "not_found" });
    if let Some(p) = parent {
        g["parent_stream"] = json!(p);
    }
    g
}

on_both_backends! {
    async fn certified_failure_commits_the_clean_sibling(t: TestDeployment) {
        let m = manifest(&["sibling_a", "sibling_b"]);
        let script = vec![rec("sibling_a", "1"), state("sibling_a", json!({"n": 1})), stream_failed("sibling_b"),
                          failed(Some("stream_collection_failed"))];
        let p = play(&t, m, script).await;
        assert_eq!(p.out.status, p::DoneStatus::Failed);
        assert!(p.out.certified_failure);
        assert_eq!(p.committed(), ["sibling_a"]);
        assert!(!p.kinds().contains(&"run.completed"), "a certified failure is still a failure");
        assert_eq!(p.terminal().data["checkpoint_commit_status"], "committed");
    }
}

on_both_backends! {
    async fn certified_failure_withholds_the_failed_streams_own_state(t: TestDeployment) {
        let m = manifest(&["sibling_a", "sibling_b"]);
        let script = vec![state("sibling_a", json!({"n": 1})), state("sibling_b", json!({"leaked": true})),
                          stream_failed("sibling_b"), failed(Some("stream_collection_failed"))];
        let p = play(&t, m, script).await;
        assert_eq!(p.committed(), ["sibling_a"]);
        assert_eq!(p.out.withheld[0].stream, "sibling_b");
        assert_eq!(p.out.withheld[0].reason, "stream_collection_failed");
    }
}

on_both_backends! {
    async fn certified_failure_withholds_the_shared_state_stream_of_a_failed_child(t: TestDeployment) {
        let m = manifest_with(vec![stream("parent", json!({})), child("child_a", "parent"), child("child_b", "parent")], json!({}));
        let script = vec![state("parent", json!({"page": 3})), stream_failed("child_b"), failed(Some("stream_collection_failed"))];
        let p = play(&t, m, script).await;
        assert!(p.committed().is_empty());
    }
}

on_both_backends! {
    async fn certified_failure_withholds_every_declared_parent_of_a_failed_detail_stream(t: TestDeployment) {
        let m = manifest_with(vec![
            stream("parent_a", json!({})), stream("parent_b", json!({})), stream("sibling_a", json!({})),
            detail("sibling_b", &["parent_a", "parent_b"]),
        ], json!({}));
        let script = vec![
            state("parent_a", json!({})), state("parent_b", json!({})), state("sibling_a", json!({})),
            coverage("parent_a", "sibling_b", &[], &[]),
            stream_failed("sibling_b"), failed(Some("stream_collection_failed")),
        ];
        let p = play(&t, m, script).await;
        assert_eq!(p.committed(), ["sibling_a"]);
        assert_eq!(p.terminal().data["state_streams_staged"], 3);
    }
}

on_both_backends! {
    async fn failure_code_without_a_skip_result_naming_a_stream_commits_nothing(t: TestDeployment) {
        let p = play(&t, manifest(&["a"]), vec![state("a", json!({})), failed(Some("stream_collection_failed"))]).await;
        assert!(!p.out.certified_failure);
        assert!(p.committed().is_empty());
    }
}

on_both_backends! {
    async fn skip_result_without_a_stream_certifies_nothing(t: TestDeployment) {
        let skip = json!({ "type": "SKIP_RESULT", "reason": "stream_collection_failed", "message": "no stream" });
        let p = play(&t, manifest(&["a"]), vec![state("a", json!({})), skip, failed(Some("stream_collection_failed"))]).await;
        assert!(!p.out.certified_failure);
        assert!(p.committed().is_empty());
    }
}

on_both_backends! {
    async fn skip_result_certifies_only_with_the_failure_code(t: TestDeployment) {
        let p = play(&t, manifest(&["a", "b"]), vec![state("a", json!({})), stream_failed("b"), failed(Some("other_failure"))]).await;
        assert!(!p.out.certified_failure);
        assert!(p.committed().is_empty());
    }
}

on_both_backends! {
    async fn certified_failure_plus_a_coverage_shortfall_commits_only_the_clean_sibling(t: TestDeployment) {
        let m = manifest_with(vec![
            stream("clean", json!({})), stream("short", json!({})), stream("broken", json!({})), detail("details", &["short"]),
        ], json!({}));
        let script = vec![
            state("clean", json!({})), state("short", json!({})),
            coverage("short", "details", &["k1", "k2"], &["k1"]),
            stream_failed("broken"), failed(Some("stream_collection_failed")),
        ];
        let p = play(&t, m, script).await;
        assert_eq!(p.committed(), ["clean"]);
        let reasons: Vec<(&str, &str)> = p.out.withheld.iter().map(|w| (w.stream.as_str(), w.reason)).collect();
        assert_eq!(reasons, [("short", "coverage_incomplete")]);
    }
}

on_both_backends! {
    async fn detail_coverage_from_a_state_stream_stream_is_a_violation_naming_it(t: TestDeployment) {
        let m = manifest_with(vec![stream("parent", json!({})), stream("other", json!({})), child("child", "parent")], json!({}));
        let script = vec![state("other", json!({})), coverage("parent", "child", &[], &[]), done()];
        let p = play(&t, m, script).await;
        p.assert_violation("detail_coverage_on_state_stream_stream");
        assert!(p.out.message.as_deref().unwrap().contains("child"));
    }
}

on_both_backends! {
    async fn detail_coverage_naming_an_undeclared_parent_is_a_violation(t: TestDeployment) {
        let m = manifest_with(vec![stream("p1", json!({})), stream("p2", json!({})), detail("d", &["p1"])], json!({}));
        let p = play(&t, m, vec![coverage("p2", "d", &[], &[]), done()]).await;
        p.assert_violation("detail_coverage_undeclared_parent");
    }
}

on_both_backends! {
    async fn detail_coverage_with_a_duplicate_key_is_a_violation(t: TestDeployment) {
        let m = manifest_with(vec![stream("p", json!({})), detail("d", &["p"])], json!({}));
        let p = play(&t, m, vec![coverage("p", "d", &["k", "k"], &[]), done()]).await;
        p.assert_violation("detail_coverage_duplicate_key");
    }
}

on_both_backends! {
    async fn detail_coverage_outcome_key_outside_required_is_a_violation(t: TestDeployment) {
        let m = manifest_with(vec![stream("p", json!({})), detail("d", &["p"])], json!({}));
        let p = play(&t, m, vec![coverage("p", "d", &["k"], &["other"]), done()]).await;
        p.assert_violation("detail_coverage_key_not_required");
    }
}

on_both_backends! {
    async fn detail_coverage_key_in_two_outcome_sets_is_a_violation(t: TestDeployment) {
        let m = manifest_with(vec![stream("p", json!({})), detail("d", &["p"])], json!({}));
        let mut c = coverage("p", "d", &["k"], &["k"]);
        c["gap_keys"] = json!(["k"]);
        let p = play(&t, m, vec![c, done()]).await;
        p.assert_violation("detail_coverage_overlapping_outcomes");
    }
}

on_both_backends! {
    async fn second_detail_coverage_for_the_same_pair_is_a_violation(t: TestDeployment) {
        let m = manifest_with(vec![stream("p", json!({})), detail("d", &["p"])], json!({}));
        let p = play(&t, m, vec![coverage("p", "d", &[], &[]), coverage("p", "d", &[], &[]), done()]).await;
        p.assert_violation("detail_coverage_duplicate_report");
    }
}

on_both_backends! {
    async fn detail_coverage_shortfall_withholds_that_parent_and_the_run_succeeds(t: TestDeployment) {
        let m = manifest_with(vec![stream("holdings", json!({})), stream("activity", json!({})),
                                   detail("valuations", &["holdings", "activity"])], json!({}));
        let script = vec![
            state("holdings", json!({})), state("activity", json!({})),
            coverage("holdings", "valuations", &["H1", "H2"], &["H1"]),
            coverage("activity", "valuations", &["A1"], &["A1"]),
            done(),
        ];
        let p = play(&t, m, script).await;
        assert!(p.out.succeeded(), "a shortfall is not a violation");
        assert_eq!(p.committed(), ["activity"]);
        assert_eq!(p.out.known_gaps[0].kind, "detail_coverage_incomplete");
        assert_eq!(p.terminal().kind, "run.completed");
    }
}

on_both_backends! {
    async fn missing_coverage_report_withholds_the_parent(t: TestDeployment) {
        let m = manifest_with(vec![stream("a", json!({})), stream("b", json!({})), detail("d", &["a", "b"])], json!({}));
        let script = vec![state("a", json!({})), state("b", json!({})), coverage("a", "d", &[], &[]), done()];
        let p = play(&t, m, script).await;
        assert!(p.out.succeeded());
        assert_eq!(p.committed(), ["a"]);
        assert_eq!(p.out.withheld[0].reason, "coverage_missing");
    }
}

on_both_backends! {
    async fn gap_keys_without_a_durable_detail_gap_credit_nothing(t: TestDeployment) {
        let m = manifest_with(vec![stream("p", json!({})), detail("d", &["p"])], json!({}));
        let mut c = coverage("p", "d", &["k"], &[]);
        c["gap_keys"] = json!(["k"]);
        let p = play(&t, m, vec![state("p", json!({})), c, done()]).await;
        assert!(p.out.succeeded());
        assert!(p.committed().is_empty());
        assert_eq!(p.terminal().data["checkpoint_commit_status"], "not_committed");
    }
}

on_both_backends! {
    async fn durable_detail_gap_credits_its_key_under_its_own_parent_only(t: TestDeployment) {
        let m = manifest_with(vec![stream("a", json!({})), stream("b", json!({})), detail("d", &["a", "b"])], json!({}));
        let mut ca = coverage("a", "d", &["k"], &[]);
        ca["gap_keys"] = json!(["k"]);
        let mut cb = coverage("b", "d", &["k"], &[]);
        cb["gap_keys"] = json!(["k"]);
        let script = vec![state("a", json!({})), state("b", json!({})), gap("d", Some("a"), "k"), ca, cb, done()];
        let p = play(&t, m, script).await;
        assert_eq!(p.committed(), ["a"], "the gap under a does not cover k under b");
    }
}

on_both_backends! {
    async fn detail_gap_without_a_parent_covers_nothing_for_a_two_parent_stream(t: TestDeployment) {
        let m = manifest_with(vec![stream("a", json!({})), stream("b", json!({})), detail("d", &["a", "b"])], json!({}));
        let script = vec![
            state("a", json!({})), state("b", json!({})), gap("d", None, "k"),
            coverage("a", "d", &["k"], &[]), coverage("b", "d", &[], &[]), done(),
        ];
        let p = play(&t, m, script).await;
        assert_eq!(p.committed(), ["b"]);
    }
}

on_both_backends! {
    async fn detail_gap_without_a_parent_covers_the_key_of_a_single_parent_stream(t: TestDeployment) {
        let m = manifest_with(vec![stream("p", json!({})), detail("d", &["p"])], json!({}));
        let script = vec![state("p", json!({})), gap("d", None, "k"), coverage("p", "d", &["k"], &[]), done()];
        let p = play(&t, m, script).await;
        assert_eq!(p.committed(), ["p"]);
    }
}

on_both_backends! {
    async fn optional_skip_keys_count_as_accounted(t: TestDeployment) {
        let m = manifest_with(vec![stream("p", json!({})), detail("d", &["p"])], json!({}));
        let mut c = coverage("p", "d", &["k1", "k2"], &["k1"]);
        c["optional_skip_keys"] = json!(["k2"]);
        let p = play(&t, m, vec![state("p", json!({})), c, done()]).await;
        assert_eq!(p.committed(), ["p"]);
    }
}

on_both_backends! {
    async fn empty_required_keys_state_a_denominator_without_blocking_commit(t: TestDeployment) {
        let m = manifest_with(vec![stream("p", json!({})), detail("d", &["p"])], json!({}));
        let mut c = coverage("p", "d", &[], &[]);
        c["considered"] = json!(40);
        let p = play(&t, m, vec![state("p", json!({})), c, done()]).await;
        assert_eq!(p.committed(), ["p"]);
        let declared = p.events.iter().find(|e| e.kind == "run.detail_coverage_declared").unwrap();
        assert_eq!(declared.data["required"], 0);
    }
}

on_both_backends! {
    async fn detail_gap_naming_a_parent_outside_its_declared_parents_is_a_violation(t: TestDeployment) {
        let m = manifest_with(vec![stream("p", json!({})), stream("q", json!({})), detail("d", &["p"])], json!({}));
        let p = play(&t, m, vec![gap("d", Some("q"), "k"), done()]).await;
        p.assert_violation("detail_gap_parent_scope");
    }
}

on_both_backends! {
    async fn detail_gap_without_a_record_key_is_a_violation(t: TestDeployment) {
        let m = manifest_with(vec![stream("p", json!({})), detail("d", &["p"])], json!({}));
        let p = play(&t, m, vec![gap("d", Some("p"), ""), done()]).await;
        p.assert_violation("detail_gap_record_key");
    }
}

on_both_backends! {
    async fn coverage_shortfall_is_evaluated_on_success_too(t: TestDeployment) {
        let m = manifest_with(vec![stream("p", json!({})), stream("q", json!({})), detail("d", &["p"])], json!({}));
        let script = vec![state("p", json!({})), state("q", json!({})), done()];
        let p = play(&t, m, script).await;
        assert!(p.out.succeeded());
        assert_eq!(p.committed(), ["q"]);
        assert!(p.kinds().contains(&"run.state_withheld"));
    }
}
