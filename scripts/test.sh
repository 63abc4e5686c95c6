#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need, so it works
# on a fresh machine: the wasm32-wasip2 Rust target (connectors are built from
# source by the test harness, once per test process).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> toolchain"
rustup target add wasm32-wasip2
if [ -n "${CI:-}" ]; then
  # A fresh clone gains nothing from incremental compilation.
  export CARGO_INCREMENTAL=0
fi

echo "==> tests"
cargo test --locked -p pdpp-sdk -p pdpp-host
