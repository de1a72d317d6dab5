#!/usr/bin/env bash
# Garage (https://garagehq.deuxfleurs.fr), the S3 server the integration tests start
# (tests/src/garage.rs). `tests/garage.sh path` prints the path of the binary, building it
# first when it is missing (cargo install, about 20 minutes on a 2-core machine). The binary
# is cached outside the clone, in $BACKSTOP_TOOLS_DIR (default /var/tmp/backstop-tools).
set -euo pipefail

VERSION=2.5.0
TOOLS="${BACKSTOP_TOOLS_DIR:-/var/tmp/backstop-tools}"
ROOT="$TOOLS/garage-$VERSION"
BIN="$ROOT/bin/garage"

# A cached binary counts only if it runs and reports the expected version.
works() { [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -qF "$VERSION"; }

build() {
  local start=$SECONDS
  echo "building Garage $VERSION into $ROOT (about 20 min)" >&2
  rm -rf "$ROOT" # a stale or broken install: cargo install would skip it otherwise
  # A quick release profile (opt-level 1, no LTO, no debug info): fast enough for tests,
  # much shorter to build. SQLite is the only metadata engine, bundled (no system libs).
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_INCREMENTAL=false CARGO_TARGET_DIR="$TOOLS/garage-build" \
    cargo install garage --version "$VERSION" --locked --no-default-features \
    --features bundled-libs,sqlite --root "$ROOT" >&2
  rm -rf "$TOOLS/garage-build" # about 2 GB of build products, not needed any more
  echo "garage build took $((SECONDS - start)) s" >&2
}

case "${1:-}" in
  path)
    if ! works; then
      mkdir -p "$TOOLS"
      # One build at a time (two CI runs, or a run and a developer); re-check after the wait.
      exec 9>"$TOOLS/garage-$VERSION.lock"
      flock 9
      works || build
      works || { echo "the Garage build did not produce a working $BIN" >&2; exit 1; }
    fi
    echo "$BIN"
    ;;
  *)
    echo "usage: $0 path   (prints the Garage $VERSION binary, building it when missing)" >&2
    exit 2
    ;;
esac
