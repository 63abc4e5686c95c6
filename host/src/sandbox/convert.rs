//! WIT values ↔ [`crate::protocol`] messages, and nothing else.
//!
//! Pure functions: no store, no hooks, no limits beyond the message size a
//! caller passes in and the field bounds below. A JSON-carrying field that is
//! too large or not JSON is a [`Violation`] naming the field, never quoting
//! it. Every other string a guest chooses is bounded here too
//! (`message_field_size`): names and ids at [`NAME_BYTES`], record keys at
//! [`KEY_BYTES`], timestamps at [`TIME_BYTES`], text for people at
//! [`TEXT_BYTES`], lists of keys or resources at the message size in all. So
//! nothing the runtime later stores, or echoes into an error, can be larger.
//! The capabilities call these; the protocol rules themselves live in the
//! runtime.

use super::bindings::pdpp::connector::{emit, interaction, log, probe};
use super::bindings::wit;
use super::{LogLevel, ProbeAnswer, Violation};
use crate::protocol as p;
use serde_json::Value;

/// The longest stream name, id, reason token or field name, in bytes.
pub const NAME_BYTES: usize = 256;
/// The longest record key (all parts together) or detail key, in bytes.
pub const KEY_BYTES: usize = 2048;
/// The longest timestamp (`emitted_at`, a time range's ends), in bytes.
pub const TIME_BYTES: usize = 64;
/// The longest text for people (PROGRESS, SKIP_RESULT and INTERACTION
/// messages, DONE's error, a continuation boundary), in bytes.
pub const TEXT_BYTES: usize = 4096;

/// `s` cut to at most `max` bytes (at a character boundary), marked with `…`.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Refuse a guest string over `max` bytes, naming the field, never quoting it.
fn bound(what: &str, s: &str, max: usize) -> Result<(), Violation> {
    if s.len() > max {
        return Err(Violation::new(
            "message_field_size",
            format!("{what} is {} bytes, over the {max} byte limit", s.len()),
        ));
    }
    Ok(())
}

fn bound_opt(what: &str, s: &Option<String>, max: usize) -> Result<(), Violation> {
    s.as_deref().map_or(Ok(()), |s| bound(what, s, max))
}

/// Refuse a list whose entries pass `each` or whose total passes `total`.
fn bound_list(what: &str, items: &[String], each: usize, total: usize) -> Result<(), Violation> {
    let mut sum = 0usize;
    for i in items {
        bound(what, i, each)?;
        sum += i.len() + 8;
    }
    if sum > total {
        return Err(Violation::new(
            "message_field_size",
            format!("{what} is {sum} bytes in all, over the {total} byte limit"),
        ));
    }
    Ok(())
}

fn bound_range(what: &str, r: &Option<wit::TimeRange>) -> Result<(), Violation> {
    if let Some(r) = r {
        bound_opt(what, &r.since, TIME_BYTES)?;
        bound_opt(what, &r.until, TIME_BYTES)?;
    }
    Ok(())
}

