//! Browser-backed runs of stored connections, end to end: the `browse`
//! test guest drives real Chromium (through the browser capability) against
//! the fake site, on SQLite and PostgreSQL.

use super::{Fixture, SITE};
use crate::on_both_backends;
use crate::support::{TestDeployment, Transcript, browse, browse_manifest, sandbox};
use pdpp_host::protocol::{Interaction, InteractionAnswer, InteractionKind};
use pdpp_host::runtime::{ConnectionRun, InteractionHandler, RunOutcome, run_connection};
use pdpp_host::store::{RunEvent, Trigger};
use pdpp_host::vault::Bundle;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zeroize::Zeroizing;

pub const PASSWORD: &str = "correct horse battery";

/// A login bundle: `username` and `password`.
pub fn login(username: &str, password: &str) -> Bundle {
    Bundle {
        kind: "username_password".into(),
        fields: BTreeMap::from([
            ("username".to_owned(), Zeroizing::new(username.to_owned())),
            ("password".to_owned(), Zeroizing::new(password.to_owned())),
        ]),
    }
}

/// The steps that sign `user` in on the fake site.
pub fn sign_in(user: &str) -> Vec<Value> {
    vec![
        json!({ "navigate": format!("{SITE}/form"), "must": true }),
        json!({ "fill": ["#user", user] }),
        json!({ "fill_secret": ["#pass", "password"], "must": true }),
        json!({ "click": "#submit", "must": true }),
        json!({ "wait_for": ["#welcome", 20000], "must": true }),
    ]
}

/// The steps that collect the first page of items.
pub fn collect() -> Vec<Value> {
    vec![
        json!({ "navigate": format!("{SITE}/items?page=1"), "must": true }),
        json!({ "records": ".item", "must": true }),
    ]
}

/// How to run a connection through the browser fixture.
pub fn options(f: &Fixture, transcript: &Transcript) -> ConnectionRun {
    let mut opts = ConnectionRun::new(Trigger::Manual);
    opts.browser = Some(f.service.clone());
    opts.egress = f.site.egress();
    opts.observer = Box::new(transcript.clone());
    opts
}

/// Run `connection` once through the browser fixture.
pub async fn run(t: &TestDeployment, f: &Fixture, connection: &str, transcript: &Transcript) -> RunOutcome {
    run_opts(t, connection, options(f, transcript)).await
}

pub async fn run_opts(t: &TestDeployment, connection: &str, opts: ConnectionRun) -> RunOutcome {
    run_connection(&t.dep, sandbox(), browse(), browse_manifest(), connection, opts)
        .await
        .unwrap()
}

/// A connection of the browse guest with these steps and a login.
pub async fn connection(t: &TestDeployment, steps: Vec<Value>, user: &str) -> String {
    t.connection(
        &browse_manifest(),
        json!({ "steps": steps }),
        Some(login(user, PASSWORD)),
    )
    .await
}

/// Replace a connection's steps (its settings) between runs.
pub async fn set_steps(t: &TestDeployment, connection: &str, steps: Vec<Value>) {
    t.dep
        .store
        .set_settings(connection, &json!({ "steps": steps }))
        .await
        .unwrap();
}

