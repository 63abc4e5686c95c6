//! The demo connector: an offline, deterministic fake account with two
//! streams, `contacts` and `events`.
//!
//! Settings (all optional): `contacts` and `events` (how many items the fake
//! account holds, default 100 each), `checkpoint_every` (STATE every N
//! records, default 100) and `require_otp` (ask the owner for a one-time code
//! before collecting). Item `i` is always the same, so a larger count on a
//! later run looks like new data arriving, and an incremental run resumed
//! from the previous cursor emits only the new items.

use pdpp_sdk::types::parse_instant;
use pdpp_sdk::{
    Answer, Connector, Failure, InteractError, Interaction, Recovery, Run, StreamScope, export_connector, json,
};
use serde::{Deserialize, Serialize};

/// 2026-01-01T00:00:00Z.
const BASE: i64 = 1_767_225_600;

#[derive(Serialize)]
struct Contact {
    id: String,
    name: String,
    email: String,
    updated_at: String,
}

#[derive(Serialize)]
struct Event {
    id: String,
    calendar: &'static str,
    title: String,
    starts_at: String,
}

#[derive(Serialize, Deserialize, Default)]
struct Cursor {
    /// The newest timestamp already collected.
    after: Option<String>,
}

struct Demo;

impl Connector for Demo {
    fn run(run: &mut Run) -> Result<(), Failure> {
        let settings = run.settings().clone();
        let count = |name: &str| settings.get(name).and_then(|v| v.as_u64()).unwrap_or(100);
        let every = count("checkpoint_every").max(1);

        if settings.get("require_otp").and_then(|v| v.as_bool()) == Some(true) {
            verify_otp(run)?;
        }

        if let Some(scope) = run.stream_scope("contacts").cloned() {
            let contacts = (0..count("contacts")).map(|i| {
                let id = format!("c{i:05}");
                let updated_at = pdpp_sdk::time::format_unix(BASE + i as i64 * 3_600);
                let allowed = scope.allows_resource(&id);
                let c = Contact {
                    name: format!("Person {i}"),
                    email: format!("person{i}@example.test"),
                    id,
                    updated_at,
                };
                (c.id.clone(), c.updated_at.clone(), allowed, c)
            });
            collect(run, &scope, every, contacts)?;
        }
        if let Some(scope) = run.stream_scope("events").cloned() {
            let events = (0..count("events")).map(|i| {
                let id = format!("e{i:05}");
                let calendar = if i % 3 == 0 { "home" } else { "work" };
                let starts_at = pdpp_sdk::time::format_unix(BASE + i as i64 * 5_400);
                let allowed = scope.allows_resource(&id) || scope.allows_resource(calendar);
                let e = Event {
                    title: format!("Meeting {i}"),
                    id,
                    calendar,
                    starts_at,
                };
                (e.id.clone(), e.starts_at.clone(), allowed, e)
            });
            collect(run, &scope, every, events)?;
        }
        Ok(())
    }
}

/// Emit the items of one stream newer than its cursor, inside the scope,
/// with STATE every `every` records and at the end.
fn collect<T: Serialize>(
    run: &mut Run,
    scope: &StreamScope,
    every: u64,
    items: impl Iterator<Item = (String, String, bool, T)>,
) -> Result<(), Failure> {
    let stream = scope.name.as_str();
    let mut cursor: Cursor = run.cursor(stream)?.unwrap_or_default();
    let mut emitted = 0u64;
    let after = cursor.after.as_deref().and_then(parse_instant);
    for (key, ts, allowed, item) in items {
        // Instants, not text: a cursor written in another format still orders right.
        if after.is_some_and(|after| parse_instant(&ts).is_none_or(|t| t <= after)) {
            continue;
        }
        if !allowed || !scope.allows_time(&ts) {
            continue;
        }
        run.record(stream, key, &item)?;
        emitted += 1;
        cursor.after = Some(ts);
        if emitted.is_multiple_of(every) {
            run.checkpoint(stream, &cursor)?;
            run.progress(Some(stream), "collecting", Some(emitted), None);
        }
    }
    run.checkpoint(stream, &cursor)?;
    run.progress(Some(stream), "done", Some(emitted), Some(emitted));
    Ok(())
}

/// Ask the owner for a one-time code; any non-empty code is accepted.
fn verify_otp(run: &mut Run) -> Result<(), Failure> {
    let ask = Interaction::otp("Enter the 6-digit code the demo service sent you")
        .schema(json!({"type": "object", "required": ["code"], "properties": {"code": {"type": "string"}}}))
        .timeout_seconds(300);
    match run.interact(ask) {
        Ok(Answer::Success(answer)) => {
            let code = answer.get("code").and_then(|c| c.as_str()).unwrap_or_default();
            if code.trim().is_empty() {
                return Err(Failure::new("the one-time code was empty")
                    .code("otp_rejected")
                    .recovery(Recovery::ManualActionRequired));
            }
            run.info("one-time code accepted");
            Ok(())
        }
        Ok(Answer::Cancelled) => Err(Failure::new("the owner cancelled the one-time code request")
            .code("otp_cancelled")
            .recovery(Recovery::ManualActionRequired)),
        Ok(Answer::Timeout) => Err(Failure::new("nobody entered the one-time code in time")
            .code("otp_timeout")
            .retryable(true)
            .recovery(Recovery::ManualActionRequired)),
        Err(InteractError::NotInteractive(what)) => Err(Failure::new(format!(
            "needs a one-time code (interaction kind otp) from the owner, but {what}"
        ))
        .code("interaction_required")
        .recovery(Recovery::ManualActionRequired)),
    }
}

export_connector!(Demo);
