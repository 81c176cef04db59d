# ublk-recovery: the serving process dies (SIGKILL) while fio writes and verifies through
# /dev/ublkb0; the device stays, I/O waits, `recover` re-attaches and fio finishes without an
# error. Then the same with a deliberate detach (SIGUSR1, as for an upgrade) instead of a crash.
#
# Verification, twice: during each run fio reads back every batch of 512 writes it made
# (verify_backlog: the block must hold exactly the data of the latest write, so a lost or stale
# write fails); after each run a read pass checks every block of the region (each carries a
# crc32c and its own offset: corruption or misplacement fails). The region is pre-filled so that
# every block has a header.
. /vm/helpers.sh

start_serve rec add --file /data/rec.img --size 128MiB --queues 2 --depth 32 --id 0 --require-recovery

FIO_COMMON="--filename=$DEV --ioengine=io_uring --direct=1 --iodepth=16 --bs=4k --size=64M --verify=crc32c --verify_fatal=1"

step "recover refuses a device that is still served"
out=$($SERVE recover --id 0 --file /data/rec.img 2>&1) && fail "recover of a served device succeeded"
echo "$out" | grep -q "still served by process $SERVE_PID" || fail "unexpected refusal: $out"
truncate -s 64M /data/small.img

step "pre-fill 64 MiB with verifiable blocks"
fio --name=prefill $FIO_COMMON --rw=write --do_verify=0 > /data/prefill.out 2>&1 || { cat /data/prefill.out; fail "pre-fill failed"; }

# run_fio NAME SECONDS — time-based random writes in the background, verified as they go.
run_fio() {
    fio --name="$1" $FIO_COMMON --rw=randwrite --time_based --runtime="$2" \
        --do_verify=1 --verify_backlog=512 > "/data/$1.out" 2>&1 &
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
    # While the host's I/O waits: recover must refuse a volume of another size.
    out=$($SERVE recover --id 0 --file /data/small.img 2>&1) && fail "recover with a smaller volume succeeded"
    echo "$out" | grep -q "has 134217728 bytes but the volume has 67108864" || fail "unexpected refusal: $out"
    [ -b "$DEV" ] || fail "$DEV disappeared while waiting for recovery ($1)"
    start_serve "$2-recover" recover --id 0 --file /data/rec.img
    grep -q 'recovered=true' "/data/$2-recover.err" || fail "the new server did not report a recovery"
}

# finish_fio NAME — fio must succeed, and have verified all but its last partial batch of writes;
# then every block of the region must verify.
finish_fio() {
    wait "$FIO_PID"
    rc=$?
    [ "$rc" = 0 ] || { cat "/data/$1.out"; fail "fio exited with status $rc after recovery ($1)"; }
    grep -q 'err= 0' "/data/$1.out" || { cat "/data/$1.out"; fail "fio reported an error after recovery ($1)"; }
    issued=$(sed -n 's/.*issued rwts: total=\([0-9]*\),\([0-9]*\),.*/\1 \2/p' "/data/$1.out")
    set -- "$1" $issued
    echo "$1: $3 writes, $2 verified by read-back; completion latencies (the outage is the max):"
    grep -E '^ +clat \(' "/data/$1.out"
    [ "$2" -gt 0 ] && [ "$2" -ge $(($3 - 1024)) ] || { cat "/data/$1.out"; fail "fio verified only $2 of $3 writes ($1)"; }
    fio --name="$1-check" $FIO_COMMON --rw=read > "/data/$1-check.out" 2>&1 || { cat "/data/$1-check.out"; fail "read verification of the whole region failed after $1"; }
    echo "$1: every block of the 64 MiB region verified"
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
