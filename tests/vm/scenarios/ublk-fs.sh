# ublk-fs: ext4 on a ublk device: mkfs (e2fsprogs' mke2fs, not busybox's), mount, write files,
# sync, umount, mount again and compare, umount, then `e2fsck -fn` must find nothing to fix.
. /vm/helpers.sh

start_serve fs add --file /data/fs.img --size 256MiB --queues 2 --depth 64 --id 0
step "mkfs.ext4"
/sbin/mke2fs -q -F -t ext4 "$DEV" || fail "mke2fs failed"
mkdir -p /data/mnt
mount -t ext4 "$DEV" /data/mnt || fail "mount failed"
step "write files"
mkdir -p /data/mnt/dir/sub
i=0
while [ $i -lt 24 ]; do
    dd if=/dev/urandom of=/data/mnt/dir/f$i bs=16k count=$((i * 4 + 1)) 2>/dev/null || fail "writing f$i failed"
    i=$((i + 1))
done
echo hello > /data/mnt/dir/sub/small
(cd /data/mnt && md5sum dir/f* dir/sub/small) > /data/sums
sync
umount /data/mnt || fail "umount failed"
step "remount and compare"
mount -t ext4 "$DEV" /data/mnt || fail "second mount failed"
(cd /data/mnt && md5sum -c /data/sums >/dev/null) || fail "files differ after remount"
rm /data/mnt/dir/f3 /data/mnt/dir/f7
sync
umount /data/mnt || fail "second umount failed"
step "e2fsck -fn"
/sbin/e2fsck -fn "$DEV" || fail "e2fsck found problems on $DEV (status $?)"
stop_serve
/sbin/e2fsck -fn /data/fs.img >/dev/null || fail "e2fsck found problems in the backing file"
