//! A small blocking HTTP client over `wasi:http`, for connectors whose
//! manifest requires the `network` binding.
//!
//! The host decides where a request may go (the manifest's allowed origins,
//! the deployment's rewrites and address policy); a refused request comes
//! back as [`HttpError::Refused`]. Credentials travel as placeholders: put
//! [`crate::Secret::placeholder`] in a header (see [`Request::bearer`]) and
//! the host substitutes the value only for an allowed origin.
//!
//! ```no_run
//! # fn demo(run: &mut pdpp_sdk::Run) -> Result<(), pdpp_sdk::Failure> {
//! use pdpp_sdk::http::{self, Retry};
//! let token = run.secret("token")?;
//! let user: serde_json::Value = http::get("https://api.example.com/user")
//!     .bearer(&token)
//!     .send_with(&Retry::default())?
//!     .json()?;
//! # Ok(()) }
//! ```

use crate::{Failure, Recovery, Secret};
use pdpp_types::Origin;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{self as wt, ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

/// A request to build and send.
#[derive(Clone, Debug)]
pub struct Request {
    /// `GET`, `POST`, … (upper case).
    pub method: String,
    /// An absolute `http` or `https` URL.
    pub url: String,
    /// Header names and values, in order (names are sent lower case).
    pub headers: Vec<(String, String)>,
    /// The body; secret placeholders in it are substituted by the host too.
    pub body: Vec<u8>,
}

/// A response, body read in full.
#[derive(Clone, Debug)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body (the host caps its size).
    pub body: Vec<u8>,
}

