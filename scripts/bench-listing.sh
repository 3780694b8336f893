#!/usr/bin/env bash
# Benchmark of `imgfs serve` (not a test): what a container HEAD and a listing page cost as the
# container grows. Fills one container with SMALL objects, measures, grows it to LARGE objects
# (default 10k and 100k, empty objects with 35-character names), measures again; a cost bounded
# by the page shows a ratio near 1. Each figure is the median of RUNS requests (default 7).
#   scripts/bench-listing.sh [SMALL] [LARGE]
# Reuses the filled data directory across runs of the same binary (BENCH_DIR, delete it to refill).
set -euo pipefail
cd "$(dirname "$0")/.."
SMALL=${1:-10000}
LARGE=${2:-100000}
RUNS=${RUNS:-7}
WORK=${BENCH_DIR:-$PWD/target/bench-listing}
mkdir -p "$WORK"
cargo build --release --quiet
BIN=${IMGFS_BIN:-$PWD/target/release/imgfs}

"$BIN" serve --data "$WORK/data" --listen 127.0.0.1:0 >"$WORK/stdout" 2>"$WORK/log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$WORK/stdout" && break; sleep 0.1; done
ADDR=$(sed -n 's/^listening on //p' "$WORK/stdout")
if [ ! -s "$WORK/user.json" ]; then
  "$BIN" user add bench --data "$WORK/data" >"$WORK/user.json" 2>/dev/null
fi

python3 - "$ADDR" "$WORK/user.json" "$SMALL" "$LARGE" "$RUNS" <<'PY'
import sys, json, threading, http.client, time, statistics
addr, user, small, large, runs = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
host, port = addr.split(':')
H = {'X-Auth-Token': user['token']}
base = f"/object-store/v1/{user['uuid']}/pithos"

def conn():
    return http.client.HTTPConnection(host, int(port))

def count():
    c = conn(); c.request('HEAD', base, headers=H); r = c.getresponse(); r.read()
    return int(r.getheader('X-Container-Object-Count'))

def fill(upto):
    have = count()
    if have >= upto:
        return
    t0 = time.time()
    def work(t):
        c = conn()
        for i in range(have + t, upto, 16):
            c.request('PUT', f'{base}/object-with-a-name-{i:08d}.img', body=b'',
                      headers={**H, 'Content-Length': '0'})
            r = c.getresponse(); r.read()
            assert r.status == 201, r.status
    ts = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    [t.start() for t in ts]; [t.join() for t in ts]
    print(f"  (filled to {upto} objects in {time.time() - t0:.1f} s)", file=sys.stderr)

def timed(method, path):
    c = conn(); out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        c.request(method, path, headers=H); r = c.getresponse(); r.read()
        out.append(time.perf_counter() - t0)
        assert r.status in (200, 204), (path, r.status)
    return statistics.median(out) * 1000

def measure(n):
    mid = f'object-with-a-name-{n // 2:08d}.img'
    return {
        'HEAD container': timed('HEAD', base),
        'first page (10000, json)': timed('GET', f'{base}?format=json&limit=10000'),
        'page from the middle (1000)': timed('GET', f'{base}?format=json&limit=1000&marker={mid}'),
        'HEAD account': timed('HEAD', f"/object-store/v1/{user['uuid']}"),
    }

fill(small); a = measure(small)
fill(large); b = measure(large)
print(f"{'request':32} {small:>10} objs {large:>10} objs   ratio")
for k in a:
    print(f"{k:32} {a[k]:12.2f} ms {b[k]:12.2f} ms   {b[k] / a[k]:5.2f}")
PY
