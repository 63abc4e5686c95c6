//! Runtime binding names: the one place that spells them.
//!
//! A manifest's `runtime_requirements.bindings` names what a connector needs
//! from the host (`network`, `interactive`, `browser_automation`, …). The
//! profile's names are canonical; the reference implementation's aliases
//! (`browser` for `browser_automation`) are accepted and mean the same thing
//! wherever a binding is compared: the manifest validator, START's bindings,
//! the grants a plugin is linked with.

use super::Manifest;

/// Outgoing HTTP to the origins the binding's `allowed_origins` lists.
pub const NETWORK: &str = "network";
/// An owner can answer INTERACTIONs during the run.
pub const INTERACTIVE: &str = "interactive";
/// A host-held browser the connector drives.
pub const BROWSER_AUTOMATION: &str = "browser_automation";
/// The reference implementation's alias of [`BROWSER_AUTOMATION`].
pub const BROWSER: &str = "browser";

/// Binding names the host understands (the profile's standard names plus the
/// reference implementation's aliases). Namespaced extensions (`acme:gpu`,
/// `org.example.gpu`) are accepted as well.
pub const KNOWN_BINDINGS: &[&str] = &[
    NETWORK,
    INTERACTIVE,
    BROWSER,
    BROWSER_AUTOMATION,
    "browser_profile",
    "filesystem",
    "loopback_listen",
];

/// The profile's name for a binding; an alias maps to it (`browser` is
/// `browser_automation`), every other name to itself.
pub fn canonical(name: &str) -> &str {
    match name {
        BROWSER => BROWSER_AUTOMATION,
        other => other,
    }
}

impl Manifest {
    /// Whether the manifest marks the binding `required: true`, under its
    /// canonical name or an alias of it.
    pub fn requires_binding(&self, name: &str) -> bool {
        let wanted = canonical(name);
        self.required_bindings().any(|b| canonical(b) == wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn browser_is_an_alias_of_browser_automation() {
        assert_eq!(canonical(BROWSER), BROWSER_AUTOMATION);
        assert_eq!(canonical(BROWSER_AUTOMATION), BROWSER_AUTOMATION);
        assert_eq!(canonical(NETWORK), NETWORK);
        let m = Manifest::from_json(
            &json!({
                "connector_id": "t", "version": "1",
                "streams": [{ "name": "s", "primary_key": ["id"], "schema": { "properties": { "id": {} } } }],
                "runtime_requirements": { "bindings": {
                    "browser": { "required": true }, "network": { "required": false } } }
            })
            .to_string(),
        )
        .unwrap();
        assert!(m.requires_binding(BROWSER_AUTOMATION));
        assert!(m.requires_binding(BROWSER));
        assert!(!m.requires_binding(NETWORK), "declared but not required");
        assert!(!m.requires_binding(INTERACTIVE));
    }
}
