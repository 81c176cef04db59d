#!/usr/bin/env bash
# Fetches the Debian cloud kernel the VM suite boots, and caches it unpacked.
# Usage: tests/vm/lib/kernel.sh CACHE_DIR
# Prints the unpacked root (ROOT/boot/vmlinuz-*, ROOT/lib/modules/*/kernel/drivers/block/ublk_drv.ko.xz).
#
# The kernel is the versioned package behind a meta-package: the first of $VM_KERNEL_META (default
# "linux-image-6.12-cloud-amd64 linux-image-cloud-amd64") that apt knows. On Debian 12 the first is
# 6.12 from bookworm-security; on Debian 13 the second is 6.12. The ublk front end needs >= 6.5.
# A later run reuses the cached package; with no apt metadata at all it falls back to the newest
# kernel already in the cache.
set -euo pipefail
CACHE=$1
mkdir -p "$CACHE"
log() { echo "vm-kernel: $*" >&2; }

resolve() {
    local meta pkg
    for meta in ${VM_KERNEL_META:-linux-image-6.12-cloud-amd64 linux-image-cloud-amd64}; do
        pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
        if [ -n "$pkg" ]; then
            echo "$pkg"
            return 0
        fi
    done
    return 1
}

pkg=$(resolve || true)
if [ -z "$pkg" ] && ! ls -d "$CACHE"/linux-image-*/boot >/dev/null 2>&1; then
    log "no kernel meta-package known to apt yet: running apt-get update"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    pkg=$(resolve || true)
fi
if [ -z "$pkg" ]; then
    # Offline, with a kernel cached by an earlier run.
    root=$(ls -d "$CACHE"/linux-image-* 2>/dev/null | sort -V | tail -1)
    [ -n "$root" ] || { log "cannot find a Debian cloud kernel package (tried: ${VM_KERNEL_META:-linux-image-6.12-cloud-amd64 linux-image-cloud-amd64})"; exit 1; }
    log "apt does not know the kernel package; using cached $(basename "$root")"
    echo "$root"
    exit 0
fi

root="$CACHE/$pkg"
if [ ! -f "$root/.unpacked" ]; then
    tmp=$(mktemp -d "$CACHE/.download.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    log "downloading $pkg"
    # apt drops privileges to _apt for downloads; give it a directory it can write.
    chmod 777 "$tmp"
    (cd "$tmp" && apt-get download -qq "$pkg" 2>&1 | grep -v 'unsandboxed' >&2 || true)
    deb=$(ls "$tmp"/*.deb 2>/dev/null | head -1)
    [ -n "$deb" ] || { log "apt-get download $pkg failed"; exit 1; }
    rm -rf "$root"
    mkdir -p "$root"
    dpkg -x "$deb" "$root"
    ls "$root"/boot/vmlinuz-* >/dev/null
    ls "$root"/lib/modules/*/kernel/drivers/block/ublk_drv.ko* >/dev/null
    touch "$root/.unpacked"
    log "cached $pkg in $root"
fi
echo "$root"
