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
}