/// Every guest-chosen string of a message against its bound.
fn bound_message(msg: &emit::Message, max_bytes: usize) -> Result<(), Violation> {
    match msg {
        emit::Message::Record(r) => {
            bound("RECORD stream", &r.stream, NAME_BYTES)?;
            match &r.key {
                wit::RecordKey::Single(k) => bound("RECORD key", k, KEY_BYTES)?,
                wit::RecordKey::Composite(parts) => bound_list("RECORD key", parts, KEY_BYTES, KEY_BYTES)?,
            }
            bound("RECORD emitted_at", &r.emitted_at, TIME_BYTES)?;
        }
        emit::Message::State(s) => bound("STATE stream", &s.stream, NAME_BYTES)?,
        emit::Message::Progress(g) => {
            bound_opt("PROGRESS stream", &g.stream, NAME_BYTES)?;
            bound("PROGRESS message", &g.message, TEXT_BYTES)?;
        }
        emit::Message::SkipResult(s) => {
            bound_opt("SKIP_RESULT stream", &s.stream, NAME_BYTES)?;
            bound_opt("SKIP_RESULT reason", &s.reason, NAME_BYTES)?;
            bound_opt("SKIP_RESULT message", &s.message, TEXT_BYTES)?;
            if let Some(r) = &s.resources {
                bound_list("SKIP_RESULT resources", r, KEY_BYTES, max_bytes)?;
            }
            bound_range("SKIP_RESULT time_range", &s.time_range)?;
            if let Some(c) = &s.continuation {
                bound("SKIP_RESULT continuation.boundary", &c.boundary, TEXT_BYTES)?;
            }
        }
        emit::Message::DetailCoverage(c) => {
            bound("DETAIL_COVERAGE state_stream", &c.state_stream, NAME_BYTES)?;
            bound("DETAIL_COVERAGE stream", &c.stream, NAME_BYTES)?;
            let all: usize = [&c.required_keys, &c.hydrated_keys, &c.gap_keys, &c.optional_skip_keys]
                .iter()
                .map(|l| l.iter().map(|k| k.len() + 8).sum::<usize>())
                .sum();
            for (what, l) in [
                ("DETAIL_COVERAGE required_keys", &c.required_keys),
                ("DETAIL_COVERAGE hydrated_keys", &c.hydrated_keys),
                ("DETAIL_COVERAGE gap_keys", &c.gap_keys),
                ("DETAIL_COVERAGE optional_skip_keys", &c.optional_skip_keys),
            ] {
                bound_list(what, l, KEY_BYTES, max_bytes)?;
            }
            if all > max_bytes {
                return Err(Violation::new(
                    "message_field_size",
                    format!("DETAIL_COVERAGE keys are {all} bytes in all, over the {max_bytes} byte limit"),
                ));
            }
        }
        emit::Message::DetailGap(g) => {
            bound("DETAIL_GAP stream", &g.stream, NAME_BYTES)?;
            bound_opt("DETAIL_GAP parent_stream", &g.parent_stream, NAME_BYTES)?;
            bound("DETAIL_GAP record_key", &g.record_key, KEY_BYTES)?;
            bound_opt("DETAIL_GAP reason", &g.reason, TEXT_BYTES)?;
        }
    }
    Ok(())
}

/// The bytes a message occupies on the host once lowered (its strings plus
/// a fixed overhead), charged while a batch is held.
pub(crate) fn message_size(msg: &emit::Message) -> usize {
    let o = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let list = |l: &[String]| l.iter().map(|s| s.len() + 24).sum::<usize>();
    64 + match msg {
        emit::Message::Record(r) => {
            r.stream.len()
                + r.emitted_at.len()
                + o(&r.data)
                + match &r.key {
                    wit::RecordKey::Single(k) => k.len(),
                    wit::RecordKey::Composite(p) => list(p),
                }
        }
        emit::Message::State(s) => s.stream.len() + o(&s.cursor),
        emit::Message::Progress(g) => o(&g.stream) + g.message.len(),
        emit::Message::SkipResult(s) => {
            o(&s.stream)
                + o(&s.reason)
                + o(&s.message)
                + o(&s.diagnostics)
                + s.resources.as_deref().map_or(0, list)
                + s.continuation.as_ref().map_or(0, |c| c.boundary.len())
                + s.time_range.as_ref().map_or(0, |t| o(&t.since) + o(&t.until))
        }
        emit::Message::DetailCoverage(c) => {
            c.state_stream.len()
                + c.stream.len()
                + list(&c.required_keys)
                + list(&c.hydrated_keys)
                + list(&c.gap_keys)
                + list(&c.optional_skip_keys)
        }
        emit::Message::DetailGap(g) => {
            g.stream.len()
                + o(&g.parent_stream)
                + g.record_key.len()
                + o(&g.reason)
                + o(&g.detail_locator)
                + o(&g.list_cursor)
                + o(&g.last_error)
        }
    }
}

