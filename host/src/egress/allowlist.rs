//! The origins one connector may reach, as its manifest declares them.
//!
//! An [`Allowlist`] is built once per plugin from the manifest's
//! `runtime_requirements.bindings.network.allowed_origins` and shared by every
//! run of it. It answers one question, whether an origin is admitted; where a
//! request really goes and which addresses it may reach are
//! [`super::Rewrites`] and [`super::AddressPolicy`].

use super::Origin;
use std::sync::Arc;

/// Exact origins and `*.` subdomain patterns. Cloning shares the list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    origins: Arc<[Origin]>,
}

impl Allowlist {
    /// Admits nothing.
    pub fn empty() -> Self {
        Allowlist::default()
    }

    /// The given origins, in order.
    pub fn new(origins: impl IntoIterator<Item = Origin>) -> Self {
        Allowlist {
            origins: origins.into_iter().collect(),
        }
    }

    /// Parse origins written as `scheme://host[:port]`, dropping any that do
    /// not parse (the manifest validator reports those; a run never widens
    /// what it may reach because of one).
    pub fn parse<'a>(origins: impl IntoIterator<Item = &'a str>) -> Self {
        Allowlist::new(origins.into_iter().filter_map(Origin::parse))
    }

    /// Whether a concrete origin is one of the list or under one of its `*.` patterns.
    pub fn admits(&self, origin: &Origin) -> bool {
        self.origins.iter().any(|a| a.admits(origin))
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Origin> {
        self.origins.iter()
    }

    /// The origins as START's `network` descriptor lists them (`scheme://host:port`).
    pub fn to_strings(&self) -> Vec<String> {
        self.origins.iter().map(Origin::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Origin {
        Origin::parse(s).unwrap()
    }

    #[test]
    fn an_allowlist_admits_exact_origins_and_subdomains_of_wildcards() {
        let list = Allowlist::parse(["https://api.example.com", "https://*.cdn.example.com", "not an origin"]);
        assert_eq!(list.iter().count(), 2, "what does not parse is dropped");
        assert!(list.admits(&origin("https://api.example.com")));
        assert!(list.admits(&origin("https://img.cdn.example.com")));
        assert!(
            !list.admits(&origin("https://cdn.example.com")),
            "a wildcard needs a subdomain"
        );
        assert!(!list.admits(&origin("https://example.com")));
        assert!(!list.admits(&origin("http://api.example.com")), "scheme matters");
        assert!(!list.admits(&origin("https://api.example.com:444")), "port matters");
        assert_eq!(
            list.to_strings(),
            ["https://api.example.com:443", "https://*.cdn.example.com:443"]
        );
    }

    #[test]
    fn an_empty_allowlist_admits_nothing() {
        let list = Allowlist::empty();
        assert!(list.is_empty());
        assert!(!list.admits(&origin("https://api.example.com")));
    }
}
