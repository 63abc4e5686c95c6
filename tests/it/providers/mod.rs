//! Provider test doubles (loopback HTTP) and end-to-end tests of the real
//! connectors through `pdpp-host serve`.
//!
//! Each double is an axum server on 127.0.0.1 with its own thread and tokio
//! runtime, so the blocking server tests never starve it. The connectors
//! only know the real provider origins; the deployment's origin rewrite
//! sends their requests here. A double names its own origin (from the
//! `Host` header) in absolute links, as a provider behind a gateway or a
//! GitHub Enterprise host does, and the host maps them back to the declared
//! origin before the connector sees them. Every double shares the gate
//! below: a request log, a bearer-token check (401 for a revoked or unknown
//! token) and injectable refusals (rate limits as each provider documents
//! them, a forbidden resource).

pub mod github;
pub mod notion;
pub mod oura;

use crate::server::*;
use crate::support::*;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use pdpp_host::egress::{EgressConfig, Origin};
use pdpp_host::manifest::Manifest;
use pdpp_host::runtime::{RunOutcome, RunRequest, StateInput};
use pdpp_host::sandbox::Plugin;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// One request as the double saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    pub body: String,
    pub status: u16,
}

impl Seen {
    /// A decoded query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| {
                percent_encoding::percent_decode_str(&v.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    }
    /// `path?query`, as tests match on it.
    pub fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

/// How a throttled request is refused.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// 429 with `Retry-After: secs`.
    TooMany { retry_after: u64 },
    /// GitHub's style: 403 with `x-ratelimit-remaining: 0` and a reset time.
    Exhausted { reset_in: u64 },
    /// GitHub's secondary rate limit as documented at its worst: 403 with
    /// neither `Retry-After` nor `x-ratelimit-remaining: 0` (requests are
    /// left in the primary quota), only the message saying so.
    Secondary,
    /// A 403 that is no rate limit: the token is good but may not read
    /// this (GitHub's organisation SAML enforcement).
    Forbidden,
}

struct Throttle {
    prefix: String,
    remaining: u32,
    limit: Limit,
}

/// What every double shares: accepted tokens, the request log, rate limits.
#[derive(Default)]
pub struct Control {
    tokens: Mutex<Vec<String>>,
    log: Mutex<Vec<Seen>>,
    throttles: Mutex<Vec<Throttle>>,
}

impl Control {
    /// The token starts working, as when the provider's site mints it.
    pub fn accept(&self, token: &str) {
        self.tokens.lock().unwrap().push(token.to_owned());
    }
    /// The token stops working, as when the owner revokes it at the provider.
    pub fn revoke(&self, token: &str) {
        self.tokens.lock().unwrap().retain(|t| t != token);
    }
    /// Refuse the next `times` requests whose `path?query` starts with `prefix`.
    pub fn throttle(&self, prefix: &str, times: u32, limit: Limit) {
        self.throttles.lock().unwrap().push(Throttle {
            prefix: prefix.to_owned(),
            remaining: times,
            limit,
        });
    }
    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
    /// The requests whose path is `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Seen> {
        self.requests().into_iter().filter(|s| s.path == path).collect()
    }
    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }
}

