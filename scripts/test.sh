#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (run as root), then runs
# it: unit tests, HTTP integration tests against a real `imgfs serve`, kamaki 0.16 and the
# python-swiftclient CLI as independent clients, and the kill -9 crash test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh kamaki     # extra arguments go to `cargo test` (a filter, --nocapture, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS="$ROOT/target/test-tools"
mkdir -p "$TOOLS"

# System packages: curl for the scripts; fuse3 and attr for the filesystem tests; vim,
# emacs, nano (driven through tmux) for the editor tests on metafiles.
need=()
for pkg in curl fuse3 attr python3-venv vim emacs-nox nano tmux; do
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

export IMGFS_PY27="$PY27"
export IMGFS_KAMAKI="$TOOLS/kamaki"
export IMGFS_SWIFT="$TOOLS/swift/bin/swift"
export IMGFS_FSX="$TOOLS/cargo/bin/fsx"
export IMGFS_PJDFSTEST="$TOOLS/cargo/bin/pjdfstest"
export IMGFS_REPORTS="$ROOT/target/test-reports"
rm -rf "$IMGFS_REPORTS"; mkdir -p "$IMGFS_REPORTS"

echo "==> cargo test"
status=0
cargo test --release "$@" || status=$?
# The conformance summaries (tests/mount.rs writes them; each also fails its test if red).
for r in "$IMGFS_REPORTS"/*.txt; do
  [ -f "$r" ] && cat "$r"
done
exit $status
