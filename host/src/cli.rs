//! The `pdpp-host` command line.

use crate::deploy::{DeployOptions, Deployment};
use crate::manifest::Manifest;
use crate::protocol::{self as p, CollectionMode, StateMap, StreamScope};
use crate::runtime::ConnectionRun;
use crate::runtime::{self, InteractionHandler, Observer, RunRequest, StateInput};
use crate::sandbox::{LogLevel, Plugin, RunLimits, Sandbox};
use crate::store::{ConnectionStatus, CredentialStatus, NewConnection, Trigger};
use crate::vault::Bundle;
use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "pdpp-host",
    version,
    about = "Run PDPP connectors as sandboxed WebAssembly components"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run one connector and print every message as Collection Profile JSONL.
    Run(RunArgs),
    /// Check manifests.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// Measure runs through the host against a Node.js subprocess baseline.
    Bench(crate::bench::BenchArgs),
    /// Manage stored connections.
    Connection {
        #[command(subcommand)]
        command: ConnectionCommand,
    },
    /// Print a connection's stored records as JSONL.
    Records {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        connection: String,
        #[arg(long)]
        stream: String,
    },
    /// Serve the owner API over HTTP, with the plugin directory loaded and watched.
    Serve(ServeArgs),
    /// Read runs and their timelines.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Manage the vault key.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Inspect, validate and pack plugin files; list the plugin directory.
    Plugins {
        #[command(subcommand)]
        command: crate::plugins::cli::PluginsCommand,
    },
}

/// Where a deployment keeps its data.
#[derive(clap::Args, Clone)]
pub struct DataArgs {
    /// The data directory (database, vault key).
    #[arg(long, env = "PDPP_DATA_DIR", default_value = ".pdpp/data")]
    pub data_dir: PathBuf,
    /// Database URL (`sqlite://…` or `postgres://…`); default: SQLite in the data directory.
    #[arg(long, env = "PDPP_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The vault key file (a path; the key itself is never passed on the command line).
    #[arg(long, env = "PDPP_VAULT_KEY_FILE")]
    pub vault_key_file: Option<PathBuf>,
}

impl DataArgs {
    pub async fn open(&self) -> anyhow::Result<Deployment> {
        Ok(Deployment::open(DeployOptions {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            key_file: self.vault_key_file.clone(),
        })
        .await?)
    }
}

#[derive(Subcommand)]
pub enum ConnectionCommand {
    /// Create an active connection of a connector; prints its id.
    Add {
        #[command(flatten)]
        data: DataArgs,
        /// The connector's manifest.
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        display_name: Option<String>,
        /// Non-secret settings (a JSON object), passed to every run as START.settings.
        #[arg(long, default_value = "{}")]
        settings: String,
        /// A JSON file `{"kind": "...", "fields": {"name": "value"}}` to seal as the credential.
        #[arg(long)]
        credential: Option<PathBuf>,
    },
    /// Seal a (new) credential for a connection.
    SetCredential {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        connection: String,
        #[arg(long)]
        credential: PathBuf,
    },
    /// Revoke a connection's credential: its runs are refused until a new one is set.
    RevokeCredential {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        connection: String,
    },
}

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
}

#[derive(Subcommand)]
pub enum RunsCommand {
    /// A run and its timeline, one JSON object per line: the run, then each event.
    Show {
        #[command(flatten)]
        data: DataArgs,
        run_id: String,
    },
    /// The runs of a connection, newest first, one JSON object per line.
    List {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        connection: String,
    },
}

