//! Checks for lab cgroup-limits. The harness finds the lab's cgroup from outside, by the
//! /proc/<pid>/cgroup of the lab's workloads, reads the kernel's own counters in it
//! (pids.current, pids.events, memory.events or memory.oom_control, cpu.stat or
//! cpuacct.usage, the freezer's state), and acts itself: a forked probe moves into the
//! lab's cgroup and tries one more fork, the harness times a fork and exec on the host
//! before and during the bomb, measures the cpu time the cgroup used over a window of its
//! own, reads how the hog ended from /proc/<pid>/stat while the lab holds it unreaped, and
//! sends the SIGKILL to a frozen process. Each version's files give the evidence; the
//! verdicts are the same sentences on v1 and v2.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use labkit::protocol::cgroup_limits::*;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

use super::{errno_name, find_child_named};
use crate::catalog::Observer;
use crate::cgroup::membership::Membership;
use crate::cgroup::run_group::Version;
use crate::cgroup::{CgroupLayout, CgroupSetup};
use crate::error::{Error, Result};
use crate::facts::{Fact, Facts};
use crate::probe::forked;
use crate::probe::pidfd::PidFd;
use crate::probe::procfs;
use crate::run::LabRun;
use crate::verdict::VerdictSpec;

/// How a process's cgroup relates to the run's, per hierarchy.
pub const RUNS_OWN: &str = "the lab's own cgroup (the run's leaf for it)";
pub const UNDER_RUN: &str = "under the run's cgroup: ";
pub const OUTSIDE_RUN: &str = "outside the run's cgroup";
/// The run's cgroup or the root of the lab's cgroup namespace: above the lab's own leaf.
pub const ABOVE_LAB: &str = "above the lab's own cgroup (the run's, or its cgroup namespace's root)";
const KILLED_AT_ONCE: &str = "killed at once";
/// What the kernel's log says of the hog's death.
const VICTIM_OK: &str = "the hog, in the lab's cgroup, by the OOM killer of the lab's cgroup";
const VICTIM_RATELIMITED: &str =
    "the hog, by a memory cgroup's OOM killer (the oom-kill line was rate-limited): decided on the counters";
const KMSG_UNREADABLE: &str = "/dev/kmsg unreadable: decided on the counters";
const STILL_FROZEN: &str = "still there while frozen";
/// The cpu share the sheet promises, as a fraction of one CPU.
pub const CPU_SHARE_LOW: f64 = 0.10;
pub const CPU_SHARE_HIGH: f64 = 0.25;
const CPU_SHARE_OK: &str = "between 10% and 25%";
const CPU_WINDOW: Duration = Duration::from_secs(2);
const PROGRESS_WINDOW: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

// ── facts, by stage ──────────────────────────────────────────────────────────────
pub const VERSION: Fact<String> = Fact::new("made.cgroup_version");
pub const LAYOUT: Fact<String> = Fact::new("made.cgroup_layout");
pub const MADE_UNDER_RUN: Fact<Vec<String>> = Fact::new("made.new_cgroups_under_the_run");
pub const MADE_IN_PLACE: Fact<bool> = Fact::new("made.each_in_the_labs_own_v1_or_beside_it_v2");

pub const BOMB_CGROUP: Fact<BTreeMap<String, String>> = Fact::new("bomb-held.bomb_cgroup");
pub const CHILDREN_WITH_BOMB: Fact<bool> = Fact::new("bomb-held.every_child_in_the_bombs_cgroup");
pub const BOMB_PROCESSES: Fact<usize> = Fact::new("bomb-held.bomb_processes");
pub const PIDS_CURRENT: Fact<u64> = Fact::new("bomb-held.pids_current");
pub const PIDS_MAX_FILE: Fact<String> = Fact::new("bomb-held.pids_max");
pub const PIDS_EVENTS_MAX: Fact<u64> = Fact::new("bomb-held.pids_events_max");
pub const FORK_IN_CGROUP: Fact<String> = Fact::new("bomb-held.fork_by_a_probe_in_the_bombs_cgroup");
pub const RUN_PIDS_CURRENT: Fact<u64> = Fact::new("bomb-held.run_pids_current");
pub const RUN_PIDS_MAX: Fact<String> = Fact::new("bomb-held.run_pids_max");
pub const RUN_PIDS_KEPT: Fact<bool> = Fact::new("bomb-held.runs_own_pids_max_as_the_harness_wrote_it");
pub const HOST_RESPONSIVE: Fact<bool> = Fact::new("bomb-held.host_fork_exec_within_10x_of_before");

pub const LEFT_AFTER_KILL: Fact<usize> = Fact::new("bomb-killed.processes_left_in_the_bombs_cgroup");
pub const BOMB_ALIVE: Fact<usize> = Fact::new("bomb-killed.bomb_processes_alive");
pub const KILLED_PIDS_CURRENT: Fact<u64> = Fact::new("bomb-killed.pids_current");

pub const HOG_EXIT: Fact<String> = Fact::new("oom.hog_exit");
pub const OOM_KILLS: Fact<u64> = Fact::new("oom.oom_kill_count");
pub const MEMORY_LIMIT: Fact<String> = Fact::new("oom.memory_limit");
pub const PEAK_WITHIN: Fact<bool> = Fact::new("oom.peak_within_64_mib");
pub const PEAK_NEAR: Fact<bool> = Fact::new("oom.peak_above_90_percent_of_64_mib");
pub const EVENTS_MAX: Fact<bool> = Fact::new("oom.v2_memory_events_max_counted");
pub const EVENTS_OOM: Fact<u64> = Fact::new("oom.v2_memory_events_oom");
pub const OOM_VICTIM: Fact<String> = Fact::new("oom.kernel_log_oom_kill");
pub const FAILCNT: Fact<u64> = Fact::new("oom.v1_memory_failcnt");
pub const RUN_PEAK_AT_LIMIT: Fact<bool> = Fact::new("oom.run_memory_peak_at_the_runs_limit");
pub const RUN_MEMORY_KEPT: Fact<bool> = Fact::new("oom.runs_own_memory_limit_as_the_harness_wrote_it");

