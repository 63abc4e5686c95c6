//! The credential probe: before a captured credential is stored, the
//! connector's `validate-credential` export checks it against the provider,
//! in a fresh sandbox with the same grants, egress rules and secret handling
//! as a run.

use crate::egress::EgressConfig;
use crate::manifest::Manifest;
use crate::sandbox::{GuestExit, GuestProbe, Plugin, ProbeAnswer, RunControl, RunLimits, Sandbox};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// A probe takes at most this long, whatever the run limits are.
pub const PROBE_WALL_CLOCK: Duration = Duration::from_secs(30);

/// What to probe.
pub struct ProbeRequest {
    pub manifest: Arc<Manifest>,
    /// The connection's non-secret setup fields.
    pub settings: Value,
    /// The candidate credential's fields.
    pub secrets: BTreeMap<String, Zeroizing<String>>,
    pub egress: Arc<EgressConfig>,
    pub limits: RunLimits,
}

/// The probe's verdict. Every text is redacted of the candidate's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeVerdict {
    Accepted {
        identity: String,
        detail: Option<String>,
    },
    Rejected(String),
    InsufficientScope(String),
    /// The provider could not be asked; nothing is known.
    Unavailable(String),
    /// The connector has no probe: validation happens at the first sync.
    NoProbe,
    /// The probe itself broke (trap, limit, missing export).
    Broken(String),
}

impl ProbeVerdict {
    /// A stable code for the API and the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            ProbeVerdict::Accepted { .. } => "accepted",
            ProbeVerdict::Rejected(_) => "credential_rejected",
            ProbeVerdict::InsufficientScope(_) => "credential_insufficient_scope",
            ProbeVerdict::Unavailable(_) => "credential_probe_unavailable",
            ProbeVerdict::NoProbe => "no_probe",
            ProbeVerdict::Broken(_) => "credential_probe_failed",
        }
    }
}

/// Run the connector's credential probe once.
pub async fn probe_credential(sandbox: &Sandbox, plugin: &Plugin, req: ProbeRequest) -> ProbeVerdict {
    let secrets = super::secret_set(&req.manifest, req.secrets);
    let redact = |s: String| secrets.redactor().redact(&s);
    let mut limits = req.limits.lowered_by(req.manifest.runtime_requirements.limits.as_ref());
    limits.wall_clock = limits.wall_clock.min(PROBE_WALL_CLOCK);
    limits.cpu = limits.cpu.min(PROBE_WALL_CLOCK);
    let probe = GuestProbe {
        settings: req.settings,
        secrets: secrets.clone(),
        control: RunControl::new(),
        egress: req.egress,
        limits,
    };
    let (answer, _usage) = sandbox.probe(plugin, probe).await;
    match answer {
        Ok(ProbeAnswer::Accepted { identity, detail }) => ProbeVerdict::Accepted {
            identity: redact(identity),
            detail: detail.map(redact),
        },
        Ok(ProbeAnswer::Rejected(m)) => ProbeVerdict::Rejected(redact(m)),
        Ok(ProbeAnswer::InsufficientScope(m)) => ProbeVerdict::InsufficientScope(redact(m)),
        Ok(ProbeAnswer::Unavailable(m)) => ProbeVerdict::Unavailable(redact(m)),
        Ok(ProbeAnswer::Unsupported) => ProbeVerdict::NoProbe,
        // No room on this host: nothing is known about the credential.
        Err(GuestExit::HostCapacity(why)) => ProbeVerdict::Unavailable(redact(why)),
        Err(exit) => ProbeVerdict::Broken(redact(format!("{exit:?}"))),
    }
}
