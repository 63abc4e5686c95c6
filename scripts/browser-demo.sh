#!/usr/bin/env bash
# A browser-backed connector, offline, in one command. Builds the browser
# demo connector (connectors/browser-demo), its demo reading-list site and
# the host; starts the site on a free loopback port; and runs the connector
# once through the host's headless Chromium, the site's declared origin
# (https://books.example) rewritten to the loopback port. Prints every
# Collection Profile message as JSONL. Installs Debian's chromium and
# chromium-driver first when they are missing (as root, or with sudo).
# Extra arguments go to `pdpp-host run` (e.g. --settings '{"reader": "ada"}').
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-driver >/dev/null
fi
rustup target add wasm32-wasip2 >&2
target="${CARGO_TARGET_DIR:-target}"
cargo build --locked --release --target wasm32-wasip2 -p browser-demo >&2
cargo build --locked -q -p pdpp-host -p browser-demo-site >&2

site_out=$(mktemp)
"$target/debug/browser-demo-site" >"$site_out" &
site=$!
trap 'kill "$site" 2>/dev/null || true; rm -f "$site_out"' EXIT
until [ -s "$site_out" ]; do sleep 0.1; done
"$target/debug/pdpp-host" run "$target/wasm32-wasip2/release/browser_demo.wasm" \
  --manifest manifests/browser-demo.json \
  --rewrite-origin "https://books.example=$(head -n 1 "$site_out")" --allow-loopback-rewrites "$@"
