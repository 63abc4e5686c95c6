//! The per-session filtering HTTP proxy: the only way out of a session's
//! Chromium.
//!
//! Chromium is started with `--proxy-server` pointing here and
//! `--proxy-bypass-list=<-loopback>`, so every request it makes — navigation,
//! redirects, subresources, `fetch`/XHR, iframes, WebSockets, even requests
//! to loopback — arrives at this listener on 127.0.0.1. Plain HTTP arrives in
//! absolute form (`GET http://host/path`) and is forwarded; TLS and
//! WebSockets arrive as `CONNECT host:port` and are tunnelled without being
//! decrypted. Either way the proxy admits a request only when the run's
//! policy admits its (declared) origin, resolves the name itself, connects
//! only to an address the address policy admits (no second lookup by anyone),
//! and records a [`BrowserRequest`] summary — method, declared origin, status
//! or refusal reason, bytes — with no path, query or header value, since
//! those can carry secrets.
//!
//! What this module does not do: decide policy ([`super::policy`]), or drive
//! the browser ([`super::session`]).

use super::error::Refusal;
use super::policy::{BrowserEgressPolicy, Origin, forward_url};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// One request the browser made, as the run timeline shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BrowserRequest {
    /// `GET`, `POST`, … or `CONNECT` for a TLS or WebSocket tunnel.
    pub method: String,
    /// The declared origin (`scheme://host:port`): a rewrite target is shown
    /// as the origin it stands for.
    pub origin: String,
    /// A deployment rewrite sent the request to another origin.
    pub rewritten: bool,
    /// The response status (200 for an established tunnel); `None` when the
    /// request was refused or no response arrived.
    pub status: Option<u16>,
    /// Why the proxy refused or failed the request.
    pub refused: Option<Refusal>,
    /// Body bytes from the browser (tunnel bytes for `CONNECT`).
    pub bytes_out: u64,
    /// Body bytes to the browser (tunnel bytes for `CONNECT`).
    pub bytes_in: u64,
}

/// The proxy's budget for one session.
#[derive(Clone, Debug)]
pub(crate) struct ProxyLimits {
    pub max_requests: u64,
    /// Bytes in both directions, all requests together.
    pub max_bytes: u64,
    /// Summaries kept; later requests are still counted and enforced.
    pub max_summaries: usize,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
}

/// Summaries and counters of one session's proxy.
#[derive(Default)]
pub(crate) struct RequestLog {
    pub entries: Vec<BrowserRequest>,
    /// Summaries not kept because `max_summaries` was reached.
    pub dropped: u64,
    /// Entries already handed out by [`RequestLog::drain_new`].
    drained: usize,
    requests: u64,
    bytes: u64,
}

impl RequestLog {
    fn push(&mut self, max: usize, entry: BrowserRequest) -> Option<usize> {
        if self.entries.len() >= max {
            self.dropped += 1;
            return None;
        }
        self.entries.push(entry);
        Some(self.entries.len() - 1)
    }

    /// Count `n` body bytes against the budget; `false` once it is spent.
    fn add(&mut self, max_bytes: u64, entry: Option<usize>, inbound: bool, n: usize) -> bool {
        self.bytes += n as u64;
        if let Some(e) = entry.and_then(|i| self.entries.get_mut(i)) {
            if inbound {
                e.bytes_in += n as u64;
            } else {
                e.bytes_out += n as u64;
            }
            if self.bytes > max_bytes {
                e.refused = Some(Refusal::BudgetExhausted);
            }
        }
        self.bytes <= max_bytes
    }

    /// The summaries recorded since the last call.
    pub fn drain_new(&mut self) -> Vec<BrowserRequest> {
        let new = self.entries[self.drained..].to_vec();
        self.drained = self.entries.len();
        new
    }
}

struct Shared {
    policy: Arc<dyn BrowserEgressPolicy>,
    limits: ProxyLimits,
    log: Arc<Mutex<RequestLog>>,
    stop: CancellationToken,
}

impl Shared {
    fn log(&self) -> std::sync::MutexGuard<'_, RequestLog> {
        self.log.lock().expect("browser request log")
    }

    /// Count one more request; `false` when the session's budget is spent.
    fn admit_request(&self) -> bool {
        let mut log = self.log();
        log.requests += 1;
        log.requests <= self.limits.max_requests && log.bytes < self.limits.max_bytes
    }

    fn record(&self, entry: BrowserRequest) -> Option<usize> {
        let max = self.limits.max_summaries;
        self.log().push(max, entry)
    }

    fn update(&self, entry: Option<usize>, change: impl FnOnce(&mut BrowserRequest)) {
        let Some(i) = entry else { return };
        if let Some(e) = self.log().entries.get_mut(i) {
            change(e);
        }
    }

    fn refuse(&self, method: &str, origin: String, reason: Refusal) -> Response<ProxyBody> {
        self.record(BrowserRequest {
            method: method.to_owned(),
            origin,
            rewritten: false,
            status: None,
            refused: Some(reason),
            bytes_out: 0,
            bytes_in: 0,
        });
        let status = match reason {
            Refusal::DnsFailed | Refusal::ConnectFailed => StatusCode::BAD_GATEWAY,
            Refusal::BadRequest => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        };
        let mut response = Response::new(full(format!("refused by the host's egress policy: {reason}\n")));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
        response
    }
}

