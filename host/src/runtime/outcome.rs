//! The verdict on a run: how the guest's exit and what the session saw
//! become a [`RunOutcome`], and which staged checkpoints it may commit.
//!
//! [`evaluate`] maps the guest's exit to a status and failure reason (DONE
//! validated against the host's count); [`conclude`] applies "owner
//! cancellation wins", certifies a stream-scoped failure, hands the staged
//! checkpoints to the commit plan ([`super::checkpoint`]) and scrubs the
//! run's secrets from every text of the outcome. Nothing here writes
//! anywhere: committing is the caller's (see `connection.rs`).

use super::StateInput;
use super::checkpoint::{self, KnownGap, Withheld};
use super::redact::redact_done;
use super::rules::validate_done;
use crate::manifest::Manifest;
use crate::protocol::{self as p, StateMap};
use crate::sandbox::{Breach, GuestExit, StopCause, Usage};
use crate::vault::Redactor;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt;

/// Why a run failed (or was cancelled), as a stable code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureReason {
    ConnectorReportedFailed,
    ConnectorReportedCancelled,
    /// The rule that was broken.
    ConnectorProtocolViolation(&'static str),
    ConnectorExitWithoutDone,
    CpuLimit,
    WallClockLimit,
    MemoryLimit,
    RecordLimit,
    LogLimit,
    /// More timeline events than one run may cause.
    EventLimit,
    /// More INTERACTIONs than one run may ask.
    InteractionLimit,
    /// The run's resource table was full.
    ResourceLimit,
    /// The browser session was not established in time.
    BrowserSessionTimeout,
    /// The browser was logged into another account than the connection's.
    SessionAccountMismatch,
    /// The host could not keep what the run produced.
    RuntimeError,
    OwnerCancelled,
    OwnerCancelForced,
    /// The run's connection was revoked or deleted while it ran.
    ConnectionRevoked,
    /// The host shut down while the run ran.
    HostShutdown,
    /// The host had no room for the run (its live-run limit, or the kernel
    /// refused the run's memory or stack). Not the connector's fault.
    HostCapacity,
}

impl FailureReason {
    pub fn code(&self) -> &'static str {
        match self {
            FailureReason::ConnectorReportedFailed => "connector_reported_failed",
            FailureReason::ConnectorReportedCancelled => "connector_reported_cancelled",
            FailureReason::ConnectorProtocolViolation(_) => "connector_protocol_violation",
            FailureReason::ConnectorExitWithoutDone => "connector_exit_without_done",
            FailureReason::CpuLimit => "cpu_limit",
            FailureReason::WallClockLimit => "wall_clock_limit",
            FailureReason::MemoryLimit => "memory_limit",
            FailureReason::RecordLimit => "record_limit",
            FailureReason::LogLimit => "log_limit",
            FailureReason::EventLimit => "event_limit",
            FailureReason::InteractionLimit => "interaction_limit",
            FailureReason::ResourceLimit => "resource_limit",
            FailureReason::BrowserSessionTimeout => "browser_session_timeout",
            FailureReason::SessionAccountMismatch => "session_account_mismatch",
            FailureReason::RuntimeError => "runtime_error",
            FailureReason::OwnerCancelled => "owner_cancelled",
            FailureReason::OwnerCancelForced => "owner_cancel_forced",
            FailureReason::ConnectionRevoked => "connection_revoked",
            FailureReason::HostShutdown => "host_shutdown",
            FailureReason::HostCapacity => "host_capacity",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::ConnectorProtocolViolation(rule) => {
                write!(f, "{} ({rule})", self.code())
            }
            _ => f.write_str(self.code()),
        }
    }
}

/// One INTERACTION and how it ended (never the answer's data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InteractionSummary {
    pub request_id: String,
    pub kind: p::InteractionKind,
    /// `None` when nobody could be asked (no `interactive` binding).
    pub status: Option<p::InteractionStatus>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    pub run_id: String,
    pub status: p::DoneStatus,
    pub reason: Option<FailureReason>,
    /// A redacted, human-readable account of a failure.
    pub message: Option<String>,
    /// The DONE the connector returned, if it returned one.
    pub done: Option<p::Done>,
    /// RECORDs the host accepted.
    pub records_emitted: u64,
    /// RECORDs made durable by the run's sink (0 without one).
    pub records_written: u64,
    /// The last STATE per stream, in staging order.
    pub staged: Vec<(String, Value)>,
    /// The staged checkpoints to commit, in staging order (empty when nothing may be).
    pub eligible: Vec<(String, Value)>,
    /// Staged checkpoints not to commit, and why.
    pub withheld: Vec<Withheld>,
    /// DONE failed, certified as a stream-scoped failure.
    pub certified_failure: bool,
    /// Every SKIP_RESULT the run sent, scrubbed, in order.
    pub skips: Vec<p::SkipResult>,
    /// What the run did not fully do, for the owner.
    pub known_gaps: Vec<KnownGap>,
    /// The full state to persist; `None` when nothing may be committed.
    pub commit: Option<StateMap>,
    pub interactions: Vec<InteractionSummary>,
    /// Fields whose plaintext the guest read.
    pub secret_reveals: Vec<String>,
    /// Credential fields the host typed into the run's browser.
    pub secrets_typed: Vec<String>,
    pub usage: Usage,
}

