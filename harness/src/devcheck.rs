//! `cilab dev check`: the proof, for course authors and CI, that the course is sound.
//!
//! Every region has a hint; every verdict is on its lab's sheet; the handout builds; each
//! lab's starter (the handout's binary, graded by this tree's harness) fails its graded
//! verdicts and shows its regions' hints; each solution (this tree's binary) passes; the
//! mistake corpus is caught. Each is one line of a table, pass, FAIL or SKIPPED; only
//! every line passing is a pass.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Local};
use crate::catalog::{self, LabSpec};
use crate::corpus::{self, EntryResult};
use crate::error::{Error, Result};
use crate::report::LabReport;
use crate::run::RunOptions;
use crate::verdict::{Kind, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Not run (asked to skip, or this machine cannot run it): never a pass.
    Skipped,
}

/// One line of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// What is proved: `regions`, `sheet`, `handout-builds`, `starter-fails`,
    /// `solution-passes`, `corpus`.
    pub check: String,
    /// The lab it is about; none for the whole course.
    pub lab: Option<String>,
    pub status: Status,
    /// What was found (why it failed, or what passed).
    pub detail: String,
}

/// What `cilab dev check` found: the table's lines, and each corpus entry's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevCheck {
    pub checks: Vec<Check>,
    pub corpus: Vec<EntryResult>,
}

impl DevCheck {
    /// Every check passed: nothing failed and nothing was skipped.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.status == Status::Pass)
    }

    pub fn to_table(&self) -> String {
        let mut out = format!("{:<8} {:<16} {:<14} detail\n", "status", "check", "lab");
        for check in &self.checks {
            let status = match check.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::Skipped => "SKIPPED",
            };
            let mut lines = check.detail.lines();
            let first = lines.next().unwrap_or_default();
            out.push_str(&format!(
                "{status:<8} {:<16} {:<14} {first}\n",
                check.check,
                check.lab.as_deref().unwrap_or("-")
            ));
            for more in lines {
                out.push_str(&format!("{:<41} {more}\n", ""));
            }
        }
        let count = |s: Status| self.checks.iter().filter(|c| c.status == s).count();
        out.push_str(&format!(
            "\n{} checks: {} pass, {} FAIL, {} SKIPPED (a skip is not a pass)\n",
            self.checks.len(),
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skipped)
        ));
        out
    }
}

/// Where `cilab dev check` writes the handout it builds: under this tree's target dir,
/// kept between runs so that its build is incremental.
pub fn handout_dir(workspace: &Path) -> PathBuf {
    workspace.join("target").join("cilab-handout")
}

/// Runs every check on the course in `workspace`, whose lab binaries (the solutions) are in
/// `solutions`. `skip_corpus`: the corpus's line is SKIPPED (and so the whole is no pass).
pub fn run(workspace: &Path, solutions: &Path, skip_corpus: bool) -> Result<DevCheck> {
    let labs: Vec<&'static LabSpec> = catalog::all().iter().collect();
    let mut checks = Vec::new();
    for lab in &labs {
        checks.push(regions(lab));
        checks.push(sheet(workspace, lab));
    }
    let starters = build_handout(workspace);
    let starter_binaries = match &starters {
        Ok(binaries) => {
            checks.push(course_check("handout-builds", Status::Pass, format!("built in {}", binaries.display())));
            Some(binaries.clone())
        }
        Err(error) => {
            checks.push(course_check("handout-builds", Status::Fail, error.to_string()));
            None
        }
    };
    let starter_backend = starter_binaries.map(Local::new).transpose()?;
    let solution_backend = Local::new(solutions.to_path_buf())?;
    for lab in &labs {
        let unavailable = (lab.available)().err();
        checks.push(match (&starter_backend, &unavailable) {
            (_, Some(why)) => lab_check("starter-fails", lab, Status::Skipped, format!("not run here: {why}")),
            (None, None) => lab_check("starter-fails", lab, Status::Skipped, "the handout did not build".into()),
            (Some(backend), None) => starter_fails(lab, &backend.check(lab, &RunOptions::default())?),
        });
        checks.push(match &unavailable {
            Some(why) => lab_check("solution-passes", lab, Status::Skipped, format!("not run here: {why}")),
            None => solution_passes(lab, &solution_backend.check(lab, &RunOptions::default())?),
        });
    }
    let corpus = if skip_corpus {
        checks.push(course_check(
            "corpus",
            Status::Skipped,
            "SKIPPED (--skip-corpus): the mistake corpus was not run, so nothing proves each verdict can fail".into(),
        ));
        Vec::new()
    } else {
        let results = corpus::run(&labs, workspace, None)?;
        checks.push(corpus_check(&results));
        results
    };
    Ok(DevCheck { checks, corpus })
}

