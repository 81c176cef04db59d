# ctl-demo-ublk: `replbd demo` on a kernel with ublk. The controller places a 3-replica resource on
# three node daemons; the Primary serves it as /dev/ublkbN, N being the volume's minor (the first of
# MinorNrAutoRange, 1000); the demo writes and reads back through it with O_DIRECT, stops a node,
# writes more, lets the node resync, moves the Primary to it and reads everything back there. After
# the demo no ublk device is left.
. /vm/helpers.sh

log=/data/demo.log
step "replbd demo"
if ! TMPDIR=/data replbd demo --size 32MiB >"$log" 2>&1; then
    cat "$log"
    fail "replbd demo failed"
fi
cat "$log"
[ "$(tail -n 1 "$log")" = "demo: ok" ] || fail "the demo did not end with 'demo: ok'"
grep -q "the nodes may use ublk" "$log" || fail "the demo did not take the ublk path"
grep -q '/dev/ublkb1000' "$log" || fail "the volume was not served as /dev/ublkb1000"
grep -q "of /dev/ublkb1000 (O_DIRECT) and check every byte is 0xcd" "$log" || fail "the resynced node's data was not read through /dev/ublkb1000"
grep -q "every byte is 0xcd" "$log" || fail "the data written while a node was down did not read back"
[ ! -e /dev/ublkb1000 ] || fail "/dev/ublkb1000 is left after the demo"
