#!/usr/bin/env bash
# README's first command. Builds every connector in connectors/ for
# wasm32-wasip2, packs each with its manifest into the plugin directory (as a
# deployer would drop a .wasm there), adds the manifest-only listings
# (tombstones, upstream blocks), and starts the host with its embedded
# defaults: SQLite and the vault key in .pdpp/data, the owner API on
# 127.0.0.1:8787. On first start it prints the owner token once; then follow
# docs/quickstart.md. The browser demo connector's reading-list site runs
# alongside on a loopback port (its origin rewritten there through
# .pdpp/demo.toml), so a browser-demo connection works when Chromium is
# installed (scripts/browser-demo.sh installs it). Extra arguments go to
# `pdpp-host serve`.
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
cargo build --locked -q -p pdpp-host -p browser-demo-site >&2
host="$target/debug/pdpp-host"
mkdir -p .pdpp/plugins
for name in "${connectors[@]}"; do
  "$host" plugins pack --wasm "$target/wasm32-wasip2/release/${name//-/_}.wasm" \
    --manifest "manifests/$name.json" --out ".pdpp/plugins/$name.wasm" >&2
done
for manifest in manifests/*.json; do
  name=$(basename "$manifest" .json)
  if [ ! -d "connectors/$name" ] && grep -q '"lifecycle"' "$manifest"; then
    cp "$manifest" ".pdpp/plugins/$name.json"
  fi
done
site_out=$(mktemp)
"$target/debug/browser-demo-site" >"$site_out" &
site=$!
trap 'kill "$site" 2>/dev/null || true; rm -f "$site_out"' EXIT
until [ -s "$site_out" ]; do sleep 0.1; done
cat >.pdpp/demo.toml <<TOML
# Written by scripts/demo.sh: the browser demo's site on loopback.
[egress]
allow_loopback_for_rewrites = true
[egress.rewrites]
"https://books.example" = "$(head -n 1 "$site_out")"
TOML
"$host" serve --config .pdpp/demo.toml --data-dir .pdpp/data --plugin-dir .pdpp/plugins "$@"
