//! Asking the owner: INTERACTION and its answer.
//!
//! [`crate::Run::interact`] blocks until the owner answers, declines, or
//! `timeout_seconds` pass. A run without the `interactive` binding gets
//! [`InteractError::NotInteractive`] at once; finish with DONE `failed`
//! naming what was needed (recovery `manual_action_required`).

use serde_json::Value;

/// What the owner may be asked for, shared with the host
/// (`pdpp_types::InteractionKind`): `Credentials`, `Otp`, `ManualAction`.
pub use pdpp_types::InteractionKind;

/// An INTERACTION request.
///
/// ```
/// use pdpp_sdk::{Interaction, json};
/// let ask = Interaction::otp("Enter the 6-digit code we sent you")
///     .schema(json!({"type": "object", "required": ["code"]}))
///     .timeout_seconds(300);
/// assert_eq!(ask.timeout_seconds, Some(300));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Interaction {
    /// What is asked for.
    pub kind: InteractionKind,
    /// For the owner.
    pub message: String,
    /// The stream it is about (in scope), if one.
    pub stream: Option<String>,
    /// A JSON Schema object the answer should satisfy.
    pub schema: Option<Value>,
    /// How long to wait (positive); the deployment's default when absent.
    pub timeout_seconds: Option<u32>,
}

impl Interaction {
    /// Ask for `kind`, with a message for the owner.
    pub fn new(kind: InteractionKind, message: impl Into<String>) -> Self {
        Interaction {
            kind,
            message: message.into(),
            stream: None,
            schema: None,
            timeout_seconds: None,
        }
    }

    /// Ask for a one-time code.
    pub fn otp(message: impl Into<String>) -> Self {
        Interaction::new(InteractionKind::Otp, message)
    }

    /// Wait at most this long.
    pub fn timeout_seconds(mut self, seconds: u32) -> Self {
        self.timeout_seconds = Some(seconds);
        self
    }

    /// The shape the answer should have (a JSON Schema object).
    pub fn schema(mut self, schema: Value) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The stream the question is about.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }
}

/// The owner's answer to an INTERACTION.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// The owner answered; the data goes to the connector only (never kept
    /// or shown by the host). In a `credentials` answer, each field the
    /// manifest declares as a non-revealable credential field, and each
    /// field the question's schema marks `"format": "password"` or
    /// `"writeOnly": true`, holds its placeholder instead of the value: take
    /// a handle with
    /// [`Run::secret`](crate::Run::secret) and type it with
    /// [`Browser::fill_secret`](crate::browser::Browser::fill_secret) or
    /// send it with [`Request::bearer`](crate::http::Request::bearer).
    Success(Value),
    /// The owner declined.
    Cancelled,
    /// Nobody answered in time.
    Timeout,
}

/// Why an interaction could not be asked at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InteractError {
    /// The run has no `interactive` binding; the text names what is missing.
    NotInteractive(String),
}

impl std::fmt::Display for InteractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InteractError::NotInteractive(what) => write!(f, "no owner can answer: {what}"),
        }
    }
}

impl std::error::Error for InteractError {}
