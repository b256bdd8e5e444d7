//! Pure cgroup v2 with cilab started below the root, on a real v2 kernel (a QEMU guest,
//! tests/support/v2-nested-guest.sh): what the unit tests in cgroup::harness show on fake
//! data, the kernel confirms. A start cgroup another process shares cannot hand pids and
//! memory down: the run goes on, each missing limit named with why, and the cgroup is
//! left as it was. A start cgroup cilab has to itself hands them down and is put back
//! as it was at exit. A start cgroup's pids.max bounds the labs (their cgroups are below
//! it). Nothing is left behind.

mod common;

use std::path::Path;

#[test]
fn nested_start_cgroups_on_pure_v2_bound_runs_or_say_why_and_are_left_as_they_were() {
    common::require_root();
    let cargo = std::env::var("CARGO").expect("cargo test sets CARGO");
    let built = std::process::Command::new(&cargo).args(["build", "-q", "-p", "lab-pid-ns"]).status();
    assert!(built.expect("run cargo").success());
    let cilab = assert_cmd::cargo::cargo_bin("cilab");
    let bin_dir = cilab.parent().expect("target dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/v2-nested-guest.sh");
    let output =
        std::process::Command::new("bash").arg(&script).env("CILAB_BIN_DIR", bin_dir).output().expect("run the guest");
    let console = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(3), "{errors}");
    let line = |prefix: &str| -> String {
        console
            .lines()
            .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest.to_string()))
            .unwrap_or_else(|| panic!("the guest did not print {prefix:?}:\n{console}\n{errors}"))
    };
    // Shared: unbounded, and says why; the lab passes all the same.
    assert_eq!(line("guest: busy exited "), "0");
    let busy = line("guest: busy limits: ");
    for limit in ["pids.max not applied: ", "memory.max not applied: "] {
        assert!(busy.contains(limit), "{busy}");
    }
    let limits = cilab::cgroup::Limits::default();
    let pids_max = format!("pids.max={}", limits.pids_max);
    assert!(busy.contains("holds other processes") && !busy.contains(&pids_max), "{busy}");
    assert_eq!(line("guest: busy after: "), "subtree_control='' children=0");
    // Its own: bounded, and put back.
    assert_eq!(line("guest: alone exited "), "0");
    let alone = line("guest: alone limits: ");
    for limit in [
        format!("{pids_max} (v2)"),
        format!("memory.max={} (v2)", limits.memory_max_bytes),
        "memory.swap.max=0 (v2)".to_string(),
    ] {
        assert!(alone.contains(&limit), "{alone}");
    }
    assert_eq!(line("guest: alone after: "), "subtree_control='' children=0");
    // pids.max=10 above the run: the lab or the harness runs out of processes first; cilab
    // says which (1: the lab's run failed; 2: the harness's own fork, named as such), never
    // panics.
    let tight = line("guest: tight exited ");
    let saw = line("guest: tight saw: ");
    assert!(tight == "1" || (tight == "2" && saw.contains("not checked")), "exit {tight}: {saw}");
    assert_eq!(line("guest: tight stderr: "), "");
    assert_eq!(line("guest: tight after: "), "subtree_control='' children=0");
    assert_eq!(line("guest: cilab dirs left: "), "0");
    assert!(console.contains("ok    leftovers        none from interrupted runs"), "{console}");
    assert!(!console.contains("panicked"), "{console}");
}
