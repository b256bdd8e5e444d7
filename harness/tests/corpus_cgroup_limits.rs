//! Course authors only: places the lab's cgroup where the mistake corpus's entries do,
//! which a student handout does not have. Lab cgroup-limits with the student's limits
//! missing: whatever the placement, the run's own limits hold.

mod common;

use cilab::catalog;
use cilab::corpus::Edit;
use cilab::mistakes;
use cilab::verdict::Outcome;
use rstest::rstest;

/// The ways of placing the lab's cgroup the corpus knows as mistakes (one level too
/// high, at the hierarchy's root), and the sheet's own.
fn placement(which: &str) -> Vec<Edit> {
    if which == "as the sheet says" {
        return Vec::new();
    }
    let mistake = mistakes::cgroup_limits::MISTAKES
        .iter()
        .find(|m| m.region == "make-cgroup" && m.name.contains(which))
        .unwrap_or_else(|| panic!("no make-cgroup mistake names {which:?} in the corpus"));
    mistake.edits.to_vec()
}

/// A fork bomb and a memory hog written by a student who sets no limit of their own, and
/// makes the cgroup where the sheet says or where the corpus's mistakes do, never escape
/// the run's cgroup: the lab runs in a cgroup namespace that begins at the run's cgroup,
/// so even "the root" is under the run's. The run's own cgroup files show the bomb held at
/// the run's pids.max and the hog OOM-killed at the run's memory limit, nothing is left
/// behind, and the host's fork and exec stay fast. (On pure v2 "one level too high" is
/// sysfs, where the lab cannot make a cgroup at all: it stops there, and nothing ran.)
#[rstest]
#[case::as_the_sheet_says("as the sheet says")]
#[case::one_level_too_high("one level too high")]
#[case::at_the_root("at the hierarchy's root")]
fn without_limits_of_its_own_the_runs_limits_hold(#[case] which: &str) {
    common::require_root();
    // One edited tree for the whole file (target/cilab-edited), and one bomb at a time.
    let _host = common::host_lock();
    let lab = catalog::find("cgroup-limits").expect("in the catalog");
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut edits = vec![
        Edit::Region("limit-pids", "let _ = (cgroup, max);\nOk(())"),
        Edit::Region("limit-memory", "let _ = (cgroup, bytes);\nOk(())"),
        Edit::Region("limit-cpu", "let _ = (cgroup, quota_us, period_us);\nOk(())"),
    ];
    edits.extend(placement(which));
    let report = cilab::corpus::grade_edited(lab, &workspace, &edits).expect("graded");
    let facts = &report.observations;
    let fact = |key: &str| facts.get(key).unwrap_or_else(|| panic!("{which}: no fact {key}: {facts:#?}"));
    let outcome = |id: &str| report.verdicts.iter().find(|v| v.id == id).map(|v| v.outcome);
    assert_eq!(fact("run.leaks"), &serde_json::json!([]), "{which}");
    if facts.get("bomb-held.run_pids_current").is_none() && fact("made.cgroup_version") == "v2" {
        assert_eq!(which, "one level too high", "only that placement may stop the lab before its bomb");
        assert_eq!(outcome("lab-finished"), Some(Outcome::Fail), "{which}: {:#?}", report.verdicts);
        return;
    }
    // The lab's own limits are missing, and the checks say so.
    for id in ["bomb-held-at-n", "hog-oom-killed", "cpu-quota"] {
        assert_eq!(outcome(id), Some(Outcome::Fail), "{which}: {id}: {:#?}", report.verdicts);
    }
    // The bomb ran into the run's own pids.max: every task of the run counted.
    assert_eq!(fact("bomb-held.run_pids_max"), "256", "{which}");
    assert_eq!(fact("bomb-held.run_pids_current"), 256, "{which}");
    assert_eq!(fact("bomb-held.fork_by_a_probe_in_the_bombs_cgroup"), "EAGAIN", "{which}");
    // The hog ran into the run's memory limit and was OOM-killed there.
    assert_eq!(fact("oom.hog_exit"), "killed by SIGKILL", "{which}");
    assert_eq!(fact("oom.run_memory_peak_at_the_runs_limit"), true, "{which}");
    assert_eq!(fact("oom.peak_within_64_mib"), false, "{which}");
    assert!(fact("oom.oom_kill_count").as_u64() >= Some(1), "{which}: {facts:#?}");
    // Nothing escaped: the lab finished, left nothing, and the host stayed responsive.
    for id in ["workloads-inside", "cgroup-killed", "lab-finished", "nothing-leaked", "host-responsive"] {
        assert_eq!(outcome(id), Some(Outcome::Pass), "{which}: {id}: {:#?}", report.verdicts);
    }
    // Where the sheet says, or not: the mistakes are named for what they are (on v2 the
    // namespace's root is beside the lab's own cgroup, where the sheet puts it).
    let root_is_in_place = which == "at the hierarchy's root" && fact("made.cgroup_version") == "v2";
    let expected = if which == "as the sheet says" || root_is_in_place { Outcome::Pass } else { Outcome::Fail };
    assert_eq!(outcome("in-its-place"), Some(expected), "{which}: {:#?}", report.verdicts);
}
