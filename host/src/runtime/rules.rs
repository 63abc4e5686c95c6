//! The message and DONE rules of the Collection Profile.
//!
//! Each function checks one message against the manifest and the run's scope
//! and answers with the [`Violation`] of the first rule it breaks, named as
//! the profile names it (search for a rule's name to find it). Nothing here
//! changes state: the session applies what an accepted message means
//! (counting, staging, coverage), and the verdict uses [`validate_done`].

use crate::manifest::Manifest;
use crate::protocol::{self as p, StreamScope};
use crate::sandbox::Violation;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// What a message is checked against.
pub(super) struct Rules<'a> {
    pub manifest: &'a Manifest,
    /// The run's scope, by stream name.
    pub scope: &'a Scope,
}

/// START's streams by name. A run keeps its scope for as long as it lives
/// (parked runs included), so it is a vector of exactly its length sorted by
/// name, not a map with a node of eleven slots for a one-stream scope.
#[derive(Debug, Default)]
pub(super) struct Scope(Vec<StreamScope>);

impl Scope {
    /// The streams, the last one of a name winning (as a map would keep it).
    pub fn new(streams: &[StreamScope]) -> Self {
        let mut v: Vec<StreamScope> = streams.iter().rev().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.dedup_by(|a, b| a.name == b.name);
        v.shrink_to_fit();
        Scope(v)
    }

    pub fn get(&self, stream: &str) -> Option<&StreamScope> {
        let i = self.0.binary_search_by(|s| s.name.as_str().cmp(stream)).ok()?;
        self.0.get(i)
    }

    pub fn contains_key(&self, stream: &str) -> bool {
        self.get(stream).is_some()
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|s| &s.name)
    }
}

/// SKIP_RESULT diagnostics are kept only while small and shallow.
const DIAGNOSTICS_BYTES: usize = 8 << 10;
const DIAGNOSTICS_DEPTH: usize = 6;
const DIAGNOSTICS_ARRAY: usize = 32;

fn bounded(v: &Value, depth: usize) -> bool {
    if depth > DIAGNOSTICS_DEPTH {
        return false;
    }
    match v {
        Value::Array(a) => a.len() <= DIAGNOSTICS_ARRAY && a.iter().all(|x| bounded(x, depth + 1)),
        Value::Object(m) => m.values().all(|x| bounded(x, depth + 1)),
        _ => true,
    }
}

/// SKIP_RESULT diagnostics as kept: a non-object is dropped, an oversized one
/// becomes a sentinel.
pub(super) fn bound_diagnostics(d: Option<Value>) -> Option<Value> {
    let d = d.filter(Value::is_object)?;
    if d.to_string().len() > DIAGNOSTICS_BYTES || !bounded(&d, 1) {
        return Some(json!({ "reason": "size_overflow", "truncated": true }));
    }
    Some(d)
}

/// `browser_session_verified_before_records` (seed 004, session ownership):
/// a run that drives the host's browser reports the account the browser is
/// logged into before the host accepts any record of it.
pub(super) fn browser_session_verified(
    browser_bound: bool,
    account: Option<&str>,
    msg: &p::Message,
) -> Result<(), Violation> {
    if browser_bound && account.is_none() && matches!(msg, p::Message::Record(_)) {
        return Err(Violation::new(
            "browser_session_verified_before_records",
            "a browser-backed connector reports the account its browser is logged into (session-account) \
             before it emits records",
        ));
    }
    Ok(())
}

fn duplicates(keys: &[String]) -> bool {
    let mut seen = BTreeSet::new();
    !keys.iter().all(|k| seen.insert(k.as_str()))
}

fn non_empty(rule: &'static str, what: &str, value: Option<&str>) -> Result<(), Violation> {
    match value {
        Some(v) if v.trim().is_empty() => Err(Violation::new(rule, format!("{what} must be a non-empty string"))),
        _ => Ok(()),
    }
}

