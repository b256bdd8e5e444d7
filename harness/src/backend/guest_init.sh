#!/opt/cilab/bin/busybox sh
# The init of cilab's qemu guest (harness/src/backend/qemu.rs builds the initramfs and
# boots it). It sets the guest up as a machine booted from a disk by systemd would be,
# then hands over to `cilab guest-agent`, which runs what the host asks over the
# virtio-serial port named cilab.control and sends the answers back the same way. When
# the host hangs up, the guest powers off.
#
# The kernel command line says how: cilab.cgroup=v1|hybrid|v2 (the cgroup layout) and
# cilab.console=1 (a person is at the console: keep it quiet).

# pivot_root(2) gives EINVAL while / is the initramfs (rootfs cannot be moved): first
# copy everything onto a tmpfs and switch_root there, so that labs run as on a machine
# booted from a disk.
if [ "$1" != on-tmpfs ]; then
  bb=/opt/cilab/bin/busybox
  $bb mkdir -p /newroot
  $bb mount -t tmpfs -o mode=0755 guest-root /newroot
  for entry in /*; do
    [ "$entry" = /newroot ] || $bb cp -a "$entry" /newroot/
  done
  exec $bb switch_root /newroot /init on-tmpfs
fi

# busybox's applets where a shell finds them (what the host put there stays).
/opt/cilab/bin/busybox --install -s /bin
export PATH=/opt/cilab/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=linux
# What the host reads on the console when the guest went away (qemu.rs, `guest_end`):
# "cilab guest: failed: ..." is the init's or the agent's failure.
fail() {
  echo "cilab guest: failed: $*" >&2
  poweroff -f
}
mount -t proc proc /proc || fail "mount proc"
mount -t sysfs sysfs /sys || fail "mount sysfs"
mount -t devtmpfs devtmpfs /dev || fail "mount devtmpfs"
mkdir -p /dev/pts /dev/shm /tmp /run /root /var/tmp
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
console=0
layout=v2
for word in $(cat /proc/cmdline); do
  case "$word" in
    cilab.console=1) console=1 ;;
    cilab.cgroup=*) layout=${word#cilab.cgroup=} ;;
  esac
done
# What the kernel says at KERN_ERR or worse (an OOM kill, a hung task) goes to the
# console, a log only the host reads: it quotes the kernel's lines when the guest or a
# command fails ("the guest kernel said"). A person's console stays quiet (emergencies
# only); an oops or a panic reaches it all the same (the kernel raises the level for
# those), and should the agent fail, the init prints the kernel's errors there (below).
if [ "$console" = 1 ]; then
  echo 1 > /proc/sys/kernel/printk
else
  echo 4 > /proc/sys/kernel/printk
fi

# The drivers the kernel has as modules (virtio_pci, virtio_console, virtio-rng), in the
# order the host resolved from modules.dep.
if [ -f /opt/cilab/modules/order ]; then
  while read -r module; do
    insmod "/opt/cilab/modules/$module" || fail "insmod $module"
  done < /opt/cilab/modules/order
fi

# Cgroups as systemd mounts them. v2: cgroup2 alone, namespaces as delegation boundaries
# (nsdelegate). v1: every v1 controller the kernel has, each at /sys/fs/cgroup/<name>.
# hybrid: those, and cgroup2 (no controllers) at /sys/fs/cgroup/unified.
mount_v1() {
  mount -t tmpfs -o mode=0755 cgroup /sys/fs/cgroup || fail "mount the cgroup tmpfs"
  while read -r name hierarchy count enabled; do
    case "$name" in \#*) continue ;; esac
    [ "$enabled" = 1 ] || continue
    mkdir -p "/sys/fs/cgroup/$name"
    mount -t cgroup -o "$name" "$name" "/sys/fs/cgroup/$name" || fail "mount cgroup $name"
  done < /proc/cgroups
}
case "$layout" in
  v2) mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || fail "mount cgroup2" ;;
  v1) mount_v1 ;;
  hybrid)
    mount_v1
    mkdir -p /sys/fs/cgroup/unified
    mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup/unified || fail "mount cgroup2"
    ;;
  *) fail "unknown cgroup layout $layout" ;;
esac
# As systemd: / is shared.
mount --make-rshared / || fail "make / shared"
# A booted machine has its loopback up and a name.
ip link set lo up
hostname cilab-guest

# A person at the console sees where they are.
export PS1='cilab-guest:\w# '
cilab guest-agent
status=$?
if [ "$status" != 0 ]; then
  if [ "$console" = 1 ]; then
    # The kernel's errors, which the quiet console did not show, as the console shows
    # them ("[   12.345678] text").
    dmesg -r | sed -n 's/^<[0-3]>//p' >&2
  fi
  fail "the agent exited with status $status"
fi
echo "cilab guest: the host hung up; powering off" >&2
poweroff -f
