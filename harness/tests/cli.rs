//! The cilab command as a person meets it: help, list, errors that say what to do, and a
//! lab walked through step by step.

mod common;

use predicates::prelude::*;

#[test]
fn help_names_every_command() {
    let assert = common::cilab().arg("--help").assert().success();
    let out = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    for command in ["list", "run", "check", "doctor"] {
        assert!(out.contains(command), "--help lacks {command}:\n{out}");
    }
}

#[test]
fn list_shows_the_labs_in_course_order() {
    let assert = common::cilab().arg("list").assert().success();
    let out = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    // A lab's row: its number in the course, then its name.
    let listed: Vec<(u32, String)> = out
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let order = words.next()?.parse().ok()?;
            Some((order, words.next()?.to_string()))
        })
        .collect();
    let catalog: Vec<(u32, String)> = cilab::catalog::all().iter().map(|l| (l.order, l.name.to_string())).collect();
    assert!(!catalog.is_empty(), "the catalog has no labs");
    assert_eq!(listed, catalog, "cilab list shows the catalog's labs, in course order:\n{out}");
}

#[test]
fn check_without_labs_says_what_to_name() {
    common::cilab().arg("check").assert().code(2).stderr(predicate::str::contains("--all"));
}

#[test]
fn an_unknown_lab_points_to_the_list() {
    common::cilab().args(["check", "no-such-lab"]).assert().code(2).stderr(predicate::str::contains("cilab list"));
}

#[test]
fn not_root_says_how_to_get_root() {
    common::require_root(); // to become someone else
                            // A copy nobody can read, since target/ may sit in a directory nobody may enter.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("cilab");
    std::fs::copy(assert_cmd::cargo::cargo_bin("cilab"), &copy).expect("copy cilab");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_cmd::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .args(["check", "pid-ns", "--no-build"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("must run as root").and(predicate::str::contains("VM")));
}

#[test]
fn run_step_walks_a_person_through_pid_ns_with_shell_equivalents() {
    common::require_root();
    let _host = common::host_lock();
    let before = common::host_state();
    // More Enters than any lab has steps (the pipe takes them all at once); the steps
    // the program announces say how many it needed.
    let assert = common::cilab().args(["run", "pid-ns", "--step"]).write_stdin("\n".repeat(64)).assert().success();
    let out = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    let steps: usize = out
        .split("Step 1/")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no \"Step 1/M\" in:\n{out}"));
    assert!((1..64).contains(&steps), "{steps} steps:\n{out}");
    for step in 1..=steps {
        assert!(out.contains(&format!("Step {step}/{steps}")), "no step {step}:\n{out}");
    }
    assert!(!out.contains(&format!("Step {}/", steps + 1)), "a step past the last:\n{out}");
    assert_eq!(out.matches("[press Enter to run this step]").count(), steps, "one prompt per step:\n{out}");
    for shell in ["unshare --pid --fork", "kill -TERM", "nsenter"] {
        assert!(out.contains(shell), "no shell equivalent `{shell}`:\n{out}");
    }
    assert!(out.contains("inside:  getpid() = 1"), "{out}");
    assert!(out.contains("Done:"), "{out}");
    common::assert_host_unchanged(&before);
}

/// The JSON report of every lab lists the lab's verdicts as the catalog declares them,
/// in the same order: what a grader reading the JSON relies on.
#[test]
fn check_json_lists_each_labs_verdicts_in_catalog_order() {
    common::require_root();
    let _host = common::host_lock();
    assert!(!cilab::catalog::all().is_empty(), "the catalog has no labs");
    for lab in cilab::catalog::all() {
        let (_, report) = common::check(&[lab.name]);
        assert_eq!(report.labs.len(), 1, "one report for {}", lab.name);
        let got: Vec<(&str, u32)> = report.labs[0].verdicts.iter().map(|v| (v.id.as_str(), v.max_points)).collect();
        let declared: Vec<(&str, u32)> = lab.all_verdicts().iter().map(|v| (v.id, v.points)).collect();
        assert_eq!(got, declared, "{}: verdict ids and points, in order", lab.name);
        assert_eq!(report.summary.max_points, lab.max_points(), "{}", lab.name);
    }
}

