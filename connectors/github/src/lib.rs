//! GitHub: the account behind a personal access token, its repositories,
//! stars, issues, pull requests and gists, from the REST API at
//! `https://api.github.com`.
//!
//! The token travels as a secret placeholder in `Authorization: Bearer`; the
//! host substitutes it. Listings follow the `Link: rel="next"` header. Each
//! stream keeps its own cursor:
//!
//! - `repositories` and `starred` are read newest first (`sort=pushed` /
//!   `sort=created`) and stop at the first item at or before the cursor;
//! - `issues` and `gists` pass the cursor as `since`;
//! - `pull_requests` come from the search API with `updated:>=cursor`.
//!
//! `user` is a snapshot of the account and has no cursor.

#[path = "../../shared/provider.rs"]
mod provider;

use pdpp_sdk::http;
use pdpp_sdk::{Account, Connector, Failure, Probe, ProbeError, Run, StreamScope, Value, export_connector, json};
use provider::{Api, Pages, Stop, allowed, conclude, encode, key_of, later, latest, settle};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

const API: &str = "https://api.github.com";
const USER_AGENT: &str = "pdpp-connector-github/0.1";
/// More pages than any account has: a listing that goes on is broken.
const MAX_PAGES: usize = 2_000;
/// GitHub's search API returns at most this many results per query.
const SEARCH_CAP: u64 = 1_000;
/// Issue and pull request bodies are cut to this many characters.
const BODY_CHARS: usize = 20_000;

#[derive(Serialize, Deserialize, Default)]
struct Cursor {
    /// The newest cursor-field value already collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<String>,
}

struct GitHub;

impl Connector for GitHub {
    fn run(run: &mut Run) -> Result<(), Failure> {
        let api = Api::new("GitHub", run.secret("token")?)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header("user-agent", USER_AGENT);
        let mut failed = Vec::new();

        // The account: a stream of its own, and the login the pull request search needs.
        let me = (run.in_scope("user") || run.in_scope("pull_requests")).then(|| api.get_json(&format!("{API}/user")));
        if let Some(scope) = run.stream_scope("user").cloned() {
            let result = match &me {
                Some(Ok((_, user))) => emit_user(run, &scope, user),
                Some(Err(stop)) => Err(stop.clone()),
                None => Ok(()),
            };
            settle(run, "user", result, &mut failed)?;
        }
        if let Some(scope) = run.stream_scope("repositories").cloned() {
            let result = repositories(run, &api, &scope);
            settle(run, "repositories", result, &mut failed)?;
        }
        if let Some(scope) = run.stream_scope("starred").cloned() {
            let result = starred(run, &api, &scope);
            settle(run, "starred", result, &mut failed)?;
        }
        if let Some(scope) = run.stream_scope("issues").cloned() {
            let result = issues(run, &api, &scope);
            settle(run, "issues", result, &mut failed)?;
        }
        if let Some(scope) = run.stream_scope("pull_requests").cloned() {
            let result = match &me {
                Some(Ok((_, user))) => match user["login"].as_str() {
                    Some(login) => pull_requests(run, &api, &scope, login),
                    None => Err(Stop::Stream("GET /user answered without a login".into())),
                },
                Some(Err(stop)) => Err(stop.clone()),
                None => Ok(()),
            };
            settle(run, "pull_requests", result, &mut failed)?;
        }
        if let Some(scope) = run.stream_scope("gists").cloned() {
            let result = gists(run, &api, &scope);
            settle(run, "gists", result, &mut failed)?;
        }
        conclude(&failed)
    }

    /// `GET /user` with the candidate token: the account is its login.
    fn validate_credential(probe: &Probe) -> Result<Account, ProbeError> {
        let token = probe.secret("token")?;
        let user: Value = http::get(&format!("{API}/user"))
            .bearer(&token)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header("user-agent", USER_AGENT)
            .send_with(&provider::PROBE_RETRY)?
            .json()?;
        let login = user["login"]
            .as_str()
            .ok_or_else(|| ProbeError::Unavailable("GET /user answered without a login".into()))?;
        let id = key_of(&user["id"]).unwrap_or_default();
        let detail = match user["name"].as_str() {
            Some(name) if !name.is_empty() => format!("{name} (@{login}, id {id})"),
            _ => format!("@{login} (id {id})"),
        };
        Ok(Account {
            identity: login.to_owned(),
            detail: Some(detail),
        })
    }
}

