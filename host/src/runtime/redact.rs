//! Scrubbing a run's secret values out of what the guest sends, before
//! anyone sees or keeps it.

use crate::protocol as p;
use crate::vault::Redactor;
use serde_json::Value;

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

/// Scrub the free-text parts of a message.
pub(super) fn redact_message(r: &Redactor, msg: &mut p::Message) {
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

/// A DONE with its error message scrubbed.
pub(super) fn redact_done(r: &Redactor, done: p::Done) -> p::Done {
    let mut m = p::Message::Done(done);
    redact_message(r, &mut m);
    match m {
        p::Message::Done(d) => d,
        _ => unreachable!("a DONE stays a DONE"),
    }
}
