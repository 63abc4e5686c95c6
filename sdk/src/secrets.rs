//! Handles to the connection's credential fields.
//!
//! A connector never needs a credential's value to use it: it puts a
//! [`Secret::placeholder`] in a request (see [`crate::http::Request::bearer`])
//! and the host substitutes the value for origins the manifest allows. Only
//! fields the manifest marks `"reveal": true` can be read, and every reveal
//! is recorded on the run.

use crate::errors::{Failure, Recovery};
use crate::wit;

/// A handle to one credential field. The value stays in the host unless the
/// manifest allows [`Secret::reveal`].
pub struct Secret(pub(crate) SecretHandle);

/// Where a secret handle points.
pub(crate) enum SecretHandle {
    /// A handle the host gave through `secrets.get`.
    Wit(wit::secrets::Secret),
    /// A value held by [`crate::testing::TestHost`].
    #[cfg(not(target_family = "wasm"))]
    Fake {
        field: String,
        value: String,
        revealable: bool,
    },
}

impl Secret {
    /// The field's name, as the manifest declares it.
    pub fn field(&self) -> String {
        match &self.0 {
            SecretHandle::Wit(s) => s.field(),
            #[cfg(not(target_family = "wasm"))]
            SecretHandle::Fake { field, .. } => field.clone(),
        }
    }

    /// A token the host replaces with the value in requests to allowed
    /// origins (headers and bodies), and nowhere else.
    pub fn placeholder(&self) -> String {
        match &self.0 {
            SecretHandle::Wit(s) => s.placeholder(),
            #[cfg(not(target_family = "wasm"))]
            SecretHandle::Fake { field, .. } => crate::testing::placeholder(field),
        }
    }

    /// The value itself, when the manifest marks the field `"reveal": true`
    /// (for example to sign requests). The host records every reveal.
    pub fn reveal(&self) -> Result<String, SecretError> {
        match &self.0 {
            SecretHandle::Wit(s) => s.reveal().map_err(SecretError::from),
            #[cfg(not(target_family = "wasm"))]
            SecretHandle::Fake {
                field,
                value,
                revealable,
            } => match revealable {
                true => Ok(value.clone()),
                false => Err(SecretError::RevealNotPermitted(field.clone())),
            },
        }
    }
}

impl std::fmt::Debug for Secret {
    /// Names the field, never the value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Secret").field(&self.field()).finish()
    }
}

/// Why a secret handle could not be had or revealed. Each carries the field name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretError {
    /// The manifest's `setup.credential_capture.fields` does not declare it.
    NotDeclared(String),
    /// Declared, but this connection has no value for it.
    Missing(String),
    /// The manifest does not mark it `"reveal": true`.
    RevealNotPermitted(String),
}

impl std::fmt::Display for SecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretError::NotDeclared(s) => {
                write!(f, "credential field {s} is not declared by the manifest")
            }
            SecretError::Missing(s) => {
                write!(f, "credential field {s} has no value for this connection")
            }
            SecretError::RevealNotPermitted(s) => {
                write!(f, "credential field {s} may not be revealed")
            }
        }
    }
}

impl std::error::Error for SecretError {}

impl From<wit::secrets::SecretError> for SecretError {
    fn from(e: wit::secrets::SecretError) -> Self {
        match e {
            wit::secrets::SecretError::NotDeclared(s) => SecretError::NotDeclared(s),
            wit::secrets::SecretError::Missing(s) => SecretError::Missing(s),
            wit::secrets::SecretError::RevealNotPermitted(s) => SecretError::RevealNotPermitted(s),
        }
    }
}

/// A credential the run cannot use ends it: the owner must enter one.
impl From<SecretError> for Failure {
    fn from(e: SecretError) -> Self {
        Failure::new(e.to_string())
            .code("credential_unavailable")
            .recovery(Recovery::RefreshCredentials)
            .retryable(false)
    }
}
