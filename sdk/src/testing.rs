//! An in-memory host for unit tests of a connector's logic (native builds
//! only; this module does not exist in a `wasm32` build).
//!
//! [`TestHost`] plays the host's side of START, `emit`, `interaction`,
//! `secrets` and `log`: build it with the scope, cursors, settings, secrets
//! and owner answers a test needs, hand its [`Run`] to the code under test
//! (or run a whole [`Connector`]), then read back what was emitted. It does
//! not validate messages the way the host does (a violation is only caught
//! end to end) and it has no HTTP: `pdpp_sdk::http` speaks `wasi:http`,
//! which only a component has, so code that fetches should take its pages
//! from a function the test can replace.
//!
//! ```
//! use pdpp_sdk::testing::TestHost;
//! use pdpp_sdk::{StreamScope, TimeRange, json};
//!
//! let host = TestHost::new().scope(StreamScope {
//!     time_range: Some(TimeRange { since: Some("2026-01-01T00:30:00Z".into()), until: None }),
//!     ..StreamScope::named("notes")
//! });
//! let mut run = host.run();
//! for (id, t) in [("a", "2026-01-01T01:00:00+01:00"), ("b", "2026-01-01T00:30:00Z")] {
//!     if run.stream_scope("notes").unwrap().allows_time(t) {
//!         run.record("notes", id, &json!({ "id": id, "updated_at": t }))?;
//!     }
//! }
//! let done = host.finish(run, Ok(()));
//! assert_eq!(done.records_emitted, 1);
//! assert_eq!(host.records("notes")[0].key, "b".into());
//! # Ok::<(), pdpp_sdk::Failure>(())
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use serde_json::Value;

use crate::host::Host;
use crate::run::{Run, StartParts};
use crate::secrets::{Secret, SecretError, SecretHandle};
use crate::{
    Account, Answer, Connector, DetailCoverage, DetailGap, Failure, Interaction, InteractionKind, Key, Level, Mode,
    Probe, ProbeError, Recovery, Skip, StreamScope, TimeRange, wit,
};
use pdpp_types::{DoneStatus, RecordOp};

/// The fake host's state, shared by the [`TestHost`] and the runs it hands out.
pub(crate) type Shared = Rc<RefCell<FakeHost>>;

/// The placeholder a fake secret puts in requests (the real host's differ).
pub(crate) fn placeholder(field: &str) -> String {
    format!("{{{{pdpp-secret:test:{field}}}}}")
}

/// One message as the host received it, in the SDK's terms.
#[derive(Clone, Debug, PartialEq)]
pub enum Emitted {
    /// RECORD.
    Record(EmittedRecord),
    /// STATE: `None` clears the stream's cursor.
    State {
        /// The stream.
        stream: String,
        /// The cursor, parsed.
        cursor: Option<Value>,
    },
    /// PROGRESS.
    Progress {
        /// The stream, if one.
        stream: Option<String>,
        /// The message.
        message: String,
        /// Items so far.
        count: Option<u64>,
        /// Items in all.
        total: Option<u64>,
    },
    /// SKIP_RESULT.
    Skip(Skip),
    /// DETAIL_COVERAGE.
    DetailCoverage(DetailCoverage),
    /// DETAIL_GAP.
    DetailGap(DetailGap),
}

/// A RECORD as the host received it.
#[derive(Clone, Debug, PartialEq)]
pub struct EmittedRecord {
    /// The stream.
    pub stream: String,
    /// The key.
    pub key: Key,
    /// Upsert or delete.
    pub op: RecordOp,
    /// The data, parsed (`None` for a deletion).
    pub data: Option<Value>,
}

/// How a run ended, as DONE would report it.
#[derive(Clone, Debug, PartialEq)]
pub struct Done {
    /// Succeeded, failed or cancelled.
    pub status: DoneStatus,
    /// The RECORDs emitted.
    pub records_emitted: u64,
    /// Why, when not succeeded.
    pub error: Option<Failure>,
}

/// What the fake host holds and has seen.
#[derive(Default)]
pub(crate) struct FakeHost {
    emitted: Vec<Emitted>,
    batches: usize,
    secrets: BTreeMap<String, (String, bool)>,
    interactive: bool,
    answers: VecDeque<Answer>,
    questions: Vec<Interaction>,
    logs: Vec<(Level, String)>,
}

impl FakeHost {
    pub(crate) fn receive(&mut self, batch: Vec<wit::emit::Message>) {
        self.batches += 1;
        self.emitted.extend(batch.into_iter().map(emitted));
    }

