//! Parked runs: the host's live-run limit refuses one run more as the host's
//! capacity (never the connector's fault), and a serving host's one heartbeat
//! vouches for every run it holds.

use crate::conformance::{done, manifest};
use crate::on_both_backends;
use crate::support::*;
use pdpp_host::protocol::{self as p, Interaction, InteractionAnswer};
use pdpp_host::runtime::{ConnectionRun, InteractionHandler, run_connection};
use pdpp_host::sandbox::{Grants, RunControl, Sandbox};
use pdpp_host::store::Trigger;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

struct Never;

#[async_trait::async_trait]
impl InteractionHandler for Never {
    async fn answer(&self, _req: &Interaction) -> InteractionAnswer {
        std::future::pending().await
    }
}

fn ask() -> serde_json::Value {
    json!({ "type": "INTERACTION", "kind": "otp", "message": "Enter the code",
            "schema": { "type": "object", "properties": { "code": { "type": "string" } } } })
}

fn parked_opts(control: &RunControl) -> ConnectionRun {
    let mut opts = ConnectionRun::new(Trigger::Manual);
    opts.interaction = Some(Arc::new(Never));
    opts.control = control.clone();
    opts
}

on_both_backends! {
    /// With `max_live_runs = 2` and two runs parked on a question, a third
    /// run is refused as `host_capacity` (not `connector_exit_without_done`):
    /// it is stored failed with that reason and a `run.failed` event. Once
    /// the parked runs end, the host runs again.
    async fn a_run_past_the_live_run_limit_is_refused_as_host_capacity(t: TestDeployment) {
        // A sandbox of its own: the limit must not reach other tests.
        let sandbox = Arc::new(Sandbox::new().unwrap());
        sandbox.set_max_live_runs(2);
        let bytes = std::fs::read(guest_path("script")).unwrap();
        let plugin = Arc::new(sandbox.compile(&bytes, &Grants::none()).unwrap());
        let m = manifest(&["a"]);

        let mut parked = Vec::new();
        for _ in 0..2 {
            let conn = t.connection(&m, json!({ "script": [ask(), done()] }), None).await;
            let control = RunControl::new();
            let (dep, sandbox, plugin, m) = (t.dep.clone(), sandbox.clone(), plugin.clone(), m.clone());
            let opts = parked_opts(&control);
            let task = tokio::spawn(async move {
                run_connection(&dep, &sandbox, &plugin, m, &conn, opts).await.expect("the run starts")
            });
            parked.push((control, task));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while sandbox.live_runs() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "two runs never became live");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let third = t.connection(&m, json!({ "script": [ask(), done()] }), None).await;
        let control = RunControl::new();
        let out = run_connection(&t.dep, &sandbox, &plugin, m.clone(), &third, parked_opts(&control))
            .await
            .expect("the run is on record");
        assert_eq!(out.status, p::DoneStatus::Failed);
        assert_eq!(out.reason.as_ref().map(|r| r.code()), Some("host_capacity"));
        let message = out.message.clone().unwrap_or_default();
        assert!(message.contains("max_live_runs"), "the refusal says which limit: {message}");
        let row = t.dep.store.run(&out.run_id).await.unwrap().unwrap();
        assert_eq!(row.failure_reason.as_deref(), Some("host_capacity"));
        let events = t.dep.store.events(&out.run_id).await.unwrap();
        let last = events.last().expect("a terminal event");
        assert_eq!(last.kind, "run.failed");
        assert_eq!(last.data["reason"], "host_capacity");

        for (control, task) in parked {
            control.cancel();
            let out = task.await.unwrap();
            assert_eq!(out.reason.map(|r| r.code()), Some("owner_cancelled"), "the parked runs were untouched");
        }
        assert_eq!(sandbox.live_runs(), 0, "ended runs give their slot back");
        let fourth = t.connection(&m, json!({ "script": [done()] }), None).await;
        let out = run_connection(&t.dep, &sandbox, &plugin, m, &fourth, ConnectionRun::new(Trigger::Manual))
            .await
            .unwrap();
        assert!(out.succeeded(), "{:?}", out.reason);
    }
}

