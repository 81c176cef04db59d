#!/usr/bin/env bash
# Builds the VM suite's initramfs (an uncompressed newc cpio).
# Usage: tests/vm/lib/mkinitrd.sh OUT.cpio KERNEL_ROOT INIT [ITEM...]
#   ITEM is one of
#     mod:NAME          a kernel module (decompressed; its dependencies first), loaded by init in order
#     bin:PATH[=DEST]   a host binary and its ldd closure (at DEST, else at PATH)
#     file:SRC=DEST     a plain file
# The image holds busybox-static (its applets installed into /bin by init), /sbin -> usr/sbin so
# that /sbin/mke2fs is e2fsprogs' and not busybox's applet, and /vm/modules (load order).
set -euo pipefail
OUT=$1 KROOT=$2 INIT=$3
shift 3
MODDIR=$(ls -d "$KROOT"/lib/modules/*/kernel | head -1)
R=$(mktemp -d "${TMPDIR:-/tmp}/replbd-initrd.XXXXXX")
trap 'rm -rf "$R"' EXIT
chmod 755 "$R" # mktemp -d is 0700: "/" would be unusable for anything but root in the VM
mkdir -p "$R"/{bin,usr/bin,usr/sbin,proc,sys,dev,tmp,data,run,etc,root,var/lock,vm/modules}
ln -s usr/sbin "$R/sbin"
cp /bin/busybox "$R/bin/busybox"
[ "$(head -c 4 /bin/busybox | tail -c 3)" = "ELF" ] || { echo "mkinitrd: /bin/busybox is not a binary" >&2; exit 1; }
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
touch "$R/vm/modules.order"

copy_with_libs() { # SRC DEST
    local src=$1 dest=$2 lib
    mkdir -p "$R$(dirname "$dest")"
    cp -L "$src" "$R$dest"
    ldd "$src" 2>/dev/null | grep -oE '/[^ ]+' | while read -r lib; do
        [ -e "$R$lib" ] || cp -L --parents "$lib" "$R/" 2>/dev/null || true
    done
}

add_module() { # NAME: module and, first, what it depends on
    local name=$1 ko deps dep
    grep -qx "$name" "$R/vm/modules.order" && return 0
    ko=$(find "$MODDIR" -name "$name.ko*" | head -1)
    [ -n "$ko" ] || { echo "mkinitrd: no module $name in $MODDIR" >&2; exit 1; }
    case $ko in
        *.xz) xz -dc "$ko" > "$R/vm/modules/$name.ko" ;;
        *.zst) zstd -qdc "$ko" > "$R/vm/modules/$name.ko" ;;
        *) cp "$ko" "$R/vm/modules/$name.ko" ;;
    esac
    deps=$(tr '\0' '\n' < "$R/vm/modules/$name.ko" | sed -n 's/^depends=//p' | tr ',' ' ')
    for dep in $deps; do add_module "$dep"; done
    echo "$name" >> "$R/vm/modules.order"
}

for item in "$@"; do
    case $item in
        mod:*) add_module "${item#mod:}" ;;
        bin:*=*) spec=${item#bin:}; copy_with_libs "${spec%%=*}" "${spec#*=}" ;;
        bin:*) copy_with_libs "${item#bin:}" "${item#bin:}" ;;
        file:*=*) spec=${item#file:}; mkdir -p "$R$(dirname "${spec#*=}")"; cp -L "${spec%%=*}" "$R${spec#*=}" ;;
        *) echo "mkinitrd: unknown item $item" >&2; exit 1 ;;
    esac
done
install -m 755 "$INIT" "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet) > "$OUT"
