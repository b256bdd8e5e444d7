//! Course authors only: runs the mistake corpus, which a student handout does not have.
//! `cilab dev check`, for real, once: every region has a hint, every verdict is on its
//! sheet, the handout builds, each starter fails with its regions' hints, each solution
//! passes, and the whole mistake corpus (each region's `todo!()`, and the typical mistakes
//! and lies each lab declares) is built, graded and run by hand, and must be caught by the
//! verdict named for it, with its region's hint, leaving nothing.

mod common;

use cilab::devcheck::{DevCheck, Status};

#[test]
fn dev_check_passes_and_every_mistake_and_lie_is_caught_leaving_nothing() {
    common::require_root();
    let before = common::host_state();
    // Under RUST_BACKTRACE=1 a panicking lab must still report its message, not frames.
    let output = common::cilab()
        .args(["dev", "check", "--format", "json"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run cilab dev check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: DevCheck = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("no JSON from `cilab dev check` ({e}):\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr))
    });

    // A line per lab for each of these, and one for the whole course for the others.
    let labs = cilab::catalog::all();
    for check in ["regions", "sheet", "starter-fails", "solution-passes"] {
        for lab in labs {
            let lines = result.checks.iter().filter(|c| c.check == check && c.lab.as_deref() == Some(lab.name));
            assert_eq!(lines.count(), 1, "one `{check}` line for lab {}", lab.name);
        }
    }
    for check in ["handout-builds", "corpus"] {
        assert_eq!(result.checks.iter().filter(|c| c.check == check && c.lab.is_none()).count(), 1, "{check}");
    }
    let not_passed: Vec<String> = result
        .checks
        .iter()
        .filter(|c| c.status != Status::Pass)
        .map(|c| format!("{:?} {} {}: {}", c.status, c.check, c.lab.as_deref().unwrap_or("-"), c.detail))
        .collect();

    // The corpus: every entry of the catalog ran and was caught as it must be.
    let results = &result.corpus;
    let expected: usize = labs.iter().map(|lab| cilab::corpus::entries(lab).expect("entries").len()).sum();
    assert_eq!(results.len(), expected, "every entry of the catalog ran");
    let problems: Vec<String> = results
        .iter()
        .filter(|r| !r.ok())
        .map(|r| {
            let what = r.skipped.as_ref().map_or_else(|| r.problems.join("; "), |why| format!("SKIPPED: {why}"));
            format!("{} / {} / {}: {what}", r.lab, r.region, r.name)
        })
        .collect();
    assert!(problems.is_empty(), "entries not caught as they must be:\n{}", problems.join("\n"));
    for todo in results.iter().filter(|r| r.name.starts_with("todo!()")) {
        let panic = todo.panic.as_deref().unwrap_or_default();
        assert!(
            panic.contains(&format!("STUDENT region `{}`", todo.region)) && panic.contains("not yet implemented"),
            "{} / {}: the report names the region and the panic message: {panic:?}",
            todo.lab,
            todo.region
        );
    }
    assert!(not_passed.is_empty(), "checks that did not pass:\n{}", not_passed.join("\n"));
    assert_eq!(output.status.code(), Some(0));
    common::assert_host_unchanged(&before);
}
