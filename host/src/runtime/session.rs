//! The runtime's view of one run while the guest executes.

use super::checkpoint::{self, KnownGap};
use super::{InteractionHandler, InteractionSummary, Observer, RunOutcome, RunSink, StateInput, evaluate, time};
use crate::manifest::Manifest;
use crate::protocol::{self as p, StreamScope};
use crate::sandbox::RunControl;
use crate::sandbox::{Asked, GuestExit, HostFault, LogLevel, RunHooks, SecretSet, Usage, Violation};
use crate::store::RunEvent;
use crate::vault::Redactor;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Validates and records what one guest emits.
pub struct Session {
    manifest: Arc<Manifest>,
    scope: BTreeMap<String, StreamScope>,
    interaction: Option<Arc<dyn InteractionHandler>>,
    observer: Box<dyn Observer>,
    secrets: SecretSet,
    staged: Vec<(String, Value)>,
    records: u64,
    interactions: Vec<InteractionSummary>,
    reveals: Vec<String>,
    sink: Option<Arc<dyn RunSink>>,
    pending_records: Vec<p::Record>,
    pending_events: Vec<RunEvent>,
    written: u64,
    coverage: Vec<p::DetailCoverage>,
    gaps: Vec<p::DetailGap>,
    /// Streams named by SKIP_RESULT `stream_collection_failed`.
    failed_streams: BTreeSet<String>,
    known_gaps: Vec<KnownGap>,
    control: RunControl,
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

/// Diagnostics as kept: a non-object is dropped, an oversized one becomes a sentinel.
fn bound_diagnostics(d: Option<Value>) -> Option<Value> {
    let d = d.filter(Value::is_object)?;
    if d.to_string().len() > DIAGNOSTICS_BYTES || !bounded(&d, 1) {
        return Some(json!({ "reason": "size_overflow", "truncated": true }));
    }
    Some(d)
}

fn duplicates(keys: &[String]) -> bool {
    let mut seen = BTreeSet::new();
    !keys.iter().all(|k| seen.insert(k.as_str()))
}

/// Scrub every string (and object key) of a JSON value.
pub(crate) fn redact_value(r: &Redactor, v: &mut Value) {
    match v {
        Value::String(s) => *s = r.redact(s),
        Value::Array(items) => items.iter_mut().for_each(|i| redact_value(r, i)),
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut val) in old {
                redact_value(r, &mut val);
                map.insert(r.redact(&k), val);
            }
        }
        _ => {}
    }
}

/// Scrub the free-text parts of a message before anyone sees or keeps it.
fn redact_message(r: &Redactor, msg: &mut p::Message) {
    if r.is_empty() {
        return;
    }
    let text = |s: &mut String| *s = r.redact(s);
    let opt = |s: &mut Option<String>| {
        if let Some(s) = s {
            *s = r.redact(s)
        }
    };
    let val = |v: &mut Option<Value>| {
        if let Some(v) = v {
            redact_value(r, v)
        }
    };
    match msg {
        p::Message::Record(rec) => {
            val(&mut rec.data);
            redact_value(r, &mut rec.key);
        }
        p::Message::State(st) => redact_value(r, &mut st.cursor),
        p::Message::Progress(g) => text(&mut g.message),
        p::Message::SkipResult(sk) => {
            opt(&mut sk.reason);
            opt(&mut sk.message);
            val(&mut sk.diagnostics);
        }
        p::Message::DetailGap(g) => {
            opt(&mut g.reason);
            val(&mut g.detail_locator);
            val(&mut g.list_cursor);
            val(&mut g.last_error);
        }
        p::Message::Interaction(i) => {
            text(&mut i.message);
            val(&mut i.schema);
        }
        p::Message::Done(d) => {
            if let Some(e) = &mut d.error {
                text(&mut e.message);
            }
        }
        _ => {}
    }
}

/// The timeline entry for a message, if it gets one. Records are counted per
/// batch instead; cursors are not copied into the timeline.
fn event_for(msg: &p::Message) -> Option<RunEvent> {
    Some(match msg {
        p::Message::State(s) => RunEvent::new("run.state_staged", json!({ "stream": s.stream })),
        p::Message::Progress(g) => RunEvent::new("run.progress_reported", serde_json::to_value(g).ok()?),
        p::Message::SkipResult(s) => RunEvent::new("run.stream_skipped", serde_json::to_value(s).ok()?),
        p::Message::DetailCoverage(c) => RunEvent::new(
            "run.detail_coverage_declared",
            json!({ "state_stream": c.state_stream, "stream": c.stream, "required": c.required_keys.len(),
                    "hydrated": c.hydrated_keys.len(), "gaps": c.gap_keys.len() }),
        ),
        p::Message::DetailGap(g) => RunEvent::new("run.detail_gap_recorded", serde_json::to_value(g).ok()?),
        _ => return None,
    })
}

