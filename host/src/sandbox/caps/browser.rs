//! `pdpp:connector/browser`: the browser the host holds for a run, granted by
//! the manifest's `browser` binding (`browser_automation` in the profile).
//!
//! The session is started on the guest's first browser call, from the
//! host's [`BrowserService`] (which caps concurrent browsers and queues the
//! rest), with the run's [`EgressPolicy`] (the very policy `wasi:http`
//! obeys), the connection's opened profile and a cancellation token tied to
//! the owner's control. Every call ends by the run's deadline; the time the
//! guest waits on the browser is host time, not guest CPU.
//!
//! What the guest gets back is redacted of the run's secrets (the engine
//! already refuses reads of what it typed); a secret is typed from a handle
//! ([`SecretHandle`]) and its value never crosses the boundary. The account
//! the browser is logged into is reported to the runtime's hooks, which
//! compare it with the connection's identity; until it is reported, a
//! watchdog bounds how long establishing the session may take (time spent
//! waiting for the owner does not count). At the run's end the sandbox
//! ends the session ([`BrowserState::finish`]): the login material is packed
//! when the guest returned DONE, destroyed otherwise.

use super::super::bindings::pdpp::connector::browser as wit;
use super::super::budget::{Held, RunBudget};
use super::super::control::{Cancelled, RunControl};
use super::super::hooks::SharedHooks;
use super::super::limits::Breach;
use super::super::state::RunClock;
use super::secrets::{SecretHandle, SecretSet};
use crate::browser::{
    AtEnd, BrowserError, BrowserRequest, BrowserService, BrowserSession, CancellationToken, Cleanup, Operation,
    ProfileArchive, SessionSpec,
};
use crate::egress::EgressPolicy;
use std::sync::Arc;

/// The screenshot for a question: at hand, or being taken.
pub(crate) enum Screenshot<'a> {
    Ready(Option<Vec<u8>>),
    Taking(std::pin::Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send + 'a>>),
}
use std::time::{Duration, Instant};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use zeroize::Zeroizing;

/// The WIT interface this capability links (package/interface, no version).
pub(crate) const INTERFACES: &[&str] = &["pdpp:connector/browser"];

/// What a run's browser is built from (the runtime's side).
pub struct BrowserSetup {
    /// The host's browser service (its concurrency cap and queue).
    pub service: BrowserService,
    /// The connection's login material from its previous run, opened.
    pub profile: Option<ProfileArchive>,
    /// How long establishing the session may take before the account is
    /// reported (time waiting for the owner does not count).
    pub establish_within: Duration,
    /// A credential bootstrap of this field: `capture-credential` works
    /// for it (and only for it), and the browser may go where the
    /// manifest's bootstrap needs. `None` for a run.
    pub bootstrap_field: Option<String>,
}

/// A credential the guest handed over by selector in a bootstrap: for the
/// credentials service only. It never prints, and is zeroed when the last
/// clone is dropped.
#[derive(Clone)]
pub struct CapturedCredential {
    pub field: String,
    value: Arc<Zeroizing<String>>,
}

impl CapturedCredential {
    /// The value, for the credentials service.
    pub fn value(&self) -> &Zeroizing<String> {
        &self.value
    }
}

impl std::fmt::Debug for CapturedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CapturedCredential({}, {} bytes)", self.field, self.value.len())
    }
}

impl PartialEq for CapturedCredential {
    fn eq(&self, other: &Self) -> bool {
        self.field == other.field && Arc::ptr_eq(&self.value, &other.value)
    }
}

impl Eq for CapturedCredential {}

/// Login material packed at the end of a run, to be sealed by the runtime.
/// Cloning shares it; it is zeroed when the last clone is dropped, and it
/// never prints.
#[derive(Clone)]
pub struct PackedProfile(pub Arc<ProfileArchive>);

impl std::fmt::Debug for PackedProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedProfile({} bytes)", self.0.len())
    }
}

impl PartialEq for PackedProfile {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PackedProfile {}

/// How the run's browser ended: for the runtime's timeline, the profile
/// store and the connection's identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrowserUsage {
    /// A session was started.
    pub started: bool,
    /// A start that did not finish (cancelled, timed out, failed): what
    /// stopped it. The engine tears down whatever it had launched.
    pub start_interrupted: Option<String>,
    /// The account the connector reported, when it did.
    pub account: Option<String>,
    /// The packed login material (only when the guest returned DONE).
    pub profile: Option<PackedProfile>,
    /// Every request the page made, as the proxy summarised it.
    pub requests: Vec<BrowserRequest>,
    pub cleanup: Option<Cleanup>,
    /// The credential a bootstrap captured (the last one, when several).
    pub captured: Option<CapturedCredential>,
}

