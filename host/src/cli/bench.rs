//! `pdpp-host bench`: the demo connector through the host, against the
//! reference model (a Node.js subprocess speaking JSONL over stdin/stdout).
//!
//! Both sides do the same work per run: START in, the same 1,000 contact
//! RECORDs (with STATE every 100 and PROGRESS), DONE out, and the host turns
//! every message into a typed [`p::Message`].
//!
//! Then the cost of the sandbox hardening, against a baseline with it off in
//! the same process (runs alternate, medians compared): the run budget's
//! accounting on 1,000 and 10,000 records, and response scrubbing plus
//! structural redaction on an egress-heavy run (the `fetch` test guest
//! against a loopback double that echoes the secret it is sent).

use anyhow::{Context, bail};
use pdpp_host::plugins::LoadOptions;
use pdpp_host::protocol::{self as p, StreamScope};
use pdpp_host::runtime::{self, Observer, RunRequest};
use pdpp_host::sandbox::Sandbox;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The demo connector component.
    #[arg(long, default_value = "target/wasm32-wasip2/release/demo.wasm")]
    pub plugin: PathBuf,
    /// The demo connector's manifest.
    #[arg(long, default_value = "manifests/demo.json")]
    pub manifest: PathBuf,
    /// The Node.js baseline connector.
    #[arg(long, default_value = "bench/node-demo-connector.mjs")]
    pub node_script: PathBuf,
    /// Runs per measurement.
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    /// RECORDs per run.
    #[arg(long, default_value_t = 1000)]
    pub records: u64,
    /// Measure browser sessions instead (time to first page, browser and
    /// driver memory) against a Node.js process driving its own Chromium.
    #[arg(long)]
    pub browser: bool,
    /// The Node.js browser baseline.
    #[arg(long, default_value = "bench/node-browser-baseline.mjs")]
    pub node_browser_script: PathBuf,
    /// The egress-heavy connector (the `fetch` test guest).
    #[arg(long, default_value = "target/test-guests/wasm32-wasip2/release/fetch.wasm")]
    pub egress_plugin: PathBuf,
    /// Its manifest.
    #[arg(long, default_value = "tests/guests/fetch/fetch.json")]
    pub egress_manifest: PathBuf,
    /// Requests per egress-heavy run.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Measure the owner API under load instead (setup status flat in
    /// history, the paged connection list) against `/healthz`.
    #[arg(long)]
    pub api: bool,
    /// Connections in the API bench's store.
    #[arg(long, default_value_t = 10_000)]
    pub api_connections: usize,
    /// Records of the API bench's large collection history.
    #[arg(long, default_value_t = 100_000)]
    pub api_history: u64,
    /// Concurrent keep-alive clients per API load row.
    #[arg(long, default_value_t = 32)]
    pub api_clients: usize,
    /// Seconds per API load row.
    #[arg(long, default_value_t = 5.0)]
    pub api_seconds: f64,
    /// Measure ingest instead: records/s into SQLite (and PostgreSQL with
    /// `--postgres-url`) against a raw insert of the same rows.
    #[arg(long)]
    pub ingest: bool,
    /// The PostgreSQL server for `--ingest` (a database is created per run).
    #[arg(long)]
    pub postgres_url: Option<String>,
    #[command(flatten)]
    pub parked: super::bench_parked::ParkedArgs,
    #[command(flatten)]
    pub process: super::bench_process::ProcessArgs,
}

