# The VM benchmarks (installed as /vm/scenarios/bench.sh and run by tests/vm/init.sh; busybox sh):
# every case measured with the same fio matrix (jobs.sh) in this one boot, on the same kind of
# backing device, a brd ram disk of DISK_MIB each:
#   raw        /dev/ram0 itself
#   replbd     0, 1 and 2 peers (replbd-node daemons on loopback, tests/vm/lib/cluster.sh),
#              protocol C and A, through /dev/ublkb0 on the Primary; disks /dev/ram1-3
#   drbd       kernel DRBD, 1 peer on loopback (drbd.sh), protocol C and A; disks /dev/ram1-2
# Systems alternate in the order below so that a slow spell of the host hits several of them.
# Kernel command line: bench.runtime=S bench.ramp=S bench.rounds=N (each round runs every case);
# bench.profile=1 adds, after the rounds, a perf profile of each job on replbd and DRBD (C, 1 peer),
# or on the cases of bench.cases.
# Results go to the console as a base64 tar.gz of $RESULTS between "bench-results-begin" and
# "bench-results-end" (bench/vm/run unpacks it): per round, case and job fio's JSON and the CPU
# counters, plus cases.tsv (case, system, peers, protocol, device) and meta.txt (versions).
. /vm/helpers.sh
. /vm/cluster.sh
. /vm/bench/jobs.sh
. /vm/bench/drbd.sh

arg() { sed -n "s/.*bench\.$1=\([0-9]*\).*/\1/p" /proc/cmdline; }
RUNTIME=$(arg runtime)
RAMP=$(arg ramp)
ROUNDS=$(arg rounds)
PROFILE=$(arg profile)
# bench.workers=N: the node daemons' tokio worker threads (TOKIO_WORKER_THREADS; default one per CPU).
WORKERS=$(arg workers)
[ -n "$WORKERS" ] && export TOKIO_WORKER_THREADS=$WORKERS
# bench.cases=A,B and bench.jobs=J1,J4 (bench/vm/run --cases, --jobs) narrow a run.
list_arg() { sed -n "s/.*bench\.$1=\([A-Za-z0-9,-]*\).*/\1/p" /proc/cmdline | tr , ' '; }
ONLY_CASES=$(list_arg cases)
ONLY_JOBS=$(list_arg jobs)
[ -n "$ONLY_JOBS" ] && JOBS=$ONLY_JOBS
: "${RUNTIME:=10}" "${RAMP:=2}" "${ROUNDS:=1}" "${PROFILE:=0}"
DISK_MIB=256
FE_QUEUES=2
FE_QUEUE_DEPTH=64
RESULTS=/data/results
mkdir -p "$RESULTS"

node_disk() { echo "/dev/ram$(($(node_id "$1") + 1))"; }

CASES="raw drbd-1C replbd-1C replbd-0 drbd-1A replbd-1A replbd-2C replbd-2A"
[ -n "$ONLY_CASES" ] && CASES=$ONLY_CASES
# Profiled: the target's two cases, or the cases asked for.
PROFILE_CASES=${ONLY_CASES:-replbd-1C drbd-1C}

case_row() { # CASE -> "system peers protocol"
    case $1 in
        raw) echo "raw 0 -" ;;
        replbd-0) echo "replbd 0 C" ;;
        *) _s=${1%-*} _pp=${1#*-}; echo "$_s ${_pp%?} ${_pp#?}" ;;
    esac
}

replbd_nodes() { # PEERS
    case $1 in 0) echo alpha ;; 1) echo "alpha beta" ;; 2) echo "alpha beta gamma" ;; esac
}

# run_case CASE [RUN] — sets CASE up, calls RUN CASE DEV (default run_jobs), tears it down.
run_case() {
    _run=${2:-run_jobs}
    set -- "$1" $(case_row "$1")
    case $2 in
        raw) $_run "$1" /dev/ram0 ;;
        replbd)
            NODES=$(replbd_nodes "$3") PROTOCOL=$4
            rm -rf /data/alpha /data/beta /data/gamma
            cluster_up
            promote alpha
            $_run "$1" "$DEV"
            node alpha secondary r0 >/dev/null || fail "secondary r0 failed"
            wait_until 20 sh -c "! test -e $DEV" || fail "$DEV still exists after secondary"
            for _n in $NODES; do kill_node "$_n" TERM; done
            ;;
        drbd)
            drbd_up "$4" /dev/ram1 /dev/ram2
            $_run "$1" /dev/drbd0
            drbd_down
            ;;
    esac
}

# leftovers — what a failed case left: daemons, the ublk device, DRBD resources.
leftovers() {
    for _p in $(pidof replbd-node 2>/dev/null); do kill -9 "$_p"; done
    [ -e /sys/class/ublk-char/ublkc0 ] && timeout 30 $SERVE del --id 0 >/dev/null 2>&1
    grep -q '^ *[01]: cs:' /proc/drbd 2>/dev/null && drbdadm down all >/dev/null 2>&1
    return 0
}

step "brd: 4 ram disks of $DISK_MIB MiB, written once so that reads find pages"
rmmod brd 2>/dev/null
insmod /vm/modules/brd.ko rd_nr=4 rd_size=$((DISK_MIB * 1024)) || fail "insmod brd failed"
for _i in 0 1 2 3; do
    dd if=/dev/zero of="/dev/ram$_i" bs=1M count="$DISK_MIB" 2>/dev/null || fail "cannot fill /dev/ram$_i"
done

{
    echo "kernel $(uname -r)"
    echo "cpus $(grep -c '^processor' /proc/cpuinfo) $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
    echo "memory_kib $(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)"
    echo "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)"
    echo "fio $(fio --version)"
    echo "replbd-node $(replbd-node --version)"
    echo "drbd-kernel $(sed -n 's/^version: \([^ ]*\).*/\1/p' /proc/drbd)"
    echo "drbd-utils $(drbdadm --version 2>/dev/null | sed -n 's/^DRBDADM_VERSION=//p')"
    echo "runtime_s $RUNTIME"
    echo "ramp_s $RAMP"
    echo "rounds $ROUNDS"
    echo "disk_mib $DISK_MIB"
    echo "ublk_queues $FE_QUEUES"
    echo "ublk_queue_depth $FE_QUEUE_DEPTH"
} > "$RESULTS/meta.txt"
for c in $CASES; do
    echo "$c $(case_row "$c") $(case $c in raw) echo /dev/ram0 ;; drbd*) echo /dev/drbd0 ;; *) echo /dev/ublkb0 ;; esac)"
done > "$RESULTS/cases.tsv"

ROUND=1
while [ "$ROUND" -le "$ROUNDS" ]; do
    for c in $CASES; do
        step "round $ROUND/$ROUNDS: $c"
        # A case that fails is recorded and the others still run.
        (run_case "$c") || echo "case $c failed in round $ROUND: $(cat "$VM_RESULT" 2>/dev/null)" >> "$RESULTS/errors.txt"
        rm -f "$VM_RESULT"
        leftovers
    done
    ROUND=$((ROUND + 1))
done

if [ "$PROFILE" = 1 ]; then
    for c in $PROFILE_CASES; do
        (run_case "$c" profile_job) || echo "profiling $c failed: $(cat "$VM_RESULT" 2>/dev/null)" >> "$RESULTS/errors.txt"
        rm -f "$VM_RESULT"
        leftovers
    done
fi

[ -f "$RESULTS/errors.txt" ] && cat "$RESULTS/errors.txt"
echo "bench-results-begin"
tar -C "$RESULTS" -czf - . | base64
echo "bench-results-end"
