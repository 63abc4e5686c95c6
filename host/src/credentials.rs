//! The credentials service: the one path by which a connection's credential
//! is written.
//!
//! Every source of a credential — a form the owner filled (owner API, CLI),
//! an answer to a `credentials` INTERACTION the owner asked to keep, and next
//! a token bootstrapped in a browser or an OAuth exchange — goes through
//! [`CredentialService`], which applies one set of checks (the manifest's
//! capture block, the vault's kind rules, a size cap), runs the connector's
//! credential probe, keeps a rotation on the same account, retires a
//! first-time draft the provider refused, seals the bundle bound to its
//! connection, stores it and writes one audit entry. Vault key rotation
//! reseals every bundle here too. Errors are typed ([`CaptureError`]) so
//! the owner API maps them to HTTP and the CLI to exit codes.

use crate::browser::SealedProfile;
use crate::deploy::{DeployError, Deployment, Rotation};
use crate::egress::EgressConfig;
use crate::manifest::{Manifest, Validation};
use crate::plugins::LoadedPlugin;
use crate::runtime::{ProbeRequest, ProbeVerdict, probe_credential};
use crate::sandbox::{RunLimits, Sandbox};
use crate::store::{Audit, Connection, ConnectionStatus, LifecycleError, StoreError, StoredCredential};
use crate::vault::{Bundle, VaultError, VaultKey};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The most a candidate credential may hold (names and values), in bytes.
pub const MAX_CREDENTIAL_BYTES: usize = 64 * 1024;

/// Where a candidate credential comes from (recorded in the audit trail).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    /// The owner filled the credential form (owner API).
    OwnerForm,
    /// The owner passed a credential file to the CLI.
    CommandLine,
    /// The owner answered a `credentials` INTERACTION and asked to keep it.
    InteractionAnswer,
    /// The connector's bootstrap made it in the host's browser and handed
    /// it over by selector (the owner never saw it).
    Bootstrap,
}

/// A candidate credential as the owner gave it: a kind and field values.
pub struct Candidate {
    pub kind: String,
    pub fields: BTreeMap<String, Zeroizing<String>>,
}

impl Candidate {
    pub fn new(kind: impl Into<String>, fields: BTreeMap<String, String>) -> Self {
        Candidate {
            kind: kind.into(),
            fields: fields.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect(),
        }
    }
}

/// The account a probe reported for a credential. Never a secret.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AccountIdentity {
    pub account_identity: String,
    pub detail: Option<String>,
}

/// A credential that was checked, sealed and stored.
#[derive(Debug)]
pub struct Captured {
    /// It replaced a credential the connection had.
    pub rotated: bool,
    /// Who it belongs to, when the connector has a probe.
    pub identity: Option<AccountIdentity>,
    /// How it was validated: by the probe now, or by the first sync.
    pub validation: Validation,
    pub stored: StoredCredential,
}

/// Why a credential was not stored. Nothing was written except what the
/// variant says (an audit entry; a retired draft).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{0} takes no credential")]
    Unsupported(String),
    #[error("{connector_id} takes a {expected} credential, not {given}")]
    KindMismatch {
        connector_id: String,
        expected: String,
        given: String,
    },
    #[error("a credential holds at most {MAX_CREDENTIAL_BYTES} bytes")]
    TooLarge,
    #[error("{connector_id} declares no credential field {field}")]
    UnknownField { connector_id: String, field: String },
    #[error("required credential fields are empty: {}", .0.join(", "))]
    Missing(Vec<String>),
    #[error("{0}")]
    Invalid(VaultError),
    #[error("connection {0} is revoked; reconnect it first (POST /v1/connections/{0}/reconnect)")]
    ConnectionRevoked(String),
    /// The provider refused the credential (or it lacks a scope).
    #[error("the provider did not accept the credential: {message}{}", if *.draft_retired {
        "; nothing was stored and the draft connection was retired: start the setup again"
    } else {
        "; nothing was stored and the connection keeps its current credential"
    })]
    Rejected {
        code: &'static str,
        message: String,
        draft_retired: bool,
    },
    /// The probe could not ask the provider, or broke.
    #[error("the credential could not be checked ({message}); nothing was stored, try again")]
    ProbeUnavailable { code: &'static str, message: String },
    #[error("this credential belongs to {new}, not to {known}; connect the other account as a new connection")]
    IdentityMismatch { new: String, known: String },
    #[error("the stored credential cannot be opened")]
    Unreadable(VaultError),
    #[error("the answer holds none of the connector's credential fields")]
    NothingToSave,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
}

