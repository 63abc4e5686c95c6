//! Sealed, connection-scoped credentials: injection, isolation between
//! connections, redaction everywhere, and key handling.

use crate::on_both_backends;
use crate::support::*;
use base64::Engine as _;
use pdpp_host::deploy::{DeployError, Deployment};
use pdpp_host::runtime::{ConnectionRun, RunRefused, run_connection};
use pdpp_host::store::{CredentialStatus, Trigger};
use pdpp_host::vault::{Bundle, VaultError};
use serde_json::{Value, json};

fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Every form of a planted secret a leak could take.
fn forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap();
    vec![
        secret.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(secret),
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC).to_string(),
        json[1..json.len() - 1].to_owned(),
    ]
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn bundle(token: &str, signing: &str) -> Bundle {
    Bundle::new("secret_bundle", [("token", token), ("signing_key", signing)])
}

on_both_backends! {
    /// Two connections of one connector, distinct planted secrets, a
    /// connector that leaks everything it can reach through every channel:
    /// each run sees only its own connection's fields, and no planted form
    /// is anywhere in the database, the transcript or the logs.
    async fn planted_secrets_stay_with_their_connection_and_never_reach_storage_or_output(t: TestDeployment) {
        let m = probe_manifest();
        let (ta, sa) = ("tokA-planted-91c2d7e0", "sigA-planted+/=\"x 5b1e");
        let (tb, sb) = ("tokB-planted-0f4a8c33", "sigB-planted-e27d90aa");
        let a = t.connection(&m, json!({"behavior": "leak"}), Some(bundle(ta, sa))).await;
        let b = t.connection(&m, json!({"behavior": "leak", "fail": true}), Some(bundle(tb, sb))).await;

        let ta_out = Transcript::default();
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.observer = Box::new(ta_out.clone());
        let out_a = run_connection(&t.dep, sandbox(), probe(), m.clone(), &a, opts).await.unwrap();
        assert!(out_a.succeeded(), "{out_a:?}");
        let tb_out = Transcript::default();
        let mut opts = ConnectionRun::new(Trigger::Scheduled);
        opts.observer = Box::new(tb_out.clone());
        let out_b = run_connection(&t.dep, sandbox(), probe(), m.clone(), &b, opts).await.unwrap();
        assert_eq!(out_b.reason.as_ref().map(|r| r.code()), Some("connector_reported_failed"));

        // Each run saw its own connection's values (by hash) and nothing else.
        let seen_a = ta_out.observation("leak");
        assert_eq!(seen_a["hashes"]["signing_key"], json!(fnv(sa)));
        let seen_b = tb_out.observation("leak");
        assert_eq!(seen_b["hashes"]["signing_key"], json!(fnv(sb)));
        assert_eq!(seen_a["hashes"].as_object().unwrap().len(), 2);
        // The non-revealable token reached the guest only as a placeholder.
        assert!(seen_a["forms"][3].as_str().unwrap().starts_with("{{pdpp-secret:"));
        // Reveals are run events without the value.
        let events = t.dep.store.events(&out_a.run_id).await.unwrap();
        assert!(events.iter().any(|e| e.kind == "run.secret_revealed" && e.data == json!({"field": "signing_key"})));

        let mut everything = t.stored_bytes();
        for tr in [&ta_out, &tb_out] {
            everything.extend(tr.text().into_bytes());
        }
        for out in [&out_a, &out_b] {
            everything.extend(format!("{out:?}").into_bytes());
        }
        for secret in [ta, sa, tb, sb] {
            for form in forms(secret) {
                assert!(!contains(&everything, &form), "planted form {form:?} leaked");
            }
        }
        assert!(contains(&everything, "[REDACTED:signing_key]"), "a redacted marker stands where the secret was");
        let run_b = t.dep.store.run(&out_b.run_id).await.unwrap().unwrap();
        assert!(run_b.failure_message.unwrap().contains("[REDACTED:signing_key]"));
    }
}

