//! One run's browser session: the operations a connector may ask for, the
//! rules that keep secrets in the host, and teardown.
//!
//! Every operation takes the deadline it must finish by (the run's remaining
//! time, or less) and stops at once when the run's cancellation token fires.
//! Elements are addressed by CSS selector; an operation acts on the first
//! match, except the all-matches reads. There is no script evaluation.
//!
//! **Secrets stay in the host.** [`BrowserSession::fill_secret`] types a
//! value the guest never held, only into a text-like `<input>` (whose value
//! is never part of the page's text), and remembers the element. Reading
//! anything of such an element, or the `value` of any password input, is
//! refused with [`ReadRefusal`]; and no value the engine returns — text,
//! attribute, URL, title — may contain a secret it typed in this session.
//! [`BrowserSession::host_read_text`] and
//! [`BrowserSession::host_read_attribute`] return zeroizing values meant for
//! the host alone (a token made in a bootstrap flow).
//!
//! **Rewrites.** The connector speaks only declared URLs: `navigate` maps a
//! declared URL to its rewrite target, and every URL handed back is mapped to
//! its declared origin ([`super::policy`]).
//!
//! **Teardown.** Every way a session ends — [`BrowserSession::end`],
//! [`BrowserSession::discard`], drop, cancellation — kills its process group
//! and any marked straggler, stops its proxy, wipes its directory and frees
//! its slot. Cancellation does so the moment the token fires, whatever the
//! run is doing.

use super::error::{BrowserError, Operation, ReadRefusal, Refusal, webdriver_code};
use super::policy::{BrowserEgressPolicy, declared_url, forward_url, origin_of};
use super::process::{self, Driver};
use super::profile::{self, ProfileArchive};
use super::proxy::{BrowserRequest, EgressProxy};
use super::service::BrowserLimits;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use thirtyfour::error::{WebDriverError, WebDriverErrorInner as WdError};
use thirtyfour::{By, WebDriver, WebElement};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use url::Url;
use zeroize::Zeroizing;

/// Secrets shorter than this are not searched for in returned values: a
/// two-character secret would be found everywhere.
const MIN_GUARDED_SECRET: usize = 4;

/// Input types a secret may be typed into.
const SECRET_INPUT_TYPES: &[&str] = &["text", "password", "email", "tel", "number", "search", "url"];

/// Where a navigation ended, in declared form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub url: String,
    pub title: String,
}

/// The result of an all-matches read: at most the requested number of
/// values, in document order, and how many elements matched in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matches<T> {
    pub values: Vec<T>,
    pub total: usize,
}

/// What to do with the profile when a session ends normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtEnd {
    /// Quit Chromium gracefully (it writes its cookies) and pack the login
    /// material for sealing.
    KeepProfile,
    /// Kill Chromium and destroy the profile.
    DiscardProfile,
}

/// The non-secret record of a teardown, for the run timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Cleanup {
    /// Processes of the session still alive after teardown (0 expected).
    pub processes_left: usize,
    /// The session directory, profile included, is gone.
    pub directory_removed: bool,
}

impl Cleanup {
    /// Nothing of the session remains.
    pub fn complete(&self) -> bool {
        self.processes_left == 0 && self.directory_removed
    }
}

/// What a session leaves when it ends.
#[derive(Debug)]
pub struct SessionEnd {
    /// The packed login material, with [`AtEnd::KeepProfile`]; seal it with
    /// [`ProfileArchive::seal`].
    pub profile: Option<ProfileArchive>,
    /// Every request the browser made, as summarised by the proxy.
    pub requests: Vec<BrowserRequest>,
    /// Summaries not kept because the session's summary cap was reached.
    pub requests_not_kept: u64,
    pub cleanup: Cleanup,
}

/// The processes, directory, proxy and slot of one session; torn down once.
pub(crate) struct SessionResources {
    dir: PathBuf,
    marker: String,
    pub(crate) proxy_stop: CancellationToken,
    state: Mutex<ResourceState>,
    /// Keeps the service (and its directory) alive while the session lives.
    _service: Arc<dyn std::any::Any + Send + Sync>,
}

struct ResourceState {
    driver: Option<tokio::process::Child>,
    pgid: Option<i32>,
    permit: Option<OwnedSemaphorePermit>,
    cleanup: Option<Cleanup>,
}

