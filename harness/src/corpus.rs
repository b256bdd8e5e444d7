//! The mistake corpus: the proof that every verdict worth points can fail.
//!
//! For every STUDENT region, typical mistakes (the region left as `todo!()` the way a
//! handout leaves it, the missing flag, the wrong order) and lies (a lab that fakes what it
//! should have made) are written as edits of the lab's source. Each entry is built in a
//! copy of the workspace, graded by the real harness, and run by hand under a deadline;
//! it must fail the verdict named for it, the report must show the region's hint, the run
//! by hand must end and leave nothing, and the real host must be as it was.
//!
//! Every lab declares its entries in a file of its own (`mistakes::<lab>::MISTAKES`), which
//! a student handout writes empty; the `todo!()` entry of each region is made here from
//! the source.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Local};
use crate::catalog::LabSpec;
use crate::cgroup::CgroupSetup;
use crate::error::{Error, Result};
use crate::probe::procfs;
use crate::registry;
use crate::run::{self, ByHand, RunOptions};
use crate::verdict::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MistakeKind {
    /// What a student typically gets wrong.
    Mistake,
    /// A lab that fakes the outcome instead of making it.
    Lie,
}

/// One change to a lab's source.
#[derive(Debug, Clone, Copy)]
pub enum Edit {
    /// The body of this STUDENT region becomes this code.
    Region(&'static str, &'static str),
    /// This exact text (found once) becomes that text.
    Replace(&'static str, &'static str),
}

/// A declared corpus entry.
#[derive(Debug, Clone, Copy)]
pub struct Mistake {
    /// The region whose work it gets wrong.
    pub region: &'static str,
    pub name: &'static str,
    pub kind: MistakeKind,
    pub edits: &'static [Edit],
    /// The verdict that must fail.
    pub caught_by: &'static str,
}

/// An entry ready to run: declared, or the `todo!()` of a region.
#[derive(Debug, Clone)]
pub struct Entry {
    pub lab: &'static LabSpec,
    pub region: String,
    pub name: String,
    pub kind: MistakeKind,
    edits: Vec<(Option<String>, String, String)>,
    /// The verdict that must fail; for a region's `todo!()`, `None`: any verdict grading
    /// the region, and the result names the one that failed first.
    pub caught_by: Option<String>,
}

impl Entry {
    /// The lab's source with this entry's edits applied.
    pub fn apply(&self, source: &str) -> Result<String> {
        let mut text = source.to_string();
        for (region, find, replace) in &self.edits {
            text = match region {
                Some(region) => labkit::regions::replace_body(&text, region, replace)
                    .map_err(|e| Error::parse(format!("corpus entry `{}`", self.name), e))?,
                None => {
                    if text.matches(find.as_str()).count() != 1 {
                        return Err(Error::parse(
                            format!("corpus entry `{}`", self.name),
                            format!("the text to replace is not found exactly once: {find:?}"),
                        ));
                    }
                    text.replacen(find.as_str(), replace, 1)
                }
            };
        }
        Ok(text)
    }
}

/// Every entry of a lab: the `todo!()` of each region, then the declared ones.
pub fn entries(lab: &'static LabSpec) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for region in lab.regions()? {
        if !lab.verdicts.iter().any(|v| v.region == Some(region.name.as_str()) && v.points > 0) {
            return Err(Error::parse(
                format!("lab {}", lab.name),
                format!("region {} is graded by nothing", region.name),
            ));
        }
        entries.push(Entry {
            lab,
            region: region.name.clone(),
            name: "todo!() as a handout leaves it".to_string(),
            kind: MistakeKind::Mistake,
            edits: vec![(Some(region.name.clone()), String::new(), labkit::regions::todo_body(&region))],
            caught_by: None,
        });
    }
    for mistake in lab.mistakes {
        entries.push(Entry {
            lab,
            region: mistake.region.to_string(),
            name: mistake.name.to_string(),
            kind: mistake.kind,
            edits: edit_list(mistake.edits),
            caught_by: Some(mistake.caught_by.to_string()),
        });
    }
    Ok(entries)
}

