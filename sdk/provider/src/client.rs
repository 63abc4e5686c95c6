//! [`Api`]: an authenticated client for one provider, and the retry policy.
//!
//! Every non-2xx answer is read by [`classify`] from the signals providers
//! document, headers and body alike, never from the status alone:
//!
//! - **rate limits**: 429; a 403 with `Retry-After`; a 403 with
//!   `x-ratelimit-remaining: 0` (wait until `x-ratelimit-reset`); a 403
//!   whose body says the caller hit a rate limit or an abuse-detection
//!   mechanism (GitHub's *secondary* rate limit, which may carry neither
//!   header: "wait at least one minute");
//! - **a refused credential**: 401 only;
//! - **forbidden**: any other 403. A 403 says the credential was recognised
//!   but something (a scope, an organisation's SSO, a lapsed membership)
//!   keeps this one resource from it, so it never rejects the credential:
//!   the stream is skipped for the owner to look at, and the next run tries
//!   it again.

use crate::stop::Stop;
use pdpp_sdk::http::{self, HttpError, Request, Response, Retry};
use pdpp_sdk::{Failure, ProbeError, Recovery, Secret, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Retries of a credential probe's one request: a short wait for a provider
/// hiccup, well inside the host's 30 s probe cap.
pub const PROBE_RETRY: Retry = Retry {
    max_attempts: 3,
    base_delay: Duration::from_millis(500),
    budget: Duration::from_secs(20),
};

/// How long to wait after a rate limit that names no time. GitHub documents
/// "wait at least one minute" for a secondary rate limit without
/// `Retry-After` or `x-ratelimit-reset`.
pub const UNTIMED_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The most of a provider's error message a skip or failure repeats.
const MESSAGE_CHARS: usize = 200;

/// An authenticated client for one provider API: the token travels as a
/// secret placeholder in `Authorization: Bearer`, with the provider's
/// common headers on every request.
pub struct Api {
    /// The provider's name, for messages.
    pub provider: &'static str,
    token: Secret,
    headers: Vec<(&'static str, String)>,
    /// The most time one request may spend waiting and retrying.
    pub budget: Duration,
    /// Attempts per request, the first one included.
    pub max_attempts: u32,
    /// The first backoff; each later one doubles it.
    pub base_delay: Duration,
    /// The longest single wait a run sits through; a rate limit that asks
    /// for more ends the stream at once (SKIP_RESULT `rate_limited` with
    /// the wait), for a later run, instead of stalling this one.
    pub max_wait: Duration,
}

/// What a non-2xx answer means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A rate limit: wait this long (or back off when `None`) and try again.
    RateLimited(Option<Duration>),
    /// 401: the credential is refused; the run stops.
    Credential,
    /// A 403 that is not a rate limit: this resource is out of the
    /// credential's reach (with the provider's message, cut short).
    Forbidden(String),
    /// Worth retrying.
    Transient,
    /// Not worth retrying; the stream fails.
    Unexpected,
}

/// Why an exchange with retries ended without a 2xx answer.
enum Gave {
    /// A verdict that no retry mends, with the status it came from.
    Up(Verdict, u16),
    /// Retries ran out (or the next wait did not fit the budget) on this
    /// verdict or transport failure; `wait` is the wait that did not fit.
    Out { last: Last, wait: Duration },
    /// The SDK could not send the request at all (refused egress, bad URL).
    Http(HttpError),
}

/// The last thing a request met before its retries ran out.
enum Last {
    RateLimited,
    Status(u16),
    Transport(String),
}

impl Api {
    /// A client for `provider` with its token, a 90 s budget per request and
    /// six attempts starting at 500 ms.
    pub fn new(provider: &'static str, token: Secret) -> Self {
        Api {
            provider,
            token,
            headers: Vec::new(),
            budget: Duration::from_secs(90),
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
        }
    }

    /// A header sent with every request (a request's own header of the same
    /// name wins).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The request with the credential and the common headers.
    fn prepare(&self, req: Request) -> Request {
        let mut req = req.bearer(&self.token);
        for (name, value) in &self.headers {
            if !req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
                req = req.header(name, value);
            }
        }
        req
    }

    /// Send `req` until a 2xx answer, retrying rate limits, 408/5xx answers
    /// and transport failures while the attempts and waits fit `retry` and
    /// no single wait is longer than `max_wait`.
    fn exchange(&self, req: &Request, retry: &Retry, max_wait: Duration) -> Result<Response, Gave> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let backoff = retry.base_delay * 2u32.saturating_pow(attempt - 1);
            let (wait, last) = match req.send() {
                Ok(resp) if (200..300).contains(&resp.status) => return Ok(resp),
                Ok(resp) => match classify(&resp) {
                    Verdict::RateLimited(wait) => (wait.unwrap_or(backoff), Last::RateLimited),
                    Verdict::Transient => (backoff, Last::Status(resp.status)),
                    verdict => return Err(Gave::Up(verdict, resp.status)),
                },
                Err(HttpError::Transport(why)) => (backoff, Last::Transport(why)),
                Err(e) => return Err(Gave::Http(e)),
            };
            if attempt >= retry.max_attempts || wait > max_wait || started.elapsed() + wait > retry.budget {
                return Err(Gave::Out { last, wait });
            }
            std::thread::sleep(wait);
        }
    }

    /// Send with the credential and the common headers, retrying rate limits,
    /// 408/5xx answers and transport failures while the waits fit the budget
    /// and [`max_wait`](Api::max_wait) (see the crate documentation for what
    /// each outcome means).
    pub fn send(&self, req: Request) -> Result<Response, Stop> {
        let req = self.prepare(req);
        let what = format!("{} {}", req.method, path_of(&req.url));
        let retry = Retry {
            max_attempts: self.max_attempts,
            base_delay: self.base_delay,
            budget: self.budget,
        };
        self.exchange(&req, &retry, self.max_wait).map_err(|gave| match gave {
            Gave::Up(Verdict::Credential, status) => Stop::Run(self.rejected(status, &what)),
            Gave::Up(Verdict::Forbidden(said), status) => Stop::Forbidden(format!(
                "{} answered HTTP {status} to {what}: the token is accepted but may not read this ({said}); check \
                 its permissions",
                self.provider
            )),
            Gave::Up(_, status) => Stop::Stream(format!("{} answered HTTP {status} to {what}", self.provider)),
            Gave::Out {
                last: Last::RateLimited,
                wait,
            } => Stop::RateLimited {
                message: format!(
                    "{} rate-limited {what} longer than the connector may wait; the runtime should retry later",
                    self.provider
                ),
                retry_after: Some(wait),
            },
            Gave::Out {
                last: Last::Status(status),
                ..
            } => Stop::Stream(format!("{} kept answering HTTP {status} to {what}", self.provider)),
            Gave::Out {
                last: Last::Transport(why),
                ..
            } => Stop::Stream(format!("{what} failed on the way: {why}")),
            Gave::Http(e) => Stop::Run(Failure::from(e)),
        })
    }

    /// GET a URL and parse the JSON body; a body that is not JSON fails the stream.
    pub fn get_json(&self, url: &str) -> Result<(Response, Value), Stop> {
        let resp = self.send(http::get(url))?;
        let value = parse_json(&resp, &format!("GET {}", path_of(url)))?;
        Ok((resp, value))
    }

    /// The credential probe's one call: GET a URL with the candidate token
    /// and the common headers, retried per [`PROBE_RETRY`], parsed as JSON.
    /// The answer is read as a run's would be: 401 rejects the credential, a
    /// 403 that is not a rate limit finds a permission missing, and a rate
    /// limit, an outage or anything else means the provider could not be
    /// asked (so a rate-limited probe never refuses a good token).
    pub fn probe_json(&self, url: &str) -> Result<Value, ProbeError> {
        let req = self.prepare(http::get(url));
        let what = format!("GET {}", path_of(url));
        let resp = self
            .exchange(&req, &PROBE_RETRY, PROBE_RETRY.budget)
            .map_err(|gave| match gave {
                Gave::Up(Verdict::Credential, status) => {
                    ProbeError::Rejected(format!("{} answered HTTP {status} to {what}", self.provider))
                }
                Gave::Up(Verdict::Forbidden(said), status) => {
                    ProbeError::InsufficientScope(format!("{} answered HTTP {status} to {what}: {said}", self.provider))
                }
                Gave::Up(_, status) => {
                    ProbeError::Unavailable(format!("{} answered HTTP {status} to {what}", self.provider))
                }
                Gave::Out {
                    last: Last::RateLimited,
                    ..
                } => ProbeError::Unavailable(format!(
                    "{} rate-limited {what}; try again in a few minutes",
                    self.provider
                )),
                Gave::Out {
                    last: Last::Status(status),
                    ..
                } => ProbeError::Unavailable(format!("{} kept answering HTTP {status} to {what}", self.provider)),
                Gave::Out {
                    last: Last::Transport(why),
                    ..
                } => ProbeError::Unavailable(format!("{what} failed on the way: {why}")),
                Gave::Http(e) => ProbeError::from(e),
            })?;
        Ok(resp.json()?)
    }

    fn rejected(&self, status: u16, what: &str) -> Failure {
        Failure::new(format!(
            "{} refused the stored credential (HTTP {status} on {what}): it was revoked or expired; enter a new \
             token",
            self.provider
        ))
        .code("credential_rejected")
        .recovery(Recovery::RefreshCredentials)
        .retryable(false)
    }
}

