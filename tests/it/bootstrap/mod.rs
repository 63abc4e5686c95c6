//! Credential bootstraps through the real `pdpp-host serve`, real Chromium
//! and fake provider websites on loopback (docs/bootstrap.md).
//!
//! Each provider's fake website (in this folder, never in `connectors/`)
//! reproduces what the connector's bootstrap depends on, and mints a token
//! that the provider's API double (tests/it/providers) then accepts, so a
//! test goes bootstrap → probe → first sync → records → active without
//! anybody seeing or pasting the token.

mod github;
mod github_site;
mod hostile;
mod notion;
mod notion_site;
mod oura;
mod oura_site;

use crate::server::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// A serve configuration: each `(declared, target)` rewrite, loopback
/// allowed for them, browser sessions in `work_dir`.
pub fn config(rewrites: &[(&str, &str)], work_dir: &Path) -> String {
    let mut toml = "[egress]\nallow_loopback_for_rewrites = true\n[egress.rewrites]\n".to_owned();
    for (declared, target) in rewrites {
        toml.push_str(&format!("\"{declared}\" = \"{target}\"\n"));
    }
    toml.push_str(&format!(
        "[browser]\nmax_browsers = 1\nwork_dir = \"{}\"\n",
        work_dir.display()
    ));
    toml
}

/// Start the bootstrap of a connection; its run id.
pub fn start_bootstrap(s: &Server, connection: &str) -> String {
    let (code, started) = s.owner("POST", &format!("/v1/connections/{connection}/bootstrap"), None);
    assert_eq!(code, 202, "{started}");
    started["run_id"].as_str().unwrap().to_owned()
}

/// Answer a run's questions as the owner would, through the interaction
/// routes, until the run ends; `answer` gets each question (kind, message)
/// and gives the answer's data. Returns the kinds asked, in order.
pub fn answer_until_done(s: &Server, run_id: &str, answer: impl Fn(&str, &str) -> Value) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut asked = Vec::new();
    loop {
        let (_, list) = s.owner("GET", &format!("/v1/interactions?run_id={run_id}"), None);
        for q in list["interactions"].as_array().cloned().unwrap_or_default() {
            let kind = q["kind"].as_str().unwrap_or_default().to_owned();
            let data = answer(&kind, q["message"].as_str().unwrap_or_default());
            let id = q["interaction_id"].as_str().unwrap();
            let (code, body) = s.owner(
                "POST",
                &format!("/v1/interactions/{id}"),
                Some(json!({ "status": "success", "data": data })),
            );
            assert_eq!(code, 200, "{body}");
            asked.push(kind);
        }
        let (_, run) = s.owner("GET", &format!("/v1/runs/{run_id}"), None);
        if run["run"]["status"] != "running" {
            return asked;
        }
        assert!(Instant::now() < deadline, "run {run_id} did not finish: {run}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The timeline of a run.
pub fn timeline(s: &Server, run_id: &str) -> Vec<Value> {
    let (_, run) = s.owner("GET", &format!("/v1/runs/{run_id}"), None);
    run["events"].as_array().cloned().unwrap_or_default()
}

/// The events of one kind.
pub fn events(s: &Server, run_id: &str, kind: &str) -> Vec<Value> {
    timeline(s, run_id).into_iter().filter(|e| e["kind"] == kind).collect()
}

/// Wait until the bootstrap run's credential has a verdict
/// (`bootstrap.credential_stored` or `_refused`, written when the run ended);
/// the verdict event.
pub fn wait_verdict(s: &Server, run_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(e) = timeline(s, run_id)
            .into_iter()
            .find(|e| e["kind"] == "bootstrap.credential_stored" || e["kind"] == "bootstrap.credential_refused")
        {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no verdict on the bootstrap's credential: {:?}",
            timeline(s, run_id)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until the run's timeline has an event of `kind`; that event.
pub fn wait_event(s: &Server, run_id: &str, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(e) = events(s, run_id, kind).into_iter().next() {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} on the timeline: {:?}",
            timeline(s, run_id)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until the setup status satisfies `ok`.
pub fn wait_status(s: &Server, connection: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, status) = s.owner("GET", &format!("/v1/connections/{connection}/setup-status"), None);
        if ok(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "setup status never got there: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every byte under `dir` (the SQLite file, the vault, logs), for proving
/// a value is stored nowhere in plaintext.
pub fn bytes_under(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in walk(dir) {
        if let Ok(b) = std::fs::read(&entry) {
            all.extend(b);
        }
    }
    all
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Serve a fake site's `app` on a loopback port from a thread and runtime of
/// its own (the server tests block their thread); its origin.
pub fn serve_site(app: axum::Router) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let port = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    format!("http://127.0.0.1:{port}")
}

/// The value of the cookie `name` a fake site set.
pub fn session_cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    let cookies = headers.get(axum::http::header::COOKIE)?.to_str().ok()?;
    let prefix = format!("{name}=");
    cookies
        .split(';')
        .find_map(|c| c.trim().strip_prefix(prefix.as_str()))
        .map(str::to_owned)
}
