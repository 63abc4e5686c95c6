//! The demo connector end to end: records, checkpoints, progress, scope,
//! and incremental resumption from committed state.

use crate::support::*;
use pdpp_host::protocol::{CollectionMode, DoneStatus, Message, StreamScope, TimeRange};
use pdpp_host::runtime::{self, RunRequest, StartError, StateInput};
use serde_json::{Value, json};

fn demo_request(settings: Value) -> RunRequest {
    let mut req = RunRequest::new(demo_manifest());
    req.settings = settings;
    req
}

#[tokio::test]
async fn demo_run_end_to_end_emits_records_checkpoints_progress_and_done() {
    let req = demo_request(json!({ "contacts": 25, "events": 30, "checkpoint_every": 10 }));
    let (out, t) = run_with(demo(), req, None).await;

    assert!(out.succeeded(), "{out:?}");
    assert_eq!(out.records_emitted, 55);
    let msgs = t.messages();
    assert!(matches!(msgs.first(), Some(Message::Start(_))), "START comes first");
    match msgs.last() {
        Some(Message::Done(d)) => {
            assert_eq!((d.status, d.records_emitted), (DoneStatus::Succeeded, 55))
        }
        other => panic!("DONE comes last, got {other:?}"),
    }
    // STATE every 10 records and once at the end.
    assert_eq!(t.states("contacts").len(), 3);
    assert_eq!(t.states("events").len(), 4);
    assert!(
        msgs.iter()
            .any(|m| matches!(m, Message::Progress(p) if p.stream.as_deref() == Some("events") && p.total == Some(30)))
    );
    let commit = out.commit.expect("a successful run commits its state");
    assert_eq!(commit["contacts"], json!({ "after": "2026-01-02T00:00:00Z" }));
    assert_eq!(commit["events"], t.states("events").last().cloned().unwrap());
}

#[tokio::test]
async fn demo_second_run_resumes_from_the_first_runs_committed_state() {
    let (first, _) = run_with(demo(), demo_request(json!({ "contacts": 20, "events": 20 })), None).await;
    let committed = first.commit.expect("first run commits");

    // The account grew: 5 new contacts, 2 new events.
    let mut req = demo_request(json!({ "contacts": 25, "events": 22 }));
    req.state = StateInput::Persisted(committed.clone());
    let (second, t) = run_with(demo(), req, None).await;
    assert!(second.succeeded(), "{second:?}");
    let keys: Vec<Value> = t.records().into_iter().map(|r| r.key).collect();
    assert_eq!(
        keys,
        vec![
            json!("c00020"),
            json!("c00021"),
            json!("c00022"),
            json!("c00023"),
            json!("c00024"),
            json!("e00020"),
            json!("e00021")
        ]
    );
    match t.messages().first() {
        Some(Message::Start(s)) => assert_eq!(s.state.as_ref(), Some(&committed), "START carries the committed state"),
        other => panic!("{other:?}"),
    }

    // Nothing new: a third run emits nothing and keeps the cursors.
    let mut req = demo_request(json!({ "contacts": 25, "events": 22 }));
    req.state = StateInput::Persisted(second.commit.clone().unwrap());
    let (third, t) = run_with(demo(), req, None).await;
    assert_eq!(third.records_emitted, 0);
    assert!(t.records().is_empty());
    assert_eq!(third.commit, second.commit);
}

#[tokio::test]
async fn full_refresh_ignores_the_prior_cursor() {
    let (first, _) = run_with(demo(), demo_request(json!({ "contacts": 5, "events": 0 })), None).await;
    let mut req = demo_request(json!({ "contacts": 5, "events": 0 }));
    req.mode = CollectionMode::FullRefresh;
    req.state = StateInput::Persisted(first.commit.unwrap());
    let (out, _) = run_with(demo(), req, None).await;
    assert_eq!(out.records_emitted, 5);
}

