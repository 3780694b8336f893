#!/usr/bin/env bash
# A bounded load on imgfs serve (a benchmark, not a test): 3 users × 50 connections sending
# 50 000 mixed requests (PUT/GET/ranged GET/HEAD/list/copy, some of them bad) while 300 slow
# clients dribble headers; then every acknowledged write is read back. Prints the load
# generator's JSON (requests/s, p50/p99 ms, 5xx, unexpected answers, lost writes) and the
# server's peak RSS.
#
#   scripts/bench-load.sh [USERS] [CONNS_PER_USER] [REQUESTS] [SLOW]
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-3} conns=${2:-50} requests=${3:-50000} slow=${4:-300}
cargo build --release --quiet --bin imgfs --example loadgen
bin=${IMGFS_BIN:-target/release/imgfs}  # another build of the server to compare
work=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfs-load.XXXXXX")
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n 65536 2>/dev/null || true
"$bin" serve --data "$work/data" --listen 127.0.0.1:0 >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$work/out")
for i in $(seq "$users"); do "$bin" user add "load$i" --data "$work/data" 2>/dev/null; done >"$work/tokens"
echo "==> $users users x $conns connections, $requests requests, $slow slow clients on http://$addr"
target/release/examples/loadgen "http://$addr" "$work/tokens" "$conns" "$requests" "$slow" | tee "$work/result"
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
echo "server peak RSS: $((hwm / 1024)) MiB; 5xx in its log: $(grep -c '"status":5\| status=5' "$work/log" || true)"
