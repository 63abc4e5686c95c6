//! Why a run did not succeed: [`Failure`], and the [`Recovery`] vocabulary.

use crate::wit;

/// The closed vocabulary of recovery actions (SKIP_RESULT and DONE), shared
/// with the host: `pdpp_types::RecoveryAction`, spelled in JSON as the
/// profile does (`retry_by_runtime`, `refresh_credentials`, …).
pub use pdpp_types::RecoveryAction as Recovery;

/// The WIT form of a recovery hint.
pub(crate) fn hint_into_wit(action: Recovery, retryable: Option<bool>) -> wit::types::RecoveryHint {
    use wit::types::RecoveryAction as A;
    let action = match action {
        Recovery::RetryByRuntime => A::RetryByRuntime,
        Recovery::RetryOnConnectorUpgrade => A::RetryOnConnectorUpgrade,
        Recovery::RefreshCredentials => A::RefreshCredentials,
        Recovery::ManualActionRequired => A::ManualActionRequired,
        Recovery::UpdateSelector => A::UpdateSelector,
        Recovery::UpstreamUnblock => A::UpstreamUnblock,
        Recovery::NotRetriable => A::NotRetriable,
        Recovery::Unknown => A::Unknown,
    };
    wit::types::RecoveryHint { action, retryable }
}

/// Why a run did not succeed: becomes DONE `failed` (or `cancelled`).
///
/// ```
/// use pdpp_sdk::{Failure, Recovery};
/// let f = Failure::new("the provider refused the token")
///     .code("credential_rejected")
///     .recovery(Recovery::RefreshCredentials)
///     .retryable(false);
/// assert_eq!(f.code.as_deref(), Some("credential_rejected"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// For people; never a secret (the host redacts the run's secrets anyway).
    pub message: String,
    /// Machine-readable, `^[a-z][a-z0-9_]{0,63}$` (the host refuses other codes).
    pub code: Option<String>,
    /// Whether the same run may succeed later.
    pub retryable: Option<bool>,
    /// What should happen next.
    pub recovery: Option<Recovery>,
    /// DONE `cancelled` instead of `failed`.
    pub cancelled: bool,
}

impl Failure {
    /// A failure with a message and nothing else.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: None,
            retryable: None,
            recovery: None,
            cancelled: false,
        }
    }

    /// DONE `cancelled`: the connector stopped on purpose.
    pub fn cancelled(message: impl Into<String>) -> Self {
        Failure {
            cancelled: true,
            ..Failure::new(message)
        }
    }

    /// A machine-readable code (`^[a-z][a-z0-9_]{0,63}$`).
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Whether retrying the same run may succeed.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = Some(retryable);
        self
    }

    /// What should happen next (DONE's `recovery_hint.action`).
    pub fn recovery(mut self, action: Recovery) -> Self {
        self.recovery = Some(action);
        self
    }

    pub(crate) fn into_wit(self) -> wit::types::DoneError {
        wit::types::DoneError {
            message: self.message,
            code: self.code,
            retryable: self.retryable,
            recovery_hint: self.recovery.map(|r| hint_into_wit(r, None)),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} ({code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Failure {}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::new(format!("JSON error: {e}"))
            .code("serialization_failed")
            .retryable(false)
    }
}
