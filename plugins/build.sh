#!/usr/bin/env bash
# Builds every plugin in this workspace for wasm32-wasip2 and lays them out the way the
# host discovers them:  <out>/<plugin-id>/{plugin.toml, plugin.wasm}
#
#   plugins/build.sh [OUT_DIR]        (default: plugins/target/backstop-plugins)
#
# Environment: CARGO_TARGET_DIR (default plugins/target), NICE (default 10).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/target/backstop-plugins}"
target_dir="${CARGO_TARGET_DIR:-$here/target}"
cd "$here"
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
CARGO_TARGET_DIR="$target_dir" nice -n "${NICE:-10}" cargo build --target wasm32-wasip2 --release --quiet
mkdir -p "$out"
# Every crate with a plugin.toml is a plugin; its id is read from the manifest.
for manifest in */plugin.toml fixtures/*/plugin.toml; do
    dir="$(dirname "$manifest")"
    crate="$(sed -n 's/^name = "\(.*\)"/\1/p' "$dir/Cargo.toml" | head -n1)"
    id="$(sed -n 's/^id = "\(.*\)"/\1/p' "$manifest" | head -n1)"
    wasm="$target_dir/wasm32-wasip2/release/${crate//-/_}.wasm"
    [ -f "$wasm" ] || { echo "build.sh: $wasm is missing" >&2; exit 1; }
    mkdir -p "$out/$id"
    cp "$manifest" "$out/$id/plugin.toml"
    cp "$wasm" "$out/$id/plugin.wasm"
done
echo "$out"
