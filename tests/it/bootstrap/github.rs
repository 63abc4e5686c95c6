//! GitHub: a classic personal access token made for the owner by the
//! connector's bootstrap on the fake github.com, then used by the real
//! connector against the API double, which accepts exactly that token.

use super::github_site::{self, DEVICE_CODE, PASSWORD, TOTP, USERNAME};
use super::*;
use crate::providers::github::{self as api, GitHub};
use crate::providers::{Double, manifest_path, records};
use crate::server_on_both_backends;
use pdpp_host::store::Backend;

/// The API double (accepting no real token yet), the site minting tokens
/// for it, and a host serving the GitHub connector with both rewritten.
struct Setup {
    double: Double<GitHub>,
    site: github_site::Site,
    s: Server,
    _work: tempfile::TempDir,
}

fn setup(backend: Backend, device_verification: bool) -> Setup {
    let double = api::start_accepting(GitHub::seeded(), "ghp_nothing_the_site_minted");
    let site = github_site::start(double.ctl.clone(), device_verification);
    let work = tempfile::tempdir().unwrap();
    let s = serve_with(
        ServeOptions::default()
            .plugin("github", &manifest_path("github"))
            .config(&config(
                &[
                    ("https://api.github.com", &double.origin()),
                    ("https://github.com", &site.origin),
                ],
                work.path(),
            ))
            .backend(backend),
    );
    Setup {
        double,
        site,
        s,
        _work: work,
    }
}

/// The owner's answers: the login, the app code, the emailed code, the
/// password again for sudo.
fn owner(password: &'static str, totp: &'static str) -> impl Fn(&str, &str) -> Value {
    move |kind, message| match kind {
        "credentials" if message.contains("again") => json!({ "password": password }),
        "credentials" => json!({ "username": USERNAME, "password": password }),
        _ if message.contains("email") => json!({ "code": DEVICE_CODE }),
        _ => json!({ "code": totp }),
    }
}

fn create_draft(s: &Server) -> String {
    let (code, created) = s.owner("POST", "/v1/connections", Some(json!({ "connector_id": "github" })));
    assert_eq!(code, 201, "{created}");
    created["connection"]["connection_id"].as_str().unwrap().to_owned()
}

