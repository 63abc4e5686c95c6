//! Every limit breach and every crash is a typed failed run that commits nothing.

use crate::support::*;
use pdpp_host::protocol::{DoneStatus, Interaction, InteractionAnswer};
use pdpp_host::runtime::{FailureReason, InteractionHandler};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn cpu_loop_ends_as_a_typed_cpu_limit_failure() {
    let mut req = probe_request("cpu_loop");
    req.limits.cpu = Duration::from_millis(300);
    let (out, _) = run_with(probe(), req, None).await;
    assert_eq!(out.status, DoneStatus::Failed);
    assert_eq!(out.reason, Some(FailureReason::CpuLimit));
    assert!(out.commit.is_none());
    assert!(out.usage.cpu >= Duration::from_millis(300), "{:?}", out.usage);
    let done = out.reported_done();
    assert_eq!(done.error.unwrap().code.as_deref(), Some("cpu_limit"));
}

struct NeverAnswers;
#[async_trait::async_trait]
impl InteractionHandler for NeverAnswers {
    async fn answer(&self, _req: &Interaction) -> InteractionAnswer {
        std::future::pending().await
    }
}

#[tokio::test]
async fn wall_clock_deadline_bounds_a_run_parked_on_the_owner() {
    let mut req = probe_request("interact");
    req.limits.wall_clock = Duration::from_millis(300);
    let (out, _) = run_with(probe(), req, Some(Arc::new(NeverAnswers))).await;
    assert_eq!(out.reason, Some(FailureReason::WallClockLimit));
    assert!(out.commit.is_none());
    assert!(
        out.usage.cpu < out.usage.wall,
        "waiting for the owner is not guest CPU time: {:?}",
        out.usage
    );
}

#[tokio::test]
async fn one_gib_allocation_ends_as_a_typed_memory_failure_and_commits_nothing() {
    let mut req = probe_request("alloc");
    req.limits.memory_bytes = 64 << 20;
    let (out, t) = run_with(probe(), req, None).await;
    assert_eq!(out.reason, Some(FailureReason::MemoryLimit), "{out:?}");
    assert!(out.commit.is_none());
    assert_eq!(
        t.states("items").len(),
        1,
        "the STATE before the allocation was staged…"
    );
    assert_eq!(out.staged.len(), 1);
    assert!(out.usage.peak_memory_bytes <= 64 << 20);
}

#[tokio::test]
async fn panic_ends_as_a_failed_run_without_done_and_commits_nothing() {
    let (out, t) = run_with(probe(), probe_request("panic"), None).await;
    assert_eq!(out.reason, Some(FailureReason::ConnectorExitWithoutDone));
    assert!(out.done.is_none());
    assert_eq!(out.staged.len(), 1, "the STATE was staged…");
    assert!(out.commit.is_none(), "…and not committed");
    assert_eq!(t.records().len(), 1, "records emitted before the panic were seen");
    assert!(
        out.usage.stderr.tail.contains("probe panicked on purpose"),
        "{:?}",
        out.usage.stderr
    );
}

#[tokio::test]
async fn connector_reported_failure_commits_no_staged_state() {
    let (out, _) = run_with(probe(), probe_request("fail_after_state"), None).await;
    assert_eq!(out.status, DoneStatus::Failed);
    assert_eq!(out.reason, Some(FailureReason::ConnectorReportedFailed));
    assert_eq!(
        out.done.as_ref().unwrap().error.as_ref().unwrap().code.as_deref(),
        Some("probe_failed")
    );
    assert!(out.commit.is_none());
}

#[tokio::test]
async fn record_for_a_stream_outside_the_scope_is_a_violation_that_stops_the_guest() {
    let mut req = probe_request("out_of_scope");
    req.streams = Some(vec![pdpp_host::protocol::StreamScope::named("items")]);
    let (out, _) = run_with(probe(), req, None).await;
    assert_eq!(
        out.reason,
        Some(FailureReason::ConnectorProtocolViolation("record_stream_in_scope"))
    );
    assert!(out.message.unwrap().contains("observations"));
    assert!(out.commit.is_none());
}

#[tokio::test]
async fn guest_stdout_and_stderr_are_captured_bounded() {
    let (out, _) = run_with(probe(), probe_request("noisy"), None).await;
    assert!(out.succeeded());
    for c in [&out.usage.stdout, &out.usage.stderr] {
        assert!(c.bytes_observed > 100_000, "{}", c.bytes_observed);
        assert!(c.tail.len() <= 16 << 10);
        assert!(c.truncated);
        assert!(c.tail.ends_with("line 9999\n"));
    }
}

