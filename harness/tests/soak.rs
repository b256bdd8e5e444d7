//! A soak under load: every lab of the catalog, 400 runs in all, while this test keeps
//! every CPU busy with busy loops of its own. Every verdict of every run passes, no run
//! leaks, and afterwards the host is as it was (mounts, cgroups, processes, scratch
//! dirs), as this test sees it.

mod common;

use cilab::catalog;

/// Runs in all, split evenly between the labs (rounded up).
const RUNS: usize = 400;

#[test]
fn four_hundred_runs_under_load_pass_and_leave_nothing() {
    common::require_root();
    let _clean = common::CleanOnPanic;
    common::build_labs();
    let labs = catalog::all();
    assert!(!labs.is_empty(), "the catalog has no labs");
    let per_lab = RUNS.div_ceil(labs.len());
    let repeat = per_lab.to_string();
    let mut args: Vec<&str> = labs.iter().map(|l| l.name).collect();
    args.extend(["--no-build", "--repeat", &repeat]);

    let before = common::host_state();
    let hogs = common::CpuHogs::on_every_cpu();
    eprintln!("soak: {} labs x {per_lab} runs, with {} busy threads", labs.len(), hogs.count());
    let started = std::time::Instant::now();
    let (code, report) = common::check(&args);
    let elapsed = started.elapsed();
    let spins = hogs.stop();
    eprintln!("soak: {} runs in {elapsed:.1?} (busy threads looped {spins:?} times)", report.labs.len());

    assert!(spins.iter().all(|&s| s > 0), "a busy thread never ran: {spins:?}");
    assert_eq!(report.labs.len(), per_lab * labs.len(), "one report per run");
    // `--repeat` runs each lab N times in a row, in the order named.
    let runs: Vec<&catalog::LabSpec> = labs.iter().flat_map(|l| vec![l; per_lab]).collect();
    let got: Vec<&str> = report.labs.iter().map(|l| l.lab.as_str()).collect();
    assert_eq!(got, runs.iter().map(|l| l.name).collect::<Vec<_>>(), "the runs, lab by lab");
    for (lab_report, lab) in report.labs.iter().zip(runs) {
        let ids: Vec<&str> = lab_report.verdicts.iter().map(|v| v.id.as_str()).collect();
        let declared: Vec<&str> = lab.all_verdicts().iter().map(|v| v.id).collect();
        assert_eq!(ids, declared, "{}: every verdict of the catalog, in order", lab.name);
    }
    let failed: Vec<String> = report
        .labs
        .iter()
        .enumerate()
        .filter(|(_, l)| l.result_word() != "passed" || !l.leaks.is_empty())
        .map(|(i, l)| {
            // The lab's last words say why it stopped (a rare failure under load needs them).
            format!(
                "run {i} of {}: {} (leaks: {:?}; stopped: {:?})\n  the lab's last lines:\n    {}",
                l.lab,
                l.result_word(),
                l.leaks,
                l.stopped,
                l.narration_tail.join("\n    ")
            )
        })
        .collect();
    eprintln!("soak: {}/{} runs passed", report.labs.len() - failed.len(), report.labs.len());
    assert!(failed.is_empty(), "runs that did not pass:\n{}", failed.join("\n"));
    common::assert_all_passed(&report);
    assert_eq!(code, 0);
    common::assert_host_unchanged(&before);
}
