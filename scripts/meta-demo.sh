#!/usr/bin/env bash
# replbd's metadata layer (`replbd-meta`), end to end, on a scratch file.
# Creates internal metadata on a 1 GiB sparse file, shows it, damages a bitmap block, lets `check`
# find it and `apply-al` repair it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --locked -p replbd-bitmap --bin replbd-meta
META="$PWD/target/release/replbd-meta"
DIR=$(mktemp -d /tmp/replbd-demo.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
DISK="$DIR/disk.img"
truncate -s 1G "$DISK"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$META" create --internal "$DISK" --max-peers 2 --node-id 0
step "$META" dump "$DISK"
step "$META" show-gi "$DISK"
step "$META" check "$DISK"
offset=$("$META" dump --json "$DISK" | sed -n 's/.*"meta_offset": \([0-9]*\).*/\1/p')
printf '\n# flipping one byte in the first bitmap block (offset %s)\n' "$offset"
printf '\x55' | dd of="$DISK" bs=1 seek=$((offset + 100)) conv=notrunc status=none
step "$META" check "$DISK" || echo "(check exited $? — it found the damage)"
step "$META" apply-al "$DISK"
printf "\n# the damaged block's range is now out of sync with peer slot 0: resync will cover it\n"
"$META" dump "$DISK" | tail -3
step "$META" check "$DISK"
echo
echo "demo: ok"