/// A response body as JSON; a body that is not JSON fails the stream.
pub fn parse_json(resp: &Response, what: &str) -> Result<Value, Stop> {
    pdpp_sdk::serde_json::from_slice(&resp.body)
        .map_err(|e| Stop::Stream(format!("{what} answered with malformed JSON: {e}")))
}

/// What a non-2xx response means, from the signals providers document (see
/// the module documentation). GitHub answers an exhausted primary or a
/// secondary rate limit with 403 (or 429), sometimes with neither
/// `Retry-After` nor `x-ratelimit-remaining: 0` but a message saying so, so
/// a 403 is read with its headers and its body before anything else.
pub(crate) fn classify(resp: &Response) -> Verdict {
    let retry_after = resp
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let exhausted = resp.header("x-ratelimit-remaining").map(str::trim) == Some("0");
    let reset = resp
        .header("x-ratelimit-reset")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|at| Duration::from_secs(at.saturating_sub(unix_now()).max(1)));
    let until_reset = if exhausted { reset } else { None };
    match resp.status {
        429 => Verdict::RateLimited(retry_after.or(until_reset)),
        403 if retry_after.is_some() || exhausted => Verdict::RateLimited(retry_after.or(until_reset)),
        403 => match provider_message(resp) {
            said if says_rate_limited(&said) => Verdict::RateLimited(Some(UNTIMED_RATE_LIMIT_WAIT)),
            said => Verdict::Forbidden(said),
        },
        401 => Verdict::Credential,
        408 | 500..=599 => Verdict::Transient,
        _ => Verdict::Unexpected,
    }
}

