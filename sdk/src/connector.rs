//! The trait a connector implements.

use crate::{Account, Failure, Probe, ProbeError, Run};

/// What a connector implements; [`crate::export_connector!`] exports it.
pub trait Connector {
    /// Collect what the run's scope asks for. `Ok(())` is DONE `succeeded`;
    /// a [`Failure`] is DONE `failed` (or `cancelled`). Everything emitted
    /// before returning reaches the host either way; the host commits
    /// checkpoints only when the outcome allows it.
    fn run(run: &mut Run) -> Result<(), Failure>;

    /// Check a candidate credential before the host stores it (the
    /// credential probe). The default has no probe: the host then validates
    /// at the first sync. A probe should make one cheap authenticated call
    /// and return the account it belongs to.
    fn validate_credential(probe: &Probe) -> Result<Account, ProbeError> {
        let _ = probe;
        Err(ProbeError::Unsupported)
    }

    /// Create the credential field `field` for the owner in the host's
    /// browser (a credential bootstrap, for a manifest that declares
    /// `credentials_schema.properties.<field>.bootstrap`): sign in (asking
    /// the owner through [`Run::interact`]), make the token on the
    /// provider's page and hand it to the host with
    /// [`crate::Browser::capture_credential`]; never read it. The default
    /// has no bootstrap: DONE failed `bootstrap_unsupported`. Fail with the
    /// codes in [`crate::bootstrap`] so the owner learns what to do next.
    fn bootstrap(run: &mut Run, field: &str) -> Result<(), Failure> {
        let _ = run;
        Err(crate::bootstrap::unsupported(field))
    }
}