async fn gate(State(ctl): State<Arc<Control>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let mut seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
        status: 0,
    };
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let authorized = bearer.is_some_and(|t| ctl.tokens.lock().unwrap().contains(&t));
    let limited = {
        let mut throttles = ctl.throttles.lock().unwrap();
        let target = seen.target();
        throttles
            .iter_mut()
            .find(|t| t.remaining > 0 && target.starts_with(&t.prefix))
            .map(|t| {
                t.remaining -= 1;
                t.limit
            })
    };
    let resp = if !authorized {
        let body = json!({ "message": "Bad credentials", "status": 401, "code": "unauthorized" });
        (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
    } else if let Some(limit) = limited {
        let mut resp = match limit {
            Limit::TooMany { retry_after } => {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({ "message": "slow down" })),
                )
                    .into_response();
                r.headers_mut().insert("retry-after", HeaderValue::from(retry_after));
                r
            }
            Limit::Exhausted { reset_in } => {
                let reset = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + reset_in;
                let mut r = (
                    StatusCode::FORBIDDEN,
                    axum::Json(json!({ "message": "API rate limit exceeded" })),
                )
                    .into_response();
                r.headers_mut().insert("x-ratelimit-remaining", HeaderValue::from(0));
                r.headers_mut().insert("x-ratelimit-reset", HeaderValue::from(reset));
                r
            }
            Limit::Secondary => {
                let body = json!({
                    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                    "status": "403",
                });
                let mut r = (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
                r.headers_mut()
                    .insert("x-ratelimit-remaining", HeaderValue::from(4_990));
                r
            }
            Limit::Forbidden => {
                let body = json!({
                    "message": "Resource protected by organization SAML enforcement. You must grant your Personal Access token access to this organization.",
                    "documentation_url": "https://docs.github.com/articles/authenticating-to-a-github-organization-with-saml-single-sign-on/",
                    "status": "403",
                });
                let mut r = (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
                r.headers_mut()
                    .insert("x-ratelimit-remaining", HeaderValue::from(4_990));
                r
            }
        };
        resp.headers_mut()
            .insert("x-double", HeaderValue::from_static("throttled"));
        resp
    } else {
        next.run(Request::from_parts(parts, Body::from(bytes))).await
    };
    seen.status = resp.status().as_u16();
    ctl.log.lock().unwrap().push(seen);
    resp
}

/// A running double: its port, its control, and the provider's data.
pub struct Double<D> {
    pub port: u16,
    pub ctl: Arc<Control>,
    pub data: Arc<Mutex<D>>,
    /// The real origin the connector calls, which the rewrite sends here.
    pub provider_origin: &'static str,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<D: Send + 'static> Double<D> {
    /// Serve `routes` (whose state is the data) behind the shared gate on a
    /// thread of its own, accepting `token`.
    pub fn start(provider_origin: &'static str, token: &str, data: D, routes: Router<Arc<Mutex<D>>>) -> Self {
        let ctl = Arc::new(Control::default());
        ctl.tokens.lock().unwrap().push(token.to_owned());
        let data = Arc::new(Mutex::new(data));
        let app = routes
            .with_state(data.clone())
            .layer(from_fn_with_state(ctl.clone(), gate));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the double listens");
        Double {
            port,
            ctl,
            data,
            provider_origin,
            stop: Some(stop),
        }
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The serve configuration that sends the provider's origin here.
    pub fn config_toml(&self) -> String {
        format!(
            "[egress]\nallow_loopback_for_rewrites = true\n\n[egress.rewrites]\n\"{}\" = \"{}\"\n",
            self.provider_origin,
            self.origin()
        )
    }

    /// The same rewrite for a run through the library.
    pub fn egress(&self) -> Arc<EgressConfig> {
        Arc::new(EgressConfig {
            rewrites: vec![(
                Origin::parse(self.provider_origin).unwrap(),
                Origin::parse(&self.origin()).unwrap(),
            )],
            allow_loopback_for_rewrites: true,
            ..Default::default()
        })
    }
}

impl<D> Drop for Double<D> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A JSON response with extra headers.
pub fn json_with(status: StatusCode, headers: &[(&str, String)], body: Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    for (name, value) in headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    resp
}

/// `2026-01-01T00:00:00Z` plus `hours` (the seeded data stays in January).
pub fn at(hours: u32) -> String {
    assert!(hours < 31 * 24, "the doubles' clock stays in January 2026");
    format!("2026-01-{:02}T{:02}:00:00Z", 1 + hours / 24, hours % 24)
}

/// The connector's manifest.
pub fn manifest_path(connector: &str) -> PathBuf {
    workspace().join(format!("manifests/{connector}.json"))
}

/// The connector's component, compiled once per test process.
pub fn plugin(connector: &str) -> &'static Plugin {
    static PLUGINS: OnceLock<Mutex<HashMap<String, &'static Plugin>>> = OnceLock::new();
    let mut map = PLUGINS.get_or_init(Default::default).lock().unwrap();
    map.entry(connector.to_owned()).or_insert_with(|| {
        let bytes = std::fs::read(guest_path(connector)).expect("connector wasm");
        let manifest = Manifest::from_file(&manifest_path(connector)).expect("connector manifest");
        Box::leak(Box::new(
            sandbox()
                .compile(&bytes, &pdpp_host::sandbox::Grants::from_manifest(&manifest))
                .expect("connector compiles"),
        ))
    })
}

/// One run of a connector through the library against a double, with the
/// token and prior state given.
pub async fn run_against<D: Send + 'static>(
    connector: &str,
    double: &Double<D>,
    token: &str,
    state: BTreeMap<String, Value>,
) -> (RunOutcome, Transcript) {
    let manifest = Arc::new(Manifest::from_file(&manifest_path(connector)).expect("manifest"));
    let mut req = RunRequest::new(manifest);
    req.egress = double.egress();
    req.secrets = [("token".to_owned(), Zeroizing::new(token.to_owned()))]
        .into_iter()
        .collect();
    req.state = StateInput::Persisted(state.into_iter().collect());
    run_with(plugin(connector), req, None).await
}

