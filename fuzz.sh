#!/usr/bin/env bash
# The long fuzz run: every property of every fuzz target with PROPTEST_CASES inputs
# (default 1,000,000), in release, at low priority, one target after the other. CI runs the
# same targets with a bounded number of cases as part of `cargo test`.
#
#   ./fuzz.sh                      # all targets, 1M cases per property
#   PROPTEST_CASES=200000 ./fuzz.sh fuzz_archive
#
# Builds in its own target dir (FUZZ_TARGET_DIR, default /var/tmp/fuzz-target) with the
# whole package set, so feature resolution matches the normal build. Prints wall time per
# target; a failing case is shrunk and saved in the target's .proptest-regressions file.
set -euo pipefail
cd "$(dirname "$0")"
export PROPTEST_CASES="${PROPTEST_CASES:-1000000}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/fuzz-target}"
packages=(-p server -p engine -p plugin-host -p wire -p tests -p app --features app/ssr)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_manifest fuzz_plugin_manifest fuzz_dbjson fuzz_archive)
nice -n 10 cargo test --release "${packages[@]}" "${targets[@]/#/--test=}" --no-run
for t in "${targets[@]}"; do
    start=$(date +%s)
    echo "== $t: $PROPTEST_CASES cases per property"
    nice -n 10 cargo test --release "${packages[@]}" --test "$t" -- --test-threads=1
    echo "== $t: done in $(( $(date +%s) - start )) s"
done
