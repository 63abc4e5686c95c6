//! The run's egress policy as the browser engine consumes it, and the
//! mapping between declared URLs and deployment rewrite targets.
//!
//! The engine does not decide what a run may reach: [`BrowserEgressPolicy`]
//! is the seam, and the host's run policy [`EgressPolicy`] (the very one
//! `wasi:http` obeys: the manifest's allowlist, the address policy, the
//! deployment's rewrites) implements it.
//!
//! **Rewrites.** A deployment may rewrite a declared origin to another one
//! (a self-hosted instance, or a loopback test double such as
//! `https://www.example.com` → `http://127.0.0.1:8081`). The browser cannot
//! be fooled about a scheme (it would speak TLS to a plain server), so the
//! engine maps a URL forward when it navigates ([`forward_url`]: the browser
//! really loads the target) and back when it returns one
//! ([`declared_url`]: the connector only ever sees declared origins). The
//! egress proxy recognises a target origin as standing for its declared
//! origin, so the policy check is always made on the declared origin.
//! This module owns no transport and no I/O.

use super::error::Refusal;
use crate::egress::EgressPolicy;
use std::net::IpAddr;
use url::Url;

pub use crate::egress::Origin;

/// What a browser session may reach. Implemented by the host's egress policy;
/// every method is cheap and synchronous (it is called for every request the
/// page makes).
pub trait BrowserEgressPolicy: Send + Sync + 'static {
    /// Whether the run may reach this declared origin.
    fn check_origin(&self, origin: &Origin) -> Result<(), Refusal>;

    /// The deployment's rewrite target for a declared origin, if any.
    fn rewrite(&self, declared: &Origin) -> Option<Origin>;

    /// The declared origin a rewrite target stands for (the reverse rewrite),
    /// if `target` is one.
    fn declared_for(&self, target: &Origin) -> Option<Origin>;

    /// Whether the host may connect to `ip` for an admitted request;
    /// `rewritten` says whether the request goes to a rewrite target.
    fn check_address(&self, ip: IpAddr, rewritten: bool) -> Result<(), Refusal>;
}

/// The run's egress policy, exactly as `wasi:http` applies it: the
/// manifest's allowlist (`*.` wildcards), rewrites looked up by the declared
/// origin (a `*.` rewrite is never reversed), loopback reachable only
/// through a rewrite when the deployment allows it, private, link-local,
/// CGNAT and metadata addresses only when the deployment allows them.
impl BrowserEgressPolicy for EgressPolicy {
    fn check_origin(&self, origin: &Origin) -> Result<(), Refusal> {
        if self.allowlist().admits(origin) {
            Ok(())
        } else {
            Err(Refusal::OriginNotAllowed)
        }
    }

    fn rewrite(&self, declared: &Origin) -> Option<Origin> {
        self.rewrites().forward(declared).cloned()
    }

    fn declared_for(&self, target: &Origin) -> Option<Origin> {
        self.rewrites().reverse(target).cloned()
    }

    fn check_address(&self, ip: IpAddr, rewritten: bool) -> Result<(), Refusal> {
        if self.addresses().admits(ip, rewritten) {
            Ok(())
        } else {
            Err(Refusal::AddressBlocked)
        }
    }
}

/// The origin of an `http`/`https` URL, as the policy compares origins.
pub fn origin_of(url: &Url) -> Option<Origin> {
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    Some(Origin {
        scheme: scheme.to_owned(),
        host: url.host_str()?.trim_matches(['[', ']']).to_ascii_lowercase(),
        port: url.port_or_known_default()?,
    })
}

/// Put `url` on `origin`, keeping path, query and fragment.
fn with_origin(url: &Url, origin: &Origin) -> Option<Url> {
    let mut out = url.clone();
    out.set_scheme(&origin.scheme).ok()?;
    out.set_host(Some(&origin.host)).ok()?;
    let default = if origin.scheme == "https" { 443 } else { 80 };
    out.set_port((origin.port != default).then_some(origin.port)).ok()?;
    Some(out)
}

