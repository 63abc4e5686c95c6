//! The browser engine's typed errors and refusal reasons.
//!
//! Every error names what was asked (an operation, a selector, an origin) and
//! why it failed, and never carries a value read from a page or typed into
//! one: WebDriver failures are reduced to their error code, because a
//! driver's message may quote page content.

use std::fmt;

/// The engine operation an error belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Waiting for a browser slot and starting Chromium.
    Start,
    Navigate,
    WaitFor,
    Click,
    Fill,
    FillSecret,
    SelectOption,
    ReadText,
    ReadAttribute,
    ReadAllText,
    ReadAllAttribute,
    CurrentUrl,
    Title,
    Screenshot,
    HostRead,
    /// Quitting the browser and packing its profile.
    End,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Start => "start",
            Operation::Navigate => "navigate",
            Operation::WaitFor => "wait_for",
            Operation::Click => "click",
            Operation::Fill => "fill",
            Operation::FillSecret => "fill_secret",
            Operation::SelectOption => "select_option",
            Operation::ReadText => "read_text",
            Operation::ReadAttribute => "read_attribute",
            Operation::ReadAllText => "read_all_text",
            Operation::ReadAllAttribute => "read_all_attribute",
            Operation::CurrentUrl => "current_url",
            Operation::Title => "title",
            Operation::Screenshot => "screenshot",
            Operation::HostRead => "host_read",
            Operation::End => "end",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the engine or its egress proxy refused something. The `as_str` codes
/// are stable: they appear in request summaries and in the run timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The run's egress policy does not admit the origin.
    OriginNotAllowed,
    /// Only `http` and `https` URLs can be navigated to or proxied.
    SchemeNotAllowed,
    /// The name resolved only to addresses the address policy blocks
    /// (loopback, private, link-local, CGNAT, metadata).
    AddressBlocked,
    /// The name did not resolve.
    DnsFailed,
    /// No connection could be made to an admitted address.
    ConnectFailed,
    /// A deployment rewrite changes the scheme (e.g. `https` → a plain `http`
    /// test double) of a request the browser makes in a tunnel: the browser
    /// would speak TLS to a server that does not.
    RewriteSchemeMismatch,
    /// The session's request or byte budget is spent.
    BudgetExhausted,
    /// The proxy could not understand the request.
    BadRequest,
    /// A secret may only be typed into a text-like `<input>` element, where
    /// it never becomes part of the page's text.
    SecretTargetNotAnInput,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::OriginNotAllowed => "origin_not_allowed",
            Refusal::SchemeNotAllowed => "scheme_not_allowed",
            Refusal::AddressBlocked => "address_blocked",
            Refusal::DnsFailed => "dns_failed",
            Refusal::ConnectFailed => "connect_failed",
            Refusal::RewriteSchemeMismatch => "rewrite_scheme_mismatch",
            Refusal::BudgetExhausted => "budget_exhausted",
            Refusal::BadRequest => "bad_request",
            Refusal::SecretTargetNotAnInput => "secret_target_not_an_input",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a read was refused: the host typed what it would return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadRefusal {
    /// The element was filled with a secret by the engine; nothing of it is
    /// read back (no text, no attribute).
    SecretFilledElement,
    /// The `value` of a password input is never read back.
    PasswordValue,
    /// The value contains a secret the engine typed in this session (e.g. a
    /// form sent with GET put it into the URL).
    ContainsFilledSecret,
}

impl ReadRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadRefusal::SecretFilledElement => "secret_filled_element",
            ReadRefusal::PasswordValue => "password_value",
            ReadRefusal::ContainsFilledSecret => "contains_filled_secret",
        }
    }
}

