//! Scrubbing a run's secret values out of what the guest sends, before
//! anyone sees or keeps it: the one choke point.
//!
//! Redaction is structural: [`scrub`] turns any serializable value (a
//! protocol message, a DONE, a log line, an event's data) into JSON, scrubs
//! every string and every object key, and reads it back. No list of fields
//! has to be kept up to date: a field added to a message tomorrow is scrubbed
//! the day it is added. The session sends every message, question, log line
//! and timeline event through here.

use crate::protocol as p;
use crate::vault::Redactor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Scrub every string (and object key) of a JSON value.
pub(crate) fn redact_value(r: &Redactor, v: &mut Value) {
    match v {
        Value::String(s) if r.finds(s.as_bytes()) => *s = r.redact(s),
        Value::Array(items) => items.iter_mut().for_each(|i| redact_value(r, i)),
        Value::Object(map) => {
            if map.keys().any(|k| r.finds(k.as_bytes())) {
                let old = std::mem::take(map);
                for (k, mut val) in old {
                    redact_value(r, &mut val);
                    map.insert(r.redact(&k), val);
                }
            } else {
                map.values_mut().for_each(|i| redact_value(r, i));
            }
        }
        _ => {}
    }
}

/// A typed value whose text held a secret where only a fixed word may stand
/// (an enum tag): it cannot be scrubbed and still be that type.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unscrubbable;

/// `v` with every string of it scrubbed of the run's secrets.
pub(crate) fn scrub<T: Serialize + DeserializeOwned>(r: &Redactor, v: T) -> Result<T, Unscrubbable> {
    if r.is_empty() || !crate::sandbox::budget::hardening() {
        return Ok(v);
    }
    let Ok(mut json) = serde_json::to_value(&v) else {
        return Err(Unscrubbable);
    };
    redact_value(r, &mut json);
    serde_json::from_value(json).map_err(|_| Unscrubbable)
}

/// Scrub every string of a message; a message that cannot be scrubbed is
/// refused as `secret_in_message`.
pub(super) fn redact_message(r: &Redactor, msg: p::Message) -> Result<p::Message, crate::sandbox::Violation> {
    scrub(r, msg).map_err(|Unscrubbable| {
        crate::sandbox::Violation::new(
            "secret_in_message",
            "a message carries a secret value where it cannot be redacted",
        )
    })
}

/// A DONE with every string scrubbed (one that cannot be becomes a bare
/// failure without the connector's text).
pub(super) fn redact_done(r: &Redactor, done: p::Done) -> p::Done {
    let status = done.status;
    let records = done.records_emitted;
    scrub(r, done).unwrap_or(p::Done {
        status,
        records_emitted: records,
        error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "s3cret-value";

    fn r() -> Redactor {
        Redactor::new([("token", SECRET)])
    }

    fn all_strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| all_strings(x, out)),
            Value::Object(m) => m.iter().for_each(|(k, x)| {
                out.push(k.clone());
                all_strings(x, out)
            }),
            _ => {}
        }
    }

    /// Every string field of every message kind, filled with the secret:
    /// nothing of it survives, whichever field it was in.
    #[test]
    fn structural_redaction_reaches_every_string_of_every_message() {
        let s = SECRET.to_string();
        let messages = vec![
            p::Message::Record(p::Record {
                stream: s.clone(),
                key: json!([s.clone()]),
                data: Some(json!({ s.clone(): s.clone() })),
                op: None,
                emitted_at: s.clone(),
            }),
            p::Message::State(p::State {
                stream: s.clone(),
                cursor: json!({ "c": s.clone() }),
            }),
            p::Message::Progress(p::Progress {
                stream: Some(s.clone()),
                message: s.clone(),
                count: None,
                total: None,
            }),
            p::Message::SkipResult(p::SkipResult {
                stream: Some(s.clone()),
                reason: Some(s.clone()),
                message: Some(s.clone()),
                recovery_hint: None,
                resources: Some(vec![s.clone()]),
                time_range: Some(p::TimeRange {
                    since: Some(s.clone()),
                    until: Some(s.clone()),
                }),
                continuation: Some(p::Continuation {
                    boundary: s.clone(),
                    considered: 1,
                    covered: 1,
                    slice_start: 0,
                    slice_end: 1,
                    remaining: true,
                    owner: "runtime".into(),
                }),
                diagnostics: Some(json!({ s.clone(): [s.clone()] })),
            }),
            p::Message::DetailGap(p::DetailGap {
                stream: s.clone(),
                parent_stream: Some(s.clone()),
                record_key: s.clone(),
                reason: Some(s.clone()),
                retryable: None,
                detail_locator: Some(json!(s.clone())),
                list_cursor: None,
                last_error: None,
            }),
            p::Message::Interaction(p::Interaction {
                request_id: s.clone(),
                kind: p::InteractionKind::Otp,
                stream: Some(s.clone()),
                message: s.clone(),
                schema: None,
                timeout_seconds: None,
            }),
        ];
        for m in messages {
            let clean = redact_message(&r(), m).unwrap();
            let mut strings = Vec::new();
            all_strings(&serde_json::to_value(&clean).unwrap(), &mut strings);
            assert!(strings.iter().all(|x| !x.contains(SECRET)), "{strings:?}");
        }
        let done = p::Done {
            status: p::DoneStatus::Failed,
            records_emitted: 0,
            error: Some(p::DoneError {
                message: SECRET.into(),
                code: Some("s3cret_value".into()),
                retryable: None,
                recovery_hint: None,
            }),
        };
        let r2 = Redactor::new([("token", SECRET), ("code", "s3cret_value")]);
        let clean = serde_json::to_string(&redact_done(&r2, done)).unwrap();
        assert!(!clean.contains(SECRET) && !clean.contains("s3cret_value"), "{clean}");
    }
}
