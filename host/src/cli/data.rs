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

#[derive(clap::Subcommand)]
pub enum VaultCommand {
    /// Re-seal every credential under a new key, in one transaction.
    RotateKey {
        #[command(flatten)]
        data: DataArgs,
    },
}

pub async fn records(args: RecordsArgs) -> anyhow::Result<i32> {
    let dep = args.data.open().await?;
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
            for run in dep.store.runs_of(&connection).await? {
                writeln!(out, "{}", serde_json::to_string(&run)?)?;
            }
        }
    }
    out.flush()?;
    Ok(exit::SUCCEEDED)
}