fn edit_list(edits: &[Edit]) -> Vec<(Option<String>, String, String)> {
    edits
        .iter()
        .map(|edit| match edit {
            Edit::Region(region, body) => (Some(region.to_string()), String::new(), body.to_string()),
            Edit::Replace(find, with) => (None, find.to_string(), with.to_string()),
        })
        .collect()
}

/// Grades `lab` with its source changed by `edits`, built in a copy of `workspace` of its
/// own (`target/cilab-edited`, apart from the corpus's): a lab as a student might have
/// written it, for a test that reads the report's facts.
pub fn grade_edited(lab: &'static LabSpec, workspace: &Path, edits: &[Edit]) -> Result<crate::report::LabReport> {
    let tree = workspace.join("target").join("cilab-edited");
    crate::labbuild::mirror_sources(workspace, &tree, &[])?;
    let entry = Entry {
        lab,
        region: String::new(),
        name: "edited".to_string(),
        kind: MistakeKind::Mistake,
        edits: edit_list(edits),
        caught_by: None,
    };
    let source_path = tree.join("labs").join(lab.name).join("src/main.rs");
    let original = std::fs::read_to_string(&source_path).map_err(Error::io("read", &source_path))?;
    write_if_changed(&source_path, &entry.apply(&original)?)?;
    crate::labbuild::cargo_build(&tree, &[lab.package])?;
    Local::new(tree.join("target").join("debug"))?.check(lab, &RunOptions::default())
}

/// What happened to one entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryResult {
    pub lab: String,
    pub region: String,
    pub name: String,
    pub kind: MistakeKind,
    pub caught_by: String,
    /// The named verdict failed.
    pub caught: bool,
    /// Every verdict that did not pass.
    pub failed: Vec<String>,
    /// The region's hint is in the report.
    pub hint_shown: bool,
    /// The panic the lab reported when graded, as the report says it.
    #[serde(default)]
    pub panic: Option<String>,
    /// How the run by hand ended.
    pub by_hand: String,
    /// Everything wrong with this entry; empty when it is as it must be.
    pub problems: Vec<String>,
    /// Why the entry was not run: its lab is not available here (the guard of a lab that
    /// breaks isolation refuses this machine, say). Not caught, so never ok.
    #[serde(default)]
    pub skipped: Option<String>,
}

impl EntryResult {
    /// Run, and caught as it must be.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.skipped.is_none()
    }

    fn new(entry: &Entry) -> Self {
        EntryResult {
            lab: entry.lab.name.to_string(),
            region: entry.region.clone(),
            name: entry.name.clone(),
            kind: entry.kind,
            caught_by: entry.caught_by.clone().unwrap_or_default(),
            caught: false,
            failed: Vec::new(),
            hint_shown: false,
            panic: None,
            by_hand: String::new(),
            problems: Vec::new(),
            skipped: None,
        }
    }
}

/// What of the real host a run must leave as it was: its mounts (by id), this cilab's
/// scratch dirs and run records. (Cgroups and processes are the run's teardown's, and the tests'.)
#[derive(Debug, PartialEq, Eq)]
struct HostView {
    mounts: BTreeSet<String>,
    scratch: BTreeSet<PathBuf>,
    records: BTreeSet<PathBuf>,
}

impl HostView {
    fn take() -> Result<Self> {
        // Runs are named `<lab>-<cilab pid>-...`: only this cilab's are this corpus's.
        let own = format!("-{}-", std::process::id());
        let list = |dir: PathBuf| -> BTreeSet<PathBuf> {
            std::fs::read_dir(dir)
                .map(|e| e.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().contains(&own)).collect())
                .unwrap_or_default()
        };
        Ok(HostView {
            // Another cilab's runs (a second terminal, a colleague's corpus) come and go
            // on the same host: their scratch filesystems are theirs, not this corpus's.
            mounts: procfs::read_mountinfo("self")?
                .iter()
                .filter(|m| !registry::is_scratch_of_another_cilab(m))
                .map(procfs::Mount::describe)
                .collect(),
            scratch: list(registry::scratch_root()),
            records: list(registry::runs_dir()),
        })
    }

    fn differences(&self, after: &HostView) -> Vec<String> {
        let mut out = Vec::new();
        let mut diff = |what: &str, a: Vec<String>, b: Vec<String>| {
            out.extend(b.iter().filter(|x| !a.contains(x)).map(|x| format!("{what} appeared on the real host: {x}")));
            out.extend(a.iter().filter(|x| !b.contains(x)).map(|x| format!("{what} vanished from the real host: {x}")));
        };
        let paths = |set: &BTreeSet<PathBuf>| set.iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
        diff("mount", self.mounts.iter().cloned().collect(), after.mounts.iter().cloned().collect());
        diff("scratch dir", paths(&self.scratch), paths(&after.scratch));
        diff("run record", paths(&self.records), paths(&after.records));
        out
    }
}

