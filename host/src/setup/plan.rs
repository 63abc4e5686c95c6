//! The setup planner: what a connector needs before a connection of it can
//! collect, derived from its manifest alone. Pure; see docs/setup.md.

use crate::manifest::{FieldType, LifecycleStatus, Manifest, Validation, bindings};
use crate::store::BrowserSessionMode;
use serde::Serialize;
use utoipa::ToSchema;

/// How a connection of a connector is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SetupModality {
    /// The owner enters a token, key or password.
    StaticSecret,
    /// The owner authorizes the deployment's provider app (OAuth).
    ProviderAuthorization,
    /// A collector on the owner's device uploads.
    LocalCollector,
    /// The connector drives a browser logged into the owner's account.
    BrowserBound,
    /// The owner uploads an export.
    ManualOrUpload,
    /// Nothing to set up.
    None,
}

/// Whether this host can set the connector up, and how sure it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SupportState {
    /// Proven end to end against the real provider.
    Supported,
    /// Works on this host; no live proof recorded.
    Experimental,
    /// Not offered until an end-to-end proof is recorded.
    ProofGated,
    Unsupported,
    /// The operator must configure something first.
    NeedsDeploymentConfig,
}

/// The kind of the owner's next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NextStepKind {
    CreateConnection,
    CaptureCredential,
    /// Let the host create the credential in its browser (a declared bootstrap).
    BootstrapCredential,
    StartFirstSync,
    WaitForFirstSync,
    Reconnect,
    RunConnection,
    NeedsDeploymentConfig,
    ManualRunbook,
    None,
}

/// What the owner does next.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct NextStep {
    pub kind: NextStepKind,
    pub method: Option<String>,
    pub url: Option<String>,
    pub reason: String,
}

impl NextStep {
    pub(crate) fn new(
        kind: NextStepKind,
        method: Option<&str>,
        url: Option<String>,
        reason: impl Into<String>,
    ) -> Self {
        NextStep {
            kind,
            method: method.map(str::to_owned),
            url,
            reason: reason.into(),
        }
    }

    fn none(kind: NextStepKind, reason: impl Into<String>) -> Self {
        NextStep::new(kind, None, None, reason)
    }
}

/// One field of the credential form. Never a value.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct FormField {
    pub name: String,
    pub label: String,
    pub secret: bool,
    pub required: bool,
    pub r#type: FieldType,
    pub help_text: Option<String>,
    pub help_url: Option<String>,
    pub placeholder: Option<String>,
}

/// The credential form of a static-secret connector.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct CredentialForm {
    pub credential_kind: String,
    pub label: Option<String>,
    pub description: Option<String>,
    pub fields: Vec<FormField>,
}

/// A connector's setup plan.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct SetupPlan {
    pub setup_modality: SetupModality,
    pub support_state: SupportState,
    pub reason: String,
    pub next_step: NextStep,
    /// `synchronous` when the connector has a credential probe, else `first_sync`.
    pub validation: Validation,
    pub credential_form: Option<CredentialForm>,
    /// Deployment settings that are missing (names only).
    pub blockers: Vec<String>,
    /// For a browser-backed connector: how its login material may be kept
    /// (`ephemeral` only when its tests prove the cleanup).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub browser_session_modes: Vec<BrowserSessionMode>,
    /// Whether the host can create the credential for the owner in a
    /// browser (the manifest declares a known bootstrap); the credential
    /// form stays the fallback.
    pub bootstrap: Option<BootstrapOffer>,
}

/// "Create the token for me": a declared bootstrap, offered beside the
/// paste form (docs/bootstrap.md).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct BootstrapOffer {
    /// The credential field it creates.
    pub field: String,
    /// The bootstrap type (`browser_pat`).
    pub r#type: String,
    /// The provider page the token is made on.
    pub url: String,
    /// The site the owner must be signed in to.
    pub requires_session: Option<String>,
    /// What will happen, in the owner's words.
    pub instructions: String,
    /// How to start it once the connection exists
    /// (`POST /v1/connections/{id}/bootstrap`).
    pub start: NextStep,
    /// What the owner does when it fails or they prefer it: the paste form
    /// (`credential_form`, `PUT /v1/connections/{id}/credential`).
    pub fallback: NextStep,
}

