#!/usr/bin/env bash
# Runs `cilab doctor` and `cilab check --all` inside a QEMU guest whose only cgroup
# filesystem is cgroup2 on /sys/fs/cgroup (pure v2, as on current Ubuntu), to prove the
# v2 path on a machine that is itself hybrid. The guest boots a Debian kernel from an
# initramfs made of busybox, the built cilab binaries and the libraries they need.
#
# Needs: qemu-system-x86 linux-image-cloud-amd64 busybox-static cpio (apt-get install -y ...).
# Run as root after `cargo build --workspace`; CILAB_BIN_DIR names where the binaries
# are (default: target/debug). harness/tests/cgroup_v2_guest.rs runs it and reads what
# the guest prints. A seed for the qemu backend to come.
set -euo pipefail

kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
if [ -z "$kernel" ] || ! command -v qemu-system-x86_64 >/dev/null; then
  echo "v2-guest: needs a kernel in /boot and qemu-system-x86_64: apt-get install -y qemu-system-x86 linux-image-cloud-amd64" >&2
  exit 3
fi
bin_dir=${CILAB_BIN_DIR:-target/debug}
bins=("$bin_dir/cilab" "$bin_dir/lab-pid-ns" "$bin_dir/lab-chroot-jail")
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"   # mktemp makes it 0700; a real / is searchable by everyone

mkdir -p "$root"/{bin,proc,sys,dev,tmp,etc,root,work/bin,var/lib,usr/bin}
cp "$(command -v busybox)" "$root/bin/busybox"
cp "${bins[@]}" "$root/work/bin/"
# ldd is a bash script; the chroot-jail lab needs a dynamically linked echo.
cp /usr/bin/ldd "$root/usr/bin/ldd"
cp /bin/bash "$root/bin/bash"
cp /usr/bin/echo "$root/usr/bin/echo"
for binary in "${bins[@]}" /bin/bash /usr/bin/echo; do
  for library in $(ldd "$binary" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$library")"
    cp -L "$library" "$root$library"
  done
done

cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin:/work/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "guest: $(uname -r); /sys/fs/cgroup offers: $(cat /sys/fs/cgroup/cgroup.controllers)"
cilab doctor
cilab check --all --no-build
echo "guest: cilab check exited $?"
echo "guest: limits on a run: $(cilab check pid-ns --no-build --format json | tr -d ' \n' | grep -o '"cgroup_limits":\[[^]]*\]')"
cilab doctor | tail -n 1
poweroff -f
INIT
chmod +x "$root/init"

image=$(mktemp)
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 > "$image"
accel=tcg
# /dev/kvm may exist and still hang (nested virtualisation): TCG unless told otherwise.
[ "${CILAB_QEMU_KVM:-0}" = 1 ] && accel=kvm
timeout 300 qemu-system-x86_64 -accel "$accel" -m 1024 -smp 2 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$image" \
  -append "console=ttyS0 quiet panic=-1 cgroup_no_v1=all rdinit=/init"
rm -f "$image"
