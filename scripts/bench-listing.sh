#!/usr/bin/env bash
# Benchmark of `imgfs serve` (not a test): what a container HEAD, a listing page and `ls -l`
# through the mount cost as the container grows. Fills one container with empty objects
# (35-character names) to each of SIZES (default "10000 100000"; "10000 100000 1000000" for the
# issue's growth table) and measures at each; a cost bounded by the page shows a ratio near 1
# between columns (`ls -l` lists everything: linear, a ratio near the size ratio).
#   scripts/bench-listing.sh [SIZE...]
# Then the image registry: what the image list and a lookup by name cost one user (who owns 10
# images and sees one shared with them), through the API and as a `stat` of
# `/.images/NAME` on a fresh mount, while another account's private images grow through
# IMAGE_SIZES (default "1000 10000"); bounded by what the user sees shows ~1.
# Each figure is the median of RUNS requests (default 7); `ls -l` of LS_RUNS fresh mounts
# (default 3, 1 above 100k objects).
# Reuses the filled data directory across runs of the same binary (BENCH_DIR, delete it to refill;
# use one per binary: a newer binary migrates the directory to its schema).
# BENCH_META=postgres://USER@HOST:PORT/DB[?options=-c%20search_path%3DNAME] runs the same on
# PostgreSQL metadata (blocks in BENCH_DIR, default target/bench-listing-pg; an empty schema
# the first time). BENCH_FROM=DIR (with BENCH_META) first copies a filled SQLite bench
# directory there with `imgfs migrate` when the schema is empty: filling 1M objects through
# PostgreSQL's one writer takes over an hour, the copy minutes. Last, metadata operations one
# at a time (create, stat, list of one object; medians of METAOPS, default 500), beside
# JuiceFS's published PostgreSQL figures.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${*:-10000 100000}
RUNS=${RUNS:-7}
LS_RUNS=${LS_RUNS:-3}
IMAGE_SIZES=${IMAGE_SIZES:-1000 10000}
BENCH_META=${BENCH_META:-}
BENCH_FROM=${BENCH_FROM:-}
METAOPS=${METAOPS:-500}
if [ -n "$BENCH_META" ]; then
  WORK=${BENCH_DIR:-$PWD/target/bench-listing-pg}
  STORE=(--meta "$BENCH_META" --blocks "dir:$WORK/blocks")
else
  WORK=${BENCH_DIR:-$PWD/target/bench-listing}
  STORE=(--data "$WORK/data")
fi
mkdir -p "$WORK/mnt"
cargo build --release --quiet
BIN=${IMGFS_BIN:-$PWD/target/release/imgfs}
mountpoint -q "$WORK/mnt" && fusermount3 -u "$WORK/mnt"
if [ -n "$BENCH_META" ] && [ -n "$BENCH_FROM" ] && [ ! -s "$WORK/user.json" ]; then
  t0=$(date +%s.%N)
  "$BIN" migrate --from "$BENCH_FROM/data" --meta "$BENCH_META" --blocks "dir:$WORK/blocks" >"$WORK/migrate.json"
  cp "$BENCH_FROM/user.json" "$BENCH_FROM/crowd.json" "$WORK/"
  echo "  (copied $BENCH_FROM into PostgreSQL in $(echo "$(date +%s.%N) - $t0" | bc) s)" >&2
fi

"$BIN" serve "${STORE[@]}" --listen 127.0.0.1:0 >"$WORK/stdout" 2>"$WORK/log" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$WORK/stdout" && break; sleep 0.1; done
ADDR=$(sed -n 's/^listening on //p' "$WORK/stdout")
if [ ! -s "$WORK/user.json" ]; then
  "$BIN" user add bench "${STORE[@]}" >"$WORK/user.json" 2>/dev/null
fi
if [ ! -s "$WORK/crowd.json" ]; then
  "$BIN" user add crowd "${STORE[@]}" >"$WORK/crowd.json" 2>/dev/null