#[tokio::test]
async fn demo_honours_scope_streams_resources_fields_and_time_range() {
    let mut req = demo_request(json!({ "contacts": 50, "events": 60 }));
    req.streams = Some(vec![StreamScope {
        name: "events".into(),
        resources: Some(vec!["home".into()]),
        time_range: Some(TimeRange {
            since: Some("2026-01-02T00:00:00Z".into()),
            until: Some("2026-01-03T00:00:00Z".into()),
        }),
        fields: Some(vec!["title".into()]),
    }]);
    let (out, t) = run_with(demo(), req, None).await;
    // The host checks every record against the scope; a stray one would fail the run.
    assert!(out.succeeded(), "{out:?}");
    let records = t.records();
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r.stream, "events");
        let data = r.data.as_ref().unwrap().as_object().unwrap();
        let mut fields: Vec<&str> = data.keys().map(String::as_str).collect();
        fields.sort();
        // Requested `title`, plus the required, key, consent-time and resource
        // fields the runtime adds.
        assert_eq!(fields, vec!["calendar", "id", "starts_at", "title"]);
        let ts = data["starts_at"].as_str().unwrap();
        assert!(("2026-01-02T00:00:00Z".."2026-01-03T00:00:00Z").contains(&ts), "{ts}");
    }
    // That day holds events 16..=31; the `home` calendar is every third one.
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str().unwrap()).collect();
    assert_eq!(keys, ["e00018", "e00021", "e00024", "e00027", "e00030"]);
    assert_eq!(out.commit.as_ref().map(|c| c.contains_key("contacts")), Some(false));
}

#[tokio::test]
async fn start_fields_are_augmented_with_required_key_and_consent_time_fields() {
    let mut req = demo_request(json!({}));
    req.streams = Some(vec![StreamScope {
        name: "contacts".into(),
        resources: None,
        time_range: Some(TimeRange {
            since: Some("2026-01-01".into()),
            until: None,
        }),
        fields: Some(vec!["name".into()]),
    }]);
    let start = runtime::build_start(&req, "run_x", false).unwrap();
    assert_eq!(
        start.scope.streams[0].fields.as_deref().unwrap(),
        ["name", "id", "updated_at"]
    );
}

#[tokio::test]
async fn start_scope_refuses_wildcards_unknown_streams_and_empty_scope_before_instantiation() {
    for (streams, expected) in [
        (vec![], StartError::EmptyScope),
        (vec![StreamScope::named("*")], StartError::Wildcard("*".into())),
        (
            vec![StreamScope::named("photos")],
            StartError::UnknownStream("photos".into()),
        ),
    ] {
        let mut req = demo_request(json!({}));
        req.streams = Some(streams);
        let err = runtime::execute(sandbox(), demo(), req, None, Box::new(Transcript::default()), None)
            .await
            .unwrap_err();
        assert_eq!(err, expected);
    }
}

#[tokio::test]
async fn single_use_run_gets_no_state_and_commits_nothing() {
    let mut req = demo_request(json!({ "contacts": 3, "events": 3 }));
    req.state = StateInput::SingleUse;
    let (out, t) = run_with(demo(), req, None).await;
    assert!(out.succeeded());
    assert!(out.commit.is_none());
    assert!(!out.staged.is_empty(), "STATE is staged but not persisted");
    match t.messages().first() {
        Some(Message::Start(s)) => assert!(s.state.is_none()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cli_demo_run_prints_jsonl_and_resumes_from_its_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let demo = guest_path("demo");
    let manifest = demo_manifest_path();
    let args = |settings: &str| {
        vec![
            "run".to_string(),
            demo.display().to_string(),
            "--manifest".into(),
            manifest.display().to_string(),
            "--state".into(),
            state.display().to_string(),
            "--settings".into(),
            settings.to_string(),
        ]
    };
    let a = args(r#"{"contacts": 4, "events": 2}"#);
    let (code, lines, stderr) = cli(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[], None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines.first().unwrap()["type"], "START");
    assert_eq!(lines.iter().filter(|l| l["type"] == "RECORD").count(), 6);
    assert_eq!(
        lines.last().unwrap(),
        &json!({ "type": "DONE", "status": "succeeded", "records_emitted": 6 })
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["contacts"]["after"], "2026-01-01T03:00:00Z");

    let a = args(r#"{"contacts": 6, "events": 2}"#);
    let (code, lines, _) = cli(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[], None);
    assert_eq!(code, 0);
    let keys: Vec<&Value> = lines
        .iter()
        .filter(|l| l["type"] == "RECORD")
        .map(|l| &l["key"])
        .collect();
    assert_eq!(keys, vec!["c00004", "c00005"]);
}

#[test]
fn manifest_validate_command_reports_the_rule() {
    let (code, _, stderr) = cli(&["manifest", "validate", "manifests/demo.json"], &[], None);
    assert_eq!(code, 0, "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(demo_manifest_path()).unwrap()).unwrap();
    m["streams"][0]["primary_key"] = json!(["nope"]);
    std::fs::write(&bad, m.to_string()).unwrap();
    let (code, _, stderr) = cli(&["manifest", "validate", bad.to_str().unwrap()], &[], None);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("primary_key_in_schema") && stderr.contains("contacts") && stderr.contains("nope"),
        "{stderr}"
    );
}
