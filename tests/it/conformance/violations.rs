//! Protocol violations: each stops the connector, fails the run with the
//! rule's name, and commits nothing.

use super::*;
use crate::on_both_backends;

/// A checkpoint staged before the violation, so "commits nothing" is real.
fn staged_then(bad: Value) -> Vec<Value> {
    vec![rec("a", "1"), state("a", json!({"n": 1})), bad, done()]
}

macro_rules! violation {
    ($name:ident, $rule:literal, $bad:expr) => {
        on_both_backends! {
            async fn $name(t: TestDeployment) {
                let p = play(&t, manifest(&["a", "b"]), staged_then($bad)).await;
                p.assert_violation($rule);
            }
        }
    };
}

violation!(
    progress_without_a_message_is_a_violation,
    "progress_message",
    json!({ "type": "PROGRESS", "message": "  " })
);
violation!(
    progress_on_an_undeclared_stream_is_a_violation,
    "progress_stream_in_scope",
    json!({ "type": "PROGRESS", "stream": "ghost", "message": "x" })
);
violation!(
    skip_result_with_an_empty_reason_is_a_violation,
    "skip_result_fields",
    json!({ "type": "SKIP_RESULT", "stream": "a", "reason": "" })
);
violation!(
    skip_result_with_an_empty_message_is_a_violation,
    "skip_result_fields",
    json!({ "type": "SKIP_RESULT", "stream": "a", "reason": "r", "message": "" })
);
violation!(
    skip_result_on_an_undeclared_stream_is_a_violation,
    "skip_result_stream_in_scope",
    json!({ "type": "SKIP_RESULT", "stream": "ghost", "reason": "r" })
);
violation!(
    skip_result_continuation_ending_before_it_starts_is_a_violation,
    "skip_result_continuation",
    json!({ "type": "SKIP_RESULT", "stream": "a", "reason": "r",
            "continuation": { "boundary": "page", "considered": 1, "covered": 1, "slice_start": 5, "slice_end": 2 } })
);
violation!(
    skip_result_continuation_without_a_boundary_is_a_violation,
    "skip_result_continuation",
    json!({ "type": "SKIP_RESULT", "stream": "a", "reason": "r",
            "continuation": { "boundary": "", "considered": 1, "covered": 1, "slice_start": 0, "slice_end": 2 } })
);
violation!(
    record_with_an_empty_key_is_a_violation,
    "record_key_non_empty",
    json!({ "type": "RECORD", "stream": "a", "key": "", "data": { "id": "" } })
);
violation!(
    record_with_an_empty_composite_key_part_is_a_violation,
    "record_key_non_empty",
    json!({ "type": "RECORD", "stream": "a", "key": ["x", ""], "data": { "id": "x" } })
);
violation!(
    record_key_arity_must_match_the_primary_key,
    "record_key_matches_primary_key",
    json!({ "type": "RECORD", "stream": "a", "key": ["x", "y"], "data": { "id": "x" } })
);
violation!(
    record_data_that_is_an_array_is_a_violation,
    "record_data_object",
    json!({ "type": "RECORD", "stream": "a", "key": "x", "data": [1, 2] })
);
violation!(
    upsert_record_without_data_is_a_violation,
    "record_data_object",
    json!({ "type": "RECORD", "stream": "a", "key": "x" })
);
violation!(
    record_data_that_is_not_json_is_a_violation,
    "record_data_json",
    json!({ "type": "RECORD", "stream": "a", "key": "x", "data_raw": "{not json" })
);
violation!(
    record_with_an_empty_emitted_at_is_a_violation,
    "record_emitted_at",
    json!({ "type": "RECORD", "stream": "a", "key": "x", "data": { "id": "x" }, "emitted_at": "" })
);
violation!(
    state_cursor_that_is_a_scalar_is_a_violation,
    "state_cursor_object",
    json!({ "type": "STATE", "stream": "a", "cursor_raw": "5" })
);
violation!(
    state_cursor_that_is_an_array_is_a_violation,
    "state_cursor_object",
    json!({ "type": "STATE", "stream": "a", "cursor": [1] })
);
violation!(
    state_cursor_that_is_not_json_is_a_violation,
    "state_cursor_json",
    json!({ "type": "STATE", "stream": "a", "cursor_raw": "{" })
);
violation!(
    done_error_on_success_is_a_violation,
    "done_error_forbidden_on_success",
    json!({ "type": "DONE", "status": "succeeded", "error": { "message": "but why" } })
);
violation!(
    done_error_code_must_match_the_pattern,
    "done_error_code",
    json!({ "type": "DONE", "status": "failed", "error": { "message": "slow down", "code": "ProviderThrottle" } })
);
violation!(
    done_error_code_starting_with_a_digit_is_a_violation,
    "done_error_code",
    json!({ "type": "DONE", "status": "failed", "error": { "message": "x", "code": "9lives" } })
);
violation!(
    done_error_message_must_not_be_blank,
    "done_error_message",
    json!({ "type": "DONE", "status": "failed", "error": { "message": "   " } })
);
violation!(
    done_records_emitted_must_match_the_host_count,
    "done_records_emitted",
    json!({ "type": "DONE", "status": "succeeded", "records_emitted": 7 })
);
violation!(
    done_records_emitted_is_checked_for_failed_runs_too,
    "done_records_emitted",
    json!({ "type": "DONE", "status": "failed", "records_emitted": 0, "error": { "message": "x" } })
);
violation!(
    interaction_without_a_message_is_a_violation,
    "interaction_message",
    json!({ "type": "INTERACTION", "kind": "otp", "message": "" })
);
violation!(
    interaction_on_an_undeclared_stream_is_a_violation,
    "interaction_stream_in_scope",
    json!({ "type": "INTERACTION", "kind": "otp", "message": "code?", "stream": "ghost" })
);
violation!(
    interaction_schema_that_is_not_an_object_is_a_violation,
    "interaction_schema_object",
    json!({ "type": "INTERACTION", "kind": "otp", "message": "code?", "schema": [1] })
);
violation!(
    interaction_timeout_of_zero_is_a_violation,
    "interaction_timeout_positive",
    json!({ "type": "INTERACTION", "kind": "otp", "message": "code?", "timeout_seconds": 0 })
);

