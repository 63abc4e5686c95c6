//! A hostile guest: the browse test guest's bootstrap hands a token over by
//! selector and then tries every way to read it back. The host refuses the
//! element, scrubs the value from the page (so no read and no selector
//! matching on it learns anything) and keeps it out of every log line and
//! event; only the credentials service gets it.

use super::*;
use axum::Router;
use axum::response::Html;
use axum::routing::get;

/// A page showing `token` the ways provider pages do: a code element, a
/// copy button's attribute, a data attribute, an input's value.
fn token_site(token: String) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let html = format!(
                r#"<!doctype html><html><head><title>Your new token</title></head><body>
                   <code id="t">{token}</code>
                   <clipboard-copy value="{token}">Copy</clipboard-copy>
                   <p id="hint" data-token="{token}">Shown once.</p>
                   <input id="field" type="text" value="{token}">
                   </body></html>"#
            );
            let app = Router::new().route("/token", get(move || async move { Html(html) }));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

fn step_results(s: &Server, run_id: &str) -> Vec<(String, String)> {
    events(s, run_id, "run.log")
        .iter()
        .filter(|e| e["data"]["message"] == "step")
        .map(|e| {
            let f = &e["data"]["fields"];
            (
                f["op"].as_str().unwrap_or_default().to_owned(),
                f["result"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The guest captures the token, then reads the element, the copy button,
/// the data attribute, the input, the whole body, and probes a selector on
/// the token's prefix: every answer is refused or holds nothing of the
/// token. It cannot capture another field, nor capture outside a
/// bootstrap; a bootstrap that emits a record is stopped. The host stored
/// the token (sealed) all the same.
#[test]
fn a_guest_never_reads_the_token_it_handed_over() {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).unwrap();
    let token = format!("tok_{}", raw.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let site = token_site(token.clone());
    let work = tempfile::tempdir().unwrap();
    let s = serve_with(
        ServeOptions::default()
            .plugin(
                "browse",
                &crate::support::workspace().join("tests/guests/browse/browse-bootstrap.json"),
            )
            .config(&config(&[("https://www.example.com", &site)], work.path())),
    );
    let bootstrap_steps = json!([
        { "navigate": "https://www.example.com/token", "must": true },
        { "capture": ["other", "#t"] },
        { "capture": ["token", "#t"], "must": true },
        { "text": "#t" },
        { "attribute": ["clipboard-copy", "value"] },
        { "attribute": ["#hint", "data-token"] },
        { "attribute": ["#field", "value"] },
        { "texts": ["body", 10] },
        { "wait_for": ["[data-token^='tok_']", 0] },
        { "wait_for": ["[value^='tok_']", 0] },
        { "account": "tester" },
    ]);
    let first_sync_steps = json!([
        { "navigate": "https://www.example.com/token", "must": true },
        { "capture": ["token", "#t"] },
        { "account": "tester" },
    ]);
    let (code, created) = s.owner(
        "POST",
        "/v1/connections",
        Some(json!({ "connector_id": "browse-bootstrap",
                     "settings": { "bootstrap_steps": bootstrap_steps, "steps": first_sync_steps } })),
    );
    assert_eq!(code, 201, "{created}");
    let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
    let run_id = start_bootstrap(&s, &id);
    let run = s.wait_run(&run_id);
    assert_eq!(run["status"], "succeeded", "{run} {:?}", timeline(&s, &run_id));

    wait_verdict(&s, &run_id);
    let results = step_results(&s, &run_id);
    let result = |i: usize| results[i].1.clone();
    assert!(result(1).contains("field_not_bootstrapped"), "{results:?}");
    assert!(result(2).starts_with("ok"), "{results:?}");
    assert!(
        result(3).contains("secret_filled_element"),
        "the captured element is refused: {results:?}"
    );
    for i in 4..=7 {
        assert!(!result(i).contains(&token), "step {i} got the token: {results:?}");
    }
    assert!(
        result(8).starts_with("err"),
        "no selector matches the token's prefix any more: {results:?}"
    );
    assert!(result(9).starts_with("err"), "nor an input's value: {results:?}");
    let everything = json!(timeline(&s, &run_id)).to_string();
    assert!(!everything.contains(&token), "the timeline holds no trace of the token");
    assert!(!everything.contains(&token[4..20]), "nor a piece of it");

    // The host has it: stored, sealed; the first sync starts.
    let stored = events(&s, &run_id, "bootstrap.credential_stored");
    assert_eq!(stored.len(), 1, "{everything}");
    assert_eq!(stored[0]["data"]["validation"], "first_sync", "the guest has no probe");
    let first = wait_event(&s, &run_id, "bootstrap.first_sync_started")["data"]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.wait_run(&first);
    let status = wait_status(&s, &id, |v| v["credential"]["present"] == true && v["running"] == false);
    assert_eq!(
        status["credential"]["kind"]
            .as_str()
            .or(status["credential"]["credential_kind"].as_str()),
        Some("personal_access_token"),
        "{status}"
    );
    // A normal run cannot capture anything.
    let results = step_results(&s, &first);
    assert!(results[1].1.contains("not_a_bootstrap"), "{results:?}");
    assert!(!json!(timeline(&s, &first)).to_string().contains(&token));
    let bytes = bytes_under(&s.dir.path().join("data"));
    assert!(!contains(&bytes, &token), "no stored byte holds the token in plaintext");

    // A bootstrap that emits a record is stopped, and nothing is stored.
    let (_, created) = s.owner(
        "POST",
        "/v1/connections",
        Some(json!({ "connector_id": "browse-bootstrap",
                     "settings": { "bootstrap_steps": [ { "record": "one" } ] } })),
    );
    let other = created["connection"]["connection_id"].as_str().unwrap().to_owned();
    let run_id = start_bootstrap(&s, &other);
    let run = s.wait_run(&run_id);
    assert_eq!(run["status"], "failed", "{run}");
    let failed = events(&s, &run_id, "run.failed");
    assert_eq!(failed[0]["data"]["rule"], "bootstrap_emits_progress_only", "{failed:?}");
    let status = wait_status(&s, &other, |v| v["bootstrap"]["state"] == "failed");
    assert_eq!(status["credential"]["present"], false, "{status}");
}
