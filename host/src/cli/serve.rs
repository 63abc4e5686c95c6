//! `pdpp-host serve`: resolve the configuration (file, environment, flags)
//! and hand it to the library's server.

use super::{DataArgs, exit};
use anyhow::Context;
use pdpp_host::sandbox::RunLimits;
use pdpp_host::server::{Listening, ServeConfig};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address and port to listen on. Default `127.0.0.1:8787`.
    #[arg(long, env = "PDPP_BIND")]
    pub bind: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<i32> {
    let settings = args.data.resolve()?;
    let file = &settings.file;
    let config = ServeConfig {
        deploy: settings.deploy.clone(),
        bind: args
            .bind
            .or(file.bind.clone())
            .unwrap_or_else(|| "127.0.0.1:8787".into()),
        plugin_dir: settings.plugin_dir.clone(),
        load: settings.load.clone(),
        limits: RunLimits::default().with_overrides(&file.limits),
        egress: file.egress.config().context("the [egress] configuration")?,
        browser: file.browser.config(),
        full_refresh_interval_seconds: file.collection.full_refresh_interval_seconds,
        max_live_runs: file
            .capacity
            .max_live_runs
            .unwrap_or(pdpp_host::sandbox::DEFAULT_MAX_LIVE_RUNS),
        memory: file.sandbox.memory.unwrap_or_default(),
    };
    // Ctrl-C or SIGTERM (a service manager's stop) start a graceful shutdown.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    pdpp_host::server::serve(config, announce, shutdown).await?;
    Ok(exit::SUCCEEDED)
}

/// What the operator sees once the host listens.
fn announce(l: &Listening) {
    if let Some(t) = &l.new_owner_token {
        // Shown once; only its hash is kept. One write, and a closed stdout
        // (a supervisor that read the first line) is no reason to stop.
        use std::io::Write;
        let text = format!(
            "owner token: {}\n(shown once: keep it; only its hash is stored in {})\n",
            t.as_str(),
            l.data_dir.display()
        );
        let _ = std::io::stdout().write_all(text.as_bytes());
        let _ = std::io::stdout().flush();
    }
    eprintln!(
        "pdpp-host: serving the owner API on http://{} (loading {} plugin files from {})",
        l.addr,
        l.loading,
        l.plugin_dir.display()
    );
}