/// The URL the browser must really load for a declared URL, and whether a
/// rewrite applied.
pub fn forward_url(policy: &dyn BrowserEgressPolicy, declared: &Url) -> (Url, bool) {
    match origin_of(declared).and_then(|o| policy.rewrite(&o)) {
        Some(target) => match with_origin(declared, &target) {
            Some(u) => (u, true),
            None => (declared.clone(), false),
        },
        None => (declared.clone(), false),
    }
}

/// The declared form of a URL the browser reports: a rewrite target's origin
/// is replaced by the declared origin it stands for. Anything else (another
/// origin, `data:`, a string that is not a URL) is returned unchanged.
pub fn declared_url(policy: &dyn BrowserEgressPolicy, actual: &str) -> String {
    let Ok(url) = Url::parse(actual) else {
        return actual.to_owned();
    };
    match origin_of(&url).and_then(|o| policy.declared_for(&o)) {
        Some(declared) => with_origin(&url, &declared).map_or_else(|| actual.to_owned(), |u| u.to_string()),
        None => actual.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::egress::{Allowlist, EgressConfig};
    use std::sync::Arc;

    fn policy(allow_loopback: bool) -> EgressPolicy {
        EgressPolicy::new(
            Allowlist::parse(["https://www.example.com", "https://*.cdn.example.com"]),
            Arc::new(EgressConfig {
                rewrites: vec![(
                    Origin::parse("https://www.example.com").unwrap(),
                    Origin::parse("http://127.0.0.1:8081").unwrap(),
                )],
                allow_private_addresses: false,
                allow_loopback_for_rewrites: allow_loopback,
            }),
        )
    }

    #[test]
    fn rewrite_maps_declared_urls_forward_and_reported_urls_back() {
        let p = policy(true);
        let declared = Url::parse("https://www.example.com/login?next=%2Fhome#top").unwrap();
        let (actual, rewritten) = forward_url(&p, &declared);
        assert!(rewritten);
        assert_eq!(actual.as_str(), "http://127.0.0.1:8081/login?next=%2Fhome#top");
        assert_eq!(declared_url(&p, actual.as_str()), declared.as_str());
        // Other origins and non-URLs pass unchanged.
        assert_eq!(declared_url(&p, "http://127.0.0.1:9999/x"), "http://127.0.0.1:9999/x");
        assert_eq!(declared_url(&p, "data:,"), "data:,");
        assert_eq!(declared_url(&p, "/relative"), "/relative");
        let (same, rewritten) = forward_url(&p, &Url::parse("https://a.cdn.example.com/x").unwrap());
        assert!(!rewritten);
        assert_eq!(same.as_str(), "https://a.cdn.example.com/x");
    }

    #[test]
    fn loopback_is_reachable_only_through_a_rewrite_the_deployment_allows() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(policy(true).check_address(lo, true), Ok(()));
        assert_eq!(policy(true).check_address(lo, false), Err(Refusal::AddressBlocked));
        assert_eq!(policy(false).check_address(lo, true), Err(Refusal::AddressBlocked));
        let private: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(policy(true).check_address(private, true), Err(Refusal::AddressBlocked));
        assert_eq!(policy(true).check_address("1.1.1.1".parse().unwrap(), false), Ok(()));
    }

    #[test]
    fn declared_origins_and_wildcards_are_admitted_and_nothing_else() {
        let p = policy(true);
        let o = |s: &str| Origin::parse(s).unwrap();
        assert_eq!(p.check_origin(&o("https://www.example.com")), Ok(()));
        assert_eq!(p.check_origin(&o("https://img.cdn.example.com")), Ok(()));
        assert_eq!(
            p.check_origin(&o("http://www.example.com")),
            Err(Refusal::OriginNotAllowed)
        );
        assert_eq!(p.check_origin(&o("https://evil.test")), Err(Refusal::OriginNotAllowed));
        assert_eq!(
            p.declared_for(&o("http://127.0.0.1:8081")),
            Some(o("https://www.example.com"))
        );
    }
}
