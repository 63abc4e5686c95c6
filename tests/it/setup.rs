//! The connection setup lifecycle (seed spec "reference connector
//! instances") through the real `pdpp-host serve` process, its store and
//! vault, and real wasm connectors; every scenario on SQLite and PostgreSQL.
//!
//! The `probe` guest's credential probe decides by its `signing_key`:
//! `reject…` is refused, `down…` finds the provider unreachable, anything
//! else is accepted as the account named by the `account` setting.

use crate::server::*;
use crate::server_on_both_backends;
use crate::support::*;
use pdpp_host::store::Backend;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub(crate) fn serve_on(b: Backend) -> Server {
    serve_with(
        ServeOptions::default()
            .plugin("demo", &demo_manifest_path())
            .plugin("probe", &probe_manifest_path())
            .backend(b),
    )
}

/// Start a probe setup: a draft connection's id.
pub(crate) fn draft(s: &Server, settings: Value) -> String {
    let (status, created) = s.owner(
        "POST",
        "/v1/connections",
        Some(json!({ "connector_id": "probe", "settings": settings })),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["connection"]["status"], "draft");
    assert_eq!(created["setup"]["setup_state"], "awaiting_credential");
    assert_eq!(created["next_step"]["kind"], "capture_credential");
    assert!(created["first_sync"].is_null(), "no sync before a credential");
    created["connection"]["connection_id"].as_str().unwrap().to_owned()
}

pub(crate) fn capture(s: &Server, id: &str, token: &str, key: &str) -> (u16, Value) {
    s.owner(
        "PUT",
        &format!("/v1/connections/{id}/credential"),
        Some(json!({ "kind": "secret_bundle", "fields": { "token": token, "signing_key": key } })),
    )
}

fn status(s: &Server, id: &str) -> Value {
    let (code, body) = s.owner("GET", &format!("/v1/connections/{id}/setup-status"), None);
    assert_eq!(code, 200, "{body}");
    body
}

/// Poll until `f` holds, for at most 30 s.
pub(crate) fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn first_pending_interaction(s: &Server, run_id: &str) -> String {
    let mut id = String::new();
    eventually("an interaction", || {
        let (_, list) = s.owner("GET", &format!("/v1/interactions?run_id={run_id}"), None);
        match list["interactions"].as_array().and_then(|l| l.first()) {
            Some(i) => {
                id = i["interaction_id"].as_str().unwrap().to_owned();
                true
            }
            None => false,
        }
    });
    id
}

server_on_both_backends! {
    /// Scenario "Static-secret setup uses draft then first-ingest activation".
    fn static_secret_setup_uses_draft_then_first_ingest_activation(b: Backend) {
        let s = serve_on(b);
        let id = draft(&s, json!({ "behavior": "items", "count": 3, "account": "alice" }));
        let (code, captured) = capture(&s, &id, "tok-first-ingest-0001", "sig-first-ingest-0001");
        assert_eq!(code, 201, "{captured}");
        assert_eq!(captured["validation"], "synchronous");
        assert_eq!(captured["identity"]["account_identity"], "alice");
        let run_id = captured["first_sync"]["run_id"].as_str().unwrap().to_owned();
        // The response itself already shows the running first sync, not a transient notice.
        assert_eq!(captured["setup"]["run"]["run_id"], run_id.as_str(), "{captured}");
        assert!(
            matches!(captured["setup"]["setup_state"].as_str(), Some("first_sync_running" | "active")),
            "{captured}"
        );
        let run = s.wait_run(&run_id);
        assert_eq!(run["status"], "succeeded", "{run}");
        let st = status(&s, &id);
        assert_eq!((st["status"].as_str(), st["setup_state"].as_str()), (Some("active"), Some("active")));
        assert_eq!(st["run"]["run_id"], run_id.as_str());
        assert_eq!(st["account_identity"], "alice");
        let (_, events) = s.owner("GET", &format!("/v1/runs/{run_id}"), None);
        assert!(
            events["events"].as_array().unwrap().iter().any(|e| e["kind"] == "connection.activated"),
            "activation is on the run's timeline"
        );
        let (_, records) = s.owner("GET", &format!("/v1/records?connection_id={id}&stream=items"), None);
        assert_eq!(records["records"].as_array().unwrap().len(), 3);
    }
}

