# ublk-fio-verify: fio random writes at queue depth 16 through io_uring, each block verified
# with crc32c, with fixed and mixed request sizes.
. /vm/helpers.sh

start_serve fio add --file /data/fio.img --size 128MiB --queues 2 --depth 32 --id 0
FIO="fio --filename=$DEV --ioengine=io_uring --direct=1 --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting"
step "4k random writes, verify"
$FIO --name=rand4k --rw=randwrite --bs=4k --size=48M > /data/fio1.out 2>&1 || { cat /data/fio1.out; fail "fio 4k randwrite verify failed"; }
grep -q 'err= 0' /data/fio1.out || { cat /data/fio1.out; fail "fio 4k reported an error"; }
grep -E 'IOPS=|lat \(usec\): min' /data/fio1.out | head -3
step "4k-128k random writes, 2 jobs, verify"
$FIO --name=mixed --rw=randwrite --bsrange=4k-128k --size=32M --numjobs=2 --offset_increment=48M > /data/fio2.out 2>&1 || { cat /data/fio2.out; fail "fio mixed-size randwrite verify failed"; }
grep -q 'err= 0' /data/fio2.out || { cat /data/fio2.out; fail "fio mixed reported an error"; }
grep -E 'IOPS=' /data/fio2.out | head -2
stop_serve
# Each queue logs the most requests it had executing on the volume at once: with fio at depth 16
# they must overlap, not run one after another.
grep 'queue stopped' /data/fio.err
max=$(grep -o 'max_in_flight=[0-9]*' /data/fio.err | cut -d= -f2 | sort -n | tail -1)
[ "${max:-0}" -ge 4 ] || fail "a queue never had more than ${max:-0} requests in flight at depth 16"
