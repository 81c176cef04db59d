# The standard fio matrix J1-J6 (design reference performance-anchors.md) and how one job is
# measured, for the VM benchmarks (installed as /vm/bench/jobs.sh; busybox sh).
#
#   run_job CASE JOB DEV   runs JOB on DEV; leaves fio's JSON in $RESULTS/ROUND.CASE.JOB.json and the
#                          CPU time of the whole VM during the job in $RESULTS/ROUND.CASE.JOB.cpu
#   profile_job CASE DEV   runs J4 on DEV under `perf record -a` (cpu-clock: the only event under
#                          emulation); leaves perf's flat report in $RESULTS/profile.CASE.txt
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
    # perf takes seconds to start under emulation: it records first, fio runs, then perf stops.
    perf record -a -e cpu-clock -F 997 -o "/data/perf.$1.data" > /data/perf.log 2>&1 &
    _perf=$!
    sleep 5
    fio_job J4 "$2" "/data/profile.$1.json" > /dev/null 2>&1
    kill -INT "$_perf"
    wait "$_perf"
    {
        echo "# J4 on $1 under perf record -a -e cpu-clock (idle time is swapper's); CPU share by thread,"
        echo "# then by thread, object and symbol"
        perf report -i "/data/perf.$1.data" --stdio --sort comm --percent-limit 1 2>/dev/null | grep -v '^#' | grep .
        perf report -i "/data/perf.$1.data" --stdio --sort comm,dso,sym --percent-limit 0.4 2>/dev/null | grep -v '^#' | grep .
    } > "$RESULTS/profile.$1.txt"
    step "$1: profiled J4 ($(wc -l < "$RESULTS/profile.$1.txt") lines)"
}
