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
# Install the first-party plugins into the data dir (they start disabled until an admin
# enables them on the Plugins page); an installed copy is never overwritten.
DATA="${BACKSTOP_DATA_DIR:-./data}"
for id in recordings custom-dirs space-guard; do
  src="plugins/target/backstop-plugins/$id"
  if [ -d "$src" ] && [ ! -e "$DATA/plugins/$id" ]; then
    mkdir -p "$DATA/plugins/$id" && cp "$src/plugin.toml" "$src/plugin.wasm" "$DATA/plugins/$id/"
  fi
done
exec "$CARGO_TARGET_DIR/debug/backstop" serve "$@"
