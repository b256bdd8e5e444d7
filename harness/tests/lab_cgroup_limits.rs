//! Lab cgroup-limits, graded by the real harness on the real kernel (needs root). The
//! facts differ between cgroup versions (the freezer's states, the files the counters come
//! from): this machine's are snapshotted under its version; the pure-v2 snapshot is taken
//! from the QEMU guest (tests/cgroup_v2_guest.rs).

mod common;

#[test]
fn cgroup_limits_every_verdict_passes() {
    common::require_root();
    let _host = common::host_lock();
    let (code, report) = common::check(&["cgroup-limits"]);
    common::assert_all_passed(&report);
    assert_eq!(code, 0, "cilab check exits 0 when every verdict passed");
    assert_eq!(report.labs.len(), 1);
    let observations = &report.labs[0].observations;
    let layout = observations["made.cgroup_layout"].as_str().expect("the layout is a string").to_string();
    insta::assert_yaml_snapshot!(format!("cgroup_limits_observations_{layout}"), observations);
}