/// Why a request did not produce the response the caller wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The host refused the request (origin not allowed, address blocked,
    /// request budget spent, response too large…).
    Refused(String),
    /// The request failed on the way and may succeed later (a refused or
    /// reset connection, a timeout…). Worth a retry.
    Transport(String),
    /// The provider cannot be reached at all and retrying will not change
    /// that soon: its name does not resolve, its address is unroutable, its
    /// TLS certificate is not accepted. Never retried.
    Unreachable(String),
    /// A response with a status the caller treats as an error.
    Status {
        /// The HTTP status.
        status: u16,
        /// `Retry-After`, in seconds, when the server sent one.
        retry_after: Option<u64>,
    },
    /// The URL or the response body could not be understood.
    Invalid(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Refused(why) => write!(f, "the host refused the request: {why}"),
            HttpError::Transport(why) => write!(f, "the request failed on the way: {why}"),
            HttpError::Unreachable(why) => write!(f, "{why}"),
            HttpError::Status { status, .. } => write!(f, "the server answered HTTP {status}"),
            HttpError::Invalid(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// What a request failure means for the run: 401 a refused credential, 403
/// a resource out of the credential's reach (never a refused credential: a
/// status alone cannot tell a missing permission or a provider's rate limit
/// from a bad token; `pdpp-provider` reads the headers and body too), 429 a
/// rate limit, a refused egress a fault no retry mends, anything else a
/// failure the runtime may retry.
impl From<HttpError> for Failure {
    fn from(e: HttpError) -> Self {
        match &e {
            HttpError::Status { status: 401, .. } => Failure::new(e.to_string())
                .code("credential_rejected")
                .recovery(Recovery::RefreshCredentials)
                .retryable(false),
            HttpError::Status { status: 403, .. } => Failure::new(e.to_string())
                .code("forbidden")
                .recovery(Recovery::ManualActionRequired)
                .retryable(false),
            HttpError::Status { status: 429, .. } => Failure::new(e.to_string())
                .code("rate_limited")
                .recovery(Recovery::RetryByRuntime)
                .retryable(true),
            HttpError::Refused(_) => Failure::new(e.to_string())
                .code("egress_refused")
                .recovery(Recovery::NotRetriable)
                .retryable(false),
            HttpError::Unreachable(_) => Failure::new(e.to_string())
                .code("provider_unreachable")
                .recovery(Recovery::RetryByRuntime)
                .retryable(true),
            _ => Failure::new(e.to_string())
                .code("http_failed")
                .recovery(Recovery::RetryByRuntime)
                .retryable(true),
        }
    }
}

/// A GET request.
pub fn get(url: &str) -> Request {
    Request::new("GET", url)
}

/// A POST request.
pub fn post(url: &str) -> Request {
    Request::new("POST", url)
}

impl Request {
    /// A request with no header and no body.
    pub fn new(method: &str, url: &str) -> Self {
        Request {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    /// Add a header (repeated names are sent repeated).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
    /// `Authorization: Bearer <secret>`, substituted by the host.
    pub fn bearer(self, secret: &Secret) -> Self {
        let value = format!("Bearer {}", secret.placeholder());
        self.header("authorization", &value)
    }
    /// The origin the request goes to (before the deployment's rewrites),
    /// or `None` when the URL has none.
    pub fn origin(&self) -> Option<Origin> {
        Origin::of_url(&self.url)
    }

    /// A JSON body, with `content-type: application/json`.
    pub fn json_body(mut self, body: &impl Serialize) -> Result<Self, HttpError> {
        self.body = serde_json::to_vec(body).map_err(|e| HttpError::Invalid(e.to_string()))?;
        Ok(self.header("content-type", "application/json"))
    }

    /// Send once, following up to five redirects for GET and HEAD (each hop
    /// goes through the host's checks again, so a redirect to an origin the
    /// manifest does not allow is refused). Any final status is a response;
    /// see [`Response::error_for_status`].
    pub fn send(&self) -> Result<Response, HttpError> {
        let mut current = self.clone();
        for _ in 0..=5 {
            let resp = send(&current)?;
            let redirect =
                matches!(resp.status, 301 | 302 | 303 | 307 | 308) && matches!(current.method.as_str(), "GET" | "HEAD");
            match resp.header("location").filter(|_| redirect) {
                Some(location) => current.url = resolve(&current.url, location)?,
                None => return Ok(resp),
            }
        }
        Err(HttpError::Invalid(format!("too many redirects from {}", self.url)))
    }

    /// Send, retrying 429 / 5xx / transport failures with backoff that honours
    /// `Retry-After`, as long as the wait fits the policy's budget. Returns the
    /// last response as an error when the status is still not a success.
    pub fn send_with(&self, retry: &Retry) -> Result<Response, HttpError> {
        retrying(retry, || self.send().and_then(Response::error_for_status))
    }
}

/// Call `attempt` until it succeeds, fails in a way no retry mends, or the
/// policy's attempts or budget run out.
fn retrying(
    retry: &Retry,
    mut attempt_once: impl FnMut() -> Result<Response, HttpError>,
) -> Result<Response, HttpError> {
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = attempt_once();
        let wait = match &result {
            Err(HttpError::Status { status, retry_after }) if *status == 429 || *status >= 500 => retry_after
                .map(Duration::from_secs)
                .unwrap_or_else(|| retry.backoff(attempt)),
            Err(HttpError::Transport(_)) => retry.backoff(attempt),
            _ => return result,
        };
        if attempt >= retry.max_attempts || started.elapsed() + wait > retry.budget {
            return result;
        }
        std::thread::sleep(wait);
    }
}

/// How [`Request::send_with`] retries.
#[derive(Clone, Debug)]
pub struct Retry {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    /// The first wait; each later one doubles it (unless `Retry-After` says otherwise).
    pub base_delay: Duration,
    /// The most time all attempts and waits may take.
    pub budget: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            budget: Duration::from_secs(60),
        }
    }
}

impl Retry {
    fn backoff(&self, attempt: u32) -> Duration {
        self.base_delay * 2u32.saturating_pow(attempt.saturating_sub(1))
    }
}

impl Response {
    /// The first value of a header (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HttpError::Invalid(format!("response is not the expected JSON: {e}")))
    }
    /// `Err(Status)` unless the status is 2xx.
    pub fn error_for_status(self) -> Result<Response, HttpError> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            let retry_after = self.header("retry-after").and_then(|v| v.trim().parse().ok());
            Err(HttpError::Status {
                status: self.status,
                retry_after,
            })
        }
    }
}