impl SessionResources {
    pub(crate) fn new(
        dir: PathBuf,
        marker: String,
        permit: OwnedSemaphorePermit,
        service: Arc<dyn std::any::Any + Send + Sync>,
    ) -> Self {
        SessionResources {
            dir,
            marker,
            proxy_stop: CancellationToken::new(),
            state: Mutex::new(ResourceState {
                driver: None,
                pgid: None,
                permit: Some(permit),
                cleanup: None,
            }),
            _service: service,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ResourceState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn adopt_driver(&self, driver: Driver) {
        let mut st = self.state();
        st.pgid = Some(driver.pgid);
        st.driver = Some(driver.child);
    }

    fn torn_down(&self) -> bool {
        self.state().cleanup.is_some()
    }

    /// Kill every process of the session, stop its proxy, wipe its directory
    /// and free its slot. Idempotent; blocks for at most about a second while
    /// killed processes exit.
    pub(crate) fn teardown(&self) -> Cleanup {
        let mut st = self.state();
        if let Some(done) = st.cleanup {
            return done;
        }
        self.proxy_stop.cancel();
        if let Some(pgid) = st.pgid {
            process::kill_group(pgid);
        }
        if let Some(child) = st.driver.as_mut() {
            let _ = child.start_kill();
        }
        let mut left = process::kill_marked(&self.marker);
        for _ in 0..200 {
            if left == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            left = process::marked_processes(&self.marker).len();
        }
        if let Some(child) = st.driver.as_mut() {
            let _ = child.try_wait();
        }
        if left == 0
            && let Some(pgid) = st.pgid
        {
            process::forget_group(pgid);
        }
        let directory_removed = profile::wipe(&self.dir, &self.dir.join("profile"));
        st.permit = None;
        let done = Cleanup {
            processes_left: left,
            directory_removed,
        };
        st.cleanup = Some(done);
        done
    }
}

impl Drop for SessionResources {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// One run's browser. Not shared: the run's browser capability owns it.
pub struct BrowserSession {
    driver: Option<WebDriver>,
    res: Arc<SessionResources>,
    policy: Arc<dyn BrowserEgressPolicy>,
    proxy: EgressProxy,
    cancel: CancellationToken,
    watcher: tokio::task::JoinHandle<()>,
    /// Elements the engine typed a secret into (WebDriver element ids).
    secret_elements: HashSet<String>,
    /// The secrets typed in this session (and their URL-encoded forms), to
    /// keep them out of every result.
    typed_secrets: Vec<Zeroizing<String>>,
    limits: BrowserLimits,
    user_data_dir: PathBuf,
}

impl std::fmt::Debug for BrowserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserSession")
            .field("user_data_dir", &self.user_data_dir)
            .field("secret_elements", &self.secret_elements.len())
            .finish_non_exhaustive()
    }
}

impl Drop for BrowserSession {
    fn drop(&mut self) {
        self.watcher.abort();
        // Kill first, so the driver handle has nothing left to talk to, then
        // forget it (its own drop would block on a `DELETE /session`).
        self.res.teardown();
        if let Some(driver) = self.driver.take() {
            let _ = driver.leak();
        }
    }
}

fn element_error(operation: Operation, selector: &str, e: WebDriverError) -> BrowserError {
    match e.as_inner() {
        WdError::NoSuchElement(_) | WdError::StaleElementReference(_) => BrowserError::SelectorNotFound {
            selector: selector.to_owned(),
        },
        WdError::InvalidSelector(_) => BrowserError::InvalidSelector {
            selector: selector.to_owned(),
        },
        WdError::ElementNotInteractable(_) | WdError::ElementClickIntercepted(_) | WdError::InvalidElementState(_) => {
            BrowserError::NotInteractable {
                selector: selector.to_owned(),
                code: webdriver_code(&e),
            }
        }
        _ => driver_error(operation, e),
    }
}

fn driver_error(operation: Operation, e: WebDriverError) -> BrowserError {
    match e.as_inner() {
        WdError::Timeout(_) | WdError::WebDriverTimeout(_) | WdError::ScriptTimeout(_) => {
            BrowserError::Timeout { operation }
        }
        _ => BrowserError::BrowserFailed {
            operation,
            code: webdriver_code(&e).to_owned(),
        },
    }
}

/// An attribute as the page wrote it (WebDriver's attribute semantics),
/// except `value`: a field's current value, which is what a connector means
/// by it (and what the secret rules guard); the attribute for elements that
/// have no such property.
async fn attribute(element: &WebElement, name: &str) -> Result<Option<String>, WebDriverError> {
    if name.trim().eq_ignore_ascii_case("value") {
        if let Some(value) = element.prop("value").await? {
            return Ok(Some(value));
        }
        return element.attr("value").await;
    }
    element.attr(name).await
}

/// A CSS string literal's content: `"` and `\` escaped, control characters
/// as code points.
fn css_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\{:x} ", c as u32)),
            c => out.push(c),
        }
    }
    out
}

