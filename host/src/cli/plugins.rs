//! `pdpp-host plugins …`: list, inspect, validate and pack plugin files.

use super::{DataArgs, exit};
use anyhow::{Context, bail};
use clap::Subcommand;
use pdpp_host::manifest::Manifest;
use pdpp_host::plugins::{Catalog, CatalogOptions, Inputs, PluginError, format, signature};
use pdpp_host::sandbox::Sandbox;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::types::ComponentItem;

#[derive(Subcommand)]
pub enum PluginsCommand {
    /// Load every plugin of the directory: one JSON line per plugin, then one per broken file.
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Describe one plugin file: manifest, sha256, signature, the component's imports and exports.
    Inspect {
        /// The plugin file (.wasm).
        file: PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Check that a file would load as a plugin; exit status 0 when it would, 1 when not.
    Validate {
        /// The plugin file (.wasm).
        file: PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Embed a manifest in a component, making one plugin file.
    Pack {
        /// The component, as built (`cargo build --target wasm32-wasip2 --release`).
        #[arg(long)]
        wasm: PathBuf,
        /// The connector's manifest; it is validated first.
        #[arg(long)]
        manifest: PathBuf,
        /// The plugin file to write (replaced in one step).
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn main(command: PluginsCommand) -> anyhow::Result<i32> {
    match command {
        PluginsCommand::List { data } => list(&data),
        PluginsCommand::Inspect { file, data } => inspect(&file, &data),
        PluginsCommand::Validate { file, data } => validate(&file, &data),
        PluginsCommand::Pack { wasm, manifest, out } => pack(&wasm, &manifest, &out),
    }
}

fn print(out: &mut impl Write, v: &Value) -> anyhow::Result<()> {
    writeln!(out, "{v}")?;
    Ok(())
}

fn list(data: &DataArgs) -> anyhow::Result<i32> {
    let settings = data.resolve()?;
    let dir = &settings.plugin_dir;
    if !dir.is_dir() {
        bail!("the plugin directory {} does not exist", dir.display());
    }
    let mut options = CatalogOptions::new(dir);
    options.load = settings.load;
    let tuning = settings.file.sandbox.memory.unwrap_or_default();
    let catalog = Catalog::open(Arc::new(Sandbox::with_tuning(tuning)?), options);
    let snapshot = catalog.snapshot();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for p in snapshot.plugins.values() {
        print(&mut out, &p.to_json())?;
    }
    for (path, e) in &snapshot.errors {
        print(&mut out, &json!({ "path": path, "error": e.to_json() }))?;
    }
    out.flush()?;
    Ok(exit::SUCCEEDED)
}

fn validate(file: &Path, data: &DataArgs) -> anyhow::Result<i32> {
    let sandbox = Sandbox::new()?;
    let mut options = data.resolve()?.load;
    options.cache_dir = None;
    match pdpp_host::plugins::load_file(&sandbox, file, &options) {
        Ok(p) => {
            let mut line = p.to_json();
            line["valid"] = true.into();
            println!("{line}");
            Ok(exit::SUCCEEDED)
        }
        Err(e) => {
            println!("{}", json!({ "path": file, "valid": false, "error": e.to_json() }));
            eprintln!("{}: {e}", file.display());
            Ok(exit::FAILED)
        }
    }
}

/// Everything that can be learned about a file, step by step; the first
/// failing step is the error, and the steps before it are still shown.
fn inspect(file: &Path, data: &DataArgs) -> anyhow::Result<i32> {
    let mut options = data.resolve()?.load;
    options.cache_dir = None;
    let inputs = match Inputs::read(file) {
        Ok(i) => i,
        Err(e) => {
            println!("{}", json!({ "path": file, "valid": false, "error": e.to_json() }));
            return Ok(exit::FAILED);
        }
    };
    let sandbox = Sandbox::new()?;
    let mut report = json!({
        "path": file,
        "sha256": inputs.sha256,
        "size_bytes": inputs.bytes.len(),
        "signature": if options.trusted_keys.is_empty() && inputs.signature.is_some() {
            json!({ "status": "present", "checked": false })
        } else {
            serde_json::to_value(signature::check(&inputs.bytes, inputs.signature.as_deref(), &options.trusted_keys))?
        },
    });
    let result = (|| -> Result<(), PluginError> {
        format::require_component(&inputs.bytes)?;
        let manifest = pdpp_host::plugins::resolve_manifest(&inputs, None);
        if let Ok((m, source, _)) = &manifest {
            let required: Vec<&str> = m.required_bindings().collect();
            report["manifest"] = json!({
                "source": source.as_str(),
                "connector_id": m.connector_id,
                "name": m.name,
                "version": m.version,
                "description": m.description,
                "streams": m.streams.iter().map(|s| &s.name).collect::<Vec<_>>(),
                "required_bindings": required,
            });
        }
        let (component, _) = pdpp_host::plugins::compile(&sandbox, &inputs.bytes, &inputs.sha256, None)?;
        let engine = sandbox.engine();
        let ty = component.component_type();
        let item = |name: &str, item: &ComponentItem| json!({ "name": name, "kind": item_kind(item) });
        report["imports"] = ty.imports(engine).map(|(n, e)| item(n, &e.ty)).collect();
        report["exports"] = ty.exports(engine).map(|(n, e)| item(n, &e.ty)).collect();
        // Whether it loads, under the signature policy given.
        let (m, source, mut warnings) = manifest?;
        pdpp_host::plugins::apply_policy(&inputs, &source, &options, &mut warnings)?;
        let grants = pdpp_host::sandbox::Grants::from_manifest(&m);
        report["networked"] = grants.network().is_some().into();
        sandbox.prepare_component(&component, &grants)?;
        report["warnings"] = json!(warnings);
        Ok(())
    })();
    match result {
        Ok(()) => {
            report["valid"] = true.into();
            println!("{report}");
            Ok(exit::SUCCEEDED)
        }
        Err(e) => {
            report["valid"] = false.into();
            report["error"] = e.to_json();
            println!("{report}");
            Ok(exit::FAILED)
        }
    }
}

fn item_kind(item: &ComponentItem) -> &'static str {
    use ComponentItem as I;
    match item {
        I::ComponentFunc(_) => "func",
        I::CoreFunc(_) => "core-func",
        I::Module(_) => "module",
        I::Component(_) => "component",
        I::ComponentInstance(_) => "instance",
        I::Type(_) => "type",
        I::Resource(_) => "resource",
    }
}

fn pack(wasm: &Path, manifest: &Path, out: &Path) -> anyhow::Result<i32> {
    let bytes = std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let text = std::fs::read_to_string(manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    let fail = |e: &dyn std::fmt::Display, error: Value| {
        println!("{}", json!({ "out": out, "packed": false, "error": error }));
        eprintln!("pdpp-host: plugins pack: {e}");
        Ok(exit::FAILED)
    };
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            let e = PluginError::BadManifest {
                rule: "manifest_json",
                message: format!("{}: not JSON: {e}", manifest.display()),
            };
            return fail(&e, e.to_json());
        }
    };
    let m = match Manifest::from_value(value.clone()) {
        Ok(m) => m,
        Err(e) => {
            let e = PluginError::BadManifest {
                rule: e.rule,
                message: e.to_string(),
            };
            return fail(&e, e.to_json());
        }
    };
    let packed = match format::embed_manifest(&bytes, serde_json::to_string(&value)?.as_bytes()) {
        Ok(p) => p,
        Err(e) => return fail(&e, e.to_json()),
    };
    pdpp_host::fsutil::write_atomically(out, &packed, None)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{}",
        json!({
            "out": out,
            "packed": true,
            "connector_id": m.connector_id,
            "version": m.version,
            "sha256": pdpp_host::plugins::sha256_hex(&packed),
        })
    );
    Ok(exit::SUCCEEDED)
}
