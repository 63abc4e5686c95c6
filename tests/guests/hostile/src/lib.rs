//! A hostile test guest: `settings.attack` names one attack on the sandbox's
//! budgets or secret guarantees, played through the raw WIT imports (and
//! `wasi:http` directly), the way a connector built only against the public
//! WIT would. `settings.n` and `settings.bytes` size it.
//!
//! - `log_flood`: `n` empty log lines.
//! - `ask_flood`: `n` INTERACTIONs, each answered or refused.
//! - `fields_flood`: `n` `wasi:http` header-field resources kept alive.
//! - `progress_flood`: `n` PROGRESS messages, one batch each.
//! - `big_field`: one message whose `settings.field` (`key`, `emitted_at`,
//!   `stream`, `progress`, `request_id`) is `bytes` long.
//! - `leak_everywhere`: reveals `key` and writes it into every string a
//!   message, a log line, a question and DONE can carry.
//! - `echo`: one request to `settings.url` with the `token` placeholder in
//!   the header `settings.header` (or the body when `settings.body`), and
//!   the response's status, headers and body as a RECORD.
//! - `grow`: allocate `settings.mib` MiB, one MiB at a time.

use pdpp_sdk::__bindings::pdpp::connector::{emit, interaction, log, secrets, types as t};
use serde_json::{Value, json};

struct Hostile;

fn record(id: &str, data: Value) -> emit::Message {
    emit::Message::Record(t::DataRecord {
        stream: "items".into(),
        key: t::RecordKey::Single(id.into()),
        op: t::RecordOp::Upsert,
        data: Some(json!({ "id": id, "what": data }).to_string()),
        emitted_at: "2026-01-01T00:00:00Z".into(),
    })
}

fn done(records: u64) -> t::Done {
    t::Done {
        status: t::DoneStatus::Succeeded,
        records_emitted: records,
        error: None,
    }
}

fn ask(id: String) -> String {
    let req = interaction::Request {
        request_id: id,
        kind: interaction::InteractionKind::Otp,
        stream: None,
        message: "code?".into(),
        schema: None,
        timeout_seconds: Some(1),
    };
    match interaction::ask(&req) {
        Ok(_) => "answered".into(),
        Err(interaction::InteractionError::NotInteractive(w)) => w,
    }
}

fn echo(settings: &Value) -> Value {
    use wasip2::http::{outgoing_handler, types as h};
    let url = settings["url"].as_str().unwrap_or("http://echo.test/echo");
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let placeholder = secrets::get("token").expect("token").placeholder();
    let headers = h::Fields::new();
    if let Some(name) = settings["header"].as_str() {
        headers
            .append(name, format!("Bearer {placeholder}").as_bytes())
            .expect("header");
    }
    let req = h::OutgoingRequest::new(headers);
    req.set_method(&h::Method::Post).unwrap();
    req.set_scheme(Some(&if scheme == "https" {
        h::Scheme::Https
    } else {
        h::Scheme::Http
    }))
    .unwrap();
    req.set_authority(Some(authority)).unwrap();
    req.set_path_with_query(Some(path)).unwrap();
    let body = req.body().unwrap();
    {
        let out = body.write().unwrap();
        if settings["body"].as_bool() == Some(true) {
            out.blocking_write_and_flush(format!("q={placeholder}").as_bytes())
                .unwrap();
        }
    }
    h::OutgoingBody::finish(body, None).unwrap();
    let fut = match outgoing_handler::handle(req, None) {
        Ok(f) => f,
        Err(e) => return json!({ "refused": format!("{e:?}") }),
    };
    fut.subscribe().block();
    let resp = match fut.get().unwrap().unwrap() {
        Ok(r) => r,
        Err(e) => return json!({ "refused": format!("{e:?}") }),
    };
    let headers: Vec<(String, String)> = resp
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let status = resp.status();
    let incoming = resp.consume().unwrap();
    let stream = incoming.stream().unwrap();
    let mut text = Vec::new();
    loop {
        match stream.blocking_read(65536) {
            Ok(chunk) => text.extend(chunk),
            Err(_) => break,
        }
    }
    json!({ "status": status, "headers": headers, "body": String::from_utf8_lossy(&text) })
}

