//! The Collection Profile conformance suite.
//!
//! Each scenario plays a script of messages through the `script` test guest
//! (raw WIT imports, so it can send what the runtime must reject) against a
//! manifest built for the scenario, as a stored connection: on SQLite and on
//! PostgreSQL. Tests are named after the rule they prove; docs/conformance.md
//! maps every rule to its tests.

mod certified;
mod interactions;
mod persistence;
mod reconcile;
mod scope;
mod start;
mod violations;

use crate::support::*;
use pdpp_host::manifest::Manifest;
use pdpp_host::protocol::{self as p, StateMap};
use pdpp_host::runtime::{ConnectionRun, RunOutcome, RunRefused, run_connection};
use pdpp_host::store::{Namespace, RunEvent, Trigger};
use serde_json::{Value, json};
use std::sync::Arc;

/// A stream with properties id, value, note, updated_at; `extra` is merged in.
pub fn stream(name: &str, extra: Value) -> Value {
    let mut s = json!({
        "name": name,
        "primary_key": ["id"],
        "cursor_field": "updated_at",
        "consent_time_field": "updated_at",
        "schema": {
            "type": "object",
            "required": ["id"],
            "properties": { "id": {}, "value": {}, "note": {}, "updated_at": {}, "group": {} }
        }
    });
    s.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    s
}

pub fn manifest_with(streams: Vec<Value>, extra: Value) -> Arc<Manifest> {
    let mut m = json!({ "connector_id": "script", "version": "1", "streams": streams });
    m.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    Arc::new(Manifest::from_json(&m.to_string()).expect("scenario manifest is valid"))
}

pub fn manifest(streams: &[&str]) -> Arc<Manifest> {
    manifest_with(streams.iter().map(|s| stream(s, json!({}))).collect(), json!({}))
}

pub fn rec(stream: &str, key: &str) -> Value {
    json!({ "type": "RECORD", "stream": stream, "key": key, "data": { "id": key } })
}

pub fn rec_data(stream: &str, key: &str, data: Value) -> Value {
    json!({ "type": "RECORD", "stream": stream, "key": key, "data": data })
}

pub fn state(stream: &str, cursor: Value) -> Value {
    json!({ "type": "STATE", "stream": stream, "cursor": cursor })
}

pub fn done() -> Value {
    json!({ "type": "DONE", "status": "succeeded" })
}

pub fn failed(code: Option<&str>) -> Value {
    let mut error = json!({ "message": "it failed" });
    if let Some(c) = code {
        error["code"] = json!(c);
    }
    json!({ "type": "DONE", "status": "failed", "error": error })
}

pub fn stream_failed(stream: &str) -> Value {
    json!({ "type": "SKIP_RESULT", "stream": stream, "reason": "stream_collection_failed", "message": "gave up" })
}

pub fn coverage(state_stream: &str, stream: &str, required: &[&str], hydrated: &[&str]) -> Value {
    json!({ "type": "DETAIL_COVERAGE", "state_stream": state_stream, "stream": stream,
            "required_keys": required, "hydrated_keys": hydrated })
}

/// What a scenario produced.
pub struct Played {
    pub out: RunOutcome,
    pub t: Transcript,
    pub events: Vec<RunEvent>,
    pub state: StateMap,
    pub records: i64,
    pub conn: String,
}

impl Played {
    /// The violated rule, if the run failed on one.
    pub fn rule(&self) -> Option<&'static str> {
        match &self.out.reason {
            Some(pdpp_host::runtime::FailureReason::ConnectorProtocolViolation(rule)) => Some(rule),
            _ => None,
        }
    }
    pub fn reason(&self) -> Option<&'static str> {
        self.out.reason.as_ref().map(|r| r.code())
    }
    /// Streams whose checkpoint is in the store.
    pub fn committed(&self) -> Vec<String> {
        self.state.keys().cloned().collect()
    }
    pub fn terminal(&self) -> &RunEvent {
        self.events.last().expect("a terminal event")
    }
    pub fn kinds(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.kind.as_str()).collect()
    }
    /// Assert a protocol violation of `rule` that committed nothing.
    pub fn assert_violation(&self, rule: &str) {
        assert_eq!(self.out.status, p::DoneStatus::Failed, "{:?}", self.out);
        assert_eq!(self.rule(), Some(rule), "{:?}", self.out);
        assert!(self.committed().is_empty(), "a violation commits nothing");
        assert_eq!(self.terminal().kind, "run.failed");
        assert_eq!(self.terminal().data["rule"], json!(rule));
        assert!(self.kinds().contains(&"run.violation"));
    }
}

/// Run `script` as a stored connection of `m` with `opts`.
pub async fn play_opts(t: &TestDeployment, m: Arc<Manifest>, script: Vec<Value>, opts: ConnectionRun) -> Played {
    let conn = t.connection(&m, json!({ "script": script }), None).await;
    play_on(t, m, &conn, opts).await.expect("the run starts")
}

/// Run an existing connection (its script is in its settings).
pub async fn play_on(
    t: &TestDeployment,
    m: Arc<Manifest>,
    conn: &str,
    mut opts: ConnectionRun,
) -> Result<Played, RunRefused> {
    let transcript = Transcript::default();
    opts.observer = Box::new(transcript.clone());
    let ns = opts.namespace.clone().unwrap_or(Namespace::Global);
    let out = run_connection(&t.dep, sandbox(), script(), m, conn, opts).await?;
    let store = &t.dep.store;
    Ok(Played {
        events: store.events(&out.run_id).await.unwrap(),
        state: store.state(conn, &ns).await.unwrap(),
        records: store.count_records(conn).await.unwrap(),
        out,
        t: transcript,
        conn: conn.to_owned(),
    })
}

pub async fn play(t: &TestDeployment, m: Arc<Manifest>, script: Vec<Value>) -> Played {
    play_opts(t, m, script, ConnectionRun::new(Trigger::Manual)).await
}

/// Run and expect a refusal before the connector is instantiated.
pub async fn refused(t: &TestDeployment, m: Arc<Manifest>, opts: ConnectionRun) -> RunRefused {
    let conn = t.connection(&m, json!({ "script": [done()] }), None).await;
    match play_on(t, m, &conn, opts).await {
        Err(e) => e,
        Ok(p) => panic!("expected a refusal, the run happened: {:?}", p.out),
    }
}

/// Run SQL against the test database directly (to inject a real failure).
pub async fn sql(t: &TestDeployment, statements: &[&str]) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&t.url)
        .await
        .unwrap();
    if t.url.starts_with("sqlite:") {
        sqlx::query("PRAGMA busy_timeout = 5000").execute(&pool).await.unwrap();
    }
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}
