//! Notion: the pages and databases a token can see, through
//! `POST https://api.notion.com/v1/search`.
//!
//! Search is read newest edit first (`sort: last_edited_time descending`)
//! and paginated with `next_cursor` / `start_cursor`. Each stream's cursor is
//! the newest `last_edited_time` collected; a later run stops at the first
//! object edited before it. Notion rounds edit times to the minute, so objects
//! edited in the cursor's own minute are read again (upserts, harmless).
//! An archived or trashed object becomes a deletion of its record.

#[path = "../../shared/provider.rs"]
mod provider;

use pdpp_sdk::http;
use pdpp_sdk::{Account, Connector, Failure, Probe, ProbeError, Run, StreamScope, Value, export_connector, json};
use provider::{Api, Pages, Stop, allowed, conclude, later, latest, settle};
use serde::{Deserialize, Serialize};

const API: &str = "https://api.notion.com";
const NOTION_VERSION: &str = "2022-06-28";
const MAX_PAGES: usize = 5_000;

#[derive(Serialize, Deserialize, Default)]
struct Cursor {
    /// The newest `last_edited_time` already collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_edited_time: Option<String>,
}

struct Notion;

impl Connector for Notion {
    fn run(run: &mut Run) -> Result<(), Failure> {
        let api = Api::new("Notion", run.secret("token")?).header("notion-version", NOTION_VERSION);
        let mut failed = Vec::new();
        for (stream, object) in [("pages", "page"), ("databases", "database")] {
            if let Some(scope) = run.stream_scope(stream).cloned() {
                let result = search(run, &api, &scope, object);
                settle(run, stream, result, &mut failed)?;
            }
        }
        conclude(&failed)
    }

    /// `GET /v1/users/me` with the candidate token: the bot user it acts as.
    fn validate_credential(probe: &Probe) -> Result<Account, ProbeError> {
        let token = probe.secret("token")?;
        let me: Value = http::get(&format!("{API}/v1/users/me"))
            .bearer(&token)
            .header("notion-version", NOTION_VERSION)
            .send_with(&provider::PROBE_RETRY)?
            .json()?;
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

/// Collect one object type (`page` or `database`) into `scope.name`.
fn search(run: &mut Run, api: &Api, scope: &StreamScope, object: &str) -> Result<(), Stop> {
    let stream = scope.name.as_str();
    let cursor: Cursor = run.cursor(stream)?.unwrap_or_default();
    let mut newest = cursor.last_edited_time.clone();
    let mut pages = Pages::new(format!("POST /v1/search ({object})"), MAX_PAGES);
    let mut start: Option<String> = None;
    let (mut upserts, mut deletes) = (0u64, 0u64);
    'pages: loop {
        pages.visit(start.as_deref().unwrap_or(""))?;
        let mut body = json!({
            "filter": { "property": "object", "value": object },
            "sort": { "direction": "descending", "timestamp": "last_edited_time" },
            "page_size": 100,
        });
        if let Some(c) = &start {
            body["start_cursor"] = Value::String(c.clone());
        }
        let req = http::post(&format!("{API}/v1/search"))
            .json_body(&body)
            .map_err(|e| Stop::Run(e.into()))?;
        let resp = api.send(req)?;
        let page = provider::parse_json(&resp, "POST /v1/search")?;
        let results = page["results"]
            .as_array()
            .ok_or_else(|| Stop::Stream("POST /v1/search: a page has no results array".into()))?;
        for item in results {
            let edited = item["last_edited_time"].as_str();
            if let (Some(last), Some(e)) = (cursor.last_edited_time.as_deref(), edited)
                && later(last, e)
            {
                break 'pages;
            }
            // Search may mix in other object types; keep to the one asked for.
            if item["object"].as_str() != Some(object) {
                continue;
            }
            let Some(id) = item["id"].as_str().filter(|id| !id.is_empty()) else {
                continue;
            };
            if !scope.allows_resource(id) {
                continue;
            }
            let gone = item["archived"].as_bool() == Some(true) || item["in_trash"].as_bool() == Some(true);
            if gone {
                run.delete(stream, id)?;
                deletes += 1;
            } else if allowed(scope, id, item["created_time"].as_str()) {
                let record = if object == "page" {
                    page_record(item)
                } else {
                    database_record(item)
                };
                run.record(stream, id, &record)?;
                upserts += 1;
            } else {
                continue;
            }
            newest = latest(newest.take(), edited);
        }
        run.progress(
            Some(stream),
            &format!("collecting {stream}"),
            Some(upserts + deletes),
            None,
        );
        match (page["has_more"].as_bool(), page["next_cursor"].as_str()) {
            (Some(true), Some(next)) if !next.is_empty() => start = Some(next.to_owned()),
            (Some(true), _) => {
                return Err(Stop::Stream(
                    "POST /v1/search: has_more is true but there is no next_cursor".into(),
                ));
            }
            _ => break,
        }
    }
    run.checkpoint(
        stream,
        &Cursor {
            last_edited_time: newest,
        },
    )?;
    let done = format!("{stream} collected: {upserts} current, {deletes} archived");
    run.progress(Some(stream), &done, Some(upserts + deletes), Some(upserts + deletes));
    Ok(())
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
