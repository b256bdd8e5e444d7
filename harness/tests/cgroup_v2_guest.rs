//! Pure cgroup v2, as on current Ubuntu, proved on a machine that is itself hybrid: a
//! QEMU guest (TCG) boots a Debian kernel whose only cgroup filesystem is cgroup2, and
//! runs `cilab doctor` and `cilab check --all` there (tests/support/v2-guest.sh). The
//! guest gets the lab binaries and the programs the labs need as the catalog declares
//! them, and prints both JSON reports between marker lines on its console.

mod common;

use std::path::Path;

use cilab::catalog;
use cilab::cgroup::Limits;
use cilab::report::Report;

/// The text between the lines `--- <what> json begin ---` and `--- <what> json end ---`.
fn between_markers<'a>(console: &'a str, what: &str) -> Option<String> {
    let begin = format!("--- {what} json begin ---");
    let end = format!("--- {what} json end ---");
    let lines: Vec<&'a str> = console.lines().map(|l| l.trim_end_matches('\r')).collect();
    let first = lines.iter().position(|l| l.trim() == begin)? + 1;
    let last = first + lines[first..].iter().position(|l| l.trim() == end)?;
    Some(lines[first..last].join("\n"))
}

#[test]
fn every_lab_passes_and_is_bounded_on_pure_cgroup_v2() {
    common::require_root();
    let labs = catalog::all();
    assert!(!labs.is_empty(), "the catalog has no labs");
    // The guest gets the built binaries: make sure the labs are built too.
    common::build_labs();
    let binaries: Vec<&str> = labs.iter().map(|l| l.binary).collect();
    let mut tools: Vec<&str> = Vec::new();
    for tool in labs.iter().flat_map(|l| l.needs.tools) {
        if !tools.contains(&tool.program) {
            tools.push(tool.program);
        }
    }
    let cilab = assert_cmd::cargo::cargo_bin("cilab");
    let bin_dir = cilab.parent().expect("target dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/v2-guest.sh");
    let started = std::time::Instant::now();
    let output = std::process::Command::new("bash")
        .arg(&script)
        .env("CILAB_BIN_DIR", bin_dir)
        .env("CILAB_GUEST_BINARIES", binaries.join(" "))
        .env("CILAB_GUEST_TOOLS", tools.join(" "))
        .output()
        .expect("run the guest");
    eprintln!("v2 guest: {:.1?} (binaries: {binaries:?}; tools: {tools:?})", started.elapsed());
    let console = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(3), "qemu or a kernel is missing, the guest did not run: {errors}");
    let context = format!("console:\n{console}\nstderr:\n{errors}");
    // The guest is set up as systemd sets up current distributions: cgroup2 with nsdelegate
    // (a cgroup namespace is a delegation boundary), and / shared.
    let setup = console
        .lines()
        .find_map(|l| l.trim_end_matches('\r').split_once("guest: cgroup2 ").map(|(_, setup)| setup))
        .unwrap_or_else(|| panic!("the guest never said how it mounted cgroup2\n{context}"));
    eprintln!("v2 guest: cgroup2 {setup}");
    assert!(setup.contains("nsdelegate") && setup.contains("shared:"), "not as systemd sets it up: {setup}");

    let exit = console
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("guest: cilab check exited "))
        .unwrap_or_else(|| panic!("the guest never said how cilab check exited\n{context}"));

    let doctor: serde_json::Value = between_markers(&console, "cilab doctor")
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| panic!("no cilab doctor JSON between the markers\n{context}"));
    let cgroups = doctor["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["topic"] == "cgroups"))
        .unwrap_or_else(|| panic!("doctor has no cgroups finding: {doctor:#}"));
    let detail = cgroups["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("v2 (unified); v2 at /sys/fs/cgroup"), "doctor in the guest: {cgroups:#}");

    let text = between_markers(&console, "cilab check")
        .unwrap_or_else(|| panic!("no cilab check JSON between the markers\n{context}"));
    let report: Report = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the guest's report does not parse ({e}):\n{text}\n{context}"));
    let names: Vec<&str> = report.labs.iter().map(|l| l.lab.as_str()).collect();
    assert_eq!(names, labs.iter().map(|l| l.name).collect::<Vec<_>>(), "every lab of the catalog, in order");
    for (lab_report, lab) in report.labs.iter().zip(labs) {
        let ids: Vec<&str> = lab_report.verdicts.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, lab.all_verdicts().iter().map(|v| v.id).collect::<Vec<_>>(), "{}", lab.name);
    }
    // The guest has no Docker: a variant that needs it is skipped there, loudly, and a
    // check with a skip is not a pass (exit 1); everything else passes.
    let skipped = common::assert_all_passed_but_unavailable_variants(&report);
    let expected_exit = if skipped.is_empty() { "0" } else { "1" };
    assert_eq!(exit.trim(), expected_exit, "cilab check in the guest (skipped: {skipped:?})\n{context}");
    assert_eq!(report.summary.max_points, labs.iter().map(|l| l.max_points()).sum::<u32>());

    // The cgroup-limits lab's facts on pure v2 (its v1/hybrid ones: tests/lab_cgroup_limits.rs).
    if let Some(lab) = report.labs.iter().find(|l| l.lab == "cgroup-limits") {
        insta::assert_yaml_snapshot!("cgroup_limits_observations_v2", lab.observations);
    }
    for line in errors.lines().chain(console.lines()).filter(|l| l.contains("cilab figures:")) {
        eprintln!("v2 guest: {line}");
    }

    let limits = Limits::default();
    let expected = [
        format!("pids.max={} (v2)", limits.pids_max),
        format!("memory.max={} (v2)", limits.memory_max_bytes),
        "memory.swap.max=0 (v2)".to_string(),
    ];
    for lab in &report.labs {
        for limit in &expected {
            assert!(lab.cgroup_limits.contains(limit), "{}: no {limit} in {:?}", lab.lab, lab.cgroup_limits);
        }
        assert!(lab.cgroup_limits.iter().all(|l| l.ends_with("(v2)")), "{}: {:?}", lab.lab, lab.cgroup_limits);
    }
    userns_off_is_said_and_skipped(&console, &context);
}

/// With user.max_user_namespaces=0 in the guest (never on the machine the tests run on:
/// the sysctl is host-wide), doctor fails its user-namespace finding with the sysctl to
/// set, and every verdict of userns-maps is a SKIP that names it; cilab check exits 1.
fn userns_off_is_said_and_skipped(console: &str, context: &str) {
    const SYSCTL: &str = "user.max_user_namespaces";
    const ADVICE: &str = "sysctl -w user.max_user_namespaces=15000";
    let exit = console
        .lines()
        .find_map(|l| {
            l.trim_end_matches('\r').strip_prefix("guest: cilab check userns-maps without user namespaces exited ")
        })
        .unwrap_or_else(|| panic!("the guest never ran userns-maps without user namespaces\n{context}"));
    assert_eq!(exit.trim(), "1", "a check whose every verdict is a SKIP exits 1\n{context}");
    let doctor: serde_json::Value = between_markers(console, "no-userns doctor")
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| panic!("no doctor JSON without user namespaces\n{context}"));
    let finding = doctor["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["topic"] == "user namespaces"))
        .unwrap_or_else(|| panic!("doctor has no user namespaces finding: {doctor:#}"));
    assert_eq!(finding["ok"], false, "{finding:#}");
    assert!(finding["detail"].as_str().unwrap_or_default().contains(SYSCTL), "{finding:#}");
    assert!(finding["advice"].as_str().unwrap_or_default().contains(ADVICE), "{finding:#}");
    let text = between_markers(console, "no-userns check")
        .unwrap_or_else(|| panic!("no userns-maps report without user namespaces\n{context}"));
    let report: Report = serde_json::from_str(&text).unwrap_or_else(|e| panic!("({e}):\n{text}"));
    let [lab] = report.labs.as_slice() else { panic!("one lab report: {text}") };
    assert_eq!(lab.lab, "userns-maps");
    assert!(!lab.verdicts.is_empty());
    for verdict in &lab.verdicts {
        let detail = verdict.detail.as_deref().unwrap_or_default();
        assert_eq!(verdict.outcome, cilab::verdict::Outcome::Skip, "{}: {detail}", verdict.id);
        assert!(detail.contains(SYSCTL) && detail.contains(ADVICE), "{}: {detail}", verdict.id);
    }
    assert_eq!(report.summary.points, 0, "a SKIP earns nothing");
}
