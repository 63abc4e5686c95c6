//! The seam between the sandbox and the runtime: [`RunHooks`].
//!
//! The sandbox knows no protocol rule. Each capability converts what the
//! guest sends and hands it to the run's hooks (the runtime's session), which
//! validate, stage and keep it. The hooks' answers come back typed: a
//! [`Violation`] (the guest broke a rule) or a [`HostFault`] (the host could
//! not keep what the guest sent); either stops the guest.
//!
//! One store borrows the hooks for one run: [`lend`] shares them with the
//! capabilities and gives the caller its own concrete type back when the
//! store is gone, so nothing downcasts.

use super::budget::Held;
use super::limits::Breach;
use crate::protocol as p;
use std::sync::Arc;

/// A protocol violation found while the guest runs. It stops the guest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("protocol violation ({rule}): {message}")]
pub struct Violation {
    /// The rule, e.g. `record_stream_in_scope`.
    pub rule: &'static str,
    /// What happened, naming streams and fields but never payload values.
    pub message: String,
}

impl Violation {
    pub fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Violation {
            rule,
            message: message.into(),
        }
    }
}

/// The host failed to keep what the guest sent (e.g. the database is
/// unavailable). It stops the guest; the run fails as `runtime_error`. This
/// is the one encoding of "the host failed" from inside a run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("host failure: {0}")]
pub struct HostFault(pub String);

/// Why the runtime stopped the guest during a host call that can fail either way.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    Violation(#[from] Violation),
    #[error(transparent)]
    HostFault(#[from] HostFault),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// What an INTERACTION came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Asked {
    /// Nobody can answer: the run has no `interactive` binding. Names it.
    NotInteractive(String),
    Answer(p::InteractionAnswer),
}

/// The runtime's side of a run, called from the guest's imports.
#[async_trait::async_trait]
pub trait RunHooks: Send {
    /// One message, in order. An error stops the guest.
    fn message(&mut self, msg: p::Message) -> Result<(), Violation>;
    /// The end of one `emit.send` batch: hand it over to be made durable.
    /// Batches become durable whole and in order, before the run ends; the
    /// hooks may still be writing one when the guest sends the next.
    /// `held` is the run budget's charge for the batch, kept until it is
    /// written. An error stops the guest.
    async fn end_batch(&mut self, held: Held) -> Result<(), HostFault>;
    /// A blocking INTERACTION, with what the run's browser shows when the
    /// guest asked with one open (a PNG, for the owner only). An error
    /// stops the guest.
    async fn interact(&mut self, req: p::Interaction, screenshot: Option<Vec<u8>>) -> Result<Asked, HookError>;
    /// The guest reports which account the run's browser is logged into
    /// (redacted of the run's secrets). A breach stops the guest:
    /// [`Breach::SessionAccountMismatch`] when it is not the connection's.
    fn session_account(&mut self, identity: &str) -> Result<(), Breach>;
    /// A structured log line from the guest.
    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>);
    /// The guest read the plaintext of a field the manifest lets it reveal.
    fn secret_revealed(&mut self, field: &str);
    /// The host typed a credential field into the run's browser for the
    /// guest (so a refusal the connector then reports is the credential's).
    fn secret_typed(&mut self, field: &str) {
        let _ = field;
    }
    /// A bootstrap handed the credential field `field` to the host (by
    /// selector; the value stays with the host).
    fn credential_captured(&mut self, field: &str) {
        let _ = field;
    }
}

/// The hooks of one run as the capabilities hold them. Host calls of one
/// store never overlap, so the lock is never contended; it exists so the
/// caller can have its hooks back by value after the run.
#[derive(Clone)]
pub(crate) struct SharedHooks(Arc<tokio::sync::Mutex<dyn RunHooks>>);

impl SharedHooks {
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, dyn RunHooks> {
        self.0.lock().await
    }
}

/// The caller's claim on hooks lent to a store.
pub(crate) struct Lent<H>(Arc<tokio::sync::Mutex<H>>);

/// Share `hooks` with one store's capabilities; [`Lent::take_back`] returns them.
pub(crate) fn lend<H: RunHooks + 'static>(hooks: H) -> (Lent<H>, SharedHooks) {
    let own = Arc::new(tokio::sync::Mutex::new(hooks));
    let shared: Arc<tokio::sync::Mutex<dyn RunHooks>> = own.clone();
    (Lent(own), SharedHooks(shared))
}