/// Read a `Link`-paginated listing from `first`, handing each page's JSON to
/// `page`, which returns false to stop early.
fn walk(api: &Api, what: &str, first: String, mut page: impl FnMut(&Value) -> Result<bool, Stop>) -> Result<(), Stop> {
    let mut pages = Pages::new(what, MAX_PAGES);
    let mut url = first;
    loop {
        pages.visit(&url)?;
        let (resp, body) = api.get_json(&url)?;
        if !page(&body)? {
            return Ok(());
        }
        let Some(link) = resp.header("link") else {
            return Ok(());
        };
        match next_link(link) {
            None => return Ok(()),
            Some(next) => {
                url = on_api(&next)
                    .ok_or_else(|| Stop::Stream(format!("{what}: the next page link {next} is not on {API}")))?;
            }
        }
    }
}

/// The items of a page that must be a JSON array.
fn array<'a>(what: &str, body: &'a Value) -> Result<&'a Vec<Value>, Stop> {
    body.as_array()
        .ok_or_else(|| Stop::Stream(format!("{what}: a page is not a JSON array")))
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map_or(rest.len(), |i| close + i);
        let is_next = rest[close + 1..params_end].split(';').any(|param| {
            let param = param.trim().trim_end_matches(',').trim();
            param
                .strip_prefix("rel=")
                .map(|v| v.trim_matches('"').split_whitespace().any(|r| r == "next"))
                .unwrap_or(false)
        });
        if is_next {
            return Some(target.to_owned());
        }
        rest = &rest[params_end..];
    }
    None
}

/// A next link as an absolute URL on the API origin, or None if it leaves it.
fn on_api(link: &str) -> Option<String> {
    if link.starts_with('/') && !link.starts_with("//") {
        return Some(format!("{API}{link}"));
    }
    link.strip_prefix(API)
        .filter(|rest| rest.starts_with('/'))
        .map(|_| link.to_owned())
}

fn text(v: &Value) -> Value {
    match v.as_str() {
        Some(s) => Value::String(s.to_owned()),
        None => Value::Null,
    }
}

/// A body cut to `BODY_CHARS` characters.
fn body(v: &Value) -> Value {
    match v.as_str() {
        Some(s) if s.chars().count() > BODY_CHARS => Value::String(s.chars().take(BODY_CHARS).collect()),
        Some(s) => Value::String(s.to_owned()),
        None => Value::Null,
    }
}

fn logins(v: &Value) -> Value {
    Value::Array(
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["login"].as_str())
            .map(|l| Value::String(l.to_owned()))
            .collect(),
    )
}

fn labels(v: &Value) -> Value {
    Value::Array(
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().or_else(|| l["name"].as_str()))
            .map(|l| Value::String(l.to_owned()))
            .collect(),
    )
}

/// `owner/name` of an issue's repository, from `repository` or `repository_url`.
fn repository_of(issue: &Value) -> Value {
    if let Some(name) = issue["repository"]["full_name"].as_str() {
        return Value::String(name.to_owned());
    }
    issue["repository_url"]
        .as_str()
        .and_then(|u| u.split_once("/repos/"))
        .map_or(Value::Null, |(_, name)| Value::String(name.to_owned()))
}

fn emit_user(run: &mut Run, scope: &StreamScope, user: &Value) -> Result<(), Stop> {
    let key = key_of(&user["id"]).ok_or_else(|| Stop::Stream("GET /user answered without an id".into()))?;
    if allowed(scope, &key, user["updated_at"].as_str()) {
        let record = json!({
            "id": user["id"],
            "login": user["login"],
            "name": text(&user["name"]),
            "email": text(&user["email"]),
            "bio": text(&user["bio"]),
            "company": text(&user["company"]),
            "location": text(&user["location"]),
            "blog": text(&user["blog"]),
            "twitter_username": text(&user["twitter_username"]),
            "avatar_url": text(&user["avatar_url"]),
            "html_url": text(&user["html_url"]),
            "public_repos": user["public_repos"],
            "public_gists": user["public_gists"],
            "followers": user["followers"],
            "following": user["following"],
            "created_at": text(&user["created_at"]),
            "updated_at": text(&user["updated_at"]),
        });
        run.record("user", key, &record)?;
    }
    run.progress(Some("user"), "account read", Some(1), Some(1));
    Ok(())
}

