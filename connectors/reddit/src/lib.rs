//! Reddit, through the host's browser: the owner's saved items, submitted
//! posts and comments.
//!
//! Reddit has no personal-data API a person can use without registering an
//! app, so this connector signs in as the owner would: in the browser the
//! host holds for the run, with the connection's username and password
//! (typed by the host from secret handles; the connector never holds them).
//! A one-time code is asked of the owner (INTERACTION `otp`), a challenge
//! page (a captcha, a "verify you are human" check) is shown to the owner
//! (INTERACTION `manual_action`, with the host's screenshot). The sign-in
//! survives between runs in the connection's sealed browser profile.
//!
//! Once signed in, the account the browser is in (the name old.reddit.com
//! shows next to its logout link) is reported before any record. The data
//! is read from old.reddit.com's `.json` listings as the browser shows them
//! (the text of the page's `<pre>`), newest first, paged by `after`. A
//! listing refused because Reddit ended the session is read again after one
//! more sign-in per run.
//!
//! Cursors: `submitted` and `comments` keep the creation time of the newest
//! item collected and stop at it; `saved` is ordered by when an item was
//! saved, not created, so it keeps the ids of the first items of the last
//! run and stops at the first of them it meets again.

use pdpp_sdk::browser::Browser;
use pdpp_sdk::{
    Answer, BrowserError, Connector, Failure, InteractError, Interaction, InteractionKind, Recovery, Run, Value,
    export_connector, json,
};
use std::time::Duration;

const WWW: &str = "https://www.reddit.com";
const OLD: &str = "https://old.reddit.com";

/// The login form.
const USERNAME_INPUT: &str = "input[name=username]";
const PASSWORD_INPUT: &str = "input[name=password]";
const SUBMIT: &str = "button[type=submit]";
/// The one-time-code step of the login.
const OTP_INPUT: &str = "input[name=otp], input[autocomplete=one-time-code]";
/// What the login form shows when it refuses the username, password or code.
const LOGIN_ERROR: &str = ".login-error, [data-login-error]";
/// A challenge page: a captcha, or a check that a person is there.
const CHALLENGE: &str = "#challenge-form, #challenge-running, .g-recaptcha, .h-captcha";
/// old.reddit.com when signed in: the account's name and the logout link.
const SIGNED_IN: &str = "#header-bottom-right form.logout";
const ACCOUNT_NAME: &str = "#header-bottom-right .user a";
/// Anything the login may come to after a submit.
const LOGIN_OUTCOMES: &str = "input[name=otp], input[autocomplete=one-time-code], .login-error, [data-login-error], \
                              #challenge-form, #challenge-running, .g-recaptcha, .h-captcha";

/// Items per listing page (Reddit serves at most 100; a page must fit one
/// browser read of 1 MiB).
const PAGE_SIZE: u32 = 50;
/// Items per page when a page of `PAGE_SIZE` was too large to read.
const SMALL_PAGE_SIZE: u32 = 10;
/// Listing pages read at most per stream and run.
const MAX_PAGES: u32 = 100;
/// Text kept of a post's or comment's body.
const MAX_BODY_CHARS: usize = 10_000;
/// `saved`: how many of the newest ids the cursor keeps.
const SAVED_MARKERS: usize = 5;
/// Sign-ins tried at most in one run.
const MAX_SIGN_INS: u32 = 3;
/// Challenges shown to the owner at most in one run.
const MAX_CHALLENGES: u32 = 3;

struct Reddit;

/// What a run spent on signing in.
#[derive(Default)]
struct Login {
    /// Challenges shown to the owner.
    challenges: u32,
    /// Whether the run signed in again after Reddit ended its session.
    signed_in_again: bool,
}

impl Connector for Reddit {
    fn run(run: &mut Run) -> Result<(), Failure> {
        let browser = run.browser();
        let mut login = Login::default();
        let account = signed_in_account(run, &browser, &mut login.challenges)?;
        browser.session_account(&account)?;
        for stream in ["saved", "submitted", "comments"] {
            if run.in_scope(stream) {
                collect(run, &browser, &account, stream, &mut login)?;
            }
        }
        Ok(())
    }
}

export_connector!(Reddit);

