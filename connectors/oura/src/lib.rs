//! Oura: sleep periods, daily readiness and daily activity from the v2 API at
//! `https://api.ouraring.com/v2/usercollection/*`.
//!
//! Each listing takes `start_date`/`end_date` (days) and pages with
//! `next_token`. A stream's cursor is the last day collected; the next run
//! starts the day *before* it: Oura keeps updating a day's summary until the
//! day is over, and people who tested live accounts report that some
//! collections treat `start_date` as exclusive, so asking from the cursor
//! day itself could miss it. The days in between are read again (upserts).
//! A full-refresh run reads from `history_start`, and the host deletes the
//! records of items Oura no longer returns.
//!
//! Setting (optional): `history_start`, the first day a first run asks for
//! (`YYYY-MM-DD`, default 2015-01-01).

use pdpp_provider::{Api, Entry, Listing, Order, Page, Spec, Stop, Streams, encode};
use pdpp_sdk::types::{format_date, parse_instant};
use pdpp_sdk::{
    Account, Connector, Failure, Probe, ProbeError, Run, StreamScope, Value, export_connector, json, serde_json,
};

mod bootstrap;

const API: &str = "https://api.ouraring.com";
const DEFAULT_HISTORY_START: &str = "2015-01-01";

/// The provider filters by day (`start_date`); the cursor is the last day
/// collected, which is also each record's consent time. A run asks from one
/// day before the cursor (see the module documentation).
const BY_DAY: Spec = Spec {
    cursor_field: "last_day",
    key: "/id",
    watermark: "/day",
    consent_time_field: Some("day"),
    order: Order::Filtered,
    lookback: 86_400,
    max_pages: 1_000,
};

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
        let mut streams = Streams::new();
        for source in &SOURCES {
            streams.collect(run, source.stream, |run, scope| {
                collect(run, &api, scope, source, &history_start)
            })?;
        }
        streams.finish()
    }

    /// `GET /v2/usercollection/personal_info` with the candidate token.
    /// A personal access token made for the owner in the host's browser
    /// (see `bootstrap.rs`).
    fn bootstrap(run: &mut Run, field: &str) -> Result<(), Failure> {
        bootstrap::run(run, field)
    }

    fn validate_credential(probe: &Probe) -> Result<Account, ProbeError> {
        let api = Api::new("Oura", probe.secret("token")?);
        let info = api.probe_json(&format!("{API}/v2/usercollection/personal_info"))?;
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
    let what = format!("GET {}", source.path);
    let mut listing = Listing::start(run, scope, BY_DAY)?;
    // From the day before the last day collected (the spec's lookback): that
    // day is read again however Oura bounds `start_date`.
    let start = listing.since().unwrap_or(history_start).to_owned();
    // end_date is inclusive; tomorrow (UTC) covers today in every time zone.
    let now_ms = pdpp_sdk::time::now_unix().saturating_mul(1_000);
    let end = format_date(now_ms + 86_400_000);
    listing.walk(
        &what,
        |next| {
            let mut url = format!(
                "{API}{}?start_date={}&end_date={}",
                source.path,
                encode(&start),
                encode(&end)
            );
            if let Some(token) = next {
                url.push_str(&format!("&next_token={}", encode(token)));
            }
            let (_, page) = api.get_json(&url)?;
            let items = page["data"]
                .as_array()
                .cloned()
                .ok_or_else(|| Stop::Stream(format!("{what}: a page has no data array")))?;
            let next = match &page["next_token"] {
                Value::String(token) if !token.is_empty() => Some(token.clone()),
                Value::Null | Value::String(_) => None,
                _ => return Err(Stop::Stream(format!("{what}: next_token is neither a string nor null"))),
            };
            Ok(Page { items, next })
        },
        |item| Entry::Upsert((source.record)(item)),
    )?;
    listing.finish()
}

/// A `YYYY-MM-DD` that exists.
fn is_day(d: &str) -> bool {
    d.len() == 10 && parse_instant(d).is_some()
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
