//! INTERACTION as a blocking import: success, cancelled, timeout, and no
//! interactive binding.

use crate::support::*;
use pdpp_host::protocol::{DoneStatus, Interaction, InteractionAnswer, InteractionStatus, Message};
use pdpp_host::runtime::{FailureReason, InteractionHandler, RunRequest};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

struct Answers(InteractionAnswer);
#[async_trait::async_trait]
impl InteractionHandler for Answers {
    async fn answer(&self, _req: &Interaction) -> InteractionAnswer {
        self.0.clone()
    }
}

struct NeverAnswers;
#[async_trait::async_trait]
impl InteractionHandler for NeverAnswers {
    async fn answer(&self, _req: &Interaction) -> InteractionAnswer {
        std::future::pending().await
    }
}

fn interact_request(timeout_seconds: Option<u64>) -> RunRequest {
    let mut req = probe_request("interact");
    req.settings = json!({ "behavior": "interact", "timeout_seconds": timeout_seconds });
    req
}

#[tokio::test]
async fn interaction_success_returns_the_owners_answer_and_never_transcribes_it() {
    let handler = Arc::new(Answers(InteractionAnswer::success(json!({ "code": "918273" }))));
    let (out, t) = run_with(probe(), interact_request(None), Some(handler)).await;
    assert!(out.succeeded(), "{out:?}");
    assert_eq!(
        t.observation("interaction"),
        json!({ "status": "success", "data": { "code": "918273" } })
    );
    let msgs = t.messages();
    let start = match &msgs[0] {
        Message::Start(s) => s,
        m => panic!("{m:?}"),
    };
    assert!(
        start.bindings.contains_key("interactive"),
        "a run with a handler advertises interactive"
    );
    let response = msgs.iter().find_map(|m| match m {
        Message::InteractionResponse(r) => Some(r.clone()),
        _ => None,
    });
    assert_eq!(response.unwrap().status, InteractionStatus::Success);
    // The answer reached only the connector (which chose to record it).
    let host_lines: String = msgs
        .iter()
        .filter(|m| !matches!(m, Message::Record(_)))
        .map(|m| m.to_json_line())
        .collect();
    assert!(!host_lines.contains("918273"), "{host_lines}");
    assert_eq!(out.interactions[0].status, Some(InteractionStatus::Success));
}

#[tokio::test]
async fn interaction_cancelled_reaches_the_connector() {
    let (out, t) = run_with(
        probe(),
        interact_request(None),
        Some(Arc::new(Answers(InteractionAnswer::cancelled()))),
    )
    .await;
    assert!(out.succeeded());
    assert_eq!(t.observation("interaction")["status"], "cancelled");
}

#[tokio::test]
async fn interaction_timeout_answers_timeout_and_the_run_continues() {
    let (out, t) = run_with(probe(), interact_request(Some(1)), Some(Arc::new(NeverAnswers))).await;
    assert!(out.succeeded(), "{out:?}");
    assert_eq!(t.observation("interaction")["status"], "timeout");
    assert_eq!(out.interactions[0].status, Some(InteractionStatus::Timeout));
}

#[tokio::test]
async fn no_interactive_binding_fails_fast_naming_the_missing_input() {
    let mut req = RunRequest::new(demo_manifest());
    req.settings = json!({ "require_otp": true });
    let (out, t) = run_with(demo(), req, None).await;
    assert_eq!(out.status, DoneStatus::Failed);
    assert_eq!(out.reason, Some(FailureReason::ConnectorReportedFailed));
    let error = out.done.unwrap().error.unwrap();
    assert_eq!(error.code.as_deref(), Some("interaction_required"));
    assert!(
        error.message.contains("otp") && error.message.contains("interactive"),
        "{}",
        error.message
    );
    assert!(t.records().is_empty());
    match &t.messages()[0] {
        Message::Start(s) => assert!(!s.bindings.contains_key("interactive")),
        m => panic!("{m:?}"),
    }
}

/// Parks every run until `release` is notified, counting how many are parked.
struct Gate {
    parked: AtomicUsize,
    release: Notify,
}
#[async_trait::async_trait]
impl InteractionHandler for Gate {
    async fn answer(&self, _req: &Interaction) -> InteractionAnswer {
        let released = self.release.notified();
        self.parked.fetch_add(1, Ordering::SeqCst);
        released.await;
        InteractionAnswer::success(json!({ "code": "1" }))
    }
}

/// On a single-threaded runtime, 16 runs wait for the owner at once: each
/// parked run is an awaited future, not a blocked thread.
#[tokio::test(flavor = "current_thread")]
async fn parked_interactions_are_futures_not_threads() {
    let gate = Arc::new(Gate {
        parked: AtomicUsize::new(0),
        release: Notify::new(),
    });
    let runs: Vec<_> = (0..16)
        .map(|_| {
            let gate = gate.clone();
            async move { run_with(probe(), interact_request(None), Some(gate)).await }
        })
        .collect();
    let all = futures::future::join_all(runs);
    let releaser = async {
        while gate.parked.load(Ordering::SeqCst) < 16 {
            tokio::task::yield_now().await;
        }
        gate.release.notify_waiters();
    };
    let (outcomes, ()) = tokio::join!(all, releaser);
    for (out, t) in outcomes {
        assert!(out.succeeded());
        assert_eq!(t.observation("interaction")["data"], json!({ "code": "1" }));
    }
}

#[test]
fn cli_without_interactive_fails_fast_and_with_it_asks_the_terminal() {
    let demo = guest_path("demo");
    let manifest = demo_manifest_path();
    let base = [
        "run",
        demo.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--settings",
    ];
    let settings = r#"{"require_otp": true, "contacts": 2, "events": 0}"#;

    let mut args = base.to_vec();
    args.push(settings);
    let (code, lines, _) = cli(&args, &[], None);
    assert_eq!(code, 1);
    let done = lines.last().unwrap();
    assert_eq!(done["type"], "DONE");
    assert_eq!(done["status"], "failed");
    assert!(done["error"]["message"].as_str().unwrap().contains("otp"));

    args.push("--interactive");
    let (code, lines, stderr) = cli(&args, &[], Some("424242\n"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Enter the 6-digit code"), "{stderr}");
    let kinds: Vec<Value> = lines.iter().map(|l| l["type"].clone()).collect();
    assert_eq!(
        kinds[..3],
        [json!("START"), json!("INTERACTION"), json!("INTERACTION_RESPONSE")]
    );
    assert_eq!(lines.iter().filter(|l| l["type"] == "RECORD").count(), 2);
    assert!(
        !lines.iter().any(|l| l.to_string().contains("424242")),
        "the code is never printed"
    );
}
