#!/usr/bin/env bash
# Backup benchmark: Backstop's backup (dump + archive) against GNU tar, gzip, pigz and sqlite3,
# and the same backup with encryption against without, in the same process: encrypted in the
# same pass (`encrypt_local`), and a plain archive encrypted afterwards (for the copies).
#
# Run from the repository root:
#     bash server/engine/bench/run.sh
# Quick run (small data set, about a minute):
#     BENCH_ROWS=100000 BENCH_LOGOS=500 BENCH_MEDIA_MIB=256 bash server/engine/bench/run.sh
#
# Environment:
#   BENCH_ROWS       content DB rows across three tables      (default 1000000)
#   BENCH_LOGOS      small SVG logo files                      (default 3000)
#   BENCH_MEDIA_MIB  incompressible recordings, MiB total     (default 2048)
#   BENCH_DIR        scratch folder (default: a new temp dir under /var/tmp, removed at the end)
#   BENCH_KEEP=1     keep the scratch folder
#   CARGO_TARGET_DIR where cargo builds the example (default: cargo's default)
#   BENCH_BIN        use this bench_backup binary instead of building one
#   BENCH_ROUNDS     alternating plain / encrypted archive rounds, best of each (default 3)
#   BENCH_CANCEL_AT  cancel points after the full backup (default dump,10,50,90: halfway
#                    through the dump, then at 10/50/90% of the archive bytes)
#
# Method: the data set is built once and read once (page cache warm) before timing; every
# timed command starts after `sync` so writeback of the previous one does not bleed into it.
# Backstop fsyncs its archive before reporting success (a listed archive is always complete),
# which the plain tools do not do, so each tool is timed twice: alone, and followed by
# `sync FILE` (same durability). Ratios are printed against both. Peak RSS is getrusage's
# ru_maxrss of the Backstop process. Cancel latency: after its full backup the same process
# cancels backups of the same data set at each BENCH_CANCEL_AT point through their
# CancellationToken, from another thread, and times cancel() until the call returns; each must
# report "canceled" and leave no .partial, archive or dump behind (DESIGN: under a second).
set -euo pipefail

ROWS=${BENCH_ROWS:-1000000}
LOGOS=${BENCH_LOGOS:-3000}
MEDIA_MIB=${BENCH_MEDIA_MIB:-2048}
CANCEL_AT=${BENCH_CANCEL_AT:-dump,10,50,90}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)

for tool in tar gzip sqlite3 python3 sha256sum; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
if ! command -v pigz >/dev/null; then
    echo "installing pigz" >&2
    apt-get install -y pigz >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y pigz >/dev/null; }
fi

if [ -n "${BENCH_BIN:-}" ]; then
    BIN=$BENCH_BIN
else
    echo "== building bench_backup (release)" >&2
    (cd "$ROOT" && cargo build --release -p engine --example bench_backup >&2)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_backup
fi

DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/backstop-bench.XXXXXX)}
cleanup() { [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$DIR"; }
trap cleanup EXIT
mkdir -p "$DIR/set/logos" "$DIR/set/recordings" "$DIR/out"
cd "$DIR/set"

echo "== building data set in $DIR: $ROWS rows, $LOGOS logos, $MEDIA_MIB MiB media" >&2
python3 - "$ROWS" "$LOGOS" <<'PY'
import os, random, sqlite3, sys
rows, logos = int(sys.argv[1]), int(sys.argv[2])
random.seed(7)
db = sqlite3.connect("content.db")
db.executescript("""
PRAGMA journal_mode=WAL;
CREATE TABLE channel_groups(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE channels(id INTEGER PRIMARY KEY, group_id INTEGER REFERENCES channel_groups(id),
  name TEXT NOT NULL, number REAL, logo BLOB, tvg_id TEXT, created_at DATETIME);
CREATE TABLE streams(id INTEGER PRIMARY KEY, channel_id INTEGER REFERENCES channels(id),
  url TEXT NOT NULL, priority INTEGER, enabled BOOLEAN, headers TEXT);
""")
groups = max(1, rows // 1000)
channels = max(1, rows * 3 // 10)
streams = max(0, rows - groups - channels)
db.executemany("INSERT INTO channel_groups VALUES (?, ?)", ((i, f"Group {i}") for i in range(groups)))
db.executemany("INSERT INTO channels VALUES (?, ?, ?, ?, ?, ?, ?)", (
    (i, i % groups, f"Channel {i} \u00e9\"HD\"", i * 1.5, os.urandom(24) if i % 10 == 0 else None,
     f"ch{i}.example", f"2025-01-{1 + i % 28:02d} 12:00:00") for i in range(channels)))
db.executemany("INSERT INTO streams VALUES (?, ?, ?, ?, ?, ?)", (
    (i, i % channels, f"http://cdn{i % 7}.example.net/live/{i}.m3u8?token={i * 7919 % 100003}",
     i % 5, i % 2, None if i % 3 else '{"User-Agent":"VLC"}') for i in range(streams)))
db.commit()
colors = ["#e53935", "#43a047", "#1e88e5", "#212121", "#fdd835"]
for i in range(logos):
    w = random.randint(50, 400)
    shapes = "".join(
        f'<rect x="{random.randint(0, w)}" y="{random.randint(0, 100)}" width="{random.randint(1, 50)}" '
        f'height="{random.randint(1, 50)}" fill="{random.choice(colors)}"/>\n' for _ in range(random.randint(5, 80)))
    with open(f"logos/logo_{i:05d}.svg", "w") as f:
        f.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
                f'width="{w}" height="100"><title>Channel {i}</title>\n{shapes}</svg>\n')
PY
left=$MEDIA_MIB; n=0
while [ "$left" -gt 0 ]; do
    size=$(( left < 256 ? left : 256 )); n=$((n + 1))
    head -c "${size}M" /dev/urandom > "recordings/rec_$(printf %03d $n).ts"
    left=$((left - size))
done
cat content.db logos/* recordings/* > /dev/null   # warm the page cache for every contender
sync

OUT=$DIR/out
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.3f}')"; }
# time_cmd NAME FILE CMD...: runs CMD after a sync, prints seconds alone and with `sync FILE`.
time_cmd() {
    local name=$1 file=$2; shift 2
    rm -f "$file"; sync; sleep 1
    local t0 t1 t2; t0=$(now); "$@"; t1=$(now); sync "$file"; t2=$(now)
    eval "${name}_secs=$(elapsed "$t0" "$t1")"
    eval "${name}_synced=$(elapsed "$t0" "$t2")"
    eval "${name}_bytes=$(stat -c %s "$file")"
    rm -f "$file"
}

echo "== timing (each after sync)" >&2
rm -f "$OUT"/*; sync; sleep 1
line=$(BENCH_ENCRYPT=1 "$BIN" --cancel-at "$CANCEL_AT" content.db "$OUT" logos=logos recordings=recordings)
echo "backstop: $line" >&2
eval "$(echo "$line" | tr ' ' '\n' | grep -E '^(dump_secs|archive_secs|total_secs|archive_bytes|peak_rss_kib|cancel_secs|cancel_max_s|encrypt_secs|peak_rss_after_encrypt_kib|local_enc_archive_secs|plain_archive_best_secs|with_copy_archive_secs)=' | sed 's/^/bs_/')"
archive=$(ls "$OUT"/backstop-*.tar.gz)
[ "$(ls -A "$OUT")" = "$(basename "$archive")" ] \
    || { echo "canceled backups left files in $OUT: $(ls -A "$OUT")" >&2; exit 1; }
(mkdir -p "$OUT/x" && cd "$OUT/x" && tar xzf "$archive" && sha256sum -c --quiet checksums.sha256) \
    && echo "backstop archive: GNU tar extracts it, sha256sum -c passes" >&2
rm -rf "$OUT"/*

time_cmd tarcz "$OUT/a.tar.gz" tar czf "$OUT/a.tar.gz" content.db logos recordings
time_cmd pigz "$OUT/a.tar.gz" tar -I pigz -cf "$OUT/a.tar.gz" content.db logos recordings
time_cmd tarc "$OUT/a.tar" tar cf "$OUT/a.tar" content.db logos recordings

# Incompressible media alone: Backstop vs tar cf.
rm -f "$OUT"/*; sync; sleep 1
sqlite3 "$DIR/empty.db" "CREATE TABLE t(id INTEGER PRIMARY KEY);"
mline=$("$BIN" "$DIR/empty.db" "$OUT" recordings=recordings)
eval "$(echo "$mline" | tr ' ' '\n' | grep -E '^total_secs=' | sed 's/^/media_/')"
rm -f "$OUT"/*
time_cmd mediatar "$OUT/m.tar" tar cf "$OUT/m.tar" recordings

# Dump alone vs sqlite3 .dump.
rm -f "$OUT"/*; sync; sleep 1
dline=$("$BIN" --dump-only content.db "$OUT/database.json")
eval "$(echo "$dline" | tr ' ' '\n' | grep -E '^dump_secs=' | sed 's/^/only_/')"
time_cmd sqldump "$OUT/dump.sql" sh -c "sqlite3 content.db .dump > '$OUT/dump.sql'"

# Compressed size of the compressible content (database.json + logos): Backstop vs gzip -6.
rm -f "$OUT"/backstop-*; sync
cline=$("$BIN" content.db "$OUT" logos=logos)
eval "$(echo "$cline" | tr ' ' '\n' | grep -E '^archive_bytes=' | sed 's/^/compr_/')"
"$BIN" --dump-only content.db "$DIR/database.json" >/dev/null
gz6_bytes=$(cd "$DIR" && tar cf - database.json -C set logos | gzip -6 | wc -c)

cat <<EOF

Backstop backup benchmark  ($(nproc) cores; $ROWS rows, $LOGOS logos, $MEDIA_MIB MiB media)
--------------------------------------------------------------------------------------------
backstop backup (dump + archive + fsync)  ${bs_total_secs}s  (dump ${bs_dump_secs}s, archive ${bs_archive_secs}s)  ${bs_archive_bytes} bytes
tar czf                                   ${tarcz_secs}s  (+sync ${tarcz_synced}s)  ${tarcz_bytes} bytes
tar -I pigz                               ${pigz_secs}s  (+sync ${pigz_synced}s)  ${pigz_bytes} bytes
tar cf                                    ${tarc_secs}s  (+sync ${tarc_synced}s)  ${tarc_bytes} bytes

ratio backstop / tar czf                  $(ratio "$bs_total_secs" "$tarcz_secs")   (vs +sync $(ratio "$bs_total_secs" "$tarcz_synced"))   target <= 0.25
ratio backstop / tar -I pigz              $(ratio "$bs_total_secs" "$pigz_secs")   (vs +sync $(ratio "$bs_total_secs" "$pigz_synced"))   target <= 0.8
media only: backstop ${media_total_secs}s, tar cf ${mediatar_secs}s (+sync ${mediatar_synced}s)
ratio media backstop / tar cf             $(ratio "$media_total_secs" "$mediatar_secs")   (vs +sync $(ratio "$media_total_secs" "$mediatar_synced"))   target <= 1.5
dump only ${only_dump_secs}s, sqlite3 .dump ${sqldump_secs}s
ratio dump / sqlite3 .dump                $(ratio "$only_dump_secs" "$sqldump_secs")   target <= 1.0
compressible content: backstop ${compr_archive_bytes} bytes, tar | gzip -6 ${gz6_bytes} bytes
ratio size backstop / gzip -6             $(ratio "$compr_archive_bytes" "$gz6_bytes")   target <= 1.05
backstop peak RSS                         $((bs_peak_rss_kib / 1024)) MiB   target <= 64
$(printf '%-41s' "cancel latency (at $CANCEL_AT)") ${bs_cancel_secs//,/ } s, each canceled, nothing left behind
encrypted backup (encrypt_local: dump + tar -> gzip -> age in one pass)  $(python3 -c "print(f'{$bs_dump_secs + $bs_local_enc_archive_secs:.3f}')")s  (archive ${bs_local_enc_archive_secs}s; plain archive ${bs_plain_archive_best_secs}s; best of ${BENCH_ROUNDS:-3} alternating rounds each)
ratio with / without encryption           $(ratio "$(python3 -c "print($bs_dump_secs + $bs_local_enc_archive_secs)")" "$(python3 -c "print($bs_dump_secs + $bs_plain_archive_best_secs)")")   target <= 1.15
plain backup + encrypted form for the copies, one pass  $(python3 -c "print(f'{$bs_dump_secs + $bs_with_copy_archive_secs:.3f}')")s, ratio $(ratio "$(python3 -c "print($bs_dump_secs + $bs_with_copy_archive_secs)")" "$(python3 -c "print($bs_dump_secs + $bs_plain_archive_best_secs)")")
plain backup, then encrypted afterwards (a retry)  $(python3 -c "print(f'{$bs_total_secs + $bs_encrypt_secs:.3f}')")s  (encrypt ${bs_encrypt_secs}s), ratio $(ratio "$(python3 -c "print($bs_total_secs + $bs_encrypt_secs)")" "$bs_total_secs")
peak RSS with encryption                  $((bs_peak_rss_after_encrypt_kib / 1024)) MiB   target <= 64
cancel max ${bs_cancel_max_s} s = $(python3 -c "print(f'{100 * $bs_cancel_max_s / $bs_total_secs:.1f}')")% of a full backup (${bs_total_secs}s)   target < 1 s
EOF