fn course_check(check: &str, status: Status, detail: String) -> Check {
    Check { check: check.to_string(), lab: None, status, detail }
}

fn lab_check(check: &str, lab: &LabSpec, status: Status, detail: String) -> Check {
    Check { check: check.to_string(), lab: Some(lab.name.to_string()), status, detail }
}

fn pass_or_fail(problems: &[String]) -> Status {
    if problems.is_empty() {
        Status::Pass
    } else {
        Status::Fail
    }
}

/// The lab's regions parse, it has some, and each has a hint.
fn regions(lab: &LabSpec) -> Check {
    match lab.regions() {
        Err(error) => lab_check("regions", lab, Status::Fail, error.to_string()),
        Ok(regions) if regions.is_empty() => lab_check("regions", lab, Status::Fail, "no STUDENT region".into()),
        Ok(regions) => {
            let problems: Vec<String> = regions
                .iter()
                .filter(|r| r.hint.trim().is_empty())
                .map(|r| format!("region `{}` has no hint", r.name))
                .collect();
            let detail = if problems.is_empty() {
                format!("{} regions, each with a hint", regions.len())
            } else {
                problems.join("\n")
            };
            lab_check("regions", lab, pass_or_fail(&problems), detail)
        }
    }
}

/// The line the sheet (labs/<lab>/README.md) has for a verdict, under "What the checks verify".
pub fn sheet_line(id: &str, claim: &str) -> String {
    format!("- `{id}` — {claim}")
}

/// Every verdict of the lab is on its sheet, id and claim word for word.
fn sheet(workspace: &Path, lab: &LabSpec) -> Check {
    let path = workspace.join("labs").join(lab.name).join("README.md");
    let sheet = match std::fs::read_to_string(&path) {
        Ok(sheet) => sheet,
        Err(error) => return lab_check("sheet", lab, Status::Fail, Error::io("read", &path)(error).to_string()),
    };
    let verdicts = lab.all_verdicts();
    let problems: Vec<String> = verdicts
        .iter()
        .map(|v| sheet_line(v.id, v.claim))
        .filter(|line| !sheet.contains(line.as_str()))
        .map(|line| format!("{} lacks the line: {line}", path.display()))
        .collect();
    let detail =
        if problems.is_empty() { format!("all {} verdicts on the sheet", verdicts.len()) } else { problems.join("\n") };
    lab_check("sheet", lab, pass_or_fail(&problems), detail)
}

/// Writes the handout afresh into `target/cilab-handout/tree` and builds it there with a
/// target dir of its own; returns where its lab binaries are.
fn build_handout(workspace: &Path) -> Result<PathBuf> {
    let dir = handout_dir(workspace);
    let tree = dir.join("tree");
    if tree.exists() {
        std::fs::remove_dir_all(&tree).map_err(Error::io("remove", &tree))?;
    }
    crate::handout::write(workspace, &tree)?;
    let target = dir.join("target");
    crate::labbuild::cargo_build_workspace(&tree, &target)?;
    Ok(target.join("debug"))
}

