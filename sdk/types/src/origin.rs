//! Network origins, as a manifest's `allowed_origins` declares them and the
//! egress policy admits them.
//!
//! An origin is a scheme (`https` or `http`), a host and a port; the port
//! defaults to the scheme's (443, 80). A *pattern* may start its host with
//! `*.`, which admits any subdomain at any depth but not the bare domain:
//! `https://*.example.com` admits `https://api.example.com` and
//! `https://a.b.example.com`, not `https://example.com`, and never another
//! scheme or port. Hosts are compared in lower case; an IPv6 host is written
//! in brackets (`http://[::1]:8080`) and kept without them.
//!
//! What is not here: resolving names, address ranges, rewrites and the
//! transport. Those are the host's egress policy, which uses this type.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An origin (`https://api.example.com:443`) or an origin pattern
/// (`https://*.example.com`).
///
/// Its text form ([`fmt::Display`], and its JSON) always names the port:
/// `https://api.github.com:443`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Origin {
    /// `https` or `http`, lower case.
    pub scheme: String,
    /// Lower case; a DNS name, an IPv4 address, an IPv6 address without
    /// brackets, or (in a pattern) `*.` followed by a DNS name.
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
}

/// Why a text is not an origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidOrigin(pub String);

impl fmt::Display for InvalidOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an origin (scheme://host[:port], https or http, no path)",
            self.0
        )
    }
}

impl std::error::Error for InvalidOrigin {}

impl Origin {
    /// Parse `scheme://host[:port]`: `https` or `http`, no user, path, query
    /// or fragment (trailing slashes are tolerated). The host may be a `*.`
    /// pattern. `None` for anything else.
    ///
    /// ```
    /// use pdpp_types::Origin;
    /// let o = Origin::parse("https://API.example.com/").unwrap();
    /// assert_eq!(o.to_string(), "https://api.example.com:443");
    /// assert!(Origin::parse("https://api.example.com/v1").is_none());
    /// ```
    pub fn parse(text: &str) -> Option<Origin> {
        let (scheme, rest) = text.trim().split_once("://")?;
        Origin::from_parts(scheme, rest.trim_end_matches('/'), true)
    }

    /// The origin of a URL (`https://api.example.com/v1/users?page=2` has
    /// the origin `https://api.example.com:443`). Path, query and fragment
    /// are ignored; a URL with user information or a wildcard host has none.
    ///
    /// ```
    /// use pdpp_types::Origin;
    /// let api = Origin::parse("https://api.github.com").unwrap();
    /// assert_eq!(Origin::of_url("https://api.github.com/user/repos?page=2"), Some(api));
    /// assert_eq!(Origin::of_url("https://api.github.com.evil.test/"), Origin::parse("https://api.github.com.evil.test"));
    /// ```
    pub fn of_url(url: &str) -> Option<Origin> {
        let (scheme, rest) = url.trim().split_once("://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        Origin::from_parts(scheme, &rest[..end], false)
    }

    /// The default port of a scheme this type knows.
    pub fn default_port(scheme: &str) -> Option<u16> {
        match scheme {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        }
    }

    /// Whether this is a `*.` pattern rather than one origin.
    pub fn is_wildcard(&self) -> bool {
        self.host.starts_with("*.")
    }

    /// Whether `self` (an origin or a `*.` pattern) admits the concrete
    /// origin `o`: same scheme, same port, and the same host or, for a
    /// pattern, a host strictly below the pattern's domain.
    ///
    /// ```
    /// use pdpp_types::Origin;
    /// let p = Origin::parse("https://*.example.net").unwrap();
    /// assert!(p.admits(&Origin::parse("https://api.example.net").unwrap()));
    /// assert!(!p.admits(&Origin::parse("https://example.net").unwrap()));
    /// assert!(!p.admits(&Origin::parse("https://evilexample.net").unwrap()));
    /// ```
    pub fn admits(&self, o: &Origin) -> bool {
        if self.scheme != o.scheme || self.port != o.port {
            return false;
        }
        match self.host.strip_prefix("*.") {
            Some(domain) => o
                .host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => self.host == o.host,
        }
    }

    /// The authority a request to this origin names (its `Host` header):
    /// the host, in brackets when IPv6, with the port only when it is not the
    /// scheme's default.
    ///
    /// ```
    /// use pdpp_types::Origin;
    /// assert_eq!(Origin::parse("https://api.example.com").unwrap().authority(), "api.example.com");
    /// assert_eq!(Origin::parse("http://[::1]:8080").unwrap().authority(), "[::1]:8080");
    /// ```
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match Origin::default_port(&self.scheme) {
            Some(port) if port == self.port => host,
            _ => format!("{host}:{}", self.port),
        }
    }