server_on_both_backends! {
    /// The seed's promise: a new owner with only a GitHub login (username,
    /// password, a code) gets an active connection without seeing or
    /// pasting a token. The plan offers the bootstrap beside the paste
    /// form; the bootstrap signs in (two-factor, device verification,
    /// sudo), fills the prefilled form with the scopes the streams need and
    /// the longest expiry, hands the token over by selector; the host
    /// probes, seals and starts the first sync, which collects with exactly
    /// the token the site minted. No response, event, audit entry or
    /// stored byte holds the token.
    fn github_bootstrap_creates_the_token_and_the_connection_becomes_active(backend: Backend) {
        let Setup { double, site, s, _work } = setup(backend, true);
        let (_, connector) = s.owner("GET", "/v1/connectors/github", None);
        let plan = &connector["setup"];
        assert_eq!(plan["bootstrap"]["type"], "browser_pat", "{plan}");
        assert_eq!(plan["bootstrap"]["field"], "token");
        assert!(plan["bootstrap"]["instructions"].as_str().unwrap().contains("never see"), "{plan}");
        assert_eq!(plan["credential_form"]["fields"][0]["name"], "token", "the paste form stays: {plan}");

        let id = create_draft(&s);
        let status = wait_status(&s, &id, |v| v["setup_state"] == "awaiting_credential");
        assert_eq!(status["next_step"]["kind"], "bootstrap_credential", "{status}");
        assert_eq!(status["bootstrap"]["state"], "not_started", "{status}");
        assert_eq!(status["bootstrap"]["paste"]["method"], "PUT", "{status}");

        let run_id = start_bootstrap(&s, &id);
        let asked = answer_until_done(&s, &run_id, owner(PASSWORD, TOTP));
        assert_eq!(
            asked,
            ["credentials", "otp", "otp", "credentials"],
            "login, app code, emailed code, sudo: {:?}",
            timeline(&s, &run_id)
        );
        let run = s.wait_run(&run_id);
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["trigger"], "bootstrap", "{run}");

        let minted = site.state.lock().unwrap().minted.clone();
        assert_eq!(minted.len(), 1, "one token made");
        let token = minted[0].token.clone();
        let mut scopes = minted[0].scopes.clone();
        scopes.sort();
        assert_eq!(scopes, ["gist", "read:user", "repo"], "the scopes the streams need, no more");
        assert_eq!(minted[0].expires, "none", "the longest expiry offered");
        assert!(minted[0].description.starts_with("PDPP connector ("), "{:?}", minted[0].description);

        let verdict = wait_verdict(&s, &run_id);
        assert_eq!(verdict["kind"], "bootstrap.credential_stored", "{verdict}");
        let stored = events(&s, &run_id, "bootstrap.credential_stored");
        assert_eq!(stored[0]["data"]["account"], api::LOGIN);
        assert_eq!(stored[0]["data"]["validation"], "synchronous");
        let steps: Vec<String> = events(&s, &run_id, "run.progress_reported")
            .iter()
            .filter_map(|e| e["data"]["message"].as_str().map(str::to_owned))
            .collect();
        for step in ["sign_in", "two_factor", "device_verification", "sudo", "open_token_form", "fill_token_form", "capture_token"] {
            assert!(steps.iter().any(|m| m.ends_with(step)), "step {step} on the timeline: {steps:?}");
        }
        assert_eq!(events(&s, &run_id, "bootstrap.credential_captured").len(), 1);
        let first = wait_event(&s, &run_id, "bootstrap.first_sync_started");
        let first_sync = first["data"]["run_id"].as_str().unwrap().to_owned();
        let sync = s.wait_run(&first_sync);
        assert_eq!(sync["status"], "succeeded", "{sync}");

        let status = wait_status(&s, &id, |v| v["status"] == "active");
        assert_eq!(status["setup_state"], "active", "{status}");
        assert_eq!(status["account_identity"], api::LOGIN);
        assert_eq!(status["credential"]["status"], "active");
        assert_eq!(status["bootstrap"]["state"], "stored", "{status}");
        for (stream, n) in api::first_sync_counts() {
            assert_eq!(records(&s, &id, stream).len(), n, "records of {stream}");
        }
        // The double saw the API only with the minted token: a refused
        // request would be a 401.
        assert!(double.ctl.requests().iter().all(|r| r.status != 401), "every API call carried the minted token");

        // The token is nowhere the owner or an operator could read it.
        let (_, audit) = s.owner("GET", &format!("/v1/audit?connection_id={id}"), None);
        let capture = audit["events"]
            .as_array()
            .or(audit["audit"].as_array())
            .unwrap_or_else(|| panic!("{audit}"))
            .iter()
            .find(|e| e["action"] == "connection.credential.capture")
            .cloned()
            .unwrap_or_else(|| panic!("{audit}"));
        assert_eq!(capture["detail"]["source"], "bootstrap", "{capture}");
        for shown in [
            audit.to_string(),
            status.to_string(),
            json!(timeline(&s, &run_id)).to_string(),
            json!(timeline(&s, &first_sync)).to_string(),
        ] {
            assert!(!shown.contains(&token), "the token leaked: {shown}");
            assert!(!shown.contains(PASSWORD), "the password leaked: {shown}");
        }
        if backend == Backend::Sqlite {
            let bytes = bytes_under(&s.dir.path().join("data"));
            assert!(!contains(&bytes, &token), "no stored byte holds the token in plaintext");
        }
    }
}