fn repositories(run: &mut Run, api: &Api, scope: &StreamScope) -> Result<(), Stop> {
    let cursor: Cursor = run.cursor("repositories")?.unwrap_or_default();
    let mut newest = cursor.last.clone();
    let mut count = 0u64;
    let first = format!("{API}/user/repos?per_page=100&sort=pushed&direction=desc");
    walk(api, "GET /user/repos", first, |page| {
        for repo in array("GET /user/repos", page)? {
            let pushed_at = repo["pushed_at"].as_str();
            if let (Some(last), Some(p)) = (cursor.last.as_deref(), pushed_at)
                && !later(p, last)
            {
                return Ok(false);
            }
            let Some(key) = key_of(&repo["id"]) else { continue };
            if !allowed(scope, &key, repo["created_at"].as_str()) {
                continue;
            }
            let record = json!({
                "id": repo["id"],
                "name": repo["name"],
                "full_name": repo["full_name"],
                "owner": text(&repo["owner"]["login"]),
                "description": text(&repo["description"]),
                "private": repo["private"],
                "fork": repo["fork"],
                "archived": repo["archived"],
                "disabled": repo["disabled"],
                "default_branch": text(&repo["default_branch"]),
                "language": text(&repo["language"]),
                "topics": repo.get("topics").cloned().unwrap_or_else(|| json!([])),
                "stargazers_count": repo["stargazers_count"],
                "forks_count": repo["forks_count"],
                "open_issues_count": repo["open_issues_count"],
                "watchers_count": repo["watchers_count"],
                "size": repo["size"],
                "license": text(&repo["license"]["key"]),
                "html_url": text(&repo["html_url"]),
                "homepage": text(&repo["homepage"]),
                "created_at": text(&repo["created_at"]),
                "updated_at": text(&repo["updated_at"]),
                "pushed_at": text(&repo["pushed_at"]),
            });
            run.record("repositories", key, &record)?;
            count += 1;
            newest = latest(newest.take(), pushed_at);
        }
        run.progress(Some("repositories"), "collecting repositories", Some(count), None);
        Ok(true)
    })?;
    run.checkpoint("repositories", &Cursor { last: newest })?;
    run.progress(Some("repositories"), "repositories collected", Some(count), Some(count));
    Ok(())
}

fn starred(run: &mut Run, api: &Api, scope: &StreamScope) -> Result<(), Stop> {
    let cursor: Cursor = run.cursor("starred")?.unwrap_or_default();
    let mut newest = cursor.last.clone();
    let mut count = 0u64;
    let first = format!("{API}/user/starred?per_page=100&sort=created&direction=desc");
    let mut url = first;
    let mut pages = Pages::new("GET /user/starred", MAX_PAGES);
    // The star+json media type adds `starred_at`, so this listing sets its own Accept.
    loop {
        pages.visit(&url)?;
        let resp = api.send(http::get(&url).header("accept", "application/vnd.github.star+json"))?;
        let page = provider::parse_json(&resp, "GET /user/starred")?;
        let mut more = true;
        for star in array("GET /user/starred", &page)? {
            let starred_at = star["starred_at"].as_str();
            if let (Some(last), Some(s)) = (cursor.last.as_deref(), starred_at)
                && !later(s, last)
            {
                more = false;
                break;
            }
            let repo = &star["repo"];
            let Some(key) = key_of(&repo["id"]) else { continue };
            if !allowed(scope, &key, starred_at) {
                continue;
            }
            let record = json!({
                "id": repo["id"],
                "full_name": repo["full_name"],
                "owner": text(&repo["owner"]["login"]),
                "description": text(&repo["description"]),
                "language": text(&repo["language"]),
                "topics": repo.get("topics").cloned().unwrap_or_else(|| json!([])),
                "stargazers_count": repo["stargazers_count"],
                "html_url": text(&repo["html_url"]),
                "starred_at": text(&star["starred_at"]),
            });
            run.record("starred", key, &record)?;
            count += 1;
            newest = latest(newest.take(), starred_at);
        }
        run.progress(Some("starred"), "collecting stars", Some(count), None);
        let next = resp.header("link").and_then(next_link);
        match next {
            Some(next) if more => {
                url = on_api(&next).ok_or_else(|| {
                    Stop::Stream(format!("GET /user/starred: the next page link {next} is not on {API}"))
                })?;
            }
            _ => break,
        }
    }
    run.checkpoint("starred", &Cursor { last: newest })?;
    run.progress(Some("starred"), "stars collected", Some(count), Some(count));
    Ok(())
}

