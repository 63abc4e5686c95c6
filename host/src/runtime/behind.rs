//! Which streams a run left behind, for its terminal event
//! ([`crate::store::RunEndEvent::streams_behind`]), from which setup status
//! tells the owner which streams are behind, why, and when they are retried.
//!
//! A stream is behind when the run did not bring it up to date: a
//! SKIP_RESULT named it (a rate limit, a forbidden resource, a certified
//! stream failure), or the host withheld its checkpoint (a detail-coverage
//! shortfall, or it depends on a failed stream). Its previous checkpoint
//! stays, so the next run reads it again from there. A run that failed as a
//! whole lists nothing: its failure is what the owner needs to see. Pure.

use super::RunOutcome;
use crate::protocol::RecoveryAction;
use crate::store::StreamBehind;
use pdpp_types::RETRY_AFTER_SECONDS;
use std::collections::BTreeSet;

/// The streams `outcome` left behind, each once, skips first (in the order
/// sent), then withheld checkpoints. `ended_at` (Unix ms) anchors the
/// provider's `retry_after_seconds` to an instant.
pub fn streams_behind(outcome: &RunOutcome, ended_at: i64) -> Vec<StreamBehind> {
    if !(outcome.succeeded() || outcome.certified_failure) {
        return Vec::new();
    }
    let mut listed = BTreeSet::new();
    let mut behind = Vec::new();
    for skip in &outcome.skips {
        let Some(stream) = &skip.stream else { continue };
        if !listed.insert(stream.clone()) {
            continue;
        }
        let wait = skip
            .diagnostics
            .as_ref()
            .and_then(|d| d.get(RETRY_AFTER_SECONDS))
            .and_then(serde_json::Value::as_u64);
        behind.push(StreamBehind {
            stream: stream.clone(),
            reason: skip.reason.clone().unwrap_or_else(|| "skipped".into()),
            message: skip.message.clone(),
            recovery: skip
                .recovery_hint
                .as_ref()
                .map_or(RecoveryAction::Unknown, |h| h.action),
            retry_not_before: wait.map(|secs| ended_at.saturating_add((secs as i64).saturating_mul(1_000))),
        });
    }
    for w in &outcome.withheld {
        if w.reason == "run_not_committable" || !listed.insert(w.stream.clone()) {
            continue;
        }
        behind.push(StreamBehind {
            stream: w.stream.clone(),
            reason: w.reason.to_owned(),
            message: Some(w.detail.clone()),
            recovery: RecoveryAction::RetryByRuntime,
            retry_not_before: None,
        });
    }
    behind
}
