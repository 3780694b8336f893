#!/usr/bin/env bash
# Benchmark of the mount (not a test). Against one `imgfs serve` on loopback:
#   - a SIZE file (default 1 GiB) copied into the mount beside curl -T to the same server and
#     dd to the same local disk; read out with cat (to /dev/null, beside curl to /dev/null) and
#     with cp (to the local disk, beside curl -o to the local disk);
#   - a re-copy of the unchanged file (dedup): time and new blocks stored (should be 0), right
#     after the first copy and again after the file was read back (the kernel then drops its
#     cached pages in open(O_TRUNC) first);
#   - an edit of 3 blocks in the middle (dd conv=notrunc): new blocks stored (should be <= 3);
#   - ls -l of a directory of 10k objects;
#   - peak RSS of the mount process (its VmHWM before unmounting);
#   - 100 registrations by writing N.meta: median time from close() to N in /images/detail.
# Each timing is the median of RUNS (default 3) runs; every first copy uses new content.
#   [MOUNT_OPTS=verify_reads] scripts/bench.sh [SIZE_MiB]
#   scripts/bench.sh --synnefo [SIZE_MiB]   # the mount over the original Synnefo instead
#                                           # (scripts/bench-synnefo.sh; default 256 MiB)
set -euo pipefail
if [ "${1:-}" = --synnefo ]; then
  shift
  exec "$(dirname "$0")/bench-synnefo.sh" "$@"
fi
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${RUNS:-3}
WORK=${BENCH_DIR:-$PWD/target/bench-mount}
command -v fusermount3 >/dev/null || { apt-get update -qq && apt-get install -y -qq fuse3 >/dev/null; }
for m in "$WORK/mnt"; do mountpoint -q "$m" 2>/dev/null && fusermount3 -u "$m"; done
rm -rf "$WORK"; mkdir -p "$WORK/mnt"
cargo build --release --quiet
# IMGFS_BIN: another build to compare (the same checkout's scripts drive it)
BIN=${IMGFS_BIN:-$PWD/target/release/imgfs}

# The server runs in a session of its own as a service would (see the mount below).
setsid "$BIN" serve --data "$WORK/data" --listen 127.0.0.1:0 >"$WORK/stdout" 2>"$WORK/server.log" &
SPID=$!
MPID=
cleanup() { mountpoint -q "$WORK/mnt" && fusermount3 -u "$WORK/mnt"; kill $SPID 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 50); do grep -q "listening on" "$WORK/stdout" && break; sleep 0.1; done
ADDR=$(sed -n 's/^listening on //p' "$WORK/stdout")
USERJSON=$("$BIN" user add bench --data "$WORK/data" 2>/dev/null)
TOKEN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$USERJSON")
UUID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["uuid"])' "$USERJSON")
echo "$TOKEN" >"$WORK/token"; chmod 600 "$WORK/token"
URL="http://$ADDR/object-store/v1/$UUID/pithos"
MNT="$WORK/mnt"

# Daemonized, as `mount -t imgfs` runs it: in a session of its own. With the scheduler's
# autogroups (on by default) each session shares the CPUs as one group, so where the server,
# the mount and cp run changes the figures: a foreground mount inside this script's session
# made a re-copy ~20 % slower (0.90 s vs 0.76 s, alternating runs).
"$BIN" mount "http://$ADDR/identity/v2.0" "$MNT" \
  -o "token_file=$WORK/token,log_file=$WORK/mount.log${MOUNT_OPTS:+,$MOUNT_OPTS}" \
  || { echo "mount failed" >&2; cat "$WORK/mount.log" >&2; exit 1; }
MPID=$(pgrep -f -n "^$BIN mount http://$ADDR/identity/v2.0 $MNT ")

