//! One browser session end to end, measured: start a session behind the
//! egress proxy, open a page served on loopback through a deployment
//! rewrite, read from it, and end the session. Prints how long each step
//! took and the memory of Chromium + chromedriver, per session.
//!
//! ```sh
//! cargo run --release -p pdpp-host --example browser_session -- 5
//! ```

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use pdpp_host::browser::{
    AtEnd, BrowserConfig, BrowserService, CancellationToken, Origin, SessionSpec, live_browser_processes,
};
use pdpp_host::egress::{Allowlist, EgressConfig, EgressPolicy};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(3);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = Router::new().route(
        "/",
        get(|| async { Html("<title>Hello</title><ul><li>one</li><li>two</li></ul>") }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let declared = Origin::parse("https://www.example.com").expect("origin");
    let policy = Arc::new(EgressPolicy::new(
        Allowlist::new([declared.clone()]),
        Arc::new(EgressConfig {
            rewrites: vec![(
                declared,
                Origin::parse(&format!("http://127.0.0.1:{port}")).expect("origin"),
            )],
            allow_private_addresses: false,
            allow_loopback_for_rewrites: true,
        }),
    ));
    let service = BrowserService::new(BrowserConfig::default())?;
    println!("run  start_ms  first_page_ms  read_ms  end_ms  processes  rss_mib  pss_mib");
    for run in 1..=runs {
        let deadline = Instant::now() + Duration::from_secs(60);
        let t = Instant::now();
        let mut session = service
            .start(
                SessionSpec {
                    policy: policy.clone(),
                    profile: None,
                },
                deadline,
                &CancellationToken::new(),
            )
            .await?;
        let start = t.elapsed();
        let t = Instant::now();
        let page = session.navigate("https://www.example.com/", deadline).await?;
        let first_page = t.elapsed();
        let t = Instant::now();
        let items = session.read_all_text("li", 10, deadline).await?;
        let read = t.elapsed();
        assert_eq!((page.title.as_str(), items.values.len()), ("Hello", 2));
        let memory = session.memory();
        let t = Instant::now();
        session.end(AtEnd::KeepProfile).await?;
        let end = t.elapsed();
        println!(
            "{run:>3}  {:>8.0}  {:>13.0}  {:>7.1}  {:>6.0}  {:>9}  {:>7.0}  {:>7.0}",
            start.as_secs_f64() * 1e3,
            first_page.as_secs_f64() * 1e3,
            read.as_secs_f64() * 1e3,
            end.as_secs_f64() * 1e3,
            memory.processes,
            memory.rss_bytes as f64 / (1 << 20) as f64,
            memory.pss_bytes as f64 / (1 << 20) as f64,
        );
    }
    assert_eq!(live_browser_processes(), 0, "every browser process is gone");
    Ok(())
}
