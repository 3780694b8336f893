#!/usr/bin/env bash
# Benchmark of the mount against the original Synnefo 0.20 (not a test), started from
# ../shared/synnefo as scripts/test.sh starts it. A SIZE file (default 256 MiB) copied into
# the mount beside `kamaki file upload` and curl -T to the same server, and read out (cat to
# /dev/null beside curl; cp to the local disk beside `kamaki file download` and curl -o), with
# the CPU seconds the mount and the server spent on each copy: the original is Python over
# SQLite and slower than imgfs serve; the point is to see that the mount is not what limits
# it. Medians of RUNS (default 3); every run uploads new content.
#   scripts/bench-synnefo.sh [SIZE_MiB]        (also: scripts/bench.sh --synnefo [SIZE_MiB])
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MIB=${1:-256}
RUNS=${RUNS:-3}
WORK=${BENCH_DIR:-$ROOT/target/bench-synnefo}
SNF_SRC=${IMGFS_SYNNEFO_SRC:-$ROOT/../shared/synnefo}
SNF_DIR=${SNF_DIR:-$ROOT/target/test-tools/synnefo}
[ -x "$SNF_SRC/synnefo-real.sh" ] || { echo "no $SNF_SRC/synnefo-real.sh: the original Synnefo comes from ../shared/synnefo" >&2; exit 1; }
command -v fusermount3 >/dev/null || { apt-get update -qq && apt-get install -y -qq fuse3 >/dev/null; }
mountpoint -q "$WORK/mnt" 2>/dev/null && fusermount3 -u "$WORK/mnt"
rm -rf "$WORK"; mkdir -p "$WORK/mnt"
cargo build --release --quiet
BIN=$ROOT/target/release/imgfs

