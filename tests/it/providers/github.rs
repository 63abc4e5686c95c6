//! The GitHub double (`/user`, `/user/repos`, `/user/starred`, `/issues`,
//! `/search/issues`, `/gists` with `Link` pagination, `since`, search
//! qualifiers, 429 and GitHub's 403 rate limit) and the connector's tests.

use super::*;
use crate::server_on_both_backends;
use axum::extract::Query;
use axum::http::HeaderMap;
use axum::routing::get;
use pdpp_host::protocol::DoneStatus;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

pub const TOKEN: &str = "ghp_double0wner0token0c0ffee";
const LOGIN: &str = "octo-owner";
const API: &str = "https://api.github.com";
/// The double's page size, whatever `per_page` asks: small, so every stream has pages.
const PAGE: usize = 5;

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
}

type Data = State<Arc<Mutex<GitHub>>>;
type Params = Query<HashMap<String, String>>;

/// Items sorted newest first by `field`.
fn newest_first(mut items: Vec<Value>, field: &str) -> Vec<Value> {
    items.sort_by(|a, b| b[field].as_str().cmp(&a[field].as_str()));
    items
}

/// Page `page` (from 1) of `items`, with a `Link` to the next page on the
/// real API origin that keeps the other query parameters.
fn paged(
    path: &str,
    params: &HashMap<String, String>,
    items: Vec<Value>,
    wrap: impl Fn(Vec<Value>, usize) -> Value,
) -> Response {
    let page: usize = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let total = items.len();
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * PAGE).take(PAGE).collect();
    let mut headers = Vec::new();
    if page * PAGE < total {
        headers.push(("link", link(path, params, page + 1, "next")));
    }
    json_with(StatusCode::OK, &headers, wrap(slice, total))
}

fn link(path: &str, params: &HashMap<String, String>, page: usize, rel: &str) -> String {
    let mut rest: Vec<(&String, &String)> = params.iter().filter(|(k, _)| *k != "page").collect();
    rest.sort();
    let mut query = format!("page={page}");
    for (k, v) in rest {
        query.push_str(&format!("&{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)));
    }
    format!("<{API}{path}?{query}>; rel=\"{rel}\", <{API}{path}?page=999>; rel=\"last\"")
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

async fn repos(State(d): Data, Query(q): Params) -> Response {
    let items = newest_first(d.lock().unwrap().repos.clone(), "pushed_at");
    paged("/user/repos", &q, items, |page, _| Value::Array(page))
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
    paged("/user/starred", &q, items, |page, _| Value::Array(page))
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

async fn issues(State(d): Data, Query(q): Params) -> Response {
    let items = since(d.lock().unwrap().issues.clone(), &q);
    paged("/issues", &q, items, |page, _| Value::Array(page))
}

async fn search(State(d): Data, Query(q): Params) -> Response {
    let query = q.get("q").cloned().unwrap_or_default();
    let mut items = newest_first(d.lock().unwrap().pulls.clone(), "updated_at");
    for term in query.split_whitespace() {
        if let Some(author) = term.strip_prefix("author:")
            && author != LOGIN
        {
            items.clear();
        }
        if let Some(t) = term.strip_prefix("updated:>=") {
            items.retain(|i| i["updated_at"].as_str() >= Some(t));
        }
        if let Some(t) = term.strip_prefix("updated:<") {
            items.retain(|i| i["updated_at"].as_str() < Some(t));
        }
    }
    paged(
        "/search/issues",
        &q,
        items,
        |page, total| json!({ "total_count": total, "incomplete_results": false, "items": page }),
    )
}

async fn gists(State(d): Data, Query(q): Params) -> Response {
    let (items, looping) = {
        let d = d.lock().unwrap();
        (since(d.gists.clone(), &q), d.loop_gists)
    };
    if looping && q.get("page").map(String::as_str) == Some("3") {
        let slice: Vec<Value> = items.into_iter().skip(2 * PAGE).take(PAGE).collect();
        return json_with(
            StatusCode::OK,
            &[("link", link("/gists", &q, 2, "next"))],
            Value::Array(slice),
        );
    }
    paged("/gists", &q, items, |page, _| Value::Array(page))
}

pub fn start(data: GitHub) -> Double<GitHub> {
    let routes = Router::new()
        .route("/user", get(user))
        .route("/user/repos", get(repos))
        .route("/user/starred", get(starred))
        .route("/issues", get(issues))
        .route("/search/issues", get(search))
        .route("/gists", get(gists));
    Double::start(API, TOKEN, data, routes)
}

fn first_sync_counts() -> Vec<(&'static str, usize)> {
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
