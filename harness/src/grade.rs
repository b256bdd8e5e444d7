//! `cilab grade`: a whole class, each submission graded with the instructor's own harness
//! and checks.
//!
//! For each submission ([`crate::submission`]) only the lab sources are taken; they are
//! built on this machine in a grading tree (a copy of the instructor's workspace whose
//! target/ starts as hard links to the instructor's built dependencies, so that only labkit
//! and the lab crates compile), with a cleared environment. Each lab binary is cached by
//! the hash of its sources: identical sources across submissions build once. The
//! submission's labs then run in a throwaway qemu guest of their own whose grader seals its
//! report ([`crate::backend::seal`]); the host checks the seal and the catalog fit. A guest
//! whose hardening reports a step it could not take stops the grading: nothing is graded.
//!
//! Submissions go through a work queue, `jobs` at a time, each worker with its own grading
//! tree: one worker's build overlaps another's guest, and a slow submission holds only its
//! own worker.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::backend::children::{kill_group, Children, SpawnError};
use crate::backend::qemu::{self, Qemu};
use crate::backend::{check_in_guest, local, Backend, GuestCheck, Local, Payload};
use crate::catalog::LabSpec;
use crate::error::{Error, Result};
use crate::probe::pidfd::PidFd;
use crate::report::{LabReport, Report};
use crate::run::RunOptions;
use crate::submission::{compile_time_reads, printable, Skipped, Submission, Taken};
use crate::verdict::Outcome;

/// How long one lab's build may take before it is killed as hung (a lab and labkit build
/// in well under a minute; a const-eval loop must not hold a worker long).
const BUILD_DEADLINE: Duration = Duration::from_secs(300);
/// The address space of each process of a build (RLIMIT_AS, inherited by cargo's rustc and
/// linker): a lab builds within 1 GiB; `include_bytes!("/dev/zero")` then fails at once
/// instead of eating the host's memory. Per process, so a build's cargo jobs add up.
const BUILD_ADDRESS_SPACE: u64 = 2 << 30;
/// What `cilab grade` says when bubblewrap, its build sandbox, is missing.
pub const BWRAP_MISSING: &str =
    "bubblewrap (bwrap), the sandbox of every submission's build, is not installed: apt-get install -y bubblewrap";
/// Words a submission's code may not hold: inline assembly (`.incbin` reads any file at
/// build time, unseen by cargo's dep-info) and debugger_visualizer (reads a file too).
const FORBIDDEN_WORDS: [&str; 4] = ["asm", "global_asm", "naked_asm", "debugger_visualizer"];
/// How much of a build's output is kept as its log.
const MAX_LOG: usize = 64 << 10;

/// Where the labs of a submission run.
#[derive(Debug, Clone)]
pub enum Where {
    /// Each submission in a throwaway qemu guest of its own, sealed.
    Qemu(qemu::Options),
    /// On this machine, as root: UNSAFE with code one did not write.
    Local,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub labs: Vec<&'static LabSpec>,
    pub jobs: usize,
    pub backend: Where,
    /// The instructor's workspace (its sources are the grading tree's).
    pub workspace: PathBuf,
    /// Where the instructor's `cilab` and built dependencies are (target/debug).
    pub binaries: PathBuf,
    /// Paths inside the workspace not to copy into grading trees (the class, the results).
    pub exclude: Vec<PathBuf>,
}

/// One submission's grade.
#[derive(Debug, Clone, Serialize)]
pub struct Graded {
    pub name: String,
    pub points: u32,
    pub max_points: u32,
    /// Why the submission as a whole was refused (every lab 0): the student's doing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Why grading could not finish (its guest failed twice, grading stopped): no score
    /// of the student's, to grade again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_graded: Option<String>,
    /// Per lab that did not earn full points: one line saying why.
    pub reasons: BTreeMap<String, String>,
    /// What the submission changed that grading ignored.
    pub notes: Vec<String>,
    pub report: Report,
    /// Per lab built: cargo's output.
    #[serde(skip)]
    pub build_logs: Vec<(String, String)>,
    pub seconds: f64,
}

impl Graded {
    /// One line for the class table: the refusal, or the first lab's reason, and the notes.
    pub fn reason_line(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(why) = &self.not_graded {
            parts.push(format!("NOT GRADED: {why}"));
        } else if let Some(refused) = &self.refused {
            parts.push(format!("refused: {refused}"));
        } else if let Some((lab, why)) = self.reasons.iter().next() {
            let more = self.reasons.len() - 1;
            parts.push(if more > 0 { format!("{lab}: {why} (+{more} labs)") } else { format!("{lab}: {why}") });
        }
        if let Some(note) = self.notes.first() {
            let more = self.notes.len() - 1;
            parts.push(if more > 0 { format!("{note} (+{more})") } else { note.clone() });
        }
        printable(&parts.join("; "))
    }

    /// The total as shown: `points/max`, or `not graded`.
    pub fn total(&self) -> String {
        if self.not_graded.is_some() {
            "not graded".into()
        } else {
            format!("{}/{}", self.points, self.max_points)
        }
    }
}

/// A class graded: every submission, and why grading stopped early if it did (those not
/// reached are `not_graded`).
#[derive(Debug)]
pub struct Class {
    pub graded: Vec<Graded>,
    pub stopped: Option<Error>,
}

impl Class {
    /// Whether every submission has a score (refused ones have theirs: 0).
    pub fn all_graded(&self) -> bool {
        self.stopped.is_none() && self.graded.iter().all(|g| g.not_graded.is_none())
    }
}

/// The `cargo build`s of grading, for Ctrl-C.
static BUILDS: Children<()> = Children::new();
/// The directories a grading makes for one guest's binaries, removed on Ctrl-C too.
static RUN_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn run_dirs() -> MutexGuard<'static, Vec<PathBuf>> {
    RUN_DIRS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Kills every build of this process (its process group) and removes the guests'
/// binary directories; from now on nothing is built (the interrupt handler calls this).
pub fn kill_builds() -> Vec<String> {
    let mut done = Vec::new();
    for (pid, ()) in BUILDS.close(|pid, ()| {
        let _ = kill_group(pid);
    }) {
        done.push(format!("killed the build {pid}"));
    }
    for dir in run_dirs().drain(..) {
        let _ = std::fs::remove_dir_all(&dir);
        done.push(format!("removed {}", dir.display()));
    }
    done
}

