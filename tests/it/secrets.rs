//! Secret handles: only declared fields, only this connection's values,
//! plaintext only where the manifest allows it, and never in logs.

use crate::support::*;
use serde_json::json;
use zeroize::Zeroizing;

#[tokio::test]
async fn secret_handles_cover_only_declared_fields_and_values_stay_in_the_host() {
    let token = "tok-PLANTED-5e1f0c9a";
    let signing = "sig-PLANTED-77ab31d2";
    let foreign = "ghp_PLANTED_undeclared_0001";
    let mut req = probe_request("secrets");
    req.secrets = [("token", token), ("signing_key", signing), ("GITHUB_TOKEN", foreign)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Zeroizing::new(v.to_string())))
        .collect();
    let (out, t) = run_with(probe(), req, None).await;
    assert!(out.succeeded(), "{out:?}");
    let seen = t.observation("secrets");

    assert_eq!(
        seen["available"],
        json!(["signing_key", "token"]),
        "undeclared values never reach the run"
    );
    assert_eq!(seen["token"]["field"], "token");
    let placeholder = seen["token"]["placeholder"].as_str().unwrap();
    assert!(placeholder.contains("token") && !placeholder.contains(token));
    assert!(
        seen["token"]["reveal"]["err"]
            .as_str()
            .unwrap()
            .contains("may not be revealed")
    );
    // A reveal:true field can be read; the record the connector wrote it
    // into is scrubbed before anyone sees or keeps it.
    assert_eq!(seen["signing_key"]["ok"], json!("\"[REDACTED:signing_key]\""));
    assert!(seen["undeclared"]["err"].as_str().unwrap().contains("not declared"));
    assert_eq!(
        out.secret_reveals,
        vec!["signing_key".to_string(), "signing_key".to_string()]
    );

    // The connector logged and printed the revealed value: both are redacted.
    let logs = t.logs.lock().unwrap().join("\n");
    assert!(logs.contains("signing with [REDACTED:signing_key]"), "{logs}");
    assert!(!out.usage.stderr.tail.contains(signing));
    assert!(out.usage.stderr.tail.contains("[REDACTED:signing_key]"));
    for secret in [token, foreign] {
        assert!(!t.text().contains(secret), "{secret} leaked");
    }
}

#[tokio::test]
async fn missing_credential_value_is_a_typed_error_for_the_connector() {
    let (out, t) = run_with(probe(), probe_request("secrets"), None).await;
    assert!(out.succeeded());
    let seen = t.observation("secrets");
    assert_eq!(seen["available"], json!([]));
    assert!(seen["token"]["err"].as_str().unwrap().contains("no value"), "{seen}");
}
