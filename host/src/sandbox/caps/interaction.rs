//! `pdpp:connector/interaction`: a blocking INTERACTION.
//!
//! The guest's call parks (an awaited future, not a thread) until the
//! runtime's hooks answer, the owner cancels the run, or the run's wall clock
//! runs out. The time parked is not guest CPU time. Whether anybody can answer
//! is the runtime's business: without the `interactive` binding its hooks
//! answer "not interactive" at once and the guest gets
//! `interaction-error::not-interactive`.
//!
//! Each question, answered or not, is kept by the runtime (its id, kind and
//! status) and costs timeline events, so a run may ask at most
//! `max_interactions` ([`Breach::Interactions`]) and each is charged to the
//! run's event budget; its id is bounded by the conversion.

use super::super::bindings::pdpp::connector::interaction;
use super::super::budget::RunBudget;
use super::super::control::{Cancelled, RunControl};
use super::super::convert;
use super::super::hooks::{Asked, HookError, SharedHooks};
use super::super::limits::Breach;
use super::super::state::{RunClock, ViolationSlot};
use super::browser::{BrowserState, Screenshot};
use super::secrets::SecretSet;
use std::time::Instant;
use wasmtime::component::{HasData, Linker};

/// The WIT interface this capability links (package/interface, no version).
pub(crate) const INTERFACES: &[&str] = &["pdpp:connector/interaction"];

/// The capability's per-run state: the size cap on a request's schema and
/// the questions left.
pub struct InteractionState {
    schema_bytes: usize,
    left: u64,
    budget: RunBudget,
}

impl InteractionState {
    pub(crate) fn new(schema_bytes: usize, max_interactions: u64, budget: RunBudget) -> Self {
        InteractionState {
            schema_bytes,
            left: max_interactions,
            budget,
        }
    }
}

/// What the interaction host implementation works on; the clock records the
/// time parked so it is not charged as guest time.
pub struct InteractionView<'a> {
    pub(crate) state: &'a mut InteractionState,
    pub(crate) hooks: &'a SharedHooks,
    pub(crate) violation: &'a mut ViolationSlot,
    pub(crate) control: &'a RunControl,
    pub(crate) clock: &'a mut RunClock,
    /// The run's browser: a question asked while it is open carries what it shows.
    pub(crate) browser: &'a mut BrowserState,
    /// The run's secrets: a `credentials` answer's secret fields go there,
    /// and the guest gets their placeholders.
    pub(crate) secrets: &'a SecretSet,
}

struct Interaction;
impl HasData for Interaction {
    type Data<'a> = InteractionView<'a>;
}

/// Link `pdpp:connector/interaction`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> InteractionView<'_>,
) -> wasmtime::Result<()> {
    interaction::add_to_linker::<T, Interaction>(linker, get)
}