pub const SPIN_CGROUP: Fact<BTreeMap<String, String>> = Fact::new("cpu.busy_loop_cgroup");
pub const CPU_SHARE: Fact<String> = Fact::new("cpu.share_of_one_cpu_over_2s");
pub const CPU_QUOTA: Fact<String> = Fact::new("cpu.quota");
pub const CPU_PERIOD: Fact<String> = Fact::new("cpu.period");
pub const THROTTLED_GREW: Fact<bool> = Fact::new("cpu.nr_throttled_grew");
pub const THROTTLED_TIME_GREW: Fact<bool> = Fact::new("cpu.throttled_time_grew");

pub const FROZEN_SAYS: Fact<String> = Fact::new("frozen.freezer_says");
pub const FROZEN_SPIN_CGROUP: Fact<BTreeMap<String, String>> = Fact::new("frozen.busy_loop_cgroup");
pub const SLEEPER_CGROUP: Fact<BTreeMap<String, String>> = Fact::new("frozen.sleeper_cgroup");
pub const FROZEN_PROGRESS: Fact<bool> = Fact::new("frozen.busy_loop_made_progress");
pub const FROZEN_STATE: Fact<String> = Fact::new("frozen.busy_loop_state");
pub const FROZEN_SIGKILL: Fact<String> = Fact::new("frozen.sigkill_to_the_frozen_sleeper");

pub const THAWED_SAYS: Fact<String> = Fact::new("thawed.freezer_says");
pub const THAWED_SPIN_CGROUP: Fact<BTreeMap<String, String>> = Fact::new("thawed.busy_loop_cgroup");
pub const THAWED_PROGRESS: Fact<bool> = Fact::new("thawed.busy_loop_made_progress");
pub const THAWED_SLEEPER_GONE: Fact<bool> = Fact::new("thawed.sleeper_gone");

pub const MOVED_CGROUP: Fact<BTreeMap<String, String>> = Fact::new("moved-out.busy_loop_cgroup");
pub const MOVED_LEFT: Fact<usize> = Fact::new("moved-out.processes_left_in_the_labs_cgroup");

pub const REMOVED_LEFT: Fact<Vec<String>> = Fact::new("removed.labs_cgroups_left");

/// A workload's place: in the lab's cgroup (a cgroup under the run's, not the run's own)
/// in every hierarchy.
fn in_labs_cgroup(cgroup: &BTreeMap<String, String>) -> bool {
    !cgroup.is_empty() && cgroup.values().all(|c| c.starts_with(UNDER_RUN))
}

fn share_ok(share: f64) -> bool {
    (CPU_SHARE_LOW..=CPU_SHARE_HIGH).contains(&share)
}

