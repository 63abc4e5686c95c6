//! The Reddit connector (connectors/reddit) through the real
//! `pdpp-host serve`, with real Chromium, against a fake Reddit on loopback
//! (`site`), on SQLite and PostgreSQL: the owner sets it up through the API
//! and answers its questions there.

mod site;

use crate::server::*;
use crate::server_on_both_backends;
use crate::support::*;
use pdpp_host::store::Backend;
use serde_json::{Value, json};
use site::{Account, ITEMS, OTP_CODE, PAGE, Site};
use std::time::{Duration, Instant};

/// Longer than the host's minimum for scrubbing, so a name that leaked into
/// the secret rules would show.
const ADA: &str = "ada_lovelace";
const ADA_PASSWORD: &str = "analytical engine 1843";
const GRACE: &str = "grace_hopper";
const GRACE_PASSWORD: &str = "cobol compiler 1959";

/// Pages a stream of `ITEMS` items takes.
const PAGES: usize = ITEMS.div_ceil(PAGE);

fn serve_reddit(site: &Site, backend: Backend) -> Server {
    serve_with(
        ServeOptions::default()
            .plugin("reddit", &workspace().join("manifests/reddit.json"))
            .config(&format!("{}[browser]\nmax_browsers = 2\n", site.egress_toml()))
            .backend(backend),
    )
}

/// A draft connection of the Reddit connector (no credential yet).
fn draft(s: &Server) -> String {
    let (code, created) = s.owner("POST", "/v1/connections", Some(json!({ "connector_id": "reddit" })));
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["setup"]["setup_state"], "awaiting_credential", "{created}");
    assert!(created["first_sync"].is_null(), "no sync before the login is entered");
    created["connection"]["connection_id"].as_str().unwrap().to_owned()
}

/// Enter the login of a connection; the id of the run it starts.
fn enter_login(s: &Server, id: &str, username: &str, password: &str) -> String {
    let (code, body) = s.owner(
        "PUT",
        &format!("/v1/connections/{id}/credential"),
        Some(json!({ "kind": "username_password", "fields": { "username": username, "password": password } })),
    );
    assert_eq!(code, 201, "{body}");
    assert!(!body.to_string().contains(password), "the password never comes back");
    body["first_sync"]["run_id"].as_str().unwrap().to_owned()
}

/// Start a run of an active connection.
fn start_run(s: &Server, id: &str) -> String {
    let (code, body) = s.owner("POST", &format!("/v1/connections/{id}/runs"), None);
    assert_eq!(code, 202, "{body}");
    body["run_id"].as_str().unwrap().to_owned()
}

/// The finished run and its timeline (a browser run on a shared machine
/// can take a while: up to three minutes).
fn finished(s: &Server, run_id: &str) -> (Value, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (code, body) = s.owner("GET", &format!("/v1/runs/{run_id}"), None);
        if code == 200 && body["run"]["status"] != "running" {
            return (
                body["run"].clone(),
                body["events"].as_array().cloned().unwrap_or_default(),
            );
        }
        assert!(Instant::now() < deadline, "run {run_id} did not finish: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first event of a kind on a timeline.
fn event<'a>(events: &'a [Value], kind: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["kind"] == kind).map(|e| &e["data"])
}

/// Wait until the connection's run `run_id` asks a question of `kind`.
fn question(s: &Server, id: &str, run_id: &str, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, run) = s.owner("GET", &format!("/v1/runs/{run_id}"), None);
        assert_eq!(
            run["run"]["status"], "running",
            "the run ended before asking for {kind}: {run:#}"
        );
        let (code, body) = s.owner("GET", &format!("/v1/interactions?connection_id={id}"), None);
        assert_eq!(code, 200, "{body}");
        if let Some(q) = body["interactions"]
            .as_array()
            .and_then(|qs| qs.iter().find(|q| q["kind"] == kind))
        {
            return q.clone();
        }
        assert!(Instant::now() < deadline, "no {kind} question was asked: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn answer(s: &Server, question: &Value, data: Value) {
    let id = question["interaction_id"].as_str().unwrap();
    let (code, body) = s.owner(
        "POST",
        &format!("/v1/interactions/{id}"),
        Some(json!({ "status": "success", "data": data })),
    );
    assert!((200..300).contains(&code), "{code} {body}");
}