on_both_backends! {
    /// A run held by a serving host on another machine stays running while
    /// that host's heartbeat is fresh, even though the run itself sends
    /// none; once the host's heartbeat is stale, the run is failed as
    /// `host_interrupted`.
    async fn a_serving_hosts_heartbeat_vouches_for_its_runs(t: TestDeployment) {
        let m = manifest(&["a"]);
        let conn = t.connection(&m, json!({ "script": [done()] }), None).await;
        let store = &t.dep.store;
        store
            .create_run("run_elsewhere", &conn, "script", Trigger::Manual, p::CollectionMode::Incremental)
            .await
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let host = "elsewhere-machine:4242:aa";
        crate::conformance::sql(
            &t,
            &[
                &format!("UPDATE runs SET runner = '{host}', heartbeat_at = 0 WHERE run_id = 'run_elsewhere'"),
                &format!("INSERT INTO hosts (runner, started_at, heartbeat_at) VALUES ('{host}', {now}, {now})"),
            ],
        )
        .await;
        assert_eq!(store.fail_interrupted_runs().await.unwrap(), 0, "the host's heartbeat is fresh");
        let row = store.run("run_elsewhere").await.unwrap().unwrap();
        assert_eq!(row.status.as_str(), "running");

        crate::conformance::sql(&t, &[&format!("UPDATE hosts SET heartbeat_at = 0 WHERE runner = '{host}'")]).await;
        assert_eq!(store.fail_interrupted_runs().await.unwrap(), 1, "the host's heartbeat is stale");
        let row = store.run("run_elsewhere").await.unwrap().unwrap();
        assert_eq!(row.failure_reason.as_deref(), Some("host_interrupted"));
    }
}

// ---- [sandbox] memory: the tuning a deployment chooses --------------------

/// A guest runs the same under either memory tuning: instantiated, its
/// RECORD and its answered question accepted, DONE succeeded. The engine
/// reports the tuning it was built with.
#[tokio::test]
async fn sandbox_memory_each_tuning_runs_a_guest_to_done() {
    use crate::conformance::rec;
    use pdpp_host::runtime::{self, RunRequest};
    use pdpp_host::sandbox::MemoryTuning;

    struct Answers;
    #[async_trait::async_trait]
    impl InteractionHandler for Answers {
        async fn answer(&self, _req: &Interaction) -> InteractionAnswer {
            InteractionAnswer::success(json!({ "code": "123456" }))
        }
    }

    let wasm = std::fs::read(guest_path("script")).unwrap();
    for tuning in [MemoryTuning::Lean, MemoryTuning::Reserved] {
        let sandbox = Sandbox::with_tuning(tuning).unwrap();
        assert_eq!(sandbox.tuning(), tuning);
        let plugin = sandbox.compile(&wasm, &Grants::none()).unwrap();
        let mut req = RunRequest::new(manifest(&["a"]));
        req.settings = json!({ "script": [rec("a", "k1"), ask(), done()] });
        let transcript = Transcript::default();
        let outcome = runtime::execute(
            &sandbox,
            &plugin,
            req,
            Some(Arc::new(Answers)),
            Box::new(transcript.clone()),
            None,
        )
        .await
        .expect("run starts");
        assert!(
            outcome.succeeded(),
            "{tuning:?}: {:?} {:?}",
            outcome.reason,
            outcome.message
        );
        assert_eq!(outcome.records_emitted, 1, "{tuning:?}");
        assert_eq!(transcript.records().len(), 1, "{tuning:?}");
    }
}

