//! `credentials_schema.properties.<FIELD>.bootstrap`: a connector's
//! declaration that the runtime may create a credential field for the owner
//! in a browser (docs/bootstrap.md).
//!
//! The declaration sits beside the paste form: the field it names must be a
//! field of `setup.credential_capture.fields`, so the owner can always paste
//! the credential instead. Only the types in [`BOOTSTRAP_TYPES`] are known;
//! anything else is refused with the field named, so a runtime never offers
//! "create it for me" for a flow it cannot run.

use super::{Manifest, ManifestError, bindings, err};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The bootstrap types this host runs.
pub const BOOTSTRAP_TYPES: &[&str] = &[BROWSER_PAT];

/// A personal-access-token-like credential made on a provider's web page
/// and shown once in it; the connector's `bootstrap` export drives the page
/// and hands the token to the host by selector.
pub const BROWSER_PAT: &str = "browser_pat";

/// `credentials_schema`: per credential field, how it may be obtained.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CredentialsSchema {
    #[serde(default)]
    pub properties: BTreeMap<String, CredentialProperty>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One property of `credentials_schema`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CredentialProperty {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Bootstrap>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `bootstrap`: where the credential is made and what the owner is told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// One of [`BOOTSTRAP_TYPES`].
    pub r#type: String,
    /// The page the credential is created on (an allowed browser origin).
    pub url: String,
    /// The site the owner must be signed in to (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_session: Option<String>,
    /// What happens, in the owner's words.
    pub instructions: String,
}

impl Manifest {
    /// Every declared bootstrap, by credential field.
    pub fn bootstraps(&self) -> impl Iterator<Item = (&str, &Bootstrap)> {
        self.credentials_schema
            .iter()
            .flat_map(|s| s.properties.iter())
            .filter_map(|(field, p)| Some((field.as_str(), p.bootstrap.as_ref()?)))
    }

    /// The bootstrap of one credential field, when declared.
    pub fn bootstrap_for(&self, field: &str) -> Option<&Bootstrap> {
        self.bootstraps().find(|(f, _)| *f == field).map(|(_, b)| b)
    }

    /// The origins the browser binding (required or not) lists, as written.
    pub fn browser_binding_origins(&self) -> Option<Vec<String>> {
        let (_, b) = self
            .runtime_requirements
            .bindings
            .iter()
            .find(|(name, _)| bindings::canonical(name) == bindings::BROWSER_AUTOMATION)?;
        let list = b.params.get("allowed_origins").and_then(Value::as_array);
        Some(
            list.into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        )
    }

    /// The bootstrap rules, in order, for every declared field:
    /// `bootstrap_type_known`, `bootstrap_field_declared`,
    /// `bootstrap_instructions_present`, `bootstrap_url_valid`,
    /// `bootstrap_requires_browser_binding`, `bootstrap_url_allowed`.
    pub(super) fn validate_bootstraps(&self) -> Result<(), ManifestError> {
        for (field, b) in self.bootstraps() {
            if !BOOTSTRAP_TYPES.contains(&b.r#type.as_str()) {
                return Err(err(
                    "bootstrap_type_known",
                    None,
                    Some(field),
                    format!(
                        "unknown bootstrap type {:?} for credential field {field} (known: {})",
                        b.r#type,
                        BOOTSTRAP_TYPES.join(", ")
                    ),
                ));
            }
            if !self.credential_fields().iter().any(|f| f.name == field) {
                return Err(err(
                    "bootstrap_field_declared",
                    None,
                    Some(field),
                    "a bootstrap names a field of setup.credential_capture.fields, so the owner can paste it instead",
                ));
            }
            if b.instructions.trim().is_empty() {
                return Err(err(
                    "bootstrap_instructions_present",
                    None,
                    Some(field),
                    "a bootstrap tells the owner what will happen (instructions)",
                ));
            }
            let Some(origin) = http_origin(&b.url) else {
                return Err(err(
                    "bootstrap_url_valid",
                    None,
                    Some(field),
                    "the bootstrap url is an absolute http(s) URL",
                ));
            };
            let Some(allowed) = self.browser_binding_origins() else {
                return Err(err(
                    "bootstrap_requires_browser_binding",
                    None,
                    Some(field),
                    "a browser bootstrap needs runtime_requirements.bindings.browser (it may be required: false) \
                     with the origins the flow visits",
                ));
            };
            if !allowed.iter().any(|a| origin_admits(a, &origin)) {
                return Err(err(
                    "bootstrap_url_allowed",
                    None,
                    Some(field),
                    format!("the bootstrap url's origin {origin} is not in the browser binding's allowed_origins"),
                ));
            }
        }
        Ok(())
    }
}

/// `scheme://host[:port]` of an http(s) URL, the port only when not the default.
fn http_origin(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    })
}

