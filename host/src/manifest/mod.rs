//! Connector manifests: parsing and validation.
//!
//! A manifest is the connector's consent surface: its streams (schemas,
//! primary keys, cursors), the runtime bindings it needs and how it is set
//! up. The host validates it before a connector is offered or run, and every
//! error names the rule, the stream and the field it is about.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::LazyLock;

/// The manifest shape (JSON Schema draft 2020-12), checked before anything
/// else. The file is the reference for connector authors.
pub const MANIFEST_SCHEMA: &str = include_str!("../../../manifests/schema/manifest.schema.json");

static SHAPE: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(MANIFEST_SCHEMA).expect("manifest.schema.json is JSON");
    jsonschema::validator_for(&schema).expect("manifest.schema.json is a valid JSON Schema")
});

/// Top-level keys a manifest may not set: they belong to the deployment (where
/// records are stored, which provider a connection belongs to), not to the
/// connector.
pub const RESERVED_KEYS: &[&str] = &["storage_binding", "provider_id"];

pub mod bindings;
pub mod bootstrap;
pub use bindings::KNOWN_BINDINGS;
pub use bootstrap::{BOOTSTRAP_TYPES, Bootstrap, CredentialsSchema};

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// Whether new connections may be made (tombstones, upstream blocks).
    #[serde(default)]
    pub lifecycle: Option<Lifecycle>,
    /// JSON Schema of the connection's non-secret settings (START.settings).
    /// Closed unless it says otherwise: a setting it does not name is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_schema: Option<Value>,
    /// `credentials_schema`: per credential field, how the runtime may
    /// obtain it for the owner (a browser bootstrap; see [`bootstrap`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_schema: Option<CredentialsSchema>,
    /// Everything else, kept as written.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
    /// Spellings this manifest uses that are deprecated, with what to write
    /// instead (not part of the document).
    #[serde(skip)]
    pub deprecations: Vec<String>,
}

/// `lifecycle`: a connector the catalog keeps listing but that takes no new
/// connections. Data already collected stays readable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lifecycle {
    pub status: LifecycleStatus,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub data_deleted_at: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStatus {
    Available,
    Removed,
    BlockedUpstream,
}

/// Settings that do not fit a connector's `settings_schema`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("settings{}: {message}", if pointer.is_empty() { String::new() } else { format!(" at {pointer}") })]
pub struct SettingsError {
    /// The JSON pointer of the offending value (empty: the whole object).
    pub pointer: String,
    pub message: String,
}

impl Manifest {
    /// Check a connection's settings against `settings_schema`: a JSON
    /// object, every value valid, and no setting the schema does not name
    /// (unless the schema allows others), so a typo is refused instead of
    /// silently running with defaults.
    pub fn check_settings(&self, settings: &Value) -> Result<(), SettingsError> {
        let Some(object) = settings.as_object() else {
            return Err(SettingsError {
                pointer: String::new(),
                message: "settings must be a JSON object".into(),
            });
        };
        let Some(schema) = &self.settings_schema else {
            return Ok(());
        };
        let named = schema.get("properties").and_then(Value::as_object);
        if let Some(named) = named
            && schema.get("additionalProperties").is_none()
            && let Some(unknown) = object.keys().find(|k| !named.contains_key(*k))
        {
            let known: Vec<&str> = named.keys().map(String::as_str).collect();
            return Err(SettingsError {
                pointer: format!("/{}", unknown.replace('~', "~0").replace('/', "~1")),
                message: format!(
                    "{} has no setting {unknown:?} (it has: {})",
                    self.connector_id,
                    known.join(", ")
                ),
            });
        }
        // Validated at manifest load; a schema that does not compile here is none.
        let Ok(validator) = jsonschema::validator_for(schema) else {
            return Ok(());
        };
        match validator.iter_errors(settings).next() {
            None => Ok(()),
            Some(e) => Err(SettingsError {
                pointer: e.instance_path().as_str().to_owned(),
                message: e.to_string(),
            }),
        }
    }

    /// Why new connections are refused, when they are.
    pub fn closed_for_setup(&self) -> Option<(LifecycleStatus, String)> {
        let l = self.lifecycle.as_ref()?;
        match l.status {
            LifecycleStatus::Available => None,
            status => Some((status, l.reason.clone().unwrap_or_default())),
        }
    }
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
    /// Limits the connector asks for; they only ever lower the deployment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ManifestLimits>,
}

/// `runtime_requirements.limits`: each field, when present, lowers the
/// deployment's limit of the same name (never raises it).
pub type ManifestLimits = crate::limits::LimitsOverride;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BindingRequirement {
    #[serde(default)]
    pub required: bool,
    /// The binding's own parameters (e.g. allowed origins for `network`).
    #[serde(flatten)]
    pub params: BTreeMap<String, Value>,
}

