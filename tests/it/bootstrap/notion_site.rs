//! A fake www.notion.so for the bootstrap: sign in with an email and the
//! login code Notion emails; my-integrations with "New integration"; the
//! form (name, workspace, capability checkboxes); the integration page with
//! "Show" revealing the `ntn_` secret. Minting makes the API double accept
//! exactly that secret. A member who is not a workspace owner gets the form
//! back with no error, as Notion does.

use crate::providers::Control;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const EMAIL: &str = "owner@example.org";
pub const CODE: &str = "beach-otter-42";

#[derive(Default)]
pub struct SiteState {
    sessions: HashMap<String, bool>,
    /// Integration id → (secret, name, capabilities).
    pub minted: Vec<(String, String, Vec<String>)>,
    /// The signed-in person is a member, not a workspace owner.
    pub not_owner: bool,
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
        .route("/my-integrations", get(integrations))
        .route("/login", post(login))
        .route("/my-integrations/new", get(new_form).post(create))
        .route("/my-integrations/internal/{n}", get(integration))
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
    super::session_cookie(headers, "notion_sess")
}

fn random(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{:02x}", b)).collect()
}

fn signed_in(st: &St, headers: &HeaderMap) -> bool {
    sid(headers).is_some_and(|s| st.site.lock().unwrap().sessions.get(&s) == Some(&true))
}

async fn integrations(State(st): State<St>, headers: HeaderMap) -> Response {
    if !signed_in(&st, &headers) {
        let fresh = random(12);
        return (
            [(header::SET_COOKIE, format!("notion_sess={fresh}; Path=/"))],
            page(
                "Log in",
                r#"<form method="post" action="/login"><input type="email" name="email">
                   <button type="submit">Continue with email</button></form>"#,
            ),
        )
            .into_response();
    }
    page(
        "My integrations",
        r#"<a id="new-integration" href="/my-integrations/new">New integration</a>"#,
    )
    .into_response()
}

async fn login(State(st): State<St>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let Some(sid) = sid(&headers) else {
        return Redirect::to("/my-integrations").into_response();
    };
    let code_form = || {
        page(
            "Check your email",
            r#"<form method="post" action="/login"><input name="code" type="text">
               <button type="submit">Continue with login code</button></form>"#,
        )
    };
    if let Some(code) = f.get("code") {
        if code == CODE && st.site.lock().unwrap().sessions.contains_key(&sid) {
            st.site.lock().unwrap().sessions.insert(sid, true);
            return Redirect::to("/my-integrations").into_response();
        }
        return code_form().into_response();
    }
    if f.get("email").map(String::as_str) == Some(EMAIL) {
        st.site.lock().unwrap().sessions.insert(sid, false);
        return code_form().into_response();
    }
    Redirect::to("/my-integrations").into_response()
}

fn form() -> Html<String> {
    page(
        "New integration",
        r#"<form method="post" action="/my-integrations/new">
             <input name="name" type="text">
             <select name="workspace"><option value="ws-1">Owner's workspace</option></select>
             <label><input type="checkbox" name="capability" value="read_content" checked> Read content</label>
             <label><input type="checkbox" name="capability" value="update_content" checked> Update content</label>
             <label><input type="checkbox" name="capability" value="insert_content" checked> Insert content</label>
             <label><input type="checkbox" name="capability" value="read_user_without_email"> Read user information without email</label>
             <button type="submit">Save</button></form>"#,
    )
}

async fn new_form(State(st): State<St>, headers: HeaderMap) -> Response {
    if !signed_in(&st, &headers) {
        return Redirect::to("/my-integrations").into_response();
    }
    form().into_response()
}

async fn create(State(st): State<St>, headers: HeaderMap, body: String) -> Response {
    if !signed_in(&st, &headers) {
        return Redirect::to("/my-integrations").into_response();
    }
    if st.site.lock().unwrap().not_owner {
        // Notion's silent failure: the same form again, nothing said.
        return form().into_response();
    }
    let mut name = String::new();
    let mut capabilities = Vec::new();
    for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
        match k.as_ref() {
            "name" => name = v.into_owned(),
            "capability" => capabilities.push(v.into_owned()),
            _ => {}
        }
    }
    let secret = format!("ntn_{}", random(20));
    st.api.accept(&secret);
    let n = {
        let mut site = st.site.lock().unwrap();
        site.minted.push((secret, name, capabilities));
        site.minted.len() - 1
    };
    Redirect::to(&format!("/my-integrations/internal/{n}")).into_response()
}

async fn integration(State(st): State<St>, headers: HeaderMap, Path(n): Path<usize>) -> Response {
    if !signed_in(&st, &headers) {
        return Redirect::to("/my-integrations").into_response();
    }
    let Some((secret, _, _)) = st.site.lock().unwrap().minted.get(n).cloned() else {
        return Redirect::to("/my-integrations").into_response();
    };
    // "Show" reveals the secret (here, with the page's own script).
    page(
        "Internal integration",
        &format!(
            r#"<button id="show-secret" onclick="document.getElementById('slot').innerHTML = '<code id=&quot;integration-secret&quot;>{secret}</code>'">Show</button>
               <div id="slot">••••••••</div>"#
        ),
    )
    .into_response()
}
