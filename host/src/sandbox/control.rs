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
    requested: std::sync::Mutex<Option<Instant>>,
    notify: tokio::sync::Notify,
}

impl RunControl {
    pub fn new() -> Self {
        RunControl::default()
    }

    /// Ask the run to stop. The guest's next host call stops it; a guest that
    /// keeps computing is stopped by force after [`CANCEL_GRACE`]. Idempotent.
    pub fn cancel(&self) {
        let mut at = self.inner.requested.lock().expect("control lock");
        if at.is_none() {
            *at = Some(Instant::now());
        }
        drop(at);
        self.inner.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.requested.lock().expect("control lock").is_some()
    }

    /// When the grace period of a requested cancellation is over.
    pub(crate) fn forced_due(&self) -> bool {
        self.inner
            .requested
            .lock()
            .expect("control lock")
            .is_some_and(|at| at.elapsed() >= CANCEL_GRACE)
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
