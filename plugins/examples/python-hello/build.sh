#!/usr/bin/env bash
# Builds the Python example into <out>/python-hello/{plugin.toml,plugin.wasm}.
# Needs componentize-py (pip install componentize-py==0.25.1); skipped with a note if absent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../../target/backstop-plugins}"
cpy="${COMPONENTIZE_PY:-componentize-py}"
if ! command -v "$cpy" >/dev/null 2>&1; then
    echo "python-hello: componentize-py not installed; skipped (pip install componentize-py==0.25.1)" >&2
    exit 0
fi
mkdir -p "$out/python-hello"
cd "$here"
"$cpy" -d ../../wit -w hook-plugin componentize app -o "$out/python-hello/plugin.wasm"
cp plugin.toml "$out/python-hello/plugin.toml"
