#!/usr/bin/env bash
# Stage two of packaging/systemd-test/run.sh: runs as PID 1 of fresh PID, mount,
# cgroup, UTS, IPC and network namespaces (made by `unshare`), builds the
# container's root and execs systemd in it. Nothing here may write to the host:
#
# - the root is an overlay with the host's / as its read-only lower layer and the
#   upper and work folders on a tmpfs, so what the container writes (dpkg's
#   files, /etc, /var, the journal) vanishes with it, and systemd-tmpfiles'
#   `D /tmp` empties the container's own tmpfs, never the host's /tmp;
# - /proc/sys is read-only (systemd-sysctl cannot change the host's sysctls),
#   sysfs is read-only, /dev is a tmpfs with a few bind-mounted nodes and a new
#   devpts instance (no /dev/kmsg: nothing reaches the host's kernel log).
#
# Usage (by run.sh only): boot.sh WORK_DIR SHARE_DIR REPO. REPO (the binaries,
# Claude Code, the fake API) is bind-mounted read-only at its own path, so the
# container sees it even where it is not on the root file system; SHARE_DIR, the
# one folder the container and the host both write (the .debs in), read-write.
# The rest of the host's files are seen through the overlay.
set -euo pipefail

work=$1
share=$2
repo=$3
here=$(cd "$(dirname "$0")" && pwd)

mount --make-rprivate /
layers=$work/layers
mkdir -p "$layers"
mount -t tmpfs -o mode=0755,size=2g cf-systemd-test "$layers"
mkdir "$layers/upper" "$layers/work" "$layers/root"
root=$layers/root
mount -t overlay overlay -o "lowerdir=/,upperdir=$layers/upper,workdir=$layers/work" "$root"

mkdir -p "$root$repo" "$root$share"
mount --bind "$repo" "$root$repo"
mount -o remount,bind,ro "$root$repo"
mount --bind "$share" "$root$share"

mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"

mount -t tmpfs -o mode=0755,nosuid,size=4m dev "$root/dev"
for node in null zero full random urandom tty; do
    touch "$root/dev/$node"
    mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev dev-shm "$root/dev/shm"
mount -t tmpfs -o mode=0755,nosuid,nodev run "$root/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$root/tmp"
# systemd's "was this booted with systemd" test (sd_booted()).
mkdir -p "$root/run/systemd/system"

# The container's own start target: journald and nothing else. Services started
# later pull in sysinit.target and basic.target as on any host.
install -D -m 0644 "$here/cf-test.target" "$root/etc/systemd/system/cf-test.target"
# Debian's docker-style images carry a policy-rc.d that forbids every
# invoke-rc.d/deb-systemd-invoke action; a real host has none (removed in the
# overlay only, the host keeps its copy).
rm -f "$root/usr/sbin/policy-rc.d"
# Each dpkg run would rebuild the whole man-db index (its trigger): 10-20 s of
# CPU per install on a 2-core machine that tells nothing about the package.
rm -f "$root/var/lib/man-db/auto-update"
hostname cf-systemd-test

cd "$root"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot

# Capabilities systemd must not use on a shared machine (the clock, kernel
# modules, raw I/O); their absence also skips the units that would want them.
exec env -i container=cf-systemd-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    setpriv --bounding-set -sys_module,-sys_time,-sys_rawio,-wake_alarm \
    /lib/systemd/systemd --system --unit=cf-test.target
