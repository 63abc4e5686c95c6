//! The documents cite tests by name (`conformance::start::…` for an
//! integration test, `host/src/x.rs: name` for a unit test). A cited test
//! that does not exist is a claim nothing backs: every citation must resolve.

use crate::support::workspace;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The text between each pair of backticks.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `source` defines a test function or test module named `name`:
/// `fn name`, `mod name` (`on_both_backends!` turns `async fn name(…)` into
/// `mod name`), or a test-defining macro call `some_macro!(name, …)`.
fn defines(source: &str, name: &str) -> bool {
    let ident_ends = |rest: &str| rest.chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
    let keyword = ["fn ", "mod "].iter().any(|kw| {
        source
            .match_indices(&format!("{kw}{name}"))
            .any(|(i, m)| ident_ends(&source[i + m.len()..]))
    });
    let macro_call = source.match_indices("!(").any(|(i, _)| {
        let rest = source[i + 2..].trim_start();
        rest.starts_with(name) && ident_ends(&rest[name.len()..])
    });
    keyword || macro_call
}

/// The integration-test file a module path points into: `a::b::test` is in
/// `tests/it/a/b.rs`, `tests/it/a/b/mod.rs` or (a module inside) `tests/it/a.rs`.
fn integration_source(root: &Path, path: &[&str]) -> Option<String> {
    let modules = &path[..path.len() - 1];
    for take in (1..=modules.len()).rev() {
        let rel: PathBuf = modules[..take].iter().collect();
        for candidate in [root.join(&rel).with_extension("rs"), root.join(&rel).join("mod.rs")] {
            if let Ok(text) = std::fs::read_to_string(&candidate) {
                return Some(text);
            }
        }
    }
    None
}

#[test]
fn every_test_cited_in_the_docs_exists() {
    let ws = workspace();
    let it = ws.join("tests/it");
    let top: BTreeSet<String> = std::fs::read_dir(&it)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            p.file_stem().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    let mut all_sources = Vec::new();
    rust_files(&ws.join("host/src"), &mut all_sources);
    let mut missing = Vec::new();
    let mut checked = 0;
    let mut docs: Vec<PathBuf> = std::fs::read_dir(ws.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.push(ws.join("README.md"));
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for q in quoted(&text) {
            // `host/src/x.rs: test_name`
            if let Some((file, name)) = q.split_once(".rs: ") {
                let path = ws.join(format!("{file}.rs"));
                checked += 1;
                let ok = std::fs::read_to_string(&path).is_ok_and(|s| defines(&s, name.trim()));
                if !ok {
                    missing.push(format!("{}: {q}", doc.display()));
                }
                continue;
            }
            // `module::…::test_name`, where `module` is an integration-test module.
            let parts: Vec<&str> = q.split("::").collect();
            let is_test_path = parts.len() >= 2
                && top.contains(parts[0])
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                });
            if !is_test_path {
                continue;
            }
            checked += 1;
            let name = parts[parts.len() - 1];
            let ok = integration_source(&it, &parts).is_some_and(|s| defines(&s, name));
            if !ok {
                missing.push(format!("{}: {q}", doc.display()));
            }
        }
    }
    assert!(
        checked > 100,
        "the docs cite tests; only {checked} citations were found"
    );
    assert!(
        missing.is_empty(),
        "tests cited in the docs that do not exist:\n{}",
        missing.join("\n")
    );
}

/// A manifest's recorded proof (`capabilities.proven.<what>.test`) unlocks
/// setup (a proof-gated modality, the ephemeral browser mode): it must name
/// an integration test that exists, or the claim is backed by nothing.
#[test]
fn every_recorded_proof_names_a_test_that_exists() {
    let ws = workspace();
    let it = ws.join("tests/it");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(ws.join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for guest in std::fs::read_dir(ws.join("tests/guests")).unwrap() {
        manifests.extend(
            std::fs::read_dir(guest.unwrap().path())
                .unwrap()
                .map(|e| e.unwrap().path()),
        );
    }
    let mut checked = 0;
    for path in manifests.iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let Some(proven) = doc.pointer("/capabilities/proven").and_then(|p| p.as_object()) else {
            continue;
        };
        for (what, proof) in proven {
            if proof["proven"] != serde_json::Value::Bool(true) {
                continue;
            }
            // Live proofs against the real provider cite a date, not a test.
            let Some(test) = proof["test"].as_str() else {
                assert!(
                    what.ends_with("_live"),
                    "{}: proof {what} names no test",
                    path.display()
                );
                continue;
            };
            checked += 1;
            let parts: Vec<&str> = test.split("::").collect();
            let exists = integration_source(&it, &parts).is_some_and(|s| defines(&s, parts[parts.len() - 1]));
            assert!(
                exists,
                "{}: proof {what} names {test}, which does not exist",
                path.display()
            );
        }
    }
    assert!(checked >= 4, "the browser proofs were found: {checked}");
}
