//! The egress policy of one run: may this origin be reached, where does it
//! really go, and which addresses may the connection use.
//!
//! [`EgressPolicy`] joins the connector's [`Allowlist`] with the deployment's
//! [`EgressConfig`] (rewrites and address rules). Every transport asks it and
//! applies the answer without a rule of its own: the `wasi:http` hooks
//! (`sandbox::caps::http`) for the guest's requests, the browser for
//! navigations and the requests a page makes. A decision is either a
//! [`Route`] or a typed [`Refusal`] whose [`Refusal::reason`] is the code the
//! run timeline records.

use super::{AddressPolicy, Allowlist, Origin, Rewrites};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

impl EgressConfig {
    /// The address rules these settings make.
    pub fn addresses(&self) -> AddressPolicy {
        AddressPolicy {
            allow_private: self.allow_private_addresses,
            allow_loopback_for_rewrites: self.allow_loopback_for_rewrites,
        }
    }

    /// The origin rewrites, in both directions.
    pub fn rewrites(&self) -> Rewrites<'_> {
        Rewrites::new(&self.rewrites)
    }
}

/// Where an admitted request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The origin the connector asked for (what timelines show).
    pub declared: Origin,
    /// The origin the host connects to: the declared one, or its rewrite.
    pub target: Origin,
    /// A deployment rewrite applied (loopback may then be allowed).
    pub rewritten: bool,
}

/// Why the policy refused a request. Nothing left the host.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The text is not an absolute `http(s)` URL (never quoted: it may carry a secret).
    #[error("the URL is not an absolute http(s) URL")]
    InvalidUrl,
    #[error("{0} is not one of the connector's allowed origins")]
    OriginNotAllowed(Origin),
    #[error("no address of {host} may be reached from this host")]
    AddressBlocked { host: String },
    #[error("{host} does not resolve")]
    DnsFailed { host: String },
    #[error("resolving {host} timed out")]
    DnsTimeout { host: String },
}

impl Refusal {
    /// The stable code the run timeline records (`refused`).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::InvalidUrl => "invalid_url",
            Refusal::OriginNotAllowed(_) => "origin_not_allowed",
            Refusal::AddressBlocked { .. } => "address_blocked",
            Refusal::DnsFailed { .. } => "dns_failed",
            Refusal::DnsTimeout { .. } => "dns_timeout",
        }
    }
}

/// One run's egress policy. Cloning is cheap (two shared pointers); the
/// default refuses every origin.
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    allowlist: Allowlist,
    deployment: Arc<EgressConfig>,
}

impl EgressPolicy {
    pub fn new(allowlist: Allowlist, deployment: Arc<EgressConfig>) -> Self {
        EgressPolicy { allowlist, deployment }
    }

    /// Refuses every origin.
    pub fn deny_all() -> Self {
        EgressPolicy::default()
    }

    pub fn allowlist(&self) -> &Allowlist {
        &self.allowlist
    }

    pub fn addresses(&self) -> AddressPolicy {
        self.deployment.addresses()
    }

