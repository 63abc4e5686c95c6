//! Hostile connectors against the sandbox's budgets and secret guarantees
//! (`tests/guests/hostile`, built only against the public WIT). Each test is
//! named after the rule it proves; see docs/sandbox.md and docs/vault.md.

use crate::support::*;
use pdpp_host::egress::{EgressConfig, Origin};
use pdpp_host::manifest::Manifest;
use pdpp_host::protocol as p;
use pdpp_host::runtime::{self, RunOutcome, RunRequest, RunSink, SinkError};
use pdpp_host::sandbox::{Grants, Plugin};
use pdpp_host::store::RunEvent;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

const TOKEN: &str = "tok-hostile-SECRET-51c3";
const KEY: &str = "key-hostile-SECRET-9e27";

fn manifest() -> Arc<Manifest> {
    Arc::new(Manifest::from_file(&workspace().join("tests/guests/hostile/hostile.json")).expect("hostile manifest"))
}

fn hostile() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| {
        let bytes = std::fs::read(guest_path("hostile")).expect("guest wasm");
        sandbox()
            .compile(&bytes, &Grants::from_manifest(&manifest()))
            .expect("guest compiles")
    })
}

fn attack(settings: Value) -> RunRequest {
    let mut req = RunRequest::new(manifest());
    req.settings = settings;
    req.secrets = [
        ("token".to_string(), Zeroizing::new(TOKEN.to_string())),
        ("key".to_string(), Zeroizing::new(KEY.to_string())),
    ]
    .into_iter()
    .collect();
    req
}

/// Keeps every record and timeline event a run writes, as JSON text.
#[derive(Default)]
struct Kept {
    records: Mutex<Vec<String>>,
    events: Mutex<Vec<RunEvent>>,
    questions: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl RunSink for Kept {
    async fn batch(&self, records: &[p::Record], events: &[RunEvent]) -> Result<u64, SinkError> {
        let mut kept = self.records.lock().unwrap();
        kept.extend(records.iter().map(|r| serde_json::to_string(r).unwrap()));
        self.events.lock().unwrap().extend(events.iter().cloned());
        Ok(records.len() as u64)
    }
    async fn interaction_opened(&self, request: &p::Interaction, _s: Option<Vec<u8>>) -> Result<String, SinkError> {
        self.questions
            .lock()
            .unwrap()
            .push(serde_json::to_string(request).unwrap());
        Ok("ix".into())
    }
    async fn interaction_resolved(&self, _id: &str, _status: p::InteractionStatus) -> Result<(), SinkError> {
        Ok(())
    }
}

async fn run_kept(req: RunRequest) -> (RunOutcome, Transcript, Arc<Kept>) {
    let kept = Arc::new(Kept::default());
    let t = Transcript::default();
    let outcome = runtime::execute(
        sandbox(),
        hostile(),
        req,
        None,
        Box::new(t.clone()),
        Some(kept.clone() as Arc<dyn RunSink>),
    )
    .await
    .expect("run starts");
    (outcome, t, kept)
}

fn reason(o: &RunOutcome) -> Option<&'static str> {
    o.reason.as_ref().map(|r| r.code())
}

#[tokio::test]
async fn whole_run_memory_budget_covers_host_state_and_reports_the_true_peak() {
    let mut req = attack(json!({ "attack": "grow", "mib": 200 }));
    req.limits.memory_bytes = 64 << 20;
    let (out, _, _) = run_kept(req).await;
    assert_eq!(reason(&out), Some("memory_limit"), "{out:?}");
    assert!(
        out.usage.peak_memory_bytes <= 64 << 20,
        "{}",
        out.usage.peak_memory_bytes
    );
    let mut req = attack(json!({ "attack": "grow", "mib": 16 }));
    req.limits.memory_bytes = 64 << 20;
    let (out, _, _) = run_kept(req).await;
    assert!(out.succeeded(), "{out:?}");
    assert!(
        out.usage.peak_memory_bytes >= 16 << 20,
        "the peak counts what the guest really held: {}",
        out.usage.peak_memory_bytes
    );
}

#[tokio::test]
async fn log_call_minimum_charge_stops_a_flood_of_empty_lines() {
    let (out, _, kept) = run_kept(attack(json!({ "attack": "log_flood", "n": 10_000_000 }))).await;
    assert_eq!(reason(&out), Some("log_limit"), "{out:?}");
    let logs = kept
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.kind == "run.log")
        .count() as u64;
    let bound = pdpp_host::sandbox::RunLimits::default().log_bytes / pdpp_host::sandbox::LOG_LINE_MIN_BYTES;
    assert!(logs <= bound, "{logs} log events kept, at most {bound} allowed");
}

#[tokio::test]
async fn interaction_count_is_bounded_per_run_when_nobody_can_answer() {
    let (out, _, _) = run_kept(attack(json!({ "attack": "ask_flood", "n": 100_000 }))).await;
    assert_eq!(reason(&out), Some("interaction_limit"), "{out:?}");
    assert!(out.interactions.len() as u64 <= pdpp_host::sandbox::RunLimits::default().max_interactions);
}

#[tokio::test]
async fn resource_table_entries_are_capped() {
    let (out, _, _) = run_kept(attack(json!({ "attack": "fields_flood", "n": 2_000_000 }))).await;
    assert_eq!(reason(&out), Some("resource_limit"), "{out:?}");
}

