//! Browser-backed runs of stored connections, end to end: the `browse`
//! test guest drives real Chromium (through the browser capability) against
//! the fake site, on SQLite and PostgreSQL.

use super::{Fixture, SITE};
use crate::on_both_backends;
use crate::support::{TestDeployment, Transcript, browse, browse_manifest, sandbox};
use pdpp_host::runtime::{ConnectionRun, RunOutcome, run_connection};
use pdpp_host::store::{RunEvent, Trigger};
use pdpp_host::vault::Bundle;
use serde_json::{Value, json};
use std::collections::BTreeMap;
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

/// Run `connection` once through the browser fixture.
pub async fn run(t: &TestDeployment, f: &Fixture, connection: &str, transcript: &Transcript) -> RunOutcome {
    let mut opts = ConnectionRun::new(Trigger::Manual);
    opts.browser = Some(f.service.clone());
    opts.egress = f.site.egress();
    opts.observer = Box::new(transcript.clone());
    run_connection(&t.dep, sandbox(), browse(), browse_manifest(), connection, opts)
        .await
        .unwrap()
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