export SYNNEFO_REAL_ASTAKOS_PORT=${SYNNEFO_REAL_ASTAKOS_PORT:-18011}
export SYNNEFO_REAL_PITHOS_PORT=${SYNNEFO_REAL_PITHOS_PORT:-18012}
started=0
[ -f "$SNF_DIR/run/pithos.pid" ] && kill -0 "$(cat "$SNF_DIR/run/pithos.pid")" 2>/dev/null || started=1
"$SNF_SRC/synnefo-real.sh" "$SNF_DIR" >"$WORK/synnefo.out" 2>&1 || { tail -20 "$WORK/synnefo.out" >&2; exit 1; }
cleanup() {
  mountpoint -q "$WORK/mnt" && fusermount3 -u "$WORK/mnt"
  [ $started = 1 ] && "$SNF_SRC/synnefo-real-stop.sh" "$SNF_DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
. "$SNF_DIR/env.sh"
KAMAKI=$SNF_DIR/bin/kamaki           # kamaki 0.16, configured for that user by synnefo-real.sh
[ -x "$KAMAKI" ] || { echo "no kamaki in $SNF_DIR/bin (run synnefo-real.sh with SYNNEFO_REAL_KAMAKI=1)" >&2; exit 1; }
URL="$SNF_PITHOS_URL/$SNF_UUID/pithos"
curl -s -o /dev/null -X PUT -H "X-Auth-Token: $SNF_TOKEN" -H "Content-Length: 0" "$URL"
echo "$SNF_TOKEN" >"$WORK/token"; chmod 600 "$WORK/token"
MNT="$WORK/mnt"
"$BIN" mount "$SNF_IDENTITY_URL" "$MNT" -o "token_file=$WORK/token,log_file=$WORK/mount.log" \
  || { echo "mount failed" >&2; cat "$WORK/mount.log" >&2; exit 1; }
MPID=$(pgrep -f -n "^$BIN mount $SNF_IDENTITY_URL $MNT ")
SPID=$(cat "$SNF_DIR/run/pithos.pid")

FILE="$WORK/file.bin"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$FILE"
BYTES=$((SIZE_MIB << 20))
vary() { python3 - "$FILE" "$1" <<'PY'
import sys, os
f, n = sys.argv[1], int(sys.argv[2])
with open(f, "r+b") as fh:
    for off in range(0, os.path.getsize(f), 4 << 20):
        fh.seek(off); fh.write(("snf%013d%06d" % (n, os.getpid())).encode())
PY
}
# CPU seconds (user + system) of a process, and of the Pithos gunicorn with its workers.
cpu_of() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
server_cpu() {
  local total=0 p
  for p in "$SPID" $(pgrep -P "$SPID"); do total=$(python3 -c "print($total + $(cpu_of "$p"))"); done
  echo "$total"
}
median() { python3 -c 'import sys,statistics; print("%.3f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
mbps() { python3 -c "print('%.0f' % ($BYTES / 1e6 / $1))"; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
declare -A T
add() { T[$1]="${T[$1]:-} $2"; }
# Times a command; records its wall time under NAME and the CPU the mount and the server spent.
timed() { # NAME CMD...
  local name=$1; shift
  local m0 s0 t0 t1
  m0=$(cpu_of "$MPID"); s0=$(server_cpu); t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s.%N)
  add "$name" "$(python3 -c "print('%.3f' % ($t1 - $t0))")"
  add "${name}_mount_cpu" "$(python3 -c "print('%.2f' % ($(cpu_of "$MPID") - $m0))")"
  add "${name}_server_cpu" "$(python3 -c "print('%.2f' % ($(server_cpu) - $s0))")"
}

for run in $(seq "$RUNS"); do
  vary "$run"; drop; cat "$FILE" >/dev/null
  timed curl_put curl -sf -T "$FILE" -H "X-Auth-Token: $SNF_TOKEN" -H "Content-Type: application/octet-stream" "$URL/curl$run"
  vary "$((run + 100))"; drop; cat "$FILE" >/dev/null
  timed kamaki_up "$KAMAKI" file upload "$FILE" "/pithos/kamaki$run"
  vary "$((run + 200))"; drop; cat "$FILE" >/dev/null
  timed cp_in cp "$FILE" "$MNT/pithos/img$run"
  cmp -s "$FILE" <(curl -sf -H "X-Auth-Token: $SNF_TOKEN" "$URL/img$run") || { echo "the server holds other bytes than were copied in" >&2; exit 1; }
  drop
  timed curl_get curl -sf -o /dev/null -H "X-Auth-Token: $SNF_TOKEN" "$URL/img$run"
  drop
  timed cat_out cat "$MNT/pithos/img$run"
  drop
  timed curl_file curl -sf -o "$WORK/curl.out" -H "X-Auth-Token: $SNF_TOKEN" "$URL/img$run"
  rm -f "$WORK/curl.out"; drop
  timed kamaki_down "$KAMAKI" file download "/pithos/img$run" "$WORK/kamaki.out"
  rm -f "$WORK/kamaki.out"; drop
  timed cp_out cp "$MNT/pithos/img$run" "$WORK/out.bin"
  cmp -s "$FILE" "$WORK/out.bin" || { echo "cp out of the mount returned different bytes" >&2; exit 1; }
  rm -f "$WORK/out.bin"
done

printf "\nSynnefo 0.20 (original), %s MiB, medians of %s runs\n" "$SIZE_MIB" "$RUNS"
printf "%-34s %8s %8s %11s %12s\n" "what" "s" "MB/s" "mount CPU s" "server CPU s"
for k in curl_put kamaki_up cp_in curl_get cat_out curl_file kamaki_down cp_out; do
  m=$(median ${T[$k]})
  mc=$(median ${T[${k}_mount_cpu]}); sc=$(median ${T[${k}_server_cpu]})
  case $k in cp_in|cat_out|cp_out) ;; *) mc=-;; esac
  printf "%-34s %8s %8s %11s %12s\n" "$k" "$m" "$(mbps "$m")" "$mc" "$sc"
done
echo "every run (s):"
for k in curl_put kamaki_up cp_in curl_get cat_out kamaki_down cp_out; do printf "  %-12s%s\n" "$k" "${T[$k]}"; done
python3 - "$(median ${T[cp_in]})" "$(median ${T[curl_put]})" "$(median ${T[kamaki_up]})" \
  "$(median ${T[cat_out]})" "$(median ${T[curl_get]})" "$(median ${T[cp_out]})" \
  "$(median ${T[kamaki_down]})" "$(median ${T[curl_file]})" <<'PY'
import sys
cp_in, curl_put, kamaki_up, cat_out, curl_get, cp_out, kamaki_down, curl_file = map(float, sys.argv[1:])
print("cp in / curl PUT          %.2f" % (curl_put / cp_in))
print("cp in / kamaki upload     %.2f" % (kamaki_up / cp_in))
print("cat / curl GET            %.2f  (both to /dev/null)" % (curl_get / cat_out))
print("cp out / curl -o file     %.2f  (both write the local disk)" % (curl_file / cp_out))
print("cp out / kamaki download  %.2f" % (kamaki_down / cp_out))
PY