/// The bootstrap a manifest offers, if any (the first declared field).
pub fn bootstrap_offer(m: &Manifest) -> Option<BootstrapOffer> {
    let (field, b) = m.bootstraps().next()?;
    Some(BootstrapOffer {
        field: field.to_owned(),
        r#type: b.r#type.clone(),
        url: b.url.clone(),
        requires_session: b.requires_session.clone(),
        instructions: b.instructions.clone(),
        start: NextStep::new(
            NextStepKind::BootstrapCredential,
            Some("POST"),
            Some("/v1/connections/{id}/bootstrap".into()),
            "the host signs in to the provider in its browser (asking you for the login and any code) and creates \
             the token; you never see or paste it",
        ),
        fallback: NextStep::new(
            NextStepKind::CaptureCredential,
            Some("PUT"),
            Some("/v1/connections/{id}/credential".into()),
            "paste the credential yourself (credential_form)",
        ),
    })
}

/// The proof that a browser-backed connector logs in, verifies the
/// session's account and collects, end to end through a real browser.
pub const PROOF_BROWSER_SESSION: &str = "browser_session_e2e";
/// The proof that a browser-backed connector leaves nothing behind in
/// ephemeral mode, whatever the run's end.
pub const PROOF_BROWSER_EPHEMERAL: &str = "browser_ephemeral_cleanup";

/// The browser session modes a connector may be set up with.
pub fn browser_session_modes(m: &Manifest) -> Vec<BrowserSessionMode> {
    if !browser_bound(m) {
        return Vec::new();
    }
    let mut modes = vec![BrowserSessionMode::Persistent];
    if m.capabilities
        .as_ref()
        .is_some_and(|c| c.proven(PROOF_BROWSER_EPHEMERAL))
    {
        modes.push(BrowserSessionMode::Ephemeral);
    }
    modes
}

fn browser_bound(m: &Manifest) -> bool {
    m.requires_binding(bindings::BROWSER_AUTOMATION)
}

fn binding_required(m: &Manifest, name: &str) -> bool {
    m.runtime_requirements.bindings.get(name).is_some_and(|b| b.required)
}

/// The credential form a manifest declares, if any.
pub fn credential_form(m: &Manifest) -> Option<CredentialForm> {
    let c = m.setup.as_ref()?.credential_capture.as_ref()?;
    if c.fields.is_empty() {
        return None;
    }
    Some(CredentialForm {
        credential_kind: c.kind.clone(),
        label: c.label.clone(),
        description: c.description.clone(),
        fields: c
            .fields
            .iter()
            .map(|f| {
                let secret = f.is_secret();
                FormField {
                    name: f.name.clone(),
                    label: f.label.clone().unwrap_or_else(|| f.name.clone()),
                    secret,
                    required: f.is_required(),
                    r#type: f
                        .r#type
                        .unwrap_or(if secret { FieldType::Password } else { FieldType::Text }),
                    help_text: f.help_text.clone(),
                    help_url: f.help_url.clone(),
                    placeholder: f.placeholder.clone(),
                }
            })
            .collect(),
    })
}

/// The modality a manifest implies. A credential form wins over bindings
/// (a browser-bound connector with a password is set up by entering it).
pub fn modality(m: &Manifest) -> SetupModality {
    let declared = m.setup.as_ref().and_then(|s| s.modality.as_deref()).unwrap_or_default();
    let auth_kind = m
        .capabilities
        .as_ref()
        .and_then(|c| c.auth.as_ref())
        .and_then(|a| a.kind.as_deref())
        .unwrap_or_default();
    if matches!(declared, "manual_or_upload" | "manual_upload" | "upload")
        || matches!(auth_kind, "manual_or_upload" | "upload")
    {
        SetupModality::ManualOrUpload
    } else if credential_form(m).is_some() {
        SetupModality::StaticSecret
    } else if binding_required(m, "filesystem") {
        SetupModality::LocalCollector
    } else if browser_bound(m) {
        SetupModality::BrowserBound
    } else if declared == "provider_authorization" || matches!(auth_kind, "oauth" | "oauth2" | "provider_authorization")
    {
        SetupModality::ProviderAuthorization
    } else {
        SetupModality::None
    }
}