server_on_both_backends! {
    /// Scenario "Static-secret setup does not disappear after submission":
    /// while the first sync has not accepted records, owner surfaces show a
    /// pending/running setup with the connection id and run id.
    fn static_secret_setup_does_not_disappear_after_submission(b: Backend) {
        let s = serve_on(b);
        // `interact` parks the first sync on a question before any record.
        let id = draft(&s, json!({ "behavior": "interact" }));
        let (code, captured) = capture(&s, &id, "tok-visible-0002", "sig-visible-0002");
        assert_eq!(code, 201, "{captured}");
        let run_id = captured["first_sync"]["run_id"].as_str().unwrap().to_owned();
        let ix = first_pending_interaction(&s, &run_id);
        let st = status(&s, &id);
        assert_eq!(st["setup_state"], "first_sync_running", "{st}");
        assert_eq!((st["pending"].as_bool(), st["running"].as_bool()), (Some(true), Some(true)));
        assert_eq!(st["run"]["run_id"], run_id.as_str());
        assert_eq!(st["connection_id"], id.as_str());
        let (_, list) = s.owner("GET", "/v1/connections", None);
        let row = list["connections"].as_array().unwrap().iter().find(|c| c["connection_id"] == id.as_str());
        let row = row.expect("the draft is listed, not invisible");
        assert_eq!((row["status"].as_str(), row["setup_state"].as_str()), (Some("draft"), Some("first_sync_running")));
        // Answer; the observation record is the first ingest and activates it.
        let (code, _) = s.owner("POST", &format!("/v1/interactions/{ix}"), Some(json!({ "status": "success", "data": { "code": "1" } })));
        assert_eq!(code, 200);
        s.wait_run(&run_id);
        assert_eq!(status(&s, &id)["setup_state"], "active");
    }
}

server_on_both_backends! {
    /// Scenario "Static-secret validation failure does not create an
    /// invisible setup row": nothing stored, a first-time draft retired, an
    /// active connection keeps its working credential.
    fn static_secret_validation_failure_does_not_create_an_invisible_setup_row(b: Backend) {
        let s = serve_on(b);
        let rejected_secret = "reject-planted-0003";
        let id = draft(&s, json!({}));
        let (code, err) = capture(&s, &id, "tok-rejected-0003", rejected_secret);
        assert_eq!((code, err["code"].as_str()), (400, Some("credential_rejected")), "{err}");
        assert!(!err.to_string().contains(rejected_secret));
        let (code, _) = s.owner("GET", &format!("/v1/connections/{id}"), None);
        assert_eq!(code, 404, "the first-time draft was retired");
        let (_, list) = s.owner("GET", "/v1/connections", None);
        assert!(list["connections"].as_array().unwrap().is_empty(), "no setup row remains: {list}");

        // An active connection whose rotation is rejected stays active with its old credential.
        let id = draft(&s, json!({ "account": "bob" }));
        let (_, ok) = capture(&s, &id, "tok-working-0003", "sig-working-0003");
        s.wait_run(ok["first_sync"]["run_id"].as_str().unwrap());
        let before = status(&s, &id);
        assert_eq!(before["status"], "active");
        let (code, err) = capture(&s, &id, "tok-rotation-0003", "reject-rotation-0003");
        assert_eq!((code, err["code"].as_str()), (400, Some("credential_rejected")));
        let after = status(&s, &id);
        assert_eq!(after["status"], "active");
        assert_eq!(after["credential"]["fingerprint"], before["credential"]["fingerprint"]);
        let (code, run) = s.owner("POST", &format!("/v1/connections/{id}/runs"), None);
        assert_eq!(code, 202);
        assert_eq!(s.wait_run(run["run_id"].as_str().unwrap())["status"], "succeeded", "the old credential still works");

        // A provider that cannot be asked is not a rejection: 502, nothing stored, the draft stays.
        let id = draft(&s, json!({}));
        let (code, err) = capture(&s, &id, "tok-down-0003", "down-provider-0003");
        assert_eq!((code, err["code"].as_str()), (502, Some("credential_probe_unavailable")));
        let st = status(&s, &id);
        assert_eq!((st["setup_state"].as_str(), st["credential"]["present"].as_bool()), (Some("awaiting_credential"), Some(false)));
    }
}