/// Each failure of the flow is typed, ends the bootstrap run with its code,
/// keeps the draft (no half-made connection) and tells the owner what to
/// do next: retry for a wrong login or code and a rate limit, paste for a
/// page that changed (naming the step). Then a good attempt stores it.
#[test]
fn github_bootstrap_failures_are_typed_and_leave_the_draft_with_a_next_step() {
    let Setup {
        double: _double,
        site,
        s,
        _work,
    } = setup(Backend::Sqlite, false);
    let id = create_draft(&s);
    let attempt = |password: &'static str, totp: &'static str| {
        let run_id = start_bootstrap(&s, &id);
        answer_until_done(&s, &run_id, owner(password, totp));
        let run = s.wait_run(&run_id);
        let status = wait_status(&s, &id, |v| {
            v["bootstrap"]["state"] != "running" && v["bootstrap"]["state"] != "awaiting_owner"
        });
        (run, status)
    };

    // A wrong password.
    let (run, status) = attempt("wrong password", TOTP);
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(status["bootstrap"]["error_code"], "login_failed", "{status}");
    assert_eq!(
        status["setup_state"], "awaiting_credential",
        "the draft stays: {status}"
    );
    assert_eq!(status["next_step"]["kind"], "bootstrap_credential", "retry: {status}");
    assert!(
        !status["bootstrap"]["retry"]["reason"]
            .as_str()
            .unwrap()
            .contains("paste instead"),
        "{status}"
    );

    // A wrong one-time code.
    let (_, status) = attempt(PASSWORD, "000000");
    assert_eq!(status["bootstrap"]["error_code"], "otp_rejected", "{status}");
    assert_eq!(status["setup_state"], "awaiting_credential");

    // GitHub changed its form: the step is named, and pasting is the way.
    site.state.lock().unwrap().page_changed = true;
    let (_, status) = attempt(PASSWORD, TOTP);
    assert_eq!(status["bootstrap"]["error_code"], "page_changed", "{status}");
    assert!(
        status["bootstrap"]["message"]
            .as_str()
            .unwrap()
            .contains("open_token_form"),
        "{status}"
    );
    assert!(
        status["bootstrap"]["retry"]["reason"]
            .as_str()
            .unwrap()
            .contains("paste instead"),
        "{status}"
    );
    assert_eq!(
        status["bootstrap"]["paste"]["url"],
        format!("/v1/connections/{id}/credential")
    );
    site.state.lock().unwrap().page_changed = false;

    // Rate limited on submit.
    site.state.lock().unwrap().rate_limited = true;
    let (_, status) = attempt(PASSWORD, TOTP);
    assert_eq!(status["bootstrap"]["error_code"], "rate_limited", "{status}");
    assert_eq!(status["credential"]["present"], false, "nothing was stored: {status}");
    site.state.lock().unwrap().rate_limited = false;
    assert!(
        site.state.lock().unwrap().minted.is_empty(),
        "no token was made by a failed attempt"
    );

    // The owner tries again.
    let run_id = start_bootstrap(&s, &id);
    answer_until_done(&s, &run_id, owner(PASSWORD, TOTP));
    assert_eq!(s.wait_run(&run_id)["status"], "succeeded");
    let status = wait_status(&s, &id, |v| v["status"] == "active");
    assert_eq!(status["bootstrap"]["state"], "stored", "{status}");
}