    fn from_parts(scheme: &str, authority: &str, pattern_allowed: bool) -> Option<Origin> {
        let scheme = scheme.to_ascii_lowercase();
        let default_port = Origin::default_port(&scheme)?;
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = match authority.strip_prefix('[') {
            // `[v6]` or `[v6]:port`.
            Some(bracketed) => {
                let (v6, after) = bracketed.split_once(']')?;
                if !v6.contains(':') || !v6.bytes().all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.') {
                    return None;
                }
                let port = match after {
                    "" => default_port,
                    _ => port_of(after.strip_prefix(':')?)?,
                };
                (v6, port)
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, port_of(port)?),
                None => (authority, default_port),
            },
        };
        let host = host.to_ascii_lowercase();
        let name = match host.strip_prefix("*.") {
            Some(domain) if pattern_allowed => domain,
            Some(_) => return None,
            None => host.as_str(),
        };
        let ipv6 = host.contains(':');
        if !ipv6 && !valid_name(name) {
            return None;
        }
        // One spelling per IPv6 address (`[0:0::1]` is `[::1]`), so an
        // allowlist entry and a request compare equal whatever the spelling.
        let host = if ipv6 {
            host.parse::<std::net::Ipv6Addr>().ok()?.to_string()
        } else {
            host
        };
        Some(Origin { scheme, host, port })
    }
}

/// A port: decimal digits, 1 to 65535.
fn port_of(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|p| *p != 0)
}

/// A DNS name or IPv4 address: dot-separated non-empty labels of letters,
/// digits, `-` and `_` (no `*`, no space, no other punctuation).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

impl FromStr for Origin {
    type Err = InvalidOrigin;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Origin::parse(text).ok_or_else(|| InvalidOrigin(text.to_owned()))
    }
}

impl TryFrom<String> for Origin {
    type Error = InvalidOrigin;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Origin> for String {
    fn from(o: Origin) -> String {
        o.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Origin {
        Origin::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn origins_parse_with_default_ports_and_match_wildcards() {
        let api = o("https://api.example.com");
        assert_eq!(api.port, 443);
        assert_eq!(o("http://x.test").port, 80);
        let wild = o("https://*.example.net");
        assert!(wild.is_wildcard());
        assert!(wild.admits(&o("https://api.example.net")));
        assert!(wild.admits(&o("https://a.b.example.net")), "any depth");
        assert!(!wild.admits(&o("https://example.net")), "a wildcard needs a subdomain");
        assert!(!wild.admits(&o("https://evilexample.net")));
        assert!(!wild.admits(&o("http://api.example.net")), "scheme matters");
        assert!(!api.admits(&o("http://api.example.com")), "scheme matters");
        assert!(!api.admits(&o("https://api.example.com:8443")), "port matters");
        assert!(
            api.admits(&o("https://api.example.com:443")),
            "the default port is the port"
        );
        assert!(api.admits(&o("HTTPS://API.Example.COM")), "case does not matter");
        assert_eq!(o("http://127.0.0.1:8080").port, 8080);
    }

    #[test]
    fn what_is_not_an_origin_does_not_parse() {
        for s in [
            "https://x.test/path",
            "ftp://x.test",
            "x.test",
            "https://",
            "https://x.test:",
            "https://x.test:0",
            "https://x.test:65536",
            "https://x.test:+80",
            "https://user@x.test",
            "https://x.test?q",
            "https://x.test#f",
            "https://x .test",
            "https://a*.x.test",
            "https://*.",
            "https://*",
            "https://x..test",
            "https://[::1",
            "https://[::1]8080",
            "https://[nothex]:80",
        ] {
            assert!(Origin::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn ipv6_hosts_are_kept_without_brackets_and_shown_with_them() {
        let v6 = o("http://[::1]:8080");
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.port, 8080);
        assert_eq!(v6.to_string(), "http://[::1]:8080");
        assert_eq!(o("https://[2606:4700::1111]").port, 443);
        assert_eq!(o("https://[2606:4700::1111]").authority(), "[2606:4700::1111]");
        assert_eq!(o("http://x.test:80").authority(), "x.test");
        assert_eq!(o("https://x.test:80").authority(), "x.test:80");
        // What the host builds from a request URI (brackets already stripped) matches.
        let asked = Origin {
            scheme: "http".into(),
            host: "::1".into(),
            port: 8080,
        };
        assert!(v6.admits(&asked));
    }

    #[test]
    fn the_text_form_names_the_port_and_reads_back() {
        for s in [
            "https://api.github.com",
            "http://*.double.test",
            "http://[::1]:9",
            "http://127.0.0.1:8080",
        ] {
            let origin = o(s);
            assert_eq!(o(&origin.to_string()), origin);
            let json = serde_json::to_string(&origin).unwrap();
            assert_eq!(serde_json::from_str::<Origin>(&json).unwrap(), origin);
        }
        assert_eq!(o("https://api.github.com").to_string(), "https://api.github.com:443");
        assert!(serde_json::from_str::<Origin>(r#""https://x.test/path""#).is_err());
        assert_eq!(
            "nope".parse::<Origin>().unwrap_err().to_string(),
            r#""nope" is not an origin (scheme://host[:port], https or http, no path)"#
        );
    }

    #[test]
    fn a_url_has_the_origin_of_its_scheme_host_and_port() {
        assert_eq!(
            Origin::of_url("https://api.github.com/user?page=2"),
            Some(o("https://api.github.com"))
        );
        assert_eq!(
            Origin::of_url("http://127.0.0.1:8080?x=1"),
            Some(o("http://127.0.0.1:8080"))
        );
        assert_eq!(
            Origin::of_url("https://api.github.com#top"),
            Some(o("https://api.github.com"))
        );
        assert_eq!(Origin::of_url("https://user:pw@api.github.com/"), None);
        assert_eq!(Origin::of_url("https://*.github.com/"), None, "a URL names one host");
        assert_eq!(Origin::of_url("/relative/path"), None);
    }
}
