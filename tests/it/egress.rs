//! Egress: a connector reaches only the origins its manifest allows, through
//! the deployment's rewrites, with secrets substituted host-side and every
//! request in the timeline. The provider double is a real HTTP server on
//! loopback; the connector code has no test-only path.

use crate::support::*;
use pdpp_host::egress::{EgressConfig, Origin};
use pdpp_host::protocol as p;
use pdpp_host::runtime::{self, RunRequest};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

/// What the double saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
}

/// A loopback HTTP/1.1 server with a few provider-like routes.
struct Double {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

const TOKEN: &str = "tok-egress-SECRET-7a91";

impl Double {
    async fn start() -> Double {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    let mut body_in = buf[end..].to_vec();
                    while body_in.len() < length {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => body_in.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let mut lines = head.split("\r\n");
                    let path = lines
                        .next()
                        .unwrap_or_default()
                        .split(' ')
                        .nth(1)
                        .unwrap_or("/")
                        .to_owned();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(": "))
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                        .collect();
                    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
                    let hits = {
                        let mut l = log.lock().unwrap();
                        l.push(Seen {
                            path: path.clone(),
                            headers: headers.clone(),
                        });
                        l.iter().filter(|s| s.path == path).count()
                    };
                    let (status, extra, body): (&str, &str, Vec<u8>) = match path.as_str() {
                        "/ok" => ("200 OK", "", b"hello".to_vec()),
                        "/body" if body_in == format!(r#"{{"api_key":"{TOKEN}"}}"#).as_bytes() => {
                            ("200 OK", "", b"body-ok".to_vec())
                        }
                        "/body" => ("400 Bad Request", "", b"body-wrong".to_vec()),
                        "/auth" if header("authorization").as_deref() == Some(&format!("Bearer {TOKEN}")) => {
                            ("200 OK", "", b"welcome".to_vec())
                        }
                        "/auth" => ("401 Unauthorized", "", b"no".to_vec()),
                        "/host" => ("200 OK", "", header("host").unwrap_or_default().into_bytes()),
                        "/big" => ("200 OK", "", vec![b'x'; 2 << 20]),
                        "/slow" => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        "/redirect-out" => ("302 Found", "location: http://elsewhere.test/ok\r\n", Vec::new()),
                        "/redirect-in" => ("302 Found", "location: /ok\r\n", Vec::new()),
                        "/limited" if hits == 1 => ("429 Too Many Requests", "retry-after: 1\r\n", b"later".to_vec()),
                        "/limited" => ("200 OK", "", b"finally".to_vec()),
                        _ => ("404 Not Found", "", Vec::new()),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Double { port, seen }
    }

    /// The deployment config that sends `double.test` (and its subdomains) here.
    fn config(&self) -> Arc<EgressConfig> {
        let to = Origin::parse(&format!("http://127.0.0.1:{}", self.port)).unwrap();
        Arc::new(EgressConfig {
            rewrites: vec![
                (Origin::parse("http://double.test").unwrap(), to.clone()),
                (Origin::parse("http://*.double.test").unwrap(), to),
            ],
            allow_private_addresses: false,
            allow_loopback_for_rewrites: true,
        })
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn request(requests: Value, config: Arc<EgressConfig>) -> RunRequest {
    let mut req = RunRequest::new(fetch_manifest());
    req.settings = json!({ "requests": requests });
    req.egress = config;
    req.secrets = [("token".to_string(), Zeroizing::new(TOKEN.to_string()))]
        .into_iter()
        .collect();
    req
}

/// What the guest reported for request `i`.
fn result(t: &Transcript, i: usize) -> Value {
    t.records()
        .into_iter()
        .find(|r| r.key == json!(i.to_string()))
        .unwrap()
        .data
        .unwrap()["what"]
        .clone()
}

#[tokio::test]
async fn allowed_origin_is_rewritten_to_the_double_and_the_secret_is_substituted_host_side() {
    let double = Double::start().await;
    let req = request(
        json!([{ "url": "http://double.test/auth", "bearer": true }, { "url": "http://api.double.test/host" }]),
        double.config(),
    );
    let (out, t) = run_with(fetch(), req, None).await;
    assert!(out.succeeded(), "{out:?}");
    assert_eq!(result(&t, 0), json!({ "status": 200, "body": "welcome", "bytes": 7 }));
    assert_eq!(
        result(&t, 1)["body"],
        format!("127.0.0.1:{}", double.port),
        "Host is set by the host from the checked origin"
    );
    // The guest only ever held a placeholder; the double got the value.
    let seen = double.seen();
    assert_eq!(
        seen[0].headers.iter().find(|(k, _)| k == "authorization").unwrap().1,
        format!("Bearer {TOKEN}")
    );
    // The timeline: method, origin, path, status, bytes, duration; no header values.
    let r = &out.usage.requests[0];
    assert_eq!(
        (r.method.as_str(), r.origin.as_str(), r.path.as_str(), r.status),
        ("GET", "http://double.test:80", "/auth", Some(200))
    );
    assert_eq!(
        out.usage.bytes_in,
        7 + format!("127.0.0.1:{}", double.port).len() as u64
    );
    assert!(
        !format!("{out:?}{}", t.text()).contains(TOKEN),
        "the token never reaches the transcript or the outcome"
    );
    match t.messages().first() {
        Some(p::Message::Start(s)) => assert!(s.bindings["network"]["allowed_origins"].as_array().unwrap().len() >= 2),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn request_to_an_undeclared_origin_is_refused_with_a_typed_error_and_recorded() {
    let double = Double::start().await;
    let req = request(
        json!([{ "url": "http://elsewhere.test/ok" }, { "url": "https://double.test/ok" }]),
        double.config(),
    );
    let (out, t) = run_with(fetch(), req, None).await;
    assert!(out.succeeded());
    assert!(
        result(&t, 0)["refused"].as_str().unwrap().contains("HttpRequestDenied"),
        "{}",
        result(&t, 0)
    );
    assert!(
        result(&t, 1)["refused"].is_string(),
        "scheme is part of the origin: {}",
        result(&t, 1)
    );
    assert_eq!(out.usage.requests[0].refused.as_deref(), Some("origin_not_allowed"));
    assert!(double.seen().is_empty(), "nothing reached the double");
}

#[tokio::test]
async fn declared_origin_resolving_to_loopback_is_blocked_without_a_rewrite() {
    let double = Double::start().await;
    let req = request(json!([{ "url": "http://localhost:1/ok" }]), double.config());
    let (out, t) = run_with(fetch(), req, None).await;
    assert!(
        result(&t, 0)["refused"]
            .as_str()
            .unwrap()
            .contains("DestinationIpProhibited"),
        "{}",
        result(&t, 0)
    );
    assert_eq!(out.usage.requests[0].refused.as_deref(), Some("address_blocked"));
}

#[tokio::test]
async fn smuggled_host_and_forwarding_headers_are_refused() {
    let double = Double::start().await;
    let req = request(
        json!([
            { "url": "http://double.test/host", "headers": [["host", "evil.test"]] },
            { "url": "http://double.test/host", "headers": [["x-forwarded-for", "10.0.0.1"]] },
        ]),
        double.config(),
    );
    let (_, t) = run_with(fetch(), req, None).await;
    for i in 0..2 {
        assert!(
            result(&t, i)["refused"].as_str().unwrap().contains("Forbidden"),
            "{}",
            result(&t, i)
        );
    }
    assert!(double.seen().is_empty());
}

#[tokio::test]
async fn huge_response_is_capped() {
    let double = Double::start().await;
    let mut req = request(
        json!([{ "url": "http://double.test/big" }, { "url": "http://double.test/ok" }]),
        double.config(),
    );
    req.limits.http.max_response_bytes = 1 << 20;
    let (out, t) = run_with(fetch(), req, None).await;
    assert!(
        result(&t, 0)["refused"]
            .as_str()
            .unwrap()
            .contains("HttpResponseBodySize"),
        "{}",
        result(&t, 0)
    );
    assert_eq!(out.usage.requests[0].refused.as_deref(), Some("response_too_large"));
    assert_eq!(result(&t, 1)["status"], 200, "the run goes on");
}

#[tokio::test]
async fn slow_loris_provider_hits_the_first_byte_timeout() {
    let double = Double::start().await;
    let mut req = request(json!([{ "url": "http://double.test/slow" }]), double.config());
    req.limits.http.first_byte_timeout = Duration::from_millis(300);
    let (out, t) = run_with(fetch(), req, None).await;
    assert!(result(&t, 0)["transport"].is_string(), "{}", result(&t, 0));
    assert_eq!(out.usage.requests[0].refused.as_deref(), Some("first_byte_timeout"));
}

#[tokio::test]
async fn rate_limited_request_is_retried_after_retry_after() {
    let double = Double::start().await;
    let req = request(
        json!([{ "url": "http://double.test/limited", "retry": true }]),
        double.config(),
    );
    let (out, t) = run_with(fetch(), req, None).await;
    assert_eq!(result(&t, 0)["body"], "finally");
    let statuses: Vec<Option<u16>> = out.usage.requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(429), Some(200)]);
}

#[tokio::test]
async fn request_budget_is_a_typed_refusal() {
    let double = Double::start().await;
    let mut req = request(
        json!([{ "url": "http://double.test/ok" }, { "url": "http://double.test/ok" }, { "url": "http://double.test/ok" }]),
        double.config(),
    );
    req.limits.http.max_requests = 2;
    let (out, t) = run_with(fetch(), req, None).await;
    assert_eq!(result(&t, 1)["status"], 200);
    assert!(
        result(&t, 2)["refused"]
            .as_str()
            .unwrap()
            .contains("ConnectionLimitReached"),
        "{}",
        result(&t, 2)
    );
    assert_eq!(out.usage.requests[2].refused.as_deref(), Some("request_limit"));
    assert_eq!(double.seen().len(), 2);
}

#[tokio::test]
async fn connector_without_the_network_binding_cannot_import_wasi_http() {
    let bytes = std::fs::read(guest_path("fetch")).unwrap();
    let err = sandbox()
        .compile(&bytes, &pdpp_host::sandbox::Grants::none())
        .unwrap_err();
    assert!(
        matches!(&err, pdpp_host::sandbox::LoadError::ImportNotGranted { import, binding: "network" } if import.starts_with("wasi:http/")),
        "{err}"
    );
    assert!(err.to_string().contains("wasi:http"), "{err}");
}

#[tokio::test]
async fn http_requests_are_in_the_stored_timeline_without_secrets() {
    let double = Double::start().await;
    let t = deployment(pdpp_host::store::Backend::Sqlite).await;
    let m = fetch_manifest();
    let cred = pdpp_host::vault::Bundle::new("personal_access_token", [("token", TOKEN)]);
    let conn = t
        .connection(
            &m,
            json!({ "requests": [{ "url": "http://double.test/auth", "bearer": true }] }),
            Some(cred),
        )
        .await;
    let mut opts = pdpp_host::runtime::ConnectionRun::new(pdpp_host::store::Trigger::Manual);
    opts.egress = double.config();
    let out = runtime::run_connection(&t.dep, sandbox(), fetch(), m, &conn, opts)
        .await
        .unwrap();
    assert!(out.succeeded(), "{out:?}");
    let events = t.dep.store.events(&out.run_id).await.unwrap();
    let http = events.iter().find(|e| e.kind == "run.http_request").unwrap();
    assert_eq!(http.data["status"], 200);
    assert_eq!(http.data["path"], "/auth");
    let run = t.dep.store.run(&out.run_id).await.unwrap().unwrap();
    assert_eq!(run.resource_report.unwrap()["http_requests"], 1);
    let stored = t.stored_bytes();
    assert!(!stored.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
}

/// The CLI runs a networked connector against a rewritten origin.
#[tokio::test(flavor = "multi_thread")]
async fn cli_rewrite_origin_reaches_the_double() {
    let double = Double::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, format!(r#"{{"token": "{TOKEN}"}}"#)).unwrap();
    let fetch = guest_path("fetch");
    let manifest = workspace().join("tests/guests/fetch/fetch.json");
    let rewrite = format!("http://double.test=http://127.0.0.1:{}", double.port);
    let settings = r#"{"requests": [{"url": "http://double.test/auth", "bearer": true}]}"#;
    let args: Vec<String> = [
        "run",
        fetch.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--settings",
        settings,
        "--secrets",
        secrets.to_str().unwrap(),
        "--rewrite-origin",
        &rewrite,
        "--allow-loopback-rewrites",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, lines, stderr) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args, &[], None)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let rec = lines.iter().find(|l| l["type"] == "RECORD").unwrap();
    assert_eq!(rec["data"]["what"]["body"], "welcome");
    assert!(!format!("{lines:?}{stderr}").contains(TOKEN));
}

#[tokio::test]
async fn redirects_are_checked_again_at_every_hop() {
    let double = Double::start().await;
    let req = request(
        json!([{ "url": "http://double.test/redirect-in" }, { "url": "http://double.test/redirect-out" }]),
        double.config(),
    );
    let (out, t) = run_with(fetch(), req, None).await;
    assert_eq!(
        result(&t, 0)["body"],
        "hello",
        "a redirect within the allowed origin is followed"
    );
    assert!(
        result(&t, 1)["refused"].as_str().unwrap().contains("HttpRequestDenied"),
        "{}",
        result(&t, 1)
    );
    let refused: Vec<&str> = out.usage.requests.iter().filter_map(|r| r.refused.as_deref()).collect();
    assert_eq!(refused, ["origin_not_allowed"]);
    assert_eq!(out.usage.requests.last().unwrap().origin, "http://elsewhere.test:80");
}

/// A hostile connector does not disturb a well-behaved one running beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_runs_leave_the_host_and_other_runs_healthy() {
    let mut spin = probe_request("cpu_loop");
    spin.limits.cpu = Duration::from_millis(800);
    let mut flood = probe_request("many");
    flood.limits.max_records = 20_000;
    let mut good = RunRequest::new(demo_manifest());
    good.settings = json!({ "contacts": 200, "events": 50 });
    let (a, b, c) = tokio::join!(
        run_with(probe(), spin, None),
        run_with(probe(), flood, None),
        run_with(demo(), good, None)
    );
    assert_eq!(a.0.reason.as_ref().map(|r| r.code()), Some("cpu_limit"));
    assert_eq!(b.0.reason.as_ref().map(|r| r.code()), Some("record_limit"));
    assert!(c.0.succeeded(), "{:?}", c.0);
    assert_eq!(c.0.records_emitted, 250);
}

#[tokio::test]
async fn secret_placeholders_in_the_body_are_substituted_host_side() {
    let double = Double::start().await;
    let req = request(
        json!([{ "url": "http://double.test/body", "method": "POST", "body_secret": true }]),
        double.config(),
    );
    let (out, t) = run_with(fetch(), req, None).await;
    assert_eq!(result(&t, 0)["body"], "body-ok", "{}", result(&t, 0));
    assert_eq!(
        out.usage.requests[0].bytes_out,
        format!(r#"{{"api_key":"{TOKEN}"}}"#).len() as u64
    );
    // To an origin the manifest does not allow, nothing is sent, so nothing is substituted.
    let req = request(
        json!([{ "url": "http://elsewhere.test/body", "method": "POST", "body_secret": true }]),
        double.config(),
    );
    let (_, t) = run_with(fetch(), req, None).await;
    assert!(result(&t, 0)["refused"].is_string());
    assert!(!double.seen().iter().any(|s| s.path != "/body"));
}

#[tokio::test]
async fn run_byte_budget_is_a_typed_refusal() {
    let double = Double::start().await;
    let mut req = request(
        json!([{ "url": "http://double.test/big" }, { "url": "http://double.test/big" }, { "url": "http://double.test/ok" }]),
        double.config(),
    );
    req.limits.http.max_total_bytes = 3 << 20;
    let (out, t) = run_with(fetch(), req, None).await;
    assert_eq!(result(&t, 0)["bytes"], 2 << 20);
    assert!(
        result(&t, 1)["refused"].is_string(),
        "the second 2 MiB does not fit: {}",
        result(&t, 1)
    );
    assert_eq!(out.usage.requests[1].refused.as_deref(), Some("response_too_large"));
    assert_eq!(result(&t, 2)["status"], 200, "what still fits the budget goes through");
    assert_eq!(out.usage.bytes_in, (2 << 20) + 5);
}
