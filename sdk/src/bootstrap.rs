//! The typed failures of a credential bootstrap ([`crate::Connector::bootstrap`]).
//!
//! Each is a [`Failure`] with a stable code the host turns into the owner's
//! next step: try again (the login or code was wrong, the provider asked to
//! wait), or paste the credential (the flow cannot work for this account, or
//! the page changed and the connector needs an update). docs/bootstrap.md
//! lists them.

use crate::{Answer, BrowserError, Failure, Interaction, InteractionKind, Recovery, Run, Value};

/// The owner's login was refused.
pub fn login_failed(message: impl Into<String>) -> Failure {
    Failure::new(message)
        .code("login_failed")
        .recovery(Recovery::RefreshCredentials)
        .retryable(true)
}

/// The one-time code (or the device verification code) was refused.
pub fn otp_rejected(message: impl Into<String>) -> Failure {
    Failure::new(message)
        .code("otp_rejected")
        .recovery(Recovery::RefreshCredentials)
        .retryable(true)
}

/// The provider's page is not what the connector expects at `step` (a
/// selector no longer matches): paste the token, and update the connector.
pub fn page_changed(step: &str, message: impl std::fmt::Display) -> Failure {
    Failure::new(format!("the page changed at step {step}: {message}"))
        .code("page_changed")
        .recovery(Recovery::UpdateSelector)
        .retryable(false)
}

/// The provider only lets a workspace owner create the credential.
pub fn not_workspace_owner(message: impl Into<String>) -> Failure {
    Failure::new(message)
        .code("not_workspace_owner")
        .recovery(Recovery::ManualActionRequired)
        .retryable(false)
}

/// The provider only gives API access to paying members.
pub fn membership_required(message: impl Into<String>) -> Failure {
    Failure::new(message)
        .code("membership_required")
        .recovery(Recovery::UpstreamUnblock)
        .retryable(false)
}

/// The provider asked to slow down; try again later.
pub fn rate_limited(message: impl Into<String>) -> Failure {
    Failure::new(message)
        .code("rate_limited")
        .recovery(Recovery::RetryByRuntime)
        .retryable(true)
}

/// The connector has no bootstrap for `field` (the default).
pub fn unsupported(field: &str) -> Failure {
    Failure::new(format!(
        "this connector cannot create {field} for you; paste it instead"
    ))
    .code("bootstrap_unsupported")
    .recovery(Recovery::ManualActionRequired)
    .retryable(false)
}

/// Put a named step of the bootstrap on the run's timeline (a PROGRESS
/// `bootstrap step: <step>`; never a value from the page).
pub fn step(run: &mut Run, step: &str) {
    run.progress(None, &format!("bootstrap step: {step}"), None, None);
}

/// Map a browser error at `step` to the bootstrap's failure: a selector that
/// no longer matches (or an element that cannot be used) is
/// [`page_changed`] naming the step; anything else as the browser said.
pub fn at(step: &'static str) -> impl Fn(BrowserError) -> Failure {
    move |e| match e {
        BrowserError::NotFound(_) | BrowserError::NotInteractable(_) => page_changed(step, e),
        other => other.into(),
    }
}

/// Ask the owner during a bootstrap (15 minutes to answer); the answer's
/// object, or a typed failure: cancelled, `interaction_timeout`, or
/// `owner_input_required` (nobody can answer; `provider` names whom the
/// connector signs in to).
pub fn ask(
    run: &mut Run,
    provider: &str,
    kind: InteractionKind,
    message: &str,
    schema: Value,
) -> Result<Value, Failure> {
    match run.interact(Interaction::new(kind, message).schema(schema).timeout_seconds(900)) {
        Ok(Answer::Success(v)) => Ok(v),
        Ok(Answer::Cancelled) => Err(Failure::cancelled("the owner cancelled the bootstrap")),
        Ok(Answer::Timeout) => Err(Failure::new("nobody answered in time; start the bootstrap again")
            .code("interaction_timeout")
            .recovery(Recovery::ManualActionRequired)
            .retryable(true)),
        Err(e) => Err(
            Failure::new(format!("signing in to {provider} needs the owner and {e}"))
                .code("owner_input_required")
                .recovery(Recovery::ManualActionRequired)
                .retryable(false),
        ),
    }
}
