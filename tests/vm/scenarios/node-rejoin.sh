# node-rejoin: the Primary (alpha) dies after writing two activity-log extents' worth; beta takes
# over and writes 1 MiB more; alpha's daemon comes back and `up r0` resyncs only what differs —
# alpha's two 4 MiB activity-log extents and beta's 1 MiB, 9 MiB of the 64 MiB volume (read from
# the resync event of `replbd-node events`) — and the three replicas end identical.
. /vm/helpers.sh
. /vm/cluster.sh

cluster_up 64M
promote alpha
dd if=/dev/urandom of=/data/p1 bs=1M count=1 2>/dev/null
dd if=/dev/urandom of=/data/p2 bs=512k count=1 2>/dev/null
dd if=/data/p1 of="$DEV" bs=1M seek=0 oflag=direct conv=fsync 2>/dev/null || fail "write at 0 failed"
dd if=/data/p2 of="$DEV" bs=512k seek=16 oflag=direct conv=fsync 2>/dev/null || fail "write at 8M failed"

kill_node alpha KILL
host_died alpha
wait_until 30 peer_gone beta alpha || fail "beta did not notice alpha is gone"
promote beta
[ "$(dd if="$DEV" bs=1M count=1 iflag=direct 2>/dev/null | md5)" = "$(md5 /data/p1)" ] || fail "beta lacks alpha's write at 0"
[ "$(dd if="$DEV" bs=512k skip=16 count=1 iflag=direct 2>/dev/null | md5)" = "$(md5 /data/p2)" ] || fail "beta lacks alpha's write at 8M"
dd if=/dev/urandom of=/data/p3 bs=1M count=1 2>/dev/null
dd if=/data/p3 of="$DEV" bs=1M seek=16 oflag=direct conv=fsync 2>/dev/null || fail "write at 16M on beta failed"
node beta status r0

step "alpha rejoins"
start_node alpha
node alpha events > /data/alpha-events.log 2>&1 &
EVENTS_PID=$!
wait_until 10 grep -q '^exists -' /data/alpha-events.log || fail "no events from alpha"
out=$(node alpha up r0) || fail "up on alpha failed: $out"
echo "$out"
echo "$out" | grep -q "unavailable: /dev/ublkb0 already exists and is not this resource's" ||
    fail "alpha's up did not notice beta's device 0: $out"
wait_until 60 grep -q '^change resync name:r0 .*replication:SyncTarget' /data/alpha-events.log || { cat /data/alpha-events.log; fail "no resync into alpha"; }
wait_established alpha 60
sleep 1
kill "$EVENTS_PID"
grep '^change resync ' /data/alpha-events.log
# beta (the Primary) or gamma (which learned from beta's peer acks what alpha missed) serves it:
# what counts is the total alpha received.
bytes=$(grep '^change resync name:r0 .*replication:SyncTarget' /data/alpha-events.log |
    sed -n 's/.* bytes:\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
echo "partial resync: alpha received $bytes bytes ($((bytes >> 20)) MiB of 64 MiB)"
[ "$bytes" = $((9 << 20)) ] || fail "the resyncs moved $bytes bytes, expected 9 MiB (two 4 MiB activity-log extents + 1 MiB)"
node alpha status r0
node beta secondary r0 >/dev/null || fail "secondary on beta failed"
for n in $NODES; do wait_established "$n"; done
check_identical
[ "$(dd if=/data/alpha/r0.img bs=1M skip=16 count=1 2>/dev/null | md5)" = "$(md5 /data/p3)" ] || fail "alpha lacks beta's write"