#[tokio::test]
async fn progress_and_timeline_events_have_a_run_budget() {
    let mut req = attack(json!({ "attack": "progress_flood", "n": 100_000 }));
    req.limits.max_events = 500;
    let (out, _, kept) = run_kept(req).await;
    assert_eq!(reason(&out), Some("event_limit"), "{out:?}");
    assert!(kept.events.lock().unwrap().len() <= 502);
}

#[tokio::test]
async fn every_guest_chosen_field_is_bounded_and_never_echoed_whole() {
    for field in ["key", "emitted_at", "stream", "progress", "request_id"] {
        let (out, _, kept) = run_kept(attack(
            json!({ "attack": "big_field", "field": field, "bytes": 16 << 20 }),
        ))
        .await;
        assert_eq!(reason(&out), Some("connector_protocol_violation"), "{field}: {out:?}");
        let message = out.message.clone().unwrap_or_default();
        assert!(
            message.contains("message_field_size") || message.contains("limit"),
            "{field}: {message}"
        );
        assert!(
            message.len() < 1024,
            "{field}: the failure echoes {} bytes",
            message.len()
        );
        assert!(kept.records.lock().unwrap().is_empty(), "{field}: nothing stored");
        let events =
            serde_json::to_string(&kept.events.lock().unwrap().iter().map(|e| &e.data).collect::<Vec<_>>()).unwrap();
        assert!(events.len() < 64 << 10, "{field}: events hold {} bytes", events.len());
    }
}

#[tokio::test]
async fn redaction_is_structural_every_string_of_every_message_and_event() {
    let (out, t, kept) = run_kept(attack(json!({ "attack": "leak_everywhere" }))).await;
    let mut everything = format!("{out:?}");
    everything.push_str(&format!("{:?}", t.messages()));
    everything.push_str(&format!("{:?}", t.logs.lock().unwrap()));
    everything.push_str(&kept.records.lock().unwrap().join("\n"));
    everything.push_str(&format!("{:?}", kept.events.lock().unwrap()));
    everything.push_str(&kept.questions.lock().unwrap().join("\n"));
    assert!(!everything.contains(KEY), "the revealed value leaked: {everything}");
    assert!(everything.contains("[REDACTED:key]"), "{everything}");
}

/// A loopback double that echoes each request (its head and body) in the
/// response body and its authorization header in a response header.
async fn echo_double() -> (Arc<EgressConfig>, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        if n == 0 {
                            return;
                        }
                        continue;
                    };
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length || n == 0 {
                        break;
                    }
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                log.lock().unwrap().push(text.clone());
                let auth = text
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: "))
                    .unwrap_or("")
                    .to_owned();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nx-echo-auth: {auth}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    text.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(text.as_bytes()).await;
            });
        }
    });
    let to = Origin::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let config = Arc::new(EgressConfig {
        rewrites: vec![(Origin::parse("http://echo.test").unwrap(), to)],
        allow_private_addresses: false,
        allow_loopback_for_rewrites: true,
    });
    (config, seen)
}

fn echoed(t: &Transcript) -> Value {
    t.records()[0].data.clone().unwrap()["what"].clone()
}

#[tokio::test]
async fn response_scrubbing_replaces_secrets_an_endpoint_echoes_with_the_placeholder() {
    let (config, seen) = echo_double().await;
    let mut req = attack(json!({ "attack": "echo", "url": "http://echo.test/echo", "header": "authorization" }));
    req.egress = config;
    let (out, t, kept) = run_kept(req).await;
    assert!(out.succeeded(), "{out:?}");
    assert!(seen.lock().unwrap()[0].contains(TOKEN), "the origin got the value");
    let what = echoed(&t);
    let text = what.to_string();
    assert!(!text.contains(TOKEN), "the guest read the value back: {text}");
    assert!(text.contains("{{pdpp-secret:"), "{text}");
    assert!(!kept.records.lock().unwrap().join("").contains(TOKEN));
}

#[tokio::test]
async fn secret_substitution_only_where_the_manifest_declares() {
    for settings in [
        json!({ "attack": "echo", "url": "http://echo.test/echo", "body": true }),
        json!({ "attack": "echo", "url": "http://echo.test/echo", "header": "x-debug" }),
    ] {
        let (config, seen) = echo_double().await;
        let mut req = attack(settings.clone());
        req.egress = config;
        let (out, t, _) = run_kept(req).await;
        assert!(out.succeeded(), "{out:?}");
        assert!(echoed(&t)["refused"].is_string(), "{settings}: {}", echoed(&t));
        assert!(seen.lock().unwrap().is_empty(), "{settings}: nothing was sent");
        let refused: Vec<_> = out.usage.requests.iter().map(|r| r.refused.clone()).collect();
        assert_eq!(refused, [Some("secret_not_allowed_here".to_string())], "{settings}");
    }
}

#[test]
fn refusing_a_component_that_imports_a_missing_interface_names_the_import() {
    use pdpp_host::sandbox::LoadError;
    use wasm_encoder::{Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType};
    let mut c = Component::new();
    let mut types = ComponentTypeSection::new();
    types.instance(&InstanceType::new());
    c.section(&types);
    let mut imports = ComponentImportSection::new();
    imports.import("pdpp:elsewhere/vault-dump@1.0.0", ComponentTypeRef::Instance(0));
    c.section(&imports);
    let err = sandbox().compile(&c.finish(), &Grants::none()).unwrap_err();
    assert!(matches!(err, LoadError::ImportNotProvided { .. }), "{err}");
    assert!(err.to_string().contains("pdpp:elsewhere/vault-dump@1.0.0"), "{err}");
}
