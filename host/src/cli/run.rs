//! `pdpp-host run`: one run of a connector, every message printed as
//! Collection Profile JSONL; with `--connection`, a run of a stored connection.

use super::{DataArgs, exit};
use anyhow::{Context, bail};
use pdpp_host::browser::BrowserService;
use pdpp_host::egress::EgressConfig;
use pdpp_host::limits::LimitsOverride;
use pdpp_host::plugins::LoadOptions;
use pdpp_host::protocol::{self as p, CollectionMode, StateMap, StreamScope};
use pdpp_host::runtime::{self, ConnectionRun, InteractionHandler, Observer, RunRequest, StateInput};
use pdpp_host::sandbox::caps::browser::BrowserSetup;
use pdpp_host::sandbox::{LogLevel, RunLimits, Sandbox};
use pdpp_host::store::Trigger;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, BufReader};
use zeroize::Zeroizing;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Mode {
    Incremental,
    FullRefresh,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The connector component (.wasm).
    pub plugin: PathBuf,
    /// The manifest; default: the one packed into the plugin, else `<plugin>.json` next to it.
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
    /// Collect what is new since the last run, or everything again (with
    /// --connection, a succeeded full refresh also deletes the stored records
    /// it no longer returned; docs/storage.md).
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
    #[command(flatten)]
    pub limits: LimitsOverride,
    /// Run this stored connection: its credential, state and records live in
    /// the data directory. A draft runs its first sync (setup).
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

impl RunArgs {
    fn egress(&self) -> anyhow::Result<EgressConfig> {
        let mut config = EgressConfig {
            allow_loopback_for_rewrites: self.allow_loopback_rewrites,
            ..Default::default()
        };
        for r in &self.rewrite_origin {
            config
                .rewrites
                .push(pdpp_host::config::parse_rewrite_pair(r).context("--rewrite-origin")?);
        }
        Ok(config)
    }

    /// The host's browser, for a plugin granted one (`[browser]` of the
    /// configuration file over the defaults).
    fn browser(&self, plugin: &pdpp_host::sandbox::Plugin) -> anyhow::Result<Option<BrowserService>> {
        if plugin.grants().browser().is_none() {
            return Ok(None);
        }
        let config = self.data.resolve()?.file.browser.config();
        Ok(Some(BrowserService::new(config).context("the browser service")?))
    }

    fn load_options(&self) -> anyhow::Result<LoadOptions> {
        let mut opts = self.data.resolve()?.load;
        opts.manifest_file = self.manifest.clone();
        Ok(opts)
    }
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

fn read_secrets(path: &Path) -> anyhow::Result<BTreeMap<String, Zeroizing<String>>> {
    let text =
        Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?);
    let map: BTreeMap<String, String> = serde_json::from_str(&text)
        .map_err(|_| anyhow::anyhow!("{} must be a JSON object of strings", path.display()))?;
    Ok(map.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect())
}

/// Guest-controlled text for a terminal: control characters (newlines that
/// would forge host lines, escape sequences) are shown escaped.
pub fn terminal_safe(text: &str) -> String {
    escape_controls(text, false)
}

/// Like [`terminal_safe`], but line breaks stay (a captured stderr tail),
/// each line behind a `| ` gutter so none can pass for a host line.
fn terminal_safe_lines(text: &str) -> String {
    escape_controls(text, true)
        .split('\n')
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Characters that reorder or hide text on a terminal without being
/// control characters (bidirectional overrides, zero-width marks).
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

fn escape_controls(text: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if (c.is_control() || is_invisible_format(c)) && !(keep_newlines && c == '\n') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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
        let fields: String = fields
            .iter()
            .map(|(k, v)| format!(" {}={}", terminal_safe(k), terminal_safe(v)))
            .collect();
        eprintln!("[connector {}] {}{fields}", level.as_str(), terminal_safe(message));
    }
}

/// Asks the person at the terminal.
pub struct TerminalPrompt {
    lines: tokio::sync::Mutex<tokio::io::Lines<BufReader<tokio::io::Stdin>>>,
}

impl TerminalPrompt {
    pub fn new() -> Self {
        TerminalPrompt {
            lines: tokio::sync::Mutex::new(BufReader::new(tokio::io::stdin()).lines()),
        }
    }
}

#[async_trait::async_trait]
impl InteractionHandler for TerminalPrompt {
    async fn answer(&self, req: &p::Interaction) -> p::InteractionAnswer {
        let mut lines = self.lines.lock().await;
        eprintln!(
            "\nThe connector asks ({}): {}",
            req.kind.as_str(),
            terminal_safe(&req.message)
        );
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
            eprint!("{}: ", terminal_safe(&name));
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

pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let settings: Value = serde_json::from_str(&args.settings).context("--settings must be a JSON object")?;
    if !settings.is_object() {
        bail!("--settings must be a JSON object");
    }
    let tuning = args.data.resolve()?.file.sandbox.memory.unwrap_or_default();
    let sandbox = Sandbox::with_tuning(tuning)?;
    let loaded = pdpp_host::plugins::load_file(&sandbox, &args.plugin, &args.load_options()?)
        .with_context(|| format!("cannot load plugin {}", args.plugin.display()))?;
    for w in &loaded.warnings {
        eprintln!("pdpp-host: warning: {w}");
    }
    let manifest = loaded.manifest.clone();
    if args.connection.is_none()
        && let Err(e) = manifest.check_settings(&settings)
    {
        eprintln!("pdpp-host: --settings: {e}");
        return Ok(exit::USAGE);
    }

    let state = match (&args.state, args.single_use) {
        (_, true) => StateInput::SingleUse,
        (Some(path), false) => StateInput::Persisted(read_state(path)?),
        (None, false) => StateInput::Persisted(StateMap::new()),
    };
    let limits = RunLimits::default().with_overrides(&args.limits);
    let mode = match args.mode {
        Mode::Incremental => CollectionMode::Incremental,
        Mode::FullRefresh => CollectionMode::FullRefresh,
    };
    let streams = (!args.streams.is_empty()).then(|| args.streams.iter().map(StreamScope::named).collect());
    let egress = Arc::new(args.egress()?);
    let handler: Option<Arc<dyn InteractionHandler>> = args
        .interactive
        .then(|| Arc::new(TerminalPrompt::new()) as Arc<dyn InteractionHandler>);
    let observer = Box::new(Transcript {
        out: std::io::BufWriter::new(std::io::stdout()),
    });
    let browser = args.browser(&loaded.plugin)?;

    let outcome = if let Some(connection_id) = &args.connection {
        let dep = args.data.open().await?;
        dep.store.upsert_connector(&manifest, Some(&loaded.sha256)).await?;
        // A draft runs its first sync: the setup run that activates it.
        let draft = dep
            .store
            .connection(connection_id)
            .await?
            .is_some_and(|c| c.status == pdpp_host::store::ConnectionStatus::Draft);
        let trigger = match (draft, args.scheduled) {
            (true, _) => Trigger::Setup,
            (false, true) => Trigger::Scheduled,
            (false, false) => Trigger::Manual,
        };
        let mut opts = ConnectionRun::new(trigger);
        opts.mode = mode;
        opts.streams = streams;
        opts.limits = limits;
        opts.egress = egress;
        opts.interaction = handler;
        opts.observer = observer;
        opts.browser = browser;
        match runtime::run_connection(&dep, &sandbox, &loaded.plugin, manifest, connection_id, opts).await {
            Ok(o) => o,
            Err(e) => {
                eprintln!("pdpp-host: run refused before start ({}): {e}", e.reason());
                return Ok(exit::USAGE);
            }
        }
    } else {
        let mut req = RunRequest::new(manifest);
        req.mode = mode;
        req.streams = streams;
        req.state = state;
        req.settings = settings;
        req.limits = limits;
        req.egress = egress;
        // Without a connection nothing is kept: the run starts logged out
        // and its browser material is destroyed at its end.
        if let Some(service) = browser {
            if let Some(why) = service.unavailable() {
                eprintln!("pdpp-host: run refused before start (browser_unavailable): {why}");
                return Ok(exit::USAGE);
            }
            req.browser = Some(BrowserSetup {
                establish_within: service.config().session_establish,
                service,
                profile: None,
                bootstrap_field: None,
            });
        }
        if let Some(path) = &args.secrets {
            req.secrets = read_secrets(path)?;
        }
        match runtime::execute(&sandbox, &loaded.plugin, req, handler, observer, None).await {
            Ok(o) => o,
            Err(e) => {
                eprintln!("pdpp-host: run refused before start: {e}");
                return Ok(exit::USAGE);
            }
        }
    };
    if let (Some(path), Some(commit)) = (&args.state, &outcome.commit) {
        let text = serde_json::to_vec_pretty(commit)?;
        pdpp_host::fsutil::write_atomically(path, &text, None)
            .with_context(|| format!("cannot replace the state file {}", path.display()))?;
    }
    let u = &outcome.usage;
    eprintln!(
        "pdpp-host: run {} {}{} — {} records, cpu {:.1} ms, wall {:.1} ms, peak memory {} KiB{}",
        outcome.run_id,
        pdpp_host::store::RunStatus::of_done(outcome.status).as_str(),
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
            terminal_safe_lines(&u.stderr.tail)
        );
    }
    Ok(match outcome.status {
        p::DoneStatus::Succeeded => exit::SUCCEEDED,
        p::DoneStatus::Failed => exit::FAILED,
        p::DoneStatus::Cancelled => exit::CANCELLED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_cannot_forge_host_lines_or_drive_the_terminal() {
        let hostile = "ok\npdpp-host: run succeeded\u{1b}[2J\r";
        let shown = terminal_safe(hostile);
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}') && !shown.contains('\r'),
            "{shown}"
        );
        assert!(shown.contains("\\n") && shown.contains("\\u{1b}"), "{shown}");
        assert_eq!(terminal_safe_lines("a\nb\u{7}"), "  | a\n  | b\\u{7}");
        assert_eq!(terminal_safe("x\u{202e}y"), "x\\u{202e}y", "a bidi override is escaped");
    }
}
