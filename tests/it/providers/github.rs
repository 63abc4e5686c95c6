//! The GitHub double (`/user`, `/user/repos` with `sort`, `/user/starred`,
//! `/issues`, `/search/issues` with its `updated:` qualifiers and its cap of
//! 1000 results, `/gists`; `Link` pagination on the double's own origin;
//! `since`; 429, GitHub's 403 rate limits, primary and secondary, and a 403
//! that is no rate limit) and the connector's tests.

use super::*;
use crate::server_on_both_backends;
use axum::extract::Query;
use axum::http::HeaderMap;
use axum::routing::get;
use pdpp_host::protocol::DoneStatus;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

pub const TOKEN: &str = "ghp_double0wner0token0c0ffee";
pub const LOGIN: &str = "octo-owner";
const API: &str = "https://api.github.com";
/// The double's page size, whatever `per_page` asks: small, so every stream
/// has pages. The search honours `per_page` (up to 100), as GitHub does.
const PAGE: usize = 5;
/// GitHub's search returns at most this many results for one query; a page
/// past them is a 422.
const SEARCH_CAP: usize = 1_000;

/// What the fake account holds, and the faults to inject.
pub struct GitHub {
    repos: Vec<Value>,
    stars: Vec<Value>,
    issues: Vec<Value>,
    pulls: Vec<Value>,
    gists: Vec<Value>,
    /// Page 3 of `/gists` links back to page 2.
    pub loop_gists: bool,
    /// Page 2 of `/user/starred` is an object, not an array.
    pub malformed_stars: bool,
    /// Hours past the seed for the next new item.
    clock: u32,
}

fn repo(i: u32, pushed: u32) -> Value {
    json!({
        "id": 1000 + i, "name": format!("repo-{i}"), "full_name": format!("{LOGIN}/repo-{i}"),
        "owner": { "login": LOGIN }, "private": i.is_multiple_of(3), "fork": false, "archived": false, "disabled": false,
        "description": format!("Repository {i}"), "default_branch": "main", "language": "Rust", "topics": ["pdpp"],
        "stargazers_count": i, "forks_count": 0, "open_issues_count": 1, "watchers_count": i, "size": 42,
        "license": { "key": "apache-2.0" }, "html_url": format!("https://github.com/{LOGIN}/repo-{i}"),
        "homepage": null, "created_at": at(0), "updated_at": at(pushed), "pushed_at": at(pushed),
    })
}

fn star(i: u32, when: u32) -> Value {
    json!({
        "starred_at": at(when),
        "repo": {
            "id": 5000 + i, "full_name": format!("someone/starred-{i}"), "owner": { "login": "someone" },
            "description": null, "language": "Go", "topics": [], "stargazers_count": 100 + i,
            "html_url": format!("https://github.com/someone/starred-{i}"),
        },
    })
}

fn issue(i: u32, updated: u32, pull: bool) -> Value {
    let repo = format!("{LOGIN}/repo-{}", i % 4);
    let mut v = json!({
        "id": if pull { 8000 + i } else { 7000 + i }, "number": i + 1,
        "title": format!("{} {i}", if pull { "Change" } else { "Bug" }),
        "body": "x".repeat(30), "state": if i.is_multiple_of(2) { "open" } else { "closed" }, "state_reason": null,
        "user": { "login": LOGIN, "id": 9001 }, "assignees": [{ "login": LOGIN }],
        "labels": [{ "name": "bug" }, "triage"], "milestone": null,
        "repository_url": format!("{API}/repos/{repo}"), "html_url": format!("https://github.com/{repo}/issues/{}", i + 1),
        "comments": i, "reactions": { "total_count": 1 },
        "created_at": at(0), "updated_at": at(updated), "closed_at": null,
    });
    if pull {
        v["pull_request"] = json!({ "html_url": "https://github.com/x", "merged_at": null });
        v["draft"] = json!(false);
    }
    v
}

fn gist(i: u32, updated: u32) -> Value {
    json!({
        "id": format!("g{i:04}"), "description": format!("gist {i}"), "public": true, "owner": { "login": LOGIN },
        "html_url": format!("https://gist.github.com/{LOGIN}/g{i:04}"), "comments": 0,
        "files": { "a.rs": { "filename": "a.rs", "language": "Rust", "size": 10, "raw_url": "https://gist.githubusercontent.com/a.rs" } },
        "created_at": at(0), "updated_at": at(updated),
    })
}

