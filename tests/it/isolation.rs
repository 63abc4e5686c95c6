//! A connector sees nothing of the host: no environment (even with provider
//! tokens in the host's), no arguments, no files, no sockets, no names.

use crate::support::*;
use serde_json::Value;
use std::net::TcpListener;

#[test]
fn guest_sees_no_environment_files_sockets_or_name_lookup() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).unwrap();
    let canary_name = format!("PDPP_CANARY_{:016x}", u64::from_le_bytes(nonce));
    let canary_value = format!("canary-value-{:016x}", u64::from_le_bytes(nonce).rotate_left(7));
    let github = "ghp_isolationTestTokenThatMustNotLeak0001";
    let oura = "oura-isolation-token-that-must-not-leak-0002";

    let probe = guest_path("probe");
    let manifest = probe_manifest_path();
    let settings = format!(r#"{{"behavior":"isolation","port":{port}}}"#);
    let (code, lines, stderr) = cli(
        &[
            "run",
            probe.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--settings",
            &settings,
        ],
        &[
            ("GITHUB_TOKEN", github),
            ("OURA_PERSONAL_ACCESS_TOKEN", oura),
            (&canary_name, &canary_value),
        ],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    let record = lines
        .iter()
        .find(|l| l["type"] == "RECORD" && l["key"] == "isolation")
        .expect("the probe reports");
    let what = &record["data"]["what"];

    assert_eq!(what["env"], Value::Array(vec![]), "no variable is visible");
    assert_eq!(what["args"], Value::Array(vec![]), "no argument is visible");
    for probe in ["passwd", "root", "cwd_file", "tcp", "udp", "dns"] {
        assert!(
            what[probe].get("err").is_some(),
            "{probe} must fail inside the sandbox: {}",
            what[probe]
        );
    }
    assert!(listener.accept().is_err(), "nothing connected to the loopback listener");

    let everything = format!("{lines:?}{stderr}");
    for secret in [github, oura, &canary_value, &canary_name] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}
