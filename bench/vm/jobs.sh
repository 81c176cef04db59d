# The standard fio matrix J1-J6 (design reference performance-anchors.md) and how one job is
# measured, for the VM benchmarks (installed as /vm/bench/jobs.sh; busybox sh).
#
#   run_job CASE JOB DEV   runs JOB on DEV; leaves fio's JSON in $RESULTS/ROUND.CASE.JOB.json and the
#                          CPU time of the whole VM during the job in $RESULTS/ROUND.CASE.JOB.cpu
#   profile_job CASE DEV   runs J4 (or each job of bench.jobs) on DEV under `perf record -a -g` (cpu-clock: the only
#                          event under emulation); leaves perf's report (flat, then call graphs) and
#                          the context switches in $RESULTS/profile.CASE.JOB.txt
# Reads RESULTS, ROUND, RUNTIME and RAMP. The CPU time counts every process and kernel thread (fio,
# the replbd daemons, DRBD's threads), which is the cost a user pays for the I/O.

JOBS="J1 J2 J3 J4 J5 J6"

job_args() { # JOB
    case $1 in
        J1) echo "--rw=randwrite --bs=4k --iodepth=1 --numjobs=1" ;;
        J2) echo "--rw=randwrite --bs=4k --iodepth=1 --numjobs=1 --fsync=1" ;;
        J3) echo "--rw=randread --bs=4k --iodepth=1 --numjobs=1" ;;
        J4) echo "--rw=randwrite --bs=4k --iodepth=32 --numjobs=4" ;;
        J5) echo "--rw=randread --bs=4k --iodepth=32 --numjobs=4" ;;
        J6) echo "--rw=write --bs=1M --iodepth=16 --numjobs=1" ;;
        *) return 1 ;;
    esac
}

# cpu_jiffies — "BUSY TOTAL" summed over all CPUs, from /proc/stat.
cpu_jiffies() {
    awk '$1 == "cpu" { b = $2 + $3 + $4 + $7 + $8 + $9; t = b + $5 + $6; print b, t }' /proc/stat
}

fio_job() { # JOB DEV OUTPUT
    # shellcheck disable=SC2046 # job_args is a list of options
    fio --name="$1" --filename="$2" --ioengine=io_uring --direct=1 --time_based=1 \
        --runtime="$RUNTIME" --ramp_time="$RAMP" --group_reporting=1 --lat_percentiles=1 \
        --percentile_list=50:90:99:99.9:99.99 --output-format=json --output="$3" \
        $(job_args "$1")
}

run_job() { # CASE JOB DEV
    _base=$RESULTS/$ROUND.$1.$2
    _before=$(cpu_jiffies)
    if [ "$2" = IDLE ]; then
        sleep "$((RUNTIME + RAMP))"
        echo "$_before $(cpu_jiffies) $(grep -c '^cpu[0-9]' /proc/stat)" > "$_base.cpu"
        return 0
    fi
    fio_job "$2" "$3" "$_base.json" > "$_base.err" 2>&1 ||
        echo "fio $2 on $3 failed: $(tail -1 "$_base.err")" >> "$RESULTS/errors.txt"
    echo "$_before $(cpu_jiffies) $(grep -c '^cpu[0-9]' /proc/stat)" > "$_base.cpu"
    [ -s "$_base.err" ] || rm -f "$_base.err"
}

run_jobs() { # CASE DEV
    for _j in $JOBS; do
        run_job "$1" "$_j" "$2"
    done
    step "$1: $JOBS done"
}

profile_job() { # CASE DEV
    for _j in ${ONLY_JOBS:-J4}; do
        [ "$_j" = IDLE ] || profile_one "$1" "$_j" "$2"
    done
}

profile_one() { # CASE JOB DEV
    # perf takes seconds to start under emulation: it records first, fio runs, then perf stops.
    _p=$RESULTS/profile.$1.$2
    perf record -a -g -e cpu-clock -F 997 -o "/data/perf.$1.data" > /data/perf.log 2>&1 &
    _perf=$!
    sleep 5
    _cs0=$(awk '$1 == "ctxt" { print $2 }' /proc/stat)
    fio_job "$2" "$3" "$_p.json" > /dev/null 2>&1
    _cs1=$(awk '$1 == "ctxt" { print $2 }' /proc/stat)
    kill -INT "$_perf"
    wait "$_perf"
    {
        echo "# $2 on $1 under perf record -a -g -e cpu-clock (idle time is swapper's)"
        echo "# context switches during fio (ramp included): $((_cs1 - _cs0))"
        echo "# CPU share by thread, then by thread, object and symbol, then call graphs"
        perf report -i "/data/perf.$1.data" --stdio --no-children --sort comm --percent-limit 1 -g none 2>/dev/null | grep -v '^#' | grep .
        perf report -i "/data/perf.$1.data" --stdio --no-children --sort comm,dso,sym --percent-limit 0.4 -g none 2>/dev/null | grep -v '^#' | grep .
        perf report -i "/data/perf.$1.data" --stdio --no-children --sort comm,sym --percent-limit 1.5 -g caller,0.5,callee --max-stack 12 2>/dev/null | grep -v '^#' | grep . | head -600
    } > "$_p.txt"
    rm -f "/data/perf.$1.data"
    step "$1: profiled $2 ($(wc -l < "$_p.txt") lines)"
}
