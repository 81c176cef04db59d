#!/usr/bin/env bash
# Runs replbd's whole test suite on a fresh machine: installs what the tests need, then runs them.
# Usage: scripts/test.sh            (from anywhere in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the build and the tests use (libclang for libublk's bindgen, qemu-io, etcd, qemu
# and tools for the VM suite). Installed only when missing (needs root or sudo).
./scripts/install-deps.sh

# Unit, property, crash, corruption and CLI tests of every crate, and the controller's cluster
# tests with real processes (a controller, node daemons, etcd for the HA store: a missing etcd fails
# the run here instead of skipping that test).
# The crash tests run 5,000 seeded crash schedules here (1,000 by default).
REPLBD_CRASH_SEEDS="${REPLBD_CRASH_SEEDS:-5000}" REPLBD_REQUIRE_ETCD=1 cargo test --workspace --locked

# The README's main job, `replbd demo`, with the binaries the tests just built: its last line must
# be "demo: ok".
demo_log=$(mktemp "${TMPDIR:-/tmp}/replbd-test-demo.XXXXXX")
if "${CARGO_TARGET_DIR:-target}/debug/replbd" demo >"$demo_log" 2>&1 && [ "$(tail -n 1 "$demo_log")" = "demo: ok" ]; then
    grep '^demo: finished' "$demo_log" || true
    rm -f "$demo_log"
else
    cat "$demo_log"
    echo "scripts/test.sh: replbd demo failed (output above, kept in $demo_log)" >&2
    exit 1
fi

# Deterministic simulation: 10,000 seeded schedules of partitions, crashes, promotions and writes,
# checking the quorum and split-brain invariants (docs/simulation.md). It reuses the binary the tests
# just built (dev profile, about 8 s); it ends with "schedules=N violations=V" and fails on a violation.
cargo run --quiet --locked -p replbd-sim -- --seeds "${REPLBD_SIM_SEEDS:-10000}"

# Fuzz targets for what faces untrusted input (wire frames, metadata, NBD requests, node
# configuration): the stable smoke runner (seeds, then mutations, 10 s per target), then libFuzzer
# for 10 s per target where a nightly toolchain with cargo-fuzz is installed (skipped with the
# reason otherwise). Fails on any crash (tests/fuzz-checks/README.md).
./scripts/fuzz.sh

# Fault injection against three real replbd-node daemons through their NBD front end: kill -9 and
# clean restarts of any node (the Primary included), partitions that isolate the Primary or a
# Secondary, cut, flapping and slow links, and failovers by an HA agent (docs/reliability.md).
# 90 s of faults with a fixed seed (REPLBD_FAULTS_SEED to change it), about 100 s in all, with the
# binaries the tests just built. It ends with "ops_acked=A faults=F violations=V" and fails the run
# on any violation, printing the seed and the schedule to replay it.
REPLBD_FAULTS_LOG="${REPLBD_FAULTS_LOG:-warn}" cargo run --quiet --locked -p replbd-faults -- --seconds "${REPLBD_FAULTS_SECONDS:-90}" --seed "${REPLBD_FAULTS_SEED:-20261122}"

# The VM suite: real /dev/ublkbN devices inside a qemu VM (this machine's kernel has no ublk).
# It ends with "vm-suite: N passed, M failed" and fails the run on any failed scenario.
./tests/vm/run

# The benchmarks must keep working: a short smoke run (its figures are not judged here).
cargo run --quiet --release --locked -p replbd-bench -- bitmap --quick >/dev/null
echo "scripts/test.sh: all tests passed"
