//! `pdpp:connector/secrets`: handles to this connection's declared
//! credential fields.
//!
//! The guest gets a handle per field, never a value: a handle gives the
//! field's name and a placeholder that the `http` capability replaces with
//! the value in requests to allowed origins. Only a field the manifest marks
//! revealable can be read in plaintext, and each such read is reported to the
//! runtime (a `run.secret_revealed` event). Fields the manifest does not
//! declare do not exist for the guest, even when the connection holds them.

use super::super::bindings::pdpp::connector::secrets::{self, SecretError};
use super::super::hooks::SharedHooks;
use std::collections::BTreeMap;
use std::fmt;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use zeroize::Zeroizing;

/// The WIT interface this capability links (package/interface, no version).
pub(crate) const INTERFACES: &[&str] = &["pdpp:connector/secrets"];

/// The credential fields one run may see: the fields its manifest declares
/// and the values its own connection has for them. This is the capability's
/// per-run state; the `http` capability reads it to substitute placeholders.
#[derive(Clone, Default)]
pub struct SecretSet {
    /// Declared field → may it be revealed to the guest.
    declared: BTreeMap<String, bool>,
    values: BTreeMap<String, Zeroizing<String>>,
    /// Fields the manifest declares `secret: false` (a login name, say):
    /// handed over by handle like the others, but not scrubbed from text
    /// and typed into a browser as plain text, so a page that shows them
    /// (the account's name) can still be read.
    public: std::collections::BTreeSet<String>,
    nonce: String,
    redactor: crate::vault::Redactor,
}

impl fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSet")
            .field("declared", &self.declared)
            .field("values", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretSet {
    /// `declared` are (field, revealable) pairs from the manifest; values for
    /// undeclared fields are dropped here, so they can never reach the guest.
    pub fn new(
        declared: impl IntoIterator<Item = (String, bool)>,
        values: impl IntoIterator<Item = (String, Zeroizing<String>)>,
    ) -> Self {
        let declared: BTreeMap<String, bool> = declared.into_iter().collect();
        let values: BTreeMap<String, Zeroizing<String>> =
            values.into_iter().filter(|(k, _)| declared.contains_key(k)).collect();
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).expect("system randomness");
        let nonce = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let redactor = crate::vault::Redactor::new(values.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        SecretSet {
            declared,
            values,
            public: Default::default(),
            nonce,
            redactor,
        }
    }

    /// The same set, with `fields` marked not secret (the manifest's
    /// `secret: false`): their values are left out of the redactor.
    pub fn with_public_fields(mut self, fields: impl IntoIterator<Item = String>) -> Self {
        self.public = fields.into_iter().collect();
        self.redactor = crate::vault::Redactor::new(
            self.values
                .iter()
                .filter(|(k, _)| !self.public.contains(*k))
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        self
    }

    /// Whether the manifest declares `field` not secret.
    pub(crate) fn is_public(&self, field: &str) -> bool {
        self.public.contains(field)
    }

    /// The declared fields that have a value.
    pub fn available(&self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }

    fn check(&self, field: &str) -> Result<(), SecretError> {
        if !self.declared.contains_key(field) {
            return Err(SecretError::NotDeclared(field.to_owned()));
        }
        if !self.values.contains_key(field) {
            return Err(SecretError::Missing(field.to_owned()));
        }
        Ok(())
    }

    /// The value of a declared field, for the host to use on the guest's
    /// behalf (typing it into a browser field). Never handed to the guest.
    pub(crate) fn value(&self, field: &str) -> Result<Zeroizing<String>, SecretError> {
        self.check(field)?;
        Ok(self.values[field].clone())
    }

    fn reveal(&self, field: &str) -> Result<String, SecretError> {
        self.check(field)?;
        if self.declared.get(field) != Some(&true) {
            return Err(SecretError::RevealNotPermitted(field.to_owned()));
        }
        Ok(self.values[field].to_string())
    }

    /// The token that stands for a field in outgoing requests.
    pub fn placeholder(&self, field: &str) -> String {
        format!("{{{{pdpp-secret:{}:{field}}}}}", self.nonce)
    }

    /// Scrubs every form of this run's secret values from text.
    pub fn redactor(&self) -> &crate::vault::Redactor {
        &self.redactor
    }

    /// The value behind a placeholder, for host-side substitution into a
    /// request to an allowed origin. `None` for anything else.
    pub fn resolve_placeholder(&self, token: &str) -> Option<Zeroizing<String>> {
        let inner = token.strip_prefix("{{pdpp-secret:")?.strip_suffix("}}")?;
        let (nonce, field) = inner.split_once(':')?;
        if nonce != self.nonce {
            return None;
        }
        self.values.get(field).cloned()
    }
}

/// A secret handle held by the guest: the field name only.
pub struct SecretHandle {
    field: String,
}

impl SecretHandle {
    /// The declared field the handle stands for.
    pub(crate) fn field(&self) -> &str {
        &self.field
    }
}

/// What the secrets host implementation works on: the run's set, the store's
/// resource table (handles live there) and the hooks (reveals are reported).
pub struct SecretsView<'a> {
    pub(crate) secrets: &'a SecretSet,
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) hooks: &'a SharedHooks,
}

