#!/usr/bin/env bash
# Benchmark of `imgfs serve` (not a test): a 1 GiB file uploaded and downloaded by
#   - curl, raw PUT / GET (one stream),
#   - a hashmap client: sha256 blocks, PUT ?hashmap → 409, 4 parallel block POSTs, PUT again,
#     and 4 parallel ranged GETs to download,
#   - kamaki 0.16, a peer client doing the same hashmap protocol (if scripts/test.sh installed it),
# beside `dd` with fsync to the same disk as the ceiling for durable writes.
# Each figure is the median of RUNS runs (default 3); every run uploads new blocks.
#   scripts/bench-server.sh [SIZE_MiB]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${RUNS:-3}
WORK=${BENCH_DIR:-$PWD/target/bench-server}
rm -rf "$WORK"; mkdir -p "$WORK"
cargo build --release --quiet
BIN=$PWD/target/release/imgfs

"$BIN" serve --data "$WORK/data" --listen 127.0.0.1:0 >"$WORK/stdout" 2>"$WORK/log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q "listening on" "$WORK/stdout" && break; sleep 0.1; done
ADDR=$(sed -n 's/^listening on //p' "$WORK/stdout")
USERJSON=$("$BIN" user add bench --data "$WORK/data" 2>/dev/null)
TOKEN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$USERJSON")
UUID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["uuid"])' "$USERJSON")
URL="http://$ADDR/object-store/v1/$UUID/pithos"
FILE="$WORK/file.bin"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$FILE"
BYTES=$((SIZE_MIB << 20))

# Makes every block of the file new (first 16 bytes of each 4 MiB block), so no run dedups.
vary() { python3 - "$FILE" "$1" <<'PY'
import sys, os
f, n = sys.argv[1], int(sys.argv[2])
size = os.path.getsize(f)
with open(f, "r+b") as fh:
    for off in range(0, size, 4 << 20):
        fh.seek(off); fh.write(("run%013d" % n).encode())
PY
}

