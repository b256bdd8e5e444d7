#!/usr/bin/env bash
# Runs `cilab doctor` and `cilab check --all` inside a QEMU guest whose only cgroup
# filesystem is cgroup2 on /sys/fs/cgroup (pure v2, as on current Ubuntu), to prove the
# v2 path on a machine that is itself hybrid. The guest boots a Debian kernel from an
# initramfs made of busybox, the built cilab binaries, the programs the labs need and
# the libraries of all of them.
#
# Needs: qemu-system-x86 linux-image-cloud-amd64 busybox-static cpio gzip (apt-get install -y ...).
# Run as root after `cargo build --workspace`. harness/tests/cgroup_v2_guest.rs runs it,
# with what the lab catalog declares, and reads what the guest prints:
#   CILAB_BIN_DIR         where the built binaries are (default: target/debug)
#   CILAB_GUEST_BINARIES  the lab binaries, by name, space-separated (cilab is always copied)
#   CILAB_GUEST_TOOLS     the programs the labs run or copy (the catalog's tools), found on PATH
# The guest prints `cilab doctor --format json` and `cilab check --all --format json`, each
# between two marker lines (--- <what> json begin/end ---), and "guest: cilab check exited N".
# Then, with user.max_user_namespaces=0, doctor and `cilab check userns-maps` again
# (markers `no-userns doctor` and `no-userns check`).
# Exits 3 when qemu or a kernel is missing, 2 when told too little, 4 when a program is missing.
# A seed for the qemu backend to come.
set -euo pipefail

kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
if [ -z "$kernel" ] || ! command -v qemu-system-x86_64 >/dev/null; then
  echo "v2-guest: needs a kernel in /boot and qemu-system-x86_64: apt-get install -y qemu-system-x86 linux-image-cloud-amd64" >&2
  exit 3
fi
for needed in busybox cpio gzip; do
  if ! command -v "$needed" >/dev/null; then
    echo "v2-guest: needs $needed: apt-get install -y busybox-static cpio gzip" >&2
    exit 4
  fi
done
if [ -z "${CILAB_GUEST_BINARIES:-}" ] || [ -z "${CILAB_GUEST_TOOLS+set}" ]; then
  echo "v2-guest: set CILAB_GUEST_BINARIES (the lab binaries) and CILAB_GUEST_TOOLS (the programs they need)," \
    "as harness/tests/cgroup_v2_guest.rs does from the lab catalog" >&2
  exit 2
fi
bin_dir=${CILAB_BIN_DIR:-target/debug}
bins=("$bin_dir/cilab")
for binary in $CILAB_GUEST_BINARIES; do
  bins+=("$bin_dir/$binary")
done
for binary in "${bins[@]}"; do
  if [ ! -x "$binary" ]; then
    echo "v2-guest: $binary is not built: cargo build --workspace" >&2
    exit 4
  fi
done

root=$(mktemp -d)
image=$(mktemp)
trap 'rm -rf "$root" "$image"' EXIT
chmod 755 "$root"   # mktemp makes it 0700; a real / is searchable by everyone

mkdir -p "$root"/{bin,proc,sys,dev,tmp,etc,root,work/bin,var/lib,usr/bin}
cp "$(command -v busybox)" "$root/bin/busybox"
cp "${bins[@]}" "$root/work/bin/"

