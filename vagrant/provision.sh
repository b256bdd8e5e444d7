#!/usr/bin/env bash
# Makes a fresh Ubuntu 24.04 (or Debian 12) VM ready for the cilab labs, as root. The
# Vagrantfile runs it (`vagrant up`); vagrant/cloud-init.yaml carries it for Multipass.
# Running it again is harmless: it installs only what is missing.
#
# 1. The packages the labs need (cilab's catalog, plus uidmap and Docker for the labs'
#    variants; Docker that cannot be installed is a warning, not an error), and, on
#    Ubuntu 24.04, unprivileged user namespaces back on (AppArmor restricts them there;
#    lab userns-maps needs them).
# 2. cilab and the labs, one of two ways:
#    - prebuilt: if $CILAB_PREBUILT (default /opt/cilab-prebuilt) holds a `cilab` binary,
#      its binaries are installed as they are: no Rust, no build, no internet needed
#      (cilab's own tests, whose guests have no internet, build on the host and sync them);
#    - built: otherwise Rust is installed with rustup (for everyone, in /usr/local/rust)
#      and the source tree is built with cargo, into CARGO_TARGET_DIR=/var/lib/cilab/target
#      on the guest's own disk. Without a tree yet (Multipass: `multipass mount` comes
#      after cloud-init), it says how to build later.
# 3. `cilab` on root's PATH, and a last line that says the next command.
#
# The source tree is $CILAB_SRC; a run given one writes it down (/etc/cilab/provision.env),
# and a later run without it (`sudo cilab-provision`: sudo passes no CILAB_SRC) takes the
# one written down, else /vagrant. The script keeps a copy of itself as
# /usr/local/sbin/cilab-provision; when that copy runs and the tree's
# vagrant/provision.sh is not the same (the tree was updated: `git pull`), it installs the
# tree's in its place and runs that instead (once).
#
# Settings: CILAB_SRC, CILAB_PREBUILT, CILAB_WITH_DOCKER (0: no Docker).
set -euo pipefail

# Where the script keeps its copy and what it was given (harness/tests/vm_files.rs sources
# the script and points these into a temporary directory).
installed=/usr/local/sbin/cilab-provision
settings=/etc/cilab/provision.env

say() { echo "cilab-provision: $*"; }
die() { echo "cilab-provision: error: $*" >&2; exit 1; }

# choose_source [ARG...]: sets $src, the tree to build (see the top), and keeps the
# installed copy of the script current: a copy run from elsewhere (Vagrant's upload, the
# tree's own) installs itself; the installed copy hands over to a different
# vagrant/provision.sh in the tree, passing ARG... on.
choose_source() {
  local recorded='' running tree_script
  if [ -f "$settings" ]; then
    recorded=$(sed -n 's/^CILAB_SRC=//p' "$settings" | tail -n 1)
  fi
  if [ -n "${CILAB_SRC:-}" ]; then
    src=$CILAB_SRC
    if [ "$src" != "$recorded" ]; then
      mkdir -p "$(dirname "$settings")"
      printf 'CILAB_SRC=%s\n' "$src" > "$settings"
    fi
  else
    src=${recorded:-/vagrant}
  fi
  running=$(readlink -f "$0")
  tree_script=$src/vagrant/provision.sh
  if [ "$running" = "$(readlink -f "$installed")" ]; then
    if [ -f "$tree_script" ] && ! cmp -s "$tree_script" "$running" && [ -z "${CILAB_PROVISION_HANDED_OVER:-}" ]; then
      say "$tree_script is not this copy ($installed): installing it in its place and running it"
      install -m 0755 "$tree_script" "$installed"
      export CILAB_PROVISION_HANDED_OVER=1 CILAB_SRC="$src"
      exec "$installed" "$@"
    fi
  elif [ -f "$0" ]; then
    mkdir -p "$(dirname "$installed")"
    install -m 0755 "$0" "$installed"
  fi
}

# Sourced (the test): the functions only.
(return 0 2>/dev/null) && return 0

[ "$(id -u)" = 0 ] || die "run me as root (sudo $0)"
export DEBIAN_FRONTEND=noninteractive

choose_source "$@"
prebuilt=${CILAB_PREBUILT:-/opt/cilab-prebuilt}
with_docker=${CILAB_WITH_DOCKER:-1}
state=/var/lib/cilab
target_dir=$state/target
mkdir -p "$state"

