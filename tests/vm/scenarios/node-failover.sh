# node-failover: ext4 on the Primary's /dev/ublkb0 with fsynced files; the Primary's daemon is
# killed (SIGKILL) and its host "dies" (its mount and device go); beta is promoted, and its own new
# /dev/ublkb0 mounts and holds every fsynced file.
. /vm/helpers.sh
. /vm/cluster.sh

cluster_up 96M
promote alpha
/sbin/mke2fs -q -F -t ext4 "$DEV" || fail "mke2fs failed"
mkdir -p /data/mnt
mount -t ext4 "$DEV" /data/mnt || fail "mount failed"
mkdir -p /data/mnt/dir
i=0
while [ $i -lt 12 ]; do
    dd if=/dev/urandom of=/data/mnt/dir/f$i bs=16k count=$((i * 8 + 1)) conv=fsync 2>/dev/null || fail "writing f$i failed"
    i=$((i + 1))
done
(cd /data/mnt && md5sum dir/f*) > /data/sums
sync
# More, not fsynced: whatever of it survives, the filesystem must mount.
dd if=/dev/urandom of=/data/mnt/dir/unsynced bs=64k count=8 2>/dev/null

kill_node alpha KILL
host_died alpha
wait_until 30 peer_gone beta alpha || { node beta status r0; fail "beta did not notice alpha is gone"; }
node beta status r0
promote beta
mount -t ext4 "$DEV" /data/mnt || fail "beta's $DEV does not mount"
(cd /data/mnt && md5sum -c /data/sums >/dev/null) || { (cd /data/mnt && md5sum -c /data/sums); fail "fsynced files differ on beta"; }
echo "every fsynced file ($(wc -l < /data/sums)) is on beta"
umount /data/mnt || fail "umount on beta failed"
/sbin/e2fsck -fn "$DEV" >/dev/null || fail "e2fsck found problems on beta's $DEV"
node beta secondary r0 >/dev/null || fail "secondary on beta failed"