struct Count(Arc<AtomicU64>);
impl Observer for Count {
    fn message(&mut self, msg: &p::Message) {
        if matches!(msg, p::Message::Record(_)) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.browser {
        return super::bench_browser::run(args.runs, &args.node_browser_script).await;
    }
    if args.api {
        return super::bench_api::run(super::bench_api::ApiBench {
            plugin: &args.plugin,
            manifest: &args.manifest,
            connections: args.api_connections,
            history: args.api_history,
            clients: args.api_clients,
            seconds: args.api_seconds,
        })
        .await;
    }
    if args.ingest {
        return super::bench_ingest::run(super::bench_ingest::IngestArgs::from(&args)).await;
    }
    if !args.parked.parked.is_empty() {
        return super::bench_parked::run(&args.parked).await;
    }
    if args.process.process {
        return super::bench_process::run(&args).await;
    }
    let sandbox = Sandbox::new()?;
    let t = Instant::now();
    // Compiled here, not taken from a cache: the row measures the compiler.
    let opts = LoadOptions {
        manifest_file: Some(args.manifest.clone()),
        ..Default::default()
    };
    let loaded = pdpp_host::plugins::load_file(&sandbox, &args.plugin, &opts)
        .with_context(|| format!("cannot load plugin {}", args.plugin.display()))?;
    let compile = t.elapsed();
    let manifest = loaded.manifest.clone();
    let plugin = &loaded.plugin;

    let mut inst = Vec::new();
    for _ in 0..args.runs.max(1) {
        inst.push(sandbox.instantiate_only(plugin).await?);
    }

    // The host's share of a credential probe at setup: a fresh instance and
    // one `validate-credential` call (the demo has no provider to ask).
    let mut probe = Vec::new();
    for _ in 0..args.runs.max(1) {
        let req = runtime::ProbeRequest {
            manifest: manifest.clone(),
            settings: json!({}),
            secrets: Default::default(),
            egress: Arc::default(),
            limits: Default::default(),
        };
        let t = Instant::now();
        let verdict = runtime::probe_credential(&sandbox, plugin, req).await;
        probe.push(t.elapsed());
        if verdict != runtime::ProbeVerdict::NoProbe {
            bail!("the demo's probe answered {verdict:?}");
        }
    }

    let mut wasm = Vec::new();
    for _ in 0..args.runs.max(1) {
        let seen = Arc::new(AtomicU64::new(0));
        let mut req = RunRequest::new(manifest.clone());
        req.streams = Some(vec![StreamScope::named("contacts")]);
        req.settings = json!({"contacts": args.records, "events": 0});
        let t = Instant::now();
        let out = runtime::execute(&sandbox, plugin, req, None, Box::new(Count(seen.clone())), None).await?;
        wasm.push(t.elapsed());
        if !out.succeeded() || seen.load(Ordering::Relaxed) != args.records {
            bail!("wasm run did not deliver {} records: {:?}", args.records, out.reason);
        }
    }

    let mut node = Vec::new();
    for i in 0..args.runs.max(1) {
        let t = Instant::now();
        let n = node_run(&args, i).await?;
        node.push(t.elapsed());
        if n != args.records {
            bail!("node run delivered {n} records, expected {}", args.records);
        }
    }

    let (inst, probe, wasm, node) = (median(inst), median(probe), median(wasm), median(node));
    println!(
        "machine: {} cores; runs per row: {}; records per run: {}",
        num_cpus(),
        args.runs,
        args.records
    );
    println!("compile demo.wasm (once)            {:>9.2} ms", ms(compile));
    println!("instantiate only (median)           {:>9.3} ms", ms(inst));
    println!("credential probe call (median)      {:>9.3} ms", ms(probe));
    println!("wasm: instantiate+START+records+DONE {:>8.3} ms (median)", ms(wasm));
    println!("node: spawn+START+records+DONE      {:>9.3} ms (median)", ms(node));
    println!(
        "ratio node / wasm                   {:>9.1}x",
        node.as_secs_f64() / wasm.as_secs_f64()
    );

    println!("hardening (run budget, response scrubbing, structural redaction): off vs on, medians");
    for records in [1_000u64, 10_000] {
        let mut off = Vec::new();
        let mut on = Vec::new();
        for i in 0..args.runs.max(1) * 2 {
            let hardening = i % 2 == 1;
            pdpp_host::sandbox::budget::set_hardening_for_bench(hardening);
            let t = demo_run(&sandbox, plugin, &manifest, records).await?;
            if hardening { on.push(t) } else { off.push(t) }
        }
        pdpp_host::sandbox::budget::set_hardening_for_bench(true);
        row(&format!("demo {records} records"), median(off), median(on));
    }
    match egress_rows(&sandbox, &args).await {
        Ok(Some((off, on))) => row(&format!("egress {} requests (16 KiB echo)", args.requests), off, on),
        Ok(None) => println!(
            "egress row skipped: {} not found (build the test guests: cargo test -p pdpp-host --test it egress)",
            args.egress_plugin.display()
        ),
        Err(e) => return Err(e),
    }
    // The price of the lean memories (explicit bounds checks, data copied
    // in) that let 50,000 runs park: the same runs on wasmtime's defaults.
    println!("memory tuning (docs/sandbox.md, Capacity): wasmtime defaults vs lean (the host's), medians");
    let defaults = Sandbox::with_tuning(pdpp_host::sandbox::MemoryTuning::Reserved)?;
    let other = pdpp_host::plugins::load_file(&defaults, &args.plugin, &opts)?;
    let (mut inst_d, mut inst_l) = (Vec::new(), Vec::new());
    for _ in 0..args.runs.max(1) {
        inst_d.push(defaults.instantiate_only(&other.plugin).await?);
        inst_l.push(sandbox.instantiate_only(plugin).await?);
    }
    tuning_row("instantiate only", median(inst_d), median(inst_l));
    for records in [1_000u64, 10_000] {
        let (mut d, mut l) = (Vec::new(), Vec::new());
        for _ in 0..args.runs.max(1) {
            d.push(demo_run(&defaults, &other.plugin, &manifest, records).await?);
            l.push(demo_run(&sandbox, plugin, &manifest, records).await?);
        }
        tuning_row(&format!("demo {records} records"), median(d), median(l));
    }
    Ok(())
}

fn tuning_row(what: &str, defaults: Duration, lean: Duration) {
    println!(
        "  {what:<36} defaults {:>9.3} ms   lean {:>9.3} ms   {:+.1}%",
        ms(defaults),
        ms(lean),
        (lean.as_secs_f64() / defaults.as_secs_f64() - 1.0) * 100.0
    );
}

fn row(what: &str, off: Duration, on: Duration) {
    println!(
        "  {what:<36} off {:>9.3} ms   on {:>9.3} ms   {:+.1}%",
        ms(off),
        ms(on),
        (on.as_secs_f64() / off.as_secs_f64() - 1.0) * 100.0
    );
}

async fn demo_run(
    sandbox: &Sandbox,
    plugin: &pdpp_host::sandbox::Plugin,
    manifest: &Arc<pdpp_host::manifest::Manifest>,
    records: u64,
) -> anyhow::Result<Duration> {
    let seen = Arc::new(AtomicU64::new(0));
    let mut req = RunRequest::new(manifest.clone());
    req.streams = Some(vec![StreamScope::named("contacts")]);
    req.settings = json!({"contacts": records, "events": 0});
    let t = Instant::now();
    let out = runtime::execute(sandbox, plugin, req, None, Box::new(Count(seen.clone())), None).await?;
    let took = t.elapsed();
    if !out.succeeded() || seen.load(Ordering::Relaxed) != records {
        bail!("wasm run did not deliver {records} records: {:?}", out.reason);
    }
    Ok(took)
}

/// The egress-heavy rows: `--requests` GETs with a bearer secret to a
/// loopback double answering 16 KiB that echoes the authorization header.
async fn egress_rows(sandbox: &Sandbox, args: &BenchArgs) -> anyhow::Result<Option<(Duration, Duration)>> {
    use pdpp_host::egress::{EgressConfig, Origin};
    use tokio::io::AsyncReadExt;
    if !args.egress_plugin.exists() {
        return Ok(None);
    }
    let opts = LoadOptions {
        manifest_file: Some(args.egress_manifest.clone()),
        ..Default::default()
    };
    let loaded = pdpp_host::plugins::load_file(sandbox, &args.egress_plugin, &opts)
        .with_context(|| format!("cannot load plugin {}", args.egress_plugin.display()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let double = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let auth = head
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: "))
                    .unwrap_or("")
                    .to_owned();
                let filler = "x".repeat(16 << 10);
                let body = format!(r#"{{"you_sent":"{auth}","filler":"{filler}"}}"#);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    let to = Origin::parse(&format!("http://127.0.0.1:{port}")).expect("an origin");
    let config = Arc::new(EgressConfig {
        rewrites: vec![(Origin::parse("http://double.test").expect("an origin"), to)],
        allow_private_addresses: false,
        allow_loopback_for_rewrites: true,
    });
    let requests: Vec<serde_json::Value> = (0..args.requests)
        .map(|_| json!({ "url": "http://double.test/echo", "bearer": true }))
        .collect();
    let mut off = Vec::new();
    let mut on = Vec::new();
    let runs = (args.runs / 3).max(3);
    for i in 0..runs * 2 {
        let hardening = i % 2 == 1;
        pdpp_host::sandbox::budget::set_hardening_for_bench(hardening);
        let mut req = RunRequest::new(loaded.manifest.clone());
        req.settings = json!({ "requests": requests });
        req.egress = config.clone();
        req.secrets = [(
            "token".to_string(),
            zeroize::Zeroizing::new("bench-token-value-0042".to_string()),
        )]
        .into_iter()
        .collect();
        req.limits.http.max_requests = args.requests as u64 + 1;
        let t = Instant::now();
        let out = runtime::execute(sandbox, &loaded.plugin, req, None, Box::new(runtime::Quiet), None).await?;
        let took = t.elapsed();
        if !out.succeeded() || out.usage.requests.len() != args.requests {
            bail!("egress run failed: {:?} {:?}", out.reason, out.message);
        }
        if hardening { on.push(took) } else { off.push(took) }
    }
    pdpp_host::sandbox::budget::set_hardening_for_bench(true);
    double.abort();
    Ok(Some((median(off), median(on))))
}

pub(super) fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// One reference-model run: spawn, START on stdin, parse every stdout line.
async fn node_run(args: &BenchArgs, i: usize) -> anyhow::Result<u64> {
    let mut child = tokio::process::Command::new("node")
        .arg(&args.node_script)
        .arg(args.records.to_string())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot start node (is Node.js installed?)")?;
    let start = p::Message::Start(p::Start {
        run_id: format!("bench_{i}"),
        collection_mode: p::CollectionMode::Incremental,
        scope: p::Scope {
            streams: vec![StreamScope::named("contacts")],
        },
        state: Some(Default::default()),
        bindings: Default::default(),
    });
    let mut stdin = child.stdin.take().expect("piped");
    let mut line = start.to_json_line();
    line.push('\n');
    stdin.write_all(line.as_bytes()).await?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut records = 0;
    while let Some(l) = lines.next_line().await? {
        match serde_json::from_str::<p::Message>(&l)? {
            p::Message::Record(_) => records += 1,
            p::Message::Done(_) => break,
            _ => {}
        }
    }
    drop(stdin);
    child.wait().await?;
    Ok(records)
}