server_on_both_backends! {
    /// Scenario "Owner reads a durable connection-scoped setup status": it
    /// resolves a draft and an active connection, carries the identity, the
    /// run and the credential metadata, and never a secret.
    fn owner_reads_a_durable_connection_scoped_setup_status(b: Backend) {
        let s = serve_on(b);
        let token = "tok-status-secret-0004";
        let key = "sig-status-secret-0004";
        let id = draft(&s, json!({ "account": "carol", "count": 2 }));
        let pending = status(&s, &id);
        assert_eq!(pending["object"], "connection_setup_status");
        assert_eq!(pending["credential"]["present"], false);
        let (_, captured) = capture(&s, &id, token, key);
        s.wait_run(captured["first_sync"]["run_id"].as_str().unwrap());
        let st = status(&s, &id);
        for field in ["connection_id", "connector_id", "status", "setup_state", "health_state", "account_identity", "credential", "run"] {
            assert!(!st[field].is_null(), "{field} missing: {st}");
        }
        assert_eq!(st["credential"]["credential_kind"], "secret_bundle");
        assert_eq!(st["credential"]["status"], "active");
        assert_eq!(st["credential"]["fingerprint"].as_str().unwrap().len(), 64);
        assert!(st["credential"]["captured_at"].is_i64());
        let text = st.to_string();
        assert!(!text.contains(token) && !text.contains(key), "no secret in the setup status");
        assert!(!text.contains(&s.token), "no owner bearer in the setup status");
        let (code, _) = s.owner("GET", "/v1/connections/con_unknown/setup-status", None);
        assert_eq!(code, 404);
    }
}

server_on_both_backends! {
    /// Scenario "Failed first sync is visible with a non-secret remediation".
    fn failed_first_sync_is_visible_with_a_non_secret_remediation(b: Backend) {
        let s = serve_on(b);
        let key = "sig-failing-sync-0005";
        let id = draft(&s, json!({ "behavior": "fail_first" }));
        let (_, captured) = capture(&s, &id, "tok-failing-sync-0005", key);
        s.wait_run(captured["first_sync"]["run_id"].as_str().unwrap());
        let st = status(&s, &id);
        assert_eq!((st["status"].as_str(), st["setup_state"].as_str()), (Some("draft"), Some("first_sync_failed")));
        assert_eq!(st["health_state"], "needs_attention");
        assert_eq!(st["last_error"]["reason"], "upstream_unavailable");
        assert!(st["last_error"]["remediation"].as_str().unwrap().contains(&format!("/v1/connections/{id}/runs")));
        assert!(!st.to_string().contains(key));

        // A provider refusal during the first sync asks for the credential again.
        let id = draft(&s, json!({ "behavior": "reject_run" }));
        let (_, captured) = capture(&s, &id, "tok-refused-sync-0005", "sig-refused-sync-0005");
        s.wait_run(captured["first_sync"]["run_id"].as_str().unwrap());
        let st = status(&s, &id);
        assert_eq!(st["setup_state"], "first_sync_failed");
        assert_eq!(st["next_step"]["kind"], "capture_credential");
        assert!(st["last_error"]["remediation"].as_str().unwrap().starts_with("Enter the provider credential again"));
        assert_eq!(st["credential"]["status"], "rejected");
    }
}

server_on_both_backends! {
    /// A first sync that succeeds without records leaves a draft in its own
    /// state: verified empty when every checkpoint committed with no gaps.
    fn zero_record_first_sync_is_verified_empty_not_active(b: Backend) {
        let s = serve_on(b);
        let id = draft(&s, json!({ "behavior": "items", "count": 0 }));
        let (_, captured) = capture(&s, &id, "tok-empty-0006", "sig-empty-0006");
        let run = s.wait_run(captured["first_sync"]["run_id"].as_str().unwrap());
        assert_eq!(run["status"], "succeeded");
        let st = status(&s, &id);
        assert_eq!(st["status"], "draft", "zero records do not activate");
        assert_eq!(st["setup_state"], "first_sync_verified_empty");
        assert_eq!(st["terminal_setup_disposition"], "verified_empty");
    }
}

server_on_both_backends! {
    /// Scenario "Two accounts use the same connector type": two connection
    /// ids, separate credentials, neither run sees the other's.
    fn two_accounts_use_the_same_connector_type(b: Backend) {
        let s = serve_on(b);
        let a = draft(&s, json!({ "behavior": "secrets", "account": "acct-a" }));
        let bb = draft(&s, json!({ "behavior": "secrets", "account": "acct-b" }));
        assert_ne!(a, bb);
        let (_, ca) = capture(&s, &a, "tok-account-a-0007", "sig-account-a-0007");
        let (_, cb) = capture(&s, &bb, "tok-account-b-0007", "sig-account-b-0007");
        s.wait_run(ca["first_sync"]["run_id"].as_str().unwrap());
        s.wait_run(cb["first_sync"]["run_id"].as_str().unwrap());
        let sa = status(&s, &a);
        let sb = status(&s, &bb);
        assert_ne!(sa["credential"]["fingerprint"], sb["credential"]["fingerprint"]);
        assert_eq!((sa["account_identity"].as_str(), sb["account_identity"].as_str()), (Some("acct-a"), Some("acct-b")));
        // Each run revealed only its own signing key.
        let seen = |id: &str| {
            let (_, r) = s.owner("GET", &format!("/v1/records?connection_id={id}&stream=observations"), None);
            r["records"][0]["data"]["what"]["signing_key"].to_string()
        };
        assert!(seen(&a).contains("sig-account-a-0007") || seen(&a).contains("REDACTED"));
        assert!(!seen(&a).contains("sig-account-b-0007") && !seen(&bb).contains("sig-account-a-0007"));
        // Rotating one leaves the other untouched.
        let (code, _) = capture(&s, &a, "tok-account-a-rotated", "sig-account-a-rotated");
        assert_eq!(code, 200, "a rotation answers 200");
        assert_eq!(status(&s, &bb)["credential"]["fingerprint"], sb["credential"]["fingerprint"]);
    }
}

