//! A lab killed (SIGKILL) at any of its hold points: the run fails, names why, and its
//! teardown still leaves nothing on the host, as the harness and this test both see.

mod common;

use std::sync::Mutex;

use cilab::verdict::Outcome;
use rstest::rstest;

/// The cases compare the whole host before and after: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[rstest]
#[case::pid_ns_unshared("pid-ns", "unshared")]
#[case::pid_ns_init_running("pid-ns", "init-running")]
#[case::pid_ns_orphaned("pid-ns", "orphaned")]
#[case::pid_ns_handler_installed("pid-ns", "handler-installed")]
#[case::pid_ns_init_gone("pid-ns", "init-gone")]
#[case::chroot_jail_binary_alone("chroot-jail", "binary-alone")]
#[case::chroot_jail_with_libraries("chroot-jail", "with-libraries")]
#[case::chroot_jail_jailed("chroot-jail", "jailed")]
#[case::chroot_jail_private_mounts("chroot-jail", "private-mounts")]
fn sigkill_at_a_hold_point_leaves_nothing(#[case] lab: &str, #[case] stage: &str) {
    common::require_root();
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let before = common::host_state();
    let fault = format!("kill-lab-at:{stage}");
    let (code, report) = common::check(&[lab, "--fault", &fault]);
    assert_eq!(code, 1, "a failed run exits 1");
    let lab_report = &report.labs[0];
    let verdict = |id: &str| lab_report.verdicts.iter().find(|v| v.id == id).expect("verdict").clone();
    assert_eq!(verdict("lab-finished").outcome, Outcome::Fail);
    let stopped = lab_report.stopped.as_deref().unwrap_or_default();
    assert!(stopped.contains(stage) && stopped.contains("fault injected"), "stopped: {stopped}");
    assert_eq!(lab_report.leaks, Vec::<String>::new());
    assert_eq!(verdict("nothing-leaked").outcome, Outcome::Pass);
    common::assert_host_unchanged(&before);
}