/// The stored records of a stream (their data), at most 500.
fn records(s: &Server, id: &str, stream: &str) -> Vec<Value> {
    let (code, body) = s.owner(
        "GET",
        &format!("/v1/records?connection_id={id}&stream={stream}&limit=500"),
        None,
    );
    assert_eq!(code, 200, "{body}");
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["data"].clone())
        .collect()
}

fn setup_status(s: &Server, id: &str) -> Value {
    let (code, body) = s.owner("GET", &format!("/v1/connections/{id}/setup-status"), None);
    assert_eq!(code, 200, "{body}");
    body
}

/// Set up a connection for `username` whose login asks for a code: the
/// owner enters the login, answers the code through the API; the first
/// sync succeeds. The connection's id.
fn set_up_with_code(s: &Server, site: &Site, username: &str, password: &str) -> String {
    let id = draft(s);
    let run_id = enter_login(s, &id, username, password);
    let asked = question(s, &id, &run_id, "otp");
    assert_eq!(asked["run_id"], run_id.as_str());
    assert!(asked["message"].as_str().unwrap().contains("code"), "{asked}");
    let status = setup_status(s, &id);
    assert_eq!(status["browser"]["state"], "awaiting_otp", "{status}");
    answer(s, &asked, json!({ "code": OTP_CODE }));
    let (run, events) = finished(s, &run_id);
    assert_eq!(run["status"], "succeeded", "{run}\n{events:#?}");
    assert_eq!(site.otps(), 1);
    id
}

/// Set up a connection whose login asks for no code.
fn set_up(s: &Server, username: &str, password: &str) -> String {
    let id = draft(s);
    let run_id = enter_login(s, &id, username, password);
    let (run, events) = finished(s, &run_id);
    assert_eq!(run["status"], "succeeded", "{run}\n{events:#?}");
    id
}

server_on_both_backends! {
    /// The proof `browser_session_e2e` of the Reddit connector: the owner
    /// creates the connection and enters the login through the API; the
    /// first sync signs in at www.reddit.com (the host types the username
    /// and password), parks on the one-time code until the owner answers it
    /// through the API, reports the account old.reddit.com shows before any
    /// record, and collects all three listings page by page. The connection
    /// is active with that account as its identity; the login material is
    /// sealed; the password is nowhere in what the API shows.
    fn reddit_signs_in_with_a_one_time_code_and_collects_its_three_streams(backend: Backend) {
        let site = Site::start(vec![(ADA, Account::new(ADA, ADA_PASSWORD, true))]);
        let s = serve_reddit(&site, backend);
        let (_, connector) = s.owner("GET", "/v1/connectors/reddit", None);
        assert_eq!(connector["setup"]["support_state"], "experimental", "{connector}");

        let id = set_up_with_code(&s, &site, ADA, ADA_PASSWORD);
        assert_eq!(site.login_names(), [ADA], "one sign-in, as the connection's account");
        let status = setup_status(&s, &id);
        assert_eq!(status["setup_state"], "active", "{status}");
        assert_eq!(status["account_identity"], ADA, "the account the page showed, unredacted");
        assert_eq!(status["browser"]["state"], "cleanup_done", "{status}");
        assert_eq!(status["browser"]["profile_stored"], true);

        let submitted = records(&s, &id, "submitted");
        let comments = records(&s, &id, "comments");
        let saved = records(&s, &id, "saved");
        assert_eq!((submitted.len(), comments.len(), saved.len()), (ITEMS, ITEMS, ITEMS));
        let newest = submitted.iter().find(|r| r["id"] == format!("t3_{ADA}p0")).unwrap();
        assert_eq!(newest["title"], format!("Post 0 by {ADA}"));
        assert_eq!(newest["permalink"], format!("https://www.reddit.com/r/rust/comments/{ADA}p0/post_0/"));
        assert_eq!(newest["created_utc"], "2026-06-01T00:00:00Z");
        let top = comments.iter().find(|r| r["id"] == format!("t1_{ADA}c0")).unwrap();
        assert_eq!((top["is_top_level"].as_bool(), top["link_title"].as_str()), (Some(true), Some("Thread 0")));
        let reply = comments.iter().find(|r| r["id"] == format!("t1_{ADA}c1")).unwrap();
        assert_eq!(reply["is_top_level"], false);
        assert_eq!(saved.iter().filter(|r| r["kind"] == "comment").count(), 3);
        assert!(saved.iter().all(|r| r["kind"] == "post" || r["title"].as_str().unwrap().starts_with("Thread")));
        // Every listing was read to its end, page by page.
        let listings = site.listings();
        for stream in ["saved", "submitted", "comments"] {
            let n = listings.iter().filter(|l| l.contains(&format!("/{stream}.json"))).count();
            assert_eq!(n, PAGES, "{stream}: {listings:#?}");
        }

        let (_, runs) = s.owner("GET", &format!("/v1/connections/{id}/runs"), None);
        let run_id = runs["runs"][0]["run_id"].as_str().unwrap().to_owned();
        let (_, detail) = s.owner("GET", &format!("/v1/runs/{run_id}"), None);
        let events = detail["events"].as_array().unwrap();
        assert_eq!(event(events, "run.browser_session_verified").unwrap()["account"], ADA);
        let everything = format!("{detail}{status}{saved:?}{submitted:?}{comments:?}");
        assert!(!everything.contains(ADA_PASSWORD), "the password is nowhere the owner API shows");
    }
}

