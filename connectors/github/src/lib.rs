//! GitHub: the account behind a personal access token, its repositories,
//! stars, issues, pull requests and gists, from the REST API at
//! `https://api.github.com`.
//!
//! The token travels as a secret placeholder in `Authorization: Bearer`; the
//! host substitutes it. Listings follow the `Link: rel="next"` header. Each
//! stream keeps its own cursor:
//!
//! - `repositories` are read newest update first (`sort=updated`) and stop
//!   before the cursor's own instant, so a repository archived, renamed or
//!   made private without a push is read again;
//! - `starred` is read newest star first (`sort=created`) and stops at the
//!   first star at or before the cursor;
//! - `issues` and `gists` pass the cursor as `since`;
//! - `pull_requests` come from the search API with `updated:>=cursor`; a
//!   search returns at most 1000 hits, so a longer one continues with
//!   `updated:<=` the oldest hit seen, and the hits both queries return are
//!   emitted once.
//!
//! `user` is a snapshot of the account and has no cursor. Nothing in these
//! listings says what was deleted upstream (a repository, a star, a gist):
//! a full-refresh run reads every listing in full and the host deletes what
//! it no longer returned (docs/connectors.md).

use pdpp_provider::{Api, Entry, Listing, Order, Page, Spec, Stop, Streams, encode, key_of, parse_json};
use pdpp_sdk::http;
use pdpp_sdk::types::Origin;
use pdpp_sdk::{
    Account, Connector, Failure, Probe, ProbeError, Run, Secret, StreamScope, Value, export_connector, json,
};
use std::collections::HashSet;

mod bootstrap;

const API: &str = "https://api.github.com";
const USER_AGENT: &str = "pdpp-connector-github/0.1";
/// More pages than any account has: a listing that goes on is broken.
const MAX_PAGES: usize = 2_000;
/// GitHub's search API returns at most this many results per query.
const SEARCH_CAP: u64 = 1_000;
/// Issue and pull request bodies are cut to this many characters.
const BODY_CHARS: usize = 20_000;

/// Every listing keeps `{"last": <newest watermark>}` as its cursor; the
/// consent time is `created_at` except for stars (`starred_at`).
const fn spec(key: &'static str, watermark: &'static str, consent: &'static str, order: Order) -> Spec {
    Spec {
        cursor_field: "last",
        key,
        watermark,
        consent_time_field: Some(consent),
        order,
        lookback: 0,
        max_pages: MAX_PAGES,
    }
}

/// Newest update first, stopping before the cursor's own instant (two
/// repositories updated in the same second are both read again). The cursor
/// is `{"updated": …}`: a cursor of the old push-time listing (`{"last": …}`)
/// is read as none, so the stream is read once in full.
const REPOSITORIES: Spec = Spec {
    cursor_field: "updated",
    ..spec("/id", "/updated_at", "created_at", Order::NewestFirstRounded)
};
/// Newest star first, stopping at the cursor.
const STARRED: Spec = spec("/repo/id", "/starred_at", "starred_at", Order::NewestFirst);
/// `since=` and `updated:>=` filter at GitHub.
const UPDATED_SINCE: Spec = spec("/id", "/updated_at", "created_at", Order::Filtered);

struct GitHub;

/// The API client with GitHub's headers, for runs and the probe alike.
fn api(token: Secret) -> Api {
    Api::new("GitHub", token)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .header("user-agent", USER_AGENT)
}

impl Connector for GitHub {
    fn run(run: &mut Run) -> Result<(), Failure> {
        let api = api(run.secret("token")?);
        let mut streams = Streams::new();

        // The account: a stream of its own, and the login the pull request search needs.
        let me = (run.in_scope("user") || run.in_scope("pull_requests")).then(|| api.get_json(&format!("{API}/user")));
        let account = || match &me {
            Some(Ok((_, user))) => Ok(user),
            Some(Err(stop)) => Err(stop.clone()),
            None => Err(Stop::Stream("GET /user was not read".into())),
        };
        streams.collect(run, "user", |run, scope| emit_user(run, scope, account()?))?;
        streams.collect(run, "repositories", |run, scope| repositories(run, &api, scope))?;
        streams.collect(run, "starred", |run, scope| starred(run, &api, scope))?;
        streams.collect(run, "issues", |run, scope| issues(run, &api, scope))?;
        streams.collect(run, "pull_requests", |run, scope| {
            let login = account()?["login"]
                .as_str()
                .ok_or_else(|| Stop::Stream("GET /user answered without a login".into()))?;
            pull_requests(run, &api, scope, login)
        })?;
        streams.collect(run, "gists", |run, scope| gists(run, &api, scope))?;
        streams.finish()
    }