impl pdpp_sdk::__bindings::Guest for Hostile {
    fn run(start: t::Start) -> t::Done {
        let settings: Value = serde_json::from_str(&start.settings).unwrap_or(Value::Null);
        let n = settings["n"].as_u64().unwrap_or(1);
        let bytes = settings["bytes"].as_u64().unwrap_or(1) as usize;
        match settings["attack"].as_str().unwrap_or_default() {
            "log_flood" => {
                for _ in 0..n {
                    log::write(log::Level::Info, "", &[]);
                }
            }
            "ask_flood" => {
                for i in 0..n {
                    ask(format!("q{i}"));
                }
            }
            "fields_flood" => {
                let mut kept = Vec::new();
                for _ in 0..n {
                    kept.push(wasip2::http::types::Fields::new());
                }
                std::hint::black_box(&kept);
            }
            "progress_flood" => {
                for i in 0..n {
                    emit::send(&[emit::Message::Progress(t::Progress {
                        stream: None,
                        message: format!("step {i}"),
                        count: Some(i),
                        total: None,
                    })]);
                }
            }
            "big_field" => {
                let big = "x".repeat(bytes);
                match settings["field"].as_str().unwrap_or_default() {
                    "request_id" => {
                        ask(big);
                    }
                    "progress" => emit::send(&[emit::Message::Progress(t::Progress {
                        stream: None,
                        message: big,
                        count: None,
                        total: None,
                    })]),
                    field => {
                        let mut r = t::DataRecord {
                            stream: "items".into(),
                            key: t::RecordKey::Single("a".into()),
                            op: t::RecordOp::Upsert,
                            data: Some(r#"{"id":"a"}"#.into()),
                            emitted_at: "2026-01-01T00:00:00Z".into(),
                        };
                        match field {
                            "key" => r.key = t::RecordKey::Single(big),
                            "emitted_at" => r.emitted_at = big,
                            _ => r.stream = big,
                        }
                        emit::send(&[emit::Message::Record(r)]);
                    }
                }
            }
            "leak_everywhere" => {
                let v = secrets::get("key").expect("key").reveal().expect("revealable");
                log::write(log::Level::Info, "fields", &[(v.clone(), "named by the secret".into())]);
                emit::send(&[
                    emit::Message::Record(t::DataRecord {
                        stream: "items".into(),
                        key: t::RecordKey::Single("a".into()),
                        op: t::RecordOp::Upsert,
                        data: Some(r#"{"id":"a"}"#.into()),
                        emitted_at: v.clone(),
                    }),
                    emit::Message::SkipResult(t::SkipResult {
                        stream: Some("items".into()),
                        reason: Some("partial".into()),
                        message: None,
                        recovery_hint: None,
                        resources: Some(vec![v.clone()]),
                        time_range: Some(t::TimeRange {
                            since: Some(v.clone()),
                            until: None,
                        }),
                        continuation: Some(t::Continuation {
                            boundary: v.clone(),
                            considered: 1,
                            covered: 0,
                            slice_start: 0,
                            slice_end: 1,
                        }),
                        diagnostics: None,
                    }),
                    emit::Message::DetailGap(t::DetailGap {
                        stream: "items".into(),
                        parent_stream: None,
                        record_key: v.clone(),
                        reason: Some("gone".into()),
                        retryable: None,
                        detail_locator: None,
                        list_cursor: None,
                        last_error: None,
                    }),
                ]);
                ask(v.clone());
                return t::Done {
                    status: t::DoneStatus::Failed,
                    records_emitted: 1,
                    error: Some(t::DoneError {
                        message: "failed".into(),
                        code: Some(v),
                        retryable: None,
                        recovery_hint: None,
                    }),
                };
            }
            "echo" => {
                emit::send(&[record("echo", echo(&settings))]);
                return done(1);
            }
            "grow" => {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                for _ in 0..settings["mib"].as_u64().unwrap_or(1) {
                    kept.push(vec![1u8; 1 << 20]);
                }
                std::hint::black_box(&kept);
            }
            other => panic!("unknown attack {other}"),
        }
        done(0)
    }

    fn validate_credential(
        _settings: String,
    ) -> Result<
        pdpp_sdk::__bindings::pdpp::connector::probe::Account,
        pdpp_sdk::__bindings::pdpp::connector::probe::ProbeError,
    > {
        Err(pdpp_sdk::__bindings::pdpp::connector::probe::ProbeError::Unsupported)
    }

    /// A bootstrap plays the same attacks.
    fn bootstrap(start: t::Start, _field: String) -> t::Done {
        Self::run(start)
    }
}

pdpp_sdk::__bindings::__export_connector_world!(Hostile with_types_in pdpp_sdk::__bindings);
