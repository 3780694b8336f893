#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (run as root), starts
# the original Synnefo 0.20 from ../shared/synnefo when that folder is there, then runs the
# suite in three tiers: everything against `imgfs serve` (unit tests, HTTP tests, real mounts,
# kamaki 0.16 and python-swiftclient as independent clients, the crash test); the same with
# every server's metadata in PostgreSQL 15 (a throwaway cluster) and its blocks in S3
# (OpenStack Swift's s3api from ../shared/swift), the client scenarios of it also with three
# servers behind HAProxy; then the
# mount, registry, walkthrough, kamaki and differential tests against the original
# (`synnefo::` tests, one at a time: they share one server and count its requests).
#
#   scripts/test.sh                 # the three tiers
#   scripts/test.sh kamaki          # arguments given: one `cargo test --release ARGS` run
#                                   # with both servers available, blocks in files (a filter,
#                                   # --nocapture, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS="$ROOT/target/test-tools"
mkdir -p "$TOOLS"

# System packages: curl for the scripts; fuse3 and attr for the filesystem tests (rsync for
# copies that keep attributes); vim,
# emacs, nano (driven through tmux) for the editor tests on metafiles; haproxy for the
# several-servers tests (tests/servers.rs); openssl makes the TLS
# tests' certificates; postgresql for the PostgreSQL tier (its binaries only: the tier makes
# its own cluster).
need=()
for pkg in curl openssl fuse3 attr rsync python3-venv vim emacs-nox nano tmux haproxy postgresql; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "==> apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# kamaki 0.16 runs on Python 2.7, which pyenv provides; installed into a folder, versions pinned.
PYENV_ROOT=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}
PY27=${IMGFS_PY27:-$PYENV_ROOT/versions/2.7.18/bin/python}
if [ ! -x "$PY27" ]; then
  echo "Python 2.7.18 not found at $PY27 (set IMGFS_PY27); kamaki 0.16 needs it" >&2
  exit 1
fi
if [ ! -f "$TOOLS/kamaki/bin/kamaki" ]; then
  echo "==> installing kamaki 0.16 into $TOOLS/kamaki"
  rm -rf "$TOOLS/kamaki"
  "$PY27" -m pip install -q --no-warn-script-location --target "$TOOLS/kamaki" \
    kamaki==0.16 astakosclient==0.19 objpool==0.4 progress==1.6 python-dateutil==2.9.0.post0 six==1.16.0
fi

# python-swiftclient (the `swift` CLI), in its own venv.
if [ ! -x "$TOOLS/swift/bin/swift" ]; then
  echo "==> installing python-swiftclient into $TOOLS/swift"
  rm -rf "$TOOLS/swift"
  python3 -m venv "$TOOLS/swift"
  "$TOOLS/swift/bin/pip" install -q python-swiftclient==4.11.0
fi

# fsx and pjdfstest, the conformance tools, from crates.io.
if [ ! -x "$TOOLS/cargo/bin/fsx" ] || [ ! -x "$TOOLS/cargo/bin/pjdfstest" ]; then
  echo "==> cargo install fsx 0.3.2 and pjdfstest 0.2.2 into $TOOLS/cargo"
  cargo install --quiet --locked --root "$TOOLS/cargo" fsx@0.3.2 pjdfstest@0.2.2
fi

# The original Synnefo 0.20 (GRNET's Astakos, Pithos+, Plankton) on loopback, installed and
# started by its own script into target/test-tools/synnefo (~60 s the first time, ~6 s after).
SNF_SRC=${IMGFS_SYNNEFO_SRC:-$ROOT/../shared/synnefo}
SNF_DIR="$TOOLS/synnefo"
snf_skip=""
if [ ! -x "$SNF_SRC/synnefo-real.sh" ]; then
  snf_skip="$SNF_SRC/synnefo-real.sh not found (the original Synnefo comes from ../shared/synnefo)"
else
  echo "==> starting the original Synnefo 0.20 in $SNF_DIR"
  export SYNNEFO_REAL_ASTAKOS_PORT=${SYNNEFO_REAL_ASTAKOS_PORT:-18011}
  export SYNNEFO_REAL_PITHOS_PORT=${SYNNEFO_REAL_PITHOS_PORT:-18012}
  # kamaki comes from the install above; the tests make their own users.
  if SYNNEFO_REAL_KAMAKI=0 PY27="$PY27" "$SNF_SRC/synnefo-real.sh" "$SNF_DIR" > "$TOOLS/synnefo.out" 2>&1; then
    trap '"$SNF_SRC/synnefo-real-stop.sh" "$SNF_DIR" >/dev/null 2>&1 || true' EXIT
    export IMGFS_SYNNEFO="$SNF_DIR"
  else
    tail -n 30 "$TOOLS/synnefo.out" >&2
    echo "the original Synnefo did not start (log above, $TOOLS/synnefo.out)" >&2
    exit 1
  fi
