//! What a plugin may do beyond the core: its grants, derived once from its
//! manifest when it is loaded.
//!
//! Every connector gets the core capabilities (emit, interaction, secrets,
//! log). The others are granted by a required manifest binding and only then
//! linked: `network` (outgoing HTTP to the binding's `allowed_origins`) and
//! `browser_automation` (a host-held browser that may reach its own
//! binding's `allowed_origins`, else the network binding's). A [`Capability`] names such a capability; [`Grants`]
//! holds what one plugin was granted, with each grant's parameters, and is
//! kept with the compiled plugin, so a run reads its allowlist and START
//! descriptors from there instead of from the manifest again.

use super::caps;
use crate::egress::{Allowlist, EgressConfig, EgressPolicy};
use crate::manifest::Manifest;
use crate::manifest::bindings;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A guest capability that is linked only when a manifest binding grants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// `wasi:http/outgoing-handler`, granted by the `network` binding.
    Network,
    /// `pdpp:connector/browser`, granted by the `browser_automation`
    /// binding (or its alias `browser`).
    Browser,
}

impl Capability {
    /// Every grantable capability.
    pub const ALL: [Capability; 2] = [Capability::Network, Capability::Browser];

    /// The manifest binding that grants it (canonical name).
    pub fn binding(self) -> &'static str {
        match self {
            Capability::Network => bindings::NETWORK,
            Capability::Browser => bindings::BROWSER_AUTOMATION,
        }
    }

    /// The WIT interfaces it links (package/interface, no version).
    pub(crate) fn interfaces(self) -> &'static [&'static str] {
        match self {
            Capability::Network => caps::http::INTERFACES,
            Capability::Browser => caps::browser::INTERFACES,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of grantable capabilities; the key linkers are built and cached by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CapabilitySet(u8);

impl CapabilitySet {
    pub fn contains(self, c: Capability) -> bool {
        self.0 & c.bit() != 0
    }

    pub fn with(self, c: Capability) -> Self {
        CapabilitySet(self.0 | c.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

/// What one plugin is granted beyond the core, with each grant's parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// The origins outgoing HTTP may reach; `None` without the `network` binding.
    network: Option<Allowlist>,
    /// The origins the browser may load; `None` without the browser binding.
    browser: Option<Allowlist>,
    /// The origins the browser may load in a credential bootstrap: the
    /// browser binding's (required or not), when the manifest declares a
    /// bootstrap. Runs get no browser from it.
    bootstrap: Option<Allowlist>,
}

impl Grants {
    /// The core only.
    pub fn none() -> Self {
        Grants::default()
    }

    /// The grants a manifest's required bindings make: `network` when it is
    /// required, with its `allowed_origins`; the browser when
    /// `browser_automation` (or `browser`) is required, with that binding's
    /// `allowed_origins`, else the network binding's.
    pub fn from_manifest(manifest: &Manifest) -> Self {
        let origins = |binding: &str| {
            let b = manifest
                .runtime_requirements
                .bindings
                .iter()
                .find(|(name, _)| bindings::canonical(name) == binding)?
                .1;
            let list = b.params.get("allowed_origins")?.as_array()?;
            Some(Allowlist::parse(list.iter().filter_map(Value::as_str)))
        };
        let network = manifest
            .requires_binding(bindings::NETWORK)
            .then(|| origins(bindings::NETWORK).unwrap_or_default());
        let browser = manifest.requires_binding(bindings::BROWSER_AUTOMATION).then(|| {
            origins(bindings::BROWSER_AUTOMATION)
                .or_else(|| origins(bindings::NETWORK))
                .unwrap_or_default()
        });
        let bootstrap = manifest
            .bootstraps()
            .next()
            .and_then(|_| origins(bindings::BROWSER_AUTOMATION));
        Grants {
            network,
            browser,
            bootstrap,
        }
    }

    /// The origins a credential bootstrap's browser may load, when the
    /// manifest declares a bootstrap.
    pub fn bootstrap_browser(&self) -> Option<&Allowlist> {
        self.bootstrap.as_ref()
    }

    /// These grants plus outgoing HTTP to `allowlist`.
    pub fn with_network(mut self, allowlist: Allowlist) -> Self {
        self.network = Some(allowlist);
        self
    }

    /// These grants plus a browser that may load `allowlist`.
    pub fn with_browser(mut self, allowlist: Allowlist) -> Self {
        self.browser = Some(allowlist);
        self
    }

    /// The origins outgoing HTTP may reach, when `network` is granted.
    pub fn network(&self) -> Option<&Allowlist> {
        self.network.as_ref()
    }

    /// The origins the browser may load, when it is granted.
    pub fn browser(&self) -> Option<&Allowlist> {
        self.browser.as_ref()
    }

    /// Which capabilities to link.
    pub fn capabilities(&self) -> CapabilitySet {
        let mut set = CapabilitySet::default();
        if self.network.is_some() {
            set = set.with(Capability::Network);
        }
        if self.browser.is_some() || self.bootstrap.is_some() {
            set = set.with(Capability::Browser);
        }
        set
    }

    /// The bindings these grants satisfy, with the descriptor START carries
    /// for each (`network`: `{"allowed_origins": [...]}`).
    pub fn descriptors(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        if let Some(allowlist) = &self.network {
            out.insert(
                bindings::NETWORK.to_owned(),
                json!({ "allowed_origins": allowlist.to_strings() }),
            );
        }
        if let Some(allowlist) = &self.browser {
            // The guest drives the host's browser through WIT; no CDP socket
            // or profile path is handed over.
            out.insert(
                bindings::BROWSER_AUTOMATION.to_owned(),
                json!({ "interface": "pdpp:connector/browser", "allowed_origins": allowlist.to_strings() }),
            );
        }
        out
    }

    /// A run's egress policy: the granted allowlist (nothing without the
    /// `network` grant) under the deployment's settings.
    pub fn egress_policy(&self, deployment: Arc<EgressConfig>) -> EgressPolicy {
        EgressPolicy::new(self.network.clone().unwrap_or_default(), deployment)
    }

    /// The browser's egress policy: its allowlist (nothing without the
    /// grant) under the same deployment settings as `wasi:http`.
    pub fn browser_policy(&self, deployment: Arc<EgressConfig>) -> EgressPolicy {
        EgressPolicy::new(self.browser.clone().unwrap_or_default(), deployment)
    }

    /// The browser's egress policy in a credential bootstrap: the browser
    /// grant's allowlist, else the bootstrap's.
    pub fn bootstrap_policy(&self, deployment: Arc<EgressConfig>) -> EgressPolicy {
        let list = self.browser.clone().or_else(|| self.bootstrap.clone());
        EgressPolicy::new(list.unwrap_or_default(), deployment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::Origin;

    fn manifest(bindings: Value) -> Manifest {
        Manifest::from_json(
            &json!({
                "connector_id": "t", "version": "1",
                "streams": [{ "name": "s", "primary_key": ["id"], "schema": { "properties": { "id": {} } } }],
                "runtime_requirements": { "bindings": bindings }
            })
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn a_required_network_binding_grants_its_allowed_origins() {
        let g = Grants::from_manifest(&manifest(json!({
            "network": { "required": true, "allowed_origins": ["https://api.example.com", "https://*.example.net"] }
        })));
        let allowlist = g.network().expect("network is granted");
        assert!(allowlist.admits(&Origin::parse("https://x.example.net").unwrap()));
        assert!(g.capabilities().contains(Capability::Network));
        assert_eq!(
            g.descriptors()["network"],
            json!({ "allowed_origins": ["https://api.example.com:443", "https://*.example.net:443"] })
        );
    }

    #[test]
    fn a_network_binding_that_is_not_required_grants_nothing() {
        let g = Grants::from_manifest(&manifest(json!({
            "network": { "required": false, "allowed_origins": ["https://api.example.com"] },
            "interactive": { "required": true }
        })));
        assert_eq!(g, Grants::none());
        assert_eq!(g.capabilities(), CapabilitySet::default());
        assert!(g.descriptors().is_empty());
        let policy = g.egress_policy(Arc::default());
        assert_eq!(
            policy
                .route(&Origin::parse("https://api.example.com").unwrap())
                .unwrap_err()
                .reason(),
            "origin_not_allowed",
            "without the grant the policy admits nothing"
        );
    }

    #[test]
    fn a_required_browser_binding_grants_its_own_origins_else_the_networks() {
        let own = Grants::from_manifest(&manifest(json!({
            "browser": { "required": true, "allowed_origins": ["https://www.example.com"] },
            "network": { "required": true, "allowed_origins": ["https://api.example.com"] }
        })));
        assert!(own.capabilities().contains(Capability::Browser));
        let loads = |g: &Grants, o: &str| g.browser().unwrap().admits(&Origin::parse(o).unwrap());
        assert!(loads(&own, "https://www.example.com"));
        assert!(!loads(&own, "https://api.example.com"));
        assert_eq!(
            own.descriptors()["browser_automation"]["allowed_origins"],
            json!(["https://www.example.com:443"])
        );
        let inherited = Grants::from_manifest(&manifest(json!({
            "browser_automation": { "required": true },
            "network": { "required": false, "allowed_origins": ["https://api.example.com"] }
        })));
        assert!(loads(&inherited, "https://api.example.com"));
        assert!(!inherited.capabilities().contains(Capability::Network));
    }

    #[test]
    fn a_declared_bootstrap_links_the_browser_for_bootstraps_only() {
        let m = Manifest::from_json(
            &json!({
                "connector_id": "t", "version": "1",
                "streams": [{ "name": "s", "primary_key": ["id"], "schema": { "properties": { "id": {} } } }],
                "setup": { "credential_capture": { "kind": "personal_access_token",
                    "fields": [{ "name": "token", "label": "Token", "secret": true }] } },
                "runtime_requirements": { "bindings": {
                    "network": { "required": true, "allowed_origins": ["https://api.example.com"] },
                    "browser": { "required": false, "allowed_origins": ["https://www.example.com"] } } },
                "credentials_schema": { "properties": { "token": { "bootstrap": { "type": "browser_pat",
                    "url": "https://www.example.com/tokens", "instructions": "made for you" } } } }
            })
            .to_string(),
        )
        .unwrap();
        let g = Grants::from_manifest(&m);
        assert!(
            g.capabilities().contains(Capability::Browser),
            "linked for the bootstrap"
        );
        assert!(g.browser().is_none(), "runs get no browser");
        assert!(!g.descriptors().contains_key("browser_automation"), "START offers none");
        let loads = g.bootstrap_browser().unwrap();
        assert!(loads.admits(&Origin::parse("https://www.example.com").unwrap()));
        assert!(!loads.admits(&Origin::parse("https://api.example.com").unwrap()));
    }

    #[test]
    fn capability_sets_hold_what_was_added() {
        let set = CapabilitySet::default();
        assert!(!set.contains(Capability::Network));
        let set = set.with(Capability::Network);
        assert_eq!(set.iter().collect::<Vec<_>>(), [Capability::Network]);
        assert_eq!(Capability::Network.binding(), "network");
    }
}
