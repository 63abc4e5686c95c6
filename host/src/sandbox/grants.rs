//! What a plugin may do beyond the core: its grants, derived once from its
//! manifest when it is loaded.
//!
//! Every connector gets the core capabilities (emit, interaction, secrets,
//! log). The others are granted by a required manifest binding and only then
//! linked: today `network` (outgoing HTTP to the binding's
//! `allowed_origins`). A [`Capability`] names such a capability; [`Grants`]
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
}

impl Capability {
    /// Every grantable capability.
    pub const ALL: [Capability; 1] = [Capability::Network];

    /// The manifest binding that grants it (canonical name).
    pub fn binding(self) -> &'static str {
        match self {
            Capability::Network => bindings::NETWORK,
        }
    }

    /// The WIT interfaces it links (package/interface, no version).
    pub(crate) fn interfaces(self) -> &'static [&'static str] {
        match self {
            Capability::Network => caps::http::INTERFACES,
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
}

impl Grants {
    /// The core only.
    pub fn none() -> Self {
        Grants::default()
    }

    /// The grants a manifest's required bindings make: `network` when it is
    /// required, with its `allowed_origins`.
    pub fn from_manifest(manifest: &Manifest) -> Self {
        let network = manifest.requires_binding(bindings::NETWORK).then(|| {
            let origins = manifest
                .runtime_requirements
                .bindings
                .get(bindings::NETWORK)
                .and_then(|b| b.params.get("allowed_origins"))
                .and_then(Value::as_array);
            Allowlist::parse(origins.into_iter().flatten().filter_map(Value::as_str))
        });
        Grants { network }
    }

    /// These grants plus outgoing HTTP to `allowlist`.
    pub fn with_network(mut self, allowlist: Allowlist) -> Self {
        self.network = Some(allowlist);
        self
    }

    /// The origins outgoing HTTP may reach, when `network` is granted.
    pub fn network(&self) -> Option<&Allowlist> {
        self.network.as_ref()
    }

    /// Which capabilities to link.
    pub fn capabilities(&self) -> CapabilitySet {
        let mut set = CapabilitySet::default();
        if self.network.is_some() {
            set = set.with(Capability::Network);
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
        out
    }

    /// A run's egress policy: the granted allowlist (nothing without the
    /// `network` grant) under the deployment's settings.
    pub fn egress_policy(&self, deployment: Arc<EgressConfig>) -> EgressPolicy {
        EgressPolicy::new(self.network.clone().unwrap_or_default(), deployment)
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
    fn capability_sets_hold_what_was_added() {
        let set = CapabilitySet::default();
        assert!(!set.contains(Capability::Network));
        let set = set.with(Capability::Network);
        assert_eq!(set.iter().collect::<Vec<_>>(), [Capability::Network]);
        assert_eq!(Capability::Network.binding(), "network");
    }
}