/// Parse a guest's JSON text, refusing text over `max_bytes`.
fn json(rule: &'static str, what: &str, text: String, max_bytes: usize) -> Result<Value, Violation> {
    if text.len() > max_bytes {
        return Err(Violation::new(
            "message_size",
            format!("{what} is {} bytes, over the {max_bytes} byte limit", text.len()),
        ));
    }
    serde_json::from_str(&text).map_err(|e| Violation::new(rule, format!("{what} is not valid JSON: {e}")))
}

fn opt_json(
    rule: &'static str,
    what: &str,
    text: Option<String>,
    max_bytes: usize,
) -> Result<Option<Value>, Violation> {
    text.map(|t| json(rule, what, t, max_bytes)).transpose()
}

/// One emitted message in protocol form; `max_bytes` caps each JSON field.
pub(crate) fn message(msg: emit::Message, max_bytes: usize) -> Result<p::Message, Violation> {
    bound_message(&msg, max_bytes)?;
    Ok(match msg {
        emit::Message::Record(r) => {
            let key = match r.key {
                wit::RecordKey::Single(k) => Value::String(k),
                wit::RecordKey::Composite(parts) => Value::Array(parts.into_iter().map(Value::String).collect()),
            };
            let data = opt_json("record_data_json", "RECORD data", r.data, max_bytes)?;
            p::Message::Record(p::Record {
                stream: r.stream,
                key,
                data,
                op: matches!(r.op, wit::RecordOp::Delete).then(|| "delete".to_owned()),
                emitted_at: r.emitted_at,
            })
        }
        emit::Message::State(s) => {
            let cursor = opt_json("state_cursor_json", "STATE cursor", s.cursor, max_bytes)?.unwrap_or(Value::Null);
            p::Message::State(p::State {
                stream: s.stream,
                cursor,
            })
        }
        emit::Message::Progress(g) => p::Message::Progress(p::Progress {
            stream: g.stream,
            message: g.message,
            count: g.count,
            total: g.total,
        }),
        emit::Message::SkipResult(s) => {
            let diagnostics = opt_json(
                "skip_diagnostics_json",
                "SKIP_RESULT diagnostics",
                s.diagnostics,
                max_bytes,
            )?;
            p::Message::SkipResult(p::SkipResult {
                stream: s.stream,
                reason: s.reason,
                message: s.message,
                recovery_hint: s.recovery_hint.map(hint),
                resources: s.resources,
                time_range: s.time_range.map(range),
                continuation: s.continuation.map(|c| p::Continuation {
                    boundary: c.boundary,
                    considered: c.considered,
                    covered: c.covered,
                    slice_start: c.slice_start,
                    slice_end: c.slice_end,
                    remaining: true,
                    owner: "runtime".to_owned(),
                }),
                diagnostics,
            })
        }
        emit::Message::DetailCoverage(c) => p::Message::DetailCoverage(p::DetailCoverage {
            reference_only: true,
            state_stream: c.state_stream,
            stream: c.stream,
            required_keys: c.required_keys,
            hydrated_keys: c.hydrated_keys,
            gap_keys: c.gap_keys,
            optional_skip_keys: c.optional_skip_keys,
            considered: c.considered,
            covered: c.covered,
        }),
        emit::Message::DetailGap(g) => p::Message::DetailGap(p::DetailGap {
            detail_locator: opt_json(
                "detail_gap_json",
                "DETAIL_GAP detail_locator",
                g.detail_locator,
                max_bytes,
            )?,
            list_cursor: opt_json("detail_gap_json", "DETAIL_GAP list_cursor", g.list_cursor, max_bytes)?,
            last_error: opt_json("detail_gap_json", "DETAIL_GAP last_error", g.last_error, max_bytes)?,
            stream: g.stream,
            parent_stream: g.parent_stream,
            record_key: g.record_key,
            reason: g.reason,
            retryable: g.retryable,
        }),
    })
}

