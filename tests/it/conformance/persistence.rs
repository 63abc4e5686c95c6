//! STATE staging and commit, namespaces, partial commit failures,
//! cancellation and limits.

use super::*;
use crate::on_both_backends;
use std::time::Duration;

on_both_backends! {
    async fn succeeded_run_commits_the_last_state_per_stream(t: TestDeployment) {
        let script = vec![
            rec("a", "1"), state("a", json!({"n": 1})),
            rec("a", "2"), state("a", json!({"n": 2})),
            rec("b", "1"), state("b", json!({"m": 1})),
            done(),
        ];
        let p = play(&t, manifest(&["a", "b"]), script).await;
        assert!(p.out.succeeded());
        assert_eq!(p.state["a"], json!({"n": 2}), "last STATE wins");
        assert_eq!(p.state["b"], json!({"m": 1}));
        assert_eq!(p.kinds().iter().filter(|k| **k == "run.state_staged").count(), 3);
        let advanced: Vec<&Value> = p.events.iter().filter(|e| e.kind == "run.state_advanced").map(|e| &e.data["stream"]).collect();
        assert_eq!(advanced, [&json!("a"), &json!("b")], "committed in staging order");
        assert_eq!(p.terminal().kind, "run.completed");
        assert_eq!(p.terminal().data["checkpoint_commit_status"], "committed");
    }
}

on_both_backends! {
    async fn state_is_committed_only_after_the_records_before_it_are_durable(t: TestDeployment) {
        let p = play(&t, manifest(&["a"]), vec![rec("a", "1"), rec("a", "2"), state("a", json!({"n": 2})), done()]).await;
        let batch = p.kinds().iter().position(|k| *k == "run.batch_written").unwrap();
        let advanced = p.kinds().iter().position(|k| *k == "run.state_advanced").unwrap();
        assert!(batch < advanced);
        assert_eq!(p.records, 2);
    }
}

on_both_backends! {
    async fn failed_done_keeps_records_and_commits_no_state(t: TestDeployment) {
        let p = play(&t, manifest(&["a"]), vec![rec("a", "1"), state("a", json!({"n": 1})), failed(None)]).await;
        assert_eq!(p.reason(), Some("connector_reported_failed"));
        assert_eq!(p.records, 1, "records already written stay durable");
        assert!(p.committed().is_empty());
        assert_eq!(p.terminal().data["checkpoint_commit_status"], "not_committed");
        assert_eq!(p.terminal().data["state_streams_staged"], 1);
    }
}

on_both_backends! {
    async fn cancelled_done_commits_nothing(t: TestDeployment) {
        let d = json!({ "type": "DONE", "status": "cancelled", "error": { "message": "stopping" } });
        let p = play(&t, manifest(&["a"]), vec![state("a", json!({"n": 1})), d]).await;
        assert_eq!(p.out.status, p::DoneStatus::Cancelled);
        assert_eq!(p.reason(), Some("connector_reported_cancelled"));
        assert!(p.committed().is_empty());
        assert_eq!(p.terminal().kind, "run.failed", "a connector-initiated cancel is recorded as a failed run");
    }
}

on_both_backends! {
    async fn several_streams_staged_then_a_failure_commit_nothing(t: TestDeployment) {
        let script = vec![state("a", json!({})), state("b", json!({})), failed(Some("upstream_down"))];
        let p = play(&t, manifest(&["a", "b"]), script).await;
        assert!(p.committed().is_empty());
        assert_eq!(p.out.withheld.len(), 2);
    }
}

on_both_backends! {
    async fn grant_namespaces_are_isolated_from_each_other_and_from_global(t: TestDeployment) {
        let m = manifest(&["a"]);
        let conn = t.connection(&m, json!({ "script": [state("a", json!({"grant": "g1"})), done()] }), None).await;
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.namespace = Some(Namespace::Grant("g1".into()));
        let p = play_on(&t, m.clone(), &conn, opts).await.unwrap();
        assert_eq!(p.state["a"], json!({"grant": "g1"}));
        assert!(t.dep.store.state(&conn, &Namespace::Global).await.unwrap().is_empty());
        assert!(t.dep.store.state(&conn, &Namespace::Grant("g2".into())).await.unwrap().is_empty());
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.namespace = Some(Namespace::Grant("g2".into()));
        let second = play_on(&t, m, &conn, opts).await.unwrap();
        match second.t.messages().first() {
            Some(p::Message::Start(s)) => assert_eq!(s.state, Some(StateMap::new()), "g2 sees nothing of g1"),
            other => panic!("{other:?}"),
        }
    }
}

