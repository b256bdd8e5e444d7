//! Each lab 50 times in a row: every run passes, and after all of them the host is as it
//! was (mounts, cgroups, processes, scratch dirs), as this test sees it.

mod common;

const RUNS: &str = "50";

#[test]
fn fifty_runs_of_each_lab_pass_and_leave_nothing() {
    common::require_root();
    let before = common::host_state();
    let (code, report) = common::check(&["pid-ns", "chroot-jail", "--repeat", RUNS]);
    assert_eq!(report.labs.len(), 100);
    common::assert_all_passed(&report);
    assert_eq!(code, 0);
    common::assert_host_unchanged(&before);
}