/// Whether a provider's error message says the caller is being throttled:
/// GitHub's primary ("API rate limit exceeded") and secondary ("You have
/// exceeded a secondary rate limit") limits, and its older wording ("You
/// have triggered an abuse detection mechanism").
fn says_rate_limited(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("rate limit") || m.contains("rate-limit") || m.contains("abuse detection")
}

/// The provider's own words about an error: the JSON body's `message` (and
/// `documentation_url`, which names the rate-limit page), else the start of
/// the body as text; cut to [`MESSAGE_CHARS`] characters.
fn provider_message(resp: &Response) -> String {
    let parsed: Option<Value> = pdpp_sdk::serde_json::from_slice(&resp.body).ok();
    let text = match &parsed {
        Some(body) => {
            let message = body["message"].as_str().unwrap_or_default();
            match body["documentation_url"].as_str() {
                Some(doc) if !message.is_empty() => format!("{message} ({doc})"),
                Some(doc) => doc.to_owned(),
                None => message.to_owned(),
            }
        }
        None => String::from_utf8_lossy(&resp.body[..resp.body.len().min(4 * MESSAGE_CHARS)]).into_owned(),
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "no reason given".to_owned(),
        None => text,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> Response {
        answer_with(status, headers, "")
    }

    fn answer_with(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn rate_limits_are_told_from_refused_credentials() {
        assert_eq!(
            classify(&answer(429, &[("retry-after", "7")])),
            Verdict::RateLimited(Some(Duration::from_secs(7)))
        );
        assert_eq!(classify(&answer(429, &[])), Verdict::RateLimited(None));
        let reset = (unix_now() + 60).to_string();
        match classify(&answer(
            403,
            &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &reset)],
        )) {
            Verdict::RateLimited(Some(wait)) => {
                assert!(wait <= Duration::from_secs(60) && wait >= Duration::from_secs(1))
            }
            other => panic!("GitHub's exhausted limit is a rate limit: {other:?}"),
        }
        assert_eq!(
            classify(&answer(403, &[("retry-after", "30")])),
            Verdict::RateLimited(Some(Duration::from_secs(30))),
            "a secondary limit"
        );
        assert_eq!(classify(&answer(401, &[])), Verdict::Credential);
        assert_eq!(classify(&answer(503, &[])), Verdict::Transient);
        assert_eq!(classify(&answer(408, &[])), Verdict::Transient);
        assert_eq!(classify(&answer(404, &[])), Verdict::Unexpected);
    }

    #[test]
    fn a_secondary_rate_limit_without_headers_is_read_from_its_message_and_waits_a_minute() {
        let body = r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits","status":"403"}"#;
        assert_eq!(
            classify(&answer_with(403, &[("x-ratelimit-remaining", "4990")], body)),
            Verdict::RateLimited(Some(UNTIMED_RATE_LIMIT_WAIT))
        );
        let old = r#"{"message":"You have triggered an abuse detection mechanism. Please wait a few minutes."}"#;
        assert_eq!(
            classify(&answer_with(403, &[], old)),
            Verdict::RateLimited(Some(UNTIMED_RATE_LIMIT_WAIT))
        );
        let doc_only = r#"{"documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}"#;
        assert!(matches!(
            classify(&answer_with(403, &[], doc_only)),
            Verdict::RateLimited(_)
        ));
    }

    #[test]
    fn an_ambiguous_403_is_forbidden_never_a_refused_credential() {
        let sso = r#"{"message":"Resource protected by organization SAML enforcement. You must grant your Personal Access token access to this organization."}"#;
        match classify(&answer_with(403, &[("x-ratelimit-remaining", "12")], sso)) {
            Verdict::Forbidden(said) => assert!(said.starts_with("Resource protected by organization SAML")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            classify(&answer(403, &[])),
            Verdict::Forbidden("no reason given".into()),
            "not even a body: still not a refused credential"
        );
        let html = format!("<html>{}</html>", "x".repeat(1_000));
        match classify(&answer_with(403, &[], &html)) {
            Verdict::Forbidden(said) => assert_eq!(said.chars().count(), MESSAGE_CHARS + 1, "cut short"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_malformed_body_fails_the_stream_and_paths_carry_no_origin() {
        let resp = Response {
            status: 200,
            headers: Vec::new(),
            body: b"<html>".to_vec(),
        };
        assert!(matches!(parse_json(&resp, "GET /x"), Err(Stop::Stream(m)) if m.contains("malformed JSON")));
        assert_eq!(
            path_of("https://api.github.com/user/repos?page=2"),
            "/user/repos?page=2"
        );
        assert_eq!(path_of("https://api.github.com"), "/");
    }
}
