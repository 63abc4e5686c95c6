//! A test guest for egress: `settings.requests` is a list of
//! `{"url": ..., "method"?, "headers"?: [[k, v]], "bearer"?: true, "retry"?: true}`;
//! each result is reported as a RECORD on `responses` (id = index).

use pdpp_sdk::http::{HttpError, Request, Retry};
use pdpp_sdk::{Connector, Failure, Run, Value, export_connector, json};
use std::time::Duration;

struct Fetch;

impl Connector for Fetch {
    fn run(run: &mut Run) -> Result<(), Failure> {
        let requests = run
            .settings()
            .get("requests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, r) in requests.iter().enumerate() {
            let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
            let method = r.get("method").and_then(Value::as_str).unwrap_or("GET");
            let mut req = Request::new(method, url);
            for h in r.get("headers").and_then(Value::as_array).into_iter().flatten() {
                if let (Some(k), Some(v)) = (h.get(0).and_then(Value::as_str), h.get(1).and_then(Value::as_str)) {
                    req = req.header(k, v);
                }
            }
            if r.get("body_secret") == Some(&json!(true)) {
                let placeholder = run.secret("token")?.placeholder();
                req.body = format!(r#"{{"api_key":"{placeholder}"}}"#).into_bytes();
                req = req.header("content-type", "application/json");
            }
            if r.get("bearer") == Some(&json!(true)) {
                req = req.bearer(&run.secret("token")?);
            }
            let result = if r.get("retry") == Some(&json!(true)) {
                req.send_with(&Retry {
                    max_attempts: 3,
                    base_delay: Duration::from_millis(50),
                    budget: Duration::from_secs(10),
                })
            } else {
                req.send()
            };
            let what = match result {
                Ok(resp) => json!({ "status": resp.status, "body": resp.text(), "bytes": resp.body.len() }),
                Err(HttpError::Refused(why)) => json!({ "refused": why }),
                Err(HttpError::Transport(why)) => json!({ "transport": why }),
                Err(HttpError::Unreachable(why)) => json!({ "unreachable": why }),
                Err(HttpError::Status { status, .. }) => json!({ "status": status, "error": true }),
                Err(HttpError::Invalid(why)) => json!({ "invalid": why }),
            };
            run.record(
                "responses",
                i.to_string(),
                &json!({ "id": i.to_string(), "what": what }),
            )?;
        }
        Ok(())
    }
}

export_connector!(Fetch);