/// How long a mistaken lab run by hand may take before it counts as hanging.
const BY_HAND_DEADLINE: Duration = Duration::from_secs(30);

/// Runs the entries of `labs` (those whose name contains `only`, if given), each in a copy
/// of `workspace` kept under its target dir so that rebuilds are incremental.
pub fn run(labs: &[&'static LabSpec], workspace: &Path, only: Option<&str>) -> Result<Vec<EntryResult>> {
    let tree = workspace.join("target").join("cilab-corpus");
    crate::labbuild::mirror_sources(workspace, &tree, &[])?;
    let binaries = tree.join("target").join("debug");
    let setup = CgroupSetup::detect()?;
    let mut results = Vec::new();
    for lab in labs {
        let selected = entries(lab)?.into_iter().filter(|e| only.is_none_or(|o| e.name.contains(o)));
        if let Err(why) = (lab.available)() {
            // Not run, and said so for each entry: a lab that cannot run here catches nothing.
            results
                .extend(selected.map(|entry| EntryResult { skipped: Some(why.clone()), ..EntryResult::new(&entry) }));
            continue;
        }
        let source_path = tree.join("labs").join(lab.name).join("src/main.rs");
        let original = std::fs::read_to_string(&source_path).map_err(Error::io("read", &source_path))?;
        let hints = lab.region_hints();
        for entry in selected {
            let result = run_entry(&entry, &original, &source_path, &tree, &binaries, &setup, &hints);
            results.push(result?);
        }
        write_if_changed(&source_path, &original)?;
    }
    Ok(results)
}

fn run_entry(
    entry: &Entry,
    original: &str,
    source_path: &Path,
    tree: &Path,
    binaries: &Path,
    setup: &CgroupSetup,
    hints: &crate::verdict::RegionHints,
) -> Result<EntryResult> {
    let mut result = EntryResult::new(entry);
    write_if_changed(source_path, &entry.apply(original)?)?;
    if let Err(error) = crate::labbuild::cargo_build(tree, &[entry.lab.package]) {
        result.problems.push(format!("does not build: {error}"));
        return Ok(result);
    }
    let before = HostView::take()?;
    let report = Local::new(binaries.to_path_buf())?.check(entry.lab, &RunOptions::default())?;
    result.panic = report.panic.as_ref().map(crate::run::LabPanic::describe);
    result.failed = report.verdicts.iter().filter(|v| v.outcome != Outcome::Pass).map(|v| v.id.clone()).collect();
    let failed_in_region = |v: &&crate::verdict::Verdict| {
        v.outcome == Outcome::Fail && v.region.as_deref() == Some(entry.region.as_str()) && v.max_points > 0
    };
    if entry.caught_by.is_none() {
        result.caught_by = report.verdicts.iter().find(failed_in_region).map(|v| v.id.clone()).unwrap_or_default();
    }
    result.caught = report.verdicts.iter().any(|v| v.id == result.caught_by && v.outcome == Outcome::Fail);
    let region_hint = hints.get(&entry.region).cloned().unwrap_or_default();
    result.hint_shown = !region_hint.is_empty()
        && report.verdicts.iter().any(|v| v.hint.as_deref().is_some_and(|h| h.contains(&region_hint)));
    if !result.caught {
        let named = entry.caught_by.clone().unwrap_or_else(|| format!("a verdict of region `{}`", entry.region));
        result.problems.push(format!("{named} did not fail (failed: {:?})", result.failed));
    }
    if !result.hint_shown {
        result.problems.push(format!("the hint of region `{}` is not in the report", entry.region));
    }
    if report.harness_failure.is_some() {
        result.problems.push(format!("the harness failed: {:?}", report.harness_failure));
    }
    let how = ByHand { quiet: true, deadline: Some(BY_HAND_DEADLINE), ..ByHand::default() };
    let by_hand = run::run_by_hand(entry.lab, &binaries.join(entry.lab.binary), setup, how)?;
    result.by_hand = match by_hand.exit {
        Some(status) => status.to_string(),
        None => "did not exit".to_string(),
    };
    // The lab's host namespace is thrown away with the run: what counts is what would
    // stay behind, and a lab that hangs.
    result
        .problems
        .extend(by_hand.leaks.iter().filter(|l| !l.starts_with(run::HOST_CHANGED)).map(|l| format!("by hand: {l}")));
    result.problems.extend(before.differences(&HostView::take()?));
    Ok(result)
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).map_err(Error::io("write", path))?;
    }
    Ok(())
}

