//! Lab pivot-root, graded by the real harness on the real kernel (needs root): the lab's
//! own run and its variant `tmpfs`, one report.

mod common;

#[test]
fn pivot_root_every_verdict_passes() {
    common::require_root();
    let (code, report) = common::check(&["pivot-root"]);
    common::assert_all_passed(&report);
    assert_eq!(code, 0, "cilab check exits 0 when every verdict passed");
    assert_eq!(report.labs.len(), 1);
    let observations = &report.labs[0].observations;
    assert!(
        observations.keys().any(|k| k.starts_with("tmpfs-pivoted.")),
        "the variant `tmpfs` ran in the same check: {:?}",
        observations.keys().collect::<Vec<_>>()
    );
    insta::assert_yaml_snapshot!("pivot_root_observations", observations);
}
