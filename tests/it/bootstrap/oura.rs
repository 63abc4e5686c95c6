//! Oura: a personal access token made for the owner by the connector's
//! bootstrap on the fake cloud.ouraring.com, then used against the API
//! double, which accepts exactly that token.

use super::oura_site::{self, CODE, EMAIL, PASSWORD};
use super::*;
use crate::providers::oura::{self as api, Oura};
use crate::providers::{manifest_path, records};
use crate::server_on_both_backends;

fn owner(kind: &str, _message: &str) -> Value {
    match kind {
        "credentials" => json!({ "email": EMAIL, "password": PASSWORD }),
        _ => json!({ "code": CODE }),
    }
}

server_on_both_backends! {
    /// Sign in (email, password, emailed code), create the token, hand it
    /// over; the probe names the account, the first sync collects with the
    /// minted token and the connection is active. Then an account without
    /// a membership fails as `membership_required` and keeps its draft.
    fn oura_bootstrap_creates_the_token_and_the_connection_becomes_active(backend: Backend) {
        let double = api::start_accepting(Oura::seeded(), "nothing-minted-yet");
        let site = oura_site::start(double.ctl.clone());
        let work = tempfile::tempdir().unwrap();
        let s = serve_with(
            ServeOptions::default()
                .plugin("oura", &manifest_path("oura"))
                .config(&config(
                    &[("https://api.ouraring.com", &double.origin()), ("https://cloud.ouraring.com", &site.origin)],
                    work.path(),
                ))
                .backend(backend),
        );
        let (_, created) = s.owner("POST", "/v1/connections", Some(json!({ "connector_id": "oura" })));
        let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
        let run_id = start_bootstrap(&s, &id);
        let asked = answer_until_done(&s, &run_id, owner);
        assert_eq!(asked, ["credentials", "otp"]);
        let run = s.wait_run(&run_id);
        assert_eq!(run["status"], "succeeded", "{run} {:?}", timeline(&s, &run_id));
        let token = site.state.lock().unwrap().minted[0].0.clone();
        let status = wait_status(&s, &id, |v| v["status"] == "active");
        assert_eq!(status["account_identity"], api::USER_ID, "{status}");
        for stream in ["sleep", "readiness", "activity"] {
            assert_eq!(records(&s, &id, stream).len(), 14, "records of {stream}");
        }
        assert!(!json!(timeline(&s, &run_id)).to_string().contains(&token));

        site.state.lock().unwrap().no_membership = true;
        let (_, created) = s.owner("POST", "/v1/connections", Some(json!({ "connector_id": "oura" })));
        let other = created["connection"]["connection_id"].as_str().unwrap().to_owned();
        let run_id = start_bootstrap(&s, &other);
        answer_until_done(&s, &run_id, owner);
        let status = wait_status(&s, &other, |v| v["bootstrap"]["state"] == "failed");
        assert_eq!(status["bootstrap"]["error_code"], "membership_required", "{status}");
        assert_eq!(status["setup_state"], "awaiting_credential", "{status}");
        assert!(status["bootstrap"]["retry"]["reason"].as_str().unwrap().contains("paste instead"), "{status}");
    }
}