/// Grades every submission (`jobs` at a time) and calls `done` as each is graded. A
/// submission's own trouble (an unpackable entry, a guest that failed twice) is its result;
/// when grading itself fails (a guest's hardening, the instructor's tree) it stops, and
/// the submissions not reached are returned as not graded.
pub fn grade_class(submissions: Vec<Submission>, options: &Options, done: &(dyn Fn(&Graded) + Sync)) -> Class {
    let started = Instant::now();
    let mut options = options.clone();
    let stopped = |error: Error, submissions: Vec<Submission>| {
        let why = format!("grading stopped: {error}");
        let graded = submissions.iter().map(|s| unreached(s, &options.labs, &why, started)).collect();
        Class { graded, stopped: Some(error) }
    };
    if let Where::Qemu(qemu_options) = &mut options.backend {
        let (ready, why) = qemu::readiness();
        if !ready {
            return stopped(Error::Backend { backend: "qemu".into(), message: why }, submissions);
        }
        // Probed once, here: the guests then boot side by side without probing each.
        if qemu_options.accel.is_none() {
            let kernel = match &qemu_options.kernel {
                Some(kernel) => kernel.clone(),
                None => match qemu::newest_kernel() {
                    Ok(kernel) => kernel,
                    Err(error) => return stopped(error, submissions),
                },
            };
            qemu_options.accel = Some(qemu::accelerator(&kernel).0);
        }
    }
    let options = &options;
    let builds = match Builds::new(options) {
        Ok(builds) => builds,
        Err(error) => return stopped(error, submissions),
    };
    let queue = Mutex::new(submissions.into_iter().enumerate().collect::<VecDeque<_>>());
    let graded: Mutex<Vec<(usize, Graded)>> = Mutex::new(Vec::new());
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let failed = || failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some();
    let fail = |error: Error| {
        let mut failure = failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failure.get_or_insert(error);
    };
    std::thread::scope(|scope| {
        for slot in 0..options.jobs.max(1) {
            let (builds, queue, graded) = (&builds, &queue, &graded);
            let (failed, fail) = (&failed, &fail);
            let worker = move || {
                let tree = match builds.prepare_slot(slot) {
                    Ok(tree) => tree,
                    Err(error) => return fail(error),
                };
                while !failed() {
                    let next = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front();
                    let Some((index, submission)) = next else { break };
                    let result = match grade_one(&submission, &tree, options, builds) {
                        Ok(result) => result,
                        Err(error) => {
                            let result = unreached(&submission, &options.labs, &error.to_string(), Instant::now());
                            // The guest's integrity: nothing more is graded with this backend.
                            if matches!(error, Error::Backend { .. }) {
                                fail(error);
                            }
                            result
                        }
                    };
                    done(&result);
                    graded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((index, result));
                }
            };
            if let Err(error) = std::thread::Builder::new().name(format!("grade-{slot}")).spawn_scoped(scope, worker) {
                fail(Error::Harness(format!("starting a grading thread: {error}")));
            }
        }
    });
    let mut failure = failure.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut graded = graded.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let left = queue.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(error) = &failure {
        let why = format!("grading stopped: {error}");
        graded.extend(left.into_iter().map(|(index, s)| (index, unreached(&s, &options.labs, &why, started))));
    }
    graded.sort_by_key(|(index, _)| *index);
    // Every guest failed: that is the backend's failure, not a class that scored nothing.
    if failure.is_none() && !graded.is_empty() && graded.iter().all(|(_, g)| g.not_graded.is_some()) {
        let why = graded.iter().find_map(|(_, g)| g.not_graded.clone());
        failure = Some(Error::Backend {
            backend: "grade".into(),
            message: format!("every submission's guest failed: {}", why.unwrap_or_default()),
        });
    }
    Class { graded: graded.into_iter().map(|(_, g)| g).collect(), stopped: failure }
}