impl GitHub {
    /// 13 repositories, 12 stars, 14 issues, 11 pull requests and 12 gists:
    /// at least three pages each.
    pub fn seeded() -> Self {
        GitHub {
            repos: (0..13).map(|i| repo(i, i + 1)).collect(),
            stars: (0..12).map(|i| star(i, i + 1)).collect(),
            issues: (0..14).map(|i| issue(i, i + 1, false)).collect(),
            pulls: (0..11).map(|i| issue(i, i + 1, true)).collect(),
            gists: (0..12).map(|i| gist(i, i + 1)).collect(),
            loop_gists: false,
            malformed_stars: false,
            clock: 100,
        }
    }

    /// One new item in every stream, newer than everything before.
    pub fn add_one_of_each(&mut self) {
        self.clock += 1;
        let t = self.clock;
        self.repos.push(repo(100 + t, t));
        self.stars.push(star(100 + t, t));
        self.issues.push(issue(100 + t, t, false));
        self.pulls.push(issue(100 + t, t, true));
        self.gists.push(gist(100 + t, t));
    }

    /// Archive repository `i` (no push): GitHub moves its `updated_at`,
    /// not its `pushed_at`.
    pub fn archive_repo(&mut self, i: u32) {
        self.clock += 1;
        let repo = self.repos.iter_mut().find(|r| r["id"] == 1000 + i).unwrap();
        repo["archived"] = json!(true);
        repo["updated_at"] = json!(at(self.clock));
    }

    /// Delete repository `i`, unstar starred repository `j`, delete gist `k`:
    /// they are simply gone from every listing.
    pub fn delete_upstream(&mut self, repo: u32, star: u32, gist: u32) {
        self.repos.retain(|r| r["id"] != 1000 + repo);
        self.stars.retain(|s| s["repo"]["id"] != 5000 + star);
        self.gists.retain(|g| g["id"] != format!("g{gist:04}"));
    }

    /// One more pull request per time in `updated` (ids from 20000).
    pub fn add_pulls(&mut self, updated: &[String]) {
        for when in updated {
            let i = self.pulls.len() as u32;
            let mut pr = issue(i, 0, true);
            pr["id"] = json!(20_000 + i);
            pr["updated_at"] = json!(when);
            self.pulls.push(pr);
        }
    }
}

type Data = State<Arc<Mutex<GitHub>>>;
type Params = Query<HashMap<String, String>>;

/// Items sorted newest first by `field`.
fn newest_first(mut items: Vec<Value>, field: &str) -> Vec<Value> {
    items.sort_by(|a, b| b[field].as_str().cmp(&a[field].as_str()));
    items
}

/// The origin a request reached, from its `Host` header: what a server
/// puts in its absolute links (behind a rewrite: the double's own origin).
fn own_origin(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("api.github.com");
    format!("http://{host}")
}

/// Page `page` (from 1) of `items`, `size` per page, with a `Link` to the
/// next page on `origin` that keeps the other query parameters.
fn paged_by(
    origin: &str,
    path: &str,
    params: &HashMap<String, String>,
    items: Vec<Value>,
    size: usize,
    wrap: impl Fn(Vec<Value>, usize) -> Value,
) -> Response {
    let page: usize = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let total = items.len();
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * size).take(size).collect();
    let mut headers = Vec::new();
    if page * size < total {
        headers.push(("link", link(origin, path, params, page + 1, "next")));
    }
    json_with(StatusCode::OK, &headers, wrap(slice, total))
}

/// [`paged_by`] with the double's small page.
fn paged(
    origin: &str,
    path: &str,
    params: &HashMap<String, String>,
    items: Vec<Value>,
    wrap: impl Fn(Vec<Value>, usize) -> Value,
) -> Response {
    paged_by(origin, path, params, items, PAGE, wrap)
}