impl<H> Lent<H> {
    /// The hooks, once the store that borrowed them (and with it every
    /// [`SharedHooks`] clone) has been dropped.
    pub(crate) fn take_back(self) -> H {
        Arc::into_inner(self.0)
            .expect("the store holding the hooks was dropped before they are taken back")
            .into_inner()
    }
}

/// Hooks for a store that emits nowhere: a credential probe, or the fixed-cost
/// measurement. Messages are dropped and nobody answers an INTERACTION.
pub(crate) struct NullHooks;

#[async_trait::async_trait]
impl RunHooks for NullHooks {
    fn message(&mut self, _msg: p::Message) -> Result<(), Violation> {
        Ok(())
    }
    async fn end_batch(&mut self, _held: Held) -> Result<(), HostFault> {
        Ok(())
    }
    async fn interact(&mut self, _req: p::Interaction, _screenshot: Option<Vec<u8>>) -> Result<Asked, HookError> {
        Ok(Asked::NotInteractive("nobody is listening".into()))
    }
    fn session_account(&mut self, _identity: &str) -> Result<(), Breach> {
        Ok(())
    }
    fn log(&mut self, _level: LogLevel, _message: String, _fields: Vec<(String, String)>) {}
    fn secret_revealed(&mut self, _field: &str) {}
}

/// Hooks that record what they were given, for capability tests.
#[cfg(test)]
pub(crate) mod recording {
    use super::*;

    /// One log line as the hooks received it.
    pub(crate) type LogLine = (LogLevel, String, Vec<(String, String)>);

    #[derive(Default)]
    pub(crate) struct Recorder {
        pub messages: Vec<p::Message>,
        pub batches: usize,
        pub logs: Vec<LogLine>,
        pub reveals: Vec<String>,
        pub asked: Vec<p::Interaction>,
        /// Messages to a stream of this name are refused with this rule.
        pub refuse_stream: Option<(&'static str, &'static str)>,
        /// `end_batch` fails with this fault.
        pub fault: Option<String>,
        /// What `interact` answers; `None` parks forever.
        pub answer: Option<Asked>,
        /// `interact` fails with this fault.
        pub interact_fault: Option<String>,
        /// The screenshot given with each question.
        pub screenshots: Vec<Option<Vec<u8>>>,
        /// Accounts reported by the guest's browser.
        pub accounts: Vec<String>,
        /// The only account `session_account` accepts, when set.
        pub expected_account: Option<String>,
    }

    #[async_trait::async_trait]
    impl RunHooks for Recorder {
        fn message(&mut self, msg: p::Message) -> Result<(), Violation> {
            if let (Some((stream, rule)), p::Message::Record(r)) = (self.refuse_stream, &msg)
                && r.stream == stream
            {
                return Err(Violation::new(rule, format!("refused {stream}")));
            }
            self.messages.push(msg);
            Ok(())
        }
        async fn end_batch(&mut self, _held: Held) -> Result<(), HostFault> {
            self.batches += 1;
            match &self.fault {
                Some(f) => Err(HostFault(f.clone())),
                None => Ok(()),
            }
        }
        async fn interact(&mut self, req: p::Interaction, screenshot: Option<Vec<u8>>) -> Result<Asked, HookError> {
            self.asked.push(req);
            self.screenshots.push(screenshot);
            if let Some(f) = &self.interact_fault {
                return Err(HookError::HostFault(HostFault(f.clone())));
            }
            match self.answer.clone() {
                Some(a) => Ok(a),
                None => std::future::pending().await,
            }
        }
        fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
            self.logs.push((level, message, fields));
        }
        fn secret_revealed(&mut self, field: &str) {
            self.reveals.push(field.to_owned());
        }
        fn session_account(&mut self, identity: &str) -> Result<(), Breach> {
            self.accounts.push(identity.to_owned());
            match &self.expected_account {
                Some(expected) if expected != identity => Err(Breach::SessionAccountMismatch),
                _ => Ok(()),
            }
        }
    }
}
