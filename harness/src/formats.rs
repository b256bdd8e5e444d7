//! The report in the formats other graders read, each made from our JSON [`Report`] (the
//! source of truth), never from the labs' output:
//! - JUnit XML: a testsuite per lab, a testcase per verdict; a failure carries what was
//!   seen and the hint, a skip is a skip (GitLab, Jenkins, CI test reporters);
//! - Markdown: a table per lab and what to fix, for CI job summaries;
//! - Gradescope's `results.json`: score, max_score and a test per verdict.

use std::fmt::Write as _;
use std::time::Duration;

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use crate::report::{LabReport, Report};
use crate::verdict::{Kind, Outcome, Verdict};

/// JUnit XML of `report`.
pub fn to_junit(report: &Report) -> String {
    let mut junit = quick_junit::Report::new("cilab");
    for lab in &report.labs {
        let mut suite = TestSuite::new(lab.lab.as_str());
        suite.set_time(Duration::from_millis(lab.duration_ms));
        for verdict in &lab.verdicts {
            let status = match verdict.outcome {
                Outcome::Pass => TestCaseStatus::success(),
                Outcome::Fail => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status.set_message(verdict.detail.clone().unwrap_or_else(|| "failed".into()));
                    status.set_description(failure_text(verdict));
                    status
                }
                Outcome::Skip => {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(verdict.detail.clone().unwrap_or_else(|| "skipped".into()));
                    status
                }
            };
            let mut case = TestCase::new(verdict.id.as_str(), status);
            case.set_classname(format!("cilab.{}", lab.lab));
            case.set_system_out(format!("{} ({})", verdict.claim, points_of(verdict)));
            suite.add_test_case(case);
        }
        if let Some(why) = lab.harness_failure.as_ref().or(lab.stopped.as_ref()) {
            suite.set_system_err(why.as_str());
        }
        junit.add_test_suite(suite);
    }
    junit.to_string().unwrap_or_else(|e| format!("<!-- cilab: the JUnit report could not be written: {e} -->\n"))
}

fn failure_text(verdict: &Verdict) -> String {
    let mut text = format!("claim: {}", verdict.claim);
    if let Some(seen) = &verdict.detail {
        text.push_str(&format!("\nsaw: {seen}"));
    }
    if let Some(hint) = &verdict.hint {
        text.push_str(&format!("\nhint: {hint}"));
    }
    text
}

fn points_of(verdict: &Verdict) -> String {
    match verdict.kind {
        Kind::Graded => format!("{}/{} points", verdict.points, verdict.max_points),
        Kind::Fact => "a fact, no points".into(),
    }
}

/// Markdown of `report`: a line per lab, then per lab what did not pass, with hints.
pub fn to_markdown(report: &Report) -> String {
    let s = &report.summary;
    let mut out = format!("## cilab: {}/{} points\n\n", s.points, s.max_points);
    out.push_str("| lab | result | points | passed | failed | skipped |\n|---|---|---|---|---|---|\n");
    for lab in &report.labs {
        let (points, max) = lab.points();
        let count = |o: Outcome| lab.verdicts.iter().filter(|v| v.outcome == o).count();
        let _ = writeln!(
            out,
            "| {} | {} | {points}/{max} | {} | {} | {} |",
            cell(&lab.lab),
            lab.result_word(),
            count(Outcome::Pass),
            count(Outcome::Fail),
            count(Outcome::Skip)
        );
    }
    for lab in report.labs.iter().filter(|l| l.verdicts.iter().any(|v| v.outcome != Outcome::Pass)) {
        let _ = write!(out, "\n### {}: {}\n\n", lab.lab, lab.title);
        if let Some(why) = &lab.harness_failure {
            let _ = writeln!(out, "**Not the student's result:** {}\n", one_line(why));
        }
        for verdict in lab.verdicts.iter().filter(|v| v.outcome != Outcome::Pass) {
            let mark = if verdict.outcome == Outcome::Fail { "FAIL" } else { "SKIP" };
            let _ =
                writeln!(out, "- **{mark}** `{}` ({}): {}", verdict.id, points_of(verdict), one_line(&verdict.claim));
            if let Some(seen) = &verdict.detail {
                let _ = writeln!(out, "  - saw: {}", one_line(seen));
            }
            if let Some(hint) = &verdict.hint {
                let _ = writeln!(out, "  - hint: {}", one_line(hint));
            }
        }
    }
    out
}

/// Text for a table cell: no pipes, one line.
fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Gradescope's results.json.
#[derive(Debug, Serialize)]
pub struct Gradescope {
    pub score: u32,
    pub max_score: u32,
    pub output: String,
    pub tests: Vec<GradescopeTest>,
}

#[derive(Debug, Serialize)]
pub struct GradescopeTest {
    pub name: String,
    pub score: u32,
    pub max_score: u32,
    /// "passed" or "failed": Gradescope has no skip; a skip earns nothing and says why.
    pub status: &'static str,
    pub output: String,
}

/// Gradescope's results.json of `report`: a test per verdict ("lab / verdict").
pub fn to_gradescope(report: &Report) -> Gradescope {
    let tests = report.labs.iter().flat_map(|lab| lab.verdicts.iter().map(move |v| gradescope_test(lab, v))).collect();
    let s = &report.summary;
    Gradescope {
        score: s.points,
        max_score: s.max_points,
        output: format!("{} lab(s): {} verdicts passed, {} failed, {} skipped", s.labs, s.passed, s.failed, s.skipped),
        tests,
    }
}

