//! The setup planner (what a connector needs, from its manifest alone) and
//! the setup-status projection (where one connection's setup stands, from
//! its stored state). Both are pure; see docs/setup.md.

use crate::manifest::{LifecycleStatus, Manifest};
use crate::store::{Connection, ConnectionStatus, CredentialStatus, RunRow, StoredCredential};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// What the owner does next.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct NextStep {
    /// `create_connection`, `capture_credential`, `start_first_sync`,
    /// `wait_for_first_sync`, `reconnect`, `run_connection`,
    /// `needs_deployment_config`, `manual_runbook`, `none`.
    pub kind: String,
    pub method: Option<String>,
    pub url: Option<String>,
    pub reason: String,
}

impl NextStep {
    fn new(kind: &str, method: Option<&str>, url: Option<String>, reason: impl Into<String>) -> Self {
        NextStep {
            kind: kind.into(),
            method: method.map(str::to_owned),
            url,
            reason: reason.into(),
        }
    }
}

/// One field of the credential form. Never a value.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct FormField {
    pub name: String,
    pub label: String,
    pub secret: bool,
    pub required: bool,
    /// `password`, `text` or `email`.
    pub r#type: String,
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
    /// `static_secret`, `provider_authorization`, `local_collector`,
    /// `browser_bound`, `manual_or_upload` or `none`.
    pub setup_modality: String,
    /// `supported`, `experimental`, `proof_gated`, `unsupported`, `needs_deployment_config`.
    pub support_state: String,
    pub reason: String,
    pub next_step: NextStep,
    /// `synchronous` when the connector has a credential probe, else `first_sync`.
    pub validation: String,
    pub credential_form: Option<CredentialForm>,
    /// Deployment settings that are missing (names only).
    pub blockers: Vec<String>,
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

fn binding_required(m: &Manifest, name: &str) -> bool {
    m.runtime_requirements.bindings.get(name).is_some_and(|b| b.required)
}

fn capability<'a>(m: &'a Manifest, path: &[&str]) -> Option<&'a Value> {
    let mut v = m.capabilities.as_ref()?;
    for p in path {
        v = v.get(p)?;
    }
    Some(v)
}

fn credential_form(m: &Manifest) -> Option<CredentialForm> {
    let c = m.setup.as_ref()?.credential_capture.as_ref()?;
    if c.fields.is_empty() {
        return None;
    }
    Some(CredentialForm {
        credential_kind: c.kind.clone(),
        label: text(c.extra.get("label")),
        description: text(c.extra.get("description")),
        fields: c
            .fields
            .iter()
            .map(|f| {
                let ty = text(f.extra.get("type"));
                let secret = f.secret.unwrap_or(true) || ty.as_deref() == Some("password");
                FormField {
                    name: f.name.clone(),
                    label: f.label.clone().unwrap_or_else(|| f.name.clone()),
                    secret,
                    required: f.extra.get("required").and_then(Value::as_bool).unwrap_or(true),
                    r#type: ty.unwrap_or_else(|| if secret { "password" } else { "text" }.into()),
                    help_text: text(f.extra.get("help_text")),
                    help_url: text(f.extra.get("help_url")),
                    placeholder: text(f.extra.get("placeholder")),
                }
            })
            .collect(),
    })
}

