#!/bin/bash
# The guest side of cilab's cloud-init test (harness/tests/vm_cloud_init.rs), run by the
# unit cilab-test-agent.service of the image (cloud-image.sh) from the test's drive. It is
# not part of the user-data: it only watches what cloud-init did with it.
#
# Runs once cloud-final.service (runcmd) is over (the unit's ordering), asks cloud-init how
# it went (`cloud-init status --wait`, which also waits if it is not done), then sends to
# the host, over the virtio-serial port cilab.report (never the console), in sections each
# opened by a line "=== cilab-test: <name> <fields> ===":
#   cloud-init <exit status of status --wait> <guest uptime s>   what cloud-init says
#   user-data                      sha256 of the user-data cloud-init was given
#   provisioning                   /var/log/cloud-init-output.log (provision.sh's output)
#   cilab                          where the `cilab` on PATH resolves to
#   check <exit status> <uptime>   `cilab check --all --format json`'s report
#   check-stderr                   its last lines on stderr
#   end
# and powers the guest off.
set -u
port=/dev/virtio-ports/cilab.report
if ! exec 3>"$port"; then
  echo "cilab-test-agent: no port $port" >&2
  systemctl poweroff
  exit 1
fi
uptime_s() { cut -d' ' -f1 /proc/uptime; }
section() { printf '\n=== cilab-test: %s ===\n' "$*" >&3; }

cloud-init status --wait --long >/run/cilab-cloud-init-status 2>&1
section "cloud-init $? $(uptime_s)"
cat /run/cilab-cloud-init-status >&3

section "user-data"
sha256sum </var/lib/cloud/instance/user-data.txt | cut -d' ' -f1 >&3

section "provisioning"
cat /var/log/cloud-init-output.log >&3

section "cilab"
readlink -f "$(command -v cilab)" >&3

# As the Vagrant and Multipass backends run it: in a delegated scope of its own (this
# unit's cgroup holds this script, so it could not hand controllers down to cgroup-limits).
# The guest's CPU is emulated (TCG): labs take longer to reach each stage than the default.
systemd-run --quiet --scope -p Delegate=yes -- \
  cilab check --all --no-build --format json --allow-jailbreak-on-this-host --hold-timeout 180 \
  >/run/cilab-report.json 2>/run/cilab-report.err
section "check $? $(uptime_s)"
cat /run/cilab-report.json >&3

section "check-stderr"
tail -n 40 /run/cilab-report.err >&3

section "end"
exec 3>&-
systemctl poweroff
