//! Full-refresh reconciliation: after a succeeded full-refresh run, the host
//! deletes the records of each stream the run covered completely that the
//! run no longer returned, and of no other stream. One scenario per rule of
//! `host/src/runtime/reconcile.rs`, named after it.

use super::*;
use crate::on_both_backends;
use pdpp_host::protocol::{CollectionMode, StreamScope, TimeRange};

/// Records an earlier run left in the store: `(stream, key)`.
async fn seed(t: &TestDeployment, conn: &str, records: &[(&str, &str)]) {
    let records: Vec<p::Record> = records
        .iter()
        .map(|(stream, key)| p::Record {
            stream: (*stream).into(),
            key: json!(key),
            data: Some(json!({ "id": key, "value": "from an earlier run" })),
            op: None,
            emitted_at: "2026-01-01T00:00:00Z".into(),
        })
        .collect();
    t.dep
        .store
        .write_batch(conn, "run_earlier", &records, &[])
        .await
        .unwrap();
}

/// The keys of a stream of a connection, sorted.
async fn keys(t: &TestDeployment, conn: &str, stream: &str) -> Vec<String> {
    let mut keys: Vec<String> = t
        .dep
        .store
        .records(conn, stream)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    keys.sort();
    keys
}

fn full_refresh() -> ConnectionRun {
    let mut opts = ConnectionRun::new(Trigger::Manual);
    opts.mode = CollectionMode::FullRefresh;
    opts
}

/// Play `script` on a connection of `m` whose store already holds `earlier`.
async fn replay(
    t: &TestDeployment,
    m: Arc<Manifest>,
    earlier: &[(&str, &str)],
    script: Vec<Value>,
    opts: ConnectionRun,
) -> Played {
    let conn = t.connection(&m, json!({ "script": script }), None).await;
    seed(t, &conn, earlier).await;
    play_on(t, m, &conn, opts).await.expect("the run starts")
}

fn reconciled(p: &Played) -> Option<&Value> {
    p.events.iter().find(|e| e.kind == "run.reconciled").map(|e| &e.data)
}

on_both_backends! {
    /// The stream a succeeded full refresh covered loses what it no longer
    /// returned; what it returned (upserted by this run) stays; another
    /// connection's records are untouched.
    async fn reconcile_deletes_what_a_covered_stream_no_longer_returns(t: TestDeployment) {
        let m = manifest(&["a", "b"]);
        let other = t.connection(&m, json!({}), None).await;
        seed(&t, &other, &[("a", "3")]).await;
        let script = vec![rec("a", "1"), rec("a", "2"), state("a", json!({})), state("b", json!({})), done()];
        let p = replay(&t, m, &[("a", "1"), ("a", "2"), ("a", "3"), ("b", "9")], script, full_refresh()).await;
        assert!(p.out.succeeded(), "{:?}", p.out);
        assert_eq!(keys(&t, &p.conn, "a").await, ["1", "2"], "3 is gone upstream");
        assert_eq!(keys(&t, &p.conn, "b").await, Vec::<String>::new(), "b returned nothing");
        assert_eq!(keys(&t, &other, "a").await, ["3"], "another connection keeps its records");
        let r = reconciled(&p).expect("run.reconciled");
        assert_eq!(r["streams"], json!([{ "stream": "a", "records_deleted": 1 }, { "stream": "b", "records_deleted": 1 }]));
        assert_eq!(p.terminal().kind, "run.completed");
        assert_eq!(p.terminal().data["reconciled_deletions"], 2);
        let run = t.dep.store.run(&p.out.run_id).await.unwrap().unwrap();
        assert_eq!(run.collection_mode, CollectionMode::FullRefresh, "the run records its mode");
        assert!(t.dep.store.last_full_refresh_at(&p.conn).await.unwrap().is_some());
    }
}