/// `setup`: how a connection of this connector is set up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// The declared modality (the planner also derives one from bindings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_capture: Option<CredentialCapture>,
    /// `synchronous`: the connector's credential probe checks a credential
    /// before it is stored; `first_sync`: the first sync does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    /// Deployment settings a provider app needs (names, or `{key}` objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployment_config: Vec<DeploymentConfigKey>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// When a captured credential is checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Validation {
    /// By the connector's credential probe, before anything is stored.
    Synchronous,
    /// By the first sync.
    #[default]
    FirstSync,
}

/// One deployment setting a provider app needs: a bare name or `{"key": name, …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeploymentConfigKey {
    Name(String),
    Entry {
        key: String,
        #[serde(flatten)]
        extra: BTreeMap<String, Value>,
    },
}

impl DeploymentConfigKey {
    /// The setting's name.
    pub fn key(&self) -> &str {
        match self {
            DeploymentConfigKey::Name(k) => k,
            DeploymentConfigKey::Entry { key, .. } => key,
        }
    }
}

/// `setup.credential_capture`: the credential form of a static-secret connector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CredentialCapture {
    /// One of [`crate::vault::KINDS`].
    pub kind: String,
    #[serde(default)]
    pub fields: Vec<CredentialField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `false`: a connection may run without any credential (the form is optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// How a credential field is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Password,
    Email,
}

/// One field of a credential form. The schema is closed on purpose: a
/// misspelt `secret` or `reveal` must not silently change how a value is handled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CredentialField {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<bool>,
    /// The guest may read the plaintext (e.g. to sign requests). Every reveal
    /// is recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reveal: bool,
    /// Where the host may substitute the field's placeholder in a request;
    /// absent means the `authorization` header only. A placeholder anywhere
    /// else refuses the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject: Option<Injection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<FieldType>,
    /// Absent means required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A credential field's `inject`: the request headers (case-insensitive)
/// and whether the body may carry its placeholder.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub body: bool,
}

impl CredentialField {
    /// Whether the owner must fill this field (the default).
    pub fn is_required(&self) -> bool {
        self.required != Some(false)
    }

    /// Whether the field holds a secret: declared so, or entered as a password.
    pub fn is_secret(&self) -> bool {
        self.secret.unwrap_or(true) || self.r#type == Some(FieldType::Password)
    }
}

/// `capabilities`: what the connector declares about itself beyond streams.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `capabilities.auth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthCapability>,
    /// `capabilities.proven.<what>`: recorded end-to-end proofs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub proven: BTreeMap<String, Proof>,
    /// `capabilities.refresh_policy`: how often the connector should run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_policy: Option<RefreshPolicy>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `capabilities.refresh_policy`: the connector's recommendations for
/// scheduling it (`recommended_mode`, `recommended_interval_seconds`,
/// `background_safe` are kept as written).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RefreshPolicy {
    /// Seconds between full-refresh runs, the only runs that find what was
    /// deleted upstream (see `runtime::FullRefreshPolicy`); absent: no
    /// periodic full refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_refresh_interval_seconds: Option<u64>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `capabilities.auth`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthCapability {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One recorded proof (`capabilities.proven.static_secret_live`, …).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Proof {
    #[serde(default)]
    pub proven: bool,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Manifest {
    /// The connector's recommended interval between full refreshes
    /// (`capabilities.refresh_policy.full_refresh_interval_seconds`).
    pub fn full_refresh_interval_seconds(&self) -> Option<u64> {
        self.capabilities
            .as_ref()?
            .refresh_policy
            .as_ref()?
            .full_refresh_interval_seconds
    }
}

impl Capabilities {
    /// Whether the proof named `what` is recorded as proven.
    pub fn proven(&self, what: &str) -> bool {
        self.proven.get(what).is_some_and(|p| p.proven)
    }
}

