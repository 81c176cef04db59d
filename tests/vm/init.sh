#!/bin/busybox sh
# PID 1 of the VM suite: mounts the basics, loads the modules listed in /vm/modules.order, runs
# every /vm/scenarios/*.sh in name order and prints one result line per scenario on the console:
#   vm-scenario NAME: ok (T s)            or    vm-scenario NAME: FAIL REASON (T s)
# then "vm-done" and powers off. Kernel command line: vm.timeout=SECONDS per scenario (default 240).
# A scenario's output is echoed with the prefix "  [NAME] ".
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/bin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# libublk writes /run/ublksrvd/N.json; /data holds backing files (the rootfs has no size limit).
mount -t tmpfs tmpfs /run
mount -t tmpfs -o size=1200m tmpfs /data
ip link set lo up 2>/dev/null
while read -r m; do
    insmod "/vm/modules/$m.ko" || echo "vm-init: insmod $m failed"
done < /vm/modules.order

uptime_s() { cut -d' ' -f1 /proc/uptime; }
timeout=$(sed -n 's/.*vm\.timeout=\([0-9]*\).*/\1/p' /proc/cmdline)
: "${timeout:=240}"

# Leaves nothing of one scenario to the next: its daemons, mounts, servers and ublk devices, its files.
reset_state() {
    for p in $(pidof replbd-node 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    # Deletes run in the background: a device whose server died fails its waiting I/O on delete,
    # but the delete completes only after a filesystem on it is unmounted (which waits for that I/O).
    dels=""
    for c in /sys/class/ublk-char/ublkc*; do
        [ -e "$c" ] || continue
        id=${c##*ublkc}
        echo "vm-init: deleting leftover ublk device $id"
        (timeout 30 replbd-ublk-serve del --id "$id" >/dev/null 2>&1 || echo "vm-init: cannot delete ublk device $id") &
        dels="$dels $!"
    done
    for m in $(awk '$2 ~ /^\/data\// {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
    for d in $dels; do wait "$d"; done
    for p in $(pidof replbd-ublk-serve fio 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    rm -rf /data/* /tmp/vm-result
}

echo "vm-booted kernel=$(uname -r) uptime=$(uptime_s)s"
for s in /vm/scenarios/*.sh; do
    [ -e "$s" ] || continue
    name=$(basename "$s" .sh)
    t0=$(uptime_s)
    (cd /data && VM_RESULT=/tmp/vm-result VM_SCENARIO="$name" timeout "$timeout" sh "$s") > "/tmp/$name.log" 2>&1
    rc=$?
    t1=$(uptime_s)
    sed "s/^/  [$name] /" "/tmp/$name.log"
    dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    if [ "$rc" = 0 ]; then
        echo "vm-scenario $name: ok (${dt} s)"
    else
        reason=$(head -1 /tmp/vm-result 2>/dev/null)
        if [ -z "$reason" ]; then
            if awk -v d="$dt" -v t="$timeout" 'BEGIN { exit !(d + 1 >= t) }'; then
                reason="timed out after ${timeout} s"
            else
                reason="exited with status $rc"
            fi
        fi
        echo "vm-scenario $name: FAIL $reason (${dt} s)"
    fi
    reset_state
done
echo "vm-done uptime=$(uptime_s)s"
sync
poweroff -f
