//! The host-held browser: a Chromium per run, driven through WebDriver, that
//! reaches nothing the run's egress policy refuses and keeps its secrets in
//! the host.
//!
//! This module is the engine only: it knows no WIT, no guest and no
//! provider. The run's browser capability (in the sandbox) maps guest calls
//! onto a [`BrowserSession`]; the runtime starts the session through the
//! process-wide [`BrowserService`], hands it the run's egress policy (a
//! [`BrowserEgressPolicy`]), the connection's opened profile and the run's
//! cancellation token, and ends it with the run.
//!
//! - [`service`]: deployment settings, the concurrency cap and its queue,
//!   starting a session (one chromedriver per session, in its own process
//!   group).
//! - [`session`]: the operations, the secret rules, teardown.
//! - [`proxy`]: the per-session filtering HTTP proxy every request of the
//!   page goes through, and its per-request summaries.
//! - [`policy`]: the policy seam and the declared ↔ rewrite-target mapping.
//! - [`profile`]: packing, sealing and wiping source-scoped profiles.
//! - [`process`]: process groups, markers, counting live browser processes.
//! - `chromium`: the Chromium flags and WebDriver capabilities.
//!
//! docs/browser.md describes the model, the guarantees and the measurements.

mod chromium;
pub mod error;
pub mod policy;
pub mod process;
pub mod profile;
pub mod proxy;
pub mod service;
pub mod session;

pub use error::{BrowserError, Operation, ProfileError, ReadRefusal, Refusal};
pub use policy::{BrowserEgressPolicy, Origin};
pub use process::{ProcessMemory, Sweep, live_browser_processes, live_browser_processes_of, sweep_orphans};
pub use profile::{PROFILE_PURPOSE, ProfileArchive, SealedProfile};
pub use proxy::BrowserRequest;
pub use service::{BrowserConfig, BrowserLimits, BrowserService, SessionSpec};
pub use session::{AtEnd, BrowserSession, Cleanup, Matches, Page, SessionEnd};
pub use tokio_util::sync::CancellationToken;
