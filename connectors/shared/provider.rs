//! Code shared by the provider connectors (GitHub, Notion, Oura). Each crate
//! includes this file with `#[path]`, so every plugin stays one crate with no
//! dependency beyond the SDK.
//!
//! What lives here is the run's error policy, which is the same for every
//! provider:
//!
//! - a refused credential (401/403) ends the whole run: DONE `failed`, code
//!   `credential_rejected`, recovery `refresh_credentials`;
//! - a rate limit is waited out while the wait fits the budget; past it the
//!   stream is skipped (SKIP_RESULT `rate_limited`, `retry_by_runtime`) and
//!   keeps its previous cursor;
//! - anything else that stops one stream (a looping or malformed page, a
//!   server that keeps failing) is a certified stream-scoped failure: a
//!   SKIP_RESULT `stream_collection_failed` for that stream, the other
//!   streams carry on, and DONE is `failed` with code
//!   `stream_collection_failed` so their checkpoints still commit.

#![allow(dead_code)]

use pdpp_sdk::http::{HttpError, Request, Response, Retry};
use pdpp_sdk::{Failure, Recovery, Run, Secret, Skip, StreamScope, Value, serde_json};
use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Retries of a credential probe's one request: a short wait for a provider
/// hiccup, well inside the host's 30 s probe cap.
pub const PROBE_RETRY: Retry = Retry {
    max_attempts: 3,
    base_delay: Duration::from_millis(500),
    budget: Duration::from_secs(20),
};

/// Why one stream stopped early.
#[derive(Clone, Debug)]
pub enum Stop {
    /// The run cannot go on (credential refused, egress refused, SDK error).
    Run(Failure),
    /// The provider's rate limit lasts longer than the connector may wait.
    RateLimited(String),
    /// This stream could not be collected; its siblings still can.
    Stream(String),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Stop::Run(f)
    }
}

/// An authenticated client for one provider API.
pub struct Api {
    /// The provider's name, for messages.
    pub provider: &'static str,
    token: Secret,
    headers: Vec<(&'static str, String)>,
    /// The most time one request may spend waiting and retrying.
    pub budget: Duration,
    pub max_attempts: u32,
    pub base_delay: Duration,
}

/// What a non-2xx answer means.
enum Answer {
    RateLimited(Option<Duration>),
    Credential,
    Transient,
    Unexpected,
}

impl Api {
    pub fn new(provider: &'static str, token: Secret) -> Self {
        Api {
            provider,
            token,
            headers: Vec::new(),
            budget: Duration::from_secs(90),
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
        }
    }

    /// A header sent with every request.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Send with the credential and the common headers, retrying rate limits,
    /// 5xx answers and transport failures while the waits fit the budget.
    pub fn send(&self, req: Request) -> Result<Response, Stop> {
        let mut req = req.bearer(&self.token);
        for (name, value) in &self.headers {
            // A header the request sets itself wins over the common one.
            if !req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
                req = req.header(name, value);
            }
        }
        let what = format!("{} {}", req.method, path_of(&req.url));
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let backoff = self.base_delay * 2u32.saturating_pow(attempt - 1);
            let (wait, give_up) = match req.send() {
                Ok(resp) if (200..300).contains(&resp.status) => return Ok(resp),
                Ok(resp) => match classify(&resp) {
                    Answer::RateLimited(wait) => (
                        wait.unwrap_or(backoff),
                        Stop::RateLimited(format!(
                            "{} rate-limited {what} longer than the connector may wait; the runtime should retry later",
                            self.provider
                        )),
                    ),
                    Answer::Credential => return Err(Stop::Run(self.rejected(resp.status, &what))),
                    Answer::Transient => (
                        backoff,
                        Stop::Stream(format!(
                            "{} kept answering HTTP {} to {what}",
                            self.provider, resp.status
                        )),
                    ),
                    Answer::Unexpected => {
                        return Err(Stop::Stream(format!(
                            "{} answered HTTP {} to {what}",
                            self.provider, resp.status
                        )));
                    }
                },
                Err(HttpError::Transport(why)) => (backoff, Stop::Stream(format!("{what} failed on the way: {why}"))),
                Err(e) => return Err(Stop::Run(Failure::from(e))),
            };
            if attempt >= self.max_attempts || started.elapsed() + wait > self.budget {
                return Err(give_up);
            }
            std::thread::sleep(wait);
        }
    }

    /// GET a URL and parse the JSON body; a body that is not JSON fails the stream.
    pub fn get_json(&self, url: &str) -> Result<(Response, Value), Stop> {
        let resp = self.send(pdpp_sdk::http::get(url))?;
        let value = parse_json(&resp, &format!("GET {}", path_of(url)))?;
        Ok((resp, value))
    }

    fn rejected(&self, status: u16, what: &str) -> Failure {
        Failure::new(format!(
            "{} refused the stored credential (HTTP {status} on {what}): it was revoked, expired or lacks a \
             permission; enter a new token",
            self.provider
        ))
        .code("credential_rejected")
        .recovery(Recovery::RefreshCredentials)
        .retryable(false)
    }
}