# Each program the labs need, at the path it has here (the chroot-jail lab needs a
# dynamically linked echo), with the interpreter of a script (ldd is a bash script).
copy_to_same_path() {
  mkdir -p "$root$(dirname "$1")"
  cp -L "$1" "$root$1"
}
elves=("${bins[@]}")
for tool in $CILAB_GUEST_TOOLS; do
  path=$(type -P "$tool") || { echo "v2-guest: $tool is not on PATH (a lab needs it)" >&2; exit 4; }
  copy_to_same_path "$path"
  elves+=("$path")
  if [ "$(head -c 2 "$path")" = '#!' ]; then
    read -r first_line < "$path"
    interpreter=${first_line#'#!'}
    read -r interpreter _ <<< "$interpreter"
    copy_to_same_path "$interpreter"
    elves+=("$interpreter")
  fi
done
# And the libraries of every dynamically linked one (ldd fails on static ones and scripts).
for binary in "${elves[@]}"; do
  if libraries=$(ldd "$binary" 2>/dev/null); then
    for library in $(grep -o '/[^ ]*' <<< "$libraries"); do
      copy_to_same_path "$library"
    done
  fi
done

cat > "$root/init" <<'INIT'
#!/bin/busybox sh
# The kernel's initramfs cannot be pivoted away from (pivot_root gives EINVAL on it):
# first move everything onto a tmpfs and switch_root there, so labs run as on a machine
# booted from a disk.
if [ "$1" != on-tmpfs ]; then
  /bin/busybox mkdir /newroot
  /bin/busybox mount -t tmpfs -o mode=0755 guest-root /newroot
  for entry in /*; do
    [ "$entry" = /newroot ] || /bin/busybox cp -a "$entry" /newroot/
  done
  exec /bin/busybox switch_root /newroot /init on-tmpfs
fi
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin:/work/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# As systemd mounts it on current distributions: namespaces are delegation boundaries
# (nsdelegate), and / is shared.
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mount --make-rshared / 2>/dev/null || mount -o rshared / /
echo "guest: cgroup2 $(grep ' /sys/fs/cgroup ' /proc/self/mountinfo | sed 's/.* - //'); / $(grep -o ' / / [^-]*' /proc/self/mountinfo | grep -o 'shared:[0-9]*' || echo private)"
# A booted machine has its loopback up (the nsenter-join lab connects to a service on a
# container's 127.0.0.1 from the host's network namespace and expects a refusal).
ip link set lo up
# Kernel messages stay off the console: they would land between the marker lines.
echo 1 > /proc/sys/kernel/printk
echo "guest: $(uname -r); /sys/fs/cgroup offers: $(cat /sys/fs/cgroup/cgroup.controllers)"
cilab doctor
cilab doctor --format json > /tmp/doctor.json
# Measured figures (cpu share, memory peak, host fork+exec), on stderr only: never facts.
CILAB_SHOW_FIGURES=1 cilab check --all --no-build --format json > /tmp/report.json 2> /tmp/check.err
echo "guest: cilab check exited $?"
echo "--- cilab doctor json begin ---"
cat /tmp/doctor.json
echo "--- cilab doctor json end ---"
echo "--- cilab check json begin ---"
cat /tmp/report.json
echo "--- cilab check json end ---"
echo "guest: cilab check said on stderr:"
cat /tmp/check.err
# Unprivileged user namespaces turned off, as some machines have them: doctor must say so
# and what to do, and the userns-maps lab must be skipped, loudly (never passed).
if [ -x /work/bin/lab-userns-maps ]; then
  echo 0 > /proc/sys/user/max_user_namespaces
  cilab doctor --format json > /tmp/doctor-no-userns.json
  cilab check userns-maps --no-build --format json > /tmp/report-no-userns.json 2> /tmp/check-no-userns.err
  echo "guest: cilab check userns-maps without user namespaces exited $?"
  echo "--- no-userns doctor json begin ---"
  cat /tmp/doctor-no-userns.json
  echo "--- no-userns doctor json end ---"
  echo "--- no-userns check json begin ---"
  cat /tmp/report-no-userns.json
  echo "--- no-userns check json end ---"
fi
cilab doctor | tail -n 1
poweroff -f
INIT
chmod +x "$root/init"

(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 > "$image"
accel=tcg
# /dev/kvm may exist and still hang (nested virtualisation): TCG unless told otherwise.
[ "${CILAB_QEMU_KVM:-0}" = 1 ] && accel=kvm
timeout 300 qemu-system-x86_64 -accel "$accel" -m 1024 -smp 2 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$image" \
  -append "console=ttyS0 quiet panic=-1 cgroup_no_v1=all rdinit=/init"
