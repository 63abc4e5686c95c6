//! Filtered outgoing HTTP for connectors that declare the `network` binding.
//!
//! Every request the guest makes through `wasi:http/outgoing-handler` comes
//! here. It must go to an origin the manifest allows (scheme, host, port;
//! `*.` subdomain wildcards); the deployment may rewrite an origin (to a
//! self-hosted instance, or a loopback test double); the host resolves the
//! name itself and refuses loopback, private, link-local, CGNAT and metadata
//! addresses unless the deployment allows them, then connects to the address
//! it checked (no second lookup). Forbidden headers, including a smuggled
//! `Host`, are stripped; secret placeholders in header values are replaced
//! with the run's values only here, after the origin check; timeouts are
//! bounded by the run's remaining time; response bodies are capped. Each
//! request is summarised for the run timeline without header values.

use super::SecretSet;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// An origin: scheme, host (possibly `*.example.com`) and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Parse `https://host[:port]` (a path is not allowed).
    pub fn parse(s: &str) -> Option<Origin> {
        let (scheme, rest) = s.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return None;
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || p.parse::<u16>().is_ok() => (h, p.parse().ok()?),
            _ => (rest, default_port),
        };
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether `self` (a pattern, maybe `*.`) admits the concrete origin `o`.
    pub fn admits(&self, o: &Origin) -> bool {
        if self.scheme != o.scheme || self.port != o.port {
            return false;
        }
        match self.host.strip_prefix("*.") {
            Some(suffix) => o.host.len() > suffix.len() && o.host.ends_with(&format!(".{suffix}")),
            None => self.host == o.host,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The deployment's egress settings (not the connector's).
#[derive(Clone, Debug, Default)]
pub struct EgressConfig {
    /// `from` origin → `to` origin: requests for `from` go to `to`.
    pub rewrites: Vec<(Origin, Origin)>,
    /// Allow private, loopback, link-local and CGNAT addresses for every request.
    pub allow_private_addresses: bool,
    /// Allow loopback addresses only for requests that were rewritten (test doubles).
    pub allow_loopback_for_rewrites: bool,
}

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

/// Counters and summaries shared between the hooks and the run.
#[derive(Default)]
pub struct EgressLog {
    pub requests: Vec<RequestSummary>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub count: u64,
}

/// The largest request body the host forwards (it is buffered to substitute placeholders).
const MAX_REQUEST_BODY: usize = 8 << 20;

/// The `WasiHttpHooks` of one run.
pub struct EgressHooks {
    pub allowed: Vec<Origin>,
    pub config: Arc<EgressConfig>,
    pub limits: HttpLimits,
    pub secrets: SecretSet,
    pub deadline: Instant,
    pub log: Arc<Mutex<EgressLog>>,
}

/// Headers the guest may not set: hop-by-hop headers, `Host` (the host sets
/// it from the checked origin) and proxy/forwarding headers.
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
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// Whether `ip` is loopback, private, link-local, CGNAT, metadata or otherwise
/// not a public unicast address (the browser's egress proxy checks it too).
pub fn blocked_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| blocked_address(IpAddr::V4(v4)))
        }
    }
}