/// `pdpp-host run --config` applies `[sandbox] memory` to its engine: the
/// two tunings compile different code, so a run under `reserved` writes its
/// own AOT cache entry beside the `lean` one, and the next run under either
/// loads its own entry instead of compiling. Every run collects its record.
#[test]
fn sandbox_memory_run_reads_the_setting_from_its_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (demo, m) = (guest_path("demo"), demo_manifest_path());
    let config = |memory: &str| {
        let path = dir.path().join(format!("{memory}.toml"));
        std::fs::write(&path, format!("[sandbox]\nmemory = \"{memory}\"\n")).unwrap();
        path
    };
    let entries = || {
        let mut v: Vec<_> = std::fs::read_dir(data.join("cache"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "cwasm"));
        v.sort();
        v
    };
    let debug = [("RUST_LOG", "pdpp_host=debug")];
    let run = |memory: &str| {
        let config = config(memory);
        let args = [
            "run",
            demo.to_str().unwrap(),
            "--manifest",
            m.to_str().unwrap(),
            "--settings",
            r#"{"contacts": 1, "events": 0}"#,
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ];
        let (code, lines, err) = cli(&args, &debug, None);
        assert_eq!(code, 0, "{memory}: {err}");
        assert_eq!(lines.iter().filter(|l| l["type"] == "RECORD").count(), 1, "{memory}");
        err
    };
    let first = run("lean");
    assert!(first.contains("compiled in"), "{first}");
    let lean = entries();
    assert_eq!(lean.len(), 1, "{lean:?}");
    let reserved = run("reserved");
    assert!(
        reserved.contains("compiled in"),
        "another engine compiles again: {reserved}"
    );
    let both = entries();
    assert_eq!(both.len(), 2, "one entry per tuning: {both:?}");
    for memory in ["lean", "reserved"] {
        let again = run(memory);
        assert!(
            again.contains("loaded from the AOT cache") && !again.contains("compiled in"),
            "{memory}: {again}"
        );
    }
    assert_eq!(entries(), both);
}

/// An unknown `[sandbox] memory` stops `run` before it loads anything, and
/// the error names the file, the value and the choices.
#[test]
fn sandbox_memory_unknown_value_stops_run_naming_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pdpp-host.toml");
    std::fs::write(&config, "[sandbox]\nmemory = \"fast\"\n").unwrap();
    let (demo, m) = (guest_path("demo"), demo_manifest_path());
    let data = dir.path().join("data");
    let args = [
        "run",
        demo.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let (code, lines, err) = cli(&args, &[], None);
    assert_ne!(code, 0, "{err}");
    assert!(lines.is_empty(), "nothing ran: {lines:?}");
    for word in ["pdpp-host.toml", "fast", "lean", "reserved"] {
        assert!(err.contains(word), "the error names {word}: {err}");
    }
    assert!(!data.join("cache").exists(), "nothing was compiled");
}

/// `serve` applies `[sandbox] memory` to its engine: the plugin it loads is
/// compiled into the AOT cache under the engine hash of that tuning
/// (`<sha256>-<engine hash>.cwasm`), the same wasm under two hashes for the
/// two tunings, and the host serves either way.
#[test]
fn sandbox_memory_serve_compiles_its_plugins_with_the_configured_tuning() {
    use crate::server::{ServeOptions, serve_with};
    use pdpp_host::plugins::cache::engine_hash;
    use pdpp_host::sandbox::MemoryTuning;

    let entry = |config: Option<&str>| {
        let mut opts = ServeOptions::default().plugin("demo", &demo_manifest_path());
        if let Some(toml) = config {
            opts = opts.config(toml);
        }
        let server = serve_with(opts);
        let names: Vec<String> = std::fs::read_dir(server.dir.path().join("data/cache"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".cwasm"))
            .collect();
        assert_eq!(names.len(), 1, "one compiled plugin: {names:?}");
        let (sha, engine) = names[0].trim_end_matches(".cwasm").split_once('-').unwrap();
        (sha.to_owned(), engine.to_owned())
    };
    let hash = |t: MemoryTuning| engine_hash(Sandbox::with_tuning(t).unwrap().engine());
    let (lean_wasm, lean) = entry(None);
    let (reserved_wasm, reserved) = entry(Some("[sandbox]\nmemory = \"reserved\"\n"));
    assert_eq!(lean_wasm, reserved_wasm, "the same plugin");
    assert_eq!(lean, hash(MemoryTuning::Lean), "lean by default");
    assert_eq!(reserved, hash(MemoryTuning::Reserved), "reserved when configured");
    assert_ne!(lean, reserved);
}
