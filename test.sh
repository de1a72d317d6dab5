#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (real SQLite files, the real server on a
# free port, real WebAssembly plugins) and the browser tests (headless Chromium from Debian,
# driven by playwright-core). Installs what is missing. Used by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/backstop-target}"
export BACKSTOP_SITE_DIR="${BACKSTOP_SITE_DIR:-$CARGO_TARGET_DIR/site}"
export BACKSTOP_BIN="$CARGO_TARGET_DIR/debug/backstop"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

./build.sh
# The Garage S3 server for the tests (cached outside the clone; the first build takes ~20 min).
GARAGE_BIN="$(tests/garage.sh path)"; export GARAGE_BIN # not `export X=$(..)`: that hides a failure

# Tools the tests call: GNU tar, sha256sum, python3 (tarfile), sqlite3, chromium, PostgreSQL 15, age.
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v pigz >/dev/null || need+=(pigz)
# Debian's age CLI: the encryption tests check that it opens what Backstop writes and back.
command -v age >/dev/null || need+=(age)
# PostgreSQL 15 for the content-pg tests (they start their own cluster as the postgres user).
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} from Debian"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

say "format and lints"
cargo fmt --all --check
cargo clippy -p server -p engine -p content-pg -p plugin-host -p wire -p tests -p app --features app/ssr --all-targets -- -D warnings
cargo clippy -p app --lib --target wasm32-unknown-unknown --no-default-features --features hydrate -- -D warnings

say "Rust tests"
cargo test -p server -p engine -p content-pg -p plugin-host -p wire -p tests -p app --features app/ssr

say "browser tests"
(cd tests/browser && { [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund; } && node run.mjs)
say "all tests passed"