# --- 1. packages -------------------------------------------------------------------------
# The labs' tools (cilab::catalog::packages(); a test keeps this line in step), util-linux
# (unshare, nsenter, setpriv) and uidmap (the userns-maps variant `subids`).
packages=(busybox-static coreutils libc-bin util-linux uidmap)
if [ ! -x "$prebuilt/cilab" ]; then
  # To build: a C linker for Rust, and curl for rustup.
  packages+=(build-essential curl ca-certificates git)
fi
# install_missing PACKAGE...: apt-get installs those not installed; fails when apt does.
install_missing() {
  local package missing=()
  for package in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$package")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    say "packages: all there ($*)"
    return 0
  fi
  say "installing ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
}
install_missing "${packages[@]}" \
  || die "installing ${packages[*]} failed: does the VM reach a Debian/Ubuntu mirror?"
# Docker is optional: without it the labs' Docker variants are SKIPs, and `cilab check`
# says so. A VM that cannot install it is still provisioned.
if [ "$with_docker" != 0 ] && ! install_missing docker.io; then
  say "warning: Docker could not be installed (no mirror?): the labs' Docker variants will be SKIPs; later: \`sudo apt-get install docker.io\`"
fi

# Ubuntu 24.04 lets AppArmor refuse unprivileged user namespaces; lab userns-maps makes one.
if [ -e /proc/sys/kernel/apparmor_restrict_unprivileged_userns ]; then
  echo "kernel.apparmor_restrict_unprivileged_userns = 0" > /etc/sysctl.d/60-cilab-userns.conf
  sysctl -q -p /etc/sysctl.d/60-cilab-userns.conf
  say "unprivileged user namespaces allowed (/etc/sysctl.d/60-cilab-userns.conf)"
fi

# --- 2. cilab and the labs ---------------------------------------------------------------
install_cilab_link() {
  # cilab finds the lab binaries beside its own (resolved) executable.
  ln -sfn "$1/cilab" /usr/local/bin/cilab
}

if [ -x "$prebuilt/cilab" ]; then
  mkdir -p "$state/bin"
  for binary in "$prebuilt"/*; do
    [ -f "$binary" ] && [ -x "$binary" ] && install -m 0755 "$binary" "$state/bin/"
  done
  install_cilab_link "$state/bin"
  say "installed the prebuilt binaries from $prebuilt into $state/bin"
else
  rust=/usr/local/rust
  if [ ! -x "$rust/cargo/bin/rustup" ]; then
    say "installing Rust with rustup into $rust"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
      | RUSTUP_HOME=$rust/rustup CARGO_HOME=$rust/cargo sh -s -- -y --no-modify-path --profile minimal >/dev/null \
      || die "rustup failed: does the VM reach https://sh.rustup.rs?"
  fi
  # cargo for every user and for sudo (secure_path has /usr/local/bin); builds go to the
  # guest's own disk.
  for tool in cargo rustc rustup; do
    cat > "/usr/local/bin/$tool" <<WRAPPER
#!/bin/sh
export RUSTUP_HOME=$rust/rustup CARGO_HOME=$rust/cargo
: "\${CARGO_TARGET_DIR:=$target_dir}"
export CARGO_TARGET_DIR
exec $rust/cargo/bin/$tool "\$@"
WRAPPER
    chmod 0755 "/usr/local/bin/$tool"
  done
  if [ -f "$src/Cargo.toml" ]; then
    say "building $src into $target_dir (the first build takes a few minutes)"
    (cd "$src" && cargo build --workspace --quiet) || die "cargo build in $src failed"
    install_cilab_link "$target_dir/debug"
  else
    say "no source tree at $src yet: mount it there and run \`sudo cilab-provision\` to build"
  fi
fi

# --- 3. done -------------------------------------------------------------------------------
if [ -x /usr/local/bin/cilab ]; then
  cilab --version >/dev/null || die "the installed cilab does not run"
  date -u +%FT%TZ > "$state/provisioned"
  say "ready. Next: \`vagrant ssh\` (Multipass: \`multipass shell cilab\`), then \`sudo cilab doctor\` and \`sudo cilab run chroot-jail --step\`"
else
  say "Rust and the packages are ready. Next: put the tree at $src (Multipass: \`multipass mount . cilab:$src\`), then \`sudo cilab-provision\`"
fi
