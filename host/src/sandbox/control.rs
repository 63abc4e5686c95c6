//! The owner's handle on a run in progress, and what cancelling it does.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a cancelled guest may keep computing before it is stopped by force.
pub const CANCEL_GRACE: Duration = Duration::from_millis(250);

/// The owner's handle on a run in progress. Cloning shares it.
#[derive(Clone, Default)]
pub struct RunControl {
    inner: Arc<ControlInner>,
}

#[derive(Default)]
struct ControlInner {
    requested: std::sync::Mutex<Option<(Instant, StopCause)>>,
    notify: tokio::sync::Notify,
}

/// Who asked a run to stop: the owner cancelled it, its connection was
/// revoked or deleted, or the host is shutting down. The timeline and the
/// run's reason say which.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopCause {
    #[default]
    Owner,
    ConnectionRevoked,
    HostShutdown,
}

impl RunControl {
    pub fn new() -> Self {
        RunControl::default()
    }

    /// Ask the run to stop. The guest's next host call stops it; a guest that
    /// keeps computing is stopped by force after [`CANCEL_GRACE`]. Idempotent.
    pub fn cancel(&self) {
        self.stop(StopCause::Owner);
    }

    /// Ask the run to stop for `cause`, as [`cancel`](Self::cancel) does.
    /// The first request's cause is the one kept.
    pub fn stop(&self, cause: StopCause) {
        let mut at = self.inner.requested.lock().expect("control lock");
        if at.is_none() {
            *at = Some((Instant::now(), cause));
        }
        drop(at);
        self.inner.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.requested.lock().expect("control lock").is_some()
    }

    /// Why the run was asked to stop, once it was.
    pub fn cause(&self) -> Option<StopCause> {
        self.inner
            .requested
            .lock()
            .expect("control lock")
            .map(|(_, cause)| cause)
    }

    /// When the grace period of a requested cancellation is over.
    pub(crate) fn forced_due(&self) -> bool {
        self.inner
            .requested
            .lock()
            .expect("control lock")
            .is_some_and(|(at, _)| at.elapsed() >= CANCEL_GRACE)
    }

    /// Resolves once cancellation is requested.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// The error that stops a guest at its next host call once the run is
    /// cancelled (`emit` and `interaction` check it before anything else).
    pub(crate) fn check(&self) -> wasmtime::Result<()> {
        if self.is_cancelled() {
            return Err(wasmtime::Error::new(Cancelled { forced: false }));
        }
        Ok(())
    }
}

/// The guest was stopped because the owner cancelled the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancelled {
    /// It kept computing past the grace period and was stopped by force.
    pub forced: bool,
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.forced {
            write!(f, "the owner cancelled the run and the connector was stopped by force")
        } else {
            write!(f, "the owner cancelled the run")
        }
    }
}

impl std::error::Error for Cancelled {}
