#!/usr/bin/env bash
# Destination copy benchmark (issue 13): Backstop's copy of a 2 GiB archive to a real
# single-node Garage vs a plain multipart upload of the same file by the same client
# (object_store, same part size and parts in flight) with no Backstop logic.
#
#     bash server/engine/bench/copy.sh            (BENCH_MIB=2048 by default; 3 rounds)
#
# Backstop's copy = upload with sha256 and part MD5s + the check of what the store holds
# (size and ETag by HEAD; a full read-back only for stores whose ETags are not MD5-based)
# + the sidecar. Rounds alternate plain/backstop so drift on this shared machine hits both;
# the best of each is compared. Peak RSS is each process's VmHWM.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
MIB=${BENCH_MIB:-2048}
ROUNDS=${BENCH_ROUNDS:-3}
GARAGE=${GARAGE_BIN:-$("$ROOT/tests/garage.sh" path)}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/backstop-target}
(cd "$ROOT" && cargo build -q --release -p engine --example bench_copy)
BIN="$CARGO_TARGET_DIR/release/examples/bench_copy"

DIR=$(mktemp -d /var/tmp/bench-copy.XXXXXX)
cleanup() { [ -n "${GPID:-}" ] && kill "$GPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
S3=$(free_port); RPC=$(free_port); ADMIN=$(free_port)
KEY="GK$(openssl rand -hex 12 2>/dev/null || python3 -c 'import secrets;print(secrets.token_hex(12))')"
SECRET=$(python3 -c 'import secrets;print(secrets.token_hex(32))')
cat > "$DIR/garage.toml" <<TOML
metadata_dir = "$DIR/meta"
data_dir = "$DIR/data"
db_engine = "sqlite"
replication_factor = 1
metadata_fsync = false
data_fsync = false
disable_scrub = true
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$RPC"
rpc_public_addr = "127.0.0.1:$RPC"
rpc_secret = "$(python3 -c 'import secrets;print(secrets.token_hex(32))')"
[s3_api]
api_bind_addr = "127.0.0.1:$S3"
s3_region = "garage"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$ADMIN"
admin_token = "$(python3 -c 'import secrets;print(secrets.token_hex(32))')"
TOML
GARAGE_DEFAULT_ACCESS_KEY=$KEY GARAGE_DEFAULT_SECRET_KEY=$SECRET GARAGE_DEFAULT_BUCKET=bench \
  RUST_LOG=warn "$GARAGE" -c "$DIR/garage.toml" server --single-node --default-bucket > "$DIR/garage.log" 2>&1 &
GPID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$S3/" && break; sleep 0.1; done

echo "writing $MIB MiB of incompressible data (an archive is gzip output)" >&2
head -c "$((MIB << 20))" /dev/urandom > "$DIR/archive.tar.gz"
export BENCH_S3_ENDPOINT="http://127.0.0.1:$S3" BENCH_S3_REGION=garage BENCH_S3_BUCKET=bench \
  BENCH_S3_KEY=$KEY BENCH_S3_SECRET=$SECRET
for r in $(seq "$ROUNDS"); do
  for mode in plain backstop; do
    out=$("$BIN" "$mode" "$DIR/archive.tar.gz")
    echo "round $r $out"
    echo "$out" >> "$DIR/results.jsonl"
  done
done
python3 - "$DIR/results.jsonl" "$MIB" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
best = {m: min(r["seconds"] for r in rows if r["mode"] == m) for m in ("plain", "backstop")}
rss = {m: max(r["peak_rss_kib"] for r in rows if r["mode"] == m) / 1024 for m in ("plain", "backstop")}
mib = int(sys.argv[2])
for m in ("plain", "backstop"):
    print(f"{m:9s} best {best[m]:7.2f} s  {mib / best[m]:7.1f} MiB/s  peak RSS {rss[m]:6.1f} MiB")
print(f"throughput ratio backstop/plain = {best['plain'] / best['backstop']:.2f} (target >= 0.9); "
      f"peak RSS {rss['backstop']:.1f} MiB (target <= 64)")
PY