fi

# OpenStack Swift (from PyPI, by ../shared/swift's own script) as a single-node store with its
# s3api middleware: the S3 endpoint of the imgfs-s3 tier (~30 s the first time, a few s after;
# objects in tmpfs, emptied when the run ends).
SWIFT_SRC=${IMGFS_SWIFT_SRC:-$ROOT/../shared/swift}
SWIFT_DIR="$TOOLS/swift-saio"
s3_skip=""
if [ ! -x "$SWIFT_SRC/swift-saio.sh" ]; then
  s3_skip="$SWIFT_SRC/swift-saio.sh not found (Swift comes from ../shared/swift)"
else
  echo "==> starting OpenStack Swift with s3api in $SWIFT_DIR"
  export SWIFT_SAIO_S3API=1 SWIFT_SAIO_PROXY_PORT=${SWIFT_SAIO_PROXY_PORT:-18080}
  export SWIFT_SAIO_OBJECT_PORT=${SWIFT_SAIO_OBJECT_PORT:-18200} SWIFT_SAIO_CONTAINER_PORT=${SWIFT_SAIO_CONTAINER_PORT:-18201}
  export SWIFT_SAIO_ACCOUNT_PORT=${SWIFT_SAIO_ACCOUNT_PORT:-18202} SWIFT_SAIO_MEMCACHE_PORT=${SWIFT_SAIO_MEMCACHE_PORT:-18211}
  # From empty: a run's objects live in tmpfs (RAM) — ~6 GB by the end of the tier — and
  # what an earlier run or a benchmark left there would starve Swift (timeouts, 503s).
  SWIFT_SAIO_PURGE=1 "$SWIFT_SRC/swift-saio-stop.sh" "$SWIFT_DIR" >/dev/null 2>&1 || true
  if "$SWIFT_SRC/swift-saio.sh" "$SWIFT_DIR" > "$TOOLS/swift-saio.out" 2>&1; then
    stop_swift() { SWIFT_SAIO_PURGE=1 "$SWIFT_SRC/swift-saio-stop.sh" "$SWIFT_DIR" >/dev/null 2>&1 || true; }
    trap '"$SNF_SRC/synnefo-real-stop.sh" "$SNF_DIR" >/dev/null 2>&1 || true; stop_swift' EXIT
  else
    tail -n 30 "$TOOLS/swift-saio.out" >&2
    echo "Swift did not start (log above, $TOOLS/swift-saio.out)" >&2
    exit 1
  fi
  SWIFT_AUTH="http://127.0.0.1:$SWIFT_SAIO_PROXY_PORT/auth/v1.0"
  # The bucket is a Swift container: made through Swift's own API, a new one each run.
  BUCKET="imgfs-test-$(date +%s)"
  auth=$(curl -fsS -D - -o /dev/null -H 'X-Auth-User: test:tester' -H 'X-Auth-Key: testing' "$SWIFT_AUTH" | tr -d '\r')
  token=$(awk -F': ' 'tolower($1) == "x-auth-token" { print $2 }' <<<"$auth")
  storage=$(awk -F': ' 'tolower($1) == "x-storage-url" { print $2 }' <<<"$auth")
  curl -fsS -X PUT -H "X-Auth-Token: $token" "$storage/$BUCKET" >/dev/null
fi

