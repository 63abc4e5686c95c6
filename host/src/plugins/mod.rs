//! The plugin directory: connector files, their manifests and signatures, the
//! AOT cache and hot reload.
//!
//! A plugin is one `.wasm` component with its manifest embedded in a custom
//! section ([`format`]); during development a sidecar `<name>.json` next to
//! `<name>.wasm` is accepted too (an embedded manifest wins). [`load_file`]
//! turns one file into a [`LoadedPlugin`]: read, hash, check the signature
//! ([`signature`]), validate the manifest, compile through the AOT cache
//! ([`cache`]) and resolve imports through the [`Sandbox`] for the grants the
//! manifest makes ([`Grants`]: derived once, kept with the plugin). The [`Catalog`]
//! keeps every plugin of a directory, swaps in a new snapshot when the
//! directory changes, and records what failed and why, file by file.

pub mod cache;
mod catalog;
pub mod format;
pub mod signature;

pub use cache::AotCache;
pub use catalog::{CacheStats, Catalog, CatalogOptions, Snapshot, WatchHandle};
pub use signature::{SignaturePolicy, SignatureStatus, TrustedKeys};

use crate::manifest::Manifest;
use crate::sandbox::{Grants, LoadError, Plugin, Sandbox};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::Component;

/// Why a file is not a usable plugin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("cannot read {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("not a WebAssembly component: {0}")]
    NotWasm(String),
    #[error("the component does not fit the pdpp:connector world: {0}")]
    WrongWorld(String),
    #[error("bad manifest (rule {rule}): {message}")]
    BadManifest { rule: &'static str, message: String },
    #[error(
        "no manifest: the component has no `pdpp-manifest` section and there is no sidecar {}",
        sidecar.display()
    )]
    NoManifest { sidecar: PathBuf },
    #[error("signature required: {0}")]
    SignatureMissing(String),
    #[error("bad signature: {0}")]
    SignatureInvalid(String),
    #[error("connector {connector_id} is already provided by {}", loaded_from.display())]
    Duplicate { connector_id: String, loaded_from: PathBuf },
    #[error("AOT cache: {0}")]
    Cache(String),
}

impl PluginError {
    /// A stable name for the kind of error, for JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Io { .. } => "io",
            PluginError::NotWasm(_) => "not_wasm",
            PluginError::WrongWorld(_) => "wrong_world",
            PluginError::BadManifest { .. } => "bad_manifest",
            PluginError::NoManifest { .. } => "no_manifest",
            PluginError::SignatureMissing(_) => "signature_missing",
            PluginError::SignatureInvalid(_) => "signature_invalid",
            PluginError::Duplicate { .. } => "duplicate_connector",
            PluginError::Cache(_) => "cache",
        }
    }

    /// `{"kind", "message", "rule"?}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "kind": self.kind(), "message": self.to_string() });
        if let PluginError::BadManifest { rule, .. } = self {
            v["rule"] = (*rule).into();
        }
        v
    }

    fn io(path: &Path, e: &std::io::Error) -> Self {
        PluginError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

impl From<LoadError> for PluginError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::NotAComponent(m) => PluginError::NotWasm(m),
            other => PluginError::WrongWorld(other.mismatch()),
        }
    }
}

/// How files are loaded.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The AOT cache directory; `None` compiles in memory only.
    pub cache_dir: Option<PathBuf>,
    pub signatures: SignaturePolicy,
    pub trusted_keys: TrustedKeys,
    /// A manifest file that replaces the embedded manifest and the sidecar
    /// (`pdpp-host run --manifest`, during development). No signature covers it.
    pub manifest_file: Option<PathBuf>,
}

/// Where a plugin's manifest came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestSource {
    /// The component's `pdpp-manifest` section.
    Embedded,
    /// `<name>.json` next to the file.
    Sidecar(PathBuf),
    /// A file named by the operator ([`LoadOptions::manifest_file`]).
    Explicit(PathBuf),
}

impl ManifestSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            ManifestSource::Embedded => "embedded",
            ManifestSource::Sidecar(_) => "sidecar",
            ManifestSource::Explicit(_) => "explicit",
        }
    }
}

