//! `pdpp:connector/emit`: RECORD, STATE, PROGRESS, SKIP_RESULT,
//! DETAIL_COVERAGE and DETAIL_GAP, in batches.
//!
//! A batch is counted against the run's record limit before anything in it is
//! looked at, converted message by message (each JSON field capped at the
//! message size) and handed to the runtime's hooks in order; the end of the
//! batch asks the hooks to make it durable. The first violation stops the
//! guest and is kept: a guest that calls again after one gets the same
//! violation without the hooks seeing anything more.
//!
//! What the host holds for a batch is charged to the run's budget: the
//! lowered batch while it is converted, handed over and written, and for good the
//! messages the runtime keeps until the run ends (SKIP_RESULT,
//! DETAIL_COVERAGE, DETAIL_GAP). Every message but a RECORD, and every batch
//! of records, is one timeline event of the run's event budget.

use super::super::bindings::pdpp::connector::emit;
use super::super::budget::RunBudget;
use super::super::control::RunControl;
use super::super::convert;
use super::super::hooks::SharedHooks;
use super::super::limits::Breach;
use super::super::state::ViolationSlot;
use wasmtime::component::{HasData, Linker};

/// The WIT interface this capability links (package/interface, no version).
pub(crate) const INTERFACES: &[&str] = &["pdpp:connector/emit"];

/// The capability's per-run state: the record count and the limits it is held to.
pub struct EmitState {
    message_bytes: usize,
    max_records: u64,
    records: u64,
    budget: RunBudget,
}

impl EmitState {
    /// `message_bytes` caps each JSON field of a message; `max_records` the
    /// RECORDs of the run; `budget` is charged what the host holds.
    pub(crate) fn new(message_bytes: usize, max_records: u64, budget: RunBudget) -> Self {
        EmitState {
            message_bytes,
            max_records,
            records: 0,
            budget,
        }
    }
}

/// What the emit host implementation works on.
pub struct EmitView<'a> {
    pub(crate) state: &'a mut EmitState,
    pub(crate) hooks: &'a SharedHooks,
    pub(crate) violation: &'a mut ViolationSlot,
    pub(crate) control: &'a RunControl,
}

struct Emit;
impl HasData for Emit {
    type Data<'a> = EmitView<'a>;
}

/// Link `pdpp:connector/emit`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> EmitView<'_>,
) -> wasmtime::Result<()> {
    emit::add_to_linker::<T, Emit>(linker, get)
}

