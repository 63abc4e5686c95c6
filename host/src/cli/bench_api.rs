//! `pdpp-host bench --api`: the owner API under a bounded load, against
//! `/healthz` on the same server as the baseline.
//!
//! A real `pdpp-host serve` process (this binary) runs on a fresh SQLite
//! data directory with the demo plugin. The bench seeds it — connections
//! written through the library's store before the server starts, then one
//! small and one large collection history made by real runs of the demo
//! connector through the API — and drives it from this process over
//! loopback: a fixed number of keep-alive HTTP/1.1 clients, each sending
//! its next request when the last answer is read, for a fixed time.
//! Reported: requests per second, median and p99 latency, and the ratio to
//! the baseline's rate.

use anyhow::{Context, bail};
use pdpp_host::deploy::{DeployOptions, Deployment};
use pdpp_host::store::{BrowserSessionMode, ConnectionStatus, NewConnection};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What the API bench is told.
pub struct ApiBench<'a> {
    pub plugin: &'a Path,
    pub manifest: &'a Path,
    /// Connections in the store (the list is paged through them).
    pub connections: usize,
    /// Records of the large history.
    pub history: u64,
    /// Concurrent clients per load row.
    pub clients: usize,
    /// Seconds each load row runs (after a short warm-up).
    pub seconds: f64,
}

pub async fn run(b: ApiBench<'_>) -> anyhow::Result<()> {
    let dir = tempdir()?;
    let data = dir.join("data");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let exe = std::env::current_exe()?;
    let packed = std::process::Command::new(&exe)
        .args(["plugins", "pack", "--wasm"])
        .arg(b.plugin)
        .arg("--manifest")
        .arg(b.manifest)
        .arg("--out")
        .arg(plugins.join("demo.wasm"))
        .status()?;
    if !packed.success() {
        bail!(
            "cannot pack {} (build it with `cargo build --release --target wasm32-wasip2 -p demo`)",
            b.plugin.display()
        );
    }

    // The many connections: written before the server starts, as paused
    // connections of the demo (nothing runs for them).
    let t = Instant::now();
    seed_connections(&data, b.connections).await?;
    let seeded = t.elapsed();

    let mut server = tokio::process::Command::new(&exe)
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--plugin-dir")
        .arg(&plugins)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (addr, token) = listening(&mut server).await?;
    let api = Api {
        addr: addr.clone(),
        token,
    };
    api.wait_for_plugin().await?;

    // Two histories: a small and a large first sync, through the API.
    let small = api.connect(1_000).await?;
    let large = api.connect(b.history).await?;

    println!(
        "machine: {} cores; {} clients per load row, {:.0} s each; {} connections seeded in {:.1} s",
        super::bench::num_cpus(),
        b.clients,
        b.seconds,
        b.connections + 2,
        seeded.as_secs_f64()
    );
    let load = |path: String, clients: usize| Load {
        addr: addr.clone(),
        token: api.token.clone(),
        path,
        clients,
        time: Duration::from_secs_f64(b.seconds),
    };
    let base = load("/healthz".into(), b.clients).run().await?;
    base.print("GET /healthz (baseline)", None);
    let status_small = load(format!("/v1/connections/{small}/setup-status"), b.clients)
        .run()
        .await?;
    status_small.print("GET setup-status, 1,000-record history", Some(&base));
    let status_large = load(format!("/v1/connections/{large}/setup-status"), b.clients)
        .run()
        .await?;
    status_large.print(
        &format!("GET setup-status, {}-record history", thousands(b.history)),
        Some(&base),
    );
    println!(
        "setup-status large / small history (p99)     {:>6.2}x",
        status_large.p99.as_secs_f64() / status_small.p99.as_secs_f64()
    );
    let first = load("/v1/connections?limit=100".into(), 1).run().await?;
    first.print(
        &format!("GET /v1/connections page 1 of {} (1 client)", b.connections + 2),
        None,
    );
    // A page from the middle: the cursor the list hands out after half.
    let after = api.cursor_after(b.connections / 2).await?;
    let middle = load(format!("/v1/connections?limit=100&after={after}"), 1)
        .run()
        .await?;
    middle.print("GET /v1/connections middle page (1 client)", None);

    let _ = server.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("pdpp-bench-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn seed_connections(data: &Path, n: usize) -> anyhow::Result<()> {
    let dep = Deployment::open(DeployOptions {
        data_dir: data.to_owned(),
        database_url: None,
        key_file: None,
    })
    .await?;
    for i in 0..n {
        dep.store
            .create_connection(NewConnection {
                connection_id: None,
                connector_id: "demo".into(),
                status: ConnectionStatus::Paused,
                display_name: Some(format!("seeded {i}")),
                binding_metadata: json!({"contacts": 0, "events": 0}),
                browser_session: BrowserSessionMode::Persistent,
            })
            .await?;
    }
    dep.store.close().await;
    Ok(())
}

/// The address and the owner token the server announces.
async fn listening(server: &mut tokio::process::Child) -> anyhow::Result<(String, String)> {
    let mut out = BufReader::new(server.stdout.take().context("serve stdout")?).lines();
    let mut err = BufReader::new(server.stderr.take().context("serve stderr")?).lines();
    let token = tokio::time::timeout(Duration::from_secs(60), out.next_line())
        .await
        .context("serve printed no owner token")??
        .and_then(|l| l.strip_prefix("owner token: ").map(str::to_owned))
        .context("serve printed no owner token")?;
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), err.next_line())
            .await
            .context("serve did not say where it listens")??
            .context("serve exited before it listened")?;
        if let Some(rest) = line.split("serving the owner API on http://").nth(1) {
            break rest.split_whitespace().next().unwrap_or_default().to_owned();
        }
    };
    // Keep reading both pipes so the server never blocks on a full one.
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    tokio::spawn(async move { while let Ok(Some(_)) = err.next_line().await {} });
    Ok((addr, token))
}

