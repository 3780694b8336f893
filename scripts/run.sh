#!/usr/bin/env bash
# Builds imgfs, starts `imgfs serve` on the embedded engine (data in ./imgfs-data unless
# IMGFS_DATA says otherwise), creates a user and prints the kamaki configuration for it.
#   scripts/run.sh            # listens on 127.0.0.1:8080 (IMGFS_LISTEN to change)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${IMGFS_DATA:-$PWD/imgfs-data}
LISTEN=${IMGFS_LISTEN:-127.0.0.1:8080}
cargo build --release --quiet
BIN=$PWD/target/release/imgfs
mkdir -p "$DATA"
"$BIN" serve --data "$DATA" --listen "$LISTEN" >"$DATA.stdout" 2>"$DATA.log" &
PID=$!
for _ in $(seq 50); do grep -q "listening on" "$DATA.stdout" 2>/dev/null && break; sleep 0.1; done
if ! grep -q "listening on" "$DATA.stdout" 2>/dev/null; then
  echo "imgfs serve did not start:" >&2; cat "$DATA.log" >&2; exit 1
fi
ADDR=$(sed -n 's/^listening on //p' "$DATA.stdout")
USER_NAME=${IMGFS_USER:-$(whoami)@localhost}
if "$BIN" user list --data "$DATA" | cut -f2 | grep -qx "$USER_NAME"; then
  echo "user $USER_NAME exists already (its token is in the output of the run that created it)"
else
  "$BIN" user add "$USER_NAME" --data "$DATA" --url "http://$ADDR" >"$DATA.user.json" 2>"$DATA.kamaki"
  echo "created user: $(cat "$DATA.user.json")"
  cat "$DATA.kamaki"
fi
cat <<MSG

imgfs serve is running (pid $PID) at http://$ADDR, data in $DATA, log in $DATA.log.
Try it with kamaki (after the config lines above):
  kamaki file upload disk.img /pithos/disk.img
  kamaki image register --name "My image" --location /pithos/disk.img --public
  kamaki image list
Stop it with: kill $PID
MSG