/// The `result` field of the guest's log line for step `i`, as the
/// transcript prints it (Debug-quoted: compare with `contains`).
pub fn step_result(transcript: &Transcript, i: usize) -> String {
    let logs = transcript.logs.lock().unwrap().clone();
    let marker = format!("(\"i\", \"{i}\")");
    logs.iter()
        .find(|l| l.contains(" step ") && l.contains(&marker))
        .unwrap_or_else(|| panic!("no log line for step {i}: {logs:#?}"))
        .split("(\"result\", ")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// Steps that set the site's session cookie to `who` and report that account.
pub fn cookie_login(who: &str) -> Vec<Value> {
    vec![
        json!({ "navigate": format!("{SITE}/cookie?sid={who}"), "must": true }),
        json!({ "navigate": format!("{SITE}/whoami"), "must": true }),
        json!({ "account_from": "#who", "must": true }),
    ]
}

/// Steps that report the account the stored profile is logged into.
pub fn who_am_i() -> Vec<Value> {
    vec![
        json!({ "navigate": format!("{SITE}/whoami"), "must": true }),
        json!({ "account_from": "#who", "must": true }),
    ]
}

/// The cleanup entry of a run, asserting that nothing of the browser is left.
pub async fn assert_cleaned(t: &TestDeployment, f: &Fixture, run_id: &str) -> Value {
    let ev = events(t, run_id).await;
    let cleanup = event(&ev, "run.browser_cleanup").unwrap_or_else(|| panic!("no cleanup entry in {ev:#?}"));
    assert_eq!(cleanup["complete"], true, "{cleanup}");
    assert_eq!(cleanup["processes_left"], 0, "{cleanup}");
    assert_eq!(f.service.live_processes(), 0, "no browser process of the run is left");
    cleanup
}

pub async fn events(t: &TestDeployment, run_id: &str) -> Vec<RunEvent> {
    t.dep.store.events(run_id).await.unwrap()
}

pub fn event(events: &[RunEvent], kind: &str) -> Option<Value> {
    events.iter().find(|e| e.kind == kind).map(|e| e.data.clone())
}

on_both_backends! {
    /// Login with the connection's own credential (the password typed by
    /// the host from a handle), the account reported and accepted, records
    /// kept; the login material sealed for the next run, the connection's
    /// identity recorded, nothing of the browser left running.
    async fn a_browser_run_signs_in_verifies_the_account_and_collects(t: TestDeployment) {
        let f = Fixture::new().await;
        let m = browse_manifest();
        let mut steps = sign_in("alice");
        steps.push(json!({ "account": "alice", "must": true }));
        steps.extend(collect());
        let conn = t.connection(&m, json!({ "steps": steps }), Some(login("alice", PASSWORD))).await;
        let transcript = Transcript::default();
        let out = run(&t, &f, &conn, &transcript).await;
        assert!(out.succeeded(), "{out:?}\n{}", transcript.text());
        assert_eq!(out.records_written, 3);
        let ev = events(&t, &out.run_id).await;
        assert_eq!(event(&ev, "run.browser_session_verified").unwrap()["account"], "alice");
        let cleanup = event(&ev, "run.browser_cleanup").expect("a cleanup entry");
        assert_eq!(cleanup["profile"], "sealed");
        assert_eq!(cleanup["complete"], true, "{cleanup}");
        assert!(t.dep.store.browser_profile(&conn).await.unwrap().is_some());
        let c = t.dep.store.connection(&conn).await.unwrap().unwrap();
        assert_eq!(c.account_identity, Some(json!("alice")));
        assert_eq!(f.service.live_processes(), 0);
        assert!(!transcript.text().contains(PASSWORD), "the password never reaches the guest's output");
    }
}

on_both_backends! {
    /// Seed 004 (session ownership): records of a browser-backed run are
    /// accepted only after the run reported the account its browser is
    /// logged into. A record before that stops the run; nothing is kept.
    async fn browser_session_verified_before_records(t: TestDeployment) {
        let f = Fixture::new().await;
        let conn = connection(&t, vec![json!({ "record": "early" })], "alice").await;
        let out = run(&t, &f, &conn, &Transcript::default()).await;
        assert_eq!(
            out.reason.as_ref().map(|r| r.to_string()).as_deref(),
            Some("connector_protocol_violation (browser_session_verified_before_records)")
        );
        assert_eq!(out.records_written, 0);
        assert!(t.dep.store.browser_profile(&conn).await.unwrap().is_none());
    }
}

on_both_backends! {
    /// Seed 004, "A source-scoped stored credential is available": the
    /// connection's own material signs in, and the session must still be
    /// proven to belong to the source before records are accepted. Two
    /// connections never share cookies; a profile of connection A given to
    /// connection B (resealed for B, as if the material got mixed up) logs
    /// B's browser into A's account: the run fails as
    /// `session_account_mismatch`, keeps nothing, and B's stored material is
    /// destroyed. A profile copied as stored (sealed for A) does not open for B.
    async fn a_source_scoped_stored_credential_is_available(t: TestDeployment) {
        let f = Fixture::new().await;
        let a = connection(&t, cookie_login("alice"), "alice").await;
        let b = connection(&t, cookie_login("bob"), "bob").await;
        for conn in [&a, &b] {
            let out = run(&t, &f, conn, &Transcript::default()).await;
            assert!(out.succeeded(), "{out:?}");
        }
        // Each connection's next run is logged in as its own account.
        for (conn, who) in [(&a, "alice"), (&b, "bob")] {
            let mut steps = who_am_i();
            steps.push(json!({ "record": who }));
            set_steps(&t, conn, steps).await;
            let out = run(&t, &f, conn, &Transcript::default()).await;
            assert!(out.succeeded(), "{out:?}");
            let ev = events(&t, &out.run_id).await;
            assert_eq!(event(&ev, "run.browser_session_verified").unwrap()["account"], *who);
        }

        // A's material, resealed for B.
        let stored_a = t.dep.store.browser_profile(&a).await.unwrap().unwrap();
        let opened = pdpp_host::browser::SealedProfile::from_bytes(&stored_a.sealed)
            .unwrap()
            .open(&t.dep.key, &a)
            .unwrap();
        let for_b = opened.seal(&t.dep.key, &b).to_bytes();
        assert!(t.dep.store.save_browser_profile(&b, "run_swapped", &for_b, 1, Some("alice")).await.unwrap());
        let mut steps = who_am_i();
        steps.push(json!({ "record": "must-not-be-kept" }));
        set_steps(&t, &b, steps.clone()).await;
        let before = t.dep.store.record_counts(&b).await.unwrap();
        let out = run(&t, &f, &b, &Transcript::default()).await;
        assert_eq!(out.reason.as_ref().map(|r| r.code()), Some("session_account_mismatch"), "{out:?}");
        assert_eq!(t.dep.store.record_counts(&b).await.unwrap(), before, "nothing is committed");
        assert!(out.commit.is_none());
        let ev = events(&t, &out.run_id).await;
        let mismatch = event(&ev, "run.browser_session_mismatch").unwrap();
        assert_eq!((mismatch["expected"].as_str(), mismatch["reported"].as_str()), (Some("bob"), Some("alice")));
        let cleanup = assert_cleaned(&t, &f, &out.run_id).await;
        assert_eq!(cleanup["stored_profile_deleted"], true);
        assert!(t.dep.store.browser_profile(&b).await.unwrap().is_none());
        let c = t.dep.store.connection(&b).await.unwrap().unwrap();
        assert_eq!(c.account_identity, Some(json!("bob")), "the connection's identity is not overwritten");

        // A's stored bytes as they are: sealed for A, they do not open for B.
        assert!(t.dep.store.save_browser_profile(&b, "run_copied", &stored_a.sealed, 1, None).await.unwrap());
        let out = run(&t, &f, &b, &Transcript::default()).await;
        let ev = events(&t, &out.run_id).await;
        assert_eq!(event(&ev, "run.browser_profile_discarded").unwrap()["reason"], "unreadable");
        // Logged out, the site calls the visitor anonymous: not bob either.
        assert_eq!(out.reason.as_ref().map(|r| r.code()), Some("session_account_mismatch"));
    }
}

on_both_backends! {
    /// Seed 004, "Ephemeral browser authentication is requested": whatever
    /// the run's end, the material it created is destroyed, nothing is
    /// stored, and the timeline records a non-secret cleanup status.
    async fn ephemeral_browser_authentication_is_requested(t: TestDeployment) {
        let f = Fixture::new().await;
        let conn = connection(&t, cookie_login("alice"), "alice").await;
        t.dep
            .store
            .set_browser_session_mode(&conn, pdpp_host::store::BrowserSessionMode::Ephemeral)
            .await
            .unwrap();
        // Success, a connector failure, a trap and the owner's cancel.
        let endings: Vec<(Vec<Value>, &str)> = vec![
            (cookie_login("alice"), "succeeded"),
            ([cookie_login("alice"), vec![json!({ "fail": "no" })]].concat(), "connector_reported_failed"),
            ([cookie_login("alice"), vec![json!({ "panic": true })]].concat(), "connector_exit_without_done"),
        ];
        for (steps, ending) in endings {
            set_steps(&t, &conn, steps).await;
            let out = run(&t, &f, &conn, &Transcript::default()).await;
            let got = out.reason.as_ref().map_or("succeeded", |r| r.code());
            assert_eq!(got, ending, "{out:?}");
            let cleanup = assert_cleaned(&t, &f, &out.run_id).await;
            assert_eq!((cleanup["mode"].as_str(), cleanup["profile"].as_str()), (Some("ephemeral"), Some("destroyed")));
            assert!(t.dep.store.browser_profile(&conn).await.unwrap().is_none());
        }
        // The next run starts logged out: the cookie did not survive.
        set_steps(&t, &conn, vec![json!({ "navigate": format!("{SITE}/whoami") }), json!({ "text": "#who" })]).await;
        let transcript = Transcript::default();
        run(&t, &f, &conn, &transcript).await;
        let who = step_result(&transcript, 1);
        assert!(who.starts_with("\"ok: ") && who.contains("anonymous"), "{who}");
    }
}

/// Answers every question with `answer` after `delay`, keeping what it was
/// asked and what the store held for the question meanwhile.
struct Owner {
    delay: Duration,
    answer: serde_json::Value,
    asked: Mutex<Vec<InteractionKind>>,
    store: pdpp_host::store::Store,
    key: Arc<pdpp_host::vault::VaultKey>,
    /// The PNG served for the pending question, when it had one.
    screenshots: Mutex<Vec<Vec<u8>>>,
}

impl Owner {
    fn new(t: &TestDeployment, delay: Duration, answer: serde_json::Value) -> Arc<Owner> {
        Arc::new(Owner {
            delay,
            answer,
            asked: Mutex::default(),
            store: t.dep.store.clone(),
            key: t.dep.key.clone(),
            screenshots: Mutex::default(),
        })
    }
}

#[async_trait::async_trait]
impl InteractionHandler for Owner {
    async fn answer(&self, req: &Interaction) -> InteractionAnswer {
        self.asked.lock().unwrap().push(req.kind);
        for q in self.store.pending_interactions(None, None).await.unwrap() {
            if q.has_screenshot {
                let (run_id, sealed) = self
                    .store
                    .interaction_screenshot(&q.interaction_id)
                    .await
                    .unwrap()
                    .unwrap();
                let blob = pdpp_host::vault::SealedBlob::from_bytes(&sealed).unwrap();
                let png = self
                    .key
                    .open_blob(&run_id, pdpp_host::runtime::SCREENSHOT_PURPOSE, &blob)
                    .unwrap();
                self.screenshots.lock().unwrap().push(png.to_vec());
            }
        }
        tokio::time::sleep(self.delay).await;
        InteractionAnswer::success(self.answer.clone())
    }
}

/// A fixture whose service gives a run `establish` to report its account.
async fn fixture_establishing_within(establish: Duration) -> Fixture {
    let mut f = Fixture::new().await;
    f.service = pdpp_host::browser::BrowserService::new(pdpp_host::browser::BrowserConfig {
        session_establish: establish,
        ..Default::default()
    })
    .unwrap();
    f
}

on_both_backends! {
    /// A run that never reports its account is stopped once the
    /// establishment period passed (`browser_session_timeout`), and its
    /// browser torn down; time the owner takes to answer does not count.
    async fn browser_session_establishment_is_bounded_and_paused_while_the_owner_is_asked(t: TestDeployment) {
        let f = fixture_establishing_within(Duration::from_secs(3)).await;
        let conn = connection(&t, vec![json!({ "navigate": format!("{SITE}/form") }), json!({ "poll": true })], "alice").await;
        let out = run(&t, &f, &conn, &Transcript::default()).await;
        assert_eq!(out.reason.as_ref().map(|r| r.code()), Some("browser_session_timeout"), "{out:?}");
        assert_cleaned(&t, &f, &out.run_id).await;

        // The owner takes longer than the period to answer the code: the
        // run still establishes its session.
        let steps = vec![
            json!({ "navigate": format!("{SITE}/form"), "must": true }),
            json!({ "ask": { "kind": "otp", "message": "the code", "fill": "#otp", "field": "code" }, "must": true }),
            json!({ "account": "alice", "must": true }),
            json!({ "record": "after-the-code" }),
        ];
        set_steps(&t, &conn, steps).await;
        let owner = Owner::new(&t, Duration::from_secs(5), json!({ "code": "123456" }));
        let mut opts = options(&f, &Transcript::default());
        opts.interaction = Some(owner.clone());
        let out = run_opts(&t, &conn, opts).await;
        assert!(out.succeeded(), "{out:?}");
        assert_eq!(*owner.asked.lock().unwrap(), [InteractionKind::Otp]);
    }
}

on_both_backends! {
    /// Seed 004, "Missing credentials with interactive binding": the
    /// connector asks for the login through INTERACTION and the run parks
    /// until the owner answers; the answer is typed into the page and never
    /// kept on the timeline.
    async fn missing_credentials_with_interactive_binding(t: TestDeployment) {
        let f = Fixture::new().await;
        let m = browse_manifest();
        let steps = vec![
            json!({ "navigate": format!("{SITE}/form"), "must": true }),
            json!({ "ask": { "kind": "credentials", "message": "the login for www.example.com", "fill": "#pass", "field": "password" }, "must": true }),
            json!({ "fill": ["#user", "alice"] }),
            json!({ "click": "#submit", "must": true }),
            json!({ "wait_for": ["#welcome", 20000], "must": true }),
            json!({ "text": "#welcome" }),
            json!({ "ask": { "kind": "credentials", "message": "show me the answer" } }),
        ];
        let conn = t.connection(&m, json!({ "steps": steps }), None).await;
        let owner = Owner::new(&t, Duration::ZERO, json!({ "password": PASSWORD }));
        let transcript = Transcript::default();
        let mut opts = options(&f, &transcript);
        opts.interaction = Some(owner.clone());
        let out = run_opts(&t, &conn, opts).await;
        assert!(out.succeeded(), "{out:?}");
        assert_eq!(*owner.asked.lock().unwrap(), [InteractionKind::Credentials; 2]);
        assert!(step_result(&transcript, 5).contains("Welcome alice"));
        // The answer reached the guest as a handle: it typed the password
        // without holding it, and the answer it sees carries a placeholder
        // (had it held the value, its log would show the redaction marker).
        let seen = step_result(&transcript, 6);
        assert!(seen.contains("pdpp-secret") && !seen.contains("REDACTED"), "{seen}");
        assert!(!transcript.text().contains(PASSWORD));
        let timeline = serde_json::to_string(&events(&t, &out.run_id).await).unwrap();
        assert!(timeline.contains("run.interaction_required"));
        assert!(!timeline.contains(PASSWORD), "the answer is not on the timeline");
        assert!(!String::from_utf8_lossy(&t.stored_bytes()).contains(PASSWORD), "nor anywhere in the database");
    }
}

on_both_backends! {
    /// Seed 004, "Missing credentials without interactive binding": DONE
    /// failed names what is missing, at once (no waiting for a channel that
    /// does not exist), and the browser is torn down.
    async fn missing_credentials_without_interactive_binding(t: TestDeployment) {
        let f = Fixture::new().await;
        let steps = vec![
            json!({ "navigate": format!("{SITE}/form"), "must": true }),
            json!({ "ask": { "kind": "credentials", "message": "the login for www.example.com" } }),
        ];
        let conn = connection(&t, steps, "alice").await;
        let out = run(&t, &f, &conn, &Transcript::default()).await;
        assert_eq!(out.reason.as_ref().map(|r| r.code()), Some("connector_reported_failed"));
        let done = out.done.as_ref().unwrap();
        let error = done.error.as_ref().unwrap();
        assert_eq!(error.code.as_deref(), Some("owner_input_required"));
        assert!(error.message.contains("the login for www.example.com"), "{}", error.message);
        assert!(out.interactions.iter().all(|i| i.status.is_none()), "nobody was asked");
        assert_cleaned(&t, &f, &out.run_id).await;
    }
}

on_both_backends! {
    /// A `manual_action` question carries a screenshot of the page, sealed
    /// and served to the owner while the question is pending; it is erased
    /// when the question is resolved.
    async fn a_manual_action_question_carries_a_screenshot_until_it_is_resolved(t: TestDeployment) {
        let f = Fixture::new().await;
        let steps = vec![
            json!({ "navigate": format!("{SITE}/form"), "must": true }),
            json!({ "ask": { "kind": "manual_action", "message": "solve the puzzle on the page" }, "must": true }),
            json!({ "account": "alice" }),
        ];
        let conn = connection(&t, steps, "alice").await;
        let owner = Owner::new(&t, Duration::ZERO, json!({}));
        let mut opts = options(&f, &Transcript::default());
        opts.interaction = Some(owner.clone());
        let out = run_opts(&t, &conn, opts).await;
        assert!(out.succeeded(), "{out:?}");
        let shots = owner.screenshots.lock().unwrap().clone();
        assert_eq!(shots.len(), 1, "the question had a screenshot");
        assert!(shots[0].starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        assert!(!String::from_utf8_lossy(&t.stored_bytes()).contains("IHDR"), "no plaintext PNG is stored");
        assert!(t.dep.store.pending_interactions(None, None).await.unwrap().is_empty());
        let questions = serde_json::to_string(&events(&t, &out.run_id).await).unwrap();
        assert!(questions.contains("solve the puzzle"), "the question was asked and recorded");
    }
}

/// Cancel the run once its browser has loaded a listing page (the guest
/// is then calling the browser in a loop).
fn cancel_when_browsing(f: &Fixture, opts: &ConnectionRun) {
    let (listings, control) = (f.site.listings.clone(), opts.control.clone());
    let seen = listings.load(std::sync::atomic::Ordering::SeqCst);
    tokio::spawn(async move {
        while listings.load(std::sync::atomic::Ordering::SeqCst) == seen {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        control.cancel();
    });
}

on_both_backends! {
    /// A browser session is a resource of its run: however the run ends
    /// (the owner's cancel, a trap, a CPU, wall-clock or memory limit),
    /// Chromium and chromedriver are gone when it has ended, the session's
    /// directory is removed, and the timeline says so.
    async fn every_end_of_a_run_tears_its_browser_down(t: TestDeployment) {
        let f = Fixture::new().await;
        let browsing = |last: Value| vec![json!({ "navigate": format!("{SITE}/items?page=1"), "must": true }), last];
        let conn = connection(&t, browsing(json!({ "poll": true })), "alice").await;
        // The owner cancels while the guest is calling the browser.
        let opts = options(&f, &Transcript::default());
        cancel_when_browsing(&f, &opts);
        let out = run_opts(&t, &conn, opts).await;
        assert_eq!(out.reason.as_ref().map(|r| r.code()), Some("owner_cancelled"), "{out:?}");
        assert_cleaned(&t, &f, &out.run_id).await;

        type Lower = Box<dyn Fn(&mut pdpp_host::sandbox::RunLimits)>;
        let cases: Vec<(Value, &str, Lower)> = vec![
            (json!({ "panic": true }), "connector_exit_without_done", Box::new(|_| {})),
            (json!({ "spin": true }), "cpu_limit", Box::new(|l| l.cpu = Duration::from_secs(2))),
            (json!({ "poll": true }), "wall_clock_limit", Box::new(|l| l.wall_clock = Duration::from_secs(8))),
            (json!({ "grow": true }), "memory_limit", Box::new(|l| l.memory_bytes = 64 << 20)),
        ];
        for (last, reason, limit) in cases {
            set_steps(&t, &conn, browsing(last)).await;
            let mut opts = options(&f, &Transcript::default());
            limit(&mut opts.limits);
            let out = run_opts(&t, &conn, opts).await;
            assert_eq!(out.reason.as_ref().map(|r| r.code()), Some(reason), "{out:?}");
            let cleanup = assert_cleaned(&t, &f, &out.run_id).await;
            assert_eq!(cleanup["profile"], "discarded", "a failed run keeps no new material");
        }
    }
}

/// Seed 004, "Deployment-wide provider credentials are configured": the
/// host's environment is no fallback. A run started with provider-looking
/// variables in the host's environment sees no environment at all, and a
/// credential field the connection does not have stays missing (the
/// connector cannot type the deployment's value).
#[tokio::test]
async fn deployment_wide_provider_credentials_are_configured() {
    let f = Fixture::new().await;
    let steps = json!({ "steps": [
        { "env": "BROWSE_PASSWORD" },
        { "navigate": format!("{SITE}/form"), "must": true },
        { "fill_secret": ["#pass", "password"], "must": true },
    ]});
    let rewrite = format!("{SITE}=http://127.0.0.1:{}", f.site.port);
    let wasm = crate::support::guest_path("browse");
    let manifest = crate::support::workspace().join("tests/guests/browse/browse.json");
    let args = vec![
        "run".to_owned(),
        wasm.display().to_string(),
        "--manifest".into(),
        manifest.display().to_string(),
        "--settings".into(),
        steps.to_string(),
        "--rewrite-origin".into(),
        rewrite,
        "--allow-loopback-rewrites".into(),
    ];
    let (code, lines, stderr) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::support::cli(
            &args,
            &[
                ("BROWSE_PASSWORD", PASSWORD),
                ("BROWSE_USERNAME", "deployment-wide"),
                ("PDPP_BROWSE_PASSWORD", PASSWORD),
            ],
            None,
        )
    })
    .await
    .unwrap();
    let all = format!("{lines:?}\n{stderr}");
    assert!(
        all.contains("0 variables, unset"),
        "the guest saw no environment: {all}"
    );
    let done = lines
        .iter()
        .find(|l| l["type"] == "DONE")
        .unwrap_or_else(|| panic!("no DONE: {all}"));
    assert_eq!(done["status"], "failed", "{all}");
    assert!(
        all.contains("credential field password has no value for this connection"),
        "the password is missing, not taken from the environment: {all}"
    );
    assert!(!all.contains(PASSWORD));
    assert_ne!(code, 0);
}

/// A hostile connector tries every way back to a secret it had typed: the
/// value of the field, any input's value, the text of inputs, a page that
/// shows what was typed, the URL a GET form put it in, the title. It never
/// gets the plaintext; neither does its output nor the timeline.
#[tokio::test]
async fn a_hostile_browser_connector_cannot_get_a_secret_back() {
    let t = crate::support::deployment(pdpp_host::store::Backend::Sqlite).await;
    let f = Fixture::new().await;
    let steps = vec![
        json!({ "navigate": format!("{SITE}/form"), "must": true }),
        json!({ "fill_secret": ["#pass", "password"], "must": true }),
        json!({ "fill_secret": ["#user", "password"] }),
        json!({ "text": "#pass" }),
        json!({ "attribute": ["#pass", "value"] }),
        json!({ "attribute": ["#user", "value"] }),
        json!({ "attributes": ["input", "value", 10] }),
        json!({ "texts": ["input", 10] }),
        json!({ "click": "#submit", "must": true }),
        json!({ "wait_for": ["#welcome", 20000], "must": true }),
        json!({ "text": "#welcome" }),
        json!({ "texts": ["p", 10] }),
        json!({ "navigate": format!("{SITE}/form-get"), "must": true }),
        json!({ "fill_secret": ["#pass", "password"] }),
        json!({ "fill_secret": ["#user", "password"] }),
        json!({ "click": "#submit" }),
        json!({ "wait_for": ["#landed", 20000] }),
        json!({ "current": true }),
        json!({ "text": "body" }),
    ];
    let conn = connection(&t, steps, "alice").await;
    let transcript = Transcript::default();
    let out = run(&t, &f, &conn, &transcript).await;
    assert!(out.succeeded(), "{out:?}\n{}", transcript.text());
    let text = transcript.text();
    // The welcome page shows the typed value: reading its text is refused.
    let welcome = step_result(&transcript, 10);
    assert!(welcome.contains("contains_filled_secret"), "{welcome}");
    assert!(!text.contains(PASSWORD), "a secret reached the guest: {text}");
    assert!(!text.contains("correct+horse"), "nor in a URL's encoding: {text}");
    let timeline = serde_json::to_string(&events(&t, &out.run_id).await).unwrap();
    assert!(!timeline.contains(PASSWORD) && !timeline.contains("correct+horse"));
    assert!(!String::from_utf8_lossy(&t.stored_bytes()).contains(PASSWORD));
}
