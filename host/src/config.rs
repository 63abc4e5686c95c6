//! `pdpp-host serve` configuration: a TOML file, overridden by environment
//! variables, overridden by command-line flags. See docs/configuration.md.

use crate::egress::{EgressConfig, Origin};
use crate::limits::LimitsOverride;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file's shape. Unknown keys are an error, so a typo never passes silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub data_dir: Option<PathBuf>,
    pub bind: Option<String>,
    pub plugin_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub vault_key_file: Option<PathBuf>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub egress: EgressFile,
    #[serde(default)]
    pub plugins: PluginsFile,
    #[serde(default)]
    pub browser: BrowserFile,
    #[serde(default)]
    pub collection: CollectionFile,
    #[serde(default)]
    pub capacity: CapacityFile,
    #[serde(default)]
    pub sandbox: SandboxFile,
}

/// `[sandbox]`: how the engine runs guests.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxFile {
    /// `lean` (the default: many live runs per host) or `reserved`
    /// (wasmtime's defaults: faster guest code, ~9,000 live runs); read by
    /// `serve` and `run` (docs/sandbox.md, "Capacity").
    pub memory: Option<crate::sandbox::MemoryTuning>,
}

/// `[capacity]`: how much this host holds at once.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityFile {
    /// Runs and credential probes live at once (running or parked on a
    /// question); one more is refused as `host_capacity`. Default
    /// [`crate::sandbox::DEFAULT_MAX_LIVE_RUNS`].
    pub max_live_runs: Option<usize>,
}

/// `[collection]`: how the deployment schedules collection.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionFile {
    /// Seconds between periodic full-refresh runs of every connection,
    /// overriding each manifest's `capabilities.refresh_policy`
    /// recommendation; `0` turns periodic full refreshes off. Read by the
    /// scheduler (`runtime::FullRefreshPolicy`).
    pub full_refresh_interval_seconds: Option<u64>,
}

/// `[browser]`: the host-held browser of browser-backed connectors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserFile {
    /// The Chromium binary (default `/usr/bin/chromium`).
    pub chromium: Option<PathBuf>,
    /// The chromedriver binary (default `/usr/bin/chromedriver`).
    pub chromedriver: Option<PathBuf>,
    /// Browsers running at once in this host; further runs wait (default 2).
    pub max_browsers: Option<usize>,
    /// Where session directories live (default: the system temporary
    /// directory; a tmpfs keeps login material off disk).
    pub work_dir: Option<PathBuf>,
    /// How long a run may take to report the account its browser is logged
    /// into, not counting time waiting for the owner (default 300).
    pub session_establish_seconds: Option<u64>,
    /// Run Chromium with its own sandbox (needs a non-root user with user
    /// namespaces; default false).
    pub chromium_sandbox: Option<bool>,
}

impl BrowserFile {
    /// The browser service's settings: this section over the defaults.
    pub fn config(&self) -> crate::browser::BrowserConfig {
        let mut c = crate::browser::BrowserConfig::default();
        if let Some(p) = &self.chromium {
            c.chromium = p.clone();
        }
        if let Some(p) = &self.chromedriver {
            c.chromedriver = p.clone();
        }
        if let Some(n) = self.max_browsers {
            c.max_browsers = n.max(1);
        }
        if let Some(d) = &self.work_dir {
            c.work_dir = d.clone();
        }
        if let Some(s) = self.session_establish_seconds {
            c.session_establish = std::time::Duration::from_secs(s);
        }
        if let Some(b) = self.chromium_sandbox {
            c.chromium_sandbox = b;
        }
        c
    }
}

/// `[plugins]`: how plugin files are trusted and where their compiled code is kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsFile {
    /// `off`, `warn` or `require`.
    pub signatures: Option<crate::plugins::SignaturePolicy>,
    /// Trusted ed25519 public keys, 64 hex digits each.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// The AOT cache directory (default `<data dir>/cache`).
    pub cache_dir: Option<PathBuf>,
}

/// `[limits]`: the deployment's run limits (a manifest can only lower
/// them), with the same names as everywhere else.
pub type LimitsFile = LimitsOverride;

/// `[egress]`: origin rewrites and address policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressFile {
    /// `"https://api.example.com" = "http://127.0.0.1:8080"`.
    #[serde(default)]
    pub rewrites: BTreeMap<String, String>,
    #[serde(default)]
    pub allow_loopback_for_rewrites: bool,
    #[serde(default)]
    pub allow_private_addresses: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the configuration file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A deployment origin rewrite that does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("an origin rewrite is FROM=TO, got {0:?}")]
    NotAPair(String),
    #[error("{0:?} is not an origin (scheme://host[:port])")]
    NotAnOrigin(String),
}