on_both_backends! {
    /// The database refuses the second checkpoint: the first stays committed,
    /// the run fails as `runtime_error` naming the stream, and the timeline
    /// shows which checkpoint committed and which failed.
    async fn partial_commit_failure_fails_the_run_and_shows_what_committed(t: TestDeployment) {
        match t.dep.store.backend() {
            pdpp_host::store::Backend::Sqlite => sql(&t, &[
                "CREATE TRIGGER refuse_b BEFORE INSERT ON stream_state WHEN NEW.stream = 'b'
                 BEGIN SELECT RAISE(ABORT, 'injected commit failure'); END",
            ]).await,
            pdpp_host::store::Backend::Postgres => sql(&t, &[
                "CREATE FUNCTION refuse_b() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected commit failure'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER refuse_b BEFORE INSERT ON stream_state FOR EACH ROW WHEN (NEW.stream = 'b') EXECUTE FUNCTION refuse_b()",
            ]).await,
        }
        let script = vec![state("a", json!({"n": 1})), state("b", json!({"n": 1})), state("c", json!({"n": 1})), done()];
        let p = play(&t, manifest(&["a", "b", "c"]), script).await;
        assert_eq!(p.reason(), Some("runtime_error"));
        assert!(p.out.message.as_deref().unwrap().contains(" b "), "{:?}", p.out.message);
        assert_eq!(p.committed(), ["a"]);
        let failed = p.events.iter().find(|e| e.kind == "run.state_commit_failed").unwrap();
        assert_eq!(failed.data["stream"], "b");
        assert_eq!(p.terminal().data["checkpoint_commit_status"], "partially_committed");
        assert_eq!((p.terminal().data["state_streams_staged"].clone(), p.terminal().data["state_streams_committed"].clone()), (json!(3), json!(1)));
    }
}

