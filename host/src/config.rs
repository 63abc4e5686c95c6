//! `pdpp-host serve` configuration: a TOML file, overridden by environment
//! variables, overridden by command-line flags. See docs/configuration.md.

use crate::egress::{EgressConfig, Origin};
use crate::sandbox::RunLimits;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
}

/// `[limits]`: the deployment's run limits (a manifest can only lower them).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub cpu_seconds: Option<u64>,
    pub wall_clock_seconds: Option<u64>,
    pub memory_mib: Option<usize>,
    pub max_records: Option<u64>,
    pub log_bytes: Option<u64>,
    pub http_max_requests: Option<u64>,
    pub http_max_response_bytes: Option<u64>,
}

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
        file.egress.config().map_err(invalid)?;
        Ok(file)
    }
}

impl LimitsFile {
    /// The default limits with this file's values applied.
    pub fn apply(&self, mut l: RunLimits) -> RunLimits {
        if let Some(s) = self.cpu_seconds {
            l.cpu = Duration::from_secs(s);
        }
        if let Some(s) = self.wall_clock_seconds {
            l.wall_clock = Duration::from_secs(s);
        }
        if let Some(m) = self.memory_mib {
            l.memory_bytes = m << 20;
        }
        if let Some(n) = self.max_records {
            l.max_records = n;
        }
        if let Some(n) = self.log_bytes {
            l.log_bytes = n;
        }
        if let Some(n) = self.http_max_requests {
            l.http.max_requests = n;
        }
        if let Some(n) = self.http_max_response_bytes {
            l.http.max_response_bytes = n;
        }
        l
    }
}

impl EgressFile {
    pub fn config(&self) -> Result<EgressConfig, String> {
        let mut rewrites = Vec::new();
        for (from, to) in &self.rewrites {
            let parse = |o: &str| Origin::parse(o).ok_or_else(|| format!("egress.rewrites: {o:?} is not an origin"));
            rewrites.push((parse(from)?, parse(to)?));
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
            "#,
        )
        .unwrap();
        assert_eq!(c.bind.as_deref(), Some("0.0.0.0:9000"));
        let l = c.limits.apply(RunLimits::default());
        assert_eq!(l.wall_clock, Duration::from_secs(30));
        assert_eq!(l.memory_bytes, 64 << 20);
        let e = c.egress.config().unwrap();
        assert_eq!(e.rewrites.len(), 1);
        assert!(e.allow_loopback_for_rewrites);
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
