//! The store on SQLite and PostgreSQL: records, state, runs, durability.

use crate::on_both_backends;
use crate::support::*;
use pdpp_host::protocol::{self as p};
use pdpp_host::runtime::{ConnectionRun, run_connection};
use pdpp_host::store::{Namespace, RunEvent, Trigger};
use serde_json::json;
use std::process::Command;

fn record(stream: &str, key: &str, data: serde_json::Value) -> p::Record {
    p::Record {
        stream: stream.into(),
        key: json!(key),
        data: Some(data),
        op: None,
        emitted_at: "2026-01-01T00:00:00Z".into(),
    }
}

on_both_backends! {
    /// Upsert by key, the delete op, and connections that never collide.
    async fn records_upsert_by_key_delete_by_op_and_stay_per_connection(t: TestDeployment) {
        let m = probe_manifest();
        let a = t.connection(&m, json!({}), None).await;
        let b = t.connection(&m, json!({}), None).await;
        let s = &t.dep.store;
        s.write_batch(&a, "run_1", &[record("items", "k1", json!({"v": 1})), record("items", "k2", json!({"v": 2}))], &[]).await.unwrap();
        s.write_batch(&b, "run_2", &[record("items", "k1", json!({"v": "b"}))], &[]).await.unwrap();
        s.write_batch(&a, "run_3", &[record("items", "k1", json!({"v": 10}))], &[RunEvent::new("x", json!({}))]).await.unwrap();
        let mut del = record("items", "k2", json!({}));
        del.op = Some("delete".into());
        del.data = None;
        s.write_batch(&a, "run_3", &[del], &[]).await.unwrap();

        let ra = s.records(&a, "items").await.unwrap();
        assert_eq!(ra.len(), 1);
        assert_eq!((ra[0].key.as_str(), &ra[0].data, ra[0].run_id.as_str()), ("k1", &json!({"v": 10}), "run_3"));
        let rb = s.records(&b, "items").await.unwrap();
        assert_eq!(rb[0].data, json!({"v": "b"}), "same connector, same key, other connection: untouched");
    }
}

on_both_backends! {
    /// A demo run through a stored connection: records, committed state,
    /// timeline; the second run resumes from the committed state.
    async fn stored_connection_run_persists_records_state_and_timeline(t: TestDeployment) {
        let m = demo_manifest();
        let c = t.connection(&m, json!({"contacts": 30, "events": 10, "checkpoint_every": 7}), None).await;
        let out = run_connection(&t.dep, sandbox(), demo(), m.clone(), &c, ConnectionRun::new(Trigger::Manual)).await.unwrap();
        assert!(out.succeeded(), "{out:?}");
        assert_eq!(out.records_written, 40);
        let s = &t.dep.store;
        assert_eq!(s.count_records(&c).await.unwrap(), 40);
        let state = s.state(&c, &Namespace::Global).await.unwrap();
        assert_eq!(state["contacts"], json!({"after": "2026-01-02T05:00:00Z"}));
        let run = s.run(&out.run_id).await.unwrap().unwrap();
        assert_eq!((run.status.as_str(), run.records_written, run.trigger.as_str()), ("succeeded", 40, "manual"));
        assert!(run.resource_report.unwrap()["peak_memory_bytes"].as_u64().unwrap() > 0);
        let kinds: Vec<String> = s.events(&out.run_id).await.unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds.first().map(String::as_str), Some("run.started"));
        assert_eq!(kinds.last().map(String::as_str), Some("run.completed"));
        assert!(kinds.iter().any(|k| k == "run.state_advanced"));
        assert!(kinds.iter().any(|k| k == "run.batch_written"));

        let again = run_connection(&t.dep, sandbox(), demo(), m, &c, ConnectionRun::new(Trigger::Scheduled)).await.unwrap();
        assert_eq!(again.records_emitted, 0, "resumed from the committed state");
    }
}

on_both_backends! {
    /// A failed run keeps the records it wrote but commits no state.
    async fn failed_run_commits_no_state(t: TestDeployment) {
        let m = probe_manifest();
        let cred = pdpp_host::vault::Bundle::new("secret_bundle", [("token", "tok-fail-state-1")]);
        let c = t.connection(&m, json!({"behavior": "fail_after_state"}), Some(cred)).await;
        let out = run_connection(&t.dep, sandbox(), probe(), m, &c, ConnectionRun::new(Trigger::Manual)).await.unwrap();
        assert_eq!(out.status, p::DoneStatus::Failed);
        assert!(t.dep.store.state(&c, &Namespace::Global).await.unwrap().is_empty());
        let run = t.dep.store.run(&out.run_id).await.unwrap().unwrap();
        assert_eq!(run.failure_reason.as_deref(), Some("connector_reported_failed"));
    }
}