/// The starter fails every graded verdict, shows the hint of a region, and every hint it
/// shows is the one of the verdict's own region.
pub fn starter_fails(lab: &LabSpec, report: &LabReport) -> Check {
    let hints = lab.region_hints();
    let mut problems = Vec::new();
    if let Some(failure) = &report.harness_failure {
        problems.push(format!("the harness failed: {failure}"));
    }
    let graded = report.verdicts.iter().filter(|v| v.kind == Kind::Graded);
    for verdict in graded.clone().filter(|v| v.outcome != Outcome::Fail) {
        problems.push(format!("graded verdict `{}` is {:?} on the starter, not failed", verdict.id, verdict.outcome));
    }
    let mut hinted = 0;
    for verdict in graded.filter(|v| v.outcome == Outcome::Fail) {
        let (Some(region), Some(hint)) = (verdict.region.as_deref(), verdict.hint.as_deref()) else { continue };
        match hints.get(region) {
            Some(region_hint) if hint.contains(region_hint.as_str()) => hinted += 1,
            _ => problems.push(format!("`{}` shows a hint that is not region `{region}`'s: {hint}", verdict.id)),
        }
    }
    if hinted == 0 {
        problems.push("no failed verdict shows its region's hint".into());
    }
    let detail = if problems.is_empty() {
        let (_, max) = report.points();
        format!("0 of {max} points; failures showing their region's hint: {hinted}")
    } else {
        problems.join("\n")
    };
    lab_check("starter-fails", lab, pass_or_fail(&problems), detail)
}

/// The solution passes every verdict.
fn solution_passes(lab: &LabSpec, report: &LabReport) -> Check {
    let problems: Vec<String> = report
        .verdicts
        .iter()
        .filter(|v| v.outcome != Outcome::Pass)
        .map(|v| format!("`{}` {:?}: {}", v.id, v.outcome, v.detail.as_deref().unwrap_or("-")))
        .chain(report.harness_failure.iter().map(|f| format!("the harness failed: {f}")))
        .collect();
    let detail = if problems.is_empty() {
        let (points, max) = report.points();
        format!("{points}/{max} points, every verdict passed")
    } else {
        problems.join("\n")
    };
    lab_check("solution-passes", lab, pass_or_fail(&problems), detail)
}

fn corpus_check(results: &[EntryResult]) -> Check {
    let skipped = results.iter().filter(|r| r.skipped.is_some()).count();
    let bad: Vec<String> = results
        .iter()
        .filter(|r| !r.ok() && r.skipped.is_none())
        .map(|r| format!("{} / {} / {}: {}", r.lab, r.region, r.name, r.problems.join("; ")))
        .collect();
    let caught = results.iter().filter(|r| r.ok()).count();
    let summary = format!("{} entries: {caught} caught, {} with problems, {skipped} SKIPPED", results.len(), bad.len());
    let status = if !bad.is_empty() || results.is_empty() {
        Status::Fail
    } else if skipped > 0 {
        Status::Skipped
    } else {
        Status::Pass
    };
    let detail = std::iter::once(summary).chain(bad).collect::<Vec<_>>().join("\n");
    course_check("corpus", status, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(status: Status) -> Check {
        Check { check: "corpus".into(), lab: None, status, detail: "SKIPPED (--skip-corpus)".into() }
    }

    /// A skipped line (`--skip-corpus`, or a lab this machine cannot run) is never a pass,
    /// and the table says so in capitals.
    #[test]
    fn a_skipped_check_is_not_a_pass_and_says_so() {
        let passing = DevCheck { checks: vec![line(Status::Pass)], corpus: Vec::new() };
        assert!(passing.passed());
        let skipped = DevCheck { checks: vec![line(Status::Pass), line(Status::Skipped)], corpus: Vec::new() };
        assert!(!skipped.passed());
        assert!(skipped.to_table().lines().any(|l| l.starts_with("SKIPPED  corpus")), "{}", skipped.to_table());
        assert!(!DevCheck { checks: Vec::new(), corpus: Vec::new() }.passed(), "nothing checked is no pass");
    }

    /// A sheet that lacks one verdict's line fails, and names the line.
    #[test]
    fn a_sheet_without_a_verdicts_line_fails() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let lab = &catalog::all()[0];
        assert_eq!(sheet(&workspace, lab).status, Status::Pass, "{}", sheet(&workspace, lab).detail);
        let copy = tempfile::tempdir().expect("tempdir");
        let dir = copy.path().join("labs").join(lab.name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let original = std::fs::read_to_string(workspace.join("labs").join(lab.name).join("README.md")).expect("sheet");
        let verdict = lab.verdicts[0];
        let line = sheet_line(verdict.id, verdict.claim);
        std::fs::write(dir.join("README.md"), original.replace(&line, "")).expect("write");
        let check = sheet(copy.path(), lab);
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains(&line), "{}", check.detail);
    }
}