pub const VERDICTS: [VerdictSpec; 10] = [
    VerdictSpec {
        id: "in-its-place",
        claim: "the lab makes its cgroup where it is, in every hierarchy it uses: inside its own cgroup on v1, beside it (in its parent) on v2; so the limits above the lab hold above the lab's cgroup too",
        points: 2,
        region: Some("make-cgroup"),
        requires: &[],
        hint: "find where the lab is in /proc/self/cgroup (under cilab: /lab, in a cgroup namespace that begins at the run's cgroup) and make the new cgroup there: in it on v1, in its parent on v2; not at the hierarchy's root, not higher up",
        decide: |e| {
            let in_place = e.get(MADE_IN_PLACE)?;
            let bomb = e.get(BOMB_CGROUP)?;
            Some(in_place && !bomb.values().any(|c| c == OUTSIDE_RUN))
        },
    },
    VerdictSpec {
        id: "workloads-inside",
        claim: "the fork bomb and the busy loop are in the lab's cgroup in each hierarchy the lab uses, and so is every child the bomb forks once it is there (the hog's and the sleeper's places are checked where they are watched)",
        points: 2,
        region: Some("join-cgroup"),
        requires: &[],
        hint: "write the workload's PID into cgroup.procs of every hierarchy, before it runs: what it forked before it moved stays behind",
        decide: |e| {
            let bomb = e.get(BOMB_CGROUP)?;
            Some(
                in_labs_cgroup(&bomb)
                    && e.get(CHILDREN_WITH_BOMB)?
                    && e.get(SPIN_CGROUP)? == bomb,
            )
        },
    },
    VerdictSpec {
        id: "bomb-held-at-n",
        claim: "with pids.max=16 the fork bomb is held at 16 processes: one more fork in the cgroup fails with EAGAIN, pids.events counts it, and the run's own pids.max reads as the harness wrote it at every stage so far",
        points: 3,
        region: Some("limit-pids"),
        requires: &["workloads-inside"],
        hint: "write the limit into pids.max of the lab's cgroup, not of the run's, before the bomb starts",
        // Every limit is written before the first stage: a lab that stops there is hinted
        // at each region that could have stopped it (the version is that stage's fact).
        decide: |e| {
            e.get(VERSION)?;
            Some(
                e.get(PIDS_MAX_FILE)? == PIDS_MAX.to_string()
                    && e.get(BOMB_PROCESSES)? == PIDS_MAX as usize
                    && e.get(PIDS_CURRENT)? == u64::from(PIDS_MAX)
                    && e.get(FORK_IN_CGROUP)? == "EAGAIN"
                    && e.get(PIDS_EVENTS_MAX)? >= 1
                    && e.get(RUN_PIDS_KEPT)?,
            )
        },
    },
    VerdictSpec {
        id: "host-responsive",
        claim: "while the bomb is held, a fork and exec on the host takes at most ten times as long as before the bomb (plus 50 ms)",
        points: 0,
        region: None,
        requires: &[],
        hint: "the host's fork and exec is timed by the harness itself: a slow host (a loaded CI machine) can make this fail",
        decide: |e| e.get(HOST_RESPONSIVE),
    },
    VerdictSpec {
        id: "cgroup-killed",
        claim: "killing the cgroup (v2: cgroup.kill; v1: freeze, SIGKILL each process, thaw) leaves no process in it",
        points: 2,
        region: Some("kill-cgroup"),
        requires: &["workloads-inside"],
        hint: "kill every process the cgroup holds, not only the bomb; on v1 freeze it first so that nothing forks meanwhile, and thaw it so that SIGKILL is delivered",
        decide: |e| {
            Some(e.get(LEFT_AFTER_KILL)? == 0 && e.get(BOMB_ALIVE)? == 0 && e.get(KILLED_PIDS_CURRENT)? == 0)
        },
    },
    VerdictSpec {
        id: "hog-oom-killed",
        claim: "with memory limited to 64 MiB and no swap, a hog that touches more is OOM-killed at that limit: it dies by SIGKILL, the cgroup's peak comes within 10% of 64 MiB without passing it while the run's own limit is not reached, the run's own memory limit reads as the harness wrote it at every stage so far, the cgroup's oom_kill counter counts it (v2: memory.events max and oom too), and the kernel's oom-kill line names the hog, in the lab's cgroup, killed for the lab's cgroup's limit",
        points: 3,
        region: Some("limit-memory"),
        requires: &["workloads-inside"],
        hint: "the limit is in bytes, in the memory hierarchy's file for this cgroup version, with swap left no room",
        decide: |e| {
            let v2 = e.get(VERSION)? == "v2";
            let victim = e.get(OOM_VICTIM)?;
            Some(
                e.get(HOG_EXIT)? == "killed by SIGKILL"
                    && e.get(MEMORY_LIMIT)? == MEMORY_MAX.to_string()
                    && e.get(OOM_KILLS)? >= 1
                    && e.get(PEAK_WITHIN)?
                    && e.get(PEAK_NEAR)?
                    && !e.get(RUN_PEAK_AT_LIMIT)?
                    && e.get(RUN_MEMORY_KEPT)?
                    && (!v2 || (e.get(EVENTS_MAX)? && e.get(EVENTS_OOM)? >= 1))
                    && (victim == VICTIM_OK || victim == VICTIM_RATELIMITED || victim.starts_with(KMSG_UNREADABLE)),
            )
        },
    },
    VerdictSpec {
        id: "cpu-quota",
        claim: "the cgroup's quota reads 20000 µs in every 100000 µs period (v2 cpu.max, v1 cpu.cfs_quota_us and cpu.cfs_period_us), the busy loop gets about 20% of one CPU over 2 s (between 10% and 25%), and the throttling counters grow",
        points: 3,
        region: Some("limit-cpu"),
        requires: &["workloads-inside"],
        hint: "quota first, then period, both in microseconds: v2 cpu.max \"<quota> <period>\", v1 cpu.cfs_quota_us and cpu.cfs_period_us",
        decide: |e| {
            e.get(VERSION)?;
            Some(
                e.get(CPU_QUOTA)? == CPU_QUOTA_US.to_string()
                    && e.get(CPU_PERIOD)? == CPU_PERIOD_US.to_string()
                    && e.get(CPU_SHARE)? == CPU_SHARE_OK
                    && e.get(THROTTLED_GREW)?
                    && e.get(THROTTLED_TIME_GREW)?,
            )
        },
    },
    VerdictSpec {
        id: "frozen",
        claim: "with the busy loop and the sleeper in the lab's cgroup, the frozen cgroup (v1 freezer.state FROZEN, v2 cgroup.events frozen 1) holds the busy process with no progress: on v1 it shows state D and a SIGKILL waits for the thaw, on v2 it shows state S and a SIGKILL ends it at once; thawed, it runs again",
        points: 3,
        region: Some("freeze"),
        requires: &["workloads-inside"],
        hint: "freeze the cgroup through its own file (v2 cgroup.freeze, v1 freezer.state), not by signals to its processes",
        decide: |e| {
            let (state, sigkill) = match e.get(VERSION)?.as_str() {
                "v2" => ("S", KILLED_AT_ONCE),
                _ => ("D", STILL_FROZEN),
            };
            // The processes watched are in the cgroup the freezer's file belongs to: the
            // bomb's, the lab's (a process moved elsewhere and stopped by a signal is not
            // frozen by the cgroup).
            let bomb = e.get(BOMB_CGROUP)?;
            Some(
                e.get(FROZEN_SPIN_CGROUP)? == bomb
                    && e.get(SLEEPER_CGROUP)? == bomb
                    && e.get(THAWED_SPIN_CGROUP)? == bomb
                    && e.get(FROZEN_SAYS)? == "frozen"
                    && !e.get(FROZEN_PROGRESS)?
                    && e.get(FROZEN_STATE)? == state
                    && e.get(FROZEN_SIGKILL)? == sigkill
                    && e.get(THAWED_SAYS)? == "thawed"
                    && e.get(THAWED_PROGRESS)?
                    && e.get(THAWED_SLEEPER_GONE)?,
            )
        },
    },
    VerdictSpec {
        id: "moved-out",
        claim: "the lab's last act in its cgroup is to move its last process out, back into the lab's own cgroup (not higher up), in every hierarchy",
        points: 2,
        region: Some("move-out"),
        requires: &[],
        hint: "write the PID into cgroup.procs of the lab's own cgroup, in each hierarchy",
        decide: |e| {
            let moved = e.get(MOVED_CGROUP)?;
            Some(!moved.is_empty() && moved.values().all(|c| c == RUNS_OWN) && e.get(MOVED_LEFT)? == 0)
        },
    },
    VerdictSpec {
        id: "cgroup-removed",
        claim: "every cgroup the lab made is removed once it is empty: none is left under the run's cgroup in any hierarchy, nor where the lab's cgroup was",
        points: 2,
        region: Some("remove-cgroup"),
        requires: &[],
        hint: "rmdir each of the lab's cgroup directories, in every hierarchy",
        decide: |e| Some(e.get(REMOVED_LEFT)?.is_empty()),
    },
];

pub fn prepare(_scratch: &Path) -> Result<()> {
    Ok(())
}

/// Made before the lab starts: every cgroup directory that exists then is not the lab's.
pub fn observer() -> Box<dyn Observer> {
    Box::new(CgroupLimits { existing: every_cgroup_dir(), ..CgroupLimits::default() })
}

