//! A fake github.com for the bootstrap: the pages the GitHub connector's
//! bootstrap depends on, real HTTP on loopback, reached through the
//! deployment rewrite `https://github.com` → the site.
//!
//! Sign in at `/login` (username and password), then a one-time code
//! (`/sessions/two-factor`), then an emailed device-verification code
//! (`/sessions/verified-device`); the token form at
//! `/settings/tokens/new?description=…&scopes=…` first asks for the
//! password again (`/sessions/sudo`); it prefills the description and
//! ticks the scopes named in the URL; its expiry select offers `7` to
//! `90` days and `none`. Submitting mints a `ghp_` token, shown once
//! (`#new-oauth-token` and a `clipboard-copy`), and makes the API double
//! accept exactly that token. Faults: a refused password or code, a form
//! whose fields were renamed (the page changed), a rate limit on submit.

use crate::providers::Control;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const USERNAME: &str = "octo-owner";
pub const PASSWORD: &str = "correct horse battery staple";
pub const TOTP: &str = "246810";
pub const DEVICE_CODE: &str = "13579135";

/// What the fake site does, and what it saw.
#[derive(Default)]
pub struct SiteState {
    /// Session id → how far that browser got.
    sessions: HashMap<String, Stage>,
    /// Tokens minted, in order, with their form.
    pub minted: Vec<Minted>,
    /// The token form's fields are renamed (GitHub changed its page).
    pub page_changed: bool,
    /// Submitting the token form is refused as rate limited.
    pub rate_limited: bool,
    /// Device verification is asked after the one-time code.
    pub device_verification: bool,
    /// Logins refused so far (wrong password or code).
    pub refused: u32,
}

/// One token the site made.
#[derive(Clone, Debug)]
pub struct Minted {
    pub token: String,
    pub description: String,
    pub expires: String,
    pub scopes: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Otp,
    Device,
    SignedIn { sudo: bool },
}

#[derive(Clone)]
struct St {
    site: Arc<Mutex<SiteState>>,
    api: Arc<Control>,
}

/// The running site: its origin and state.
pub struct Site {
    pub origin: String,
    pub state: Arc<Mutex<SiteState>>,
}

/// Serve the site on a thread of its own; minted tokens are accepted by `api`.
pub fn start(api: Arc<Control>, device_verification: bool) -> Site {
    let state = Arc::new(Mutex::new(SiteState {
        device_verification,
        ..Default::default()
    }));
    let st = St {
        site: state.clone(),
        api,
    };
    let app = Router::new()
        .route("/", get(home))
        .route("/login", get(login_page))
        .route("/session", post(session))
        .route("/sessions/two-factor", get(otp_page).post(otp))
        .route("/sessions/verified-device", get(device_page).post(device))
        .route("/sessions/sudo", get(sudo_page).post(sudo))
        .route("/settings/tokens/new", get(token_form))
        .route("/settings/tokens", post(create_token))
        .with_state(st);
    Site {
        origin: super::serve_site(app),
        state,
    }
}

