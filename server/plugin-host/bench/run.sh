#!/usr/bin/env bash
# Plugin benchmarks: a backup through the first-party `recordings` WebAssembly plugin against
# the same backup through the built-in recordings source, and the hook round trip.
#
# Run from the repository root:
#     bash server/plugin-host/bench/run.sh
# Quick run (about two minutes):
#     BENCH_MEDIA_MIB=128 BENCH_ROUNDS=3 BENCH_HOOK_ITERATIONS=1000 bash server/plugin-host/bench/run.sh
#
# Environment:
#   BENCH_ROWS             content DB rows (reference schema: streams, channels, links)  (default 100000)
#   BENCH_LOGOS            small SVG logo files                                          (default 1000)
#   BENCH_MEDIA_MIB        incompressible recordings, MiB total                          (default 512)
#   BENCH_MEDIA_FILES      number of recordings files sharing that total                 (default 8)
#   BENCH_ROUNDS           timed backups of each path, ABBA order, after one warm-up each (default 7)
#   BENCH_HOOK_ITERATIONS  calls timed by bench_hooks                                    (default 3000)
#   BENCH_SKIP_HOOKS=1     skip the hook round trip
#   BENCH_DIR              scratch folder (default: a new temp dir under /var/tmp, removed at the end)
#   BENCH_KEEP=1           keep the scratch folder
#   CARGO_TARGET_DIR       where cargo builds (default /var/tmp/backstop-target, release profile)
#   BENCH_BIN              use this bench_plugin_backup binary instead of building one
#   BACKSTOP_PLUGINS_BUILD built plugins (default plugins/target/backstop-plugins; built by
#                          plugins/build.sh when recordings or fixture-echo is missing there)
#
# Method: one process opens one engine with the plugin host over one data dir and runs full
# backups (dump + collect + archive + fsync + job records, `Engine::run_backup_cli` with
# recordings included), switching the `recordings` plugin off (built-in source archives
# recordings/) and on (the plugin names recordings/ through its granted mount) between runs,
# in ABBA order so load drift on the shared machine hits both alike. Every timed backup starts
# after `sync`; every archive's data/recordings/ file list is checked against the folder (and
# between the two paths) before the archive is deleted. The figure is the ratio of medians
# (issue target: plugin / built-in <= 1.05); seconds alone mean little on a shared machine.
# Besides the job's wall time it prints the time until the archive is written (the job's last
# progress call) and the process CPU time: a job's end waits for its progress writer, which
# sleeps 200 ms between writes, so wall times come in ~200 ms steps (a 9% step at 512 MiB);
# the "written" figure has no such steps. More media or rounds make the wall ratio finer.
set -euo pipefail

ROWS=${BENCH_ROWS:-100000}
LOGOS=${BENCH_LOGOS:-1000}
MEDIA_MIB=${BENCH_MEDIA_MIB:-512}
MEDIA_FILES=${BENCH_MEDIA_FILES:-8}
ROUNDS=${BENCH_ROUNDS:-7}
HOOK_ITERATIONS=${BENCH_HOOK_ITERATIONS:-3000}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/backstop-target}

for tool in tar gzip python3 sync getconf; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

PLUGINS=${BACKSTOP_PLUGINS_BUILD:-$ROOT/plugins/target/backstop-plugins}
if [ ! -f "$PLUGINS/recordings/plugin.wasm" ] || [ ! -f "$PLUGINS/fixture-echo/plugin.wasm" ]; then
    echo "== building the plugins (plugins/build.sh)" >&2
    (unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
     CARGO_TARGET_DIR="$ROOT/plugins/target" "$ROOT/plugins/build.sh" "$PLUGINS" >&2)
fi
export BACKSTOP_PLUGINS_BUILD=$PLUGINS

if [ -n "${BENCH_BIN:-}" ]; then
    BIN=$BENCH_BIN
else
    echo "== building bench_plugin_backup (release)" >&2
    (cd "$ROOT" && nice -n 10 cargo build --release -p plugin-host --example bench_plugin_backup >&2)
    BIN=$CARGO_TARGET_DIR/release/examples/bench_plugin_backup
fi

DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/backstop-plugin-bench.XXXXXX)}
cleanup() { [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$DIR"; }
trap cleanup EXIT
DATA=$DIR/data
mkdir -p "$DATA"

echo "== building data set in $DATA: $ROWS rows, $LOGOS logos, $MEDIA_MIB MiB media in $MEDIA_FILES files" >&2
rm -rf "$DATA"/{app.db*,state.db*,logos,recordings,backups}
"$BIN" init "$DATA" >&2           # app.db (reference schema, migrated) and state.db
python3 - "$DATA" "$ROWS" "$LOGOS" <<'PY'
import os, random, sqlite3, sys
data, rows, logos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(7)
db = sqlite3.connect(os.path.join(data, "app.db"))
db.execute("PRAGMA foreign_keys=ON")
groups = max(1, rows // 1000)
streams = max(1, rows // 2)
channels = max(1, rows // 4)
links = max(0, rows - groups - streams - channels)
db.executemany("INSERT INTO channel_groups(id, name) VALUES (?, ?)", ((i, f"Group {i}") for i in range(groups)))
db.executemany("INSERT INTO logos(id, name, url, file_path) VALUES (?, ?, ?, ?)", (
    (i, f"Logo {i}", f"http://img.example.net/{i}.svg", f"logo_{i:05d}.svg") for i in range(logos)))
db.execute("INSERT INTO m3u_accounts(id, name, account_type, server_url, username, password) "
           "VALUES (1, 'Provider', 'xtream', 'http://provider.example.net', 'user', 'secret')")
db.executemany("INSERT INTO streams(id, name, url, m3u_account_id, group_title, tvg_id, stream_hash) VALUES (?, ?, ?, 1, ?, ?, ?)", (
    (i, f"Stream {i} \u00e9\"HD\"", f"http://cdn{i % 7}.example.net/live/{i}.m3u8?token={i * 7919 % 100003}",
     f"Group {i % groups}", f"ch{i}.example", f"{i * 2654435761 % (1 << 32):08x}") for i in range(streams)))
db.executemany("INSERT INTO channels(id, channel_number, name, channel_group_id, logo_id, tvg_id) VALUES (?, ?, ?, ?, ?, ?)", (
    (i, i * 1.5, f"Channel {i}", i % groups, (i % logos) if logos else None, f"ch{i}.example") for i in range(channels)))
db.executemany("INSERT INTO channel_streams(channel_id, stream_id, sort_order) VALUES (?, ?, ?)", (
    (i % channels, (i * 7) % streams, i // channels) for i in range(min(links, channels * streams))))
db.commit()
colors = ["#e53935", "#43a047", "#1e88e5", "#212121", "#fdd835"]
for i in range(logos):
    w = random.randint(50, 400)
    shapes = "".join(
        f'<rect x="{random.randint(0, w)}" y="{random.randint(0, 100)}" width="{random.randint(1, 50)}" '
        f'height="{random.randint(1, 50)}" fill="{random.choice(colors)}"/>\n' for _ in range(random.randint(5, 80)))
    with open(os.path.join(data, "logos", f"logo_{i:05d}.svg"), "w") as f:
        f.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
                f'width="{w}" height="100"><title>Channel {i}</title>\n{shapes}</svg>\n')
PY
# Incompressible media: MEDIA_FILES files (one per month folder, to include a subfolder).
per=$(( (MEDIA_MIB * 1024 + MEDIA_FILES - 1) / MEDIA_FILES )); left=$(( MEDIA_MIB * 1024 )); n=0
while [ "$left" -gt 0 ]; do
    size=$(( left < per ? left : per )); n=$((n + 1))
    mkdir -p "$DATA/recordings/2025-$(printf %02d $(( (n - 1) % 12 + 1 )))"
    head -c "${size}K" /dev/urandom > "$DATA/recordings/2025-$(printf %02d $(( (n - 1) % 12 + 1 )))/rec_$(printf %03d $n).ts"
    left=$((left - size))
done
cat "$DATA"/app.db "$DATA"/logos/* > /dev/null
find "$DATA/recordings" -type f -exec cat {} + > /dev/null   # warm the page cache for both paths
sync

echo "== backup: built-in recordings source vs recordings plugin ($ROUNDS rounds, ABBA)" >&2
"$BIN" run "$DATA" "$ROUNDS" | tee "$DIR/backup.log" >&2
result=$(sed -n 's/^result //p' "$DIR/backup.log")
eval "$(echo "$result" | tr ' ' '\n' | grep -E '^[a-z_]+=[0-9.]+$' | sed 's/^/bk_/')"

if [ "${BENCH_SKIP_HOOKS:-0}" != 1 ]; then
    echo "== hook round trip (bench_hooks $HOOK_ITERATIONS)" >&2
    hooks=$(cd "$ROOT" && nice -n 10 cargo build --release -p plugin-host --example bench_hooks >&2 \
        && cargo run --quiet --release -p plugin-host --example bench_hooks "$HOOK_ITERATIONS")
else
    hooks="(skipped)"
fi

cat <<EOF

Plugin benchmark  ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $ROWS rows, $LOGOS logos, $MEDIA_MIB MiB media in $MEDIA_FILES files, $ROUNDS rounds)
--------------------------------------------------------------------------------------------
backup, built-in recordings source   median ${bk_builtin_median_secs}s  (cpu ${bk_builtin_cpu_secs}s)
backup, recordings plugin            median ${bk_plugin_median_secs}s  (cpu ${bk_plugin_cpu_secs}s)
backup until archive written         built-in ${bk_builtin_written_secs}s, plugin ${bk_plugin_written_secs}s
ratio plugin / built-in (wall)       ${bk_ratio}   target <= 1.05
ratio plugin / built-in (written)    ${bk_written_ratio}   (wall without the job's tail, which rounds to ~200 ms)
ratio plugin / built-in (cpu)        ${bk_cpu_ratio}
plugin host start                    ${bk_host_start_ms} ms (once per process, not in the backups)
hook round trip:
$(echo "$hooks" | sed 's/^/  /')
EOF