    /// `GET /user` with the candidate token: the account is its login.
    /// A classic personal access token made for the owner in the host's
    /// browser (see `bootstrap.rs`).
    fn bootstrap(run: &mut Run, field: &str) -> Result<(), Failure> {
        bootstrap::run(run, field)
    }

    fn validate_credential(probe: &Probe) -> Result<Account, ProbeError> {
        let user = api(probe.secret("token")?).probe_json(&format!("{API}/user"))?;
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

/// GET one page of a `Link`-paginated listing: `first`, or the `rel="next"`
/// link the previous page named, which must stay on the API origin. Returns
/// the page's JSON and its own next link.
fn get_page(
    api: &Api,
    what: &str,
    first: &str,
    next: Option<&str>,
    accept: Option<&str>,
) -> Result<(Value, Option<String>), Stop> {
    let url = match next {
        None => first.to_owned(),
        Some(link) => {
            on_api(link).ok_or_else(|| Stop::Stream(format!("{what}: the next page link {link} is not on {API}")))?
        }
    };
    let mut req = http::get(&url);
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let resp = api.send(req)?;
    let body = parse_json(&resp, what)?;
    Ok((body, resp.header("link").and_then(next_link)))
}

/// A page whose body must be a JSON array of items.
fn array_page(api: &Api, what: &str, first: &str, next: Option<&str>, accept: Option<&str>) -> Result<Page, Stop> {
    let (body, next) = get_page(api, what, first, next, accept)?;
    match body {
        Value::Array(items) => Ok(Page { items, next }),
        _ => Err(Stop::Stream(format!("{what}: a page is not a JSON array"))),
    }
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

/// A next link as an absolute URL on the API origin, or None if it leaves it
/// (another scheme, host or port, or a scheme-relative `//host/…`).
fn on_api(link: &str) -> Option<String> {
    if link.starts_with('/') && !link.starts_with("//") {
        return Some(format!("{API}{link}"));
    }
    (Origin::of_url(link)? == Origin::parse(API)?).then(|| link.to_owned())
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
    if scope.allows_record(&key, user["updated_at"].as_str()) {
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
    let what = "GET /user/repos";
    let first = format!("{API}/user/repos?per_page=100&sort=updated&direction=desc");
    let mut listing = Listing::start(run, scope, REPOSITORIES)?;
    listing.walk(
        what,
        |next| array_page(api, what, &first, next, None),
        |repo| {
            Entry::Upsert(json!({
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
            }))
        },
    )?;
    listing.finish()
}

fn starred(run: &mut Run, api: &Api, scope: &StreamScope) -> Result<(), Stop> {
    let what = "GET /user/starred";
    let first = format!("{API}/user/starred?per_page=100&sort=created&direction=desc");
    // The star+json media type adds `starred_at`, so this listing sets its own Accept.
    let accept = Some("application/vnd.github.star+json");
    let mut listing = Listing::start(run, scope, STARRED)?;
    listing.walk(
        what,
        |next| array_page(api, what, &first, next, accept),
        |star| {
            let repo = &star["repo"];
            Entry::Upsert(json!({
                "id": repo["id"],
                "full_name": repo["full_name"],
                "owner": text(&repo["owner"]["login"]),
                "description": text(&repo["description"]),
                "language": text(&repo["language"]),
                "topics": repo.get("topics").cloned().unwrap_or_else(|| json!([])),
                "stargazers_count": repo["stargazers_count"],
                "html_url": text(&repo["html_url"]),
                "starred_at": text(&star["starred_at"]),
            }))
        },
    )?;
    listing.finish()
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
    let what = "GET /issues";
    let mut listing = Listing::start(run, scope, UPDATED_SINCE)?;
    let mut first = format!("{API}/issues?filter=all&state=all&sort=updated&direction=desc&per_page=100");
    if let Some(since) = listing.since() {
        first.push_str(&format!("&since={}", encode(since)));
    }
    listing.walk(
        what,
        |next| array_page(api, what, &first, next, None),
        |issue| Entry::Upsert(issue_record(issue)),
    )?;
    listing.finish()
}

/// The account's pull requests, through the search API. A query returns at
/// most 1000 hits, so when there are more the next query continues at or
/// below the oldest `updated_at` seen (`updated:<=`, not `<`: pull requests
/// sharing that second beyond the 1000th hit would otherwise be lost), and
/// a pull request both queries return is emitted once.
fn pull_requests(run: &mut Run, api: &Api, scope: &StreamScope, login: &str) -> Result<(), Stop> {
    let what = "GET /search/issues";
    let mut listing = Listing::start(run, scope, UPDATED_SINCE)?;
    let since = listing.since().map(str::to_owned);
    let mut seen: HashSet<String> = HashSet::new();
    let mut below: Option<String> = None;
    loop {
        let mut q = format!("type:pr author:{login}");
        if let Some(since) = &since {
            q.push_str(&format!(" updated:>={since}"));
        }
        if let Some(before) = &below {
            q.push_str(&format!(" updated:<={before}"));
        }
        let first = format!(
            "{API}/search/issues?q={}&sort=updated&order=desc&per_page=100",
            encode(&q)
        );
        let (mut total, mut hits) = (0u64, 0u64);
        let mut oldest: Option<String> = None;
        listing.walk(
            what,
            |next| {
                let (page, next) = get_page(api, what, &first, next, None)?;
                total = page["total_count"].as_u64().unwrap_or(0);
                let items = page["items"]
                    .as_array()
                    .cloned()
                    .ok_or_else(|| Stop::Stream(format!("{what}: a page has no items array")))?;
                hits += items.len() as u64;
                if let Some(u) = items.iter().rev().find_map(|pr| pr["updated_at"].as_str()) {
                    oldest = Some(u.to_owned());
                }
                Ok(Page { items, next })
            },
            |pr| {
                // A pull request on the boundary of two queries comes twice.
                if !key_of(&pr["id"]).is_some_and(|key| seen.insert(key)) {
                    return Entry::Ignore;
                }
                let mut record = issue_record(pr);
                record["merged_at"] = text(&pr["pull_request"]["merged_at"]);
                record["draft"] = pr["draft"].as_bool().map_or(Value::Null, Value::Bool);
                if let Some(map) = record.as_object_mut() {
                    map.remove("is_pull_request");
                }
                Entry::Upsert(record)
            },
        )?;
        if hits < SEARCH_CAP || total <= hits {
            break;
        }
        match oldest {
            Some(o) if below.as_deref() != Some(o.as_str()) => below = Some(o),
            _ => {
                return Err(Stop::Stream(format!(
                    "{what}: more than 1000 pull requests share one updated_at"
                )));
            }
        }
    }
    listing.finish()
}

fn gists(run: &mut Run, api: &Api, scope: &StreamScope) -> Result<(), Stop> {
    let what = "GET /gists";
    let mut listing = Listing::start(run, scope, UPDATED_SINCE)?;
    let mut first = format!("{API}/gists?per_page=100");
    if let Some(since) = listing.since() {
        first.push_str(&format!("&since={}", encode(since)));
    }
    listing.walk(
        what,
        |next| array_page(api, what, &first, next, None),
        |gist| {
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
            Entry::Upsert(json!({
                "id": key_of(&gist["id"]),
                "description": text(&gist["description"]),
                "public": gist["public"],
                "owner": text(&gist["owner"]["login"]),
                "html_url": text(&gist["html_url"]),
                "files": files,
                "comments": gist["comments"],
                "created_at": text(&gist["created_at"]),
                "updated_at": text(&gist["updated_at"]),
            }))
        },
    )?;
    listing.finish()
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
        assert_eq!(on_api("https://api.github.com:8443/x"), None);
        assert!(
            on_api("https://API.github.com:443/x").is_some(),
            "the same origin, spelled otherwise"
        );
        assert_eq!(on_api("https://user@api.github.com/x"), None);
    }
}