/// One hierarchy the lab uses, as the harness sees it.
#[derive(Debug, Clone)]
struct Hierarchy {
    /// "v2", or the v1 controllers mounted there ("pids", "cpu,cpuacct").
    name: String,
    mount: PathBuf,
    /// A controller of the hierarchy, to find a process's line in /proc/<pid>/cgroup (v1).
    first: Option<String>,
    /// The run's own cgroup there, the root of the lab's cgroup namespace in it
    /// (`<run>/cgroupns`), and the leaf the lab sits in (`<run>/cgroupns/lab`).
    run: Option<PathBuf>,
    ns_root: Option<PathBuf>,
    leaf: Option<PathBuf>,
}

#[derive(Default)]
struct CgroupLimits {
    setup: Option<CgroupSetup>,
    version: Option<Version>,
    hierarchies: Vec<Hierarchy>,
    /// The lab's cgroup, per hierarchy name, learned from the bomb's /proc/<pid>/cgroup.
    lab_dirs: BTreeMap<String, PathBuf>,
    before: Option<Duration>,
    bomb: Vec<PidFd>,
    spin: Option<i32>,
    sleeper: Option<PidFd>,
    /// The hog and the busy loop, held from the stage they were found at.
    others: Vec<PidFd>,
    /// Every cgroup directory there was before the lab started.
    existing: BTreeSet<PathBuf>,
    /// The run's own limits found changed from inside (each restored at once): leaks.
    tampered: Vec<String>,
    /// The kernel's log, read from its end as it was before the hog ran (or why not).
    kmsg: Option<std::result::Result<std::fs::File, String>>,
}

impl Observer for CgroupLimits {
    fn observe(&mut self, stage: &str, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        self.check_run_limits(stage, run);
        match stage {
            MADE => self.made(run, facts),
            BOMB_HELD => self.bomb_held(run, facts),
            BOMB_KILLED => {
                // The hog runs after this stage: the kernel's log is read from here on.
                self.kmsg = Some(open_kmsg_at_end());
                facts.record(LEFT_AFTER_KILL, self.lab_procs().len());
                facts.record(BOMB_ALIVE, self.bomb.iter().filter(|fd| !fd.has_exited()).count());
                facts.record(KILLED_PIDS_CURRENT, self.read_number("pids", "pids.current").unwrap_or(u64::MAX));
                Ok(())
            }
            OOM => self.oom(run, facts),
            CPU => self.cpu(run, facts),
            FROZEN => self.frozen(run, facts),
            THAWED => {
                facts.record(THAWED_SAYS, self.freezer_says());
                let spin = self.spin()?;
                facts.record(THAWED_SPIN_CGROUP, self.cgroup_of(spin));
                facts.record(THAWED_PROGRESS, progress(spin, PROGRESS_WINDOW));
                let gone = self.sleeper.as_ref().is_none_or(|fd| fd.wait_exit(Duration::from_secs(2)));
                facts.record(THAWED_SLEEPER_GONE, gone);
                Ok(())
            }
            MOVED_OUT => {
                let spin = self.spin()?;
                facts.record(MOVED_CGROUP, self.cgroup_of(spin));
                facts.record(MOVED_LEFT, self.lab_procs().len());
                Ok(())
            }
            REMOVED => {
                // The lab's cgroup wherever it is, and every directory under the run's own
                // in each hierarchy (the run's v2 leaf, the harness's, aside).
                let mut left: BTreeSet<String> = self
                    .lab_dirs
                    .iter()
                    .filter(|(_, dir)| dir.exists())
                    .map(|(name, dir)| format!("{name}: {}", self.describe_dir(name, dir)))
                    .collect();
                for hierarchy in &self.hierarchies {
                    let Some(run_dir) = &hierarchy.run else { continue };
                    let mut todo = vec![run_dir.clone()];
                    while let Some(dir) = todo.pop() {
                        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                        for entry in entries.flatten() {
                            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                                continue;
                            }
                            let path = entry.path();
                            if Some(&path) != hierarchy.leaf.as_ref() && Some(&path) != hierarchy.ns_root.as_ref() {
                                left.insert(format!(
                                    "{}: {}",
                                    hierarchy.name,
                                    self.describe_dir(&hierarchy.name, &path)
                                ));
                            }
                            todo.push(path);
                        }
                    }
                }
                facts.record(REMOVED_LEFT, left.into_iter().collect());
                Ok(())
            }
            other => Err(Error::Harness(format!("cgroup-limits has no stage `{other}`"))),
        }
    }

    /// A cgroup the lab made outside the run's is beyond the run's teardown. The harness
    /// ends only the run's own processes that it holds by pidfd (the bomb and its children,
    /// the hog, the busy loop, the sleeper: found as the lab's children), and removes with one
    /// rmdir (never recursive) only a directory that was not there when the run started and
    /// is not a hierarchy's root: a cgroup it did not see the lab make, or a foreign process
    /// in it, it never touches; it names it as a leak.
    fn clean_up_outside(&mut self, _scratch: &Path, _killed: &[String]) -> Vec<String> {
        let mut leaks = std::mem::take(&mut self.tampered);
        let outside: Vec<(String, PathBuf)> = self
            .lab_dirs
            .iter()
            .filter(|(name, dir)| dir.exists() && self.describe_dir(name, dir) == OUTSIDE_RUN)
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect();
        if outside.is_empty() {
            return leaks;
        }
        let made_by_lab = |dir: &Path| {
            !self.existing.contains(dir) && !self.hierarchies.iter().any(|h| h.mount == dir) && dir != Path::new("/")
        };
        // A v1 freezer the lab made and froze holds a SIGKILL until it thaws.
        for (_, dir) in &outside {
            if made_by_lab(dir) && dir.join("freezer.state").exists() {
                let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
            }
        }
        let ours: Vec<&PidFd> = self.workloads().filter(|fd| !fd.has_exited()).collect();
        for fd in &ours {
            let _ = fd.send(Signal::SIGKILL);
        }
        for fd in &ours {
            fd.wait_exit(Duration::from_secs(5));
        }
        for (name, dir) in outside {
            if made_by_lab(&dir) {
                let done = std::fs::remove_dir(&dir).map_err(|e| e.to_string());
                leaks.push(format!(
                    "the lab left a cgroup it made outside the run's ({name}): {} (rmdir: {done:?})",
                    dir.display()
                ));
            } else {
                leaks.push(format!(
                    "the lab put its workloads in a cgroup it did not make, outside the run's ({name}): {}; the harness ended only the run's own processes there and left the cgroup alone",
                    dir.display()
                ));
            }
        }
        leaks
    }
}

