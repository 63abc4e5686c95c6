//! The owner's reads that stay flat as history grows: record counts kept
//! beside the records in the batch's transaction, setup statuses of many
//! connections read at once, and the paged connection list. On SQLite and
//! PostgreSQL, through the store and through a real `pdpp-host serve`.

use crate::server::*;
use crate::support::*;
use crate::{on_both_backends, server_on_both_backends};
use pdpp_host::protocol::{self as p};
use pdpp_host::runtime::{ConnectionRun, run_connection};
use pdpp_host::setup::{StatusNeeds, status, status_by_id, statuses};
use pdpp_host::store::Trigger;
use pdpp_host::vault::Bundle;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn upsert(stream: &str, key: &str) -> p::Record {
    p::Record {
        stream: stream.into(),
        key: json!(key),
        data: Some(json!({ "k": key })),
        op: None,
        emitted_at: "2026-01-01T00:00:00Z".into(),
    }
}

fn delete(stream: &str, key: &str) -> p::Record {
    p::Record {
        data: None,
        op: Some("delete".into()),
        ..upsert(stream, key)
    }
}

/// The counts the records themselves give.
async fn counted(t: &TestDeployment, c: &str, streams: &[&str]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for s in streams {
        let n = t.dep.store.records(c, s).await.unwrap().len() as i64;
        if n > 0 {
            out.insert((*s).to_owned(), n);
        }
    }
    out
}

on_both_backends! {
    /// A stream's record count follows every upsert, delete and full-refresh
    /// reconciliation, in the transaction that changed the records: a key
    /// written twice in one batch counts once, a delete of a key that never
    /// existed counts nothing, a delete then re-add in one batch keeps it.
    async fn record_counts_follow_upserts_deletes_and_reconciliation(t: TestDeployment) {
        let m = probe_manifest();
        let c = t.connection(&m, json!({}), None).await;
        let s = &t.dep.store;
        let streams = ["items", "notes"];
        s.write_batch(&c, "run_1", &[upsert("items", "a"), upsert("items", "b"), upsert("items", "a"), upsert("notes", "n")], &[])
            .await
            .unwrap();
        assert_eq!(s.record_counts(&c).await.unwrap(), counted(&t, &c, &streams).await);
        assert_eq!(s.record_counts(&c).await.unwrap()["items"], 2);
        s.write_batch(&c, "run_2", &[delete("items", "a"), delete("items", "never"), upsert("items", "c"), delete("notes", "n"), upsert("notes", "n")], &[])
            .await
            .unwrap();
        assert_eq!(s.record_counts(&c).await.unwrap(), counted(&t, &c, &streams).await);
        assert_eq!(s.record_counts(&c).await.unwrap(), BTreeMap::from([("items".into(), 2), ("notes".into(), 1)]));
        // A full refresh by run_3 that wrote only `c`: the others go.
        s.write_batch(&c, "run_3", &[upsert("items", "c")], &[]).await.unwrap();
        let lost = s.reconcile(&c, "run_3", &["items".into()]).await.unwrap();
        assert_eq!(lost, vec![("items".to_owned(), 1)]);
        assert_eq!(s.record_counts(&c).await.unwrap(), counted(&t, &c, &streams).await);
        // A batch of more keys than one count lookup takes.
        let many: Vec<p::Record> = (0..1_234).map(|i| upsert("items", &format!("m{i}"))).collect();
        s.write_batch(&c, "run_4", &many, &[]).await.unwrap();
        assert_eq!(s.record_counts(&c).await.unwrap()["items"], 1_235);
        assert_eq!(s.record_counts(&c).await.unwrap(), counted(&t, &c, &streams).await);
        // One chunk of a key already there and a new one: both written, one counted.
        let mut changed = upsert("items", "m0");
        changed.data = Some(json!({ "k": "m0", "v": 2 }));
        s.write_batch(&c, "run_5", &[changed, upsert("items", "zz")], &[]).await.unwrap();
        assert_eq!(s.record_counts(&c).await.unwrap()["items"], 1_236);
        let items = s.records(&c, "items").await.unwrap();
        let m0 = items.iter().find(|r| r.key == "m0").unwrap();
        assert_eq!((&m0.data, m0.run_id.as_str()), (&json!({ "k": "m0", "v": 2 }), "run_5"), "the old key is updated");
    }
}