/// The setup plan of a connector, from its manifest alone. `env` answers
/// whether a deployment setting is present (for provider apps).
pub fn plan(m: &Manifest, env: &dyn Fn(&str) -> bool) -> SetupPlan {
    let setup = m.setup.as_ref();
    let declared = setup.and_then(|s| s.modality.clone()).unwrap_or_default();
    let auth_kind = text(capability(m, &["auth", "kind"])).unwrap_or_default();
    let form = credential_form(m);
    let validation = match setup.and_then(|s| s.extra.get("validation")).and_then(Value::as_str) {
        Some("synchronous") => "synchronous",
        _ => "first_sync",
    };
    let create = |reason: &str| {
        NextStep::new(
            if form.is_some() {
                "capture_credential"
            } else {
                "create_connection"
            },
            Some("POST"),
            Some("/v1/connections".into()),
            reason,
        )
    };
    let unsupported = |modality: &str, state: &str, reason: String, step: &str| SetupPlan {
        setup_modality: modality.into(),
        support_state: state.into(),
        next_step: NextStep::new(step, None, None, reason.clone()),
        reason,
        validation: validation.into(),
        credential_form: form.clone(),
        blockers: Vec::new(),
    };
    let modality = if matches!(declared.as_str(), "manual_or_upload" | "manual_upload" | "upload")
        || matches!(auth_kind.as_str(), "manual_or_upload" | "upload")
    {
        "manual_or_upload"
    } else if form.is_some() {
        "static_secret"
    } else if binding_required(m, "filesystem") {
        "local_collector"
    } else if binding_required(m, "browser") {
        "browser_bound"
    } else if matches!(declared.as_str(), "provider_authorization")
        || matches!(auth_kind.as_str(), "oauth" | "oauth2" | "provider_authorization")
    {
        "provider_authorization"
    } else {
        "none"
    };

    if let Some(l) = &m.lifecycle {
        let reason = l.reason.clone().unwrap_or_default();
        match l.status {
            LifecycleStatus::Removed => {
                return unsupported(modality, "unsupported", format!("removed: {reason}"), "none");
            }
            LifecycleStatus::BlockedUpstream => {
                return unsupported(modality, "unsupported", format!("blocked upstream: {reason}"), "none");
            }
            LifecycleStatus::Available => {}
        }
    }
    match modality {
        "static_secret" if binding_required(m, "browser") => unsupported(
            modality,
            "proof_gated",
            "browser-bound collection has no recorded end-to-end proof on this host".into(),
            "manual_runbook",
        ),
        "static_secret" => {
            let proven = capability(m, &["proven", "static_secret_live", "proven"]) == Some(&Value::Bool(true));
            let (state, reason) = if proven {
                (
                    "supported",
                    "enter the credential; it is checked, sealed, and the first sync starts",
                )
            } else {
                (
                    "experimental",
                    "enter the credential; no live proof against the real provider is recorded for this connector",
                )
            };
            SetupPlan {
                setup_modality: modality.into(),
                support_state: state.into(),
                reason: reason.into(),
                next_step: create(reason),
                validation: validation.into(),
                credential_form: form.clone(),
                blockers: Vec::new(),
            }
        }
        "provider_authorization" => {
            let keys: Vec<String> = setup
                .and_then(|s| s.extra.get("deployment_config"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|k| text(Some(k)).or_else(|| text(k.get("key"))))
                .collect();
            let missing: Vec<String> = keys.into_iter().filter(|k| !env(k)).collect();
            if missing.is_empty() {
                unsupported(
                    modality,
                    "proof_gated",
                    "this host has no provider authorization (OAuth) lifecycle yet".into(),
                    "manual_runbook",
                )
            } else {
                let mut p = unsupported(
                    modality,
                    "needs_deployment_config",
                    format!("the operator must configure the provider app: {}", missing.join(", ")),
                    "needs_deployment_config",
                );
                p.blockers = missing;
                p
            }
        }
        "local_collector" => unsupported(
            modality,
            "unsupported",
            "this host has no local-collector enrollment".into(),
            "none",
        ),
        "browser_bound" => unsupported(
            modality,
            "proof_gated",
            "browser-bound collection has no recorded end-to-end proof on this host".into(),
            "manual_runbook",
        ),
        "manual_or_upload" => unsupported(
            modality,
            "proof_gated",
            "file import is not available on this host yet".into(),
            "manual_runbook",
        ),
        _ => {
            let reason = "no credential needed; the first sync starts when the connection is created";
            SetupPlan {
                setup_modality: "none".into(),
                support_state: "supported".into(),
                reason: reason.into(),
                next_step: create(reason),
                validation: "first_sync".into(),
                credential_form: None,
                blockers: Vec::new(),
            }
        }
    }
}

/// Credential metadata an owner may see. Never the secret.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct CredentialView {
    pub present: bool,
    pub credential_kind: Option<String>,
    /// `active`, `revoked`, `rejected`.
    pub status: Option<String>,
    pub fields: Vec<String>,
    pub captured_at: Option<i64>,
    pub rotated_at: Option<i64>,
    /// A keyed HMAC: equal for equal secrets under one vault key, useless without it.
    pub fingerprint: Option<String>,
}