on_both_backends! {
    /// A sealed bundle copied onto another connection's row does not open.
    async fn sealed_bundle_copied_to_another_connection_does_not_open(t: TestDeployment) {
        let m = probe_manifest();
        let a = t.connection(&m, json!({"behavior": "secrets"}), Some(bundle("tokA-copy-test-1", "sigA-copy-test-1"))).await;
        let b = t.connection(&m, json!({"behavior": "secrets"}), None).await;
        let stolen = t.dep.store.credential(&a).await.unwrap().unwrap();
        t.dep.store.put_credential(&b, &stolen.sealed).await.unwrap();
        let err = run_connection(&t.dep, sandbox(), probe(), m, &b, ConnectionRun::new(Trigger::Manual)).await.unwrap_err();
        assert!(matches!(err, RunRefused::Vault(VaultError::OpenFailed(ref id)) if *id == b), "{err}");
        assert_eq!(err.reason(), "credential_unreadable");
        assert_eq!(t.dep.store.count_records(&b).await.unwrap(), 0);
    }
}

on_both_backends! {
    /// Missing, revoked and rejected credentials refuse the run before the
    /// connector is instantiated, with a typed reason on record.
    async fn missing_revoked_or_rejected_credential_refuses_the_run_before_instantiation(t: TestDeployment) {
        let m = probe_manifest();
        let s = &t.dep.store;
        let missing = t.connection(&m, json!({"behavior": "items"}), None).await;
        let revoked = t.connection(&m, json!({"behavior": "items"}), Some(bundle("tok-revoked-001", "sig-revoked-001"))).await;
        s.set_credential_status(&revoked, CredentialStatus::Revoked).await.unwrap();
        let rejected = t.connection(&m, json!({"behavior": "items"}), Some(bundle("tok-rejected-01", "sig-rejected-01"))).await;
        s.set_credential_status(&rejected, CredentialStatus::Rejected).await.unwrap();
        for (conn, reason) in [(&missing, "credential_missing"), (&revoked, "credential_revoked"), (&rejected, "credential_rejected")] {
            for trigger in [Trigger::Manual, Trigger::Scheduled] {
                let err = run_connection(&t.dep, sandbox(), probe(), m.clone(), conn, ConnectionRun::new(trigger)).await.unwrap_err();
                assert_eq!(err.reason(), reason);
            }
            assert_eq!(s.count_records(conn).await.unwrap(), 0, "the connector never ran");
        }
    }
}

on_both_backends! {
    /// DONE with `credential_rejected` marks the stored credential rejected,
    /// but only when the run actually used the stored secret.
    async fn credential_rejected_only_when_the_stored_secret_was_used(t: TestDeployment) {
        let m = probe_manifest();
        let used = t.connection(&m, json!({"behavior": "reject_run"}), Some(bundle("tok-will-reject", "sig-will-reject"))).await;
        let out = run_connection(&t.dep, sandbox(), probe(), m.clone(), &used, ConnectionRun::new(Trigger::Manual)).await.unwrap();
        assert!(!out.succeeded());
        assert_eq!(t.dep.store.credential(&used).await.unwrap().unwrap().status, CredentialStatus::Rejected);
        let unused = t.connection(&m, json!({"behavior": "reject"}), Some(bundle("tok-not-used", "sig-not-used"))).await;
        let out = run_connection(&t.dep, sandbox(), probe(), m, &unused, ConnectionRun::new(Trigger::Manual)).await.unwrap();
        assert!(!out.succeeded());
        assert_eq!(
            t.dep.store.credential(&unused).await.unwrap().unwrap().status,
            CredentialStatus::Active,
            "a refusal that never touched the stored secret says nothing about it"
        );
    }
}

