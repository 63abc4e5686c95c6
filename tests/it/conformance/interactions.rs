//! INTERACTION handling, with and without the interactive binding.

use super::*;
use crate::on_both_backends;
use pdpp_host::protocol::{Interaction, InteractionAnswer};
use pdpp_host::runtime::InteractionHandler;
use pdpp_host::sandbox::RunControl;
use std::time::Duration;

struct Answers(InteractionAnswer);

#[async_trait::async_trait]
impl InteractionHandler for Answers {
    async fn answer(&self, _req: &Interaction) -> InteractionAnswer {
        self.0.clone()
    }
}

struct Never;

#[async_trait::async_trait]
impl InteractionHandler for Never {
    async fn answer(&self, _req: &Interaction) -> InteractionAnswer {
        std::future::pending().await
    }
}

/// Cancels the run when it asks, then never answers.
struct CancelWhenAsked(RunControl);

#[async_trait::async_trait]
impl InteractionHandler for CancelWhenAsked {
    async fn answer(&self, _req: &Interaction) -> InteractionAnswer {
        self.0.cancel();
        std::future::pending().await
    }
}

pub fn answering(a: InteractionAnswer) -> Arc<dyn InteractionHandler> {
    Arc::new(Answers(a))
}

fn ask(kind: &str, timeout: Option<u64>) -> Value {
    let mut m = json!({ "type": "INTERACTION", "kind": kind, "message": "Enter the code we sent",
                        "schema": { "type": "object", "properties": { "code": { "type": "string" } } } });
    if let Some(t) = timeout {
        m["timeout_seconds"] = json!(t);
    }
    m
}

fn reported(p: &Played) -> String {
    p.t.messages()
        .into_iter()
        .find_map(|m| match m {
            p::Message::Progress(g) if g.message.starts_with("interaction") => Some(g.message),
            _ => None,
        })
        .expect("the script reports what it was answered")
}

fn with(handler: Arc<dyn InteractionHandler>) -> ConnectionRun {
    let mut opts = ConnectionRun::new(Trigger::Manual);
    opts.interaction = Some(handler);
    opts
}

on_both_backends! {
    /// The answer reaches the connector and nothing else: not the timeline,
    /// not the interactions table, not any stored byte.
    async fn interaction_success_answer_reaches_only_the_connector(t: TestDeployment) {
        let h = answering(InteractionAnswer::success(json!({ "code": "735194" })));
        let script = vec![ask("otp", Some(300)), json!({ "type": "PROGRESS", "message": "after" }), done()];
        let p = play_opts(&t, manifest(&["a"]), script, with(h)).await;
        assert!(p.out.succeeded());
        assert_eq!(reported(&p), r#"interaction success {"code":"735194"}"#);
        assert!(p.kinds().contains(&"run.interaction_required"));
        let completed = p.events.iter().find(|e| e.kind == "run.interaction_completed").unwrap();
        assert_eq!(completed.data["status"], "success");
        assert_eq!(t.dep.store.interactions(&p.out.run_id).await.unwrap(), [("otp".to_string(), "answered".to_string())]);
        // The script echoed the answer into a PROGRESS message it chose to send; every host-made record is clean.
        let host_made: String = p.events.iter().filter(|e| e.kind != "run.progress_reported").map(|e| e.data.to_string()).collect();
        assert!(!host_made.contains("735194"));
        let response = p.t.messages().into_iter().find_map(|m| match m {
            p::Message::InteractionResponse(r) => Some(r),
            _ => None,
        });
        assert_eq!(response.unwrap().status, p::InteractionStatus::Success);
    }
}

on_both_backends! {
    async fn interaction_timeout_answers_timeout_and_the_run_can_succeed(t: TestDeployment) {
        let p = play_opts(&t, manifest(&["a"]), vec![ask("otp", Some(1)), done()], with(Arc::new(Never))).await;
        assert!(p.out.succeeded());
        assert_eq!(reported(&p), "interaction timeout");
        assert_eq!(t.dep.store.interactions(&p.out.run_id).await.unwrap()[0].1, "timed_out");
        let completed = p.events.iter().find(|e| e.kind == "run.interaction_completed").unwrap();
        assert_eq!(completed.data["status"], "timeout");
    }
}

on_both_backends! {
    async fn cancelled_manual_action_reaches_the_connector_with_a_manual_action_gap(t: TestDeployment) {
        let cancel = json!({ "type": "DONE", "status": "cancelled", "error": { "message": "owner declined" } });
        let p = play_opts(&t, manifest(&["a"]), vec![ask("manual_action", None), cancel],
                          with(answering(InteractionAnswer::cancelled()))).await;
        assert_eq!(reported(&p), "interaction cancelled");
        assert_eq!(p.out.status, p::DoneStatus::Cancelled);
        let g = &p.out.known_gaps[0];
        assert_eq!(g.kind, "interaction_required");
        assert!(g.message.contains("manual_action_required"), "{}", g.message);
    }
}

on_both_backends! {
    async fn cancelled_credentials_interaction_suggests_refreshing_credentials(t: TestDeployment) {
        let p = play_opts(&t, manifest(&["a"]), vec![ask("credentials", None), done()],
                          with(answering(InteractionAnswer::cancelled()))).await;
        assert!(p.out.known_gaps[0].message.contains("refresh_credentials"));
        assert_eq!(t.dep.store.interactions(&p.out.run_id).await.unwrap()[0].1, "cancelled");
    }
}

on_both_backends! {
    /// Without the interactive binding the call returns at once, naming what
    /// is missing; nothing is recorded as an interaction.
    async fn interaction_without_the_interactive_binding_fails_fast_and_records_no_interaction(t: TestDeployment) {
        let fail = json!({ "type": "DONE", "status": "failed", "error": { "message": "needs an otp", "code": "interaction_required" } });
        let p = play(&t, manifest(&["a"]), vec![ask("otp", Some(600)), fail]).await;
        let r = reported(&p);
        assert!(r.starts_with("interaction unavailable") && r.contains("interactive") && r.contains("otp"), "{r}");
        assert!(t.dep.store.interactions(&p.out.run_id).await.unwrap().is_empty());
        assert!(!p.kinds().contains(&"run.interaction_required"));
        assert_eq!(p.reason(), Some("connector_reported_failed"));
        assert!(p.out.usage.wall < Duration::from_secs(600), "it did not wait for the timeout");
    }
}

on_both_backends! {
    async fn owner_cancellation_while_waiting_for_an_answer_cancels_the_run(t: TestDeployment) {
        // The owner cancels once the question is asked, however long the
        // run took to get there.
        let mut opts = with(Arc::new(Never));
        opts.interaction = Some(Arc::new(CancelWhenAsked(opts.control.clone())));
        let p = play_opts(&t, manifest(&["a"]), vec![state("a", json!({})), ask("otp", None), done()], opts).await;
        assert_eq!(p.out.status, p::DoneStatus::Cancelled);
        assert_eq!(p.reason(), Some("owner_cancelled"));
        assert!(p.committed().is_empty());
        assert_eq!(t.dep.store.interactions(&p.out.run_id).await.unwrap()[0].1, "cancelled",
                   "a run that ended leaves no interaction pending");
    }
}

on_both_backends! {
    async fn run_waiting_for_the_owner_past_its_wall_clock_fails_typed(t: TestDeployment) {
        let mut opts = with(Arc::new(Never));
        opts.limits.wall_clock = Duration::from_millis(300);
        let p = play_opts(&t, manifest(&["a"]), vec![ask("otp", None), done()], opts).await;
        assert_eq!(p.reason(), Some("wall_clock_limit"));
    }
}
