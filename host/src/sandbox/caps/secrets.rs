//! `pdpp:connector/secrets`: handles to this connection's declared
//! credential fields.
//!
//! The guest gets a handle per field, never a value: a handle gives the
//! field's name and a placeholder that the `http` capability replaces with
//! the value in requests to allowed origins. Only a field the manifest marks
//! revealable can be read in plaintext, and each such read is reported to the
//! runtime (a `run.secret_revealed` event). Fields the manifest does not
//! declare do not exist for the guest, even when the connection holds them.
//!
//! Where a placeholder may become its value is the field's [`FieldPolicy`]
//! (the manifest's `inject`): by default only the `authorization` header,
//! never the body. A placeholder anywhere else makes the `http` capability
//! refuse the request, so a field cannot be sent to an allowed endpoint in a
//! place that endpoint echoes back. Every form of the run's values is also
//! scrubbed from responses before the guest reads them
//! ([`SecretSet::scrub_response`]).

use super::super::bindings::pdpp::connector::secrets::{self, SecretError};
use super::super::hooks::SharedHooks;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use zeroize::Zeroizing;

/// The WIT interface this capability links (package/interface, no version).
pub(crate) const INTERFACES: &[&str] = &["pdpp:connector/secrets"];

/// Where a field's placeholder may be substituted in an outgoing request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPolicy {
    /// Header names (lowercase) whose value may carry the placeholder.
    pub headers: Vec<String>,
    /// Whether the request body may carry it.
    pub body: bool,
}

impl Default for FieldPolicy {
    /// The `authorization` header only.
    fn default() -> Self {
        FieldPolicy {
            headers: vec!["authorization".into()],
            body: false,
        }
    }
}

/// Where in a request a placeholder was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement<'a> {
    Header(&'a str),
    Body,
}

/// The credential fields one run may see: the fields its manifest declares
/// and the values its own connection has for them. This is the capability's
/// per-run state; the `http` capability reads it to substitute placeholders.
///
/// Clones share the values: a value the owner gives during the run (a
/// `credentials` answer, [`SecretSet::adopt_answer`]) is known at once to
/// every part of the run that holds the set (handles, substitution,
/// scrubbing, redaction of messages and events).
#[derive(Clone, Default)]
pub struct SecretSet {
    /// Declared field → may it be revealed to the guest.
    declared: BTreeMap<String, bool>,
    known: Arc<RwLock<Known>>,
    /// Where each field may be substituted (absent: [`FieldPolicy::default`]).
    policies: BTreeMap<String, FieldPolicy>,
    /// Fields the manifest declares `secret: false` (a login name, say):
    /// handed over by handle like the others, but not scrubbed from text
    /// and typed into a browser as plain text, so a page that shows them
    /// (the account's name) can still be read.
    public: std::collections::BTreeSet<String>,
    nonce: String,
}

/// The values a run holds and the redactor of every form of them.
#[derive(Default)]
struct Known {
    values: BTreeMap<String, Zeroizing<String>>,
    redactor: crate::vault::Redactor,
    /// Fields the manifest does not declare that an answer's schema marked
    /// secret: declared (non-revealable) for the rest of the run.
    answered: std::collections::BTreeSet<String>,
}

