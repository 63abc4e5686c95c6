//! The plugin directory: packed files, sidecars, signatures, broken files,
//! the AOT cache, hot reload and the `plugins` commands, on the real demo
//! guest and real files in temporary directories.

use crate::support::*;
use ed25519_dalek::{Signer, SigningKey};
use pdpp_host::fsutil::write_atomically;
use pdpp_host::plugins::{
    self, Catalog, CatalogOptions, LoadOptions, LoadedPlugin, ManifestSource, PluginError, SignaturePolicy,
    SignatureStatus, TrustedKeys, format,
};
use pdpp_host::runtime::{self, RunRequest};
use pdpp_host::sandbox::Sandbox;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---- fixtures -------------------------------------------------------------

fn demo_wasm() -> Vec<u8> {
    std::fs::read(guest_path("demo")).expect("demo guest")
}

fn demo_manifest_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string(demo_manifest_path()).unwrap()).unwrap()
}

/// The demo manifest with another version (and connector id).
fn demo_manifest_as(connector_id: &str, version: &str) -> Value {
    let mut m = demo_manifest_json();
    m["connector_id"] = json!(connector_id);
    m["version"] = json!(version);
    m
}

/// A component with `manifest` embedded.
fn pack(wasm: &[u8], manifest: &Value) -> Vec<u8> {
    format::embed_manifest(wasm, manifest.to_string().as_bytes()).expect("packs")
}

fn packed_demo(version: &str) -> Vec<u8> {
    pack(&demo_wasm(), &demo_manifest_as("demo", version))
}

/// An AOT cache shared by tests that do not count compilations; kept in the
/// target directory so later test runs start warm.
fn shared_cache() -> PathBuf {
    workspace().join("target").join("test-plugin-cache")
}

fn options(cache: Option<&Path>) -> LoadOptions {
    LoadOptions {
        cache_dir: cache.map(Path::to_path_buf),
        ..LoadOptions::default()
    }
}

fn catalog(dir: &Path, cache: &Path) -> Arc<Catalog> {
    let mut o = CatalogOptions::new(dir);
    o.load = options(Some(cache));
    Catalog::open(Arc::new(Sandbox::new().expect("sandbox")), o)
}

/// Run the demo plugin for a few records with the sandbox it was compiled for.
async fn run_demo(sandbox: &Sandbox, p: &LoadedPlugin) -> u64 {
    let mut req = RunRequest::new(p.manifest.clone());
    req.settings = json!({ "contacts": 3, "events": 2 });
    let out = runtime::execute(sandbox, &p.plugin, req, None, Box::new(Transcript::default()), None)
        .await
        .expect("run starts");
    assert!(out.succeeded(), "{out:?}");
    out.records_emitted
}

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn trusting(key: &SigningKey, policy: SignaturePolicy) -> LoadOptions {
    LoadOptions {
        cache_dir: Some(shared_cache()),
        signatures: policy,
        trusted_keys: TrustedKeys::from_hex([pdpp_host::plugins::signature::hex(key.verifying_key().as_bytes())])
            .unwrap(),
        manifest_file: None,
    }
}

/// Poll until `cond` holds; fail after a generous bound.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cwasm_files(cache: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(cache)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "cwasm"));
    v.sort();
    v
}

// ---- format and manifests -------------------------------------------------

