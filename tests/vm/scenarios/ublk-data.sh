# ublk-data: a file-backed device returns exactly what was written, with 512 and 4096-byte
# logical blocks: 32 MiB of random data written with O_DIRECT, read back, compared by checksum,
# and found in the backing file after a clean stop.
. /vm/helpers.sh

$SERVE features || fail "replbd-ublk-serve features failed"

dd if=/dev/urandom of=/data/pattern bs=1M count=32 2>/dev/null
want=$(md5 /data/pattern)
for bs in 512 4096; do
    step "logical block size $bs"
    start_serve data$bs add --file /data/vol$bs --size 64MiB --queues 2 --depth 32 --block-size $bs --id 0
    got_bs=$(blockdev --getss "$DEV")
    [ "$got_bs" = $bs ] || fail "logical block size is $got_bs, expected $bs"
    size=$(blockdev --getsize64 "$DEV")
    [ "$size" = 67108864 ] || fail "device size is $size, expected 67108864"

    # At 4 MiB into the device, so a wrong offset cannot go unnoticed.
    dd if=/data/pattern of="$DEV" bs=1M seek=4 oflag=direct conv=fsync 2>/dev/null || fail "O_DIRECT write of the pattern failed (bs $bs)"
    got=$(dd if="$DEV" bs=1M skip=4 count=32 iflag=direct 2>/dev/null | md5)
    [ "$got" = "$want" ] || fail "read back $got, wrote $want (bs $bs)"
    head=$(dd if="$DEV" bs=1M count=4 iflag=direct 2>/dev/null | md5)
    zero=$(dd if=/dev/zero bs=1M count=4 2>/dev/null | md5)
    [ "$head" = "$zero" ] || fail "the first 4 MiB changed (bs $bs)"
    # A small request: one logical block just past 40 MiB (after the pattern).
    blk=$(( (40 << 20) / bs + 1 ))
    dd if=/data/pattern of="$DEV" bs=$bs count=1 seek=$blk oflag=direct 2>/dev/null || fail "single-block write failed (bs $bs)"
    one=$(dd if="$DEV" bs=$bs count=1 skip=$blk iflag=direct 2>/dev/null | md5)
    [ "$one" = "$(dd if=/data/pattern bs=$bs count=1 2>/dev/null | md5)" ] || fail "single-block read back differs (bs $bs)"

    stop_serve
    file=$(dd if=/data/vol$bs bs=1M skip=4 count=32 2>/dev/null | md5)
    [ "$file" = "$want" ] || fail "the backing file does not hold the pattern after stop (bs $bs)"
done

step "del from another process stops the server and removes the device"
start_serve del add --file /data/vol512 --id 0
timeout 30 $SERVE del --id 0 || fail "replbd-ublk-serve del failed or hung"
wait_until 30 sh -c "! kill -0 $SERVE_PID" || fail "the server did not exit after its device was deleted"
wait "$SERVE_PID"
rc=$?
[ "$rc" = 0 ] || { cat /data/del.err; fail "the server exited with status $rc after its device was deleted"; }
[ -e "$DEV" ] && fail "$DEV still exists after del"
out=$($SERVE del --id 0 2>&1) && fail "del of a missing device succeeded"
echo "$out" | grep -q "there is no ublk device 0" || fail "unexpected error for a missing device: $out"