fn delete(stream: &str, key: &str) -> p::Record {
    p::Record {
        op: Some("delete".into()),
        data: None,
        ..record(stream, key, json!({}))
    }
}

/// The stored (key, data) pairs of a stream, in key order.
async fn stored(t: &TestDeployment, c: &str, stream: &str) -> Vec<(String, serde_json::Value)> {
    let rows = t.dep.store.records(c, stream).await.unwrap();
    rows.into_iter().map(|r| (r.key, r.data)).collect()
}

on_both_backends! {
    /// Per key, the last record of a batch wins, as if the batch's records
    /// were applied one after the other.
    async fn a_batch_with_the_same_key_twice_keeps_the_last_version(t: TestDeployment) {
        let m = probe_manifest();
        let c = t.connection(&m, json!({}), None).await;
        let s = &t.dep.store;
        let batch = [
            record("items", "k1", json!({"v": 1})),
            record("items", "k2", json!({"v": 1})),
            record("items", "k1", json!({"v": 2})),
            record("other", "k1", json!({"v": "other"})),
            record("items", "k1", json!({"v": 3})),
        ];
        assert_eq!(s.write_batch(&c, "run_1", &batch, &[]).await.unwrap(), 5);
        assert_eq!(stored(&t, &c, "items").await, [("k1".into(), json!({"v": 3})), ("k2".into(), json!({"v": 1}))]);
        assert_eq!(stored(&t, &c, "other").await, [("k1".into(), json!({"v": "other"}))], "same key, other stream");
    }
}

on_both_backends! {
    /// Deletes and upserts in one batch apply in the order they were sent:
    /// an upsert after a delete brings the key back, a delete after an
    /// upsert removes it, a delete reaches a row of an earlier batch.
    async fn deletes_interleaved_with_upserts_apply_in_order(t: TestDeployment) {
        let m = probe_manifest();
        let c = t.connection(&m, json!({}), None).await;
        let s = &t.dep.store;
        s.write_batch(&c, "run_1", &[record("items", "old", json!({"v": 0})), record("items", "kept", json!({"v": 0}))], &[])
            .await
            .unwrap();
        let batch = [
            record("items", "back", json!({"v": 1})),
            delete("items", "back"),
            record("items", "gone", json!({"v": 1})),
            delete("items", "old"),
            record("items", "back", json!({"v": 2})),
            delete("items", "gone"),
            delete("items", "never"),
            record("items", "new", json!({"v": 1})),
        ];
        s.write_batch(&c, "run_2", &batch, &[]).await.unwrap();
        assert_eq!(
            stored(&t, &c, "items").await,
            [("back".into(), json!({"v": 2})), ("kept".into(), json!({"v": 0})), ("new".into(), json!({"v": 1}))]
        );
        let runs: Vec<String> = t.dep.store.records(&c, "items").await.unwrap().into_iter().map(|r| r.run_id).collect();
        assert_eq!(runs, ["run_2", "run_1", "run_2"]);
    }
}

