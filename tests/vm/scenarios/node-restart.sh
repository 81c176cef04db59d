# node-restart: the Primary's replbd-node is killed (SIGKILL) while fio writes and verifies through
# /dev/ublkb0; the device stays and fio waits. A new daemon is started and `up r0` finds the device
# with I/O waiting: once the peers are back and the activity-log resync is done it promotes and
# re-attaches (ublk user recovery, re-issue mode), and fio finishes without an error. Then the same
# with a deliberate detach (SIGUSR1, an upgrade in place) and `daemon --up-all`.
#
# fio verifies as it goes (verify_backlog) and a read pass checks every block after each run; the
# completion latencies fio reports show the outage as their maximum. Afterwards the replicas are
# identical.
. /vm/helpers.sh
. /vm/cluster.sh

cluster_up 64M
promote alpha
FIO_COMMON="--filename=$DEV --ioengine=io_uring --direct=1 --iodepth=16 --bs=4k --size=32M --verify=crc32c --verify_fatal=1"
step "pre-fill 32 MiB with verifiable blocks"
fio --name=prefill $FIO_COMMON --rw=write --do_verify=0 > /data/prefill.out 2>&1 || { cat /data/prefill.out; fail "pre-fill failed"; }

run_fio() { # NAME SECONDS
    fio --name="$1" $FIO_COMMON --rw=randwrite --time_based --runtime="$2" \
        --do_verify=1 --verify_backlog=512 > "/data/$1.out" 2>&1 &
    FIO_PID=$!
}

# restart SIGNAL NAME [DAEMON ARGS] — waits for fio to write 4 MiB, stops alpha's daemon with
# SIGNAL, checks the device and fio wait, then starts a new daemon (with `up r0` unless --up-all).
restart() {
    _sig=$1 _name=$2
    shift 2
    before=$(sectors_written "$DEV")
    wait_until 60 sh -c "[ \$(awk '{print \$7}' /sys/block/ublkb0/stat) -gt $((before + 8192)) ]" || fail "fio made no progress before SIG$_sig"
    kill_node alpha "$_sig"
    t0=$(cut -d' ' -f1 /proc/uptime)
    # The handshake must find a crashed Primary, whose activity-log extents the survivors resync.
    flags=$(replbd-meta dump --json /data/alpha/r0.img | tr -d '\n ' | sed -n 's/.*"flags":\[\([^]]*\)\].*"clean".*/\1/p')
    echo "alpha's metadata flags after SIG$_sig: $flags"
    echo "$flags" | grep -q crashed-primary || fail "alpha's metadata does not say crashed-primary after SIG$_sig"
    [ -b "$DEV" ] || fail "$DEV disappeared when the daemon died (SIG$_sig)"
    kill -0 "$FIO_PID" 2>/dev/null || { cat "/data/$_name.out"; fail "fio ended while the daemon was down (SIG$_sig)"; }
    start_node alpha "$@"
    if [ "$*" != "--up-all" ]; then
        out=$(node alpha up r0) || fail "up r0 failed after SIG$_sig: $out"
        echo "$out"
        echo "$out" | grep -q "/dev/ublkb0 has I/O waiting" || fail "up did not find the waiting device: $out"
    fi
    node alpha status r0
    wait_until 120 serving alpha ||
        { node alpha status r0; tail -30 /data/alpha/daemon.log; fail "the device was not re-attached after SIG$_sig"; }
    t1=$(cut -d' ' -f1 /proc/uptime)
    step "re-attached $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s after SIG$_sig"
    # What the new daemon did: the handshake, the activity-log resync, the re-attach.
    sed -n "$(grep -n 'replbd-node starting' /data/alpha/daemon.log | tail -1 | cut -d: -f1),\$p" /data/alpha/daemon.log |
        grep -E 'not closed cleanly|handshake decision|resync finished|re-attached' | sed 's/^[^ ]* *//' | cut -c1-300
}

finish_fio() { # NAME
    wait "$FIO_PID"
    rc=$?
    [ "$rc" = 0 ] || { cat "/data/$1.out"; fail "fio exited with status $rc after the restart ($1)"; }
    grep -q 'err= 0' "/data/$1.out" || { cat "/data/$1.out"; fail "fio reported an error after the restart ($1)"; }
    issued=$(sed -n 's/.*issued rwts: total=\([0-9]*\),\([0-9]*\),.*/\1 \2/p' "/data/$1.out")
    set -- "$1" $issued
    echo "$1: $3 writes, $2 verified by read-back; completion latencies (the outage is the max):"
    grep -E '^ +clat \(' "/data/$1.out"
    [ "$2" -gt 0 ] && [ "$2" -ge $(($3 - 1024)) ] || { cat "/data/$1.out"; fail "fio verified only $2 of $3 writes ($1)"; }
    fio --name="$1-check" $FIO_COMMON --rw=read > "/data/$1-check.out" 2>&1 || { cat "/data/$1-check.out"; fail "read verification of the whole region failed after $1"; }
    echo "$1: every block of the 32 MiB region verified"
}

step "crash: SIGKILL of alpha's daemon during fio, new daemon, up r0"
run_fio crash 12
restart KILL crash
finish_fio crash
wait_established alpha
no_bits_left() { ! node alpha status r0 | grep -q 'out-of-sync:'; }
wait_until 30 no_bits_left || { node alpha status r0; fail "blocks stay out of sync after the crash"; }

step "upgrade in place: SIGUSR1 (detach) during fio, new daemon with --up-all"
run_fio detach 8
restart USR1 detach --up-all
finish_fio detach
wait_established alpha
wait_until 30 no_bits_left || { node alpha status r0; fail "blocks stay out of sync after the detach"; }

node alpha secondary r0 >/dev/null || fail "secondary failed"
for n in $NODES; do wait_established "$n"; done
check_identical