fn full(text: String) -> ProxyBody {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A running proxy. Dropping it stops the listener and every connection.
pub(crate) struct EgressProxy {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<RequestLog>>,
    stop: CancellationToken,
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl EgressProxy {
    /// Listen on a fresh loopback port. `stop` ends the proxy (the session's
    /// teardown cancels it).
    pub(crate) async fn start(
        policy: Arc<dyn BrowserEgressPolicy>,
        limits: ProxyLimits,
        stop: CancellationToken,
    ) -> std::io::Result<EgressProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let log: Arc<Mutex<RequestLog>> = Arc::default();
        let shared = Arc::new(Shared {
            policy,
            limits,
            log: log.clone(),
            stop: stop.clone(),
        });
        tokio::spawn(accept_loop(listener, shared));
        Ok(EgressProxy { addr, log, stop })
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            () = shared.stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service_shared = shared.clone();
            let service = hyper::service::service_fn(move |req| handle(service_shared.clone(), req));
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::select! {
                () = shared.stop.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    Ok(if req.method() == Method::CONNECT {
        tunnel(shared, req).await
    } else {
        forward(shared, req).await
    })
}

/// Where an admitted request goes: the declared origin it is checked and
/// summarised as, the origin the proxy connects to, and whether a rewrite
/// chose it.
struct Route {
    declared: Origin,
    dest: Origin,
    rewritten: bool,
}

/// Map what the browser asked for onto the policy: a rewrite target stands
/// for its declared origin; a declared origin with a rewrite goes to its
/// target (only when the scheme is the same: the browser already chose
/// whether to speak TLS).
fn route(policy: &dyn BrowserEgressPolicy, asked: &Origin) -> Result<Route, Refusal> {
    if let Some(declared) = policy.declared_for(asked) {
        policy.check_origin(&declared)?;
        return Ok(Route {
            declared,
            dest: asked.clone(),
            rewritten: true,
        });
    }
    policy.check_origin(asked)?;
    match policy.rewrite(asked) {
        Some(target) if target.scheme == asked.scheme => Ok(Route {
            declared: asked.clone(),
            dest: target,
            rewritten: true,
        }),
        Some(_) => Err(Refusal::RewriteSchemeMismatch),
        None => Ok(Route {
            declared: asked.clone(),
            dest: asked.clone(),
            rewritten: false,
        }),
    }
}

/// Resolve the destination and connect to the first address the address
/// policy admits. The checked address is the one connected to.
async fn connect(shared: &Shared, route: &Route) -> Result<TcpStream, Refusal> {
    let timeout = shared.limits.connect_timeout;
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(
        timeout,
        tokio::net::lookup_host((route.dest.host.as_str(), route.dest.port)),
    )
    .await
    {
        Ok(Ok(a)) => a.collect(),
        _ => return Err(Refusal::DnsFailed),
    };
    let mut tried = false;
    for addr in addrs {
        if shared.policy.check_address(addr.ip(), route.rewritten).is_err() {
            continue;
        }
        tried = true;
        if let Ok(Ok(tcp)) = tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            return Ok(tcp);
        }
    }
    Err(if tried {
        Refusal::ConnectFailed
    } else {
        Refusal::AddressBlocked
    })
}

fn host_origin(scheme: &str, host: &str, port: u16) -> Origin {
    Origin {
        scheme: scheme.to_owned(),
        host: host.trim_matches(['[', ']']).to_ascii_lowercase(),
        port,
    }
}

/// Headers that belong to one hop (or to the proxy) and are not forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Plain HTTP in absolute form: check, connect, forward, summarise.
async fn forward(shared: Arc<Shared>, req: Request<Incoming>) -> Response<ProxyBody> {
    let method = req.method().to_string();
    let uri = req.uri().clone();
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return shared.refuse(&method, "(origin-form request)".into(), Refusal::BadRequest);
    };
    let asked = host_origin(scheme, host, uri.port_u16().unwrap_or(80));
    if !scheme.eq_ignore_ascii_case("http") {
        return shared.refuse(&method, asked.to_string(), Refusal::SchemeNotAllowed);
    }
    if !shared.admit_request() {
        return shared.refuse(&method, asked.to_string(), Refusal::BudgetExhausted);
    }
    let route = match route(shared.policy.as_ref(), &asked) {
        Ok(r) => r,
        Err(reason) => return shared.refuse(&method, asked.to_string(), reason),
    };
    let tcp = match connect(&shared, &route).await {
        Ok(t) => t,
        Err(reason) => return shared.refuse(&method, route.declared.to_string(), reason),
    };
    let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await else {
        return shared.refuse(&method, route.declared.to_string(), Refusal::ConnectFailed);
    };
    let stop = shared.stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            _ = connection => {}
        }
    });

    let entry = shared.record(BrowserRequest {
        method: method.clone(),
        origin: route.declared.to_string(),
        rewritten: route.rewritten,
        status: None,
        refused: None,
        bytes_out: 0,
        bytes_in: 0,
    });
    let (mut parts, body) = req.into_parts();
    parts.uri = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    strip_hop_by_hop(&mut parts.headers);
    if route.rewritten {
        let authority = if route.dest.port == 80 {
            route.dest.host.clone()
        } else {
            format!("{}:{}", route.dest.host, route.dest.port)
        };
        if let Ok(v) = http::HeaderValue::from_str(&authority) {
            parts.headers.insert(http::header::HOST, v);
        }
    }
    let body = Counted {
        inner: body,
        shared: shared.clone(),
        entry,
        inbound: false,
    };
    let upstream = Request::from_parts(parts, body);
    let response = match tokio::time::timeout(shared.limits.first_byte_timeout, sender.send_request(upstream)).await {
        Ok(Ok(r)) => r,
        _ => {
            shared.update(entry, |e| e.refused = Some(Refusal::ConnectFailed));
            let mut r = Response::new(full("the upstream server did not answer\n".into()));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            return r;
        }
    };
    let (mut parts, body) = response.into_parts();
    shared.update(entry, |e| e.status = Some(parts.status.as_u16()));
    strip_hop_by_hop(&mut parts.headers);
    // A redirect to a declared origin that the deployment rewrites goes to
    // the rewrite target, like a navigation would.
    if let Some(location) = parts.headers.get(http::header::LOCATION).and_then(|v| v.to_str().ok())
        && let Ok(url) = url::Url::parse(location)
    {
        let (target, rewritten) = forward_url(shared.policy.as_ref(), &url);
        if rewritten && let Ok(v) = http::HeaderValue::from_str(target.as_str()) {
            parts.headers.insert(http::header::LOCATION, v);
        }
    }
    let body = Counted {
        inner: body,
        shared: shared.clone(),
        entry,
        inbound: true,
    };
    Response::from_parts(parts, body.boxed_unsync())
}