impl RunOutcome {
    pub fn succeeded(&self) -> bool {
        self.status == p::DoneStatus::Succeeded
    }

    /// The DONE to report: the connector's when it was accepted, else one the
    /// runtime writes for the failure.
    pub fn reported_done(&self) -> p::Done {
        match (&self.done, &self.reason) {
            (
                Some(d),
                None | Some(FailureReason::ConnectorReportedFailed | FailureReason::ConnectorReportedCancelled),
            ) => d.clone(),
            _ => p::Done {
                status: self.status,
                records_emitted: self.records_emitted,
                error: Some(p::DoneError {
                    message: self.message.clone().unwrap_or_else(|| "run failed".into()),
                    code: self.reason.as_ref().map(|r| r.code().to_owned()),
                    retryable: None,
                    recovery_hint: None,
                }),
            },
        }
    }
}

/// A guest exit as a status, a failure reason, a message and the DONE it
/// returned (if any); `counted` is the RECORDs the host accepted.
pub(crate) fn evaluate(
    exit: GuestExit,
    counted: u64,
) -> (p::DoneStatus, Option<FailureReason>, Option<String>, Option<p::Done>) {
    use p::DoneStatus::*;
    match exit {
        GuestExit::Done(done) => match validate_done(&done, counted) {
            Err(v) => (
                Failed,
                Some(FailureReason::ConnectorProtocolViolation(v.rule)),
                Some(v.message),
                Some(done),
            ),
            Ok(()) => {
                let (reason, message) = match done.status {
                    Succeeded => (None, None),
                    Failed => (
                        Some(FailureReason::ConnectorReportedFailed),
                        done.error.as_ref().map(|e| e.message.clone()),
                    ),
                    Cancelled => (
                        Some(FailureReason::ConnectorReportedCancelled),
                        done.error.as_ref().map(|e| e.message.clone()),
                    ),
                };
                (done.status, reason, message, Some(done))
            }
        },
        GuestExit::Violation(v) => (
            Failed,
            Some(FailureReason::ConnectorProtocolViolation(v.rule)),
            Some(v.message),
            None,
        ),
        GuestExit::Limit(b) => {
            let reason = match b {
                Breach::Cpu => FailureReason::CpuLimit,
                Breach::WallClock => FailureReason::WallClockLimit,
                Breach::Memory => FailureReason::MemoryLimit,
                Breach::Records => FailureReason::RecordLimit,
                Breach::Logs => FailureReason::LogLimit,
                Breach::Events => FailureReason::EventLimit,
                Breach::Interactions => FailureReason::InteractionLimit,
                Breach::Resources => FailureReason::ResourceLimit,
                Breach::BrowserSessionTimeout => FailureReason::BrowserSessionTimeout,
                Breach::SessionAccountMismatch => FailureReason::SessionAccountMismatch,
            };
            (Failed, Some(reason), Some(b.to_string()), None)
        }
        GuestExit::Trap(t) => (
            Failed,
            Some(FailureReason::ConnectorExitWithoutDone),
            Some(format!(
                "the connector stopped before returning DONE: {}",
                crate::sandbox::bounded_text(t, 1024)
            )),
            None,
        ),
        // The host failed to keep what the guest did (not the guest's fault).
        GuestExit::HostFault(f) => (Failed, Some(FailureReason::RuntimeError), Some(f), None),
        GuestExit::HostCapacity(why) => (Failed, Some(FailureReason::HostCapacity), Some(why), None),
        GuestExit::Cancelled(c) => (
            p::DoneStatus::Cancelled,
            Some(if c.forced {
                FailureReason::OwnerCancelForced
            } else {
                FailureReason::OwnerCancelled
            }),
            Some(c.to_string()),
            None,
        ),
    }
}

/// The reason and the message of a run stopped for `cause`.
fn stop_verdict(cause: StopCause, forced: bool) -> (FailureReason, String) {
    let (reason, said) = match (cause, forced) {
        (StopCause::Owner, false) => (FailureReason::OwnerCancelled, "the owner cancelled the run"),
        (StopCause::Owner, true) => (FailureReason::OwnerCancelForced, "the owner cancelled the run"),
        (StopCause::ConnectionRevoked, _) => (
            FailureReason::ConnectionRevoked,
            "the connection was revoked or deleted while the run ran",
        ),
        (StopCause::HostShutdown, _) => (FailureReason::HostShutdown, "the host shut down while the run ran"),
    };
    let message = if forced {
        format!("{said}; the connector was stopped by force")
    } else {
        said.to_owned()
    };
    (reason, message)
}

