//! The real `pdpp-host serve` process, started per test, and a tiny HTTP/1.1
//! client for it. Tests that need a provider double run it on its own
//! thread and runtime (see `providers`), so these blocking calls never
//! starve it.

use crate::support::*;
use pdpp_host::store::Backend;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub addr: String,
    pub token: String,
    pub dir: tempfile::TempDir,
    /// The database the server uses (a SQLite file URL or a PostgreSQL URL).
    pub database_url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What to start the server with.
#[derive(Default)]
pub struct ServeOptions {
    /// (guest name, manifest) pairs packed into the plugin directory.
    plugins: Vec<(String, PathBuf)>,
    /// Manifest-only listings (tombstones) copied into the plugin directory.
    listings: Vec<PathBuf>,
    /// The TOML configuration file's text (`--config`).
    config: Option<String>,
    backend: Option<Backend>,
    /// Variables set in the server's environment.
    env: Vec<(String, String)>,
}

impl ServeOptions {
    pub fn plugin(mut self, guest: &str, manifest: &Path) -> Self {
        self.plugins.push((guest.to_owned(), manifest.to_owned()));
        self
    }
    pub fn listing(mut self, manifest: &Path) -> Self {
        self.listings.push(manifest.to_owned());
        self
    }
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

pub fn serve_with(opts: ServeOptions) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for (guest, manifest) in &opts.plugins {
        cli_pack(&guest_path(guest), manifest, &plugins.join(format!("{guest}.wasm")));
    }
    for listing in &opts.listings {
        std::fs::copy(listing, plugins.join(listing.file_name().unwrap())).unwrap();
    }
    let database_url = match opts.backend.unwrap_or(Backend::Sqlite) {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("data/pdpp.db").display()),
        Backend::Postgres => tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(fresh_postgres_database()),
    };
    let config = opts.config.as_ref().map(|toml| {
        let path = dir.path().join("pdpp-host.toml");
        std::fs::write(&path, toml).unwrap();
        path
    });
    let data = dir.path().join("data");
    start(dir, &data, &plugins, database_url, config.as_deref(), None, &opts.env)
}

/// Start `pdpp-host serve` on a data directory and database; `token` is the
/// owner token when the data directory has one already (else it is read
/// from the first start's output).
fn start(
    dir: tempfile::TempDir,
    data: &Path,
    plugins: &Path,
    database_url: String,
    config: Option<&Path>,
    token: Option<String>,
    env: &[(String, String)],
) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pdpp-host"));
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--plugin-dir")
        .arg(plugins)
        .arg("--database-url")
        .arg(&database_url);
    if let Some(path) = config {
        cmd.arg("--config").arg(path);
    }
    let mut child = cmd
        .env_remove("PDPP_DATABASE_URL")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let token = token.unwrap_or_else(|| {
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line.trim()
            .strip_prefix("owner token: ")
            .expect("the token is printed once at first start")
            .to_owned()
    });
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let addr = loop {
        let mut l = String::new();
        assert!(
            err.read_line(&mut l).unwrap() > 0,
            "the server stopped before listening: {seen}"
        );
        seen.push_str(&l);
        if let Some(rest) = l.split("http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining the server's stderr so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = err.read_to_string(&mut sink);
    });
    let server = Server {
        child,
        addr,
        token,
        dir,
        database_url,
    };
    server.wait_until_plugins_ready();
    server
}

impl Server {
    /// Another host sharing this one's database and plugins: on SQLite, the
    /// same data directory; on PostgreSQL, a data directory of its own with
    /// the same vault key and owner token. It answers with the same token.
    pub fn another_host(&self) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let ours = self.dir.path().join("data");
        let data = if self.database_url.starts_with("sqlite:") {
            ours
        } else {
            let data = dir.path().join("data");
            std::fs::create_dir_all(&data).unwrap();
            for f in ["vault.key", "owner-token.sha256"] {
                std::fs::copy(ours.join(f), data.join(f)).unwrap();
            }
            data
        };
        start(
            dir,
            &data,
            &self.dir.path().join("plugins"),
            self.database_url.clone(),
            None,
            Some(self.token.clone()),
            &[],
        )
    }
}

/// One HTTP/1.1 request over a fresh loopback connection: status and JSON body.
pub fn call(s: &Server, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let (status, text) = call_raw(s, method, path, token, body.map(|b| b.to_string()));
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// One request; status and the raw body text.
pub fn call_raw(s: &Server, method: &str, path: &str, token: Option<&str>, body: Option<String>) -> (u16, String) {
    let mut sock = TcpStream::connect(&s.addr).unwrap();
    let body = body.unwrap_or_default();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        sock,
        "{method} {path} HTTP/1.1\r\nhost: {}\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        s.addr,
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(payload)
    } else {
        payload.to_owned()
    };
    (status, payload)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Server {
    /// The host listens before its plugins are compiled: wait (at most 60 s)
    /// until `/healthz` says every plugin file has loaded.
    pub fn wait_until_plugins_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, health) = call(self, "GET", "/healthz", None, None);
            if status == 200 && health["plugins"]["ready"] == true {
                return;
            }
            assert!(Instant::now() < deadline, "the plugins did not load: {health}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM and wait (at most 30 s) for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET/POST/... with the owner token.
    pub fn owner(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call(self, method, path, Some(&self.token), body)
    }

    /// Wait until a run has finished; the run object from `GET /v1/runs/{id}`.
    /// `pdpp-host runs show RUN` on this server's data directory and
    /// database (e.g. after it stopped): the printed JSON lines and stderr.
    pub fn runs_show(&self, run_id: &str) -> (Vec<Value>, String) {
        let data = self.dir.path().join("data");
        let (_, shown, err) = cli(
            &[
                "runs",
                "show",
                "--data-dir",
                data.to_str().unwrap(),
                "--database-url",
                &self.database_url,
                run_id,
            ],
            &[],
            None,
        );
        (shown, err)
    }

    pub fn wait_run(&self, run_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.owner("GET", &format!("/v1/runs/{run_id}"), None);
            if status == 200 && body["run"]["status"] != "running" {
                return body["run"].clone();
            }
            assert!(Instant::now() < deadline, "run {run_id} did not finish: {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Define a server test once; run it against SQLite and against PostgreSQL.
#[macro_export]
macro_rules! server_on_both_backends {
    ($(#[$doc:meta])* fn $name:ident($b:ident: Backend) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(#[$doc])*
            fn check($b: pdpp_host::store::Backend) $body
            #[test]
            fn sqlite() {
                check(pdpp_host::store::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                check(pdpp_host::store::Backend::Postgres)
            }
        }
    };
}
