//! Notion: an internal integration secret made for the owner by the
//! connector's bootstrap on the fake www.notion.so, then used against the
//! API double, which accepts exactly that secret.

use super::notion_site::{self, CODE, EMAIL};
use super::*;
use crate::providers::notion::{self as api, Notion};
use crate::providers::{manifest_path, records};
use crate::server_on_both_backends;

fn owner(kind: &str, _message: &str) -> Value {
    match kind {
        "credentials" => json!({ "email": EMAIL }),
        _ => json!({ "code": CODE }),
    }
}

server_on_both_backends! {
    /// Sign in (email, emailed login code), new integration with the read
    /// capabilities, show the secret, hand it over; the first sync collects
    /// with it and the connection is active. Then a member who is not a
    /// workspace owner: Notion's form fails silently, and the bootstrap
    /// says `not_workspace_owner`, keeping the draft.
    fn notion_bootstrap_creates_the_secret_and_detects_a_non_owner(backend: Backend) {
        let double = api::start_accepting(Notion::seeded(), "nothing-minted-yet");
        let site = notion_site::start(double.ctl.clone());
        let work = tempfile::tempdir().unwrap();
        let s = serve_with(
            ServeOptions::default()
                .plugin("notion", &manifest_path("notion"))
                .config(&config(
                    &[("https://api.notion.com", &double.origin()), ("https://www.notion.so", &site.origin)],
                    work.path(),
                ))
                .backend(backend),
        );
        let (_, created) = s.owner("POST", "/v1/connections", Some(json!({ "connector_id": "notion" })));
        let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
        let run_id = start_bootstrap(&s, &id);
        let asked = answer_until_done(&s, &run_id, owner);
        assert_eq!(asked, ["credentials", "otp"]);
        let run = s.wait_run(&run_id);
        assert_eq!(run["status"], "succeeded", "{run} {:?}", timeline(&s, &run_id));
        let (secret, _, capabilities) = site.state.lock().unwrap().minted[0].clone();
        assert!(secret.starts_with("ntn_"));
        assert!(capabilities.contains(&"read_content".to_owned()), "{capabilities:?}");
        assert!(capabilities.contains(&"read_user_without_email".to_owned()), "{capabilities:?}");
        let status = wait_status(&s, &id, |v| v["status"] == "active");
        assert_eq!(status["account_identity"], api::BOT_ID, "{status}");
        assert_eq!(records(&s, &id, "pages").len(), 11);
        assert!(!json!(timeline(&s, &run_id)).to_string().contains(&secret));

        site.state.lock().unwrap().not_owner = true;
        let (_, created) = s.owner("POST", "/v1/connections", Some(json!({ "connector_id": "notion" })));
        let other = created["connection"]["connection_id"].as_str().unwrap().to_owned();
        let run_id = start_bootstrap(&s, &other);
        answer_until_done(&s, &run_id, owner);
        let status = wait_status(&s, &other, |v| v["bootstrap"]["state"] == "failed");
        assert_eq!(status["bootstrap"]["error_code"], "not_workspace_owner", "{status}");
        assert_eq!(status["setup_state"], "awaiting_credential", "{status}");
        assert_eq!(site.state.lock().unwrap().minted.len(), 1, "nothing was made for the member");
    }
}
