//! The Notion double (`GET /v1/users/me`, `POST /v1/search` with
//! `start_cursor`/`next_cursor`, a required `Notion-Version`) and the
//! connector's tests. As Notion documents, search leaves trashed objects
//! out, and its index lags: an object edited or shared a moment ago may
//! show up in search only later, with its older edit time.

use super::*;
use crate::server_on_both_backends;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use pdpp_host::protocol::DoneStatus;

pub const TOKEN: &str = "ntn_double0wner0secret0b0a7";
pub const BOT_ID: &str = "0b0t0000-0000-4000-8000-000000000001";
const API: &str = "https://api.notion.com";
/// The double's page size, whatever `page_size` asks.
const PAGE: usize = 4;

pub struct Notion {
    /// Pages and databases together, trashed ones included.
    objects: Vec<Value>,
    /// Ids of objects the search index has not caught up with yet.
    unindexed: Vec<String>,
    /// Page 2 of database results names itself as the next page.
    pub loop_databases: bool,
    clock: u32,
}

/// Notion's timestamp style (milliseconds, minute precision).
fn ts(hours: u32) -> String {
    at(hours).replace('Z', ".000Z")
}

fn page(i: u32, edited: u32, archived: bool) -> Value {
    json!({
        "object": "page", "id": format!("page-{i:04}"),
        "created_time": ts(0), "last_edited_time": ts(edited),
        "created_by": { "object": "user", "id": "u-1" }, "last_edited_by": { "object": "user", "id": "u-1" },
        "parent": if i.is_multiple_of(2) { json!({ "type": "workspace", "workspace": true }) } else { json!({ "type": "page_id", "page_id": "page-0000" }) },
        "archived": archived, "in_trash": archived,
        "icon": { "type": "emoji", "emoji": "📄" },
        "properties": { "title": { "id": "title", "type": "title", "title": [
            { "type": "text", "plain_text": "Page " }, { "type": "text", "plain_text": format!("{i}") }
        ] } },
        "url": format!("https://www.notion.so/page-{i:04}"),
    })
}

fn database(i: u32, edited: u32) -> Value {
    json!({
        "object": "database", "id": format!("db-{i:04}"),
        "created_time": ts(0), "last_edited_time": ts(edited),
        "created_by": { "object": "user", "id": "u-1" }, "last_edited_by": { "object": "user", "id": "u-1" },
        "parent": { "type": "page_id", "page_id": "page-0001" }, "archived": false, "in_trash": false, "is_inline": false,
        "title": [{ "type": "text", "plain_text": format!("Table {i}") }],
        "description": [],
        "properties": { "Name": { "type": "title" }, "Done": { "type": "checkbox" } },
        "url": format!("https://www.notion.so/db-{i:04}"),
    })
}

impl Notion {
    /// 13 pages (2 of them archived) and 10 databases: 3+ pages of results each.
    pub fn seeded() -> Self {
        let mut objects: Vec<Value> = (0..13).map(|i| page(i, i + 1, i == 3 || i == 8)).collect();
        objects.extend((0..10).map(|i| database(i, i + 1)));
        Notion {
            objects,
            unindexed: Vec::new(),
            loop_databases: false,
            clock: 100,
        }
    }

    /// A new page and a new database, edited now.
    pub fn edit(&mut self) {
        self.clock += 1;
        let t = self.clock;
        self.objects.push(page(100 + t, t, false));
        self.objects.push(database(100 + t, t));
    }

    /// Move an object to the trash (edited now): search no longer returns it.
    pub fn trash(&mut self, id: &str) {
        self.clock += 1;
        let edited = ts(self.clock);
        let object = self.objects.iter_mut().find(|o| o["id"] == id).unwrap();
        object["in_trash"] = json!(true);
        object["archived"] = json!(true);
        object["last_edited_time"] = json!(edited);
    }

    /// A page edited at `edited` that search does not return yet.
    pub fn add_unindexed_page(&mut self, i: u32, edited: &str) {
        let mut p = page(i, 0, false);
        p["last_edited_time"] = json!(edited);
        self.unindexed.push(p["id"].as_str().unwrap().to_owned());
        self.objects.push(p);
    }

    /// The search index catches up with every object.
    pub fn index(&mut self) {
        self.unindexed.clear();
    }
}

type Data = State<Arc<Mutex<Notion>>>;

fn versioned(headers: &HeaderMap) -> Option<Response> {
    if headers.get("notion-version").is_none() {
        let body = json!({ "object": "error", "status": 400, "code": "missing_version", "message": "Notion-Version header is required" });
        return Some(json_with(StatusCode::BAD_REQUEST, &[], body));
    }
    None
}

async fn me(headers: HeaderMap) -> Response {
    if let Some(refused) = versioned(&headers) {
        return refused;
    }
    json_with(
        StatusCode::OK,
        &[],
        json!({
            "object": "user", "id": BOT_ID, "name": "PDPP collector", "type": "bot",
            "bot": { "owner": { "type": "workspace", "workspace": true }, "workspace_name": "Owner's notes" },
        }),
    )
}