on_both_backends! {
    /// A record comes back as it was sent, whatever its key and data hold
    /// (quotes, backslashes, commas, braces, the word NULL, newlines,
    /// non-ASCII), whether its key is new or replaces a stored one (a
    /// stream of only new keys, of only stored ones, of both), across
    /// streams of one batch; each stream's count moves by its new keys only.
    async fn records_are_stored_as_sent_whatever_characters_they_hold(t: TestDeployment) {
        let m = probe_manifest();
        let c = t.connection(&m, json!({}), None).await;
        let s = &t.dep.store;
        let odd = [
            "NULL", r#"say "hi""#, r"back\slash", "a,b", "{braces}", "new\nline", "tab\there", "ünï©ødé ✓", " ", "}",
        ];
        let first: Vec<p::Record> = odd
            .iter()
            .map(|k| record("items", k, json!({"text": k, "nested": {"q": format!("\"{k}\\")}})))
            .collect();
        s.write_batch(&c, "run_1", &first, &[]).await.unwrap();
        let mut second: Vec<p::Record> = odd[..5].iter().map(|k| record("items", k, json!({"again": k}))).collect();
        second.push(record("other", r#"{"x":"y"}"#, json!({"v": "\\\""})));
        second.push(record("mixed", "fresh \"1\"", json!({"v": 1})));
        second.extend(odd[5..].iter().map(|k| record("mixed", k, json!({"v": k}))));
        second.push(p::Record { key: json!(["part \"1\"", "part\\2"]), ..record("pairs", "", json!({"v": 1})) });
        let mut mixed: Vec<p::Record> = odd[5..].iter().map(|k| record("mixed", k, json!({"v": 0}))).collect();
        mixed.push(record("mixed", "stored \\", json!({"v": 0})));
        s.write_batch(&c, "run_1", &mixed, &[]).await.unwrap();
        s.write_batch(&c, "run_2", &second, &[]).await.unwrap();

        let mut want: Vec<(String, serde_json::Value)> = odd
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let data = if i < 5 { json!({"again": k}) } else { json!({"text": k, "nested": {"q": format!("\"{k}\\")}}) };
                (k.to_string(), data)
            })
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let mut got = stored(&t, &c, "items").await;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want);
        assert_eq!(stored(&t, &c, "other").await, [(r#"{"x":"y"}"#.to_string(), json!({"v": "\\\""}))]);
        assert_eq!(stored(&t, &c, "pairs").await, [(json!(["part \"1\"", "part\\2"]).to_string(), json!({"v": 1}))]);
        let counts = s.record_counts(&c).await.unwrap();
        assert_eq!(counts.get("items"), Some(&(odd.len() as i64)), "replaced keys are not counted twice");
        assert_eq!((counts.get("other"), counts.get("pairs")), (Some(&1), Some(&1)));
        let mut want: Vec<(String, serde_json::Value)> = odd[5..].iter().map(|k| (k.to_string(), json!({"v": k}))).collect();
        want.push(("fresh \"1\"".into(), json!({"v": 1})));
        want.push(("stored \\".into(), json!({"v": 0})));
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let mut got = stored(&t, &c, "mixed").await;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want, "new and stored keys in one statement");
        assert_eq!(counts.get("mixed"), Some(&(odd.len() as i64 - 5 + 2)));
    }
}

on_both_backends! {
    /// A batch larger than one statement's rows (256) is written whole, and
    /// when the database refuses a row near its end nothing of it is kept:
    /// no record, no timeline entry; earlier batches stay.
    async fn a_batch_larger_than_one_chunk_is_all_or_nothing(t: TestDeployment) {
        let m = probe_manifest();
        let c = t.connection(&m, json!({}), None).await;
        let s = &t.dep.store;
        let big: Vec<p::Record> = (0..700).map(|i| record("items", &format!("k{i:04}"), json!({"n": i}))).collect();
        s.write_batch(&c, "run_1", &big, &[RunEvent::new("first", json!({}))]).await.unwrap();
        let rows = stored(&t, &c, "items").await;
        assert_eq!(rows.len(), 700);
        assert!(rows.iter().enumerate().all(|(i, (k, v))| *k == format!("k{i:04}") && *v == json!({"n": i})));

        // The database refuses the key `poison` (a trigger), the batch's last row.
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&t.url).await.unwrap();
        let refuse: &[&str] = if t.url.starts_with("sqlite") {
            &["CREATE TRIGGER refuse_poison BEFORE INSERT ON records WHEN NEW.record_key = 'poison'
               BEGIN SELECT RAISE(ABORT, 'poison refused'); END"]
        } else {
            &[
                "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN IF NEW.record_key = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF; RETURN NEW; END $$",
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
            ]
        };
        for sql in refuse {
            sqlx::query(*sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let mut second: Vec<p::Record> = (0..700).map(|i| record("items", &format!("x{i:04}"), json!({"n": i}))).collect();
        second.extend((0..10).map(|i| record("items", &format!("k{i:04}"), json!({"changed": true}))));
        second.push(record("items", "poison", json!({})));
        let err = s.write_batch(&c, "run_1", &second, &[RunEvent::new("second", json!({}))]).await.unwrap_err();
        assert!(err.to_string().contains("poison refused"), "{err}");
        assert_eq!(stored(&t, &c, "items").await, rows, "nothing of the refused batch is kept");
        let kinds: Vec<String> = s.events("run_1").await.unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["first"]);
    }
}

on_both_backends! {
    /// A batch is written while the connector produces the next one, yet
    /// batches become durable whole and in order, and the run ends only
    /// after its last one: every record is stored when the run returns,
    /// each batch's timeline entry precedes the run's end, and the state
    /// commits after them.
    async fn batches_are_durable_in_order_before_the_run_ends(t: TestDeployment) {
        let m = demo_manifest();
        let c = t.connection(&m, json!({"contacts": 10_000, "events": 0, "checkpoint_every": 1_000}), None).await;
        let out = run_connection(&t.dep, sandbox(), demo(), m, &c, ConnectionRun::new(Trigger::Manual)).await.unwrap();
        assert!(out.succeeded(), "{out:?}");
        let s = &t.dep.store;
        assert_eq!(s.count_records(&c).await.unwrap(), 10_000);
        assert_eq!(s.run(&out.run_id).await.unwrap().unwrap().records_written, 10_000);
        let events = s.events(&out.run_id).await.unwrap();
        let batches: Vec<u64> = events
            .iter()
            .filter(|e| e.kind == "run.batch_written")
            .map(|e| e.data["records"].as_u64().unwrap())
            .collect();
        assert!(batches.len() >= 3, "several batches: {batches:?}");
        assert_eq!(batches.iter().sum::<u64>(), 10_000);
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let last_batch = kinds.iter().rposition(|k| *k == "run.batch_written").unwrap();
        let advanced = kinds.iter().position(|k| *k == "run.state_advanced").unwrap();
        assert!(last_batch < advanced, "{kinds:?}");
        assert_eq!(kinds.last(), Some(&"run.completed"));
        let state = s.state(&c, &Namespace::Global).await.unwrap();
        assert_eq!(state["contacts"], json!({"after": "2027-02-21T15:00:00Z"}));
    }
}

on_both_backends! {
    /// Batches are written in order even though the next one is prepared
    /// while the one ahead is written: when the database refuses a batch,
    /// the batches behind it are not written either, and the run fails;
    /// the batches before it stay whole.
    async fn no_batch_is_written_after_one_the_database_refused(t: TestDeployment) {
        let m = demo_manifest();
        // 10,000 records without checkpoints in between: batches of 4,096,
        // 4,096 and 1,808; the database refuses a record of the second.
        let c = t.connection(&m, json!({"contacts": 10_000, "events": 0, "checkpoint_every": 100_000}), None).await;
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&t.url).await.unwrap();
        let refuse: &[&str] = if t.url.starts_with("sqlite") {
            &["CREATE TRIGGER refuse_c05000 BEFORE INSERT ON records WHEN NEW.record_key = 'c05000'
               BEGIN SELECT RAISE(ABORT, 'c05000 refused'); END"]
        } else {
            &[
                "CREATE FUNCTION refuse_c05000() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN IF NEW.record_key = 'c05000' THEN RAISE EXCEPTION 'c05000 refused'; END IF; RETURN NEW; END $$",
                "CREATE TRIGGER refuse_c05000 BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION refuse_c05000()",
            ]
        };
        for sql in refuse {
            sqlx::query(*sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let out = run_connection(&t.dep, sandbox(), demo(), m, &c, ConnectionRun::new(Trigger::Manual)).await.unwrap();
        assert!(!out.succeeded(), "{out:?}");
        let s = &t.dep.store;
        let keys: Vec<String> = s.records(&c, "contacts").await.unwrap().into_iter().map(|r| r.key).collect();
        let first: Vec<String> = (0..4_096).map(|i| format!("c{i:05}")).collect();
        assert_eq!(keys, first, "the first batch whole, nothing of the refused one or of the one behind it");
        assert_eq!(s.record_counts(&c).await.unwrap().get("contacts"), Some(&4_096));
        assert!(s.state(&c, &Namespace::Global).await.unwrap().is_empty(), "no state without its records");
    }
}

/// SIGKILL the host in the middle of writing batches: the database opens,
/// every committed batch is whole, nothing half-written shows (records,
/// their per-stream counts, state), and the interrupted run is marked
/// failed at the next start. On SQLite and on PostgreSQL.
async fn sigkill_mid_batch(backend: pdpp_host::store::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap().to_owned();
    let url = match backend {
        pdpp_host::store::Backend::Sqlite => format!("sqlite://{}?mode=rwc", data.join("pdpp.db").display()),
        pdpp_host::store::Backend::Postgres => fresh_postgres_database().await,
    };
    let m = probe_manifest_path();
    let cred = dir.path().join("cred.json");
    std::fs::write(
        &cred,
        r#"{"kind":"secret_bundle","fields":{"token":"tok-sigkill-0001","signing_key":"sig-sigkill-0001"}}"#,
    )
    .unwrap();
    let probe = guest_path("probe");
    let conn = cli_add_connection(&[
        "--data-dir",
        &data_s,
        "--database-url",
        &url,
        "--plugin",
        probe.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
        "--settings",
        r#"{"behavior":"many"}"#,
        "--credential",
        cred.to_str().unwrap(),
    ]);

    let mut child = Command::new(env!("CARGO_BIN_EXE_pdpp-host"))
        .args([
            "run",
            probe.to_str().unwrap(),
            "--manifest",
            m.to_str().unwrap(),
            "--data-dir",
            &data_s,
            "--database-url",
            &url,
            "--connection",
            &conn,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    sqlx::any::install_default_drivers();
    let mut seen = 0i64;
    for _ in 0..600 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if let Ok(pool) = sqlx::AnyPool::connect(&url).await {
            let row: Result<(i64,), _> = sqlx::query_as("SELECT COUNT(*) FROM records").fetch_one(&pool).await;
            pool.close().await;
            if let Ok((n,)) = row {
                seen = n;
                if n >= 5_000 {
                    break;
                }
            }
        }
    }
    assert!(seen >= 5_000, "the run wrote records before the kill ({seen})");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let t = pdpp_host::deploy::Deployment::open(pdpp_host::deploy::DeployOptions {
        data_dir: data.clone(),
        database_url: Some(url.clone()),
        key_file: None,
    })
    .await
    .expect("the database opens after the kill");
    let n = t.store.count_records(&conn).await.unwrap();
    assert!(n >= seen);
    assert_eq!(n % 4096, 0, "only whole SDK batches of 4,096 are visible, found {n}");
    let counted: i64 = t.store.record_counts(&conn).await.unwrap().values().sum();
    assert_eq!(counted, n, "the kept counts are those of the whole batches");
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    if backend == pdpp_host::store::Backend::Sqlite {
        let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(&pool).await.unwrap();
        assert_eq!(check, "ok");
    }
    // The next start (here: the store's sweep, as `serve` runs it) closes
    // the run whose process died.
    t.store.fail_interrupted_runs().await.unwrap();
    let (status, reason): (String, Option<String>) = sqlx::query_as("SELECT status, failure_reason FROM runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("failed", Some("host_interrupted"))
    );
    assert!(
        t.store.state(&conn, &Namespace::Global).await.unwrap().is_empty(),
        "no state was committed"
    );
}

mod sigkill_mid_batch_leaves_only_whole_batches {
    #[tokio::test]
    async fn sqlite() {
        super::sigkill_mid_batch(pdpp_host::store::Backend::Sqlite).await
    }
    #[tokio::test]
    async fn postgres() {
        super::sigkill_mid_batch(pdpp_host::store::Backend::Postgres).await
    }
}

/// `pdpp-host runs list` and `runs show` read the stored runs and timelines.
#[test]
fn runs_show_prints_the_run_and_its_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let m = demo_manifest_path();
    let conn = cli_add_connection(&[
        "--data-dir",
        data_s,
        "--manifest",
        m.to_str().unwrap(),
        "--settings",
        r#"{"contacts": 3, "events": 2}"#,
    ]);
    let demo = guest_path("demo");
    let (code, _, err) = cli_run_connection(&demo, &m, data_s, &conn, &[], &[]);
    assert_eq!(code, 0, "{err}");
    let (code, runs, _) = cli(
        &["runs", "list", "--data-dir", data_s, "--connection", &conn],
        &[],
        None,
    );
    assert_eq!(code, 0);
    assert_eq!(runs.len(), 1);
    let run_id = runs[0]["run_id"].as_str().unwrap();
    let (code, shown, _) = cli(&["runs", "show", "--data-dir", data_s, run_id], &[], None);
    assert_eq!(code, 0);
    assert_eq!(shown[0]["status"], "succeeded");
    assert_eq!(shown[0]["records_written"], 5);
    let kinds: Vec<&str> = shown[1..].iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"run.started"));
    assert_eq!(kinds.last(), Some(&"run.completed"));
    assert!(kinds.contains(&"run.state_advanced") && kinds.contains(&"run.progress_reported"));
    let (code, _, err) = cli(&["runs", "show", "--data-dir", data_s, "run_missing"], &[], None);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"));
}