mbps() { python3 -c "print('%.0f' % ($BYTES / 1e6 / $1))"; }
median() { python3 -c 'import sys,statistics; print("%.3f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

HASHMAP_CLIENT=$(cat <<'PY'
import sys, os, json, hashlib, http.client, time, threading, queue
mode, host, acc, token, path, f = sys.argv[1:7]
BS = 4 << 20
def conn(): return http.client.HTTPConnection(host, timeout=600)
def bh(b): return hashlib.sha256(b.rstrip(b"\0")).hexdigest()
obj = "/object-store/v1/%s/pithos/%s" % (acc, path)
hdr = {"X-Auth-Token": token}
t0 = time.time()
if mode == "up":
    size = os.path.getsize(f)
    with open(f, "rb") as fh:
        hashes = [bh(fh.read(BS)) for _ in range((size + BS - 1) // BS)]
    body = json.dumps({"bytes": size, "hashes": hashes})
    c = conn(); c.request("PUT", obj + "?hashmap=True&format=json", body, hdr); r = c.getresponse(); missing = json.loads(r.read() or "[]") if r.status == 409 else []
    q = queue.Queue()
    for h in missing: q.put(hashes.index(h))
    def worker():
        c = conn()
        with open(f, "rb") as fh:
            while True:
                try: i = q.get_nowait()
                except queue.Empty: return
                fh.seek(i * BS); data = fh.read(BS)
                c.request("POST", "/object-store/v1/%s/pithos?update" % acc, data, dict(hdr, **{"Content-Type": "application/octet-stream"}))
                r = c.getresponse(); r.read(); assert r.status == 202, r.status
    ts = [threading.Thread(target=worker) for _ in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
    c = conn(); c.request("PUT", obj + "?hashmap=True&format=json", body, hdr); r = c.getresponse(); r.read(); assert r.status == 201, r.status
else:
    c = conn(); c.request("GET", obj + "?hashmap=True&format=json", headers=hdr); hm = json.loads(c.getresponse().read())
    size = hm["bytes"]; n = len(hm["hashes"])
    out = open(f, "wb"); out.truncate(size); lock = threading.Lock()
    q = queue.Queue()
    for i in range(n): q.put(i)
    def worker():
        c = conn()
        while True:
            try: i = q.get_nowait()
            except queue.Empty: return
            a = i * BS; b = min(a + BS, size) - 1
            c.request("GET", obj, headers=dict(hdr, Range="bytes=%d-%d" % (a, b)))
            r = c.getresponse(); data = r.read(); assert r.status == 206
            with lock: out.seek(a); out.write(data)
    ts = [threading.Thread(target=worker) for _ in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
    out.close()
print("%.3f" % (time.time() - t0))
PY
)

KAMAKI_DIR=$PWD/target/test-tools/kamaki
PY27=${IMGFS_PY27:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/2.7.18/bin/python}
HAVE_KAMAKI=0
if [ -f "$KAMAKI_DIR/bin/kamaki" ] && [ -x "$PY27" ]; then
  HAVE_KAMAKI=1
  export HOME_K="$WORK/khome"; mkdir -p "$HOME_K"
  kamaki() { HOME="$HOME_K" PYTHONPATH="$KAMAKI_DIR" "$PY27" "$KAMAKI_DIR/bin/kamaki" "$@"; }
  kamaki config set cloud.b.url "http://$ADDR/identity/v2.0" 2>/dev/null
  kamaki config set cloud.b.token "$TOKEN" 2>/dev/null
  kamaki config set default_cloud b 2>/dev/null
fi

declare -A T
add() { T[$1]="${T[$1]:-} $2"; }
for run in $(seq "$RUNS"); do
  vary "$run"
  sync
  t=$( { /usr/bin/time -f %e dd if="$FILE" of="$WORK/dd.out" bs=4M conv=fsync status=none; } 2>&1 ); add dd "$t"
  rm -f "$WORK/dd.out"
  t=$(curl -s -o /dev/null -w '%{time_total}' -T "$FILE" -H "X-Auth-Token: $TOKEN" "$URL/raw$run"); add curl_put "$t"
  t=$(curl -s -o "$WORK/get.out" -w '%{time_total}' -H "X-Auth-Token: $TOKEN" "$URL/raw$run"); add curl_get "$t"
  cmp -s "$FILE" "$WORK/get.out" || { echo "curl GET returned different bytes" >&2; exit 1; }
  vary "$((run + 100))"
  t=$(python3 -c "$HASHMAP_CLIENT" up "$ADDR" "$UUID" "$TOKEN" "hm$run" "$FILE"); add hm_put "$t"
  t=$(python3 -c "$HASHMAP_CLIENT" down "$ADDR" "$UUID" "$TOKEN" "hm$run" "$WORK/hm.out"); add hm_get "$t"
  cmp -s "$FILE" "$WORK/hm.out" || { echo "hashmap download returned different bytes" >&2; exit 1; }
  if [ $HAVE_KAMAKI = 1 ]; then
    vary "$((run + 200))"
    t=$( { /usr/bin/time -f %e bash -c "HOME='$HOME_K' PYTHONPATH='$KAMAKI_DIR' '$PY27' '$KAMAKI_DIR/bin/kamaki' file upload '$FILE' /pithos/k$run >/dev/null 2>&1"; } 2>&1 ); add kamaki_up "$t"
    rm -f "$WORK/k.out"
    t=$( { /usr/bin/time -f %e bash -c "HOME='$HOME_K' PYTHONPATH='$KAMAKI_DIR' '$PY27' '$KAMAKI_DIR/bin/kamaki' file download /pithos/k$run '$WORK/k.out' >/dev/null 2>&1"; } 2>&1 ); add kamaki_down "$t"
    cmp -s "$FILE" "$WORK/k.out" || { echo "kamaki download returned different bytes" >&2; exit 1; }
  fi
  rm -f "$WORK/get.out" "$WORK/hm.out" "$WORK/k.out"
done

DD=$(median ${T[dd]})
printf "\n%s MiB, median of %s runs (seconds → MB/s, ratio to dd with fsync)\n" "$SIZE_MIB" "$RUNS"
printf "%-34s %8s %8s %8s\n" "what" "s" "MB/s" "x dd"
row() { local m; m=$(median ${T[$1]}); printf "%-34s %8s %8s %8s\n" "$2" "$m" "$(mbps "$m")" "$(python3 -c "print('%.2f' % ($DD / $m))")"; }
row dd "dd bs=4M conv=fsync (ceiling)"
row curl_put "curl -T (raw PUT)"
row hm_put "hashmap PUT + 4 parallel blocks"
row curl_get "curl GET"
row hm_get "4 parallel ranged GETs"
if [ $HAVE_KAMAKI = 1 ]; then
  row kamaki_up "kamaki 0.16 file upload"
  row kamaki_down "kamaki 0.16 file download"
fi