    pub(crate) fn ask(
        &mut self,
        request: &wit::interaction::Request,
    ) -> Result<wit::interaction::Response, wit::interaction::InteractionError> {
        let kind = match request.kind {
            wit::interaction::InteractionKind::Credentials => InteractionKind::Credentials,
            wit::interaction::InteractionKind::Otp => InteractionKind::Otp,
            wit::interaction::InteractionKind::ManualAction => InteractionKind::ManualAction,
        };
        self.questions.push(Interaction {
            kind,
            message: request.message.clone(),
            stream: request.stream.clone(),
            schema: request.schema.as_deref().and_then(|s| serde_json::from_str(s).ok()),
            timeout_seconds: request.timeout_seconds,
        });
        if !self.interactive {
            return Err(wit::interaction::InteractionError::NotInteractive(
                "this test run has no interactive binding".into(),
            ));
        }
        Ok(match self.answers.pop_front() {
            Some(Answer::Success(data)) => wit::interaction::Response::Success(data.to_string()),
            Some(Answer::Cancelled) => wit::interaction::Response::Cancelled,
            Some(Answer::Timeout) | None => wit::interaction::Response::Timeout,
        })
    }

    pub(crate) fn secret(&self, field: &str) -> Result<Secret, SecretError> {
        match self.secrets.get(field) {
            Some((value, revealable)) => Ok(Secret(SecretHandle::Fake {
                field: field.to_owned(),
                value: value.clone(),
                revealable: *revealable,
            })),
            None => Err(SecretError::NotDeclared(field.to_owned())),
        }
    }

    pub(crate) fn available_secrets(&self) -> Vec<String> {
        self.secrets.keys().cloned().collect()
    }

    pub(crate) fn log(&mut self, level: Level, message: &str, _fields: &[(String, String)]) {
        self.logs.push((level, message.to_owned()));
    }
}

fn parsed(text: Option<String>) -> Option<Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

fn recovery_of(hint: wit::types::RecoveryHint) -> (Recovery, Option<bool>) {
    use wit::types::RecoveryAction as A;
    let action = match hint.action {
        A::RetryByRuntime => Recovery::RetryByRuntime,
        A::RetryOnConnectorUpgrade => Recovery::RetryOnConnectorUpgrade,
        A::RefreshCredentials => Recovery::RefreshCredentials,
        A::ManualActionRequired => Recovery::ManualActionRequired,
        A::UpdateSelector => Recovery::UpdateSelector,
        A::UpstreamUnblock => Recovery::UpstreamUnblock,
        A::NotRetriable => Recovery::NotRetriable,
        A::Unknown => Recovery::Unknown,
    };
    (action, hint.retryable)
}

/// The SDK's view of a message the run sent.
fn emitted(msg: wit::emit::Message) -> Emitted {
    use wit::emit::Message as M;
    match msg {
        M::Record(r) => Emitted::Record(EmittedRecord {
            stream: r.stream,
            key: match r.key {
                wit::types::RecordKey::Single(k) => Key::Single(k),
                wit::types::RecordKey::Composite(parts) => Key::Composite(parts),
            },
            op: match r.op {
                wit::types::RecordOp::Upsert => RecordOp::Upsert,
                wit::types::RecordOp::Delete => RecordOp::Delete,
            },
            data: parsed(r.data),
        }),
        M::State(s) => Emitted::State {
            stream: s.stream,
            cursor: parsed(s.cursor),
        },
        M::Progress(p) => Emitted::Progress {
            stream: p.stream,
            message: p.message,
            count: p.count,
            total: p.total,
        },
        M::SkipResult(s) => Emitted::Skip(Skip {
            stream: s.stream,
            reason: s.reason,
            message: s.message,
            recovery: s.recovery_hint.map(recovery_of),
            resources: s.resources,
            time_range: s.time_range.map(|t| TimeRange {
                since: t.since,
                until: t.until,
            }),
            diagnostics: parsed(s.diagnostics),
        }),
        M::DetailCoverage(c) => Emitted::DetailCoverage(DetailCoverage {
            state_stream: c.state_stream,
            stream: c.stream,
            required_keys: c.required_keys,
            hydrated_keys: c.hydrated_keys,
            gap_keys: c.gap_keys,
            optional_skip_keys: c.optional_skip_keys,
            considered: c.considered,
            covered: c.covered,
        }),
        M::DetailGap(g) => Emitted::DetailGap(DetailGap {
            stream: g.stream,
            parent_stream: g.parent_stream,
            record_key: g.record_key,
            reason: g.reason,
            retryable: g.retryable,
            detail_locator: parsed(g.detail_locator),
            list_cursor: parsed(g.list_cursor),
            last_error: parsed(g.last_error),
        }),
    }
}

