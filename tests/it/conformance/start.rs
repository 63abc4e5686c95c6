//! START construction and binding matching.

use super::*;
use crate::on_both_backends;
use pdpp_host::protocol::{StreamScope, TimeRange};
use pdpp_host::runtime::{self, RunRequest, StartError, StateInput};

fn start_of(p: &Played) -> p::Start {
    match p.t.messages().into_iter().next() {
        Some(p::Message::Start(s)) => s,
        other => panic!("START first, got {other:?}"),
    }
}

on_both_backends! {
    async fn start_echoes_scope_mode_state_and_bindings(t: TestDeployment) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.streams = Some(vec![StreamScope { name: "a".into(), fields: Some(vec!["id".into()]), resources: None,
            time_range: Some(TimeRange { since: Some("2026-01-01T00:00:00Z".into()), until: None }) }]);
        let p = play_opts(&t, manifest(&["a", "b"]), vec![done()], opts).await;
        let s = start_of(&p);
        assert_eq!(s.collection_mode, p::CollectionMode::Incremental);
        assert_eq!(s.scope.streams.len(), 1);
        assert_eq!(s.scope.streams[0].time_range.as_ref().unwrap().since.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(s.state, Some(StateMap::new()), "persisted run, nothing committed yet");
        assert!(s.bindings.is_empty(), "no handler: nothing advertised");
    }
}

on_both_backends! {
    async fn start_state_is_the_prior_committed_state(t: TestDeployment) {
        let m = manifest(&["a"]);
        let conn = t.connection(&m, json!({ "script": [rec("a", "1"), state("a", json!({"n": 1})), done()] }), None).await;
        play_on(&t, m.clone(), &conn, ConnectionRun::new(Trigger::Manual)).await.unwrap();
        let second = play_on(&t, m, &conn, ConnectionRun::new(Trigger::Scheduled)).await.unwrap();
        assert_eq!(start_of(&second).state.unwrap()["a"], json!({"n": 1}));
    }
}

on_both_backends! {
    async fn single_use_start_state_is_none_and_commit_is_disabled(t: TestDeployment) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.namespace = None;
        let p = play_opts(&t, manifest(&["a"]), vec![rec("a", "1"), state("a", json!({"n": 1})), done()], opts).await;
        assert!(p.out.succeeded());
        assert_eq!(start_of(&p).state, None);
        assert!(t.dep.store.state(&p.conn, &Namespace::Global).await.unwrap().is_empty());
        assert_eq!(p.terminal().data["checkpoint_commit_status"], "disabled");
    }
}

on_both_backends! {
    async fn empty_scope_is_refused_before_start(t: TestDeployment) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.streams = Some(vec![]);
        assert!(matches!(refused(&t, manifest(&["a"]), opts).await, RunRefused::Start(StartError::EmptyScope)));
    }
}

on_both_backends! {
    async fn wildcard_scope_stream_is_refused_before_start(t: TestDeployment) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.streams = Some(vec![StreamScope::named("*")]);
        assert!(matches!(refused(&t, manifest(&["a"]), opts).await, RunRefused::Start(StartError::Wildcard(_))));
    }
}

on_both_backends! {
    async fn undeclared_scope_stream_is_refused_before_start(t: TestDeployment) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.streams = Some(vec![StreamScope::named("ghost")]);
        let e = refused(&t, manifest(&["a"]), opts).await;
        assert!(matches!(e, RunRefused::Start(StartError::UnknownStream(ref s)) if s == "ghost"), "{e}");
    }
}

on_both_backends! {
    async fn duplicate_scope_stream_is_refused_before_start(t: TestDeployment) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.streams = Some(vec![StreamScope::named("a"), StreamScope::named("a")]);
        assert!(matches!(refused(&t, manifest(&["a"]), opts).await, RunRefused::Start(StartError::DuplicateStream(_))));
    }
}

on_both_backends! {
    async fn start_fields_add_required_key_cursor_and_consent_time_fields(t: TestDeployment) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.streams = Some(vec![StreamScope { name: "a".into(), fields: Some(vec!["value".into()]), resources: None,
            time_range: Some(TimeRange { since: Some("2026-01-01".into()), until: None }) }]);
        let p = play_opts(&t, manifest(&["a"]), vec![done()], opts).await;
        assert_eq!(start_of(&p).scope.streams[0].fields.as_deref().unwrap(), ["value", "id", "updated_at"]);
    }
}

