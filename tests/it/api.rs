//! The owner API through the real `pdpp-host serve` process over loopback
//! HTTP, with the real store, vault and wasm connectors.

use crate::server::*;
use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn serve() -> Server {
    serve_with(
        ServeOptions::default()
            .plugin("demo", &demo_manifest_path())
            .plugin("probe", &probe_manifest_path()),
    )
}

#[test]
fn every_route_needs_the_owner_token_except_health() {
    let s = serve();
    assert_eq!(call(&s, "GET", "/healthz", None, None).0, 200);
    let (status, body) = call(&s, "GET", "/v1/connectors", None, None);
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));
    let (status, _) = call(&s, "GET", "/v1/connections", Some("pdpp_owner_wrong"), None);
    assert_eq!(status, 401);
    assert_eq!(call(&s, "GET", "/v1/connections", Some(&s.token), None).0, 200);
}

#[test]
fn owner_connects_the_demo_runs_it_and_reads_records() {
    let s = serve();
    let t = Some(s.token.as_str());
    let (status, catalog) = call(&s, "GET", "/v1/connectors", t, None);
    assert_eq!(status, 200);
    let demo = catalog["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["connector_id"] == "demo")
        .unwrap()
        .clone();
    assert_eq!(demo["setup"]["setup_modality"], "none");
    assert_eq!(demo["setup"]["support_state"], "supported");

    let (status, created) = call(
        &s,
        "POST",
        "/v1/connections",
        t,
        Some(json!({ "connector_id": "demo", "settings": { "contacts": 4, "events": 2 } })),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["connection"]["status"], "draft",
        "a connection is a draft until its first sync ingests records"
    );
    let first = s.wait_run(created["first_sync"]["run_id"].as_str().unwrap());
    assert_eq!(first["status"], "succeeded");
    let (_, view) = call(&s, "GET", &format!("/v1/connections/{id}"), t, None);
    assert_eq!(view["connection"]["status"], "active");

    let (status, started) = call(&s, "POST", &format!("/v1/connections/{id}/runs"), t, None);
    assert_eq!(status, 202);
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = loop {
        let (status, r) = call(&s, "GET", &format!("/v1/runs/{run_id}"), t, None);
        if status == 200 && r["run"]["status"] != "running" {
            break r;
        }
        assert!(Instant::now() < deadline, "the run did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(
        run["events"].as_array().unwrap().last().unwrap()["kind"],
        "run.completed"
    );

    let (status, records) = call(
        &s,
        "GET",
        &format!("/v1/records?connection_id={id}&stream=contacts"),
        t,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(records["records"].as_array().unwrap().len(), 4);
    let (_, view) = call(&s, "GET", &format!("/v1/connections/{id}"), t, None);
    assert_eq!(view["last_run"]["run_id"], run_id.as_str());
    assert_eq!(started["collection_mode"], "incremental", "no body: an incremental run");

    // The run-start body names a mode; anything else is refused before a run starts.
    let runs = format!("/v1/connections/{id}/runs");
    for bad in [
        json!({ "mode": "sideways" }),
        json!({ "mode": "full_refresh", "also": 1 }),
        json!(["full_refresh"]),
    ] {
        let (status, e) = call(&s, "POST", &runs, t, Some(bad.clone()));
        assert_eq!((status, e["code"].as_str()), (400, Some("invalid_body")), "{bad}: {e}");
    }
    let (status, started) = call(&s, "POST", &runs, t, Some(json!({ "mode": "full_refresh" })));
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["collection_mode"], "full_refresh");
    let run = s.wait_run(started["run_id"].as_str().unwrap());
    assert_eq!(
        (&run["status"], &run["collection_mode"]),
        (&json!("succeeded"), &json!("full_refresh"))
    );
    let (_, records) = call(
        &s,
        "GET",
        &format!("/v1/records?connection_id={id}&stream=contacts"),
        t,
        None,
    );
    assert_eq!(
        records["records"].as_array().unwrap().len(),
        4,
        "the full refresh returned them all again"
    );
    let (_, list) = call(&s, "GET", &runs, t, None);
    assert_eq!(
        list["runs"].as_array().unwrap().len(),
        3,
        "the refused bodies started no run"
    );
}

#[test]
fn credential_capture_never_returns_the_secret_and_bad_bundles_store_nothing() {
    let s = serve();
    let t = Some(s.token.as_str());
    let (status, created) = call(
        &s,
        "POST",
        "/v1/connections",
        t,
        Some(json!({ "connector_id": "probe" })),
    );
    assert_eq!(status, 201);
    assert_eq!(created["setup"]["setup_state"], "awaiting_credential");
    let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
    let secret = "api-planted-credential-551e";
    let (status, body) = call(
        &s,
        "PUT",
        &format!("/v1/connections/{id}/credential"),
        t,
        Some(json!({ "kind": "secret_bundle", "fields": { "token": secret, "signing_key": "sig-planted-7731" } })),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["credential"]["present"], true);
    assert_eq!(body["credential"]["fields"], json!(["signing_key", "token"]));
    s.wait_run(body["first_sync"]["run_id"].as_str().unwrap());
    let (_, view) = call(&s, "GET", &format!("/v1/connections/{id}"), t, None);
    assert_eq!(view["connection"]["status"], "active");
    assert!(
        !format!("{body}{view}").contains(secret),
        "no API response carries the secret"
    );
    // Bad bundles are typed 400s that store nothing.
    for (bad, code) in [
        (
            json!({ "kind": "api_key", "fields": { "token": "x" } }),
            "credential_kind_mismatch",
        ),
        (
            json!({ "kind": "secret_bundle", "fields": { "token": "only-one" } }),
            "missing_credential",
        ),
        (
            json!({ "kind": "secret_bundle", "fields": { "token": "a", "signing_key": "b", "GITHUB_TOKEN": "c" } }),
            "unknown_credential_field",
        ),
        (json!({ "kind": "secret_bundle" }), "invalid_body"),
    ] {
        let (status, err) = call(&s, "PUT", &format!("/v1/connections/{id}/credential"), t, Some(bad));
        assert_eq!((status, err["code"].as_str()), (400, Some(code)), "{err}");
    }
    let (_, after) = call(&s, "GET", &format!("/v1/connections/{id}"), t, None);
    assert_eq!(
        after["credential"]["fingerprint"], view["credential"]["fingerprint"],
        "the stored credential is untouched"
    );
}

#[test]
fn bad_requests_get_typed_errors() {
    let s = serve();
    let t = Some(s.token.as_str());
    let (status, e) = call(&s, "POST", "/v1/connections", t, Some(json!({ "nope": 1 })));
    assert_eq!((status, e["code"].as_str()), (400, Some("invalid_body")));
    let (status, e) = call(
        &s,
        "POST",
        "/v1/connections",
        t,
        Some(json!({ "connector_id": "ghost" })),
    );
    assert_eq!((status, e["code"].as_str()), (404, Some("not_found")));
    let (status, _) = call(&s, "GET", "/v1/runs/run_missing", t, None);
    assert_eq!(status, 404);
    let (status, _) = call(&s, "POST", "/v1/runs/run_missing/cancel", t, None);
    assert_eq!(status, 404);
    let (status, e) = call(&s, "GET", "/v1/records?stream=contacts", t, None);
    assert_eq!((status, e["code"].as_str()), (400, Some("invalid_query")));
}

#[test]
fn owner_answers_an_interaction_over_http_and_the_answer_is_never_kept() {
    let s = serve();
    let t = Some(s.token.as_str());
    let (_, created) = call(
        &s,
        "POST",
        "/v1/connections",
        t,
        Some(json!({ "connector_id": "demo", "settings": { "require_otp": true, "contacts": 2, "events": 0 } })),
    );
    let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
    // The first sync started by itself and now waits for the owner.
    let run_id = created["first_sync"]["run_id"].as_str().unwrap().to_owned();
    let (status, e) = call(&s, "POST", &format!("/v1/connections/{id}/runs"), t, None);
    assert_eq!((status, e["code"].as_str()), (409, Some("run_already_active")));
    let deadline = Instant::now() + Duration::from_secs(30);
    let pending = loop {
        let (_, list) = call(&s, "GET", "/v1/interactions", t, None);
        if let Some(i) = list["interactions"].as_array().unwrap().first() {
            break i.clone();
        }
        assert!(Instant::now() < deadline, "no interaction appeared");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (pending["kind"].as_str(), pending["run_id"].as_str()),
        (Some("otp"), Some(run_id.as_str()))
    );
    let ix = pending["interaction_id"].as_str().unwrap();
    let (status, _) = call(
        &s,
        "POST",
        "/v1/interactions/nope",
        t,
        Some(json!({ "status": "success" })),
    );
    assert_eq!(status, 404, "an unknown or stale interaction id");
    let (status, e) = call(
        &s,
        "POST",
        &format!("/v1/interactions/{ix}"),
        t,
        Some(json!({ "status": "timeout" })),
    );
    assert_eq!((status, e["code"].as_str()), (400, Some("invalid_status")));
    let code = "864213";
    let (status, answered) = call(
        &s,
        "POST",
        &format!("/v1/interactions/{ix}"),
        t,
        Some(json!({ "status": "success", "data": { "code": code } })),
    );
    assert_eq!(status, 200, "{answered}");
    let run = loop {
        let (_, r) = call(&s, "GET", &format!("/v1/runs/{run_id}"), t, None);
        if r["run"]["status"] != "running" {
            break r;
        }
        assert!(Instant::now() < deadline, "the run did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let kinds: Vec<&str> = run["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"run.interaction_required") && kinds.contains(&"run.interaction_completed"));
    assert!(
        !format!("{run}{answered}").contains(code),
        "the answer is never stored or returned"
    );
    let (status, _) = call(
        &s,
        "POST",
        &format!("/v1/interactions/{ix}"),
        t,
        Some(json!({ "status": "success" })),
    );
    assert_eq!(status, 404, "answered once");
}

/// What the OpenAPI document declares is what the server answers: the
/// contract fixes of docs/api.md#the-openapi-document, on the real server.
#[test]
fn the_server_answers_what_its_openapi_document_declares() {
    let s = serve();
    let t = Some(s.token.as_str());
    let (_, doc) = call(&s, "GET", "/openapi.json", None, None);
    let declared = |method: &str, path: &str, status: u16| {
        let responses = &doc["paths"][path][method]["responses"];
        assert!(
            responses.get(status.to_string()).is_some(),
            "{method} {path} does not declare {status}: {responses}"
        );
    };
    let (status, e) = call(&s, "GET", "/v1/connections", Some("pdpp_owner_wrong"), None);
    assert_eq!((status, e["code"].as_str()), (401, Some("unauthenticated")));
    declared("get", "/v1/connections", 401);

    let (status, created) = call(
        &s,
        "POST",
        "/v1/connections",
        t,
        Some(json!({ "connector_id": "demo", "display_name": "Mine", "settings": { "contacts": 3, "events": 1 } })),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
    let run = s.wait_run(created["first_sync"]["run_id"].as_str().unwrap());
    assert_eq!(run["status"], "succeeded", "{run}");

    // A change names at least one known field, and none is `null`.
    let path = format!("/v1/connections/{id}");
    for body in [
        json!({}),
        json!({ "display_name": null }),
        json!({ "settings": null, "display_name": "Mine" }),
        json!({ "nickname": "Mine" }),
        json!({ "display_name": " \u{3000}\t" }),
        json!({ "display_name": "a".repeat(201) }),
    ] {
        let (status, e) = call(&s, "PATCH", &path, t, Some(body.clone()));
        assert_eq!(status, 400, "{body}: {e}");
        assert!(
            matches!(
                e["code"].as_str(),
                Some("invalid_body" | "invalid_display_name" | "invalid_settings")
            ),
            "{body}: {e}"
        );
    }
    declared("patch", "/v1/connections/{id}", 400);
    let (status, view) = call(&s, "PATCH", &path, t, Some(json!({ "display_name": "a".repeat(200) })));
    assert_eq!(status, 200, "{view}");
    // A mode this connector does not offer is a conflict with the connector, not a bad request.
    let (status, e) = call(&s, "PATCH", &path, t, Some(json!({ "browser_session": "ephemeral" })));
    assert_eq!(
        (status, e["code"].as_str()),
        (409, Some("browser_session_mode_not_offered"))
    );
    declared("patch", "/v1/connections/{id}", 409);

    // A path parameter that is not UTF-8 is a typed 400.
    let (status, e) = call(&s, "GET", "/v1/runs/%FF", t, None);
    assert_eq!((status, e["code"].as_str()), (400, Some("invalid_request")), "{e}");
    declared("get", "/v1/runs/{id}", 400);

    // Every string of the cursor's documented pattern is a position; others are refused.
    let records = |cursor: &str| {
        call(
            &s,
            "GET",
            &format!("/v1/records?connection_id={id}&stream=contacts&cursor={cursor}"),
            t,
            None,
        )
    };
    let pattern = doc["paths"]["/v1/records"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cursor")
        .unwrap()["schema"]["pattern"]
        .clone();
    assert_eq!(pattern, "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$");
    for cursor in ["", "_w", "AAA", "8_-z"] {
        let (status, page) = records(cursor);
        assert_eq!(status, 200, "{cursor:?}: {page}");
    }
    for cursor in ["a", "abcde", "%21%21"] {
        let (status, e) = records(cursor);
        assert_eq!(
            (status, e["code"].as_str()),
            (400, Some("invalid_cursor")),
            "{cursor:?}"
        );
    }

    // The run-start body is optional and nullable: `null` is no body.
    let (status, started) = call_raw(
        &s,
        "POST",
        &format!("/v1/connections/{id}/runs"),
        t,
        Some("null".into()),
    );
    assert_eq!(status, 202, "{started}");

    // The cancel answer is one of the declared results.
    let run_id = serde_json::from_str::<serde_json::Value>(&started).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.wait_run(&run_id);
    let (status, cancelled) = call(&s, "POST", &format!("/v1/runs/{run_id}/cancel"), t, None);
    assert_eq!(status, 200);
    assert_eq!(cancelled, json!({ "run_id": run_id, "result": "already_terminal" }));
    let results = &doc["components"]["schemas"]["CancelResult"]["enum"];
    assert_eq!(*results, json!(["cancel_requested", "already_terminal"]));
}

/// The schema the document declares for `method path` answering `status`,
/// as a validator (its `$ref`s resolve in the document's components).
fn declared_schema(doc: &serde_json::Value, method: &str, path: &str, status: u16) -> jsonschema::Validator {
    let mut response = doc["paths"][path][method]["responses"][status.to_string()].clone();
    if let Some(r) = response["$ref"].as_str() {
        response = doc["components"]["responses"][r.rsplit('/').next().unwrap()].clone();
    }
    let content = response["content"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} {status}: no content"));
    let (_, media) = content.iter().next().unwrap();
    let mut schema = media["schema"].clone();
    schema["components"] = doc["components"].clone();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{method} {path} {status}: {e}"))
}

/// Each response of a connection's life — including the interaction routes,
/// which schemathesis cannot reach by itself (no operation makes a run ask)
/// — fits the schema the document declares for its status, and every
/// Server-Sent Event fits the declared event schema.
#[test]
fn every_response_of_a_connections_life_fits_the_openapi_document() {
    let s = serve();
    let t = Some(s.token.as_str());
    let (_, doc) = call(&s, "GET", "/openapi.json", None, None);
    // The validators bite: a body missing what the schema requires fails.
    let created_schema = declared_schema(&doc, "post", "/v1/connections", 201);
    assert!(!created_schema.is_valid(&json!({ "connection": {} })));
    let check = |method: &str, path: &str, template: &str, body: Option<serde_json::Value>| {
        let (status, answer) = call(&s, &method.to_uppercase(), path, t, body);
        let validator = declared_schema(&doc, method, template, status);
        if let Some(e) = validator.iter_errors(&answer).next() {
            panic!("{method} {path} {status}: {e} at {} in {answer}", e.instance_path());
        }
        (status, answer)
    };
    let (status, created) = check(
        "post",
        "/v1/connections",
        "/v1/connections",
        Some(json!({ "connector_id": "demo", "settings": { "require_otp": true, "contacts": 3, "events": 1 } })),
    );
    assert_eq!(status, 201);
    let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
    let run_id = created["first_sync"]["run_id"].as_str().unwrap().to_owned();
    check("get", "/v1/connectors", "/v1/connectors", None);
    check("get", "/v1/connectors/demo", "/v1/connectors/{id}", None);
    check("get", "/v1/connectors/ghost", "/v1/connectors/{id}", None);
    check(
        "post",
        &format!("/v1/connections/{id}/runs"),
        "/v1/connections/{id}/runs",
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let pending = loop {
        let (_, list) = check(
            "get",
            &format!("/v1/interactions?run_id={run_id}"),
            "/v1/interactions",
            None,
        );
        if let Some(i) = list["interactions"].as_array().unwrap().first() {
            break i.clone();
        }
        assert!(Instant::now() < deadline, "no interaction appeared");
        std::thread::sleep(Duration::from_millis(50));
    };
    let ix = pending["interaction_id"].as_str().unwrap();
    let answer = |body: serde_json::Value| {
        check(
            "post",
            &format!("/v1/interactions/{ix}"),
            "/v1/interactions/{id}",
            Some(body),
        )
    };
    assert_eq!(answer(json!({ "status": "success", "data": { "code": 7 } })).0, 400);
    assert_eq!(answer(json!({ "status": "later" })).0, 400);
    check(
        "get",
        &format!("/v1/interactions/{ix}/screenshot"),
        "/v1/interactions/{id}/screenshot",
        None,
    );
    let (status, answered) = answer(json!({ "status": "success", "data": { "code": "123456" } }));
    assert_eq!((status, answered["status"].as_str()), (200, Some("success")));
    assert_eq!(answer(json!({ "status": "cancelled" })).0, 404);
    let run = s.wait_run(&run_id);
    assert_eq!(run["status"], "succeeded", "{run}");

    check("get", &format!("/v1/runs/{run_id}"), "/v1/runs/{id}", None);
    check("get", &format!("/v1/connections/{id}"), "/v1/connections/{id}", None);
    check("get", "/v1/connections", "/v1/connections", None);
    check(
        "get",
        &format!("/v1/connections/{id}/setup-status?run_id={run_id}"),
        "/v1/connections/{id}/setup-status",
        None,
    );
    check(
        "get",
        &format!("/v1/connections/{id}/runs"),
        "/v1/connections/{id}/runs",
        None,
    );
    let (_, page) = check(
        "get",
        &format!("/v1/records?connection_id={id}&stream=contacts&limit=2"),
        "/v1/records",
        None,
    );
    assert_eq!(page["records"].as_array().map(Vec::len), Some(2));
    check("get", &format!("/v1/audit?connection_id={id}"), "/v1/audit", None);

    // The timeline as Server-Sent Events: each event fits the declared one.
    let (status, text) = call_raw(&s, "GET", &format!("/v1/runs/{run_id}/events"), t, None);
    assert_eq!(status, 200);
    let event_schema = declared_schema(&doc, "get", "/v1/runs/{id}/events", 200);
    let mut events = 0;
    for block in text
        .split("\n\n")
        .filter(|b| b.lines().any(|l| l.starts_with("event:")))
    {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .map(|v| v.trim_start().to_owned())
        };
        let event = json!({ "event": field("event"), "id": field("id"), "data": field("data") });
        assert!(event_schema.is_valid(&event), "{event}");
        serde_json::from_str::<serde_json::Value>(event["data"].as_str().unwrap()).expect("data is JSON");
        events += 1;
    }
    assert!(events >= 3, "{text}");

    check(
        "post",
        &format!("/v1/runs/{run_id}/cancel"),
        "/v1/runs/{id}/cancel",
        None,
    );
    let (status, _) = check(
        "post",
        &format!("/v1/connections/{id}/revoke"),
        "/v1/connections/{id}/revoke",
        None,
    );
    assert_eq!(status, 200);
    check(
        "post",
        &format!("/v1/connections/{id}/revoke"),
        "/v1/connections/{id}/revoke",
        None,
    );
    let (status, _) = check("delete", &format!("/v1/connections/{id}"), "/v1/connections/{id}", None);
    assert_eq!(status, 200);
    check("get", &format!("/v1/connections/{id}"), "/v1/connections/{id}", None);
}
