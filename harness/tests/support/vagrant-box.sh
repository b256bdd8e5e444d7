#!/usr/bin/env bash
# Builds a Debian 12 Vagrant box for the libvirt provider, for cilab's own Vagrant test
# (harness/tests/vm_vagrant.rs): this machine cannot download bento/ubuntu-24.04, but it
# can build a box from Debian's packages. Prints the box file's path on stdout.
#
# The box: a qcow2 disk (ext4, no partition table) made with mmdebstrap and `mkfs.ext4 -d`
# (no loop device, no mount), booted by libvirt straight from the kernel and initramfs
# shipped in the box (direct kernel boot, set in the box's own Vagrantfile, so the
# project's Vagrantfile says nothing about it). Inside: systemd, dbus, sshd, sudo, rsync
# (the libvirt synced folder), networkd with DHCP, the user vagrant (password vagrant)
# with Vagrant's insecure public key and passwordless sudo, and the packages named in
# CILAB_BOX_PACKAGES preinstalled (the test passes the labs' packages, as the catalog
# declares them: the guest has no internet here, so provisioning cannot apt-get them).
#
# The disk, kernel and initramfs come from debian-image.sh (shared with cloud-image.sh).
# Cached by content under ${CILAB_BOX_CACHE:-/var/cache/cilab/boxes}: the key is a hash of
# this script, debian-image.sh, the package list and the insecure key; a box with that key
# is reused.
#
# Needs (Debian): mmdebstrap e2fsprogs qemu-utils vagrant (for the insecure key).
# Exits 3 when a tool is missing, 4 when the build fails.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/debian-image.sh"
image_require_tools tar
# The insecure public key ships in Debian's vagrant package (Vagrant replaces it with a
# key of its own at the first `vagrant up`).
insecure_key=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
  /usr/lib/ruby/vendor_ruby/vagrant/keys/vagrant.pub 2>/dev/null | head -n 1 || true)
if [ -z "$insecure_key" ]; then
  echo "vagrant-box: Vagrant's insecure key (keys/vagrant.pub) not found: apt-get install -y vagrant" >&2
  exit 3
fi

packages=${CILAB_BOX_PACKAGES:-}
cache=${CILAB_BOX_CACHE:-/var/cache/cilab/boxes}
key=$(echo "$packages" | image_key "$0" "$insecure_key")
box="$cache/cilab-debian12-$key.box"
if [ -s "$box" ]; then
  echo "vagrant-box: cached $box" >&2
  echo "$box"
  exit 0
fi
mkdir -p "$cache"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"

# systemd-networkd with DHCP on any wired interface; sshd on; the vagrant user.
image_rootfs "$root" cilab-box "openssh-server sudo rsync $packages" \
  --customize-hook='printf "[Match]\nName=e*\n\n[Network]\nDHCP=yes\n" > "$1/etc/systemd/network/50-wired.network"' \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd ssh' \
  --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash --user-group vagrant' \
  --customize-hook='echo vagrant:vagrant | chroot "$1" chpasswd' \
  --customize-hook='printf "vagrant ALL=(ALL) NOPASSWD: ALL\nDefaults:vagrant !requiretty\n" > "$1/etc/sudoers.d/vagrant" && chmod 0440 "$1/etc/sudoers.d/vagrant"' \
  --customize-hook="mkdir -p \"\$1/home/vagrant/.ssh\" && cp '$insecure_key' \"\$1/home/vagrant/.ssh/authorized_keys\"" \
  --customize-hook='chmod 0700 "$1/home/vagrant/.ssh" && chmod 0600 "$1/home/vagrant/.ssh/authorized_keys" && chroot "$1" chown -R vagrant:vagrant /home/vagrant/.ssh'

out="$work/box"
size_gb=8
# The disk, and the kernel and initramfs the guest boots (the box's Vagrantfile points
# libvirt at them).
image_disk "$root" "$out" "$size_gb"
mv "$out/disk.qcow2" "$out/box.img"
printf '{"provider":"libvirt","format":"qcow2","virtual_size":%d}\n' "$size_gb" > "$out/metadata.json"
cat > "$out/Vagrantfile" <<'BOXFILE'
# The box's own Vagrantfile (merged under the project's): boot the kernel and initramfs
# shipped beside the disk, root on the first virtio disk.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = File.join(__dir__, "vmlinuz")
    libvirt.initrd = File.join(__dir__, "initrd.img")
    libvirt.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet"
  end
end
BOXFILE
tar -C "$out" -cf "$box.partial" metadata.json Vagrantfile box.img vmlinuz initrd.img
mv "$box.partial" "$box"
# Boxes of older versions of this script or other package lists are not used again.
find "$cache" -maxdepth 1 -name 'cilab-debian12-*.box' ! -path "$box" -delete
echo "vagrant-box: built $box" >&2
echo "$box"
