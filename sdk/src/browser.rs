//! The browser the host holds for a run, for connectors whose manifest
//! requires the `browser` binding (`runtime_requirements.bindings.browser`).
//!
//! The host runs a headless Chromium in this connection's own profile, behind
//! the run's egress policy; the connector drives it by CSS selector. Secrets
//! are typed by the host from a [`Secret`] handle ([`Browser::fill_secret`])
//! and never come back. Before its first RECORD, a browser connector reports
//! the account the browser is logged into ([`Browser::session_account`]); the
//! host compares it with the connection's identity.
//!
//! ```no_run
//! use pdpp_sdk::{Failure, Interaction, Run};
//! use std::time::Duration;
//!
//! fn log_in(run: &mut Run) -> Result<(), Failure> {
//!     let browser = run.browser();
//!     browser.navigate("https://www.example.com/login")?;
//!     if browser.is_present("#logout")? {
//!         return Ok(()); // the stored profile is still logged in
//!     }
//!     let username = run.secret("username")?;
//!     let password = run.secret("password")?;
//!     browser.fill_secret("input[name=username]", &username)?;
//!     browser.fill_secret("input[name=password]", &password)?;
//!     browser.click("button[type=submit]")?;
//!     browser.wait_for("#logout", Duration::from_secs(30))?;
//!     let who = browser.text("#account-name")?;
//!     browser.session_account(&who)?;
//!     Ok(())
//! }
//! ```
//!
//! The browser has no fake in [`crate::testing`]: test browser connectors
//! against a real host (the repository's tests serve fake sites on loopback).

use crate::errors::{Failure, Recovery};
use crate::secrets::{Secret, SecretHandle};
use crate::wit::browser as wit;
use std::time::Duration;

/// Where the browser is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The URL, on the declared origin.
    pub url: String,
    /// The document's title.
    pub title: String,
}

/// The first matches of a selector and how many there are in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matches<T> {
    /// One value per match, in document order, at most the `max` asked.
    pub values: Vec<T>,
    /// How many elements match in all.
    pub total: u32,
}

/// Why a browser call did not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrowserError {
    /// The run's egress policy refused where this would go (the reason code).
    NotAllowed(String),
    /// It did not happen in time (the call's timeout, or the run's deadline).
    Timeout,
    /// No element matches the selector (named).
    NotFound(String),
    /// The element cannot do this (hidden, disabled, not an input).
    NotInteractable(String),
    /// The host does not hand this back (what it typed, a password's value).
    Refused(String),
    /// More than one read may carry.
    TooLarge(String),
    /// The browser failed (a code, never page content).
    Failed(String),
}

impl std::fmt::Display for BrowserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrowserError::NotAllowed(why) => write!(f, "the page may not go there ({why})"),
            BrowserError::Timeout => f.write_str("the browser did not get there in time"),
            BrowserError::NotFound(selector) => write!(f, "no element matches {selector}"),
            BrowserError::NotInteractable(selector) => write!(f, "{selector} cannot take this action"),
            BrowserError::Refused(what) => write!(f, "the host does not hand this back: {what}"),
            BrowserError::TooLarge(what) => write!(f, "too large: {what}"),
            BrowserError::Failed(code) => write!(f, "the browser failed ({code})"),
        }
    }
}

impl std::error::Error for BrowserError {}

impl From<wit::BrowserError> for BrowserError {
    fn from(e: wit::BrowserError) -> Self {
        match e {
            wit::BrowserError::NotAllowed(s) => BrowserError::NotAllowed(s),
            wit::BrowserError::Timeout => BrowserError::Timeout,
            wit::BrowserError::NotFound(s) => BrowserError::NotFound(s),
            wit::BrowserError::NotInteractable(s) => BrowserError::NotInteractable(s),
            wit::BrowserError::Refused(s) => BrowserError::Refused(s),
            wit::BrowserError::TooLarge(s) => BrowserError::TooLarge(s),
            wit::BrowserError::Failed(s) => BrowserError::Failed(s),
        }
    }
}

/// A failed browser step ends the run with a typed DONE: a page that
/// changed (a selector no longer matches) asks for a connector update, a
/// timeout is worth retrying, a refusal by the egress policy is not.
impl From<BrowserError> for Failure {
    fn from(e: BrowserError) -> Self {
        let message = e.to_string();
        match e {
            BrowserError::NotFound(_) | BrowserError::NotInteractable(_) => Failure::new(message)
                .code("page_changed")
                .recovery(Recovery::UpdateSelector)
                .retryable(false),
            BrowserError::Timeout => Failure::new(message)
                .code("browser_timeout")
                .recovery(Recovery::RetryByRuntime)
                .retryable(true),
            BrowserError::NotAllowed(_) => Failure::new(message)
                .code("browser_not_allowed")
                .recovery(Recovery::RetryOnConnectorUpgrade)
                .retryable(false),
            BrowserError::Refused(_) | BrowserError::TooLarge(_) => Failure::new(message)
                .code("browser_read_refused")
                .recovery(Recovery::RetryOnConnectorUpgrade)
                .retryable(false),
            BrowserError::Failed(_) => Failure::new(message)
                .code("browser_failed")
                .recovery(Recovery::RetryByRuntime)
                .retryable(true),
        }
    }
}

