//! Lab nsenter-join, graded by the real harness on the real kernel (needs root): the lab's
//! own container, then the Docker variant where Docker is available (skipped loudly, never
//! passed, where it is not).

mod common;

#[test]
fn nsenter_join_every_verdict_passes() {
    common::require_root();
    let (code, report) = common::check(&["nsenter-join"]);
    let skipped = common::assert_all_passed_but_unavailable_variants(&report);
    // A SKIP is never a pass: without Docker, cilab check exits 1 and says why.
    let expected = if skipped.is_empty() { 0 } else { 1 };
    assert_eq!(code, expected, "cilab check exits 0 only when every verdict passed (skipped: {skipped:?})");
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
        let mut docker: std::collections::BTreeMap<_, _> =
            docker.into_iter().map(|(key, value)| (key.clone(), value.clone())).collect();
        for value in docker.values_mut() {
            not_the_containers_cgroup_ns(value);
        }
        insta::assert_yaml_snapshot!("nsenter_join_docker_observations", docker);
    }
}

/// Docker makes a cgroup namespace of the container's own on cgroup v2 (`cgroupns=private`,
/// its default there) and none on v1 (`host`): a process that did not join it is in the
/// host's, which on v1 is also the container's (`both`), on v2 not (`host`). The verdicts
/// accept either; the snapshot, taken on any machine, says only that it is not the
/// container's alone.
fn not_the_containers_cgroup_ns(value: &mut serde_json::Value) {
    if let Some(cgroup) = value.get_mut("cgroup").filter(|c| *c == "both" || *c == "host") {
        *cgroup = "host (and the container's too where Docker made it none: cgroup v1)".into();
    }
}