impl Known {
    /// The values, and a redactor of all but the `public` ones.
    fn new(values: BTreeMap<String, Zeroizing<String>>, public: &std::collections::BTreeSet<String>) -> Self {
        let redactor = crate::vault::Redactor::new(
            values
                .iter()
                .filter(|(k, _)| !public.contains(*k))
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        Known {
            values,
            redactor,
            answered: Default::default(),
        }
    }
}

impl fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSet")
            .field("declared", &self.declared)
            .field("values", &self.known().values.keys().collect::<Vec<_>>())
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
        SecretSet {
            declared,
            known: Arc::new(RwLock::new(Known::new(values, &Default::default()))),
            policies: BTreeMap::new(),
            public: Default::default(),
            nonce,
        }
    }

    fn known(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        self.known.read().expect("secret set lock")
    }

    /// Take the secret fields of a `credentials` answer into the run's
    /// values and hand the guest their placeholders instead: the guest then
    /// gets a handle with `secrets.get(field)` and types it with
    /// `browser.fill-secret`, never holding the value. A field is secret
    /// when the manifest declares it a non-revealable credential field, or
    /// when the question's `schema` marks it `"format": "password"` or
    /// `"writeOnly": true` (a login password a bootstrap asks for, say; such
    /// a field is declared for the rest of this run only). Revealable and
    /// `secret: false` fields, and anything else, pass through unchanged.
    /// Returns the fields taken.
    pub fn adopt_answer(&self, answer: &mut serde_json::Value, schema: Option<&serde_json::Value>) -> Vec<String> {
        let Some(fields) = answer.as_object_mut() else {
            return Vec::new();
        };
        let marked = |field: &str| {
            let p = schema.and_then(|s| s.get("properties")).and_then(|p| p.get(field));
            p.is_some_and(|p| {
                p.get("format").and_then(|f| f.as_str()) == Some("password")
                    || p.get("writeOnly") == Some(&serde_json::Value::Bool(true))
            })
        };
        let mut taken = Vec::new();
        for (field, value) in fields.iter_mut() {
            let secret = match self.declared.get(field) {
                Some(revealable) => !revealable && !self.public.contains(field),
                None => marked(field),
            };
            let Some(text) = value.as_str().filter(|t| secret && !t.is_empty()) else {
                continue;
            };
            let text = Zeroizing::new(text.to_owned());
            *value = serde_json::Value::String(self.placeholder(field));
            taken.push((field.clone(), text));
        }
        if taken.is_empty() {
            return Vec::new();
        }
        let mut known = self.known.write().expect("secret set lock");
        let mut values = std::mem::take(&mut known.values);
        let mut answered = std::mem::take(&mut known.answered);
        let names: Vec<String> = taken.iter().map(|(f, _)| f.clone()).collect();
        answered.extend(names.iter().filter(|f| !self.declared.contains_key(*f)).cloned());
        values.extend(taken);
        *known = Known::new(values, &self.public);
        known.answered = answered;
        names
    }

    /// This set with where each field may be substituted (the manifest's
    /// `inject`); fields not named keep [`FieldPolicy::default`].
    pub fn with_policies(mut self, policies: impl IntoIterator<Item = (String, FieldPolicy)>) -> Self {
        self.policies = policies.into_iter().collect();
        self
    }

    /// Whether `field` may be substituted at `place`.
    pub fn allowed_at(&self, field: &str, place: Placement<'_>) -> bool {
        let default = FieldPolicy::default();
        let policy = self.policies.get(field).unwrap_or(&default);
        match place {
            Placement::Body => policy.body,
            Placement::Header(name) => policy.headers.iter().any(|h| h.eq_ignore_ascii_case(name)),
        }
    }

    /// Every form of this run's values in a response, replaced by the
    /// field's placeholder before the guest reads it. `None` when there was
    /// nothing to replace.
    pub fn scrub_response(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        if !super::super::budget::hardening() {
            return None;
        }
        self.known()
            .redactor
            .replace_bytes(bytes, |field| self.placeholder(field))
    }

    /// The same set, with `fields` marked not secret (the manifest's
    /// `secret: false`): their values are left out of the redactor.
    pub fn with_public_fields(mut self, fields: impl IntoIterator<Item = String>) -> Self {
        self.public = fields.into_iter().collect();
        let values = self.known().values.clone();
        self.known = Arc::new(RwLock::new(Known::new(values, &self.public)));
        self
    }

    /// Whether the manifest declares `field` not secret.
    pub(crate) fn is_public(&self, field: &str) -> bool {
        self.public.contains(field)
    }

    /// The declared fields that have a value.
    pub fn available(&self) -> Vec<String> {
        self.known().values.keys().cloned().collect()
    }

    fn check(&self, field: &str) -> Result<(), SecretError> {
        if !self.declared.contains_key(field) && !self.known().answered.contains(field) {
            return Err(SecretError::NotDeclared(field.to_owned()));
        }
        if !self.known().values.contains_key(field) {
            return Err(SecretError::Missing(field.to_owned()));
        }
        Ok(())
    }

    /// The value of a declared field, for the host to use on the guest's
    /// behalf (typing it into a browser field). Never handed to the guest.
    pub(crate) fn value(&self, field: &str) -> Result<Zeroizing<String>, SecretError> {
        self.check(field)?;
        Ok(self.known().values[field].clone())
    }

    fn reveal(&self, field: &str) -> Result<String, SecretError> {
        self.check(field)?;
        if self.declared.get(field) != Some(&true) {
            return Err(SecretError::RevealNotPermitted(field.to_owned()));
        }
        Ok(self.known().values[field].to_string())
    }

    /// The token that stands for a field in outgoing requests.
    pub fn placeholder(&self, field: &str) -> String {
        format!("{{{{pdpp-secret:{}:{field}}}}}", self.nonce)
    }

    /// Scrubs every form of this run's secret values from text (those the
    /// owner gave during the run included, from the moment they were given).
    pub fn redactor(&self) -> crate::vault::Redactor {
        self.known().redactor.clone()
    }

    /// The value behind a placeholder, for host-side substitution into a
    /// request to an allowed origin. `None` for anything else.
    pub fn resolve_placeholder(&self, token: &str) -> Option<Zeroizing<String>> {
        self.resolve_field(token).map(|(_, v)| v)
    }

    /// The field and value behind a placeholder of this run.
    pub fn resolve_field(&self, token: &str) -> Option<(String, Zeroizing<String>)> {
        let inner = token.strip_prefix("{{pdpp-secret:")?.strip_suffix("}}")?;
        let (nonce, field) = inner.split_once(':')?;
        if nonce != self.nonce {
            return None;
        }
        self.known().values.get(field).map(|v| (field.to_owned(), v.clone()))
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
    fn a_credentials_answer_reaches_the_guest_as_placeholders_and_the_run_knows_the_values() {
        let s = set();
        let shared = s.clone();
        let mut answer = serde_json::json!({
            "token": "answered-token-789",
            "key": "revealable-so-plain",
            "username": "not-declared",
            "otp_seed": 5,
        });
        assert_eq!(s.adopt_answer(&mut answer, None), ["token"]);
        assert_eq!(
            answer["token"],
            s.placeholder("token"),
            "the guest sees the placeholder"
        );
        assert_eq!(answer["key"], "revealable-so-plain");
        assert_eq!(answer["username"], "not-declared");
        assert_eq!(
            shared.value("token").unwrap().as_str(),
            "answered-token-789",
            "every clone of the run's set knows the answered value"
        );
        assert_eq!(
            shared.redactor().redact("x answered-token-789 y"),
            "x [REDACTED:token] y"
        );
        let mut not_an_object = serde_json::json!("answered-token-789");
        assert!(s.adopt_answer(&mut not_an_object, None).is_empty());
    }

    #[test]
    fn an_answer_field_the_question_marks_as_a_password_is_held_like_a_declared_secret() {
        let s = set();
        let schema = serde_json::json!({ "properties": {
            "login_password": { "type": "string", "format": "password" },
            "pin": { "type": "string", "writeOnly": true },
            "username": { "type": "string" },
        } });
        let mut answer =
            serde_json::json!({ "login_password": "pw-of-the-login", "pin": "4321-pin", "username": "ada" });
        let mut taken = s.adopt_answer(&mut answer, Some(&schema));
        taken.sort();
        assert_eq!(taken, ["login_password", "pin"]);
        assert_eq!(answer["username"], "ada");
        assert_eq!(answer["login_password"], s.placeholder("login_password"));
        assert_eq!(s.value("login_password").unwrap().as_str(), "pw-of-the-login");
        assert!(s.reveal("login_password").is_err(), "never revealable");
        assert!(!s.redactor().redact("pw-of-the-login").contains("pw-of"));
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
    fn secrets_are_substituted_only_where_the_manifest_declares() {
        let s = set().with_policies([(
            "key".to_string(),
            FieldPolicy {
                headers: vec!["x-api-key".into()],
                body: true,
            },
        )]);
        assert!(s.allowed_at("token", Placement::Header("Authorization")));
        assert!(!s.allowed_at("token", Placement::Header("x-debug")));
        assert!(!s.allowed_at("token", Placement::Body), "the body only when declared");
        assert!(s.allowed_at("key", Placement::Body));
        assert!(s.allowed_at("key", Placement::Header("x-api-key")));
        assert!(!s.allowed_at("key", Placement::Header("authorization")));
    }

    #[test]
    fn response_scrubbing_replaces_every_form_with_the_placeholder() {
        let s = set();
        let body = format!(
            "echo tok-value-123 and {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "tok-value-123")
        );
        let out = String::from_utf8(s.scrub_response(body.as_bytes()).unwrap()).unwrap();
        assert!(!out.contains("tok-value-123"), "{out}");
        assert_eq!(out.matches(&s.placeholder("token")).count(), 2, "{out}");
        assert!(s.scrub_response(b"nothing here").is_none());
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