/// The SKIP_RESULTs of a run, as (stream, reason, recovery action).
pub fn skips(t: &Transcript) -> Vec<(String, String, String)> {
    t.messages()
        .iter()
        .map(|m| serde_json::from_str::<Value>(&m.to_json_line()).unwrap())
        .filter(|m| m["type"] == "SKIP_RESULT")
        .map(|m| {
            let action = match &m["recovery_hint"] {
                Value::String(a) => a.clone(),
                hint => hint["action"].as_str().unwrap_or_default().to_owned(),
            };
            (
                m["stream"].as_str().unwrap_or_default().to_owned(),
                m["reason"].as_str().unwrap_or_default().to_owned(),
                action,
            )
        })
        .collect()
}

/// The streams whose checkpoints a run may commit.
pub fn eligible_streams(out: &RunOutcome) -> Vec<String> {
    out.eligible.iter().map(|(s, _)| s.clone()).collect()
}

/// Serve one real connector with a double behind the rewrite.
pub fn serve_connector<D: Send + 'static>(
    connector: &str,
    double: &Double<D>,
    backend: pdpp_host::store::Backend,
) -> Server {
    serve_with(
        ServeOptions::default()
            .plugin(connector, &manifest_path(connector))
            .config(&double.config_toml())
            .backend(backend),
    )
}

/// Create a draft connection and hand it the token. Asserts the probe
/// accepted it; returns the connection id, the identity and the first sync's run id.
pub fn set_up(s: &Server, connector: &str, token: &str) -> (String, Value, String) {
    let (status, created) = s.owner(
        "POST",
        "/v1/connections",
        Some(json!({ "connector_id": connector, "display_name": format!("my {connector}") })),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["connection"]["status"], "draft", "{created}");
    let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
    let (status, setup) = setup_status(s, &id);
    assert_eq!(status, 200, "{setup}");
    assert_eq!(setup["setup_state"], "awaiting_credential", "{setup}");
    let (status, stored) = s.owner(
        "PUT",
        &format!("/v1/connections/{id}/credential"),
        Some(json!({ "kind": "personal_access_token", "fields": { "token": token } })),
    );
    assert_eq!(status, 201, "the probe accepts the token: {stored}");
    assert_eq!(stored["validation"], "synchronous", "{stored}");
    assert_eq!(stored["credential"]["present"], true, "{stored}");
    assert!(!stored.to_string().contains(token), "no response carries the token");
    let run_id = stored["first_sync"]["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the first sync starts by itself: {stored}"))
        .to_owned();
    (id, stored["identity"].clone(), run_id)
}