/// The capability's per-run state.
pub struct BrowserState {
    service: Option<BrowserService>,
    establish_within: Duration,
    profile: Option<ProfileArchive>,
    policy: Arc<EgressPolicy>,
    session: Option<BrowserSession>,
    cancel: CancellationToken,
    /// When the session started, and how long the guest has waited for the
    /// owner since (the watchdog does not count it).
    started: Option<(Instant, Duration)>,
    account: Option<String>,
    /// A screenshot kept for the owner's next question, charged to the run
    /// while it is kept.
    screenshot: Option<(Vec<u8>, Held)>,
    /// The run's memory budget: what the host keeps or copies for the guest.
    budget: RunBudget,
    /// Requests of sessions already torn down (a cancelled start).
    requests: Vec<BrowserRequest>,
    /// Why the last start did not finish, when it did not.
    start_interrupted: Option<String>,
    /// The field a bootstrap may capture (`None` for a run).
    bootstrap_field: Option<String>,
    captured: Option<CapturedCredential>,
}

impl BrowserState {
    /// `setup` is `None` for a run without the browser grant (or a host
    /// without a browser): every call then fails as `failed(no_browser)`.
    pub(crate) fn new(
        setup: Option<BrowserSetup>,
        policy: EgressPolicy,
        control: &RunControl,
        budget: RunBudget,
    ) -> Self {
        let cancel = CancellationToken::new();
        if setup.is_some() {
            // The owner's cancel reaches the browser at once, whatever the
            // guest is doing.
            let (control, token) = (control.clone(), cancel.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = control.cancelled() => token.cancel(),
                    () = token.cancelled() => {}
                }
            });
        }
        let mut state = BrowserState::none();
        state.budget = budget;
        if let Some(s) = setup {
            state.service = Some(s.service);
            state.profile = s.profile;
            state.establish_within = s.establish_within;
            state.bootstrap_field = s.bootstrap_field;
            state.policy = Arc::new(policy);
            state.cancel = cancel;
        }
        state
    }

    /// The state of a run without a browser (and of a finished one).
    pub(crate) fn none() -> Self {
        BrowserState {
            service: None,
            establish_within: Duration::ZERO,
            profile: None,
            policy: Arc::new(EgressPolicy::new(Default::default(), Arc::default())),
            session: None,
            cancel: CancellationToken::new(),
            started: None,
            account: None,
            screenshot: None,
            budget: RunBudget::new(u64::MAX, u64::MAX),
            requests: Vec::new(),
            start_interrupted: None,
            bootstrap_field: None,
            captured: None,
        }
    }

    /// Whether a browser session is open.
    pub fn is_open(&self) -> bool {
        self.session.is_some()
    }

    /// The screenshot to show the owner with a question the guest asks now:
    /// the one the guest kept, else (for a `manual_action` question, when a
    /// session is open) a fresh one. Taking a fresh one is a boxed future
    /// built here, not awaited inline, so that every question's future
    /// (parked for as long as the owner takes) does not reserve room for it.
    #[inline(never)]
    pub(crate) fn screenshot_for_question(&mut self, manual_action: bool, deadline: Instant) -> Screenshot<'_> {
        if let Some((kept, _held)) = self.screenshot.take() {
            return Screenshot::Ready(Some(kept));
        }
        match self.session.as_mut().filter(|_| manual_action) {
            Some(session) => Screenshot::Taking(Box::pin(async move { session.screenshot(deadline).await.ok() })),
            None => Screenshot::Ready(None),
        }
    }

    /// End the session at the run's end: pack the login material when the
    /// guest returned DONE (`keep`), destroy everything otherwise.
    pub(crate) async fn finish(mut self, keep: bool) -> BrowserUsage {
        let mut usage = BrowserUsage {
            started: self.started.is_some(),
            account: self.account.take(),
            requests: std::mem::take(&mut self.requests),
            start_interrupted: self.start_interrupted.take(),
            captured: self.captured.take(),
            ..Default::default()
        };
        if let Some(session) = self.session.take() {
            let end = if keep {
                session.end(AtEnd::KeepProfile).await.ok()
            } else {
                Some(session.discard().await)
            };
            if let Some(end) = end {
                usage.profile = end.profile.map(|p| PackedProfile(Arc::new(p)));
                usage.requests.extend(end.requests);
                usage.cleanup = Some(end.cleanup);
            }
        }
        usage
    }
}