/// Rotation: when the provider rejects the bootstrapped token, setup status
/// offers a new bootstrap; the new token replaces the old through the
/// credentials service (same account), the audit trail keeps the old
/// one's fingerprint, and the next run collects with the new token.
#[test]
fn a_rejected_bootstrapped_token_is_replaced_by_a_new_bootstrap() {
    let Setup { double, site, s, _work } = setup(Backend::Sqlite, false);
    let id = create_draft(&s);
    let run_id = start_bootstrap(&s, &id);
    answer_until_done(&s, &run_id, owner(PASSWORD, TOTP));
    let status = wait_status(&s, &id, |v| v["status"] == "active" && v["running"] == false);
    let old_fingerprint = status["credential"]["fingerprint"].as_str().unwrap().to_owned();
    let old = site.state.lock().unwrap().minted[0].token.clone();

    double.ctl.revoke(&old);
    let (_, started) = s.owner("POST", &format!("/v1/connections/{id}/runs"), None);
    let run = s.wait_run(started["run_id"].as_str().unwrap());
    assert_eq!(run["status"], "failed", "{run}");
    let status = wait_status(&s, &id, |v| v["credential"]["status"] == "rejected");
    assert_eq!(
        status["next_step"]["kind"], "bootstrap_credential",
        "re-bootstrap is offered: {status}"
    );

    let run_id = start_bootstrap(&s, &id);
    answer_until_done(&s, &run_id, owner(PASSWORD, TOTP));
    assert_eq!(s.wait_run(&run_id)["status"], "succeeded");
    wait_verdict(&s, &run_id);
    let status = wait_status(&s, &id, |v| v["credential"]["status"] == "active");
    assert_ne!(status["credential"]["fingerprint"], old_fingerprint, "a new token");
    assert_eq!(
        events(&s, &run_id, "bootstrap.credential_stored")[0]["data"]["rotated"],
        true
    );
    assert_eq!(site.state.lock().unwrap().minted.len(), 2);

    let (_, audit) = s.owner("GET", &format!("/v1/audit?connection_id={id}"), None);
    let rows = audit["events"]
        .as_array()
        .or(audit["audit"].as_array())
        .unwrap()
        .clone();
    assert!(
        rows.iter().any(|e| e["action"] == "connection.credential.capture"
            && e["detail"]["rotated"] == true
            && e["detail"]["previous_fingerprint"] == old_fingerprint.as_str()),
        "the replaced token's fingerprint is on record: {audit}"
    );
    let (_, started) = s.owner("POST", &format!("/v1/connections/{id}/runs"), None);
    let run = s.wait_run(started["run_id"].as_str().unwrap());
    assert_eq!(
        run["status"], "succeeded",
        "the next run collects with the new token: {run}"
    );
}

/// The terminal path: `pdpp-host connection bootstrap` asks for the login
/// and the codes at the terminal, stores the token through the credentials
/// service (never printed), runs the draft's first sync and exits 0; the
/// connection is active with the records.
#[test]
fn connection_bootstrap_at_the_terminal_makes_the_token_and_runs_the_first_sync() {
    let double = api::start_accepting(GitHub::seeded(), "ghp_nothing_the_site_minted");
    let site = github_site::start(double.ctl.clone(), false);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let conf = dir.path().join("pdpp-host.toml");
    std::fs::write(
        &conf,
        config(
            &[
                ("https://api.github.com", &double.origin()),
                ("https://github.com", &site.origin),
            ],
            dir.path(),
        ),
    )
    .unwrap();
    let manifest = manifest_path("github");
    let manifest = manifest.to_str().unwrap();
    let id = crate::support::cli_add_connection(&["--data-dir", data, "--manifest", manifest]);
    let wasm = crate::support::guest_path("github");
    // The questions in order: login (its fields as the terminal prompt
    // lists them: password, username), the app code, the password again (sudo).
    let answers = format!("{PASSWORD}\n{USERNAME}\n{TOTP}\n{PASSWORD}\n");
    let (code, lines, err) = crate::support::cli(
        &[
            "connection",
            "bootstrap",
            "--config",
            conf.to_str().unwrap(),
            "--data-dir",
            data,
            "--plugin",
            wasm.to_str().unwrap(),
            "--manifest",
            manifest,
            "--connection",
            &id,
        ],
        &[],
        Some(&answers),
    );
    assert_eq!(code, 0, "{lines:?} {err}");
    let token = site.state.lock().unwrap().minted[0].token.clone();
    let out = json!(lines).to_string();
    assert!(
        !out.contains(&token) && !err.contains(&token),
        "the token is never printed"
    );
    assert_eq!(lines[0]["credential"]["sealed"], true, "{out}");
    assert_eq!(
        lines[0]["credential"]["identity"]["account_identity"],
        api::LOGIN,
        "{out}"
    );
    assert_eq!(lines[0]["first_sync"]["status"], "succeeded", "{out}");
    assert_eq!(lines[0]["status"], "active", "{out}");
    assert!(
        err.contains("Sign in to GitHub"),
        "the question is asked at the terminal: {err}"
    );
}
