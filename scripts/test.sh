#!/usr/bin/env bash
# Runs replbd's whole test suite on a fresh machine: installs what the tests need, then runs them.
# Usage: scripts/test.sh            (from anywhere in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use. Installed only when missing (needs root or sudo).
PACKAGES=(qemu-utils)  # qemu-io, qemu-img: real NBD clients for replbd-node's tests
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Unit, property, crash, corruption and CLI tests of every crate.
# The crash tests run 5,000 seeded crash schedules here (1,000 by default).
REPLBD_CRASH_SEEDS="${REPLBD_CRASH_SEEDS:-5000}" cargo test --workspace --locked

# The benchmarks must keep working: a short smoke run (its figures are not judged here).
cargo run --quiet --release --locked -p replbd-bench -- bitmap --quick >/dev/null
echo "scripts/test.sh: all tests passed"