#[tokio::test]
async fn pack_command_writes_a_plugin_that_loads_with_its_embedded_manifest_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.wasm");
    let (code, lines, stderr) = cli(
        &[
            "plugins",
            "pack",
            "--wasm",
            guest_path("demo").to_str().unwrap(),
            "--manifest",
            demo_manifest_path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(lines[0]["packed"], json!(true));
    assert_eq!(lines[0]["sha256"], json!(plugins::sha256_hex(&bytes)));
    assert!(format::embedded_manifest(&bytes).unwrap().is_some());
    // Only the packed file is left: the temporary file was renamed into place.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let p = plugins::load_file(sandbox(), &out, &options(Some(&shared_cache()))).expect("loads");
    assert_eq!(p.source, ManifestSource::Embedded);
    assert_eq!(p.manifest.connector_id, "demo");
    assert_eq!(p.sha256, plugins::sha256_hex(&bytes));
    assert!(!p.networked());
    assert_eq!(run_demo(sandbox(), &p).await, 5);
}

#[test]
fn pack_command_refuses_an_invalid_manifest_and_a_core_module() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    let mut m = demo_manifest_json();
    m["streams"][0]["primary_key"] = json!(["nope"]);
    std::fs::write(&bad, m.to_string()).unwrap();
    let out = dir.path().join("out.wasm");
    let args = |wasm: &Path, manifest: &Path| {
        cli(
            &[
                "plugins",
                "pack",
                "--wasm",
                wasm.to_str().unwrap(),
                "--manifest",
                manifest.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
            None,
        )
    };
    let (code, lines, _) = args(&guest_path("demo"), &bad);
    assert_eq!(code, 1);
    assert_eq!(lines[0]["error"]["rule"], json!("primary_key_in_schema"));
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let (code, lines, _) = args(&core, &demo_manifest_path());
    assert_eq!(code, 1);
    assert_eq!(lines[0]["error"]["kind"], json!("wrong_world"));
    assert!(!out.exists(), "nothing is written on failure");
}

#[tokio::test]
async fn sidecar_manifest_is_accepted_next_to_a_bare_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.wasm");
    std::fs::write(&path, demo_wasm()).unwrap();
    std::fs::copy(demo_manifest_path(), dir.path().join("demo.json")).unwrap();
    let p = plugins::load_file(sandbox(), &path, &options(Some(&shared_cache()))).expect("loads");
    assert_eq!(p.source, ManifestSource::Sidecar(dir.path().join("demo.json")));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(run_demo(sandbox(), &p).await, 5);
}

#[test]
fn embedded_manifest_wins_over_a_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.wasm");
    std::fs::write(&path, packed_demo("9.9.9")).unwrap();
    std::fs::copy(demo_manifest_path(), dir.path().join("demo.json")).unwrap();
    let p = plugins::load_file(sandbox(), &path, &options(Some(&shared_cache()))).expect("loads");
    assert_eq!(p.source, ManifestSource::Embedded);
    assert_eq!(p.manifest.version, "9.9.9");
    assert!(
        p.warnings.iter().any(|w| w.contains("demo.json is ignored")),
        "{:?}",
        p.warnings
    );
}

#[tokio::test]
async fn each_broken_file_gets_its_own_typed_error_while_a_good_plugin_beside_it_loads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let demo = demo_wasm();
    std::fs::write(d.join("good.wasm"), packed_demo("0.1.0")).unwrap();
    std::fs::write(d.join("not-wasm.wasm"), b"this is not WebAssembly").unwrap();
    std::fs::write(d.join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    // A valid component that exports nothing: not the connector world.
    std::fs::write(
        d.join("empty.wasm"),
        pack(b"\0asm\x0d\0\x01\0", &demo_manifest_as("empty", "0.1.0")),
    )
    .unwrap();
    // A real guest that imports wasi:http under a manifest without `network`.
    let fetch = std::fs::read(guest_path("fetch")).unwrap();
    std::fs::write(d.join("fetch.wasm"), pack(&fetch, &demo_manifest_as("fetchy", "0.1.0"))).unwrap();
    let mut bad = demo_manifest_as("bad", "0.1.0");
    bad["streams"][0]["primary_key"] = json!(["nope"]);
    std::fs::write(d.join("bad-manifest.wasm"), pack(&demo, &bad)).unwrap();
    std::fs::write(d.join("no-manifest.wasm"), &demo).unwrap();
    std::fs::write(d.join("z-duplicate.wasm"), packed_demo("0.2.0")).unwrap();

    let catalog = catalog(d, &shared_cache());
    let snap = catalog.snapshot();
    assert_eq!(snap.plugins.keys().collect::<Vec<_>>(), ["demo"]);
    let good = snap.get("demo").unwrap();
    assert_eq!(good.path, d.join("good.wasm"));
    let err = |name: &str| {
        snap.errors
            .get(&d.join(name))
            .unwrap_or_else(|| panic!("no error for {name}: {:?}", snap.errors))
            .clone()
    };
    assert!(matches!(err("not-wasm.wasm"), PluginError::NotWasm(_)));
    assert!(matches!(err("core.wasm"), PluginError::WrongWorld(m) if m.contains("core WebAssembly module")));
    assert!(matches!(err("empty.wasm"), PluginError::WrongWorld(_)));
    assert!(matches!(err("fetch.wasm"), PluginError::WrongWorld(m) if m.contains("wasi:http")));
    assert!(matches!(
        err("bad-manifest.wasm"),
        PluginError::BadManifest {
            rule: "primary_key_in_schema",
            ..
        }
    ));
    assert!(matches!(err("no-manifest.wasm"), PluginError::NoManifest { .. }));
    assert_eq!(
        err("z-duplicate.wasm"),
        PluginError::Duplicate {
            connector_id: "demo".into(),
            loaded_from: d.join("good.wasm"),
        }
    );
    assert_eq!(snap.errors.len(), 7, "{:?}", snap.errors);
    assert!(snap.removed.is_empty());
    assert_eq!(run_demo(catalog.sandbox(), &good).await, 5);
}