on_both_backends! {
    /// Key rotation re-seals every bundle in one transaction; runs still get
    /// their secrets; the old key no longer opens anything.
    async fn key_rotation_reseals_every_bundle(t: TestDeployment) {
        let m = probe_manifest();
        let a = t.connection(&m, json!({"behavior": "leak"}), Some(bundle("tok-rotate-aaaa", "sig-rotate-aaaa"))).await;
        let _b = t.connection(&m, json!({"behavior": "leak"}), Some(bundle("tok-rotate-bbbb", "sig-rotate-bbbb"))).await;
        let before = t.dep.store.credential(&a).await.unwrap().unwrap();
        let old_key = std::fs::read_to_string(t.dir.path().join("vault.key")).unwrap();
        let mut dep = Deployment::open(t.options()).await.unwrap();
        let r = pdpp_host::credentials::rotate_vault_key(&mut dep).await.unwrap();
        assert_eq!(r.resealed, 2);
        assert_ne!(r.old_key_id, r.new_key_id);
        let after = dep.store.credential(&a).await.unwrap().unwrap();
        assert_eq!(after.sealed.key_id, r.new_key_id);
        assert_ne!(after.sealed.ciphertext, before.sealed.ciphertext);
        assert_eq!(after.sealed.fingerprint.len(), 64);
        assert_ne!(std::fs::read_to_string(t.dir.path().join("vault.key")).unwrap(), old_key);
        assert!(!t.dir.path().join("vault.key.next").exists());

        // A fresh start loads the new key and the run sees its own secret.
        let dep = Deployment::open(t.options()).await.unwrap();
        let tr = Transcript::default();
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.observer = Box::new(tr.clone());
        let out = run_connection(&dep, sandbox(), probe(), m, &a, opts).await.unwrap();
        assert!(out.succeeded());
        assert_eq!(tr.observation("leak")["hashes"]["signing_key"], json!(fnv("sig-rotate-aaaa")));
    }
}

on_both_backends! {
    /// Wrong key, missing key file, corrupted ciphertext: clear errors, and
    /// nothing lost or overwritten.
    async fn wrong_key_missing_key_file_and_corrupted_ciphertext_are_clear_errors(t: TestDeployment) {
        let m = probe_manifest();
        let c = t.connection(&m, json!({"behavior": "secrets"}), Some(bundle("tok-wrongkey-01", "sig-wrongkey-01"))).await;
        let stored = t.dep.store.credential(&c).await.unwrap().unwrap();
        let key_path = t.dir.path().join("vault.key");
        let key_text = std::fs::read_to_string(&key_path).unwrap();

        // Another key file: refused at start, naming both key ids.
        let other = t.dir.path().join("other.key");
        pdpp_host::vault::VaultKey::generate().write_new(&other).unwrap();
        let mut opts = t.options();
        opts.key_file = Some(other.clone());
        match Deployment::open(opts).await {
            Err(DeployError::KeyMismatch { stored: s, .. }) => assert_eq!(s, stored.sealed.key_id),
            other => panic!("expected KeyMismatch, got {:?}", other.map(|_| ())),
        }
        // A named key file that does not exist is not silently created.
        let mut opts = t.options();
        opts.key_file = Some(t.dir.path().join("absent.key"));
        assert!(matches!(Deployment::open(opts).await, Err(DeployError::Vault(VaultError::KeyMissing(_)))));
        assert!(!t.dir.path().join("absent.key").exists());
        assert_eq!(std::fs::read_to_string(&key_path).unwrap(), key_text, "the real key is untouched");

        // Corrupted ciphertext: the run is refused, the row is left as it was.
        let mut bad = stored.sealed.clone();
        bad.ciphertext[3] ^= 0x40;
        t.dep.store.put_credential(&c, &bad).await.unwrap();
        let err = run_connection(&t.dep, sandbox(), probe(), m, &c, ConnectionRun::new(Trigger::Manual)).await.unwrap_err();
        assert!(matches!(err, RunRefused::Vault(VaultError::OpenFailed(_))), "{err}");
        assert_eq!(t.dep.store.credential(&c).await.unwrap().unwrap().sealed.ciphertext, bad.ciphertext);

        // Rotation with an unreadable bundle stops before writing anything.
        let mut dep = Deployment::open(t.options()).await.unwrap();
        assert!(pdpp_host::credentials::rotate_vault_key(&mut dep).await.is_err());
        assert_eq!(std::fs::read_to_string(&key_path).unwrap(), key_text);
        assert_eq!(dep.store.credential(&c).await.unwrap().unwrap().sealed.key_id, stored.sealed.key_id);
    }
}

