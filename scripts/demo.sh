#!/usr/bin/env bash
# Builds the demo connector, packs it into the plugin directory and starts the
# host with its embedded defaults (SQLite and the vault key in .pdpp/data).
# On first start it prints the owner token once. Then, from another terminal:
#   TOKEN=pdpp_owner_…
#   curl -s -H "authorization: Bearer $TOKEN" localhost:8787/v1/connectors
#   curl -s -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
#        -d '{"connector_id":"demo","settings":{"contacts":20}}' localhost:8787/v1/connections
#   curl -s -X POST -H "authorization: Bearer $TOKEN" localhost:8787/v1/connections/<id>/runs
#   curl -s -H "authorization: Bearer $TOKEN" "localhost:8787/v1/records?connection_id=<id>&stream=contacts"
# Extra arguments go to `pdpp-host serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >&2
cargo build --locked --release --target wasm32-wasip2 -p demo >&2
cargo build --locked -q -p pdpp-host >&2
mkdir -p .pdpp/plugins
./target/debug/pdpp-host plugins pack --wasm target/wasm32-wasip2/release/demo.wasm \
  --manifest manifests/demo.json --out .pdpp/plugins/demo.wasm >&2
exec ./target/debug/pdpp-host serve --data-dir .pdpp/data --plugin-dir .pdpp/plugins "$@"