/// The setup plan of a connector, from its manifest alone. `env` answers
/// whether a deployment setting is present (for provider apps).
pub fn plan(m: &Manifest, env: &dyn Fn(&str) -> bool) -> SetupPlan {
    let setup = m.setup.as_ref();
    let form = credential_form(m);
    let validation = setup.and_then(|s| s.validation).unwrap_or_default();
    let modality = modality(m);
    let create = |reason: &str| {
        let kind = if form.is_some() {
            NextStepKind::CaptureCredential
        } else {
            NextStepKind::CreateConnection
        };
        NextStep::new(kind, Some("POST"), Some("/v1/connections".into()), reason)
    };
    let closed = |state: SupportState, reason: String, step: NextStepKind| SetupPlan {
        setup_modality: modality,
        support_state: state,
        next_step: NextStep::none(step, reason.clone()),
        reason,
        validation,
        credential_form: form.clone(),
        blockers: Vec::new(),
        browser_session_modes: Vec::new(),
        bootstrap: None,
    };

    if let Some(l) = &m.lifecycle {
        let reason = l.reason.clone().unwrap_or_default();
        match l.status {
            LifecycleStatus::Removed => {
                return closed(
                    SupportState::Unsupported,
                    format!("removed: {reason}"),
                    NextStepKind::None,
                );
            }
            LifecycleStatus::BlockedUpstream => {
                return closed(
                    SupportState::Unsupported,
                    format!("blocked upstream: {reason}"),
                    NextStepKind::None,
                );
            }
            LifecycleStatus::Available => {}
        }
    }
    // Browser-bound setup is proof-gated (seed 003): offered, as
    // experimental, only for a connector whose committed end-to-end test
    // proves login, the session's account check and records.
    let browser = || {
        if !m.capabilities.as_ref().is_some_and(|c| c.proven(PROOF_BROWSER_SESSION)) {
            return closed(
                SupportState::ProofGated,
                "browser-bound collection has no recorded end-to-end proof on this host".into(),
                NextStepKind::ManualRunbook,
            );
        }
        let reason = if form.is_some() {
            "enter the login; the host's browser signs in (asking you for a code if the site wants one), checks the \
             account and collects"
        } else {
            "create the connection; the host's browser signs in, asking you when it needs something, checks the \
             account and collects"
        };
        SetupPlan {
            setup_modality: modality,
            support_state: SupportState::Experimental,
            reason: reason.into(),
            next_step: create(reason),
            validation,
            credential_form: form.clone(),
            blockers: Vec::new(),
            browser_session_modes: browser_session_modes(m),
            bootstrap: None,
        }
    };
    match modality {
        SetupModality::StaticSecret if browser_bound(m) => browser(),
        SetupModality::StaticSecret => {
            let proven = m.capabilities.as_ref().is_some_and(|c| c.proven("static_secret_live"));
            let (state, reason) = if proven {
                (
                    SupportState::Supported,
                    "enter the credential; it is checked, sealed, and the first sync starts",
                )
            } else {
                (
                    SupportState::Experimental,
                    "enter the credential; no live proof against the real provider is recorded for this connector",
                )
            };
            SetupPlan {
                setup_modality: modality,
                support_state: state,
                reason: reason.into(),
                next_step: create(reason),
                validation,
                credential_form: form.clone(),
                blockers: Vec::new(),
                browser_session_modes: Vec::new(),
                bootstrap: bootstrap_offer(m),
            }
        }
        SetupModality::ProviderAuthorization => {
            let missing: Vec<String> = setup
                .map(|s| s.deployment_config.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|k| k.key().to_owned())
                .filter(|k| !env(k))
                .collect();
            if missing.is_empty() {
                closed(
                    SupportState::ProofGated,
                    "this host has no provider authorization (OAuth) lifecycle yet".into(),
                    NextStepKind::ManualRunbook,
                )
            } else {
                let mut p = closed(
                    SupportState::NeedsDeploymentConfig,
                    format!("the operator must configure the provider app: {}", missing.join(", ")),
                    NextStepKind::NeedsDeploymentConfig,
                );
                p.blockers = missing;
                p
            }
        }
        SetupModality::LocalCollector => closed(
            SupportState::Unsupported,
            "this host has no local-collector enrollment".into(),
            NextStepKind::None,
        ),
        SetupModality::BrowserBound => browser(),
        SetupModality::ManualOrUpload => closed(
            SupportState::ProofGated,
            "file import is not available on this host yet".into(),
            NextStepKind::ManualRunbook,
        ),
        SetupModality::None => {
            let reason = "no credential needed; the first sync starts when the connection is created";
            SetupPlan {
                setup_modality: SetupModality::None,
                support_state: SupportState::Supported,
                reason: reason.into(),
                next_step: create(reason),
                validation: Validation::FirstSync,
                credential_form: None,
                blockers: Vec::new(),
                browser_session_modes: Vec::new(),
                bootstrap: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    pub(crate) fn manifest(v: Value) -> Manifest {
        Manifest::from_json(&v.to_string()).unwrap()
    }

    pub(crate) fn base(extra: Value) -> Value {
        let mut m = json!({
            "connector_id": "x", "version": "1.0.0",
            "streams": [{ "name": "s", "primary_key": ["id"],
              "schema": { "type": "object", "required": ["id"], "properties": { "id": { "type": "string" } } } }]
        });
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    }

    fn pat() -> Value {
        json!({ "setup": { "modality": "static_secret", "validation": "synchronous", "credential_capture": {
            "kind": "personal_access_token", "label": "Token",
            "fields": [{ "name": "token", "label": "Token", "secret": true,
                         "help_text": "Create one", "help_url": "https://example.com/tokens" }] } } })
    }

    fn pat_with_bootstrap() -> Value {
        let mut v = pat();
        v["runtime_requirements"] = json!({ "bindings": {
            "browser": { "required": false, "allowed_origins": ["https://example.com"] } } });
        v["credentials_schema"] = json!({ "properties": { "token": { "bootstrap": {
            "type": "browser_pat", "url": "https://example.com/tokens/new", "requires_session": "example.com",
            "instructions": "Sign in; the token is made for you." } } } });
        v
    }

    #[test]
    fn setup_plan_offers_a_declared_bootstrap_with_its_instructions_and_the_paste_form_as_fallback() {
        let p = plan(&manifest(base(pat_with_bootstrap())), &|_| false);
        assert_eq!(p.setup_modality, SetupModality::StaticSecret);
        assert_eq!(
            p.support_state,
            SupportState::Experimental,
            "a bootstrap binding is not required: not proof-gated"
        );
        let b = p.bootstrap.expect("offered");
        assert_eq!(b.field, "token");
        assert_eq!(b.r#type, "browser_pat");
        assert_eq!(b.instructions, "Sign in; the token is made for you.");
        assert_eq!(b.requires_session.as_deref(), Some("example.com"));
        assert_eq!(b.start.kind, NextStepKind::BootstrapCredential);
        assert_eq!(b.start.url.as_deref(), Some("/v1/connections/{id}/bootstrap"));
        assert_eq!(b.fallback.kind, NextStepKind::CaptureCredential);
        let form = p.credential_form.expect("the paste form stays");
        assert_eq!(form.fields[0].name, "token");
        let json = serde_json::to_value(plan(&manifest(base(pat_with_bootstrap())), &|_| false)).unwrap();
        assert_eq!(json["bootstrap"]["type"], "browser_pat");
    }

    #[test]
    fn setup_plan_without_a_declared_bootstrap_offers_none() {
        let p = plan(&manifest(base(pat())), &|_| false);
        assert!(p.bootstrap.is_none());
        assert_eq!(serde_json::to_value(p).unwrap()["bootstrap"], Value::Null);
    }

    #[test]
    fn setup_plan_static_secret_carries_the_form_and_synchronous_validation() {
        let p = plan(&manifest(base(pat())), &|_| false);
        assert_eq!(p.setup_modality, SetupModality::StaticSecret);
        assert_eq!(p.support_state, SupportState::Experimental, "no live proof recorded");
        assert_eq!(p.validation, Validation::Synchronous);
        assert_eq!(p.next_step.kind, NextStepKind::CaptureCredential);
        let form = p.credential_form.unwrap();
        assert_eq!(form.fields[0].help_url.as_deref(), Some("https://example.com/tokens"));
        assert!(form.fields[0].secret);
        assert_eq!(
            form.fields[0].r#type,
            FieldType::Password,
            "a secret field is entered as a password"
        );
    }

    #[test]
    fn setup_plan_static_secret_with_a_live_proof_is_supported() {
        let mut m = base(pat());
        m["capabilities"] = json!({ "proven": { "static_secret_live": { "proven": true, "date": "2026-01-01" } } });
        assert_eq!(plan(&manifest(m), &|_| false).support_state, SupportState::Supported);
    }

    #[test]
    fn setup_plan_modalities_follow_the_manifest() {
        let none = plan(&manifest(base(json!({}))), &|_| false);
        assert_eq!(
            (none.setup_modality, none.support_state),
            (SetupModality::None, SupportState::Supported)
        );
        let browser = plan(
            &manifest(base(
                json!({ "runtime_requirements": { "bindings": { "browser": { "required": true } } } }),
            )),
            &|_| false,
        );
        assert_eq!(
            (browser.setup_modality, browser.support_state),
            (SetupModality::BrowserBound, SupportState::ProofGated)
        );
        let oauth = json!({ "setup": { "modality": "provider_authorization", "deployment_config": ["X_CLIENT_ID"] } });
        let missing = plan(&manifest(base(oauth.clone())), &|_| false);
        assert_eq!(missing.support_state, SupportState::NeedsDeploymentConfig);
        assert_eq!(missing.blockers, vec!["X_CLIENT_ID".to_string()]);
        let ready = plan(&manifest(base(oauth)), &|_| true);
        assert_eq!(ready.support_state, SupportState::ProofGated);
    }

    #[test]
    fn browser_bound_setup_remains_proof_gated() {
        let bindings = json!({ "runtime_requirements": { "bindings": { "browser": { "required": true } } } });
        let gated = plan(&manifest(base(bindings.clone())), &|_| false);
        assert_eq!(gated.support_state, SupportState::ProofGated);
        assert_eq!(
            gated.next_step.kind,
            NextStepKind::ManualRunbook,
            "no connection is offered"
        );
        let mut m = base(bindings);
        m["capabilities"] = json!({ "proven": { "browser_session_e2e": { "proven": true } } });
        let proven = plan(&manifest(m.clone()), &|_| false);
        assert_eq!(
            (proven.support_state, proven.next_step.kind),
            (SupportState::Experimental, NextStepKind::CreateConnection)
        );
        assert_eq!(
            proven.browser_session_modes,
            [BrowserSessionMode::Persistent],
            "ephemeral is advertised only with its own proof"
        );
        m["capabilities"]["proven"]["browser_ephemeral_cleanup"] = json!({ "proven": true });
        assert_eq!(
            plan(&manifest(m), &|_| false).browser_session_modes,
            [BrowserSessionMode::Persistent, BrowserSessionMode::Ephemeral]
        );
    }

    #[test]
    fn setup_plan_json_keeps_its_snake_case_spellings() {
        let p = serde_json::to_value(plan(&manifest(base(pat())), &|_| false)).unwrap();
        assert_eq!(p["setup_modality"], "static_secret");
        assert_eq!(p["support_state"], "experimental");
        assert_eq!(p["validation"], "synchronous");
        assert_eq!(p["next_step"]["kind"], "capture_credential");
        assert_eq!(p["credential_form"]["fields"][0]["type"], "password");
    }

    #[test]
    fn setup_plan_of_a_tombstone_or_blocked_connector_is_unsupported_with_the_reason() {
        let mut m = base(pat());
        m["lifecycle"] = json!({ "status": "removed", "reason": "the service shut down" });
        let p = plan(&manifest(m.clone()), &|_| false);
        assert_eq!(p.support_state, SupportState::Unsupported);
        assert!(p.reason.contains("the service shut down"), "{}", p.reason);
        m["lifecycle"] = json!({ "status": "blocked_upstream", "reason": "app creation frozen" });
        let p = plan(&manifest(m), &|_| false);
        assert_eq!(p.support_state, SupportState::Unsupported);
        assert!(p.reason.starts_with("blocked upstream"), "{}", p.reason);
    }
}
