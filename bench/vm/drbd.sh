# Kernel DRBD with one peer on loopback inside the VM (installed as /vm/bench/drbd.sh; busybox sh):
# the in-tree drbd.ko (8.4) of the booted kernel and Debian's drbd-utils. Two resources in one
# kernel play the two nodes: r0 (the Primary, /dev/drbd0, on DISK0) and r1 (its peer, /dev/drbd1,
# on DISK1), connected over 127.0.0.1. DRBD's defaults otherwise, as a user who sets only the
# protocol gets.
#
#   drbd_up PROTOCOL DISK0 DISK1   fresh metadata, both up and connected, initial sync skipped,
#                                  r0 Primary: /dev/drbd0 is ready
#   drbd_down                      both resources down

drbd_prepare() {
    mkdir -p /var/lib/drbd /var/lock /run/drbd
    [ -e /var/run ] || ln -s /run /var/run
    hostname vm
}

drbd_conf() { # PROTOCOL DISK0 DISK1
    cat <<CONF
global { usage-count no; }
common { net { protocol $1; } }
resource r0 {
  device /dev/drbd0; disk $2; meta-disk internal;
  on vm   { address 127.0.0.1:7789; }
  on peer { address 127.0.0.1:7790; }
}
resource r1 {
  device /dev/drbd1; disk $3; meta-disk internal;
  on vm   { address 127.0.0.1:7790; }
  on peer { address 127.0.0.1:7789; }
}
CONF
}

drbd_up() { # PROTOCOL DISK0 DISK1
    drbd_prepare
    drbd_conf "$@" > /etc/drbd.conf
    for _r in r0 r1; do
        yes yes | drbdadm create-md --force "$_r" > "/data/create-md.$_r.log" 2>&1 ||
            { cat "/data/create-md.$_r.log"; fail "drbdadm create-md $_r failed"; }
        drbdadm up "$_r" || fail "drbdadm up $_r failed"
    done
    wait_until 30 grep -q 'cs:Connected' /proc/drbd || { cat /proc/drbd; fail "DRBD r0/r1 did not connect"; }
    drbdadm new-current-uuid --clear-bitmap r0/0 || fail "drbdadm new-current-uuid failed"
    wait_until 10 sh -c "grep -c 'ds:UpToDate/UpToDate' /proc/drbd | grep -q 2" || { cat /proc/drbd; fail "DRBD not UpToDate/UpToDate"; }
    drbdadm primary r0 || fail "drbdadm primary r0 failed"
    step "DRBD $(sed -n 's/^version: \([^ ]*\).*/\1/p' /proc/drbd) protocol $1: r0 Primary on $2, r1 on $3"
}

drbd_down() {
    drbdadm down r0 || fail "drbdadm down r0 failed"
    drbdadm down r1 || fail "drbdadm down r1 failed"
}