/// Cancel the run as soon as its timeline shows `kind` (the run reached a
/// known point), whatever the machine's speed.
fn cancel_at(t: &TestDeployment, opts: &mut ConnectionRun, kind: &'static str) {
    let run_id = pdpp_host::runtime::new_run_id();
    opts.run_id = Some(run_id.clone());
    let control = opts.control.clone();
    let store = t.dep.store.clone();
    tokio::spawn(async move {
        loop {
            let events = store.events(&run_id).await.unwrap_or_default();
            if events.iter().any(|e| e.kind == kind) {
                control.cancel();
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

on_both_backends! {
    /// Cancelled while the connector is between host calls: the connector's
    /// later DONE succeeded loses to the owner's cancellation.
    async fn owner_cancellation_before_done_is_evaluated_wins_over_a_succeeded_done(t: TestDeployment) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        cancel_at(&t, &mut opts, "run.state_staged");
        let script = vec![rec("a", "1"), state("a", json!({"n": 1})), json!({"type": "SLEEP", "ms": 400}), done()];
        let p = play_opts(&t, manifest(&["a"]), script, opts).await;
        assert_eq!(p.out.status, p::DoneStatus::Cancelled);
        assert!(matches!(p.reason(), Some("owner_cancelled" | "owner_cancel_forced")), "{:?}", p.reason());
        assert!(p.committed().is_empty());
        assert_eq!(p.records, 1, "records flushed before the cancellation stay");
        assert!(!p.kinds().contains(&"run.completed"));
    }
}

on_both_backends! {
    /// A connector that keeps computing is stopped by force after the grace period.
    async fn owner_cancellation_of_a_busy_connector_is_forced(t: TestDeployment) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        cancel_at(&t, &mut opts, "run.state_staged");
        let p = play_opts(&t, manifest(&["a"]), vec![state("a", json!({})), json!({"type": "SPIN"})], opts).await;
        assert_eq!(p.out.status, p::DoneStatus::Cancelled);
        assert_eq!(p.reason(), Some("owner_cancel_forced"));
        assert!(p.committed().is_empty());
        assert_eq!(p.terminal().kind, "run.cancelled");
    }
}

on_both_backends! {
    /// A connector that calls the host after the cancellation stops there.
    async fn owner_cancellation_stops_a_cooperating_connector_at_its_next_call(t: TestDeployment) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        cancel_at(&t, &mut opts, "run.started");
        let script = vec![json!({"type": "SLEEP", "ms": 100}), rec("a", "1"), done()];
        let p = play_opts(&t, manifest(&["a"]), script, opts).await;
        assert_eq!(p.out.status, p::DoneStatus::Cancelled);
        assert_eq!(p.reason(), Some("owner_cancelled"));
        assert_eq!(p.records, 0, "the record after the cancellation was not taken");
    }
}

on_both_backends! {
    async fn guest_cpu_limit_is_a_typed_failure_that_commits_nothing(t: TestDeployment) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.limits.cpu = Duration::from_millis(200);
        let p = play_opts(&t, manifest(&["a"]), vec![state("a", json!({})), json!({"type": "SPIN"})], opts).await;
        assert_eq!(p.reason(), Some("cpu_limit"));
        assert!(p.committed().is_empty());
        let run = t.dep.store.run(&p.out.run_id).await.unwrap().unwrap();
        assert_eq!(run.failure_reason.as_deref(), Some("cpu_limit"));
    }
}

on_both_backends! {
    /// The terminal event names the streams the run left behind (skipped,
    /// or whose checkpoint was withheld), why, the recovery, and when the
    /// provider allows a retry (`retry_after_seconds` after the run); every
    /// SKIP_RESULT is a known gap of the run too.
    async fn streams_left_behind_are_on_the_terminal_event_with_when_to_retry(t: TestDeployment) {
        let limited = json!({ "type": "SKIP_RESULT", "stream": "b", "reason": "rate_limited", "message": "wait",
                              "recovery_hint": { "action": "retry_by_runtime", "retryable": true },
                              "diagnostics": { "retry_after_seconds": 120 } });
        let forbidden = json!({ "type": "SKIP_RESULT", "stream": "c", "reason": "forbidden", "message": "SSO",
                                "recovery_hint": "manual_action_required" });
        let before = pdpp_host::store::now_ms();
        let script = vec![state("a", json!({})), limited, forbidden, done()];
        let p = play(&t, manifest(&["a", "b", "c"]), script).await;
        assert!(p.out.succeeded(), "a skip is not a failure");
        let ended: pdpp_host::store::RunEndEvent = serde_json::from_value(p.terminal().data.clone()).unwrap();
        let behind: Vec<(&str, &str, p::RecoveryAction)> =
            ended.streams_behind.iter().map(|b| (b.stream.as_str(), b.reason.as_str(), b.recovery)).collect();
        assert_eq!(
            behind,
            [
                ("b", "rate_limited", p::RecoveryAction::RetryByRuntime),
                ("c", "forbidden", p::RecoveryAction::ManualActionRequired)
            ]
        );
        let not_before = ended.streams_behind[0].retry_not_before.unwrap();
        assert!(not_before >= before + 120_000, "the provider's wait counts from the run's end");
        assert_eq!(ended.streams_behind[1].retry_not_before, None);
        let gaps: Vec<(&str, Option<&str>)> = ended.known_gaps.iter().map(|g| (g.kind.as_str(), g.stream.as_deref())).collect();
        assert_eq!(gaps, [("stream_skipped", Some("b")), ("stream_skipped", Some("c"))]);

        // A run that failed as a whole lists no stream behind: its failure says it.
        let p = play(&t, manifest(&["a", "b"]), vec![state("a", json!({})), failed(None)]).await;
        let ended: pdpp_host::store::RunEndEvent = serde_json::from_value(p.terminal().data.clone()).unwrap();
        assert!(ended.streams_behind.is_empty(), "{:?}", ended.streams_behind);
    }
}