impl CaptureError {
    /// A stable code for the API and the CLI.
    pub fn code(&self) -> &'static str {
        match self {
            CaptureError::Unsupported(_) => "credential_unsupported",
            CaptureError::KindMismatch { .. } => "credential_kind_mismatch",
            CaptureError::TooLarge => "credential_too_large",
            CaptureError::UnknownField { .. } => "unknown_credential_field",
            CaptureError::Missing(_) => "missing_credential",
            CaptureError::Invalid(_) => "invalid_credential",
            CaptureError::ConnectionRevoked(_) => "connection_inactive",
            CaptureError::Rejected { code, .. } | CaptureError::ProbeUnavailable { code, .. } => code,
            CaptureError::IdentityMismatch { .. } => "credential_identity_mismatch",
            CaptureError::Unreadable(_) => "credential_unreadable",
            CaptureError::NothingToSave => "nothing_to_save",
            CaptureError::Store(_) => "store_error",
            CaptureError::Lifecycle(e) => match e {
                LifecycleError::NotFound(_) => "not_found",
                _ => "connection_state_conflict",
            },
        }
    }

    /// The kind of failure, for exit codes and HTTP statuses.
    pub fn class(&self) -> CaptureClass {
        match self {
            CaptureError::KindMismatch { .. }
            | CaptureError::TooLarge
            | CaptureError::UnknownField { .. }
            | CaptureError::Missing(_)
            | CaptureError::Invalid(_)
            | CaptureError::NothingToSave => CaptureClass::Invalid,
            CaptureError::Rejected { .. } => CaptureClass::Refused,
            CaptureError::Unsupported(_)
            | CaptureError::ConnectionRevoked(_)
            | CaptureError::IdentityMismatch { .. }
            | CaptureError::Unreadable(_) => CaptureClass::Conflict,
            CaptureError::ProbeUnavailable { .. } => CaptureClass::Unavailable,
            CaptureError::Lifecycle(LifecycleError::NotFound(_)) => CaptureClass::NotFound,
            CaptureError::Lifecycle(_) => CaptureClass::Conflict,
            CaptureError::Store(_) => CaptureClass::Internal,
        }
    }
}

/// Classes of [`CaptureError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureClass {
    /// The candidate does not fit the manifest or the vault's rules.
    Invalid,
    /// The provider refused it.
    Refused,
    /// The connection's state does not allow it.
    Conflict,
    /// The provider could not be asked.
    Unavailable,
    NotFound,
    Internal,
}

/// Check a candidate against the manifest's capture block and the vault's
/// kind rules: the one validation every source goes through. Empty values
/// are dropped (an optional field left blank).
pub fn check(m: &Manifest, c: Candidate) -> Result<Bundle, CaptureError> {
    let capture = m
        .setup
        .as_ref()
        .and_then(|s| s.credential_capture.as_ref())
        .filter(|c| !c.fields.is_empty())
        .ok_or_else(|| CaptureError::Unsupported(m.connector_id.clone()))?;
    if c.kind != capture.kind {
        return Err(CaptureError::KindMismatch {
            connector_id: m.connector_id.clone(),
            expected: capture.kind.clone(),
            given: c.kind,
        });
    }
    let size: usize = c.fields.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_CREDENTIAL_BYTES {
        return Err(CaptureError::TooLarge);
    }
    if let Some(name) = c.fields.keys().find(|n| !capture.fields.iter().any(|f| f.name == **n)) {
        return Err(CaptureError::UnknownField {
            connector_id: m.connector_id.clone(),
            field: name.clone(),
        });
    }
    let fields: BTreeMap<String, Zeroizing<String>> =
        c.fields.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect();
    let missing: Vec<String> = capture
        .fields
        .iter()
        .filter(|f| f.is_required() && !fields.contains_key(&f.name))
        .map(|f| f.name.clone())
        .collect();
    if !missing.is_empty() || fields.is_empty() {
        return Err(CaptureError::Missing(missing));
    }
    let bundle = Bundle { kind: c.kind, fields };
    bundle.check().map_err(CaptureError::Invalid)?;
    Ok(bundle)
}