/// A plugin ready to run, and what is known about its file.
#[derive(Debug)]
pub struct LoadedPlugin {
    pub manifest: Arc<Manifest>,
    pub plugin: Plugin,
    /// Hex sha256 of the `.wasm` bytes.
    pub sha256: String,
    pub path: PathBuf,
    pub source: ManifestSource,
    pub signature: SignatureStatus,
    /// Loaded, but something is worth telling the operator (unsigned under
    /// `warn`, an ignored sidecar…).
    pub warnings: Vec<String>,
    /// The compiled code came from the AOT cache rather than the compiler.
    pub from_cache: bool,
}

impl LoadedPlugin {
    pub fn connector_id(&self) -> &str {
        &self.manifest.connector_id
    }

    /// Whether the plugin is linked with `wasi:http` (its manifest requires `network`).
    pub fn networked(&self) -> bool {
        self.plugin.grants().network().is_some()
    }

    /// The line `plugins list` prints.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "connector_id": self.manifest.connector_id,
            "version": self.manifest.version,
            "sha256": self.sha256,
            "path": self.path,
            "source": self.source.as_str(),
            "networked": self.networked(),
            "signature": self.signature,
            "warnings": self.warnings,
        })
    }
}

/// The `<name>.json` next to `<name>.wasm`.
pub fn sidecar_path(wasm: &Path) -> PathBuf {
    wasm.with_extension("json")
}

/// Hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    signature::hex(&Sha256::digest(bytes))
}

/// Everything read from disk for one plugin file, before any checking.
#[derive(Clone)]
pub struct Inputs {
    pub path: PathBuf,
    pub bytes: Arc<Vec<u8>>,
    pub sha256: String,
    pub sidecar: Option<Vec<u8>>,
    pub signature: Option<Vec<u8>>,
}

impl Inputs {
    /// Read the file, its sidecar and its signature file (those two if present).
    pub fn read(path: &Path) -> Result<Inputs, PluginError> {
        let bytes = std::fs::read(path).map_err(|e| PluginError::io(path, &e))?;
        let optional = |p: PathBuf| match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PluginError::io(&p, &e)),
        };
        Ok(Inputs {
            path: path.to_path_buf(),
            sha256: sha256_hex(&bytes),
            bytes: Arc::new(bytes),
            sidecar: optional(sidecar_path(path))?,
            signature: optional(signature::sig_path(path))?,
        })
    }

    /// Changes when anything that goes into loading changes.
    pub fn fingerprint(&self) -> String {
        let part = |b: &Option<Vec<u8>>| b.as_deref().map(sha256_hex).unwrap_or_default();
        format!("{}:{}:{}", self.sha256, part(&self.sidecar), part(&self.signature))
    }
}

/// The manifest for these inputs: an explicit file when given, else the
/// embedded one, else the sidecar.
pub fn resolve_manifest(
    inputs: &Inputs,
    explicit: Option<&Path>,
) -> Result<(Manifest, ManifestSource, Vec<String>), PluginError> {
    let mut warnings = Vec::new();
    if let Some(path) = explicit {
        let manifest = Manifest::from_file(path).map_err(|e| PluginError::BadManifest {
            rule: e.rule,
            message: e.to_string(),
        })?;
        warnings.extend(manifest.deprecations.iter().cloned());
        return Ok((manifest, ManifestSource::Explicit(path.to_path_buf()), warnings));
    }
    let sidecar = sidecar_path(&inputs.path);
    let (text, source) = match format::embedded_manifest(&inputs.bytes)? {
        Some(embedded) => {
            if inputs.sidecar.is_some() {
                warnings.push(format!(
                    "{} is ignored: the manifest embedded in the component wins",
                    sidecar.display()
                ));
            }
            (embedded, ManifestSource::Embedded)
        }
        None => match &inputs.sidecar {
            Some(text) => (text.as_slice(), ManifestSource::Sidecar(sidecar)),
            None => return Err(PluginError::NoManifest { sidecar }),
        },
    };
    let text = std::str::from_utf8(text).map_err(|_| PluginError::BadManifest {
        rule: "manifest_json",
        message: format!("the {} manifest is not UTF-8", source.as_str()),
    })?;
    let manifest = Manifest::from_json(text).map_err(|e| PluginError::BadManifest {
        rule: e.rule,
        message: e.to_string(),
    })?;
    warnings.extend(manifest.deprecations.iter().cloned());
    Ok((manifest, source, warnings))
}

