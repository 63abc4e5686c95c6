//! Full-refresh reconciliation: after a full-refresh run, which streams the
//! run covered completely, so that the records of those streams it did not
//! return are deletions upstream.
//!
//! An incremental run reads what changed since its cursor; it cannot see
//! what was deleted (a trashed page, an unstarred repository). A full
//! refresh (`collection_mode: full_refresh`) ignores the cursors and reads
//! everything the provider still has, so once it has covered a stream, a
//! stored record of that stream it did not emit is gone upstream. This
//! module only decides which streams qualify ([`plan`], pure); the run's
//! `finish` (`connection.rs`) deletes through the store and records
//! `run.reconciled`. The rules, each named as its conformance test is:
//!
//! - `reconcile_only_after_a_full_refresh`: an incremental run never
//!   deletes what it did not read.
//! - `reconcile_never_after_a_failed_run`: a failed run (a certified
//!   stream-scoped failure included) or a cancelled one deletes nothing,
//!   not even for the streams that finished.
//! - `reconcile_only_whole_streams`: a stream whose scope was narrowed
//!   (`resources`, `time_range`) was read in part.
//! - `reconcile_not_skipped_streams`: a stream named by a SKIP_RESULT, for
//!   any reason, was not read in full; a SKIP_RESULT naming no stream leaves
//!   every stream of the run unreconciled.
//! - `reconcile_only_checkpointed_streams`: a connector says a stream is
//!   done with its STATE; a stream whose checkpoint was not staged, or was
//!   withheld (a detail-coverage shortfall), was not covered.
//! - `reconcile_not_detail_streams`: a stream with `parent_streams` is
//!   hydrated key by key under its parents' coverage, not listed.
//!
//! What a stream's records are: those of the connection's stream in the
//! store, whichever run wrote them; those this run wrote (upserted) carry its
//! run id and stay.

use super::RunOutcome;
use super::checkpoint::checkpoint_streams;
use crate::manifest::Manifest;
use crate::protocol::{CollectionMode, StreamScope};
use serde::Serialize;
use std::collections::BTreeSet;

/// A stream of a full-refresh run that is not reconciled, and why (one of
/// the rule names of the module documentation, without `reconcile_`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotReconciled {
    pub stream: String,
    /// `scope_narrowed`, `stream_skipped`, `run_skipped_part`,
    /// `not_checkpointed` or `detail_stream`.
    pub reason: &'static str,
}

/// Which streams of a run to reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcilePlan {
    /// Streams covered completely: delete their records the run did not write.
    pub streams: Vec<String>,
    /// Streams in scope that are not, and why (empty when the run is not
    /// a succeeded full refresh: nothing was even considered).
    pub left: Vec<NotReconciled>,
}

impl ReconcilePlan {
    /// Whether the run was a succeeded full refresh (so `run.reconciled` is
    /// worth recording, even with nothing to delete).
    pub fn considered(&self) -> bool {
        !(self.streams.is_empty() && self.left.is_empty())
    }
}

/// Decide which streams of a finished run to reconcile: the run's mode, the
/// scope START carried, and its outcome (after the checkpoint commits, so a
/// commit failure has already failed it).
pub fn plan(manifest: &Manifest, mode: CollectionMode, scope: &[StreamScope], outcome: &RunOutcome) -> ReconcilePlan {
    // reconcile_only_after_a_full_refresh, reconcile_never_after_a_failed_run
    if mode != CollectionMode::FullRefresh || !outcome.succeeded() || outcome.reason.is_some() {
        return ReconcilePlan::default();
    }
    let skipped: BTreeSet<&str> = outcome.skips.iter().filter_map(|s| s.stream.as_deref()).collect();
    let skipped_part = outcome.skips.iter().any(|s| s.stream.is_none());
    let staged: BTreeSet<&str> = outcome.staged.iter().map(|(s, _)| s.as_str()).collect();
    let withheld: BTreeSet<&str> = outcome.withheld.iter().map(|w| w.stream.as_str()).collect();
    let mut plan = ReconcilePlan::default();
    for entry in scope {
        let stream = entry.name.as_str();
        let detail = manifest
            .stream(stream)
            .and_then(|s| s.parent_streams.as_ref())
            .is_some_and(|p| !p.is_empty());
        let checkpointed = checkpoint_streams(manifest, stream)
            .iter()
            .all(|c| staged.contains(c.as_str()) && !withheld.contains(c.as_str()));
        let reason = if detail {
            Some("detail_stream")
        } else if narrowed(entry) {
            Some("scope_narrowed")
        } else if skipped.contains(stream) {
            Some("stream_skipped")
        } else if skipped_part {
            Some("run_skipped_part")
        } else if !checkpointed {
            Some("not_checkpointed")
        } else {
            None
        };
        match reason {
            None => plan.streams.push(stream.to_owned()),
            Some(reason) => plan.left.push(NotReconciled {
                stream: stream.to_owned(),
                reason,
            }),
        }
    }
    plan
}

/// Whether a scope entry limits which records of its stream the run reads
/// (a resource list or a time window with a bound). A `fields` limit does
/// not: every record is still read, with fewer fields.
fn narrowed(entry: &StreamScope) -> bool {
    entry.resources.as_ref().is_some_and(|r| !r.is_empty())
        || entry
            .time_range
            .as_ref()
            .is_some_and(|t| t.since.is_some() || t.until.is_some())
}