impl Drop for BrowserState {
    /// Ends the task that ties the owner's cancel to the browser (and stops
    /// a session still open, whose own drop then tears its processes down).
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What one browser request summary is charged (method, origin, counters).
const BROWSER_REQUEST_BYTES: u64 = 384;

/// What the browser host implementation works on.
pub struct BrowserView<'a> {
    pub(crate) state: &'a mut BrowserState,
    pub(crate) secrets: &'a SecretSet,
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) hooks: &'a SharedHooks,
    pub(crate) control: &'a RunControl,
    pub(crate) clock: &'a mut RunClock,
}

struct Browser;
impl HasData for Browser {
    type Data<'a> = BrowserView<'a>;
}

/// Link `pdpp:connector/browser`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> BrowserView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Browser>(linker, get)
}

/// The guest-facing form of an engine error; `Cancelled` stops the guest.
fn guest_error(e: BrowserError, secrets: &SecretSet) -> wasmtime::Result<wit::BrowserError> {
    let r = |s: String| secrets.redactor().redact(&s);
    Ok(match e {
        BrowserError::Cancelled { .. } => return Err(wasmtime::Error::new(Cancelled { forced: false })),
        BrowserError::NotAllowed { reason, .. } => wit::BrowserError::NotAllowed(reason.as_str().into()),
        BrowserError::Timeout { .. } => wit::BrowserError::Timeout,
        BrowserError::SelectorNotFound { selector } | BrowserError::InvalidSelector { selector } => {
            wit::BrowserError::NotFound(r(selector))
        }
        BrowserError::WrongElement { selector, .. } | BrowserError::NotInteractable { selector, .. } => {
            wit::BrowserError::NotInteractable(r(selector))
        }
        BrowserError::RefusedRead { reason, .. } => wit::BrowserError::Refused(reason.as_str().into()),
        BrowserError::InvalidUrl => wit::BrowserError::NotAllowed("invalid_url".into()),
        BrowserError::TooLarge { what, .. } => wit::BrowserError::TooLarge(what.into()),
        BrowserError::BrowserFailed { code, .. } => wit::BrowserError::Failed(r(code)),
        BrowserError::SessionEnded => wit::BrowserError::Failed("session_ended".into()),
        BrowserError::Profile(_) => wit::BrowserError::Failed("profile".into()),
    })
}

impl BrowserView<'_> {
    /// The run's deadline, or `within` from now when sooner.
    fn deadline(&self, within: Option<Duration>) -> Instant {
        let wall = self.clock.wall_deadline;
        within.map_or(wall, |d| wall.min(Instant::now() + d))
    }

    /// Stop a cancelled run; stop a run whose session was not established in
    /// time (the account not reported).
    fn check(&self) -> wasmtime::Result<()> {
        self.control.check()?;
        if let (Some((since, owner_wait_at_start)), None) = (self.state.started, &self.state.account) {
            let waited = self.clock.owner_wait.saturating_sub(owner_wait_at_start);
            if since.elapsed().saturating_sub(waited) > self.state.establish_within {
                return Err(wasmtime::Error::new(Breach::BrowserSessionTimeout));
            }
        }
        Ok(())
    }

    /// The session, started now if this is the first browser call.
    async fn session(&mut self) -> Result<&mut BrowserSession, BrowserError> {
        if self.state.session.is_none() {
            let Some(service) = self.state.service.clone() else {
                return Err(BrowserError::BrowserFailed {
                    operation: Operation::Start,
                    code: "no_browser".into(),
                });
            };
            let spec = SessionSpec {
                policy: self.state.policy.clone(),
                profile: self.state.profile.take(),
            };
            // The session's request summaries (kept for the timeline, at
            // most `max_request_summaries`) are host memory the page the
            // guest drives makes grow: their worst case is charged up front.
            let summaries = service.limits().max_request_summaries as u64;
            if self
                .state
                .budget
                .keep(summaries.saturating_mul(BROWSER_REQUEST_BYTES))
                .is_err()
            {
                return Err(BrowserError::BrowserFailed {
                    operation: Operation::Start,
                    code: "memory_limit".into(),
                });
            }
            let deadline = self.deadline(None);
            let session = match service.start(spec, deadline, &self.state.cancel).await {
                Ok(s) => s,
                Err(e) => {
                    self.state.start_interrupted = Some(match &e {
                        BrowserError::Cancelled { .. } => "cancelled".to_owned(),
                        BrowserError::Timeout { .. } => "timeout".to_owned(),
                        BrowserError::BrowserFailed { code, .. } => code.clone(),
                        other => other.to_string(),
                    });
                    return Err(e);
                }
            };
            self.state.started = Some((Instant::now(), self.clock.owner_wait));
            self.state.session = Some(session);
        }
        Ok(self.state.session.as_mut().expect("started above"))
    }

    /// Run one browser operation: checks first, then the call with the time
    /// it takes counted as host time, then the error mapped for the guest.
    async fn call<T>(
        &mut self,
        op: impl AsyncFnOnce(&mut BrowserSession, Instant) -> Result<T, BrowserError>,
        within: Option<Duration>,
    ) -> wasmtime::Result<Result<T, wit::BrowserError>> {
        self.check()?;
        let deadline = self.deadline(within);
        let began = Instant::now();
        let result = match self.session().await {
            Ok(session) => op(session, deadline).await,
            Err(e) => Err(e),
        };
        self.clock.blocked += began.elapsed();
        match result {
            Ok(v) => Ok(Ok(v)),
            // The run's own deadline passed (not the caller's shorter
            // wait): the run is over, not the call.
            Err(BrowserError::Timeout { .. }) if Instant::now() >= self.clock.wall_deadline => {
                Err(wasmtime::Error::new(Breach::WallClock))
            }
            Err(e) => Ok(Err(guest_error(e, self.secrets)?)),
        }
    }

    fn clean(&self, s: String) -> String {
        self.secrets.redactor().redact(&s)
    }

    /// Charge text the host read from the page for the guest while it is
    /// copied across (the guest's copy is charged as guest memory).
    fn charge_read(&self, bytes: usize) -> wasmtime::Result<Held> {
        self.state.budget.hold(bytes as u64).map_err(wasmtime::Error::new)
    }
}

