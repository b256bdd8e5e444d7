//! Course authors only: grades the solutions and the mistake corpus, which a student
//! handout does not have.
//!
//! `cilab grade` on a class generated from this tree: one correct submission (the
//! solutions), one with a typical mistake in each lab (the first declared corpus entry of
//! kind Mistake), one that does not build (a .tar.gz), one that fork-bombs, and one that
//! edits the harness to pass everything while its labs are the handout's `todo!()`
//! starters. Each is graded in its own sealed qemu guest, and gets the right score and
//! reason; nothing is left running and nothing leaks on the host.
//!
//! The class is graded on two labs (each submission's failure shows on one of them; the
//! other proves it did not spread), then the mistakes on every lab. Run time is printed.
//!
//! Needs qemu-system-x86 and a kernel in /boot (linux-image-cloud-amd64).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use cilab::backend::qemu;
use cilab::catalog::{self, LabSpec};
use cilab::corpus::{self, MistakeKind};
use cilab::report::{LabReport, Report};
use cilab::verdict::Outcome;

/// The two labs the whole class is graded on: the fork bomb and the broken build are in
/// the first; the second shows that a lab's failure does not reach the others.
const CLASS_LABS: [&str; 2] = ["pid-ns", "chroot-jail"];
/// The region of pid-ns that forks its init: the fork bomb goes there.
const FORK_REGION: &str = "fork-init";
/// The check file the harness-editing submission changes.
const EDITED_CHECK: &str = "harness/src/checks/pid_ns.rs";

/// Writes a student tree at `dir`: this workspace's lab sources, each lab's main.rs as
/// `main` makes it from the solution.
fn student_tree(dir: &Path, main: &dyn Fn(&'static LabSpec) -> String) {
    let workspace = common::workspace();
    for lab in catalog::all() {
        let src = dir.join("labs").join(lab.name).join("src");
        std::fs::create_dir_all(&src).expect("create the lab's src");
        for entry in std::fs::read_dir(workspace.join("labs").join(lab.name).join("src")).expect("lab src").flatten() {
            std::fs::copy(entry.path(), src.join(entry.file_name())).expect("copy a source");
        }
        std::fs::write(src.join("main.rs"), main(lab)).expect("write main.rs");
    }
    std::fs::copy(workspace.join("Cargo.toml"), dir.join("Cargo.toml")).expect("copy Cargo.toml");
}

fn first_mistake(lab: &'static LabSpec) -> corpus::Entry {
    corpus::entries(lab)
        .expect("the lab's corpus")
        .into_iter()
        .find(|e| e.kind == MistakeKind::Mistake && e.caught_by.is_some())
        .unwrap_or_else(|| panic!("{}: no declared corpus entry of kind Mistake", lab.name))
}

fn starter(lab: &'static LabSpec) -> String {
    let mut source = lab.source.to_string();
    for region in lab.regions().expect("regions") {
        source = labkit::regions::replace_body(&source, &region.name, &labkit::regions::todo_body(&region))
            .expect("a starter region");
    }
    source
}

/// The class, in `dir`: submission name -> what it is.
fn generate_class(dir: &Path) {
    student_tree(&dir.join("correct"), &|lab| lab.source.to_string());
    student_tree(&dir.join("mistaken"), &|lab| first_mistake(lab).apply(lab.source).expect("the mistake applies"));
    student_tree(&dir.join("forkbomb"), &|lab| {
        if lab.name == "pid-ns" {
            let bomb = "loop {\n    // SAFETY: a fork bomb, on purpose.\n    let _ = unsafe { libc::fork() };\n}";
            labkit::regions::replace_body(lab.source, FORK_REGION, bomb).expect("the fork bomb")
        } else {
            lab.source.to_string()
        }
    });
    student_tree(&dir.join("harness-edit"), &starter);
    let check = common::workspace().join(EDITED_CHECK);
    let edited = format!(
        "{}\n// always pass: every decide returns Some(true)\n",
        std::fs::read_to_string(check).expect("the check")
    );
    let at = dir.join("harness-edit").join(EDITED_CHECK);
    std::fs::create_dir_all(at.parent().expect("a dir")).expect("create harness/src/checks");
    std::fs::write(at, edited).expect("edit the check");

    // The broken build comes as a tarball of `nobuild/...`.
    let unpacked = dir.join(".nobuild-tree");
    student_tree(&unpacked, &|lab| {
        if lab.name == "pid-ns" {
            format!("{}\nfn broken( {{\n", lab.source)
        } else {
            lab.source.to_string()
        }
    });
    let file = std::fs::File::create(dir.join("nobuild.tar.gz")).expect("create the tarball");
    let mut tarball = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
    tarball.append_dir_all("nobuild", &unpacked).expect("tar the tree");
    tarball.into_inner().expect("finish tar").finish().expect("finish gzip");
    std::fs::remove_dir_all(&unpacked).expect("remove the unpacked tree");
}

/// `cilab grade <class> --format json ...`: the exit code, and per submission its JSON.
fn grade(class: &Path, out: &Path, args: &[&str]) -> (i32, BTreeMap<String, serde_json::Value>) {
    let output = common::cilab()
        .arg("grade")
        .arg(class)
        .arg("--out")
        .arg(out)
        .args(["--format", "json"])
        .args(args)
        .output()
        .expect("run cilab grade");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    let graded: Vec<serde_json::Value> =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("cilab grade's JSON ({e}):\n{stdout}\n{stderr}"));
    let by_name =
        graded.into_iter().map(|g| (g["name"].as_str().expect("a name").to_string(), g)).collect::<BTreeMap<_, _>>();
    (output.status.code().unwrap_or(-1), by_name)
}