fn gradescope_test(lab: &LabReport, verdict: &Verdict) -> GradescopeTest {
    let output = match verdict.outcome {
        Outcome::Pass => verdict.claim.clone(),
        Outcome::Fail => failure_text(verdict),
        Outcome::Skip => format!(
            "SKIPPED, not checked (no points): {}\nclaim: {}",
            verdict.detail.as_deref().unwrap_or("no reason given"),
            verdict.claim
        ),
    };
    GradescopeTest {
        name: format!("{} / {}", lab.lab, verdict.id),
        score: verdict.points,
        max_score: verdict.max_points,
        status: if verdict.outcome == Outcome::Pass { "passed" } else { "failed" },
        output,
    }
}

/// The file names [`write_all`] uses, one per format.
pub const REPORT_FILES: [(&str, &str); 4] = [
    ("report.json", "our JSON, the source of truth"),
    ("junit.xml", "JUnit XML"),
    ("summary.md", "Markdown summary"),
    ("results.json", "Gradescope's results.json"),
];

/// Writes `report` in every format into `dir` (made if missing), under the names of
/// [`REPORT_FILES`]; returns the paths written.
pub fn write_all(report: &Report, dir: &std::path::Path) -> crate::error::Result<Vec<std::path::PathBuf>> {
    use crate::error::Error;
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    let gradescope = serde_json::to_string_pretty(&to_gradescope(report))
        .map_err(|e| Error::parse("the Gradescope report", e.to_string()))?;
    let texts = [report.to_json(), to_junit(report), to_markdown(report), gradescope];
    let mut written = Vec::new();
    for ((name, _), text) in REPORT_FILES.iter().zip(texts) {
        let path = dir.join(name);
        std::fs::write(&path, format!("{}\n", text.trim_end())).map_err(Error::io("write", &path))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local;

    /// A report of every lab in the catalog: the first lab all passed, the second with its
    /// first graded verdict failed (with a hint), the rest skipped.
    fn sample() -> Report {
        let labs: Vec<LabReport> = crate::catalog::all()
            .iter()
            .enumerate()
            .map(|(i, lab)| {
                let mut report = local::skipped(lab, "local", "a | test");
                if i < 2 {
                    for verdict in &mut report.verdicts {
                        verdict.outcome = Outcome::Pass;
                        verdict.points = verdict.max_points;
                        verdict.detail = None;
                    }
                }
                if i == 1 {
                    let failed = report.verdicts.iter_mut().find(|v| v.max_points > 0).expect("a graded verdict");
                    failed.outcome = Outcome::Fail;
                    failed.points = 0;
                    failed.detail = Some("x = <1 & 2>".into());
                    failed.hint = Some("look at region `a`".into());
                }
                report
            })
            .collect();
        Report::new(labs)
    }

    #[test]
    fn write_all_writes_every_format_and_the_json_reads_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let report = sample();
        let written = write_all(&report, &dir.path().join("out")).expect("written");
        assert_eq!(written.len(), REPORT_FILES.len());
        let json = std::fs::read_to_string(&written[0]).expect("report.json");
        let back: Report = serde_json::from_str(&json).expect("report.json is a Report");
        assert_eq!(back.summary, report.summary);
        for path in &written {
            assert!(std::fs::metadata(path).expect("written").len() > 0, "{} is empty", path.display());
        }
    }

    #[test]
    fn junit_has_a_suite_per_lab_and_a_case_per_verdict_with_failures_and_skips() {
        let report = sample();
        let xml = to_junit(&report);
        assert_eq!(xml.matches("<testsuite ").count(), report.labs.len(), "{xml}");
        assert_eq!(xml.matches("<testcase ").count(), report.summary.verdicts);
        assert_eq!(xml.matches("<failure ").count(), report.summary.failed);
        assert_eq!(xml.matches("<skipped").count(), report.summary.skipped);
        // Escaped, not broken: what was seen goes into an attribute.
        assert!(xml.contains("x = &lt;1 &amp; 2&gt;"), "{xml}");
        assert!(xml.contains("hint: look at region `a`"), "{xml}");
        assert!(xml.starts_with("<?xml"), "{xml}");
    }

    #[test]
    fn markdown_has_a_row_per_lab_and_what_to_fix() {
        let report = sample();
        let md = to_markdown(&report);
        let rows = md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| lab ")).count();
        assert_eq!(rows, report.labs.len(), "{md}");
        assert!(md.contains(&format!("{}/{} points", report.summary.points, report.summary.max_points)), "{md}");
        assert!(md.contains("- **FAIL**") && md.contains("  - hint: look at region `a`"), "{md}");
        assert!(md.contains("- **SKIP**"), "{md}");
    }

    #[test]
    fn gradescope_scores_add_up_and_a_skip_earns_nothing() {
        let report = sample();
        let results = to_gradescope(&report);
        assert_eq!(results.tests.len(), report.summary.verdicts);
        assert_eq!(results.tests.iter().map(|t| t.score).sum::<u32>(), results.score);
        assert_eq!(results.tests.iter().map(|t| t.max_score).sum::<u32>(), results.max_score);
        assert_eq!(results.max_score, crate::catalog::all().iter().map(|l| l.max_points()).sum::<u32>());
        assert!(results.tests.iter().all(|t| t.status == "passed" || t.status == "failed"));
        let skipped = results.tests.iter().filter(|t| t.output.starts_with("SKIPPED")).count();
        assert_eq!(skipped, report.summary.skipped);
        assert!(results.tests.iter().filter(|t| t.output.starts_with("SKIPPED")).all(|t| t.score == 0));
    }
}
