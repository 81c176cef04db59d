# ublk-recovery: the serving process dies (SIGKILL) while fio writes and verifies through
# /dev/ublkb0; the device stays, I/O waits, `recover` re-attaches and fio finishes without an
# error and with every block verified. Then the same with a deliberate detach (SIGUSR1, as for an
# upgrade) instead of a crash.
. /vm/helpers.sh

start_serve rec add --file /data/rec.img --size 128MiB --queues 2 --depth 32 --id 0 --require-recovery

# run_fio NAME SECONDS — fio in the background: random writes with verification while it runs
# (verify_backlog) and of everything at the end.
run_fio() {
    fio --name="$1" --filename="$DEV" --ioengine=io_uring --direct=1 --iodepth=16 \
        --rw=randwrite --bs=4k --size=64M --time_based --runtime="$2" \
        --verify=crc32c --verify_fatal=1 --do_verify=1 --verify_backlog=512 \
        > "/data/$1.out" 2>&1 &
    FIO_PID=$!
}

# interrupt SIGNAL NAME — waits until fio has written 8 MiB, sends SIGNAL to the server, checks the
# device survived and fio is still waiting, then re-attaches a new server.
interrupt() {
    before=$(sectors_written "$DEV")
    wait_until 60 sh -c "[ \$(awk '{print \$7}' /sys/block/ublkb0/stat) -gt $((before + 16384)) ]" || fail "fio made no progress before $1"
    step "sending SIG$1 to the server (pid $SERVE_PID) mid-run"
    kill -"$1" "$SERVE_PID"
    wait "$SERVE_PID"
    [ -b "$DEV" ] || fail "$DEV disappeared when the server died ($1)"
    kill -0 "$FIO_PID" 2>/dev/null || { cat "/data/$2.out"; fail "fio ended while the server was down ($1)"; }
    # Let the host's I/O pile up against the dead server for a moment.
    usleep 500000
    [ -b "$DEV" ] || fail "$DEV disappeared while waiting for recovery ($1)"
    start_serve "$2-recover" recover --id 0 --file /data/rec.img
    grep -q 'recovered=true' "/data/$2-recover.err" || fail "the new server did not report a recovery"
}

finish_fio() {
    wait "$FIO_PID"
    rc=$?
    [ "$rc" = 0 ] || { cat "/data/$1.out"; fail "fio exited with status $rc after recovery ($1)"; }
    grep -q 'err= 0' "/data/$1.out" || { cat "/data/$1.out"; fail "fio reported an error after recovery ($1)"; }
    grep -E 'IOPS=|err=' "/data/$1.out"
}

step "crash: SIGKILL during fio"
run_fio crash 10
interrupt KILL crash
finish_fio crash

step "restart: SIGUSR1 (detach) during fio"
run_fio detach 6
interrupt USR1 detach
finish_fio detach

stop_serve
