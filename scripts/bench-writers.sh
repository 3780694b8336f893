#!/usr/bin/env bash
# Benchmark (not a test): how many writes a second imgfs serve commits with several writers at
# once — WRITERS clients (default 8) creating empty objects for BENCH_SECONDS (default 10), all
# in one account, then each in an account of its own — on SQLite and on PostgreSQL
# (BENCH_PG=postgres://…, else a throwaway cluster of Debian's PostgreSQL started here), with
# 1 server and with 3 behind HAProxy (round-robin). PostgreSQL takes one lock per account, so
# writes of different accounts run side by side; SQLite (one file, one writer) does not.
# Medians of RUNS (default 3) of each figure, creates/s.
#   scripts/bench-writers.sh            # IMGFS_BIN: another build to measure
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
WRITERS=${WRITERS:-8}
SECONDS_EACH=${BENCH_SECONDS:-10}
RUNS=${RUNS:-3}
WORK=${BENCH_DIR:-$PWD/target/bench-writers}
for pkg in haproxy curl postgresql; do
  dpkg -s "$pkg" >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null; }
done
cargo build --release --quiet
BIN=${IMGFS_BIN:-$PWD/target/release/imgfs}
rm -rf "$WORK"; mkdir -p "$WORK"

PIDS=()
cleanup() {
  [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null || true
  throwaway_pg_stop
}
trap cleanup EXIT
[ -z "${BENCH_PG:-}" ] && throwaway_pg_start "${BENCH_PG_PORT:-18632}" "$WORK/pg.out"

# setup NAME N META: N servers over one metadata database (+ HAProxy when N > 1), WRITERS
# users; sets ADDR and writes NAME/users.json.
setup() {
  local name=$1 n=$2 meta=$3 dir="$WORK/$1"
  mkdir -p "$dir"
  local store=(--meta "sqlite:$dir/data" --blocks "dir:$dir/blocks")
  [ "$meta" = pg ] && store=(--meta "$BENCH_PG?options=-c%20search_path%3Dbench_${name//-/_}" --blocks "dir:$dir/blocks")
  local ports=()
  for i in $(seq "$n"); do
    setsid "$BIN" serve --listen 127.0.0.1:0 "${store[@]}" >"$dir/out$i" 2>>"$dir/server.log" &
    PIDS+=($!)
    for _ in $(seq 100); do grep -q "listening on" "$dir/out$i" && break; sleep 0.05; done
    ports+=("$(sed -n 's/^listening on //p' "$dir/out$i")")
  done
  if [ "$n" -gt 1 ]; then
    haproxy_front "$dir" "${ports[@]}"
  else
    ADDR=${ports[0]}
  fi
  for w in $(seq "$WRITERS"); do "$BIN" user add "w$w" "${store[@]}" >"$dir/user$w.json" 2>/dev/null; done
  python3 -c 'import json, sys; print(json.dumps([json.load(open(f)) for f in sys.argv[1:]]))' \
    $(for w in $(seq "$WRITERS"); do echo "$dir/user$w.json"; done) >"$dir/users.json"
}

printf '%-28s %14s %14s %7s   (creates/s, %s writers, %s s, median of %s)\n' \
  config "one account" "own accounts" ratio "$WRITERS" "$SECONDS_EACH" "$RUNS"
for cfg in "1 server, SQLite:1:sqlite" "1 server, PostgreSQL:1:pg" "3 servers, PostgreSQL:3:pg"; do
  IFS=: read -r label n meta <<<"$cfg"
  name=$(tr '[:upper:]' '[:lower:]' <<<"$label" | tr -cs 'a-z0-9' '-' | sed 's/-*$//')
  setup "$name" "$n" "$meta"
  python3 - "$ADDR" "$WORK/$name/users.json" "$SECONDS_EACH" "$RUNS" "$label" <<'PY'
import sys, json, threading, http.client, time, statistics
addr, users, secs, runs, label = sys.argv[1], json.load(open(sys.argv[2])), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
host, port = addr.rsplit(':', 1)

def run(own):
    stop = time.monotonic() + secs
    counts = [0] * len(users)
    errors = []
    def writer(i):
        u = users[i] if own else users[0]
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        h = {'X-Auth-Token': u['token'], 'Content-Length': '0'}
        tag = f"{time.time_ns():x}-{i}"
        n = 0
        while time.monotonic() < stop:
            c.request('PUT', f"/object-store/v1/{u['uuid']}/pithos/w-{tag}-{n:07d}", body=b'', headers=h)
            r = c.getresponse(); r.read()
            if r.status != 201:
                errors.append(r.status)
                return
            n += 1
        counts[i] = n
    t0 = time.monotonic()
    ts = [threading.Thread(target=writer, args=(i,)) for i in range(len(users))]
    for t in ts: t.start()
    for t in ts: t.join()
    if errors:
        sys.exit(f"{label}: writers failed with {errors[:5]}")
    return sum(counts) / (time.monotonic() - t0)

one = statistics.median([run(False) for _ in range(runs)])
own = statistics.median([run(True) for _ in range(runs)])
print(f"{label:28} {one:14.0f} {own:14.0f} {own / one:7.2f}")
PY
done