impl wit::Host for BrowserView<'_> {
    async fn navigate(&mut self, url: String) -> wasmtime::Result<Result<wit::Page, wit::BrowserError>> {
        let page = self.call(async |s, d| s.navigate(&url, d).await, None).await?;
        Ok(page.map(|p| wit::Page {
            url: self.clean(p.url),
            title: self.clean(p.title),
        }))
    }

    async fn current(&mut self) -> wasmtime::Result<Result<wit::Page, wit::BrowserError>> {
        let page = self
            .call(
                async |s, d| {
                    let url = s.current_url(d).await?;
                    let title = s.title(d).await?;
                    Ok((url, title))
                },
                None,
            )
            .await?;
        Ok(page.map(|(url, title)| wit::Page {
            url: self.clean(url),
            title: self.clean(title),
        }))
    }

    async fn wait_for(&mut self, selector: String, timeout_ms: u32) -> wasmtime::Result<Result<(), wit::BrowserError>> {
        if timeout_ms == 0 {
            // A zero wait asks whether the element is there now: one look,
            // bounded by the run's deadline (a wait whose own deadline has
            // passed would not look at all).
            return self
                .call(
                    async |s, d| match s.is_present(&selector, d).await? {
                        true => Ok(()),
                        false => Err(BrowserError::SelectorNotFound {
                            selector: selector.clone(),
                        }),
                    },
                    None,
                )
                .await;
        }
        let within = Duration::from_millis(timeout_ms.into());
        self.call(async |s, d| s.wait_for(&selector, d).await, Some(within))
            .await
    }

    async fn click(&mut self, selector: String) -> wasmtime::Result<Result<(), wit::BrowserError>> {
        self.call(async |s, d| s.click(&selector, d).await, None).await
    }

    async fn fill(&mut self, selector: String, text: String) -> wasmtime::Result<Result<(), wit::BrowserError>> {
        self.call(async |s, d| s.fill(&selector, &text, d).await, None).await
    }

    async fn fill_secret(
        &mut self,
        selector: String,
        value: Resource<SecretHandle>,
    ) -> wasmtime::Result<Result<(), wit::BrowserError>> {
        let field = self.table.get(&value)?.field().to_owned();
        let secret = match self.secrets.value(&field) {
            Ok(v) => v,
            // A handle the guest holds always names a declared field with a
            // value; anything else is refused without typing anything.
            Err(_) => return Ok(Err(wit::BrowserError::Refused("secret_unavailable".into()))),
        };
        // A field the manifest declares not secret (a login name) is typed
        // as plain text: the engine would otherwise refuse every later read
        // of a page that shows it, such as the account's own name.
        let typed = if self.secrets.is_public(&field) {
            self.call(async |s, d| s.fill(&selector, secret.as_str(), d).await, None)
                .await?
        } else {
            self.call(async |s, d| s.fill_secret(&selector, secret.as_str(), d).await, None)
                .await?
        };
        if typed.is_ok() {
            self.hooks.lock().await.secret_typed(&field);
        }
        Ok(typed)
    }

    async fn select(&mut self, selector: String, value: String) -> wasmtime::Result<Result<(), wit::BrowserError>> {
        self.call(async |s, d| s.select_option(&selector, &value, d).await, None)
            .await
    }

    async fn text(&mut self, selector: String) -> wasmtime::Result<Result<String, wit::BrowserError>> {
        let text = self.call(async |s, d| s.read_text(&selector, d).await, None).await?;
        let _held = self.charge_read(text.as_ref().map_or(0, String::len))?;
        Ok(text.map(|t| self.clean(t)))
    }

    async fn texts(
        &mut self,
        selector: String,
        max: u32,
    ) -> wasmtime::Result<Result<wit::TextMatches, wit::BrowserError>> {
        let found = self
            .call(async |s, d| s.read_all_text(&selector, max as usize, d).await, None)
            .await?;
        let size = found
            .as_ref()
            .map_or(0, |m| m.values.iter().map(|v| v.len() + 24).sum::<usize>());
        let _held = self.charge_read(size)?;
        Ok(found.map(|m| wit::TextMatches {
            values: m.values.into_iter().map(|v| self.clean(v)).collect(),
            total: u32::try_from(m.total).unwrap_or(u32::MAX),
        }))
    }

    async fn attribute(
        &mut self,
        selector: String,
        name: String,
    ) -> wasmtime::Result<Result<Option<String>, wit::BrowserError>> {
        let value = self
            .call(async |s, d| s.read_attribute(&selector, &name, d).await, None)
            .await?;
        let _held = self.charge_read(value.as_ref().ok().and_then(Option::as_ref).map_or(0, String::len))?;
        Ok(value.map(|v| v.map(|v| self.clean(v))))
    }

    async fn attributes(
        &mut self,
        selector: String,
        name: String,
        max: u32,
    ) -> wasmtime::Result<Result<wit::AttributeMatches, wit::BrowserError>> {
        let found = self
            .call(
                async |s, d| s.read_all_attribute(&selector, &name, max as usize, d).await,
                None,
            )
            .await?;
        let size = found.as_ref().map_or(0, |m| {
            m.values
                .iter()
                .map(|v| v.as_ref().map_or(0, String::len) + 24)
                .sum::<usize>()
        });
        let _held = self.charge_read(size)?;
        Ok(found.map(|m| wit::AttributeMatches {
            values: m.values.into_iter().map(|v| v.map(|v| self.clean(v))).collect(),
            total: u32::try_from(m.total).unwrap_or(u32::MAX),
        }))
    }

    async fn screenshot(&mut self) -> wasmtime::Result<Result<(), wit::BrowserError>> {
        let shot = self.call(async |s, d| s.screenshot(d).await, None).await?;
        match shot {
            Ok(png) => {
                // Kept for the owner's next question: charged while kept
                // (the one it replaces is released first).
                self.state.screenshot = None;
                let held = self.charge_read(png.len())?;
                self.state.screenshot = Some((png, held));
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// `capture-credential`: only in a bootstrap, only for its field. The
    /// value goes to the run's end (for the credentials service), never to
    /// the guest; the engine refuses every later read of the element or of
    /// anything holding the value.
    async fn capture_credential(
        &mut self,
        field: String,
        selector: String,
        attribute: Option<String>,
    ) -> wasmtime::Result<Result<(), wit::BrowserError>> {
        self.control.check()?;
        match &self.state.bootstrap_field {
            None => return Ok(Err(wit::BrowserError::Refused("not_a_bootstrap".into()))),
            Some(f) if *f != field => {
                return Ok(Err(wit::BrowserError::Refused("field_not_bootstrapped".into())));
            }
            Some(_) => {}
        }
        let value = self
            .call(
                async |s, d| s.capture_secret(&selector, attribute.as_deref(), d).await,
                None,
            )
            .await?;
        match value {
            Ok(value) => {
                self.state.captured = Some(CapturedCredential {
                    field: field.clone(),
                    value: Arc::new(value),
                });
                self.hooks.lock().await.credential_captured(&field);
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    async fn session_account(&mut self, identity: String) -> wasmtime::Result<Result<(), wit::BrowserError>> {
        self.control.check()?;
        // Compared as reported, but never a secret: a value of the run's
        // secrets (say, a password typed as a name) is redacted first.
        if identity.len() > super::super::convert::NAME_BYTES {
            return Ok(Err(wit::BrowserError::TooLarge("identity".into())));
        }
        let identity = self.clean(identity.trim().to_owned());
        if identity.is_empty() {
            return Ok(Err(wit::BrowserError::Refused("empty_identity".into())));
        }
        self.hooks.lock().await.session_account(&identity)?;
        self.state.account = Some(identity);
        Ok(Ok(()))
    }
}