server_on_both_backends! {
    /// The next run opens the connection's sealed profile: old.reddit.com
    /// shows it still signed in, so nobody types a password or a code, and
    /// each listing is read only down to its cursor — a new post and a new
    /// save (of an old post: saves are ordered by when, not by creation)
    /// are all that is collected.
    fn a_second_reddit_run_reuses_the_sealed_profile_and_collects_only_what_is_new(backend: Backend) {
        let site = Site::start(vec![(ADA, Account::new(ADA, ADA_PASSWORD, true))]);
        let s = serve_reddit(&site, backend);
        let id = set_up_with_code(&s, &site, ADA, ADA_PASSWORD);
        let listings_before = site.listings().len();

        site.new_post(ADA);
        site.new_save(ADA);
        let run_id = start_run(&s, &id);
        let (run, events) = finished(&s, &run_id);
        assert_eq!(run["status"], "succeeded", "{run}\n{events:#?}");
        assert_eq!((site.logins(), site.otps()), (1, 1), "no sign-in: the sealed profile was still signed in");
        assert!(event(&events, "run.interaction_required").is_none(), "nobody was asked anything");
        assert_eq!(event(&events, "run.browser_session_verified").unwrap()["account"], ADA);
        assert_eq!(run["records_written"], 2, "{run}");
        assert_eq!(records(&s, &id, "submitted").len(), ITEMS + 1);
        assert_eq!(records(&s, &id, "saved").len(), ITEMS + 1);
        assert_eq!(records(&s, &id, "comments").len(), ITEMS);
        assert_eq!(site.listings().len() - listings_before, 3, "one page of each listing");
    }
}

server_on_both_backends! {
    /// A password Reddit refuses ends the run with DONE failed,
    /// `credential_rejected`: no record, no question to the owner, the
    /// stored credential marked rejected, and the setup status asks for
    /// a new login.
    fn a_wrong_reddit_password_fails_the_run_as_credential_rejected(backend: Backend) {
        let site = Site::start(vec![(ADA, Account::new(ADA, ADA_PASSWORD, false))]);
        let s = serve_reddit(&site, backend);
        let id = draft(&s);
        let run_id = enter_login(&s, &id, ADA, "difference engine 1822");
        let (run, events) = finished(&s, &run_id);
        assert_eq!(run["status"], "failed", "{run}");
        assert_eq!(run["records_written"], 0);
        assert_eq!(site.logins(), 1);
        assert!(event(&events, "run.interaction_required").is_none(), "{events:#?}");
        assert!(event(&events, "run.credential_rejected").is_some(), "the stored login is marked rejected: {events:#?}");
        let status = setup_status(&s, &id);
        assert_eq!(status["last_error"]["reason"], "credential_rejected", "{status}");
        assert_eq!(status["next_step"]["kind"], "capture_credential", "{status}");
        assert!(!format!("{events:?}{status}").contains("difference engine"));
    }
}

