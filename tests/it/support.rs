//! Shared fixtures: the guests (built once), one sandbox, and helpers.

use pdpp_host::manifest::Manifest;
use pdpp_host::protocol::{self as p, Message};
use pdpp_host::runtime::{self, InteractionHandler, Observer, RunOutcome, RunRequest};
use pdpp_host::sandbox::{Grants, LogLevel, Plugin, Sandbox};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Build every test guest once (release, wasm32-wasip2) in a target
/// directory of their own, so the build never waits on `cargo test`'s lock.
fn guest_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = workspace().join("target").join("test-guests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                "demo",
                "-p",
                "probe",
                "-p",
                "script",
                "-p",
                "fetch",
                "-p",
                "browse",
                "-p",
                "hostile",
                "-p",
                "github",
                "-p",
                "notion",
                "-p",
                "oura",
                "-p",
                "browser-demo",
                "-p",
                "reddit",
                "--target-dir",
            ])
            .arg(&target)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the test guests failed");
        target.join("wasm32-wasip2").join("release")
    })
}

pub fn guest_path(name: &str) -> PathBuf {
    guest_dir().join(format!("{name}.wasm"))
}

pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new().expect("sandbox"))
}

fn compile(name: &str) -> Plugin {
    let bytes = std::fs::read(guest_path(name)).expect("guest wasm");
    sandbox().compile(&bytes, &Grants::none()).expect("guest compiles")
}

pub fn demo() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| compile("demo"))
}

pub fn probe() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| compile("probe"))
}

/// The egress test guest, linked with `wasi:http` (its manifest requires `network`).
pub fn fetch() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| {
        let bytes = std::fs::read(guest_path("fetch")).expect("guest wasm");
        sandbox()
            .compile(&bytes, &Grants::from_manifest(&fetch_manifest()))
            .expect("guest compiles")
    })
}

/// The browser test guest, linked with the browser (its manifest requires it).
pub fn browse() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| {
        let bytes = std::fs::read(guest_path("browse")).expect("guest wasm");
        sandbox()
            .compile(&bytes, &Grants::from_manifest(&browse_manifest()))
            .expect("guest compiles")
    })
}

pub fn browse_manifest() -> Arc<Manifest> {
    Arc::new(Manifest::from_file(&workspace().join("tests/guests/browse/browse.json")).expect("browse manifest"))
}

pub fn fetch_manifest() -> Arc<Manifest> {
    Arc::new(Manifest::from_file(&workspace().join("tests/guests/fetch/fetch.json")).expect("fetch manifest"))
}

pub fn script() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| compile("script"))
}

pub fn demo_manifest_path() -> PathBuf {
    workspace().join("manifests/demo.json")
}

pub fn probe_manifest_path() -> PathBuf {
    workspace().join("tests/guests/probe/probe.json")
}

pub fn demo_manifest() -> Arc<Manifest> {
    Arc::new(Manifest::from_file(&demo_manifest_path()).expect("demo manifest"))
}

pub fn probe_manifest() -> Arc<Manifest> {
    Arc::new(Manifest::from_file(&probe_manifest_path()).expect("probe manifest"))
}

/// What a run showed: messages in order and guest log lines.
#[derive(Clone, Default)]
pub struct Transcript {
    pub messages: Arc<Mutex<Vec<Message>>>,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Transcript {
    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }
    pub fn records(&self) -> Vec<p::Record> {
        self.messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::Record(r) => Some(r),
                _ => None,
            })
            .collect()
    }
    pub fn states(&self, stream: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::State(s) if s.stream == stream => Some(s.cursor),
                _ => None,
            })
            .collect()
    }
    /// The `what` of the probe's observation RECORD with this id.
    pub fn observation(&self, id: &str) -> Value {
        self.records()
            .into_iter()
            .find(|r| r.stream == "observations" && r.key == Value::String(id.into()))
            .and_then(|r| r.data)
            .map(|d| d["what"].clone())
            .unwrap_or_else(|| panic!("no observation {id}"))
    }
    /// Everything printed or logged, as one text, for secret scans.
    pub fn text(&self) -> String {
        let mut s: String = self.messages().iter().map(|m| m.to_json_line() + "\n").collect();
        s.extend(self.logs.lock().unwrap().iter().map(|l| l.clone() + "\n"));
        s
    }
}

impl Observer for Transcript {
    fn message(&mut self, msg: &Message) {
        self.messages.lock().unwrap().push(msg.clone());
    }
    fn log(&mut self, level: LogLevel, message: &str, fields: &[(String, String)]) {
        self.logs
            .lock()
            .unwrap()
            .push(format!("{} {message} {fields:?}", level.as_str()));
    }
}

pub async fn run_with(
    plugin: &Plugin,
    req: RunRequest,
    handler: Option<Arc<dyn InteractionHandler>>,
) -> (RunOutcome, Transcript) {
    let t = Transcript::default();
    let outcome = runtime::execute(sandbox(), plugin, req, handler, Box::new(t.clone()), None)
        .await
        .expect("run starts");
    (outcome, t)
}

/// A probe request with `settings.behavior` set.
pub fn probe_request(behavior: &str) -> RunRequest {
    let mut req = RunRequest::new(probe_manifest());
    req.settings = serde_json::json!({ "behavior": behavior });
    req
}

