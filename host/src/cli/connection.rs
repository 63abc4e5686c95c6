//! `pdpp-host connection …`: the owner's setup lifecycle at the terminal.
//! A connection is created as a draft (as through the owner API), its
//! credential goes through the credentials service (checked against the
//! manifest, probed, sealed), and its first sync activates it.

use super::{DataArgs, exit};
use anyhow::{Context, bail};
use pdpp_host::credentials::{Candidate, CaptureClass, CaptureError, CredentialService, CredentialSource};
use pdpp_host::deploy::Deployment;
use pdpp_host::manifest::Manifest;
use pdpp_host::plugins::LoadedPlugin;
use pdpp_host::sandbox::{RunLimits, Sandbox};
use pdpp_host::setup::{NewDraft, SetupError, create_draft, env_present};
use pdpp_host::store::BrowserSessionMode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

#[derive(clap::Subcommand)]
pub enum ConnectionCommand {
    /// Create a connection of a connector, as a draft: its first run
    /// (`pdpp-host run … --connection ID`) activates it. Prints its id and setup status.
    Add {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        connector: ConnectorArgs,
        /// A name the owner recognises the connection by (1 to 200 characters).
        #[arg(long)]
        display_name: Option<String>,
        /// Non-secret settings (a JSON object), passed to every run as START.settings.
        #[arg(long, default_value = "{}")]
        settings: String,
        /// A JSON file `{"kind": "...", "fields": {"name": "value"}}` to check
        /// and seal as the credential (needs --plugin, for the connector's probe).
        #[arg(long)]
        credential: Option<PathBuf>,
        /// For a browser-backed connector: `ephemeral` destroys its login at
        /// every run's end instead of keeping it sealed (only where the
        /// connector's setup plan offers it).
        #[arg(long, value_enum, default_value_t = SessionMode::Persistent)]
        browser_session: SessionMode,
    },
    /// Capture or replace a connection's credential through the connector's
    /// probe; it is sealed only when the provider accepts it.
    SetCredential {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        connector: ConnectorArgs,
        /// The connection's id.
        #[arg(long)]
        connection: String,
        /// A JSON file `{"kind": "...", "fields": {"name": "value"}}`.
        #[arg(long)]
        credential: PathBuf,
    },
    /// Let the connector create the connection's credential in the host's
    /// browser (its manifest declares a credential bootstrap): it asks for
    /// the login and any code at this terminal, hands the token to the host
    /// (never printed), which checks and seals it; a draft's first sync then
    /// runs. Exits 0 when the credential is stored.
    Bootstrap {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        connector: ConnectorArgs,
        /// The connection's id.
        #[arg(long)]
        connection: String,
    },
    /// Revoke a connection's credential: its runs are refused until a new one is set.
    RevokeCredential {
        #[command(flatten)]
        data: DataArgs,
        /// The connection's id.
        #[arg(long)]
        connection: String,
    },
}

/// Whether the connector drives the host's browser.
fn browser_bound(manifest: &Manifest) -> bool {
    manifest.requires_binding(pdpp_host::manifest::bindings::BROWSER_AUTOMATION)
}

/// `--browser-session`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SessionMode {
    Persistent,
    Ephemeral,
}

impl From<SessionMode> for BrowserSessionMode {
    fn from(m: SessionMode) -> Self {
        match m {
            SessionMode::Persistent => BrowserSessionMode::Persistent,
            SessionMode::Ephemeral => BrowserSessionMode::Ephemeral,
        }
    }
}

/// Which connector: its plugin (whose credential probe checks credentials),
/// or only its manifest (enough to create a connection without a credential).
#[derive(clap::Args)]
pub struct ConnectorArgs {
    /// The connector's component (.wasm); its packed or sidecar manifest is used unless --manifest is given.
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// The connector's manifest.
    #[arg(long)]
    manifest: Option<PathBuf>,
}

/// The connector as loaded for one command.
struct Connector {
    manifest: Arc<Manifest>,
    plugin: Option<(Sandbox, LoadedPlugin)>,
}

impl ConnectorArgs {
    fn load(&self, data: &DataArgs) -> anyhow::Result<Connector> {
        match (&self.plugin, &self.manifest) {
            (Some(path), manifest) => {
                let settings = data.resolve()?;
                let sandbox = Sandbox::with_tuning(settings.file.sandbox.memory.unwrap_or_default())?;
                let mut opts = settings.load;
                opts.manifest_file = manifest.clone();
                let loaded = pdpp_host::plugins::load_file(&sandbox, path, &opts)
                    .with_context(|| format!("cannot load plugin {}", path.display()))?;
                Ok(Connector {
                    manifest: loaded.manifest.clone(),
                    plugin: Some((sandbox, loaded)),
                })
            }
            (None, Some(path)) => Ok(Connector {
                manifest: Arc::new(Manifest::from_file(path)?),
                plugin: None,
            }),
            (None, None) => bail!("name the connector: --plugin FILE (or --manifest FILE)"),
        }
    }
}