#[derive(Subcommand)]
pub enum VaultCommand {
    /// Re-seal every credential under a new key, in one transaction.
    RotateKey {
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Validate a manifest file; exit status 0 when it is usable.
    Validate { file: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Mode {
    Incremental,
    FullRefresh,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The connector component (.wasm).
    pub plugin: PathBuf,
    /// The manifest; defaults to `<plugin>.json` next to the plugin.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Collect only these streams (repeatable); default: every stream.
    #[arg(long = "stream", value_name = "NAME")]
    pub streams: Vec<String>,
    /// State file: read before the run, replaced with the committed state after a successful run.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// A single-use run: no prior state is given and none is committed.
    #[arg(long, conflicts_with = "state")]
    pub single_use: bool,
    #[arg(long, value_enum, default_value = "incremental")]
    pub mode: Mode,
    /// Answer INTERACTIONs at this terminal. Without it, a connector that needs
    /// input fails fast.
    #[arg(long)]
    pub interactive: bool,
    /// Non-secret connection settings, as a JSON object.
    #[arg(long, default_value = "{}")]
    pub settings: String,
    /// A JSON file of credential fields (`{"field": "value"}`) for this run.
    #[arg(long)]
    pub secrets: Option<PathBuf>,
    /// Guest CPU budget in seconds.
    #[arg(long)]
    pub cpu_seconds: Option<u64>,
    /// Wall-clock budget in seconds.
    #[arg(long)]
    pub wall_seconds: Option<u64>,
    /// Guest memory cap in MiB.
    #[arg(long)]
    pub memory_mib: Option<usize>,
    /// Run this stored connection: its credential, state and records live in the data directory.
    #[arg(long, conflicts_with_all = ["state", "single_use", "settings", "secrets"])]
    pub connection: Option<String>,
    /// With --connection: mark the run as scheduled rather than manual.
    #[arg(long, requires = "connection")]
    pub scheduled: bool,
    /// Send requests for one origin to another (`https://api.example.com=http://127.0.0.1:8080`); repeatable.
    #[arg(long = "rewrite-origin", value_name = "FROM=TO")]
    pub rewrite_origin: Vec<String>,
    /// Let rewritten origins reach loopback addresses (provider test doubles).
    #[arg(long)]
    pub allow_loopback_rewrites: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

fn egress_config(args: &RunArgs) -> anyhow::Result<crate::egress::EgressConfig> {
    use crate::egress::Origin;
    let mut config = crate::egress::EgressConfig {
        allow_loopback_for_rewrites: args.allow_loopback_rewrites,
        ..Default::default()
    };
    for r in &args.rewrite_origin {
        let (from, to) = r
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--rewrite-origin takes FROM=TO, got {r}"))?;
        let from = Origin::parse(from).ok_or_else(|| anyhow::anyhow!("not an origin: {from}"))?;
        let to = Origin::parse(to).ok_or_else(|| anyhow::anyhow!("not an origin: {to}"))?;
        config.rewrites.push((from, to));
    }
    Ok(config)
}

/// Exit statuses of `pdpp-host run`.
pub mod exit {
    pub const SUCCEEDED: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const CANCELLED: i32 = 3;
}

pub async fn main(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Run(args) => run(args).await,
        Command::Manifest {
            command: ManifestCommand::Validate { file },
        } => match Manifest::from_file(&file) {
            Ok(m) => {
                println!(
                    "{}: valid manifest for connector {} ({} streams)",
                    file.display(),
                    m.connector_id,
                    m.streams.len()
                );
                Ok(exit::SUCCEEDED)
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                Ok(exit::FAILED)
            }
        },
        Command::Bench(args) => crate::bench::run(args).await.map(|_| exit::SUCCEEDED),
        Command::Connection { command } => connection(command).await,
        Command::Records {
            data,
            connection,
            stream,
        } => records(data, &connection, &stream).await,
        Command::Runs { command } => runs(command).await,
        Command::Serve(args) => serve(args).await,
        Command::Vault {
            command: VaultCommand::RotateKey { data },
        } => rotate_key(data).await,
        Command::Plugins { command } => crate::plugins::cli::main(command).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pdpp-host: {e:#}");
            exit::USAGE
        }
    }
}

/// The manifest for a plugin: explicit, or the sidecar `<name>.json`.
pub fn load_manifest(plugin: &Path, explicit: Option<&Path>) -> anyhow::Result<Manifest> {
    if let Some(p) = explicit {
        return Ok(Manifest::from_file(p)?);
    }
    // The manifest embedded in the component (`plugins pack`) wins over a sidecar.
    let bytes = std::fs::read(plugin).with_context(|| format!("cannot read plugin {}", plugin.display()))?;
    if let Ok(Some(text)) = crate::plugins::format::embedded_manifest(&bytes) {
        let text = std::str::from_utf8(text).context("the embedded manifest is not UTF-8")?;
        return Ok(Manifest::from_json(text)?);
    }
    let sidecar = plugin.with_extension("json");
    if !sidecar.exists() {
        bail!(
            "no manifest for {}: pass --manifest FILE, pack one in with `pdpp-host plugins pack`, or put {} next to it",
            plugin.display(),
            sidecar.display()
        );
    }
    Ok(Manifest::from_file(&sidecar)?)
}

/// Load a plugin for `manifest`: linked with `wasi:http` only when the manifest
/// requires the `network` binding.
pub fn load_plugin(sandbox: &Sandbox, path: &Path, manifest: &Manifest) -> anyhow::Result<Plugin> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read plugin {}", path.display()))?;
    sandbox
        .compile(&bytes, &crate::sandbox::Grants::from_manifest(manifest))
        .with_context(|| format!("cannot load plugin {}", path.display()))
}

fn read_state(path: &Path) -> anyhow::Result<StateMap> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("{} is not a JSON object of cursors", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateMap::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read state {}", path.display())),
    }
}

/// Replace the state file in one step, so a crash leaves the old or the new state.
fn write_state(path: &Path, state: &StateMap) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(state)?;
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

fn read_secrets(path: &Path) -> anyhow::Result<BTreeMap<String, Zeroizing<String>>> {
    let text =
        Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?);
    let map: BTreeMap<String, String> = serde_json::from_str(&text)
        .map_err(|_| anyhow::anyhow!("{} must be a JSON object of strings", path.display()))?;
    Ok(map.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect())
}

