//! The Oura double (`personal_info`, `sleep`, `daily_readiness`,
//! `daily_activity` with `start_date` and `next_token`) and the connector's
//! tests. People who tested live accounts report that some collections
//! treat `start_date` as exclusive; the double can too, per collection.

use super::*;
use crate::server_on_both_backends;
use axum::extract::{Path, Query};
use axum::routing::get;
use pdpp_host::protocol::DoneStatus;

pub const TOKEN: &str = "OURA0DOUBLE0PERSONAL0TOKEN0d1e";
pub const USER_ID: &str = "oura-user-6a1f";
const API: &str = "https://api.ouraring.com";
const PAGE: usize = 5;
const COLLECTIONS: [&str; 3] = ["sleep", "daily_readiness", "daily_activity"];

pub struct Oura {
    /// Items per collection, oldest day first.
    items: HashMap<&'static str, Vec<Value>>,
    /// `daily_activity` hands out the same next_token again on page 2.
    pub loop_activity: bool,
    /// Collections whose `start_date` is exclusive (items after that day).
    pub exclusive_start: Vec<&'static str>,
    /// How many days the account has.
    days: u32,
}

fn day(n: u32) -> String {
    at(n * 24)[..10].to_owned()
}

fn item(collection: &str, n: u32) -> Value {
    let d = day(n);
    match collection {
        "sleep" => json!({
            "id": format!("sleep-{d}"), "day": d, "type": "long_sleep",
            "bedtime_start": format!("{d}T00:10:00+01:00"), "bedtime_end": format!("{d}T07:40:00+01:00"),
            "time_in_bed": 27_000, "total_sleep_duration": 25_200, "rem_sleep_duration": 5_400,
            "deep_sleep_duration": 4_800, "light_sleep_duration": 15_000, "awake_time": 1_800,
            "efficiency": 93, "latency": 600, "average_heart_rate": 52.5, "lowest_heart_rate": 46,
            "average_hrv": 61, "average_breath": 14.2,
            "readiness": { "score": 80 + n % 10, "temperature_deviation": 0.1 },
        }),
        "daily_readiness" => json!({
            "id": format!("readiness-{d}"), "day": d, "score": 70 + n % 20,
            "temperature_deviation": -0.2, "temperature_trend_deviation": 0.05,
            "timestamp": format!("{d}T00:00:00+01:00"),
            "contributors": { "activity_balance": 80, "hrv_balance": 75, "sleep_balance": 90 },
        }),
        _ => json!({
            "id": format!("activity-{d}"), "day": d, "score": 85, "active_calories": 400 + n,
            "total_calories": 2_400, "target_calories": 500, "steps": 8_000 + n * 10,
            "equivalent_walking_distance": 7_000, "high_activity_time": 600, "medium_activity_time": 1_800,
            "low_activity_time": 9_000, "sedentary_time": 30_000, "timestamp": format!("{d}T04:00:00+01:00"),
        }),
    }
}

impl Oura {
    /// 14 days of each collection: 3 pages each.
    pub fn seeded() -> Self {
        let mut oura = Oura {
            items: HashMap::new(),
            loop_activity: false,
            exclusive_start: Vec::new(),
            days: 0,
        };
        for _ in 0..14 {
            oura.add_day();
        }
        oura
    }

    /// One more day in every collection.
    pub fn add_day(&mut self) {
        for c in COLLECTIONS {
            self.items.entry(c).or_default().push(item(c, self.days));
        }
        self.days += 1;
    }

    /// Oura revises day `n`'s activity (the day was not over yet).
    pub fn revise_activity(&mut self, n: u32, steps: u64) {
        let items = self.items.get_mut("daily_activity").unwrap();
        let item = items.iter_mut().find(|i| i["day"] == day(n)).unwrap();
        item["steps"] = json!(steps);
    }

    /// Oura no longer has day `n` of `collection` (a sleep period removed).
    pub fn remove(&mut self, collection: &str, n: u32) {
        self.items.get_mut(collection).unwrap().retain(|i| i["day"] != day(n));
    }
}

type Data = State<Arc<Mutex<Oura>>>;

async fn personal_info() -> Response {
    json_with(
        StatusCode::OK,
        &[],
        json!({ "id": USER_ID, "age": 41, "weight": 70.5, "height": 1.78, "biological_sex": "female", "email": "owner@example.test" }),
    )
}

