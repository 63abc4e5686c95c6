//! The demo reading-list site: a sign-in page, and a reading list of
//! `BOOKS` books (newest first, `PAGE_SIZE` per page) shown to a signed-in
//! reader. The session is a cookie that lasts a day, so a connection's
//! second run finds its browser still signed in. Nothing is real and
//! nothing leaves the machine: the site listens on loopback only.

use axum::Router;
use axum::extract::{Form, Query};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use std::collections::HashMap;

/// Books on the list.
pub const BOOKS: usize = 12;
/// Books per page.
pub const PAGE_SIZE: usize = 5;

const TITLES: [(&str, &str); BOOKS] = [
    ("The Left Hand of Darkness", "Ursula K. Le Guin"),
    ("Kindred", "Octavia E. Butler"),
    ("The Dispossessed", "Ursula K. Le Guin"),
    ("Piranesi", "Susanna Clarke"),
    ("The Remains of the Day", "Kazuo Ishiguro"),
    ("Middlemarch", "George Eliot"),
    ("A Wizard of Earthsea", "Ursula K. Le Guin"),
    ("Parable of the Sower", "Octavia E. Butler"),
    ("Never Let Me Go", "Kazuo Ishiguro"),
    ("Jonathan Strange & Mr Norrell", "Susanna Clarke"),
    ("Persuasion", "Jane Austen"),
    ("Emma", "Jane Austen"),
];

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head><body>{body}</body></html>"
    ))
}

/// Letters, digits, `-`, `_` and `.` only: a reader name is shown in pages.
fn reader_name(s: &str) -> Option<String> {
    let ok = !s.is_empty() && s.len() <= 40 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    ok.then(|| s.to_owned())
}

fn signed_in(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let value = cookies.split("; ").find_map(|kv| kv.strip_prefix("reader="))?;
    reader_name(value)
}

async fn sign_in_page() -> Html<String> {
    page(
        "Sign in — Books",
        r#"<h1>Books</h1><form action="/sign-in" method="post">
             <label>Reader <input id="reader" name="reader" value="demo-reader"></label>
             <button id="sign-in" type="submit">Sign in</button></form>"#,
    )
}

async fn sign_in(Form(f): Form<HashMap<String, String>>) -> Response {
    match f.get("reader").and_then(|r| reader_name(r)) {
        Some(reader) => (
            [(
                header::SET_COOKIE,
                format!("reader={reader}; Max-Age=86400; Path=/; HttpOnly"),
            )],
            Redirect::to("/list?page=1"),
        )
            .into_response(),
        None => page("Sign in — Books", r#"<p id="error">Letters and digits only.</p>"#).into_response(),
    }
}

async fn list(Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Html<String> {
    let Some(reader) = signed_in(&headers) else {
        return page("Books", r#"<p>Please <a href="/">sign in</a>.</p>"#);
    };
    let n: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1);
    let mut body = format!(r#"<p id="signed-in" data-reader="{reader}">Signed in as {reader}</p><ol>"#);
    for i in (n - 1) * PAGE_SIZE..(n * PAGE_SIZE).min(BOOKS) {
        // Newest first: book 12 was added on day 12.
        let number = BOOKS - i;
        let (title, author) = TITLES[number - 1];
        body.push_str(&format!(
            r#"<li class="book" data-id="book-{number}" data-added="2026-01-{number:02}T09:00:00Z"><span class="title">{title}</span> by <span class="author">{author}</span></li>"#
        ));
    }
    body.push_str("</ol>");
    if n * PAGE_SIZE < BOOKS {
        body.push_str(&format!(r#"<a id="next" href="/list?page={}">Next</a>"#, n + 1));
    }
    page(&format!("Reading list, page {n}"), &body)
}

/// The site's routes.
pub fn app() -> Router {
    Router::new()
        .route("/", get(sign_in_page))
        .route("/sign-in", post(sign_in))
        .route("/list", get(list))
}

/// Serve the site on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, app()).await
}
