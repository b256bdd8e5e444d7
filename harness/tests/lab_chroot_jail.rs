//! Lab chroot-jail, graded by the real harness on the real kernel (needs root).

mod common;

#[test]
fn chroot_jail_every_verdict_passes() {
    common::require_root();
    let (code, report) = common::check(&["chroot-jail"]);
    common::assert_all_passed(&report);
    assert_eq!(code, 0, "cilab check exits 0 when every verdict passed");
    assert_eq!(report.labs.len(), 1);
    let limits = &report.labs[0].cgroup_limits;
    assert!(limits.iter().any(|l| l.starts_with("pids.max=")), "the run's cgroup bounds the lab: {limits:?}");
    insta::assert_yaml_snapshot!("chroot_jail_observations", report.labs[0].observations);
}

/// A root shell with a strict umask must not change the verdicts: the jail and the dirs
/// above it stay reachable for the uid 65534 that tries to chroot (else: EACCES, not EPERM).
#[test]
fn chroot_jail_passes_under_a_strict_umask() {
    common::require_root();
    let cilab = assert_cmd::cargo::cargo_bin("cilab");
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"umask 077 && exec "$0" check chroot-jail --format json"#)
        .arg(&cilab)
        .output()
        .expect("run cilab under umask 077");
    let report: cilab::report::Report = serde_json::from_slice(&output.stdout).expect("JSON report");
    common::assert_all_passed(&report);
}
