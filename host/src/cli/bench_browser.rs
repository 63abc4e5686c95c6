//! `pdpp-host bench --browser`: one browser session per run through the
//! host (its browser service: chromedriver and headless Chromium behind the
//! egress proxy, the page's origin rewritten to a loopback page), against
//! the reference model (a Node.js process starting its own chromedriver and
//! Chromium and driving them over WebDriver, with no egress filtering).
//!
//! Both sides open the same loopback page and read its list items. Each row
//! is the median of the runs: time to first page (from the start of the
//! run: for the host the session start and the navigation; for Node also
//! the process spawn, as the reference starts one process per run), and
//! the memory of the browser and its driver (proportional set size, so
//! pages shared between processes count once).

use anyhow::{Context, bail};
use axum::Router;
use axum::response::Html;
use axum::routing::get;
use pdpp_host::browser::{
    AtEnd, BrowserConfig, BrowserService, CancellationToken, Origin, SessionSpec, live_browser_processes,
};
use pdpp_host::egress::{Allowlist, EgressConfig, EgressPolicy};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const PAGE: &str = "<title>Books</title><ul><li>Kindred</li><li>Piranesi</li><li>Emma</li></ul>";

/// One run's numbers.
struct Sample {
    first_page: Duration,
    pss_bytes: u64,
    rss_bytes: u64,
}

pub async fn run(runs: usize, node_script: &Path) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, Router::new().route("/", get(|| async { Html(PAGE) }))).await });
    let local = format!("http://127.0.0.1:{port}/");

    let service = BrowserService::new(BrowserConfig::default())?;
    if let Some(why) = service.unavailable() {
        bail!("{why} (install Debian's chromium and chromium-driver)");
    }
    let declared = Origin::parse("https://books.example").expect("origin");
    let policy = Arc::new(EgressPolicy::new(
        Allowlist::new([declared.clone()]),
        Arc::new(EgressConfig {
            rewrites: vec![(declared, Origin::parse(&local).expect("origin"))],
            allow_private_addresses: false,
            allow_loopback_for_rewrites: true,
        }),
    ));

    let mut host = Vec::new();
    let mut node = Vec::new();
    let mut node_rss = Vec::new();
    // Interleaved, so a busy moment of the machine weighs on both sides.
    for _ in 0..runs.max(1) {
        host.push(host_run(&service, &policy).await?);
        let (sample, runner_rss) = node_run(node_script, &local, service.config()).await?;
        node.push(sample);
        node_rss.push(runner_rss);
    }
    if live_browser_processes() != 0 {
        bail!("a browser process outlived its session");
    }

    let first = |v: &[Sample]| median(v.iter().map(|s| s.first_page.as_secs_f64() * 1e3).collect());
    let pss = |v: &[Sample]| median(v.iter().map(|s| mib(s.pss_bytes)).collect());
    let rss = |v: &[Sample]| median(v.iter().map(|s| mib(s.rss_bytes)).collect());
    println!("browser runs: {} per side, interleaved", runs.max(1));
    println!("                                      host (wasm)     node     node / host");
    println!(
        "time to first page (median)      {:>10.1} ms {:>7.1} ms {:>9.2}x",
        first(&host),
        first(&node),
        first(&node) / first(&host)
    );
    println!(
        "browser + driver PSS (median)    {:>10.1} MiB {:>6.1} MiB {:>8.2}x",
        pss(&host),
        pss(&node),
        pss(&node) / pss(&host)
    );
    println!(
        "browser + driver RSS (median)    {:>10.1} MiB {:>6.1} MiB",
        rss(&host),
        rss(&node)
    );
    println!(
        "the Node runner process itself   {:>10} {:>10.1} MiB",
        "-",
        median(node_rss.iter().map(|b| mib(*b)).collect())
    );
    Ok(())
}

/// Start a session, open the page through the rewrite, read it, end.
async fn host_run(service: &BrowserService, policy: &Arc<EgressPolicy>) -> anyhow::Result<Sample> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let t = Instant::now();
    let spec = SessionSpec {
        policy: policy.clone(),
        profile: None,
    };
    let mut session = service.start(spec, deadline, &CancellationToken::new()).await?;
    session.navigate("https://books.example/", deadline).await?;
    let first_page = t.elapsed();
    let items = session.read_all_text("li", 10, deadline).await?;
    if items.values.len() != 3 {
        bail!("the host read {} items, expected 3", items.values.len());
    }
    let memory = session.memory();
    session.end(AtEnd::DiscardProfile).await?;
    Ok(Sample {
        first_page,
        pss_bytes: memory.pss_bytes,
        rss_bytes: memory.rss_bytes,
    })
}

/// Spawn the Node baseline for one run; its sample and the runner's own RSS.
async fn node_run(script: &Path, url: &str, config: &BrowserConfig) -> anyhow::Result<(Sample, u64)> {
    let t = Instant::now();
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .arg(url)
        .arg(&config.chromedriver)
        .arg(&config.chromium)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start node (is Node.js installed?)")?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut first_page = None;
    let mut report = None;
    while let Some(line) = lines.next_line().await? {
        let v: serde_json::Value = serde_json::from_str(&line).context("the node baseline printed something else")?;
        if v["first_page"] == true {
            first_page = Some(t.elapsed());
        } else {
            report = Some(v);
        }
    }
    if !child.wait().await?.success() {
        bail!("the node baseline failed");
    }
    let (Some(first_page), Some(report)) = (first_page, report) else {
        bail!("the node baseline did not report");
    };
    if report["items"] != 3 {
        bail!("the node baseline read {} items, expected 3", report["items"]);
    }
    let bytes = |k: &str| report[k].as_u64().unwrap_or_default();
    Ok((
        Sample {
            first_page,
            pss_bytes: bytes("pss_bytes"),
            rss_bytes: bytes("rss_bytes"),
        },
        bytes("node_rss_bytes"),
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}