// ---- signatures -----------------------------------------------------------

#[test]
fn signature_policy_require_refuses_unsigned_and_wrongly_signed_plugins_and_accepts_signed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key(42);
    let opts = trusting(&key, SignaturePolicy::Require);
    let bytes = packed_demo("0.1.0");
    let write = |name: &str, sig: Option<Vec<u8>>| {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        if let Some(sig) = sig {
            std::fs::write(plugins::signature::sig_path(&path), sig).unwrap();
        }
        path
    };

    let signed = write("signed.wasm", Some(key.sign(&bytes).to_bytes().to_vec()));
    let p = plugins::load_file(sandbox(), &signed, &opts).expect("a correctly signed plugin loads");
    assert_eq!(
        p.signature,
        SignatureStatus::Valid {
            key: plugins::signature::hex(key.verifying_key().as_bytes())
        }
    );
    assert!(p.warnings.is_empty());
    // Hex works too.
    let hex_signed = write(
        "hex.wasm",
        Some(plugins::signature::hex(&key.sign(&bytes).to_bytes()).into_bytes()),
    );
    plugins::load_file(sandbox(), &hex_signed, &opts).expect("a hex signature is accepted");

    let unsigned = write("unsigned.wasm", None);
    assert!(matches!(
        plugins::load_file(sandbox(), &unsigned, &opts),
        Err(PluginError::SignatureMissing(_))
    ));
    let stranger = write("stranger.wasm", Some(signing_key(7).sign(&bytes).to_bytes().to_vec()));
    assert!(matches!(
        plugins::load_file(sandbox(), &stranger, &opts),
        Err(PluginError::SignatureInvalid(_))
    ));
    let other_bytes = write("tampered.wasm", Some(key.sign(b"other bytes").to_bytes().to_vec()));
    assert!(matches!(
        plugins::load_file(sandbox(), &other_bytes, &opts),
        Err(PluginError::SignatureInvalid(_))
    ));
    let garbage = write("garbage.wasm", Some(b"not a signature".to_vec()));
    assert!(matches!(
        plugins::load_file(sandbox(), &garbage, &opts),
        Err(PluginError::SignatureInvalid(_))
    ));

    // A signed bare component with a sidecar: the sidecar (the consent
    // surface) is not covered by the signature, so `require` refuses it.
    let bare = demo_wasm();
    let path = dir.path().join("bare.wasm");
    std::fs::write(&path, &bare).unwrap();
    std::fs::write(plugins::signature::sig_path(&path), key.sign(&bare).to_bytes()).unwrap();
    std::fs::copy(demo_manifest_path(), dir.path().join("bare.json")).unwrap();
    assert!(matches!(
        plugins::load_file(sandbox(), &path, &opts),
        Err(PluginError::SignatureMissing(m)) if m.contains("sidecar")
    ));
}