async fn search(State(d): Data, headers: HeaderMap, body: String) -> Response {
    if let Some(refused) = versioned(&headers) {
        return refused;
    }
    let Ok(req) = serde_json::from_str::<Value>(&body) else {
        return json_with(StatusCode::BAD_REQUEST, &[], json!({ "code": "invalid_json" }));
    };
    let kind = req["filter"]["value"].as_str().unwrap_or_default().to_owned();
    let (mut items, looping) = {
        let d = d.lock().unwrap();
        let items: Vec<Value> = d
            .objects
            .iter()
            .filter(|o| o["object"] == kind.as_str())
            .filter(|o| o["in_trash"] != true && o["archived"] != true)
            .filter(|o| !d.unindexed.iter().any(|id| o["id"] == id.as_str()))
            .cloned()
            .collect();
        (items, d.loop_databases)
    };
    items.sort_by(|a, b| b["last_edited_time"].as_str().cmp(&a["last_edited_time"].as_str()));
    // Cursors are opaque to the client; here they are `<kind>:<offset>`.
    let offset: usize = req["start_cursor"]
        .as_str()
        .and_then(|c| c.strip_prefix(&format!("{kind}:")))
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let slice: Vec<Value> = items.iter().skip(offset).take(PAGE).cloned().collect();
    let more = offset + PAGE < items.len();
    let next = if looping && kind == "database" && offset == PAGE {
        PAGE
    } else {
        offset + PAGE
    };
    json_with(
        StatusCode::OK,
        &[],
        json!({
            "object": "list", "results": slice, "has_more": more,
            "next_cursor": if more { Value::String(format!("{kind}:{next}")) } else { Value::Null },
            "type": "page_or_database", "page_or_database": {},
        }),
    )
}

pub fn start(data: Notion) -> Double<Notion> {
    start_accepting(data, TOKEN)
}

/// The double accepting only `token` (until more are accepted).
pub fn start_accepting(data: Notion, token: &str) -> Double<Notion> {
    let routes = Router::new()
        .route("/v1/users/me", get(me))
        .route("/v1/search", post(search));
    Double::start(API, token, data, routes)
}

/// The search requests for one object type.
fn searches(double: &Double<Notion>, kind: &str) -> Vec<Value> {
    double
        .ctl
        .requests_to("/v1/search")
        .iter()
        .filter(|r| r.status == 200 && r.method == "POST")
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
        .filter(|b| b["filter"]["value"] == kind)
        .collect()
}

server_on_both_backends! {
    /// Static-secret setup: the probe reads `/v1/users/me`, the first sync
    /// pages through search (after a 429 with Retry-After), trashed pages
    /// never show up, and the connection becomes active.
    fn notion_setup_probes_the_token_and_the_first_sync_makes_pages_and_databases_readable(b: Backend) {
        let double = start(Notion::seeded());
        double.ctl.throttle("/v1/search", 1, Limit::TooMany { retry_after: 1 });
        let e2e = E2e { connector: "notion", double: &double, token: TOKEN, backend: b };
        let (s, id) = e2e.first_sync(BOT_ID, &[("pages", 11), ("databases", 10)]);
        assert_eq!(searches(&double, "page").len(), 3, "11 pages in search (2 are in the trash) in pages of 4");
        assert_eq!(searches(&double, "database").len(), 3);
        assert_eq!(double.ctl.requests_to("/v1/search")[0].status, 429);
        let page = records(&s, &id, "pages").into_iter().find(|r| r["key"] == "page-0001").unwrap();
        assert_eq!(page["data"]["title"], "Page 1");
        assert_eq!(page["data"]["parent_type"], "page_id");
        let keys = keys(&s, &id, "pages");
        assert!(!keys.contains(&"page-0003".to_owned()), "archived pages are not kept");
    }
}

