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
    let err = sandbox().compile(b"\0asm\x01\0\0\0garbage").unwrap_err();
    assert!(matches!(err, pdpp_host::sandbox::LoadError::NotAComponent(_)), "{err}");
    // A core module is not a connector component.
    let err = sandbox().compile(b"\0asm\x01\0\0\0").unwrap_err();
    assert!(
        err.to_string().contains("component") || err.to_string().contains("world"),
        "{err}"
    );
}
