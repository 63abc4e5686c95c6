//! A serving host (`pdpp-host serve`): the deployment, the plugin catalog
//! (watched, and recorded in the store whenever it changes), the owner API,
//! and the background work a serving host owes to every host sharing its
//! database (closing runs whose process died).

use crate::api::{AppState, OwnerToken};
use crate::deploy::{DeployError, DeployOptions, Deployment};
use crate::egress::EgressConfig;
use crate::plugins::{Catalog, CatalogOptions, LoadOptions, PluginError};
use crate::runtime::Runs;
use crate::sandbox::{RunLimits, Sandbox};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// How long a shutdown waits for the runs it cancelled to end.
const RUN_STOP_WAIT: Duration = Duration::from_secs(5);

/// How often runs whose process died elsewhere are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Everything `serve` needs, resolved from the configuration file, the
/// environment and the flags (see docs/configuration.md).
pub struct ServeConfig {
    pub deploy: DeployOptions,
    /// Address and port to listen on.
    pub bind: String,
    pub plugin_dir: PathBuf,
    /// How plugin files are loaded (signature policy, trusted keys, AOT
    /// cache); the cache defaults to `<data dir>/cache`.
    pub load: LoadOptions,
    /// The deployment's run limits (a manifest can only lower them).
    pub limits: RunLimits,
    pub egress: EgressConfig,
    /// The host-held browser of browser-backed connectors.
    pub browser: crate::browser::BrowserConfig,
    /// `[collection] full_refresh_interval_seconds`: overrides every
    /// manifest's periodic full-refresh recommendation (0: off).
    pub full_refresh_interval_seconds: Option<u64>,
    /// `[capacity] max_live_runs`: runs and probes live at once; one more is
    /// refused as `host_capacity`.
    pub max_live_runs: usize,
    /// `[sandbox] memory`: how guests' memories and stacks are made.
    pub memory: crate::sandbox::MemoryTuning,
}

