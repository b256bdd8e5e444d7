//! The mistake corpus, run for real: every entry of every lab (each region's `todo!()`,
//! and the typical mistakes and lies each lab declares) is built, graded and run by hand,
//! and must be caught by the verdict named for it, with its region's hint, leaving nothing.

mod common;

use cilab::corpus::EntryResult;

#[test]
fn every_mistake_and_lie_is_caught_and_leaves_nothing() {
    common::require_root();
    let before = common::host_state();
    // Under RUST_BACKTRACE=1 a panicking lab must still report its message, not frames.
    let output = common::cilab()
        .args(["dev", "corpus", "--format", "json"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run cilab dev corpus");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let results: Vec<EntryResult> = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("no JSON from `cilab dev corpus` ({e}):\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr))
    });
    let expected: usize =
        cilab::catalog::all().iter().map(|lab| cilab::corpus::entries(lab).expect("entries").len()).sum();
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
    assert_eq!(output.status.code(), Some(0));
    common::assert_host_unchanged(&before);
}
