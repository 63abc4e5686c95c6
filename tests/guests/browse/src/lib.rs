//! A test guest for the browser: `settings.steps` is a list of one-key
//! objects, run in order; each result is a log line `step` with fields
//! `i`, `op` and `result` (`ok: …` or `err: …`). A step with
//! `"must": true` ends the run with the error it gets.
//!
//! Steps: `navigate` URL, `current`, `wait_for` [SELECTOR, MS], `click`
//! SELECTOR, `fill` [SELECTOR, TEXT], `fill_secret` [SELECTOR, FIELD],
//! `select` [SELECTOR, VALUE], `text` SELECTOR, `texts` [SELECTOR, MAX],
//! `attribute` [SELECTOR, NAME], `attributes` [SELECTOR, NAME, MAX],
//! `screenshot`, `capture` [FIELD, SELECTOR, ATTRIBUTE?] (a bootstrap's
//! hand-over; `settings.bootstrap_steps` are the steps of the `bootstrap`
//! export), `account` IDENTITY, `account_from` SELECTOR (its text),
//! `ask` {kind, message, fill?: SELECTOR, field?: NAME} (types the answer's
//! field into the selector; a `credentials` answer's field by handle), `records` SELECTOR (one record per match, id
//! from `data-id`), `record` ID, `spin` (compute until stopped), `poll`
//! (call the browser until stopped), `env` NAME (how many environment
//! variables the guest sees, and whether NAME is one), `panic` (trap),
//! `grow` (allocate until stopped), `fail` MESSAGE.

use pdpp_sdk::browser::{Browser, BrowserError};
use pdpp_sdk::{Answer, Connector, Failure, Interaction, InteractionKind, Run, Value, export_connector, json};
use std::time::Duration;

struct Browse;

fn arg(v: &Value, i: usize) -> &str {
    v.get(i).and_then(Value::as_str).unwrap_or_default()
}

fn num(v: &Value, i: usize) -> u64 {
    v.get(i).and_then(Value::as_u64).unwrap_or(0)
}

fn shown<T: std::fmt::Debug>(r: &Result<T, BrowserError>) -> String {
    match r {
        Ok(v) => format!("ok: {v:?}"),
        Err(e) => format!("err: {e:?}"),
    }
}