#[tokio::test]
async fn broken_wasm_is_a_typed_load_error() {
    let err = sandbox()
        .compile(b"\0asm\x01\0\0\0garbage", &pdpp_host::sandbox::Grants::none())
        .unwrap_err();
    assert!(matches!(err, pdpp_host::sandbox::LoadError::NotAComponent(_)), "{err}");
    // A core module is not a connector component.
    let err = sandbox()
        .compile(b"\0asm\x01\0\0\0", &pdpp_host::sandbox::Grants::none())
        .unwrap_err();
    assert!(
        err.to_string().contains("component") || err.to_string().contains("world"),
        "{err}"
    );
}

#[tokio::test]
async fn record_flood_ends_as_a_typed_record_limit_failure() {
    let mut req = probe_request("many");
    req.limits.max_records = 1_000;
    let (out, t) = run_with(probe(), req, None).await;
    assert_eq!(out.reason, Some(FailureReason::RecordLimit), "{out:?}");
    assert!(out.commit.is_none());
    assert!(t.records().len() <= 1_000, "no record past the limit was taken");
}

#[tokio::test]
async fn log_flood_ends_as_a_typed_log_limit_failure() {
    let mut req = probe_request("log_flood");
    req.limits.log_bytes = 64 << 10;
    let (out, t) = run_with(probe(), req, None).await;
    assert_eq!(out.reason, Some(FailureReason::LogLimit), "{out:?}");
    let logged: usize = t.logs.lock().unwrap().iter().map(String::len).sum();
    assert!(logged < 80 << 10, "logs stopped at the budget: {logged}");
}

#[tokio::test]
async fn stack_overflow_is_a_failed_run_and_the_host_stays_healthy() {
    let (out, _) = run_with(probe(), probe_request("recurse"), None).await;
    assert_eq!(out.reason, Some(FailureReason::ConnectorExitWithoutDone), "{out:?}");
    // Guest stack overflow runs off its linear memory: a trap, not a host crash.
    assert!(
        out.message.as_deref().unwrap().contains("wasm trap"),
        "{:?}",
        out.message
    );
    // The same sandbox runs the next connector as if nothing happened.
    let (next, _) = run_with(probe(), probe_request("items"), None).await;
    assert!(next.succeeded());
}

/// A hostile connector that grows its memory (the host's lean memory is
/// moved to a new mapping) and then reads past its end gets a trap: no byte
/// of the host's memory beside it, and the host runs the next connector.
#[tokio::test]
async fn a_read_past_the_end_of_a_grown_memory_traps() {
    let (out, _) = run_with(probe(), probe_request("past_memory"), None).await;
    assert_eq!(out.reason, Some(FailureReason::ConnectorExitWithoutDone), "{out:?}");
    let message = out.message.as_deref().unwrap();
    assert!(
        message.contains("wasm trap") && message.contains("out of bounds"),
        "{message}"
    );
    let (next, _) = run_with(probe(), probe_request("items"), None).await;
    assert!(next.succeeded());
}

#[tokio::test]
async fn manifest_limits_only_lower_the_deployment_limits() {
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(probe_manifest_path()).unwrap()).unwrap();
    m["runtime_requirements"]["limits"] = serde_json::json!({ "records": 10, "cpu_seconds": 100000 });
    let manifest = Arc::new(pdpp_host::manifest::Manifest::from_json(&m.to_string()).unwrap());
    // The manifest lowers the record limit…
    let mut req = pdpp_host::runtime::RunRequest::new(manifest.clone());
    req.settings = serde_json::json!({ "behavior": "items", "count": 20 });
    let (out, _) = run_with(probe(), req, None).await;
    assert_eq!(out.reason, Some(FailureReason::RecordLimit));
    // …and cannot raise the CPU limit past the deployment's.
    let mut req = pdpp_host::runtime::RunRequest::new(manifest);
    req.settings = serde_json::json!({ "behavior": "cpu_loop" });
    req.limits.cpu = Duration::from_millis(200);
    let (out, _) = run_with(probe(), req, None).await;
    assert_eq!(out.reason, Some(FailureReason::CpuLimit));
}
