# ublk-discard-zeroes: DISCARD and WRITE_ZEROES reach the volume: util-linux blkdiscard (busybox's
# has no --zeroout) on ranges of a device filled with random data; the ranges read back as
# zeroes through the device and in the backing file, discard punched holes, and the neighbours
# are untouched.
. /vm/helpers.sh

start_serve dz add --file /data/dz.img --size 64MiB --queues 1 --depth 16 --id 0
q=/sys/block/$(basename "$DEV")/queue
[ "$(cat $q/discard_max_bytes)" -gt 0 ] || fail "the device does not advertise discard"
[ "$(cat $q/write_zeroes_max_bytes)" -gt 0 ] || fail "the device does not advertise write-zeroes"

dd if=/dev/urandom of=/data/pattern bs=1M count=64 2>/dev/null
dd if=/data/pattern of="$DEV" bs=1M oflag=direct conv=fsync 2>/dev/null || fail "filling the device failed"
used_full=$(du -k /data/dz.img | cut -f1)

zeroes() { dd if=/dev/zero bs=1M count="$1" 2>/dev/null | md5; }
region() { dd if="$1" bs=1M skip="$2" count="$3" $4 2>/dev/null | md5; }

step "blkdiscard 1MiB+4MiB"
/usr/sbin/blkdiscard -o 1MiB -l 4MiB "$DEV" || fail "blkdiscard failed"
step "blkdiscard --zeroout 8MiB+2MiB"
/usr/sbin/blkdiscard -z -o 8MiB -l 2MiB "$DEV" || fail "blkdiscard -z failed"

[ "$(region "$DEV" 1 4 iflag=direct)" = "$(zeroes 4)" ] || fail "discarded range does not read back as zeroes"
[ "$(region "$DEV" 8 2 iflag=direct)" = "$(zeroes 2)" ] || fail "zeroed range does not read back as zeroes"
[ "$(region /data/dz.img 1 4)" = "$(zeroes 4)" ] || fail "discarded range is not zero in the backing file"
[ "$(region /data/dz.img 8 2)" = "$(zeroes 2)" ] || fail "zeroed range is not zero in the backing file"
for r in "0 1" "5 3" "10 54"; do
    set -- $r
    [ "$(region "$DEV" $1 $2 iflag=direct)" = "$(region /data/pattern $1 $2)" ] || fail "data next to the discarded ranges changed (MiB $1+$2)"
done
used_after=$(du -k /data/dz.img | cut -f1)
echo "backing file blocks: ${used_full} KiB full, ${used_after} KiB after discard"
[ "$used_after" -le $((used_full - 4096)) ] || fail "discard did not free space in the backing file (${used_full} -> ${used_after} KiB)"
stop_serve