/// Provider tokens in the host's environment are never a fallback for a
/// connection's credential, for manual and scheduled runs alike.
#[test]
fn host_environment_is_never_a_credential_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let m = probe_manifest_path();
    let env = [
        ("GITHUB_TOKEN", "ghp_env_fallback_must_not_be_used"),
        ("token", "env-token-value-xyz"),
        ("TOKEN", "env-token-value-xyz"),
    ];
    let conn = cli_add_connection(&[
        "--data-dir",
        data_s,
        "--manifest",
        m.to_str().unwrap(),
        "--settings",
        r#"{"behavior":"secrets"}"#,
    ]);
    let probe = guest_path("probe");
    for extra in [&[][..], &["--scheduled"][..]] {
        let (code, lines, stderr) = cli_run_connection(&probe, &m, data_s, &conn, extra, &env);
        assert_eq!(code, 2, "refused before start: {stderr}");
        assert!(stderr.contains("credential_missing"), "{stderr}");
        assert!(lines.is_empty(), "nothing ran: {lines:?}");
    }
    // With a sealed credential the run sees that, and only that.
    let cred = dir.path().join("cred.json");
    std::fs::write(
        &cred,
        r#"{"kind":"secret_bundle","fields":{"token":"stored-token-abcdef","signing_key":"stored-signing-abcdef"}}"#,
    )
    .unwrap();
    let (code, _, err) = cli(
        &[
            "connection",
            "set-credential",
            "--data-dir",
            data_s,
            "--plugin",
            probe.to_str().unwrap(),
            "--manifest",
            m.to_str().unwrap(),
            "--connection",
            &conn,
            "--credential",
            cred.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (code, lines, stderr) = cli_run_connection(&probe, &m, data_s, &conn, &[], &env);
    assert_eq!(code, 0, "{stderr}");
    let seen: &Value = &lines.iter().find(|l| l["type"] == "RECORD").unwrap()["data"]["what"];
    assert_eq!(seen["available"], json!(["signing_key", "token"]));
    assert_eq!(seen["signing_key"]["ok"], json!("\"[REDACTED:signing_key]\""));
    let all = format!("{lines:?}{stderr}");
    assert!(
        !all.contains("ghp_env_fallback") && !all.contains("env-token-value") && !all.contains("stored-signing-abcdef")
    );
}

#[test]
fn cli_key_rotation_prints_key_ids_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let m = probe_manifest_path();
    let cred = dir.path().join("cred.json");
    std::fs::write(
        &cred,
        r#"{"kind":"secret_bundle","fields":{"token":"rot-token-123456","signing_key":"rot-signing-123456"}}"#,
    )
    .unwrap();
    let probe = guest_path("probe");
    let (code, _, err) = cli(
        &[
            "connection",
            "add",
            "--data-dir",
            data_s,
            "--plugin",
            probe.to_str().unwrap(),
            "--manifest",
            m.to_str().unwrap(),
            "--credential",
            cred.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let old_key = std::fs::read_to_string(data.join("vault.key")).unwrap();
    let (code, lines, err) = cli(&["vault", "rotate-key", "--data-dir", data_s], &[], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines[0]["resealed"], 1);
    let new_key = std::fs::read_to_string(data.join("vault.key")).unwrap();
    let printed = format!("{lines:?}{err}");
    assert!(
        !printed.contains(old_key.trim()) && !printed.contains(new_key.trim()),
        "keys are never printed"
    );
}