/// An INTERACTION request in protocol form; `max_bytes` caps its schema.
pub(crate) fn interaction(req: interaction::Request, max_bytes: usize) -> Result<p::Interaction, Violation> {
    bound("INTERACTION request_id", &req.request_id, NAME_BYTES)?;
    bound_opt("INTERACTION stream", &req.stream, NAME_BYTES)?;
    bound("INTERACTION message", &req.message, TEXT_BYTES)?;
    let schema = opt_json("interaction_schema_json", "INTERACTION schema", req.schema, max_bytes)?;
    Ok(p::Interaction {
        request_id: req.request_id,
        kind: match req.kind {
            interaction::InteractionKind::Credentials => p::InteractionKind::Credentials,
            interaction::InteractionKind::Otp => p::InteractionKind::Otp,
            interaction::InteractionKind::ManualAction => p::InteractionKind::ManualAction,
        },
        stream: req.stream,
        message: req.message,
        schema,
        timeout_seconds: req.timeout_seconds,
    })
}

/// The owner's answer in WIT form (the data as JSON text, `null` when absent).
pub(crate) fn response(answer: p::InteractionAnswer) -> interaction::Response {
    match answer.status {
        p::InteractionStatus::Success => interaction::Response::Success(answer.data.unwrap_or(Value::Null).to_string()),
        p::InteractionStatus::Cancelled => interaction::Response::Cancelled,
        p::InteractionStatus::Timeout => interaction::Response::Timeout,
    }
}

pub(crate) fn log_level(level: log::Level) -> LogLevel {
    match level {
        log::Level::Trace => LogLevel::Trace,
        log::Level::Debug => LogLevel::Debug,
        log::Level::Info => LogLevel::Info,
        log::Level::Warn => LogLevel::Warn,
        log::Level::Error => LogLevel::Error,
    }
}

fn hint(h: wit::RecoveryHint) -> p::RecoveryHint {
    use wit::RecoveryAction as A;
    let action = match h.action {
        A::RetryByRuntime => p::RecoveryAction::RetryByRuntime,
        A::RetryOnConnectorUpgrade => p::RecoveryAction::RetryOnConnectorUpgrade,
        A::RefreshCredentials => p::RecoveryAction::RefreshCredentials,
        A::ManualActionRequired => p::RecoveryAction::ManualActionRequired,
        A::UpdateSelector => p::RecoveryAction::UpdateSelector,
        A::UpstreamUnblock => p::RecoveryAction::UpstreamUnblock,
        A::NotRetriable => p::RecoveryAction::NotRetriable,
        A::Unknown => p::RecoveryAction::Unknown,
    };
    p::RecoveryHint {
        action,
        retryable: h.retryable,
    }
}

fn range(t: wit::TimeRange) -> p::TimeRange {
    p::TimeRange {
        since: t.since,
        until: t.until,
    }
}

/// DONE as the guest returned it, in protocol form.
pub(crate) fn done(d: wit::Done) -> p::Done {
    p::Done {
        status: match d.status {
            wit::DoneStatus::Succeeded => p::DoneStatus::Succeeded,
            wit::DoneStatus::Failed => p::DoneStatus::Failed,
            wit::DoneStatus::Cancelled => p::DoneStatus::Cancelled,
        },
        records_emitted: d.records_emitted,
        // DONE is a return value, not a message that can be refused: its
        // text is cut to its bound (a code too long fails its pattern).
        error: d.error.map(|e| p::DoneError {
            message: truncate(e.message, TEXT_BYTES),
            code: e.code.map(|c| truncate(c, 65)),
            retryable: e.retryable,
            recovery_hint: e.recovery_hint.map(hint),
        }),
    }
}

/// START in WIT form: cursors and descriptors as JSON text, a null cursor as none.
pub(crate) fn start(s: &p::Start, settings: &Value) -> wit::Start {
    wit::Start {
        run_id: s.run_id.clone(),
        collection_mode: match s.collection_mode {
            p::CollectionMode::FullRefresh => wit::CollectionMode::FullRefresh,
            p::CollectionMode::Incremental => wit::CollectionMode::Incremental,
        },
        scope: s
            .scope
            .streams
            .iter()
            .map(|st| wit::StreamScope {
                name: st.name.clone(),
                resources: st.resources.clone(),
                time_range: st.time_range.as_ref().map(|t| wit::TimeRange {
                    since: t.since.clone(),
                    until: t.until.clone(),
                }),
                fields: st.fields.clone(),
            })
            .collect(),
        state: s.state.as_ref().map(|m| {
            m.iter()
                .map(|(stream, cursor)| wit::StreamCursor {
                    stream: stream.clone(),
                    cursor: (!cursor.is_null()).then(|| cursor.to_string()),
                })
                .collect()
        }),
        bindings: s
            .bindings
            .iter()
            .map(|(name, d)| wit::Binding {
                name: name.clone(),
                descriptor: d.to_string(),
            })
            .collect(),
        settings: settings.to_string(),
    }
}