/// /dev/kmsg, opened non-blocking and moved to its end: what it reads afterwards was
/// logged afterwards.
fn open_kmsg_at_end() -> std::result::Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .map_err(|e| format!("open /dev/kmsg: {e}"))?;
    nix::unistd::lseek(std::os::fd::AsRawFd::as_raw_fd(&file), 0, nix::unistd::Whence::SeekEnd)
        .map_err(|e| format!("lseek /dev/kmsg: {e}"))?;
    Ok(file)
}

/// Every record /dev/kmsg holds from its position on: one record per read(2).
fn read_kmsg(mut file: std::fs::File) -> Vec<String> {
    use std::io::Read;
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let record = String::from_utf8_lossy(&buf[..n]);
                // "<prio>,<seq>,<time>,<flags>;<message>\n" and continuation lines.
                let message = record.split_once(';').map_or(&*record, |(_, m)| m);
                lines.push(message.lines().next().unwrap_or_default().to_string());
            }
            // EPIPE: records were overwritten before they were read; go on with the next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    lines
}

/// Every cgroup directory there is under /sys/fs/cgroup (symlinks not followed).
fn every_cgroup_dir() -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(entry.path());
            }
        }
        out.insert(dir);
    }
    out
}

impl CgroupLimits {
    fn made(&mut self, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let setup = CgroupSetup::detect()?;
        let version = if setup.layout == CgroupLayout::V2 { Version::V2 } else { Version::V1 };
        facts.record(VERSION, if version == Version::V2 { "v2".to_string() } else { "v1".to_string() });
        facts.record(
            LAYOUT,
            match setup.layout {
                CgroupLayout::V1 => "v1",
                CgroupLayout::V2 => "v2",
                CgroupLayout::Hybrid => "hybrid",
            }
            .to_string(),
        );
        self.hierarchies = hierarchies(&setup, version, run);
        self.setup = Some(setup);
        self.version = Some(version);
        // Every cgroup under the run's (its leaf for the lab aside), as a path below the run's,
        // and whether each is where the sheet says: in the lab's own cgroup (the leaf) on v1,
        // beside it (in the run's) on v2.
        let mut made = Vec::new();
        let mut in_place = true;
        for hierarchy in &self.hierarchies {
            let Some(run_dir) = &hierarchy.run else { continue };
            let ns_root = hierarchy.ns_root.as_ref().unwrap_or(run_dir);
            let place = match version {
                Version::V1 => hierarchy.leaf.as_ref().unwrap_or(ns_root),
                Version::V2 => ns_root,
            };
            let mut todo = vec![run_dir.clone()];
            while let Some(dir) = todo.pop() {
                for sub in std::fs::read_dir(&dir).map_err(Error::io("list", &dir))?.flatten() {
                    let path = sub.path();
                    if !sub.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    if Some(&path) != hierarchy.leaf.as_ref() && Some(&path) != hierarchy.ns_root.as_ref() {
                        let below = path.strip_prefix(ns_root).or(path.strip_prefix(run_dir)).unwrap_or(&path);
                        let below = below.display().to_string();
                        made.push(format!("{}: {below}", hierarchy.name));
                        in_place &= path.parent() == Some(place.as_path());
                    }
                    todo.push(path);
                }
            }
        }
        made.sort();
        facts.record(MADE_IN_PLACE, !made.is_empty() && in_place);
        facts.record(MADE_UNDER_RUN, made);
        self.before = Some(host_fork_exec()?);
        Ok(())
    }

    fn bomb_held(&mut self, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let bomb = find_child_named(run, BOMB_COMM)?;
        let children = procfs::children(bomb);
        let bomb_cgroup = self.cgroup_of(bomb);
        // The lab's cgroup is where the bomb is: its raw paths, per hierarchy.
        let raw = self.raw_cgroup_of(bomb);
        self.lab_dirs = raw.clone();
        facts.record(BOMB_CGROUP, bomb_cgroup);
        facts.record(CHILDREN_WITH_BOMB, children.iter().all(|c| self.raw_cgroup_of(*c) == raw));
        self.bomb = std::iter::once(bomb).chain(children.iter().copied()).filter_map(|p| PidFd::open(p).ok()).collect();
        facts.record(BOMB_PROCESSES, 1 + children.len());
        facts.record(PIDS_CURRENT, self.read_number("pids", "pids.current").unwrap_or(u64::MAX));
        facts.record(PIDS_MAX_FILE, self.read_lab("pids", "pids.max").unwrap_or_default());
        facts.record(PIDS_EVENTS_MAX, self.read_keyed("pids", "pids.events", "max").unwrap_or(0));
        let run_pids = self.run_dir("pids");
        facts.record(
            RUN_PIDS_CURRENT,
            run_pids.as_ref().and_then(|d| read_trimmed(&d.join("pids.current")).parse().ok()).unwrap_or(u64::MAX),
        );
        facts.record(RUN_PIDS_MAX, run_pids.as_ref().map(|d| read_trimmed(&d.join("pids.max"))).unwrap_or_default());
        facts.record(RUN_PIDS_KEPT, !self.tampered.iter().any(|l| l.contains(": pids.max read")));
        let during = host_fork_exec()?;
        let before = self.before.unwrap_or_default();
        if std::env::var_os("CILAB_SHOW_FIGURES").is_some() {
            eprintln!("cilab figures: host fork+exec median before the bomb {before:?}, during {during:?}");
        }
        facts.record(HOST_RESPONSIVE, during <= before * 10 + Duration::from_millis(50));
        let procs = self.lab_dirs.get(&self.name_of("pids")).map(|d| d.join("cgroup.procs"));
        facts.record(
            FORK_IN_CGROUP,
            match procs {
                Some(procs) => fork_in(&procs)?,
                None => "the bomb is in no pids cgroup".to_string(),
            },
        );
        Ok(())
    }