/// The credentials service of one deployment.
pub struct CredentialService<'a> {
    pub dep: &'a Deployment,
    pub sandbox: &'a Sandbox,
    /// The deployment's egress settings, for the probe.
    pub egress: Arc<EgressConfig>,
    /// The deployment's run limits, for the probe.
    pub limits: RunLimits,
}

impl CredentialService<'_> {
    /// Capture a connection's first credential, or rotate it: check it, ask
    /// the connector's probe, keep an active connection on its account, seal
    /// and store it, and write the audit entry. A first-time draft whose
    /// credential the provider refuses is retired (no setup row stays).
    /// Starting the first sync of a draft is the caller's next step.
    pub async fn capture(
        &self,
        conn: &Connection,
        plugin: &LoadedPlugin,
        candidate: Candidate,
        source: CredentialSource,
    ) -> Result<Captured, CaptureError> {
        self.capture_with(conn, plugin, candidate, source, true).await
    }

    /// [`CredentialService::capture`]; `retire_draft` says whether a
    /// first-time draft whose credential the provider refuses is retired
    /// (a bootstrap keeps it: the owner retries or pastes).
    async fn capture_with(
        &self,
        conn: &Connection,
        plugin: &LoadedPlugin,
        candidate: Candidate,
        source: CredentialSource,
        retire_draft: bool,
    ) -> Result<Captured, CaptureError> {
        let id = conn.connection_id.as_str();
        if conn.status == ConnectionStatus::Revoked {
            return Err(CaptureError::ConnectionRevoked(id.to_owned()));
        }
        let manifest = plugin.manifest.clone();
        let bundle = check(&manifest, candidate)?;
        let store = &self.dep.store;
        let previous = store.credential(id).await?;
        let rotated = previous.is_some();
        // A rotation keeps the replaced credential's fingerprint on record
        // (never its value): the audit trail says which one was replaced.
        let previous_fingerprint = previous.as_ref().map(|c| c.sealed.fingerprint.clone());
        let audit = |outcome: &'static str, code: &'static str| {
            Audit::ok("connection.credential.capture", id).outcome(outcome).detail(
                json!({ "kind": bundle.kind, "rotated": rotated, "code": code, "source": source,
                                "previous_fingerprint": previous_fingerprint }),
            )
        };

        let verdict = probe_credential(
            self.sandbox,
            &plugin.plugin,
            ProbeRequest {
                manifest: manifest.clone(),
                settings: conn.binding_metadata.clone(),
                secrets: bundle.fields.clone(),
                egress: self.egress.clone(),
                limits: self.limits.clone(),
            },
        )
        .await;
        let identity = match &verdict {
            ProbeVerdict::Accepted { identity, detail } => Some(AccountIdentity {
                account_identity: identity.clone(),
                detail: detail.clone(),
            }),
            ProbeVerdict::NoProbe => None,
            ProbeVerdict::Rejected(m) | ProbeVerdict::InsufficientScope(m) => {
                store.audit(audit("rejected", verdict.code())).await?;
                // Nothing is stored. A first-time draft is retired so no setup
                // row stays behind; a working connection keeps its credential.
                let draft_retired = retire_draft && conn.status == ConnectionStatus::Draft && !rotated;
                if draft_retired {
                    store.retire_draft(id, verdict.code()).await?;
                }
                return Err(CaptureError::Rejected {
                    code: verdict.code(),
                    message: m.clone(),
                    draft_retired,
                });
            }
            ProbeVerdict::Unavailable(m) | ProbeVerdict::Broken(m) => {
                store.audit(audit("probe_failed", verdict.code())).await?;
                return Err(CaptureError::ProbeUnavailable {
                    code: verdict.code(),
                    message: m.clone(),
                });
            }
        };
        // A rotation must stay on the same account.
        if let (Some(new), Some(Value::String(known))) = (&identity, &conn.account_identity)
            && conn.status == ConnectionStatus::Active
            && new.account_identity != *known
        {
            store.audit(audit("rejected", "credential_identity_mismatch")).await?;
            return Err(CaptureError::IdentityMismatch {
                new: new.account_identity.clone(),
                known: known.clone(),
            });
        }
        let sealed = self.dep.key.seal(id, &bundle).map_err(CaptureError::Invalid)?;
        store.put_credential(id, &sealed).await?;
        if let Some(i) = &identity {
            store.set_account_identity(id, &json!(i.account_identity)).await?;
        }
        store.audit(audit("ok", verdict.code())).await?;
        let stored = store.credential(id).await?.ok_or_else(|| StoreError::NotFound {
            what: "credential of connection",
            id: id.to_owned(),
        })?;
        Ok(Captured {
            rotated,
            validation: if matches!(verdict, ProbeVerdict::NoProbe) {
                Validation::FirstSync
            } else {
                Validation::Synchronous
            },
            identity,
            stored,
        })
    }

    /// Merge the declared fields of a `credentials` INTERACTION answer into
    /// the connection's bundle (the owner asked to keep them). The run that
    /// asked uses them at once, so no probe runs; the same checks apply to
    /// the merged bundle. Returns the names of the fields saved.
    pub async fn merge_answer(
        &self,
        conn: &Connection,
        manifest: &Manifest,
        answer: Option<&Value>,
        run_id: &str,
    ) -> Result<Vec<String>, CaptureError> {
        let id = conn.connection_id.as_str();
        let kind = manifest
            .setup
            .as_ref()
            .and_then(|s| s.credential_capture.as_ref())
            .map(|c| c.kind.clone())
            .ok_or_else(|| CaptureError::Unsupported(manifest.connector_id.clone()))?;
        let store = &self.dep.store;
        let mut fields = match store.credential(id).await? {
            Some(c) => {
                self.dep
                    .key
                    .open(id, &c.sealed)
                    .map_err(CaptureError::Unreadable)?
                    .fields
            }
            None => BTreeMap::new(),
        };
        let mut saved = Vec::new();
        for f in manifest.credential_fields() {
            if let Some(v) = answer
                .and_then(|d| d.get(&f.name))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
            {
                fields.insert(f.name.clone(), Zeroizing::new(v.to_owned()));
                saved.push(f.name.clone());
            }
        }
        if saved.is_empty() {
            return Err(CaptureError::NothingToSave);
        }
        let size: usize = fields.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_CREDENTIAL_BYTES {
            return Err(CaptureError::TooLarge);
        }
        let bundle = Bundle { kind, fields };
        let sealed = self.dep.key.seal(id, &bundle).map_err(CaptureError::Invalid)?;
        store.put_credential(id, &sealed).await?;
        store
            .audit(
                Audit::ok("connection.credential.capture", id)
                    .run(run_id)
                    .detail(json!({
                        "kind": bundle.kind,
                        "fields": saved,
                        "source": CredentialSource::InteractionAnswer,
                    })),
            )
            .await?;
        Ok(saved)
    }
}