impl CredentialView {
    pub fn of(c: Option<&StoredCredential>) -> Self {
        match c {
            None => CredentialView {
                present: false,
                credential_kind: None,
                status: None,
                fields: Vec::new(),
                captured_at: None,
                rotated_at: None,
                fingerprint: None,
            },
            Some(c) => CredentialView {
                present: true,
                credential_kind: Some(c.sealed.kind.clone()),
                status: Some(c.status.as_str().into()),
                fields: c.sealed.field_names.clone(),
                captured_at: Some(c.captured_at),
                rotated_at: c.rotated_at,
                fingerprint: Some(c.sealed.fingerprint.clone()),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct RunSummary {
    pub run_id: String,
    /// `running`, `succeeded`, `failed`, `cancelled`.
    pub status: String,
    pub trigger: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub records_emitted: i64,
    pub records_written: i64,
    pub failure_reason: Option<String>,
}

impl RunSummary {
    pub fn of(r: &RunRow) -> Self {
        RunSummary {
            run_id: r.run_id.clone(),
            status: r.status.clone(),
            trigger: r.trigger.clone(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            records_emitted: r.records_emitted,
            records_written: r.records_written,
            failure_reason: r.failure_reason.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct LastError {
    pub reason: String,
    pub remediation: String,
}

/// Where one connection's setup stands.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct SetupStatus {
    pub object: String,
    pub connection_id: String,
    pub connector_id: String,
    pub display_name: Option<String>,
    /// The stored status: `draft`, `active`, `paused`, `revoked`.
    pub status: String,
    /// Projected from the status, the credential and the runs: `awaiting_credential`,
    /// `first_sync_pending`, `first_sync_running`, `first_sync_failed`,
    /// `first_sync_verified_empty`, `first_sync_unverified_zero`, `active`, `paused`, `revoked`.
    pub setup_state: String,
    /// `healthy`, `idle`, `needs_attention`.
    pub health_state: String,
    pub pending: bool,
    pub running: bool,
    #[schema(value_type = Object)]
    pub account_identity: Option<Value>,
    pub credential: CredentialView,
    pub run: Option<RunSummary>,
    pub last_error: Option<LastError>,
    /// For a draft whose first sync succeeded without records: `verified_empty` or `unverified_zero`.
    pub terminal_setup_disposition: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub activated_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub next_step: NextStep,
}

/// What the projection reads. `terminal` is the data of the last run's
/// terminal timeline event (`run.completed` / `run.failed` / `run.cancelled`).
pub struct StatusInputs<'a> {
    pub connection: &'a Connection,
    pub needs_credential: bool,
    pub credential: Option<&'a StoredCredential>,
    pub last_run: Option<&'a RunRow>,
    pub terminal: Option<&'a Value>,
}

const REENTER: &str = "Enter the provider credential again (PUT /v1/connections/{id}/credential); the first sync then \
                       starts again.";
const RETRY: &str = "Start the first sync again (POST /v1/connections/{id}/runs). If it keeps failing, enter the \
                     provider credential again.";
const ZERO: &str = "The first sync finished without records and could not prove the account empty. Check the account \
                    and start the first sync again if you expected data.";
const REJECTED_ACTIVE: &str = "The provider refused the stored credential. Enter a new one (PUT \
                               /v1/connections/{id}/credential); collection resumes on the next run.";
const FAILED_ACTIVE: &str = "The last run failed. Start a run again (POST /v1/connections/{id}/runs); if it keeps \
                             failing, enter the provider credential again.";

fn credential_like(reason: &str) -> bool {
    ["credential", "auth", "password", "login", "token"]
        .iter()
        .any(|w| reason.contains(w))
}

/// Project a connection's setup status. Writes nothing.
pub fn project(i: &StatusInputs<'_>) -> SetupStatus {
    let c = i.connection;
    let id = &c.connection_id;
    let fill = |t: &str| t.replace("{id}", id);
    let running = i.last_run.is_some_and(|r| r.status == "running");
    let has_credential = i.credential.is_some();
    let cred_status = i.credential.map(|c| c.status);
    let last_failed = i
        .last_run
        .is_some_and(|r| r.status == "failed" || r.status == "cancelled");
    let last_ok = i.last_run.is_some_and(|r| r.status == "succeeded");
    // The connector's own error code (DONE.error.code) says more than the
    // host's failure reason (`connector_reported_failed`).
    let reason = i
        .terminal
        .and_then(|t| t.get("error_code"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| i.last_run.and_then(|r| r.failure_reason.clone()))
        .unwrap_or_else(|| "first_sync_failed".into());
    let runs_url = Some(format!("/v1/connections/{id}/runs"));
    let credential_url = Some(format!("/v1/connections/{id}/credential"));

    let mut last_error = None;
    let mut disposition = None;
    let (setup_state, health, next) = match c.status {
        ConnectionStatus::Revoked => (
            "revoked",
            "idle",
            NextStep::new(
                "reconnect",
                Some("POST"),
                Some(format!("/v1/connections/{id}/reconnect")),
                "collection is stopped; reconnect to start the setup path again",
            ),
        ),
        ConnectionStatus::Paused => ("paused", "idle", NextStep::new("none", None, None, "paused")),
        ConnectionStatus::Active => {
            let rejected = cred_status == Some(CredentialStatus::Rejected)
                || (last_failed && reason == "credential_rejected")
                || (i.needs_credential && !has_credential);
            if rejected {
                last_error = Some(LastError {
                    reason: "credential_rejected".into(),
                    remediation: fill(REJECTED_ACTIVE),
                });
                (
                    "active",
                    "needs_attention",
                    NextStep::new(
                        "capture_credential",
                        Some("PUT"),
                        credential_url,
                        "the credential needs replacing",
                    ),
                )
            } else if last_failed && !running {
                last_error = Some(LastError {
                    reason: reason.clone(),
                    remediation: fill(FAILED_ACTIVE),
                });
                (
                    "active",
                    "needs_attention",
                    NextStep::new("run_connection", Some("POST"), runs_url, "the last run failed"),
                )
            } else {
                (
                    "active",
                    "healthy",
                    NextStep::new("run_connection", Some("POST"), runs_url, "collecting"),
                )
            }
        }
        ConnectionStatus::Draft => {
            if i.needs_credential && !has_credential {
                (
                    "awaiting_credential",
                    "idle",
                    NextStep::new(
                        "capture_credential",
                        Some("PUT"),
                        credential_url,
                        "enter the credential",
                    ),
                )
            } else if running {
                (
                    "first_sync_running",
                    "idle",
                    NextStep::new(
                        "wait_for_first_sync",
                        Some("GET"),
                        Some(format!("/v1/connections/{id}/setup-status")),
                        "the first sync is running",
                    ),
                )
            } else if last_failed {
                let remediation = if credential_like(&reason) || cred_status == Some(CredentialStatus::Rejected) {
                    REENTER
                } else {
                    RETRY
                };
                last_error = Some(LastError {
                    reason: reason.clone(),
                    remediation: fill(remediation),
                });
                let step = if remediation == REENTER {
                    NextStep::new(
                        "capture_credential",
                        Some("PUT"),
                        credential_url,
                        "re-enter the credential",
                    )
                } else {
                    NextStep::new("start_first_sync", Some("POST"), runs_url, "retry the first sync")
                };
                ("first_sync_failed", "needs_attention", step)
            } else if last_ok {
                let t = i.terminal;
                let proven_empty = t.is_some_and(|t| {
                    t.get("records_emitted").and_then(Value::as_u64) == Some(0)
                        && t.get("known_gaps")
                            .and_then(Value::as_array)
                            .is_none_or(|g| g.is_empty())
                        && matches!(
                            t.get("checkpoint_commit_status").and_then(Value::as_str),
                            Some("committed" | "disabled")
                        )
                });
                let step = NextStep::new("start_first_sync", Some("POST"), runs_url, "retry the first sync");
                if proven_empty {
                    disposition = Some("verified_empty".to_owned());
                    ("first_sync_verified_empty", "needs_attention", step)
                } else {
                    disposition = Some("unverified_zero".to_owned());
                    last_error = Some(LastError {
                        reason: "first_sync_unverified_zero".into(),
                        remediation: fill(ZERO),
                    });
                    ("first_sync_unverified_zero", "needs_attention", step)
                }
            } else {
                (
                    "first_sync_pending",
                    "idle",
                    NextStep::new("start_first_sync", Some("POST"), runs_url, "start the first sync"),
                )
            }
        }
    };
    SetupStatus {
        object: "connection_setup_status".into(),
        connection_id: id.clone(),
        connector_id: c.connector_id.clone(),
        display_name: c.display_name.clone(),
        status: c.status.as_str().into(),
        pending: matches!(
            setup_state,
            "awaiting_credential" | "first_sync_pending" | "first_sync_running"
        ),
        setup_state: setup_state.into(),
        health_state: health.into(),
        running,
        account_identity: c.account_identity.clone(),
        credential: CredentialView::of(i.credential),
        run: i.last_run.map(RunSummary::of),
        last_error,
        terminal_setup_disposition: disposition,
        created_at: c.created_at,
        updated_at: c.updated_at,
        activated_at: c.activated_at,
        revoked_at: c.revoked_at,
        next_step: next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(v: Value) -> Manifest {
        Manifest::from_json(&v.to_string()).unwrap()
    }

    fn base(extra: Value) -> Value {
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

    #[test]
    fn setup_plan_static_secret_carries_the_form_and_synchronous_validation() {
        let p = plan(&manifest(base(pat())), &|_| false);
        assert_eq!(p.setup_modality, "static_secret");
        assert_eq!(p.support_state, "experimental", "no live proof recorded");
        assert_eq!(p.validation, "synchronous");
        assert_eq!(p.next_step.kind, "capture_credential");
        let form = p.credential_form.unwrap();
        assert_eq!(form.fields[0].help_url.as_deref(), Some("https://example.com/tokens"));
        assert!(form.fields[0].secret);
    }

    #[test]
    fn setup_plan_modalities_follow_the_manifest() {
        let none = plan(&manifest(base(json!({}))), &|_| false);
        assert_eq!(
            (none.setup_modality.as_str(), none.support_state.as_str()),
            ("none", "supported")
        );
        let browser = plan(
            &manifest(base(
                json!({ "runtime_requirements": { "bindings": { "browser": { "required": true } } } }),
            )),
            &|_| false,
        );
        assert_eq!(
            (browser.setup_modality.as_str(), browser.support_state.as_str()),
            ("browser_bound", "proof_gated")
        );
        let oauth = json!({ "setup": { "modality": "provider_authorization", "deployment_config": ["X_CLIENT_ID"] } });
        let missing = plan(&manifest(base(oauth.clone())), &|_| false);
        assert_eq!(missing.support_state, "needs_deployment_config");
        assert_eq!(missing.blockers, vec!["X_CLIENT_ID".to_string()]);
        let ready = plan(&manifest(base(oauth)), &|_| true);
        assert_eq!(ready.support_state, "proof_gated");
    }

    #[test]
    fn setup_plan_of_a_tombstone_or_blocked_connector_is_unsupported_with_the_reason() {
        let mut m = base(pat());
        m["lifecycle"] = json!({ "status": "removed", "reason": "the service shut down" });
        let p = plan(&manifest(m.clone()), &|_| false);
        assert_eq!(p.support_state, "unsupported");
        assert!(p.reason.contains("the service shut down"), "{}", p.reason);
        m["lifecycle"] = json!({ "status": "blocked_upstream", "reason": "app creation frozen" });
        let p = plan(&manifest(m), &|_| false);
        assert_eq!(p.support_state, "unsupported");
        assert!(p.reason.starts_with("blocked upstream"), "{}", p.reason);
    }

    fn conn(status: ConnectionStatus) -> Connection {
        Connection {
            connection_id: "con_1".into(),
            connector_id: "x".into(),
            status,
            display_name: None,
            account_identity: None,
            binding_metadata: json!({}),
            created_at: 1,
            updated_at: 1,
            revoked_at: None,
            activated_at: None,
        }
    }

    fn run(status: &str, reason: Option<&str>) -> RunRow {
        RunRow {
            run_id: "run_1".into(),
            connection_id: "con_1".into(),
            connector_id: "x".into(),
            status: status.into(),
            trigger: "setup".into(),
            started_at: 1,
            finished_at: None,
            records_emitted: 0,
            records_written: 0,
            failure_reason: reason.map(str::to_owned),
            failure_message: None,
            resource_report: None,
        }
    }

    #[test]
    fn setup_state_is_projected_from_connection_and_run_state() {
        let draft = conn(ConnectionStatus::Draft);
        let status = |last: Option<&RunRow>, terminal: Option<&Value>| {
            project(&StatusInputs {
                connection: &draft,
                needs_credential: false,
                credential: None,
                last_run: last,
                terminal,
            })
        };
        assert_eq!(status(None, None).setup_state, "first_sync_pending");
        assert_eq!(
            status(Some(&run("running", None)), None).setup_state,
            "first_sync_running"
        );
        let failed = status(Some(&run("failed", Some("connector_reported_failed"))), None);
        assert_eq!(failed.setup_state, "first_sync_failed");
        assert!(
            failed
                .last_error
                .unwrap()
                .remediation
                .contains("/v1/connections/con_1/runs")
        );
        let empty = json!({ "records_emitted": 0, "known_gaps": [], "checkpoint_commit_status": "committed" });
        let s = status(Some(&run("succeeded", None)), Some(&empty));
        assert_eq!(
            (s.setup_state.as_str(), s.terminal_setup_disposition.as_deref()),
            ("first_sync_verified_empty", Some("verified_empty"))
        );
        let gaps = json!({ "records_emitted": 0, "known_gaps": [{}], "checkpoint_commit_status": "committed" });
        assert_eq!(
            status(Some(&run("succeeded", None)), Some(&gaps)).setup_state,
            "first_sync_unverified_zero"
        );
        let awaiting = project(&StatusInputs {
            connection: &draft,
            needs_credential: true,
            credential: None,
            last_run: None,
            terminal: None,
        });
        assert_eq!(
            (awaiting.setup_state.as_str(), awaiting.pending),
            ("awaiting_credential", true)
        );
        let active = conn(ConnectionStatus::Active);
        let healthy = project(&StatusInputs {
            connection: &active,
            needs_credential: false,
            credential: None,
            last_run: Some(&run("succeeded", None)),
            terminal: None,
        });
        assert_eq!(
            (healthy.setup_state.as_str(), healthy.health_state.as_str()),
            ("active", "healthy")
        );
    }

    #[test]
    fn failed_first_sync_with_a_credential_reason_says_to_reenter_the_credential() {
        let draft = conn(ConnectionStatus::Draft);
        let s = project(&StatusInputs {
            connection: &draft,
            needs_credential: false,
            credential: None,
            last_run: Some(&run("failed", Some("credential_rejected"))),
            terminal: None,
        });
        assert_eq!(s.next_step.kind, "capture_credential");
        assert!(
            s.last_error
                .unwrap()
                .remediation
                .starts_with("Enter the provider credential again")
        );
    }
}
