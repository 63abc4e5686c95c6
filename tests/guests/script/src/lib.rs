//! A scripted connector for the conformance suite.
//!
//! `START.settings.script` is a list of steps, played in order through the
//! raw WIT imports (not the SDK's helpers), so a script can send anything the
//! contract can carry, including what the runtime must reject:
//!
//! - a Collection Profile message (`RECORD`, `STATE`, `PROGRESS`,
//!   `SKIP_RESULT`, `DETAIL_COVERAGE`, `DETAIL_GAP`) in its JSON form: one
//!   `emit.send` call each. A RECORD may carry `data_raw` (text sent as-is).
//! - `{"type": "BATCH", "messages": [...]}`: one `emit.send` call.
//! - `{"type": "INTERACTION", ...}`: `interaction.ask`; the outcome is then
//!   reported as `PROGRESS {"message": "interaction <status>"}` (with the
//!   answer's JSON for `success`) unless `"report": false`.
//! - `{"type": "DONE", ...}`: the return value; `records_emitted` defaults to
//!   the number of RECORDs sent.
//! - `{"type": "TRAP"}`: panic. `{"type": "SPIN", "ms": n}`: burn CPU for n ms
//!   (forever without `ms`). `{"type": "SLEEP", "ms": n}`: wait on the clock.
//!
//! A script that ends without DONE returns DONE `succeeded`.

use pdpp_sdk::__bindings::pdpp::connector::{emit, interaction, probe, types as t};
use serde_json::{Value, json};

struct Script;

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}
fn u(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}
fn strings(v: &Value, k: &str) -> Option<Vec<String>> {
    v.get(k).and_then(Value::as_array).map(|a| {
        a.iter()
            .map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string()))
            .collect()
    })
}
fn json_text(v: &Value, k: &str) -> Option<String> {
    v.get(k).filter(|x| !x.is_null()).map(Value::to_string)
}

fn hint(v: &Value) -> Option<t::RecoveryHint> {
    let h = v.get("recovery_hint")?;
    let (action, retryable) = match h {
        Value::String(a) => (a.as_str(), None),
        other => (
            other.get("action")?.as_str()?,
            other.get("retryable").and_then(Value::as_bool),
        ),
    };
    use t::RecoveryAction as A;
    let action = match action {
        "retry_by_runtime" => A::RetryByRuntime,
        "retry_on_connector_upgrade" => A::RetryOnConnectorUpgrade,
        "refresh_credentials" => A::RefreshCredentials,
        "manual_action_required" => A::ManualActionRequired,
        "update_selector" => A::UpdateSelector,
        "upstream_unblock" => A::UpstreamUnblock,
        "not_retriable" => A::NotRetriable,
        _ => A::Unknown,
    };
    Some(t::RecoveryHint { action, retryable })
}

fn range(v: &Value) -> Option<t::TimeRange> {
    let r = v.get("time_range")?;
    Some(t::TimeRange {
        since: s(r, "since"),
        until: s(r, "until"),
    })
}

fn message(m: &Value) -> Option<emit::Message> {
    Some(match m.get("type")?.as_str()? {
        "RECORD" => emit::Message::Record(t::DataRecord {
            stream: s(m, "stream").unwrap_or_default(),
            key: match m.get("key") {
                Some(Value::Array(parts)) => t::RecordKey::Composite(
                    parts
                        .iter()
                        .map(|p| p.as_str().unwrap_or_default().to_owned())
                        .collect(),
                ),
                Some(Value::String(k)) => t::RecordKey::Single(k.clone()),
                Some(other) => t::RecordKey::Single(other.to_string()),
                None => t::RecordKey::Single(String::new()),
            },
            op: if s(m, "op").as_deref() == Some("delete") {
                t::RecordOp::Delete
            } else {
                t::RecordOp::Upsert
            },
            data: s(m, "data_raw").or_else(|| json_text(m, "data")),
            emitted_at: s(m, "emitted_at").unwrap_or_else(|| "2026-01-01T00:00:00Z".into()),
        }),
        "STATE" => emit::Message::State(t::Checkpoint {
            stream: s(m, "stream").unwrap_or_default(),
            cursor: s(m, "cursor_raw").or_else(|| json_text(m, "cursor")),
        }),
        "PROGRESS" => emit::Message::Progress(t::Progress {
            stream: s(m, "stream"),
            message: s(m, "message").unwrap_or_default(),
            count: u(m, "count"),
            total: u(m, "total"),
        }),
        "SKIP_RESULT" => emit::Message::SkipResult(t::SkipResult {
            stream: s(m, "stream"),
            reason: s(m, "reason"),
            message: s(m, "message"),
            recovery_hint: hint(m),
            resources: strings(m, "resources"),
            time_range: range(m),
            continuation: m.get("continuation").map(|c| t::Continuation {
                boundary: s(c, "boundary").unwrap_or_default(),
                considered: u(c, "considered").unwrap_or(0),
                covered: u(c, "covered").unwrap_or(0),
                slice_start: u(c, "slice_start").unwrap_or(0),
                slice_end: u(c, "slice_end").unwrap_or(0),
            }),
            diagnostics: json_text(m, "diagnostics"),
        }),
        "DETAIL_COVERAGE" => emit::Message::DetailCoverage(t::DetailCoverage {
            state_stream: s(m, "state_stream").unwrap_or_default(),
            stream: s(m, "stream").unwrap_or_default(),
            required_keys: strings(m, "required_keys").unwrap_or_default(),
            hydrated_keys: strings(m, "hydrated_keys").unwrap_or_default(),
            gap_keys: strings(m, "gap_keys").unwrap_or_default(),
            optional_skip_keys: strings(m, "optional_skip_keys").unwrap_or_default(),
            considered: u(m, "considered"),
            covered: u(m, "covered"),
        }),
        "DETAIL_GAP" => emit::Message::DetailGap(t::DetailGap {
            stream: s(m, "stream").unwrap_or_default(),
            parent_stream: s(m, "parent_stream"),
            record_key: m
                .get("record_key")
                .map(|k| k.as_str().map(str::to_owned).unwrap_or_else(|| k.to_string()))
                .unwrap_or_default(),
            reason: s(m, "reason"),
            retryable: m.get("retryable").and_then(Value::as_bool),
            detail_locator: json_text(m, "detail_locator"),
            list_cursor: json_text(m, "list_cursor"),
            last_error: json_text(m, "last_error"),
        }),
        _ => return None,
    })
}

