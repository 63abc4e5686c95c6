//! A fake Reddit on loopback, real HTTP: what the connector sees of
//! www.reddit.com (the login form, its one-time-code step, a challenge page)
//! and of old.reddit.com (the header with the account's name and logout
//! link, the `.json` listings of saved items, submitted posts and comments,
//! paged by `after`).
//!
//! Both origins are served by one site on two ports, sharing its sessions:
//! the browser keeps cookies per host name, not per port, so the session
//! cookie set at "www" (127.0.0.1:A) is sent to "old" (127.0.0.1:B), as
//! Reddit's `.reddit.com` cookie is. The site runs on a thread and runtime
//! of its own, since the tests' calls to the server block.

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The code the one-time-code step accepts.
pub const OTP_CODE: &str = "246810";
/// The most items the site puts on one listing page, whatever `limit` asks
/// (Reddit's `limit` is a maximum too): small, so the tests page.
pub const PAGE: usize = 4;
/// Items per stream of each account.
pub const ITEMS: usize = 10;
/// The newest item's creation time (2026-06-01T00:00:00Z).
const NEWEST: i64 = 1_780_272_000;

/// One account of the fake site.
pub struct Account {
    pub password: String,
    /// Whether the login asks for a one-time code.
    pub otp: bool,
    /// Newest first, as Reddit lists them: (kind, data).
    submitted: Vec<(String, Value)>,
    comments: Vec<(String, Value)>,
    /// In the order they were saved (newest save first).
    saved: Vec<(String, Value)>,
}

impl Account {
    pub fn new(name: &str, password: &str, otp: bool) -> Account {
        let submitted = (0..ITEMS)
            .map(|i| post_item(name, i, NEWEST - i as i64 * 3600))
            .collect();
        let comments = (0..ITEMS)
            .map(|i| comment_item(name, i, NEWEST - i as i64 * 3600 - 60))
            .collect();
        // Saved in an order unrelated to creation: old posts saved lately.
        let saved = (0..ITEMS)
            .map(|i| {
                let created = NEWEST - 400_000 + ((i * 7919) % 97) as i64 * 1000;
                if i % 3 == 2 {
                    comment_item("someone_else", 100 + i, created)
                } else {
                    post_item("someone_else", 100 + i, created)
                }
            })
            .collect();
        Account {
            password: password.to_owned(),
            otp,
            submitted,
            comments,
            saved,
        }
    }
}

fn post_item(author: &str, i: usize, created: i64) -> (String, Value) {
    let id = format!("{author}p{i}");
    (
        "t3".into(),
        json!({
            "name": format!("t3_{id}"),
            "id": id,
            "author": author,
            "subreddit": "rust",
            "title": format!("Post {i} by {author}"),
            "selftext": format!("The text of post {i}."),
            "url": format!("https://www.reddit.com/r/rust/comments/{id}/post_{i}/"),
            "domain": "self.rust",
            "permalink": format!("/r/rust/comments/{id}/post_{i}/"),
            "is_self": true,
            "over_18": false,
            "score": 10 + i,
            "num_comments": i,
            "upvote_ratio": 0.97,
            "gilded": 0,
            "created_utc": created as f64,
        }),
    )
}

fn comment_item(author: &str, i: usize, created: i64) -> (String, Value) {
    let id = format!("{author}c{i}");
    let link = format!("t3_{author}link{}", i % 3);
    (
        "t1".into(),
        json!({
            "name": format!("t1_{id}"),
            "id": id,
            "author": author,
            "subreddit": "learnrust",
            "body": format!("Comment {i} by {author}."),
            "link_id": link,
            "link_title": format!("Thread {}", i % 3),
            "link_url": format!("https://www.reddit.com/r/learnrust/comments/{}/thread/", &link[3..]),
            "parent_id": if i.is_multiple_of(2) { link.clone() } else { format!("t1_{author}c{}", i + 1) },
            "permalink": format!("/r/learnrust/comments/{}/thread/{id}/", &link[3..]),
            "score": 2 + i,
            "gilded": 0,
            "created_utc": created as f64,
        }),
    )
}

#[derive(Default)]
struct Inner {
    accounts: BTreeMap<String, Account>,
    /// Session cookie → account.
    sessions: HashMap<String, String>,
    /// Cookie of a login waiting for its code → account.
    pending: HashMap<String, String>,
    /// The login pages show a challenge instead of the form.
    challenge: bool,
    next_token: u64,
    /// Password submissions, one-time-code submissions, challenge pages served.
    logins: usize,
    /// The usernames of the password submissions, in order.
    login_names: Vec<String>,
    otps: usize,
    challenges: usize,
    /// Listing requests (`/user/…/stream.json?…`), in order.
    listings: Vec<String>,
    /// End every session when the listing request with this number (counted
    /// from 1) arrives: Reddit signing the browser out mid-run.
    sign_out_at_listing: Option<usize>,
}

