# node-fio-verify: three replbd-node daemons on loopback (file-backed disks with internal metadata,
# initial sync skipped with new-current-uuid --clear-bitmap), one resource with three replicas and
# protocol C, /dev/ublkb0 on the Primary: fio random writes verified with crc32c, then the three
# backing stores' data areas are identical.
. /vm/helpers.sh
. /vm/cluster.sh

cluster_up 64M
promote alpha
node alpha status r0
size=$(blockdev --getsize64 "$DEV")
[ "$size" -gt $((60 << 20)) ] || fail "$DEV has $size bytes"
FIO="fio --filename=$DEV --ioengine=io_uring --direct=1 --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting"
step "fio: 4k random writes over 32 MiB, verify"
$FIO --name=rand4k --rw=randwrite --bs=4k --size=32M > /data/fio1.out 2>&1 || { cat /data/fio1.out; fail "fio 4k randwrite verify failed"; }
grep -q 'err= 0' /data/fio1.out || { cat /data/fio1.out; fail "fio 4k reported an error"; }
fio_summary /data/fio1.out
step "fio: 4k-128k random writes, 2 jobs, verify"
$FIO --name=mixed --rw=randwrite --bsrange=4k-128k --size=16M --numjobs=2 --offset_increment=32M > /data/fio2.out 2>&1 || { cat /data/fio2.out; fail "fio mixed randwrite verify failed"; }
grep -q 'err= 0' /data/fio2.out || { cat /data/fio2.out; fail "fio mixed reported an error"; }
fio_summary /data/fio2.out
step "secondary: the device is stopped and deleted"
node alpha secondary r0 >/dev/null || fail "secondary failed"
wait_until 10 sh -c "! test -e $DEV" || fail "$DEV still exists after secondary"
check_identical
