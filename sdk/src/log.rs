//! Log levels for [`crate::Run::log`] and [`crate::Probe::log`].
//!
//! A log line goes to the host, which attributes it to the run (or probe)
//! and redacts every secret value of the run before it is printed or kept.

use crate::wit;

/// How important a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Step-by-step detail.
    Trace,
    /// Detail for whoever debugs the connector.
    Debug,
    /// What an operator would like to see.
    Info,
    /// Something went wrong but the run goes on.
    Warn,
    /// Something went wrong.
    Error,
}

impl From<Level> for wit::log::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => wit::log::Level::Trace,
            Level::Debug => wit::log::Level::Debug,
            Level::Info => wit::log::Level::Info,
            Level::Warn => wit::log::Level::Warn,
            Level::Error => wit::log::Level::Error,
        }
    }
}