async fn collection(State(d): Data, Path(name): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (items, looping, exclusive) = {
        let d = d.lock().unwrap();
        let Some(items) = d.items.get(name.as_str()) else {
            return json_with(StatusCode::NOT_FOUND, &[], json!({ "detail": "Not Found" }));
        };
        (
            items.clone(),
            d.loop_activity,
            d.exclusive_start.contains(&name.as_str()),
        )
    };
    let Some(start) = q.get("start_date") else {
        return json_with(
            StatusCode::BAD_REQUEST,
            &[],
            json!({ "detail": "start_date is required here" }),
        );
    };
    let items: Vec<Value> = items
        .into_iter()
        .filter(|i| match i["day"].as_str() {
            Some(d) if exclusive => d > start.as_str(),
            Some(d) => d >= start.as_str(),
            None => false,
        })
        .collect();
    // Tokens are opaque to the client; here they are `t<offset>`.
    let offset: usize = q
        .get("next_token")
        .and_then(|t| t.strip_prefix('t'))
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let slice: Vec<Value> = items.iter().skip(offset).take(PAGE).cloned().collect();
    let next = if looping && name == "daily_activity" && offset == PAGE {
        Value::String(format!("t{PAGE}"))
    } else if offset + PAGE < items.len() {
        Value::String(format!("t{}", offset + PAGE))
    } else {
        Value::Null
    };
    json_with(StatusCode::OK, &[], json!({ "data": slice, "next_token": next }))
}

pub fn start(data: Oura) -> Double<Oura> {
    start_accepting(data, TOKEN)
}

/// The double accepting only `token` (until more are accepted).
pub fn start_accepting(data: Oura, token: &str) -> Double<Oura> {
    let routes = Router::new()
        .route("/v2/usercollection/personal_info", get(personal_info))
        .route("/v2/usercollection/{name}", get(collection));
    Double::start(API, token, data, routes)
}

fn path(collection: &str) -> String {
    format!("/v2/usercollection/{collection}")
}

server_on_both_backends! {
    /// Static-secret setup: the probe reads personal_info, the first sync
    /// pages through every collection with next_token (one 429 with
    /// Retry-After on the way) and the connection becomes active.
    fn oura_setup_probes_the_token_and_the_first_sync_makes_sleep_readiness_and_activity_readable(b: Backend) {
        let double = start(Oura::seeded());
        double.ctl.throttle("/v2/usercollection/daily_readiness?", 1, Limit::TooMany { retry_after: 1 });
        let e2e = E2e { connector: "oura", double: &double, token: TOKEN, backend: b };
        let (s, id) = e2e.first_sync(USER_ID, &[("sleep", 14), ("readiness", 14), ("activity", 14)]);
        for c in COLLECTIONS {
            let asked = double.ctl.requests_to(&path(c));
            let first = &asked[0];
            assert_eq!(first.param("start_date").as_deref(), Some("2015-01-01"), "a first run asks for all history");
            assert!(first.param("end_date").is_some());
            let expected = if c == "daily_readiness" { 4 } else { 3 };
            assert_eq!(asked.len(), expected, "{c}: 14 days in pages of 5");
        }
        let night = records(&s, &id, "sleep").into_iter().find(|r| r["key"] == "sleep-2026-01-02").unwrap();
        assert_eq!(night["data"]["readiness_score"], 81);
        assert_eq!(night["data"]["total_sleep_duration"], 25_200);
    }
}

server_on_both_backends! {
    /// The second run asks each collection from the day before the last day
    /// collected, so the committed day is read again whether Oura's
    /// `start_date` is inclusive or (here, for activity) exclusive: a revision
    /// of that day, made after the first run, arrives. One page is enough.
    fn oura_second_run_reads_the_committed_day_again_even_where_start_date_is_exclusive(b: Backend) {
        let mut data = Oura::seeded();
        data.exclusive_start = vec!["daily_activity"];
        let double = start(data);
        let e2e = E2e { connector: "oura", double: &double, token: TOKEN, backend: b };
        let (s, id) = e2e.first_sync(USER_ID, &[("sleep", 14), ("readiness", 14), ("activity", 14)]);
        double.data.lock().unwrap().revise_activity(13, 12_345);
        double.data.lock().unwrap().add_day();
        double.ctl.clear_log();
        let run = s.wait_run(&start_run(&s, &id));
        assert_eq!(run["status"], "succeeded", "{run}");
        for c in COLLECTIONS {
            let asked = double.ctl.requests_to(&path(c));
            assert_eq!(asked.len(), 1, "{c}: {asked:?}");
            assert_eq!(asked[0].param("start_date"), Some(day(12)), "{c} starts the day before the committed day");
        }
        for stream in ["sleep", "readiness", "activity"] {
            assert_eq!(records(&s, &id, stream).len(), 15, "{stream}");
        }
        let revised = records(&s, &id, "activity").into_iter().find(|r| r["key"] == format!("activity-{}", day(13))).unwrap();
        assert_eq!(revised["data"]["steps"], 12_345, "the committed day's revision arrived");
    }
}

