#!/usr/bin/env bash
# Benchmark (not a test): a SIZE file (default 1 GiB) copied into the mount and read back out
# (cp in, cat to /dev/null, cp out), beside curl PUT / GET of the same bytes to the same
# endpoint, through 1 server and through 3 servers behind HAProxy (round-robin), with blocks
# in files and with blocks in S3 (OpenStack Swift's s3api from ../shared/swift, objects in
# tmpfs: a correctness peer, 100-250 MB/s here, not a speed ceiling), metadata in SQLite and,
# with blocks in S3, in PostgreSQL (BENCH_PG=postgres://…, else a throwaway cluster of
# Debian's PostgreSQL started here). Medians of RUNS (3).
#   scripts/bench-servers.sh [SIZE_MiB]        # IMGFS_BIN: another build to measure
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
ROOT=$PWD
SIZE_MIB=${1:-1024}
RUNS=${RUNS:-3}
WORK=${BENCH_DIR:-$PWD/target/bench-servers}
for pkg in fuse3 haproxy curl postgresql; do
  dpkg -s "$pkg" >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null; }
done
cargo build --release --quiet
BIN=${IMGFS_BIN:-$PWD/target/release/imgfs}
mountpoint -q "$WORK/mnt" 2>/dev/null && fusermount3 -u "$WORK/mnt"
rm -rf "$WORK"; mkdir -p "$WORK/mnt"

# The S3 endpoint: Swift with s3api, started here unless AWS_ENDPOINT_URL is set (and then
# stopped at the end, its objects in tmpfs removed).
SWIFT_HERE=""
if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  SWIFT_HERE=1
  export SWIFT_SAIO_S3API=1 SWIFT_SAIO_PROXY_PORT=${SWIFT_SAIO_PROXY_PORT:-18080}
  export SWIFT_SAIO_OBJECT_PORT=${SWIFT_SAIO_OBJECT_PORT:-18200} SWIFT_SAIO_CONTAINER_PORT=${SWIFT_SAIO_CONTAINER_PORT:-18201}
  export SWIFT_SAIO_ACCOUNT_PORT=${SWIFT_SAIO_ACCOUNT_PORT:-18202} SWIFT_SAIO_MEMCACHE_PORT=${SWIFT_SAIO_MEMCACHE_PORT:-18211}
  "$ROOT/../shared/swift/swift-saio.sh" "$ROOT/target/test-tools/swift-saio" >"$WORK/swift.out" 2>&1 \
    || { tail -20 "$WORK/swift.out"; exit 1; }
  export AWS_ENDPOINT_URL=http://127.0.0.1:$SWIFT_SAIO_PROXY_PORT AWS_ACCESS_KEY_ID=test:tester
  export AWS_SECRET_ACCESS_KEY=testing AWS_ALLOW_HTTP=true
  auth=$(curl -fsS -D - -o /dev/null -H 'X-Auth-User: test:tester' -H 'X-Auth-Key: testing' \
    "$AWS_ENDPOINT_URL/auth/v1.0" | tr -d '\r')
  token=$(awk -F': ' 'tolower($1) == "x-auth-token" { print $2 }' <<<"$auth")
  storage=$(awk -F': ' 'tolower($1) == "x-storage-url" { print $2 }' <<<"$auth")
  BUCKET="imgfs-bench-$(date +%s)"
  curl -fsS -X PUT -H "X-Auth-Token: $token" "$storage/$BUCKET" >/dev/null
else
  BUCKET=${BENCH_BUCKET:?set BENCH_BUCKET to an existing bucket of AWS_ENDPOINT_URL}
fi