#[test]
fn signature_policy_warn_loads_unsigned_and_wrongly_signed_plugins_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key(42);
    let opts = trusting(&key, SignaturePolicy::Warn);
    let bytes = packed_demo("0.1.0");
    let unsigned = dir.path().join("unsigned.wasm");
    std::fs::write(&unsigned, &bytes).unwrap();
    let p = plugins::load_file(sandbox(), &unsigned, &opts).expect("warn loads unsigned plugins");
    assert_eq!(p.signature, SignatureStatus::Missing);
    assert!(
        p.warnings.iter().any(|w| w.contains("unsigned.wasm.sig")),
        "{:?}",
        p.warnings
    );

    let wrong = dir.path().join("wrong.wasm");
    std::fs::write(&wrong, &bytes).unwrap();
    std::fs::write(
        plugins::signature::sig_path(&wrong),
        signing_key(1).sign(&bytes).to_bytes(),
    )
    .unwrap();
    let p = plugins::load_file(sandbox(), &wrong, &opts).expect("warn loads badly signed plugins");
    assert!(matches!(p.signature, SignatureStatus::Invalid { .. }));
    assert!(
        p.warnings.iter().any(|w| w.contains("bad signature")),
        "{:?}",
        p.warnings
    );

    // Off: signatures are not read at all.
    let p = plugins::load_file(sandbox(), &wrong, &options(Some(&shared_cache()))).unwrap();
    assert_eq!(p.signature, SignatureStatus::NotChecked);
    assert!(p.warnings.is_empty());
}

// ---- AOT cache ------------------------------------------------------------

#[tokio::test]
async fn warm_cache_lets_a_restarted_catalog_load_every_plugin_without_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("demo.wasm"), packed_demo("0.1.0")).unwrap();
    let probe = std::fs::read(guest_path("probe")).unwrap();
    std::fs::write(dir.path().join("probe.wasm"), &probe).unwrap();
    std::fs::copy(probe_manifest_path(), dir.path().join("probe.json")).unwrap();

    let first = catalog(dir.path(), cache.path());
    assert_eq!(first.snapshot().plugins.len(), 2, "{:?}", first.snapshot().errors);
    assert_eq!(first.stats().compiled, 2);
    assert_eq!(first.stats().from_cache, 0);
    assert_eq!(cwasm_files(cache.path()).len(), 2);
    drop(first);

    // A "restart": a new engine, the same directory and cache.
    let second = catalog(dir.path(), cache.path());
    assert_eq!(second.snapshot().plugins.len(), 2);
    assert_eq!(second.stats().compiled, 0, "a warm cache compiles nothing");
    assert_eq!(second.stats().from_cache, 2);
    let demo = second.get("demo").unwrap();
    assert!(demo.from_cache);
    assert_eq!(run_demo(second.sandbox(), &demo).await, 5);
}

#[tokio::test]
async fn corrupted_cache_entry_is_not_trusted_and_a_changed_file_never_reuses_a_stale_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.wasm");
    std::fs::write(&path, packed_demo("0.1.0")).unwrap();
    let opts = options(Some(cache.path()));

    let p = plugins::load_file(sandbox(), &path, &opts).unwrap();
    assert!(!p.from_cache);
    let entries = cwasm_files(cache.path());
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    let name = entry.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("{}-", p.sha256)),
        "keyed by the file's sha256: {name}"
    );
    assert!(plugins::load_file(sandbox(), &path, &opts).unwrap().from_cache);

    // Flip one byte in the middle of the compiled code.
    let mut code = std::fs::read(entry).unwrap();
    let mid = code.len() / 2;
    code[mid] ^= 0x55;
    std::fs::write(entry, &code).unwrap();
    let p = plugins::load_file(sandbox(), &path, &opts).unwrap();
    assert!(!p.from_cache, "a corrupted entry is recompiled, not deserialized");
    assert_eq!(run_demo(sandbox(), &p).await, 5);
    assert!(
        plugins::load_file(sandbox(), &path, &opts).unwrap().from_cache,
        "and rewritten"
    );

    // Truncated (a crash mid-write of a foreign writer).
    let code = std::fs::read(entry).unwrap();
    std::fs::write(entry, &code[..code.len() / 3]).unwrap();
    assert!(!plugins::load_file(sandbox(), &path, &opts).unwrap().from_cache);

    // A new version of the file has a new key.
    std::fs::write(&path, packed_demo("0.2.0")).unwrap();
    let p = plugins::load_file(sandbox(), &path, &opts).unwrap();
    assert!(!p.from_cache);
    assert_eq!(p.manifest.version, "0.2.0");
    assert_eq!(cwasm_files(cache.path()).len(), 2);
}

