# A three-node replbd cluster inside the VM (installed as /vm/cluster.sh; scenarios start with
# `. /vm/helpers.sh; . /vm/cluster.sh`): three `replbd-node` daemons on loopback, alpha, beta and
# gamma, one resource r0 with three replicas and protocol C, each node with its own TOML file and a
# file-backed disk on the /data tmpfs with internal metadata. Every node's front end is
# /dev/ublkb0 (device = 0): as on three real hosts, but one kernel holds one device 0 at a time,
# which is the Primary's.
#
#   cluster_up [SIZE]      creates the disks (default 64MiB) with new metadata (over whatever was
#                          there), starts the daemons, skips the initial sync
#                          (new-current-uuid --clear-bitmap with one UUID), brings r0 up
#   node NAME ARGS...      an admin command on NAME's daemon
#   start_node NAME [ARGS] starts NAME's daemon (extra daemon options, e.g. --up-all)
#   kill_node NAME SIGNAL  signals NAME's daemon and waits until it is gone
#   wait_established NAME  every peer of NAME Connected and Established, the disk UpToDate
#   data_md5 NAME          md5 of NAME's data area (the disk up to the metadata, from replbd-meta)
#   check_identical        the three data areas are identical
#   host_died NAME         after kill_node: what a dead host leaves is gone too (its ublk device)
#   peer_gone NAME PEER, serving NAME   conditions for wait_until
#
# Set before sourcing to change the cluster (the benchmarks do): NODES (a subset of "alpha beta
# gamma", in that order; one node is a resource without peers), PROTOCOL (A, B or C), FE_QUEUES and
# FE_QUEUE_DEPTH (the ublk front end). Redefine node_disk after sourcing to put the disks elsewhere
# (a block device is used as it is, a file is created with the size cluster_up is given).

NODES=${NODES:-alpha beta gamma}
PROTOCOL=${PROTOCOL:-C}
FE_QUEUES=${FE_QUEUES:-2}
FE_QUEUE_DEPTH=${FE_QUEUE_DEPTH:-32}
UUID=5EED5EED5EED5EEC
NODE=replbd-node

node_id() {
    case $1 in alpha) echo 0 ;; beta) echo 1 ;; gamma) echo 2 ;; *) fail "no node $1" ;; esac
}

# node_disk NAME — NAME's backing disk (a file on the /data tmpfs unless redefined).
node_disk() { echo "/data/$1/r0.img"; }

# peer_count — the peers each node has.
peer_count() { set -- $NODES; echo $(($# - 1)); }

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
            echo "disk = \"$(node_disk "$_w")\""
        done
        cat <<EOF

[[resource.r0.volume]]
meta-disk = "internal"

[resource.r0.net]
protocol = "$PROTOCOL"
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
queues = $FE_QUEUES
queue-depth = $FE_QUEUE_DEPTH
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
    _p=$(peer_count)
    [ "$(echo "$_s" | grep -c '"replication": "Established"')" = "$_p" ] &&
        [ "$(echo "$_s" | grep -c '"connection": "Connected"')" = "$_p" ] &&
        echo "$_s" | grep -q '"disk": "UpToDate"'
}

wait_established() { # NAME [SECONDS]
    wait_until "${2:-60}" established "$1" || { node "$1" status r0; fail "$1 did not reach Connected/Established/UpToDate with its $(peer_count) peers"; }
}

cluster_up() { # [SIZE]
    for _c in $NODES; do
        mkdir -p "/data/$_c"
        _disk=$(node_disk "$_c")
        [ -b "$_disk" ] || truncate -s "${1:-64M}" "$_disk"
        _slots=$(peer_count)
        [ "$_slots" -gt 0 ] || _slots=1
        replbd-meta create --force --internal "$_disk" --node-id "$(node_id "$_c")" --max-peers "$_slots" >/dev/null ||
            fail "replbd-meta create failed for $_c"
        write_config "$_c"
        $NODE check-config --config "/data/$_c/replbd.toml" >/dev/null || fail "$_c's configuration is invalid"
        start_node "$_c"
        node "$_c" new-current-uuid r0 --clear-bitmap --uuid $UUID >/dev/null || fail "new-current-uuid failed on $_c"
    done
    for _c in $NODES; do node "$_c" up r0 >/dev/null || fail "up r0 failed on $_c"; done
    for _c in $NODES; do wait_established "$_c"; done
    step "nodes $NODES up, connected and UpToDate (protocol $PROTOCOL)"
}

# promote NAME — `primary r0` on NAME; sets DEV to its block device.
promote() {
    _out=$(node "$1" primary r0 2>&1) || { tail -20 "/data/$1/daemon.log"; fail "primary r0 on $1 failed: $_out"; }
    DEV=/dev/ublkb0
    wait_until 10 test -b "$DEV" || fail "$DEV did not appear on $1"
    step "$_out"
}

data_md5() { # NAME
    _img=$(node_disk "$1")
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