impl BrowserSession {
    pub(crate) fn new(
        driver: WebDriver,
        res: Arc<SessionResources>,
        policy: Arc<dyn BrowserEgressPolicy>,
        proxy: EgressProxy,
        cancel: CancellationToken,
        user_data_dir: PathBuf,
        limits: BrowserLimits,
    ) -> BrowserSession {
        // Cancellation tears the session down at once, even while the guest
        // is busy elsewhere; the watcher holds no strong reference, so a
        // dropped session is not kept alive by it.
        let weak: Weak<SessionResources> = Arc::downgrade(&res);
        let token = cancel.clone();
        let watcher = tokio::spawn(async move {
            token.cancelled().await;
            if let Some(res) = weak.upgrade() {
                let _ = tokio::task::spawn_blocking(move || res.teardown()).await;
            }
        });
        BrowserSession {
            driver: Some(driver),
            res,
            policy,
            proxy,
            cancel,
            watcher,
            secret_elements: HashSet::new(),
            typed_secrets: Vec::new(),
            limits,
            user_data_dir,
        }
    }

    /// The session's private profile directory (mode 0700), for diagnostics
    /// and tests. Gone after teardown.
    pub fn user_data_dir(&self) -> &Path {
        &self.user_data_dir
    }

    /// Live Chromium and chromedriver processes of this session.
    pub fn live_processes(&self) -> usize {
        process::marked_processes(&self.res.marker).len()
    }

    /// The memory its Chromium and chromedriver processes hold now (for the
    /// run record and benchmarks).
    pub fn memory(&self) -> process::ProcessMemory {
        process::memory_of(&self.res.marker)
    }

    /// The request summaries recorded since the last call (for streaming
    /// them into the run timeline).
    pub fn take_new_requests(&mut self) -> Vec<BrowserRequest> {
        self.proxy.log.lock().expect("browser request log").drain_new()
    }

    /// Every request summary recorded so far.
    pub fn requests(&self) -> Vec<BrowserRequest> {
        self.proxy.log.lock().expect("browser request log").entries.clone()
    }

    fn driver(&self) -> Result<&WebDriver, BrowserError> {
        if self.res.torn_down() {
            return Err(BrowserError::SessionEnded);
        }
        self.driver.as_ref().ok_or(BrowserError::SessionEnded)
    }

