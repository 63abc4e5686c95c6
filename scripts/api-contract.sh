#!/usr/bin/env bash
# The owner API's contract, checked from outside (called by scripts/test.sh
# after `cargo test`; docs/api.md#the-contract-check says what it does).
#
# Starts a real `pdpp-host serve` on loopback with the demo plugin, a
# temporary data directory and an owner token of its own, then
#   1. validates the served /openapi.json (openapi-spec-validator);
#   2. runs schemathesis against it: every check, the examples, coverage,
#      fuzzing and stateful phases, a fixed seed and a bounded number of
#      examples; any finding fails the step;
#   3. generates a Python client from the document (openapi-python-client),
#      imports it and makes calls with it against the same server.
#
# The Python tools are pinned and installed in a venv (.pdpp/contract-venv,
# reused when present). Environment:
#   CONTRACT_MAX_EXAMPLES  examples per operation (default 25)
#   CONTRACT_SEED          the seed (default 20261207)
#   CONTRACT_MAX_TIME      a time budget in seconds: fuzzing and the stateful
#                          phase repeat until it is spent (long runs)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

SCHEMATHESIS=4.32.5
SPEC_VALIDATOR=0.9.0
PYTHON_CLIENT=0.29.1

echo "==> python tools"
venv=$root/.pdpp/contract-venv
if ! "$venv/bin/python" -c 'import sys; sys.exit(0)' 2>/dev/null; then
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
fi
"$venv/bin/pip" install -q --disable-pip-version-check \
  "schemathesis==$SCHEMATHESIS" "openapi-spec-validator==$SPEC_VALIDATOR" "openapi-python-client==$PYTHON_CLIENT"

echo "==> host and demo plugin"
target="${CARGO_TARGET_DIR:-target}"
cargo build --locked -q -p pdpp-host
# The test guests' directory: `cargo test` built the demo there already.
cargo build --locked -q --release --target wasm32-wasip2 -p demo --target-dir target/test-guests
host="$target/debug/pdpp-host"

work=$(mktemp -d /tmp/pdpp-contract.XXXXXX)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/data" "$work/plugins"
"$host" plugins pack --wasm target/test-guests/wasm32-wasip2/release/demo.wasm \
  --manifest manifests/demo.json --out "$work/plugins/demo.wasm" >/dev/null
# The owner token: the host keeps only its SHA-256, so writing the hash
# before the first start gives the server a token this script knows.
token="pdpp_owner_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
printf '%s' "$token" | sha256sum | cut -d' ' -f1 >"$work/data/owner-token.sha256"
chmod 600 "$work/data/owner-token.sha256"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
"$host" serve --bind "127.0.0.1:$port" --data-dir "$work/data" --plugin-dir "$work/plugins" \
  --database-url "sqlite://$work/data/pdpp.db?mode=rwc" >"$work/serve.out" 2>"$work/serve.log" &
server=$!
# Ready when the demo plugin has loaded (compiled; up to five minutes on a slow machine).
ready=
for _ in $(seq 1 3000); do
  if curl -fsS "$base/healthz" 2>/dev/null | grep -q '"ready":true'; then ready=1; break; fi
  if ! kill -0 "$server" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "pdpp-host serve did not become ready:" >&2
  cat "$work/serve.log" >&2
  exit 1
fi
curl -fsS "$base/openapi.json" -o "$work/openapi.json"

echo "==> openapi-spec-validator"
"$venv/bin/openapi-spec-validator" "$work/openapi.json"

echo "==> schemathesis"
limits=(--max-examples "${CONTRACT_MAX_EXAMPLES:-25}")
if [ -n "${CONTRACT_MAX_TIME:-}" ]; then limits+=(--max-time "$CONTRACT_MAX_TIME"); fi
started=$(date +%s)
(
  cd "$work"
  "$venv/bin/schemathesis" \
    --config-file "$root/scripts/schemathesis.toml" run "$base/openapi.json" \
    -H "Authorization: Bearer $token" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --seed "${CONTRACT_SEED:-20261207}" \
    "${limits[@]}" \
    --request-timeout 30 \
    --workers 1 \
    --no-color
) || { echo "schemathesis found contract failures (server log: $work/serve.log)" >&2; tail -n 40 "$work/serve.log" >&2; exit 1; }
echo "schemathesis took $(($(date +%s) - started)) s"

echo "==> generated Python client"
(
  cd "$work"
  # It warns that it skips the screenshot (image/png) response.
  "$venv/bin/openapi-python-client" generate --path openapi.json --meta none --output-path pdpp_client \
    >generate.log 2>&1 || { cat generate.log >&2; exit 1; }
  PDPP_BASE="$base" PDPP_TOKEN="$token" "$venv/bin/python" "$root/scripts/contract_client.py"
)
