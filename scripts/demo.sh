#!/usr/bin/env bash
# Builds the demo connector and runs it through the host, printing every
# Collection Profile message as JSONL. State is kept in .pdpp/demo-state.json,
# so a second run resumes from the first. Extra arguments go to `pdpp-host run`
# (try --interactive --settings '{"require_otp": true}').
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >&2
cargo build --locked --release --target wasm32-wasip2 -p demo >&2
mkdir -p .pdpp
exec cargo run --locked -q -p pdpp-host -- run target/wasm32-wasip2/release/demo.wasm \
  --manifest manifests/demo.json --state .pdpp/demo-state.json "$@"
