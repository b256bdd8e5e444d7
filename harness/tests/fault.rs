//! A lab killed (SIGKILL) at any of its hold points: the run fails, names why, and its
//! teardown still leaves nothing on the host, as the harness and this test both see.
//! Every hold point of every lab of the catalog, one after the other (each case compares
//! the whole host before and after).

mod common;

use cilab::catalog::{self, LabSpec};
use cilab::verdict::{Outcome, LAB_FINISHED, NOTHING_LEAKED};

/// What is wrong with the run of `lab` killed at `stage` (empty when it went as it must).
fn killed_at(lab: &LabSpec, stage: &str) -> Vec<String> {
    let before = common::host_state();
    let fault = format!("kill-lab-at:{stage}");
    let (code, report) = common::check(&[lab.name, "--no-build", "--fault", &fault]);
    let mut problems = Vec::new();
    if code != 1 {
        problems.push(format!("exit code {code}, not 1 (a failed run)"));
    }
    let [lab_report] = report.labs.as_slice() else {
        problems.push(format!("{} lab reports, not 1", report.labs.len()));
        return problems;
    };
    let outcome = |id: &str| lab_report.verdicts.iter().find(|v| v.id == id).map(|v| v.outcome);
    if outcome(LAB_FINISHED) != Some(Outcome::Fail) {
        problems.push(format!("{LAB_FINISHED}: {:?}, not a FAIL", outcome(LAB_FINISHED)));
    }
    // Nothing leaked, but a run that did not finish earns nothing for it: the verdict held
    // on its own and waits for lab-finished.
    let leaked = lab_report.verdicts.iter().find(|v| v.id == NOTHING_LEAKED);
    let held_on_its_own = leaked
        .is_some_and(|v| v.points == 0 && v.detail.as_deref().is_some_and(|d| d.ends_with("(it held on its own)")));
    if !held_on_its_own || lab_report.observations.get("run.leaks") != Some(&serde_json::json!([])) {
        problems
            .push(format!("{NOTHING_LEAKED}: {leaked:?}; run.leaks: {:?}", lab_report.observations.get("run.leaks")));
    }
    let stopped = lab_report.stopped.as_deref().unwrap_or_default();
    if !(stopped.contains(stage) && stopped.contains("fault injected")) {
        problems.push(format!("stopped: {stopped:?} does not name the stage and \"fault injected\""));
    }
    problems.extend(lab_report.leaks.iter().map(|leak| format!("leak: {leak}")));
    problems.extend(common::host_changes(&before, &common::host_state(), &[]));
    problems
}

#[test]
fn sigkill_at_every_hold_point_of_every_lab_leaves_nothing() {
    common::require_root();
    let _clean = common::CleanOnPanic;
    common::build_labs();
    let started = std::time::Instant::now();
    let mut cases = 0;
    let mut failures = Vec::new();
    assert!(!catalog::all().is_empty(), "the catalog has no labs");
    for lab in catalog::all() {
        assert!(!lab.stages.is_empty(), "lab {} declares no stage to hold at", lab.name);
        for stage in lab.every_stage() {
            cases += 1;
            let problems = killed_at(lab, stage);
            eprintln!("fault: {} killed at {stage}: {}", lab.name, if problems.is_empty() { "ok" } else { "FAILED" });
            failures.extend(problems.into_iter().map(|p| format!("{} at {stage}: {p}", lab.name)));
        }
    }
    eprintln!("fault: {cases} hold points in {:.1?}", started.elapsed());
    assert!(failures.is_empty(), "runs killed at a hold point that went wrong:\n{}", failures.join("\n"));
}
