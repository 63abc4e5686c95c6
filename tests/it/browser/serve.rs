//! Browser-backed connections through the real `pdpp-host serve`: set up
//! through the owner API (the browser demo against its site), and a host
//! stopped while a browser run goes on leaves no browser behind.

use crate::server::*;
use crate::server_on_both_backends;
use crate::support::*;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// The demo site on a thread and runtime of its own (the server calls are
/// blocking); its origin.
fn demo_site() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
            browser_demo_site::serve(listener).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// A configuration that rewrites `declared` to the site and keeps browser
/// sessions in `work_dir`.
fn config(declared: &str, site: &str, work_dir: &Path) -> String {
    format!(
        "[egress]\nallow_loopback_for_rewrites = true\n[egress.rewrites]\n\"{declared}\" = \"{site}\"\n\
         [browser]\nmax_browsers = 1\nwork_dir = \"{}\"\n",
        work_dir.display()
    )
}

server_on_both_backends! {
    /// The owner's path for a browser-backed connector: the catalog offers
    /// it as experimental with both session modes (its proofs are
    /// recorded), creating the connection starts its first sync, which
    /// signs in, verifies the account and collects; setup status shows the
    /// browser's cleanup and the sealed profile; switching to ephemeral
    /// forgets the profile.
    fn a_browser_backed_connection_is_set_up_through_the_owner_api(backend: Backend) {
        let site = demo_site();
        let work = tempfile::tempdir().unwrap();
        let manifest = workspace().join("manifests/browser-demo.json");
        let s = serve_with(
            ServeOptions::default()
                .plugin("browser_demo", &manifest)
                .config(&config("https://books.example", &site, work.path()))
                .backend(backend),
        );
        let (_, connector) = s.owner("GET", "/v1/connectors/browser-demo", None);
        let plan = &connector["setup"];
        assert_eq!(plan["support_state"], "experimental", "{connector}");
        assert_eq!(plan["browser_session_modes"], json!(["persistent", "ephemeral"]));

        let (code, created) = s.owner("POST", "/v1/connections", Some(json!({ "connector_id": "browser-demo" })));
        assert_eq!(code, 201, "{created}");
        let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
        let run_id = created["first_sync"]["run_id"].as_str().unwrap();
        let run = s.wait_run(run_id);
        assert_eq!(run["status"], "succeeded", "{run}");
        let (_, status) = s.owner("GET", &format!("/v1/connections/{id}/setup-status"), None);
        assert_eq!(status["setup_state"], "active", "{status}");
        assert_eq!(status["account_identity"], "demo-reader");
        assert_eq!(status["browser"]["state"], "cleanup_done", "{status}");
        assert_eq!(status["browser"]["profile_stored"], true);
        assert_eq!(status["browser"]["mode"], "persistent");
        assert!(!status.to_string().contains("reader="), "no cookie in the status: {status}");
        let (_, records) = s.owner("GET", &format!("/v1/records?connection_id={id}&stream=books"), None);
        assert_eq!(records["records"].as_array().map(Vec::len), Some(browser_demo_site::BOOKS.min(100)));

        let (code, patched) = s.owner(
            "PATCH",
            &format!("/v1/connections/{id}"),
            Some(json!({ "browser_session": "ephemeral" })),
        );
        assert_eq!(code, 200, "{patched}");
        assert_eq!(patched["browser_session"], "ephemeral");
        let (_, status) = s.owner("GET", &format!("/v1/connections/{id}/setup-status"), None);
        assert_eq!(status["browser"]["profile_stored"], false);
        assert_eq!(status["browser"]["mode"], "ephemeral");
        let (code, refused) = s.owner(
            "PATCH",
            &format!("/v1/connections/{id}"),
            Some(json!({ "browser_session": "forever" })),
        );
        assert_eq!(code, 400, "{refused}");
    }
}

/// Host shutdown is one of the ends of a run: SIGTERM while a browser run
/// is calling its browser stops the run, tears Chromium and chromedriver
/// down (no process of the host is left) and records the cleanup.
#[test]
fn stopping_the_host_tears_a_running_browser_down() {
    let site = demo_site();
    let work = tempfile::tempdir().unwrap();
    let mut s = serve_with(
        ServeOptions::default()
            .plugin("browse", &workspace().join("tests/guests/browse/browse.json"))
            .config(&config("https://www.example.com", &site, work.path())),
    );
    let steps = json!([{ "navigate": "https://www.example.com/", "must": true }, { "poll": true }]);
    let (code, created) = s.owner(
        "POST",
        "/v1/connections",
        Some(json!({ "connector_id": "browse", "settings": { "steps": steps } })),
    );
    assert_eq!(code, 201, "{created}");
    let run_id = created["first_sync"]["run_id"].as_str().unwrap().to_owned();
    let pid = s.pid();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pdpp_host::browser::live_browser_processes_of(pid) == 0 {
        assert!(Instant::now() < deadline, "the run's browser never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The guest is past its first page once the session's processes run.
    std::thread::sleep(Duration::from_secs(2));
    assert!(s.terminate().success(), "the server exits cleanly");
    assert_eq!(
        pdpp_host::browser::live_browser_processes_of(pid),
        0,
        "no browser process outlives its host"
    );
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .flat_map(|d| {
            std::fs::read_dir(d.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
        })
        .collect();
    assert!(leftovers.is_empty(), "no session directory is left: {leftovers:?}");
    let (events, err) = s.runs_show(&run_id);
    let shown = events[0].to_string();
    assert!(!shown.contains("\"status\":\"running\""), "{shown} {err}");
}
