# node-fs: ext4 on a replicated /dev/ublkb0: mkfs, mount, write files, fsync, umount, `e2fsck -fn`
# clean; SIGTERM of the Primary's daemon deletes the device and leaves clean metadata; the replicas'
# data areas are identical afterwards.
. /vm/helpers.sh
. /vm/cluster.sh

cluster_up 96M
promote alpha
step "mkfs.ext4"
/sbin/mke2fs -q -F -t ext4 "$DEV" || fail "mke2fs failed"
mkdir -p /data/mnt
mount -t ext4 "$DEV" /data/mnt || fail "mount failed"
step "write files"
mkdir -p /data/mnt/dir
i=0
while [ $i -lt 16 ]; do
    dd if=/dev/urandom of=/data/mnt/dir/f$i bs=16k count=$((i * 4 + 1)) conv=fsync 2>/dev/null || fail "writing f$i failed"
    i=$((i + 1))
done
(cd /data/mnt && md5sum dir/f*) > /data/sums
sync
umount /data/mnt || fail "umount failed"
step "e2fsck -fn"
/sbin/e2fsck -fn "$DEV" || fail "e2fsck found problems on $DEV (status $?)"
mount -t ext4 -o ro "$DEV" /data/mnt || fail "read-only mount failed"
(cd /data/mnt && md5sum -c /data/sums >/dev/null) || fail "files differ after remount"
umount /data/mnt
step "SIGTERM of the Primary's daemon: the device is stopped and deleted, the metadata left clean"
kill_node alpha TERM
wait_until 10 sh -c "! test -e $DEV" || fail "$DEV still exists after SIGTERM"
replbd-meta dump --json /data/alpha/r0.img | tr -d '\n ' | grep -q '"clean":true' || fail "alpha's metadata is not clean after SIGTERM"
check_identical
