//! Notion: the pages and databases a token can see, through
//! `POST https://api.notion.com/v1/search`.
//!
//! Search is read newest edit first (`sort: last_edited_time descending`)
//! and paginated with `next_cursor` / `start_cursor`. Each stream's cursor is
//! the newest `last_edited_time` collected. Notion documents that search
//! indexing is not immediate, and it rounds edit times to the minute, so a
//! later run reads [`LOOKBACK`] below the cursor before it stops: an object
//! edited shortly before the previous run but indexed after it is still
//! collected, and objects in the window are read again (upserts, harmless).
//!
//! Search leaves trashed objects out, so an incremental run never sees a
//! page or database go to the trash; a full-refresh run reads every object
//! and the host deletes the records of those search no longer returns
//! (docs/connectors.md). An archived or trashed object that search does
//! return becomes a deletion of its record.

use pdpp_provider::{Api, Entry, Listing, Order, Page, Spec, Stop, Streams, parse_json};
use pdpp_sdk::http;
use pdpp_sdk::{
    Account, Connector, Failure, Probe, ProbeError, Run, Secret, StreamScope, Value, export_connector, json,
};

mod bootstrap;

const API: &str = "https://api.notion.com";
const NOTION_VERSION: &str = "2022-06-28";

/// How far below the cursor a run reads again: search indexing lags edits
/// (Notion says it "is not immediate"), and edit times are rounded to the
/// minute. An hour covers the lag; an object shared with the integration
/// later, with an older edit time, waits for the next full refresh.
const LOOKBACK: u64 = 3_600;

/// Newest edit first, stopping before the cursor less [`LOOKBACK`].
const SEARCH: Spec = Spec {
    cursor_field: "last_edited_time",
    key: "/id",
    watermark: "/last_edited_time",
    consent_time_field: Some("created_time"),
    order: Order::NewestFirstRounded,
    lookback: LOOKBACK,
    max_pages: 5_000,
};

struct Notion;

/// The API client with Notion's version header, for runs and the probe alike.
fn api(token: Secret) -> Api {
    Api::new("Notion", token).header("notion-version", NOTION_VERSION)
}

impl Connector for Notion {
    fn run(run: &mut Run) -> Result<(), Failure> {
        let api = api(run.secret("token")?);
        let mut streams = Streams::new();
        for (stream, object) in [("pages", "page"), ("databases", "database")] {
            streams.collect(run, stream, |run, scope| search(run, &api, scope, object))?;
        }
        streams.finish()
    }

    /// `GET /v1/users/me` with the candidate token: the bot user it acts as.
    /// An internal integration's secret made for the owner in the host's
    /// browser (see `bootstrap.rs`).
    fn bootstrap(run: &mut Run, field: &str) -> Result<(), Failure> {
        bootstrap::run(run, field)
    }