/// The account old.reddit.com shows the browser signed into, signing in
/// first when it is not.
fn signed_in_account(run: &mut Run, browser: &Browser, challenges: &mut u32) -> Result<String, Failure> {
    let mut sign_ins = 0;
    loop {
        browser.navigate(&format!("{OLD}/"))?;
        if browser.is_present(CHALLENGE)? {
            owner_clears_challenge(run, challenges)?;
            continue;
        }
        if browser.is_present(SIGNED_IN)? {
            let name = browser.text(ACCOUNT_NAME)?;
            let name = name.trim().trim_start_matches("u/").to_owned();
            if name.is_empty() {
                return Err(page_changed(
                    "old.reddit.com shows no account name next to its logout link",
                ));
            }
            return Ok(name);
        }
        if sign_ins == MAX_SIGN_INS {
            return Err(Failure::new(format!(
                "old.reddit.com still shows no signed-in account after {MAX_SIGN_INS} sign-ins"
            ))
            .code("login_failed")
            .recovery(Recovery::RetryByRuntime)
            .retryable(true));
        }
        sign_ins += 1;
        sign_in(run, browser, challenges)?;
    }
}

/// What the login page came to after a submit.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Refused,
    Otp,
    Challenge,
    Done,
}

/// Sign in at www.reddit.com/login with the connection's credential.
fn sign_in(run: &mut Run, browser: &Browser, challenges: &mut u32) -> Result<(), Failure> {
    loop {
        browser.navigate(&format!("{WWW}/login/"))?;
        if browser.is_present(CHALLENGE)? {
            owner_clears_challenge(run, challenges)?;
            continue;
        }
        break;
    }
    browser.wait_for(USERNAME_INPUT, Duration::from_secs(30))?;
    let username = run.secret("username")?;
    let password = run.secret("password")?;
    browser.fill_secret(USERNAME_INPUT, &username)?;
    browser.fill_secret(PASSWORD_INPUT, &password)?;
    browser.click(SUBMIT)?;
    match outcome(browser)? {
        Outcome::Done => Ok(()),
        Outcome::Challenge => owner_clears_challenge(run, challenges),
        Outcome::Refused => Err(
            Failure::new("Reddit refused the username or password of this connection")
                .code("credential_rejected")
                .recovery(Recovery::RefreshCredentials)
                .retryable(false),
        ),
        Outcome::Otp => {
            let code = one_time_code(run)?;
            browser.fill(OTP_INPUT, &code)?;
            browser.click(SUBMIT)?;
            match outcome(browser)? {
                Outcome::Done => Ok(()),
                Outcome::Challenge => owner_clears_challenge(run, challenges),
                Outcome::Refused | Outcome::Otp => Err(Failure::new("Reddit refused the one-time code")
                    .code("otp_rejected")
                    .recovery(Recovery::ManualActionRequired)
                    .retryable(true)),
            }
        }
    }
}