fn page(title: &str, body: &str, user: bool) -> Html<String> {
    let meta = if user {
        format!(r#"<meta name="user-login" content="{USERNAME}">"#)
    } else {
        String::new()
    };
    Html(format!(
        "<!doctype html><html><head><title>{title}</title>{meta}</head><body>{body}</body></html>"
    ))
}

fn random(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).unwrap();
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn sid(headers: &HeaderMap) -> Option<String> {
    super::session_cookie(headers, "gh_sess")
}

fn stage(st: &St, headers: &HeaderMap) -> Option<Stage> {
    let sid = sid(headers)?;
    st.site.lock().unwrap().sessions.get(&sid).copied()
}

fn set_stage(st: &St, headers: &HeaderMap, stage: Stage) {
    if let Some(sid) = sid(headers) {
        st.site.lock().unwrap().sessions.insert(sid, stage);
    }
}

fn signed_in(st: &St, headers: &HeaderMap) -> bool {
    matches!(stage(st, headers), Some(Stage::SignedIn { .. }))
}

async fn home(State(st): State<St>, headers: HeaderMap) -> Html<String> {
    if signed_in(&st, &headers) {
        page("GitHub", r#"<h1 id="dashboard">Dashboard</h1>"#, true)
    } else {
        page("GitHub", r#"<a href="/login">Sign in</a>"#, false)
    }
}

fn login_form(error: bool) -> Html<String> {
    let flash = if error {
        r#"<div class="flash-error">Incorrect username or password.</div>"#
    } else {
        ""
    };
    page(
        "Sign in to GitHub",
        &format!(
            r#"{flash}<form action="/session" method="post">
                 <input id="login_field" name="login" type="text">
                 <input id="password" name="password" type="password">
                 <input type="submit" name="commit" value="Sign in">
               </form>"#
        ),
        false,
    )
}

async fn login_page() -> Response {
    // A fresh browser session id, as GitHub's own cookie.
    let sid = random(24);
    (
        [(header::SET_COOKIE, format!("gh_sess={sid}; Path=/; HttpOnly"))],
        login_form(false),
    )
        .into_response()
}

async fn session(State(st): State<St>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let ok =
        f.get("login").map(String::as_str) == Some(USERNAME) && f.get("password").map(String::as_str) == Some(PASSWORD);
    if !ok {
        st.site.lock().unwrap().refused += 1;
        return login_form(true).into_response();
    }
    set_stage(&st, &headers, Stage::Otp);
    Redirect::to("/sessions/two-factor").into_response()
}

fn otp_form(error: bool) -> Html<String> {
    let flash = if error {
        r#"<div class="flash-error">Two-factor authentication failed.</div>"#
    } else {
        ""
    };
    page(
        "Two-factor authentication",
        &format!(
            r#"{flash}<form action="/sessions/two-factor" method="post">
                 <input id="app_totp" name="app_otp" type="text" autocomplete="one-time-code">
                 <button type="submit">Verify</button>
               </form>"#
        ),
        false,
    )
}

async fn otp_page(State(st): State<St>, headers: HeaderMap) -> Response {
    match stage(&st, &headers) {
        Some(Stage::Otp) => otp_form(false).into_response(),
        _ => Redirect::to("/login").into_response(),
    }
}

async fn otp(State(st): State<St>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    if stage(&st, &headers) != Some(Stage::Otp) {
        return Redirect::to("/login").into_response();
    }
    if f.get("app_otp").map(String::as_str) != Some(TOTP) {
        st.site.lock().unwrap().refused += 1;
        return otp_form(true).into_response();
    }
    if st.site.lock().unwrap().device_verification {
        set_stage(&st, &headers, Stage::Device);
        return Redirect::to("/sessions/verified-device").into_response();
    }
    set_stage(&st, &headers, Stage::SignedIn { sudo: false });
    Redirect::to("/").into_response()
}

fn device_form(error: bool) -> Html<String> {
    let flash = if error {
        r#"<div class="flash-error">Incorrect verification code.</div>"#
    } else {
        ""
    };
    page(
        "Device verification",
        &format!(
            r#"<h1>Device verification</h1>{flash}<form action="/sessions/verified-device" method="post">
                 <input id="otp" name="otp" type="text">
                 <button type="submit">Verify</button>
               </form>"#
        ),
        false,
    )
}

async fn device_page(State(st): State<St>, headers: HeaderMap) -> Response {
    match stage(&st, &headers) {
        Some(Stage::Device) => device_form(false).into_response(),
        _ => Redirect::to("/login").into_response(),
    }
}

async fn device(State(st): State<St>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    if stage(&st, &headers) != Some(Stage::Device) {
        return Redirect::to("/login").into_response();
    }
    if f.get("otp").map(String::as_str) != Some(DEVICE_CODE) {
        st.site.lock().unwrap().refused += 1;
        return device_form(true).into_response();
    }
    set_stage(&st, &headers, Stage::SignedIn { sudo: false });
    Redirect::to("/").into_response()
}

async fn sudo_page(State(st): State<St>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if !signed_in(&st, &headers) {
        return Redirect::to("/login").into_response();
    }
    let back = q.get("return_to").cloned().unwrap_or_else(|| "/".into());
    let back = url_encode(&back);
    page(
        "Confirm access",
        &format!(
            r#"<h1>Confirm access</h1><form action="/sessions/sudo?return_to={back}" method="post">
                 <input name="sudo_password" type="password">
                 <button type="submit">Confirm</button>
               </form>"#
        ),
        true,
    )
    .into_response()
}

async fn sudo(
    State(st): State<St>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if !signed_in(&st, &headers) {
        return Redirect::to("/login").into_response();
    }
    if f.get("sudo_password").map(String::as_str) != Some(PASSWORD) {
        st.site.lock().unwrap().refused += 1;
        return Redirect::to("/sessions/sudo").into_response();
    }
    set_stage(&st, &headers, Stage::SignedIn { sudo: true });
    Redirect::to(q.get("return_to").map_or("/", String::as_str)).into_response()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const ALL_SCOPES: &[&str] = &[
    "repo",
    "public_repo",
    "workflow",
    "read:org",
    "gist",
    "read:user",
    "user:email",
    "delete_repo",
];

async fn token_form(State(st): State<St>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(Stage::SignedIn { sudo }) = stage(&st, &headers) else {
        return Redirect::to("/login").into_response();
    };
    if !sudo {
        let back = format!(
            "/settings/tokens/new?description={}&scopes={}",
            url_encode(q.get("description").map_or("", String::as_str)),
            url_encode(q.get("scopes").map_or("", String::as_str))
        );
        return Redirect::to(&format!("/sessions/sudo?return_to={}", url_encode(&back))).into_response();
    }
    let changed = st.site.lock().unwrap().page_changed;
    let wanted: Vec<&str> = q.get("scopes").map_or("", String::as_str).split(',').collect();
    let boxes: String = ALL_SCOPES
        .iter()
        .map(|s| {
            let checked = if wanted.contains(s) { " checked" } else { "" };
            format!(r#"<label><input type="checkbox" name="oauth_access[scopes][]" value="{s}"{checked}> {s}</label>"#)
        })
        .collect();
    let description = q.get("description").cloned().unwrap_or_default().replace('"', "&quot;");
    let id = if changed {
        "token_note"
    } else {
        "oauth_access_description"
    };
    page(
        "New personal access token (classic)",
        &format!(
            r#"<form id="new_oauth_access" action="/settings/tokens" method="post">
                 <input id="{id}" name="oauth_access[description]" type="text" value="{description}">
                 <select name="oauth_access[expires_at]">
                   <option value="7">7 days</option><option value="30" selected>30 days</option>
                   <option value="60">60 days</option><option value="90">90 days</option>
                   <option value="none">No expiration</option>
                 </select>
                 {boxes}
                 <button type="submit">Generate token</button>
               </form>"#
        ),
        true,
    )
    .into_response()
}

async fn create_token(State(st): State<St>, headers: HeaderMap, body: String) -> Response {
    if !matches!(stage(&st, &headers), Some(Stage::SignedIn { sudo: true })) {
        return Redirect::to("/login").into_response();
    }
    if st.site.lock().unwrap().rate_limited {
        return page(
            "Rate limited",
            r#"<div class="flash-error">You have triggered a rate limit. Please wait a few minutes before you try again.</div>"#,
            true,
        )
        .into_response();
    }
    let mut description = String::new();
    let mut expires = String::new();
    let mut scopes = Vec::new();
    for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
        match k.as_ref() {
            "oauth_access[description]" => description = v.into_owned(),
            "oauth_access[expires_at]" => expires = v.into_owned(),
            "oauth_access[scopes][]" => scopes.push(v.into_owned()),
            _ => {}
        }
    }
    let token = format!("ghp_{}", random(36));
    st.api.accept(&token);
    st.site.lock().unwrap().minted.push(Minted {
        token: token.clone(),
        description,
        expires,
        scopes,
    });
    page(
        "Personal access tokens (classic)",
        &format!(
            r#"<div class="flash">Make sure to copy your personal access token now. You won't be able to see it again!</div>
               <code id="new-oauth-token" class="token">{token}</code>
               <clipboard-copy value="{token}">Copy</clipboard-copy>
               <p id="token-hint" data-token="{token}">Token ending in {}</p>"#,
            &token[token.len() - 4..]
        ),
        true,
    )
    .into_response()
}
