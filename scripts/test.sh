#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need, so it works
# on a fresh machine:
#   - the wasm32-wasip2 Rust target (connectors are built from source by the
#     test harness, once per test process);
#   - a PostgreSQL server (Debian package), started for the tests in a
#     temporary directory on a free loopback port and stopped afterwards;
#   - Chromium and chromedriver (Debian packages chromium, chromium-driver)
#     for the browser engine's tests, which drive a real headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> toolchain"
rustup target add wasm32-wasip2
if [ -n "${CI:-}" ]; then
  # A fresh clone gains nothing from incremental compilation.
  export CARGO_INCREMENTAL=0
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

echo "==> tools"
# The quickstart test follows docs/quickstart.md with curl and jq.
if ! command -v curl >/dev/null || ! command -v jq >/dev/null; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq curl jq >/dev/null
fi

echo "==> postgresql"
PGBIN=$(pg_bin)
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/postgres" ] || ! command -v pg_dump >/dev/null; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql postgresql-client >/dev/null
  PGBIN=$(pg_bin)
fi
PGDATA=$(mktemp -d /tmp/pdpp-test-pg.XXXXXX)
PGPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# PostgreSQL refuses to run as root: use its own system user when we are root.
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$PGDATA"
  pg() { runuser -u postgres -- "$@"; }
else
  pg() { "$@"; }
fi
pg "$PGBIN/initdb" -D "$PGDATA/data" -A trust -U postgres >/dev/null
pg "$PGBIN/pg_ctl" -D "$PGDATA/data" -l "$PGDATA/server.log" -w \
  -o "-p $PGPORT -h 127.0.0.1 -k $PGDATA -F" start >/dev/null
stop_postgres() {
  pg "$PGBIN/pg_ctl" -D "$PGDATA/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$PGDATA"
}
trap stop_postgres EXIT
export PDPP_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT"

echo "==> chromium"
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-driver >/dev/null
fi
# The Debian wrapper prints a harmless shell warning on some machines; keep the version line.
echo "$(/usr/bin/chromium --version 2>/dev/null | tail -n 1), $(/usr/bin/chromedriver --version | cut -d' ' -f1-2)"

echo "==> tests"
# The SDK crates, the host (unit and integration tests) and every
# connector's own tests.
packages=(-p pdpp-host)
for dir in sdk/ sdk/*/ connectors/*/; do
  if [ -f "$dir/Cargo.toml" ]; then
    packages+=(-p "$(sed -n 's/^name = "\(.*\)"/\1/p' "$dir/Cargo.toml" | head -n 1)")
  fi
done
cargo test --locked "${packages[@]}"

echo "==> owner API contract"
# The OpenAPI document checked from outside against a real server
# (openapi-spec-validator, schemathesis, a generated Python client).
bash scripts/api-contract.sh