/// `CONNECT host:port`: the scheme is not visible, so the tunnel is admitted
/// when the policy admits the endpoint as `https` (TLS, `wss`) or `http`
/// (`ws`); the bytes are relayed untouched.
async fn tunnel(shared: Arc<Shared>, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return shared.refuse("CONNECT", "(no authority)".into(), Refusal::BadRequest);
    };
    let port = authority.port_u16().unwrap_or(443);
    let as_https = host_origin("https", authority.host(), port);
    if !shared.admit_request() {
        return shared.refuse("CONNECT", as_https.to_string(), Refusal::BudgetExhausted);
    }
    let route = match route(shared.policy.as_ref(), &as_https) {
        Ok(r) => r,
        Err(first) => match route(shared.policy.as_ref(), &host_origin("http", authority.host(), port)) {
            Ok(r) => r,
            Err(second) => {
                let reason = if first == Refusal::OriginNotAllowed {
                    second
                } else {
                    first
                };
                return shared.refuse("CONNECT", as_https.to_string(), reason);
            }
        },
    };
    let upstream = match connect(&shared, &route).await {
        Ok(t) => t,
        Err(reason) => return shared.refuse("CONNECT", route.declared.to_string(), reason),
    };
    let entry = shared.record(BrowserRequest {
        method: "CONNECT".into(),
        origin: route.declared.to_string(),
        rewritten: route.rewritten,
        status: Some(200),
        refused: None,
        bytes_out: 0,
        bytes_in: 0,
    });
    let on_upgrade = hyper::upgrade::on(&mut req);
    let stop = shared.stop.clone();
    tokio::spawn(async move {
        let relay = async {
            let Ok(upgraded) = on_upgrade.await else { return };
            let (browser_read, browser_write) = tokio::io::split(TokioIo::new(upgraded));
            let (server_read, server_write) = upstream.into_split();
            tokio::join!(
                pump(browser_read, server_write, &shared, entry, false),
                pump(server_read, browser_write, &shared, entry, true),
            );
        };
        tokio::select! {
            () = stop.cancelled() => {}
            () = relay => {}
        }
    });
    Response::new(full(String::new()))
}

/// Copy one direction of a tunnel, counting bytes against the budget.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    shared: &Shared,
    entry: Option<usize>,
    inbound: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let within = {
            let max = shared.limits.max_bytes;
            shared.log().add(max, entry, inbound, n)
        };
        if !within || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A body that counts its bytes into the request's summary and stops the
/// transfer once the session's byte budget is spent.
struct Counted<B> {
    inner: B,
    shared: Arc<Shared>,
    entry: Option<usize>,
    inbound: bool,
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let within = {
                        let max = self.shared.limits.max_bytes;
                        self.shared.log().add(max, self.entry, self.inbound, data.len())
                    };
                    if !within {
                        return Poll::Ready(Some(Err("the browser session's byte budget is spent".into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