impl emit::Host for EmitView<'_> {
    async fn send(&mut self, batch: Vec<emit::Message>) -> wasmtime::Result<()> {
        self.control.check()?;
        if let Some(v) = self.violation.get() {
            return Err(wasmtime::Error::new(v.clone()));
        }
        let records = batch.iter().filter(|m| matches!(m, emit::Message::Record(_))).count() as u64;
        self.state.records += records;
        if self.state.records > self.state.max_records {
            return Err(wasmtime::Error::new(Breach::Records));
        }
        let budget = &self.state.budget;
        let held: u64 = if super::super::budget::hardening() {
            batch.iter().map(|m| convert::message_size(m) as u64).sum()
        } else {
            0
        };
        let charge = budget.hold(held).map_err(wasmtime::Error::new)?;
        let events = batch.len() as u64 - records + u64::from(records > 0);
        budget.events(events).map_err(wasmtime::Error::new)?;
        let mut hooks = self.hooks.lock().await;
        for msg in batch {
            if matches!(
                msg,
                emit::Message::SkipResult(_) | emit::Message::DetailCoverage(_) | emit::Message::DetailGap(_)
            ) {
                budget
                    .keep(convert::message_size(&msg) as u64)
                    .map_err(wasmtime::Error::new)?;
            }
            let msg = convert::message(msg, self.state.message_bytes).map_err(|v| self.violation.stop(v))?;
            if let Err(v) = hooks.message(msg) {
                return Err(self.violation.stop(v));
            }
        }
        hooks.end_batch(charge).await.map_err(wasmtime::Error::new)
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::bindings::wit;
    use super::super::super::hooks::{lend, recording::Recorder};
    use super::super::super::{Cancelled, HostFault, Violation};
    use super::emit::Host;
    use super::*;
    use crate::protocol as p;

    fn record(stream: &str, id: &str) -> emit::Message {
        emit::Message::Record(wit::DataRecord {
            stream: stream.into(),
            key: wit::RecordKey::Single(id.into()),
            op: wit::RecordOp::Upsert,
            data: Some(format!(r#"{{"id":"{id}"}}"#)),
            emitted_at: "2026-01-01T00:00:00Z".into(),
        })
    }

    fn state(message: &str) -> emit::Message {
        emit::Message::State(wit::Checkpoint {
            stream: "items".into(),
            cursor: Some(message.into()),
        })
    }

    struct Fixture {
        state: EmitState,
        violation: ViolationSlot,
        control: RunControl,
    }

    impl Fixture {
        fn new(max_records: u64) -> Self {
            Fixture {
                state: EmitState::new(1024, max_records, RunBudget::new(1 << 20, 100)),
                violation: ViolationSlot::default(),
                control: RunControl::new(),
            }
        }

        fn view<'a>(&'a mut self, hooks: &'a SharedHooks) -> EmitView<'a> {
            EmitView {
                state: &mut self.state,
                hooks,
                violation: &mut self.violation,
                control: &self.control,
            }
        }
    }

    #[tokio::test]
    async fn a_batch_reaches_the_hooks_in_order_and_ends_once() {
        let (lent, hooks) = lend(Recorder::default());
        let mut f = Fixture::new(10);
        f.view(&hooks)
            .send(vec![record("items", "a"), state(r#"{"page":2}"#), record("items", "b")])
            .await
            .unwrap();
        drop(hooks);
        let seen = lent.take_back();
        assert_eq!(seen.batches, 1);
        let kinds: Vec<_> = seen.messages.iter().map(p::Message::type_name).collect();
        assert_eq!(kinds, ["RECORD", "STATE", "RECORD"]);
        assert_eq!(f.state.records, 2);
    }

    #[tokio::test]
    async fn the_first_violation_stops_the_guest_and_sticks() {
        let (lent, hooks) = lend(Recorder {
            refuse_stream: Some(("secret_stream", "record_stream_in_scope")),
            ..Recorder::default()
        });
        let mut f = Fixture::new(10);
        let err = f
            .view(&hooks)
            .send(vec![
                record("items", "a"),
                record("secret_stream", "b"),
                record("items", "c"),
            ])
            .await
            .unwrap_err();
        assert_eq!(err.downcast_ref::<Violation>().unwrap().rule, "record_stream_in_scope");
        assert_eq!(f.violation.get().unwrap().rule, "record_stream_in_scope");
        let again = f.view(&hooks).send(vec![record("items", "d")]).await.unwrap_err();
        assert_eq!(
            again.downcast_ref::<Violation>().unwrap().rule,
            "record_stream_in_scope"
        );
        drop(hooks);
        let seen = lent.take_back();
        assert_eq!(seen.messages.len(), 1, "nothing after the violation reaches the hooks");
        assert_eq!(seen.batches, 0, "a batch that broke a rule never ends");
    }

    #[tokio::test]
    async fn a_message_that_is_not_json_is_a_violation_kept_in_the_slot() {
        let (_lent, hooks) = lend(Recorder::default());
        let mut f = Fixture::new(10);
        let err = f.view(&hooks).send(vec![state("{not json")]).await.unwrap_err();
        assert_eq!(err.downcast_ref::<Violation>().unwrap().rule, "state_cursor_json");
        assert_eq!(f.violation.get().unwrap().rule, "state_cursor_json");
    }

    #[tokio::test]
    async fn records_past_the_run_limit_are_a_record_limit_breach_before_any_reaches_the_hooks() {
        let (lent, hooks) = lend(Recorder::default());
        let mut f = Fixture::new(2);
        f.view(&hooks).send(vec![record("items", "a")]).await.unwrap();
        let err = f
            .view(&hooks)
            .send(vec![record("items", "b"), record("items", "c")])
            .await
            .unwrap_err();
        assert_eq!(err.downcast_ref::<Breach>(), Some(&Breach::Records));
        drop(hooks);
        assert_eq!(lent.take_back().messages.len(), 1);
    }

    fn progress(message: &str) -> emit::Message {
        emit::Message::Progress(wit::Progress {
            stream: None,
            message: message.into(),
            count: None,
            total: None,
        })
    }

    #[tokio::test]
    async fn progress_and_timeline_events_are_bounded_by_the_event_budget() {
        let (lent, hooks) = lend(Recorder::default());
        let mut f = Fixture::new(10);
        f.state.budget = RunBudget::new(1 << 20, 3);
        f.view(&hooks).send(vec![progress("a"), progress("b")]).await.unwrap();
        // Records count once per batch, whatever their number.
        f.view(&hooks)
            .send(vec![record("items", "a"), record("items", "b")])
            .await
            .unwrap();
        let err = f.view(&hooks).send(vec![progress("c")]).await.unwrap_err();
        assert_eq!(err.downcast_ref::<Breach>(), Some(&Breach::Events));
        drop(hooks);
        assert_eq!(lent.take_back().messages.len(), 4);
    }

    #[tokio::test]
    async fn a_batch_is_charged_to_the_run_budget_while_the_host_holds_it() {
        let (lent, hooks) = lend(Recorder::default());
        let mut f = Fixture::new(10);
        f.state.budget = RunBudget::new(2048, 100);
        let big = emit::Message::Record(wit::DataRecord {
            stream: "items".into(),
            key: wit::RecordKey::Single("a".into()),
            op: wit::RecordOp::Upsert,
            data: Some(format!(r#"{{"id":"{}"}}"#, "x".repeat(900))),
            emitted_at: "2026-01-01T00:00:00Z".into(),
        });
        f.view(&hooks).send(vec![big.clone()]).await.unwrap();
        assert_eq!(f.state.budget.used(), 0, "released when the batch is done");
        let err = f
            .view(&hooks)
            .send(vec![big.clone(), big.clone(), big])
            .await
            .unwrap_err();
        assert_eq!(err.downcast_ref::<Breach>(), Some(&Breach::Memory));
        drop(hooks);
        assert_eq!(lent.take_back().messages.len(), 1);
    }

    #[tokio::test]
    async fn every_guest_chosen_field_is_bounded() {
        let huge = "k".repeat(1 << 20);
        let cases = [
            (
                "RECORD key",
                emit::Message::Record(wit::DataRecord {
                    stream: "items".into(),
                    key: wit::RecordKey::Single(huge.clone()),
                    op: wit::RecordOp::Upsert,
                    data: None,
                    emitted_at: "2026-01-01T00:00:00Z".into(),
                }),
            ),
            (
                "RECORD emitted_at",
                emit::Message::Record(wit::DataRecord {
                    stream: "items".into(),
                    key: wit::RecordKey::Single("a".into()),
                    op: wit::RecordOp::Upsert,
                    data: None,
                    emitted_at: huge.clone(),
                }),
            ),
            ("RECORD stream", record(&huge, "a")),
            ("PROGRESS message", progress(&huge)),
        ];
        for (what, msg) in cases {
            let (lent, hooks) = lend(Recorder::default());
            let mut f = Fixture::new(10);
            f.state.message_bytes = 4 << 20;
            f.state.budget = RunBudget::new(64 << 20, 100);
            let err = f.view(&hooks).send(vec![msg]).await.unwrap_err();
            let v = err.downcast_ref::<Violation>().unwrap();
            assert_eq!(v.rule, "message_field_size", "{what}");
            assert!(
                v.message.starts_with(what) && v.message.len() < 200,
                "{what}: {}",
                v.message
            );
            drop(hooks);
            assert!(lent.take_back().messages.is_empty(), "{what}");
        }
    }

    #[tokio::test]
    async fn a_batch_the_host_cannot_keep_is_a_host_fault() {
        let (_lent, hooks) = lend(Recorder {
            fault: Some("database unavailable".into()),
            ..Recorder::default()
        });
        let mut f = Fixture::new(10);
        let err = f.view(&hooks).send(vec![record("items", "a")]).await.unwrap_err();
        assert_eq!(
            err.downcast_ref::<HostFault>(),
            Some(&HostFault("database unavailable".into()))
        );
        assert!(f.violation.get().is_none(), "a host fault is not the guest's violation");
    }

    #[tokio::test]
    async fn a_cancelled_run_stops_at_its_next_batch() {
        let (lent, hooks) = lend(Recorder::default());
        let mut f = Fixture::new(10);
        f.control.cancel();
        let err = f.view(&hooks).send(vec![record("items", "a")]).await.unwrap_err();
        assert_eq!(err.downcast_ref::<Cancelled>(), Some(&Cancelled { forced: false }));
        drop(hooks);
        assert!(lent.take_back().messages.is_empty());
    }
}