server_on_both_backends! {
    /// Scenario "A connector requires multiple bearer-equivalent values": one
    /// sealed bundle; non-secret setup fields are binding metadata; a secret
    /// is never accepted as a setting.
    fn multiple_bearer_values_are_one_sealed_bundle(b: Backend) {
        let s = serve_on(b);
        let id = draft(&s, json!({ "account": "dora" }));
        let (_, captured) = capture(&s, &id, "tok-bundle-0008", "sig-bundle-0008");
        assert_eq!(captured["credential"]["fields"], json!(["signing_key", "token"]));
        let (_, view) = s.owner("GET", &format!("/v1/connections/{id}"), None);
        assert_eq!(view["connection"]["settings"]["account"], "dora");
        let (code, e) = s.owner(
            "POST",
            "/v1/connections",
            Some(json!({ "connector_id": "probe", "settings": { "token": "tok-in-settings" } })),
        );
        assert_eq!((code, e["code"].as_str()), (400, Some("secret_in_settings")));
        assert!(!e.to_string().contains("tok-in-settings"));
    }
}

server_on_both_backends! {
    /// Scenario "Revoked connections remain owner-manageable": visible with
    /// id, connector, records, state and revoked_at; never runnable; a
    /// reconnect starts the setup path again.
    fn revoked_connections_remain_owner_manageable(b: Backend) {
        let s = serve_on(b);
        let id = draft(&s, json!({ "count": 2 }));
        let (_, captured) = capture(&s, &id, "tok-revoke-0009", "sig-revoke-0009");
        s.wait_run(captured["first_sync"]["run_id"].as_str().unwrap());
        let (code, revoked) = s.owner("POST", &format!("/v1/connections/{id}/revoke"), None);
        assert_eq!(code, 200, "{revoked}");
        assert_eq!(revoked["status"], "revoked");
        assert_eq!(revoked["record_counts"]["items"], 2);
        assert_eq!(revoked["next_step"]["kind"], "reconnect");
        let (_, list) = s.owner("GET", "/v1/connections?status=revoked", None);
        let row = &list["connections"][0];
        assert_eq!((row["connection_id"].as_str(), row["connector_id"].as_str()), (Some(id.as_str()), Some("probe")));
        assert_eq!(row["runnable"], false);
        assert!(row["revoked_at"].is_i64());
        let (code, e) = s.owner("POST", &format!("/v1/connections/{id}/runs"), None);
        assert_eq!((code, e["code"].as_str()), (409, Some("connection_not_runnable")));
        let (_, records) = s.owner("GET", &format!("/v1/records?connection_id={id}&stream=items"), None);
        assert_eq!(records["records"].as_array().unwrap().len(), 2, "records are kept");
        let (code, again) = s.owner("POST", &format!("/v1/connections/{id}/revoke"), None);
        assert_eq!((code, again["code"].as_str()), (409, Some("connection_state_conflict")));

        let (code, re) = s.owner("POST", &format!("/v1/connections/{id}/reconnect"), None);
        assert_eq!(code, 200, "{re}");
        let run = s.wait_run(re["first_sync"]["run_id"].as_str().unwrap());
        assert_eq!(run["trigger"], "setup");
        assert_eq!(status(&s, &id)["status"], "active");
    }
}

