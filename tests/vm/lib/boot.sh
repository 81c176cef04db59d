#!/usr/bin/env bash
# Boots the VM once and writes its serial console, cleaned of carriage returns and terminal escapes,
# to a file. Shared by the VM suite (tests/vm/run) and the VM benchmarks (bench/vm/run).
# Usage: tests/vm/lib/boot.sh KERNEL INITRD CONSOLE TIMEOUT_S [KERNEL ARGS...]
#   VM_MEM=MiB   memory (default 2048)
# Exit status: qemu's (124 when TIMEOUT_S passed first).
#
# TCG, not KVM: KVM does not boot this kernel on the build machines. Two vCPUs, no network (the
# replicas talk over the VM's loopback).
set -euo pipefail
KERNEL=$1 INITRD=$2 CONSOLE=$3 TIMEOUT=$4
shift 4
set +e
timeout --foreground -k 10 "$TIMEOUT" qemu-system-x86_64 \
    -accel tcg -cpu max -m "${VM_MEM:-2048}" -smp 2 -nographic -no-reboot -nic none \
    -kernel "$KERNEL" -initrd "$INITRD" \
    -append "console=ttyS0 panic=-1 quiet $*" \
    < /dev/null 2>&1 | tr -d '\r' | sed -u 's/\x1b\[[0-9;?]*[a-zA-Z]//g' > "$CONSOLE"
exit "${PIPESTATUS[0]}"