/// Prints the transcript: messages to stdout as JSONL, guest logs to stderr.
struct Transcript {
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Observer for Transcript {
    fn message(&mut self, msg: &p::Message) {
        let _ = writeln!(self.out, "{}", msg.to_json_line());
        if matches!(msg, p::Message::Interaction(_) | p::Message::Done(_)) {
            let _ = self.out.flush();
        }
    }

    fn log(&mut self, level: LogLevel, message: &str, fields: &[(String, String)]) {
        let fields: String = fields.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        eprintln!("[connector {}] {message}{fields}", level.as_str());
    }
}

/// Asks the person at the terminal.
struct TerminalPrompt {
    lines: tokio::sync::Mutex<tokio::io::Lines<BufReader<tokio::io::Stdin>>>,
}

#[async_trait::async_trait]
impl InteractionHandler for TerminalPrompt {
    async fn answer(&self, req: &p::Interaction) -> p::InteractionAnswer {
        let mut lines = self.lines.lock().await;
        eprintln!("\nThe connector asks ({}): {}", req.kind.as_str(), req.message);
        eprintln!("(an empty answer cancels)");
        let fields: Vec<String> = req
            .schema
            .as_ref()
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .map(|props| props.keys().cloned().collect())
            .unwrap_or_default();
        let prompts = if fields.is_empty() {
            vec![String::from("answer")]
        } else {
            fields.clone()
        };
        let mut answer = serde_json::Map::new();
        for name in prompts {
            eprint!("{name}: ");
            let _ = std::io::stderr().flush();
            match lines.next_line().await {
                Ok(Some(line)) if !line.trim().is_empty() => {
                    answer.insert(name, Value::String(line.trim().to_owned()));
                }
                _ => return p::InteractionAnswer::cancelled(),
            }
        }
        if fields.is_empty() {
            p::InteractionAnswer::success(answer.remove("answer").unwrap_or(Value::Null))
        } else {
            p::InteractionAnswer::success(Value::Object(answer))
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let manifest = Arc::new(load_manifest(&args.plugin, args.manifest.as_deref())?);
    let settings: Value = serde_json::from_str(&args.settings).context("--settings must be a JSON object")?;
    if !settings.is_object() {
        bail!("--settings must be a JSON object");
    }
    let sandbox = Sandbox::new()?;
    let plugin = load_plugin(&sandbox, &args.plugin, &manifest)?;

    let state = match (&args.state, args.single_use) {
        (_, true) => StateInput::SingleUse,
        (Some(path), false) => StateInput::Persisted(read_state(path)?),
        (None, false) => StateInput::Persisted(StateMap::new()),
    };
    let mut limits = RunLimits::default();
    if let Some(s) = args.cpu_seconds {
        limits.cpu = Duration::from_secs(s);
    }
    if let Some(s) = args.wall_seconds {
        limits.wall_clock = Duration::from_secs(s);
    }
    if let Some(m) = args.memory_mib {
        limits.memory_bytes = m << 20;
    }
    let mut req = RunRequest::new(manifest);
    req.mode = match args.mode {
        Mode::Incremental => CollectionMode::Incremental,
        Mode::FullRefresh => CollectionMode::FullRefresh,
    };
    if !args.streams.is_empty() {
        req.streams = Some(args.streams.iter().map(StreamScope::named).collect());
    }
    req.state = state;
    req.settings = settings;
    req.limits = limits;
    req.egress = Arc::new(egress_config(&args)?);
    if let Some(path) = &args.secrets {
        req.secrets = read_secrets(path)?;
    }
    let handler: Option<Arc<dyn InteractionHandler>> = args.interactive.then(|| {
        Arc::new(TerminalPrompt {
            lines: tokio::sync::Mutex::new(BufReader::new(tokio::io::stdin()).lines()),
        }) as Arc<dyn InteractionHandler>
    });
    let observer = Box::new(Transcript {
        out: std::io::BufWriter::new(std::io::stdout()),
    });

    let outcome = if let Some(connection_id) = &args.connection {
        let dep = args.data.open().await?;
        dep.store.upsert_connector(&req.manifest, None).await?;
        let mut opts = ConnectionRun::new(if args.scheduled {
            Trigger::Scheduled
        } else {
            Trigger::Manual
        });
        opts.mode = req.mode;
        opts.streams = req.streams.clone();
        opts.limits = req.limits.clone();
        opts.egress = req.egress.clone();
        opts.interaction = handler;
        opts.observer = observer;
        match runtime::run_connection(&dep, &sandbox, &plugin, req.manifest.clone(), connection_id, opts).await {
            Ok(o) => o,
            Err(e) => {
                eprintln!("pdpp-host: run refused before start ({}): {e}", e.reason());
                return Ok(exit::USAGE);
            }
        }
    } else {
        match runtime::execute(&sandbox, &plugin, req, handler, observer, None).await {
            Ok(o) => o,
            Err(e) => {
                eprintln!("pdpp-host: run refused before start: {e}");
                return Ok(exit::USAGE);
            }
        }
    };
    if let (Some(path), Some(commit)) = (&args.state, &outcome.commit) {
        write_state(path, commit)?;
    }
    let u = &outcome.usage;
    eprintln!(
        "pdpp-host: run {} {}{} — {} records, cpu {:.1} ms, wall {:.1} ms, peak memory {} KiB{}",
        outcome.run_id,
        serde_json::to_value(outcome.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        outcome.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default(),
        outcome.records_emitted,
        u.cpu.as_secs_f64() * 1e3,
        u.wall.as_secs_f64() * 1e3,
        u.peak_memory_bytes / 1024,
        if outcome.commit.is_some() && args.state.is_some() {
            ", state committed"
        } else {
            ""
        },
    );
    if !u.stderr.tail.is_empty() && !outcome.succeeded() {
        eprintln!(
            "pdpp-host: connector stderr (last {} bytes):\n{}",
            u.stderr.tail.len(),
            u.stderr.tail
        );
    }
    Ok(match outcome.status {
        p::DoneStatus::Succeeded => exit::SUCCEEDED,
        p::DoneStatus::Failed => exit::FAILED,
        p::DoneStatus::Cancelled => exit::CANCELLED,
    })
}

#[derive(serde::Deserialize)]
struct CredentialFile {
    kind: String,
    fields: BTreeMap<String, String>,
}

fn read_credential(path: &Path) -> anyhow::Result<Bundle> {
    let text =
        Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?);
    let file: CredentialFile = serde_json::from_str(&text).map_err(|_| {
        anyhow::anyhow!(
            "{} must be {{\"kind\": \"...\", \"fields\": {{\"name\": \"value\"}}}}",
            path.display()
        )
    })?;
    Ok(Bundle::new(&file.kind, file.fields))
}

async fn seal_into(dep: &Deployment, connection_id: &str, bundle: &Bundle) -> anyhow::Result<()> {
    let sealed = dep.key.seal(connection_id, bundle)?;
    dep.store.put_credential(connection_id, &sealed).await?;
    Ok(())
}

async fn connection(command: ConnectionCommand) -> anyhow::Result<i32> {
    match command {
        ConnectionCommand::Add {
            data,
            manifest,
            display_name,
            settings,
            credential,
        } => {
            let manifest = Manifest::from_file(&manifest)?;
            let settings: Value = serde_json::from_str(&settings).context("--settings must be a JSON object")?;
            if !settings.is_object() {
                bail!("--settings must be a JSON object");
            }
            let bundle = credential.as_deref().map(read_credential).transpose()?;
            if let Some(b) = &bundle {
                b.check()?;
            }
            let dep = data.open().await?;
            dep.store.upsert_connector(&manifest, None).await?;
            let conn = dep
                .store
                .create_connection(NewConnection {
                    connection_id: None,
                    connector_id: manifest.connector_id.clone(),
                    status: ConnectionStatus::Active,
                    display_name,
                    binding_metadata: settings,
                })
                .await?;
            if let Some(b) = &bundle {
                seal_into(&dep, &conn.connection_id, b).await?;
            }
            println!(
                "{}",
                serde_json::json!({ "connection_id": conn.connection_id, "connector_id": conn.connector_id })
            );
        }
        ConnectionCommand::SetCredential {
            data,
            connection,
            credential,
        } => {
            let bundle = read_credential(&credential)?;
            let dep = data.open().await?;
            if dep.store.connection(&connection).await?.is_none() {
                bail!("connection {connection} does not exist");
            }
            seal_into(&dep, &connection, &bundle).await?;
            println!(
                "{}",
                serde_json::json!({ "connection_id": connection, "credential": "sealed" })
            );
        }
        ConnectionCommand::RevokeCredential { data, connection } => {
            let dep = data.open().await?;
            dep.store
                .set_credential_status(&connection, CredentialStatus::Revoked)
                .await?;
            println!(
                "{}",
                serde_json::json!({ "connection_id": connection, "credential": "revoked" })
            );
        }
    }
    Ok(exit::SUCCEEDED)
}

async fn records(data: DataArgs, connection: &str, stream: &str) -> anyhow::Result<i32> {
    let dep = data.open().await?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for r in dep.store.records(connection, stream).await? {
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
    }
    out.flush()?;
    Ok(exit::SUCCEEDED)
}

async fn rotate_key(data: DataArgs) -> anyhow::Result<i32> {
    let mut dep = data.open().await?;
    let r = dep.rotate_key().await?;
    println!(
        "{}",
        serde_json::json!({ "old_key_id": r.old_key_id, "new_key_id": r.new_key_id, "resealed": r.resealed })
    );
    Ok(exit::SUCCEEDED)
}

async fn runs(command: RunsCommand) -> anyhow::Result<i32> {
    let mut out = std::io::BufWriter::new(std::io::stdout());
    match command {
        RunsCommand::Show { data, run_id } => {
            let dep = data.open().await?;
            let Some(run) = dep.store.run(&run_id).await? else {
                eprintln!("pdpp-host: run {run_id} does not exist");
                return Ok(exit::FAILED);
            };
            writeln!(out, "{}", serde_json::to_string(&run)?)?;
            for e in dep.store.events(&run_id).await? {
                writeln!(out, "{}", serde_json::to_string(&e)?)?;
            }
        }
        RunsCommand::List { data, connection } => {
            let dep = data.open().await?;
            for run in dep.store.runs_of(&connection).await? {
                writeln!(out, "{}", serde_json::to_string(&run)?)?;
            }
        }
    }
    out.flush()?;
    Ok(exit::SUCCEEDED)
}

async fn serve(args: ServeArgs) -> anyhow::Result<i32> {
    use crate::api::{AppState, OwnerToken};
    use crate::config::ConfigFile;
    use crate::plugins::{Catalog, CatalogOptions};
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let data = DataArgs {
        data_dir: args
            .data_dir
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(".pdpp/data")),
        database_url: args.database_url.or(file.database_url.clone()),
        vault_key_file: args.vault_key_file.or(file.vault_key_file.clone()),
    };
    let bind = args
        .bind
        .or(file.bind.clone())
        .unwrap_or_else(|| "127.0.0.1:8787".into());
    let plugin_dir = args
        .plugin_dir
        .or(file.plugin_dir.clone())
        .unwrap_or_else(|| PathBuf::from(".pdpp/plugins"));
    let egress = file.egress.config().map_err(anyhow::Error::msg)?;
    let limits = file.limits.apply(crate::sandbox::RunLimits::default());
    let dep = data.open().await?;
    let (token, fresh) = OwnerToken::load_or_create(&dep.data_dir)?;
    if let Some(t) = fresh {
        // Shown once; only its hash is kept.
        println!("owner token: {}", t.as_str());
        println!(
            "(shown once: keep it; only its hash is stored in {})",
            dep.data_dir.display()
        );
    }
    std::fs::create_dir_all(&plugin_dir).with_context(|| format!("cannot create {}", plugin_dir.display()))?;
    let sandbox = Arc::new(Sandbox::new()?);
    let mut options = CatalogOptions::new(&plugin_dir);
    options.load.cache_dir = Some(dep.data_dir.join("cache"));
    let catalog = Catalog::open(sandbox, options);
    let snap = catalog.snapshot();
    snap.sync_to(&dep.store).await?;
    for (path, e) in &snap.errors {
        eprintln!("pdpp-host: plugin {} not loaded: {e}", path.display());
    }
    let _watch = catalog.watch()?;
    // After every hot reload, the store learns which connectors are
    // available, unavailable or removed; every 30 s, runs of dead processes
    // are closed.
    {
        let catalog = catalog.clone();
        let store = dep.store.clone();
        let mut seen = snap.generation;
        let mut ticks = 0u64;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                ticks += 1;
                // Runs whose process died elsewhere (another host sharing the
                // database) are closed once their heartbeat is stale.
                if ticks.is_multiple_of(60) {
                    let _ = store.fail_interrupted_runs().await;
                }
                let now = catalog.snapshot();
                if now.generation != seen {
                    seen = now.generation;
                    if let Err(e) = now.sync_to(&store).await {
                        eprintln!("pdpp-host: plugins: cannot record the catalog in the store: {e}");
                    }
                }
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    eprintln!(
        "pdpp-host: serving the owner API on http://{} ({} plugins from {})",
        listener.local_addr()?,
        snap.plugins.len(),
        plugin_dir.display()
    );
    let state = Arc::new(AppState {
        dep,
        catalog,
        token,
        limits,
        egress: Arc::new(egress),
        active: Default::default(),
        pending: Default::default(),
    });
    axum::serve(listener, crate::api::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(exit::SUCCEEDED)
}
