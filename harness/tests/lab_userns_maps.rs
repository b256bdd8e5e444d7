//! Lab userns-maps, graded by the real harness on the real kernel (needs root): the lab's
//! own maps, then the `subids` variant where newuidmap and newgidmap are installed
//! (skipped loudly, never passed, where they are not).

mod common;

#[test]
fn userns_maps_every_verdict_passes() {
    common::require_root();
    let (code, report) = common::check(&["userns-maps"]);
    let skipped = common::assert_all_passed_but_unavailable_variants(&report);
    // A SKIP is never a pass: without uidmap, cilab check exits 1 and says why.
    let expected = if skipped.is_empty() { 0 } else { 1 };
    assert_eq!(code, expected, "cilab check exits 0 only when every verdict passed (skipped: {skipped:?})");
    assert_eq!(report.labs.len(), 1);
    for line in &skipped {
        assert!(line.contains("apt-get install uidmap"), "a skipped variant says what to install: {line}");
    }
    // The lab's own maps are the same everywhere; the variant's are snapshotted apart,
    // only where it ran.
    let (subids, own): (Vec<_>, Vec<_>) =
        report.labs[0].observations.iter().partition(|(key, _)| key.starts_with("subids-"));
    let own: std::collections::BTreeMap<_, _> = own.into_iter().collect();
    insta::assert_yaml_snapshot!("userns_maps_observations", own);
    if skipped.is_empty() {
        let subids: std::collections::BTreeMap<_, _> = subids.into_iter().collect();
        insta::assert_yaml_snapshot!("userns_maps_subids_observations", subids);
    }
}