fn done(m: &Value, records: u64) -> t::Done {
    let status = match s(m, "status").as_deref() {
        Some("failed") => t::DoneStatus::Failed,
        Some("cancelled") => t::DoneStatus::Cancelled,
        _ => t::DoneStatus::Succeeded,
    };
    let error = m.get("error").filter(|e| e.is_object()).map(|e| t::DoneError {
        message: s(e, "message").unwrap_or_default(),
        code: s(e, "code"),
        retryable: e.get("retryable").and_then(Value::as_bool),
        recovery_hint: hint(e),
    });
    t::Done {
        status,
        records_emitted: u(m, "records_emitted").unwrap_or(records),
        error,
    }
}

fn count_records(msgs: &[emit::Message]) -> u64 {
    msgs.iter().filter(|m| matches!(m, emit::Message::Record(_))).count() as u64
}

fn spin(ms: Option<u64>) {
    let start = std::time::Instant::now();
    let mut x = 0u64;
    while ms.is_none_or(|ms| start.elapsed().as_millis() < u128::from(ms)) {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn s_opt(v: Option<&Value>, key: &str) -> Option<String> {
    v.and_then(|v| v.get(key)).and_then(Value::as_str).map(str::to_owned)
}

impl pdpp_sdk::__bindings::Guest for Script {
    /// Scripted by `settings.probe`: `{"accept": identity}`, `{"reject": why}`, or no probe.
    fn validate_credential(settings: String) -> Result<probe::Account, probe::ProbeError> {
        let settings: Value = serde_json::from_str(&settings).unwrap_or(Value::Null);
        let probe = settings.get("probe");
        match (s_opt(probe, "accept"), s_opt(probe, "reject")) {
            (Some(identity), _) => Ok(probe::Account { identity, detail: None }),
            (None, Some(why)) => Err(probe::ProbeError::Rejected(why)),
            (None, None) => Err(probe::ProbeError::Unsupported),
        }
    }

    /// A bootstrap plays the same script.
    fn bootstrap(start: t::Start, _field: String) -> t::Done {
        Self::run(start)
    }

    fn run(start: t::Start) -> t::Done {
        let settings: Value = serde_json::from_str(&start.settings).unwrap_or(Value::Null);
        let steps = settings
            .get("script")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut records = 0u64;
        for step in &steps {
            match step.get("type").and_then(Value::as_str).unwrap_or_default() {
                "DONE" => return done(step, records),
                "TRAP" => panic!("scripted trap"),
                "SPIN" => spin(u(step, "ms")),
                "SLEEP" => std::thread::sleep(std::time::Duration::from_millis(u(step, "ms").unwrap_or(0))),
                "BATCH" => {
                    let msgs: Vec<emit::Message> = step
                        .get("messages")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(message)
                        .collect();
                    records += count_records(&msgs);
                    emit::send(&msgs);
                }
                "INTERACTION" => {
                    let kind = match s(step, "kind").as_deref() {
                        Some("credentials") => interaction::InteractionKind::Credentials,
                        Some("manual_action") => interaction::InteractionKind::ManualAction,
                        _ => interaction::InteractionKind::Otp,
                    };
                    let req = interaction::Request {
                        request_id: s(step, "request_id").unwrap_or_else(|| "ix-1".into()),
                        kind,
                        stream: s(step, "stream"),
                        message: s(step, "message").unwrap_or_default(),
                        schema: json_text(step, "schema"),
                        timeout_seconds: u(step, "timeout_seconds").map(|x| x as u32),
                    };
                    let report = match interaction::ask(&req) {
                        Ok(interaction::Response::Success(data)) => format!("interaction success {data}"),
                        Ok(interaction::Response::Cancelled) => "interaction cancelled".into(),
                        Ok(interaction::Response::Timeout) => "interaction timeout".into(),
                        Err(interaction::InteractionError::NotInteractive(why)) => {
                            format!("interaction unavailable: {why}")
                        }
                    };
                    if step.get("report") != Some(&json!(false)) {
                        emit::send(&[emit::Message::Progress(t::Progress {
                            stream: None,
                            message: report,
                            count: None,
                            total: None,
                        })]);
                    }
                }
                _ => {
                    if let Some(msg) = message(step) {
                        records += count_records(std::slice::from_ref(&msg));
                        emit::send(&[msg]);
                    }
                }
            }
        }
        t::Done {
            status: t::DoneStatus::Succeeded,
            records_emitted: records,
            error: None,
        }
    }
}

pdpp_sdk::__bindings::__export_connector_world!(Script with_types_in pdpp_sdk::__bindings);
