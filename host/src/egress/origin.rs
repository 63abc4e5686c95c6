//! Origins: the unit every egress rule is written in.
//!
//! An origin is a scheme, a host and a port ([`Origin`], shared with the SDK
//! through `pdpp-types`, so both sides of the wasm boundary read URLs the
//! same way). Allowlists and rewrites are lists of origins; a request is
//! reduced to its origin before any rule looks at it. This file knows
//! nothing about what is allowed: see [`super::Allowlist`].

pub use pdpp_types::Origin;

/// The origin a request URI goes to, as the host sees it: the scheme
/// (`https` when absent), the lower-cased host without IPv6 brackets (empty
/// when absent, which no allowlist admits) and the port (the scheme's
/// default when absent).
pub fn origin_of_uri(uri: &http::Uri) -> Origin {
    let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    Origin { scheme, host, port }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_uri_is_reduced_to_its_origin() {
        let uri: http::Uri = "HTTP://API.Example.com:8080/v1/items?page=2".parse().unwrap();
        assert_eq!(
            origin_of_uri(&uri),
            Origin::parse("http://api.example.com:8080").unwrap()
        );
        let uri: http::Uri = "https://[::1]/x".parse().unwrap();
        let o = origin_of_uri(&uri);
        assert_eq!((o.host.as_str(), o.port), ("::1", 443));
        assert_eq!(
            o,
            Origin::parse("https://[::1]").unwrap(),
            "an IPv6 allowlist entry can admit it"
        );
        assert!(
            Origin::of_url("http://user:pw@example.com/x").is_none(),
            "user info is refused"
        );
    }
}