impl interaction::Host for InteractionView<'_> {
    async fn ask(
        &mut self,
        req: interaction::Request,
    ) -> wasmtime::Result<Result<interaction::Response, interaction::InteractionError>> {
        self.control.check()?;
        if self.state.left == 0 {
            return Err(wasmtime::Error::new(Breach::Interactions));
        }
        self.state.left -= 1;
        // Asked and answered (or refused): two timeline events.
        self.state.budget.events(2).map_err(wasmtime::Error::new)?;
        let request = convert::interaction(req, self.state.schema_bytes).map_err(|v| self.violation.stop(v))?;
        let parked = Instant::now();
        let manual = request.kind == crate::protocol::InteractionKind::ManualAction;
        let credentials = request.kind == crate::protocol::InteractionKind::Credentials;
        let schema = request.schema.clone().filter(|_| credentials);
        let screenshot = match self.browser.screenshot_for_question(manual, self.clock.wall_deadline) {
            Screenshot::Ready(s) => s,
            Screenshot::Taking(taking) => taking.await,
        };
        let remaining = self.clock.wall_deadline.saturating_duration_since(Instant::now());
        let control = self.control;
        let answer = {
            let mut hooks = self.hooks.lock().await;
            tokio::select! {
                a = tokio::time::timeout(remaining, hooks.interact(request, screenshot)) => a,
                () = control.cancelled() => {
                    self.clock.parked_for_owner(parked.elapsed());
                    return Err(wasmtime::Error::new(Cancelled { forced: false }));
                }
            }
        };
        self.clock.parked_for_owner(parked.elapsed());
        match answer {
            Err(_) => Err(wasmtime::Error::new(Breach::WallClock)),
            Ok(Err(HookError::Violation(v))) => Err(self.violation.stop(v)),
            Ok(Err(HookError::HostFault(f))) => Err(wasmtime::Error::new(f)),
            Ok(Ok(Asked::NotInteractive(what))) => Ok(Err(interaction::InteractionError::NotInteractive(what))),
            Ok(Ok(Asked::Answer(mut a))) => {
                if let Some(data) = a.data.as_mut().filter(|_| credentials) {
                    self.secrets.adopt_answer(data, schema.as_ref());
                }
                Ok(Ok(convert::response(a)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::hooks::{lend, recording::Recorder};
    use super::interaction::Host;
    use super::*;
    use crate::protocol as p;
    use std::time::Duration;

    fn request() -> interaction::Request {
        interaction::Request {
            request_id: "otp-1".into(),
            kind: interaction::InteractionKind::Otp,
            stream: None,
            message: "enter the code".into(),
            schema: None,
            timeout_seconds: None,
        }
    }

    struct Fixture {
        state: InteractionState,
        violation: ViolationSlot,
        control: RunControl,
        clock: RunClock,
        browser: BrowserState,
        secrets: SecretSet,
    }

    impl Fixture {
        fn new(wall: Duration) -> Self {
            Fixture {
                state: InteractionState::new(1024, 4, RunBudget::new(1 << 20, 100)),
                violation: ViolationSlot::default(),
                control: RunControl::new(),
                clock: RunClock::new(Instant::now(), wall, Duration::from_secs(60)),
                browser: BrowserState::none(),
                secrets: SecretSet::new([("password".to_owned(), false)], []),
            }
        }

        fn view<'a>(&'a mut self, hooks: &'a SharedHooks) -> InteractionView<'a> {
            InteractionView {
                state: &mut self.state,
                hooks,
                violation: &mut self.violation,
                control: &self.control,
                clock: &mut self.clock,
                browser: &mut self.browser,
                secrets: &self.secrets,
            }
        }
    }

    #[tokio::test]
    async fn without_an_owner_the_guest_is_told_at_once_that_nobody_can_answer() {
        let (lent, hooks) = lend(Recorder {
            answer: Some(Asked::NotInteractive("no interactive binding".into())),
            ..Recorder::default()
        });
        let mut f = Fixture::new(Duration::from_secs(60));
        match f.view(&hooks).ask(request()).await.unwrap() {
            Err(interaction::InteractionError::NotInteractive(what)) => assert_eq!(what, "no interactive binding"),
            _ => panic!("not interactive"),
        }
        drop(hooks);
        let back = lent.take_back();
        assert_eq!(back.asked[0].kind, p::InteractionKind::Otp);
        assert_eq!(
            back.screenshots,
            [None],
            "without a browser a question carries no screenshot"
        );
    }

    #[tokio::test]
    async fn time_parked_for_the_owner_is_owner_wait_not_guest_time() {
        let (_lent, hooks) = lend(Recorder::default());
        let mut f = Fixture::new(Duration::from_millis(150));
        let err = f.view(&hooks).ask(request()).await.unwrap_err();
        assert_eq!(err.downcast_ref::<Breach>(), Some(&Breach::WallClock));
        assert!(
            f.clock.owner_wait >= Duration::from_millis(100),
            "{:?}",
            f.clock.owner_wait
        );
        assert_eq!(f.clock.owner_wait, f.clock.blocked);
    }

    #[tokio::test]
    async fn interactions_are_bounded_per_run_even_when_nobody_can_answer() {
        let (lent, hooks) = lend(Recorder {
            answer: Some(Asked::NotInteractive("no interactive binding".into())),
            ..Recorder::default()
        });
        let mut f = Fixture::new(Duration::from_secs(60));
        for _ in 0..4 {
            assert!(f.view(&hooks).ask(request()).await.unwrap().is_err());
        }
        let err = f.view(&hooks).ask(request()).await.unwrap_err();
        assert_eq!(err.downcast_ref::<Breach>(), Some(&Breach::Interactions));
        drop(hooks);
        assert_eq!(
            lent.take_back().asked.len(),
            4,
            "the question past the limit reaches nobody"
        );
    }

    #[tokio::test]
    async fn interaction_request_id_is_bounded() {
        let (lent, hooks) = lend(Recorder {
            answer: Some(Asked::NotInteractive("no".into())),
            ..Recorder::default()
        });
        let mut f = Fixture::new(Duration::from_secs(60));
        let mut req = request();
        req.request_id = "i".repeat(1 << 20);
        let err = f.view(&hooks).ask(req).await.unwrap_err();
        let v = err.downcast_ref::<super::super::super::Violation>().unwrap();
        assert_eq!(v.rule, "message_field_size");
        assert!(v.message.len() < 200, "the id is not quoted: {}", v.message);
        drop(hooks);
        assert!(lent.take_back().asked.is_empty());
    }

    #[tokio::test]
    async fn an_answer_reaches_the_guest() {
        let (_lent, hooks) = lend(Recorder {
            answer: Some(Asked::Answer(p::InteractionAnswer {
                status: p::InteractionStatus::Cancelled,
                data: None,
            })),
            ..Recorder::default()
        });
        let mut f = Fixture::new(Duration::from_secs(60));
        assert!(matches!(
            f.view(&hooks).ask(request()).await.unwrap(),
            Ok(interaction::Response::Cancelled)
        ));
    }

    #[tokio::test]
    async fn a_credentials_answer_reaches_the_guest_as_handles_not_values() {
        let (_lent, hooks) = lend(Recorder {
            answer: Some(Asked::Answer(p::InteractionAnswer {
                status: p::InteractionStatus::Success,
                data: Some(serde_json::json!({ "password": "hunter2-answered", "remember": true })),
            })),
            ..Recorder::default()
        });
        let mut f = Fixture::new(Duration::from_secs(60));
        let mut req = request();
        req.kind = interaction::InteractionKind::Credentials;
        let Ok(interaction::Response::Success(json)) = f.view(&hooks).ask(req).await.unwrap() else {
            panic!("answered");
        };
        assert!(!json.contains("hunter2-answered"), "{json}");
        assert!(json.contains(&f.secrets.placeholder("password")), "{json}");
        assert_eq!(f.secrets.value("password").unwrap().as_str(), "hunter2-answered");
    }

    #[tokio::test]
    async fn cancelling_the_run_ends_a_parked_interaction() {
        // Nobody answers: only the cancellation can end the wait.
        let (_lent, hooks) = lend(Recorder::default());
        let mut f = Fixture::new(Duration::from_secs(3600));
        let control = f.control.clone();
        let cancel = tokio::spawn(async move {
            tokio::task::yield_now().await;
            control.cancel();
        });
        let err = f.view(&hooks).ask(request()).await.unwrap_err();
        cancel.await.unwrap();
        assert_eq!(err.downcast_ref::<Cancelled>(), Some(&Cancelled { forced: false }));
    }

    #[tokio::test]
    async fn a_cancelled_run_asks_nobody() {
        let (lent, hooks) = lend(Recorder::default());
        let mut f = Fixture::new(Duration::from_secs(60));
        f.control.cancel();
        let err = f.view(&hooks).ask(request()).await.unwrap_err();
        assert!(err.downcast_ref::<Cancelled>().is_some());
        drop(hooks);
        assert!(lent.take_back().asked.is_empty());
    }

    #[tokio::test]
    async fn a_schema_that_is_not_json_is_a_violation_kept_in_the_slot() {
        let (_lent, hooks) = lend(Recorder {
            answer: Some(Asked::Answer(p::InteractionAnswer::timeout())),
            ..Recorder::default()
        });
        let mut f = Fixture::new(Duration::from_secs(60));
        let mut bad = request();
        bad.schema = Some("{".into());
        let err = f.view(&hooks).ask(bad).await.unwrap_err();
        assert_eq!(
            err.downcast_ref::<super::super::super::Violation>().unwrap().rule,
            "interaction_schema_json"
        );
        assert_eq!(f.violation.get().unwrap().rule, "interaction_schema_json");
    }

    #[tokio::test]
    async fn an_interaction_the_host_cannot_record_is_a_host_fault_not_a_violation() {
        let (_lent, hooks) = lend(Recorder {
            interact_fault: Some("cannot record the interaction: database unavailable".into()),
            ..Recorder::default()
        });
        let mut f = Fixture::new(Duration::from_secs(60));
        let err = f.view(&hooks).ask(request()).await.unwrap_err();
        assert_eq!(
            err.downcast_ref::<super::super::super::HostFault>().unwrap().0,
            "cannot record the interaction: database unavailable"
        );
        assert!(f.violation.get().is_none());
    }
}