fn step(run: &mut Run, b: &Browser, op: &str, v: &Value) -> Result<Result<String, BrowserError>, Failure> {
    let r = match op {
        "navigate" => shown(&b.navigate(v.as_str().unwrap_or_default())),
        "current" => shown(&b.current()),
        "wait_for" => shown(&b.wait_for(arg(v, 0), Duration::from_millis(num(v, 1)))),
        "click" => shown(&b.click(v.as_str().unwrap_or_default())),
        "fill" => shown(&b.fill(arg(v, 0), arg(v, 1))),
        "fill_secret" => {
            let secret = run.secret(arg(v, 1))?;
            shown(&b.fill_secret(arg(v, 0), &secret))
        }
        "select" => shown(&b.select(arg(v, 0), arg(v, 1))),
        "text" => shown(&b.text(v.as_str().unwrap_or_default())),
        "texts" => shown(&b.texts(arg(v, 0), num(v, 1) as u32).map(|m| (m.values, m.total))),
        "attribute" => shown(&b.attribute(arg(v, 0), arg(v, 1))),
        "attributes" => shown(
            &b.attributes(arg(v, 0), arg(v, 1), num(v, 2) as u32)
                .map(|m| (m.values, m.total)),
        ),
        "screenshot" => shown(&b.screenshot()),
        "capture" => {
            let attr = v.get(2).and_then(Value::as_str);
            shown(&b.capture_credential(arg(v, 0), arg(v, 1), attr))
        }
        "account" => shown(&b.session_account(v.as_str().unwrap_or_default())),
        "account_from" => {
            let who = b.text(v.as_str().unwrap_or_default());
            match who {
                Ok(who) => shown(&b.session_account(&who)),
                Err(e) => shown::<()>(&Err(e)),
            }
        }
        "ask" => {
            let kind = match v["kind"].as_str() {
                Some("credentials") => InteractionKind::Credentials,
                Some("manual_action") => InteractionKind::ManualAction,
                _ => InteractionKind::Otp,
            };
            let credentials = matches!(kind, InteractionKind::Credentials);
            let message = v["message"].as_str().unwrap_or("answer, please").to_owned();
            match run.interact(Interaction::new(kind, message)) {
                Ok(Answer::Success(data)) => match (v["fill"].as_str(), v["field"].as_str()) {
                    // A credentials answer's secret fields arrive as
                    // placeholders: type the field by handle.
                    (Some(selector), Some(field)) if credentials => match run.secret(field) {
                        Ok(secret) => shown(&b.fill_secret(selector, &secret)),
                        Err(e) => format!("err: {e}"),
                    },
                    (Some(selector), Some(field)) => {
                        let value = data.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
                        shown(&b.fill(selector, &value))
                    }
                    _ => format!("ok: answered {data}"),
                },
                Ok(other) => format!("ok: {other:?}"),
                Err(e) => {
                    let needed = v["message"].as_str().unwrap_or("an answer");
                    return Err(Failure::new(format!("the run needs {needed} and {e}"))
                        .code("owner_input_required")
                        .recovery(pdpp_sdk::Recovery::ManualActionRequired));
                }
            }
        }
        "records" => {
            let ids = b.attributes(v.as_str().unwrap_or_default(), "data-id", 1000);
            let texts = b.texts(v.as_str().unwrap_or_default(), 1000);
            match (ids, texts) {
                (Ok(ids), Ok(texts)) => {
                    for (id, text) in ids.values.iter().zip(texts.values.iter()) {
                        let id = id.clone().unwrap_or_default();
                        run.record("items", id.clone(), &json!({ "id": id, "text": text }))?;
                    }
                    format!("ok: {}", ids.values.len())
                }
                (Err(e), _) | (_, Err(e)) => shown::<()>(&Err(e)),
            }
        }
        "record" => {
            let id = v.as_str().unwrap_or("one").to_owned();
            run.record("items", id.clone(), &json!({ "id": id, "text": "" }))?;
            "ok: recorded".to_owned()
        }
        "spin" => {
            let mut x: u64 = 1;
            loop {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                if x == 0 {
                    break;
                }
            }
            "ok: stopped spinning".to_owned()
        }
        "poll" => loop {
            if let Err(e) = b.current() {
                break shown::<()>(&Err(e));
            }
        },
        "env" => format!(
            "ok: {} variables, {}",
            std::env::vars().count(),
            std::env::var(v.as_str().unwrap_or_default()).map_or("unset".to_owned(), |_| "set".to_owned())
        ),
        "panic" => panic!("asked to trap"),
        "grow" => {
            let mut held: Vec<Vec<u8>> = Vec::new();
            loop {
                held.push(vec![1u8; 1 << 20]);
                if held.len() == usize::MAX {
                    break format!("ok: {}", held.len());
                }
            }
        }
        "fail" => return Err(Failure::new(v.as_str().unwrap_or("failed")).code("asked_to_fail")),
        other => format!("err: unknown step {other}"),
    };
    Ok(if let Some(e) = r.strip_prefix("err: ") {
        Err(BrowserError::Failed(e.to_owned()))
    } else {
        Ok(r)
    })
}

impl Connector for Browse {
    fn run(run: &mut Run) -> Result<(), Failure> {
        steps(run, "steps")
    }

    /// A credential bootstrap: `settings.bootstrap_steps`, the same steps.
    fn bootstrap(run: &mut Run, _field: &str) -> Result<(), Failure> {
        steps(run, "bootstrap_steps")
    }
}

fn steps(run: &mut Run, key: &str) -> Result<(), Failure> {
    {
        let steps = run
            .settings()
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let browser = run.browser();
        for (i, s) in steps.iter().enumerate() {
            let Some((op, v)) = s.as_object().and_then(|o| o.iter().find(|(k, _)| k.as_str() != "must")) else {
                continue;
            };
            let result = step(run, &browser, op, v)?;
            let text = match &result {
                Ok(r) => r.clone(),
                Err(BrowserError::Failed(e)) => format!("err: {e}"),
                Err(e) => format!("err: {e:?}"),
            };
            run.log(
                pdpp_sdk::Level::Info,
                "step",
                &[("i", &i.to_string()), ("op", op), ("result", &text)],
            );
            if s.get("must") == Some(&json!(true))
                && let Err(e) = result
            {
                return Err(Failure::new(format!("step {i} ({op}) failed: {e}")).code("step_failed"));
            }
        }
        Ok(())
    }
}

export_connector!(Browse);