fi

if [ -n "$BENCH_META" ]; then ENGINE=PostgreSQL; else ENGINE=SQLite; fi
echo "engine: $ENGINE (${STORE[*]})" | sed 's#//\([^:@/]*\):[^@/]*@#//\1:***@#'
BIN="$BIN" WORK="$WORK" SIZES="$SIZES" IMAGE_SIZES="$IMAGE_SIZES" LS_RUNS="$LS_RUNS" \
python3 - "$ADDR" "$WORK/user.json" "$RUNS" "$WORK/crowd.json" "$METAOPS" <<'PY'
import sys, os, json, threading, http.client, time, statistics, subprocess
addr, user, runs = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3])
crowd, metaops = json.load(open(sys.argv[4])), int(sys.argv[5])
sizes = [int(n) for n in os.environ['SIZES'].split()]
image_sizes = [int(n) for n in os.environ['IMAGE_SIZES'].split()]
ls_runs = int(os.environ['LS_RUNS'])
BIN, WORK = os.environ['BIN'], os.environ['WORK']
MNT = f"{WORK}/mnt"
with os.fdopen(os.open(f"{WORK}/token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as f:
    f.write(user['token'])
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

def timed(method, path, headers=H):
    c = conn(); out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        c.request(method, path, headers=headers); r = c.getresponse(); r.read()
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

def mounted(f):
    """`f()` on a fresh mount of the bench user's account (nothing cached by the kernel)."""
    subprocess.run([BIN, 'mount', f'http://{addr}/identity/v2.0', MNT, '-o',
                    f'token_file={WORK}/token,log_file={WORK}/mount.log'], check=True)
    try:
        return f()
    finally:
        subprocess.run(['fusermount3', '-u', MNT], check=True)

def ls_l(n):
    def once():
        t0 = time.perf_counter()
        out = subprocess.run(['ls', '-l', f'{MNT}/pithos'], stdout=subprocess.PIPE, check=True).stdout
        dt = time.perf_counter() - t0
        assert out.count(b'\n') - 1 >= n, (out.count(b'\n'), n)
        return dt
    k = ls_runs if n <= 100000 else 1
    return statistics.median(mounted(once) for _ in range(k)) * 1000

def already(what, have, small):
    if have > small:
        print(f"  (already {have} {what}: the first columns measure that; delete {WORK} to measure growth)",
              file=sys.stderr)

def table(what, unit, results):
    ns = list(results)
    print(f"{what:32}" + "".join(f"{n:>12} {unit}" for n in ns) + "   ratios")
    for k in results[ns[0]]:
        v = [results[n][k] for n in ns]
        ratios = " ".join(f"{b / a:5.2f}" for a, b in zip(v, v[1:]))
        print(f"{k:32}" + "".join(f"{x:{12 + len(unit) - 2}.2f} ms" for x in v) + f"   {ratios}")

already('objects', count(), sizes[0])
grown = {}
for n in sizes:
    fill(n)
    grown[n] = measure(n)
    grown[n]['ls -l through the mount'] = ls_l(n)
table('request', 'objs', grown)

IMG = '/image/v1.0/images/'

def register(who, name, index, public=False):
    """An empty object named by `index` in `who`'s images container, registered as `name`."""
    h = {'X-Auth-Token': who['token']}
    c = conn()
    obj = f"images/img-{index:08d}.diskdump"
    c.request('PUT', f"/object-store/v1/{who['uuid']}/{obj}", body=b'', headers={**h, 'Content-Length': '0'})
    r = c.getresponse(); r.read(); assert r.status in (201, 202), r.status
    c.request('POST', IMG, headers={**h, 'x-image-meta-name': name,
              'x-image-meta-location': f"pithos://{who['uuid']}/{obj}",
              'x-image-meta-is-public': 'true' if public else 'false'})
    r = c.getresponse(); r.read(); assert r.status in (200, 201), (r.status, r.read())
    return c

def images_of(who):
    c = conn(); c.request('GET', IMG, headers={'X-Auth-Token': who['token']})
    r = c.getresponse(); return json.loads(r.read())

def crowd_images():
    return sum(1 for i in images_of(crowd) if i.get('name', '').startswith('crowd-'))

def fill_images(upto):
    have = crowd_images()
    if have >= upto:
        return
    t0 = time.time()
    def work(t):
        for i in range(have + t, upto, 16):
            register(crowd, f'crowd-{i:08d}', i)
    ts = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    [t.start() for t in ts]; [t.join() for t in ts]
    print(f"  (crowd has {upto} private images, filled in {time.time() - t0:.1f} s)", file=sys.stderr)

for who in (user, crowd):
    c = conn()
    c.request('PUT', f"/object-store/v1/{who['uuid']}/images", headers={'X-Auth-Token': who['token'], 'Content-Length': '0'})
    r = c.getresponse(); r.read(); assert r.status in (201, 202), r.status

if not any(i.get('name') == 'mine-9' for i in images_of(user)):
    for i in range(10):
        register(user, f'mine-{i}', i)
    c = register(crowd, 'shared-with-bench', 99999999)
    shared = next(i['id'] for i in images_of(crowd) if i['name'] == 'shared-with-bench')
    c.request('PUT', f"{IMG}{shared}/members/{user['uuid']}", headers={'X-Auth-Token': crowd['token']})
    r = c.getresponse(); r.read(); assert r.status == 204, r.status
assert len(images_of(user)) == 11, len(images_of(user))

def lookup_through_the_mount():
    def once():
        t0 = time.perf_counter()
        os.stat(f"{MNT}/.images/mine-5")
        return time.perf_counter() - t0
    return statistics.median(mounted(once) for _ in range(runs)) * 1000

def measure_images():
    return {
        'image list (11 seen)': timed('GET', IMG),
        'image list, detail': timed('GET', IMG + 'detail'),
        'image lookup ?name=mine-5': timed('GET', IMG + 'detail?name=mine-5'),
        'stat /.images/mine-5 (mount)': lookup_through_the_mount(),
    }

already('images of the crowd', crowd_images(), image_sizes[0])
grown = {}
for n in image_sizes:
    fill_images(n)
    grown[n] = measure_images()
table('request', 'images', grown)

# Metadata operations, one client, one at a time (what a file tool's syscalls cost at the
# server: create = PUT of an empty object, stat = HEAD, list = a one-object listing page).
c = conn()
tag = f"{time.time_ns():x}"
def one(method, path, body=None, extra={}):
    t0 = time.perf_counter()
    c.request(method, path, body=body, headers={**H, **extra}); r = c.getresponse(); r.read()
    assert r.status in (200, 201, 204), (method, path, r.status)
    return time.perf_counter() - t0
ops = {'create (PUT, empty)': [], 'stat (HEAD)': [], 'list (1 object)': []}
for i in range(metaops):
    p = f"{base}/meta-op-{tag}-{i:06d}"
    ops['create (PUT, empty)'].append(one('PUT', p, b'', {'Content-Length': '0'}))
for i in range(metaops):
    ops['stat (HEAD)'].append(one('HEAD', f"{base}/meta-op-{tag}-{i:06d}"))
for i in range(metaops):
    ops['list (1 object)'].append(one('GET', f"{base}?format=json&limit=1&prefix=meta-op-{tag}-{i:06d}"))
juicefs = {'create (PUT, empty)': 844, 'stat (HEAD)': 350, 'list (1 object)': None}
print(f"{'metadata operation':32} {'median':>10} {'ops/s':>8}   JuiceFS on PostgreSQL")
for k, v in ops.items():
    med = statistics.median(v) * 1e6
    j = f"{juicefs[k]} us" if juicefs[k] else "-"
    print(f"{k:32} {med:7.0f} us {1e6 / med:8.0f}   {j}")
PY
