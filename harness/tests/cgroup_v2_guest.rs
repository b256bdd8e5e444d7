//! Pure cgroup v2, as on current Ubuntu, proved on a machine that is itself hybrid: a
//! QEMU guest (TCG) boots a Debian kernel whose only cgroup filesystem is cgroup2, and
//! runs `cilab doctor` and `cilab check --all` there (tests/support/v2-guest.sh).

mod common;

use std::path::Path;

#[test]
fn every_lab_passes_and_is_bounded_on_pure_cgroup_v2() {
    common::require_root();
    // The guest gets the built binaries: make sure the labs are built too.
    let cargo = std::env::var("CARGO").expect("cargo test sets CARGO");
    let built =
        std::process::Command::new(&cargo).args(["build", "-q", "-p", "lab-pid-ns", "-p", "lab-chroot-jail"]).status();
    assert!(built.expect("run cargo").success());
    let cilab = assert_cmd::cargo::cargo_bin("cilab");
    let bin_dir = cilab.parent().expect("target dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/v2-guest.sh");
    let output =
        std::process::Command::new("bash").arg(&script).env("CILAB_BIN_DIR", bin_dir).output().expect("run the guest");
    let console = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(3), "{errors}");
    let expect =
        |needle: &str| assert!(console.contains(needle), "the guest did not print {needle:?}:\n{console}\n{errors}");
    expect("v2 (unified); v2 at /sys/fs/cgroup");
    expect("2 lab(s): 25 passed, 0 failed, 0 skipped; 40/40 points");
    expect("guest: cilab check exited 0");
    expect("pids.max=256(v2)");
    expect("memory.max=536870912(v2)");
    expect("memory.swap.max=0(v2)");
    assert!(!console.contains("FAIL"), "{console}");
}
