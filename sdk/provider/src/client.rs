//! [`Api`]: an authenticated client for one provider, and the retry policy.

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
}

/// What a non-2xx answer means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Wait this long (or back off) and try again.
    RateLimited(Option<Duration>),
    /// The credential is refused: the run stops.
    Credential,
    /// Worth retrying.
    Transient,
    /// Not worth retrying; the stream fails.
    Unexpected,
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

    /// Send with the credential and the common headers, retrying rate limits,
    /// 408/5xx answers and transport failures while the waits fit the budget
    /// (see the crate documentation for what each outcome means).
    pub fn send(&self, req: Request) -> Result<Response, Stop> {
        let req = self.prepare(req);
        let what = format!("{} {}", req.method, path_of(&req.url));
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let backoff = self.base_delay * 2u32.saturating_pow(attempt - 1);
            let (wait, give_up) = match req.send() {
                Ok(resp) if (200..300).contains(&resp.status) => return Ok(resp),
                Ok(resp) => match classify(&resp) {
                    Verdict::RateLimited(wait) => (
                        wait.unwrap_or(backoff),
                        Stop::RateLimited(format!(
                            "{} rate-limited {what} longer than the connector may wait; the runtime should retry later",
                            self.provider
                        )),
                    ),
                    Verdict::Credential => return Err(Stop::Run(self.rejected(resp.status, &what))),
                    Verdict::Transient => (
                        backoff,
                        Stop::Stream(format!(
                            "{} kept answering HTTP {} to {what}",
                            self.provider, resp.status
                        )),
                    ),
                    Verdict::Unexpected => {
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
        let resp = self.send(http::get(url))?;
        let value = parse_json(&resp, &format!("GET {}", path_of(url)))?;
        Ok((resp, value))
    }

    /// The credential probe's one call: GET a URL with the candidate token
    /// and the common headers, retried per [`PROBE_RETRY`], parsed as JSON.
    /// 401 rejects the credential, 403 finds a permission missing, anything
    /// else means the provider could not be asked.
    pub fn probe_json(&self, url: &str) -> Result<Value, ProbeError> {
        Ok(self.prepare(http::get(url)).send_with(&PROBE_RETRY)?.json()?)
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

/// A response body as JSON; a body that is not JSON fails the stream.
pub fn parse_json(resp: &Response, what: &str) -> Result<Value, Stop> {
    pdpp_sdk::serde_json::from_slice(&resp.body)
        .map_err(|e| Stop::Stream(format!("{what} answered with malformed JSON: {e}")))
}

/// What a non-2xx response means. GitHub answers an exhausted primary or
/// secondary rate limit with 403, so a 403 carrying rate-limit headers is a
/// rate limit, not a refused credential.
pub(crate) fn classify(resp: &Response) -> Verdict {
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
        429 => Verdict::RateLimited(retry_after.or(reset)),
        403 if exhausted || retry_after.is_some() => Verdict::RateLimited(retry_after.or(reset)),
        401 | 403 => Verdict::Credential,
        408 | 500..=599 => Verdict::Transient,
        _ => Verdict::Unexpected,
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
        Response {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: Vec::new(),
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
        assert_eq!(
            classify(&answer(403, &[("x-ratelimit-remaining", "12")])),
            Verdict::Credential
        );
        assert_eq!(classify(&answer(401, &[])), Verdict::Credential);
        assert_eq!(classify(&answer(503, &[])), Verdict::Transient);
        assert_eq!(classify(&answer(408, &[])), Verdict::Transient);
        assert_eq!(classify(&answer(404, &[])), Verdict::Unexpected);
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