/// Run the `pdpp-host` binary; returns (exit code, the stdout lines that are
/// JSON, stderr).
pub fn cli(args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> (i32, Vec<Value>, String) {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pdpp-host"));
    cmd.args(args).envs(envs.iter().copied()).current_dir(workspace());
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("pdpp-host starts");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `pdpp-host connection add` with these arguments after `connection add`;
/// returns the new connection id.
pub fn cli_add_connection(args: &[&str]) -> String {
    let mut all = vec!["connection", "add"];
    all.extend_from_slice(args);
    let (code, lines, err) = cli(&all, &[], None);
    assert_eq!(code, 0, "{err}");
    lines[0]["connection_id"].as_str().expect("a connection id").to_owned()
}

/// `pdpp-host plugins pack`: the manifest embedded into a copy of the component.
pub fn cli_pack(wasm: &Path, manifest: &Path, out: &Path) {
    let (code, _, err) = cli(
        &[
            "plugins",
            "pack",
            "--wasm",
            wasm.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert_eq!(code, 0, "{err}");
}

/// `pdpp-host run PLUGIN --manifest M --data-dir D --connection C` (plus `extra`).
pub fn cli_run_connection(
    plugin: &Path,
    manifest: &Path,
    data_dir: &str,
    connection: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> (i32, Vec<Value>, String) {
    let mut args = vec![
        "run",
        plugin.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--data-dir",
        data_dir,
        "--connection",
        connection,
    ];
    args.extend_from_slice(extra);
    cli(&args, envs, None)
}

// ---- deployments on both backends ---------------------------------------

use pdpp_host::deploy::{DeployOptions, Deployment};
use pdpp_host::store::{Backend, ConnectionStatus, NewConnection};
use pdpp_host::vault::Bundle;

/// A deployment in a fresh temporary data directory, on a fresh database.
pub struct TestDeployment {
    pub dep: Deployment,
    pub dir: tempfile::TempDir,
    /// The database URL (a fresh database on the test PostgreSQL server, or
    /// the SQLite file).
    pub url: String,
}

impl TestDeployment {
    pub fn options(&self) -> DeployOptions {
        DeployOptions {
            data_dir: self.dir.path().to_path_buf(),
            database_url: Some(self.url.clone()),
            key_file: None,
        }
    }

    /// Every byte the deployment keeps: the SQLite file with its WAL, or a
    /// `pg_dump` of the PostgreSQL database.
    pub fn stored_bytes(&self) -> Vec<u8> {
        match self.dep.store.backend() {
            Backend::Sqlite => {
                let mut all = Vec::new();
                for name in ["pdpp.db", "pdpp.db-wal", "pdpp.db-shm"] {
                    all.extend(std::fs::read(self.dir.path().join(name)).unwrap_or_default());
                }
                all
            }
            Backend::Postgres => {
                let out = Command::new("pg_dump")
                    .arg("--inserts")
                    .arg(&self.url)
                    .output()
                    .expect("pg_dump runs");
                assert!(
                    out.status.success(),
                    "pg_dump: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            }
        }
    }

    /// An active connection with a sealed credential (if any).
    pub async fn connection(&self, manifest: &Manifest, settings: Value, credential: Option<Bundle>) -> String {
        self.dep.store.upsert_connector(manifest, None).await.unwrap();
        let c = self
            .dep
            .store
            .create_connection(NewConnection {
                connection_id: None,
                connector_id: manifest.connector_id.clone(),
                status: ConnectionStatus::Active,
                display_name: None,
                binding_metadata: settings,
                browser_session: Default::default(),
            })
            .await
            .unwrap();
        if let Some(b) = credential {
            let sealed = self.dep.key.seal(&c.connection_id, &b).unwrap();
            self.dep.store.put_credential(&c.connection_id, &sealed).await.unwrap();
        }
        c.connection_id
    }
}

/// The test PostgreSQL server `scripts/test.sh` starts.
pub fn postgres_url() -> String {
    std::env::var("PDPP_TEST_POSTGRES_URL").expect(
        "PDPP_TEST_POSTGRES_URL is not set: run the tests with `bash scripts/test.sh`, which starts a PostgreSQL server",
    )
}

/// A new, empty database on the test PostgreSQL server; its URL.
pub async fn fresh_postgres_database() -> String {
    let base = postgres_url();
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base)
        .await
        .expect("the test PostgreSQL server answers");
    let name = pdpp_host::store::new_id("pdpp_test");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (prefix, _) = base.rsplit_once('/').expect("URL with a database");
    format!("{prefix}/{name}")
}

pub async fn deployment(backend: Backend) -> TestDeployment {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("pdpp.db").display()),
        Backend::Postgres => fresh_postgres_database().await,
    };
    let dep = Deployment::open(DeployOptions {
        data_dir: dir.path().to_path_buf(),
        database_url: Some(url.clone()),
        key_file: None,
    })
    .await
    .expect("deployment opens");
    TestDeployment { dep, dir, url }
}

/// Define a test once, run it on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($(#[$doc:meta])* async fn $name:ident($d:ident: TestDeployment) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(#[$doc])*
            async fn check($d: $crate::support::TestDeployment) $body
            #[tokio::test]
            async fn sqlite() {
                check($crate::support::deployment(pdpp_host::store::Backend::Sqlite).await).await
            }
            #[tokio::test]
            async fn postgres() {
                check($crate::support::deployment(pdpp_host::store::Backend::Postgres).await).await
            }
        }
    };
}