server_on_both_backends! {
    /// Delete erases one connection's records, state, credential and
    /// configuration in one transaction; refused while a run is active;
    /// siblings untouched; the audit trail keeps it.
    fn delete_erases_one_connection_and_keeps_its_sibling(b: Backend) {
        let s = serve_on(b);
        let keep = draft(&s, json!({ "count": 3 }));
        let gone = draft(&s, json!({ "count": 4 }));
        for id in [&keep, &gone] {
            let (_, c) = capture(&s, id, &format!("tok-{id}"), &format!("sig-{id}"));
            s.wait_run(c["first_sync"]["run_id"].as_str().unwrap());
        }
        // A parked run blocks deletion.
        let (code, _) = s.owner("PATCH", &format!("/v1/connections/{gone}"), Some(json!({ "display_name": "Work account" })));
        assert_eq!(code, 200);
        let busy = draft(&s, json!({ "behavior": "interact" }));
        let (_, c) = capture(&s, &busy, "tok-busy-0010", "sig-busy-0010");
        let busy_run = c["first_sync"]["run_id"].as_str().unwrap().to_owned();
        first_pending_interaction(&s, &busy_run);
        let (code, e) = s.owner("DELETE", &format!("/v1/connections/{busy}"), None);
        assert_eq!((code, e["code"].as_str()), (409, Some("connection_run_active")));

        let (code, report) = s.owner("DELETE", &format!("/v1/connections/{gone}"), None);
        assert_eq!(code, 200, "{report}");
        assert_eq!(report["deleted_records"], 4);
        assert_eq!(report["credential_deleted"], true);
        let (code, _) = s.owner("GET", &format!("/v1/connections/{gone}"), None);
        assert_eq!(code, 404);
        let (code, _) = s.owner("GET", &format!("/v1/records?connection_id={gone}&stream=items"), None);
        assert_eq!(code, 404);
        let (_, kept) = s.owner("GET", &format!("/v1/records?connection_id={keep}&stream=items"), None);
        assert_eq!(kept["records"].as_array().unwrap().len(), 3, "the sibling is untouched");
        let (_, audit) = s.owner("GET", &format!("/v1/audit?connection_id={gone}"), None);
        let actions: Vec<&str> = audit["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert!(actions.contains(&"connection.delete") && actions.contains(&"connection.rename"), "{actions:?}");
        let (code, e) = s.owner("PATCH", &format!("/v1/connections/{keep}"), Some(json!({ "display_name": "" })));
        assert_eq!((code, e["code"].as_str()), (400, Some("invalid_display_name")));
    }
}

server_on_both_backends! {
    /// Every owner mutation writes an audit event, and no audit event holds a secret.
    fn every_mutation_writes_an_audit_event_without_secrets(b: Backend) {
        let s = serve_on(b);
        let token = "tok-audit-planted-0011";
        let key = "sig-audit-planted-0011";
        let id = draft(&s, json!({}));
        let (_, c) = capture(&s, &id, token, key);
        s.wait_run(c["first_sync"]["run_id"].as_str().unwrap());
        s.owner("PATCH", &format!("/v1/connections/{id}"), Some(json!({ "display_name": "Mine" })));
        let (_, r) = s.owner("POST", &format!("/v1/connections/{id}/runs"), None);
        s.wait_run(r["run_id"].as_str().unwrap());
        s.owner("POST", &format!("/v1/connections/{id}/revoke"), None);
        let rejected = draft(&s, json!({}));
        capture(&s, &rejected, "tok-audit-rejected", "reject-audit-0011");
        let (_, audit) = s.owner("GET", "/v1/audit", None);
        let actions: Vec<&str> = audit["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        for expected in [
            "connection.create",
            "connection.credential.capture",
            "connection.activate",
            "connection.rename",
            "run.start",
            "connection.revoke",
            "connection.draft.retire",
        ] {
            assert!(actions.contains(&expected), "{expected} missing from {actions:?}");
        }
        let text = audit.to_string();
        for secret in [token, key, "tok-audit-rejected", "reject-audit-0011"] {
            assert!(!text.contains(secret), "the audit trail holds {secret}");
        }
    }
}

server_on_both_backends! {
    /// Records are read a page at a time with an opaque cursor, and filtered by time.
    fn records_are_paged_by_cursor_and_filtered_by_time(b: Backend) {
        let s = serve_on(b);
        let id = draft(&s, json!({ "count": 25 }));
        let (_, c) = capture(&s, &id, "tok-pages-0012", "sig-pages-0012");
        s.wait_run(c["first_sync"]["run_id"].as_str().unwrap());
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let after = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
            let (code, page) = s.owner("GET", &format!("/v1/records?connection_id={id}&stream=items&limit=10{after}"), None);
            assert_eq!(code, 200, "{page}");
            pages += 1;
            keys.extend(page["records"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap().to_owned()));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!((pages, keys.len()), (3, 25));
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 25, "no record twice, none skipped");
        let window = |q: &str| {
            let (_, p) = s.owner("GET", &format!("/v1/records?connection_id={id}&stream=items&limit=1000{q}"), None);
            p["records"].as_array().unwrap().len()
        };
        assert_eq!(window("&since=2000-01-01T00:00:00Z"), 25);
        assert_eq!(window("&since=2999-01-01T00:00:00Z"), 0);
        assert_eq!(window("&until=2000-01-01T00:00:00Z"), 0);
        for (q, code) in [("&limit=0", "invalid_limit"), ("&cursor=%21%21", "invalid_cursor"), ("&since=yesterday", "invalid_time")] {
            let (status, e) = s.owner("GET", &format!("/v1/records?connection_id={id}&stream=items{q}"), None);
            assert_eq!((status, e["code"].as_str()), (400, Some(code)));
        }
    }
}

