#!/usr/bin/env bash
# Builds Backstop and serves it on the embedded default: SQLite files, demo data and the
# archive folder under ./data, an admin account created on first start (its password is
# printed once, or set BACKSTOP_ADMIN_PASSWORD). Open http://127.0.0.1:8080 .
# Any argument is passed to `backstop serve` (e.g. ./run.sh --bind 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/backstop-target}"
export BACKSTOP_SITE_DIR="${BACKSTOP_SITE_DIR:-$CARGO_TARGET_DIR/site}"
./build.sh
# The first-party plugins ship inside the binary: `serve` installs them into the data dir,
# disabled until an admin enables them on the Plugins page.
exec "$CARGO_TARGET_DIR/debug/backstop" serve "$@"
