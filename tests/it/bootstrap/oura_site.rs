//! A fake cloud.ouraring.com for the bootstrap: a sign-in form (email and
//! password, then an emailed code), the personal-access-tokens page with
//! "Create A New Personal Access Token", the note form, and the token shown
//! once; minting makes the API double accept exactly that token. Faults: a
//! refused login, an account without an active membership (no create link).

use crate::providers::Control;
use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const EMAIL: &str = "owner@example.org";
pub const PASSWORD: &str = "ring ring sleep well";
pub const CODE: &str = "4711";

#[derive(Default)]
pub struct SiteState {
    /// Session id → signed in (true) or waiting for the code (false).
    sessions: HashMap<String, bool>,
    pub minted: Vec<(String, String)>,
    /// The account has no active Oura Membership.
    pub no_membership: bool,
}

#[derive(Clone)]
struct St {
    site: Arc<Mutex<SiteState>>,
    api: Arc<Control>,
}

pub struct Site {
    pub origin: String,
    pub state: Arc<Mutex<SiteState>>,
}

pub fn start(api: Arc<Control>) -> Site {
    let state = Arc::new(Mutex::new(SiteState::default()));
    let app = Router::new()
        .route("/personal-access-tokens", get(tokens).post(sign_in))
        .route("/personal-access-tokens/new", get(new_form).post(create))
        .with_state(St {
            site: state.clone(),
            api,
        });
    Site {
        origin: super::serve_site(app),
        state,
    }
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"
    ))
}

fn sid(headers: &HeaderMap) -> Option<String> {
    super::session_cookie(headers, "oura_sess")
}

fn random(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{:X}", b % 16)).collect()
}

fn signed_in(st: &St, headers: &HeaderMap) -> bool {
    sid(headers).is_some_and(|s| st.site.lock().unwrap().sessions.get(&s) == Some(&true))
}

fn login_form() -> Html<String> {
    page(
        "Sign in",
        r#"<form method="post" action="/personal-access-tokens">
             <input name="email" type="email"><input name="password" type="password">
             <button type="submit">Sign in</button></form>"#,
    )
}

async fn tokens(State(st): State<St>, headers: HeaderMap) -> Response {
    if !signed_in(&st, &headers) {
        let fresh = random(20);
        return (
            [(header::SET_COOKIE, format!("oura_sess={fresh}; Path=/"))],
            login_form(),
        )
            .into_response();
    }
    if st.site.lock().unwrap().no_membership {
        return page(
            "Personal Access Tokens",
            r#"<p data-membership-required>API access requires an active Oura Membership.</p>
               <a href="/membership">Join</a>"#,
        )
        .into_response();
    }
    page(
        "Personal Access Tokens",
        r#"<a href="/personal-access-tokens/new">Create A New Personal Access Token</a>"#,
    )
    .into_response()
}

async fn sign_in(State(st): State<St>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let Some(sid) = sid(&headers) else {
        return Redirect::to("/personal-access-tokens").into_response();
    };
    if let Some(code) = f.get("code") {
        if code == CODE && st.site.lock().unwrap().sessions.contains_key(&sid) {
            st.site.lock().unwrap().sessions.insert(sid, true);
            return Redirect::to("/personal-access-tokens").into_response();
        }
        return code_form().into_response();
    }
    if f.get("email").map(String::as_str) == Some(EMAIL) && f.get("password").map(String::as_str) == Some(PASSWORD) {
        st.site.lock().unwrap().sessions.insert(sid, false);
        return code_form().into_response();
    }
    login_form().into_response()
}

fn code_form() -> Html<String> {
    page(
        "Verify",
        r#"<form method="post" action="/personal-access-tokens">
             <input name="code" type="text"><button type="submit">Verify</button></form>"#,
    )
}

async fn new_form(State(st): State<St>, headers: HeaderMap) -> Response {
    if !signed_in(&st, &headers) {
        return Redirect::to("/personal-access-tokens").into_response();
    }
    page(
        "New Personal Access Token",
        r#"<form method="post" action="/personal-access-tokens/new">
             <input name="note" type="text"><button type="submit">Create Personal Access Token</button></form>"#,
    )
    .into_response()
}

async fn create(State(st): State<St>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    if !signed_in(&st, &headers) {
        return Redirect::to("/personal-access-tokens").into_response();
    }
    let token = random(32);
    st.api.accept(&token);
    st.site
        .lock()
        .unwrap()
        .minted
        .push((token.clone(), f.get("note").cloned().unwrap_or_default()));
    page(
        "Personal Access Tokens",
        &format!(
            r#"<p>Your new token. It will not be shown again.</p>
               <span id="personal-access-token">{token}</span>"#
        ),
    )
    .into_response()
}