pub fn parse_json(resp: &Response, what: &str) -> Result<Value, Stop> {
    serde_json::from_slice(&resp.body).map_err(|e| Stop::Stream(format!("{what} answered with malformed JSON: {e}")))
}

fn classify(resp: &Response) -> Answer {
    let retry_after = resp
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let reset = resp
        .header("x-ratelimit-reset")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|at| Duration::from_secs(at.saturating_sub(unix_now()).max(1)));
    let exhausted = resp.header("x-ratelimit-remaining").map(str::trim) == Some("0");
    match resp.status {
        429 => Answer::RateLimited(retry_after.or(reset)),
        // GitHub answers an exhausted primary or secondary limit with 403.
        403 if exhausted || retry_after.is_some() => Answer::RateLimited(retry_after.or(reset)),
        401 | 403 => Answer::Credential,
        408 | 500..=599 => Answer::Transient,
        _ => Answer::Unexpected,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The path and query of a URL, for messages (never carries a secret: the
/// credential travels in a header).
pub fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// Guards a paginated listing: a next page seen before, or more pages than
/// any real account has, fails the stream instead of looping.
pub struct Pages {
    what: String,
    seen: HashSet<String>,
    max: usize,
}

impl Pages {
    pub fn new(what: impl Into<String>, max: usize) -> Self {
        Pages {
            what: what.into(),
            seen: HashSet::new(),
            max,
        }
    }

    /// Note the token of the page about to be read.
    pub fn visit(&mut self, token: &str) -> Result<(), Stop> {
        if !self.seen.insert(token.to_owned()) {
            return Err(Stop::Stream(format!(
                "{}: pagination loops (page {token} was already read)",
                self.what
            )));
        }
        if self.seen.len() > self.max {
            return Err(Stop::Stream(format!("{}: more than {} pages", self.what, self.max)));
        }
        Ok(())
    }

    pub fn count(&self) -> usize {
        self.seen.len()
    }
}

/// Report how one stream ended. Only a run-wide stop is returned as an error;
/// a stream-scoped one is reported and remembered in `failed`.
pub fn settle(run: &mut Run, stream: &str, result: Result<(), Stop>, failed: &mut Vec<String>) -> Result<(), Failure> {
    match result {
        Ok(()) => Ok(()),
        Err(Stop::Run(failure)) => Err(failure),
        Err(Stop::RateLimited(message)) => run.skip(
            Skip::stream(stream, "rate_limited")
                .message(message)
                .recovery(Recovery::RetryByRuntime, Some(true)),
        ),
        Err(Stop::Stream(message)) => {
            failed.push(stream.to_owned());
            run.skip(
                Skip::stream(stream, "stream_collection_failed")
                    .message(message)
                    .recovery(Recovery::RetryByRuntime, Some(true)),
            )
        }
    }
}

/// DONE for a run whose streams have all been settled.
pub fn conclude(failed: &[String]) -> Result<(), Failure> {
    if failed.is_empty() {
        return Ok(());
    }
    Err(Failure::new(format!(
        "could not collect {}; the other streams were collected and keep their checkpoints",
        failed.join(", ")
    ))
    .code("stream_collection_failed")
    .retryable(true)
    .recovery(Recovery::RetryByRuntime))
}

/// Whether a record passes the scope: its key among the allowed resources,
/// and, when the scope has a time window, its consent time inside it.
pub fn allowed(scope: &StreamScope, key: &str, time: Option<&str>) -> bool {
    if !scope.allows_resource(key) {
        return false;
    }
    let Some(window) = &scope.time_range else {
        return true;
    };
    let Some(t) = time.and_then(unix_seconds) else {
        return false;
    };
    window.since.as_deref().and_then(unix_seconds).is_none_or(|s| s <= t)
        && window.until.as_deref().and_then(unix_seconds).is_none_or(|u| t < u)
}

/// Whether timestamp `a` is strictly later than `b` (RFC 3339 or a date;
/// unparseable values compare as text).
pub fn later(a: &str, b: &str) -> bool {
    match (unix_seconds(a), unix_seconds(b)) {
        (Some(x), Some(y)) => x > y,
        _ => a > b,
    }
}

/// The later of two optional timestamps.
pub fn latest(a: Option<String>, b: Option<&str>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) if later(b, &a) => Some(b.to_owned()),
        (Some(a), _) => Some(a),
        (None, b) => b.map(str::to_owned),
    }
}