impl EgressHooks {
    fn record(&self, s: RequestSummary) {
        let mut log = self.log.lock().expect("egress log");
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

/// Replace this run's secret placeholders in a header value; `used` is set
/// when one was replaced.
fn substitute(secrets: &SecretSet, value: &str, used: &AtomicBool) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find("{{pdpp-secret:") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match tail.find("}}") {
            Some(end) => {
                let token = &tail[..end + 2];
                match secrets.resolve_placeholder(token) {
                    Some(v) => {
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
    out
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for EgressHooks {
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        FORBIDDEN.contains(&name.as_str())
    }

    fn forbidden_header_filter(&mut self) -> wasmtime_wasi_http::ForbiddenHeaderFilter {
        Arc::new(|name| FORBIDDEN.contains(&name.as_str()))
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
        let path = uri.path().to_owned();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        let asked = Origin { scheme, host, port };
        let shown = asked.to_string();

        // Limits and the allow-list, before anything leaves the host.
        let (count, bytes_in) = {
            let mut log = self.log.lock().expect("egress log");
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
        if !self.allowed.iter().any(|a| a.admits(&asked)) {
            let e = self.refuse(
                &method,
                &shown,
                &path,
                "origin_not_allowed",
                HttpError::HttpRequestDenied,
            );
            return Box::new(async move { Err(e) });
        }
        let rewrite = self
            .config
            .rewrites
            .iter()
            .find(|(from, _)| from.admits(&asked))
            .map(|(_, to)| to.clone());
        let target = rewrite.clone().unwrap_or_else(|| asked.clone());
        let loopback_ok =
            self.config.allow_private_addresses || (rewrite.is_some() && self.config.allow_loopback_for_rewrites);
        let private_ok = self.config.allow_private_addresses;

        // Headers: the guest's forbidden ones were already refused by the
        // hooks; placeholders become values now that the origin is allowed.
        let secret_used = Arc::new(AtomicBool::new(false));
        let mut substituted = http::HeaderMap::new();
        for (name, value) in request.headers() {
            if FORBIDDEN.contains(&name.as_str()) {
                continue;
            }
            let v = value
                .to_str()
                .map(|s| substitute(&self.secrets, s, &secret_used))
                .unwrap_or_default();
            if let Ok(v) = http::HeaderValue::from_str(&v) {
                substituted.append(name.clone(), v);
            }
        }
        let authority_header =
            if (target.scheme == "https" && target.port == 443) || (target.scheme == "http" && target.port == 80) {
                target.host.clone()
            } else {
                format!("{}:{}", target.host, target.port)
            };
        substituted.insert(
            http::header::HOST,
            http::HeaderValue::from_str(&authority_header).unwrap_or(http::HeaderValue::from_static("invalid")),
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
                log.lock().expect("egress log").requests.push(summary(None, Some(why)));
                e
            };
            // The body, bounded: placeholders in it become values for this allowed origin.
            let (mut head, body) = request.into_parts();
            let sent = match tokio::time::timeout(total, body.collect()).await {
                Ok(Ok(c)) => c.to_bytes(),
                Ok(Err(e)) => return Err(fail("request_body_failed", e)),
                Err(_) => return Err(fail("total_timeout", HttpError::ConnectionWriteTimeout)),
            };
            if sent.len() > MAX_REQUEST_BODY {
                return Err(fail(
                    "request_too_large",
                    HttpError::HttpRequestBodySize(Some(sent.len() as u64)),
                ));
            }
            let sent = match std::str::from_utf8(&sent) {
                Ok(text) if text.contains("{{pdpp-secret:") => Bytes::from(substitute(&secrets, text, &secret_used)),
                _ => sent,
            };
            if head.headers.contains_key(http::header::CONTENT_LENGTH) || !sent.is_empty() {
                head.headers
                    .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(sent.len()));
            }
            let bytes_out = sent.len() as u64;
            log.lock().expect("egress log").bytes_out += bytes_out;
            let request = http::Request::from_parts(
                head,
                http_body_util::Full::new(sent)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            // Resolve, check every address, connect to a checked one.
            let addrs: Vec<SocketAddr> = match tokio::time::timeout(
                connect_timeout,
                tokio::net::lookup_host((target.host.as_str(), target.port)),
            )
            .await
            {
                Ok(Ok(a)) => a.collect(),
                Ok(Err(_)) => return Err(fail("dns_failed", HttpError::DestinationNotFound)),
                Err(_) => return Err(fail("dns_timeout", HttpError::DnsTimeout)),
            };
            let usable: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| {
                    let ip = a.ip();
                    !blocked_address(ip) || private_ok || (loopback_ok && ip.is_loopback())
                })
                .collect();
            let Some(addr) = usable.first().copied() else {
                return Err(fail("address_blocked", HttpError::DestinationIpProhibited));
            };
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
            // The whole body, bounded in size and by the total deadline.
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
                    let why = if matches!(e, HttpError::HttpResponseBodySize(_)) {
                        "response_too_large"
                    } else {
                        "body_failed"
                    };
                    return Err(fail(why, e));
                }
                Err(_) => return Err(fail("total_timeout", HttpError::ConnectionReadTimeout)),
            };
            {
                let mut l = log.lock().expect("egress log");
                l.bytes_in += bytes.len() as u64;
                let mut s = summary(Some(status), None);
                s.bytes_in = bytes.len() as u64;
                s.bytes_out = bytes_out;
                l.requests.push(s);
            }
            let body = http_body_util::Full::new(Bytes::from(bytes))
                .map_err(|never| match never {})
                .boxed_unsync();
            let response = http::Response::from_parts(parts, body);
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> IoStream for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_default_ports_and_match_wildcards() {
        let api = Origin::parse("https://api.example.com").unwrap();
        assert_eq!(api.port, 443);
        let wild = Origin::parse("https://*.example.net").unwrap();
        assert!(wild.admits(&Origin::parse("https://api.example.net").unwrap()));
        assert!(
            !wild.admits(&Origin::parse("https://example.net").unwrap()),
            "a wildcard needs a subdomain"
        );
        assert!(!wild.admits(&Origin::parse("https://evilexample.net").unwrap()));
        assert!(
            !api.admits(&Origin::parse("http://api.example.com").unwrap()),
            "scheme matters"
        );
        assert!(
            !api.admits(&Origin::parse("https://api.example.com:8443").unwrap()),
            "port matters"
        );
        assert!(Origin::parse("https://x.test/path").is_none());
        assert!(Origin::parse("ftp://x.test").is_none());
        assert_eq!(Origin::parse("http://127.0.0.1:8080").unwrap().port, 8080);
    }

    #[test]
    fn loopback_private_link_local_cgnat_and_metadata_addresses_are_blocked() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(blocked_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["140.82.112.5", "1.1.1.1", "2606:4700::1111"] {
            assert!(!blocked_address(ip.parse().unwrap()), "{ip}");
        }
    }
}
