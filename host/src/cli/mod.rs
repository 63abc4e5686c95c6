//! The `pdpp-host` command line: parsing arguments, calling the library,
//! printing. It is a module of the binary, so nothing in the library can
//! import it; every rule it relies on lives in the library.

mod bench;
mod connection;
mod data;
mod plugins;
mod run;
mod serve;

use clap::{Parser, Subcommand};
use pdpp_host::deploy::{DeployOptions, Deployment};
use pdpp_host::manifest::Manifest;
use pdpp_host::plugins::{LoadOptions, SignaturePolicy, TrustedKeys};
use std::path::PathBuf;

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

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Run one connector and print every message as Collection Profile JSONL.
    Run(run::RunArgs),
    /// Check manifests.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// Measure runs through the host against a Node.js subprocess baseline.
    Bench(bench::BenchArgs),
    /// Create connections and manage their credentials.
    Connection {
        #[command(subcommand)]
        command: connection::ConnectionCommand,
    },
    /// Print a connection's stored records as JSONL.
    Records(data::RecordsArgs),
    /// Serve the owner API over HTTP, with the plugin directory loaded and watched.
    Serve(serve::ServeArgs),
    /// Read runs and their timelines.
    Runs {
        #[command(subcommand)]
        command: data::RunsCommand,
    },
    /// Copy the database and the vault key into a directory a host can start from.
    Backup(data::BackupArgs),
    /// Manage the owner token of the owner API.
    OwnerToken {
        #[command(subcommand)]
        command: data::OwnerTokenCommand,
    },
    /// Manage the vault key.
    Vault {
        #[command(subcommand)]
        command: data::VaultCommand,
    },
    /// Inspect, validate and pack plugin files; list the plugin directory.
    Plugins {
        #[command(subcommand)]
        command: plugins::PluginsCommand,
    },
}

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Validate a manifest file; exit status 0 when it is usable.
    Validate {
        /// The manifest file.
        file: PathBuf,
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
    pub fn options(&self) -> DeployOptions {
        DeployOptions {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            key_file: self.vault_key_file.clone(),
        }
    }

    pub async fn open(&self) -> anyhow::Result<Deployment> {
        Ok(Deployment::open(self.options()).await?)
    }
}

/// The plugin signature policy on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SignatureArg {
    /// Signatures are not read.
    Off,
    /// Unsigned or badly signed plugins load, with a warning.
    Warn,
    /// Unsigned or badly signed plugins are refused.
    Require,
}

impl From<SignatureArg> for SignaturePolicy {
    fn from(a: SignatureArg) -> Self {
        match a {
            SignatureArg::Off => SignaturePolicy::Off,
            SignatureArg::Warn => SignaturePolicy::Warn,
            SignatureArg::Require => SignaturePolicy::Require,
        }
    }
}

/// How plugin files are trusted.
#[derive(clap::Args, Clone)]
pub struct TrustArgs {
    /// What to do with plugin signatures (`<name>.wasm.sig`).
    #[arg(long, env = "PDPP_PLUGIN_SIGNATURES", value_enum, default_value = "off")]
    pub signatures: SignatureArg,
    /// A trusted ed25519 public key, as 64 hex digits (repeatable; comma-separated in the environment).
    #[arg(
        long = "trusted-key",
        value_name = "HEX",
        env = "PDPP_PLUGIN_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    pub trusted_keys: Vec<String>,
}

impl TrustArgs {
    pub fn keys(&self) -> anyhow::Result<TrustedKeys> {
        let keys = TrustedKeys::from_hex(&self.trusted_keys)?;
        if matches!(self.signatures, SignatureArg::Require) && keys.is_empty() {
            anyhow::bail!("--signatures require needs at least one --trusted-key");
        }
        Ok(keys)
    }

    pub fn options(&self, cache_dir: Option<PathBuf>) -> anyhow::Result<LoadOptions> {
        Ok(LoadOptions {
            cache_dir,
            signatures: self.signatures.into(),
            trusted_keys: self.keys()?,
            manifest_file: None,
        })
    }
}

/// Exit statuses of `pdpp-host` (docs/cli.md).
pub mod exit {
    /// It worked (a run succeeded).
    pub const SUCCEEDED: i32 = 0;
    /// It was done and failed: a run failed, the provider refused a
    /// credential, a file is not a valid plugin or manifest.
    pub const FAILED: i32 = 1;
    /// Nothing was done: bad arguments or input, a run refused before start.
    pub const USAGE: i32 = 2;
    /// A run was cancelled.
    pub const CANCELLED: i32 = 3;
}

pub async fn main(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Manifest {
            command: ManifestCommand::Validate { file },
        } => Ok(validate_manifest(&file)),
        Command::Bench(args) => bench::run(args).await.map(|_| exit::SUCCEEDED),
        Command::Connection { command } => connection::main(command).await,
        Command::Records(args) => data::records(args).await,
        Command::Runs { command } => data::runs(command).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Vault { command } => data::vault(command).await,
        Command::OwnerToken { command } => data::owner_token(command),
        Command::Backup(args) => data::backup(args).await,
        Command::Plugins { command } => plugins::main(command).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pdpp-host: {e:#}");
            exit::USAGE
        }
    }
}

fn validate_manifest(file: &std::path::Path) -> i32 {
    match Manifest::from_file(file) {
        Ok(m) => {
            println!(
                "{}: valid manifest for connector {} ({} streams)",
                file.display(),
                m.connector_id,
                m.streams.len()
            );
            for d in &m.deprecations {
                eprintln!("{}: warning: {d}", file.display());
            }
            exit::SUCCEEDED
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            exit::FAILED
        }
    }
}