// ---- hot reload -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_adds_replaces_and_removes_plugins_while_a_held_version_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let catalog = catalog(&d, &shared_cache());
    assert!(catalog.snapshot().plugins.is_empty());
    let watch = catalog.watch().expect("watches");

    // Dropped in with a plain write.
    std::fs::write(d.join("demo.wasm"), packed_demo("0.1.0")).unwrap();
    wait_until("demo 0.1.0 appears", || {
        catalog.get("demo").is_some_and(|p| p.manifest.version == "0.1.0")
    })
    .await;
    let old = catalog.get("demo").unwrap();

    // An unrelated broken file: the demo plugin is neither touched nor recompiled.
    let loads = catalog.stats();
    std::fs::write(d.join("junk.wasm"), b"junk").unwrap();
    wait_until("junk.wasm is reported", || {
        catalog.snapshot().errors.contains_key(&d.join("junk.wasm"))
    })
    .await;
    assert!(Arc::ptr_eq(&catalog.get("demo").unwrap(), &old));
    assert_eq!(catalog.stats(), loads);

    // Replaced (atomically) by a new version.
    write_atomically(&d.join("demo.wasm"), &packed_demo("0.2.0"), None).unwrap();
    wait_until("demo 0.2.0 replaces 0.1.0", || {
        catalog.get("demo").is_some_and(|p| p.manifest.version == "0.2.0")
    })
    .await;
    assert_eq!(old.manifest.version, "0.1.0", "a held version is not changed");
    assert_eq!(run_demo(catalog.sandbox(), &old).await, 5, "and still runs");
    let new = catalog.get("demo").unwrap();
    assert_eq!(run_demo(catalog.sandbox(), &new).await, 5);

    // Removed.
    std::fs::remove_file(d.join("demo.wasm")).unwrap();
    wait_until("demo disappears", || catalog.get("demo").is_none()).await;
    let snap = catalog.snapshot();
    assert!(snap.removed.contains("demo"), "{:?}", snap.removed);
    assert_eq!(
        run_demo(catalog.sandbox(), &new).await,
        5,
        "a held version outlives its file"
    );

    // Stopped: nothing is picked up any more.
    drop(watch);
    let generation = catalog.snapshot().generation;
    std::fs::write(d.join("demo.wasm"), packed_demo("0.1.0")).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(catalog.snapshot().generation, generation);
    assert!(catalog.get("demo").is_none());
}

// ---- CLI ------------------------------------------------------------------

#[test]
fn plugins_validate_exits_0_for_a_usable_plugin_and_1_with_the_typed_error_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("demo.wasm");
    std::fs::write(&good, packed_demo("0.1.0")).unwrap();
    let not_wasm = dir.path().join("text.wasm");
    std::fs::write(&not_wasm, "hello").unwrap();
    let bare = dir.path().join("bare.wasm");
    std::fs::write(&bare, demo_wasm()).unwrap();

    let validate = |file: &Path, extra: &[&str]| {
        let mut args = vec!["plugins", "validate", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        cli(&args, &[], None)
    };
    let (code, lines, stderr) = validate(&good, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines[0]["valid"], json!(true));
    assert_eq!(lines[0]["connector_id"], json!("demo"));
    assert_eq!(lines[0]["source"], json!("embedded"));

    let (code, lines, stderr) = validate(&not_wasm, &[]);
    assert_eq!(code, 1);
    assert_eq!(lines[0]["valid"], json!(false));
    assert_eq!(lines[0]["error"]["kind"], json!("not_wasm"));
    assert!(stderr.contains("not a WebAssembly component"), "{stderr}");

    let (code, lines, _) = validate(&bare, &[]);
    assert_eq!(code, 1);
    assert_eq!(lines[0]["error"]["kind"], json!("no_manifest"));

    let key = plugins::signature::hex(signing_key(3).verifying_key().as_bytes());
    let (code, lines, _) = validate(&good, &["--signatures", "require", "--trusted-key", &key]);
    assert_eq!(code, 1);
    assert_eq!(lines[0]["error"]["kind"], json!("signature_missing"));
}