on_both_backends! {
    /// Reading the statuses of many connections at once gives, for each,
    /// exactly what reading it alone gives, whatever its history: none, a
    /// run that succeeded, several runs, and a run asked for by id.
    async fn setup_statuses_of_many_connections_equal_each_read_alone(t: TestDeployment) {
        let m = demo_manifest();
        let needs = StatusNeeds::of(&m, false);
        let fresh = t.connection(&m, json!({"contacts": 3, "events": 0}), None).await;
        let bundle = Bundle::new("secret_bundle", [("token", "tok-summaries-0001")]);
        let once = t.connection(&m, json!({"contacts": 5, "events": 2}), Some(bundle)).await;
        let twice = t.connection(&m, json!({"contacts": 1, "events": 0}), None).await;
        let run = |c: String| {
            let (dep, m) = (t.dep.clone(), m.clone());
            async move {
                let out = run_connection(&dep, sandbox(), demo(), m, &c, ConnectionRun::new(Trigger::Manual)).await.unwrap();
                assert!(out.succeeded(), "{out:?}");
                out.run_id
            }
        };
        run(once.clone()).await;
        let first = run(twice.clone()).await;
        let second = run(twice.clone()).await;
        let s = &t.dep.store;
        let mut conns = Vec::new();
        for id in [&fresh, &once, &twice] {
            conns.push(s.connection(id).await.unwrap().unwrap());
        }
        let pairs: Vec<_> = conns.iter().map(|c| (c, &needs)).collect();
        let together = statuses(s, &pairs, None).await.unwrap();
        for (conn, got) in conns.iter().zip(&together) {
            let alone = status(s, conn, &needs, None).await.unwrap();
            assert_eq!(serde_json::to_value(got).unwrap(), serde_json::to_value(&alone).unwrap());
        }
        // The same through the one-query read of a connection with its
        // credential and history, for the newest and for an older run.
        for conn in &conns {
            let (loaded, via) = status_by_id(s, &conn.connection_id, None, |_| needs.clone()).await.unwrap().unwrap();
            assert_eq!(&loaded, conn);
            let alone = status(s, conn, &needs, None).await.unwrap();
            assert_eq!(serde_json::to_value(via).unwrap(), serde_json::to_value(alone).unwrap());
        }
        let (_, older_by_id) = status_by_id(s, &twice, Some(&first), |_| needs.clone()).await.unwrap().unwrap();
        let older_alone = status(s, &conns[2], &needs, Some(&first)).await.unwrap();
        assert_eq!(serde_json::to_value(older_by_id).unwrap(), serde_json::to_value(older_alone).unwrap());
        assert!(status_by_id(s, "con_missing", None, |_| needs.clone()).await.unwrap().is_none());
        assert!(
            status_by_id(s, &once, Some(&first), |_| needs.clone()).await.is_err(),
            "a run of another connection"
        );
        let with = s.connection_for_status(&once, None, &[]).await.unwrap().unwrap().credential.expect("its credential");
        assert_eq!(with, s.credential(&once).await.unwrap().unwrap());
        let to_json = |v| serde_json::to_value(v).unwrap();
        assert!(to_json(&together[0])["run"].is_null(), "no run yet");
        assert_eq!(to_json(&together[2])["run"]["run_id"], json!(second), "the newest run");
        // An older run by id, and a run of another connection refused.
        let older = status(s, &conns[2], &needs, Some(&first)).await.unwrap();
        assert_eq!(to_json(&older)["run"]["run_id"], json!(first));
        assert!(status(s, &conns[1], &needs, Some(&first)).await.is_err(), "a run of another connection");
    }
}

fn create(s: &Server, name: &str) -> String {
    let (code, body) = s.owner(
        "POST",
        "/v1/connections",
        Some(json!({ "connector_id": "probe", "display_name": name, "settings": {} })),
    );
    assert_eq!(code, 201, "{body}");
    body["connection"]["connection_id"].as_str().unwrap().to_owned()
}

fn page(s: &Server, query: &str) -> (Vec<String>, Option<String>) {
    let (code, body) = s.owner("GET", &format!("/v1/connections?{query}"), None);
    assert_eq!(code, 200, "{body}");
    let ids = body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["connection_id"].as_str().unwrap().to_owned())
        .collect();
    (ids, body["next_after"].as_str().map(str::to_owned))
}

server_on_both_backends! {
    /// `GET /v1/connections` pages in creation order: following
    /// `next_after` visits every connection once, the last page says there
    /// is no next one, and filters apply across pages.
    fn connection_list_pages_visit_every_connection_once_in_creation_order(b: Backend) {
        let s = serve_with(ServeOptions::default().plugin("probe", &probe_manifest_path()).backend(b));
        let created: Vec<String> = (0..7).map(|i| create(&s, &format!("c{i}"))).collect();
        let mut seen = Vec::new();
        let mut query = "limit=3".to_owned();
        let mut pages = 0;
        loop {
            let (ids, next) = page(&s, &query);
            assert!(ids.len() <= 3);
            seen.extend(ids);
            pages += 1;
            match next {
                Some(after) => query = format!("limit=3&after={after}"),
                None => break,
            }
        }
        assert_eq!(seen, created, "every connection once, oldest first");
        assert_eq!(pages, 3, "3 + 3 + 1: no empty last page");
        // The default page holds them all; a filter pages too.
        assert_eq!(page(&s, "").0, created);
        let (code, _) = s.owner("DELETE", &format!("/v1/connections/{}", created[1]), None);
        assert_eq!(code, 200);
        let (drafts, next) = page(&s, "status=draft&limit=6");
        assert_eq!((drafts.len(), next), (6, None));
        assert!(page(&s, "status=active").0.is_empty());
    }
}

server_on_both_backends! {
    /// A page size outside 1–500, a cursor the list never handed out and an
    /// unknown status are refused with a typed error, not an empty page.
    fn connection_list_refuses_bad_page_requests_with_typed_errors(b: Backend) {
        let s = serve_with(ServeOptions::default().plugin("probe", &probe_manifest_path()).backend(b));
        create(&s, "one");
        for (query, code) in [
            ("limit=0", "invalid_query"),
            ("limit=501", "invalid_query"),
            ("limit=ten", "invalid_query"),
            ("after=nonsense", "invalid_cursor"),
            ("after=12.con%27%20OR%201%3D1", "invalid_cursor"),
            ("status=sleeping", "invalid_query"),
        ] {
            let (status, body): (u16, Value) = s.owner("GET", &format!("/v1/connections?{query}"), None);
            assert_eq!((status, body["code"].as_str()), (400, Some(code)), "{query}: {body}");
        }
    }
}