PIDS=()
cleanup() {
  mountpoint -q "$WORK/mnt" 2>/dev/null && fusermount3 -u "$WORK/mnt"
  [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null || true
  if [ -n "$SWIFT_HERE" ]; then
    SWIFT_SAIO_PURGE=1 "$ROOT/../shared/swift/swift-saio-stop.sh" "$ROOT/target/test-tools/swift-saio" >/dev/null 2>&1 || true
  fi
  throwaway_pg_stop
}
trap cleanup EXIT

# The metadata database of the PostgreSQL configurations (a schema each).
[ -z "${BENCH_PG:-}" ] && throwaway_pg_start "${BENCH_PG_PORT:-18532}" "$WORK/pg.out"

FILE="$WORK/file.bin"
BYTES=$((SIZE_MIB << 20))
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
mbs() { echo "scale=0; $BYTES / 1048576 / $1" | bc -l; }
command -v bc >/dev/null || { apt-get update -qq; apt-get install -y -qq bc >/dev/null; }

# setup NAME N BLOCKS META: N servers over one storage (+ HAProxy when N > 1); sets ADDR.
setup() {
  local name=$1 n=$2 blocks=$3 meta=$4 data="$WORK/$1/data"
  mkdir -p "$WORK/$name"
  local store=(--meta "sqlite:$data")
  [ "$meta" = pg ] && store=(--meta "$BENCH_PG?options=-c%20search_path%3Dbench_${name//-/_}")
  [ "$blocks" = s3 ] && store+=(--blocks "s3://$BUCKET/$name")
  local ports=()
  for i in $(seq "$n"); do
    # (what a run deletes is collected 30 s later: S3's objects are in memory here)
    setsid "$BIN" serve --listen 127.0.0.1:0 "${store[@]}" --gc-grace 30 --gc-interval 10 >"$WORK/$name/out$i" 2>>"$WORK/$name/server.log" &
    PIDS+=($!)
    for _ in $(seq 100); do grep -q "listening on" "$WORK/$name/out$i" && break; sleep 0.05; done
    ports+=("$(sed -n 's/^listening on //p' "$WORK/$name/out$i")")
  done
  if [ "$n" -gt 1 ]; then
    haproxy_front "$WORK/$name" "${ports[@]}"
  else
    ADDR=${ports[0]}
  fi
  USERJSON=$("$BIN" user add bench "${store[@]}" 2>/dev/null)
  TOKEN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$USERJSON")
  UUID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["uuid"])' "$USERJSON")
  echo "$TOKEN" >"$WORK/$name/token"; chmod 600 "$WORK/$name/token"
  curl -fsS -X PUT -H "X-Auth-Token: $TOKEN" -H "X-Container-Policy-Versioning: none" \
    "http://$ADDR/object-store/v1/$UUID/bench" >/dev/null
}

printf '%-22s %9s %9s %9s %9s %9s   (MB/s, median of %s, %s MiB)\n' config "cp in" "curl PUT" cat "curl GET" "cp out" "$RUNS" "$SIZE_MIB"
for cfg in "1 server, files:1:files:sqlite" "3 servers, files:3:files:sqlite" "1 server, S3:1:s3:sqlite" \
  "3 servers, S3:3:s3:sqlite" "1 server, PG + S3:1:s3:pg" "3 servers, PG + S3:3:s3:pg"; do
  IFS=: read -r label n blocks meta <<<"$cfg"
  name=$(tr '[:upper:]' '[:lower:]' <<<"$label" | tr -cs 'a-z0-9' '-' | sed 's/-*$//')
  setup "$name" "$n" "$blocks" "$meta"
  URL="http://$ADDR/object-store/v1/$UUID/bench"
  "$BIN" mount "http://$ADDR/identity/v2.0" "$WORK/mnt" -o "token_file=$WORK/$name/token,log_file=$WORK/$name/mount.log"
  declare -a cpin=() put=() cat=() get=() cpout=()
  for r in $(seq "$RUNS"); do
    head -c "$BYTES" /dev/urandom >"$FILE"
    cpin+=("$(secs cp "$FILE" "$WORK/mnt/bench/f$r")")
    head -c "$BYTES" /dev/urandom >"$FILE"
    put+=("$(secs curl -fsS -o /dev/null -X PUT -H "X-Auth-Token: $TOKEN" -T "$FILE" "$URL/c$r")")
    sync; echo 3 >/proc/sys/vm/drop_caches
    cat+=("$(secs cat "$WORK/mnt/bench/f$r")")
    get+=("$(secs curl -fsS -o /dev/null -H "X-Auth-Token: $TOKEN" "$URL/c$r")")
    echo 3 >/proc/sys/vm/drop_caches
    cpout+=("$(secs cp "$WORK/mnt/bench/f$r" "$WORK/out.bin")")
    rm -f "$WORK/out.bin" "$WORK/mnt/bench/f$r"
    curl -fsS -o /dev/null -X DELETE -H "X-Auth-Token: $TOKEN" "$URL/c$r"
  done
  fusermount3 -u "$WORK/mnt"
  printf '%-22s %9s %9s %9s %9s %9s\n' "$label" \
    "$(mbs "$(printf '%s\n' "${cpin[@]}" | median)")" "$(mbs "$(printf '%s\n' "${put[@]}" | median)")" \
    "$(mbs "$(printf '%s\n' "${cat[@]}" | median)")" "$(mbs "$(printf '%s\n' "${get[@]}" | median)")" \
    "$(mbs "$(printf '%s\n' "${cpout[@]}" | median)")"
  kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; PIDS=()
done