server_on_both_backends! {
    /// A sleep period Oura no longer returns stays after an incremental run
    /// and is deleted by a full refresh started through the owner API; the
    /// other collections keep everything.
    fn oura_full_refresh_deletes_a_sleep_period_oura_no_longer_returns(b: Backend) {
        let double = start(Oura::seeded());
        let e2e = E2e { connector: "oura", double: &double, token: TOKEN, backend: b };
        let (s, id) = e2e.first_sync(USER_ID, &[("sleep", 14), ("readiness", 14), ("activity", 14)]);
        double.data.lock().unwrap().remove("sleep", 3);
        let gone = format!("sleep-{}", day(3));
        assert_eq!(s.wait_run(&start_run(&s, &id))["status"], "succeeded");
        assert!(keys(&s, &id, "sleep").contains(&gone));
        double.ctl.clear_log();
        let run = full_refresh(&s, &id);
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(
            double.ctl.requests_to(&path("sleep"))[0].param("start_date").as_deref(),
            Some("2015-01-01"),
            "a full refresh reads the whole history"
        );
        assert!(!keys(&s, &id, "sleep").contains(&gone));
        assert_eq!(records(&s, &id, "sleep").len(), 13);
        assert_eq!(records(&s, &id, "readiness").len(), 14);
        assert_eq!(records(&s, &id, "activity").len(), 14);
    }
}

server_on_both_backends! {
    /// A token revoked at Oura: the run fails with `credential_rejected`
    /// and setup-status asks for a new one.
    fn oura_token_revoked_at_the_provider_fails_the_run_and_setup_status_asks_for_a_new_token(b: Backend) {
        let double = start(Oura::seeded());
        let e2e = E2e { connector: "oura", double: &double, token: TOKEN, backend: b };
        let (s, id) = e2e.first_sync(USER_ID, &[("sleep", 14), ("readiness", 14), ("activity", 14)]);
        e2e.revoked_token_needs_a_new_credential(&s, &id);
    }
}

#[tokio::test]
async fn oura_looping_next_token_fails_only_activity_and_siblings_keep_their_checkpoints() {
    let mut data = Oura::seeded();
    data.loop_activity = true;
    let double = start(data);
    let (out, t) = run_against("oura", &double, TOKEN, BTreeMap::new()).await;
    assert_eq!(out.status, DoneStatus::Failed);
    assert!(out.certified_failure);
    assert_eq!(
        skips(&t),
        vec![(
            "activity".to_owned(),
            "stream_collection_failed".to_owned(),
            "retry_by_runtime".to_owned()
        )]
    );
    assert_eq!(eligible_streams(&out), vec!["sleep".to_owned(), "readiness".to_owned()]);
    assert_eq!(out.commit.unwrap()["sleep"]["last_day"], day(13));
}

#[tokio::test]
async fn oura_run_resumes_from_prior_state_with_start_date_a_day_before_the_last_day() {
    let double = start(Oura::seeded());
    let state: BTreeMap<String, Value> = [("sleep".to_owned(), json!({ "last_day": day(10) }))]
        .into_iter()
        .collect();
    let (out, t) = run_against("oura", &double, TOKEN, state).await;
    assert_eq!(out.status, DoneStatus::Succeeded, "{:?}", out.message);
    let sleep = double.ctl.requests_to(&path("sleep"));
    assert_eq!(
        sleep[0].param("start_date"),
        Some(day(9)),
        "the day before the committed day"
    );
    let emitted = t.records().into_iter().filter(|r| r.stream == "sleep").count();
    assert_eq!(emitted, 5, "days 9 to 13");
    assert_eq!(out.commit.unwrap()["sleep"]["last_day"], day(13));
}