#[test]
fn run_events_stream_as_server_sent_events() {
    let s = serve_on(Backend::Sqlite);
    let (_, created) = s.owner(
        "POST",
        "/v1/connections",
        Some(json!({ "connector_id": "demo", "settings": { "contacts": 3, "events": 1 } })),
    );
    let run_id = created["first_sync"]["run_id"].as_str().unwrap().to_owned();
    // Opened while the run may still be going: the stream follows it to the end.
    let (code, text) = call_raw(&s, "GET", &format!("/v1/runs/{run_id}/events"), Some(&s.token), None);
    assert_eq!(code, 200);
    assert!(text.contains("event: run.started"), "{text}");
    assert!(text.contains("event: run.completed"), "{text}");
    assert!(text.contains("event: connection.activated"), "{text}");
    let last_id = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .next_back()
        .unwrap()
        .to_owned();
    // Resuming after the last event sends nothing more.
    let (_, rest) = call_raw(
        &s,
        "GET",
        &format!("/v1/runs/{run_id}/events?after={last_id}"),
        Some(&s.token),
        None,
    );
    assert!(!rest.contains("event:"), "{rest}");
    let (code, _) = call_raw(&s, "GET", "/v1/runs/run_missing/events", Some(&s.token), None);
    assert_eq!(code, 404);
}

#[test]
fn openapi_document_describes_every_route_without_auth() {
    let s = serve_on(Backend::Sqlite);
    let (code, doc) = call(&s, "GET", "/openapi.json", None, None);
    assert_eq!(code, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/connectors",
        "/v1/connections",
        "/v1/connections/{id}",
        "/v1/connections/{id}/setup-status",
        "/v1/connections/{id}/credential",
        "/v1/connections/{id}/revoke",
        "/v1/connections/{id}/reconnect",
        "/v1/connections/{id}/runs",
        "/v1/runs/{id}",
        "/v1/runs/{id}/events",
        "/v1/runs/{id}/cancel",
        "/v1/records",
        "/v1/audit",
        "/v1/interactions",
        "/v1/interactions/{id}",
    ] {
        assert!(paths.contains_key(p), "{p} is not in the document");
    }
    assert!(doc["components"]["schemas"]["SetupStatus"].is_object());
    assert_eq!(doc["components"]["securitySchemes"]["owner"]["scheme"], "bearer");
    // The run-start body is optional and names the collection mode.
    let body = &doc["paths"]["/v1/connections/{id}/runs"]["post"]["requestBody"];
    assert_ne!(body["required"], true, "{body}");
    assert!(body["content"]["application/json"].is_object(), "{body}");
    let modes = &doc["components"]["schemas"]["RunMode"]["enum"];
    assert_eq!(*modes, json!(["incremental", "full_refresh"]), "{modes}");
}

#[test]
fn tombstoned_connector_refuses_new_connections_and_keeps_existing_data_readable() {
    let s = serve_on(Backend::Sqlite);
    let id = draft(&s, json!({ "count": 2 }));
    let (_, c) = capture(&s, &id, "tok-tombstone-0013", "sig-tombstone-0013");
    s.wait_run(c["first_sync"]["run_id"].as_str().unwrap());
    // The service shuts down: the plugin is replaced by a tombstone manifest.
    let plugins = s.dir.path().join("plugins");
    let mut tombstone: Value = serde_json::from_str(&std::fs::read_to_string(probe_manifest_path()).unwrap()).unwrap();
    tombstone["lifecycle"] =
        json!({ "status": "removed", "reason": "the service shut down on 2025-07-08", "since": "2025-07-08" });
    std::fs::write(plugins.join("probe.json.tmp"), tombstone.to_string()).unwrap();
    std::fs::remove_file(plugins.join("probe.wasm")).unwrap();
    std::fs::rename(plugins.join("probe.json.tmp"), plugins.join("probe.json")).unwrap();
    eventually("the catalog to show the tombstone", || {
        let (_, cat) = s.owner("GET", "/v1/connectors/probe", None);
        cat["availability"] == "removed"
    });
    let (_, cat) = s.owner("GET", "/v1/connectors/probe", None);
    assert_eq!(cat["setup"]["support_state"], "unsupported");
    assert!(cat["setup"]["reason"].as_str().unwrap().contains("shut down"));
    let (code, e) = s.owner("POST", "/v1/connections", Some(json!({ "connector_id": "probe" })));
    assert_eq!((code, e["code"].as_str()), (409, Some("connector_removed")));
    assert!(e["message"].as_str().unwrap().contains("shut down on 2025-07-08"));
    let (_, records) = s.owner("GET", &format!("/v1/records?connection_id={id}&stream=items"), None);
    assert_eq!(
        records["records"].as_array().unwrap().len(),
        2,
        "data already collected stays readable"
    );
    // The hot reload reached the store too (it follows within half a second).
    let rt = tokio::runtime::Runtime::new().unwrap();
    sqlx::any::install_default_drivers();
    let stored = || {
        rt.block_on(async {
            let pool = sqlx::AnyPool::connect(&s.database_url).await.unwrap();
            let row: (String,) = sqlx::query_as("SELECT availability FROM connectors WHERE connector_id = 'probe'")
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            row.0
        })
    };
    eventually("the store to record the tombstone", || stored() == "removed");
}

