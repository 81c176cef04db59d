#!/usr/bin/env bash
# Installs the Debian packages replbd's build and tests need, only those missing (needs root or sudo).
#   libclang-dev             libublk's -sys crate runs bindgen at build time (before clippy can run)
#   qemu-utils               qemu-io: `replbd demo` and the NBD tests write and verify data with it
#   etcd-server              the controller's etcd store test starts a real etcd
#   qemu-system-x86 busybox-static cpio
#                            the VM suite (tests/vm/run): a Debian kernel with ublk_drv under qemu TCG
#   fio e2fsprogs            tools the VM scenarios run inside the VM
#   nftables                 replbd-faults cuts the network between nodes with nft rules
# Usage: scripts/install-deps.sh          everything (the build, every test, the VM suite)
#        scripts/install-deps.sh --demo   only what building and running `replbd demo` needs
set -euo pipefail

case "${1:-}" in
    "") PACKAGES=(libclang-dev qemu-utils etcd-server qemu-system-x86 busybox-static cpio fio e2fsprogs nftables) ;;
    --demo) PACKAGES=(libclang-dev qemu-utils) ;;
    *) echo "usage: $0 [--demo]" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