on_both_backends! {
    /// An oversized message is a violation, never a panic or an allocation.
    async fn oversized_message_is_a_violation_not_a_panic(t: TestDeployment) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.limits.message_bytes = 1024;
        let big = json!({ "id": "x", "note": "z".repeat(4096) });
        let p = play_opts(&t, manifest(&["a"]), staged_then(rec_data("a", "x", big)), opts).await;
        p.assert_violation("message_size");
    }
}

on_both_backends! {
    /// Records of earlier batches stay durable; the batch holding the
    /// violation writes nothing; no checkpoint commits.
    async fn violation_keeps_earlier_batches_and_writes_none_of_its_own_batch(t: TestDeployment) {
        let bad = json!({ "type": "RECORD", "stream": "a", "key": "", "data": {} });
        let script = vec![
            rec("a", "1"),
            state("a", json!({"n": 1})),
            json!({ "type": "BATCH", "messages": [rec("a", "2"), rec("a", "3"), bad] }),
            done(),
        ];
        let p = play(&t, manifest(&["a"]), script).await;
        p.assert_violation("record_key_non_empty");
        assert_eq!(p.records, 1, "only the earlier batch is stored");
    }
}

on_both_backends! {
    async fn messages_after_a_violation_are_never_handled(t: TestDeployment) {
        let script = vec![json!({ "type": "PROGRESS", "message": "" }), rec("a", "late"), done()];
        let p = play(&t, manifest(&["a"]), script).await;
        p.assert_violation("progress_message");
        assert_eq!(p.records, 0);
        assert!(p.t.records().is_empty());
    }
}

on_both_backends! {
    /// A trap after records: the records stay, nothing commits, the run is
    /// `connector_exit_without_done`.
    async fn trap_without_done_fails_and_commits_nothing(t: TestDeployment) {
        let p = play(&t, manifest(&["a"]), vec![rec("a", "1"), state("a", json!({"n": 1})), json!({"type": "TRAP"})]).await;
        assert_eq!(p.reason(), Some("connector_exit_without_done"));
        assert_eq!(p.records, 1);
        assert!(p.committed().is_empty());
        assert!(p.out.usage.stderr.tail.contains("scripted trap"));
    }
}