/// The results as a table for people.
pub fn to_table(results: &[EntryResult]) -> String {
    let mut out = String::new();
    for r in results {
        let mark = match (&r.skipped, r.ok()) {
            (Some(_), _) => "SKIPPED",
            (None, true) => "caught",
            (None, false) => "PROBLEM",
        };
        out.push_str(&format!(
            "{mark:<8} {:<12} {:<18} {:<8} {:<55} by {}\n",
            r.lab,
            r.region,
            format!("{:?}", r.kind).to_lowercase(),
            r.name,
            r.caught_by
        ));
        for problem in &r.problems {
            out.push_str(&format!("           - {problem}\n"));
        }
        if let Some(why) = &r.skipped {
            out.push_str(&format!("           - not run, so not caught: {why}\n"));
        }
    }
    let skipped = results.iter().filter(|r| r.skipped.is_some()).count();
    let caught = results.iter().filter(|r| r.ok()).count();
    let bad = results.len() - caught - skipped;
    out.push_str(&format!("\n{} entries: {caught} caught, {bad} with problems", results.len()));
    if skipped > 0 {
        out.push_str(&format!(", {skipped} SKIPPED (not run here, not caught)"));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    /// Every region has its `todo!()` and at least one more declared entry; every entry
    /// names a verdict of its lab that grades its region, and its edits apply to the source.
    #[test]
    fn every_region_has_mistakes_that_apply_and_name_its_verdicts() {
        if crate::mistakes::HANDOUT {
            // A student handout: the corpus is the course author's, and nothing of it is here.
            for lab in catalog::all() {
                assert!(lab.mistakes.is_empty(), "{}: a handout holds mistakes, which quote the solution", lab.name);
            }
            return;
        }
        for lab in catalog::all() {
            let entries = entries(lab).expect("entries");
            for region in lab.regions().expect("regions") {
                let count = entries.iter().filter(|e| e.region == region.name).count();
                assert!(
                    count >= 2,
                    "{}: region `{}` has {count} corpus entries, needs 2 or more",
                    lab.name,
                    region.name
                );
            }
            for entry in entries.iter().filter(|e| e.caught_by.is_some()) {
                let caught_by = entry.caught_by.as_deref();
                let verdict = lab.all_verdicts().into_iter().find(|v| Some(v.id) == caught_by);
                let verdict = verdict.unwrap_or_else(|| panic!("{}: `{}` names no verdict", lab.name, entry.name));
                assert!(verdict.points > 0, "{}: `{}` is caught by a fact, which earns nothing", lab.name, entry.name);
                assert_eq!(
                    verdict.region,
                    Some(entry.region.as_str()),
                    "{}: `{}` is caught outside its region",
                    lab.name,
                    entry.name
                );
                let changed = entry.apply(lab.source).unwrap_or_else(|e| panic!("{}: {e}", entry.name));
                assert_ne!(changed, lab.source, "{}: `{}` changes nothing", lab.name, entry.name);
            }
        }
    }
}
