//! Which staged checkpoints a run may commit.
//!
//! A succeeded run commits its staged checkpoints; a failed run commits
//! nothing, except a *certified stream-scoped failure* (DONE `failed` with
//! `error.code = stream_collection_failed` and at least one in-scope
//! SKIP_RESULT with reason `stream_collection_failed`), which commits the
//! checkpoints its failed streams do not depend on. In both cases a
//! checkpoint whose detail coverage falls short is withheld:
//!
//! 1. the failed data streams resolve to their checkpoint streams (declared
//!    `parent_streams`, else a `state_stream` other than themselves, else
//!    themselves);
//! 2. a staged checkpoint S falls short when an in-scope detail stream
//!    declaring S among its `parent_streams` sent no DETAIL_COVERAGE for S, or
//!    when a coverage report under S leaves required keys unaccounted for
//!    (a key counts if hydrated, an optional skip, or covered by a DETAIL_GAP
//!    of this run for the same stream with a matching parent);
//! 3. every staged S that is neither a failed checkpoint nor short is
//!    committed, in staging order.

use crate::manifest::Manifest;
use crate::protocol as p;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A checkpoint that was staged but is not committed, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Withheld {
    pub stream: String,
    /// `stream_collection_failed`, `coverage_missing`, `coverage_incomplete`
    /// or `run_not_committable`.
    pub reason: &'static str,
    pub detail: String,
}

/// A summary the owner sees of something the run did not fully do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KnownGap {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommitPlan {
    pub eligible: Vec<(String, Value)>,
    pub withheld: Vec<Withheld>,
    pub known_gaps: Vec<KnownGap>,
}

/// The checkpoint stream(s) a data stream's progress is recorded under.
pub fn checkpoint_streams(manifest: &Manifest, stream: &str) -> Vec<String> {
    match manifest.stream(stream) {
        Some(s) if s.parent_streams.as_ref().is_some_and(|p| !p.is_empty()) => {
            s.parent_streams.clone().unwrap_or_default()
        }
        Some(s) if s.state_stream.as_deref().is_some_and(|st| st != stream) => vec![s.state_stream.clone().unwrap()],
        _ => vec![stream.to_owned()],
    }
}

/// Whether a gap for `stream` covers a key under checkpoint `state_stream`.
fn gap_matches(manifest: &Manifest, gap: &p::DetailGap, stream: &str, state_stream: &str) -> bool {
    if gap.stream != stream || gap.record_key.is_empty() {
        return false;
    }
    match &gap.parent_stream {
        Some(parent) => parent == state_stream,
        // A gap that names no parent covers only a stream with at most one.
        None => manifest
            .stream(stream)
            .and_then(|s| s.parent_streams.as_ref())
            .is_none_or(|p| p.len() <= 1),
    }
}

/// Decide what to commit. `certified_failed` is the set of failed data
/// streams of a certified stream-scoped failure, `None` for a success.
pub fn plan(
    manifest: &Manifest,
    in_scope: &BTreeSet<String>,
    staged: &[(String, Value)],
    certified_failed: Option<&BTreeSet<String>>,
    coverage: &[p::DetailCoverage],
    gaps: &[p::DetailGap],
) -> CommitPlan {
    let mut out = CommitPlan::default();
    let failed_checkpoints: BTreeSet<String> = certified_failed
        .into_iter()
        .flatten()
        .flat_map(|s| checkpoint_streams(manifest, s))
        .collect();
    let mut short: BTreeMap<String, (&'static str, String)> = BTreeMap::new();
    for (s, _) in staged {
        // (a) a declared detail stream in scope that reported no coverage.
        for d in &manifest.streams {
            let declares = d.parent_streams.as_ref().is_some_and(|p| p.contains(s));
            if declares
                && in_scope.contains(&d.name)
                && !coverage.iter().any(|c| c.state_stream == *s && c.stream == d.name)
            {
                short.entry(s.clone()).or_insert((
                    "coverage_missing",
                    format!("detail stream {} reported no DETAIL_COVERAGE under {s}", d.name),
                ));
            }
        }
        // (b) a report with required keys nobody accounted for.
        for c in coverage.iter().filter(|c| c.state_stream == *s) {
            let missing = c
                .required_keys
                .iter()
                .filter(|k| {
                    !c.hydrated_keys.contains(k)
                        && !c.optional_skip_keys.contains(k)
                        && !gaps
                            .iter()
                            .any(|g| g.record_key == **k && gap_matches(manifest, g, &c.stream, s))
                })
                .count();
            if missing > 0 {
                short.entry(s.clone()).or_insert((
                    "coverage_incomplete",
                    format!(
                        "{missing} required key(s) of {} under {s} are neither hydrated nor a recorded gap",
                        c.stream
                    ),
                ));
            }
        }
    }
    for (s, cursor) in staged {
        if failed_checkpoints.contains(s) {
            out.withheld.push(Withheld {
                stream: s.clone(),
                reason: "stream_collection_failed",
                detail: format!("{s} is the checkpoint of a stream that failed"),
            });
        } else if let Some((reason, detail)) = short.get(s) {
            out.known_gaps.push(KnownGap {
                kind: "detail_coverage_incomplete",
                stream: Some(s.clone()),
                message: detail.clone(),
            });
            out.withheld.push(Withheld {
                stream: s.clone(),
                reason,
                detail: detail.clone(),
            });
        } else {
            out.eligible.push((s.clone(), cursor.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(streams: Value) -> Manifest {
        Manifest::from_json(&json!({ "connector_id": "t", "version": "1", "streams": streams }).to_string()).unwrap()
    }

    fn stream(name: &str, extra: Value) -> Value {
        let mut s = json!({ "name": name, "primary_key": ["id"], "schema": { "properties": { "id": {} } } });
        s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s
    }

    #[test]
    fn checkpoint_streams_resolve_parents_then_state_stream_then_self() {
        let m = manifest(json!([
            stream("a", json!({})),
            stream("b", json!({})),
            stream(
                "child",
                json!({ "state_stream": "a", "coverage_strategy": "checkpoint_window" })
            ),
            stream(
                "detail",
                json!({ "parent_streams": ["a", "b"], "coverage_strategy": "parent_detail_accounting" })
            ),
        ]));
        assert_eq!(checkpoint_streams(&m, "a"), ["a"]);
        assert_eq!(checkpoint_streams(&m, "child"), ["a"]);
        assert_eq!(checkpoint_streams(&m, "detail"), ["a", "b"]);
    }
}