/// One origin rewrite: requests for `from` go to `to`.
pub fn parse_rewrite(from: &str, to: &str) -> Result<(Origin, Origin), RewriteError> {
    let parse = |o: &str| Origin::parse(o).ok_or_else(|| RewriteError::NotAnOrigin(o.to_owned()));
    Ok((parse(from)?, parse(to)?))
}

/// One origin rewrite written `FROM=TO` (the command line's form).
pub fn parse_rewrite_pair(pair: &str) -> Result<(Origin, Origin), RewriteError> {
    let (from, to) = pair
        .split_once('=')
        .ok_or_else(|| RewriteError::NotAPair(pair.to_owned()))?;
    parse_rewrite(from, to)
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let file: ConfigFile = toml::from_str(&text).map_err(|e| invalid(e.message().to_owned()))?;
        file.egress
            .config()
            .map_err(|e| invalid(format!("egress.rewrites: {e}")))?;
        Ok(file)
    }
}

impl EgressFile {
    pub fn config(&self) -> Result<EgressConfig, RewriteError> {
        let mut rewrites = Vec::new();
        for (from, to) in &self.rewrites {
            rewrites.push(parse_rewrite(from, to)?);
        }
        Ok(EgressConfig {
            rewrites,
            allow_private_addresses: self.allow_private_addresses,
            allow_loopback_for_rewrites: self.allow_loopback_for_rewrites,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        let dir = tempfile_dir();
        let path = dir.join("c.toml");
        std::fs::write(&path, text).unwrap();
        ConfigFile::load(&path)
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(crate::store::new_id("pdpp-config-test"));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn config_file_sets_paths_limits_and_rewrites() {
        let c = parse(
            r#"
            data_dir = "/srv/pdpp"
            bind = "0.0.0.0:9000"
            [limits]
            wall_clock_seconds = 30
            memory_mib = 64
            [egress]
            allow_loopback_for_rewrites = true
            [egress.rewrites]
            "https://api.example.com" = "http://127.0.0.1:4000"
            [collection]
            full_refresh_interval_seconds = 86400
            "#,
        )
        .unwrap();
        assert_eq!(c.collection.full_refresh_interval_seconds, Some(86_400));
        assert_eq!(c.bind.as_deref(), Some("0.0.0.0:9000"));
        let l = crate::sandbox::RunLimits::default().with_overrides(&c.limits);
        assert_eq!(l.wall_clock, std::time::Duration::from_secs(30));
        assert_eq!(l.memory_bytes, 64 << 20);
        let e = c.egress.config().unwrap();
        assert_eq!(e.rewrites.len(), 1);
        assert!(e.allow_loopback_for_rewrites);
    }

    #[test]
    fn sandbox_memory_is_lean_unless_the_file_says_reserved() {
        use crate::sandbox::MemoryTuning;
        assert_eq!(parse("").unwrap().sandbox.memory, None);
        assert_eq!(MemoryTuning::default(), MemoryTuning::Lean);
        let lean = parse("[sandbox]\nmemory = \"lean\"").unwrap();
        assert_eq!(lean.sandbox.memory, Some(MemoryTuning::Lean));
        let reserved = parse("[sandbox]\nmemory = \"reserved\"").unwrap();
        assert_eq!(reserved.sandbox.memory, Some(MemoryTuning::Reserved));
    }

    #[test]
    fn sandbox_memory_unknown_value_is_a_typed_error_naming_the_choices() {
        let e = parse("[sandbox]\nmemory = \"fast\"").unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("fast") && text.contains("lean") && text.contains("reserved"),
            "{text}"
        );
        assert!(text.contains("c.toml"), "the error names the file: {text}");
        let typo = parse("[sandbox]\nmemroy = \"lean\"").unwrap_err();
        assert!(typo.to_string().contains("memroy"), "{typo}");
    }

    #[test]
    fn config_file_typos_and_bad_origins_are_typed_errors() {
        let typo = parse("bnd = \"x\"").unwrap_err();
        assert!(matches!(typo, ConfigError::Invalid { .. }), "{typo}");
        assert!(typo.to_string().contains("bnd"), "{typo}");
        let origin = parse("[egress.rewrites]\n\"not an origin\" = \"http://x\"").unwrap_err();
        assert!(origin.to_string().contains("not an origin"), "{origin}");
    }
}
