//! The channel from a [`crate::Run`] or [`crate::Probe`] to what answers
//! its imports.
//!
//! In a component that is the host, through the WIT imports. In a native
//! build it may instead be [`crate::testing::TestHost`], so a connector's
//! logic can be unit-tested without compiling a component. Everything the
//! SDK asks of the host goes through here; nothing else calls a WIT import
//! (except `http`, which speaks `wasi:http` and has no fake).

use crate::log::Level;
use crate::secrets::{Secret, SecretError, SecretHandle};
use crate::wit;

/// Who answers.
#[derive(Clone)]
pub(crate) enum Host {
    /// The real host, through the component's imports.
    Wit,
    /// An in-memory host for native unit tests.
    #[cfg(not(target_family = "wasm"))]
    Fake(crate::testing::Shared),
}

impl Host {
    /// `emit.send`: one batch, in order.
    pub(crate) fn send(&self, batch: Vec<wit::emit::Message>) {
        match self {
            Host::Wit => wit::emit::send(&batch),
            #[cfg(not(target_family = "wasm"))]
            Host::Fake(fake) => fake.borrow_mut().receive(batch),
        }
    }

    /// `interaction.ask`: blocks until the owner answers.
    pub(crate) fn ask(
        &self,
        request: &wit::interaction::Request,
    ) -> Result<wit::interaction::Response, wit::interaction::InteractionError> {
        match self {
            Host::Wit => wit::interaction::ask(request),
            #[cfg(not(target_family = "wasm"))]
            Host::Fake(fake) => fake.borrow_mut().ask(request),
        }
    }

    /// `secrets.get`.
    pub(crate) fn secret(&self, field: &str) -> Result<Secret, SecretError> {
        match self {
            Host::Wit => wit::secrets::get(field)
                .map(|s| Secret(SecretHandle::Wit(s)))
                .map_err(SecretError::from),
            #[cfg(not(target_family = "wasm"))]
            Host::Fake(fake) => fake.borrow().secret(field),
        }
    }

    /// `secrets.available`.
    pub(crate) fn available_secrets(&self) -> Vec<String> {
        match self {
            Host::Wit => wit::secrets::available(),
            #[cfg(not(target_family = "wasm"))]
            Host::Fake(fake) => fake.borrow().available_secrets(),
        }
    }

    /// `log.write`.
    pub(crate) fn log(&self, level: Level, message: &str, fields: &[(String, String)]) {
        match self {
            Host::Wit => wit::log::write(level.into(), message, fields),
            #[cfg(not(target_family = "wasm"))]
            Host::Fake(fake) => fake.borrow_mut().log(level, message, fields),
        }
    }
}