type Shared = Arc<Mutex<Inner>>;

/// The running site: the origins of its two faces.
pub struct Site {
    /// Where `https://www.reddit.com` is served.
    pub www: String,
    /// Where `https://old.reddit.com` is served.
    pub old: String,
    state: Shared,
}

impl Site {
    pub fn start(accounts: Vec<(&str, Account)>) -> Site {
        let state: Shared = Arc::default();
        state.lock().unwrap().accounts = accounts.into_iter().map(|(n, a)| (n.to_owned(), a)).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let app = router(state.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let mut origins = Vec::new();
                for _ in 0..2 {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    origins.push(format!("http://{}", listener.local_addr().unwrap()));
                    let app = app.clone();
                    tokio::spawn(async move { axum::serve(listener, app).await });
                }
                tx.send(origins).unwrap();
                std::future::pending::<()>().await;
            });
        });
        let origins = rx.recv().unwrap();
        Site {
            www: origins[0].clone(),
            old: origins[1].clone(),
            state,
        }
    }

    /// The `[egress]` part of a host configuration that sends both declared
    /// origins here.
    pub fn egress_toml(&self) -> String {
        format!(
            "[egress]\nallow_loopback_for_rewrites = true\n[egress.rewrites]\n\
             \"https://www.reddit.com\" = \"{}\"\n\"https://old.reddit.com\" = \"{}\"\n",
            self.www, self.old
        )
    }

    /// Password submissions so far.
    pub fn logins(&self) -> usize {
        self.state.lock().unwrap().logins
    }

    /// The usernames of the password submissions so far.
    pub fn login_names(&self) -> Vec<String> {
        self.state.lock().unwrap().login_names.clone()
    }

    /// One-time-code submissions so far.
    pub fn otps(&self) -> usize {
        self.state.lock().unwrap().otps
    }

    /// Challenge pages served so far.
    pub fn challenges(&self) -> usize {
        self.state.lock().unwrap().challenges
    }

    /// Listing requests so far.
    pub fn listings(&self) -> Vec<String> {
        self.state.lock().unwrap().listings.clone()
    }

    /// Show a challenge on the login pages (or stop showing it: the owner
    /// cleared it).
    pub fn set_challenge(&self, on: bool) {
        self.state.lock().unwrap().challenge = on;
    }

    /// End every session when listing request number `n` (from 1) arrives.
    pub fn sign_out_at_listing(&self, n: usize) {
        self.state.lock().unwrap().sign_out_at_listing = Some(n);
    }

    /// The account posts something new (the newest of its submissions).
    pub fn new_post(&self, account: &str) {
        let mut s = self.state.lock().unwrap();
        let a = s.accounts.get_mut(account).unwrap();
        let i = a.submitted.len();
        a.submitted.insert(0, post_item(account, i, NEWEST + 3600));
    }

    /// The account saves something (the newest of its saves), created long ago.
    pub fn new_save(&self, account: &str) {
        let mut s = self.state.lock().unwrap();
        let a = s.accounts.get_mut(account).unwrap();
        let i = 500 + a.saved.len();
        a.saved.insert(0, post_item("someone_else", i, NEWEST - 9_000_000));
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(front))
        .route("/login", get(login_form))
        .route("/login/", get(login_form).post(login))
        .route("/login/otp", get(otp_form).post(otp))
        .route("/logout", post(logout))
        .route("/user/{name}/{listing}", get(listing))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state)
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"
    ))
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|c| c.to_str().ok())
        .flat_map(|c| c.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(&format!("{name}=")).map(str::to_owned))
}

fn signed_in(s: &Inner, headers: &HeaderMap) -> Option<String> {
    cookie(headers, "reddit_session").and_then(|t| s.sessions.get(&t).cloned())
}