impl<'a> Rules<'a> {
    fn in_scope(&self, rule: &'static str, kind: &str, stream: &str) -> Result<&'a StreamScope, Violation> {
        self.scope.get(stream).ok_or_else(|| {
            Violation::new(
                rule,
                format!("Connector emitted {kind} for undeclared stream: {stream}"),
            )
        })
    }

    /// Any message the guest sends through `emit`; `reported` is the
    /// DETAIL_COVERAGE accepted so far in this run.
    pub fn message(&self, msg: &p::Message, reported: &[p::DetailCoverage]) -> Result<(), Violation> {
        match msg {
            p::Message::Record(r) => self.record(r),
            p::Message::State(s) => self.state(s),
            p::Message::Progress(g) => self.progress(g),
            p::Message::SkipResult(s) => self.skip_result(s),
            p::Message::DetailCoverage(c) => self.detail_coverage(c, reported),
            p::Message::DetailGap(g) => self.detail_gap(g),
            other => Err(Violation::new(
                "message_direction",
                format!("Connector emitted {} through emit", other.type_name()),
            )),
        }
    }

    /// `record_stream_in_scope`, `record_key_non_empty`,
    /// `record_key_matches_primary_key`, `record_emitted_at`,
    /// `record_data_object`, `record_resource_in_scope`,
    /// `record_fields_in_scope`, `record_time_in_range`.
    pub fn record(&self, r: &p::Record) -> Result<(), Violation> {
        let scope = self.in_scope("record_stream_in_scope", "RECORD", &r.stream)?;
        let key_ok = match &r.key {
            Value::String(s) => !s.is_empty(),
            Value::Array(parts) => !parts.is_empty() && parts.iter().all(|p| p.as_str().is_some_and(|s| !s.is_empty())),
            _ => false,
        };
        if !key_ok {
            return Err(Violation::new(
                "record_key_non_empty",
                format!("RECORD for {} has an empty key", r.stream),
            ));
        }
        if let Some(spec) = self.manifest.stream(&r.stream) {
            let parts = match &r.key {
                Value::Array(parts) => parts.len(),
                _ => 1,
            };
            if parts != spec.primary_key.len() {
                return Err(Violation::new(
                    "record_key_matches_primary_key",
                    format!(
                        "RECORD for {} has a key of {parts} part(s), the primary key has {}",
                        r.stream,
                        spec.primary_key.len()
                    ),
                ));
            }
        }
        non_empty("record_emitted_at", "RECORD emitted_at", Some(&r.emitted_at))?;
        if r.op.is_some() {
            // A deletion carries no data to check against the scope.
            return Ok(());
        }
        let data = match &r.data {
            Some(Value::Object(map)) => map,
            _ => {
                return Err(Violation::new(
                    "record_data_object",
                    format!("RECORD data for {} must be an object", r.stream),
                ));
            }
        };
        let spec = self.manifest.stream(&r.stream);
        if let Some(resources) = scope.resources.as_ref().filter(|r| !r.is_empty()) {
            let key = match &r.key {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let by_field = spec
                .and_then(|s| s.selection.as_ref())
                .and_then(|sel| sel.resource_field.as_ref())
                .and_then(|f| data.get(f))
                .and_then(Value::as_str);
            let allowed = resources.contains(&key) || by_field.is_some_and(|v| resources.iter().any(|r| r == v));
            if !allowed {
                return Err(Violation::new(
                    "record_resource_in_scope",
                    format!("RECORD for {} is outside the scope's resources", r.stream),
                ));
            }
        }
        if let Some(fields) = &scope.fields {
            let required: Vec<&str> = spec
                .and_then(|s| s.schema.get("required"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let extra: Vec<&str> = data
                .keys()
                .map(String::as_str)
                .filter(|k| !fields.iter().any(|f| f == k) && !required.contains(k))
                .collect();
            if !extra.is_empty() {
                return Err(Violation::new(
                    "record_fields_in_scope",
                    format!(
                        "RECORD for {} carries fields outside the scope: {}",
                        r.stream,
                        extra.join(", ")
                    ),
                ));
            }
        }
        if let (Some(range), Some(field)) = (&scope.time_range, spec.and_then(|s| s.consent_time_field.as_ref())) {
            // The same check the SDK's `allows_time` makes (pdpp-types).
            let inside = data
                .get(field)
                .and_then(Value::as_str)
                .is_some_and(|t| range.contains(t));
            if !inside {
                return Err(Violation::new(
                    "record_time_in_range",
                    format!(
                        "RECORD for {}: {field} is missing, unparseable or outside the time_range",
                        r.stream
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `state_stream_in_scope`, `state_cursor_object`.
    pub fn state(&self, s: &p::State) -> Result<(), Violation> {
        self.in_scope("state_stream_in_scope", "STATE", &s.stream)?;
        if !(s.cursor.is_object() || s.cursor.is_null()) {
            return Err(Violation::new(
                "state_cursor_object",
                format!("STATE cursor for {} must be an object or null", s.stream),
            ));
        }
        Ok(())
    }

    /// `progress_message`, `progress_stream_in_scope`.
    pub fn progress(&self, g: &p::Progress) -> Result<(), Violation> {
        non_empty("progress_message", "PROGRESS message", Some(&g.message))?;
        if let Some(stream) = &g.stream {
            self.in_scope("progress_stream_in_scope", "PROGRESS", stream)?;
        }
        Ok(())
    }

    /// `skip_result_fields`, `skip_result_stream_in_scope`, `skip_result_continuation`.
    pub fn skip_result(&self, s: &p::SkipResult) -> Result<(), Violation> {
        non_empty("skip_result_fields", "SKIP_RESULT reason", s.reason.as_deref())?;
        non_empty("skip_result_fields", "SKIP_RESULT message", s.message.as_deref())?;
        if let Some(stream) = &s.stream {
            self.in_scope("skip_result_stream_in_scope", "SKIP_RESULT", stream)?;
        }
        if let Some(c) = &s.continuation
            && (c.boundary.trim().is_empty() || c.slice_end < c.slice_start)
        {
            return Err(Violation::new(
                "skip_result_continuation",
                "SKIP_RESULT continuation needs a boundary and slice_end >= slice_start",
            ));
        }
        Ok(())
    }

    /// `detail_coverage_stream_in_scope`, `detail_coverage_duplicate_key`,
    /// `detail_coverage_key_not_required`, `detail_coverage_overlapping_outcomes`,
    /// `detail_coverage_on_state_stream_stream`, `detail_coverage_undeclared_parent`,
    /// `detail_coverage_duplicate_report`.
    pub fn detail_coverage(&self, c: &p::DetailCoverage, reported: &[p::DetailCoverage]) -> Result<(), Violation> {
        self.in_scope("detail_coverage_stream_in_scope", "DETAIL_COVERAGE", &c.state_stream)?;
        self.in_scope("detail_coverage_stream_in_scope", "DETAIL_COVERAGE", &c.stream)?;
        for (field, keys) in [
            ("required_keys", &c.required_keys),
            ("hydrated_keys", &c.hydrated_keys),
            ("gap_keys", &c.gap_keys),
            ("optional_skip_keys", &c.optional_skip_keys),
        ] {
            if duplicates(keys) {
                return Err(Violation::new(
                    "detail_coverage_duplicate_key",
                    format!("DETAIL_COVERAGE.{field}: duplicate key"),
                ));
            }
        }
        let outcomes = [&c.hydrated_keys, &c.gap_keys, &c.optional_skip_keys];
        if outcomes
            .iter()
            .flat_map(|k| k.iter())
            .any(|k| !c.required_keys.contains(k))
        {
            return Err(Violation::new(
                "detail_coverage_key_not_required",
                "DETAIL_COVERAGE: key not present in required_keys",
            ));
        }
        let mut seen = BTreeSet::new();
        if !outcomes.iter().flat_map(|k| k.iter()).all(|k| seen.insert(k)) {
            return Err(Violation::new(
                "detail_coverage_overlapping_outcomes",
                "DETAIL_COVERAGE: outcome key appears in multiple sets",
            ));
        }
        if let Some(spec) = self.manifest.stream(&c.stream) {
            if spec.state_stream.is_some() {
                return Err(Violation::new(
                    "detail_coverage_on_state_stream_stream",
                    format!(
                        "stream {} declares a state_stream and MUST NOT emit DETAIL_COVERAGE",
                        c.stream
                    ),
                ));
            }
            if let Some(parents) = &spec.parent_streams
                && !parents.contains(&c.state_stream)
            {
                return Err(Violation::new(
                    "detail_coverage_undeclared_parent",
                    format!(
                        "DETAIL_COVERAGE for {} names {}, which is not one of its parent_streams",
                        c.stream, c.state_stream
                    ),
                ));
            }
        }
        if reported
            .iter()
            .any(|x| x.state_stream == c.state_stream && x.stream == c.stream)
        {
            return Err(Violation::new(
                "detail_coverage_duplicate_report",
                format!("duplicate DETAIL_COVERAGE for ({}, {})", c.state_stream, c.stream),
            ));
        }
        Ok(())
    }

    /// `detail_gap_stream_in_scope`, `detail_gap_record_key`, `detail_gap_parent_scope`.
    pub fn detail_gap(&self, g: &p::DetailGap) -> Result<(), Violation> {
        self.in_scope("detail_gap_stream_in_scope", "DETAIL_GAP", &g.stream)?;
        non_empty("detail_gap_record_key", "DETAIL_GAP record_key", Some(&g.record_key))?;
        if let Some(parent) = &g.parent_stream {
            let spec = self.manifest.stream(&g.stream);
            let declared = spec.is_some_and(|s| {
                s.parent_streams.as_ref().is_some_and(|ps| ps.contains(parent))
                    || s.state_stream.as_deref() == Some(parent.as_str())
            });
            if !declared || !self.scope.contains_key(parent) {
                return Err(Violation::new(
                    "detail_gap_parent_scope",
                    format!(
                        "DETAIL_GAP for {} names parent {parent}, which is not its declared, in-scope parent",
                        g.stream
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `interaction_request_id`, `interaction_message`,
    /// `interaction_stream_in_scope`, `interaction_schema_object`,
    /// `interaction_timeout_positive`.
    pub fn interaction(&self, req: &p::Interaction) -> Result<(), Violation> {
        non_empty(
            "interaction_request_id",
            "INTERACTION request_id",
            Some(&req.request_id),
        )?;
        non_empty("interaction_message", "INTERACTION message", Some(&req.message))?;
        if let Some(stream) = &req.stream {
            self.in_scope("interaction_stream_in_scope", "INTERACTION", stream)?;
        }
        if req.schema.as_ref().is_some_and(|s| !s.is_object()) {
            return Err(Violation::new(
                "interaction_schema_object",
                "INTERACTION schema must be an object",
            ));
        }
        if req.timeout_seconds == Some(0) {
            return Err(Violation::new(
                "interaction_timeout_positive",
                "INTERACTION timeout_seconds must be > 0",
            ));
        }
        Ok(())
    }
}

/// DONE rules checked when the guest returns: `done_error_forbidden_on_success`,
/// `done_error_message`, `done_error_code`, `done_records_emitted`.
pub(crate) fn validate_done(done: &p::Done, counted: u64) -> Result<(), Violation> {
    if let Some(err) = &done.error {
        if done.status == p::DoneStatus::Succeeded {
            return Err(Violation::new(
                "done_error_forbidden_on_success",
                "DONE succeeded must not carry an error",
            ));
        }
        if err.message.trim().is_empty() {
            return Err(Violation::new(
                "done_error_message",
                "DONE error.message must be a non-empty string",
            ));
        }
        if let Some(code) = &err.code
            && !valid_error_code(code)
        {
            return Err(Violation::new(
                "done_error_code",
                "DONE error.code must match ^[a-z][a-z0-9_]{0,63}$",
            ));
        }
    }
    if done.records_emitted != counted {
        return Err(Violation::new(
            "done_records_emitted",
            format!(
                "Connector reported records_emitted {} but runtime observed {counted}",
                done.records_emitted
            ),
        ));
    }
    Ok(())
}

/// `^[a-z][a-z0-9_]{0,63}$`
fn valid_error_code(code: &str) -> bool {
    let b = code.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_error_code_pattern() {
        assert!(valid_error_code("a"));
        assert!(valid_error_code("stream_collection_failed"));
        assert!(!valid_error_code("ProviderThrottle"));
        assert!(!valid_error_code("1abc"));
        assert!(!valid_error_code(&"a".repeat(65)));
    }

    #[test]
    fn done_records_emitted_must_match_the_host_count() {
        let done = p::Done {
            status: p::DoneStatus::Succeeded,
            records_emitted: 3,
            error: None,
        };
        assert_eq!(validate_done(&done, 2).unwrap_err().rule, "done_records_emitted");
        assert!(validate_done(&done, 3).is_ok());
    }

    #[test]
    fn oversized_or_deep_diagnostics_become_a_sentinel_and_non_objects_are_dropped() {
        assert_eq!(bound_diagnostics(Some(json!([1]))), None);
        assert_eq!(bound_diagnostics(Some(json!({ "a": 1 }))), Some(json!({ "a": 1 })));
        let deep = json!({ "a": { "b": { "c": { "d": { "e": { "f": { "g": 1 } } } } } } });
        assert_eq!(
            bound_diagnostics(Some(deep)),
            Some(json!({ "reason": "size_overflow", "truncated": true }))
        );
    }
}