fn page(p: wit::Page) -> Page {
    Page {
        url: p.url,
        title: p.title,
    }
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// The run's browser. Obtained from [`crate::Run::browser`]; every call
/// goes to the host.
#[derive(Debug)]
pub struct Browser {
    _private: (),
}

impl Browser {
    pub(crate) fn new() -> Self {
        Browser { _private: () }
    }

    /// Load `url` (an allowed origin) and wait until it loaded.
    pub fn navigate(&self, url: &str) -> Result<Page, BrowserError> {
        wit::navigate(url).map(page).map_err(Into::into)
    }

    /// The page the browser shows now.
    pub fn current(&self) -> Result<Page, BrowserError> {
        wit::current().map(page).map_err(Into::into)
    }

    /// Wait until an element matches `selector`, at most `timeout`.
    pub fn wait_for(&self, selector: &str, timeout: Duration) -> Result<(), BrowserError> {
        wit::wait_for(selector, ms(timeout)).map_err(Into::into)
    }

    /// Whether an element matches `selector` now (no waiting).
    pub fn is_present(&self, selector: &str) -> Result<bool, BrowserError> {
        match wit::wait_for(selector, 0) {
            Ok(()) => Ok(true),
            Err(wit::BrowserError::Timeout | wit::BrowserError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Click the first element matching `selector`.
    pub fn click(&self, selector: &str) -> Result<(), BrowserError> {
        wit::click(selector).map_err(Into::into)
    }

    /// Type `text` into the input `selector`, replacing what it held.
    pub fn fill(&self, selector: &str, text: &str) -> Result<(), BrowserError> {
        wit::fill(selector, text).map_err(Into::into)
    }

    /// Type a secret into the input `selector`: the host types the value;
    /// this connector never holds it and cannot read it back.
    pub fn fill_secret(&self, selector: &str, secret: &Secret) -> Result<(), BrowserError> {
        match &secret.0 {
            SecretHandle::Wit(handle) => wit::fill_secret(selector, handle).map_err(Into::into),
            #[cfg(not(target_family = "wasm"))]
            SecretHandle::Fake { .. } => Err(BrowserError::Failed("no_browser_in_tests".into())),
        }
    }

    /// Choose the option with value `value` of the select `selector`.
    pub fn select(&self, selector: &str, value: &str) -> Result<(), BrowserError> {
        wit::select(selector, value).map_err(Into::into)
    }

    /// The text of the first element matching `selector`.
    pub fn text(&self, selector: &str) -> Result<String, BrowserError> {
        wit::text(selector).map_err(Into::into)
    }

    /// The texts of the first `max` elements matching `selector`.
    pub fn texts(&self, selector: &str, max: u32) -> Result<Matches<String>, BrowserError> {
        wit::texts(selector, max)
            .map(|m| Matches {
                values: m.values,
                total: m.total,
            })
            .map_err(Into::into)
    }

    /// An attribute of the first element matching `selector`.
    pub fn attribute(&self, selector: &str, name: &str) -> Result<Option<String>, BrowserError> {
        wit::attribute(selector, name).map_err(Into::into)
    }

    /// An attribute of the first `max` elements matching `selector`.
    pub fn attributes(&self, selector: &str, name: &str, max: u32) -> Result<Matches<Option<String>>, BrowserError> {
        wit::attributes(selector, name, max)
            .map(|m| Matches {
                values: m.values,
                total: m.total,
            })
            .map_err(Into::into)
    }

    /// Keep a screenshot of the page for the owner: it goes with the run's
    /// next question and is shown to the owner only.
    pub fn screenshot(&self) -> Result<(), BrowserError> {
        wit::screenshot().map_err(Into::into)
    }

    /// Hand the credential shown in the element `selector` (its text, or
    /// its `attribute`, such as `value`) to the host as the value of
    /// credential field `field`. Only in a credential bootstrap
    /// ([`crate::Connector::bootstrap`]), for the field being bootstrapped:
    /// the host reads it and stores it through its credentials service;
    /// this connector never gets it, and every later read of the element
    /// is refused.
    pub fn capture_credential(&self, field: &str, selector: &str, attribute: Option<&str>) -> Result<(), BrowserError> {
        wit::capture_credential(field, selector, attribute).map_err(Into::into)
    }

    /// Report the account the browser is logged into (a stable identity at
    /// the provider). Required before the run's first RECORD; on a mismatch
    /// with the connection's identity the host stops the run.
    pub fn session_account(&self, identity: &str) -> Result<(), BrowserError> {
        wit::session_account(identity).map_err(Into::into)
    }
}