/// A `Location` against the URL it came from (absolute, or a path on the same origin).
fn resolve(base: &str, location: &str) -> Result<String, HttpError> {
    if location.contains("://") {
        return Ok(location.to_owned());
    }
    let url = parse(base)?;
    if location.starts_with('/') {
        Ok(format!("{}://{}{}", url.scheme, url.authority, location))
    } else {
        Err(HttpError::Invalid(format!("unsupported redirect location {location}")))
    }
}

struct Url<'a> {
    scheme: &'a str,
    authority: &'a str,
    path: &'a str,
}

fn parse(url: &str) -> Result<Url<'_>, HttpError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| HttpError::Invalid(format!("not a URL: {url}")))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(HttpError::Invalid(format!("URL without a host: {url}")));
    }
    Ok(Url {
        scheme,
        authority,
        path,
    })
}

/// A wasi-http error code in words an owner understands, classed by what a
/// retry can do about it. `host` is the authority the request went to.
fn failure_of(e: ErrorCode, host: &str) -> HttpError {
    use ErrorCode as E;
    match e {
        E::HttpRequestDenied => HttpError::Refused(format!(
            "{host} is not an origin this connector may reach (HttpRequestDenied)"
        )),
        E::DestinationIpProhibited => HttpError::Refused(format!(
            "{host} resolves to an address the host blocks (DestinationIpProhibited)"
        )),
        E::ConnectionLimitReached => {
            HttpError::Refused("the run's request budget is spent (ConnectionLimitReached)".into())
        }
        E::HttpResponseBodySize(_) => HttpError::Refused(format!(
            "the answer from {host} is larger than the host allows (HttpResponseBodySize)"
        )),
        E::DnsError(_) | E::DestinationNotFound => HttpError::Unreachable(format!(
            "could not reach {host}: the name does not resolve (check the address and this machine's DNS)"
        )),
        E::DestinationIpUnroutable => HttpError::Unreachable(format!(
            "could not reach {host}: there is no route to its address (check this machine's network)"
        )),
        E::TlsCertificateError | E::TlsAlertReceived(_) | E::TlsProtocolError => HttpError::Unreachable(format!(
            "could not reach {host}: the secure connection was refused (TLS certificate or protocol)"
        )),
        E::DnsTimeout => HttpError::Transport(format!("looking up {host} timed out")),
        E::DestinationUnavailable | E::ConnectionRefused => {
            HttpError::Transport(format!("{host} refused the connection or is down"))
        }
        E::ConnectionTimeout => HttpError::Transport(format!("connecting to {host} timed out")),
        E::ConnectionReadTimeout | E::ConnectionWriteTimeout => {
            HttpError::Transport(format!("{host} stopped answering (timed out)"))
        }
        E::ConnectionTerminated => HttpError::Transport(format!("{host} closed the connection")),
        other => HttpError::Transport(format!("exchange with {host} failed ({other:?})")),
    }
}