    fn validate_credential(probe: &Probe) -> Result<Account, ProbeError> {
        let me = api(probe.secret("token")?).probe_json(&format!("{API}/v1/users/me"))?;
        let id = me["id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ProbeError::Unavailable("GET /v1/users/me answered without an id".into()))?;
        let name = me["name"].as_str().filter(|n| !n.is_empty());
        let workspace = me["bot"]["workspace_name"].as_str().filter(|n| !n.is_empty());
        let detail = match (name, workspace) {
            (Some(n), Some(w)) => Some(format!("{n} in workspace {w}")),
            (Some(n), None) => Some(n.to_owned()),
            (None, Some(w)) => Some(format!("workspace {w}")),
            (None, None) => None,
        };
        Ok(Account {
            identity: id.to_owned(),
            detail,
        })
    }
}

/// One page of `POST /v1/search` for one object type, from `start_cursor`.
fn search_page(api: &Api, object: &str, start: Option<&str>) -> Result<Page, Stop> {
    let mut body = json!({
        "filter": { "property": "object", "value": object },
        "sort": { "direction": "descending", "timestamp": "last_edited_time" },
        "page_size": 100,
    });
    if let Some(c) = start {
        body["start_cursor"] = Value::String(c.to_owned());
    }
    let req = http::post(&format!("{API}/v1/search"))
        .json_body(&body)
        .map_err(|e| Stop::Run(e.into()))?;
    let page = parse_json(&api.send(req)?, "POST /v1/search")?;
    let items = page["results"]
        .as_array()
        .cloned()
        .ok_or_else(|| Stop::Stream("POST /v1/search: a page has no results array".into()))?;
    let next = match (page["has_more"].as_bool(), page["next_cursor"].as_str()) {
        (Some(true), Some(next)) if !next.is_empty() => Some(next.to_owned()),
        (Some(true), _) => {
            return Err(Stop::Stream(
                "POST /v1/search: has_more is true but there is no next_cursor".into(),
            ));
        }
        _ => None,
    };
    Ok(Page { items, next })
}

/// Collect one object type (`page` or `database`) into `scope.name`. An
/// archived or trashed object becomes a deletion of its record.
fn search(run: &mut Run, api: &Api, scope: &StreamScope, object: &str) -> Result<(), Stop> {
    let mut listing = Listing::start(run, scope, SEARCH)?;
    listing.walk(
        &format!("POST /v1/search ({object})"),
        |start| search_page(api, object, start),
        |item| {
            // Search may mix in other object types; keep to the one asked for.
            if item["object"].as_str() != Some(object) {
                Entry::Ignore
            } else if item["archived"].as_bool() == Some(true) || item["in_trash"].as_bool() == Some(true) {
                Entry::Delete
            } else if object == "page" {
                Entry::Upsert(page_record(item))
            } else {
                Entry::Upsert(database_record(item))
            }
        },
    )?;
    listing.finish()
}

fn text(v: &Value) -> Value {
    v.as_str().map_or(Value::Null, |s| Value::String(s.to_owned()))
}

/// The plain text of a rich-text array.
fn plain(rich: &Value) -> String {
    rich.as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["plain_text"].as_str())
        .collect()
}

/// The parent's type and id (`workspace` has no id).
fn parent(item: &Value) -> (Value, Value) {
    let parent = &item["parent"];
    let kind = parent["type"].as_str().unwrap_or_default();
    let id = match parent.get(kind) {
        Some(Value::String(id)) => Value::String(id.clone()),
        _ => Value::Null,
    };
    (text(&parent["type"]), id)
}

fn page_record(page: &Value) -> Value {
    let title = page["properties"]
        .as_object()
        .into_iter()
        .flat_map(|props| props.values())
        .find(|p| p["type"] == "title")
        .map(|p| plain(&p["title"]));
    let (parent_type, parent_id) = parent(page);
    json!({
        "id": page["id"],
        "title": title,
        "url": text(&page["url"]),
        "parent_type": parent_type,
        "parent_id": parent_id,
        "icon": text(&page["icon"]["emoji"]),
        "created_time": text(&page["created_time"]),
        "last_edited_time": text(&page["last_edited_time"]),
        "created_by_id": text(&page["created_by"]["id"]),
        "last_edited_by_id": text(&page["last_edited_by"]["id"]),
    })
}

fn database_record(db: &Value) -> Value {
    let (parent_type, parent_id) = parent(db);
    let property_names: Vec<&str> = db["properties"]
        .as_object()
        .map(|props| props.keys().map(String::as_str).collect())
        .unwrap_or_default();
    json!({
        "id": db["id"],
        "title": plain(&db["title"]),
        "description": plain(&db["description"]),
        "url": text(&db["url"]),
        "parent_type": parent_type,
        "parent_id": parent_id,
        "is_inline": db["is_inline"].as_bool(),
        "property_names": property_names,
        "created_time": text(&db["created_time"]),
        "last_edited_time": text(&db["last_edited_time"]),
        "created_by_id": text(&db["created_by"]["id"]),
        "last_edited_by_id": text(&db["last_edited_by"]["id"]),
    })
}

export_connector!(Notion);
