#!/bin/bash
# A fake `multipass` for harness/tests/backend_multipass.rs: Multipass is a snap and this
# machine has none, so cilab's backend is driven against this, which answers as the real
# one does (`multipass info --format json`, `multipass exec <instance> -- <argv>` with the
# command's exit status), and appends each call to $FAKE_MULTIPASS_LOG: one line, the
# arguments separated by the unit separator (0x1f).
#
# Its "instance" is this machine: $FAKE_INSTANCE is the only instance; its state is
# $FAKE_STATE; the probe (sh -c ...) answers a kernel, cgroup v2 and $FAKE_HAS_CILAB;
# a command run as root in a delegated scope, which must be exactly as cilab's backend
# wraps it, is run here as it is ($FAKE_CHECK=run) or answers nonsense (=garbage).
set -u
{ printf '%s\x1f' "$@"; echo; } >>"${FAKE_MULTIPASS_LOG:?}"
case "${1:-}" in
  info)
    if [ "${2:-}" != "$FAKE_INSTANCE" ] || [ "${3:-} ${4:-}" != "--format json" ]; then
      printf 'info failed: The following errors occurred:\ninstance "%s" does not exist\n' "${2:-}" >&2
      exit 2
    fi
    printf '{"errors": [], "info": {"%s": {"cpu_count": "2", "image_release": "24.04 LTS", "mounts": {}, "release": "Ubuntu 24.04.1 LTS", "state": "%s"}}}\n' \
      "$FAKE_INSTANCE" "$FAKE_STATE"
    ;;
  exec)
    if [ "${2:-}" != "$FAKE_INSTANCE" ] || [ "${3:-}" != "--" ]; then
      echo "exec failed: instance \"${2:-}\" does not exist" >&2
      exit 2
    fi
    shift 3
    if [ "${1:-}" = sh ] && [ "${2:-}" = -c ]; then
      printf '6.8.0-49-generic\ncgroup2fs\n-\n%s\n' "$FAKE_HAS_CILAB"
      exit 0
    fi
    if [ "${*:1:7}" != "sudo systemd-run --quiet --scope -p Delegate=yes --" ]; then
      echo "fake multipass: not run as root in a delegated scope: $*" >&2
      exit 99
    fi
    shift 7
    case "$FAKE_CHECK" in
      run) exec "$@" ;;
      *) echo "Segmentation fault" >&2; exit 139 ;;
    esac
    ;;
  *)
    echo "fake multipass: unknown command: $*" >&2
    exit 2
    ;;
esac