fn issue_record(issue: &Value) -> Value {
    json!({
        "id": issue["id"],
        "number": issue["number"],
        "title": text(&issue["title"]),
        "body": body(&issue["body"]),
        "state": text(&issue["state"]),
        "state_reason": text(&issue["state_reason"]),
        "user": text(&issue["user"]["login"]),
        "assignees": logins(&issue["assignees"]),
        "labels": labels(&issue["labels"]),
        "milestone": text(&issue["milestone"]["title"]),
        "repository": repository_of(issue),
        "html_url": text(&issue["html_url"]),
        "comments": issue["comments"],
        "reactions": issue["reactions"]["total_count"],
        "is_pull_request": issue.get("pull_request").is_some_and(|p| !p.is_null()),
        "created_at": text(&issue["created_at"]),
        "updated_at": text(&issue["updated_at"]),
        "closed_at": text(&issue["closed_at"]),
    })
}

fn issues(run: &mut Run, api: &Api, scope: &StreamScope) -> Result<(), Stop> {
    let cursor: Cursor = run.cursor("issues")?.unwrap_or_default();
    let mut newest = cursor.last.clone();
    let mut count = 0u64;
    let mut first = format!("{API}/issues?filter=all&state=all&sort=updated&direction=desc&per_page=100");
    if let Some(since) = &cursor.last {
        first.push_str(&format!("&since={}", encode(since)));
    }
    walk(api, "GET /issues", first, |page| {
        for issue in array("GET /issues", page)? {
            let Some(key) = key_of(&issue["id"]) else { continue };
            if !allowed(scope, &key, issue["created_at"].as_str()) {
                continue;
            }
            run.record("issues", key, &issue_record(issue))?;
            count += 1;
            newest = latest(newest.take(), issue["updated_at"].as_str());
        }
        run.progress(Some("issues"), "collecting issues", Some(count), None);
        Ok(true)
    })?;
    run.checkpoint("issues", &Cursor { last: newest })?;
    run.progress(Some("issues"), "issues collected", Some(count), Some(count));
    Ok(())
}