#[test]
fn serve_refuses_a_configuration_file_with_a_typo() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pdpp-host.toml");
    std::fs::write(&config, "bnd = \"127.0.0.1:0\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pdpp-host"))
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bnd") && err.contains("pdpp-host.toml"), "{err}");
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

server_on_both_backends! {
    /// A `credentials` answer is never stored, except when the owner asks to
    /// save it: then only the declared fields go into this connection's
    /// sealed bundle.
    fn credentials_answer_is_saved_into_the_sealed_bundle_only_when_asked(b: Backend) {
        let s = serve_on(b);
        let id = draft(&s, json!({ "behavior": "interact", "kind": "credentials" }));
        let (_, c) = capture(&s, &id, "tok-before-answer-0014", "sig-before-answer-0014");
        let run_id = c["first_sync"]["run_id"].as_str().unwrap().to_owned();
        let before = status(&s, &id)["credential"]["fingerprint"].clone();
        let ix = first_pending_interaction(&s, &run_id);
        let answer = json!({ "token": "tok-from-answer-0014", "signing_key": "sig-from-answer-0014", "otp_seed": "x" });
        let (code, ack) = s.owner(
            "POST",
            &format!("/v1/interactions/{ix}"),
            Some(json!({ "status": "success", "data": answer, "save_credentials": true })),
        );
        assert_eq!(code, 200, "{ack}");
        assert_eq!(ack["credentials_saved"], json!(["token", "signing_key"]), "only declared fields");
        s.wait_run(&run_id);
        let after = status(&s, &id)["credential"]["fingerprint"].clone();
        assert_ne!(before, after, "the bundle was re-sealed with the answer");
        let (_, run) = s.owner("GET", &format!("/v1/runs/{run_id}"), None);
        let (_, records) = s.owner("GET", &format!("/v1/records?connection_id={id}&stream=observations"), None);
        let (_, audit) = s.owner("GET", "/v1/audit", None);
        let text = format!("{run}{records}{audit}{ack}");
        assert!(!text.contains("tok-from-answer-0014") && !text.contains("sig-from-answer-0014"));
        // Without the flag nothing is saved.
        let (code, started) = s.owner("POST", &format!("/v1/connections/{id}/runs"), None);
        assert_eq!(code, 202, "{started}");
        let second = started["run_id"].as_str().unwrap().to_owned();
        let ix = first_pending_interaction(&s, &second);
        s.owner("POST", &format!("/v1/interactions/{ix}"), Some(json!({ "status": "success", "data": { "token": "tok-not-saved-0014" } })));
        s.wait_run(&second);
        assert_eq!(status(&s, &id)["credential"]["fingerprint"], after);
    }
}

