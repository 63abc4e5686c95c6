//! The messages a connector emits besides RECORD, STATE and PROGRESS
//! (which are [`crate::Run`] methods): SKIP_RESULT, DETAIL_COVERAGE and
//! DETAIL_GAP. Emit them with [`crate::Run::skip`],
//! [`crate::Run::detail_coverage`] and [`crate::Run::detail_gap`].

use crate::errors::Recovery;
use crate::scope::TimeRange;
use serde_json::Value;

/// SKIP_RESULT: a part of the scope the connector did not collect, and why.
///
/// A skip with reason `stream_collection_failed` and a stream is the
/// certified stream-scoped failure: the run may still end `failed` while the
/// other streams' checkpoints commit.
///
/// ```
/// use pdpp_sdk::{Recovery, Skip};
/// let skip = Skip::stream("gists", "rate_limited")
///     .message("the provider asked us to wait an hour")
///     .recovery(Recovery::RetryByRuntime, Some(true));
/// assert_eq!(skip.stream.as_deref(), Some("gists"));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Skip {
    /// The stream skipped (in scope), if one.
    pub stream: Option<String>,
    /// A machine-readable reason.
    pub reason: Option<String>,
    /// For people.
    pub message: Option<String>,
    /// What should happen next, and whether retrying may help.
    pub recovery: Option<(Recovery, Option<bool>)>,
    /// The resources skipped.
    pub resources: Option<Vec<String>>,
    /// The time window skipped.
    pub time_range: Option<TimeRange>,
    /// A small JSON object for diagnosis (the host bounds its size and depth).
    pub diagnostics: Option<Value>,
}

impl Skip {
    /// A whole stream skipped for `reason`.
    pub fn stream(stream: impl Into<String>, reason: impl Into<String>) -> Self {
        Skip {
            stream: Some(stream.into()),
            reason: Some(reason.into()),
            ..Default::default()
        }
    }

    /// Add a message for people.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Add a recovery hint.
    pub fn recovery(mut self, action: Recovery, retryable: Option<bool>) -> Self {
        self.recovery = Some((action, retryable));
        self
    }

    /// Say how long the provider asked to wait before the stream is tried
    /// again (a rate limit's `Retry-After` or reset time): carried as
    /// [`RETRY_AFTER_SECONDS`] in the diagnostics, from which the host's
    /// setup status tells the owner when the stream will be retried.
    ///
    /// ```
    /// use pdpp_sdk::Skip;
    /// let skip = Skip::stream("gists", "rate_limited").retry_after(std::time::Duration::from_secs(90));
    /// assert_eq!(skip.diagnostics.unwrap()["retry_after_seconds"], 90);
    /// ```
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        let mut diagnostics = match self.diagnostics.take() {
            Some(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        diagnostics.insert(RETRY_AFTER_SECONDS.to_owned(), Value::from(wait.as_secs()));
        self.diagnostics = Some(Value::Object(diagnostics));
        self
    }
}

/// The SKIP_RESULT diagnostics key saying how many seconds after the skip
/// the provider allows the stream to be tried again (see [`Skip::retry_after`]).
pub use pdpp_types::RETRY_AFTER_SECONDS;

/// DETAIL_COVERAGE: which detail keys under a checkpoint were accounted for.
/// Keys are compared as strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetailCoverage {
    /// The stream whose checkpoint this coverage belongs to.
    pub state_stream: String,
    /// The detail stream.
    pub stream: String,
    /// Keys that had to be hydrated.
    pub required_keys: Vec<String>,
    /// Keys that were.
    pub hydrated_keys: Vec<String>,
    /// Keys reported by DETAIL_GAP instead.
    pub gap_keys: Vec<String>,
    /// Keys skipped on purpose.
    pub optional_skip_keys: Vec<String>,
    /// Items looked at.
    pub considered: Option<u64>,
    /// Items accounted for.
    pub covered: Option<u64>,
}

/// DETAIL_GAP: a detail record that could not be hydrated this run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DetailGap {
    /// The detail stream.
    pub stream: String,
    /// The stream of the parent record.
    pub parent_stream: Option<String>,
    /// The key of the record whose detail is missing.
    pub record_key: String,
    /// Why.
    pub reason: Option<String>,
    /// Whether a later run may succeed.
    pub retryable: Option<bool>,
    /// Where the detail would be fetched from (JSON).
    pub detail_locator: Option<Value>,
    /// The listing position of the parent (JSON).
    pub list_cursor: Option<Value>,
    /// The last error seen (JSON).
    pub last_error: Option<Value>,
}
