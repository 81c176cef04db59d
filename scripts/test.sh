#!/usr/bin/env bash
# Runs replbd's whole test suite on a fresh machine: installs what the tests need, then runs them.
# Usage: scripts/test.sh            (from anywhere in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the build and the tests use (libclang for libublk's bindgen, qemu and tools for
# the VM suite). Installed only when missing (needs root or sudo).
./scripts/install-deps.sh

# Unit, property, crash, corruption and CLI tests of every crate.
# The crash tests run 5,000 seeded crash schedules here (1,000 by default).
REPLBD_CRASH_SEEDS="${REPLBD_CRASH_SEEDS:-5000}" cargo test --workspace --locked

# Deterministic simulation: 10,000 seeded schedules of partitions, crashes, promotions and writes,
# checking the quorum and split-brain invariants (docs/simulation.md). It reuses the binary the tests
# just built (dev profile, about 8 s); it ends with "schedules=N violations=V" and fails on a violation.
cargo run --quiet --locked -p replbd-sim -- --seeds "${REPLBD_SIM_SEEDS:-10000}"

# The VM suite: real /dev/ublkbN devices inside a qemu VM (this machine's kernel has no ublk).
# It ends with "vm-suite: N passed, M failed" and fails the run on any failed scenario.
./tests/vm/run

# The benchmarks must keep working: a short smoke run (its figures are not judged here).
cargo run --quiet --release --locked -p replbd-bench -- bitmap --quick >/dev/null
echo "scripts/test.sh: all tests passed"