on_both_backends! {
    /// An incremental run reads what changed; it deletes nothing it did not read.
    async fn reconcile_only_after_a_full_refresh(t: TestDeployment) {
        let script = vec![rec("a", "1"), state("a", json!({})), done()];
        let p = replay(&t, manifest(&["a"]), &[("a", "1"), ("a", "2")], script, ConnectionRun::new(Trigger::Manual)).await;
        assert!(p.out.succeeded());
        assert_eq!(keys(&t, &p.conn, "a").await, ["1", "2"]);
        assert!(reconciled(&p).is_none());
        assert_eq!(p.terminal().data["reconciled_deletions"], 0);
        assert_eq!(t.dep.store.last_full_refresh_at(&p.conn).await.unwrap(), None);
    }
}

on_both_backends! {
    /// A certified stream-scoped failure commits the clean stream's
    /// checkpoint, but a failed run deletes nothing, not even there.
    async fn reconcile_never_after_a_failed_run(t: TestDeployment) {
        let script = vec![rec("a", "1"), state("a", json!({})), stream_failed("b"), failed(Some("stream_collection_failed"))];
        let p = replay(&t, manifest(&["a", "b"]), &[("a", "1"), ("a", "2"), ("b", "7")], script, full_refresh()).await;
        assert!(p.out.certified_failure);
        assert_eq!(p.committed(), ["a"], "the clean stream's checkpoint commits");
        assert_eq!(keys(&t, &p.conn, "a").await, ["1", "2"]);
        assert_eq!(keys(&t, &p.conn, "b").await, ["7"]);
        assert!(reconciled(&p).is_none());
        assert_eq!(t.dep.store.last_full_refresh_at(&p.conn).await.unwrap(), None, "a failed run is no full refresh");
        // A cancelled run neither.
        let cancel = json!({ "type": "DONE", "status": "cancelled", "error": { "message": "stop" } });
        let p = replay(&t, manifest(&["a"]), &[("a", "2")], vec![state("a", json!({})), cancel], full_refresh()).await;
        assert_eq!(keys(&t, &p.conn, "a").await, ["2"]);
    }
}

on_both_backends! {
    /// A stream read through a narrowed scope (a time window, a resource
    /// list) was read in part: its other records are not deletions.
    async fn reconcile_only_whole_streams(t: TestDeployment) {
        let mut opts = full_refresh();
        opts.streams = Some(vec![
            StreamScope {
                time_range: Some(TimeRange { since: Some("2026-01-01T00:00:00Z".into()), until: None }),
                ..StreamScope::named("a")
            },
            StreamScope { resources: Some(vec!["1".into()]), ..StreamScope::named("b") },
            StreamScope { fields: Some(vec!["value".into()]), ..StreamScope::named("c") },
        ]);
        let script = vec![
            rec_data("a", "1", json!({ "id": "1", "updated_at": "2026-02-01T00:00:00Z" })),
            state("a", json!({})),
            rec("b", "1"), state("b", json!({})),
            rec("c", "1"), state("c", json!({})),
            done(),
        ];
        let earlier = [("a", "1"), ("a", "old"), ("b", "1"), ("b", "2"), ("c", "1"), ("c", "2")];
        let p = replay(&t, manifest(&["a", "b", "c"]), &earlier, script, opts).await;
        assert!(p.out.succeeded(), "{:?}", p.out);
        assert_eq!(keys(&t, &p.conn, "a").await, ["1", "old"]);
        assert_eq!(keys(&t, &p.conn, "b").await, ["1", "2"]);
        assert_eq!(keys(&t, &p.conn, "c").await, ["1"], "a fields limit still reads every record");
        let r = reconciled(&p).unwrap();
        assert_eq!(r["not_reconciled"], json!([
            { "stream": "a", "reason": "scope_narrowed" },
            { "stream": "b", "reason": "scope_narrowed" },
        ]));
    }
}