fn token(s: &mut Inner) -> String {
    s.next_token += 1;
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    format!(
        "{}-{}",
        s.next_token,
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// old.reddit.com's front page: the header says who is signed in.
async fn front(State(s): State<Shared>, headers: HeaderMap) -> Html<String> {
    let s = s.lock().unwrap();
    let header = match signed_in(&s, &headers) {
        Some(name) => format!(
            r#"<div id="header-bottom-right"><span class="user"><a href="/user/{name}/">{name}</a>&nbsp;(<span class="userkarma">42</span>)</span>
               <form class="logout hover" action="/logout" method="post"><a href="javascript:void(0)">logout</a></form></div>"#
        ),
        None => r#"<div id="header-bottom-right"><a class="login-required" href="/login">log in or sign up</a></div>"#
            .into(),
    };
    page(
        "reddit: the front page of the internet",
        &format!("{header}<div id=\"siteTable\"></div>"),
    )
}

const FORM: &str = r#"<form id="login" action="/login/" method="post">
      <input name="username" type="text" autocomplete="username">
      <input name="password" type="password" autocomplete="current-password">
      <button type="submit">Log In</button></form>"#;

fn challenge_page(s: &mut Inner) -> Html<String> {
    s.challenges += 1;
    page(
        "Just a moment...",
        r#"<div id="challenge-running">Checking that you are a person. Please wait.</div>
           <form id="challenge-form"><div class="h-captcha">[ ] I am human</div></form>"#,
    )
}

async fn login_form(State(s): State<Shared>) -> Html<String> {
    let mut s = s.lock().unwrap();
    if s.challenge {
        return challenge_page(&mut s);
    }
    page("reddit.com: Log in", FORM)
}

async fn login(State(s): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut s = s.lock().unwrap();
    s.logins += 1;
    let name = f.get("username").cloned().unwrap_or_default();
    s.login_names.push(name.clone());
    let password = f.get("password").cloned().unwrap_or_default();
    let Some(otp) = s.accounts.get(&name).filter(|a| a.password == password).map(|a| a.otp) else {
        return page(
            "reddit.com: Log in",
            &format!(r#"<p class="login-error">Incorrect username or password</p>{FORM}"#),
        )
        .into_response();
    };
    let t = token(&mut s);
    if otp {
        s.pending.insert(t.clone(), name);
        return (
            [(header::SET_COOKIE, format!("login_pending={t}; Path=/; HttpOnly"))],
            Redirect::to("/login/otp"),
        )
            .into_response();
    }
    s.sessions.insert(t.clone(), name);
    session_response(&t)
}

fn session_response(t: &str) -> Response {
    (
        [(
            header::SET_COOKIE,
            format!("reddit_session={t}; Path=/; Max-Age=31536000; HttpOnly"),
        )],
        Redirect::to("/"),
    )
        .into_response()
}

const OTP_FORM: &str = r#"<form id="otp" action="/login/otp" method="post">
      <p>Enter the 6-digit code from your authenticator app</p>
      <input name="otp" type="text" inputmode="numeric" autocomplete="one-time-code">
      <button type="submit">Check code</button></form>"#;

async fn otp_form() -> Html<String> {
    page("reddit.com: Two-factor authentication", OTP_FORM)
}

async fn otp(State(s): State<Shared>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut s = s.lock().unwrap();
    s.otps += 1;
    let pending = cookie(&headers, "login_pending").and_then(|t| s.pending.get(&t).cloned());
    match pending {
        Some(name) if f.get("otp").map(String::as_str) == Some(OTP_CODE) => {
            let t = token(&mut s);
            s.sessions.insert(t.clone(), name);
            session_response(&t)
        }
        _ => page(
            "reddit.com: Two-factor authentication",
            &format!(r#"<p class="login-error">That code is not right</p>{OTP_FORM}"#),
        )
        .into_response(),
    }
}

async fn logout(State(s): State<Shared>, headers: HeaderMap) -> Redirect {
    let mut s = s.lock().unwrap();
    if let Some(t) = cookie(&headers, "reddit_session") {
        s.sessions.remove(&t);
    }
    Redirect::to("/")
}

/// `/user/{name}/{saved|submitted|comments}.json?limit=&after=`: the
/// signed-in account's own listings; anyone else's saved items are refused
/// (403), as Reddit does.
async fn listing(
    State(s): State<Shared>,
    Path((name, listing)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut s = s.lock().unwrap();
    let mut query: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.sort();
    s.listings.push(format!("/user/{name}/{listing}?{}", query.join("&")));
    if s.sign_out_at_listing == Some(s.listings.len()) {
        s.sessions.clear();
    }
    let forbidden = || {
        (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
            json!({ "message": "Forbidden", "error": 403 }).to_string(),
        )
            .into_response()
    };
    if signed_in(&s, &headers).as_deref() != Some(name.as_str()) {
        return forbidden();
    }
    let Some(account) = s.accounts.get(&name) else {
        return forbidden();
    };
    let items = match listing.as_str() {
        "saved.json" => &account.saved,
        "submitted.json" => &account.submitted,
        "comments.json" => &account.comments,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(25)
        .clamp(1, 100)
        .min(PAGE);
    let start = match q.get("after") {
        Some(after) => items
            .iter()
            .position(|(_, d)| d["name"] == after.as_str())
            .map_or(items.len(), |i| i + 1),
        None => 0,
    };
    let chunk: Vec<&(String, Value)> = items.iter().skip(start).take(limit).collect();
    let after = (start + chunk.len() < items.len())
        .then(|| chunk.last().map(|(_, d)| d["name"].clone()))
        .flatten();
    let body = json!({
        "kind": "Listing",
        "data": {
            "after": after,
            "dist": chunk.len(),
            "before": null,
            "children": chunk.iter().map(|(k, d)| json!({ "kind": k, "data": d })).collect::<Vec<_>>(),
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}