server_on_both_backends! {
    /// A login that needs a one-time code, in a run nobody can answer (no
    /// `interactive` binding: a run of `pdpp-host run` without
    /// `--interactive`), fails at once with DONE failed naming the missing
    /// action, instead of waiting for an answer that cannot come.
    fn without_an_interactive_binding_a_reddit_login_that_needs_a_code_fails_at_once(backend: Backend) {
        let site = Site::start(vec![(ADA, Account::new(ADA, ADA_PASSWORD, true))]);
        let s = serve_reddit(&site, backend);
        let id = draft(&s);
        // The API's run asks (it is interactive); the owner cancels it.
        let api_run = enter_login(&s, &id, ADA, ADA_PASSWORD);
        question(&s, &id, &api_run, "otp");
        let (code, _) = s.owner("POST", &format!("/v1/runs/{api_run}/cancel"), None);
        assert!((200..300).contains(&code));
        finished(&s, &api_run);

        let data = s.dir.path().join("data");
        let args = [
            "run".to_owned(),
            guest_path("reddit").display().to_string(),
            "--manifest".into(),
            workspace().join("manifests/reddit.json").display().to_string(),
            "--connection".into(),
            id.clone(),
            "--data-dir".into(),
            data.display().to_string(),
            "--database-url".into(),
            s.database_url.clone(),
            "--rewrite-origin".into(),
            format!("https://www.reddit.com={}", site.www),
            "--rewrite-origin".into(),
            format!("https://old.reddit.com={}", site.old),
            "--allow-loopback-rewrites".into(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, lines, stderr) = cli(&args, &[], None);
        let all = format!("{lines:?}\n{stderr}");
        let done = lines.iter().find(|l| l["type"] == "DONE").unwrap_or_else(|| panic!("no DONE: {all}"));
        assert_eq!(done["status"], "failed", "{all}");
        assert_eq!(done["error"]["code"], "owner_input_required", "{all}");
        let message = done["error"]["message"].as_str().unwrap();
        assert!(message.contains("one-time code (otp)"), "the missing action is named: {message}");
        assert_ne!(code, 0);
        assert_eq!(site.otps(), 0, "no code was typed");
        let (_, pending) = s.owner("GET", &format!("/v1/interactions?connection_id={id}"), None);
        assert_eq!(pending["interactions"], json!([]), "nothing waits for the owner");
        assert!(!all.contains(ADA_PASSWORD));
    }
}

server_on_both_backends! {
    /// Two connections of the connector never share cookies: the second
    /// starts signed out although the first is signed in, and each later
    /// run is signed into its own account. A profile of connection A given
    /// to connection B (resealed for B, as a mix-up of stored material
    /// would) signs B's browser into A's account: the run fails as
    /// `session_account_mismatch`, keeps nothing, and B's stored material
    /// is deleted.
    fn two_reddit_connections_never_share_cookies_and_a_swapped_profile_is_a_session_account_mismatch(backend: Backend) {
        let site = Site::start(vec![
            (ADA, Account::new(ADA, ADA_PASSWORD, false)),
            (GRACE, Account::new(GRACE, GRACE_PASSWORD, false)),
        ]);
        let s = serve_reddit(&site, backend);
        let a = set_up(&s, ADA, ADA_PASSWORD);
        let b = set_up(&s, GRACE, GRACE_PASSWORD);
        assert_eq!(site.login_names(), [ADA, GRACE], "B signed in itself: it had none of A's cookies");
        for (id, who) in [(&a, ADA), (&b, GRACE)] {
            let run_id = start_run(&s, id);
            let (run, events) = finished(&s, &run_id);
            assert_eq!(run["status"], "succeeded", "{run}");
            assert_eq!(event(&events, "run.browser_session_verified").unwrap()["account"], who);
        }
        assert_eq!(site.logins(), 2, "each later run reused its own profile");

        // A's material, resealed for B, in B's place.
        let data = s.dir.path().join("data");
        let url = s.database_url.clone();
        let (a2, b2) = (a.clone(), b.clone());
        tokio::runtime::Runtime::new().unwrap().block_on(async move {
            let dep = pdpp_host::deploy::Deployment::open(pdpp_host::deploy::DeployOptions {
                data_dir: data,
                database_url: Some(url),
                key_file: None,
            })
            .await
            .unwrap();
            let stored = dep.store.browser_profile(&a2).await.unwrap().unwrap();
            let opened = pdpp_host::browser::SealedProfile::from_bytes(&stored.sealed)
                .unwrap()
                .open(&dep.key, &a2)
                .unwrap();
            let for_b = opened.seal(&dep.key, &b2).to_bytes();
            assert!(dep.store.save_browser_profile(&b2, "run_swapped", &for_b, 1, Some(GRACE)).await.unwrap());
        });
        let before = records(&s, &b, "submitted").len();
        let run_id = start_run(&s, &b);
        let (run, events) = finished(&s, &run_id);
        assert_eq!((run["status"].as_str(), run["failure_reason"].as_str()), (Some("failed"), Some("session_account_mismatch")), "{run}");
        let mismatch = event(&events, "run.browser_session_mismatch").unwrap();
        assert_eq!((mismatch["expected"].as_str(), mismatch["reported"].as_str()), (Some(GRACE), Some(ADA)));
        assert_eq!(records(&s, &b, "submitted").len(), before, "nothing is committed");
        assert_eq!(run["records_written"], 0);
        let status = setup_status(&s, &b);
        assert_eq!(status["browser"]["state"], "session_mismatch", "{status}");
        assert_eq!(status["browser"]["profile_stored"], false, "B's stored material is deleted");
        assert_eq!(status["account_identity"], GRACE, "B's identity is not overwritten");
        assert_eq!(site.logins(), 2, "the swapped profile was signed in: no sign-in was tried");
    }
}

server_on_both_backends! {
    /// A challenge on the login page becomes a `manual_action` question
    /// with a screenshot of the page: served to the owner (and only with
    /// the owner's token) while the question is open, gone once it is
    /// answered. Then the sign-in goes on.
    fn the_reddit_challenge_screenshot_is_served_while_the_question_is_open_and_gone_after(backend: Backend) {
        let site = Site::start(vec![(ADA, Account::new(ADA, ADA_PASSWORD, false))]);
        site.set_challenge(true);
        let s = serve_reddit(&site, backend);
        let id = draft(&s);
        let run_id = enter_login(&s, &id, ADA, ADA_PASSWORD);
        let asked = question(&s, &id, &run_id, "manual_action");
        assert!(asked["message"].as_str().unwrap().contains("challenge"), "{asked}");
        assert_eq!(setup_status(&s, &id)["browser"]["state"], "awaiting_owner_action");
        let url = asked["screenshot_url"].as_str().expect("the question has a screenshot").to_owned();
        let (code, png) = call_raw(&s, "GET", &url, Some(&s.token), None);
        assert_eq!(code, 200);
        assert!(png.contains("PNG") && png.contains("IHDR"), "a PNG of the page");
        let (code, _) = call_raw(&s, "GET", &url, None, None);
        assert_eq!(code, 401, "only the owner sees it");
        assert_eq!(site.logins(), 0, "nothing was typed into a challenge");

        // The owner clears the challenge (out of band) and says so.
        site.set_challenge(false);
        answer(&s, &asked, json!({}));
        let (run, events) = finished(&s, &run_id);
        assert_eq!(run["status"], "succeeded", "{run}\n{events:#?}");
        let (code, _) = call_raw(&s, "GET", &url, Some(&s.token), None);
        assert_eq!(code, 404, "the screenshot is erased once the question is resolved");
        assert_eq!(site.challenges(), 1);
        assert_eq!(site.login_names(), [ADA]);
        assert_eq!(records(&s, &id, "submitted").len(), ITEMS);
    }
}

server_on_both_backends! {
    /// Deployment-wide provider accounts are no fallback: a host started
    /// with Reddit-looking variables in its environment still asks each
    /// connection for its own login (no sync starts without one), and the
    /// run signs in with the connection's login, never the environment's.
    fn provider_looking_environment_variables_in_the_hosts_environment_are_ignored(backend: Backend) {
        let site = Site::start(vec![
            (ADA, Account::new(ADA, ADA_PASSWORD, false)),
            (GRACE, Account::new(GRACE, GRACE_PASSWORD, false)),
        ]);
        let s = serve_with(
            ServeOptions::default()
                .plugin("reddit", &workspace().join("manifests/reddit.json"))
                .config(&format!("{}[browser]\nmax_browsers = 2\n", site.egress_toml()))
                .backend(backend)
                .env("REDDIT_USERNAME", GRACE)
                .env("REDDIT_PASSWORD", GRACE_PASSWORD)
                .env("PDPP_REDDIT_USERNAME", GRACE)
                .env("PDPP_REDDIT_PASSWORD", GRACE_PASSWORD)
                .env("USERNAME", GRACE)
                .env("PASSWORD", GRACE_PASSWORD),
        );
        let id = draft(&s);
        let status = setup_status(&s, &id);
        assert_eq!(status["setup_state"], "awaiting_credential", "the environment is not a login: {status}");
        let run_id = enter_login(&s, &id, ADA, ADA_PASSWORD);
        let (run, events) = finished(&s, &run_id);
        assert_eq!(run["status"], "succeeded", "{run}\n{events:#?}");
        assert_eq!(site.login_names(), [ADA], "only the connection's own login was typed");
        assert_eq!(setup_status(&s, &id)["account_identity"], ADA);
        assert!(records(&s, &id, "submitted").iter().all(|r| r["title"].as_str().unwrap().ends_with(ADA)));
    }
}

server_on_both_backends! {
    /// The proof `browser_ephemeral_cleanup` of the Reddit connector: a
    /// connection created in the ephemeral mode keeps no login material, so
    /// every run signs in again, and each run's timeline says its material
    /// was destroyed.
    fn reddit_in_ephemeral_mode_signs_in_every_run_and_keeps_nothing(backend: Backend) {
        let site = Site::start(vec![(ADA, Account::new(ADA, ADA_PASSWORD, false))]);
        let s = serve_reddit(&site, backend);
        let (_, connector) = s.owner("GET", "/v1/connectors/reddit", None);
        assert_eq!(connector["setup"]["browser_session_modes"], json!(["persistent", "ephemeral"]));
        let (code, created) = s.owner(
            "POST",
            "/v1/connections",
            Some(json!({ "connector_id": "reddit", "browser_session": "ephemeral" })),
        );
        assert_eq!(code, 201, "{created}");
        let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
        let mut run_id = enter_login(&s, &id, ADA, ADA_PASSWORD);
        for n in 1..=2 {
            let (run, events) = finished(&s, &run_id);
            assert_eq!(run["status"], "succeeded", "{run}\n{events:#?}");
            assert_eq!(site.logins(), n, "signed out at every start");
            let cleanup = event(&events, "run.browser_cleanup").unwrap();
            assert_eq!((cleanup["profile"].as_str(), cleanup["complete"].as_bool()), (Some("destroyed"), Some(true)));
            let status = setup_status(&s, &id);
            assert_eq!((status["browser"]["mode"].as_str(), status["browser"]["profile_stored"].as_bool()), (Some("ephemeral"), Some(false)));
            if n == 1 {
                run_id = start_run(&s, &id);
            }
        }
    }
}

server_on_both_backends! {
    /// Reddit ending the session in the middle of a run (a listing answered
    /// 403) costs one sign-in with the connection's login, as the same
    /// account, and the run goes on from the page it was on.
    fn a_session_reddit_ends_mid_run_is_signed_in_again_once(backend: Backend) {
        let site = Site::start(vec![(ADA, Account::new(ADA, ADA_PASSWORD, false))]);
        let s = serve_reddit(&site, backend);
        let id = draft(&s);
        site.sign_out_at_listing(2);
        let run_id = enter_login(&s, &id, ADA, ADA_PASSWORD);
        let (run, events) = finished(&s, &run_id);
        assert_eq!(run["status"], "succeeded", "{run}\n{events:#?}");
        assert_eq!(site.login_names(), [ADA, ADA], "signed in again once");
        for stream in ["saved", "submitted", "comments"] {
            assert_eq!(records(&s, &id, stream).len(), ITEMS, "{stream}");
        }
        let listings = site.listings();
        assert_eq!(listings[1], listings[2], "the refused page was read again: {listings:#?}");
    }
}