/// Deprecated spellings in a manifest document, each with its replacement.
fn deprecated_spellings(doc: &Value) -> Vec<String> {
    let Some(limits) = doc.pointer("/runtime_requirements/limits").and_then(Value::as_object) else {
        return Vec::new();
    };
    crate::limits::DEPRECATED_NAMES
        .iter()
        .filter(|(old, _)| limits.contains_key(*old))
        .map(|(old, new)| format!("runtime_requirements.limits.{old} is deprecated: write {new}"))
        .collect()
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
        // A shape error at the document root has the empty JSON pointer.
        let field = self.field.as_deref().filter(|f| !f.is_empty());
        if let Some(s) = &self.stream {
            write!(f, " (stream {s}")?;
            if let Some(field) = field {
                write!(f, ", field {field}")?;
            }
            write!(f, ")")?;
        } else if let Some(field) = field {
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
    /// Parse and validate manifest JSON: the shape (JSON Schema) first, then
    /// the semantic rules.
    pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| err("manifest_json", None, None, format!("not JSON: {e}")))?;
        Manifest::from_value(value)
    }

    /// Validate an already parsed manifest document: shape, then semantics.
    pub fn from_value(value: Value) -> Result<Manifest, ManifestError> {
        check_shape(&value)?;
        let deprecations = deprecated_spellings(&value);
        let mut manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| err("manifest_shape", None, None, format!("not a valid manifest: {e}")))?;
        manifest.validate()?;
        manifest.deprecations = deprecations;
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
    /// Whether a connection of this connector needs a stored credential to
    /// run (a capture block with fields, not marked `required: false`).
    pub fn needs_credential(&self) -> bool {
        let capture = self.setup.as_ref().and_then(|s| s.credential_capture.as_ref());
        capture.is_some_and(|c| !c.fields.is_empty() && c.required != Some(false))
    }

    pub fn credential_fields(&self) -> &[CredentialField] {
        self.setup
            .as_ref()
            .and_then(|s| s.credential_capture.as_ref())
            .map_or(&[], |c| c.fields.as_slice())
    }

    /// The semantic rules. `from_json` checks the shape first; this can also
    /// be called on a manifest built in code.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.connector_id.trim().is_empty() {
            return Err(err(
                "connector_id_present",
                None,
                Some("connector_id"),
                "connector_id must not be empty",
            ));
        }
        for key in RESERVED_KEYS {
            if self.extra.contains_key(*key) {
                return Err(err(
                    "manifest_reserved_key",
                    None,
                    Some(key),
                    format!("{key} is set by the deployment, not by the connector's manifest"),
                ));
            }
        }
        if self.streams.is_empty() {
            return Err(err(
                "streams_non_empty",
                None,
                Some("streams"),
                "a manifest declares at least one stream",
            ));
        }
        let declared: BTreeSet<&str> = self.streams.iter().map(|s| s.name.as_str()).collect();
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
            s.validate_fields()?;
            s.validate_checkpoint_dependencies(&declared)?;
        }
        self.check_dependency_cycles()?;
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
        if let Some(schema) = &self.settings_schema
            && let Err(e) = jsonschema::validator_for(schema)
        {
            return Err(err(
                "settings_schema_valid",
                None,
                Some("settings_schema"),
                format!("settings_schema is not a valid JSON Schema: {e}"),
            ));
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
            if f.secret == Some(true) && f.label.as_deref().is_none_or(|l| l.trim().is_empty()) {
                return Err(err(
                    "credential_field_label",
                    None,
                    Some(&f.name),
                    "a secret credential field needs a label, so the owner knows what they are handing over",
                ));
            }
        }
        self.validate_bootstraps()
    }

    /// `checkpoint_dependency_cycle`: depth-first search over every
    /// `state_stream` and `parent_streams` edge, with the usual colours
    /// (unvisited, on the current path, done). Only an edge back to a stream
    /// on the current path is a cycle; reaching a finished stream again
    /// (two children sharing a parent) is not.
    fn check_dependency_cycles(&self) -> Result<(), ManifestError> {
        let index: HashMap<&str, usize> = self
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let edges: Vec<Vec<(usize, &'static str)>> = self
            .streams
            .iter()
            .map(|s| {
                let state = s.state_stream.iter().map(|t| (t, "state_stream"));
                let parents = s.parent_streams.iter().flatten().map(|t| (t, "parent_streams"));
                state
                    .chain(parents)
                    .filter_map(|(t, field)| index.get(t.as_str()).map(|&i| (i, field)))
                    .collect()
            })
            .collect();

        #[derive(Clone, Copy, PartialEq)]
        enum Colour {
            Unvisited,
            OnPath,
            Done,
        }
        let mut colour = vec![Colour::Unvisited; self.streams.len()];
        for root in 0..self.streams.len() {
            if colour[root] != Colour::Unvisited {
                continue;
            }
            // Iterative, so a long dependency chain cannot overflow the stack:
            // each frame is (stream, index of its next edge to follow).
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            colour[root] = Colour::OnPath;
            while let Some(&mut (node, ref mut next)) = path.last_mut() {
                let Some(&(target, _)) = edges[node].get(*next) else {
                    colour[node] = Colour::Done;
                    path.pop();
                    continue;
                };
                *next += 1;
                match colour[target] {
                    Colour::Done => {}
                    Colour::Unvisited => {
                        colour[target] = Colour::OnPath;
                        path.push((target, 0));
                    }
                    Colour::OnPath => {
                        let start = path.iter().position(|&(n, _)| n == target).expect("on the path");
                        let cycle: Vec<&str> = path[start..]
                            .iter()
                            .map(|&(n, _)| self.streams[n].name.as_str())
                            .chain([self.streams[target].name.as_str()])
                            .collect();
                        // The edge that leaves the first stream of the cycle.
                        let (first, taken) = path[start];
                        let field = edges[first][taken - 1].1;
                        return Err(err(
                            "checkpoint_dependency_cycle",
                            Some(cycle[0]),
                            Some(field),
                            format!(
                                "Checkpoint-dependency cycle detected among streams: {}",
                                cycle.join(" -> ")
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl StreamSpec {
    /// `coverage_policy` as written (kept among the extra keys).
    pub fn coverage_policy(&self) -> Option<&str> {
        self.extra.get("coverage_policy").and_then(Value::as_str)
    }

    /// The stream's `required` flag as written, if any.
    pub fn required(&self) -> Option<bool> {
        self.extra.get("required").and_then(Value::as_bool)
    }

    /// Rules about the stream's own fields and its schema.
    fn validate_fields(&self) -> Result<(), ManifestError> {
        let s = self;
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
        Ok(())
    }

    /// The Collection Profile's checkpoint-dependency rules for one stream,
    /// in order. `declared` holds every stream name in the manifest.
    fn validate_checkpoint_dependencies(&self, declared: &BTreeSet<&str>) -> Result<(), ManifestError> {
        let name = Some(self.name.as_str());
        let strategy = self.coverage_strategy.as_deref();
        if self.state_stream.is_some() && self.parent_streams.is_some() {
            return Err(err(
                "state_stream_and_parent_streams",
                name,
                None,
                "a stream checkpoints under either its state_stream or its parent_streams, not both",
            ));
        }
        if let Some(state) = &self.state_stream {
            let problem = if state.trim().is_empty() {
                Some("state_stream is empty".to_owned())
            } else if *state == self.name {
                Some("state_stream names the stream itself (omit it instead)".to_owned())
            } else if !declared.contains(state.as_str()) {
                Some(format!("state_stream {state:?} is not a stream of this manifest"))
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(err("state_stream_valid", name, Some("state_stream"), message));
            }
            if strategy != Some("checkpoint_window") {
                return Err(err(
                    "state_stream_requires_checkpoint_window",
                    name,
                    Some("coverage_strategy"),
                    format!(
                        "a stream with a state_stream needs coverage_strategy \"checkpoint_window\", not {}",
                        describe(strategy)
                    ),
                ));
            }
        }
        if let Some(parents) = &self.parent_streams {
            if parents.is_empty() {
                return Err(err(
                    "parent_streams_valid",
                    name,
                    Some("parent_streams"),
                    "parent_streams is empty (omit it instead)",
                ));
            }
            let mut seen = BTreeSet::new();
            for (i, parent) in parents.iter().enumerate() {
                let problem = if parent.trim().is_empty() {
                    Some("is empty".to_owned())
                } else if !seen.insert(parent.as_str()) {
                    Some(format!("{parent:?} is listed twice"))
                } else if *parent == self.name {
                    Some("names the stream itself".to_owned())
                } else if !declared.contains(parent.as_str()) {
                    Some(format!("{parent:?} is not a stream of this manifest"))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    let field = format!("parent_streams[{i}]");
                    return Err(err(
                        "parent_streams_valid",
                        name,
                        Some(&field),
                        format!("parent_streams entry {i} {problem}"),
                    ));
                }
            }
            if strategy != Some("parent_detail_accounting") {
                return Err(err(
                    "parent_streams_require_parent_detail_accounting",
                    name,
                    Some("coverage_strategy"),
                    format!(
                        "a stream with parent_streams needs coverage_strategy \"parent_detail_accounting\", not {}",
                        describe(strategy)
                    ),
                ));
            }
        }
        if let Some(policy) = self.coverage_policy()
            && policy != "collect"
            && self.required() != Some(false)
        {
            return Err(err(
                "coverage_policy_requires_optional",
                name,
                Some("coverage_policy"),
                format!("coverage_policy {policy:?} is only allowed on a stream marked \"required\": false"),
            ));
        }
        Ok(())
    }
}

fn describe(strategy: Option<&str>) -> String {
    strategy.map_or_else(|| "none".to_owned(), |s| format!("{s:?}"))
}

/// The shape check: the embedded JSON Schema. The first error becomes a
/// `manifest_schema` error naming the instance path (a JSON pointer) and, for
/// a path under `/streams/N`, that stream's name.
fn check_shape(value: &Value) -> Result<(), ManifestError> {
    let Some(e) = SHAPE.iter_errors(value).next() else {
        return Ok(());
    };
    let pointer = e.instance_path().as_str().to_owned();
    let stream = pointer
        .strip_prefix("/streams/")
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| value.get("streams")?.get(i)?.get("name")?.as_str())
        .map(str::to_owned);
    Err(ManifestError {
        rule: "manifest_schema",
        stream,
        field: Some(pointer),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_are_checked_against_the_settings_schema_with_a_pointer() {
        let mut m = base();
        m["settings_schema"] =
            json!({ "type": "object", "properties": { "contacts": { "type": "integer", "minimum": 0 } } });
        let m = Manifest::from_value(m).unwrap();
        assert!(m.check_settings(&json!({ "contacts": 3 })).is_ok());
        let typo = m.check_settings(&json!({ "contact": 3 })).unwrap_err();
        assert_eq!(typo.pointer, "/contact");
        assert!(typo.message.contains("contacts"), "names what exists: {typo}");
        assert_eq!(
            m.check_settings(&json!({ "contacts": -1 })).unwrap_err().pointer,
            "/contacts"
        );
        assert_eq!(m.check_settings(&json!([1])).unwrap_err().pointer, "");
        let mut open = base();
        open["settings_schema"] = json!({ "type": "object", "properties": {}, "additionalProperties": true });
        assert!(
            Manifest::from_value(open)
                .unwrap()
                .check_settings(&json!({ "x": 1 }))
                .is_ok()
        );
        let mut broken = base();
        broken["settings_schema"] = json!({ "type": 12 });
        assert_eq!(Manifest::from_value(broken).unwrap_err().rule, "settings_schema_valid");
    }

    fn base() -> Value {
        json!({
            "connector_id": "t", "version": "1",
            "streams": [{"name": "a", "primary_key": "id",
                "schema": {"type": "object", "properties": {"id": {"type": "string"}}}}]
        })
    }

    /// A manifest whose streams are `id`-keyed streams with the given extra keys.
    fn with_streams(streams: &[(&str, Value)]) -> Value {
        let streams: Vec<Value> = streams
            .iter()
            .map(|(name, extra)| {
                let mut s = json!({"name": name, "primary_key": ["id"], "schema": {"properties": {"id": {}}}});
                s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
                s
            })
            .collect();
        json!({"connector_id": "t", "version": "1", "streams": streams})
    }

    fn window(state: &str) -> Value {
        json!({"state_stream": state, "coverage_strategy": "checkpoint_window"})
    }

    fn detail(parents: &[&str]) -> Value {
        json!({"parent_streams": parents, "coverage_strategy": "parent_detail_accounting"})
    }

    fn rejected(m: &Value) -> ManifestError {
        Manifest::from_json(&m.to_string()).expect_err("the manifest should be rejected")
    }

    /// (rule, stream, field) of the error, for one-line assertions.
    fn why(m: &Value) -> (&'static str, Option<String>, Option<String>) {
        let e = rejected(m);
        (e.rule, e.stream, e.field)
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    fn accepted(m: &Value) -> Manifest {
        Manifest::from_json(&m.to_string()).unwrap_or_else(|e| panic!("should be valid: {e}"))
    }

    #[test]
    fn demo_and_probe_manifests_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for file in ["../manifests/demo.json", "../tests/guests/probe/probe.json"] {
            if let Err(e) = Manifest::from_file(&root.join(file)) {
                panic!("{file}: {e}");
            }
        }
    }

    #[test]
    fn the_embedded_schema_compiles() {
        assert!(SHAPE.is_valid(&base()));
    }

    #[test]
    fn primary_key_in_schema() {
        let mut m = base();
        m["streams"][0]["primary_key"] = json!(["nope"]);
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
        m["runtime_requirements"] = json!({"bindings": {"gpu": {"required": true}}});
        assert_eq!(Manifest::from_json(&m.to_string()).unwrap_err().rule, "binding_known");
        m["runtime_requirements"] = json!({"bindings": {"acme:gpu": {"required": true}}});
        assert!(Manifest::from_json(&m.to_string()).is_ok());
    }

    #[test]
    fn string_primary_key_is_a_one_field_key() {
        let m = Manifest::from_json(&base().to_string()).unwrap();
        assert_eq!(m.streams[0].primary_key, vec!["id".to_string()]);
    }

    #[test]
    fn cursor_field_in_schema() {
        let mut m = base();
        m["streams"][0]["cursor_field"] = json!("updated_at");
        assert_eq!(why(&m), ("cursor_field_in_schema", s("a"), s("updated_at")));
    }

    #[test]
    fn consent_time_field_in_schema() {
        let mut m = base();
        m["streams"][0]["consent_time_field"] = json!("seen_at");
        assert_eq!(why(&m), ("consent_time_field_in_schema", s("a"), s("seen_at")));
    }

    #[test]
    fn resource_field_in_schema() {
        let mut m = base();
        m["streams"][0]["selection"] = json!({"resource_field": "calendar"});
        assert_eq!(why(&m), ("resource_field_in_schema", s("a"), s("calendar")));
    }

    // ---- shape (JSON Schema) ----

    #[test]
    fn missing_connector_id_is_a_schema_error() {
        let mut m = base();
        m.as_object_mut().unwrap().remove("connector_id");
        let e = rejected(&m);
        assert_eq!((e.rule, e.stream, e.field), ("manifest_schema", None, s("")));
        assert!(e.message.contains("connector_id"), "{}", e.message);
    }

    #[test]
    fn empty_streams_is_a_schema_error() {
        let mut m = base();
        m["streams"] = json!([]);
        assert_eq!(why(&m), ("manifest_schema", None, s("/streams")));
    }

    #[test]
    fn schema_error_names_the_stream_and_path() {
        let m = with_streams(&[("a", json!({})), ("b", json!({"cursor_field": 7}))]);
        let e = rejected(&m);
        assert_eq!(
            (e.rule, e.stream.as_deref(), e.field.as_deref()),
            ("manifest_schema", Some("b"), Some("/streams/1/cursor_field"))
        );
        assert!(e.message.contains("string"), "{}", e.message);
        assert!(e.to_string().contains("stream b, field /streams/1/cursor_field"), "{e}");
    }

    #[test]
    fn empty_primary_key_list_is_a_schema_error() {
        let mut m = base();
        m["streams"][0]["primary_key"] = json!([]);
        assert_eq!(why(&m), ("manifest_schema", s("a"), s("/streams/0/primary_key")));
        m["streams"][0]["primary_key"] = json!("");
        assert_eq!(why(&m), ("manifest_schema", s("a"), s("/streams/0/primary_key")));
    }

    #[test]
    fn schema_without_properties_is_a_schema_error() {
        let mut m = base();
        m["streams"][0]["schema"] = json!({"type": "object"});
        assert_eq!(why(&m), ("manifest_schema", s("a"), s("/streams/0/schema")));
    }

    #[test]
    fn unknown_coverage_strategy_is_a_schema_error() {
        let m = with_streams(&[
            ("a", json!({})),
            ("b", json!({"state_stream": "a", "coverage_strategy": "window"})),
        ]);
        assert_eq!(why(&m), ("manifest_schema", s("b"), s("/streams/1/coverage_strategy")));
    }

    #[test]
    fn unknown_coverage_policy_is_a_schema_error() {
        let m = with_streams(&[("a", json!({"coverage_policy": "later", "required": false}))]);
        assert_eq!(why(&m), ("manifest_schema", s("a"), s("/streams/0/coverage_policy")));
    }

    #[test]
    fn binding_value_that_is_not_an_object_is_a_schema_error() {
        let mut m = base();
        m["runtime_requirements"] = json!({"bindings": {"network": true}});
        assert_eq!(
            why(&m),
            ("manifest_schema", None, s("/runtime_requirements/bindings/network"))
        );
    }

    #[test]
    fn binding_required_that_is_not_a_boolean_is_a_schema_error() {
        let mut m = base();
        m["runtime_requirements"] = json!({"bindings": {"network": {"required": "yes"}}});
        assert_eq!(
            why(&m),
            (
                "manifest_schema",
                None,
                s("/runtime_requirements/bindings/network/required")
            )
        );
    }

    #[test]
    fn binding_parameters_are_kept() {
        let mut m = base();
        m["runtime_requirements"] = json!({"bindings": {"network": {"required": true, "origins": ["https://x"]}}});
        let m = accepted(&m);
        assert_eq!(m.required_bindings().collect::<Vec<_>>(), ["network"]);
        assert_eq!(
            m.runtime_requirements.bindings["network"].params["origins"],
            json!(["https://x"])
        );
    }

    #[test]
    fn unknown_credential_kind_is_a_schema_error() {
        let mut m = base();
        m["setup"] = json!({"credential_capture": {"kind": "cookie", "fields": []}});
        assert_eq!(why(&m), ("manifest_schema", None, s("/setup/credential_capture/kind")));
    }

    #[test]
    fn misspelt_credential_field_key_is_a_schema_error() {
        let mut m = base();
        m["setup"] = json!({"credential_capture": {"kind": "api_key",
            "fields": [{"name": "key", "label": "Key", "secert": true}]}});
        assert_eq!(
            why(&m),
            ("manifest_schema", None, s("/setup/credential_capture/fields/0"))
        );
    }

    #[test]
    fn extra_keys_at_top_level_and_in_streams_are_allowed() {
        let mut m = base();
        m["manifest_version"] = json!("0.1");
        m["streams"][0]["x-ui"] = json!({"icon": "star"});
        let m = accepted(&m);
        assert!(m.extra.contains_key("manifest_version"));
        assert!(m.streams[0].extra.contains_key("x-ui"));
    }

    #[test]
    fn text_that_is_not_json_is_rejected() {
        assert_eq!(Manifest::from_json("{").unwrap_err().rule, "manifest_json");
    }

    // ---- semantic rules ----

    #[test]
    fn manifest_reserved_key_storage_binding_is_rejected() {
        let mut m = base();
        m["storage_binding"] = json!("postgres");
        assert_eq!(why(&m), ("manifest_reserved_key", None, s("storage_binding")));
    }

    #[test]
    fn manifest_reserved_key_provider_id_is_rejected() {
        let mut m = base();
        m["provider_id"] = json!("acme");
        assert_eq!(why(&m), ("manifest_reserved_key", None, s("provider_id")));
    }

    #[test]
    fn credential_field_label_is_required_for_secrets() {
        let mut m = base();
        m["setup"] = json!({"credential_capture": {"kind": "api_key", "fields": [{"name": "key", "secret": true}]}});
        assert_eq!(why(&m), ("credential_field_label", None, s("key")));
        m["setup"]["credential_capture"]["fields"][0]["secret"] = json!(false);
        accepted(&m);
    }

    #[test]
    fn credential_field_names_unique() {
        let mut m = base();
        m["setup"] = json!({"credential_capture": {"kind": "secret_bundle",
            "fields": [{"name": "k", "label": "K"}, {"name": "k", "label": "K2"}]}});
        assert_eq!(why(&m), ("credential_field_names_unique", None, s("k")));
    }

    #[test]
    fn state_stream_and_parent_streams_together_are_rejected() {
        let m = with_streams(&[
            ("a", json!({})),
            (
                "b",
                json!({"state_stream": "a", "parent_streams": ["a"], "coverage_strategy": "checkpoint_window"}),
            ),
        ]);
        assert_eq!(why(&m), ("state_stream_and_parent_streams", s("b"), None));
    }

    #[test]
    fn state_stream_naming_itself_is_rejected() {
        let m = with_streams(&[("a", window("a"))]);
        assert_eq!(why(&m), ("state_stream_valid", s("a"), s("state_stream")));
    }

    #[test]
    fn state_stream_empty_is_rejected() {
        let m = with_streams(&[("a", window(""))]);
        assert_eq!(why(&m), ("state_stream_valid", s("a"), s("state_stream")));
    }

    #[test]
    fn state_stream_naming_an_undeclared_stream_is_rejected() {
        let m = with_streams(&[("a", json!({})), ("b", window("zz"))]);
        let e = rejected(&m);
        assert_eq!(
            (e.rule, e.stream, e.field),
            ("state_stream_valid", s("b"), s("state_stream"))
        );
        assert!(e.message.contains("zz"), "{}", e.message);
    }

    #[test]
    fn state_stream_requires_checkpoint_window() {
        let m = with_streams(&[("a", json!({})), ("b", json!({"state_stream": "a"}))]);
        assert_eq!(
            why(&m),
            (
                "state_stream_requires_checkpoint_window",
                s("b"),
                s("coverage_strategy")
            )
        );
        let m = with_streams(&[
            ("a", json!({})),
            ("b", json!({"state_stream": "a", "coverage_strategy": "full_inventory"})),
        ]);
        assert_eq!(
            why(&m),
            (
                "state_stream_requires_checkpoint_window",
                s("b"),
                s("coverage_strategy")
            )
        );
        accepted(&with_streams(&[("a", json!({})), ("b", window("a"))]));
    }

    #[test]
    fn parent_streams_empty_is_rejected() {
        let m = with_streams(&[(
            "a",
            json!({"parent_streams": [], "coverage_strategy": "parent_detail_accounting"}),
        )]);
        assert_eq!(why(&m), ("parent_streams_valid", s("a"), s("parent_streams")));
    }

    #[test]
    fn parent_streams_empty_entry_is_rejected() {
        let m = with_streams(&[("a", json!({})), ("b", detail(&["a", ""]))]);
        assert_eq!(why(&m), ("parent_streams_valid", s("b"), s("parent_streams[1]")));
    }

    #[test]
    fn parent_streams_duplicate_is_rejected() {
        let m = with_streams(&[("a", json!({})), ("c", json!({})), ("b", detail(&["a", "c", "a"]))]);
        let e = rejected(&m);
        assert_eq!(
            (e.rule, e.stream, e.field),
            ("parent_streams_valid", s("b"), s("parent_streams[2]"))
        );
        assert!(e.message.contains("twice"), "{}", e.message);
    }

    #[test]
    fn parent_streams_naming_itself_is_rejected() {
        let m = with_streams(&[("a", json!({})), ("b", detail(&["a", "b"]))]);
        assert_eq!(why(&m), ("parent_streams_valid", s("b"), s("parent_streams[1]")));
    }

    #[test]
    fn parent_streams_naming_an_undeclared_stream_is_rejected() {
        let m = with_streams(&[("a", json!({})), ("b", detail(&["nope"]))]);
        assert_eq!(why(&m), ("parent_streams_valid", s("b"), s("parent_streams[0]")));
    }

    #[test]
    fn parent_streams_require_parent_detail_accounting() {
        let m = with_streams(&[("a", json!({})), ("b", json!({"parent_streams": ["a"]}))]);
        assert_eq!(
            why(&m),
            (
                "parent_streams_require_parent_detail_accounting",
                s("b"),
                s("coverage_strategy")
            )
        );
        let m = with_streams(&[
            ("a", json!({})),
            (
                "b",
                json!({"parent_streams": ["a"], "coverage_strategy": "checkpoint_window"}),
            ),
        ]);
        assert_eq!(
            why(&m),
            (
                "parent_streams_require_parent_detail_accounting",
                s("b"),
                s("coverage_strategy")
            )
        );
    }

    #[test]
    fn coverage_policy_requires_optional() {
        let m = with_streams(&[("a", json!({"coverage_policy": "deferred"}))]);
        assert_eq!(
            why(&m),
            ("coverage_policy_requires_optional", s("a"), s("coverage_policy"))
        );
        let m = with_streams(&[("a", json!({"coverage_policy": "unsupported", "required": true}))]);
        assert_eq!(
            why(&m),
            ("coverage_policy_requires_optional", s("a"), s("coverage_policy"))
        );
        accepted(&with_streams(&[(
            "a",
            json!({"coverage_policy": "deferred", "required": false}),
        )]));
        accepted(&with_streams(&[("a", json!({"coverage_policy": "collect"}))]));
    }

    #[test]
    fn checkpoint_dependency_cycle_of_two_streams_is_found() {
        let m = with_streams(&[("a", window("b")), ("b", window("a"))]);
        let e = rejected(&m);
        assert_eq!(
            (e.rule, e.stream.as_deref(), e.field.as_deref()),
            ("checkpoint_dependency_cycle", Some("a"), Some("state_stream"))
        );
        assert_eq!(
            e.message,
            "Checkpoint-dependency cycle detected among streams: a -> b -> a"
        );
    }

    #[test]
    fn checkpoint_dependency_cycle_of_three_streams_is_found() {
        let m = with_streams(&[
            ("root", json!({})),
            ("a", window("b")),
            ("b", window("c")),
            ("c", window("a")),
        ]);
        let e = rejected(&m);
        assert_eq!(
            (e.rule, e.stream.as_deref(), e.field.as_deref()),
            ("checkpoint_dependency_cycle", Some("a"), Some("state_stream"))
        );
        assert_eq!(
            e.message,
            "Checkpoint-dependency cycle detected among streams: a -> b -> c -> a"
        );
    }

    #[test]
    fn mixed_state_stream_and_parent_streams_cycle_is_found() {
        // x hangs off the cycle: the path reported starts where the cycle does.
        let m = with_streams(&[
            ("x", window("a")),
            ("a", detail(&["p", "b"])),
            ("p", json!({})),
            ("b", window("a")),
        ]);
        let e = rejected(&m);
        assert_eq!(
            (e.rule, e.stream.as_deref(), e.field.as_deref()),
            ("checkpoint_dependency_cycle", Some("a"), Some("parent_streams"))
        );
        assert_eq!(
            e.message,
            "Checkpoint-dependency cycle detected among streams: a -> b -> a"
        );
    }

    #[test]
    fn two_children_sharing_a_parent_is_not_a_cycle() {
        let m = accepted(&with_streams(&[
            ("p", json!({})),
            ("q", json!({})),
            ("c1", window("p")),
            ("c2", window("p")),
            ("d1", detail(&["p", "q"])),
            ("d2", detail(&["q", "p"])),
        ]));
        assert_eq!(m.streams.len(), 6);
    }

    #[test]
    fn a_long_dependency_chain_is_not_a_cycle() {
        let names: Vec<String> = (0..5000).map(|i| format!("s{i}")).collect();
        let mut streams = vec![(names[0].as_str(), json!({}))];
        streams.extend(names.windows(2).map(|w| (w[1].as_str(), window(&w[0]))));
        accepted(&with_streams(&streams));
    }

    #[test]
    fn checkpoint_rules_run_in_order_per_stream() {
        // Both state_stream_valid and the strategy rule fail: the earlier wins.
        let m = with_streams(&[("a", json!({"state_stream": "a"}))]);
        assert_eq!(why(&m).0, "state_stream_valid");
        // Both parent_streams_valid and the strategy rule fail.
        let m = with_streams(&[("a", json!({"parent_streams": ["zz"]}))]);
        assert_eq!(why(&m).0, "parent_streams_valid");
    }
}