fn in_scope<'a>(
    scope: &'a BTreeMap<String, StreamScope>,
    rule: &'static str,
    kind: &str,
    stream: &str,
) -> Result<&'a StreamScope, Violation> {
    scope.get(stream).ok_or_else(|| {
        Violation::new(
            rule,
            format!("Connector emitted {kind} for undeclared stream: {stream}"),
        )
    })
}

fn non_empty(rule: &'static str, what: &str, value: Option<&str>) -> Result<(), Violation> {
    match value {
        Some(v) if v.trim().is_empty() => Err(Violation::new(rule, format!("{what} must be a non-empty string"))),
        _ => Ok(()),
    }
}

impl Session {
    pub fn new(
        manifest: Arc<Manifest>,
        start: &p::Start,
        interaction: Option<Arc<dyn InteractionHandler>>,
        observer: Box<dyn Observer>,
        secrets: SecretSet,
        sink: Option<Arc<dyn RunSink>>,
        control: RunControl,
    ) -> Self {
        let scope = start
            .scope
            .streams
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        Session {
            manifest,
            scope,
            interaction,
            observer,
            secrets,
            staged: Vec::new(),
            records: 0,
            interactions: Vec::new(),
            reveals: Vec::new(),
            sink,
            pending_records: Vec::new(),
            pending_events: Vec::new(),
            written: 0,
            coverage: Vec::new(),
            gaps: Vec::new(),
            failed_streams: BTreeSet::new(),
            known_gaps: Vec::new(),
            control,
        }
    }

    fn event(&mut self, kind: &str, data: Value) {
        self.pending_events.push(RunEvent::new(kind, data));
    }

    /// After the guest stopped: drop records of a batch that broke a rule or
    /// never ended, and write the timeline entries not written yet.
    pub(super) async fn settle(&mut self, exit: &GuestExit) -> Result<(), HostFault> {
        if !matches!(exit, GuestExit::Done(_)) {
            self.pending_records.clear();
        }
        self.end_batch().await
    }

    pub(super) fn observe(&mut self, msg: &p::Message) {
        self.observer.message(msg);
    }

