# Sourced (not run) by the image builders of cilab's VM tests: vagrant-box.sh (a libvirt
# box for vm_vagrant.rs) and cloud-image.sh (a cloud image for vm_cloud_init.rs). One way
# to make a bootable Debian 12 disk, shared by both:
#
# - a root file system made with mmdebstrap (minbase, no Recommends): systemd, udev, dbus,
#   Debian's cloud kernel and an initramfs, plus the caller's packages and hooks;
# - an ext4 disk image with no partition table, filled with `mkfs.ext4 -d` (no loop device,
#   no mount), converted to qcow2; root is the first virtio disk (/dev/vda);
# - the kernel and initramfs beside it, for direct kernel boot (no boot loader).
#
# Cached by content: image_key hashes this file, the caller's script and whatever else the
# caller passes; the caller keeps one build per key.
#
# Needs (Debian): mmdebstrap e2fsprogs qemu-utils. image_require_tools exits 3 without them.

image_require_tools() {
  local tool
  for tool in mmdebstrap mkfs.ext4 qemu-img sha256sum "$@"; do
    if ! command -v "$tool" >/dev/null; then
      echo "debian-image: needs $tool: apt-get install -y mmdebstrap e2fsprogs qemu-utils" >&2
      exit 3
    fi
  done
}

# image_key FILE... : 16 hex digits naming this library, the files and stdin together.
image_key() {
  { cat "${BASH_SOURCE[0]}" "$@"; cat; } | sha256sum | cut -c1-16
}

# image_rootfs ROOT HOSTNAME PACKAGES [mmdebstrap options (hooks)...]
# PACKAGES: space-separated, installed on top of the base. Exits 4 when mmdebstrap fails.
image_rootfs() {
  local root=$1 hostname=$2 packages=$3
  shift 3
  local base=systemd-sysv,udev,dbus,ca-certificates,iproute2,linux-image-cloud-amd64,initramfs-tools
  local -a list
  read -ra list <<<"$packages"
  local include=$base package
  for package in "${list[@]}"; do include+=",$package"; done
  mmdebstrap --quiet --variant=minbase --include="$include" \
    --customize-hook="echo '$hostname' > \"\$1/etc/hostname\"" \
    --customize-hook='printf "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n" > "$1/etc/fstab"' \
    "$@" \
    --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*_Packages' \
    bookworm "$root" http://deb.debian.org/debian >&2 || { echo "debian-image: mmdebstrap failed" >&2; exit 4; }
}

# image_disk ROOT OUT_DIR SIZE_GB: OUT_DIR/disk.qcow2 (ext4 labelled cilab-root, ROOT's
# files), OUT_DIR/vmlinuz and OUT_DIR/initrd.img (ROOT's kernel and initramfs).
image_disk() {
  local root=$1 out=$2 size_gb=$3
  mkdir -p "$out"
  cp -L "$root/vmlinuz" "$out/vmlinuz"
  cp -L "$root/initrd.img" "$out/initrd.img"
  truncate -s "${size_gb}G" "$out/disk.raw"
  mkfs.ext4 -q -L cilab-root -d "$root" "$out/disk.raw" >&2
  qemu-img convert -f raw -O qcow2 "$out/disk.raw" "$out/disk.qcow2"
  rm -f "$out/disk.raw"
}
