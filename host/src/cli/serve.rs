//! `pdpp-host serve`: resolve the configuration (file, environment, flags)
//! and hand it to the library's server.

use super::{TrustArgs, exit};
use anyhow::Context;
use pdpp_host::config::ConfigFile;
use pdpp_host::deploy::DeployOptions;
use pdpp_host::sandbox::RunLimits;
use pdpp_host::server::{Listening, ServeConfig};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// A TOML configuration file (see docs/configuration.md). Environment
    /// variables override it; flags override both.
    #[arg(long, env = "PDPP_CONFIG")]
    pub config: Option<PathBuf>,
    /// The data directory (database, vault key, owner token hash, cache). Default `.pdpp/data`.
    #[arg(long, env = "PDPP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL (`sqlite://…` or `postgres://…`); default: SQLite in the data directory.
    #[arg(long, env = "PDPP_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The vault key file.
    #[arg(long, env = "PDPP_VAULT_KEY_FILE")]
    pub vault_key_file: Option<PathBuf>,
    /// Address and port to listen on. Default `127.0.0.1:8787`.
    #[arg(long, env = "PDPP_BIND")]
    pub bind: Option<String>,
    /// The plugin directory: `.wasm` files with embedded manifests (or sidecars). Default `.pdpp/plugins`.
    #[arg(long, env = "PDPP_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// The AOT cache directory (default: `<data dir>/cache`).
    #[arg(long, env = "PDPP_PLUGIN_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<i32> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let deploy = DeployOptions {
        data_dir: args
            .data_dir
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(".pdpp/data")),
        database_url: args.database_url.or(file.database_url.clone()),
        key_file: args.vault_key_file.or(file.vault_key_file.clone()),
    };
    let config = ServeConfig {
        deploy,
        bind: args
            .bind
            .or(file.bind.clone())
            .unwrap_or_else(|| "127.0.0.1:8787".into()),
        plugin_dir: args
            .plugin_dir
            .or(file.plugin_dir.clone())
            .unwrap_or_else(|| PathBuf::from(".pdpp/plugins")),
        load: args.trust.options(args.cache_dir)?,
        limits: file.limits.apply(RunLimits::default()),
        egress: file.egress.config().context("the [egress] configuration")?,
        full_refresh_interval_seconds: file.collection.full_refresh_interval_seconds,
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
        // Shown once; only its hash is kept.
        println!("owner token: {}", t.as_str());
        println!(
            "(shown once: keep it; only its hash is stored in {})",
            l.data_dir.display()
        );
    }
    for (path, e) in &l.broken {
        eprintln!("pdpp-host: plugin {} not loaded: {e}", path.display());
    }
    eprintln!(
        "pdpp-host: serving the owner API on http://{} ({} plugins from {})",
        l.addr,
        l.plugins,
        l.plugin_dir.display()
    );
}