# PostgreSQL 15 from Debian: a throwaway cluster (initdb and pg_ctl as the postgres user in a
# temp dir, loopback only, trust auth; ~1 s), stopped and removed when the run ends. Each data
# directory of the tests gets a schema of its own in it (tests/common's `pg_meta`).
PG_BIN=${IMGFS_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
PG_PORT=${IMGFS_PG_PORT:-18432}
pg_skip=""
if [ ! -x "$PG_BIN/initdb" ]; then
  pg_skip="initdb not found under /usr/lib/postgresql (apt package postgresql)"
else
  PG_DIR=$(mktemp -d /tmp/imgfs-pg.XXXXXX)
  chown postgres "$PG_DIR"
  echo "==> starting PostgreSQL ($PG_BIN) on 127.0.0.1:$PG_PORT in $PG_DIR"
  stop_pg() { su postgres -c "$PG_BIN/pg_ctl -D $PG_DIR/data -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$PG_DIR"; }
  if su postgres -c "$PG_BIN/initdb -D $PG_DIR/data -A trust -U postgres -E UTF8 --locale=C --no-instructions" > "$TOOLS/pg.out" 2>&1 &&
     su postgres -c "$PG_BIN/pg_ctl -D $PG_DIR/data -l $PG_DIR/log -w -o '-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400'  start" >> "$TOOLS/pg.out" 2>&1; then
    trap '"$SNF_SRC/synnefo-real-stop.sh" "$SNF_DIR" >/dev/null 2>&1 || true; stop_swift 2>/dev/null || true; stop_pg' EXIT
    PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  else
    tail -n 30 "$TOOLS/pg.out" >&2
    echo "PostgreSQL did not start (log above, $TOOLS/pg.out)" >&2
    exit 1
  fi
fi

export IMGFS_PG_BIN="$PG_BIN"
export IMGFS_PY27="$PY27"
export IMGFS_KAMAKI="$TOOLS/kamaki"
export IMGFS_SWIFT="$TOOLS/swift/bin/swift"
export IMGFS_FSX="$TOOLS/cargo/bin/fsx"
export IMGFS_PJDFSTEST="$TOOLS/cargo/bin/pjdfstest"
export IMGFS_REPORTS="$ROOT/target/test-reports"
rm -rf "$IMGFS_REPORTS"; mkdir -p "$IMGFS_REPORTS"

# `cargo test` with its output kept, to sum up its "test result:" lines afterwards.
status=0
run() { # TIER-NAME ARGS...
  local name=$1; shift
  echo "==> cargo test $* ($name)"
  cargo test --release "$@" 2>&1 | tee "$IMGFS_REPORTS/$name.log" || status=1
}
summary() { # TIER-NAME
  awk -v t="$1" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } }
    END { printf "%s: %d passed, %d failed, %d ignored\n", t, p, f, g }' "$IMGFS_REPORTS/$1.log"
}
if [ $# -gt 0 ]; then
  run tests "$@"
  summary tests
else
  run "imgfs-serve" --no-fail-fast -- --skip synnefo:: --skip s3_endpoint:: --skip pg_restart::
  if [ -z "$s3_skip" ] && [ -z "$pg_skip" ]; then
    # The same tests with every server's metadata in PostgreSQL (a schema per data directory;
    # the engine's own unit tests run there too: the contract suite on both engines) and its
    # blocks in S3 (tests/common's `imgfs`: a prefix per data directory; those that look
    # inside block files look in the bucket instead, through Swift's own API), and
    # tests/s3.rs (the endpoint going away, bytes changed in the bucket).
    AWS_ENDPOINT_URL="http://127.0.0.1:$SWIFT_SAIO_PROXY_PORT" AWS_ACCESS_KEY_ID=test:tester \
    AWS_SECRET_ACCESS_KEY=testing AWS_ALLOW_HTTP=true IMGFS_TEST_S3="s3://$BUCKET" \
    IMGFS_TEST_SWIFT_AUTH="$SWIFT_AUTH" IMGFS_TEST_PG="$PG_URL" \
      run "imgfs-pg-s3" --no-fail-fast -- --skip synnefo::
    # The clients' scenarios once more with three servers over that storage behind HAProxy
    # (round-robin: consecutive requests of one client land on different servers). Tests of
    # one process's own behaviour (its metrics, its connection handling) stay single-server.
    AWS_ENDPOINT_URL="http://127.0.0.1:$SWIFT_SAIO_PROXY_PORT" AWS_ACCESS_KEY_ID=test:tester \
    AWS_SECRET_ACCESS_KEY=testing AWS_ALLOW_HTTP=true IMGFS_TEST_S3="s3://$BUCKET" \
    IMGFS_TEST_SWIFT_AUTH="$SWIFT_AUTH" IMGFS_TEST_PG="$PG_URL" IMGFS_TEST_SERVERS=3 \
      run "imgfs-pg-s3-three" --no-fail-fast --test kamaki --test swift --test walkthrough --test mount --test images \
      -- --skip synnefo::
  fi
  if [ -z "$snf_skip" ]; then
    run "synnefo-0.20" --no-fail-fast --test mount --test images --test walkthrough --test kamaki --test differential \
      -- synnefo:: --test-threads=1
  fi
  # The conformance summaries (tests/mount.rs writes them; each also fails its test if red).
  for r in "$IMGFS_REPORTS"/*.txt; do
    [ -f "$r" ] && cat "$r"
  done
  summary "imgfs-serve"
  if [ -z "$s3_skip" ] && [ -z "$pg_skip" ]; then
    summary "imgfs-pg-s3"
    summary "imgfs-pg-s3-three"
  else
    echo "imgfs-pg-s3: tier skipped: $s3_skip$pg_skip"
  fi
  if [ -z "$snf_skip" ]; then
    summary "synnefo-0.20"
  else
    echo "synnefo-0.20: tier skipped: $snf_skip"
  fi
fi
exit $status