on_both_backends! {
    async fn required_binding_the_runtime_cannot_satisfy_is_refused_before_instantiation(t: TestDeployment) {
        let m = manifest_with(vec![stream("a", json!({}))],
            json!({ "runtime_requirements": { "bindings": { "browser_automation": { "required": true } } } }));
        let e = refused(&t, m, ConnectionRun::new(Trigger::Manual)).await;
        assert!(matches!(e, RunRefused::Start(StartError::UnsatisfiedBinding(ref b)) if b == "browser_automation"), "{e}");
        assert!(e.to_string().contains("binding"));
    }
}

on_both_backends! {
    async fn required_interactive_binding_with_a_handler_is_advertised_in_start(t: TestDeployment) {
        let m = manifest_with(vec![stream("a", json!({}))],
            json!({ "runtime_requirements": { "bindings": { "interactive": { "required": true } } } }));
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.interaction = Some(interactions::answering(p::InteractionAnswer::cancelled()));
        let p = play_opts(&t, m.clone(), vec![done()], opts).await;
        assert!(p.out.succeeded());
        assert_eq!(start_of(&p).bindings.get("interactive"), Some(&json!({})));
        // Without a handler the same manifest cannot run.
        let e = refused(&t, m, ConnectionRun::new(Trigger::Manual)).await;
        assert!(matches!(e, RunRefused::Start(StartError::UnsatisfiedBinding(ref b)) if b == "interactive"));
    }
}

#[tokio::test]
async fn start_state_that_is_not_an_object_per_stream_is_refused() {
    let mut req = RunRequest::new(manifest(&["a"]));
    req.state = StateInput::Persisted([("a".to_string(), json!(5))].into_iter().collect());
    let e = runtime::execute(sandbox(), script(), req, None, Box::new(Transcript::default()), None)
        .await
        .unwrap_err();
    assert_eq!(e, StartError::InvalidState("a".into()));
}

on_both_backends! {
    async fn paused_connection_is_refused_before_start(t: TestDeployment) {
        let m = manifest(&["a"]);
        let conn = t.connection(&m, json!({ "script": [done()] }), None).await;
        t.dep.store.set_connection_status(&conn, pdpp_host::store::ConnectionStatus::Paused).await.unwrap();
        let e = play_on(&t, m, &conn, ConnectionRun::new(Trigger::Scheduled)).await.err().unwrap();
        assert_eq!(e.reason(), "connection_not_runnable");
        let runs = t.dep.store.connection(&conn).await.unwrap().unwrap();
        assert_eq!(runs.status, pdpp_host::store::ConnectionStatus::Paused);
    }
}

on_both_backends! {
    /// Deployment capabilities satisfy required bindings, by profile name or
    /// by the reference implementation's alias, and START carries their descriptors.
    async fn required_bindings_match_deployment_capabilities_and_aliases(t: TestDeployment) {
        let m = manifest_with(vec![stream("a", json!({}))], json!({ "runtime_requirements": { "bindings": {
            "browser": { "required": true }, "acme:gpu": { "required": true }, "filesystem": { "required": false } } } }));
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.capabilities = [
            ("browser_automation".to_string(), json!({ "engine": "chromium" })),
            ("acme:gpu".to_string(), json!({})),
        ].into_iter().collect();
        let p = play_opts(&t, m.clone(), vec![done()], opts).await;
        assert!(p.out.succeeded(), "{:?}", p.out);
        let s = start_of(&p);
        assert_eq!(s.bindings["browser_automation"], json!({ "engine": "chromium" }));
        assert!(s.bindings.contains_key("acme:gpu"));
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.capabilities = [("acme:gpu".to_string(), json!({}))].into_iter().collect();
        let e = refused(&t, m, opts).await;
        assert!(matches!(e, RunRefused::Start(StartError::UnsatisfiedBinding(ref b)) if b == "browser"), "{e}");
    }
}