    fn oom(&mut self, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let hog = find_child_named(run, HOG_COMM)?;
        self.others.extend(PidFd::open(hog).ok());
        facts.record(HOG_EXIT, exit_of(hog));
        let v2 = self.version == Some(Version::V2);
        let (events, key, limit, peak) = if v2 {
            ("memory.events", "oom_kill", "memory.max", "memory.peak")
        } else {
            ("memory.oom_control", "oom_kill", "memory.limit_in_bytes", "memory.max_usage_in_bytes")
        };
        facts.record(OOM_KILLS, self.read_keyed("memory", events, key).unwrap_or(0));
        if v2 {
            // How often the usage hit the limit varies from run to run: that it did is the fact.
            facts.record(EVENTS_MAX, self.read_keyed("memory", events, "max").unwrap_or(0) >= 1);
            facts.record(EVENTS_OOM, self.read_keyed("memory", events, "oom").unwrap_or(0));
        }
        facts.record(MEMORY_LIMIT, self.read_lab("memory", limit).unwrap_or_default());
        let peak_bytes = self.read_number("memory", peak);
        if std::env::var_os("CILAB_SHOW_FIGURES").is_some() {
            eprintln!("cilab figures: the hog's cgroup peaked at {peak_bytes:?} bytes");
        }
        facts.record(PEAK_WITHIN, peak_bytes.is_some_and(|p| p <= MEMORY_MAX));
        facts.record(PEAK_NEAR, peak_bytes.is_some_and(|p| p >= MEMORY_MAX / 10 * 9));
        facts.record(OOM_VICTIM, self.oom_victim(hog));
        if !v2 {
            facts.record(FAILCNT, self.read_number("memory", "memory.failcnt").unwrap_or(u64::MAX));
        }
        let run_memory = self.run_dir("memory");
        let run_at_limit = run_memory.is_some_and(|dir| {
            let limit: Option<u64> = read_trimmed(&dir.join(limit)).parse().ok();
            let peak: Option<u64> = read_trimmed(&dir.join(peak)).parse().ok();
            matches!((limit, peak), (Some(l), Some(p)) if p >= l / 10 * 9)
        });
        facts.record(RUN_PEAK_AT_LIMIT, run_at_limit);
        facts.record(RUN_MEMORY_KEPT, !self.tampered.iter().any(|l| l.contains(": memory.")));
        Ok(())
    }

