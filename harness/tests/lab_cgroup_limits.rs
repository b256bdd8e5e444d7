//! Lab cgroup-limits, graded by the real harness on the real kernel (needs root). The
//! facts differ between cgroup versions (the freezer's states, the files the counters come
//! from): this machine's are snapshotted under its version; the pure-v2 snapshot is taken
//! from the QEMU guest (tests/cgroup_v2_guest.rs).

mod common;

use cilab::catalog;
use cilab::corpus::Edit;
use cilab::verdict::Outcome;

#[test]
fn cgroup_limits_every_verdict_passes() {
    common::require_root();
    let (code, report) = common::check(&["cgroup-limits"]);
    common::assert_all_passed(&report);
    assert_eq!(code, 0, "cilab check exits 0 when every verdict passed");
    assert_eq!(report.labs.len(), 1);
    let observations = &report.labs[0].observations;
    let layout = observations["made.cgroup_layout"].as_str().expect("the layout is a string").to_string();
    insta::assert_yaml_snapshot!(format!("cgroup_limits_observations_{layout}"), observations);
}

/// A fork bomb and a memory hog written by a student who sets no limit of their own
/// never escape the run's cgroup: the lab's limit regions emptied, the run's own cgroup
/// files show the bomb held at the run's pids.max and the hog OOM-killed at the run's
/// memory limit, nothing is left behind, and the host's fork and exec stay fast.
#[test]
fn without_limits_of_its_own_the_runs_limits_hold() {
    common::require_root();
    let lab = catalog::find("cgroup-limits").expect("in the catalog");
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let edits = [
        Edit::Region("limit-pids", "let _ = (cgroup, max);\nOk(())"),
        Edit::Region("limit-memory", "let _ = (cgroup, bytes);\nOk(())"),
        Edit::Region("limit-cpu", "let _ = (cgroup, quota_us, period_us);\nOk(())"),
    ];
    let report = cilab::corpus::grade_edited(lab, &workspace, &edits).expect("graded");
    let facts = &report.observations;
    let fact = |key: &str| facts.get(key).unwrap_or_else(|| panic!("no fact {key}: {facts:#?}"));
    let outcome = |id: &str| report.verdicts.iter().find(|v| v.id == id).map(|v| v.outcome);
    // The lab's own limits are missing, and the checks say so.
    for id in ["bomb-held-at-n", "hog-oom-killed", "cpu-quota"] {
        assert_eq!(outcome(id), Some(Outcome::Fail), "{id}: {:#?}", report.verdicts);
    }
    // The bomb ran into the run's own pids.max: every task of the run counted.
    assert_eq!(fact("bomb-held.run_pids_max"), "256");
    assert_eq!(fact("bomb-held.run_pids_current"), 256);
    assert_eq!(fact("bomb-held.fork_by_a_probe_in_the_bombs_cgroup"), "EAGAIN");
    // The hog ran into the run's memory limit and was OOM-killed there.
    assert_eq!(fact("oom.hog_exit"), "killed by SIGKILL");
    assert_eq!(fact("oom.run_memory_peak_at_the_runs_limit"), true);
    assert_eq!(fact("oom.peak_within_64_mib"), false);
    assert!(fact("oom.oom_kill_count").as_u64() >= Some(1), "{facts:#?}");
    // Nothing escaped: the lab finished, left nothing, and the host stayed responsive.
    for id in
        ["under-the-run", "workloads-inside", "cgroup-killed", "lab-finished", "nothing-leaked", "host-responsive"]
    {
        assert_eq!(outcome(id), Some(Outcome::Pass), "{id}: {:#?}", report.verdicts);
    }
    assert_eq!(fact("run.leaks"), &serde_json::json!([]));
}