/// A rejected token at setup: 400 `credential_rejected` and nothing stored
/// and the first-time draft retired.
pub fn assert_probe_rejects(s: &Server, connector: &str, token: &str) {
    let (_, created) = s.owner("POST", "/v1/connections", Some(json!({ "connector_id": connector })));
    let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
    let (status, err) = s.owner(
        "PUT",
        &format!("/v1/connections/{id}/credential"),
        Some(json!({ "kind": "personal_access_token", "fields": { "token": token } })),
    );
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("credential_rejected")),
        "{err}"
    );
    assert!(!err.to_string().contains(token), "the refusal does not echo the token");
    // Nothing was stored, and the first-time draft was retired (docs/setup.md, D1).
    let (status, setup) = setup_status(s, &id);
    assert_eq!(status, 404, "no setup row remains: {setup}");
}

/// Start a run of an active connection; its run id.
pub fn start_run(s: &Server, connection: &str) -> String {
    let (status, started) = s.owner("POST", &format!("/v1/connections/{connection}/runs"), None);
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["collection_mode"], "incremental", "{started}");
    started["run_id"].as_str().unwrap().to_owned()
}

/// Start a full-refresh run through the owner API (`{"mode": "full_refresh"}`)
/// and wait for it; the run object.
pub fn full_refresh(s: &Server, connection: &str) -> Value {
    let (status, started) = s.owner(
        "POST",
        &format!("/v1/connections/{connection}/runs"),
        Some(json!({ "mode": "full_refresh" })),
    );
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["collection_mode"], "full_refresh", "{started}");
    let run = s.wait_run(started["run_id"].as_str().unwrap());
    assert_eq!(run["collection_mode"], "full_refresh", "{run}");
    run
}

/// The events of a run's timeline of one kind.
pub fn events_of(s: &Server, run_id: &str, kind: &str) -> Vec<Value> {
    let (status, detail) = s.owner("GET", &format!("/v1/runs/{run_id}"), None);
    assert_eq!(status, 200, "{detail}");
    detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["data"].clone())
        .collect()
}

/// Every record of a stream, following the API's pagination.
pub fn records(s: &Server, connection: &str, stream: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/records?connection_id={connection}&stream={stream}&limit=100");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = s.owner("GET", &path, None);
        assert_eq!(status, 200, "{page}");
        out.extend(page["records"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
            _ => return out,
        }
    }
}

/// The record keys of a stream, sorted.
pub fn keys(s: &Server, connection: &str, stream: &str) -> Vec<String> {
    let mut keys: Vec<String> = records(s, connection, stream)
        .iter()
        .map(|r| match &r["key"] {
            Value::String(k) => k.clone(),
            other => other.to_string(),
        })
        .collect();
    keys.sort();
    keys
}

/// `GET /v1/connections/{id}/setup-status`.
pub fn setup_status(s: &Server, connection: &str) -> (u16, Value) {
    s.owner("GET", &format!("/v1/connections/{connection}/setup-status"), None)
}

