//! The credential probe: [`crate::Connector::validate_credential`] checks a
//! candidate credential before the host stores it.
//!
//! The host runs the probe in a fresh instance with the candidate bundle
//! behind [`Probe::secret`], the same egress rules as a run, and a 30 s cap.

use crate::host::Host;
use crate::http::HttpError;
use crate::log::Level;
use crate::secrets::{Secret, SecretError};
use serde_json::Value;

/// What a credential probe sees: the candidate credential (through
/// [`Probe::secret`]) and the connection's non-secret setup fields.
pub struct Probe {
    settings: Value,
    host: Host,
}

impl Probe {
    /// A probe over `settings` (JSON text; anything but an object reads as
    /// an empty object).
    pub(crate) fn new(settings: &str, host: Host) -> Self {
        let settings = serde_json::from_str(settings)
            .ok()
            .filter(Value::is_object)
            .unwrap_or(Value::Object(Default::default()));
        Probe { settings, host }
    }

    /// The non-secret setup fields (a JSON object).
    pub fn settings(&self) -> &Value {
        &self.settings
    }

    /// One non-secret setup field as text.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings.get(name).and_then(Value::as_str)
    }

    /// A handle to a field of the candidate credential.
    pub fn secret(&self, field: &str) -> Result<Secret, SecretError> {
        self.host.secret(field)
    }

    /// A structured log line, attributed to the probe.
    pub fn log(&self, level: Level, message: &str) {
        self.host.log(level, message, &[]);
    }
}

/// The account a credential belongs to. Never a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// A stable identity at the provider (login, user id, workspace).
    pub identity: String,
    /// A human-readable label.
    pub detail: Option<String>,
}

/// Why a probe did not accept a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// The provider refused the credential.
    Rejected(String),
    /// Valid, but missing a permission the connector needs.
    InsufficientScope(String),
    /// The provider could not be asked.
    Unavailable(String),
    /// No probe: validate at the first sync.
    Unsupported,
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Rejected(why) => write!(f, "the provider refused the credential: {why}"),
            ProbeError::InsufficientScope(why) => write!(f, "the credential lacks a permission: {why}"),
            ProbeError::Unavailable(why) => write!(f, "the provider could not be asked: {why}"),
            ProbeError::Unsupported => f.write_str("this connector has no credential probe"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// 401 is a refused credential, 403 a missing permission, anything else
/// (including a refused egress) means the provider could not be asked.
impl From<HttpError> for ProbeError {
    fn from(e: HttpError) -> Self {
        match &e {
            HttpError::Status { status: 401, .. } => ProbeError::Rejected(e.to_string()),
            HttpError::Status { status: 403, .. } => ProbeError::InsufficientScope(e.to_string()),
            _ => ProbeError::Unavailable(e.to_string()),
        }
    }
}

/// A credential field the probe cannot have is a credential to refuse.
impl From<SecretError> for ProbeError {
    fn from(e: SecretError) -> Self {
        ProbeError::Rejected(e.to_string())
    }
}