server_on_both_backends! {
    /// The second run reads search newest edit first and stops an hour below
    /// the committed `last_edited_time`: one request per object type. Search
    /// leaves a page trashed since then out, so an incremental run keeps it;
    /// the next full refresh (started through the owner API) reads all of
    /// search and the host deletes the page search no longer returns.
    fn notion_page_trashed_upstream_is_deleted_by_the_next_full_refresh(b: Backend) {
        let double = start(Notion::seeded());
        let e2e = E2e { connector: "notion", double: &double, token: TOKEN, backend: b };
        let (s, id) = e2e.first_sync(BOT_ID, &[("pages", 11), ("databases", 10)]);
        assert!(keys(&s, &id, "pages").contains(&"page-0005".to_owned()));
        double.data.lock().unwrap().edit();
        double.data.lock().unwrap().trash("page-0005");
        double.ctl.clear_log();
        let run = s.wait_run(&start_run(&s, &id));
        assert_eq!(run["status"], "succeeded", "{run}");
        for kind in ["page", "database"] {
            let asked = searches(&double, kind);
            assert_eq!(asked.len(), 1, "{kind}: the first page reaches the lookback window: {asked:?}");
            assert!(asked[0].get("start_cursor").is_none());
        }
        let pages = keys(&s, &id, "pages");
        assert!(pages.contains(&"page-0201".to_owned()), "the new page arrived");
        assert!(pages.contains(&"page-0005".to_owned()), "search never shows the trashed page to an incremental run");

        let run = full_refresh(&s, &id);
        assert_eq!(run["status"], "succeeded", "{run}");
        let pages = keys(&s, &id, "pages");
        assert!(!pages.contains(&"page-0005".to_owned()), "the trashed page was deleted");
        assert_eq!(pages.len(), 11);
        assert_eq!(records(&s, &id, "databases").len(), 11, "nothing else went");
        let reconciled = &events_of(&s, run["run_id"].as_str().unwrap(), "run.reconciled")[0];
        assert_eq!(
            reconciled["streams"],
            json!([{ "stream": "pages", "records_deleted": 1 }, { "stream": "databases", "records_deleted": 0 }])
        );
    }
}

#[tokio::test]
async fn notion_page_indexed_late_within_the_lookback_is_collected_by_the_next_run() {
    let mut data = Notion::seeded();
    // Edited 20 minutes before the newest edit (13:00), indexed only after
    // the first run; another one edited two hours before, indexed late too.
    data.add_unindexed_page(50, "2026-01-01T12:40:00.000Z");
    data.add_unindexed_page(51, "2026-01-01T11:00:00.000Z");
    let double = start(data);
    let (out, t) = run_against("notion", &double, TOKEN, BTreeMap::new()).await;
    assert_eq!(out.status, DoneStatus::Succeeded, "{:?}", out.message);
    assert!(
        !t.records().iter().any(|r| r.key == json!("page-0050")),
        "not indexed yet"
    );
    let state: BTreeMap<String, Value> = out.commit.unwrap().into_iter().collect();
    assert_eq!(state["pages"]["last_edited_time"], ts(13));

    double.data.lock().unwrap().index();
    let (out, t) = run_against("notion", &double, TOKEN, state).await;
    assert_eq!(out.status, DoneStatus::Succeeded, "{:?}", out.message);
    let pages: Vec<String> = t
        .records()
        .into_iter()
        .filter(|r| r.stream == "pages")
        .map(|r| r.key.as_str().unwrap().to_owned())
        .collect();
    assert!(
        pages.contains(&"page-0050".to_owned()),
        "inside the hour below the cursor: {pages:?}"
    );
    assert!(
        !pages.contains(&"page-0051".to_owned()),
        "older than the lookback: left to the next full refresh ({pages:?})"
    );
    assert_eq!(
        out.commit.unwrap()["pages"]["last_edited_time"],
        ts(13),
        "the checkpoint does not move back"
    );
}

server_on_both_backends! {
    /// A token revoked at Notion: the run fails with `credential_rejected`
    /// and setup-status asks for a new one.
    fn notion_token_revoked_at_the_provider_fails_the_run_and_setup_status_asks_for_a_new_token(b: Backend) {
        let double = start(Notion::seeded());
        let e2e = E2e { connector: "notion", double: &double, token: TOKEN, backend: b };
        let (s, id) = e2e.first_sync(BOT_ID, &[("pages", 11), ("databases", 10)]);
        e2e.revoked_token_needs_a_new_credential(&s, &id);
    }
}

#[tokio::test]
async fn notion_looping_cursor_fails_only_databases_and_pages_keep_their_checkpoint() {
    let mut data = Notion::seeded();
    data.loop_databases = true;
    let double = start(data);
    let (out, t) = run_against("notion", &double, TOKEN, BTreeMap::new()).await;
    assert_eq!(out.status, DoneStatus::Failed);
    assert!(out.certified_failure);
    assert_eq!(
        skips(&t),
        vec![(
            "databases".to_owned(),
            "stream_collection_failed".to_owned(),
            "retry_by_runtime".to_owned()
        )]
    );
    assert_eq!(eligible_streams(&out), vec!["pages".to_owned()]);
    assert_eq!(out.commit.unwrap()["pages"]["last_edited_time"], ts(13));
}

#[tokio::test]
async fn notion_rate_limit_beyond_the_wait_budget_skips_the_stream_for_the_runtime_to_retry() {
    let double = start(Notion::seeded());
    double
        .ctl
        .throttle("/v1/search", 1, Limit::TooMany { retry_after: 3_600 });
    let (out, t) = run_against("notion", &double, TOKEN, BTreeMap::new()).await;
    assert_eq!(out.status, DoneStatus::Succeeded, "{:?}", out.message);
    assert_eq!(
        skips(&t),
        vec![(
            "pages".to_owned(),
            "rate_limited".to_owned(),
            "retry_by_runtime".to_owned()
        )]
    );
    assert_eq!(eligible_streams(&out), vec!["databases".to_owned()]);
}