fn report_of(graded: &serde_json::Value) -> Report {
    serde_json::from_value(graded["report"].clone()).expect("a report")
}

fn lab<'a>(report: &'a Report, name: &str) -> &'a LabReport {
    report.labs.iter().find(|l| l.lab == name).unwrap_or_else(|| panic!("no {name} in the report"))
}

fn reason(graded: &serde_json::Value, lab: &str) -> String {
    graded["reasons"][lab].as_str().unwrap_or_default().to_string()
}

/// qemu processes whose command line names a guest directory of cilab's, still running.
fn guests_running() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = state.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
        if cmdline.starts_with(qemu::QEMU) && cmdline.contains(qemu::RUN_DIR) && !zombie {
            found.push(cmdline);
        }
    }
    found
}

#[test]
fn a_generated_class_gets_the_right_scores_and_reasons() {
    common::require_root();
    common::build_labs();
    let started = Instant::now();
    let before = common::host_state();
    let scratch = tempfile::tempdir().expect("a temp dir");
    let class = scratch.path().join("class");
    generate_class(&class);
    let out = scratch.path().join("grades");

    let mut args = vec!["--labs"];
    args.extend(CLASS_LABS);
    let (exit, graded) = grade(&class, &out, &args);
    assert_eq!(exit, 0, "every submission was graded");
    let names: Vec<&str> = graded.keys().map(String::as_str).collect();
    assert_eq!(names, ["correct", "forkbomb", "harness-edit", "mistaken", "nobuild"]);
    let class_labs: Vec<&LabSpec> = CLASS_LABS.iter().map(|n| catalog::find(n).expect("a lab")).collect();

    // The solutions: full points per the catalog, in a sealed guest.
    let correct = report_of(&graded["correct"]);
    for spec in &class_labs {
        let report = lab(&correct, spec.name);
        assert_eq!(report.points(), (spec.max_points(), spec.max_points()), "correct, {}: {report:?}", spec.name);
        let guest = report.guest.as_ref().expect("graded in a guest");
        let sealed = guest.sealed.as_ref().expect("a sealed report");
        assert!(!sealed.is_empty() && sealed.iter().all(|s| !s.starts_with("NOT ")), "{sealed:?}");
    }

    // A mistake: that lab loses points on the verdict the corpus names.
    let mistaken = report_of(&graded["mistaken"]);
    for spec in &class_labs {
        assert_mistake_caught(spec, lab(&mistaken, spec.name), &reason(&graded["mistaken"], spec.name));
    }

    // No build: 0 on pid-ns with the compiler's word; chroot-jail still graded.
    let nobuild = report_of(&graded["nobuild"]);
    assert_eq!(lab(&nobuild, "pid-ns").points().0, 0);
    let why = reason(&graded["nobuild"], "pid-ns");
    assert!(why.contains("does not build") && why.contains("error"), "{why}");
    let jail = catalog::find("chroot-jail").expect("chroot-jail");
    assert_eq!(lab(&nobuild, "chroot-jail").points().0, jail.max_points(), "the build failure spread");
    assert!(out.join("students").join("nobuild").join("build-pid-ns.log").is_file());

    // The fork bomb: pid-ns fails with a reason, chroot-jail in the same guest passes.
    let forkbomb = report_of(&graded["forkbomb"]);
    let pid_ns = catalog::find("pid-ns").expect("pid-ns");
    assert!(lab(&forkbomb, "pid-ns").points().0 < pid_ns.max_points(), "the fork bomb earned every point");
    assert!(!reason(&graded["forkbomb"], "pid-ns").is_empty(), "no reason for the fork bomb");
    assert_eq!(lab(&forkbomb, "chroot-jail").points().0, jail.max_points(), "the fork bomb reached chroot-jail");

    // The harness edit is ignored, and said so; its starters fail.
    let edit = &graded["harness-edit"];
    let notes: Vec<&str> = edit["notes"].as_array().expect("notes").iter().filter_map(|n| n.as_str()).collect();
    assert!(notes.contains(&format!("ignored: {EDITED_CHECK} edited").as_str()), "{notes:?}");
    let starters = report_of(edit);
    for spec in &class_labs {
        let report = lab(&starters, spec.name);
        assert!(report.verdicts.iter().any(|v| v.outcome == Outcome::Fail), "{}: a starter passed", spec.name);
        assert!(report.points().0 < spec.max_points(), "{}: a starter earned every point", spec.name);
    }

    // Every result file.
    for file in ["class.csv", "class.md"] {
        assert!(out.join(file).is_file(), "no {file}");
    }
    let csv = std::fs::read_to_string(out.join("class.csv")).expect("class.csv");
    assert_eq!(csv.lines().count(), graded.len() + 1, "{csv}");
    for name in graded.keys() {
        for (file, _) in cilab::formats::REPORT_FILES {
            assert!(out.join("students").join(name).join(file).is_file(), "no students/{name}/{file}");
        }
    }
    eprintln!("class of {} on {CLASS_LABS:?}: {:.0} s", graded.len(), started.elapsed().as_secs_f64());

    // The mistakes on every lab of the catalog, the only submission.
    let mistakes_only = scratch.path().join("mistakes-only");
    std::fs::create_dir_all(&mistakes_only).expect("a class of one");
    std::fs::rename(class.join("mistaken"), mistakes_only.join("mistaken")).expect("move the submission");
    let every_lab = Instant::now();
    let (exit, graded) = grade(&mistakes_only, &scratch.path().join("grades-all"), &[]);
    assert_eq!(exit, 0);
    let mistaken = report_of(&graded["mistaken"]);
    for spec in catalog::all() {
        assert_mistake_caught(spec, lab(&mistaken, spec.name), &reason(&graded["mistaken"], spec.name));
    }
    eprintln!("the mistakes on every lab: {:.0} s", every_lab.elapsed().as_secs_f64());

    assert_eq!(guests_running(), Vec::<String>::new(), "a guest is left running");
    common::assert_host_unchanged(&before);
    eprintln!("tests/grade.rs: {:.0} s", started.elapsed().as_secs_f64());
}

fn assert_mistake_caught(spec: &'static LabSpec, report: &LabReport, why: &str) {
    let entry = first_mistake(spec);
    let caught_by = entry.caught_by.as_deref().unwrap_or_default();
    let verdict = report.verdicts.iter().find(|v| v.id == caught_by).unwrap_or_else(|| panic!("no {caught_by}"));
    assert_eq!(
        verdict.outcome,
        Outcome::Fail,
        "{}: `{}` not caught by {caught_by}: {verdict:?}",
        spec.name,
        entry.name
    );
    assert!(report.points().0 < spec.max_points(), "{}: the mistake earned every point", spec.name);
    assert!(!why.is_empty(), "{}: no reason", spec.name);
}