    pub fn rewrites(&self) -> Rewrites<'_> {
        self.deployment.rewrites()
    }

    /// May `declared` be reached, and where does it really go. The allowlist
    /// is checked against the origin the connector asked for, never against
    /// a rewrite target.
    pub fn route(&self, declared: &Origin) -> Result<Route, Refusal> {
        if !self.allowlist.admits(declared) {
            return Err(Refusal::OriginNotAllowed(declared.clone()));
        }
        Ok(match self.rewrites().forward(declared) {
            Some(target) => Route {
                declared: declared.clone(),
                target: target.clone(),
                rewritten: true,
            },
            None => Route {
                declared: declared.clone(),
                target: declared.clone(),
                rewritten: false,
            },
        })
    }

    /// [`EgressPolicy::route`] for an absolute URL.
    pub fn route_url(&self, url: &str) -> Result<Route, Refusal> {
        let origin = Origin::of_url(url).ok_or(Refusal::InvalidUrl)?;
        self.route(&origin)
    }

    /// A URL at a rewrite target as the connector or page should see it (at
    /// the declared origin); unchanged when no rule maps it back.
    pub fn reverse_url(&self, url: &str) -> String {
        self.rewrites().reverse_url(url).unwrap_or_else(|| url.to_owned())
    }

    /// Resolve the route's target and keep only the addresses the address
    /// policy admits, in resolver order. Connect to one of these: resolving
    /// again would let DNS answer differently between check and connect.
    pub async fn resolve(&self, route: &Route, timeout: Duration) -> Result<Vec<SocketAddr>, Refusal> {
        let host = route.target.host.as_str();
        let found = match tokio::time::timeout(timeout, tokio::net::lookup_host((host, route.target.port))).await {
            Ok(Ok(found)) => found,
            Ok(Err(_)) => return Err(Refusal::DnsFailed { host: host.to_owned() }),
            Err(_) => return Err(Refusal::DnsTimeout { host: host.to_owned() }),
        };
        let addresses = self.addresses();
        let admitted: Vec<SocketAddr> = found.filter(|a| addresses.admits(a.ip(), route.rewritten)).collect();
        if admitted.is_empty() {
            return Err(Refusal::AddressBlocked { host: host.to_owned() });
        }
        Ok(admitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Origin {
        Origin::parse(s).unwrap()
    }

    fn policy(config: EgressConfig) -> EgressPolicy {
        EgressPolicy::new(
            Allowlist::parse(["https://api.example.com", "https://*.example.net", "http://127.0.0.1:9"]),
            Arc::new(config),
        )
    }

    fn double() -> EgressConfig {
        EgressConfig {
            rewrites: vec![(origin("https://api.example.com"), origin("http://127.0.0.1:9"))],
            allow_loopback_for_rewrites: true,
            ..EgressConfig::default()
        }
    }

    #[test]
    fn an_undeclared_origin_is_refused_as_origin_not_allowed() {
        let p = policy(EgressConfig::default());
        let e = p.route(&origin("https://evil.example.org")).unwrap_err();
        assert_eq!(e.reason(), "origin_not_allowed");
        assert_eq!(
            p.route_url("https://example.net/").unwrap_err().reason(),
            "origin_not_allowed"
        );
        assert_eq!(p.route_url("relative/path").unwrap_err(), Refusal::InvalidUrl);
        assert_eq!(Refusal::InvalidUrl.reason(), "invalid_url");
        assert_eq!(
            EgressPolicy::deny_all()
                .route(&origin("https://api.example.com"))
                .unwrap_err()
                .reason(),
            "origin_not_allowed"
        );
    }

    #[test]
    fn an_allowed_origin_routes_to_its_rewrite_target() {
        let p = policy(double());
        let r = p.route_url("https://api.example.com/v1/me").unwrap();
        assert_eq!(r.declared, origin("https://api.example.com"));
        assert_eq!(r.target, origin("http://127.0.0.1:9"));
        assert!(r.rewritten);
        let r = p.route(&origin("https://a.example.net")).unwrap();
        assert_eq!(r.target, r.declared);
        assert!(!r.rewritten);
        assert_eq!(
            p.reverse_url("http://127.0.0.1:9/login"),
            "https://api.example.com/login"
        );
        assert_eq!(p.reverse_url("https://a.example.net/x"), "https://a.example.net/x");
    }

    #[test]
    fn a_rewrite_target_is_not_itself_allowed() {
        let p = EgressPolicy::new(Allowlist::parse(["https://api.example.com"]), Arc::new(double()));
        assert_eq!(
            p.route(&origin("http://127.0.0.1:9")).unwrap_err().reason(),
            "origin_not_allowed"
        );
    }

    #[tokio::test]
    async fn loopback_is_blocked_unless_the_origin_was_rewritten_and_the_deployment_allows_it() {
        let p = policy(double());
        let direct = p.route(&origin("http://127.0.0.1:9")).unwrap();
        let e = p.resolve(&direct, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.reason(), "address_blocked");
        let rewritten = p.route(&origin("https://api.example.com")).unwrap();
        let addrs = p.resolve(&rewritten, Duration::from_secs(5)).await.unwrap();
        assert_eq!(addrs, ["127.0.0.1:9".parse::<SocketAddr>().unwrap()]);

        let strict = policy(EgressConfig {
            allow_loopback_for_rewrites: false,
            ..double()
        });
        let e = strict.resolve(&rewritten, Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.reason(), "address_blocked");

        let open = policy(EgressConfig {
            allow_private_addresses: true,
            ..EgressConfig::default()
        });
        assert!(open.resolve(&direct, Duration::from_secs(5)).await.is_ok());
    }

    /// IPv6 literal origins are supported: listed in one canonical spelling,
    /// and their addresses pass the same checks as a resolved name's.
    #[tokio::test]
    async fn ipv6_literal_origins_are_canonical_and_address_checked() {
        let p = EgressPolicy::new(
            Allowlist::parse([
                "https://[2001:db8::1]",
                "http://[0:0:0:0:0:0:0:1]:9",
                "http://[::ffff:127.0.0.1]:9",
            ]),
            Arc::default(),
        );
        let public = p.route_url("https://[2001:0db8:0:0::1]/v1").unwrap();
        assert_eq!(
            public.declared,
            origin("https://[2001:db8::1]"),
            "any spelling of the address"
        );
        assert_eq!(public.declared.authority(), "[2001:db8::1]");
        // 2001:db8::/32 is documentation space: blocked like any reserved range.
        assert_eq!(
            p.resolve(&public, Duration::from_secs(5)).await.unwrap_err().reason(),
            "address_blocked"
        );
        for url in ["http://[::1]:9/", "http://[::ffff:127.0.0.1]:9/"] {
            let loopback = p.route_url(url).unwrap();
            assert_eq!(
                p.resolve(&loopback, Duration::from_secs(5)).await.unwrap_err().reason(),
                "address_blocked",
                "{url}"
            );
        }
        assert!(Origin::parse("https://[::g]").is_none(), "not an IPv6 address");
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_dns_failed() {
        // `.invalid` never resolves (RFC 6761).
        let p = EgressPolicy::new(Allowlist::parse(["https://nothing.invalid"]), Arc::default());
        let route = p.route(&origin("https://nothing.invalid")).unwrap();
        let e = p.resolve(&route, Duration::from_secs(30)).await.unwrap_err();
        assert_eq!(
            e,
            Refusal::DnsFailed {
                host: "nothing.invalid".into()
            }
        );
        assert_eq!(e.reason(), "dns_failed");
    }
}
