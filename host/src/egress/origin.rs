//! Origins: the unit every egress rule is written in.
//!
//! An origin is a scheme, a host and a port. Allowlists and rewrites are lists
//! of origins; a request is reduced to its origin before any rule looks at it.
//! This file knows nothing about what is allowed: see [`super::Allowlist`].

/// An origin: scheme, host (possibly `*.example.com`) and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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

    /// The origin a request URI goes to, as the host sees it: the scheme
    /// (`https` when absent), the lower-cased host without IPv6 brackets (empty
    /// when absent, which no allowlist admits) and the port (the scheme's
    /// default when absent).
    pub fn of_uri(uri: &http::Uri) -> Origin {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        Origin { scheme, host, port }
    }

    /// The origin of an absolute URL (`https://host[:port]/path?query`), as
    /// [`Origin::of_uri`] reads it; `None` when the text is not an absolute URL.
    pub fn of_url(url: &str) -> Option<Origin> {
        let uri: http::Uri = url.parse().ok()?;
        uri.scheme()?;
        uri.host()?;
        Some(Origin::of_uri(&uri))
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

    /// Whether this origin is a `*.` pattern rather than one concrete origin.
    pub fn is_wildcard(&self) -> bool {
        self.host.starts_with("*.")
    }

    /// The `Host` header value for a request to this origin: the host, with
    /// the port only when it is not the scheme's default.
    pub fn authority(&self) -> String {
        if (self.scheme == "https" && self.port == 443) || (self.scheme == "http" && self.port == 80) {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_default_ports_and_match_wildcards() {
        let api = Origin::parse("https://api.example.com").unwrap();
        assert_eq!(api.port, 443);
        let wild = Origin::parse("https://*.example.net").unwrap();
        assert!(wild.is_wildcard());
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
    fn a_url_is_reduced_to_its_origin() {
        let o = Origin::of_url("HTTPS://API.Example.com/v1/items?page=2").unwrap();
        assert_eq!(o, Origin::parse("https://api.example.com").unwrap());
        let o = Origin::of_url("http://user:pw@example.com:8080/x").unwrap();
        assert_eq!(
            o.to_string(),
            "http://example.com:8080",
            "user info is not part of the origin"
        );
        assert_eq!(Origin::of_url("http://[::1]:9/").unwrap().host, "::1");
        assert!(Origin::of_url("/relative/path").is_none());
        assert!(Origin::of_url("not a url").is_none());
    }

    #[test]
    fn the_host_header_carries_the_port_only_when_it_is_not_the_default() {
        assert_eq!(Origin::parse("https://a.test").unwrap().authority(), "a.test");
        assert_eq!(Origin::parse("http://a.test:8080").unwrap().authority(), "a.test:8080");
        assert_eq!(Origin::parse("https://a.test:80").unwrap().authority(), "a.test:80");
    }
}
