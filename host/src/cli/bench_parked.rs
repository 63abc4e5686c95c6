//! `pdpp-host bench --parked 1000,10000,50000`: what a run parked on an
//! INTERACTION costs this host.
//!
//! For each N, N runs of the `script` test guest are started in this process
//! through the runtime `serve` uses (`runtime::execute`, same sandbox, same
//! session); each asks one question and waits for an answer that never
//! comes. Once every run is waiting (or has ended), the bench reads this
//! process's resident memory (`VmRSS`), its memory mappings
//! (`/proc/self/maps` lines, against the kernel's `vm.max_map_count`) and
//! its CPU time over a few idle seconds; then it cancels every run and
//! checks how each ended. The baseline is one Node.js connector process
//! blocked on stdin before START (its RSS and PSS).
//!
//! Where a parked run's bytes are: the size of the run's future (held by its
//! task), and the resident memory added, split by `/proc/self/smaps` into the
//! guest's linear memories and fiber stacks (the lean mappings carry the
//! `nh` flag), the rest of the anonymous memory (the host's heap) and
//! file-backed pages.
//!
//! `--parked-tuning reserved` (alias `wasmtime-defaults`) measures the same
//! with wasmtime's own memory settings (`[sandbox] memory = "reserved"`).

use anyhow::{Context, bail};
use pdpp_host::manifest::Manifest;
use pdpp_host::protocol as p;
use pdpp_host::runtime::{self, InteractionHandler, Observer, RunRequest};
use pdpp_host::sandbox::{Grants, MemoryTuning, RunControl, Sandbox};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `--parked` and its options.
#[derive(clap::Args)]
pub struct ParkedArgs {
    /// Park this many runs on an INTERACTION, for each count (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "N,N,…")]
    pub parked: Vec<usize>,
    /// The guest that asks one question and waits (the `script` test guest).
    #[arg(long, default_value = "target/test-guests/wasm32-wasip2/release/script.wasm")]
    pub parked_plugin: std::path::PathBuf,
    /// `wasmtime-defaults` measures wasmtime's own memory settings instead.
    #[arg(long, value_enum, default_value = "lean")]
    pub parked_tuning: Tuning,
    /// Leave out the Node.js baseline (each count of a list runs as such a
    /// child process of the bench).
    #[arg(long)]
    pub no_node_baseline: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Tuning {
    Lean,
    /// wasmtime's defaults (`[sandbox] memory = "reserved"`).
    #[value(alias = "reserved")]
    WasmtimeDefaults,
}

/// Seconds of idle CPU measured with every run parked.
const IDLE_WINDOW: Duration = Duration::from_secs(5);

/// Counts questions asked and never answers them.
struct Parker(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl InteractionHandler for Parker {
    async fn answer(&self, _req: &p::Interaction) -> p::InteractionAnswer {
        self.0.fetch_add(1, Ordering::AcqRel);
        std::future::pending().await
    }
}

struct Ended(Arc<AtomicUsize>);
impl Drop for Ended {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

struct Quiet;
impl Observer for Quiet {
    fn message(&mut self, _msg: &p::Message) {}
}

fn status_kib(field: &str) -> u64 {
    read_kib(Path::new("/proc/self/status"), field)
}

fn read_kib(path: &Path, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Resident KiB by kind, from `/proc/self/smaps`: the sandbox's guest
/// memories and fiber stacks (anonymous, flagged `nh` by `sandbox/vm.rs`),
/// the rest of the anonymous memory (the host's heap: malloc arenas, `[heap]`,
/// thread stacks) and file-backed pages (code).
fn resident_split() -> (u64, u64, u64) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let (mut guest, mut host, mut file) = (0, 0, 0);
    let (mut rss, mut anon_region) = (0u64, false);
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) {
            // A mapping's header: address perms offset dev inode [path].
            let path = line.split_whitespace().nth(5).unwrap_or("");
            anon_region = path.is_empty() || path.starts_with('[');
        } else if first == "Rss:" {
            rss = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if first == "VmFlags:" {
            let nohuge = line.split_whitespace().any(|f| f == "nh");
            match (anon_region, nohuge) {
                (true, true) => guest += rss,
                (true, false) => host += rss,
                (false, _) => file += rss,
            }
        }
    }
    (guest, host, file)
}

fn max_map_count() -> String {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// This process's user+system CPU time (clock ticks of 1/100 s).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12) // utime, stime (fields 14 and 15)
}

fn script_manifest() -> anyhow::Result<Arc<Manifest>> {
    let m = json!({
        "connector_id": "script",
        "version": "1",
        "streams": [{
            "name": "a",
            "primary_key": ["id"],
            "cursor_field": "updated_at",
            "schema": { "type": "object", "required": ["id"], "properties": { "id": {}, "updated_at": {} } }
        }]
    });
    Ok(Arc::new(Manifest::from_json(&m.to_string())?))
}

pub async fn run(args: &ParkedArgs) -> anyhow::Result<()> {
    // Each count in a process of its own: an allocator keeps what an
    // earlier round freed and hands it to the next, which would then look
    // smaller than it is (glibc's `malloc_trim` below returns its part, but
    // the binary's allocator is mimalloc, whose free pages are per thread).
    if args.parked.len() > 1 {
        for n in &args.parked {
            let tuning = match args.parked_tuning {
                Tuning::Lean => "lean",
                Tuning::WasmtimeDefaults => "wasmtime-defaults",
            };
            let status = std::process::Command::new(std::env::current_exe()?)
                .args([
                    "bench",
                    "--parked",
                    &n.to_string(),
                    "--parked-tuning",
                    tuning,
                    "--parked-plugin",
                ])
                .arg(&args.parked_plugin)
                .arg("--no-node-baseline")
                .status()?;
            if !status.success() {
                bail!("the round of {n} parked runs failed ({status})");
            }
        }
        node_baseline().await;
        return Ok(());
    }
    let tuning = match args.parked_tuning {
        Tuning::Lean => MemoryTuning::Lean,
        Tuning::WasmtimeDefaults => MemoryTuning::Reserved,
    };
    let (counts, plugin) = (&args.parked, &args.parked_plugin);
    let sandbox = Arc::new(Sandbox::with_tuning(tuning)?);
    let most = counts.iter().copied().max().unwrap_or(0);
    sandbox.set_max_live_runs(most);
    let bytes = std::fs::read(plugin).with_context(|| {
        format!(
            "cannot read {} (build the test guests: cargo build --release --target wasm32-wasip2 -p script \
             --target-dir target/test-guests)",
            plugin.display()
        )
    })?;
    let compiled = Arc::new(sandbox.compile(&bytes, &Grants::none())?);
    let manifest = script_manifest()?;

    println!(
        "parked runs ({tuning:?} memory), {} CPUs, vm.max_map_count {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        max_map_count()
    );
    // The host's part of a parked run that is not allocated on its own:
    // the run's future, held by its task.
    {
        let req = RunRequest::new(manifest.clone());
        let fut = runtime::execute(&sandbox, &compiled, req, None, Box::new(Quiet), None);
        println!(
            "the run's future (runtime::execute): {} bytes",
            std::mem::size_of_val(&fut)
        );
    }
    // One run first, so that lazily built parts of the engine and runtime
    // are not charged to the first N.
    park(&sandbox, &compiled, &manifest, 1).await?;

    for &n in counts {
        park(&sandbox, &compiled, &manifest, n).await?;
    }
    // The fixed cost of a run under this tuning (the data segments are
    // copied in rather than mapped copy-on-write when lean). Measured after
    // the parked rounds: the heap these instances free would otherwise be
    // reused by the first round and hide part of its cost.
    let mut inst = Vec::new();
    for _ in 0..200 {
        inst.push(sandbox.instantiate_only(&compiled).await?);
    }
    inst.sort();
    println!(
        "instantiate only (median of 200): {:.3} ms",
        inst[inst.len() / 2].as_secs_f64() * 1e3
    );
    if !args.no_node_baseline {
        node_baseline().await;
    }
    Ok(())
}

async fn park(
    sandbox: &Arc<Sandbox>,
    plugin: &Arc<pdpp_host::sandbox::Plugin>,
    manifest: &Arc<Manifest>,
    n: usize,
) -> anyhow::Result<()> {
    // Heap pages the previous round freed would be reused by this one
    // without showing in its RSS delta: give them back to the kernel before
    // the baseline is read, so each N is measured as if from a fresh process.
    // SAFETY: glibc's malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    let rss0 = status_kib("VmRSS:");
    let split0 = resident_split();
    let maps0 = mappings();
    let asked = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let handler: Arc<dyn InteractionHandler> = Arc::new(Parker(asked.clone()));
    let ask = json!({ "type": "INTERACTION", "kind": "otp", "message": "Enter the code",
                      "schema": { "type": "object", "properties": { "code": { "type": "string" } } } });
    let t = Instant::now();
    let mut controls = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let mut req = RunRequest::new(manifest.clone());
        req.settings = json!({ "script": [ask.clone(), { "type": "DONE", "status": "succeeded" }] });
        let control = RunControl::new();
        req.control = control.clone();
        controls.push(control);
        let (sandbox, plugin, handler, ended) = (sandbox.clone(), plugin.clone(), handler.clone(), ended.clone());
        tasks.push(tokio::spawn(async move {
            // Counted as ended even if the run's task panics.
            let _ended = Ended(ended);
            let out = runtime::execute(&sandbox, &plugin, req, Some(handler), Box::new(Quiet), None).await;
            out.map(|o| o.reason.map(|r| r.code()).unwrap_or("succeeded"))
                .unwrap_or("refused_before_start")
        }));
    }
    // Every run either waits for its answer or has ended.
    while asked.load(Ordering::Acquire) + ended.load(Ordering::Acquire) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let park_time = t.elapsed();
    let parked = asked.load(Ordering::Acquire);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = status_kib("VmRSS:");
    let split = resident_split();
    let maps = mappings();

    let ticks0 = cpu_ticks();
    let idle_t = Instant::now();
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle = (cpu_ticks() - ticks0) as f64 / 100.0 / idle_t.elapsed().as_secs_f64();

    for c in &controls {
        c.cancel();
    }
    let mut ends: BTreeMap<&'static str, usize> = BTreeMap::new();
    for task in tasks {
        *ends.entry(task.await.unwrap_or("panicked")).or_default() += 1;
    }
    if n > 1 {
        let per_run = |now: u64, before: u64| now.saturating_sub(before) as f64 / n as f64;
        println!(
            "N={n:>6}: parked {parked}/{n} in {:.2} s; RSS +{:.1} MiB ({:.1} KiB/run); mappings {maps0} -> {maps} \
             ({:.2}/run); idle CPU {:.2}% of a core; ended after cancel: {ends:?}",
            park_time.as_secs_f64(),
            rss.saturating_sub(rss0) as f64 / 1024.0,
            per_run(rss, rss0),
            (maps as f64 - maps0 as f64) / n as f64,
            idle * 100.0,
        );
    }
    // Only the lean memories and stacks carry the `nh` flag the split reads.
    if n > 1 && sandbox.tuning() == MemoryTuning::Lean {
        let per_run = |now: u64, before: u64| now.saturating_sub(before) as f64 / n as f64;
        println!(
            "         per run: {:.1} KiB guest memories and fiber stacks, {:.1} KiB host heap, {:.1} KiB file-backed",
            per_run(split.0, split0.0),
            per_run(split.1, split0.1),
            per_run(split.2, split0.2),
        );
    }
    if parked < n && n > 1 {
        println!("         not every run parked: {} ended early", n - parked);
    }
    if ends.keys().any(|k| *k != "owner_cancelled") && parked == n {
        bail!("a parked run ended otherwise than owner_cancelled: {ends:?}");
    }
    Ok(())
}

/// One Node.js connector process waiting for START on stdin: its RSS and PSS.
async fn node_baseline() {
    let script = Path::new("bench/node-demo-connector.mjs");
    let child = tokio::process::Command::new("node")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(child) = child else {
        println!("node baseline: node is not available");
        return;
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let Some(pid) = child.id() else { return };
    let rollup = Path::new("/proc").join(pid.to_string()).join("smaps_rollup");
    println!(
        "baseline: one Node.js connector process waiting on stdin ({}): RSS {:.1} MiB, PSS {:.1} MiB",
        script.display(),
        read_kib(&rollup, "Rss:") as f64 / 1024.0,
        read_kib(&rollup, "Pss:") as f64 / 1024.0,
    );
}
