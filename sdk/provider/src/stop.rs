//! How one stream ends early ([`Stop`]), and the run's DONE from how every
//! stream ended ([`Streams`]).

use pdpp_sdk::{Failure, Recovery, Run, Skip, StreamScope};
use std::fmt;
use std::time::Duration;

/// Why one stream stopped early.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// The run cannot go on (credential refused, egress refused, SDK error).
    Run(Failure),
    /// The provider's rate limit lasts longer than the connector may wait.
    RateLimited {
        /// For people.
        message: String,
        /// How long the provider asked to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The provider refused this stream's resource to an accepted
    /// credential (a 403 that is not a rate limit): a permission, a scope,
    /// an organisation's SSO. The owner has to look; the credential stands.
    Forbidden(String),
    /// This stream could not be collected; its siblings still can.
    Stream(String),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Stop::Run(f)
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Run(failure) => write!(f, "{failure}"),
            Stop::RateLimited { message: why, .. } | Stop::Forbidden(why) | Stop::Stream(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Stop {}

/// How the streams of one run ended, and the DONE that follows.
///
/// ```no_run
/// # use pdpp_sdk::{Failure, Run, StreamScope};
/// # use pdpp_provider::{Stop, Streams};
/// # fn repositories(run: &mut Run, scope: &StreamScope) -> Result<(), Stop> { Ok(()) }
/// # fn stars(run: &mut Run, scope: &StreamScope) -> Result<(), Stop> { Ok(()) }
/// fn run(run: &mut Run) -> Result<(), Failure> {
///     let mut streams = Streams::new();
///     streams.collect(run, "repositories", repositories)?;
///     streams.collect(run, "starred", stars)?;
///     streams.finish()
/// }
/// ```
#[derive(Debug, Default)]
pub struct Streams {
    failed: Vec<String>,
    collected: Vec<String>,
}

impl Streams {
    /// No stream settled yet.
    pub fn new() -> Self {
        Streams::default()
    }

    /// Collect `stream` with `collect` if it is in the run's scope (and do
    /// nothing if it is not), then [`settle`](Self::settle) how it ended.
    pub fn collect(
        &mut self,
        run: &mut Run,
        stream: &str,
        collect: impl FnOnce(&mut Run, &StreamScope) -> Result<(), Stop>,
    ) -> Result<(), Failure> {
        let Some(scope) = run.stream_scope(stream).cloned() else {
            return Ok(());
        };
        let result = collect(run, &scope);
        self.settle(run, stream, result)
    }

    /// Report how one stream ended. Only a run-wide stop is returned as an
    /// error (end the run with it); a rate limit becomes SKIP_RESULT
    /// `rate_limited` (`retry_by_runtime`, with the provider's wait when it
    /// named one), a forbidden resource SKIP_RESULT `forbidden`
    /// (`manual_action_required`), and a stream-scoped failure SKIP_RESULT
    /// `stream_collection_failed`, remembered for [`finish`](Self::finish).
    /// A skipped stream emits no checkpoint, so the next run reads it again
    /// from its previous cursor.
    pub fn settle(&mut self, run: &mut Run, stream: &str, result: Result<(), Stop>) -> Result<(), Failure> {
        match result {
            Ok(()) => {
                self.collected.push(stream.to_owned());
                Ok(())
            }
            Err(Stop::Run(failure)) => Err(failure),
            Err(Stop::RateLimited { message, retry_after }) => {
                let mut skip = Skip::stream(stream, "rate_limited")
                    .message(message)
                    .recovery(Recovery::RetryByRuntime, Some(true));
                if let Some(wait) = retry_after {
                    skip = skip.retry_after(wait);
                }
                run.skip(skip)
            }
            Err(Stop::Forbidden(message)) => run.skip(
                Skip::stream(stream, "forbidden")
                    .message(message)
                    .recovery(Recovery::ManualActionRequired, Some(false)),
            ),
            Err(Stop::Stream(message)) => {
                self.failed.push(stream.to_owned());
                run.skip(
                    Skip::stream(stream, "stream_collection_failed")
                        .message(message)
                        .recovery(Recovery::RetryByRuntime, Some(true)),
                )
            }
        }
    }

    /// The streams that ended in a stream-scoped failure, in order.
    pub fn failed(&self) -> &[String] {
        &self.failed
    }

    /// DONE once every stream is settled: succeeded, or (after a
    /// stream-scoped failure) the certified failure that still lets the
    /// other streams' checkpoints commit.
    pub fn finish(self) -> Result<(), Failure> {
        if self.failed.is_empty() {
            return Ok(());
        }
        let others = if self.collected.is_empty() {
            "no other stream was collected".to_owned()
        } else {
            format!("{} collected and kept their checkpoints", self.collected.join(", "))
        };
        Err(
            Failure::new(format!("could not collect {}; {others}", self.failed.join(", ")))
                .code("stream_collection_failed")
                .retryable(true)
                .recovery(Recovery::RetryByRuntime),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdpp_sdk::json;
    use pdpp_sdk::testing::TestHost;
    use pdpp_sdk::types::DoneStatus;

    #[test]
    fn a_stream_failure_is_skipped_and_fails_done_while_the_others_finish() {
        let host = TestHost::new().stream("a").stream("b").stream("c").stream("d");
        let mut run = host.run();
        let mut streams = Streams::new();
        streams
            .collect(&mut run, "a", |run, _| {
                run.checkpoint("a", &json!({ "n": 1 }))?;
                Ok(())
            })
            .unwrap();
        streams
            .collect(&mut run, "b", |_, _| {
                Err(Stop::Stream("GET /b: pagination loops".into()))
            })
            .unwrap();
        streams
            .collect(&mut run, "c", |_, _| {
                Err(Stop::RateLimited {
                    message: "wait an hour".into(),
                    retry_after: Some(Duration::from_secs(3_600)),
                })
            })
            .unwrap();
        streams
            .collect(&mut run, "d", |_, _| Err(Stop::Forbidden("SSO required".into())))
            .unwrap();
        streams
            .collect(&mut run, "not_in_scope", |_, _| {
                panic!("a stream out of scope is not collected")
            })
            .unwrap();
        assert_eq!(
            streams.failed(),
            ["b"],
            "neither a rate limit nor a forbidden stream fails the run"
        );
        let done = host.finish(run, streams.finish());
        assert_eq!(done.status, DoneStatus::Failed);
        let error = done.error.unwrap();
        assert_eq!(error.code.as_deref(), Some("stream_collection_failed"));
        assert_eq!(
            error.message,
            "could not collect b; a collected and kept their checkpoints"
        );
        assert_eq!(
            (error.retryable, error.recovery),
            (Some(true), Some(Recovery::RetryByRuntime))
        );
        let skips: Vec<(Option<String>, Option<String>)> =
            host.skips().into_iter().map(|s| (s.stream, s.reason)).collect();
        assert_eq!(
            skips,
            [
                (Some("b".into()), Some("stream_collection_failed".into())),
                (Some("c".into()), Some("rate_limited".into())),
                (Some("d".into()), Some("forbidden".into()))
            ]
        );
        let skipped = host.skips();
        assert_eq!(skipped[1].diagnostics, Some(json!({ "retry_after_seconds": 3_600 })));
        assert_eq!(skipped[2].recovery, Some((Recovery::ManualActionRequired, Some(false))));
        assert!(host.checkpoint("a").is_some());
    }

    #[test]
    fn a_rate_limit_alone_does_not_fail_the_run_and_a_run_stop_ends_it() {
        let host = TestHost::new().stream("a").stream("b");
        let mut run = host.run();
        let mut streams = Streams::new();
        streams
            .collect(&mut run, "a", |_, _| {
                Err(Stop::RateLimited {
                    message: "later".into(),
                    retry_after: None,
                })
            })
            .unwrap();
        let refused = Failure::new("refused").code("credential_rejected");
        let stopped = streams.collect(&mut run, "b", |_, _| Err(Stop::Run(refused.clone())));
        assert_eq!(stopped, Err(refused));
        assert_eq!(streams.finish(), Ok(()), "a rate-limited stream alone is a success");
    }

    #[test]
    fn a_failure_never_claims_streams_were_collected_when_none_were() {
        let host = TestHost::new().stream("a").stream("b");
        let mut run = host.run();
        let mut streams = Streams::new();
        for stream in ["a", "b"] {
            streams
                .collect(&mut run, stream, |_, _| {
                    Err(Stop::Stream(format!("GET /{stream}: timed out")))
                })
                .unwrap();
        }
        let done = host.finish(run, streams.finish());
        let message = done.error.unwrap().message;
        assert_eq!(message, "could not collect a, b; no other stream was collected");
    }
}
