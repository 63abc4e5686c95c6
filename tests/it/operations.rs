//! Operating the host through real processes: revoking or deleting a
//! connection stops its run, a lost vault key is never silently replaced,
//! backups restore, the owner token can be reset, interrupted runs are
//! closed with their questions, refused answers leave the question pending.

use crate::on_both_backends;
use crate::server::*;
use crate::server_on_both_backends;
use crate::setup::{capture, draft, eventually, first_pending_interaction, serve_on};
use crate::support::*;
use pdpp_host::deploy::{DeployError, Deployment};
use pdpp_host::vault::Bundle;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

async fn scalar(url: &str, sql: &str, bind: &str) -> Option<i64> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let row: (Option<i64>,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(bind.to_owned())
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    row.0
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

server_on_both_backends! {
    /// Revoke cancels the connection's run in progress, and no record is
    /// committed after `revoked_at`.
    fn revoke_stops_the_running_run_and_nothing_is_committed_after_it(b: Backend) {
        let s = serve_on(b);
        let id = draft(&s, json!({ "behavior": "many" }));
        let (code, c) = capture(&s, &id, "tok-revoke-0001", "sig-revoke-0001");
        assert_eq!(code, 201, "{c}");
        let run_id = c["first_sync"]["run_id"].as_str().unwrap().to_owned();
        // Collecting, and active since its first ingest.
        eventually("the connection is active", || {
            s.owner("GET", &format!("/v1/connections/{id}"), None).1["connection"]["status"] == "active"
        });
        let (code, revoked) = s.owner("POST", &format!("/v1/connections/{id}/revoke"), None);
        assert_eq!(code, 200, "{revoked}");
        let revoked_at = revoked["revoked_at"].as_i64().unwrap();
        let run = s.wait_run(&run_id);
        assert_eq!(
            (run["status"].as_str(), run["failure_reason"].as_str()),
            (Some("cancelled"), Some("connection_revoked")),
            "the run says why it stopped: {run}"
        );
        let last_write = block_on(scalar(
            &s.database_url,
            "SELECT MAX(written_at) FROM records WHERE connection_id = $1",
            &id,
        ))
        .unwrap();
        assert!(last_write <= revoked_at, "a record was committed after the revoke: {last_write} > {revoked_at}");
        let written = block_on(scalar(&s.database_url, "SELECT COUNT(*) FROM records WHERE connection_id = $1", &id));
        std::thread::sleep(Duration::from_millis(300));
        let later = block_on(scalar(&s.database_url, "SELECT COUNT(*) FROM records WHERE connection_id = $1", &id));
        assert_eq!(written, later, "nothing is written once the run ended");
    }
}

server_on_both_backends! {
    /// A connection whose run is in progress cannot be deleted (409); once a
    /// revoke stopped the run, the delete erases everything.
    fn delete_after_revoke_erases_a_connection_whose_run_was_in_progress(b: Backend) {
        let s = serve_on(b);
        let id = draft(&s, json!({ "behavior": "many" }));
        let (code, c) = capture(&s, &id, "tok-delete-0001", "sig-delete-0001");
        assert_eq!(code, 201, "{c}");
        eventually("records arrive", || {
            s.owner("GET", &format!("/v1/connections/{id}"), None).1["connection"]["status"] == "active"
        });
        let (code, e) = s.owner("DELETE", &format!("/v1/connections/{id}"), None);
        assert_eq!((code, e["code"].as_str()), (409, Some("connection_run_active")), "{e}");
        let (code, _) = s.owner("POST", &format!("/v1/connections/{id}/revoke"), None);
        assert_eq!(code, 200);
        let (code, report) = s.owner("DELETE", &format!("/v1/connections/{id}"), None);
        assert_eq!(code, 200, "{report}");
        assert!(report["deleted_records"].as_i64().unwrap() > 0, "{report}");
        let left = block_on(scalar(&s.database_url, "SELECT COUNT(*) FROM records WHERE connection_id = $1", &id));
        assert_eq!(left, Some(0));
    }
}

on_both_backends! {
    /// A deleted vault key with sealed credentials present refuses to start,
    /// names the file and says how to restore it; no new key is written.
    async fn vault_key_lost_with_sealed_credentials_refuses_to_start_naming_the_file(t: TestDeployment) {
        let m = probe_manifest();
        t.connection(&m, json!({}), Some(Bundle::new("secret_bundle", [("token", "tok-lost-key-0001")]))).await;
        let key = t.dir.path().join("vault.key");
        std::fs::remove_file(&key).unwrap();
        let err = Deployment::open(t.options()).await.err().expect("the start is refused");
        assert!(matches!(err, DeployError::KeyLost { sealed: 1, .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(key.to_str().unwrap()) && text.contains("backup"), "{text}");
        assert!(!key.exists(), "no new key was written in its place");
    }
}

/// `pdpp-host backup` copies the database and the key into a directory a
/// host starts from: every credential opens there and a connection runs.
#[test]
fn backup_command_output_starts_a_host_with_every_credential() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let m = probe_manifest_path();
    let probe = guest_path("probe");
    let cred = dir.path().join("cred.json");
    std::fs::write(
        &cred,
        r#"{"kind":"secret_bundle","fields":{"token":"tok-backup-0001","signing_key":"sig-backup-0001"}}"#,
    )
    .unwrap();
    let conn = cli_add_connection(&[
        "--data-dir",
        data_s,
        "--plugin",
        probe.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
        "--settings",
        r#"{"behavior":"secrets"}"#,
        "--credential",
        cred.to_str().unwrap(),
    ]);
    let out = dir.path().join("backup");
    let (code, lines, err) = cli(
        &["backup", "--data-dir", data_s, "--out", out.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        lines[0]["database"].is_string() && lines[0]["vault_key"].is_string(),
        "{lines:?}"
    );
    let (code, _, err) = cli(
        &["backup", "--data-dir", data_s, "--out", out.to_str().unwrap()],
        &[],
        None,
    );
    assert_ne!(code, 0, "a backup never overwrites another: {err}");
    // The original is gone; the copy is a deployment of its own.
    std::fs::remove_dir_all(&data).unwrap();
    let (code, lines, err) = cli_run_connection(&probe, &m, out.to_str().unwrap(), &conn, &[], &[]);
    assert_eq!(code, 0, "{err}");
    let seen = &lines.iter().find(|l| l["type"] == "RECORD").unwrap()["data"]["what"];
    assert_eq!(
        seen["available"],
        json!(["signing_key", "token"]),
        "the sealed credential opened"
    );
}

/// `pdpp-host owner-token reset` replaces the token of a running server:
/// the old one is refused at once, the new one works.
#[test]
fn owner_token_reset_replaces_the_token_of_a_running_server() {
    let s = serve_with(ServeOptions::default().plugin("demo", &demo_manifest_path()));
    let (code, _) = s.owner("GET", "/v1/connectors", None);
    assert_eq!(code, 200);
    let data = s.dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_pdpp-host"))
        .args(["owner-token", "reset", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = String::from_utf8(out.stdout).unwrap();
    let new = out
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("owner token: "))
        .expect("the new token is printed once")
        .to_owned();
    let (code, _) = call(&s, "GET", "/v1/connectors", Some(&s.token), None);
    assert_eq!(code, 401, "the old token stopped working");
    let (code, _) = call(&s, "GET", "/v1/connectors", Some(&new), None);
    assert_eq!(code, 200, "the new one works");
    // The scheme is case-insensitive.
    let (code, _) = call_raw_with_auth(&s, &format!("bearer {new}"));
    assert_eq!(code, 200);
}

fn call_raw_with_auth(s: &Server, authorization: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(&s.addr).unwrap();
    write!(
        sock,
        "GET /v1/connectors HTTP/1.1\r\nhost: {}\r\nauthorization: {authorization}\r\nconnection: close\r\n\r\n",
        s.addr
    )
    .unwrap();
    let mut raw = String::new();
    sock.read_to_string(&mut raw).unwrap();
    (raw.split(' ').nth(1).unwrap().parse().unwrap(), raw)
}

/// A first start that fails before listening (a bad `--bind`) creates no
/// owner token, so the next good start still shows one.
#[test]
fn a_failed_start_does_not_consume_the_owner_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = dir.path().join("plugins");
    let out = Command::new(env!("CARGO_BIN_EXE_pdpp-host"))
        .args(["serve", "--bind", "127.0.0.1:99999", "--data-dir"])
        .arg(&data)
        .arg("--plugin-dir")
        .arg(&plugins)
        .env_remove("PDPP_DATABASE_URL")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("owner token"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen on 127.0.0.1:99999"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!data.join("owner-token.sha256").exists());
    let mut child = Command::new(env!("CARGO_BIN_EXE_pdpp-host"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--plugin-dir")
        .arg(&plugins)
        .env_remove("PDPP_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("owner token: pdpp_owner_"), "{line}");
}

/// A host killed with SIGKILL while its run waits for the owner: the next
/// start closes the run with a terminal timeline event and cancels its
/// pending question.
#[test]
fn interrupted_runs_get_a_terminal_event_and_their_questions_are_closed() {
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
        r#"{"require_otp": true, "contacts": 2, "events": 0}"#,
    ]);
    let demo = guest_path("demo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pdpp-host"))
        .args(["run", demo.to_str().unwrap(), "--manifest", m.to_str().unwrap()])
        .args(["--data-dir", data_s, "--connection", &conn, "--interactive"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("sqlite://{}?mode=ro", data.join("pdpp.db").display());
    eventually("the run waits for the owner", || {
        block_on(scalar(
            &url,
            "SELECT COUNT(*) FROM interactions WHERE connection_id = $1 AND status = 'pending'",
            &conn,
        )) == Some(1)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, runs, err) = cli(
        &["runs", "list", "--data-dir", data_s, "--connection", &conn],
        &[],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let run_id = runs[0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(
        (runs[0]["status"].as_str(), runs[0]["failure_reason"].as_str()),
        (Some("failed"), Some("host_interrupted"))
    );
    let (_, shown, _) = cli(&["runs", "show", "--data-dir", data_s, &run_id], &[], None);
    let last = shown.last().unwrap();
    assert_eq!(last["kind"], "run.failed", "{shown:?}");
    assert_eq!(last["data"]["reason"], "host_interrupted");
    assert_eq!(
        block_on(scalar(
            &url,
            "SELECT COUNT(*) FROM interactions WHERE connection_id = $1 AND status = 'pending'",
            &conn
        )),
        Some(0),
        "no question stays pending"
    );
}

server_on_both_backends! {
    /// An answer refused by validation (saving credentials from a question
    /// that is not a `credentials` one) leaves the question pending: the
    /// valid answer then goes through and the run succeeds.
    fn a_refused_answer_leaves_the_question_pending(b: Backend) {
        let s = serve_on(b);
        let id = draft(&s, json!({ "behavior": "interact" }));
        let (_, c) = capture(&s, &id, "tok-refused-0001", "sig-refused-0001");
        let run_id = c["first_sync"]["run_id"].as_str().unwrap().to_owned();
        let ix = first_pending_interaction(&s, &run_id);
        let (code, e) = s.owner(
            "POST",
            &format!("/v1/interactions/{ix}"),
            Some(json!({ "status": "success", "data": { "code": "1" }, "save_credentials": true })),
        );
        assert_eq!((code, e["code"].as_str()), (400, Some("not_a_credentials_question")), "{e}");
        let (code, ok) = s.owner("POST", &format!("/v1/interactions/{ix}"), Some(json!({ "status": "success", "data": { "code": "1" } })));
        assert_eq!(code, 200, "{ok}");
        assert_eq!(s.wait_run(&run_id)["status"], "succeeded");
    }
}

/// `vault rotate-key` is refused while a server uses the deployment (it
/// holds the key in memory and would seal under the old one); once the
/// server stopped, the rotation goes through.
#[test]
fn vault_key_rotation_is_refused_while_a_server_uses_the_deployment() {
    let mut s = serve_with(ServeOptions::default().plugin("demo", &demo_manifest_path()));
    let data = s.dir.path().join("data");
    let key_before = std::fs::read_to_string(data.join("vault.key")).unwrap();
    let args = ["vault", "rotate-key", "--data-dir", data.to_str().unwrap()];
    let (code, _, err) = cli(&args, &[], None);
    assert_ne!(code, 0);
    assert!(err.contains("a server is using this deployment"), "{err}");
    assert_eq!(std::fs::read_to_string(data.join("vault.key")).unwrap(), key_before);
    assert!(s.terminate().success(), "SIGTERM stops the server cleanly");
    let (code, lines, err) = cli(&args, &[], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines[0]["resealed"], 0);
}

/// SIGTERM while an event stream follows a run that waits for the owner:
/// the stream ends, the run stops, the process exits cleanly.
#[test]
fn sigterm_stops_a_server_with_a_stream_following_a_parked_run() {
    use std::io::{Read, Write};
    let mut s = serve_with(ServeOptions::default().plugin("demo", &demo_manifest_path()));
    let (_, created) = s.owner(
        "POST",
        "/v1/connections",
        Some(json!({ "connector_id": "demo", "settings": { "require_otp": true, "contacts": 2, "events": 0 } })),
    );
    let run_id = created["first_sync"]["run_id"].as_str().unwrap().to_owned();
    first_pending_interaction(&s, &run_id);
    let mut sock = std::net::TcpStream::connect(&s.addr).unwrap();
    write!(
        sock,
        "GET /v1/runs/{run_id}/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n",
        s.token
    )
    .unwrap();
    let follower = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = sock.read_to_string(&mut all);
        all
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.terminate().success(), "the server exits cleanly");
    let streamed = follower.join().unwrap();
    assert!(
        streamed.contains("event: run.interaction_required"),
        "the question is on the timeline: {streamed}"
    );
    let (shown, err) = s.runs_show(&run_id);
    assert_eq!(
        (shown[0]["status"].as_str(), shown[0]["failure_reason"].as_str()),
        (Some("cancelled"), Some("host_shutdown")),
        "the run did not outlive its host, and says why it stopped: {} {err}",
        shown[0]
    );
}

/// Connection settings are checked against the manifest's `settings_schema`
/// before anything is written: a typo or a bad value is a 400 naming the
/// JSON pointer, and no connection (nor sync) is created.
#[test]
fn settings_outside_the_settings_schema_are_refused_with_the_pointer() {
    let s = serve_with(ServeOptions::default().plugin("demo", &demo_manifest_path()));
    for (settings, pointer) in [
        (json!({ "setting": 5 }), "/setting"),
        (json!({ "contacts": -1 }), "/contacts"),
        (json!({ "require_otp": "yes" }), "/require_otp"),
    ] {
        let (code, e) = s.owner(
            "POST",
            "/v1/connections",
            Some(json!({ "connector_id": "demo", "settings": settings })),
        );
        assert_eq!((code, e["code"].as_str()), (400, Some("invalid_settings")), "{e}");
        assert!(e["message"].as_str().unwrap().contains(pointer), "{e}");
    }
    let (_, list) = s.owner("GET", "/v1/connections", None);
    assert!(
        list["connections"].as_array().unwrap().is_empty(),
        "nothing was created"
    );
    let m = demo_manifest_path();
    let (code, _, err) = cli(
        &[
            "run",
            guest_path("demo").to_str().unwrap(),
            "--manifest",
            m.to_str().unwrap(),
            "--settings",
            r#"{"contact": 1}"#,
        ],
        &[],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/contact"), "{err}");
}

/// Every error is `{code, message}` with the right status, also for what no
/// handler sees: unknown routes, wrong methods, oversized bodies, targets
/// and headers, paths that are not UTF-8, unknown streams, bad limits.
#[test]
fn every_error_is_typed_json_with_the_right_status() {
    let s = serve_with(ServeOptions::default().plugin("demo", &demo_manifest_path()));
    let t = Some(s.token.as_str());
    let (_, created) = s.owner(
        "POST",
        "/v1/connections",
        Some(json!({ "connector_id": "demo", "settings": { "contacts": 1, "events": 0 } })),
    );
    let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
    let long = format!("/v1/connections/{}", "a".repeat(9000));
    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        ("GET", "/v1/nothing-here".into(), None, 404, "not_found"),
        ("DELETE", "/v1/connectors".into(), None, 405, "method_not_allowed"),
        ("GET", long, None, 414, "uri_too_long"),
        ("GET", "/v1/connections/%FF%FE".into(), None, 400, "invalid_request"),
        (
            "GET",
            format!("/v1/records?connection_id={id}&stream=nope"),
            None,
            404,
            "not_found",
        ),
        ("GET", "/v1/audit?limit=100000".into(), None, 400, "invalid_limit"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, text) = call_raw(&s, method, &path, t, body);
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        assert_eq!(
            (got, v["code"].as_str()),
            (status, Some(code)),
            "{method} {}: {v}",
            &path[..path.len().min(60)]
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    use std::io::{Read, Write};
    // An oversized body is refused from its announced length, unread.
    let mut sock = std::net::TcpStream::connect(&s.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        sock,
        "POST /v1/connections HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{{",
        s.token,
        10 << 20
    )
    .unwrap();
    let mut raw = String::new();
    let _ = sock.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 413"), "{}", &raw[..raw.len().min(200)]);
    assert!(raw.contains("\"code\":\"body_too_large\""), "{raw}");
    // Oversized headers.
    let mut sock = std::net::TcpStream::connect(&s.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        sock,
        "GET /v1/connectors HTTP/1.1\r\nhost: x\r\nx-filler: {}\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
        "y".repeat(40 << 10),
        s.token
    )
    .unwrap();
    let mut raw = String::new();
    sock.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 431"), "{}", &raw[..raw.len().min(200)]);
    assert!(raw.contains("\"code\":\"headers_too_large\""), "{raw}");
}

server_on_both_backends! {
    /// Hosts sharing one database are one truth: a question asked on one host
    /// is listed and answered on another, a run executing on one host is
    /// cancelled from another, and a second run of a connection is refused
    /// on every host (two hosts on SQLite, three on PostgreSQL).
    fn hosts_sharing_a_database_answer_and_cancel_each_others_runs(b: Backend) {
        let a = serve_with(ServeOptions::default().plugin("demo", &demo_manifest_path()).backend(b));
        let mut others = vec![a.another_host()];
        if b == pdpp_host::store::Backend::Postgres {
            others.push(a.another_host());
        }
        let (_, created) = a.owner(
            "POST",
            "/v1/connections",
            Some(json!({ "connector_id": "demo", "settings": { "require_otp": true, "contacts": 2, "events": 0 } })),
        );
        let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
        let run = created["first_sync"]["run_id"].as_str().unwrap().to_owned();
        // Every host lists the question of the run that executes on `a`.
        let mut ix = String::new();
        for h in std::iter::once(&a).chain(&others) {
            ix = first_pending_interaction(h, &run);
        }
        let last = others.last().unwrap();
        let (code, e) = last.owner("POST", &format!("/v1/connections/{id}/runs"), None);
        assert_eq!((code, e["code"].as_str()), (409, Some("run_already_active")), "{e}");
        let (code, ok) = last.owner("POST", &format!("/v1/interactions/{ix}"), Some(json!({ "status": "success", "data": { "code": "123456" } })));
        assert_eq!(code, 200, "{ok}");
        let (code, again) = a.owner("POST", &format!("/v1/interactions/{ix}"), Some(json!({ "status": "success", "data": { "code": "654321" } })));
        assert_eq!((code, again["code"].as_str()), (404, Some("not_found")), "one answer only: {again}");
        let done = a.wait_run(&run);
        assert_eq!(done["status"], "succeeded", "the answer given on another host reached the run: {done}");
        // A run executing on `a`, cancelled through another host.
        let (_, started) = a.owner("POST", &format!("/v1/connections/{id}/runs"), None);
        let run = started["run_id"].as_str().unwrap().to_owned();
        first_pending_interaction(last, &run);
        let (code, c) = last.owner("POST", &format!("/v1/runs/{run}/cancel"), None);
        assert_eq!((code, c["result"].as_str()), (200, Some("cancel_requested")), "{c}");
        let done = a.wait_run(&run);
        assert_eq!(done["status"], "cancelled", "{done}");
        let (_, list) = last.owner("GET", &format!("/v1/interactions?run_id={run}"), None);
        assert!(list["interactions"].as_array().unwrap().is_empty(), "no question outlives its run");
    }
}

/// `serve` listens before it compiles its plugins: the listening line comes
/// before any plugin is loaded, `/healthz` answers meanwhile, and each
/// connector is offered as soon as its plugin is ready.
#[test]
fn serve_listens_at_once_and_offers_each_plugin_when_it_is_compiled() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for (guest, manifest) in [("demo", demo_manifest_path()), ("probe", probe_manifest_path())] {
        cli_pack(&guest_path(guest), &manifest, &plugins.join(format!("{guest}.wasm")));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_pdpp-host"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--plugin-dir")
        .arg(&plugins)
        .env_remove("PDPP_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut order = Vec::new();
    let mut addr = None;
    while order.iter().filter(|l: &&String| l.contains("loaded from")).count() < 2 {
        let line = lines.next().expect("the server keeps running").unwrap();
        if let Some(rest) = line.split("http://").nth(1) {
            addr = Some(rest.split_whitespace().next().unwrap().to_owned());
            assert!(line.contains("loading 2 plugin files"), "{line}");
        }
        order.push(line);
    }
    let listening = order
        .iter()
        .position(|l| l.contains("serving the owner API"))
        .expect("it listens");
    let first_loaded = order.iter().position(|l| l.contains("loaded from")).unwrap();
    assert!(listening < first_loaded, "it listened before compiling: {order:#?}");
    let addr = addr.unwrap();
    let health = || {
        let mut sock = std::net::TcpStream::connect(&addr).unwrap();
        std::io::Write::write_all(
            &mut sock,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
        let mut raw = String::new();
        std::io::Read::read_to_string(&mut sock, &mut raw).unwrap();
        serde_json::from_str::<serde_json::Value>(raw.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    };
    eventually("every plugin is ready", || health()["plugins"]["ready"] == true);
    assert_eq!(health()["plugins"]["loaded"], 2);
    let _ = child.kill();
    let _ = child.wait();
}