struct Api {
    addr: String,
    token: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let mut conn = Conn::open(&self.addr).await?;
        let (status, bytes) = conn.send(method, path, &self.token, body).await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    async fn wait_for_plugin(&self) -> anyhow::Result<()> {
        for _ in 0..600 {
            let (status, body) = self.call("GET", "/v1/connectors/demo", None).await?;
            if status == 200 && body["available"] != Value::Bool(false) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the demo plugin was not offered within a minute")
    }

    /// A new demo connection whose first sync collected `records`
    /// contacts; returns its id once that run has ended.
    async fn connect(&self, records: u64) -> anyhow::Result<String> {
        let body = json!({"connector_id": "demo", "settings": {"contacts": records, "events": 0}});
        let (status, created) = self.call("POST", "/v1/connections", Some(&body)).await?;
        if status != 201 && status != 200 {
            bail!("creating a demo connection answered {status}: {created}");
        }
        let id = created["connection"]["connection_id"]
            .as_str()
            .context("no connection id")?
            .to_owned();
        loop {
            let (_, s) = self
                .call("GET", &format!("/v1/connections/{id}/setup-status"), None)
                .await?;
            match s["setup_state"].as_str() {
                Some("active") => return Ok(id),
                Some("first_sync_pending" | "first_sync_running") => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                other => bail!("the first sync of {records} records ended as {other:?}: {s}"),
            }
        }
    }

    /// The list's cursor after `n` connections (pages of 500).
    async fn cursor_after(&self, n: usize) -> anyhow::Result<String> {
        let mut after: Option<String> = None;
        let mut seen = 0;
        while seen < n {
            let limit = (n - seen).min(500);
            let path = match &after {
                Some(a) => format!("/v1/connections?limit={limit}&after={a}"),
                None => format!("/v1/connections?limit={limit}"),
            };
            let (status, page) = self.call("GET", &path, None).await?;
            if status != 200 {
                bail!("listing connections answered {status}: {page}");
            }
            seen += page["connections"].as_array().map_or(0, Vec::len);
            after = Some(page["next_after"].as_str().context("the list ended early")?.to_owned());
        }
        after.context("no cursor")
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    io: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            io: BufReader::new(s),
            host: addr.to_owned(),
        })
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n",
            self.host
        );
        if body.is_some() {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                payload.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(&payload);
        self.io.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP answer: {line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.io.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.io.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16).context("a chunk size")?;
                let mut chunk = vec![0; size + 2];
                self.io.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..size]);
            }
        } else {
            out.resize(length.context("an answer without a length")?, 0);
            self.io.read_exact(&mut out).await?;
        }
        Ok((status, out))
    }
}

/// One load row: `clients` connections, each sending the same GET back to
/// back for `time`.
struct Load {
    addr: String,
    token: String,
    path: String,
    clients: usize,
    time: Duration,
}

struct Measured {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

impl Load {
    async fn run(&self) -> anyhow::Result<Measured> {
        // Warm-up: one second, not counted.
        self.round(Duration::from_secs(1)).await?;
        let start = Instant::now();
        let (mut lat, errors) = self.round(self.time).await?;
        let took = start.elapsed();
        lat.sort();
        if lat.is_empty() {
            bail!("no answer from {}", self.path);
        }
        let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        Ok(Measured {
            rps: lat.len() as f64 / took.as_secs_f64(),
            p50: at(0.5),
            p99: at(0.99),
            errors,
        })
    }

    async fn round(&self, time: Duration) -> anyhow::Result<(Vec<Duration>, usize)> {
        let end = Instant::now() + time;
        let mut tasks = Vec::new();
        for _ in 0..self.clients {
            let (addr, token, path) = (self.addr.clone(), self.token.clone(), self.path.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::open(&addr).await?;
                let mut lat = Vec::new();
                let mut errors = 0;
                while Instant::now() < end {
                    let t = Instant::now();
                    let (status, _) = conn.send("GET", &path, &token, None).await?;
                    lat.push(t.elapsed());
                    if status != 200 {
                        errors += 1;
                    }
                }
                anyhow::Ok((lat, errors))
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (lat, e) = t.await??;
            all.extend(lat);
            errors += e;
        }
        Ok((all, errors))
    }
}

impl Measured {
    fn print(&self, what: &str, base: Option<&Measured>) {
        let ratio = base.map(|b| format!("  ({:.1}% of baseline rate)", 100.0 * self.rps / b.rps));
        println!(
            "{what:<46} {:>8.0} rps  p50 {:>6.2} ms  p99 {:>6.2} ms{}{}",
            self.rps,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            ratio.unwrap_or_default(),
            if self.errors > 0 {
                format!("  {} NON-200 ANSWERS", self.errors)
            } else {
                String::new()
            }
        );
    }
}
