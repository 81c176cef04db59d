# node-adjust: peers removed and added with `replbd-node adjust` while fio writes and verifies
# through /dev/ublkb0 on the Primary. gamma is taken out of alpha's and beta's configuration
# (adjust: "removed node 2") and brought down, then put back (adjust: "added node 2") and brought
# up: it resyncs while fio goes on. The device is never deleted (one fio run, no error, every block
# verified), the Primary's log shows no front-end restart, and the three data areas end identical.
. /vm/helpers.sh
. /vm/cluster.sh

cluster_up 64M
promote alpha

# adjust_to "NODES" EXPECTED — alpha's and beta's configuration with NODES, applied in place.
adjust_to() {
    NODES=$1
    for _n in alpha beta; do
        write_config "$_n"
        _out=$(node "$_n" adjust r0 2>&1) || { tail -20 "/data/$_n/daemon.log"; fail "adjust r0 on $_n failed: $_out"; }
        [ "$_out" = "$2" ] || fail "adjust r0 on $_n said '$_out', expected '$2'"
    done
    step "alpha, beta: $2"
}

FIO="fio --filename=$DEV --ioengine=io_uring --direct=1 --iodepth=4 --verify=crc32c --verify_fatal=1 --do_verify=1"
step "fio: 4k random writes over 24 MiB with verify, in the background"
$FIO --name=adjust --rw=randwrite --bs=4k --size=24M > /data/fio.out 2>&1 &
fio_pid=$!
sleep 2
kill -0 "$fio_pid" 2>/dev/null || { cat /data/fio.out; fail "fio ended before the peers changed"; }

adjust_to "alpha beta" "r0: removed node 2"
node alpha status r0 | grep -q "gamma" && fail "alpha still lists gamma after adjust"
node gamma down r0 >/dev/null || fail "down r0 on gamma failed"
sleep 1
adjust_to "alpha beta gamma" "r0: added node 2"
node gamma up r0 >/dev/null || fail "up r0 on gamma failed"
kill -0 "$fio_pid" 2>/dev/null && step "fio still running after both changes" ||
    step "note: fio finished before gamma was added back"

wait "$fio_pid" || { cat /data/fio.out; fail "fio failed while the peers changed"; }
grep -q 'err= 0' /data/fio.out || { cat /data/fio.out; fail "fio reported an error"; }
fio_summary /data/fio.out
for n in alpha beta gamma; do wait_established "$n" 120; done
grep -qi "restarting\|front end stopped" /data/alpha/daemon.log && {
    grep -i "restarting\|front end stopped" /data/alpha/daemon.log
    fail "alpha's front end was restarted"
}
node alpha secondary r0 >/dev/null || fail "secondary failed"
wait_until 10 sh -c "! test -e $DEV" || fail "$DEV still exists after secondary"
for n in alpha beta gamma; do
    echo "$n:"; grep -h "handshake decision\|resync-finished\|peers adjusted" "/data/$n/daemon.log" | sed 's/^/  /'
done
check_identical
