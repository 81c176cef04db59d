# Helpers for VM scenarios (installed as /vm/helpers.sh; scenarios start with `. /vm/helpers.sh`).
# A scenario runs as root with cwd /data (a tmpfs), exits 0 on success, and on failure calls
# `fail REASON`, whose first line becomes the result line's reason.

SERVE=replbd-ublk-serve

fail() {
    echo "$*" > "$VM_RESULT"
    echo "FAIL: $*"
    exit 1
}

step() { echo "== [$(cut -d' ' -f1 /proc/uptime)s] $*"; }

# wait_until SECONDS COMMAND... — polls COMMAND every 0.1 s until it succeeds; fails after SECONDS.
wait_until() {
    _limit=$(( $1 * 10 ))
    shift
    _i=0
    while ! "$@" 2>/dev/null; do
        _i=$((_i + 1))
        [ "$_i" -ge "$_limit" ] && return 1
        usleep 100000
    done
    return 0
}

# start_serve NAME ARGS... — runs `replbd-ublk-serve ARGS` in the background (logs NAME.out/.err in
# /data) and waits until it printed the device path and the block device exists. Sets SERVE_PID and DEV.
start_serve() {
    _name=$1
    shift
    $SERVE "$@" > "/data/$_name.out" 2> "/data/$_name.err" &
    SERVE_PID=$!
    if ! wait_until 60 grep -q '^/dev/ublkb' "/data/$_name.out"; then
        cat "/data/$_name.err"
        kill -0 "$SERVE_PID" 2>/dev/null || fail "replbd-ublk-serve $* exited: $(tail -1 /data/$_name.err)"
        fail "replbd-ublk-serve $* did not report a device within 60 s"
    fi
    DEV=$(head -1 "/data/$_name.out")
    wait_until 10 test -b "$DEV" || fail "$DEV did not appear"
    step "serving $DEV (pid $SERVE_PID): $*"
}

# stop_serve — SIGTERM to the server; it must stop and delete the device and exit 0.
stop_serve() {
    kill -TERM "$SERVE_PID"
    wait_until 30 sh -c "! kill -0 $SERVE_PID" || fail "replbd-ublk-serve did not exit after SIGTERM"
    wait "$SERVE_PID"
    _rc=$?
    [ "$_rc" = 0 ] || fail "replbd-ublk-serve exited with status $_rc after SIGTERM"
    wait_until 10 sh -c "! test -e $DEV" || fail "$DEV still exists after a clean stop"
    _id=${DEV##*ublkb}
    [ -e "/sys/class/ublk-char/ublkc$_id" ] && fail "ublk device $_id was not deleted"
    step "stopped and deleted $DEV"
}

# md5 [FILE] — md5 of FILE or stdin.
md5() { md5sum "$@" | cut -d' ' -f1; }

# sectors_written DEV — writes completed on DEV (sectors), from /sys/block/*/stat.
sectors_written() { awk '{print $7}' "/sys/block/$(basename "$1")/stat"; }
