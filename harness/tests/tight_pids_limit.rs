//! cilab started in a cgroup with a tight pids.max (a course machine bounding each
//! student): its runs are nested below that cgroup, so the limit bounds the labs too,
//! and whatever runs out first (cilab's own thread, the lab's fork, a fork inside the
//! lab), cilab never panics: it exits 2 naming what the harness could not do, or 1 with
//! the lab's failure in the report, and leaves nothing behind.
//! (The test makes a v1 pids cgroup below its own and starts cilab in it.)

mod cgroup_state;
mod common;

use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A pids cgroup the test made below its own. Dropped, on every path, it kills what is
/// still in it (only the cilab the test started there, and its children), has `cilab
/// doctor --clean` remove what a failed run left elsewhere, and removes itself.
struct PidsCgroup(PathBuf);

impl PidsCgroup {
    fn new(pids_max: u32) -> Self {
        let own = cgroup_state::own_cgroup(Some("pids"));
        let path = own.join(format!("tight-pids-test-{}", std::process::id()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let group = PidsCgroup(path);
        group.set_max(pids_max);
        group
    }

    fn set_max(&self, pids_max: u32) {
        std::fs::write(self.0.join("pids.max"), pids_max.to_string()).expect("write pids.max");
    }

    /// Everything in the cgroup and below it, deepest last.
    fn tree(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            out.push(dir.to_path_buf());
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&entry.path(), out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &mut out);
        out
    }

    fn procs(&self) -> Vec<i32> {
        self.tree()
            .iter()
            .flat_map(|d| {
                std::fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let procs = self.procs();
            if procs.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in procs {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            common::reap_adopted(Duration::from_millis(50));
        }
        if std::thread::panicking() {
            let _ = common::cilab().args(["doctor", "--clean"]).output();
        }
        for dir in self.tree().iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// What one `cilab check` did inside the cgroup.
#[derive(Debug)]
struct Outcome {
    code: i32,
    /// The error (exit 2) or why the run stopped (exit 1).
    said: String,
}

fn check_inside(group: &PidsCgroup, cilab: &Path) -> Outcome {
    let procs = std::fs::OpenOptions::new().write(true).open(group.0.join("cgroup.procs")).expect("open cgroup.procs");
    let fd = procs.as_raw_fd();
    let mut command = Command::new(cilab);
    command.args(["check", "pid-ns", "--no-build", "--format", "json"]);
    // SAFETY: between fork and exec the child makes one write(2) on a descriptor opened
    // before the fork, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::write(BorrowedFd::borrow_raw(fd), b"0").map(drop).map_err(std::io::Error::from)
        });
    }
    let output = command.output().expect("run cilab");
    drop(procs);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code().unwrap_or(-1);
    let context = format!("exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "cilab panicked: {context}");
    let said = match code {
        // The harness failed: either before any report (an error line), or during a run,
        // whose report then names the harness's failure (never the student's).
        2 => match stderr.lines().find(|l| l.starts_with("cilab: error:")) {
            Some(error) => error.to_string(),
            None => {
                let report: cilab::report::Report = serde_json::from_str(&stdout)
                    .unwrap_or_else(|e| panic!("exit 2 with neither an error line nor a report ({e}): {context}"));
                let failure = report.labs.iter().find_map(|l| l.harness_failure.clone());
                failure.unwrap_or_else(|| panic!("exit 2 and the report names no harness failure: {context}"))
            }
        },
        1 => {
            let report: cilab::report::Report =
                serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("exit 1 without a report ({e}): {context}"));
            let lab = &report.labs[0];
            let finished = lab.verdicts.iter().find(|v| v.id == "lab-finished").expect("lab-finished");
            assert_eq!(finished.outcome, cilab::verdict::Outcome::Fail, "{context}");
            lab.stopped.clone().unwrap_or_else(|| panic!("a failed run says why it stopped: {context}"))
        }
        // Roomy enough for the whole lab: a pass is no failure to explain.
        0 => "passed".into(),
        _ => panic!("cilab exits 0, 1 or 2: {context}"),
    };
    Outcome { code, said }
}

fn run_under(limits: &[u32]) {
    common::require_root();
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    common::adopt_orphans();
    common::build_lab("lab-pid-ns");
    let cilab = assert_cmd::cargo::cargo_bin("cilab");
    let before = common::host_state();
    let cgroups_before = cgroup_state::cilab_cgroups();
    let group = PidsCgroup::new(1);
    let mut seen = Vec::new();
    for &pids_max in limits {
        group.set_max(pids_max);
        let outcome = check_inside(&group, &cilab);
        common::reap_adopted(Duration::from_secs(5));
        assert_eq!(
            group.tree(),
            std::slice::from_ref(&group.0),
            "pids.max={pids_max}: cilab left cgroups in the test's"
        );
        assert!(group.procs().is_empty(), "pids.max={pids_max}: processes left: {:?}", group.procs());
        common::assert_host_unchanged(&before);
        cgroup_state::assert_unchanged(&cgroups_before);
        seen.push(format!("pids.max={pids_max}: exit {}: {}", outcome.code, outcome.said));
    }
    eprintln!("{}", seen.join("\n"));
}

/// cilab's own interrupt thread (1), the lab's fork (2), forks inside the lab (8).
#[test]
fn a_tight_pids_limit_ends_cilab_with_a_clear_error_and_leaves_nothing() {
    run_under(&[1, 2, 8]);
}

/// Every limit up to a roomy one: also where the harness's threads that read the lab's
/// output run out (3 to 7 here).
#[test]
fn every_pids_limit_up_to_twelve_ends_cilab_cleanly() {
    run_under(&(1..=12).collect::<Vec<_>>());
}