on_both_backends! {
    /// A stream named by a SKIP_RESULT (here a rate limit) was not read in
    /// full; a SKIP_RESULT that names no stream leaves every stream alone.
    async fn reconcile_not_skipped_streams(t: TestDeployment) {
        let limited = json!({ "type": "SKIP_RESULT", "stream": "b", "reason": "rate_limited", "message": "later",
                              "recovery_hint": "retry_by_runtime" });
        let script = vec![state("a", json!({})), limited, done()];
        let p = replay(&t, manifest(&["a", "b"]), &[("a", "1"), ("b", "1")], script, full_refresh()).await;
        assert!(p.out.succeeded());
        assert_eq!(keys(&t, &p.conn, "a").await, Vec::<String>::new());
        assert_eq!(keys(&t, &p.conn, "b").await, ["1"]);
        assert_eq!(reconciled(&p).unwrap()["not_reconciled"], json!([{ "stream": "b", "reason": "stream_skipped" }]));

        let part = json!({ "type": "SKIP_RESULT", "reason": "too_large", "resources": ["x"] });
        let script = vec![state("a", json!({})), part, done()];
        let p = replay(&t, manifest(&["a"]), &[("a", "1")], script, full_refresh()).await;
        assert!(p.out.succeeded());
        assert_eq!(keys(&t, &p.conn, "a").await, ["1"]);
        assert_eq!(reconciled(&p).unwrap()["not_reconciled"], json!([{ "stream": "a", "reason": "run_skipped_part" }]));
    }
}

on_both_backends! {
    /// A connector says a stream is done with its STATE: a stream that
    /// staged none, or whose checkpoint a coverage shortfall withheld, was
    /// not covered completely.
    async fn reconcile_only_checkpointed_streams(t: TestDeployment) {
        let m = manifest_with(
            vec![
                stream("a", json!({})),
                stream("b", json!({})),
                stream("p", json!({})),
                stream("d", json!({ "parent_streams": ["p"], "coverage_strategy": "parent_detail_accounting" })),
            ],
            json!({}),
        );
        let script = vec![
            rec("a", "1"), state("a", json!({})),
            rec("b", "1"),
            state("p", json!({})), coverage("p", "d", &["k1", "k2"], &["k1"]),
            done(),
        ];
        let earlier = [("a", "2"), ("b", "2"), ("p", "2"), ("d", "2")];
        let p = replay(&t, m, &earlier, script, full_refresh()).await;
        assert!(p.out.succeeded(), "{:?}", p.out);
        assert_eq!(keys(&t, &p.conn, "a").await, ["1"]);
        assert_eq!(keys(&t, &p.conn, "b").await, ["1", "2"], "no STATE: not known to be complete");
        assert_eq!(keys(&t, &p.conn, "p").await, ["2"], "a withheld checkpoint: not complete");
        assert_eq!(keys(&t, &p.conn, "d").await, ["2"]);
        assert_eq!(
            reconciled(&p).unwrap()["not_reconciled"],
            json!([
                { "stream": "b", "reason": "not_checkpointed" },
                { "stream": "p", "reason": "not_checkpointed" },
                { "stream": "d", "reason": "detail_stream" },
            ])
        );
    }
}

on_both_backends! {
    /// A detail stream is hydrated key by key under its parents' coverage;
    /// even with complete coverage its records are not reconciled.
    async fn reconcile_not_detail_streams(t: TestDeployment) {
        let m = manifest_with(
            vec![
                stream("p", json!({})),
                stream("d", json!({ "parent_streams": ["p"], "coverage_strategy": "parent_detail_accounting" })),
            ],
            json!({}),
        );
        let script = vec![rec("p", "1"), state("p", json!({})), rec("d", "1"), coverage("p", "d", &["1"], &["1"]), done()];
        let p = replay(&t, m, &[("p", "1"), ("p", "2"), ("d", "2")], script, full_refresh()).await;
        assert!(p.out.succeeded(), "{:?}", p.out);
        assert_eq!(keys(&t, &p.conn, "p").await, ["1"]);
        assert_eq!(keys(&t, &p.conn, "d").await, ["1", "2"]);
    }
}