/// How a bootstrap's credential fared in the credentials service.
#[derive(Debug)]
pub enum BootstrapResult {
    /// Checked, sealed and stored.
    Stored(Captured),
    /// The bootstrap ended without handing a credential over (it failed,
    /// was cancelled, or never captured one): nothing was written.
    NothingCaptured,
    /// The credentials service refused it: nothing was stored.
    Refused(CaptureError),
}

impl CredentialService<'_> {
    /// The end of a credential bootstrap (a `bootstrap` run that ended):
    /// the credential it captured goes through [`CredentialService::capture`]
    /// exactly as a pasted one (checks, probe, same account on rotation,
    /// seal, audit with the source `bootstrap`), and the run's timeline gets
    /// what happened (never a value). A bootstrap the provider's probe
    /// refuses leaves the draft in place: the owner can try again or paste.
    pub async fn complete_bootstrap(
        &self,
        conn: &Connection,
        plugin: &LoadedPlugin,
        run_id: &str,
        succeeded: bool,
        captured: Option<&crate::sandbox::caps::browser::CapturedCredential>,
    ) -> Result<BootstrapResult, StoreError> {
        use crate::store::RunEvent;
        let store = &self.dep.store;
        let kind = plugin
            .manifest
            .setup
            .as_ref()
            .and_then(|s| s.credential_capture.as_ref())
            .map(|c| c.kind.clone())
            .unwrap_or_default();
        let Some(captured) = captured.filter(|_| succeeded) else {
            return Ok(BootstrapResult::NothingCaptured);
        };
        let mut fields = BTreeMap::new();
        fields.insert(captured.field.clone(), captured.value().clone());
        // Other fields of a stored bundle stay (a bootstrap replaces its own field).
        if let Some(stored) = store.credential(&conn.connection_id).await?
            && let Ok(bundle) = self.dep.key.open(&conn.connection_id, &stored.sealed)
        {
            for (k, v) in bundle.fields {
                fields.entry(k).or_insert(v);
            }
        }
        // A first-time draft is not retired when the probe refuses a
        // bootstrapped token: the owner can bootstrap again or paste one.
        let candidate = Candidate { kind, fields };
        let result = self
            .capture_with(conn, plugin, candidate, CredentialSource::Bootstrap, false)
            .await;
        let event = match &result {
            Ok(c) => RunEvent::new(
                "bootstrap.credential_stored",
                json!({ "field": captured.field, "rotated": c.rotated, "validation": c.validation,
                        "fingerprint": c.stored.sealed.fingerprint,
                        "account": c.identity.as_ref().map(|i| &i.account_identity) }),
            ),
            Err(e) => RunEvent::new(
                "bootstrap.credential_refused",
                json!({ "field": captured.field, "code": e.code(), "message": e.to_string() }),
            ),
        };
        store.append_events(run_id, &[event]).await?;
        Ok(match result {
            Ok(c) => BootstrapResult::Stored(c),
            Err(e) => BootstrapResult::Refused(e),
        })
    }
}

