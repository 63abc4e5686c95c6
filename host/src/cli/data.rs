//! Reading a deployment's stored data at the terminal (`records`, `runs`),
//! and the vault key (`vault rotate-key`).

use super::{DataArgs, exit};
use std::io::Write;

#[derive(clap::Args)]
pub struct RecordsArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The connection's id.
    #[arg(long)]
    pub connection: String,
    /// The stream to print.
    #[arg(long)]
    pub stream: String,
}

#[derive(clap::Subcommand)]
pub enum RunsCommand {
    /// A run and its timeline, one JSON object per line: the run, then each event.
    Show {
        #[command(flatten)]
        data: DataArgs,
        /// The run's id.
        run_id: String,
    },
    /// The runs of a connection, newest first, one JSON object per line.
    List {
        #[command(flatten)]
        data: DataArgs,
        /// The connection's id.
        #[arg(long)]
        connection: String,
    },
}

#[derive(clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// An empty (or new) directory to write `pdpp.db` and `vault.key` into.
    #[arg(long)]
    pub out: std::path::PathBuf,
}

/// Copy the database (consistently, while it may be in use) and the vault
/// key into a directory that `serve --data-dir` can start from.
pub async fn backup(args: BackupArgs) -> anyhow::Result<i32> {
    use anyhow::Context;
    let dep = args.data.open().await?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let db = args.out.join(pdpp_host::deploy::DATABASE_FILE);
    let key = args.out.join(pdpp_host::vault::KEY_FILE);
    if db.exists() || key.exists() {
        anyhow::bail!(
            "{} already holds a backup; choose an empty directory",
            args.out.display()
        );
    }
    let sqlite = dep.store.backend() == pdpp_host::store::Backend::Sqlite;
    if sqlite {
        dep.store.backup_sqlite(&db).await?;
    }
    let key_bytes = std::fs::read(&dep.key_file).with_context(|| format!("cannot read {}", dep.key_file.display()))?;
    pdpp_host::fsutil::write_atomically(&key, &key_bytes, Some(0o600))
        .with_context(|| format!("cannot write {}", key.display()))?;
    println!(
        "{}",
        serde_json::json!({
            "database": if sqlite { serde_json::json!(db) } else { serde_json::json!(null) },
            "vault_key": key,
        })
    );
    if !sqlite {
        eprintln!("pdpp-host: the database is PostgreSQL: back it up with pg_dump (the key file is copied)");
    }
    Ok(exit::SUCCEEDED)
}

#[derive(clap::Subcommand)]
pub enum VaultCommand {
    /// Re-seal every credential under a new key, in one transaction.
    RotateKey {
        #[command(flatten)]
        data: DataArgs,
    },
}

/// The connection, or a clear error (exit 1) for an id that does not exist.
async fn known_connection(dep: &pdpp_host::deploy::Deployment, id: &str) -> anyhow::Result<Option<i32>> {
    if dep.store.connection(id).await?.is_none() {
        eprintln!("pdpp-host: connection {id} does not exist");
        return Ok(Some(exit::FAILED));
    }
    Ok(None)
}

pub async fn records(args: RecordsArgs) -> anyhow::Result<i32> {
    let dep = args.data.open().await?;
    if let Some(code) = known_connection(&dep, &args.connection).await? {
        return Ok(code);
    }
    let known_stream = match dep.store.connection(&args.connection).await? {
        Some(c) => dep
            .store
            .connector_manifest(&c.connector_id)
            .await?
            .is_none_or(|m| m.stream(&args.stream).is_some()),
        None => true,
    };
    if !known_stream {
        eprintln!("pdpp-host: the connection's connector has no stream {}", args.stream);
        return Ok(exit::FAILED);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for r in dep.store.records(&args.connection, &args.stream).await? {
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
    }
    out.flush()?;
    Ok(exit::SUCCEEDED)
}

pub async fn vault(command: VaultCommand) -> anyhow::Result<i32> {
    match command {
        VaultCommand::RotateKey { data } => {
            let mut dep = data.open().await?;
            let r = pdpp_host::credentials::rotate_vault_key(&mut dep).await?;
            println!(
                "{}",
                serde_json::json!({ "old_key_id": r.old_key_id, "new_key_id": r.new_key_id, "resealed": r.resealed })
            );
            Ok(exit::SUCCEEDED)
        }
    }
}

pub async fn runs(command: RunsCommand) -> anyhow::Result<i32> {
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
            if let Some(code) = known_connection(&dep, &connection).await? {
                return Ok(code);
            }
            for run in dep.store.runs_of(&connection).await? {
                writeln!(out, "{}", serde_json::to_string(&run)?)?;
            }
        }
    }
    out.flush()?;
    Ok(exit::SUCCEEDED)
}

#[derive(clap::Subcommand)]
pub enum OwnerTokenCommand {
    /// Replace the owner token: the old one stops working (a running server
    /// notices at once); the new one is printed once.
    Reset {
        #[command(flatten)]
        data: DataArgs,
    },
}

pub fn owner_token(command: OwnerTokenCommand) -> anyhow::Result<i32> {
    match command {
        OwnerTokenCommand::Reset { data } => {
            let data_dir = data.resolve()?.deploy.data_dir;
            if !data_dir.is_dir() {
                anyhow::bail!(
                    "{} is not a data directory (start `pdpp-host serve` once to create it)",
                    data_dir.display()
                );
            }
            let token = pdpp_host::api::OwnerToken::reset(&data_dir)?;
            println!("owner token: {}", token.as_str());
            println!(
                "(shown once: keep it; only its hash is stored in {}; the old token no longer works)",
                data_dir.display()
            );
            Ok(exit::SUCCEEDED)
        }
    }
}
