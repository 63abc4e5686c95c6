//! Connector manifests: parsing and validation.
//!
//! A manifest is the connector's consent surface: its streams (schemas,
//! primary keys, cursors), the runtime bindings it needs and how it is set
//! up. The host validates it before a connector is offered or run, and every
//! error names the rule, the stream and the field it is about.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// Binding names the host understands (the profile's standard names plus the
/// reference implementation's aliases). Namespaced extensions (`acme:gpu`,
/// `org.example.gpu`) are accepted as well.
pub const KNOWN_BINDINGS: &[&str] = &[
    "network",
    "interactive",
    "browser",
    "browser_automation",
    "browser_profile",
    "filesystem",
    "loopback_listen",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub connector_id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub version: String,
    #[serde(default)]
    pub description: Option<String>,
    pub streams: Vec<StreamSpec>,
    #[serde(default)]
    pub runtime_requirements: RuntimeRequirements,
    #[serde(default)]
    pub setup: Option<Setup>,
    #[serde(default)]
    pub capabilities: Option<Value>,
    /// Everything else, kept as written.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub schema: Value,
    #[serde(deserialize_with = "string_or_list")]
    pub primary_key: Vec<String>,
    #[serde(default)]
    pub cursor_field: Option<String>,
    #[serde(default)]
    pub consent_time_field: Option<String>,
    #[serde(default)]
    pub incremental: bool,
    #[serde(default)]
    pub selection: Option<Selection>,
    #[serde(default)]
    pub state_stream: Option<String>,
    #[serde(default)]
    pub parent_streams: Option<Vec<String>>,
    #[serde(default)]
    pub coverage_strategy: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    #[serde(default)]
    pub resource_field: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeRequirements {
    #[serde(default)]
    pub bindings: BTreeMap<String, BindingRequirement>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BindingRequirement {
    #[serde(default)]
    pub required: bool,
    /// The binding's own parameters (e.g. allowed origins for `network`).
    #[serde(flatten)]
    pub params: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    #[serde(default)]
    pub modality: Option<String>,
    #[serde(default)]
    pub credential_capture: Option<CredentialCapture>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CredentialCapture {
    pub kind: String,
    #[serde(default)]
    pub fields: Vec<CredentialField>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CredentialField {
    pub name: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub secret: Option<bool>,
    /// The guest may read the plaintext (e.g. to sign requests). Every reveal
    /// is recorded.
    #[serde(default)]
    pub reveal: bool,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// A manifest that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// The rule that failed, e.g. `primary_key_in_schema`.
    pub rule: &'static str,
    pub stream: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "manifest rule {}", self.rule)?;
        if let Some(s) = &self.stream {
            write!(f, " (stream {s}")?;
            if let Some(field) = &self.field {
                write!(f, ", field {field}")?;
            }
            write!(f, ")")?;
        } else if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

fn err(rule: &'static str, stream: Option<&str>, field: Option<&str>, message: impl Into<String>) -> ManifestError {
    ManifestError {
        rule,
        stream: stream.map(str::to_owned),
        field: field.map(str::to_owned),
        message: message.into(),
    }
}

impl Manifest {
    /// Parse and validate manifest JSON.
    pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = serde_json::from_str(text)
            .map_err(|e| err("manifest_shape", None, None, format!("not a valid manifest: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Read, parse and validate a manifest file.
    pub fn from_file(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(
                "manifest_readable",
                None,
                None,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Manifest::from_json(&text)
    }

    pub fn stream(&self, name: &str) -> Option<&StreamSpec> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// Bindings the manifest marks `required: true`.
    pub fn required_bindings(&self) -> impl Iterator<Item = &str> {
        self.runtime_requirements
            .bindings
            .iter()
            .filter(|(_, b)| b.required)
            .map(|(n, _)| n.as_str())
    }

    /// Credential fields the connector may ask handles for.
    pub fn credential_fields(&self) -> &[CredentialField] {
        self.setup
            .as_ref()
            .and_then(|s| s.credential_capture.as_ref())
            .map_or(&[], |c| c.fields.as_slice())
    }

    /// The semantic rules (shape is already checked by parsing).
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.connector_id.trim().is_empty() {
            return Err(err(
                "connector_id_present",
                None,
                Some("connector_id"),
                "connector_id must not be empty",
            ));
        }
        if self.streams.is_empty() {
            return Err(err(
                "streams_non_empty",
                None,
                Some("streams"),
                "a manifest declares at least one stream",
            ));
        }
        let mut names = BTreeSet::new();
        for s in &self.streams {
            if s.name.trim().is_empty() || s.name == "*" {
                return Err(err(
                    "stream_name_valid",
                    Some(&s.name),
                    Some("name"),
                    "stream names are non-empty and not \"*\"",
                ));
            }
            if !names.insert(s.name.as_str()) {
                return Err(err(
                    "stream_names_unique",
                    Some(&s.name),
                    Some("name"),
                    "two streams share this name",
                ));
            }
            let props = s.schema.get("properties").and_then(Value::as_object).ok_or_else(|| {
                err(
                    "schema_properties",
                    Some(&s.name),
                    Some("schema.properties"),
                    "the schema must declare properties",
                )
            })?;
            if s.primary_key.is_empty() {
                return Err(err(
                    "primary_key_non_empty",
                    Some(&s.name),
                    Some("primary_key"),
                    "primary_key is empty",
                ));
            }
            for k in &s.primary_key {
                if !props.contains_key(k) {
                    return Err(err(
                        "primary_key_in_schema",
                        Some(&s.name),
                        Some(k),
                        "primary key field is not a schema property",
                    ));
                }
            }
            for (what, field) in [
                ("cursor_field", &s.cursor_field),
                ("consent_time_field", &s.consent_time_field),
            ] {
                if let Some(f) = field
                    && !props.contains_key(f)
                {
                    return Err(err(
                        if what == "cursor_field" {
                            "cursor_field_in_schema"
                        } else {
                            "consent_time_field_in_schema"
                        },
                        Some(&s.name),
                        Some(f),
                        format!("{what} is not a schema property"),
                    ));
                }
            }
            if let Some(f) = s.selection.as_ref().and_then(|sel| sel.resource_field.as_ref())
                && !props.contains_key(f)
            {
                return Err(err(
                    "resource_field_in_schema",
                    Some(&s.name),
                    Some(f),
                    "selection.resource_field is not a schema property",
                ));
            }
        }
        for name in self.runtime_requirements.bindings.keys() {
            let namespaced = name.contains(':') || name.contains('.');
            if !KNOWN_BINDINGS.contains(&name.as_str()) && !namespaced {
                return Err(err(
                    "binding_known",
                    None,
                    Some(name),
                    "unknown runtime binding (use a standard name or a namespaced extension)",
                ));
            }
        }
        let mut fields = BTreeSet::new();
        for f in self.credential_fields() {
            if f.name.trim().is_empty() || !fields.insert(f.name.as_str()) {
                return Err(err(
                    "credential_field_names_unique",
                    None,
                    Some(&f.name),
                    "credential fields have unique, non-empty names",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        serde_json::json!({
            "connector_id": "t", "version": "1",
            "streams": [{"name": "a", "primary_key": "id",
                "schema": {"type": "object", "properties": {"id": {"type": "string"}}}}]
        })
    }

    #[test]
    fn primary_key_in_schema() {
        let mut m = base();
        m["streams"][0]["primary_key"] = serde_json::json!(["nope"]);
        let e = Manifest::from_json(&m.to_string()).unwrap_err();
        assert_eq!(
            (e.rule, e.stream.as_deref(), e.field.as_deref()),
            ("primary_key_in_schema", Some("a"), Some("nope"))
        );
    }

    #[test]
    fn stream_names_unique() {
        let mut m = base();
        let s = m["streams"][0].clone();
        m["streams"].as_array_mut().unwrap().push(s);
        assert_eq!(
            Manifest::from_json(&m.to_string()).unwrap_err().rule,
            "stream_names_unique"
        );
    }

    #[test]
    fn binding_known() {
        let mut m = base();
        m["runtime_requirements"] = serde_json::json!({"bindings": {"gpu": {"required": true}}});
        assert_eq!(Manifest::from_json(&m.to_string()).unwrap_err().rule, "binding_known");
        m["runtime_requirements"] = serde_json::json!({"bindings": {"acme:gpu": {"required": true}}});
        assert!(Manifest::from_json(&m.to_string()).is_ok());
    }

    #[test]
    fn string_primary_key_is_a_one_field_key() {
        let m = Manifest::from_json(&base().to_string()).unwrap();
        assert_eq!(m.streams[0].primary_key, vec!["id".to_string()]);
    }
}