#[test]
fn plugins_list_prints_one_line_per_plugin_then_one_per_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let packed = packed_demo("0.3.0");
    std::fs::write(d.join("demo.wasm"), &packed).unwrap();
    std::fs::write(d.join("probe.wasm"), std::fs::read(guest_path("probe")).unwrap()).unwrap();
    std::fs::copy(probe_manifest_path(), d.join("probe.json")).unwrap();
    std::fs::write(d.join("broken.wasm"), "nope").unwrap();

    let cache = shared_cache();
    let (code, lines, stderr) = cli(
        &["plugins", "list", "--cache-dir", cache.to_str().unwrap()],
        &[("PDPP_PLUGIN_DIR", d.to_str().unwrap())],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    let demo = &lines[0];
    assert_eq!(demo["connector_id"], json!("demo"));
    assert_eq!(demo["version"], json!("0.3.0"));
    assert_eq!(demo["sha256"], json!(plugins::sha256_hex(&packed)));
    assert_eq!(demo["source"], json!("embedded"));
    assert_eq!(demo["networked"], json!(false));
    assert_eq!(demo["warnings"], json!([]));
    assert_eq!(lines[1]["connector_id"], json!("probe"));
    assert_eq!(lines[1]["source"], json!("sidecar"));
    assert_eq!(lines[2]["path"], json!(d.join("broken.wasm")));
    assert_eq!(lines[2]["error"]["kind"], json!("not_wasm"));
    assert!(stderr.contains("broken.wasm"), "broken files are logged: {stderr}");

    let (code, _, stderr) = cli(
        &["plugins", "list", "--dir", d.join("missing").to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn plugins_inspect_shows_the_manifest_hash_signature_and_component_world() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.wasm");
    let bytes = packed_demo("0.1.0");
    std::fs::write(&path, &bytes).unwrap();
    let (code, lines, stderr) = cli(&["plugins", "inspect", path.to_str().unwrap()], &[], None);
    assert_eq!(code, 0, "{stderr}");
    let r = &lines[0];
    assert_eq!(r["valid"], json!(true));
    assert_eq!(r["sha256"], json!(plugins::sha256_hex(&bytes)));
    assert_eq!(r["manifest"]["connector_id"], json!("demo"));
    assert_eq!(r["manifest"]["source"], json!("embedded"));
    assert_eq!(r["manifest"]["streams"], json!(["contacts", "events"]));
    assert_eq!(r["signature"]["status"], json!("missing"));
    let names = |key: &str| -> Vec<String> {
        r[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        names("imports").iter().any(|n| n.starts_with("pdpp:connector/emit")),
        "{:?}",
        names("imports")
    );
    assert!(!names("exports").is_empty());

    // A component of the wrong world still shows what it imports and exports.
    let fetch = dir.path().join("fetch.wasm");
    std::fs::write(
        &fetch,
        pack(
            &std::fs::read(guest_path("fetch")).unwrap(),
            &demo_manifest_as("fetchy", "0.1.0"),
        ),
    )
    .unwrap();
    let (code, lines, _) = cli(&["plugins", "inspect", fetch.to_str().unwrap()], &[], None);
    assert_eq!(code, 1);
    assert_eq!(lines[0]["error"]["kind"], json!("wrong_world"));
    assert!(
        lines[0]["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"].as_str().unwrap().starts_with("wasi:http/"))
    );
}

/// `pdpp-host run` takes the manifest packed into the plugin.
#[test]
fn run_uses_the_manifest_packed_into_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let packed = dir.path().join("demo-packed.wasm");
    let demo = guest_path("demo");
    cli_pack(&demo, &demo_manifest_path(), &packed);
    let (code, lines, err) = cli(
        &[
            "run",
            packed.to_str().unwrap(),
            "--settings",
            r#"{"contacts": 2, "events": 1}"#,
        ],
        &[],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines.iter().filter(|l| l["type"] == "RECORD").count(), 3);
}

/// A removed plugin leaves its connections and data in place, marked unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_plugin_leaves_connections_and_data_marked_unavailable() {
    let t = deployment(pdpp_host::store::Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::write(d.join("demo.wasm"), packed_demo("0.1.0")).unwrap();
    let catalog = catalog(&d, &shared_cache());
    let snap = catalog.snapshot();
    snap.sync_to(&t.dep.store).await.unwrap();
    let demo = snap.get("demo").unwrap();
    let conn = t
        .connection(&demo.manifest, serde_json::json!({ "contacts": 3, "events": 0 }), None)
        .await;
    let out = pdpp_host::runtime::run_connection(
        &t.dep,
        catalog.sandbox(),
        &demo.plugin,
        demo.manifest.clone(),
        &conn,
        pdpp_host::runtime::ConnectionRun::new(pdpp_host::store::Trigger::Manual),
    )
    .await
    .unwrap();
    assert!(out.succeeded());
    assert_eq!(
        t.dep.store.connector_availability("demo").await.unwrap().as_deref(),
        Some("available")
    );

    std::fs::remove_file(d.join("demo.wasm")).unwrap();
    let snap = catalog.rescan();
    snap.sync_to(&t.dep.store).await.unwrap();
    assert_eq!(
        t.dep.store.connector_availability("demo").await.unwrap().as_deref(),
        Some("unavailable")
    );
    assert!(
        t.dep.store.connection(&conn).await.unwrap().is_some(),
        "the connection stays"
    );
    assert_eq!(
        t.dep.store.count_records(&conn).await.unwrap(),
        3,
        "and so do its records"
    );
}

/// `pdpp-host run` of the demo plugin, one record, on the data directory `data`.
fn demo_run_once(data: &std::path::Path) -> Vec<String> {
    let (demo, m) = (guest_path("demo"), demo_manifest_path());
    ["run", demo.to_str().unwrap(), "--manifest", m.to_str().unwrap()]
        .into_iter()
        .chain([
            "--settings",
            r#"{"contacts": 1, "events": 0}"#,
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .map(str::to_owned)
        .collect()
}

/// `pdpp-host run` of a stored-nowhere plugin (no `--connection`) uses the
/// same AOT cache as `serve`: the first invocation compiles and writes the
/// entry, the second loads it without compiling (the entry is not rewritten).
#[test]
fn run_loads_the_plugin_from_the_aot_cache_on_its_second_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let owned = demo_run_once(&data);
    let args: Vec<&str> = owned.iter().map(String::as_str).collect();
    let debug = [("RUST_LOG", "pdpp_host=debug")];
    let (code, lines, first) = cli(&args, &debug, None);
    assert_eq!(code, 0, "{first}");
    assert_eq!(lines.iter().filter(|l| l["type"] == "RECORD").count(), 1);
    assert!(first.contains("compiled in"), "the first run compiles: {first}");
    let entries = cwasm_files(&data.join("cache"));
    assert_eq!(entries.len(), 1, "one cache entry: {entries:?}");
    use std::os::unix::fs::MetadataExt;
    let before = std::fs::metadata(&entries[0]).unwrap();

    let (code, lines, second) = cli(&args, &debug, None);
    assert_eq!(code, 0, "{second}");
    assert_eq!(lines.iter().filter(|l| l["type"] == "RECORD").count(), 1);
    assert!(second.contains("loaded from the AOT cache"), "{second}");
    assert!(
        !second.contains("compiled in"),
        "the second run does not compile: {second}"
    );
    let after = std::fs::metadata(&entries[0]).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec()),
        "the entry was not rewritten"
    );
}

/// The cache's validation applies to `run`: a damaged entry is not
/// deserialized; the plugin is compiled again and the entry rewritten whole.
#[test]
fn run_recompiles_a_damaged_cache_entry_instead_of_loading_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let owned = demo_run_once(&data);
    let args: Vec<&str> = owned.iter().map(String::as_str).collect();
    let debug = [("RUST_LOG", "pdpp_host=debug")];
    let (code, _, err) = cli(&args, &debug, None);
    assert_eq!(code, 0, "{err}");
    let entry = cwasm_files(&data.join("cache")).remove(0);
    let intact = std::fs::read(&entry).unwrap();
    let mut damaged = intact.clone();
    damaged[intact.len() / 2] ^= 0xff;
    std::fs::write(&entry, &damaged).unwrap();

    let (code, lines, err) = cli(&args, &debug, None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines.iter().filter(|l| l["type"] == "RECORD").count(), 1);
    assert!(err.contains("damaged"), "{err}");
    assert!(err.contains("compiled in"), "{err}");
    assert_eq!(std::fs::read(&entry).unwrap(), intact, "the entry is whole again");
    let (code, _, err) = cli(&args, &debug, None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("loaded from the AOT cache"), "{err}");
}
