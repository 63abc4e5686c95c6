//! Oura: sleep periods, daily readiness and daily activity from the v2 API at
//! `https://api.ouraring.com/v2/usercollection/*`.
//!
//! Each listing takes `start_date`/`end_date` (days) and pages with
//! `next_token`. A stream's cursor is the last day collected; the next run
//! starts at that day again, because Oura keeps updating a day's summary
//! until the day is over.
//!
//! Setting (optional): `history_start`, the first day a first run asks for
//! (`YYYY-MM-DD`, default 2015-01-01).

#[path = "../../shared/provider.rs"]
mod provider;

use pdpp_sdk::http;
use pdpp_sdk::{
    Account, Connector, Failure, Probe, ProbeError, Run, StreamScope, Value, export_connector, json, serde_json,
};
use provider::{Api, Pages, Stop, allowed, conclude, encode, latest, settle};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

const API: &str = "https://api.ouraring.com";
const DEFAULT_HISTORY_START: &str = "2015-01-01";
const MAX_PAGES: usize = 1_000;

#[derive(Serialize, Deserialize, Default)]
struct Cursor {
    /// The last day (`YYYY-MM-DD`) already collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_day: Option<String>,
}

/// A stream, the collection it reads, and how an item becomes a record.
struct Source {
    stream: &'static str,
    path: &'static str,
    record: fn(&Value) -> Value,
}

const SOURCES: [Source; 3] = [
    Source {
        stream: "sleep",
        path: "/v2/usercollection/sleep",
        record: sleep_record,
    },
    Source {
        stream: "readiness",
        path: "/v2/usercollection/daily_readiness",
        record: readiness_record,
    },
    Source {
        stream: "activity",
        path: "/v2/usercollection/daily_activity",
        record: activity_record,
    },
];

struct Oura;

impl Connector for Oura {
    fn run(run: &mut Run) -> Result<(), Failure> {
        let api = Api::new("Oura", run.secret("token")?);
        let history_start = run
            .settings()
            .get("history_start")
            .and_then(Value::as_str)
            .filter(|d| is_day(d))
            .unwrap_or(DEFAULT_HISTORY_START)
            .to_owned();
        let mut failed = Vec::new();
        for source in &SOURCES {
            if let Some(scope) = run.stream_scope(source.stream).cloned() {
                let result = collect(run, &api, &scope, source, &history_start);
                settle(run, source.stream, result, &mut failed)?;
            }
        }
        conclude(&failed)
    }

    /// `GET /v2/usercollection/personal_info` with the candidate token.
    fn validate_credential(probe: &Probe) -> Result<Account, ProbeError> {
        let token = probe.secret("token")?;
        let info: Value = http::get(&format!("{API}/v2/usercollection/personal_info"))
            .bearer(&token)
            .send_with(&provider::PROBE_RETRY)?
            .json()?;
        let id = info["id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ProbeError::Unavailable("personal_info answered without an id".into()))?;
        Ok(Account {
            identity: id.to_owned(),
            detail: info["email"].as_str().map(|e| format!("Oura account {e}")),
        })
    }
}

fn collect(run: &mut Run, api: &Api, scope: &StreamScope, source: &Source, history_start: &str) -> Result<(), Stop> {
    let stream = source.stream;
    let cursor: Cursor = run.cursor(stream)?.unwrap_or_default();
    let start = cursor.last_day.clone().unwrap_or_else(|| history_start.to_owned());
    // end_date is inclusive; tomorrow (UTC) covers today in every time zone.
    let end = day_of(unix_now() + 86_400);
    let mut newest = cursor.last_day.clone();
    let mut pages = Pages::new(format!("GET {}", source.path), MAX_PAGES);
    let mut next: Option<String> = None;
    let mut count = 0u64;
    loop {
        pages.visit(next.as_deref().unwrap_or(""))?;
        let mut url = format!(
            "{API}{}?start_date={}&end_date={}",
            source.path,
            encode(&start),
            encode(&end)
        );
        if let Some(token) = &next {
            url.push_str(&format!("&next_token={}", encode(token)));
        }
        let (_, page) = api.get_json(&url)?;
        let data = page["data"]
            .as_array()
            .ok_or_else(|| Stop::Stream(format!("GET {}: a page has no data array", source.path)))?;
        for item in data {
            let Some(id) = item["id"].as_str().filter(|id| !id.is_empty()) else {
                continue;
            };
            let day = item["day"].as_str();
            if !allowed(scope, id, day) {
                continue;
            }
            run.record(stream, id, &(source.record)(item))?;
            count += 1;
            newest = latest(newest.take(), day);
        }
        run.progress(Some(stream), &format!("collecting {stream}"), Some(count), None);
        match &page["next_token"] {
            Value::String(token) if !token.is_empty() => next = Some(token.clone()),
            Value::Null | Value::String(_) => break,
            _ => {
                return Err(Stop::Stream(format!(
                    "GET {}: next_token is neither a string nor null",
                    source.path
                )));
            }
        }
    }
    run.checkpoint(stream, &Cursor { last_day: newest })?;
    run.progress(Some(stream), &format!("{stream} collected"), Some(count), Some(count));
    Ok(())
}

fn is_day(d: &str) -> bool {
    d.len() == 10 && provider::unix_seconds(d).is_some()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn day_of(unix: i64) -> String {
    pdpp_sdk::time::format_unix(unix)[..10].to_owned()
}

/// Copy these fields of `item` as they are (absent ones become null).
fn pick(item: &Value, fields: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for f in fields {
        out.insert((*f).to_owned(), item.get(*f).cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}

fn sleep_record(item: &Value) -> Value {
    let mut record = pick(
        item,
        &[
            "id",
            "day",
            "type",
            "bedtime_start",
            "bedtime_end",
            "time_in_bed",
            "total_sleep_duration",
            "rem_sleep_duration",
            "deep_sleep_duration",
            "light_sleep_duration",
            "awake_time",
            "efficiency",
            "latency",
            "average_heart_rate",
            "lowest_heart_rate",
            "average_hrv",
            "average_breath",
        ],
    );
    record["readiness_score"] = item["readiness"]["score"].clone();
    record["temperature_deviation"] = item["readiness"]["temperature_deviation"].clone();
    record
}

fn readiness_record(item: &Value) -> Value {
    let mut record = pick(
        item,
        &[
            "id",
            "day",
            "score",
            "temperature_deviation",
            "temperature_trend_deviation",
            "timestamp",
        ],
    );
    record["contributors"] = match &item["contributors"] {
        Value::Object(_) => item["contributors"].clone(),
        _ => json!({}),
    };
    record
}

fn activity_record(item: &Value) -> Value {
    pick(
        item,
        &[
            "id",
            "day",
            "score",
            "active_calories",
            "total_calories",
            "target_calories",
            "steps",
            "equivalent_walking_distance",
            "high_activity_time",
            "medium_activity_time",
            "low_activity_time",
            "sedentary_time",
            "timestamp",
        ],
    )
}

export_connector!(Oura);