    fn cpu(&mut self, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let spin = find_child_named(run, SPIN_COMM)?;
        self.spin = Some(spin);
        self.others.extend(PidFd::open(spin).ok());
        facts.record(SPIN_CGROUP, self.cgroup_of(spin));
        let v2 = self.version == Some(Version::V2);
        let usage = |this: &Self| -> Option<u64> {
            if v2 {
                this.read_keyed("cpu", "cpu.stat", "usage_usec").map(|u| u * 1000)
            } else {
                this.read_number("cpuacct", "cpuacct.usage")
            }
        };
        let (throttled_time_key, quota) =
            if v2 { ("throttled_usec", "cpu.max") } else { ("throttled_time", "cpu.cfs_quota_us") };
        let quota_text = self.read_lab("cpu", quota).unwrap_or_default();
        // v2: cpu.max "<quota> <period>"; v1: the quota and the period in two files.
        let period = if v2 {
            quota_text.split_whitespace().nth(1).unwrap_or_default().to_string()
        } else {
            self.read_lab("cpu", "cpu.cfs_period_us").unwrap_or_default()
        };
        facts.record(CPU_QUOTA, quota_text.split_whitespace().next().unwrap_or_default().to_string());
        facts.record(CPU_PERIOD, period);
        let throttled = |this: &Self| this.read_keyed("cpu", "cpu.stat", "nr_throttled");
        let throttled_time = |this: &Self| this.read_keyed("cpu", "cpu.stat", throttled_time_key);
        let (t0, n0, tt0, start) = (usage(self), throttled(self), throttled_time(self), Instant::now());
        // The measurement's window: the harness waits it out, then reads again.
        std::thread::sleep(CPU_WINDOW);
        let (t1, n1, tt1, elapsed) = (usage(self), throttled(self), throttled_time(self), start.elapsed());
        let share = match (t0, t1) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / elapsed.as_nanos() as f64,
            _ => -1.0,
        };
        if std::env::var_os("CILAB_SHOW_FIGURES").is_some() {
            eprintln!("cilab figures: the busy loop used {:.1}% of one CPU over {elapsed:?}", share * 100.0);
        }
        facts.record(
            CPU_SHARE,
            if share_ok(share) { CPU_SHARE_OK.to_string() } else { format!("{:.0}%", share * 100.0) },
        );
        facts.record(THROTTLED_GREW, matches!((n0, n1), (Some(a), Some(b)) if b > a));
        facts.record(THROTTLED_TIME_GREW, matches!((tt0, tt1), (Some(a), Some(b)) if b > a));
        Ok(())
    }

    fn frozen(&mut self, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let spin = self.spin()?;
        let sleeper = find_child_named(run, SLEEPER_COMM)?;
        facts.record(FROZEN_SPIN_CGROUP, self.cgroup_of(spin));
        facts.record(SLEEPER_CGROUP, self.cgroup_of(sleeper));
        facts.record(FROZEN_SAYS, self.freezer_says());
        facts.record(FROZEN_PROGRESS, progress(spin, PROGRESS_WINDOW));
        facts.record(FROZEN_STATE, procfs::read_status(spin).map(|s| s.state.to_string()).unwrap_or_default());
        let fd = PidFd::open(sleeper)?;
        // The sleeper is the lab's workload, in the run: the harness may end it.
        fd.send(Signal::SIGKILL)?;
        let died = fd.wait_exit(PROGRESS_WINDOW);
        facts.record(FROZEN_SIGKILL, if died { KILLED_AT_ONCE } else { STILL_FROZEN }.to_string());
        self.sleeper = Some(fd);
        Ok(())
    }

    /// The limits the harness wrote into the run's own cgroup must read the same at every
    /// stage: a lab may write only below the run. A changed one is written back at once and
    /// named as a leak (it belongs to no STUDENT region: `nothing-leaked` fails).
    fn check_run_limits(&mut self, stage: &str, run: &LabRun) {
        let group = run.cgroup();
        for applied in &group.limits_applied {
            if applied.contains("not applied") {
                continue;
            }
            let Some((file, rest)) = applied.split_once('=') else { continue };
            let Some((value, version)) = rest.rsplit_once(" (") else { continue };
            let v2 = version.starts_with("v2");
            let controller = file.split('.').next().unwrap_or_default();
            let Some(dir) = group.dirs.iter().find(|d| {
                if v2 {
                    d.version == Version::V2
                } else {
                    d.version == Version::V1
                        && d.controller.as_deref().is_some_and(|c| c.split(',').any(|c| c == controller))
                }
            }) else {
                continue;
            };
            let path = dir.path.join(file);
            let now = read_trimmed(&path);
            let same = if file.ends_with("cgroup.subtree_control") {
                let words = |t: &str| {
                    t.split_whitespace().map(|w| w.trim_start_matches('+').to_string()).collect::<BTreeSet<_>>()
                };
                words(value).is_subset(&words(&now))
            } else {
                now == value
            };
            if !same {
                let restored = std::fs::write(&path, value).map_err(|e| e.to_string());
                self.tampered.push(format!(
                    "the run's own limit was changed from inside: {file} read {now:?} at stage `{stage}`, the harness had written {value:?} (written back: {restored:?})"
                ));
            }
        }
    }

    /// Who the kernel's log says the OOM killer killed since the hog started, and whose
    /// limit: the `oom-kill:` line names oom_memcg= (the cgroup whose limit was hit),
    /// task_memcg= (the victim's) and pid= (the victim). Lines of other processes (another
    /// run's) are passed over.
    fn oom_victim(&mut self, hog: i32) -> String {
        let file = match self.kmsg.take() {
            Some(Ok(file)) => file,
            Some(Err(why)) => return format!("{KMSG_UNREADABLE} ({why})"),
            None => return format!("{KMSG_UNREADABLE} (not opened)"),
        };
        let lab = self
            .hierarchies
            .iter()
            .find(|h| h.name == self.name_of("memory"))
            .and_then(|h| Some(Path::new("/").join(self.lab_dirs.get(&h.name)?.strip_prefix(&h.mount).ok()?)));
        let mut killed_line = false;
        let mut seen = Vec::new();
        for line in read_kmsg(file) {
            let fields: BTreeMap<&str, &str> = match line.split_once("oom-kill:") {
                Some((_, rest)) => rest.split(',').filter_map(|kv| kv.split_once('=')).collect(),
                None => {
                    killed_line |= line.contains(&format!("Memory cgroup out of memory: Killed process {hog} "));
                    continue;
                }
            };
            if fields.get("pid") != Some(&hog.to_string().as_str()) {
                continue;
            }
            let is_lab = |key: &str| lab.as_ref().is_some_and(|l| fields.get(key).map(Path::new) == Some(l.as_path()));
            seen.push(match (is_lab("task_memcg"), is_lab("oom_memcg")) {
                (true, true) => VICTIM_OK.to_string(),
                (true, false) => {
                    "the hog, in the lab's cgroup, by the OOM killer of another cgroup (not the lab's limit)".into()
                }
                (false, _) => "the hog, outside the lab's memory cgroup".into(),
            });
        }
        match seen.pop() {
            Some(said) => said,
            None if killed_line => VICTIM_RATELIMITED.to_string(),
            None => "no OOM kill of the hog in the kernel's log".to_string(),
        }
    }

    /// The run's own workloads the harness holds by pidfd.
    fn workloads(&self) -> impl Iterator<Item = &PidFd> {
        self.bomb.iter().chain(self.sleeper.iter()).chain(self.others.iter())
    }

    fn spin(&self) -> Result<i32> {
        self.spin.ok_or_else(|| Error::Harness("the busy loop was not found at an earlier stage".into()))
    }

    /// The hierarchy's name that holds `controller`.
    fn name_of(&self, controller: &str) -> String {
        self.hierarchies
            .iter()
            .find(|h| h.name == "v2" || h.name.split(',').any(|c| c == controller))
            .map(|h| h.name.clone())
            .unwrap_or_default()
    }

    fn run_dir(&self, controller: &str) -> Option<PathBuf> {
        let name = self.name_of(controller);
        self.hierarchies.iter().find(|h| h.name == name).and_then(|h| h.run.clone())
    }

    fn read_lab(&self, controller: &str, file: &str) -> Option<String> {
        let dir = self.lab_dirs.get(&self.name_of(controller))?;
        std::fs::read_to_string(dir.join(file)).ok().map(|t| t.trim().to_string())
    }

    fn read_number(&self, controller: &str, file: &str) -> Option<u64> {
        self.read_lab(controller, file)?.parse().ok()
    }

    /// The value of `key` in a flat keyed file ("max 3", "oom_kill 1").
    fn read_keyed(&self, controller: &str, file: &str, key: &str) -> Option<u64> {
        let text = self.read_lab(controller, file)?;
        text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
    }

    fn freezer_says(&self) -> String {
        match self.version {
            Some(Version::V2) => match self.read_keyed("freezer", "cgroup.events", "frozen") {
                Some(1) => "frozen".to_string(),
                Some(_) => "thawed".to_string(),
                None => "unreadable".to_string(),
            },
            _ => self.read_lab("freezer", "freezer.state").map(|s| s.to_lowercase()).unwrap_or("unreadable".into()),
        }
    }

    /// Every process in the lab's cgroups and below them.
    fn lab_procs(&self) -> std::collections::BTreeSet<i32> {
        let mut dirs: Vec<PathBuf> = self.lab_dirs.values().cloned().collect();
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(entries) = std::fs::read_dir(&dirs[i]) {
                dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            i += 1;
        }
        dirs.iter().flat_map(|d| crate::cgroup::run_group::read_procs(d)).collect()
    }

    /// Where process `pid` is, per hierarchy the lab uses: its cgroup's directory.
    fn raw_cgroup_of(&self, pid: i32) -> BTreeMap<String, PathBuf> {
        let (Some(setup), Ok(membership)) = (&self.setup, Membership::read(&pid.to_string())) else {
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for hierarchy in &self.hierarchies {
            let path = match &hierarchy.first {
                None => membership.v2.clone(),
                Some(controller) => membership.v1.get(controller).cloned(),
            };
            if let Some(dir) = path.and_then(|p| setup.dir_of(&hierarchy.mount, &p).ok()) {
                out.insert(hierarchy.name.clone(), dir);
            }
        }
        out
    }

    /// Where process `pid` is relative to the run's cgroup, per hierarchy.
    fn cgroup_of(&self, pid: i32) -> BTreeMap<String, String> {
        self.raw_cgroup_of(pid).into_iter().map(|(name, dir)| (name.clone(), self.describe_dir(&name, &dir))).collect()
    }

    fn describe_dir(&self, name: &str, dir: &Path) -> String {
        let Some(hierarchy) = self.hierarchies.iter().find(|h| h.name == name) else {
            return OUTSIDE_RUN.to_string();
        };
        let Some(run) = &hierarchy.run else { return OUTSIDE_RUN.to_string() };
        if Some(dir) == hierarchy.leaf.as_deref() || (hierarchy.leaf.is_none() && dir == run) {
            return RUNS_OWN.to_string();
        }
        if dir == run || Some(dir) == hierarchy.ns_root.as_deref() {
            return ABOVE_LAB.to_string();
        }
        // Below the namespace's root, as the lab sees it ("lab/lab-limits" on v1).
        let seen_from = hierarchy.ns_root.as_deref().filter(|root| dir.starts_with(root)).unwrap_or(run);
        match dir.strip_prefix(seen_from) {
            Ok(rest) => format!("{UNDER_RUN}{}", rest.display()),
            Err(_) => OUTSIDE_RUN.to_string(),
        }
    }
}