#[test]
fn a_lab_whose_needs_are_missing_is_skipped_loudly_and_never_passes() {
    common::require_root();
    // Build first, with the normal PATH; then hide busybox by giving cilab a PATH without it.
    common::build_lab("lab-chroot-jail");
    let no_busybox = tempfile::tempdir().expect("tempdir");
    let output = common::cilab()
        .args(["check", "chroot-jail", "--no-build", "--format", "json"])
        .env("PATH", no_busybox.path())
        .output()
        .expect("run cilab");
    assert_eq!(output.status.code(), Some(1), "a skipped lab is not a success");
    let report: cilab::report::Report = serde_json::from_slice(&output.stdout).expect("JSON report");
    let lab = &report.labs[0];
    assert!(lab.verdicts.iter().all(|v| v.outcome == cilab::verdict::Outcome::Skip && v.points == 0));
    assert!(lab.stopped.as_deref().is_some_and(|s| s.contains("busybox-static")), "{:?}", lab.stopped);
    assert_eq!(lab.result_word(), "skipped");
    assert!(!report.all_passed());
}

/// Each tool a lab needs is found by the preflight, which names its package: a PATH with
/// only the static busybox lacks the others (echo, ldd), and the lab is skipped, never
/// failed as if the student's code were wrong.
#[test]
fn every_missing_tool_is_named_with_its_package_before_the_lab_runs() {
    common::require_root();
    let cargo = std::env::var("CARGO").expect("cargo test sets CARGO");
    let built = std::process::Command::new(&cargo).args(["build", "-q", "--workspace"]).status();
    assert!(built.expect("run cargo").success());
    let busybox = which::which("busybox").expect("busybox-static is installed for the tests");
    for lab in cilab::catalog::all() {
        let Some(first_missing) = lab.needs.tools.iter().find(|t| !t.must_be_static) else {
            continue;
        };
        let path = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(&busybox, path.path().join("busybox")).expect("link busybox");
        let output = common::cilab()
            .args(["check", lab.name, "--no-build", "--format", "json"])
            .env("PATH", path.path())
            .output()
            .expect("run cilab");
        let report: cilab::report::Report = serde_json::from_slice(&output.stdout).expect("JSON report");
        let stopped = report.labs[0].stopped.clone().unwrap_or_default();
        assert!(
            stopped.contains(first_missing.program) && stopped.contains(first_missing.package),
            "{}: with only busybox on PATH the preflight names {}: {stopped}",
            lab.name,
            first_missing.program
        );
        assert_eq!(report.labs[0].result_word(), "skipped");
    }
}

/// One real check of chroot-jail in every report format other graders read: JUnit has a
/// case per verdict of the catalog, Gradescope's score is the lab's points, the Markdown
/// summary has the lab's row, and with $GITHUB_STEP_SUMMARY set the summary is added there.
#[test]
fn check_writes_junit_markdown_and_gradescope_from_the_same_verdicts() {
    common::require_root();
    common::build_lab("lab-chroot-jail");
    let lab = cilab::catalog::find("chroot-jail").expect("chroot-jail");
    let summary_dir = tempfile::tempdir().expect("tempdir");
    let summary = summary_dir.path().join("summary.md");
    let run = |format: &str| {
        let output = common::cilab()
            .args(["check", "chroot-jail", "--no-build", "--format", format])
            .env("GITHUB_STEP_SUMMARY", &summary)
            .output()
            .expect("run cilab");
        assert_eq!(output.status.code(), Some(0), "{format}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    let verdicts = lab.all_verdicts().len();

    let junit = run("junit");
    assert!(junit.starts_with("<?xml"), "{junit}");
    assert_eq!(junit.matches("<testsuite ").count(), 1, "{junit}");
    assert_eq!(junit.matches("<testcase ").count(), verdicts, "{junit}");
    assert_eq!(junit.matches("<failure").count() + junit.matches("<skipped").count(), 0, "{junit}");
    for spec in lab.all_verdicts() {
        assert!(junit.contains(&format!("name=\"{}\"", spec.id)), "no case {}: {junit}", spec.id);
    }

    let gradescope: serde_json::Value = serde_json::from_str(&run("gradescope")).expect("results.json");
    assert_eq!(gradescope["score"], lab.max_points());
    assert_eq!(gradescope["max_score"], lab.max_points());
    let tests = gradescope["tests"].as_array().expect("tests[]");
    assert_eq!(tests.len(), verdicts);
    assert!(tests.iter().all(|t| t["status"] == "passed"), "{tests:#?}");

    let markdown = run("markdown");
    let row = format!("| chroot-jail | passed | {0}/{0} |", lab.max_points());
    assert!(markdown.contains(&row), "{markdown}");

    let summaries = std::fs::read_to_string(&summary).expect("the step summary");
    assert_eq!(summaries.matches(&row).count(), 3, "one summary per check: {summaries}");
}
