//! Lab rootfs-import, graded by the real harness on the real kernel (needs root): the
//! lab's own run (import, busybox, layers, the hostile corpus), then the `docker` variant
//! where Docker answers (skipped loudly, never passed, where it does not).

mod common;

#[test]
fn rootfs_import_every_verdict_passes() {
    common::require_root();
    let (code, report) = common::check(&["rootfs-import"]);
    let skipped = common::assert_all_passed_but_unavailable_variants(&report);
    let expected = if skipped.is_empty() { 0 } else { 1 };
    assert_eq!(code, expected, "cilab check exits 0 only when every verdict passed (skipped: {skipped:?})");
    assert_eq!(report.labs.len(), 1);
    for line in &skipped {
        assert!(line.contains("install docker.io"), "a skipped variant says what to install: {line}");
    }
    // Every hostile archive got its policy's outcome: the table the sheet shows.
    let outcomes = &report.labs[0].observations["hostile.outcome_by_archive"];
    let outcomes = outcomes.as_object().expect("a map of archive to outcome");
    let salt = labkit::archives::Salt::random().expect("a salt");
    let corpus = labkit::archives::hostile_corpus(std::path::Path::new("/outside"), &salt);
    assert_eq!(outcomes.len(), corpus.len(), "the whole corpus was judged: {outcomes:?}");
    assert!(outcomes.values().all(|o| o == "as the policy says"), "{outcomes:?}");
    let (docker, own): (Vec<_>, Vec<_>) =
        report.labs[0].observations.iter().partition(|(key, _)| key.starts_with("docker-"));
    let own: std::collections::BTreeMap<_, _> = own.into_iter().collect();
    insta::assert_yaml_snapshot!("rootfs_import_observations", own);
    if skipped.is_empty() {
        let docker: std::collections::BTreeMap<_, _> = docker.into_iter().collect();
        insta::assert_yaml_snapshot!("rootfs_import_docker_observations", docker);
    }
}