fn link(origin: &str, path: &str, params: &HashMap<String, String>, page: usize, rel: &str) -> String {
    let mut rest: Vec<(&String, &String)> = params.iter().filter(|(k, _)| *k != "page").collect();
    rest.sort();
    let mut query = format!("page={page}");
    for (k, v) in rest {
        query.push_str(&format!("&{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)));
    }
    format!("<{origin}{path}?{query}>; rel=\"{rel}\", <{origin}{path}?page=999>; rel=\"last\"")
}

async fn user() -> Response {
    json_with(
        StatusCode::OK,
        &[],
        json!({
            "login": LOGIN, "id": 9001, "name": "Octo Owner", "email": null, "bio": "I own things",
            "company": null, "location": "Earth", "blog": "", "twitter_username": null,
            "avatar_url": "https://avatars.githubusercontent.com/u/9001", "html_url": format!("https://github.com/{LOGIN}"),
            "public_repos": 13, "public_gists": 12, "followers": 3, "following": 4,
            "created_at": at(0), "updated_at": at(1),
        }),
    )
}

/// `sort` is `full_name` (the default), `created`, `updated` or `pushed`;
/// `direction` defaults to `asc` for `full_name`, else `desc`.
async fn repos(State(d): Data, Query(q): Params, headers: HeaderMap) -> Response {
    let sort = q.get("sort").map_or("full_name", String::as_str);
    let field = match sort {
        "created" => "created_at",
        "updated" => "updated_at",
        "pushed" => "pushed_at",
        _ => "full_name",
    };
    let ascending = q.get("direction").map_or(sort == "full_name", |d| d == "asc");
    let mut items = newest_first(d.lock().unwrap().repos.clone(), field);
    if ascending {
        items.reverse();
    }
    paged(&own_origin(&headers), "/user/repos", &q, items, |page, _| {
        Value::Array(page)
    })
}

async fn starred(State(d): Data, Query(q): Params, headers: HeaderMap) -> Response {
    let (stars, malformed) = {
        let d = d.lock().unwrap();
        (newest_first(d.stars.clone(), "starred_at"), d.malformed_stars)
    };
    if malformed && q.get("page").map(String::as_str) == Some("2") {
        return json_with(StatusCode::OK, &[], json!({ "message": "not a list" }));
    }
    // Without the star media type GitHub sends the bare repositories.
    let with_dates = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("star+json"));
    let items = if with_dates {
        stars
    } else {
        stars.into_iter().map(|s| s["repo"].clone()).collect()
    };
    paged(&own_origin(&headers), "/user/starred", &q, items, |page, _| {
        Value::Array(page)
    })
}

/// Items updated at or after `since`, newest first.
fn since(items: Vec<Value>, q: &HashMap<String, String>) -> Vec<Value> {
    let items = newest_first(items, "updated_at");
    match q.get("since") {
        Some(s) => items
            .into_iter()
            .filter(|i| i["updated_at"].as_str() >= Some(s.as_str()))
            .collect(),
        None => items,
    }
}

async fn issues(State(d): Data, Query(q): Params, headers: HeaderMap) -> Response {
    let items = since(d.lock().unwrap().issues.clone(), &q);
    paged(&own_origin(&headers), "/issues", &q, items, |page, _| {
        Value::Array(page)
    })
}

/// The search: `author:` and the `updated:` qualifiers (`>=`, `>`, `<=`,
/// `<`), newest update first, `per_page` up to 100 (30 by default); only
/// the first 1000 results can be paged to (a page past them is a 422), and
/// `total_count` counts them all.
async fn search(State(d): Data, Query(q): Params, headers: HeaderMap) -> Response {
    let query = q.get("q").cloned().unwrap_or_default();
    let mut items = newest_first(d.lock().unwrap().pulls.clone(), "updated_at");
    for term in query.split_whitespace() {
        if let Some(author) = term.strip_prefix("author:")
            && author != LOGIN
        {
            items.clear();
        }
        let Some(bound) = term.strip_prefix("updated:") else {
            continue;
        };
        let (keep, t): (fn(&str, &str) -> bool, &str) = if let Some(t) = bound.strip_prefix(">=") {
            (|u, t| u >= t, t)
        } else if let Some(t) = bound.strip_prefix("<=") {
            (|u, t| u <= t, t)
        } else if let Some(t) = bound.strip_prefix('>') {
            (|u, t| u > t, t)
        } else if let Some(t) = bound.strip_prefix('<') {
            (|u, t| u < t, t)
        } else {
            continue;
        };
        items.retain(|i| i["updated_at"].as_str().is_some_and(|u| keep(u, t)));
    }
    let size: usize = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    if (page - 1) * size >= SEARCH_CAP && !items.is_empty() {
        let body = json!({ "message": "Only the first 1000 search results are available", "status": "422" });
        return json_with(StatusCode::UNPROCESSABLE_ENTITY, &[], body);
    }
    let total = items.len();
    items.truncate(SEARCH_CAP);
    paged_by(
        &own_origin(&headers),
        "/search/issues",
        &q,
        items,
        size,
        |page, _| json!({ "total_count": total, "incomplete_results": false, "items": page }),
    )
}

async fn gists(State(d): Data, Query(q): Params, headers: HeaderMap) -> Response {
    let (items, looping) = {
        let d = d.lock().unwrap();
        (since(d.gists.clone(), &q), d.loop_gists)
    };
    let origin = own_origin(&headers);
    if looping && q.get("page").map(String::as_str) == Some("3") {
        let slice: Vec<Value> = items.into_iter().skip(2 * PAGE).take(PAGE).collect();
        return json_with(
            StatusCode::OK,
            &[("link", link(&origin, "/gists", &q, 2, "next"))],
            Value::Array(slice),
        );
    }
    paged(&origin, "/gists", &q, items, |page, _| Value::Array(page))
}

pub fn start(data: GitHub) -> Double<GitHub> {
    start_accepting(data, TOKEN)
}

/// The double accepting only `token` (until more are accepted).
pub fn start_accepting(data: GitHub, token: &str) -> Double<GitHub> {
    let routes = Router::new()
        .route("/user", get(user))
        .route("/user/repos", get(repos))
        .route("/user/starred", get(starred))
        .route("/issues", get(issues))
        .route("/search/issues", get(search))
        .route("/gists", get(gists));
    Double::start(API, token, data, routes)
}

pub fn first_sync_counts() -> Vec<(&'static str, usize)> {
    vec![
        ("user", 1),
        ("repositories", 13),
        ("starred", 12),
        ("issues", 14),
        ("pull_requests", 11),
        ("gists", 12),
    ]
}

server_on_both_backends! {
    /// Static-secret setup: the probe reads `/user` and names the account,
    /// the first sync starts by itself and walks every page of every
    /// stream (through a 429 with Retry-After and GitHub's 403 rate limit),
    /// the connection becomes active and the records are readable.
    fn github_setup_probes_the_token_and_the_first_sync_makes_every_stream_readable(b: Backend) {
        let double = start(GitHub::seeded());
        double.ctl.throttle("/user/repos?page=2", 1, Limit::TooMany { retry_after: 1 });
        double.ctl.throttle("/issues?page=3", 1, Limit::Exhausted { reset_in: 1 });
        let e2e = E2e { connector: "github", double: &double, token: TOKEN, backend: b };
        let (s, id) = e2e.first_sync(LOGIN, &first_sync_counts());
        let repo_pages: Vec<String> = double.ctl.requests_to("/user/repos").iter().map(Seen::target).collect();
        assert_eq!(repo_pages.len(), 4, "3 pages, one of them asked twice after the 429: {repo_pages:?}");
        assert_eq!(double.ctl.requests_to("/issues").len(), 4, "3 pages, one retried after the 403 reset");
        let stars = records(&s, &id, "starred");
        assert!(stars.iter().all(|r| r["data"]["starred_at"].is_string()), "stars carry starred_at");
        let repo = records(&s, &id, "repositories").into_iter().find(|r| r["key"] == "1000").unwrap();
        assert_eq!(repo["data"]["full_name"], "octo-owner/repo-0");
        assert_eq!(repo["data"]["license"], "apache-2.0");
    }
}

server_on_both_backends! {
    /// A second run starts from the committed cursors: listings sorted newest
    /// first stop at the cursor, `/issues` and `/gists` get `since`, and the
    /// search gets `updated:>=`. The double sees one page per stream and the
    /// new items arrive.
    fn github_second_run_asks_only_for_what_changed_since_the_committed_cursors(b: Backend) {
        let double = start(GitHub::seeded());
        let e2e = E2e { connector: "github", double: &double, token: TOKEN, backend: b };
        let (s, id) = e2e.first_sync(LOGIN, &first_sync_counts());
        double.data.lock().unwrap().add_one_of_each();
        double.ctl.clear_log();
        let run = s.wait_run(&start_run(&s, &id));
        assert_eq!(run["status"], "succeeded", "{run}");
        let log = double.ctl.requests();
        for path in ["/user/repos", "/user/starred", "/issues", "/search/issues", "/gists"] {
            let asked: Vec<String> = log.iter().filter(|r| r.path == path).map(Seen::target).collect();
            assert_eq!(asked.len(), 1, "{path}: one page is all that changed: {asked:?}");
        }
        let issues = &double.ctl.requests_to("/issues")[0];
        assert_eq!(issues.param("since"), Some(at(14)), "since = the committed cursor");
        assert_eq!(double.ctl.requests_to("/gists")[0].param("since"), Some(at(12)));
        let q = double.ctl.requests_to("/search/issues")[0].param("q").unwrap();
        assert!(q.contains(&format!("updated:>={}", at(11))), "{q}");
        for (stream, n) in first_sync_counts() {
            let extra = usize::from(stream != "user");
            assert_eq!(records(&s, &id, stream).len(), n + extra, "{stream}");
        }
    }
}

server_on_both_backends! {
    /// The owner revokes the token at GitHub: the next run fails with
    /// `credential_rejected`, and setup-status marks the credential rejected
    /// and tells the owner to enter a new one.
    fn github_token_revoked_at_the_provider_fails_the_run_and_setup_status_asks_for_a_new_token(b: Backend) {
        let double = start(GitHub::seeded());
        let e2e = E2e { connector: "github", double: &double, token: TOKEN, backend: b };
        let (s, id) = e2e.first_sync(LOGIN, &first_sync_counts());
        e2e.revoked_token_needs_a_new_credential(&s, &id);
        assert_eq!(records(&s, &id, "repositories").len(), 13, "what was collected stays readable");
    }
}

#[tokio::test]
async fn github_rejected_token_fails_the_whole_run_with_refresh_credentials_and_commits_nothing() {
    let double = start(GitHub::seeded());
    let (out, _) = run_against("github", &double, "ghp_wrong", BTreeMap::new()).await;
    assert_eq!(out.status, DoneStatus::Failed);
    let done = serde_json::to_value(out.done.as_ref().unwrap()).unwrap();
    assert_eq!(done["error"]["code"], "credential_rejected", "{done}");
    assert_eq!(done["error"]["retryable"], false);
    let hint = &done["error"]["recovery_hint"];
    assert!(
        hint == "refresh_credentials" || hint["action"] == "refresh_credentials",
        "{done}"
    );
    assert!(out.commit.is_none(), "nothing is committed");
    assert_eq!(double.ctl.requests().len(), 1, "the run stops at the first refusal");
}

#[tokio::test]
async fn github_rate_limit_beyond_the_wait_budget_skips_the_stream_for_the_runtime_to_retry() {
    let double = start(GitHub::seeded());
    double.ctl.throttle("/gists", 1, Limit::TooMany { retry_after: 3_600 });
    let (out, t) = run_against("github", &double, TOKEN, BTreeMap::new()).await;
    assert_eq!(out.status, DoneStatus::Succeeded, "{:?}", out.message);
    assert_eq!(
        skips(&t),
        vec![(
            "gists".to_owned(),
            "rate_limited".to_owned(),
            "retry_by_runtime".to_owned()
        )]
    );
    let eligible = eligible_streams(&out);
    assert!(
        !eligible.contains(&"gists".to_owned()),
        "the skipped stream keeps its old cursor"
    );
    for stream in ["repositories", "starred", "issues", "pull_requests"] {
        assert!(eligible.contains(&stream.to_owned()), "{stream} commits: {eligible:?}");
    }
    assert_eq!(
        double.ctl.requests_to("/gists").len(),
        1,
        "no waiting an hour inside the run"
    );
}

#[tokio::test]
async fn github_looping_pagination_fails_only_that_stream_and_siblings_keep_their_checkpoints() {
    let mut data = GitHub::seeded();
    data.loop_gists = true;
    let double = start(data);
    let (out, t) = run_against("github", &double, TOKEN, BTreeMap::new()).await;
    assert_eq!(out.status, DoneStatus::Failed);
    assert!(out.certified_failure, "a certified stream-scoped failure");
    let done = serde_json::to_value(out.done.as_ref().unwrap()).unwrap();
    assert_eq!(done["error"]["code"], "stream_collection_failed", "{done}");
    assert_eq!(done["error"]["retryable"], true);
    assert_eq!(
        skips(&t),
        vec![(
            "gists".to_owned(),
            "stream_collection_failed".to_owned(),
            "retry_by_runtime".to_owned()
        )]
    );
    let commit = out.commit.as_ref().expect("the clean streams commit");
    assert!(commit.get("gists").is_none_or(|c| c.is_null()), "{commit:?}");
    assert_eq!(commit["issues"]["last"], at(14));
    assert_eq!(double.ctl.requests_to("/gists").len(), 3, "page 2 is not read twice");
}

#[tokio::test]
async fn github_malformed_page_is_a_retryable_stream_scoped_failure() {
    let mut data = GitHub::seeded();
    data.malformed_stars = true;
    let double = start(data);
    let (out, t) = run_against("github", &double, TOKEN, BTreeMap::new()).await;
    assert_eq!(out.status, DoneStatus::Failed);
    assert!(out.certified_failure);
    assert_eq!(skips(&t)[0].0, "starred");
    let eligible = eligible_streams(&out);
    assert!(!eligible.contains(&"starred".to_owned()));
    assert!(eligible.contains(&"repositories".to_owned()));
}

server_on_both_backends! {
    /// GitHub documents that a secondary rate limit may be a 403 with
    /// neither `Retry-After` nor `x-ratelimit-remaining: 0`, only a message
    /// saying so, and that a 403 can also mean the token may not read one
    /// resource (an organisation's SAML enforcement). Neither is a refused
    /// token: the probe says GitHub could not be asked, a run skips the
    /// stream (rate limited: retried by the next run not before a minute;
    /// forbidden: for the owner to look at), the credential stays active,
    /// and setup status shows which streams are behind, why and when they
    /// are retried, until a run collects them.
    fn github_403s_that_are_not_a_refused_token_skip_the_stream_and_setup_status_shows_it_behind(b: Backend) {
        let double = start(GitHub::seeded());
        let s = serve_connector("github", &double, b);
        let (_, created) = s.owner("POST", "/v1/connections", Some(json!({ "connector_id": "github" })));
        let id = created["connection"]["connection_id"].as_str().unwrap().to_owned();
        double.ctl.throttle("/user", 1, Limit::Secondary);
        let (status, err) = s.owner(
            "PUT",
            &format!("/v1/connections/{id}/credential"),
            Some(json!({ "kind": "personal_access_token", "fields": { "token": TOKEN } })),
        );
        assert_eq!((status, err["code"].as_str()), (502, Some("credential_probe_unavailable")), "{err}");
        let (status, stored) = s.owner(
            "PUT",
            &format!("/v1/connections/{id}/credential"),
            Some(json!({ "kind": "personal_access_token", "fields": { "token": TOKEN } })),
        );
        assert_eq!(status, 201, "the same token, asked again, is accepted: {stored}");
        assert_eq!(s.wait_run(stored["first_sync"]["run_id"].as_str().unwrap())["status"], "succeeded");
        wait_setup(&s, &id, |v| v["status"] == "active");

        double.ctl.throttle("/gists", 1, Limit::Secondary);
        double.ctl.throttle("/user/starred", 1, Limit::Forbidden);
        let before = pdpp_host::store::now_ms();
        let run_id = start_run(&s, &id);
        let run = s.wait_run(&run_id);
        assert_eq!(run["status"], "succeeded", "{run}");
        let skipped: Vec<(Value, Value)> = events_of(&s, &run_id, "run.stream_skipped")
            .into_iter()
            .map(|e| (e["stream"].clone(), e["reason"].clone()))
            .collect();
        assert_eq!(skipped, [(json!("starred"), json!("forbidden")), (json!("gists"), json!("rate_limited"))]);
        let gists_asked = double.ctl.requests_to("/gists");
        assert_eq!(gists_asked.last().unwrap().status, 403, "skipped at once: a minute is longer than a run waits");
        let setup = setup_status(&s, &id).1;
        assert_eq!(setup["credential"]["status"], "active", "no 403 here rejects the token: {setup}");
        assert_eq!(setup["health_state"], "needs_attention", "{setup}");
        assert_eq!(setup["last_error"]["reason"], "forbidden", "{setup}");
        let behind = setup["streams_behind"].as_array().unwrap();
        assert_eq!(behind.len(), 2, "{setup}");
        assert_eq!((&behind[0]["stream"], &behind[0]["retry"]), (&json!("starred"), &json!("after_owner_action")));
        assert!(behind[0]["message"].as_str().unwrap().contains("SAML"), "the provider's reason: {setup}");
        assert_eq!((&behind[1]["stream"], &behind[1]["reason"]), (&json!("gists"), &json!("rate_limited")));
        assert_eq!(behind[1]["retry"], "next_run");
        let not_before = behind[1]["not_before"].as_i64().unwrap();
        assert!(not_before >= before + 60_000, "GitHub's minute is kept: {setup}");
        assert_eq!(behind[1]["run_id"], run_id.as_str());

        // Only the rate limit left: behind, not needing the owner.
        double.ctl.throttle("/gists", 1, Limit::Secondary);
        assert_eq!(s.wait_run(&start_run(&s, &id))["status"], "succeeded");
        let setup = setup_status(&s, &id).1;
        assert_eq!(setup["health_state"], "behind", "{setup}");
        assert_eq!(setup["last_error"], Value::Null, "{setup}");
        assert_eq!(setup["streams_behind"][0]["stream"], "gists");

        // The next run collects them: healthy, nothing behind.
        double.data.lock().unwrap().add_one_of_each();
        assert_eq!(s.wait_run(&start_run(&s, &id))["status"], "succeeded");
        let setup = setup_status(&s, &id).1;
        assert_eq!(setup["health_state"], "healthy", "{setup}");
        assert_eq!(setup["streams_behind"], json!([]), "{setup}");
        assert_eq!(records(&s, &id, "gists").len(), 13);
        assert_eq!(records(&s, &id, "starred").len(), 13);
    }
}

server_on_both_backends! {
    /// Repositories, stars and gists removed on GitHub stay in the owner's
    /// copy after an incremental run (no listing says what is gone); a
    /// full-refresh run started through the owner API reads every listing
    /// and the host deletes what GitHub no longer returns, and nothing else.
    fn github_full_refresh_deletes_repositories_stars_and_gists_removed_upstream(b: Backend) {
        let double = start(GitHub::seeded());
        let e2e = E2e { connector: "github", double: &double, token: TOKEN, backend: b };
        let (s, id) = e2e.first_sync(LOGIN, &first_sync_counts());
        double.data.lock().unwrap().delete_upstream(4, 7, 2);
        assert_eq!(s.wait_run(&start_run(&s, &id))["status"], "succeeded");
        assert!(keys(&s, &id, "repositories").contains(&"1004".to_owned()), "incremental runs cannot see it");

        double.ctl.clear_log();
        let run = full_refresh(&s, &id);
        assert_eq!(run["status"], "succeeded", "{run}");
        let issues = &double.ctl.requests_to("/issues")[0];
        assert_eq!(issues.param("since"), None, "a full refresh ignores the cursors");
        assert!(!keys(&s, &id, "repositories").contains(&"1004".to_owned()));
        assert!(!keys(&s, &id, "starred").contains(&"5007".to_owned()));
        assert!(!keys(&s, &id, "gists").contains(&"g0002".to_owned()));
        for (stream, n) in first_sync_counts() {
            let gone = usize::from(matches!(stream, "repositories" | "starred" | "gists"));
            assert_eq!(records(&s, &id, stream).len(), n - gone, "{stream}");
        }
        let run_id = run["run_id"].as_str().unwrap();
        let reconciled = &events_of(&s, run_id, "run.reconciled")[0];
        let deleted: Vec<(Value, Value)> = reconciled["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["stream"].clone(), r["records_deleted"].clone()))
            .collect();
        assert_eq!(
            deleted,
            [
                (json!("repositories"), json!(1)),
                (json!("starred"), json!(1)),
                (json!("issues"), json!(0)),
                (json!("pull_requests"), json!(0)),
                (json!("gists"), json!(1)),
            ]
        );
        assert_eq!(
            reconciled["not_reconciled"],
            json!([{ "stream": "user", "reason": "not_checkpointed" }]),
            "the account snapshot has no checkpoint to vouch for it"
        );
        let (_, runs) = s.owner("GET", &format!("/v1/connections/{id}/runs"), None);
        assert_eq!(runs["runs"][0]["collection_mode"], "full_refresh", "{runs}");
        assert_eq!(runs["runs"][1]["collection_mode"], "incremental", "{runs}");
    }
}

#[tokio::test]
async fn github_repository_archived_without_a_push_is_read_again_by_its_update_time() {
    let double = start(GitHub::seeded());
    let (out, _) = run_against("github", &double, TOKEN, BTreeMap::new()).await;
    let state: BTreeMap<String, Value> = out.commit.unwrap().into_iter().collect();
    assert_eq!(state["repositories"], json!({ "updated": at(13) }));
    double.data.lock().unwrap().archive_repo(2);
    double.ctl.clear_log();
    let (out, t) = run_against("github", &double, TOKEN, state).await;
    assert_eq!(out.status, DoneStatus::Succeeded, "{:?}", out.message);
    let asked = double.ctl.requests_to("/user/repos");
    assert_eq!(asked.len(), 1, "one page: {asked:?}");
    assert_eq!(asked[0].param("sort").as_deref(), Some("updated"));
    let repo = t
        .records()
        .into_iter()
        .find(|r| r.stream == "repositories" && r.key == json!("1002"))
        .expect("the archived repository is read again, although it was not pushed to");
    assert_eq!(repo.data.unwrap()["archived"], true);
}

#[tokio::test]
async fn github_repositories_cursor_of_the_push_time_listing_reads_the_stream_once_in_full() {
    let double = start(GitHub::seeded());
    let state: BTreeMap<String, Value> = [("repositories".to_owned(), json!({ "last": at(13) }))]
        .into_iter()
        .collect();
    let (out, t) = run_against("github", &double, TOKEN, state).await;
    assert_eq!(out.status, DoneStatus::Succeeded, "{:?}", out.message);
    assert_eq!(
        t.records().into_iter().filter(|r| r.stream == "repositories").count(),
        13
    );
    assert_eq!(out.commit.unwrap()["repositories"], json!({ "updated": at(13) }));
}

#[tokio::test]
async fn github_pull_requests_sharing_the_1000th_hits_second_are_all_collected() {
    let mut data = GitHub::seeded();
    // After the 11 seeded ones: 985 older, one a minute; then 10 sharing one
    // second, the 1000th hit among them; then 5 older still.
    let mut times: Vec<String> = (0..985)
        .map(|k| format!("2025-12-30T{:02}:{:02}:00Z", 23 - k / 60, 59 - k % 60))
        .collect();
    let boundary = "2025-12-29T12:00:00Z";
    times.extend((0..10).map(|_| boundary.to_owned()));
    times.extend((0..5).map(|j| format!("2025-12-28T{:02}:00:00Z", 10 + j)));
    data.add_pulls(&times);
    let double = start(data);
    let (out, t) = run_against("github", &double, TOKEN, BTreeMap::new()).await;
    assert_eq!(out.status, DoneStatus::Succeeded, "{:?}", out.message);
    let mut ids: Vec<String> = t
        .records()
        .into_iter()
        .filter(|r| r.stream == "pull_requests")
        .map(|r| r.key.to_string())
        .collect();
    let emitted = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), emitted, "a pull request both queries return is emitted once");
    assert_eq!(
        emitted,
        11 + 1_000,
        "every pull request, the 6 past the 1000th hit in its second included"
    );
    let queries: Vec<String> = double
        .ctl
        .requests_to("/search/issues")
        .iter()
        .filter(|r| r.param("page").is_none())
        .map(|r| r.param("q").unwrap())
        .collect();
    assert_eq!(queries.len(), 2, "{queries:?}");
    assert!(queries[1].ends_with(&format!("updated:<={boundary}")), "{queries:?}");
    assert!(
        double.ctl.requests_to("/search/issues").iter().all(|r| r.status == 200),
        "never past the cap"
    );
}

#[tokio::test]
async fn github_pagination_links_on_the_rewrite_target_are_followed_on_the_declared_origin() {
    let double = start(GitHub::seeded());
    let (out, t) = run_against("github", &double, TOKEN, BTreeMap::new()).await;
    assert_eq!(out.status, DoneStatus::Succeeded, "{:?}", out.message);
    let pages: Vec<Option<String>> = double
        .ctl
        .requests_to("/user/repos")
        .iter()
        .map(|r| r.param("page"))
        .collect();
    assert_eq!(
        pages,
        [None, Some("2".into()), Some("3".into())],
        "the double linked to its own origin"
    );
    assert_eq!(
        t.records().into_iter().filter(|r| r.stream == "repositories").count(),
        13
    );
    let shown: Vec<String> = out.usage.requests.iter().map(|r| r.origin.clone()).collect();
    assert!(
        shown.iter().all(|o| o == "https://api.github.com:443"),
        "every request, the linked pages too, went to the declared origin: {shown:?}"
    );
}