/// Wait until the login page shows where a submit led: an error, the code
/// step, a challenge, or somewhere off the login pages.
fn outcome(browser: &Browser) -> Result<Outcome, Failure> {
    for _ in 0..60 {
        if browser.is_present(LOGIN_ERROR)? {
            return Ok(Outcome::Refused);
        }
        if browser.is_present(OTP_INPUT)? {
            return Ok(Outcome::Otp);
        }
        if browser.is_present(CHALLENGE)? {
            return Ok(Outcome::Challenge);
        }
        let page = browser.current()?;
        if !path_of(&page.url).starts_with("/login") {
            return Ok(Outcome::Done);
        }
        match browser.wait_for(LOGIN_OUTCOMES, Duration::from_millis(500)) {
            Ok(()) | Err(BrowserError::Timeout | BrowserError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(Failure::new("the login page never showed where the sign-in led")
        .code("browser_timeout")
        .recovery(Recovery::RetryByRuntime)
        .retryable(true))
}

/// The path of a URL (`https://host/path?query` → `/path`).
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("/")
}

/// Ask the owner for the login's one-time code.
fn one_time_code(run: &mut Run) -> Result<String, Failure> {
    let ask = Interaction::otp("Reddit asks for the 6-digit code of this account's two-factor authentication")
        .schema(json!({
            "type": "object",
            "required": ["code"],
            "properties": { "code": { "type": "string", "pattern": "^[0-9]{6}$" } }
        }))
        .timeout_seconds(300);
    match run.interact(ask) {
        Ok(Answer::Success(data)) => match data.get("code").and_then(Value::as_str) {
            Some(code) => Ok(code.trim().to_owned()),
            None => Err(Failure::new("the answer carried no code")
                .code("otp_not_provided")
                .recovery(Recovery::ManualActionRequired)
                .retryable(true)),
        },
        Ok(Answer::Cancelled | Answer::Timeout) => Err(Failure::new("no one-time code was given for the Reddit login")
            .code("otp_not_provided")
            .recovery(Recovery::ManualActionRequired)
            .retryable(true)),
        Err(e) => Err(needs_owner("a one-time code (otp) for the Reddit login", &e)),
    }
}

/// Show the owner the challenge page (the host attaches a screenshot) and
/// wait until they say it is cleared.
fn owner_clears_challenge(run: &mut Run, challenges: &mut u32) -> Result<(), Failure> {
    if *challenges == MAX_CHALLENGES {
        return Err(
            Failure::new(format!("Reddit still shows a challenge after {MAX_CHALLENGES} tries"))
                .code("challenge_not_cleared")
                .recovery(Recovery::ManualActionRequired)
                .retryable(true),
        );
    }
    *challenges += 1;
    let ask = Interaction::new(
        InteractionKind::ManualAction,
        "Reddit shows a challenge (a captcha or a check that a person is signing in) before it lets this \
         connection sign in. The screenshot shows the page. Clear it (for example by signing in to Reddit \
         once from your own browser), then answer to try again.",
    )
    .timeout_seconds(1800);
    match run.interact(ask) {
        Ok(Answer::Success(_)) => Ok(()),
        Ok(Answer::Cancelled | Answer::Timeout) => Err(Failure::new("the Reddit challenge was not cleared")
            .code("challenge_not_cleared")
            .recovery(Recovery::ManualActionRequired)
            .retryable(true)),
        Err(e) => Err(needs_owner(
            "the owner to clear a challenge (manual_action) on the Reddit login",
            &e,
        )),
    }
}

/// DONE failed when nobody can be asked: names what was needed.
fn needs_owner(what: &str, e: &InteractError) -> Failure {
    Failure::new(format!("the run needs {what}, and {e}"))
        .code("owner_input_required")
        .recovery(Recovery::ManualActionRequired)
        .retryable(false)
}

fn page_changed(message: &str) -> Failure {
    Failure::new(message)
        .code("page_changed")
        .recovery(Recovery::UpdateSelector)
        .retryable(false)
}

/// Where a stream's listing stops.
enum Stop {
    /// Items created at or before this time (seconds) were collected.
    CreatedBy(f64),
    /// Any of these ids was collected (and what follows it).
    Seen(Vec<String>),
    Nothing,
}

/// Collect one stream, newest first, from its cursor on.
fn collect(run: &mut Run, browser: &Browser, account: &str, stream: &str, login: &mut Login) -> Result<(), Failure> {
    let cursor = run.cursor::<Value>(stream)?;
    let stop = match (stream, &cursor) {
        ("saved", Some(c)) => Stop::Seen(
            c.get("newest_ids")
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
        ),
        (_, Some(c)) => c
            .get("last_created_utc")
            .and_then(Value::as_f64)
            .map_or(Stop::Nothing, Stop::CreatedBy),
        (_, None) => Stop::Nothing,
    };
    let sort = if stream == "saved" { "" } else { "&sort=new" };
    let mut after: Option<String> = None;
    let mut newest_created: Option<f64> = None;
    let mut newest_ids: Vec<String> = Vec::new();
    let mut collected = 0u64;
    'pages: for _ in 0..MAX_PAGES {
        let listing = match listing_page(browser, account, stream, sort, after.as_deref()) {
            // Reddit ended the session mid-run: sign in again, once per run,
            // as the same account, and read the page again.
            Err(f) if f.code.as_deref() == Some("session_expired") && !login.signed_in_again => {
                login.signed_in_again = true;
                let again = signed_in_account(run, browser, &mut login.challenges)?;
                if again != account {
                    return Err(Failure::new(
                        "after signing in again, old.reddit.com shows another account than the run reported",
                    )
                    .code("session_account_changed")
                    .recovery(Recovery::RefreshCredentials)
                    .retryable(false));
                }
                listing_page(browser, account, stream, sort, after.as_deref())?
            }
            other => other?,
        };
        let data = &listing["data"];
        let children = data["children"].as_array().cloned().unwrap_or_default();
        for child in &children {
            let item = &child["data"];
            let kind = child["kind"].as_str().unwrap_or_default();
            let Some(id) = item["name"].as_str().map(str::to_owned) else {
                continue;
            };
            let created = item["created_utc"].as_f64().unwrap_or(0.0);
            match &stop {
                Stop::CreatedBy(t) if created <= *t => break 'pages,
                Stop::Seen(ids) if ids.contains(&id) => break 'pages,
                _ => {}
            }
            if newest_ids.len() < SAVED_MARKERS {
                newest_ids.push(id.clone());
            }
            newest_created = Some(newest_created.map_or(created, |n: f64| n.max(created)));
            let record = match stream {
                "submitted" => post(item),
                "comments" => comment(item),
                _ => saved(kind, item),
            };
            run.record(stream, id, &record)?;
            collected += 1;
        }
        run.progress(Some(stream), "listing page read", Some(collected), None);
        after = data["after"].as_str().filter(|a| !a.is_empty()).map(str::to_owned);
        if children.is_empty() || after.is_none() {
            break;
        }
    }
    let next = match (stream, stop) {
        ("saved", Stop::Seen(old)) if newest_ids.is_empty() => Some(json!({ "newest_ids": old })),
        ("saved", _) if newest_ids.is_empty() => None,
        ("saved", _) => Some(json!({ "newest_ids": newest_ids })),
        (_, Stop::CreatedBy(t)) => Some(json!({ "last_created_utc": newest_created.map_or(t, |n| n.max(t)) })),
        (_, _) => newest_created.map(|n| json!({ "last_created_utc": n })),
    };
    if let Some(next) = next {
        run.checkpoint(stream, &next)?;
    }
    Ok(())
}

/// One listing page, read from what the browser shows for the `.json` URL.
fn listing_page(
    browser: &Browser,
    account: &str,
    stream: &str,
    sort: &str,
    after: Option<&str>,
) -> Result<Value, Failure> {
    let after = after.map(|a| format!("&after={a}")).unwrap_or_default();
    let mut limit = PAGE_SIZE;
    loop {
        let url = format!("{OLD}/user/{account}/{stream}.json?limit={limit}&raw_json=1{sort}{after}");
        browser.navigate(&url)?;
        let text = match browser.text("pre") {
            Ok(text) => text,
            Err(BrowserError::TooLarge(_)) if limit > SMALL_PAGE_SIZE => {
                limit = SMALL_PAGE_SIZE;
                continue;
            }
            Err(BrowserError::NotFound(_)) => {
                // Not JSON: a login or challenge page instead of the listing.
                return Err(Failure::new(format!(
                    "old.reddit.com answered the {stream} listing with a page, not JSON (signed out?)"
                ))
                .code("session_expired")
                .recovery(Recovery::RetryByRuntime)
                .retryable(true));
            }
            Err(e) => return Err(e.into()),
        };
        let listing: Value = serde_json_parse(&text, stream)?;
        if let Some(status) = listing.get("error").and_then(Value::as_u64) {
            return Err(listing_error(stream, status));
        }
        if listing["data"]["children"].as_array().is_none() {
            return Err(Failure::new(format!("the {stream} listing is not a Reddit listing"))
                .code("unexpected_response")
                .recovery(Recovery::RetryOnConnectorUpgrade)
                .retryable(false));
        }
        return Ok(listing);
    }
}

fn serde_json_parse(text: &str, stream: &str) -> Result<Value, Failure> {
    pdpp_sdk::serde_json::from_str(text).map_err(|_| {
        Failure::new(format!("the {stream} listing is not JSON"))
            .code("unexpected_response")
            .recovery(Recovery::RetryOnConnectorUpgrade)
            .retryable(false)
    })
}

/// Reddit's JSON error (`{"error": 403, "message": "Forbidden"}`) as DONE.
fn listing_error(stream: &str, status: u64) -> Failure {
    match status {
        401 | 403 => Failure::new(format!(
            "Reddit refused the {stream} listing ({status}): the session ended"
        ))
        .code("session_expired")
        .recovery(Recovery::RetryByRuntime)
        .retryable(true),
        429 => Failure::new(format!("Reddit is rate limiting the {stream} listing"))
            .code("rate_limited")
            .recovery(Recovery::RetryByRuntime)
            .retryable(true),
        _ => Failure::new(format!("Reddit answered the {stream} listing with {status}"))
            .code("upstream_error")
            .recovery(Recovery::RetryByRuntime)
            .retryable(true),
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// A body cut to `MAX_BODY_CHARS` characters, and its full length.
fn body(v: &Value) -> (String, usize) {
    let full = v.as_str().unwrap_or_default();
    (full.chars().take(MAX_BODY_CHARS).collect(), full.chars().count())
}

fn created(item: &Value) -> String {
    pdpp_sdk::time::format_unix(item["created_utc"].as_f64().unwrap_or(0.0) as i64)
}

fn permalink(item: &Value) -> String {
    let p = item["permalink"].as_str().unwrap_or_default();
    if p.starts_with('/') {
        format!("{WWW}{p}")
    } else {
        p.to_owned()
    }
}

fn post(item: &Value) -> Value {
    let (selftext, selftext_len) = body(&item["selftext"]);
    json!({
        "id": text(&item["name"]),
        "subreddit": text(&item["subreddit"]),
        "title": text(&item["title"]),
        "permalink": permalink(item),
        "url": text(&item["url"]),
        "domain": text(&item["domain"]),
        "selftext": selftext,
        "selftext_len": selftext_len,
        "is_self": item["is_self"].as_bool().unwrap_or(false),
        "over_18": item["over_18"].as_bool().unwrap_or(false),
        "score": item["score"].as_i64().unwrap_or(0),
        "num_comments": item["num_comments"].as_i64().unwrap_or(0),
        "upvote_ratio": item["upvote_ratio"].as_f64(),
        "gilded": item["gilded"].as_i64().unwrap_or(0),
        "created_utc": created(item),
    })
}

fn comment(item: &Value) -> Value {
    let (body, body_len) = body(&item["body"]);
    let link_id = text(&item["link_id"]);
    let parent_id = text(&item["parent_id"]);
    json!({
        "id": text(&item["name"]),
        "subreddit": text(&item["subreddit"]),
        "body": body,
        "body_len": body_len,
        "link_id": link_id,
        "link_title": text(&item["link_title"]),
        "parent_id": parent_id,
        "is_top_level": parent_id == link_id,
        "permalink": permalink(item),
        "score": item["score"].as_i64().unwrap_or(0),
        "gilded": item["gilded"].as_i64().unwrap_or(0),
        "created_utc": created(item),
    })
}

fn saved(kind: &str, item: &Value) -> Value {
    let is_post = kind == "t3";
    let (body, body_len) = body(if is_post { &item["selftext"] } else { &item["body"] });
    json!({
        "id": text(&item["name"]),
        "kind": if is_post { "post" } else { "comment" },
        "is_post": is_post,
        "subreddit": text(&item["subreddit"]),
        "title": text(if is_post { &item["title"] } else { &item["link_title"] }),
        "body": body,
        "body_len": body_len,
        "permalink": permalink(item),
        "url": text(if is_post { &item["url"] } else { &item["link_url"] }),
        "created_utc": created(item),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_of_a_declared_url() {
        assert_eq!(path_of("https://www.reddit.com/login/otp?x=1"), "/login/otp");
        assert_eq!(path_of("https://www.reddit.com"), "/");
        assert_eq!(path_of("https://old.reddit.com/#top"), "/");
    }

    #[test]
    fn a_comment_at_the_top_of_a_thread_is_top_level() {
        let c = comment(&json!({
            "name": "t1_a", "link_id": "t3_p", "parent_id": "t3_p", "body": "hi",
            "permalink": "/r/rust/comments/p/x/a/", "created_utc": 951782400.0
        }));
        assert_eq!(c["is_top_level"], true);
        assert_eq!(c["permalink"], "https://www.reddit.com/r/rust/comments/p/x/a/");
        assert_eq!(c["created_utc"], "2000-02-29T00:00:00Z");
    }

    #[test]
    fn a_long_body_is_cut_and_its_length_kept() {
        let long = "é".repeat(MAX_BODY_CHARS + 5);
        let p = post(&json!({ "name": "t3_a", "selftext": long }));
        assert_eq!(p["selftext"].as_str().unwrap().chars().count(), MAX_BODY_CHARS);
        assert_eq!(p["selftext_len"], MAX_BODY_CHARS + 5);
    }
}
