//! Course authors only: a handout is written from the author's tree, not from a handout.
//! `cilab handout`, for real: the handout of this tree builds on its own, its cilab grades
//! every lab as failed with the hint of the region to write, and no line of any solution
//! is anywhere in it (proved able to fail by planting one).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cilab::report::Report;
use cilab::verdict::{Kind, Outcome};

/// How long a solution line must be to count as the solution's own (`Ok(())` is not).
const DISTINCTIVE: usize = 12;

/// Each region's solution lines: its body's lines, trimmed, long enough to be distinctive,
/// that the original tree's Rust code outside the STUDENT regions does not also have (the
/// harness's own probes make some of the same syscalls, and later labs do what earlier ones
/// taught). That code is the code of the files a handout keeps (not the corpus, not the
/// files for course authors only), less its comments: a comment quoting a solution line
/// does not make it anyone's code, and is found as a leak.
fn solution_lines(workspace: &Path) -> Vec<(String, String, String)> {
    let mut outside = String::new();
    let mut sources = Vec::new();
    for name in cilab::handout::INCLUDED {
        files(&workspace.join(name), &mut sources);
    }
    for path in sources.iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let relative = path.strip_prefix(workspace).expect("in the workspace");
        let text = std::fs::read_to_string(path).expect("read");
        if relative.starts_with(cilab::handout::CORPUS_DIR) || text.starts_with(cilab::handout::AUTHORS_ONLY) {
            continue;
        }
        let regions = cilab::catalog::all()
            .iter()
            .find(|lab| relative == Path::new("labs").join(lab.name).join("src/main.rs"))
            .map(|lab| lab.regions().expect("the regions parse"))
            .unwrap_or_default();
        let inside: BTreeSet<usize> = regions.iter().flat_map(|r| r.begin_line..=r.end_line).collect();
        for (index, line) in text.lines().enumerate() {
            if !inside.contains(&(index + 1)) && !line.trim().starts_with("//") {
                outside.push_str(line.trim());
                outside.push('\n');
            }
        }
    }
    let mut lines = Vec::new();
    for lab in cilab::catalog::all() {
        for region in lab.regions().expect("the regions parse") {
            for line in region.body.lines().map(str::trim) {
                if line.len() >= DISTINCTIVE && !outside.contains(line) {
                    lines.push((lab.name.to_string(), region.name.clone(), line.to_string()));
                }
            }
        }
    }
    lines
}

/// Every regular file under `path`.
fn files(path: &Path, into: &mut Vec<PathBuf>) {
    let meta = path.symlink_metadata().expect("stat");
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).expect("list") {
            files(&entry.expect("entry").path(), into);
        }
    } else if meta.is_file() {
        into.push(path.to_path_buf());
    }
}

