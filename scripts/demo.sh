#!/usr/bin/env bash
# The main job on a fresh machine: `replbd demo`. Installs what it needs (libclang-dev for the
# build, qemu-utils for qemu-io), builds replbd, replbd-controller and replbd-node, then runs
#   replbd demo
# a controller and three node daemons on loopback with file pools in a temporary directory, a
# 3-replica volume written and verified (through the NBD front end: controller-managed volumes are
# served over NBD), a node stopped, more data written, the node restarted and resynced to UpToDate,
# everything cleaned up; it ends with the line `demo: ok`.
# Usage: scripts/demo.sh [replbd demo options, e.g. --keep]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --demo
cargo build --quiet --release --locked -p replbd-ctl -p replbd-node
exec "${CARGO_TARGET_DIR:-$PWD/target}/release/replbd" demo "$@"