/// Why the host could not start serving. Nothing was left half done: a
/// first start that fails before listening creates no owner token.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error("cannot listen on {bind}: {source}")]
    Bind { bind: String, source: std::io::Error },
    #[error("cannot create the plugin directory {path}: {source}")]
    PluginDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Plugins(#[from] PluginError),
    #[error("the owner token in {dir}: {source}")]
    OwnerToken { dir: PathBuf, source: std::io::Error },
    #[error("the wasm engine: {0}")]
    Engine(String),
    #[error("the browser service: {0}")]
    Browser(#[from] crate::browser::BrowserError),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// What a host that is listening tells its operator.
pub struct Listening {
    pub addr: SocketAddr,
    /// The owner token of a first start, shown once (only its hash is kept).
    pub new_owner_token: Option<Zeroizing<String>>,
    pub data_dir: PathBuf,
    pub plugin_dir: PathBuf,
    /// Plugin files found, loading in the background.
    pub loading: usize,
}

/// Serve until `shutdown` resolves. `on_listening` is called once the
/// socket is bound and the owner token exists (created on a first start).
pub async fn serve(
    config: ServeConfig,
    on_listening: impl FnOnce(&Listening),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let dep = Deployment::open(config.deploy.clone()).await?;
    std::fs::create_dir_all(&config.plugin_dir).map_err(|source| ServeError::PluginDir {
        path: config.plugin_dir.clone(),
        source,
    })?;
    let sandbox = Arc::new(Sandbox::with_tuning(config.memory).map_err(|e| ServeError::Engine(e.to_string()))?);
    sandbox.set_max_live_runs(config.max_live_runs);
    // No process starts until a run asks for a browser; a host without
    // Chromium serves every other connector and refuses browser runs.
    let browser = crate::browser::BrowserService::new(config.browser.clone())?;
    if let Some(why) = browser.unavailable() {
        tracing::warn!("browser-backed connectors cannot run on this host: {why}");
    }
    let mut options = CatalogOptions::new(&config.plugin_dir);
    options.load = config.load.clone();
    if options.load.cache_dir.is_none() {
        options.load.cache_dir = Some(dep.data_dir.join("cache"));
    }
    let listener = tokio::net::TcpListener::bind(&config.bind)
        .await
        .map_err(|source| ServeError::Bind {
            bind: config.bind.clone(),
            source,
        })?;
    // Only now, with the socket bound: a failed start never consumes the
    // one display of a new token.
    let (token, fresh) = OwnerToken::load_or_create(&dep.data_dir).map_err(|source| ServeError::OwnerToken {
        dir: dep.data_dir.clone(),
        source,
    })?;
    // Listen at once; plugins compile in the background and are offered one
    // by one as each is ready (the catalog lists the ones still loading).
    let (catalog, scanning) = Catalog::open_in_background(sandbox.clone(), options);
    on_listening(&Listening {
        addr: listener.local_addr()?,
        new_owner_token: fresh,
        data_dir: dep.data_dir.clone(),
        plugin_dir: config.plugin_dir.clone(),
        loading: catalog.snapshot().pending.len(),
    });

    dep.store.host_heartbeat().await.map_err(DeployError::from)?;
    // From now on this host's heartbeat vouches for its runs (no timer per run).
    crate::store::runner::set_serving(true);
    let background = [
        tokio::spawn(record_catalog_changes(catalog.clone(), dep.store.clone())),
        tokio::spawn(sweep_interrupted_runs(dep.store.clone())),
        tokio::spawn(heartbeat(dep.store.clone())),
    ];
    let store = dep.store.clone();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let runs = Runs::new(dep.clone(), sandbox, config.full_refresh_interval_seconds);
    // Answers and cancels for this host's runs, arriving through any host.
    let attention = tokio::spawn(runs.clone().attend_forever());
    let state = Arc::new(AppState {
        runs: runs.clone(),
        stopping,
        dep,
        catalog,
        token,
        limits: config.limits,
        egress: Arc::new(config.egress),
        browser: Some(browser),
    });
    // Shutdown: stop accepting, end the event streams, let requests in
    // flight finish; then stop the runs (cancelled, with a bounded wait).
    let served = axum::serve(listener, crate::api::router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: no new requests; ending event streams and runs");
            let _ = stop.send(true);
        })
        .await;
    if !runs.shutdown(RUN_STOP_WAIT).await {
        tracing::warn!("some runs did not stop in time; the next start marks them interrupted");
    }
    for task in background {
        task.abort();
    }
    attention.abort();
    // Stop watching the plugin directory (a first scan still running ends
    // on its own; its watch handle is dropped with it).
    if scanning.is_finished() {
        match scanning.await {
            Ok(Ok(watch)) => drop(watch),
            Ok(Err(e)) => tracing::warn!("the plugin directory was not watched: {e}"),
            Err(e) => tracing::warn!("the plugin scan failed: {e}"),
        }
    }
    crate::store::runner::set_serving(false);
    if let Err(e) = store.host_stopped().await {
        tracing::warn!("cannot record that this host stopped: {e}");
    }
    Ok(served?)
}

/// After every rescan (hot reload), the store learns which connectors are
/// available, unavailable or removed.
async fn record_catalog_changes(catalog: Arc<Catalog>, store: crate::store::Store) {
    let mut changes = catalog.subscribe();
    loop {
        // The snapshot current when subscribing counts as seen: record it too.
        if let Err(e) = catalog.snapshot().sync_to(&store).await {
            tracing::error!("cannot record the plugin catalog in the store: {e}");
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Runs whose process died (on this machine, or elsewhere with a stale
/// heartbeat) are closed as interrupted.
async fn sweep_interrupted_runs(store: crate::store::Store) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = store.fail_interrupted_runs().await {
            tracing::warn!("cannot close interrupted runs: {e}");
        }
    }
}

/// This host is alive, for the other processes sharing the database.
async fn heartbeat(store: crate::store::Store) {
    let mut tick = tokio::time::interval(Duration::from_millis(crate::store::runner::HEARTBEAT_EVERY_MS));
    loop {
        tick.tick().await;
        if let Err(e) = store.host_heartbeat().await {
            tracing::warn!("cannot refresh this host's heartbeat: {e}");
        }
    }
}