struct Secrets;
impl HasData for Secrets {
    type Data<'a> = SecretsView<'a>;
}

/// Link `pdpp:connector/secrets`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> SecretsView<'_>,
) -> wasmtime::Result<()> {
    secrets::add_to_linker::<T, Secrets>(linker, get)
}

impl secrets::Host for SecretsView<'_> {
    async fn available(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.secrets.available())
    }

    async fn get(&mut self, field: String) -> wasmtime::Result<Result<Resource<SecretHandle>, SecretError>> {
        if let Err(e) = self.secrets.check(&field) {
            return Ok(Err(e));
        }
        Ok(Ok(self.table.push(SecretHandle { field })?))
    }
}

impl secrets::HostSecret for SecretsView<'_> {
    async fn field(&mut self, handle: Resource<SecretHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&handle)?.field.clone())
    }

    async fn placeholder(&mut self, handle: Resource<SecretHandle>) -> wasmtime::Result<String> {
        let field = &self.table.get(&handle)?.field;
        Ok(self.secrets.placeholder(field))
    }

    async fn reveal(&mut self, handle: Resource<SecretHandle>) -> wasmtime::Result<Result<String, SecretError>> {
        let field = self.table.get(&handle)?.field.clone();
        match self.secrets.reveal(&field) {
            Ok(value) => {
                self.hooks.lock().await.secret_revealed(&field);
                Ok(Ok(value))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    async fn drop(&mut self, handle: Resource<SecretHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::hooks::{lend, recording::Recorder};
    use super::secrets::{Host, HostSecret};
    use super::*;

    fn set() -> SecretSet {
        SecretSet::new(
            [
                ("token".to_string(), false),
                ("key".to_string(), true),
                ("otp_seed".to_string(), true),
            ],
            [
                ("token".to_string(), Zeroizing::new("tok-value-123".to_string())),
                ("key".to_string(), Zeroizing::new("key-value-456".to_string())),
                ("undeclared".to_string(), Zeroizing::new("undeclared-value".to_string())),
            ],
        )
    }

    #[test]
    fn placeholder_resolves_only_for_this_runs_declared_values() {
        let s = set();
        let token = s.placeholder("token");
        assert_eq!(s.resolve_placeholder(&token).unwrap().as_str(), "tok-value-123");
        assert!(
            s.resolve_placeholder(&s.placeholder("undeclared")).is_none(),
            "undeclared values were dropped"
        );
        assert!(
            s.resolve_placeholder(&s.placeholder("otp_seed")).is_none(),
            "declared but no value"
        );
        let other_run = set();
        assert!(
            other_run.resolve_placeholder(&token).is_none(),
            "another run's placeholder does not resolve"
        );
        assert!(s.resolve_placeholder("tok-value-123").is_none());
    }

    #[test]
    fn secret_set_redacts_its_values_and_never_debug_prints_them() {
        let s = set();
        assert_eq!(s.redactor().redact("auth tok-value-123"), "auth [REDACTED:token]");
        assert!(!format!("{s:?}").contains("tok-value-123"));
        assert_eq!(s.available(), vec!["key".to_string(), "token".to_string()]);
    }

    #[tokio::test]
    async fn a_handle_gives_its_field_and_placeholder_never_the_value() {
        let s = set();
        let mut table = ResourceTable::new();
        let (lent, hooks) = lend(Recorder::default());
        let mut view = SecretsView {
            secrets: &s,
            table: &mut table,
            hooks: &hooks,
        };
        assert_eq!(Host::available(&mut view).await.unwrap(), ["key", "token"]);
        let handle = Host::get(&mut view, "token".into()).await.unwrap().unwrap();
        let again = Resource::<SecretHandle>::new_borrow(handle.rep());
        assert_eq!(HostSecret::field(&mut view, again).await.unwrap(), "token");
        let again = Resource::<SecretHandle>::new_borrow(handle.rep());
        let placeholder = HostSecret::placeholder(&mut view, again).await.unwrap();
        assert_eq!(placeholder, s.placeholder("token"));
        assert!(!placeholder.contains("tok-value-123"));
        let rep = handle.rep();
        HostSecret::drop(&mut view, handle).await.unwrap();
        assert!(
            view.table.get(&Resource::<SecretHandle>::new_borrow(rep)).is_err(),
            "a dropped handle is gone from the table"
        );
        drop(hooks);
        assert!(lent.take_back().reveals.is_empty());
    }

    #[tokio::test]
    async fn a_field_not_declared_or_without_a_value_has_no_handle() {
        let s = set();
        let mut table = ResourceTable::new();
        let (_lent, hooks) = lend(Recorder::default());
        let mut view = SecretsView {
            secrets: &s,
            table: &mut table,
            hooks: &hooks,
        };
        match Host::get(&mut view, "undeclared".into()).await.unwrap() {
            Err(SecretError::NotDeclared(f)) => assert_eq!(f, "undeclared"),
            _ => panic!("an undeclared field is refused"),
        }
        match Host::get(&mut view, "otp_seed".into()).await.unwrap() {
            Err(SecretError::Missing(f)) => assert_eq!(f, "otp_seed"),
            _ => panic!("a declared field without a value is missing"),
        }
    }

    #[tokio::test]
    async fn reveal_is_refused_unless_declared_revealable_and_reported_when_allowed() {
        let s = set();
        let mut table = ResourceTable::new();
        let (lent, hooks) = lend(Recorder::default());
        let mut view = SecretsView {
            secrets: &s,
            table: &mut table,
            hooks: &hooks,
        };
        let token = Host::get(&mut view, "token".into()).await.unwrap().unwrap();
        match HostSecret::reveal(&mut view, token).await.unwrap() {
            Err(SecretError::RevealNotPermitted(f)) => assert_eq!(f, "token"),
            _ => panic!("token may not be revealed"),
        }
        let key = Host::get(&mut view, "key".into()).await.unwrap().unwrap();
        assert_eq!(
            HostSecret::reveal(&mut view, key).await.unwrap().unwrap(),
            "key-value-456"
        );
        drop(hooks);
        assert_eq!(
            lent.take_back().reveals,
            ["key"],
            "only the permitted reveal is reported"
        );
    }

    /// A login name the manifest declares `secret: false` stays readable:
    /// it is not scrubbed from text, while the secret fields still are.
    #[test]
    fn a_field_declared_not_secret_is_not_redacted() {
        let s = set().with_public_fields(["token".to_string()]);
        assert!(s.is_public("token") && !s.is_public("key"));
        let text = s.redactor().redact("tok-value-123 key-value-456");
        assert_eq!(text, "tok-value-123 [REDACTED:key]");
        assert_eq!(
            s.value("token").unwrap().as_str(),
            "tok-value-123",
            "still handed over by handle"
        );
    }
}