/// Revoke a connection's credential: its runs are refused until a new one
/// is captured. The sealed bundle stays (a reconnect may use it).
pub async fn revoke(dep: &Deployment, connection_id: &str) -> Result<(), CaptureError> {
    let store = &dep.store;
    store
        .set_credential_status(connection_id, crate::store::CredentialStatus::Revoked)
        .await?;
    store
        .audit(Audit::ok("connection.credential.revoke", connection_id))
        .await?;
    Ok(())
}

/// Rotate the vault key: reseal every credential under a new key in one
/// transaction, then make the new key the key file, with an audit entry
/// naming the key ids (never the keys). Refused while a server uses the
/// deployment (it would keep sealing under the old key). Any bundle that does not open stops
/// the rotation before anything is written; a crash after the store commit
/// is finished at the next start (see [`Deployment::open`]).
pub async fn rotate_vault_key(dep: &mut Deployment) -> Result<Rotation, DeployError> {
    // A serving host keeps the key it started with: refuse rather than seal
    // under a key it does not have.
    let serving = dep.store.live_hosts().await?;
    if !serving.is_empty() {
        return Err(DeployError::ServersRunning(serving));
    }
    let new_key = VaultKey::generate();
    let mut resealed = Vec::new();
    for stored in dep.store.all_credentials().await? {
        let bundle = dep.key.open(&stored.connection_id, &stored.sealed)?;
        resealed.push((
            stored.connection_id.clone(),
            new_key.seal(&stored.connection_id, &bundle)?,
        ));
    }
    // Each connection's browser login material, resealed the same way; one
    // that no longer opens is dropped (the next run logs in again).
    let mut profiles = Vec::new();
    for (connection_id, bytes) in dep.store.all_browser_profiles().await? {
        let opened = SealedProfile::from_bytes(&bytes).and_then(|s| s.open(&dep.key, &connection_id).ok());
        match opened {
            Some(archive) => profiles.push((connection_id.clone(), archive.seal(&new_key, &connection_id).to_bytes())),
            None => {
                dep.store.delete_browser_profile(&connection_id).await?;
            }
        }
    }
    dep.stage_key(&new_key)?;
    if let Err(e) = dep.store.reseal_all(&resealed, &profiles).await {
        dep.discard_staged_key();
        return Err(e.into());
    }
    let rotation = Rotation {
        old_key_id: dep.key.id(),
        new_key_id: new_key.id(),
        resealed: resealed.len(),
    };
    dep.commit_staged_key(new_key)?;
    let audited = dep
        .store
        .audit(Audit {
            action: "vault.rotate_key",
            connection_id: None,
            run_id: None,
            outcome: "ok",
            detail: json!({
                "old_key_id": rotation.old_key_id,
                "new_key_id": rotation.new_key_id,
                "resealed": rotation.resealed,
            }),
        })
        .await;
    if let Err(e) = audited {
        // The rotation itself is done; only its trace is missing.
        tracing::warn!("the key rotation is done but its audit entry could not be written: {e}");
    }
    Ok(rotation)
}
