#!/usr/bin/env bash
# Builds everything Backstop needs, installing missing tools first:
#   the browser bundle (Leptos hydrate -> wasm32-unknown-unknown -> wasm-bindgen),
#   the CSS, the `backstop` server binary, and the WebAssembly plugins (wasm32-wasip2).
# Used by ./run.sh and ./test.sh; safe to run again (everything is incremental).
#
# CARGO_TARGET_DIR defaults to /var/tmp/backstop-target so repeated runs (and CI runs from
# fresh clones on the same machine) reuse earlier builds.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/backstop-target}"
SITE="${BACKSTOP_SITE_DIR:-$CARGO_TARGET_DIR/site}"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# 1. Rust targets.
for t in wasm32-unknown-unknown wasm32-wasip2; do
  if ! rustup target list --installed | grep -qx "$t"; then
    say "installing rust target $t"
    rustup target add "$t"
  fi
done

# 2. wasm-bindgen CLI at exactly the version in Cargo.lock (the CLI must equal the library).
WB_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB_VERSION" ]; then
  say "installing wasm-bindgen-cli $WB_VERSION (a few minutes, once)"
  # --force: cargo's own record may say it is installed while the binary is gone or another
  # version (we only get here when the binary on PATH does not answer with $WB_VERSION).
  cargo install wasm-bindgen-cli --version "$WB_VERSION" --locked --force \
    || cargo install wasm-bindgen-cli --version "$WB_VERSION" --force
fi

# 3. Browser bundle.
say "building the browser bundle"
cargo build -p app --lib --target wasm32-unknown-unknown --no-default-features --features hydrate
mkdir -p "$SITE/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$SITE/pkg" --out-name backstop \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/debug/app.wasm"
cp style/main.css "$SITE/pkg/backstop.css"

# 4. Plugins first: the server binary embeds the first-party ones (server/build.rs).
if [ -x plugins/build.sh ]; then
  say "building the plugins"
  plugins/build.sh
fi
# 5. Server (and every host crate, with the same package set as ./test.sh, so features unify
#    the same way and the test build reuses this one instead of rebuilding the world).
say "building the server"
cargo build -p server -p engine -p content-pg -p plugin-host -p wire -p tests

say "build done: $CARGO_TARGET_DIR/debug/backstop, site in $SITE"