/// Every file under `dir` with the solution lines it holds, as "file: lab/region: line".
fn leaks(dir: &Path, solutions: &[(String, String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    let mut all = Vec::new();
    files(dir, &mut all);
    for path in all {
        let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read")).into_owned();
        for (lab, region, line) in solutions {
            if text.contains(line.as_str()) {
                found.push(format!("{}: {lab}/{region}: {line}", path.display()));
            }
        }
    }
    found
}

/// Removes, on drop, the results files that appeared in cilab's results dir meanwhile.
struct Results(BTreeSet<PathBuf>);

impl Results {
    fn new() -> Self {
        Results(Self::files())
    }

    fn files() -> BTreeSet<PathBuf> {
        std::fs::read_dir(cilab::registry::results_dir())
            .map(|dir| dir.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Results {
    fn drop(&mut self) {
        for made in Self::files().difference(&self.0) {
            let _ = std::fs::remove_file(made);
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("the workspace")
}

#[test]
fn the_handout_builds_fails_every_lab_with_hints_and_holds_no_solution() {
    common::require_root();
    let out = tempfile::tempdir().expect("tempdir");
    let tree = out.path().join("student-tree");
    let written = common::cilab().args(["handout", "--out"]).arg(&tree).output().expect("run cilab handout");
    assert!(written.status.success(), "{written:?}");

    // Into a directory that is not empty: refused, and nothing of it changed.
    let again = common::cilab().args(["handout", "--out"]).arg(&tree).output().expect("run cilab handout");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"), "{again:?}");

    // A fresh tree, no history; the author's README is replaced by the students'.
    assert!(!tree.join(".git").exists() && !tree.join("target").exists());
    assert!(!tree.join(".ci").exists(), "CI is the course author's");
    let readme = std::fs::read_to_string(tree.join("README.md")).expect("a README");
    assert_eq!(readme, cilab::handout::student_readme());
    for lab in cilab::catalog::all() {
        assert!(readme.contains(&format!("`{}`", lab.name)), "the README names lab {}", lab.name);
        assert!(tree.join("labs").join(lab.name).join("README.md").is_file(), "the sheet of {}", lab.name);
    }
    for file in ["harness/tests/dev_check.rs", "harness/tests/corpus_guard.rs", "harness/tests/corpus_cgroup_limits.rs"]
    {
        assert!(!tree.join(file).exists(), "{file} is the course author's");
    }

    // No solution line anywhere; a single one planted is found.
    let solutions = solution_lines(&workspace());
    assert!(!solutions.is_empty());
    let found = leaks(&tree, &solutions);
    assert!(found.is_empty(), "solution lines in the handout:\n{}", found.join("\n"));
    let (lab, region, planted) = &solutions[solutions.len() / 2];
    let notes = tree.join("fixtures").join("notes.txt");
    std::fs::write(&notes, format!("{planted}\n")).expect("plant");
    let found = leaks(&tree, &solutions);
    assert!(
        found.iter().any(|f| f.contains(&format!("notes.txt: {lab}/{region}: {planted}"))),
        "the planted line is found: {found:?}"
    );
    std::fs::remove_file(&notes).expect("unplant");

    // It builds on its own (offline), into the target dir `cilab dev check` uses for its
    // handout: the crates it depends on are built once for both.
    let target = cilab::devcheck::handout_dir(&workspace()).join("target");
    let started = std::time::Instant::now();
    cilab::labbuild::cargo_build_workspace(&tree, &target).expect("the handout builds");
    eprintln!("the handout built in {:.1} s", started.elapsed().as_secs_f64());

    // Its own cilab grades it: every lab fails, and shows the hints of its regions. The
    // results it keeps for the temporary tree are removed again, however the test ends.
    let results = Results::new();
    let output = std::process::Command::new(target.join("debug").join("cilab"))
        .args(["check", "--all", "--no-build", "--format", "json"])
        .current_dir(&tree)
        .output()
        .expect("run the handout's cilab");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(output.status.code(), Some(1), "every lab failed: exit 1");
    assert_eq!(report.labs.len(), cilab::catalog::all().len());
    for lab in &report.labs {
        let spec = cilab::catalog::find(&lab.lab).expect("in the catalog");
        let check = cilab::devcheck::starter_fails(spec, lab);
        assert_eq!(check.status, cilab::devcheck::Status::Pass, "{}: {}", lab.lab, check.detail);
        let graded = lab.verdicts.iter().filter(|v| v.kind == Kind::Graded);
        assert!(graded.clone().all(|v| v.outcome == Outcome::Fail), "{}: {:#?}", lab.lab, lab.verdicts);
        assert_eq!(lab.points().0, 0, "{}", lab.lab);
    }

    // The handout's `cilab dev` says where the corpus is, and exits 2.
    let dev = std::process::Command::new(target.join("debug").join("cilab"))
        .args(["dev", "corpus"])
        .output()
        .expect("run the handout's cilab");
    assert_eq!(dev.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dev.stderr).contains("this is a student handout"), "{dev:?}");
    drop(results);
    assert_eq!(Results::files(), Results::new().0);
}
