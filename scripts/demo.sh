#!/usr/bin/env bash
# README's first command. Builds every connector in connectors/ for
# wasm32-wasip2, packs each with its manifest into the plugin directory (as a
# deployer would drop a .wasm there), adds the manifest-only listings
# (tombstones, upstream blocks), and starts the host with its embedded
# defaults: SQLite and the vault key in .pdpp/data, the owner API on
# 127.0.0.1:8787. On first start it prints the owner token once; then follow
# docs/quickstart.md. Extra arguments go to `pdpp-host serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >&2
connectors=()
for dir in connectors/*/; do
  name=$(basename "$dir")
  [ -f "manifests/$name.json" ] && connectors+=("$name")
done
target="${CARGO_TARGET_DIR:-target}"
cargo build --locked --release --target wasm32-wasip2 $(printf -- '-p %s ' "${connectors[@]}") >&2
cargo build --locked -q -p pdpp-host >&2
host="$target/debug/pdpp-host"
mkdir -p .pdpp/plugins
for name in "${connectors[@]}"; do
  "$host" plugins pack --wasm "$target/wasm32-wasip2/release/$name.wasm" \
    --manifest "manifests/$name.json" --out ".pdpp/plugins/$name.wasm" >&2
done
for manifest in manifests/*.json; do
  name=$(basename "$manifest" .json)
  if [ ! -d "connectors/$name" ] && grep -q '"lifecycle"' "$manifest"; then
    cp "$manifest" ".pdpp/plugins/$name.json"
  fi
done
exec "$host" serve --data-dir .pdpp/data --plugin-dir .pdpp/plugins "$@"