/// Apply the signature policy: an error under `require`, warnings under `warn`.
pub fn apply_policy(
    inputs: &Inputs,
    source: &ManifestSource,
    opts: &LoadOptions,
    warnings: &mut Vec<String>,
) -> Result<SignatureStatus, PluginError> {
    if opts.signatures == SignaturePolicy::Off {
        return Ok(SignatureStatus::NotChecked);
    }
    let status = signature::check(&inputs.bytes, inputs.signature.as_deref(), &opts.trusted_keys);
    let sig = signature::sig_path(&inputs.path);
    let problem = match &status {
        SignatureStatus::Valid { .. } | SignatureStatus::NotChecked => None,
        SignatureStatus::Missing => Some(PluginError::SignatureMissing(format!(
            "{} does not exist",
            sig.display()
        ))),
        SignatureStatus::Invalid { reason } => {
            Some(PluginError::SignatureInvalid(format!("{}: {reason}", sig.display())))
        }
    };
    // The signature covers the .wasm only: a sidecar manifest (the consent
    // surface) is not signed by it.
    let unsigned = |from: String| {
        PluginError::SignatureMissing(format!(
            "the manifest comes from {from}, which no signature covers; embed it with \
             `pdpp-host plugins pack` and sign the packed file"
        ))
    };
    let problem = problem.or_else(|| match source {
        ManifestSource::Sidecar(p) => Some(unsigned(format!("the sidecar {}", p.display()))),
        ManifestSource::Explicit(p) => Some(unsigned(format!("the file {}", p.display()))),
        ManifestSource::Embedded => None,
    });
    match (problem, opts.signatures) {
        (Some(e), SignaturePolicy::Require) => Err(e),
        (Some(e), _) => {
            warnings.push(e.to_string());
            Ok(status)
        }
        (None, _) => Ok(status),
    }
}

/// Compile through the cache (if any). Returns the component and whether it
/// came from the cache.
pub fn compile(
    sandbox: &Sandbox,
    bytes: &[u8],
    sha256: &str,
    cache: Option<&AotCache>,
) -> Result<(Component, bool), PluginError> {
    format::require_component(bytes)?;
    let engine = sandbox.engine();
    let Some(cache) = cache else {
        let c = Component::new(engine, bytes).map_err(|e| PluginError::NotWasm(e.root_cause().to_string()))?;
        return Ok((c, false));
    };
    if let Some(c) = cache.load(engine, sha256) {
        tracing::debug!("plugin {sha256} loaded from the AOT cache");
        return Ok((c, true));
    }
    let t = std::time::Instant::now();
    let code = engine
        .precompile_component(bytes)
        .map_err(|e| PluginError::NotWasm(e.root_cause().to_string()))?;
    tracing::debug!("plugin {sha256} compiled in {} ms", t.elapsed().as_millis());
    if let Err(e) = cache.store(sha256, &code) {
        tracing::warn!("cannot write the AOT cache in {}: {e}", cache.dir().display());
    }
    // SAFETY: `code` was produced a moment ago by this engine's
    // `precompile_component`, in memory; nothing else touched it.
    let c =
        unsafe { Component::deserialize(engine, &code) }.map_err(|e| PluginError::Cache(e.root_cause().to_string()))?;
    Ok((c, false))
}

/// Load one plugin file: read, hash, signature, manifest, compile (through
/// the cache), resolve imports.
pub fn load_file(sandbox: &Sandbox, path: &Path, opts: &LoadOptions) -> Result<LoadedPlugin, PluginError> {
    let cache = opts.cache_dir.as_deref().map(|d| AotCache::new(d, sandbox.engine()));
    load_inputs(sandbox, Inputs::read(path)?, opts, cache.as_ref())
}

/// [`load_file`] on inputs already read.
pub fn load_inputs(
    sandbox: &Sandbox,
    inputs: Inputs,
    opts: &LoadOptions,
    cache: Option<&AotCache>,
) -> Result<LoadedPlugin, PluginError> {
    format::require_component(&inputs.bytes)?;
    let (manifest, source, mut warnings) = resolve_manifest(&inputs, opts.manifest_file.as_deref())?;
    let signature = apply_policy(&inputs, &source, opts, &mut warnings)?;
    let grants = Grants::from_manifest(&manifest);
    let (component, from_cache) = compile(sandbox, &inputs.bytes, &inputs.sha256, cache)?;
    let plugin = sandbox.prepare_component(&component, &grants)?;
    Ok(LoadedPlugin {
        manifest: Arc::new(manifest),
        plugin,
        sha256: inputs.sha256,
        path: inputs.path,
        source,
        signature,
        warnings,
        from_cache,
    })
}
