#!/usr/bin/env bash
# Builds imgfs and installs it as /usr/local/bin/imgfs, with /sbin/mount.imgfs linked to it so
# that `mount -t imgfs` and /etc/fstab entries work. Needs root for the install step.
#   scripts/install.sh [PREFIX]        # default /usr/local
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${1:-/usr/local}
cargo build --release --quiet
install -D -m 0755 target/release/imgfs "$PREFIX/bin/imgfs"
ln -sf "$PREFIX/bin/imgfs" /sbin/mount.imgfs
command -v fusermount3 >/dev/null || { apt-get update -qq && apt-get install -y -qq fuse3 >/dev/null; }
echo "installed $PREFIX/bin/imgfs and /sbin/mount.imgfs"