fn read_candidate(path: &Path) -> anyhow::Result<Candidate> {
    #[derive(serde::Deserialize)]
    struct CredentialFile {
        kind: String,
        fields: BTreeMap<String, String>,
    }
    let text =
        Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?);
    // Never echo the file's content: it holds the secret.
    let file: CredentialFile = serde_json::from_str(&text).map_err(|_| {
        anyhow::anyhow!(
            "{} must be {{\"kind\": \"...\", \"fields\": {{\"name\": \"value\"}}}}",
            path.display()
        )
    })?;
    Ok(Candidate::new(file.kind, file.fields))
}

/// The exit status for a refused capture.
fn capture_exit(e: &CaptureError) -> i32 {
    match e.class() {
        CaptureClass::Invalid | CaptureClass::NotFound => exit::USAGE,
        _ => exit::FAILED,
    }
}

async fn capture(
    dep: &Deployment,
    connector: &Connector,
    connection_id: &str,
    candidate: Candidate,
) -> Result<pdpp_host::credentials::Captured, anyhow::Error> {
    let Some((sandbox, plugin)) = &connector.plugin else {
        bail!("checking a credential runs the connector's probe: pass --plugin FILE");
    };
    let conn = dep
        .store
        .connection(connection_id)
        .await?
        .with_context(|| format!("connection {connection_id} does not exist"))?;
    let service = CredentialService {
        dep,
        sandbox,
        egress: Arc::default(),
        limits: RunLimits::default(),
    };
    Ok(service
        .capture(&conn, plugin, candidate, CredentialSource::CommandLine)
        .await?)
}

/// `connection bootstrap`: the bootstrap run at this terminal, its
/// credential through the credentials service, then a draft's first sync.
async fn bootstrap(data: DataArgs, connector: ConnectorArgs, connection_id: String) -> anyhow::Result<i32> {
    use pdpp_host::credentials::BootstrapResult;
    use pdpp_host::runtime::{ConnectionRun, run_connection};
    let resolved = data.resolve()?;
    let connector = connector.load(&data)?;
    let Some((sandbox, plugin)) = &connector.plugin else {
        bail!("a bootstrap runs the connector: pass --plugin FILE");
    };
    let Some(offer) = pdpp_host::setup::bootstrap_offer(&plugin.manifest) else {
        eprintln!(
            "pdpp-host: connector {} declares no credential bootstrap; use `connection set-credential`",
            plugin.manifest.connector_id
        );
        return Ok(exit::USAGE);
    };
    let egress = Arc::new(
        resolved
            .file
            .egress
            .config()
            .context("[egress] of the configuration file")?,
    );
    let browser =
        pdpp_host::browser::BrowserService::new(resolved.file.browser.config()).context("the browser service")?;
    let dep = data.open().await?;
    let conn = dep
        .store
        .connection(&connection_id)
        .await?
        .with_context(|| format!("connection {connection_id} does not exist"))?;
    eprintln!("{}", super::run::terminal_safe(&offer.instructions));
    let mut opts = ConnectionRun::bootstrap(offer.field.clone());
    let run_id = pdpp_host::runtime::new_run_id();
    opts.run_id = Some(run_id.clone());
    opts.egress = egress.clone();
    opts.interaction = Some(Arc::new(super::run::TerminalPrompt::new()));
    opts.browser = Some(browser.clone());
    let outcome = match run_connection(
        &dep,
        sandbox,
        &plugin.plugin,
        plugin.manifest.clone(),
        &connection_id,
        opts,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pdpp-host: bootstrap refused before start ({}): {e}", e.reason());
            return Ok(exit::USAGE);
        }
    };
    let service = CredentialService {
        dep: &dep,
        sandbox,
        egress: egress.clone(),
        limits: RunLimits::default(),
    };
    let result = service
        .complete_bootstrap(
            &conn,
            plugin,
            &run_id,
            outcome.succeeded(),
            outcome.usage.browser.captured.as_ref(),
        )
        .await?;
    let mut line = json!({ "connection_id": connection_id, "bootstrap_run_id": run_id });
    let code = match result {
        BootstrapResult::Stored(c) => {
            line["credential"] = json!({ "sealed": true, "rotated": c.rotated, "identity": c.identity });
            if conn.status == pdpp_host::store::ConnectionStatus::Draft {
                let mut first = ConnectionRun::new(pdpp_host::store::Trigger::Setup);
                first.egress = egress;
                first.browser = Some(browser);
                let synced = run_connection(
                    &dep,
                    sandbox,
                    &plugin.plugin,
                    plugin.manifest.clone(),
                    &connection_id,
                    first,
                )
                .await;
                line["first_sync"] = match synced {
                    Ok(o) => {
                        json!({ "status": format!("{:?}", o.status).to_lowercase(), "records": o.records_written })
                    }
                    Err(e) => json!({ "refused": e.reason() }),
                };
            }
            exit::SUCCEEDED
        }
        BootstrapResult::NothingCaptured => {
            let code = outcome
                .done
                .as_ref()
                .and_then(|d| d.error.as_ref())
                .and_then(|e| e.code.clone())
                .or_else(|| outcome.reason.as_ref().map(|r| r.code().to_owned()));
            line["bootstrap"] = json!({ "failed": code, "message": outcome.message });
            exit::FAILED
        }
        BootstrapResult::Refused(e) => {
            line["bootstrap"] = json!({ "refused": e.code(), "message": e.to_string() });
            exit::FAILED
        }
    };
    print_status(&dep, &connector.manifest, &connection_id, line).await?;
    Ok(code)
}

