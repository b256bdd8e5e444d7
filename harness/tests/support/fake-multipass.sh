#!/bin/bash
# A fake `multipass` for harness/tests/backend_multipass.rs: Multipass is a snap and this
# machine has none, so cilab's backend is driven against this, which answers as the real
# one does (`multipass info --format json`, `multipass exec <instance> -- <argv>` with the
# command's exit status), and appends each call to $FAKE_MULTIPASS_LOG: one line, the
# arguments separated by the unit separator (0x1f).
#
# Its "instance" is this machine: $FAKE_INSTANCE is the only instance; its state is
# $FAKE_STATE; the probe (sh -c ...) answers a kernel, cgroup v2 and $FAKE_HAS_CILAB;
# a command run as root in a named delegated scope, which must be exactly as cilab's
# backend wraps it, is run here as it is ($FAKE_CHECK=run), answers nonsense (=garbage),
# or (=hang) goes on in the "instance" whatever happens to this `multipass exec`: a
# process in a session of its own, its pid in <unit>.pid beside the log, that writes a
# line into the fifo $FAKE_READY once it runs and then waits. `sudo systemctl stop
# <unit>.scope` kills it, as systemd would stop the scope.
set -u
{ printf '%s\x1f' "$@"; echo; } >>"${FAKE_MULTIPASS_LOG:?}"
dir=$(dirname "$FAKE_MULTIPASS_LOG")
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
    if [ "${*:1:3}" = "sudo systemctl stop" ] && [ $# = 4 ]; then
      unit=${4%.scope}
      if [ ! -f "$dir/$unit.pid" ]; then
        echo "Failed to stop $4: Unit $4 not loaded." >&2
        exit 5
      fi
      kill -KILL "$(cat "$dir/$unit.pid")"
      rm -f "$dir/$unit.pid"
      exit 0
    fi
    unit=${6:-}
    if [ "${*:1:5}" != "sudo systemd-run --quiet --scope --unit" ] || [ "${unit#cilab-check-}" = "$unit" ] \
      || [ "${*:7:5}" != "-p TimeoutStopSec=15 -p Delegate=yes --" ]; then
      echo "fake multipass: not run as root in a named delegated scope: $*" >&2
      exit 99
    fi
    shift 11
    case "$FAKE_CHECK" in
      run) exec "$@" ;;
      hang)
        setsid sh -c 'echo $$ >"$1"; echo started >"$2"; exec sleep 100000' sh "$dir/$unit.pid" "${FAKE_READY:?}" \
          </dev/null >/dev/null 2>&1 &
        wait
        ;;
      *) echo "Segmentation fault" >&2; exit 139 ;;
    esac
    ;;
  *)
    echo "fake multipass: unknown command: $*" >&2
    exit 2
    ;;
esac