/// An in-memory host: what START says, what the owner answers, which
/// secrets exist, and everything the run emitted. Cheap to clone; clones
/// share what was emitted.
#[derive(Clone)]
pub struct TestHost {
    shared: Shared,
    mode: Mode,
    scope: Vec<StreamScope>,
    state: Option<BTreeMap<String, Option<Value>>>,
    bindings: BTreeMap<String, Value>,
    settings: Value,
}

impl Default for TestHost {
    fn default() -> Self {
        TestHost::new()
    }
}

impl TestHost {
    /// An incremental, persisted run with no stream in scope, no cursor, no
    /// binding, `{}` settings, no secret and no owner.
    pub fn new() -> Self {
        TestHost {
            shared: Shared::default(),
            mode: Mode::Incremental,
            scope: Vec::new(),
            state: Some(BTreeMap::new()),
            bindings: BTreeMap::new(),
            settings: Value::Object(Default::default()),
        }
    }

    /// Add a whole stream to the scope.
    pub fn stream(self, name: impl Into<String>) -> Self {
        self.scope(StreamScope::named(name))
    }

    /// Add a stream with its limits to the scope.
    pub fn scope(mut self, scope: StreamScope) -> Self {
        self.scope.push(scope);
        self
    }

    /// The collection mode (incremental by default).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// A stream's prior cursor.
    pub fn cursor(mut self, stream: impl Into<String>, cursor: Value) -> Self {
        let cursor = (!cursor.is_null()).then_some(cursor);
        self.state
            .get_or_insert_with(BTreeMap::new)
            .insert(stream.into(), cursor);
        self
    }

    /// A single-use run: no state offered, none persisted.
    pub fn single_use(mut self) -> Self {
        self.state = None;
        self
    }

    /// The connection's non-secret settings.
    pub fn settings(mut self, settings: Value) -> Self {
        self.settings = settings;
        self
    }

    /// Advertise a binding with its descriptor.
    pub fn binding(mut self, name: impl Into<String>, descriptor: Value) -> Self {
        self.bindings.insert(name.into(), descriptor);
        self
    }

    /// A credential field the manifest does not let the connector reveal.
    pub fn secret(self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.shared
            .borrow_mut()
            .secrets
            .insert(field.into(), (value.into(), false));
        self
    }

    /// A credential field the manifest marks `"reveal": true`.
    pub fn revealable_secret(self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.shared
            .borrow_mut()
            .secrets
            .insert(field.into(), (value.into(), true));
        self
    }

    /// Advertise the `interactive` binding: an owner is there (unanswered
    /// questions time out).
    pub fn interactive(self) -> Self {
        self.shared.borrow_mut().interactive = true;
        self.binding("interactive", Value::Object(Default::default()))
    }

    /// The owner's next answer (implies [`interactive`](Self::interactive)).
    pub fn answer(self, answer: Answer) -> Self {
        self.shared.borrow_mut().answers.push_back(answer);
        self.interactive()
    }

    /// A [`Run`] as START describes it, talking to this host.
    pub fn run(&self) -> Run {
        Run::from_parts(
            StartParts {
                run_id: "run_test".into(),
                mode: self.mode,
                scope: self.scope.clone(),
                state: self.state.clone(),
                bindings: self.bindings.clone(),
                settings: self.settings.clone(),
            },
            Host::Fake(self.shared.clone()),
        )
    }

    /// End a run as the exported `run` does: flush it and report DONE.
    pub fn finish(&self, run: Run, result: Result<(), Failure>) -> Done {
        let ending = run.end(result);
        Done {
            status: ending.status,
            records_emitted: ending.records_emitted,
            error: ending.error,
        }
    }

    /// Run a whole connector once, as the host would, and report DONE.
    pub fn run_connector<C: Connector>(&self) -> Done {
        let mut run = self.run();
        let result = C::run(&mut run);
        self.finish(run, result)
    }

    /// Call a connector's credential probe with this host's settings and secrets.
    pub fn probe_connector<C: Connector>(&self) -> Result<Account, ProbeError> {
        C::validate_credential(&Probe::new(&self.settings.to_string(), Host::Fake(self.shared.clone())))
    }

    /// Everything flushed so far, in order.
    pub fn emitted(&self) -> Vec<Emitted> {
        self.shared.borrow().emitted.clone()
    }

    /// How many `emit.send` calls the runs made.
    pub fn batches(&self) -> usize {
        self.shared.borrow().batches
    }

