# Sourced by the benchmarks (bench-servers.sh, bench-writers.sh).
#
# A throwaway PostgreSQL cluster of Debian's (initdb and pg_ctl as the postgres user in a temp
# dir, loopback only, trust auth; ~1 s):
#   throwaway_pg_start PORT LOG   # sets BENCH_PG (its URL), PG_DIR and PG_BIN
#   throwaway_pg_stop             # stops it and removes its directory (nothing if none)
#
# HAProxy round-robin in front of servers, on a free port, once it answers /healthz:
#   haproxy_front DIR ADDR...     # DIR/haproxy.cfg and .log; sets ADDR, adds its pid to PIDS
PG_DIR=""
throwaway_pg_start() {
  local port=$1 log=$2
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  PG_DIR=$(mktemp -d /tmp/imgfs-bench-pg.XXXXXX)
  chown postgres "$PG_DIR"
  su postgres -c "$PG_BIN/initdb -D $PG_DIR/data -A trust -U postgres -E UTF8 --locale=C --no-instructions" >"$log" 2>&1
  su postgres -c "$PG_BIN/pg_ctl -D $PG_DIR/data -l $PG_DIR/log -w -o '-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200' start" >>"$log" 2>&1 \
    || { tail -20 "$log"; exit 1; }
  BENCH_PG=postgres://postgres@127.0.0.1:$port/postgres
}
throwaway_pg_stop() {
  if [ -n "$PG_DIR" ]; then
    su postgres -c "$PG_BIN/pg_ctl -D $PG_DIR/data -m immediate stop" >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}

haproxy_front() {
  local dir=$1 port i=0
  shift
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  {
    printf 'defaults\n    mode http\n    timeout connect 2s\n    timeout client 600s\n    timeout server 600s\n'
    printf '    retries 3\n    option redispatch\n    retry-on conn-failure\n'
    printf 'frontend f\n    bind 127.0.0.1:%s\n    default_backend b\nbackend b\n    balance roundrobin\n' "$port"
    for a in "$@"; do printf '    server s%s %s\n' "$i" "$a"; i=$((i + 1)); done
  } >"$dir/haproxy.cfg"
  haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
  PIDS+=($!)
  ADDR=127.0.0.1:$port
  for _ in $(seq 100); do curl -fs "http://$ADDR/healthz" >/dev/null && break; sleep 0.05; done
}