/// Seconds since the epoch of `YYYY-MM-DD` or
/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (fractions dropped).
pub fn unix_seconds(t: &str) -> Option<i64> {
    let t = t.trim();
    let num = |s: &str| -> Option<i64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let date = t.get(..10)?;
    let (y, m, d) = (num(date.get(..4)?)?, num(date.get(5..7)?)?, num(date.get(8..10)?)?);
    if date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if t.len() == 10 {
        return Some(days * 86_400);
    }
    let rest = t.get(10..)?;
    if !rest.starts_with(['T', 't', ' ']) {
        return None;
    }
    let clock = rest.get(1..9)?;
    let (hh, mm, ss) = (num(clock.get(..2)?)?, num(clock.get(3..5)?)?, num(clock.get(6..8)?)?);
    let mut zone = rest.get(9..)?;
    if let Some(frac) = zone.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        zone = &frac[digits..];
    }
    let offset = match zone {
        "Z" | "z" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) => {
            let secs = num(&z[1..3])? * 3_600 + num(&z[4..6])? * 60;
            if z.starts_with('-') { -secs } else { secs }
        }
        _ => return None,
    };
    Some(days * 86_400 + hh * 3_600 + mm * 60 + ss - offset)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Percent-encode a query parameter value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON value as a record key (strings as they are, numbers in decimal).
pub fn key_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_with_fractions_offsets_and_bare_dates() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2026-01-01T00:00:00.000Z"), Some(1_767_225_600));
        assert_eq!(unix_seconds("2026-01-01T01:00:00+01:00"), Some(1_767_225_600));
        assert_eq!(unix_seconds("2025-12-31T23:00:00-01:00"), Some(1_767_225_600));
        assert_eq!(unix_seconds("2026-01-01"), Some(1_767_225_600));
        assert_eq!(unix_seconds("2026-13-01"), None);
        assert_eq!(unix_seconds("yesterday"), None);
    }

    #[test]
    fn later_compares_instants_not_text() {
        assert!(later("2026-01-01T00:00:01Z", "2026-01-01T00:00:00.000Z"));
        assert!(!later("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00Z"));
        assert!(!later("2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00Z"));
        assert_eq!(
            latest(Some("2026-01-02".into()), Some("2026-01-01")),
            Some("2026-01-02".into())
        );
        assert_eq!(latest(None, Some("2026-01-01")), Some("2026-01-01".into()));
    }

    #[test]
    fn pages_refuse_a_token_seen_before_and_endless_listings() {
        let mut pages = Pages::new("GET /x", 3);
        assert!(pages.visit("a").is_ok() && pages.visit("b").is_ok());
        assert!(matches!(pages.visit("a"), Err(Stop::Stream(m)) if m.contains("loops")));
        assert!(pages.visit("c").is_ok());
        assert!(matches!(pages.visit("d"), Err(Stop::Stream(m)) if m.contains("more than 3")));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode("type:pr author:me updated:>=2026-01-01T00:00:00Z"),
            "type%3Apr%20author%3Ame%20updated%3A%3E%3D2026-01-01T00%3A00%3A00Z"
        );
        assert_eq!(
            path_of("https://api.github.com/user/repos?page=2"),
            "/user/repos?page=2"
        );
    }
}