/// What `validate-credential` returned.
pub(crate) fn probe_answer(answer: Result<probe::Account, probe::ProbeError>) -> ProbeAnswer {
    match answer {
        Ok(a) => ProbeAnswer::Accepted {
            identity: a.identity,
            detail: a.detail,
        },
        Err(probe::ProbeError::Rejected(m)) => ProbeAnswer::Rejected(m),
        Err(probe::ProbeError::InsufficientScope(m)) => ProbeAnswer::InsufficientScope(m),
        Err(probe::ProbeError::Unavailable(m)) => ProbeAnswer::Unavailable(m),
        Err(probe::ProbeError::Unsupported) => ProbeAnswer::Unsupported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(key: wit::RecordKey, op: wit::RecordOp, data: Option<&str>) -> emit::Message {
        emit::Message::Record(wit::DataRecord {
            stream: "items".into(),
            key,
            op,
            data: data.map(str::to_owned),
            emitted_at: "2026-01-01T00:00:00Z".into(),
        })
    }

    #[test]
    fn a_record_converts_with_single_or_composite_key_and_delete_op() {
        let m = message(
            record(
                wit::RecordKey::Single("a".into()),
                wit::RecordOp::Upsert,
                Some(r#"{"x":1}"#),
            ),
            1024,
        );
        let p::Message::Record(r) = m.unwrap() else {
            panic!("a record")
        };
        assert_eq!(r.key, json!("a"));
        assert_eq!(r.data, Some(json!({ "x": 1 })));
        assert_eq!(r.op, None, "upsert is an absent op");
        let m = message(
            record(
                wit::RecordKey::Composite(vec!["a".into(), "b".into()]),
                wit::RecordOp::Delete,
                None,
            ),
            1024,
        );
        let p::Message::Record(r) = m.unwrap() else {
            panic!("a record")
        };
        assert_eq!(r.key, json!(["a", "b"]));
        assert_eq!(r.op.as_deref(), Some("delete"));
    }

    #[test]
    fn record_data_that_is_not_json_is_a_record_data_json_violation() {
        let v = message(
            record(wit::RecordKey::Single("a".into()), wit::RecordOp::Upsert, Some("{nope")),
            1024,
        )
        .unwrap_err();
        assert_eq!(v.rule, "record_data_json");
        assert!(!v.message.contains("nope"), "the payload is not quoted: {}", v.message);
    }

    #[test]
    fn message_size_is_checked_before_parsing() {
        let data = format!(r#"{{"x":"{}"}}"#, "y".repeat(100));
        let v = message(
            record(wit::RecordKey::Single("a".into()), wit::RecordOp::Upsert, Some(&data)),
            64,
        )
        .unwrap_err();
        assert_eq!(v.rule, "message_size");
        assert!(v.message.contains("64 byte limit"), "{}", v.message);
    }

    #[test]
    fn a_state_without_cursor_is_null_and_a_skip_continuation_is_owned_by_the_runtime() {
        let m = message(
            emit::Message::State(wit::Checkpoint {
                stream: "items".into(),
                cursor: None,
            }),
            1024,
        )
        .unwrap();
        assert_eq!(
            m,
            p::Message::State(p::State {
                stream: "items".into(),
                cursor: Value::Null
            })
        );
        let m = message(
            emit::Message::SkipResult(wit::SkipResult {
                stream: Some("items".into()),
                reason: Some("rate_limited".into()),
                message: Some("later".into()),
                recovery_hint: Some(wit::RecoveryHint {
                    action: wit::RecoveryAction::RetryByRuntime,
                    retryable: Some(true),
                }),
                resources: None,
                time_range: None,
                continuation: Some(wit::Continuation {
                    boundary: "b".into(),
                    considered: 3,
                    covered: 1,
                    slice_start: 0,
                    slice_end: 1,
                }),
                diagnostics: Some("[1]".into()),
            }),
            1024,
        )
        .unwrap();
        let p::Message::SkipResult(s) = m else { panic!("a skip") };
        let c = s.continuation.unwrap();
        assert!(c.remaining);
        assert_eq!(c.owner, "runtime");
        assert_eq!(s.recovery_hint.unwrap().action, p::RecoveryAction::RetryByRuntime);
        assert_eq!(
            s.diagnostics,
            Some(json!([1])),
            "bounding diagnostics is the runtime's rule"
        );
    }

    #[test]
    fn an_interaction_schema_must_be_json() {
        let req = |schema: &str| interaction::Request {
            request_id: "r1".into(),
            kind: interaction::InteractionKind::Otp,
            stream: None,
            message: "code?".into(),
            schema: Some(schema.into()),
            timeout_seconds: Some(5),
        };
        let i = interaction(req(r#"{"type":"object"}"#), 1024).unwrap();
        assert_eq!(i.kind, p::InteractionKind::Otp);
        assert_eq!(i.schema, Some(json!({ "type": "object" })));
        assert_eq!(interaction(req("{"), 1024).unwrap_err().rule, "interaction_schema_json");
    }

    #[test]
    fn an_answer_reaches_the_guest_as_json_text() {
        let answer = p::InteractionAnswer {
            status: p::InteractionStatus::Success,
            data: Some(json!({ "code": "123" })),
        };
        match response(answer) {
            interaction::Response::Success(text) => assert_eq!(text, r#"{"code":"123"}"#),
            _ => panic!("success"),
        }
        assert!(matches!(
            response(p::InteractionAnswer::timeout()),
            interaction::Response::Timeout
        ));
    }

    #[test]
    fn start_carries_cursors_and_descriptors_as_json_text() {
        let s = p::Start {
            run_id: "run_1".into(),
            collection_mode: p::CollectionMode::Incremental,
            scope: p::Scope {
                streams: vec![p::StreamScope::named("items")],
            },
            state: Some(
                [
                    ("items".to_owned(), json!({ "since": 3 })),
                    ("other".to_owned(), Value::Null),
                ]
                .into(),
            ),
            bindings: [("network".to_owned(), json!({ "allowed_origins": [] }))].into(),
        };
        let w = start(&s, &json!({ "region": "eu" }));
        assert_eq!(w.run_id, "run_1");
        assert_eq!(w.settings, r#"{"region":"eu"}"#);
        let state = w.state.unwrap();
        assert_eq!(
            state.iter().find(|c| c.stream == "items").unwrap().cursor.as_deref(),
            Some(r#"{"since":3}"#)
        );
        assert_eq!(state.iter().find(|c| c.stream == "other").unwrap().cursor, None);
        assert_eq!(w.bindings[0].descriptor, r#"{"allowed_origins":[]}"#);
    }

    #[test]
    fn done_converts_with_its_error_and_hint() {
        let d = done(wit::Done {
            status: wit::DoneStatus::Failed,
            records_emitted: 2,
            error: Some(wit::DoneError {
                message: "token expired".into(),
                code: Some("credential_rejected".into()),
                retryable: Some(false),
                recovery_hint: Some(wit::RecoveryHint {
                    action: wit::RecoveryAction::RefreshCredentials,
                    retryable: None,
                }),
            }),
        });
        assert_eq!(d.status, p::DoneStatus::Failed);
        let e = d.error.unwrap();
        assert_eq!(e.code.as_deref(), Some("credential_rejected"));
        assert_eq!(e.recovery_hint.unwrap().action, p::RecoveryAction::RefreshCredentials);
    }
}