/// Print a refused capture and give its exit status.
fn refused(e: &anyhow::Error) -> Option<i32> {
    let c = e.downcast_ref::<CaptureError>()?;
    println!("{}", json!({ "error": { "code": c.code(), "message": c.to_string() } }));
    eprintln!("pdpp-host: {c}");
    Some(capture_exit(c))
}

pub async fn main(command: ConnectionCommand) -> anyhow::Result<i32> {
    match command {
        ConnectionCommand::Add {
            data,
            connector,
            display_name,
            settings,
            credential,
            browser_session,
        } => {
            let settings: Value = serde_json::from_str(&settings).context("--settings must be a JSON object")?;
            let connector = connector.load(&data)?;
            let candidate = credential.as_deref().map(read_candidate).transpose()?;
            if candidate.is_some() && connector.plugin.is_none() {
                bail!("checking a credential runs the connector's probe: pass --plugin FILE");
            }
            let dep = data.open().await?;
            let draft = NewDraft {
                settings,
                display_name,
                browser_session: browser_session.into(),
            };
            let conn = match create_draft(&dep.store, &connector.manifest, draft, &env_present).await {
                Ok(c) => c,
                Err(SetupError::Store(e)) => return Err(e.into()),
                Err(e) => {
                    println!("{}", json!({ "error": { "code": e.code(), "message": e.to_string() } }));
                    eprintln!("pdpp-host: {e}");
                    return Ok(exit::USAGE);
                }
            };
            let id = conn.connection_id.clone();
            let mut line = json!({ "connection_id": id, "connector_id": conn.connector_id });
            if let Some(candidate) = candidate {
                match capture(&dep, &connector, &id, candidate).await {
                    Ok(c) => line["credential"] = json!({ "validation": c.validation, "identity": c.identity }),
                    Err(e) => return refused(&e).ok_or(e),
                }
            }
            print_status(&dep, &connector.manifest, &id, line).await?;
        }
        ConnectionCommand::SetCredential {
            data,
            connector,
            connection,
            credential,
        } => {
            let candidate = read_candidate(&credential)?;
            let connector = connector.load(&data)?;
            let dep = data.open().await?;
            let c = match capture(&dep, &connector, &connection, candidate).await {
                Ok(c) => c,
                Err(e) => return refused(&e).ok_or(e),
            };
            let line = json!({
                "connection_id": connection,
                "credential": "sealed",
                "rotated": c.rotated,
                "validation": c.validation,
                "identity": c.identity,
            });
            print_status(&dep, &connector.manifest, &connection, line).await?;
        }
        ConnectionCommand::Bootstrap {
            data,
            connector,
            connection,
        } => return bootstrap(data, connector, connection).await,
        ConnectionCommand::RevokeCredential { data, connection } => {
            let dep = data.open().await?;
            pdpp_host::credentials::revoke(&dep, &connection).await?;
            println!("{}", json!({ "connection_id": connection, "credential": "revoked" }));
        }
    }
    Ok(exit::SUCCEEDED)
}

/// Print `line` with the connection's setup status and next step added.
async fn print_status(
    dep: &Deployment,
    manifest: &Manifest,
    connection_id: &str,
    mut line: Value,
) -> anyhow::Result<()> {
    let conn = dep
        .store
        .connection(connection_id)
        .await?
        .with_context(|| format!("connection {connection_id} does not exist"))?;
    let needs = pdpp_host::setup::StatusNeeds::of(manifest, browser_bound(manifest));
    let status = pdpp_host::setup::status(&dep.store, &conn, &needs, None).await?;
    line["status"] = json!(conn.status);
    line["setup_state"] = json!(status.setup_state);
    line["next_step"] = json!(status.next_step);
    println!("{line}");
    Ok(())
}
