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