/// A submission grading did not finish: every lab's report says why, as a harness failure.
fn unreached(submission: &Submission, labs: &[&'static LabSpec], why: &str, started: Instant) -> Graded {
    let why = printable(why);
    let reports = labs
        .iter()
        .map(|lab| {
            let mut report = not_graded(lab, "grade", &why);
            report.harness_failure = Some(why.clone());
            report
        })
        .collect();
    finish(submission, reports, None, Taken::default(), Vec::new(), started)
}

fn grade_one(submission: &Submission, tree: &Path, options: &Options, builds: &Builds) -> Result<Graded> {
    let started = Instant::now();
    let backend_name = match options.backend {
        Where::Qemu(_) => "qemu",
        Where::Local => "local",
    };
    let taken = match submission.take(&options.labs, &options.workspace) {
        Ok(taken) => taken,
        Err(reason) => {
            let reports = options.labs.iter().map(|lab| not_graded(lab, backend_name, &reason)).collect();
            return Ok(finish(submission, reports, Some(reason), Taken::default(), Vec::new(), started));
        }
    };
    let mut built: Vec<(&'static LabSpec, PathBuf)> = Vec::new();
    let mut reports: BTreeMap<&str, LabReport> = BTreeMap::new();
    let mut logs = Vec::new();
    for lab in &options.labs {
        let outcome = match taken.sources.get(lab.name) {
            // An entry the tree cannot hold (a name too long, a file where a dir is) is the
            // submission's: it is refused with the reason.
            Some(sources) => match builds.build(tree, lab, sources) {
                Ok(built) => built,
                Err(error) => {
                    // Named inside the student's tree: the grading tree's path is the instructor's.
                    let reason = match &error {
                        Error::Io { action, path, cause } => {
                            let inside = path.strip_prefix(tree).unwrap_or(path);
                            format!("cannot {action} {}: {cause}", inside.display())
                        }
                        other => format!("labs/{}/src cannot be built: {other}", lab.name),
                    };
                    let reports = options.labs.iter().map(|lab| not_graded(lab, backend_name, &reason)).collect();
                    return Ok(finish(submission, reports, Some(reason), taken, logs, started));
                }
            },
            None => {
                Built::Failed { reason: format!("no labs/{}/src/*.rs in the submission", lab.name), log: String::new() }
            }
        };
        match outcome {
            Built::Binary { path, log } => {
                built.push((lab, path));
                logs.push((lab.name.to_string(), log));
            }
            Built::Failed { reason, log } => {
                reports.insert(lab.name, not_graded(lab, backend_name, &reason));
                logs.push((lab.name.to_string(), log));
            }
        }
    }
    if !built.is_empty() {
        for report in run_labs(&built, options)? {
            let name = options.labs.iter().find(|l| l.name == report.lab).map(|l| l.name);
            if let Some(name) = name {
                reports.insert(name, report);
            }
        }
    }
    let ordered = options.labs.iter().filter_map(|lab| reports.remove(lab.name)).collect();
    Ok(finish(submission, ordered, None, taken, logs, started))
}

fn finish(
    submission: &Submission,
    reports: Vec<LabReport>,
    refused: Option<String>,
    taken: Taken,
    build_logs: Vec<(String, String)>,
    started: Instant,
) -> Graded {
    let report = Report::new(reports);
    let reasons = report.labs.iter().filter_map(|lab| Some((lab.lab.clone(), printable(&lab_reason(lab)?)))).collect();
    // A guest that failed twice: the labs it held have no score of the student's.
    let not_graded = report.labs.iter().find_map(|lab| lab.harness_failure.as_deref()).map(printable);
    Graded {
        name: printable(&submission.name),
        points: report.summary.points,
        max_points: report.summary.max_points,
        refused: refused.as_deref().map(printable),
        not_graded,
        reasons,
        notes: taken.notes.iter().map(|n| printable(n)).collect(),
        report,
        build_logs,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// A lab that was not run (not built, refused): every verdict FAILs with the reason.
fn not_graded(lab: &LabSpec, backend: &str, reason: &str) -> LabReport {
    let mut report = local::skipped(lab, backend, reason);
    for verdict in &mut report.verdicts {
        verdict.outcome = Outcome::Fail;
        verdict.points = 0;
        verdict.detail = Some(reason.to_string());
    }
    report.stopped = Some(reason.to_string());
    report
}

/// One line on why `lab` did not earn full points; `None` when it did.
pub fn lab_reason(lab: &LabReport) -> Option<String> {
    let (points, max) = lab.points();
    if points == max && lab.harness_failure.is_none() {
        return None;
    }
    let first_failed = || {
        lab.verdicts
            .iter()
            .find(|v| v.outcome != Outcome::Pass && v.max_points > 0)
            .or_else(|| lab.verdicts.iter().find(|v| v.outcome != Outcome::Pass))
            .map(|v| {
                let word = if v.outcome == Outcome::Skip { "skipped" } else { "failed" };
                format!("{} {word}: {}", v.id, v.detail.as_deref().unwrap_or("no detail"))
            })
    };
    let why = lab
        .harness_failure
        .clone()
        .or_else(|| lab.panic.as_ref().map(|p| format!("panicked: {}", p.message)))
        .or_else(|| lab.stopped.clone())
        .or_else(first_failed)
        .unwrap_or_else(|| "did not earn every point".into());
    Some(one_line(&why, 200))
}

fn one_line(text: &str, max: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > max {
        format!("{}...", line.chars().take(max).collect::<String>())
    } else {
        line
    }
}

/// Runs the built labs of one submission where `options` says, and checks the guest's
/// hardening: a step it could not take is grading's failure.
fn run_labs(built: &[(&'static LabSpec, PathBuf)], options: &Options) -> Result<Vec<LabReport>> {
    let dir = options.workspace.join("target").join("cilab-grade").join("run").join(format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    run_dirs().push(dir.clone());
    let outcome = (|| {
        std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        let cilab = options.binaries.join("cilab");
        link_or_copy(&cilab, &dir.join("cilab"))?;
        for (lab, path) in built {
            link_or_copy(path, &dir.join(lab.binary))?;
        }
        let labs: Vec<&'static LabSpec> = built.iter().map(|(lab, _)| *lab).collect();
        match &options.backend {
            Where::Qemu(qemu_options) => {
                let payload = Payload::for_labs(&labs, &dir)?;
                let check = GuestCheck { labs: labs.clone(), repeat: 1, ..GuestCheck::default() };
                // A guest that failed (would not boot, died, overran its deadline) is tried
                // once more in a fresh one: a second failure is the submission's result.
                let mut reports = Vec::new();
                for _ in 0..2 {
                    let mut guest = Qemu::new(qemu_options.clone())?;
                    reports = check_in_guest(&mut guest, &payload, &check);
                    if reports.iter().all(|r| r.harness_failure.is_none()) {
                        break;
                    }
                }
                for report in reports.iter().filter(|r| r.harness_failure.is_none()) {
                    let sealed = report.guest.as_ref().and_then(|g| g.sealed.as_ref());
                    match sealed {
                        None => {
                            return Err(Error::Backend {
                                backend: "qemu".into(),
                                message: "the guest's report was not sealed: refusing to grade".into(),
                            })
                        }
                        Some(steps) => {
                            if let Some(step) = steps.iter().find(|s| s.starts_with("NOT ")) {
                                return Err(Error::Backend {
                                    backend: "qemu".into(),
                                    message: format!(
                                        "the guest could not harden its grader ({step}): student code could reach \
                                         it, refusing to grade"
                                    ),
                                });
                            }
                        }
                    }
                }
                Ok(reports)
            }
            Where::Local => {
                let backend = Local::new(dir.clone())?;
                labs.iter().map(|lab| backend.check(lab, &RunOptions::default())).collect()
            }
        }
    })();
    run_dirs().retain(|d| *d != dir);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(Error::io("copy", from))?;
    }
    Ok(())
}

/// What building one lab gave.
#[derive(Debug, Clone)]
enum Built {
    Binary { path: PathBuf, log: String },
    Failed { reason: String, log: String },
}

/// The builds of one grading: grading trees and the binaries cached by source hash.
struct Builds {
    /// The handout of the instructor's workspace: what each slot tree is made of.
    starter: PathBuf,
    workspace: PathBuf,
    binaries: PathBuf,
    exclude: Vec<PathBuf>,
    root: PathBuf,
    /// The instructor's side of every build (labkit, manifests, lock file): part of each key.
    base: String,
    cache: Mutex<HashMap<String, Arc<Mutex<Option<Built>>>>>,
}

impl Builds {
    fn new(options: &Options) -> Result<Builds> {
        // Checked before anything is graded: without the sandbox nothing is built.
        which::which("bwrap").map_err(|_| Error::Build(BWRAP_MISSING.into()))?;
        let root = options.workspace.join("target").join("cilab-grade");
        let mut hasher = Sha256::new();
        for file in ["Cargo.toml", "Cargo.lock"] {
            hash_file(&mut hasher, &options.workspace.join(file))?;
        }
        hash_tree(&mut hasher, &options.workspace.join("labs/kit"))?;
        hash_tree(&mut hasher, &options.workspace.join("fixtures"))?;
        let cargo_config = options.workspace.join(".cargo");
        if cargo_config.is_dir() {
            hash_tree(&mut hasher, &cargo_config)?;
        }
        hasher.update(rustc_version()?.as_bytes());
        // The slot trees are seeded from the handout: starters, an empty mistake corpus,
        // no authors-only files; never the solution.
        let starter = root.join("handout");
        if starter.exists() {
            std::fs::remove_dir_all(&starter).map_err(Error::io("remove", &starter))?;
        }
        crate::handout::write(&options.workspace, &starter)?;
        Ok(Builds {
            starter,
            workspace: options.workspace.clone(),
            binaries: options.binaries.clone(),
            exclude: options.exclude.clone(),
            root,
            base: hex(&hasher.finalize()),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The grading tree of worker `slot`: the instructor's sources, and a target/ whose
    /// registry dependencies are hard links to the instructor's built ones (never rebuilt:
    /// their fingerprints, copies, match). The workspace's own crates (labkit, the labs,
    /// cilab) are left out: cargo would name them as the instructor's and write over the
    /// instructor's files through the links; so they build in the tree, under files of its own.
    fn prepare_slot(&self, slot: usize) -> Result<PathBuf> {
        let tree = self.root.join(format!("slot-{slot}"));
        // Nothing of an earlier grading's sources stays (another class's work, old files).
        if tree.is_dir() {
            for entry in std::fs::read_dir(&tree).map_err(Error::io("list", &tree))? {
                let entry = entry.map_err(Error::io("list", &tree))?;
                if entry.file_name() == "target" {
                    continue;
                }
                let path = entry.path();
                let kind = entry.file_type().map_err(Error::io("stat", &path))?;
                let removed = if kind.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                removed.map_err(Error::io("remove", &path))?;
            }
        }
        crate::labbuild::mirror_sources(&self.starter, &tree, &self.exclude)?;
        for lab in crate::catalog::all() {
            scrub_lab(&tree, lab)?;
        }
        let target = tree.join("target").join("debug");
        if !target.join("deps").is_dir() {
            let mut own: Vec<String> = vec!["labkit".into(), "cilab".into()];
            own.extend(crate::catalog::all().iter().map(|lab| lab.package.to_string()));
            let own: Vec<String> = own.iter().flat_map(|n| [n.clone(), n.replace('-', "_")]).collect();
            let ours = |name: &str| {
                let name = name.strip_prefix("lib").unwrap_or(name);
                own.iter().any(|crate_name| {
                    name.strip_prefix(crate_name.as_str()).is_some_and(|rest| rest.starts_with(['-', '.']))
                })
            };
            for (dir, link) in [("deps", true), ("build", true), (".fingerprint", false)] {
                let from = self.binaries.join(dir);
                if from.is_dir() {
                    seed(&from, &target.join(dir), link, &ours)?;
                }
            }
        }
        Ok(tree)
    }

    /// Builds `lab` from `sources` in `tree`, once per distinct source.
    fn build(&self, tree: &Path, lab: &'static LabSpec, sources: &BTreeMap<PathBuf, String>) -> Result<Built> {
        let mut hasher = Sha256::new();
        hasher.update(self.base.as_bytes());
        hash_file(&mut hasher, &self.workspace.join("labs").join(lab.name).join("Cargo.toml"))?;
        for (path, text) in sources {
            hasher.update(path.to_string_lossy().as_bytes());
            hasher.update([0]);
            hasher.update(text.len().to_le_bytes());
            hasher.update(text.as_bytes());
        }
        let key = format!("{}-{}", lab.name, &hex(&hasher.finalize())[..24]);
        let entry = {
            let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            cache.entry(key.clone()).or_default().clone()
        };
        // Held while building: a second worker with the same sources waits for this one.
        let mut entry = entry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(built) = entry.as_ref() {
            return Ok(built.clone());
        }
        let cached = self.root.join("bin").join(&key);
        let built = if cached.is_file() {
            Built::Binary { path: cached, log: "(built before: same sources)".into() }
        } else if let Some(reason) = forbidden_word(sources).or_else(|| compile_time_reads(sources)) {
            Built::Failed { reason, log: String::new() }
        } else {
            let built = self.cargo_build(tree, lab, sources, &cached);
            // Whatever happened: the next submission in this slot sees none of this one.
            scrub_lab(tree, lab)?;
            self.restore_starter(tree, lab)?;
            built?
        };
        *entry = Some(built.clone());
        Ok(built)
    }

    fn cargo_build(
        &self,
        tree: &Path,
        lab: &'static LabSpec,
        sources: &BTreeMap<PathBuf, String>,
        cached: &Path,
    ) -> Result<Built> {
        let src = tree.join("labs").join(lab.name).join("src");
        if src.exists() {
            std::fs::remove_dir_all(&src).map_err(Error::io("remove", &src))?;
        }
        for (path, text) in sources {
            let file = src.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
            }
            std::fs::write(&file, text).map_err(Error::io("write", &file))?;
        }
        let binary = tree.join("target").join("debug").join(lab.binary);
        if binary.exists() {
            std::fs::remove_file(&binary).map_err(Error::io("remove", &binary))?;
        }
        let (success, log) = run_cargo(tree, lab.package)?;
        if !success {
            let errors: Vec<&str> =
                log.lines().skip_while(|l| !l.starts_with("error")).filter(|l| !l.trim().is_empty()).take(3).collect();
            let first = if errors.is_empty() { super::backend::tail(&log, 3) } else { errors.join(" ") };
            return Ok(Built::Failed { reason: format!("does not build: {}", one_line(&first, 240)), log });
        }
        // What the compiler read (cargo's dep-info): nothing outside the grading tree.
        let dep_info = tree.join("target").join("debug").join(format!("{}.d", lab.binary));
        let read = std::fs::read_to_string(&dep_info).map_err(Error::io("read", &dep_info))?;
        if let Some(outside) = read
            .split_whitespace()
            .map(|w| lexical(Path::new(w.trim_end_matches(':'))))
            .find(|p| p.is_absolute() && !p.starts_with(tree))
        {
            let outside = outside.display();
            return Ok(Built::Failed {
                reason: format!("the lab read {outside} when it was compiled: not graded"),
                log: String::new(),
            });
        }
        let bin_dir = self.root.join("bin");
        std::fs::create_dir_all(&bin_dir).map_err(Error::io("create directory", &bin_dir))?;
        let partial = bin_dir.join(format!(".{}.partial-{}", lab.binary, std::process::id()));
        std::fs::copy(&binary, &partial).map_err(Error::io("copy", &binary))?;
        std::fs::rename(&partial, cached).map_err(Error::io("rename", &partial))?;
        Ok(Built::Binary { path: cached.to_path_buf(), log })
    }

    /// Puts `lab`'s starter sources (the handout's) back in `tree`.
    fn restore_starter(&self, tree: &Path, lab: &LabSpec) -> Result<()> {
        let src = tree.join("labs").join(lab.name).join("src");
        if src.exists() {
            std::fs::remove_dir_all(&src).map_err(Error::io("remove", &src))?;
        }
        crate::labbuild::mirror_sources(&self.starter.join("labs").join(lab.name).join("src"), &src, &[])
    }
}

/// Removes what building `lab` left in `tree`'s target/ (its binary, objects, incremental
/// state, fingerprints, log): a later submission in the slot cannot read any of it.
fn scrub_lab(tree: &Path, lab: &LabSpec) -> Result<()> {
    let target = tree.join("target");
    let log = target.join(format!("build-{}.log", lab.package));
    let debug = target.join("debug");
    let crate_name = lab.package.replace('-', "_");
    let ours = |name: &str| {
        let name = name.strip_prefix("lib").unwrap_or(name);
        [lab.package, crate_name.as_str(), lab.binary]
            .iter()
            .any(|prefix| name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '.'])))
    };
    let mut doomed = vec![log];
    for dir in
        [debug.clone(), debug.join("deps"), debug.join("incremental"), debug.join(".fingerprint"), debug.join("build")]
    {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        doomed.extend(entries.flatten().filter(|e| ours(&e.file_name().to_string_lossy())).map(|e| e.path()));
    }
    for path in doomed {
        let removed = match path.symlink_metadata() {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(_) => continue,
        };
        removed.map_err(Error::io("remove", &path))?;
    }
    Ok(())
}

/// The first of [`FORBIDDEN_WORDS`] in a submission's sources, as a refusal.
fn forbidden_word(sources: &BTreeMap<PathBuf, String>) -> Option<String> {
    for (path, text) in sources {
        let words = text.split(|c: char| !(c.is_alphanumeric() || c == '_'));
        if let Some(word) = words.into_iter().find(|w| FORBIDDEN_WORDS.contains(w)) {
            return Some(format!(
                "{} uses `{word}`: inline assembly and debugger visualizers can read files at build time, not graded",
                path.display()
            ));
        }
    }
    None
}

/// `rustc -V` of the toolchain the builds use: part of every cache key.
fn rustc_version() -> Result<String> {
    let output =
        Command::new("rustc").arg("-V").output().map_err(|e| Error::Build(format!("running rustc -V: {e}")))?;
    if !output.status.success() {
        return Err(Error::Build(format!("rustc -V failed: {}", String::from_utf8_lossy(&output.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `path` with its `.` and `..` taken out as written (not following links).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `cargo build --offline -p <package>` in `tree`, inside bubblewrap (see [`sandboxed`]),
/// registered for Ctrl-C, killed past [`BUILD_DEADLINE`]. Whether it succeeded, and its output.
fn run_cargo(tree: &Path, package: &str) -> Result<(bool, String)> {
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .or_else(|| which::which("cargo").ok())
        .ok_or_else(|| Error::Build("cargo is not on PATH".into()))?;
    let log_path = tree.join("target").join(format!("build-{package}.log"));
    let log = std::fs::File::create(&log_path).map_err(Error::io("create", &log_path))?;
    let again = log.try_clone().map_err(Error::io("dup", &log_path))?;
    let mut command = sandboxed(tree, &cargo)?;
    command
        .args(["build", "--offline", "--color", "never", "-p", package])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(again)
        .process_group(0);
    // SAFETY: setrlimit and prctl only, which are async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let cap = BUILD_ADDRESS_SPACE;
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, cap, cap)?;
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(Into::into)
        });
    }
    let mut child = BUILDS.spawn((), || command.spawn()).map_err(|e| match e {
        SpawnError::Closed => Error::Build("cilab is exiting after an interrupt: nothing is built".into()),
        SpawnError::Spawn(e) => Error::Build(format!("running {}: {e}", cargo.display())),
    })?;
    let pid = child.id() as i32;
    let exited = PidFd::open(pid).map(|fd| fd.wait_exit(BUILD_DEADLINE)).unwrap_or(false);
    if BUILDS.remove(pid).is_some() && !exited {
        let _ = kill_group(pid);
    }
    let status = child.wait().map_err(Error::io("wait for", &cargo))?;
    let mut text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if text.len() > MAX_LOG {
        let mut cut = MAX_LOG;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    if !exited {
        text.push_str(&format!("\ncilab: the build took longer than {} s: killed\n", BUILD_DEADLINE.as_secs()));
    }
    Ok((status.success() && exited, text))
}

/// Where the sandbox mounts cargo's home of its own (a tmpfs: no credentials.toml, no
/// config of the instructor's), with the real one's bin/ and registry/ bound in read-only.
const SANDBOX_CARGO_HOME: &str = "/cilab-cargo-home";

/// `cargo` (the host's `cargo` path) to run in `tree` inside bubblewrap: it sees /usr (and
/// the usrmerge links), the few /etc files the toolchain needs, the toolchain and the
/// registry read-only, `tree` read-write, a fresh /dev, /proc and /tmp; no network, no
/// other namespace of the host's, no capabilities, a new session, killed with cilab.
/// Nothing else of the host (the instructor's target/, /root, /work) exists in it.
fn sandboxed(tree: &Path, cargo: &Path) -> Result<Command> {
    let bwrap = which::which("bwrap").map_err(|_| Error::Build(BWRAP_MISSING.into()))?;
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    let cargo_home = std::env::var_os("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".cargo"));
    let rustup_home = std::env::var_os("RUSTUP_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".rustup"));
    // The host's cargo, as the sandbox sees it.
    let inner_cargo = match cargo.strip_prefix(cargo_home.join("bin")) {
        Ok(rest) => Path::new(SANDBOX_CARGO_HOME).join("bin").join(rest),
        Err(_) => cargo.to_path_buf(),
    };
    let mut command = Command::new(bwrap);
    command.env_clear();
    command.args(["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]);
    command.args(["--tmpfs", "/tmp", "--dev", "/dev", "--proc", "/proc", "--ro-bind", "/usr", "/usr"]);
    for (link, to) in [("/bin", "usr/bin"), ("/lib", "usr/lib"), ("/lib64", "usr/lib64"), ("/sbin", "usr/sbin")] {
        if Path::new(link).exists() {
            command.args(["--symlink", to, link]);
        }
    }
    // ld.so's cache, users and groups for the linker and cargo; /etc/alternatives for cc.
    for file in ["/etc/ld.so.cache", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/alternatives"] {
        command.arg("--ro-bind-try").args([file, file]);
    }
    let inner_home = Path::new(SANDBOX_CARGO_HOME);
    command.arg("--tmpfs").arg(inner_home);
    command.arg("--ro-bind").arg(cargo_home.join("bin")).arg(inner_home.join("bin"));
    // --offline reads the registry's sources and index cache only.
    command.arg("--ro-bind-try").arg(cargo_home.join("registry")).arg(inner_home.join("registry"));
    if rustup_home.is_dir() {
        command.arg("--ro-bind").arg(&rustup_home).arg(&rustup_home);
    }
    command.arg("--bind").arg(tree).arg(tree).arg("--chdir").arg(tree);
    command.arg("--setenv").arg("PATH").arg(format!("{SANDBOX_CARGO_HOME}/bin:/usr/bin"));
    command.arg("--setenv").arg("HOME").arg(&home);
    command.arg("--setenv").arg("CARGO_HOME").arg(inner_home);
    command.arg("--setenv").arg("RUSTUP_HOME").arg(&rustup_home);
    if let Some(toolchain) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        command.arg("--setenv").arg("RUSTUP_TOOLCHAIN").arg(toolchain);
    }
    command.arg("--").arg(inner_cargo);
    Ok(command)
}

/// `to` made as `from`: its files hard-linked (`link`) or copied, but for the entries
/// (at its top) that `skip` names.
fn seed(from: &Path, to: &Path, link: bool, skip: &dyn Fn(&str) -> bool) -> Result<()> {
    std::fs::create_dir_all(to).map_err(Error::io("create directory", to))?;
    for entry in std::fs::read_dir(from).map_err(Error::io("list", from))? {
        let entry = entry.map_err(Error::io("list", from))?;
        if skip(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(Error::io("stat", &source))?;
        if kind.is_dir() {
            seed(&source, &target, link, &|_| false)?;
        } else if kind.is_file() && !target.exists() {
            if link {
                link_or_copy(&source, &target)?;
            } else {
                std::fs::copy(&source, &target).map_err(Error::io("copy", &source))?;
            }
        }
    }
    Ok(())
}

fn hash_file(hasher: &mut Sha256, path: &Path) -> Result<()> {
    hasher.update(path.to_string_lossy().as_bytes());
    hasher.update(std::fs::read(path).map_err(Error::io("read", path))?);
    Ok(())
}

fn hash_tree(hasher: &mut Sha256, dir: &Path) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(Error::io("list", dir))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            hash_tree(hasher, &path)?;
        } else {
            hash_file(hasher, &path)?;
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The class as a table for people: a row per student, a column per lab.
pub fn to_table(graded: &[Graded], labs: &[&LabSpec]) -> String {
    let width = graded.iter().map(|g| g.name.chars().count()).max().unwrap_or(7).max(7);
    let mut out = format!("{:<width$}", "student");
    for lab in labs {
        let _ = write!(out, " {:>w$}", lab.name, w = lab.name.len().max(5));
    }
    out.push_str("      total  reason\n");
    for g in graded {
        let _ = write!(out, "{:<width$}", g.name);
        for lab in labs {
            let points = lab_points(g, lab.name);
            let _ = write!(out, " {:>w$}", points, w = lab.name.len().max(5));
        }
        let _ = writeln!(out, " {:>10}  {}", g.total(), g.reason_line());
    }
    out
}

fn lab_points(graded: &Graded, lab: &str) -> String {
    match graded.report.labs.iter().find(|l| l.lab == lab) {
        Some(report) if report.harness_failure.is_some() => "n/g".into(),
        Some(report) => {
            let (points, max) = report.points();
            format!("{points}/{max}")
        }
        None => "-".into(),
    }
}

/// One CSV field: quoted, control characters out, and a leading `- = + @` neutralised
/// (a spreadsheet would run it as a formula).
fn csv_field(text: &str) -> String {
    let text = printable(text);
    let guard = if text.starts_with(['-', '=', '+', '@']) { "'" } else { "" };
    format!("\"{guard}{}\"", text.replace('"', "\"\""))
}

/// The class as CSV: student, points per lab, total, max, status (graded, refused, not
/// graded), reason, notes. A lab or total not graded is empty.
pub fn to_csv(graded: &[Graded], labs: &[&LabSpec]) -> String {
    let mut out = String::from("student");
    for lab in labs {
        let _ = write!(out, ",{}", lab.name);
    }
    out.push_str(",total,max,status,reason,notes\n");
    for g in graded {
        out.push_str(&csv_field(&g.name));
        for lab in labs {
            let points =
                g.report.labs.iter().find(|l| l.lab == lab.name && l.harness_failure.is_none()).map(|l| l.points().0);
            let _ = write!(out, ",{}", points.map(|p| p.to_string()).unwrap_or_default());
        }
        let (total, status) = match (&g.not_graded, &g.refused) {
            (Some(_), _) => (String::new(), "not graded"),
            (None, Some(_)) => (g.points.to_string(), "refused"),
            (None, None) => (g.points.to_string(), "graded"),
        };
        let _ = writeln!(
            out,
            ",{total},{},{status},{},{}",
            g.max_points,
            csv_field(&g.reason_line()),
            csv_field(&g.notes.join("; "))
        );
    }
    out
}

/// One Markdown table cell or list item: control characters out, newlines a space, and
/// what Markdown or HTML would read (`| \ ` [ ] < >`) escaped.
fn md_cell(text: &str) -> String {
    let mut out = String::new();
    for c in printable(text).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' | '\\' | '`' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The class in Markdown: points per student and lab, the average per lab, then why.
pub fn to_markdown(graded: &[Graded], labs: &[&LabSpec], skipped: &[Skipped]) -> String {
    let cell = md_cell;
    let mut out = format!("## cilab grade: {} submissions\n\n| student |", graded.len());
    for lab in labs {
        let _ = write!(out, " {} |", lab.name);
    }
    out.push_str(" total |\n|---|");
    out.push_str(&"---|".repeat(labs.len() + 1));
    out.push('\n');
    for g in graded {
        let _ = write!(out, "| {} |", cell(&g.name));
        for lab in labs {
            let _ = write!(out, " {} |", lab_points(g, lab.name));
        }
        let _ = writeln!(out, " {} |", g.total());
    }
    let _ = write!(out, "| *average* |");
    for lab in labs {
        let earned: Vec<u32> = graded
            .iter()
            .filter_map(|g| {
                g.report.labs.iter().find(|l| l.lab == lab.name && l.harness_failure.is_none()).map(|l| l.points().0)
            })
            .collect();
        let average = if earned.is_empty() { 0.0 } else { f64::from(earned.iter().sum::<u32>()) / earned.len() as f64 };
        let _ = write!(out, " {average:.1}/{} |", lab.max_points());
    }
    let scored: Vec<&Graded> = graded.iter().filter(|g| g.not_graded.is_none()).collect();
    let total: f64 = scored.iter().map(|g| f64::from(g.points)).sum::<f64>() / scored.len().max(1) as f64;
    let max = labs.iter().map(|l| l.max_points()).sum::<u32>();
    let _ = writeln!(out, " {total:.1}/{max} |\n");
    let explained: Vec<&Graded> = graded.iter().filter(|g| !g.reason_line().is_empty()).collect();
    if !explained.is_empty() {
        out.push_str("### Why points were lost\n\n");
        for g in explained {
            let _ = writeln!(out, "- **{}**:", cell(&g.name));
            if let Some(why) = &g.not_graded {
                let _ = writeln!(out, "  - NOT GRADED (grade it again): {}", cell(why));
            }
            if let Some(refused) = &g.refused {
                let _ = writeln!(out, "  - refused: {}", cell(refused));
            }
            for (lab, why) in &g.reasons {
                let _ = writeln!(out, "  - {lab}: {}", cell(why));
            }
            for note in &g.notes {
                let _ = writeln!(out, "  - {}", cell(note));
            }
        }
    }
    if !skipped.is_empty() {
        out.push_str("\n### Skipped: not submissions\n\n");
        for skip in skipped {
            let _ = writeln!(out, "- {}: {}", cell(&skip.entry), cell(&skip.why));
        }
    }
    out
}

/// Writes the class's results into `out`: class.csv, class.md, and per student in
/// students/<name>/ (emptied first) their report in every format (`formats::write_all`),
/// their notes and build logs.
pub fn write_results(graded: &[Graded], labs: &[&LabSpec], skipped: &[Skipped], out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(Error::io("create directory", out))?;
    for (name, text) in [("class.csv", to_csv(graded, labs)), ("class.md", to_markdown(graded, labs, skipped))] {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(Error::io("write", &path))?;
    }
    for g in graded {
        let dir = out.join("students").join(&g.name);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io("remove", &dir)(e)),
            _ => {}
        }
        crate::formats::write_all(&g.report, &dir)?;
        let mut notes = g.notes.join("\n");
        if let Some(refused) = &g.refused {
            notes = format!("refused: {refused}\n{notes}");
        }
        if let Some(why) = &g.not_graded {
            notes = format!("NOT GRADED: {why}\n{notes}");
        }
        let path = dir.join("notes.txt");
        std::fs::write(&path, format!("{}\n", notes.trim_end())).map_err(Error::io("write", &path))?;
        for (lab, log) in &g.build_logs {
            let path = dir.join(format!("build-{lab}.log"));
            std::fs::write(&path, log).map_err(Error::io("write", &path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graded(name: &str, not_graded: Option<&str>, reason: &str) -> Graded {
        Graded {
            name: name.into(),
            points: 0,
            max_points: 10,
            refused: Some(reason.into()),
            not_graded: not_graded.map(Into::into),
            reasons: BTreeMap::new(),
            notes: vec!["=HYPERLINK(\"x\")".into()],
            report: Report::new(Vec::new()),
            build_logs: Vec::new(),
            seconds: 0.0,
        }
    }

    #[test]
    fn hostile_text_is_neutralised_in_every_format() {
        let class = [graded("mallory", None, "\x1b]0;pwned\x07| [x](http://e) <img> `c` \\ \r\nend")];
        let skipped = [Skipped { entry: "x.zip".into(), why: "not read".into() }];
        let md = to_markdown(&class, &[], &skipped);
        assert!(!md.chars().any(|c| c.is_control() && c != '\n'), "{md:?}");
        assert!(md.contains("\\| \\[x\\](http://e) &lt;img&gt; \\`c\\` \\\\  end"), "{md}");
        assert!(md.contains("- x.zip: not read"), "{md}");
        let csv = to_csv(&class, &[]);
        assert!(csv.contains(",\"'=HYPERLINK(\"\"x\"\")\""), "{csv}");
        assert!(!csv.chars().any(|c| c.is_control() && c != '\n'), "{csv:?}");
        assert!(!to_table(&class, &[]).contains('\x1b'));
    }

    #[test]
    fn a_submission_not_graded_shows_no_score() {
        let class = [graded("alice", Some("the guest died twice"), "x")];
        let csv = to_csv(&class, &[]);
        assert!(csv.lines().nth(1).is_some_and(|l| l.starts_with("\"alice\",,10,not graded,")), "{csv}");
        assert!(to_table(&class, &[]).contains("not graded"));
        assert!(to_markdown(&class, &[], &[]).contains("NOT GRADED"));
        assert!(!Class { graded: class.to_vec(), stopped: None }.all_graded());
    }

    /// Removes the test's files on every path, a failed assertion included.
    struct Cleanup(Vec<PathBuf>);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            for path in &self.0 {
                let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
            }
        }
    }

    /// A crate at `tree` whose binary `.incbin`s `path` (the attack of review finding 1).
    fn incbin_crate(tree: &Path, path: &str) {
        std::fs::create_dir_all(tree.join("src")).expect("create the crate");
        std::fs::create_dir_all(tree.join("target")).expect("create its target/");
        std::fs::write(
            tree.join("Cargo.toml"),
            "[package]\nname = \"incbin\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
        )
        .expect("write Cargo.toml");
        let main = format!(
            "core::arch::global_asm!(\".pushsection .rodata\\nstolen:\\n.incbin \\\"{path}\\\"\\n.popsection\");\nfn main() {{}}\n"
        );
        std::fs::write(tree.join("src/main.rs"), main).expect("write main.rs");
    }

    /// A file of `len` bytes no build log could hold by chance.
    fn secret(path: &Path) -> String {
        let text = format!("cilab-secret-{}-{:?}\n", std::process::id(), Instant::now());
        std::fs::write(path, &text).expect("write the secret");
        text
    }

    #[test]
    fn a_build_in_the_sandbox_cannot_read_files_outside_its_tree() {
        if !nix::unistd::Uid::effective().is_root() {
            panic!("run as root: the sandbox is tested as grading runs it");
        }
        if which::which("bwrap").is_err() {
            panic!("{BWRAP_MISSING}");
        }
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        let base = target.join(format!("cilab-sandbox-test-{}", std::process::id()));
        let beside = target.join("debug").join(format!("cilab-sandbox-secret-{}", std::process::id()));
        let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()));
        let in_home = home.join(format!(".cilab-sandbox-secret-{}", std::process::id()));
        let _cleanup = Cleanup(vec![base.clone(), beside.clone(), in_home.clone()]);
        std::fs::create_dir_all(target.join("debug")).expect("create target/debug");
        let beside_text = secret(&beside);
        let home_text = secret(&in_home);

        // The control: a file inside the tree is read, so the attack would work unsandboxed.
        let inside = base.join("inside");
        incbin_crate(&inside, "own-file");
        std::fs::write(inside.join("own-file"), "the tree's own bytes").expect("write own-file");
        let (built, log) = run_cargo(&inside, "incbin").expect("run cargo");
        assert!(built, "the control crate does not build in the sandbox:\n{log}");

        // The instructor's target/debug by a relative path (the slot is target/cilab-grade/slot-N).
        let relative = base.join("relative");
        incbin_crate(&relative, &format!("../../debug/{}", beside.file_name().unwrap_or_default().to_string_lossy()));
        let (built, log) = run_cargo(&relative, "incbin").expect("run cargo");
        assert!(!built, "the instructor's target/debug was readable from the sandbox:\n{log}");
        assert!(!log.contains(beside_text.trim()), "the log holds the file's bytes:\n{log}");

        // An absolute path in root's home (an ssh key, say).
        let absolute = base.join("absolute");
        incbin_crate(&absolute, &in_home.to_string_lossy());
        let (built, log) = run_cargo(&absolute, "incbin").expect("run cargo");
        assert!(!built, "{} was readable from the sandbox:\n{log}", in_home.display());
        assert!(!log.contains(home_text.trim()), "the log holds the file's bytes:\n{log}");
    }

    #[test]
    fn a_build_that_reads_dev_zero_fails_at_its_memory_cap() {
        if !nix::unistd::Uid::effective().is_root() {
            panic!("run as root: the sandbox is tested as grading runs it");
        }
        let tree =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/cilab-sandbox-zero-{}", std::process::id()));
        let _cleanup = Cleanup(vec![tree.clone()]);
        incbin_crate(&tree, "own-file");
        std::fs::write(tree.join("own-file"), "").expect("write own-file");
        std::fs::write(
            tree.join("src/main.rs"),
            "static ZERO: &[u8] = include_bytes!(\"/dev/zero\");\nfn main() { println!(\"{}\", ZERO.len()); }\n",
        )
        .expect("write main.rs");
        let started = Instant::now();
        let (built, log) = run_cargo(&tree, "incbin").expect("run cargo");
        assert!(!built, "reading /dev/zero built:\n{log}");
        assert!(!log.contains("took longer"), "stopped by the deadline, not the memory cap:\n{log}");
        assert!(started.elapsed() < Duration::from_secs(60), "the cap took {:?}", started.elapsed());
    }

    #[test]
    fn inline_assembly_is_refused_before_building() {
        for (text, refused) in [
            ("core::arch::global_asm!(\"nop\");", true),
            ("unsafe { std::arch::asm!(\"nop\") }", true),
            ("#![debugger_visualizer(natvis_file = \"x\")]", true),
            ("let asmodeus = 1; // casm", false),
        ] {
            let sources = BTreeMap::from([(PathBuf::from("main.rs"), text.to_string())]);
            assert_eq!(forbidden_word(&sources).is_some(), refused, "{text}");
        }
    }
}