/// The account's pull requests, through the search API. A query returns at
/// most 1000 hits, so when there are more the next query continues below
/// the oldest `updated_at` seen.
fn pull_requests(run: &mut Run, api: &Api, scope: &StreamScope, login: &str) -> Result<(), Stop> {
    let cursor: Cursor = run.cursor("pull_requests")?.unwrap_or_default();
    let mut newest = cursor.last.clone();
    let mut count = 0u64;
    let mut seen: HashSet<String> = HashSet::new();
    let mut below: Option<String> = None;
    loop {
        let mut q = format!("type:pr author:{login}");
        if let Some(since) = &cursor.last {
            q.push_str(&format!(" updated:>={since}"));
        }
        if let Some(before) = &below {
            q.push_str(&format!(" updated:<{before}"));
        }
        let first = format!(
            "{API}/search/issues?q={}&sort=updated&order=desc&per_page=100",
            encode(&q)
        );
        let mut total = 0u64;
        let mut hits = 0u64;
        let mut oldest: Option<String> = None;
        walk(api, "GET /search/issues", first, |page| {
            total = page["total_count"].as_u64().unwrap_or(0);
            let items = page["items"]
                .as_array()
                .ok_or_else(|| Stop::Stream("GET /search/issues: a page has no items array".into()))?;
            for pr in items {
                hits += 1;
                let updated_at = pr["updated_at"].as_str();
                if let Some(u) = updated_at {
                    oldest = Some(u.to_owned());
                }
                let Some(key) = key_of(&pr["id"]) else { continue };
                if !seen.insert(key.clone()) || !allowed(scope, &key, pr["created_at"].as_str()) {
                    continue;
                }
                let mut record = issue_record(pr);
                record["merged_at"] = text(&pr["pull_request"]["merged_at"]);
                record["draft"] = pr["draft"].as_bool().map_or(Value::Null, Value::Bool);
                if let Some(map) = record.as_object_mut() {
                    map.remove("is_pull_request");
                }
                run.record("pull_requests", key, &record)?;
                count += 1;
                newest = latest(newest.take(), updated_at);
            }
            run.progress(Some("pull_requests"), "collecting pull requests", Some(count), None);
            Ok(true)
        })?;
        if hits < SEARCH_CAP || total <= hits {
            break;
        }
        match oldest {
            Some(o) if below.as_deref() != Some(o.as_str()) => below = Some(o),
            _ => {
                return Err(Stop::Stream(
                    "GET /search/issues: more than 1000 pull requests share one updated_at".into(),
                ));
            }
        }
    }
    run.checkpoint("pull_requests", &Cursor { last: newest })?;
    run.progress(
        Some("pull_requests"),
        "pull requests collected",
        Some(count),
        Some(count),
    );
    Ok(())
}

fn gists(run: &mut Run, api: &Api, scope: &StreamScope) -> Result<(), Stop> {
    let cursor: Cursor = run.cursor("gists")?.unwrap_or_default();
    let mut newest = cursor.last.clone();
    let mut count = 0u64;
    let mut first = format!("{API}/gists?per_page=100");
    if let Some(since) = &cursor.last {
        first.push_str(&format!("&since={}", encode(since)));
    }
    walk(api, "GET /gists", first, |page| {
        for gist in array("GET /gists", page)? {
            let Some(key) = key_of(&gist["id"]) else { continue };
            if !allowed(scope, &key, gist["created_at"].as_str()) {
                continue;
            }
            let files: Vec<Value> = gist["files"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
                .map(|f| {
                    json!({
                        "filename": text(&f["filename"]),
                        "language": text(&f["language"]),
                        "size": f["size"],
                        "raw_url": text(&f["raw_url"]),
                    })
                })
                .collect();
            let record = json!({
                "id": key,
                "description": text(&gist["description"]),
                "public": gist["public"],
                "owner": text(&gist["owner"]["login"]),
                "html_url": text(&gist["html_url"]),
                "files": files,
                "comments": gist["comments"],
                "created_at": text(&gist["created_at"]),
                "updated_at": text(&gist["updated_at"]),
            });
            run.record("gists", key, &record)?;
            count += 1;
            newest = latest(newest.take(), gist["updated_at"].as_str());
        }
        run.progress(Some("gists"), "collecting gists", Some(count), None);
        Ok(true)
    })?;
    run.checkpoint("gists", &Cursor { last: newest })?;
    run.progress(Some("gists"), "gists collected", Some(count), Some(count));
    Ok(())
}

export_connector!(GitHub);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_finds_rel_next_among_others() {
        let h = r#"<https://api.github.com/user/repos?page=3>; rel="next", <https://api.github.com/user/repos?page=9>; rel="last""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://api.github.com/user/repos?page=3")
        );
        let h = r#"<https://api.github.com/x?page=1>; rel="prev", <https://api.github.com/x?page=1>; rel="first""#;
        assert_eq!(next_link(h), None);
    }

    #[test]
    fn next_links_must_stay_on_the_api_origin() {
        assert_eq!(
            on_api("/user/repos?page=2").as_deref(),
            Some("https://api.github.com/user/repos?page=2")
        );
        assert!(on_api("https://api.github.com/user/repos?page=2").is_some());
        assert_eq!(on_api("https://api.github.com.evil.test/x"), None);
        assert_eq!(on_api("//evil.test/x"), None);
        assert_eq!(on_api("http://api.github.com/x"), None);
    }
}
