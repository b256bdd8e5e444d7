#!/usr/bin/env bash
# Builds a Debian 12 cloud image for cilab's cloud-init test (harness/tests/vm_cloud_init.rs):
# what `multipass launch` boots, made here from Debian's packages (this machine cannot
# download Ubuntu's). Prints the image's directory on stdout: disk.qcow2 (root, ext4, no
# partition table), vmlinuz and initrd.img (Debian's cloud kernel, booted directly).
#
# The disk and kernel come from debian-image.sh (shared with vagrant-box.sh). Inside:
# cloud-init, reading only the NoCloud datasource (a seed drive labelled cidata, as
# `cloud-localds` makes it) with its network configuration off (the guest has no network
# here); the packages named in CILAB_IMAGE_PACKAGES (the test passes what
# vagrant/provision.sh installs: the guest cannot download them); and two seams for the
# test, neither of which is user-data:
# - a virtio disk labelled cilab-prebuilt, when attached, is mounted read-only at
#   /opt/cilab-prebuilt, where vagrant/provision.sh looks for binaries built on the host;
# - the unit cilab-test-agent.service runs /opt/cilab-prebuilt/cilab-test/agent when that
#   disk carries one, once cloud-final.service (runcmd) is over (the test's guest side: it
#   asks cloud-init how it went, runs the check and sends the report over a virtio-serial
#   port).
#
# Cached by content under ${CILAB_IMAGE_CACHE:-/var/cache/cilab/images}: the key is a hash
# of this script, debian-image.sh and the package list; an image with that key is reused.
#
# Needs (Debian): mmdebstrap e2fsprogs qemu-utils. Exits 3 when a tool is missing, 4 when
# the build fails.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/debian-image.sh"
image_require_tools

packages=${CILAB_IMAGE_PACKAGES:-}
cache=${CILAB_IMAGE_CACHE:-/var/cache/cilab/images}
key=$(echo "$packages" | image_key "$0")
image="$cache/cloud-debian12-$key"
if [ -s "$image/disk.qcow2" ]; then
  echo "cloud-image: cached $image" >&2
  echo "$image"
  exit 0
fi
mkdir -p "$cache"

work=$(mktemp -d "$cache/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"

# locales, en_US.UTF-8 generated: cloud-init's locale module sets LANG=en_US.UTF-8, as
# Ubuntu's images have it (Debian's locale-gen makes only what /etc/locale.gen enables).
image_rootfs "$root" cilab-cloud "cloud-init locales $packages" \
  --customize-hook='sed -i "s/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/" "$1/etc/locale.gen" && chroot "$1" locale-gen >/dev/null' \
  --customize-hook='printf "datasource_list: [ NoCloud ]\nnetwork: {config: disabled}\n" > "$1/etc/cloud/cloud.cfg.d/90-cilab-test.cfg"' \
  --customize-hook='mkdir -p "$1/opt/cilab-prebuilt" && printf "LABEL=cilab-prebuilt /opt/cilab-prebuilt ext4 ro,nofail,x-systemd.device-timeout=20s 0 0\n" >> "$1/etc/fstab"' \
  --customize-hook='cat > "$1/etc/systemd/system/cilab-test-agent.service" <<UNIT
[Unit]
Description=cilab test agent: waits for cloud-init, runs the check, sends the report
ConditionPathExists=/opt/cilab-prebuilt/cilab-test/agent
RequiresMountsFor=/opt/cilab-prebuilt
# After the last stage of cloud-init (runcmd). Wanted by cloud-init.target, not by
# multi-user.target: cloud-final.service runs after multi-user.target.
After=cloud-final.service

[Service]
Type=simple
ExecStart=/opt/cilab-prebuilt/cilab-test/agent
StandardOutput=journal+console

[Install]
WantedBy=cloud-init.target
UNIT' \
  --customize-hook='chroot "$1" systemctl enable cilab-test-agent.service'

image_disk "$root" "$work/image" 6
rm -rf "$root"
mv "$work/image" "$image"
# Images of older versions of this script or other package lists are not used again.
find "$cache" -mindepth 1 -maxdepth 1 -name 'cloud-debian12-*' ! -path "$image" -exec rm -rf {} +
echo "cloud-image: built $image" >&2
echo "$image"