impl fmt::Display for ReadRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a browser operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// The egress policy or an engine rule refused the target (an origin, a
    /// URL's scheme, or an element for a secret).
    #[error("{operation} refused for {target}: {reason}")]
    NotAllowed {
        operation: Operation,
        /// The declared origin or URL shape that was refused, or the selector
        /// for engine rules. Never a page value.
        target: String,
        reason: Refusal,
    },
    /// The deadline passed (the run's remaining time, or the caller's).
    #[error("{operation} timed out")]
    Timeout { operation: Operation },
    /// The run was cancelled while the operation (or the wait for a browser
    /// slot) was in progress. The session is torn down.
    #[error("{operation} was cancelled")]
    Cancelled { operation: Operation },
    #[error("no element matches the selector {selector:?}")]
    SelectorNotFound { selector: String },
    #[error("{selector:?} is not a valid CSS selector")]
    InvalidSelector { selector: String },
    /// The first element matching the selector is not what the operation
    /// needs (e.g. `select_option` on something that is not a `<select>`).
    #[error("the element matching {selector:?} is not {expected}")]
    WrongElement { selector: String, expected: &'static str },
    /// The element exists but cannot be clicked or typed into (hidden,
    /// disabled, covered by another element).
    #[error("the element matching {selector:?} cannot be interacted with ({code})")]
    NotInteractable { selector: String, code: &'static str },
    /// The engine will not hand this value back. `target` is the selector,
    /// or `url` / `title`.
    #[error("reading {target:?} is refused: {reason}")]
    RefusedRead { target: String, reason: ReadRefusal },
    /// `navigate` was given something that is not an absolute URL.
    #[error("navigate needs an absolute http or https URL")]
    InvalidUrl,
    /// A bounded result was too large (text, screenshot, profile).
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge { what: &'static str, limit: u64 },
    /// Chromium or chromedriver failed, or could not be started. `code` is
    /// the WebDriver error code or a short description of the host-side
    /// failure; never page content.
    #[error("the browser failed during {operation}: {code}")]
    BrowserFailed { operation: Operation, code: String },
    /// A session that was cancelled, or ended with an error that left it
    /// unusable, takes no more operations.
    #[error("the browser session has ended")]
    SessionEnded,
    /// Packing, unpacking or opening a profile failed.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// What can go wrong with a source-scoped profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("the browser profile is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The sealed profile does not open: it belongs to another connection, was
    /// sealed under another key, or was altered.
    #[error("the sealed browser profile does not open for connection {connection_id}: {reason}")]
    DoesNotOpen { connection_id: String, reason: String },
    /// The archive inside an opened profile is malformed or names a path
    /// outside the profile's login material.
    #[error("the browser profile archive is malformed: {0}")]
    Malformed(String),
    #[error("the browser profile directory could not be {action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The WebDriver error code of a thirtyfour error (e.g. `no such element`),
/// never its message.
pub(crate) fn webdriver_code(e: &thirtyfour::error::WebDriverError) -> &'static str {
    use thirtyfour::error::WebDriverErrorInner as E;
    match e.as_inner() {
        E::UnknownResponse(..) => "unknown response",
        E::RequestFailed(_) | E::HttpError(_) | E::IoError(_) => "driver unreachable",
        E::NotFound(..) => "not found",
        E::ParseError(_) | E::Json(_) | E::DecodeError(_) => "unreadable driver response",
        E::Timeout(_) | E::WebDriverTimeout(_) | E::ScriptTimeout(_) => "timeout",
        E::NotInSpec(_) => "not in spec",
        E::ElementClickIntercepted(_) => "element click intercepted",
        E::ElementNotInteractable(_) => "element not interactable",
        E::InsecureCertificate(_) => "insecure certificate",
        E::InvalidArgument(_) => "invalid argument",
        E::InvalidUrl(_) => "invalid url",
        E::InvalidCookieDomain(_) => "invalid cookie domain",
        E::InvalidElementState(_) => "invalid element state",
        E::InvalidSelector(_) => "invalid selector",
        E::InvalidSessionId(_) => "invalid session id",
        E::JavascriptError(_) => "javascript error",
        E::MoveTargetOutOfBounds(_) => "move target out of bounds",
        E::NoSuchAlert(_) => "no such alert",
        E::NoSuchCookie(_) => "no such cookie",
        E::NoSuchElement(_) => "no such element",
        E::NoSuchFrame(_) => "no such frame",
        E::NoSuchWindow(_) => "no such window",
        E::SessionNotCreated(_) => "session not created",
        E::StaleElementReference(_) => "stale element reference",
        E::UnableToSetCookie(_) => "unable to set cookie",
        E::UnableToCaptureScreen(_) => "unable to capture screen",
        E::UnexpectedAlertOpen(_) => "unexpected alert open",
        E::UnknownCommand(_) => "unknown command",
        E::UnknownError(_) => "unknown error",
        E::UnknownMethod(_) => "unknown method",
        E::UnsupportedOperation(_) => "unsupported operation",
        E::FatalError(_) => "fatal error",
        E::CommandRecvError(_) | E::CommandSendError(_) => "driver channel closed",
        E::SessionCreateError(_) => "session not created",
        _ => "webdriver error",
    }
}
