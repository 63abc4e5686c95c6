//! The `pdpp-host` command line: parsing arguments, calling the library,
//! printing. It is a module of the binary, so nothing in the library can
//! import it; every rule it relies on lives in the library.

mod bench;
mod bench_api;
mod bench_browser;
mod bench_ingest;
mod bench_parked;
mod bench_process;
mod connection;
mod data;
mod plugins;
mod run;
mod serve;

use clap::{Parser, Subcommand};
use pdpp_host::config::ConfigFile;
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

/// Where a deployment keeps its data and how it trusts plugins: the same
/// flags, environment variables and configuration file for every command
/// (flags win over the environment, which wins over the file; see
/// docs/configuration.md).
#[derive(clap::Args, Clone, Default)]
pub struct DataArgs {
    /// A TOML configuration file (docs/configuration.md).
    #[arg(long, env = "PDPP_CONFIG")]
    pub config: Option<PathBuf>,
    /// The data directory (database, vault key, owner token hash, AOT cache). Default `.pdpp/data`.
    #[arg(long, env = "PDPP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL (`sqlite://…` or `postgres://…`); default: SQLite in the data directory.
    #[arg(long, env = "PDPP_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The vault key file (a path; the key itself is never passed on the command line).
    #[arg(long, env = "PDPP_VAULT_KEY_FILE")]
    pub vault_key_file: Option<PathBuf>,
    /// The plugin directory. Default `.pdpp/plugins`.
    #[arg(long, visible_alias = "dir", env = "PDPP_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// The AOT cache directory. Default `<data dir>/cache`.
    #[arg(long, env = "PDPP_PLUGIN_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// What to do with plugin signatures (`<name>.wasm.sig`). Default `off`.
    #[arg(long, env = "PDPP_PLUGIN_SIGNATURES", value_enum)]
    pub signatures: Option<SignatureArg>,
    /// A trusted ed25519 public key, as 64 hex digits (repeatable; comma-separated in the environment).
    #[arg(
        long = "trusted-key",
        value_name = "HEX",
        env = "PDPP_PLUGIN_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    pub trusted_keys: Vec<String>,
}

/// [`DataArgs`] resolved against the configuration file and the defaults.
pub struct Settings {
    pub file: ConfigFile,
    pub deploy: DeployOptions,
    pub plugin_dir: PathBuf,
    /// How plugin files are loaded: signature policy, trusted keys, AOT cache.
    pub load: LoadOptions,
}

impl DataArgs {
    pub fn resolve(&self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => ConfigFile::load(path)?,
            None => ConfigFile::default(),
        };
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(".pdpp/data"));
        let signatures = self
            .signatures
            .map(SignaturePolicy::from)
            .or(file.plugins.signatures)
            .unwrap_or_default();
        let trusted = if self.trusted_keys.is_empty() {
            file.plugins.trusted_keys.clone()
        } else {
            self.trusted_keys.clone()
        };
        let trusted_keys = TrustedKeys::from_hex(&trusted)?;
        if signatures == SignaturePolicy::Require && trusted_keys.is_empty() {
            anyhow::bail!("the signature policy `require` needs at least one trusted key (--trusted-key)");
        }
        let cache_dir = self
            .cache_dir
            .clone()
            .or(file.plugins.cache_dir.clone())
            .unwrap_or_else(|| data_dir.join("cache"));
        Ok(Settings {
            deploy: DeployOptions {
                data_dir,
                database_url: self.database_url.clone().or(file.database_url.clone()),
                key_file: self.vault_key_file.clone().or(file.vault_key_file.clone()),
            },
            plugin_dir: self
                .plugin_dir
                .clone()
                .or(file.plugin_dir.clone())
                .unwrap_or_else(|| PathBuf::from(".pdpp/plugins")),
            load: LoadOptions {
                cache_dir: Some(cache_dir),
                signatures,
                trusted_keys,
                manifest_file: None,
            },
            file,
        })
    }

    pub async fn open(&self) -> anyhow::Result<Deployment> {
        Ok(Deployment::open(self.resolve()?.deploy).await?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if arg.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                out.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() {
                out.push(format!("{path} {} (the command)", sub.get_name()));
            }
            undocumented(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_command_and_flag_has_help() {
        let mut missing = Vec::new();
        undocumented(&Cli::command(), "pdpp-host", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
        Cli::command().debug_assert();
    }
}