/// What the session saw of a run, handed over for the verdict.
pub(super) struct Seen<'a> {
    pub manifest: &'a Manifest,
    /// The streams in the run's scope.
    pub in_scope: BTreeSet<String>,
    pub staged: Vec<(String, Value)>,
    pub records: u64,
    pub written: u64,
    pub coverage: &'a [p::DetailCoverage],
    pub gaps: &'a [p::DetailGap],
    /// Streams named by SKIP_RESULT `stream_collection_failed`.
    pub failed_streams: &'a BTreeSet<String>,
    pub skips: Vec<p::SkipResult>,
    pub known_gaps: Vec<KnownGap>,
    pub interactions: Vec<InteractionSummary>,
    pub reveals: Vec<String>,
    pub typed: Vec<String>,
    pub redactor: &'a Redactor,
    /// The run was asked to stop before its DONE was evaluated, and by whom.
    pub cancelled: Option<StopCause>,
}

/// The outcome of a run. Owner cancellation wins over any DONE; a succeeded
/// run, or a certified stream-scoped failure, commits the checkpoints the
/// commit plan makes eligible, on top of `state`'s prior cursors.
pub(super) fn conclude(
    seen: Seen<'_>,
    run_id: String,
    exit: GuestExit,
    mut usage: Usage,
    state: &StateInput,
) -> RunOutcome {
    let forced = matches!(exit, GuestExit::Cancelled(c) if c.forced);
    let (mut status, mut reason, mut message, done) = evaluate(exit, seen.records);
    // A stop requested before DONE is evaluated wins over any DONE.
    if let Some(cause) = seen.cancelled {
        status = p::DoneStatus::Cancelled;
        let (why, stopped) = stop_verdict(cause, forced);
        reason = Some(why);
        message = Some(stopped);
    }
    let certified = status == p::DoneStatus::Failed
        && reason == Some(FailureReason::ConnectorReportedFailed)
        && done
            .as_ref()
            .and_then(|d| d.error.as_ref())
            .and_then(|e| e.code.as_deref())
            == Some("stream_collection_failed")
        && !seen.failed_streams.is_empty();
    let committable = status == p::DoneStatus::Succeeded && reason.is_none() || certified;
    let mut plan = checkpoint::plan(
        seen.manifest,
        &seen.in_scope,
        &seen.staged,
        certified.then_some(seen.failed_streams),
        seen.coverage,
        seen.gaps,
    );
    if !committable {
        for (stream, _) in plan.eligible.drain(..) {
            plan.withheld.push(Withheld {
                stream,
                reason: "run_not_committable",
                detail: "the run did not succeed".into(),
            });
        }
    }
    let mut known_gaps = seen.known_gaps;
    known_gaps.extend(plan.known_gaps);
    let commit = match state {
        StateInput::Persisted(prior) if committable => {
            let mut next = prior.clone();
            next.extend(plan.eligible.iter().cloned());
            Some(next)
        }
        _ => None,
    };
    usage.stdout.tail = seen.redactor.redact(&usage.stdout.tail);
    usage.stderr.tail = seen.redactor.redact(&usage.stderr.tail);
    // A request's path is the guest's text too (a revealed value could be in it).
    for r in &mut usage.requests {
        r.path = seen.redactor.redact(&r.path);
    }
    RunOutcome {
        run_id,
        status,
        reason,
        message: message.map(|m| seen.redactor.redact(&m)),
        done: done.map(|d| redact_done(seen.redactor, d)),
        records_emitted: seen.records,
        records_written: seen.written,
        staged: seen.staged,
        eligible: if commit.is_some() { plan.eligible } else { Vec::new() },
        withheld: plan.withheld,
        certified_failure: certified,
        skips: seen.skips,
        known_gaps,
        commit,
        interactions: seen.interactions,
        secret_reveals: seen.reveals,
        secrets_typed: seen.typed,
        usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{Cancelled, Violation};

    #[test]
    fn a_host_fault_is_a_runtime_error_and_a_violation_names_its_rule() {
        let (status, reason, message, done) = evaluate(GuestExit::HostFault("database unavailable".into()), 0);
        assert_eq!(status, p::DoneStatus::Failed);
        assert_eq!(reason, Some(FailureReason::RuntimeError));
        assert_eq!(message.as_deref(), Some("database unavailable"));
        assert!(done.is_none());
        let (_, reason, _, _) = evaluate(GuestExit::Violation(Violation::new("record_stream_in_scope", "x")), 0);
        assert_eq!(
            reason,
            Some(FailureReason::ConnectorProtocolViolation("record_stream_in_scope"))
        );
    }

    #[test]
    fn a_done_whose_count_disagrees_with_the_host_is_a_violation() {
        let done = p::Done {
            status: p::DoneStatus::Succeeded,
            records_emitted: 5,
            error: None,
        };
        let (status, reason, _, kept) = evaluate(GuestExit::Done(done.clone()), 4);
        assert_eq!(status, p::DoneStatus::Failed);
        assert_eq!(
            reason,
            Some(FailureReason::ConnectorProtocolViolation("done_records_emitted"))
        );
        assert_eq!(kept, Some(done));
    }

    #[test]
    fn owner_cancellation_is_cancelled_not_failed() {
        let (status, reason, _, _) = evaluate(GuestExit::Cancelled(Cancelled { forced: true }), 0);
        assert_eq!(status, p::DoneStatus::Cancelled);
        assert_eq!(reason, Some(FailureReason::OwnerCancelForced));
    }
}
