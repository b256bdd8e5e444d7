#!/usr/bin/env bash
# Pure cgroup v2 with cilab started below the root, in a QEMU guest (as v2-guest.sh, whose
# guest starts cilab in the root cgroup): a start cgroup that another process shares
# (it may not hand controllers down: runs go on unbounded and say why), one cilab has to
# itself (it hands them down, and is put back as it was), and one with a tight pids.max
# (the runs are below it, so it bounds the labs). Prints what it sees for
# harness/tests/nested_cgroups_v2_guest.rs. Needs what v2-guest.sh needs.
set -euo pipefail

kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
if [ -z "$kernel" ] || ! command -v qemu-system-x86_64 >/dev/null; then
  echo "v2-nested-guest: needs a kernel in /boot and qemu-system-x86_64: apt-get install -y qemu-system-x86 linux-image-cloud-amd64" >&2
  exit 3
fi
bin_dir=${CILAB_BIN_DIR:-target/debug}
bins=("$bin_dir/cilab" "$bin_dir/lab-pid-ns")
root=$(mktemp -d)
image=$(mktemp)
trap 'rm -rf "$root" "$image"' EXIT
chmod 755 "$root"

mkdir -p "$root"/{bin,proc,sys,dev,tmp,etc,root,work/bin,var/lib,usr/bin}
cp "$(command -v busybox)" "$root/bin/busybox"
cp "${bins[@]}" "$root/work/bin/"
for binary in "${bins[@]}"; do
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
cg=/sys/fs/cgroup
echo "+pids +memory" > $cg/cgroup.subtree_control
# `cilab check pid-ns` started in cgroup $1; its report in /tmp/$1.json.
check_in() {
  mkdir -p $cg/$1
  sh -c "echo \$\$ > $cg/$1/cgroup.procs && exec cilab check pid-ns --no-build --format json" > /tmp/$1.json 2> /tmp/$1.err
  echo "guest: $1 exited $?"
  echo "guest: $1 limits: $(tr -d '\n' < /tmp/$1.json | grep -o '"cgroup_limits": *\[[^]]*\]')"
  echo "guest: $1 saw: $(tr -d '\n' < /tmp/$1.json | grep -o '"detail": *"[^"]*"' | head -n 2 | tr '\n' ' ')"
  echo "guest: $1 stderr: $(head -c 300 /tmp/$1.err)"
  echo "guest: $1 after: subtree_control='$(cat $cg/$1/cgroup.subtree_control)' children=$(find $cg/$1 -mindepth 1 -type d | wc -l)"
}
mkdir $cg/busy
sleep 1000 &
sleeper=$!
echo $sleeper > $cg/busy/cgroup.procs
check_in busy
kill $sleeper
check_in alone
mkdir $cg/tight
echo 10 > $cg/tight/pids.max
check_in tight
echo "guest: cilab dirs left: $(find $cg -name cilab -type d | wc -l)"
cilab doctor | tail -n 1
poweroff -f
INIT
chmod +x "$root/init"

(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 > "$image"
accel=tcg
[ "${CILAB_QEMU_KVM:-0}" = 1 ] && accel=kvm
timeout 300 qemu-system-x86_64 -accel "$accel" -m 1024 -smp 2 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$image" \
  -append "console=ttyS0 quiet panic=-1 cgroup_no_v1=all rdinit=/init"
