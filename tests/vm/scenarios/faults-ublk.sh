# faults-ublk: replbd-faults through the ublk front end. Three replbd-node daemons on loopback
# serve the resource on /dev/ublkbN (N = node id) while Primary; the workload writes and flushes
# self-describing blocks through the Primary's device with O_DIRECT, the injector kills (a killed
# Primary's host dies with it: its device is deleted, failing the I/O waiting on it), restarts,
# partitions and slows links and fails over; after each epoch every UpToDate replica and the
# Primary's device are read and checked. Every fault kind of the host run is on: disk read and
# write errors come from a debug replbd-node built with the test-only fault-injection feature
# (tests/vm/run puts it at /usr/lib/replbd-faults/), lossy links from nft rules on the proxy ports.
. /vm/helpers.sh

SEED=${FAULTS_SEED:-20261191}
# The suite skips a kind it cannot inject (and counts it as not injected): make sure both work here.
nft "add table inet replbd_probe; add chain inet replbd_probe c; add rule inet replbd_probe c numgen random mod 100 < 1 drop" \
    || fail "nft cannot add a numgen rule in the VM (nf_tables/nft_numgen modules?): lossy links would be skipped"
nft delete table inet replbd_probe
step "replbd-faults --front-end ublk --seconds 50 --seed $SEED"
REPLBD_FAULTS_KEEP_SPLIT_BRAIN=1 REPLBD_FAULTS_LOG=warn replbd-faults --front-end ublk --seconds 50 --epoch-seconds 25 --seed "$SEED" \
    --node-bin /usr/lib/replbd-faults/replbd-node --keep > /data/faults.out 2> /data/faults.err
rc=$?
cat /data/faults.out
# libublk logs a failed reload when the device of a killed node is deleted: expected noise.
grep -v 'device reload json failed' /data/faults.err | tail -20
last=$(tail -1 /data/faults.out)
# On a violation the daemons' logs go to the console, the only thing that leaves the VM.
kept=$(sed -n 's/^logs and disks kept in //p' /data/faults.out)
if [ -n "$kept" ]; then
    for log in "$kept"/*/daemon.log; do
        echo "---- $log"
        grep -E 'role|Primary|Secondary|resync|sync|split|StandAlone|UUID|generation|discard|Outdated|Inconsistent|bitmap' "$log" | tail -${FAULTS_LOG_LINES:-150}
    done
fi
case $last in
    ops_acked=*" violations=0") ;;
    ops_acked=*) fail "replbd-faults found violations through /dev/ublkbN (seed $SEED): $last" ;;
    *) fail "replbd-faults did not finish (status $rc): $(tail -1 /data/faults.err)" ;;
esac
[ "$rc" = 0 ] || fail "replbd-faults exited with status $rc: $last"
# Seed 20261191 fails a Secondary's and the Primary's disk in its first epoch.
stats=$(grep '^epochs=' /data/faults.out)
if [ "$SEED" = 20261191 ]; then
    case $stats in
        *" disk-failure="*"primary-disk-failure="*) ;;
        *) fail "no disk failure was injected (is /usr/lib/replbd-faults/replbd-node built with fault-injection?): $stats" ;;
    esac
fi
acked=$(echo "$last" | sed 's/^ops_acked=\([0-9]*\) .*/\1/')
[ "$acked" -gt 0 ] || fail "no operation was acknowledged through /dev/ublkbN: $last"
echo "through /dev/ublkbN: $last"
