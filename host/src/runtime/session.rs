//! The runtime's view of one run while the guest executes.

use super::{
    InteractionHandler, InteractionSummary, Observer, RunOutcome, StateInput, evaluate, time,
};
use crate::manifest::Manifest;
use crate::protocol::{self as p, StreamScope};
use crate::sandbox::{Asked, GuestExit, LogLevel, RunHooks, SecretSet, Usage, Violation};
use serde_json::Value;
use std::collections::BTreeMap;
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
        Some(v) if v.trim().is_empty() => Err(Violation::new(
            rule,
            format!("{what} must be a non-empty string"),
        )),
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
        }
    }

    pub(super) fn observe(&mut self, msg: &p::Message) {
        self.observer.message(msg);
    }

    fn check_record(&self, r: &p::Record) -> Result<(), Violation> {
        let scope = in_scope(&self.scope, "record_stream_in_scope", "RECORD", &r.stream)?;
        let key_ok = match &r.key {
            Value::String(s) => !s.is_empty(),
            Value::Array(parts) => {
                !parts.is_empty()
                    && parts
                        .iter()
                        .all(|p| p.as_str().is_some_and(|s| !s.is_empty()))
            }
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
        non_empty(
            "record_emitted_at",
            "RECORD emitted_at",
            Some(&r.emitted_at),
        )?;
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
            let allowed = resources.contains(&key)
                || by_field.is_some_and(|v| resources.iter().any(|r| r == v));
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
        if let (Some(range), Some(field)) = (
            &scope.time_range,
            spec.and_then(|s| s.consent_time_field.as_ref()),
        ) {
            let t = data
                .get(field)
                .and_then(Value::as_str)
                .and_then(time::parse_instant);
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
                match self
                    .staged
                    .iter_mut()
                    .find(|(stream, _)| *stream == s.stream)
                {
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
                non_empty(
                    "skip_result_fields",
                    "SKIP_RESULT reason",
                    s.reason.as_deref(),
                )?;
                non_empty(
                    "skip_result_fields",
                    "SKIP_RESULT message",
                    s.message.as_deref(),
                )?;
                if let Some(stream) = &s.stream {
                    in_scope(
                        &self.scope,
                        "skip_result_stream_in_scope",
                        "SKIP_RESULT",
                        stream,
                    )?;
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
            }
            p::Message::DetailGap(g) => {
                in_scope(
                    &self.scope,
                    "detail_gap_stream_in_scope",
                    "DETAIL_GAP",
                    &g.stream,
                )?;
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

    pub(super) fn finish(
        self,
        run_id: String,
        exit: GuestExit,
        mut usage: Usage,
        state: &StateInput,
    ) -> RunOutcome {
        let (status, reason, message, done) = evaluate(exit, self.records);
        let mut observer = self.observer;
        let commit = match (state, status, &reason) {
            (StateInput::Persisted(prior), p::DoneStatus::Succeeded, None) => {
                let mut next = prior.clone();
                next.extend(self.staged.iter().cloned());
                Some(next)
            }
            _ => None,
        };
        usage.stdout.tail = self.secrets.redact(&usage.stdout.tail);
        usage.stderr.tail = self.secrets.redact(&usage.stderr.tail);
        let outcome = RunOutcome {
            run_id,
            status,
            reason,
            message: message.map(|m| self.secrets.redact(&m)),
            done,
            records_emitted: self.records,
            staged: self.staged,
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
    fn message(&mut self, msg: p::Message) -> Result<(), Violation> {
        self.check(&msg)?;
        self.observer.message(&msg);
        Ok(())
    }

    async fn interact(&mut self, req: p::Interaction) -> Result<Asked, Violation> {
        non_empty(
            "interaction_request_id",
            "INTERACTION request_id",
            Some(&req.request_id),
        )?;
        non_empty(
            "interaction_message",
            "INTERACTION message",
            Some(&req.message),
        )?;
        if let Some(stream) = &req.stream {
            in_scope(
                &self.scope,
                "interaction_stream_in_scope",
                "INTERACTION",
                stream,
            )?;
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
        self.observer.message(&p::Message::Interaction(req.clone()));
        let answer = match req.timeout_seconds {
            Some(secs) => {
                tokio::time::timeout(Duration::from_secs(secs.into()), handler.answer(&req))
                    .await
                    .unwrap_or_else(|_| p::InteractionAnswer::timeout())
            }
            None => handler.answer(&req).await,
        };
        self.observer
            .message(&p::Message::InteractionResponse(p::InteractionResponse {
                request_id: req.request_id.clone(),
                status: answer.status,
            }));
        self.interactions.push(InteractionSummary {
            request_id: req.request_id,
            kind: req.kind,
            status: Some(answer.status),
        });
        Ok(Asked::Answer(answer))
    }

    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        let message = self.secrets.redact(&message);
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .map(|(k, v)| (k, self.secrets.redact(&v)))
            .collect();
        self.observer.log(level, &message, &fields);
    }

    fn secret_revealed(&mut self, field: &str) {
        self.reveals.push(field.to_owned());
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
        assert_eq!(
            validate_done(&done, 2).unwrap_err().rule,
            "done_records_emitted"
        );
        assert!(validate_done(&done, 3).is_ok());
    }
}
