# A three-node replbd cluster inside the VM (installed as /vm/cluster.sh; scenarios start with
# `. /vm/helpers.sh; . /vm/cluster.sh`): three `replbd-node` daemons on loopback, alpha, beta and
# gamma, one resource r0 with three replicas and protocol C, each node with its own TOML file and a
# file-backed disk on the /data tmpfs with internal metadata. Every node's front end is
# /dev/ublkb0 (device = 0): as on three real hosts, but one kernel holds one device 0 at a time,
# which is the Primary's.
#
#   cluster_up [SIZE]      creates the disks (default 64MiB), starts the daemons, skips the initial
#                          sync (new-current-uuid --clear-bitmap with one UUID), brings r0 up
#   node NAME ARGS...      an admin command on NAME's daemon
#   start_node NAME [ARGS] starts NAME's daemon (extra daemon options, e.g. --up-all)
#   kill_node NAME SIGNAL  signals NAME's daemon and waits until it is gone
#   wait_established NAME  every peer of NAME Connected and Established, the disk UpToDate
#   data_md5 NAME          md5 of NAME's data area (the disk up to the metadata, from replbd-meta)
#   check_identical        the three data areas are identical
#   host_died NAME         after kill_node: what a dead host leaves is gone too (its ublk device)
#   peer_gone NAME PEER, serving NAME   conditions for wait_until

NODES="alpha beta gamma"
UUID=5EED5EED5EED5EEC
NODE=replbd-node

node_id() {
    case $1 in alpha) echo 0 ;; beta) echo 1 ;; gamma) echo 2 ;; *) fail "no node $1" ;; esac
}

node() {
    _n=$1
    shift
    $NODE --admin-socket "/data/$_n/admin.sock" "$@"
}

write_config() { # NAME
    {
        echo "this-node = \"$1\""
        echo
        echo "[resource.r0]"
        for _w in $NODES; do
            echo
            echo "[[resource.r0.node]]"
            echo "name = \"$_w\""
            echo "id = $(node_id "$_w")"
            echo "address = \"127.0.0.1:$((7000 + $(node_id "$_w")))\""
            echo "disk = \"/data/$_w/r0.img\""
        done
        cat <<EOF

[[resource.r0.volume]]
meta-disk = "internal"

[resource.r0.net]
protocol = "C"
shared-secret = "vm-suite"
timeout = "4s"
ping-int = "1s"
ping-timeout = "2s"
connect-timeout = "5s"
connect-int-min = "50ms"
connect-int = "500ms"

[resource.r0.front-end]
kind = "ublk"
device = 0
queues = 2
queue-depth = 32
EOF
    } > "/data/$1/replbd.toml"
}

start_node() { # NAME [DAEMON ARGS]
    _n=$1
    shift
    REPLBD_LOG=info $NODE --admin-socket "/data/$_n/admin.sock" daemon --config "/data/$_n/replbd.toml" "$@" \
        >> "/data/$_n/daemon.log" 2>&1 &
    echo $! > "/data/$_n/pid"
    wait_until 20 node "$_n" status >/dev/null || { tail -20 "/data/$_n/daemon.log"; fail "$_n's daemon did not answer"; }
}

kill_node() { # NAME SIGNAL
    _pid=$(cat "/data/$1/pid")
    kill -"$2" "$_pid"
    wait_until 30 sh -c "! kill -0 $_pid" || fail "$1's daemon did not exit after SIG$2"
    wait "$_pid" 2>/dev/null
    step "$1's daemon (pid $_pid) ended by SIG$2"
}

# peer_gone NAME PEER — NAME sees PEER not connected.
peer_gone() { node "$1" status r0 | grep -q "^  $2 connection:"; }

# serving NAME — NAME's front end serves /dev/ublkb0.
serving() { node "$1" status r0 | grep -q 'front-end:ublk /dev/ublkb0 serving'; }

# status_json NAME — `status r0 --json` (pretty JSON: one field per line).
status_json() { node "$1" status r0 --json; }

established() { # NAME
    _s=$(status_json "$1") || return 1
    [ "$(echo "$_s" | grep -c '"replication": "Established"')" = 2 ] &&
        [ "$(echo "$_s" | grep -c '"connection": "Connected"')" = 2 ] &&
        echo "$_s" | grep -q '"disk": "UpToDate"'
}

wait_established() { # NAME [SECONDS]
    wait_until "${2:-60}" established "$1" || { node "$1" status r0; fail "$1 did not reach Connected/Established/UpToDate with both peers"; }
}

cluster_up() { # [SIZE]
    for _c in $NODES; do
        mkdir -p "/data/$_c"
        truncate -s "${1:-64M}" "/data/$_c/r0.img"
        replbd-meta create --internal "/data/$_c/r0.img" --node-id "$(node_id "$_c")" --max-peers 2 >/dev/null ||
            fail "replbd-meta create failed for $_c"
        write_config "$_c"
        $NODE check-config --config "/data/$_c/replbd.toml" >/dev/null || fail "$_c's configuration is invalid"
        start_node "$_c"
        node "$_c" new-current-uuid r0 --clear-bitmap --uuid $UUID >/dev/null || fail "new-current-uuid failed on $_c"
    done
    for _c in $NODES; do node "$_c" up r0 >/dev/null || fail "up r0 failed on $_c"; done
    for _c in $NODES; do wait_established "$_c"; done
    step "three nodes up, connected and UpToDate ($(du -h /data/alpha/r0.img | cut -f1) disks)"
}

# promote NAME — `primary r0` on NAME; sets DEV to its block device.
promote() {
    _out=$(node "$1" primary r0 2>&1) || { tail -20 "/data/$1/daemon.log"; fail "primary r0 on $1 failed: $_out"; }
    DEV=/dev/ublkb0
    wait_until 10 test -b "$DEV" || fail "$DEV did not appear on $1"
    step "$_out"
}

data_md5() { # NAME
    _img=/data/$1/r0.img
    _off=$(replbd-meta dump --json "$_img" | tr ',' '\n' | sed -n 's/.*"meta_offset": *\([0-9]*\).*/\1/p')
    [ -n "$_off" ] || fail "replbd-meta dump --json $_img has no meta_offset"
    head -c "$_off" "$_img" | md5
}

check_identical() {
    _a=$(data_md5 alpha)
    _b=$(data_md5 beta)
    _g=$(data_md5 gamma)
    echo "data areas: alpha $_a beta $_b gamma $_g"
    [ "$_a" = "$_b" ] && [ "$_b" = "$_g" ] || fail "the replicas differ (alpha $_a, beta $_b, gamma $_g)"
}

# host_died NAME — after its daemon was killed, what the dead host held goes too: its mount and
# its ublk device (the I/O waiting on it fails), freeing device 0 for the node taking over.
#
# Order matters: a filesystem on a device whose server died waits for it, and so does the umount
# that writes its superblock; the delete fails the waiting I/O but completes only once the
# filesystem lets go of the device. So the delete runs in the background while the umount goes.
host_died() {
    timeout 60 $SERVE del --id 0 >/dev/null 2>&1 &
    _del=$!
    for m in $(awk '$1 == "/dev/ublkb0" {print $2}' /proc/mounts); do umount -l "$m"; done
    wait "$_del"
    wait_until 30 sh -c '! test -e /sys/class/ublk-char/ublkc0' || fail "$1's ublk device 0 could not be deleted"
    step "$1's host is gone: its mount and /dev/ublkb0 removed"
}

# fio_summary OUT — the lines of a fio result worth keeping in the log.
fio_summary() { grep -E 'IOPS=|^ +clat \(|err=' "$1" | head -6; }
