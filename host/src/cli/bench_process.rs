//! `pdpp-host bench --process`: a whole `pdpp-host run` process emitting one
//! record with a warm AOT cache, against a whole Node.js connector process
//! emitting the same record (spawn, START, RECORD, DONE, exit).
//!
//! Both are timed from spawn to exit, `--runs` times each, alternating;
//! medians are compared. The first `pdpp-host run` of a fresh data directory
//! (cold cache: it compiles the plugin) is reported on its own row.

use super::bench::BenchArgs;
use anyhow::{Context, bail};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `--process`.
#[derive(clap::Args)]
pub struct ProcessArgs {
    /// Time whole processes: `pdpp-host run` (warm cache) against Node.js, one record each.
    #[arg(long)]
    pub process: bool,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One `pdpp-host run` of the demo connector emitting one record.
fn host_run(exe: &Path, args: &BenchArgs, data_dir: &Path) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = Command::new(exe)
        .arg("run")
        .arg(&args.plugin)
        .arg("--manifest")
        .arg(&args.manifest)
        .args(["--settings", r#"{"contacts": 1, "events": 0}"#])
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .context("cannot start pdpp-host run")?;
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let records = text.lines().filter(|l| l.contains(r#""type":"RECORD""#)).count();
    if !out.status.success() || records != 1 {
        bail!("pdpp-host run exited {} with {records} records", out.status);
    }
    Ok(took)
}

/// One Node.js connector process: spawn, START, one RECORD, DONE, exit.
fn node_run(script: &Path) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut child = Command::new("node")
        .arg(script)
        .arg("1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start node (is Node.js installed?)")?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(
        concat!(
            r#"{"type":"START","run_id":"bench","collection_mode":"incremental","#,
            r#""scope":{"streams":[{"name":"contacts"}]},"state":{},"bindings":{}}"#,
            "\n"
        )
        .as_bytes(),
    )?;
    let mut records = 0;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        if line.contains(r#""type":"RECORD""#) {
            records += 1;
        }
        if line.contains(r#""type":"DONE""#) {
            break;
        }
    }
    drop(stdin);
    child.wait()?;
    let took = t.elapsed();
    if records != 1 {
        bail!("node delivered {records} records, expected 1");
    }
    Ok(took)
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("where is pdpp-host")?;
    let data = std::env::temp_dir().join(format!("pdpp-bench-process-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let timed = measure(&exe, args, &data);
    let _ = std::fs::remove_dir_all(&data);
    timed
}

fn measure(exe: &Path, args: &BenchArgs, data: &Path) -> anyhow::Result<()> {
    let cold = host_run(exe, args, data)?;
    let (mut host, mut node) = (Vec::new(), Vec::new());
    for _ in 0..args.runs.max(1) {
        host.push(host_run(exe, args, data)?);
        node.push(node_run(&args.node_script)?);
    }
    let (host, node) = (median(host), median(node));
    println!(
        "whole process, 1 record, {} runs each ({} CPUs)",
        args.runs,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("pdpp-host run, cold cache (compiles) {:>9.1} ms", ms(cold));
    println!("pdpp-host run, warm cache (median)   {:>9.1} ms", ms(host));
    println!("node connector process (median)      {:>9.1} ms", ms(node));
    println!(
        "ratio node / pdpp-host run           {:>9.1}x",
        node.as_secs_f64() / host.as_secs_f64()
    );
    Ok(())
}
