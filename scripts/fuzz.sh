#!/usr/bin/env bash
# Runs replbd's fuzz targets (wire frames, metadata, NBD requests, node configuration):
#   1. the stable smoke runner: every committed seed, then seeded mutations, REPLBD_FUZZ_SECONDS
#      (default 10) per target — runs on any machine;
#   2. libFuzzer (coverage-guided, needs a nightly toolchain with cargo-fuzz), REPLBD_LIBFUZZER_SECONDS
#      (default 10, 0 to skip) per target — skipped with the reason when not installed.
# Either fails the script on a crash, printing the input's file to replay it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo run --quiet --locked -p replbd-fuzz-checks --bin replbd-fuzz-smoke -- \
    --seconds-per-target "${REPLBD_FUZZ_SECONDS:-10}"

seconds="${REPLBD_LIBFUZZER_SECONDS:-10}"
if [ "$seconds" = "0" ]; then
    echo "scripts/fuzz.sh: libFuzzer runs skipped: REPLBD_LIBFUZZER_SECONDS=0"
elif ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: libFuzzer runs skipped: no nightly toolchain with cargo-fuzz (install: rustup toolchain install nightly && cargo install cargo-fuzz)"
else
    cd fuzz
    cargo +nightly fuzz build
    for target in frame_decoder metadata_parsers nbd_parser node_config; do
        mkdir -p "corpus/$target"
        # The committed seeds start the corpus on a fresh machine.
        if [ -f "../tests/fuzz-checks/seeds/$target.hex" ] && [ -z "$(ls -A "corpus/$target")" ]; then
            n=0
            grep -v '^#' "../tests/fuzz-checks/seeds/$target.hex" | while read -r line; do
                n=$((n + 1))
                printf '%b' "$(printf '%s' "$line" | sed 's/../\\x&/g')" >"corpus/$target/seed-$n"
            done
        fi
        out=$(cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" 2>&1) || {
            echo "$out" | tail -n 40
            echo "scripts/fuzz.sh: libFuzzer found a crash in $target (input saved under fuzz/artifacts/$target)" >&2
            exit 1
        }
        echo "scripts/fuzz.sh: libFuzzer $target: $(echo "$out" | grep -E '^Done [0-9]+ runs' | tail -n 1)"
    done
fi