fn send(req: &Request) -> Result<Response, HttpError> {
    let url = parse(&req.url)?;
    let headers = Fields::new();
    for (k, v) in &req.headers {
        headers
            .append(&k.to_ascii_lowercase(), v.as_bytes())
            .map_err(|e| HttpError::Refused(format!("header {k}: {e:?}")))?;
    }
    let out = OutgoingRequest::new(headers);
    let method = match req.method.as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_owned()),
    };
    let scheme = match url.scheme {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => Scheme::Other(other.to_owned()),
    };
    out.set_method(&method)
        .map_err(|_| HttpError::Invalid("bad method".into()))?;
    out.set_scheme(Some(&scheme))
        .map_err(|_| HttpError::Invalid("bad scheme".into()))?;
    out.set_authority(Some(url.authority))
        .map_err(|_| HttpError::Invalid("bad authority".into()))?;
    out.set_path_with_query(Some(url.path))
        .map_err(|_| HttpError::Invalid("bad path".into()))?;
    let body = out
        .body()
        .map_err(|_| HttpError::Invalid("request body already taken".into()))?;
    if !req.body.is_empty() {
        let stream = body
            .write()
            .map_err(|_| HttpError::Invalid("request body stream".into()))?;
        for chunk in req.body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| HttpError::Transport(format!("{e:?}")))?;
        }
        drop(stream);
    }
    let host = url.authority;
    let future = outgoing_handler::handle(out, None).map_err(|e| failure_of(e, host))?;
    OutgoingBody::finish(body, None).map_err(|e| failure_of(e, host))?;
    future.subscribe().block();
    let incoming = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Err(failure_of(e, host)),
        Some(Err(())) | None => return Err(HttpError::Transport("no response".into())),
    };
    let status = incoming.status();
    let headers: Vec<(String, String)> = incoming
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let body = incoming
        .consume()
        .map_err(|_| HttpError::Transport("response body".into()))?;
    let stream = body
        .stream()
        .map_err(|_| HttpError::Transport("response body stream".into()))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(wasip2::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(HttpError::Transport(format!("{e:?}"))),
        }
    }
    drop(stream);
    let _ = wt::IncomingBody::finish(body);
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> Failure {
        Failure::from(HttpError::Status {
            status,
            retry_after: None,
        })
    }

    #[test]
    fn only_a_401_is_a_refused_credential_and_a_403_never_is() {
        assert_eq!(status(401).code.as_deref(), Some("credential_rejected"));
        assert_eq!(status(401).recovery, Some(Recovery::RefreshCredentials));
        let forbidden = status(403);
        assert_eq!(forbidden.code.as_deref(), Some("forbidden"));
        assert_eq!(forbidden.recovery, Some(Recovery::ManualActionRequired));
        assert_eq!(status(429).code.as_deref(), Some("rate_limited"));
        assert_eq!(status(503).code.as_deref(), Some("http_failed"));
    }

    #[test]
    fn transport_errors_are_told_in_plain_words_and_only_the_curable_are_retried() {
        let dns = failure_of(ErrorCode::DestinationNotFound, "api.example.com");
        assert_eq!(
            dns,
            HttpError::Unreachable(
                "could not reach api.example.com: the name does not resolve (check the address and this machine's \
                 DNS)"
                    .into()
            )
        );
        let failure = Failure::from(dns);
        assert_eq!(failure.code.as_deref(), Some("provider_unreachable"));
        assert!(!failure.message.contains("DestinationNotFound"), "{}", failure.message);
        assert!(matches!(
            failure_of(ErrorCode::TlsCertificateError, "h"),
            HttpError::Unreachable(_)
        ));
        assert_eq!(
            failure_of(ErrorCode::ConnectionTimeout, "api.example.com"),
            HttpError::Transport("connecting to api.example.com timed out".into())
        );
        assert!(matches!(
            failure_of(ErrorCode::HttpRequestDenied, "h"),
            HttpError::Refused(_)
        ));
    }

    #[test]
    fn an_unreachable_provider_is_not_retried() {
        // The retry loop sleeps between attempts: a retried error would call
        // `send` again. Nothing here can reach a network, so count attempts.
        let retry = Retry {
            max_attempts: 5,
            base_delay: Duration::from_millis(1),
            budget: Duration::from_secs(1),
        };
        let mut attempts = 0;
        let result = retrying(&retry, || {
            attempts += 1;
            Err::<Response, _>(HttpError::Unreachable("could not reach h".into()))
        });
        assert_eq!(attempts, 1);
        assert!(matches!(result, Err(HttpError::Unreachable(_))));
        let mut attempts = 0;
        let _ = retrying(&retry, || {
            attempts += 1;
            Err::<Response, _>(HttpError::Transport("h closed the connection".into()))
        });
        assert_eq!(attempts, 5, "a transport failure that may heal is retried");
    }
}
