//! Lab nsenter-join, graded by the real harness on the real kernel (needs root): the lab's
//! own container, then the Docker variant where Docker is available (skipped loudly, never
//! passed, where it is not).

mod common;

#[test]
fn nsenter_join_every_verdict_passes() {
    common::require_root();
    let (code, report) = common::check(&["nsenter-join"]);
    let skipped = common::assert_all_passed_but_unavailable_variants(&report);
    assert_eq!(code, 0, "cilab check exits 0 when every verdict passed");
    assert_eq!(report.labs.len(), 1);
    let limits = &report.labs[0].cgroup_limits;
    assert!(limits.iter().any(|l| l.starts_with("pids.max=")), "the run's cgroup bounds the lab: {limits:?}");
    // The lab's own container's facts are the same everywhere; the Docker variant's are
    // snapshotted apart, only where it ran.
    let (docker, own): (Vec<_>, Vec<_>) =
        report.labs[0].observations.iter().partition(|(key, _)| key.starts_with("docker-"));
    let own: std::collections::BTreeMap<_, _> = own.into_iter().collect();
    insta::assert_yaml_snapshot!("nsenter_join_observations", own);
    if skipped.is_empty() {
        let docker: std::collections::BTreeMap<_, _> = docker.into_iter().collect();
        insta::assert_yaml_snapshot!("nsenter_join_docker_observations", docker);
    }
}