FILE="$WORK/file.bin"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$FILE"
BYTES=$((SIZE_MIB << 20))
vary() { python3 - "$FILE" "$1" <<'PY'
import sys, os
f, n = sys.argv[1], int(sys.argv[2])
with open(f, "r+b") as fh:
    for off in range(0, os.path.getsize(f), 4 << 20):
        fh.seek(off); fh.write(("run%013d" % n).encode())
PY
}
blocks() { find "$WORK/data/blocks" -type f ! -name '.tmp-*' | wc -l; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); python3 -c "print('%.3f' % ($t1 - $t0))"; }
median() { python3 -c 'import sys,statistics; print("%.3f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
mbps() { python3 -c "print('%.0f' % ($BYTES / 1e6 / $1))"; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

declare -A T
add() { T[$1]="${T[$1]:-} $2"; }
for run in $(seq "$RUNS"); do
  vary "$run"; drop
  add dd "$(secs dd if="$FILE" of="$WORK/dd.out" bs=4M conv=fsync status=none)"; rm -f "$WORK/dd.out"
  add curl_put "$(curl -s -o /dev/null -w '%{time_total}' -T "$FILE" -H "X-Auth-Token: $TOKEN" "$URL/curl$run")"
  drop
  add curl_get "$(curl -s -o /dev/null -w '%{time_total}' -H "X-Auth-Token: $TOKEN" "$URL/curl$run")"
  drop
  add curl_file "$(curl -s -o "$WORK/curl.out" -w '%{time_total}' -H "X-Auth-Token: $TOKEN" "$URL/curl$run")"
  rm -f "$WORK/curl.out"
  # Like curl -T above (dd left the file in the page cache), cp reads its source from memory:
  # the comparison is of the two upload paths, not of reading the local disk meanwhile.
  vary "$((run + 100))"; drop; cat "$FILE" >/dev/null
  add cp_in "$(secs cp "$FILE" "$MNT/pithos/img$run")"
  # The re-copy follows the first copy, as the next `cp` of an unchanged image would: both
  # write over a file the kernel has not cached. (After a read-out, see recopy_cached.)
  before=$(blocks)
  add recopy "$(secs cp "$FILE" "$MNT/pithos/img$run")"
  add recopy_blocks "$(( $(blocks) - before ))"
  drop
  add cat_out "$(secs cat "$MNT/pithos/img$run")"
  drop
  add cp_out "$(secs cp "$MNT/pithos/img$run" "$WORK/out.bin")"
  cmp -s "$FILE" "$WORK/out.bin" || { echo "cp out of the mount returned different bytes" >&2; exit 1; }
  rm -f "$WORK/out.bin"
  # The file was just read through the mount: open(O_TRUNC) now also makes the kernel drop
  # its SIZE of cached pages first (as on any filesystem; ext4 takes longer for it).
  before=$(blocks)
  add recopy_cached "$(secs cp "$FILE" "$MNT/pithos/img$run")"
  add recopy_blocks "$(( $(blocks) - before ))"
  before=$(blocks)
  add edit "$(secs dd if=/dev/urandom of="$MNT/pithos/img$run" bs=4M count=3 seek=$(( SIZE_MIB / 8 )) conv=notrunc status=none)"
  add edit_blocks "$(( $(blocks) - before ))"
done

# 10k objects, then ls -l (cold: first listing of the directory).
python3 - "$ADDR" "$UUID" "$TOKEN" <<'PY'
import http.client, sys, threading
addr, acc, tok = sys.argv[1:4]
host, port = addr.rsplit(":", 1)
def w(t):
    c = http.client.HTTPConnection(host, int(port))
    for i in range(t, 10000, 8):
        c.request("PUT", "/object-store/v1/%s/pithos/many/f%05d" % (acc, i), b"", {"X-Auth-Token": tok})
        r = c.getresponse(); r.read(); assert r.status == 201
ts = [threading.Thread(target=w, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
PY
for run in $(seq "$RUNS"); do
  sleep 1.1  # past the attribute TTL: a cold listing every time
  add ls "$(secs ls -l "$MNT/pithos/many")"
done
[ "$(ls "$MNT/pithos/many" | wc -l)" = 10000 ] || { echo "ls saw the wrong count" >&2; exit 1; }

# 100 registrations by metafile: time from close() of N.meta to N listed in /images/detail.
REG_MS=$(python3 - "$MNT/pithos" "$ADDR" "$TOKEN" <<'PY'
import http.client, json, os, statistics, sys, time
d, addr, tok = sys.argv[1:4]
host, port = addr.rsplit(":", 1)
os.makedirs(d + "/reg", exist_ok=True)
c = http.client.HTTPConnection(host, int(port))
def visible(name):
    c.request("GET", "/image/v1.0/images/detail", headers={"X-Auth-Token": tok})
    r = c.getresponse(); body = r.read(); assert r.status == 200, r.status
    return any(i["name"] == name for i in json.loads(body))
times = []
for i in range(100):
    img = "%s/reg/i%03d.img" % (d, i)
    with open(img, "wb") as f:
        f.write(os.urandom(4096))
    fd = os.open(img + ".meta", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.write(fd, json.dumps({"name": "bench %d" % i, "properties": {"n": str(i)}}).encode())
    t0 = time.perf_counter()
    os.close(fd)
    while not visible("bench %d" % i):
        pass
    times.append(time.perf_counter() - t0)
print("%.1f" % (statistics.median(times) * 1000))
PY
)

RSS_KB=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$MPID/status")
fusermount3 -u "$MNT"
while kill -0 "$MPID" 2>/dev/null; do sleep 0.1; done

CURL_PUT=$(median ${T[curl_put]}); CURL_GET=$(median ${T[curl_get]}); CP_IN=$(median ${T[cp_in]})
CP_OUT=$(median ${T[cp_out]}); RECOPY=$(median ${T[recopy]}); DD=$(median ${T[dd]})
CAT_OUT=$(median ${T[cat_out]}); CURL_FILE=$(median ${T[curl_file]})
printf "\n%s MiB, medians of %s runs\n" "$SIZE_MIB" "$RUNS"
printf "%-38s %8s %8s\n" "what" "s" "MB/s"
for k in dd curl_put cp_in curl_get cat_out curl_file cp_out recopy recopy_cached; do
  m=$(median ${T[$k]}); printf "%-38s %8s %8s\n" "$k" "$m" "$(mbps "$m")"
done
printf "%-38s %8s\n" "edit of 3 blocks (s)" "$(median ${T[edit]})"
echo "every run (s):"
for k in dd curl_put cp_in recopy recopy_cached curl_get cat_out; do printf "  %-10s%s\n" "$k" "${T[$k]}"; done
python3 - "$CP_IN" "$CURL_PUT" "$CP_OUT" "$CURL_GET" "$RECOPY" "$DD" "$CAT_OUT" "$CURL_FILE" \
  "${T[cp_in]}" "${T[recopy]}" "$(median ${T[recopy_cached]})" <<'PY'
import sys
cp_in, curl_put, cp_out, curl_get, recopy, dd, cat_out, curl_file = map(float, sys.argv[1:9])
firsts, recopies = (list(map(float, a.split())) for a in sys.argv[9:11])
recopy_cached = float(sys.argv[11])
print("cp in / curl PUT      %.2f  (target >= 0.8)" % (curl_put / cp_in))
print("cat / curl GET        %.2f  (target >= 0.8; both to /dev/null)" % (curl_get / cat_out))
print("cp out / curl -o file %.2f  (both write the local disk)" % (curl_file / cp_out))
print("re-copy speedup       %.2f  (target >= 3; each run: %s)"
      % (cp_in / recopy, " ".join("%.2f" % (f / r) for f, r in zip(firsts, recopies))))
print("re-copy after a read  %.2f  (the kernel drops the cached file in open(O_TRUNC) first)"
      % (cp_in / recopy_cached))
print("cp in / dd conv=fsync %.2f" % (dd / cp_in))
print("re-copy / dd conv=fsync %.2f  (the durable-write speed of this disk)" % (dd / recopy))
PY
echo "new blocks stored by each re-copy (both kinds): ${T[recopy_blocks]}  (target 0)"
echo "new blocks stored by each 3-block edit: ${T[edit_blocks]}  (target <= 3)"
printf "ls -l of 10k objects: %s s (median; target <= 0.3)\n" "$(median ${T[ls]})"
echo "peak RSS of the mount process: $((RSS_KB / 1024)) MiB (target <= 256)"
echo "close() of N.meta to N visible in /images/detail: $REG_MS ms (median of 100; target <= 50)"