    /// Run one operation within the deadline, stopping when the run is cancelled.
    async fn bounded<T>(
        &self,
        operation: Operation,
        deadline: Instant,
        work: impl Future<Output = Result<T, BrowserError>>,
    ) -> Result<T, BrowserError> {
        if self.cancel.is_cancelled() {
            return Err(BrowserError::Cancelled { operation });
        }
        if Instant::now() >= deadline {
            return Err(BrowserError::Timeout { operation });
        }
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(BrowserError::Cancelled { operation }),
            () = tokio::time::sleep_until(deadline.into()) => Err(BrowserError::Timeout { operation }),
            r = work => r,
        }
    }

    async fn first(&self, operation: Operation, selector: &str) -> Result<WebElement, BrowserError> {
        self.driver()?
            .find(By::Css(selector.to_owned()))
            .await
            .map_err(|e| element_error(operation, selector, e))
    }

    /// Refuse to read what the host typed: anything of an element filled
    /// with a secret, and the `value` of a password input.
    async fn check_readable(
        &self,
        operation: Operation,
        selector: &str,
        element: &WebElement,
        attribute: Option<&str>,
    ) -> Result<(), BrowserError> {
        let refused = |reason| BrowserError::RefusedRead {
            target: selector.to_owned(),
            reason,
        };
        if self.secret_elements.contains(&element.element_id().to_string()) {
            return Err(refused(ReadRefusal::SecretFilledElement));
        }
        if attribute.is_some_and(|a| a.trim().eq_ignore_ascii_case("value")) {
            let tag = element
                .tag_name()
                .await
                .map_err(|e| element_error(operation, selector, e))?;
            if tag.eq_ignore_ascii_case("input") {
                let kind = element
                    .attr("type")
                    .await
                    .map_err(|e| element_error(operation, selector, e))?;
                if kind.is_some_and(|k| k.eq_ignore_ascii_case("password")) {
                    return Err(refused(ReadRefusal::PasswordValue));
                }
            }
        }
        Ok(())
    }

    /// Every value leaving the engine passes here: bounded in size, and never
    /// containing a secret typed in this session.
    fn check_value(&self, target: &str, value: &str) -> Result<(), BrowserError> {
        if value.len() > self.limits.max_value_bytes {
            return Err(BrowserError::TooLarge {
                what: "a read value",
                limit: self.limits.max_value_bytes as u64,
            });
        }
        if self
            .typed_secrets
            .iter()
            .any(|s| s.len() >= MIN_GUARDED_SECRET && value.contains(s.as_str()))
        {
            return Err(BrowserError::RefusedRead {
                target: target.to_owned(),
                reason: ReadRefusal::ContainsFilledSecret,
            });
        }
        Ok(())
    }

    fn guard(&self, target: &str, value: String) -> Result<String, BrowserError> {
        self.check_value(target, &value)?;
        Ok(value)
    }

    /// Go to a declared `http`/`https` URL and wait for the page to load.
    /// Refused before anything is sent when the policy does not admit its
    /// origin; refused after the fact when the browser ended up on an origin
    /// the policy does not admit (a redirect) or the proxy refused the page
    /// itself (its address, say). Returns the final URL in declared form.
    pub async fn navigate(&mut self, url: &str, deadline: Instant) -> Result<Page, BrowserError> {
        let op = Operation::Navigate;
        let not_allowed = |target: String, reason| BrowserError::NotAllowed {
            operation: op,
            target,
            reason,
        };
        let parsed = Url::parse(url).map_err(|_| BrowserError::InvalidUrl)?;
        let Some(asked) = origin_of(&parsed) else {
            return Err(not_allowed(format!("{}:", parsed.scheme()), Refusal::SchemeNotAllowed));
        };
        self.policy
            .check_origin(&asked)
            .map_err(|reason| not_allowed(asked.to_string(), reason))?;
        let (actual, _) = forward_url(self.policy.as_ref(), &parsed);
        let mark = self.proxy.log.lock().expect("browser request log").entries.len();
        let (loaded, final_url) = self
            .bounded(op, deadline, async {
                let driver = self.driver()?;
                let remaining = deadline.saturating_duration_since(Instant::now());
                driver
                    .set_page_load_timeout(remaining)
                    .await
                    .map_err(|e| driver_error(op, e))?;
                let loaded = driver.goto(actual.as_str()).await;
                let url = driver.current_url().await.map_err(|e| driver_error(op, e))?;
                Ok((loaded, url))
            })
            .await?;
        let refused_for = |origin: &str| {
            self.proxy.log.lock().expect("browser request log").entries[mark..]
                .iter()
                .rev()
                .find(|r| r.origin == origin && r.refused.is_some())
                .and_then(|r| r.refused)
        };
        let shown = declared_url(self.policy.as_ref(), final_url.as_str());
        if let Some(landed) = Url::parse(&shown).ok().as_ref().and_then(origin_of) {
            let landed_name = landed.to_string();
            if let Err(reason) = self.policy.check_origin(&landed) {
                return Err(not_allowed(
                    landed_name.clone(),
                    refused_for(&landed_name).unwrap_or(reason),
                ));
            }
            if let Some(reason) = refused_for(&landed_name) {
                return Err(not_allowed(landed_name, reason));
            }
        }
        // Chromium shows its own error page when the page could not be
        // fetched at all (a refused tunnel, say).
        let error_page = final_url.scheme() == "chrome-error";
        if loaded.is_err() || error_page {
            if let Some(reason) = refused_for(&asked.to_string()) {
                return Err(not_allowed(asked.to_string(), reason));
            }
            return Err(match loaded {
                Err(e) => driver_error(op, e),
                Ok(()) => BrowserError::BrowserFailed {
                    operation: op,
                    code: "the page could not be loaded".into(),
                },
            });
        }
        let title = self
            .bounded(op, deadline, async {
                self.driver()?.title().await.map_err(|e| driver_error(op, e))
            })
            .await?;
        Ok(Page {
            url: self.guard("url", shown)?,
            title: self.guard("title", title)?,
        })
    }

    /// Whether an element matches the selector now: one look, no waiting.
    pub async fn is_present(&mut self, selector: &str, deadline: Instant) -> Result<bool, BrowserError> {
        let op = Operation::WaitFor;
        self.bounded(op, deadline, async {
            let found = self
                .driver()?
                .find_all(By::Css(selector.to_owned()))
                .await
                .map_err(|e| element_error(op, selector, e))?;
            Ok(!found.is_empty())
        })
        .await
    }

    /// Wait until at least one element matches the selector.
    pub async fn wait_for(&mut self, selector: &str, deadline: Instant) -> Result<(), BrowserError> {
        let op = Operation::WaitFor;
        let poll = self.limits.poll_interval;
        self.bounded(op, deadline, async {
            loop {
                let found = self
                    .driver()?
                    .find_all(By::Css(selector.to_owned()))
                    .await
                    .map_err(|e| element_error(op, selector, e))?;
                if !found.is_empty() {
                    return Ok(());
                }
                tokio::time::sleep(poll).await;
            }
        })
        .await
    }

    /// Click the first element matching the selector.
    pub async fn click(&mut self, selector: &str, deadline: Instant) -> Result<(), BrowserError> {
        let op = Operation::Click;
        self.bounded(op, deadline, async {
            let element = self.first(op, selector).await?;
            element.click().await.map_err(|e| element_error(op, selector, e))
        })
        .await
    }

    /// Replace the content of the first matching field with `text`.
    pub async fn fill(&mut self, selector: &str, text: &str, deadline: Instant) -> Result<(), BrowserError> {
        let op = Operation::Fill;
        self.bounded(op, deadline, async {
            let element = self.first(op, selector).await?;
            element.clear().await.map_err(|e| element_error(op, selector, e))?;
            element
                .send_keys(text)
                .await
                .map_err(|e| element_error(op, selector, e))
        })
        .await
    }

    /// Type a secret the guest never held into the first matching field,
    /// which must be a text-like `<input>`. The element is remembered: the
    /// engine refuses every later read of it, and the secret is kept out of
    /// every value the engine returns for the rest of the session.
    pub async fn fill_secret(&mut self, selector: &str, secret: &str, deadline: Instant) -> Result<(), BrowserError> {
        let op = Operation::FillSecret;
        let element = self
            .bounded(op, deadline, async {
                let element = self.first(op, selector).await?;
                let tag = element.tag_name().await.map_err(|e| element_error(op, selector, e))?;
                let kind = element
                    .attr("type")
                    .await
                    .map_err(|e| element_error(op, selector, e))?
                    .unwrap_or_else(|| "text".into());
                if !tag.eq_ignore_ascii_case("input")
                    || !SECRET_INPUT_TYPES.iter().any(|t| kind.eq_ignore_ascii_case(t))
                {
                    return Err(BrowserError::NotAllowed {
                        operation: op,
                        target: selector.to_owned(),
                        reason: Refusal::SecretTargetNotAnInput,
                    });
                }
                element.clear().await.map_err(|e| element_error(op, selector, e))?;
                // Remembered before typing: a failure half-way must not leave
                // a partly typed secret readable.
                Ok(element)
            })
            .await?;
        self.secret_elements.insert(element.element_id().to_string());
        self.remember_secret(secret);
        self.bounded(op, deadline, async {
            element
                .send_keys(secret)
                .await
                .map_err(|e| element_error(op, selector, e))
        })
        .await
    }

    /// Keep a typed secret, and the forms a page may move it into a URL in
    /// (form encoding, percent encoding), to keep them out of every result.
    fn remember_secret(&mut self, secret: &str) {
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let percent = form.replace('+', "%20");
        for variant in [secret.to_owned(), form, percent] {
            if !self.typed_secrets.iter().any(|s| s.as_str() == variant) {
                self.typed_secrets.push(Zeroizing::new(variant));
            }
        }
    }

    /// Choose the option with the given `value` in the first matching `<select>`.
    pub async fn select_option(&mut self, selector: &str, value: &str, deadline: Instant) -> Result<(), BrowserError> {
        let op = Operation::SelectOption;
        self.bounded(op, deadline, async {
            let select = self.first(op, selector).await?;
            let tag = select.tag_name().await.map_err(|e| element_error(op, selector, e))?;
            if !tag.eq_ignore_ascii_case("select") {
                return Err(BrowserError::WrongElement {
                    selector: selector.to_owned(),
                    expected: "a <select>",
                });
            }
            let option_selector = format!("option[value=\"{}\"]", css_string(value));
            let option = select
                .find(By::Css(option_selector.clone()))
                .await
                .map_err(|e| element_error(op, &format!("{selector} {option_selector}"), e))?;
            option.click().await.map_err(|e| element_error(op, selector, e))
        })
        .await
    }

    /// The rendered text of the first matching element.
    pub async fn read_text(&mut self, selector: &str, deadline: Instant) -> Result<String, BrowserError> {
        let op = Operation::ReadText;
        let text = self
            .bounded(op, deadline, async {
                let element = self.first(op, selector).await?;
                self.check_readable(op, selector, &element, None).await?;
                element.text().await.map_err(|e| element_error(op, selector, e))
            })
            .await?;
        self.guard(selector, text)
    }

    /// An attribute of the first matching element as the page wrote it
    /// (a relative `href` stays relative), except `value`, which is a
    /// field's current value. An absolute URL on a rewrite target is returned
    /// in declared form. `None` when the element has no such attribute.
    pub async fn read_attribute(
        &mut self,
        selector: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<String>, BrowserError> {
        let op = Operation::ReadAttribute;
        let value = self
            .bounded(op, deadline, async {
                let element = self.first(op, selector).await?;
                self.check_readable(op, selector, &element, Some(name)).await?;
                attribute(&element, name)
                    .await
                    .map_err(|e| element_error(op, selector, e))
            })
            .await?;
        value
            .map(|v| self.guard(selector, declared_url(self.policy.as_ref(), &v)))
            .transpose()
    }

    async fn matches(
        &self,
        op: Operation,
        selector: &str,
        max: usize,
    ) -> Result<(Vec<WebElement>, usize), BrowserError> {
        let mut all = self
            .driver()?
            .find_all(By::Css(selector.to_owned()))
            .await
            .map_err(|e| element_error(op, selector, e))?;
        let total = all.len();
        all.truncate(max.min(self.limits.max_matches));
        Ok((all, total))
    }

    fn within_read_budget(&self, used: &mut usize, value: &str) -> Result<(), BrowserError> {
        *used += value.len();
        if *used > self.limits.max_read_bytes {
            return Err(BrowserError::TooLarge {
                what: "an all-matches read",
                limit: self.limits.max_read_bytes as u64,
            });
        }
        Ok(())
    }

    /// The text of every matching element, at most `max` of them (and at
    /// most the session's `max_matches`), bounded in total size.
    pub async fn read_all_text(
        &mut self,
        selector: &str,
        max: usize,
        deadline: Instant,
    ) -> Result<Matches<String>, BrowserError> {
        let op = Operation::ReadAllText;
        self.bounded(op, deadline, async {
            let (elements, total) = self.matches(op, selector, max).await?;
            let mut values = Vec::with_capacity(elements.len());
            let mut used = 0;
            for element in &elements {
                self.check_readable(op, selector, element, None).await?;
                let text = element.text().await.map_err(|e| element_error(op, selector, e))?;
                let text = self.guard(selector, text)?;
                self.within_read_budget(&mut used, &text)?;
                values.push(text);
            }
            Ok(Matches { values, total })
        })
        .await
    }

    /// An attribute of every matching element (as [`Self::read_attribute`]),
    /// at most `max` of them, bounded in total size.
    pub async fn read_all_attribute(
        &mut self,
        selector: &str,
        name: &str,
        max: usize,
        deadline: Instant,
    ) -> Result<Matches<Option<String>>, BrowserError> {
        let op = Operation::ReadAllAttribute;
        self.bounded(op, deadline, async {
            let (elements, total) = self.matches(op, selector, max).await?;
            let mut values = Vec::with_capacity(elements.len());
            let mut used = 0;
            for element in &elements {
                self.check_readable(op, selector, element, Some(name)).await?;
                let value = attribute(element, name)
                    .await
                    .map_err(|e| element_error(op, selector, e))?;
                let value = match value {
                    Some(v) => {
                        let v = self.guard(selector, declared_url(self.policy.as_ref(), &v))?;
                        self.within_read_budget(&mut used, &v)?;
                        Some(v)
                    }
                    None => None,
                };
                values.push(value);
            }
            Ok(Matches { values, total })
        })
        .await
    }

    /// The current URL, in declared form.
    pub async fn current_url(&mut self, deadline: Instant) -> Result<String, BrowserError> {
        let op = Operation::CurrentUrl;
        let url = self
            .bounded(op, deadline, async {
                self.driver()?.current_url().await.map_err(|e| driver_error(op, e))
            })
            .await?;
        self.guard("url", declared_url(self.policy.as_ref(), url.as_str()))
    }

    /// The document's title.
    pub async fn title(&mut self, deadline: Instant) -> Result<String, BrowserError> {
        let op = Operation::Title;
        let title = self
            .bounded(op, deadline, async {
                self.driver()?.title().await.map_err(|e| driver_error(op, e))
            })
            .await?;
        self.guard("title", title)
    }

    /// A PNG of the viewport, bounded in size. It shows what the page
    /// shows, so a secret typed into a non-password field is visible in
    /// it: route screenshots to the owner, not to the guest.
    pub async fn screenshot(&mut self, deadline: Instant) -> Result<Vec<u8>, BrowserError> {
        let op = Operation::Screenshot;
        let png = self
            .bounded(op, deadline, async {
                self.driver()?
                    .screenshot_as_png()
                    .await
                    .map_err(|e| driver_error(op, e))
            })
            .await?;
        if png.len() > self.limits.max_screenshot_bytes {
            return Err(BrowserError::TooLarge {
                what: "a screenshot",
                limit: self.limits.max_screenshot_bytes as u64,
            });
        }
        Ok(png)
    }

    /// The text of the first matching element, for the host only (e.g. a
    /// token a bootstrap flow made): never hand it to the guest. The same
    /// refusals as for guest reads apply.
    pub async fn host_read_text(
        &mut self,
        selector: &str,
        deadline: Instant,
    ) -> Result<Zeroizing<String>, BrowserError> {
        let op = Operation::HostRead;
        let text = self
            .bounded(op, deadline, async {
                let element = self.first(op, selector).await?;
                self.check_readable(op, selector, &element, None).await?;
                element.text().await.map_err(|e| element_error(op, selector, e))
            })
            .await
            .map(Zeroizing::new)?;
        self.guard_host(selector, text)
    }

    /// An attribute of the first matching element, for the host only.
    pub async fn host_read_attribute(
        &mut self,
        selector: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<Zeroizing<String>>, BrowserError> {
        let op = Operation::HostRead;
        let value = self
            .bounded(op, deadline, async {
                let element = self.first(op, selector).await?;
                self.check_readable(op, selector, &element, Some(name)).await?;
                attribute(&element, name)
                    .await
                    .map_err(|e| element_error(op, selector, e))
            })
            .await?;
        value.map(|v| self.guard_host(selector, Zeroizing::new(v))).transpose()
    }

    /// Take a credential the page shows (a token a bootstrap flow made) for
    /// the host: the element's text, or its attribute `attribute`. The same
    /// refusals as for host reads apply; then the element joins the elements
    /// filled with a secret (every later read of it is refused), the value
    /// joins the typed secrets (no later result may contain it), and every
    /// copy of it in the page (texts, attributes, field values) is cut out,
    /// so a selector matching on the value learns nothing. An empty value is
    /// `SelectorNotFound`: there is no credential there.
    pub async fn capture_secret(
        &mut self,
        selector: &str,
        attribute: Option<&str>,
        deadline: Instant,
    ) -> Result<Zeroizing<String>, BrowserError> {
        let op = Operation::HostRead;
        let (element, value) = self
            .bounded(op, deadline, async {
                let element = self.first(op, selector).await?;
                self.check_readable(op, selector, &element, attribute).await?;
                let value = match attribute {
                    Some(name) => self::attribute(&element, name).await,
                    None => element.text().await.map(Some),
                }
                .map_err(|e| element_error(op, selector, e))?;
                Ok((element, Zeroizing::new(value.unwrap_or_default().trim().to_owned())))
            })
            .await?;
        let value = self.guard_host(selector, value)?;
        if value.is_empty() {
            return Err(BrowserError::SelectorNotFound {
                selector: selector.to_owned(),
            });
        }
        self.secret_elements.insert(element.element_id().to_string());
        self.remember_secret(&value);
        // Scrub the value from the whole page (texts, attributes, field
        // values), so neither a read nor a selector matching on it (an
        // attribute prefix, say) learns anything of it.
        let scrub = "const v = arguments[0]; \
            const cut = (s) => s.split(v).join(''); \
            const w = document.createTreeWalker(document, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT); \
            for (let n = w.currentNode; n; n = w.nextNode()) { \
              if (n.nodeType === 3) { if (n.nodeValue.includes(v)) n.nodeValue = cut(n.nodeValue); continue; } \
              for (const a of Array.from(n.attributes || [])) { if (a.value.includes(v)) n.setAttribute(a.name, cut(a.value)); } \
              if (typeof n.value === 'string' && n.value.includes(v)) n.value = cut(n.value); \
            }";
        let args = vec![serde_json::Value::String(value.to_string())];
        let driver = self.driver()?;
        // Best effort: the value is refused to every read already.
        let _ = self
            .bounded(op, deadline, async {
                driver
                    .execute(scrub, args)
                    .await
                    .map_err(|e| element_error(op, selector, e))
            })
            .await;
        Ok(value)
    }

    fn guard_host(&self, target: &str, value: Zeroizing<String>) -> Result<Zeroizing<String>, BrowserError> {
        self.check_value(target, &value)?;
        Ok(value)
    }

    /// End the session. With [`AtEnd::KeepProfile`], Chromium is asked to
    /// quit (so it writes its cookies) within the `quit_grace` limit and the
    /// login material is packed; then, in every case, the processes are
    /// killed and the directory wiped. An error still leaves nothing behind.
    pub async fn end(mut self, at_end: AtEnd) -> Result<SessionEnd, BrowserError> {
        let op = Operation::End;
        if self.cancel.is_cancelled() {
            return Err(BrowserError::Cancelled { operation: op });
        }
        if self.res.torn_down() {
            return Err(BrowserError::SessionEnded);
        }
        let driver = self.driver.take().ok_or(BrowserError::SessionEnded)?;
        let profile = match at_end {
            AtEnd::DiscardProfile => {
                let _ = driver.leak();
                None
            }
            AtEnd::KeepProfile => {
                match tokio::time::timeout(self.limits.quit_grace, driver.quit()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(driver_error(op, e)),
                    Err(_) => return Err(BrowserError::Timeout { operation: op }),
                }
                let dir = self.user_data_dir.clone();
                let max = self.limits.max_profile_bytes;
                let packed = tokio::task::spawn_blocking(move || profile::pack(&dir, max))
                    .await
                    .map_err(|_| BrowserError::BrowserFailed {
                        operation: op,
                        code: "packing the profile panicked".into(),
                    })??;
                Some(packed)
            }
        };
        let cleanup = self.teardown_now().await;
        let (requests, requests_not_kept) = {
            let log = self.proxy.log.lock().expect("browser request log");
            (log.entries.clone(), log.dropped)
        };
        Ok(SessionEnd {
            profile,
            requests,
            requests_not_kept,
            cleanup,
        })
    }

    /// Destroy the session and its material at once: no graceful quit,
    /// nothing packed (ephemeral mode, or a session that belongs to another
    /// account). The caller also deletes the connection's stored sealed
    /// profile when the material must not be used again.
    pub async fn discard(mut self) -> SessionEnd {
        if let Some(driver) = self.driver.take() {
            let _ = driver.leak();
        }
        let cleanup = self.teardown_now().await;
        let log = self.proxy.log.lock().expect("browser request log");
        SessionEnd {
            profile: None,
            requests: log.entries.clone(),
            requests_not_kept: log.dropped,
            cleanup,
        }
    }

    async fn teardown_now(&self) -> Cleanup {
        let res = self.res.clone();
        tokio::task::spawn_blocking(move || res.teardown())
            .await
            .unwrap_or_else(|_| self.res.teardown())
    }
}

/// The run's browser capability calls these from wasmtime's async host
/// functions, which need `Send` futures.
#[cfg(test)]
#[allow(dead_code, clippy::let_underscore_future)]
fn operations_are_send(s: &mut BrowserSession, deadline: Instant) {
    fn send<T: Send>(_: T) {}
    send(s.navigate("", deadline));
    send(s.wait_for("", deadline));
    send(s.click("", deadline));
    send(s.fill("", "", deadline));
    send(s.fill_secret("", "", deadline));
    send(s.select_option("", "", deadline));
    send(s.read_text("", deadline));
    send(s.read_attribute("", "", deadline));
    send(s.read_all_text("", 1, deadline));
    send(s.read_all_attribute("", "", 1, deadline));
    send(s.current_url(deadline));
    send(s.title(deadline));
    send(s.screenshot(deadline));
    send(s.host_read_text("", deadline));
    send(s.host_read_attribute("", "", deadline));
}

#[cfg(test)]
#[allow(dead_code)]
fn ending_is_send(a: BrowserSession, b: BrowserSession) {
    fn send<T: Send>(_: T) {}
    send(a.end(AtEnd::KeepProfile));
    send(b.discard());
}

#[cfg(test)]
#[allow(dead_code)]
fn session_and_service_are_send_and_sync() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<BrowserSession>();
    send_sync::<super::BrowserService>();
}
