#!/usr/bin/env bash
# Builds imgfs, starts `imgfs serve` on the embedded engine (data in ./imgfs-data unless
# IMGFS_DATA says otherwise), creates a user, mounts the account at ./mnt (IMGFS_MNT) and
# prints the kamaki configuration and what to try.
#   scripts/run.sh            # listens on 127.0.0.1:8080 (IMGFS_LISTEN to change)
set -euo pipefail
# The token and the kamaki lines written below are secrets: readable by this user only.
umask 077
cd "$(dirname "$0")/.."
DATA=${IMGFS_DATA:-$PWD/imgfs-data}
LISTEN=${IMGFS_LISTEN:-127.0.0.1:8080}
MNT=${IMGFS_MNT:-$PWD/mnt}
command -v fusermount3 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 attr >/dev/null; }
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
if [ -s "$DATA.token" ] && "$BIN" user list --data "$DATA" | cut -f2 | grep -qx "$USER_NAME"; then
  echo "user $USER_NAME exists already; its token is in $DATA.token"
else
  "$BIN" user add "$USER_NAME" --data "$DATA" --url "http://$ADDR" >"$DATA.user.json" 2>"$DATA.kamaki"
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$DATA.user.json" >"$DATA.token"
  chmod 600 "$DATA.token"
  echo "created user: $(cat "$DATA.user.json")"
fi
sed "s#http://[^/]*/identity#http://$ADDR/identity#" "$DATA.kamaki" 2>/dev/null || true
mkdir -p "$MNT"
if mountpoint -q "$MNT"; then fusermount3 -u "$MNT" || true; fi
"$BIN" mount "http://$ADDR/identity/v2.0" "$MNT" -o "token_file=$DATA.token,log_file=$DATA.mount.log"
cat <<MSG

imgfs serve is running (pid $PID) at http://$ADDR, data in $DATA, log in $DATA.log.
The account is mounted at $MNT (log in $DATA.mount.log). Try:
  ls -l $MNT                      # containers; 'pithos' is yours
  cp some-disk.img $MNT/pithos/
  cmp some-disk.img $MNT/pithos/some-disk.img
  mkdir $MNT/images && mv $MNT/pithos/some-disk.img $MNT/images/
and with kamaki (config lines above):
  kamaki file list /pithos
  kamaki image register --name "My image" --location /images/some-disk.img --public
Stop: umount $MNT; kill $PID
MSG