    /// The RECORDs flushed for a stream, in order.
    pub fn records(&self, stream: &str) -> Vec<EmittedRecord> {
        self.emitted()
            .into_iter()
            .filter_map(|m| match m {
                Emitted::Record(r) if r.stream == stream => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The last STATE flushed for a stream: `None` when there was none,
    /// `Some(None)` when it cleared the cursor.
    pub fn checkpoint(&self, stream: &str) -> Option<Option<Value>> {
        self.emitted().into_iter().rev().find_map(|m| match m {
            Emitted::State { stream: s, cursor } if s == stream => Some(cursor),
            _ => None,
        })
    }

    /// The SKIP_RESULTs flushed, in order.
    pub fn skips(&self) -> Vec<Skip> {
        self.emitted()
            .into_iter()
            .filter_map(|m| match m {
                Emitted::Skip(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// The questions asked of the owner, in order.
    pub fn questions(&self) -> Vec<Interaction> {
        self.shared.borrow().questions.clone()
    }

    /// The log lines written, in order.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.shared.borrow().logs.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[test]
    fn records_keep_only_the_scoped_fields_and_done_counts_them() {
        let host = TestHost::new().scope(StreamScope {
            fields: Some(vec!["id".into(), "title".into()]),
            ..StreamScope::named("notes")
        });
        let mut run = host.run();
        run.record("notes", "n1", &json!({ "id": "n1", "title": "t", "private": "p" }))
            .unwrap();
        run.delete("notes", ["a", "b"]).unwrap();
        let done = host.finish(run, Ok(()));
        assert_eq!(done.status, DoneStatus::Succeeded);
        assert_eq!(done.records_emitted, 2);
        let records = host.records("notes");
        assert_eq!(records[0].data, Some(json!({ "id": "n1", "title": "t" })));
        assert_eq!(records[1].op, RecordOp::Delete);
        assert_eq!(records[1].key, Key::Composite(vec!["a".into(), "b".into()]));
        assert_eq!(records[1].data, None);
    }

    #[test]
    fn records_of_a_stream_without_a_field_list_carry_all_their_data() {
        #[derive(serde::Serialize)]
        struct Note {
            id: &'static str,
            tags: Vec<&'static str>,
            body: Option<String>,
            n: u32,
        }
        let host = TestHost::new().stream("notes");
        let mut run = host.run();
        let note = Note {
            id: "n1",
            tags: vec!["a"],
            body: None,
            n: 3,
        };
        run.record("notes", "n1", &note).unwrap();
        host.finish(run, Ok(()));
        let data = json!({ "id": "n1", "tags": ["a"], "body": null, "n": 3 });
        assert_eq!(host.records("notes")[0].data, Some(data));
    }

    #[test]
    fn cursors_are_offered_only_to_incremental_persisted_runs() {
        let host = TestHost::new().stream("s").cursor("s", json!({ "last": "x" }));
        let cursor: Option<Value> = host.run().cursor("s").unwrap();
        assert_eq!(cursor, Some(json!({ "last": "x" })));
        let full = host.clone().mode(Mode::FullRefresh);
        assert_eq!(full.run().cursor::<Value>("s").unwrap(), None);
        let once = TestHost::new().stream("s").single_use();
        assert!(!once.run().persists_state());
        assert!(host.run().persists_state());
        let wrong = TestHost::new().cursor("s", json!({ "last": 5 }));
        let err = wrong.run().cursor::<BTreeMap<String, String>>("s").unwrap_err();
        assert_eq!(err.code.as_deref(), Some("serialization_failed"));
    }

    #[test]
    fn messages_travel_in_batches_and_nothing_is_lost_at_the_end() {
        let host = TestHost::new().stream("s");
        let mut run = host.run();
        let full = crate::run::BATCH_MESSAGES as u64;
        for i in 0..full + 44 {
            run.record("s", i, &json!({ "id": i })).unwrap();
        }
        assert_eq!(host.batches(), 1, "{full} messages make a batch");
        assert_eq!(host.records("s").len() as u64, full);
        run.checkpoint("s", &json!({ "n": full + 44 })).unwrap();
        let done = host.finish(run, Ok(()));
        assert_eq!(host.batches(), 2);
        assert_eq!(host.records("s").len() as u64, full + 44);
        assert_eq!(done.records_emitted, full + 44);
        assert_eq!(host.checkpoint("s"), Some(Some(json!({ "n": full + 44 }))));
    }

    #[test]
    fn a_failure_is_done_failed_and_a_cancellation_done_cancelled() {
        let host = TestHost::new().stream("s");
        let mut run = host.run();
        run.record("s", "k", &json!({})).unwrap();
        let failure = Failure::new("down").code("upstream_unavailable").retryable(true);
        let done = host.finish(run, Err(failure.clone()));
        assert_eq!(done.status, DoneStatus::Failed);
        assert_eq!(done.error, Some(failure));
        assert_eq!(
            host.records("s").len(),
            1,
            "what was emitted before the failure still reaches the host"
        );
        let done = host.finish(host.run(), Err(Failure::cancelled("stopped")));
        assert_eq!(done.status, DoneStatus::Cancelled);
    }

    #[test]
    fn a_question_flushes_first_and_gets_the_owners_answer() {
        let host = TestHost::new()
            .stream("s")
            .answer(Answer::Success(json!({ "code": "123456" })))
            .answer(Answer::Cancelled);
        let mut run = host.run();
        run.record("s", "k", &json!({})).unwrap();
        let first = run.interact(Interaction::otp("code?").timeout_seconds(60));
        assert_eq!(
            host.records("s").len(),
            1,
            "the owner sees what came before the question"
        );
        assert_eq!(first, Ok(Answer::Success(json!({ "code": "123456" }))));
        assert_eq!(run.interact(Interaction::otp("again?")), Ok(Answer::Cancelled));
        assert_eq!(run.interact(Interaction::otp("and again?")), Ok(Answer::Timeout));
        assert_eq!(host.questions()[0].timeout_seconds, Some(60));
        assert!(run.has_binding("interactive"));

        let alone = TestHost::new();
        let refused = alone.run().interact(Interaction::otp("code?"));
        assert!(matches!(refused, Err(crate::InteractError::NotInteractive(_))));
    }

    #[test]
    fn secrets_are_placeholders_unless_revealable() {
        let host = TestHost::new()
            .secret("token", "tok-123")
            .revealable_secret("signing_key", "key-456");
        let run = host.run();
        let token = run.secret("token").unwrap();
        assert!(!token.placeholder().contains("tok-123"));
        assert!(!format!("{token:?}").contains("tok-123"), "Debug never shows a value");
        assert_eq!(token.reveal(), Err(SecretError::RevealNotPermitted("token".into())));
        assert_eq!(run.secret("signing_key").unwrap().reveal().unwrap(), "key-456");
        assert_eq!(
            run.secret("other").unwrap_err(),
            SecretError::NotDeclared("other".into())
        );
        assert_eq!(run.available_secrets(), ["signing_key", "token"]);
        run.info("hello");
        assert_eq!(host.logs(), [(Level::Info, "hello".to_owned())]);
    }

    #[test]
    fn skips_and_details_reach_the_host_as_written() {
        let host = TestHost::new().stream("s");
        let mut run = host.run();
        let skip = Skip {
            diagnostics: Some(json!({ "page": 3 })),
            ..Skip::stream("s", "rate_limited")
                .message("later")
                .recovery(Recovery::RetryByRuntime, Some(true))
        };
        run.skip(skip.clone()).unwrap();
        let gap = DetailGap {
            stream: "d".into(),
            record_key: "k".into(),
            last_error: Some(json!({ "status": 500 })),
            ..Default::default()
        };
        run.detail_gap(gap.clone()).unwrap();
        host.finish(run, Ok(()));
        assert_eq!(host.skips(), [skip]);
        assert!(host.emitted().contains(&Emitted::DetailGap(gap)));
    }

    struct Otp;
    impl Connector for Otp {
        fn run(run: &mut Run) -> Result<(), Failure> {
            match run.interact(Interaction::otp("code?")) {
                Ok(Answer::Success(_)) => run.record("s", "k", &json!({ "id": "k" })),
                _ => Err(Failure::new("no code").recovery(Recovery::ManualActionRequired)),
            }
        }
        fn validate_credential(probe: &Probe) -> Result<Account, ProbeError> {
            probe.secret("token")?;
            Ok(Account {
                identity: probe.setting("account").unwrap_or("none").into(),
                detail: None,
            })
        }
    }

    #[test]
    fn a_whole_connector_runs_and_probes_against_the_fake() {
        let host = TestHost::new()
            .stream("s")
            .answer(Answer::Success(json!({ "code": "1" })));
        let done = host.run_connector::<Otp>();
        assert_eq!((done.status, done.records_emitted), (DoneStatus::Succeeded, 1));
        let done = TestHost::new().stream("s").run_connector::<Otp>();
        assert_eq!(done.status, DoneStatus::Failed, "no owner, no code");

        let probe = TestHost::new()
            .settings(json!({ "account": "me" }))
            .secret("token", "t");
        assert_eq!(probe.probe_connector::<Otp>().unwrap().identity, "me");
        let without = TestHost::new().probe_connector::<Otp>();
        assert!(matches!(without, Err(ProbeError::Rejected(_))));
    }
}