/// The seed's per-platform verdicts as the catalog shows them: Pocket is a
/// tombstone, Spotify is blocked upstream; neither takes a connection.
#[test]
fn pocket_tombstone_and_spotify_block_show_in_the_catalog_and_refuse_setup() {
    let s = serve_with(
        ServeOptions::default()
            .plugin("demo", &demo_manifest_path())
            .listing(&workspace().join("manifests/pocket.json"))
            .listing(&workspace().join("manifests/spotify.json")),
    );
    let (_, catalog) = s.owner("GET", "/v1/connectors", None);
    let find = |id: &str| {
        catalog["connectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["connector_id"] == id)
            .unwrap_or_else(|| panic!("{id} is not listed: {catalog}"))
            .clone()
    };
    let pocket = find("pocket");
    assert_eq!(pocket["availability"], "removed");
    assert_eq!(pocket["setup"]["support_state"], "unsupported");
    assert!(
        pocket["setup"]["reason"].as_str().unwrap().contains("2025-07-08"),
        "{pocket}"
    );
    let spotify = find("spotify");
    assert_eq!(spotify["availability"], "blocked_upstream");
    assert_eq!(spotify["setup"]["support_state"], "unsupported");
    assert!(
        spotify["setup"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("blocked upstream")
    );
    assert!(catalog["broken"].as_array().unwrap().is_empty(), "{catalog}");
    for (id, code) in [
        ("pocket", "connector_removed"),
        ("spotify", "connector_blocked_upstream"),
    ] {
        let (status, e) = s.owner("POST", "/v1/connections", Some(json!({ "connector_id": id })));
        assert_eq!((status, e["code"].as_str()), (409, Some(code)), "{e}");
    }
    let (_, connections) = s.owner("GET", "/v1/connections", None);
    assert!(connections["connections"].as_array().unwrap().is_empty());
}

server_on_both_backends! {
    /// Several processes share one database: a CLI command opening it next to
    /// a serving host leaves the host's run alone, and a second run of the
    /// same connection from another process is refused while one is in progress.
    fn processes_sharing_a_database_never_interrupt_or_double_run_a_connection(b: Backend) {
        let s = serve_on(b);
        let id = draft(&s, json!({ "behavior": "interact" }));
        let (_, c) = capture(&s, &id, "tok-shared-db-0015", "sig-shared-db-0015");
        let first = c["first_sync"]["run_id"].as_str().unwrap().to_owned();
        let ix = first_pending_interaction(&s, &first);
        s.owner("POST", &format!("/v1/interactions/{ix}"), Some(json!({ "status": "success", "data": {} })));
        s.wait_run(&first);
        // A manual run of the now active connection parks on its question.
        let (_, started) = s.owner("POST", &format!("/v1/connections/{id}/runs"), None);
        let run_id = started["run_id"].as_str().unwrap().to_owned();
        let ix = first_pending_interaction(&s, &run_id);
        let data = s.dir.path().join("data");
        let data = data.to_str().unwrap();
        let url = s.database_url.clone();
        // Opening the deployment runs the recovery of interrupted runs.
        let (code, _, err) = cli(&["runs", "list", "--connection", &id, "--data-dir", data, "--database-url", &url], &[], None);
        assert_eq!(code, 0, "{err}");
        let (_, now) = s.owner("GET", &format!("/v1/runs/{run_id}"), None);
        assert_eq!(now["run"]["status"], "running", "the CLI left the host's run alone: {now}");
        let wasm = guest_path("probe");
        let manifest = probe_manifest_path();
        let (code, _, err) = cli(
            &[
                "run", wasm.to_str().unwrap(), "--manifest", manifest.to_str().unwrap(),
                "--connection", &id, "--data-dir", data, "--database-url", &url,
            ],
            &[],
            None,
        );
        assert_ne!(code, 0, "a second run of the same connection is refused: {err}");
        assert!(err.contains("already has a run in progress"), "{err}");
        let (code, _) = s.owner("POST", &format!("/v1/interactions/{ix}"), Some(json!({ "status": "success", "data": { "code": "1" } })));
        assert_eq!(code, 200, "the host's run was not marked interrupted");
        let run = s.wait_run(&run_id);
        assert_eq!(run["status"], "succeeded", "{run}");
    }
}

/// `serve` reads its TOML file, the environment overrides the file, and a
/// flag overrides both.
#[test]
fn serve_configuration_file_is_overridden_by_environment_and_flags() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pdpp-host.toml");
    let from_file = dir.path().join("file-data");
    let from_env = dir.path().join("env-data");
    let plugins = dir.path().join("file-plugins");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nplugin_dir = {:?}\nbind = \"127.0.0.1:1\"\n[limits]\nwall_clock_seconds = 5\n",
            from_file.display().to_string(),
            plugins.display().to_string()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pdpp-host"))
        .args(["serve", "--bind", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("PDPP_DATA_DIR", &from_env)
        .env_remove("PDPP_DATABASE_URL")
        .env_remove("PDPP_PLUGIN_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("serving the owner API") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "serve stopped early");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.contains("http://127.0.0.1:") && !line.contains(":1 "),
        "the flag's bind won: {line}"
    );
    assert!(
        line.contains(&plugins.display().to_string()),
        "the file's plugin dir: {line}"
    );
    assert!(
        from_env.join("owner-token.sha256").exists(),
        "the environment's data dir won"
    );
    assert!(!from_file.exists(), "the file's data dir was overridden");
}