    fn check_record(&self, r: &p::Record) -> Result<(), Violation> {
        let scope = in_scope(&self.scope, "record_stream_in_scope", "RECORD", &r.stream)?;
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
            let t = data.get(field).and_then(Value::as_str).and_then(time::parse_instant);
            let inside = t.is_some_and(|t| {
                range
                    .since
                    .as_deref()
                    .and_then(time::parse_instant)
                    .is_none_or(|s| s <= t)
                    && range
                        .until
                        .as_deref()
                        .and_then(time::parse_instant)
                        .is_none_or(|u| t < u)
            });
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

    fn check(&mut self, msg: &p::Message) -> Result<(), Violation> {
        match msg {
            p::Message::Record(r) => {
                self.check_record(r)?;
                self.records += 1;
            }
            p::Message::State(s) => {
                in_scope(&self.scope, "state_stream_in_scope", "STATE", &s.stream)?;
                if !(s.cursor.is_object() || s.cursor.is_null()) {
                    return Err(Violation::new(
                        "state_cursor_object",
                        format!("STATE cursor for {} must be an object or null", s.stream),
                    ));
                }
                match self.staged.iter_mut().find(|(stream, _)| *stream == s.stream) {
                    Some(slot) => slot.1 = s.cursor.clone(),
                    None => self.staged.push((s.stream.clone(), s.cursor.clone())),
                }
            }
            p::Message::Progress(g) => {
                non_empty("progress_message", "PROGRESS message", Some(&g.message))?;
                if let Some(stream) = &g.stream {
                    in_scope(&self.scope, "progress_stream_in_scope", "PROGRESS", stream)?;
                }
            }
            p::Message::SkipResult(s) => {
                non_empty("skip_result_fields", "SKIP_RESULT reason", s.reason.as_deref())?;
                non_empty("skip_result_fields", "SKIP_RESULT message", s.message.as_deref())?;
                if let Some(stream) = &s.stream {
                    in_scope(&self.scope, "skip_result_stream_in_scope", "SKIP_RESULT", stream)?;
                }
                if let Some(c) = &s.continuation
                    && (c.boundary.trim().is_empty() || c.slice_end < c.slice_start)
                {
                    return Err(Violation::new(
                        "skip_result_continuation",
                        "SKIP_RESULT continuation needs a boundary and slice_end >= slice_start",
                    ));
                }
                if let (Some("stream_collection_failed"), Some(stream)) = (s.reason.as_deref(), &s.stream) {
                    self.failed_streams.insert(stream.clone());
                }
            }
            p::Message::DetailCoverage(c) => {
                in_scope(
                    &self.scope,
                    "detail_coverage_stream_in_scope",
                    "DETAIL_COVERAGE",
                    &c.state_stream,
                )?;
                in_scope(
                    &self.scope,
                    "detail_coverage_stream_in_scope",
                    "DETAIL_COVERAGE",
                    &c.stream,
                )?;
                self.check_coverage(c)?;
                self.coverage.push(c.clone());
            }
            p::Message::DetailGap(g) => {
                in_scope(&self.scope, "detail_gap_stream_in_scope", "DETAIL_GAP", &g.stream)?;
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
                self.gaps.push(g.clone());
            }
            other => {
                return Err(Violation::new(
                    "message_direction",
                    format!("Connector emitted {} through emit", other.type_name()),
                ));
            }
        }
        Ok(())
    }

    fn check_coverage(&self, c: &p::DetailCoverage) -> Result<(), Violation> {
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
        if self
            .coverage
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

    pub(super) fn finish(self, run_id: String, exit: GuestExit, mut usage: Usage, state: &StateInput) -> RunOutcome {
        let forced = matches!(exit, GuestExit::Cancelled(c) if c.forced);
        let (mut status, mut reason, mut message, done) = evaluate(exit, self.records);
        // An owner cancellation recorded before DONE is evaluated wins over any DONE.
        if self.control.is_cancelled() {
            status = p::DoneStatus::Cancelled;
            reason = Some(if forced {
                super::FailureReason::OwnerCancelForced
            } else {
                super::FailureReason::OwnerCancelled
            });
            message = Some(if forced {
                "the owner cancelled the run; the connector was stopped by force".into()
            } else {
                "the owner cancelled the run".into()
            });
        }
        let certified = status == p::DoneStatus::Failed
            && reason == Some(super::FailureReason::ConnectorReportedFailed)
            && done
                .as_ref()
                .and_then(|d| d.error.as_ref())
                .and_then(|e| e.code.as_deref())
                == Some("stream_collection_failed")
            && !self.failed_streams.is_empty();
        let committable = status == p::DoneStatus::Succeeded && reason.is_none() || certified;
        let in_scope: BTreeSet<String> = self.scope.keys().cloned().collect();
        let mut plan = checkpoint::plan(
            &self.manifest,
            &in_scope,
            &self.staged,
            certified.then_some(&self.failed_streams),
            &self.coverage,
            &self.gaps,
        );
        if !committable {
            for (stream, _) in plan.eligible.drain(..) {
                plan.withheld.push(checkpoint::Withheld {
                    stream,
                    reason: "run_not_committable",
                    detail: "the run did not succeed".into(),
                });
            }
        }
        let mut known_gaps = self.known_gaps;
        known_gaps.extend(plan.known_gaps);
        let commit = match state {
            StateInput::Persisted(prior) if committable => {
                let mut next = prior.clone();
                next.extend(plan.eligible.iter().cloned());
                Some(next)
            }
            _ => None,
        };
        let mut observer = self.observer;
        usage.stdout.tail = self.secrets.redactor().redact(&usage.stdout.tail);
        usage.stderr.tail = self.secrets.redactor().redact(&usage.stderr.tail);
        let outcome = RunOutcome {
            run_id,
            status,
            reason,
            message: message.map(|m| self.secrets.redactor().redact(&m)),
            done: done.map(|d| {
                let mut m = p::Message::Done(d);
                redact_message(self.secrets.redactor(), &mut m);
                match m {
                    p::Message::Done(d) => d,
                    _ => unreachable!("a DONE stays a DONE"),
                }
            }),
            records_emitted: self.records,
            records_written: self.written,
            staged: self.staged,
            eligible: if commit.is_some() { plan.eligible } else { Vec::new() },
            withheld: plan.withheld,
            certified_failure: certified,
            known_gaps,
            commit,
            interactions: self.interactions,
            secret_reveals: self.reveals,
            usage,
        };
        observer.message(&p::Message::Done(outcome.reported_done()));
        outcome
    }
}

/// DONE rules checked when the guest returns.
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

#[async_trait::async_trait]
impl RunHooks for Session {
    fn message(&mut self, mut msg: p::Message) -> Result<(), Violation> {
        // Scrub first: what is staged, shown or kept never holds a secret.
        redact_message(self.secrets.redactor(), &mut msg);
        if let p::Message::SkipResult(sk) = &mut msg {
            sk.diagnostics = bound_diagnostics(sk.diagnostics.take());
        }
        self.check(&msg)?;
        if let Some(e) = event_for(&msg) {
            self.pending_events.push(e);
        }
        self.observer.message(&msg);
        if let p::Message::Record(r) = msg {
            self.pending_records.push(r);
        }
        Ok(())
    }

    async fn end_batch(&mut self) -> Result<(), HostFault> {
        let records = std::mem::take(&mut self.pending_records);
        if !records.is_empty() {
            self.event("run.batch_written", json!({ "records": records.len() }));
        }
        let events = std::mem::take(&mut self.pending_events);
        if let Some(sink) = &self.sink
            && !(records.is_empty() && events.is_empty())
        {
            self.written += sink.batch(&records, &events).await.map_err(HostFault)?;
        }
        Ok(())
    }

    async fn interact(&mut self, req: p::Interaction) -> Result<Asked, Violation> {
        non_empty(
            "interaction_request_id",
            "INTERACTION request_id",
            Some(&req.request_id),
        )?;
        non_empty("interaction_message", "INTERACTION message", Some(&req.message))?;
        if let Some(stream) = &req.stream {
            in_scope(&self.scope, "interaction_stream_in_scope", "INTERACTION", stream)?;
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
        let Some(handler) = self.interaction.clone() else {
            self.interactions.push(InteractionSummary {
                request_id: req.request_id,
                kind: req.kind,
                status: None,
            });
            return Ok(Asked::NotInteractive(format!(
                "the run has no interactive binding, so nobody can answer the {} request",
                req.kind.as_str()
            )));
        };
        let mut req = req;
        let mut shown = p::Message::Interaction(req.clone());
        redact_message(self.secrets.redactor(), &mut shown);
        if let p::Message::Interaction(clean) = &shown {
            req.message = clean.message.clone();
        }
        self.observer.message(&shown);
        self.event(
            "run.interaction_required",
            json!({ "request_id": req.request_id, "kind": req.kind, "stream": req.stream, "message": req.message }),
        );
        let stored =
            match &self.sink {
                Some(sink) => Some(sink.interaction_opened(&req).await.map_err(|e| {
                    Violation::new(super::HOST_FAULT_RULE, format!("cannot record the interaction: {e}"))
                })?),
                None => None,
            };
        let answer = match req.timeout_seconds {
            Some(secs) => tokio::time::timeout(Duration::from_secs(secs.into()), handler.answer(&req))
                .await
                .unwrap_or_else(|_| p::InteractionAnswer::timeout()),
            None => handler.answer(&req).await,
        };
        self.observer
            .message(&p::Message::InteractionResponse(p::InteractionResponse {
                request_id: req.request_id.clone(),
                status: answer.status,
            }));
        if let (Some(sink), Some(id)) = (&self.sink, &stored) {
            sink.interaction_resolved(id, answer.status)
                .await
                .map_err(|e| Violation::new(super::HOST_FAULT_RULE, format!("cannot record the interaction: {e}")))?;
        }
        self.event(
            "run.interaction_completed",
            json!({ "request_id": req.request_id, "kind": req.kind, "status": answer.status }),
        );
        if answer.status != p::InteractionStatus::Success {
            let hint = if req.kind == p::InteractionKind::Credentials {
                "refresh_credentials"
            } else {
                "manual_action_required"
            };
            self.known_gaps.push(KnownGap {
                kind: "interaction_required",
                stream: req.stream.clone(),
                message: format!(
                    "{} interaction ended {:?}; recovery: {hint}",
                    req.kind.as_str(),
                    answer.status
                )
                .to_lowercase(),
            });
        }
        self.interactions.push(InteractionSummary {
            request_id: req.request_id,
            kind: req.kind,
            status: Some(answer.status),
        });
        Ok(Asked::Answer(answer))
    }

    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        let r = self.secrets.redactor();
        let message = r.redact(&message);
        let fields: Vec<(String, String)> = fields.into_iter().map(|(k, v)| (k, r.redact(&v))).collect();
        self.observer.log(level, &message, &fields);
        let data: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        self.event(
            "run.log",
            json!({ "level": level.as_str(), "message": message, "fields": data }),
        );
    }

    fn secret_revealed(&mut self, field: &str) {
        self.reveals.push(field.to_owned());
        self.event("run.secret_revealed", json!({ "field": field }));
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
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
}