/// Whether an `allowed_origins` entry (exact, or `scheme://*.suffix`) admits `origin`.
fn origin_admits(allowed: &str, origin: &str) -> bool {
    let allowed = allowed.trim_end_matches('/');
    if let Some((scheme, rest)) = allowed.split_once("://*.") {
        return origin
            .strip_prefix(&format!("{scheme}://"))
            .is_some_and(|host| host.ends_with(&format!(".{rest}")));
    }
    http_origin(allowed).is_some_and(|a| a == origin)
}

#[cfg(test)]
mod tests {
    use crate::manifest::Manifest;
    use serde_json::{Value, json};

    fn base() -> Value {
        json!({
            "connector_id": "acme", "version": "1",
            "streams": [{ "name": "s", "primary_key": ["id"], "schema": { "properties": { "id": {} } } }],
            "setup": { "credential_capture": { "kind": "personal_access_token",
                "fields": [{ "name": "token", "label": "Token", "secret": true }] } },
            "runtime_requirements": { "bindings": {
                "network": { "required": true, "allowed_origins": ["https://api.acme.example"] },
                "browser": { "required": false, "allowed_origins": ["https://acme.example"] } } },
            "credentials_schema": { "properties": { "token": { "type": "string", "format": "password",
                "bootstrap": { "type": "browser_pat", "url": "https://acme.example/settings/tokens/new",
                    "requires_session": "acme.example", "instructions": "Sign in; the token is made for you." } } } }
        })
    }

    fn why(v: &Value) -> (&'static str, Option<String>) {
        let e = Manifest::from_value(v.clone()).expect_err("refused");
        (e.rule, e.field)
    }

    #[test]
    fn a_browser_pat_bootstrap_beside_the_paste_form_is_accepted() {
        let m = Manifest::from_value(base()).unwrap();
        let b = m.bootstrap_for("token").expect("declared");
        assert_eq!(b.r#type, "browser_pat");
        assert_eq!(b.requires_session.as_deref(), Some("acme.example"));
        assert_eq!(m.bootstraps().count(), 1);
        assert!(m.bootstrap_for("other").is_none());
    }

    #[test]
    fn bootstrap_type_known() {
        let mut m = base();
        m["credentials_schema"]["properties"]["token"]["bootstrap"]["type"] = json!("browser_oauth");
        assert_eq!(why(&m), ("bootstrap_type_known", Some("token".into())));
    }

    #[test]
    fn bootstrap_field_declared() {
        let mut m = base();
        let p = m["credentials_schema"]["properties"]["token"].clone();
        m["credentials_schema"]["properties"] = json!({ "api_token": p });
        assert_eq!(why(&m), ("bootstrap_field_declared", Some("api_token".into())));
    }

    #[test]
    fn bootstrap_instructions_present() {
        let mut m = base();
        m["credentials_schema"]["properties"]["token"]["bootstrap"]["instructions"] = json!("  ");
        assert_eq!(why(&m), ("bootstrap_instructions_present", Some("token".into())));
    }

    #[test]
    fn bootstrap_url_valid() {
        let mut m = base();
        for bad in ["/settings/tokens", "ftp://acme.example/x", "not a url"] {
            m["credentials_schema"]["properties"]["token"]["bootstrap"]["url"] = json!(bad);
            assert_eq!(why(&m), ("bootstrap_url_valid", Some("token".into())), "{bad}");
        }
    }

    #[test]
    fn bootstrap_requires_browser_binding() {
        let mut m = base();
        m["runtime_requirements"]["bindings"]
            .as_object_mut()
            .unwrap()
            .remove("browser");
        assert_eq!(why(&m), ("bootstrap_requires_browser_binding", Some("token".into())));
    }

    #[test]
    fn bootstrap_url_allowed() {
        let mut m = base();
        m["credentials_schema"]["properties"]["token"]["bootstrap"]["url"] = json!("https://evil.example/new");
        assert_eq!(why(&m), ("bootstrap_url_allowed", Some("token".into())));
        m["runtime_requirements"]["bindings"]["browser"]["allowed_origins"] = json!(["https://*.evil.example"]);
        m["credentials_schema"]["properties"]["token"]["bootstrap"]["url"] = json!("https://www.evil.example/new");
        Manifest::from_value(m).expect("a wildcard origin admits its subdomains");
    }

    #[test]
    fn a_bootstrap_without_a_url_is_a_schema_error() {
        let mut m = base();
        m["credentials_schema"]["properties"]["token"]["bootstrap"]
            .as_object_mut()
            .unwrap()
            .remove("url");
        let e = Manifest::from_value(m).unwrap_err();
        assert_eq!(e.rule, "manifest_schema");
        assert_eq!(
            e.field.as_deref(),
            Some("/credentials_schema/properties/token/bootstrap")
        );
    }
}