/// Poll setup-status until `ok` holds for it.
pub fn wait_setup(s: &Server, connection: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = setup_status(s, connection);
        if status == 200 && ok(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "setup-status never got there: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The three end-to-end checks every connector must pass through the real
/// server, given its double and what the test expects of it.
pub struct E2e<'a, D> {
    pub connector: &'a str,
    pub double: &'a Double<D>,
    pub token: &'a str,
    pub backend: pdpp_host::store::Backend,
}

impl<D: Send + 'static> E2e<'_, D> {
    /// Setup with the probe, first sync, active, records readable. Returns
    /// the server and the connection id for further checks.
    pub fn first_sync(&self, expect_identity: &str, expect_counts: &[(&str, usize)]) -> (Server, String) {
        let s = serve_connector(self.connector, self.double, self.backend);
        assert_probe_rejects(&s, self.connector, "not-a-real-token");
        let (id, identity, run_id) = set_up(&s, self.connector, self.token);
        assert_eq!(identity["account_identity"], expect_identity, "{identity}");
        let run = s.wait_run(&run_id);
        assert_eq!(run["status"], "succeeded", "{run}");
        let setup = wait_setup(&s, &id, |v| v["status"] == "active");
        assert_eq!(setup["setup_state"], "active", "{setup}");
        assert_eq!(setup["account_identity"], expect_identity, "{setup}");
        assert_eq!(setup["credential"]["status"], "active", "{setup}");
        for (stream, n) in expect_counts {
            assert_eq!(records(&s, &id, stream).len(), *n, "records of {stream}");
        }
        (s, id)
    }

    /// Revoke the token at the provider: the next run fails as a rejected
    /// credential, and setup-status tells the owner to enter a new one.
    pub fn revoked_token_needs_a_new_credential(&self, s: &Server, connection: &str) {
        self.double.ctl.revoke(self.token);
        let run_id = start_run(s, connection);
        let run = s.wait_run(&run_id);
        assert_eq!(run["status"], "failed", "{run}");
        let (_, timeline) = s.owner("GET", &format!("/v1/runs/{run_id}"), None);
        let failed = timeline["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "run.failed")
            .unwrap_or_else(|| panic!("a run.failed event: {timeline}"));
        assert_eq!(failed["data"]["error_code"], "credential_rejected", "{failed}");
        assert_eq!(
            self.double.ctl.requests().last().map(|r| r.status),
            Some(401),
            "the run stopped at the refusal"
        );
        let setup = wait_setup(s, connection, |v| v["credential"]["status"] == "rejected");
        let remediation = setup["last_error"]["remediation"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(
            remediation.contains("credential") || remediation.contains("token"),
            "the remediation asks for a new credential: {setup}"
        );
        assert!(
            !setup.to_string().contains(self.token),
            "setup-status never shows the token"
        );
    }
}

/// Issue 15, "a provider that cannot be reached": when the provider's name
/// does not resolve, each connector's run fails at once in plain words
/// (`provider_unreachable`, retryable by the runtime), after one request,
/// without retrying within the run and without claiming that other streams
/// were collected.
#[tokio::test]
async fn an_unreachable_provider_fails_the_run_at_once_in_plain_words() {
    for (connector, origin) in [
        ("github", "https://api.github.com"),
        ("notion", "https://api.notion.com"),
        ("oura", "https://api.ouraring.com"),
    ] {
        let manifest = Arc::new(Manifest::from_file(&manifest_path(connector)).expect("manifest"));
        let mut req = RunRequest::new(manifest);
        // `.invalid` never resolves (RFC 6761).
        req.egress = Arc::new(EgressConfig {
            rewrites: vec![(
                Origin::parse(origin).unwrap(),
                Origin::parse("http://pdpp-provider.invalid").unwrap(),
            )],
            ..Default::default()
        });
        req.secrets = [("token".to_owned(), Zeroizing::new("a-token".to_owned()))]
            .into_iter()
            .collect();
        let (out, _) = run_with(plugin(connector), req, None).await;
        let done = serde_json::to_value(out.done.as_ref().expect("the connector ends with DONE")).unwrap();
        assert_eq!(done["error"]["code"], "provider_unreachable", "{connector}: {done}");
        assert_eq!(done["error"]["retryable"], true, "{connector}");
        let message = done["error"]["message"].as_str().unwrap();
        assert!(message.contains("does not resolve"), "{connector}: {message}");
        for jargon in ["DestinationNotFound", "ErrorCode", "other streams were collected"] {
            assert!(!message.contains(jargon), "{connector}: {message}");
        }
        assert_eq!(
            out.usage.requests.len(),
            1,
            "{connector}: an unresolvable name is not retried"
        );
        assert!(
            out.commit.is_none_or(|c| c.is_empty()),
            "{connector}: nothing collected, nothing committed"
        );
    }
}
