//! docs/quickstart.md is followed as written against a real server: every
//! shell block after the server's start runs in order, in one bash session,
//! and every HTTP call in it must succeed.

use crate::server::*;
use crate::support::*;
use std::process::Command;

/// The ```sh blocks of a Markdown text, in order.
fn shell_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn the_quickstart_runs_as_written() {
    let doc = std::fs::read_to_string(workspace().join("docs/quickstart.md")).unwrap();
    let blocks = shell_blocks(&doc);
    assert!(
        blocks.len() >= 6,
        "the quickstart's blocks were found: {}",
        blocks.len()
    );
    assert!(
        blocks[0].contains("scripts/demo.sh"),
        "the first block starts the server"
    );
    assert!(blocks[1].contains("TOKEN="), "the second sets the token: {}", blocks[1]);
    let s = serve_with(ServeOptions::default().plugin("demo", &demo_manifest_path()));
    // The server the first block would start, at its address, with its token.
    let setup = blocks[1]
        .lines()
        .map(|l| {
            if l.starts_with("TOKEN=") {
                format!("TOKEN={}", s.token)
            } else if l.starts_with("API=") {
                format!("API=http://{}", s.addr)
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let tmp = tempfile::tempdir().unwrap();
    let mut script = String::from(
        "set -euo pipefail\n\
         # Any HTTP error fails the walk-through.\n\
         curl() { command curl --fail-with-body \"$@\"; }\n",
    );
    script.push_str(&setup);
    script.push('\n');
    for block in &blocks[2..] {
        // Each block's /tmp files stay inside this test's directory.
        script.push_str(&block.replace("/tmp/", &format!("{}/", tmp.path().display())));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(workspace())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the quickstart failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("\"connection.delete\""),
        "it ran to its last step: {stdout}"
    );
}
