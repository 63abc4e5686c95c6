//! The module structure docs/architecture.md describes, checked: the host's
//! top-level modules depend on each other without a cycle, the library never
//! imports the command line, and no provider is named in the host.

use crate::support::workspace;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `crate::<module>` uses in non-test code of a file (comments skipped).
fn uses(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let name: String = line[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, f);
        } else if path.extension().is_some_and(|e| e == "rs") {
            f(&path);
        }
    }
}

/// Top-level module → the top-level modules it uses.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = workspace().join("host/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    walk(&src, &mut |path| {
        let rel = path.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        if matches!(module.as_str(), "main" | "lib" | "cli") {
            return; // the binary and the crate root
        }
        let used = uses(&std::fs::read_to_string(path).unwrap());
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(used.into_iter().filter(|u| *u != module));
    });
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| known.contains(d));
    }
    graph
}

#[test]
fn host_modules_have_no_import_cycle() {
    let graph = module_graph();
    assert!(graph.len() > 10, "the host's modules were found: {graph:?}");
    // Depth-first search with colours: an edge back to the current path is a cycle.
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == n) {
            let mut cycle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n);
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n);
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        let cycle = visit(n, &graph, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "import cycle among the host's modules: {:?}",
            cycle.unwrap()
        );
    }
}

#[test]
fn the_library_never_imports_the_command_line() {
    let src = workspace().join("host/src");
    assert!(
        !src.join("lib.rs").exists() || !std::fs::read_to_string(src.join("lib.rs")).unwrap().contains("mod cli"),
        "the CLI is a module of the binary"
    );
    for (module, deps) in module_graph() {
        assert!(!deps.contains("cli"), "{module} imports the CLI");
    }
}

#[test]
fn no_provider_is_named_in_the_host() {
    let providers = [
        "github", "notion", "oura", "spotify", "pocket", "reddit", "strava", "slack",
    ];
    let mut found = Vec::new();
    walk(&workspace().join("host/src"), &mut |path| {
        let text = std::fs::read_to_string(path).unwrap().to_lowercase();
        for p in providers {
            if text.contains(p) {
                found.push(format!("{}: {p}", path.display()));
            }
        }
    });
    assert!(found.is_empty(), "provider names in the host: {found:?}");
}