/// The hierarchies the lab uses, with the run's own cgroup in each.
fn hierarchies(setup: &CgroupSetup, version: Version, run: &LabRun) -> Vec<Hierarchy> {
    let dirs = &run.cgroup().dirs;
    if version == Version::V2 {
        let Some(v2) = &setup.v2 else { return Vec::new() };
        let run_dir = dirs.iter().find(|d| d.version == Version::V2);
        return vec![Hierarchy {
            name: "v2".into(),
            mount: v2.path.clone(),
            first: None,
            run: run_dir.map(|d| d.path.clone()),
            ns_root: run_dir.and_then(|d| d.ns_root.clone()),
            leaf: run_dir.and_then(|d| d.leaf.clone()),
        }];
    }
    let mut by_mount: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for controller in ["pids", "memory", "cpu", "cpuacct", "freezer"] {
        if let Some(mount) = setup.v1.get(controller) {
            by_mount.entry(mount.clone()).or_default().push(controller.to_string());
        }
    }
    by_mount
        .into_iter()
        .map(|(mount, controllers)| {
            let run_dir = dirs.iter().find(|d| d.version == Version::V1 && d.path.starts_with(&mount));
            Hierarchy {
                name: controllers.join(","),
                mount,
                first: controllers.first().cloned(),
                run: run_dir.map(|d| d.path.clone()),
                ns_root: run_dir.and_then(|d| d.ns_root.clone()),
                leaf: run_dir.and_then(|d| d.leaf.clone()),
            }
        })
        .collect()
}

/// A probe moves itself into the bomb's pids cgroup (migration is not limited by
/// pids.max) and tries one fork: "EAGAIN", or "forked".
fn fork_in(procs: &Path) -> Result<String> {
    let procs = procs.to_path_buf();
    let outcome = forked::probe("fork once in the bomb's cgroup", PROBE_TIMEOUT, |out| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&procs)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"0"))
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        // SAFETY: the grandchild only calls _exit.
        let said = match unsafe { fork() } {
            Ok(ForkResult::Child) => unsafe { libc::_exit(0) },
            Ok(ForkResult::Parent { child }) => {
                let _ = waitpid(child, None);
                "forked".to_string()
            }
            Err(errno) => errno_name(errno),
        };
        forked::say(out, &said);
        Ok(())
    })?;
    Ok(match outcome.status {
        Ok(()) => outcome.output.trim().to_string(),
        Err(failure) => format!("the probe could not join the cgroup: {failure:?}"),
    })
}

/// The median time of a fork and exec of `true` on the host (the harness's own cgroup).
fn host_fork_exec() -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..9 {
        let start = Instant::now();
        let status = std::process::Command::new("true").status().map_err(Error::io("run", "true"))?;
        if !status.success() {
            return Err(Error::Harness(format!("`true` on the host ended with {status}")));
        }
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// How a process that exited but is not yet reaped ended: /proc/<pid>/stat's exit_code
/// (field 52, a wait status), which the kernel keeps until the parent reaps it.
fn exit_of(pid: i32) -> String {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return "gone (reaped before the harness looked)".to_string();
    };
    // Fields after the command (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // rest starts at field 3 (state).
    let state = fields.first().copied().unwrap_or("?");
    if state != "Z" {
        return format!("still running (state {state})");
    }
    let Some(code) = fields.get(52 - 3).and_then(|c| c.parse::<i32>().ok()) else {
        return "no exit code in /proc/<pid>/stat".to_string();
    };
    let status = WaitStatus::from_raw(nix::unistd::Pid::from_raw(pid), code);
    match status {
        Ok(WaitStatus::Exited(_, code)) => format!("exit status {code}"),
        Ok(WaitStatus::Signaled(_, signal, _)) => format!("killed by {}", signal.as_str()),
        other => format!("{other:?}"),
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Whether `pid` used any CPU time over `window`.
fn progress(pid: i32, window: Duration) -> bool {
    let before = cpu_ticks(pid);
    std::thread::sleep(window);
    matches!((before, cpu_ticks(pid)), (Some(a), Some(b)) if b > a)
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path).map(|t| t.trim().to_string()).unwrap_or_default()
}
