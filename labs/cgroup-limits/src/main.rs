//! Lab cgroup-limits: make a cgroup of your own under the one you were started in, put
//! workloads of your own in it, and watch the kernel hold them to the limits you write:
//! a fork bomb held at pids.max, a memory hog OOM-killed, a busy loop given 20% of a CPU,
//! a frozen process that makes no progress. Read labs/cgroup-limits/README.md.
//!
//! The processes and cgroups this lab makes:
//!
//! ```text
//! lab-cgroup-limits ── cg-bomb ── cg-bomblet × (pids.max − 1)     (killed with the cgroup)
//!                   ├─ cg-hog       touches memory until the OOM killer ends it
//!                   ├─ cg-spin      a busy loop: the cpu quota, then the freezer
//!                   └─ cg-sleeper   sleeps; a SIGKILL reaches it while it is frozen
//!
//! cgroup v2:  <the lab's cgroup's parent>/lab-limits    (beside the lab: v2's no-internal-processes rule)
//! cgroup v1:  <the lab's cgroup>/lab-limits             in pids, memory, cpu, cpuacct and freezer
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use labkit::protocol::cgroup_limits::*;
use labkit::{child, cleanup, Lab, LabArgs, LabError};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, signal, SigHandler, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pause, ForkResult, Pid};
use serde_json::json;

/// Make a cgroup of your own and hold workloads to its limits. Run it as root, in a VM:
/// `sudo target/debug/lab-cgroup-limits --step` (best under `cilab run cgroup-limits`).
#[derive(Parser)]
#[command(name = "lab-cgroup-limits", version)]
struct Cli {
    #[command(flatten)]
    lab: LabArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    labkit::main("lab-cgroup-limits", include_str!("main.rs"), || run(&cli.lab))
}

/// statfs(2) f_type of a cgroup v2 mount (linux/magic.h).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The controllers the lab uses. On v2, cpuacct is part of cpu and the freezer is in every
/// cgroup (cgroup.freeze): one directory serves all.
const CONTROLLERS: [&str; 5] = ["pids", "memory", "cpu", "cpuacct", "freezer"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// One hierarchy the lab uses: where it is mounted, which of the lab's controllers it has,
/// and the cgroup the lab itself is in there (from /proc/self/cgroup).
#[derive(Debug, Clone)]
struct Hierarchy {
    controllers: Vec<&'static str>,
    own: PathBuf,
}

/// This machine's cgroups as the lab uses them.
#[derive(Debug, Clone)]
struct System {
    version: Version,
    /// "v1", "v2" or "hybrid" (v1 controllers beside an empty v2 mount).
    layout: &'static str,
    hierarchies: Vec<Hierarchy>,
}

/// The cgroup the lab made: its directory in each hierarchy.
#[derive(Debug, Clone)]
struct LabCgroup {
    version: Version,
    dirs: Vec<(Vec<&'static str>, PathBuf)>,
}

impl LabCgroup {
    fn new(version: Version, dirs: Vec<(Vec<&'static str>, PathBuf)>) -> Self {
        LabCgroup { version, dirs }
    }

    /// The lab's directory in the hierarchy of `controller`.
    fn dir(&self, controller: &str) -> Result<&Path> {
        self.dirs
            .iter()
            .find(|(controllers, _)| controllers.contains(&controller))
            .map(|(_, dir)| dir.as_path())
            .ok_or_else(|| anyhow!("the lab's cgroup has no directory in the `{controller}` hierarchy"))
    }

    fn paths(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, dir)| dir.as_path())
    }

    /// The file that freezes the cgroup, and its two values.
    fn freezer(&self) -> Result<(PathBuf, &'static str, &'static str)> {
        Ok(match self.version {
            Version::V2 => (self.dir("freezer")?.join("cgroup.freeze"), "1", "0"),
            Version::V1 => (self.dir("freezer")?.join("freezer.state"), "FROZEN", "THAWED"),
        })
    }
}

fn run(args: &LabArgs) -> Result<()> {
    labkit::require_root("lab-cgroup-limits", "mkdir and write in /sys/fs/cgroup")?;
    let mut lab = Lab::new(args, "Lab cgroup-limits: how much you may use", 9);
    let system = detect()?;
    lab.saw(&format!(
        "cgroups here: {}; the lab is in {}",
        system.layout,
        system.hierarchies.iter().map(|h| h.own.display().to_string()).collect::<Vec<_>>().join(", ")
    ));

    // ── Step 1 ───────────────────────────────────────────────────────────────
    lab.step(
        "Make a cgroup of the lab's own under the one it runs in, and write its limits",
        "mkdir(\"<parent>/lab-limits\"); write(\"pids.max\", \"16\"); write(\"memory.max\", ...); write(\"cpu.max\", \"20000 100000\")",
        "mkdir /sys/fs/cgroup/<parent>/lab-limits && echo 16 > .../pids.max && echo 64M > .../memory.max && echo '20000 100000' > .../cpu.max",
    );
    let cgroup = make_cgroup(&system).map_err(left_from_before)?;
    lab.saw(&format!("made {}", cgroup.paths().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")));
    limit_pids(&cgroup, PIDS_MAX)?;
    limit_memory(&cgroup, MEMORY_MAX)?;
    limit_cpu(&cgroup, CPU_QUOTA_US, CPU_PERIOD_US)?;
    lab.why("the lab's cgroup lies under the cgroup the lab runs in (under cilab, the run's): whatever it writes, the limits above still hold.");
    lab.hold(MADE, json!({ "cgroups": cgroup.paths().collect::<Vec<_>>() }))?;

    // ── Step 2 ───────────────────────────────────────────────────────────────
    lab.step(
        "Put a fork bomb in the cgroup before it forks, and let it fork until the kernel says no",
        "write(\"cgroup.procs\", <bomb's pid>) in each hierarchy; then in cg-bomb: fork() until EAGAIN",
        "echo $BOMB > /sys/fs/cgroup/.../lab-limits/cgroup.procs   # then the bomb: :(){ :|:& };: (do not)",
    );
    let mut bomb = Workload::start(BOMB_COMM, bomb)?;
    join_cgroup(&cgroup, bomb.pid)?;
    bomb.go_and_wait_ready("forking until EAGAIN")?;
    let pids_dir = cgroup.dir("pids")?;
    lab.saw(&format!(
        "pids.current {}, pids.max {}, pids.events: {}",
        read_trimmed(&pids_dir.join("pids.current")),
        read_trimmed(&pids_dir.join("pids.max")),
        read_trimmed(&pids_dir.join("pids.events")).replace('\n', ", ")
    ));
    lab.why("every process and thread in the cgroup counts against pids.max: the fork that would make one more fails with EAGAIN, and pids.events counts it.");
    lab.hold(BOMB_HELD, json!({ "bomb": bomb.pid.as_raw() }))?;

    // ── Step 3 ───────────────────────────────────────────────────────────────
    lab.step(
        "Kill the whole cgroup at once",
        "v2: write(\"cgroup.kill\", \"1\"); v1: write(\"freezer.state\", \"FROZEN\"), kill(pid, SIGKILL) for each, write(\"freezer.state\", \"THAWED\")",
        "echo 1 > .../lab-limits/cgroup.kill   (v1: freeze, kill -9 $(cat .../cgroup.procs), thaw)",
    );
    // v1 freezes to kill: should anything go wrong, the way out thaws before it kills.
    let (freezer, _, thawed) = cgroup.freezer()?;
    cleanup::track_write_before_kill(&freezer, thawed);
    kill_cgroup(&cgroup)?;
    wait_empty(&cgroup, bomb.pid)?;
    cleanup::forget_write_before_kill(&freezer);
    cleanup::forget_child(bomb.pid);
    lab.saw(&format!("cgroup.procs is empty; pids.current {}", read_trimmed(&pids_dir.join("pids.current"))));
    lab.why("a bomb forks faster than anyone can kill it one by one: killing the cgroup (or freezing it first, on v1) leaves it no time to fork.");
    lab.hold(BOMB_KILLED, json!({}))?;

    // ── Step 4 ───────────────────────────────────────────────────────────────
    lab.step(
        "Start a memory hog in the cgroup: it touches more than the limit",
        "write(\"cgroup.procs\", <hog's pid>); in cg-hog: malloc and write every page, 1 MiB at a time",
        "echo $HOG > .../lab-limits/cgroup.procs   # or: systemd-run -p MemoryMax=64M -p MemorySwapMax=0 <hog>",
    );
    let mut hog = Workload::start(HOG_COMM, hog)?;
    join_cgroup(&cgroup, hog.pid)?;
    hog.go()?;
    let status = hog.wait_exit_unreaped("touching memory")?;
    lab.saw(&format!("the hog {}", describe(status)));
    let memory_dir = cgroup.dir("memory")?;
    match cgroup.version {
        Version::V2 => {
            lab.saw(&format!("memory.events: {}", read_trimmed(&memory_dir.join("memory.events")).replace('\n', ", ")))
        }
        Version::V1 => lab.saw(&format!(
            "memory.oom_control: {}; memory.failcnt {}",
            read_trimmed(&memory_dir.join("memory.oom_control")).replace('\n', ", "),
            read_trimmed(&memory_dir.join("memory.failcnt"))
        )),
    }
    lab.why("at the limit, with no swap to page out to, the kernel's OOM killer ends a process of the cgroup with SIGKILL: nothing can catch it.");
    lab.hold(OOM, json!({ "hog": hog.pid.as_raw() }))?;
    child::wait(hog.pid, "reaping the hog")?;

    // ── Step 5 ───────────────────────────────────────────────────────────────
    lab.step(
        "Start a busy loop in the cgroup: the cpu quota gives it 20% of one CPU",
        "write(\"cgroup.procs\", <spin's pid>); in cg-spin: loop {}",
        "echo $SPIN > .../lab-limits/cgroup.procs; top -p $SPIN   # 20% CPU",
    );
    let mut spin = Workload::start(SPIN_COMM, spin)?;
    join_cgroup(&cgroup, spin.pid)?;
    spin.go()?;
    if lab.plays_host() {
        let share = measure_cpu_share(&cgroup, Duration::from_secs(2))?;
        lab.as_host(&format!("over 2 s the busy loop used {:.0}% of one CPU", share * 100.0));
    }
    lab.why("every 100 ms period the cgroup may run for 20 ms; then the scheduler throttles it until the next period (nr_throttled counts that).");
    lab.hold(CPU, json!({ "spin": spin.pid.as_raw() }))?;

    // ── Step 6 ───────────────────────────────────────────────────────────────
    lab.step(
        "Freeze the cgroup, with the busy loop and a sleeper in it",
        "v2: write(\"cgroup.freeze\", \"1\"); v1: write(\"freezer.state\", \"FROZEN\")",
        "echo 1 > .../lab-limits/cgroup.freeze   (v1: echo FROZEN > .../freezer.state)",
    );
    let mut sleeper = Workload::start(SLEEPER_COMM, sleeper)?;
    join_cgroup(&cgroup, sleeper.pid)?;
    sleeper.go()?;
    let (freezer, _, thawed) = cgroup.freezer()?;
    cleanup::track_write_before_kill(&freezer, thawed);
    set_frozen(&cgroup, true)?;
    wait_freezer(&cgroup, true)?;
    if lab.plays_host() {
        lab.as_host(&format!("the busy loop's state: {}", process_state(spin.pid)));
        let _ = kill(sleeper.pid, Signal::SIGKILL);
        let gone = exited_within(sleeper.pid, Duration::from_millis(300));
        lab.as_host(&format!(
            "SIGKILL to the frozen sleeper: {}",
            if gone { "it died at once" } else { "it is still there, frozen" }
        ));
    }
    lab.why("v2 stops frozen tasks like a signal-stop (state S) and lets a fatal signal through; the v1 freezer holds them in the kernel (state D) and SIGKILL waits for the thaw.");
    lab.hold(FROZEN, json!({ "spin": spin.pid.as_raw(), "sleeper": sleeper.pid.as_raw() }))?;

    // ── Step 7 ───────────────────────────────────────────────────────────────
    lab.step(
        "Thaw the cgroup",
        "v2: write(\"cgroup.freeze\", \"0\"); v1: write(\"freezer.state\", \"THAWED\")",
        "echo 0 > .../lab-limits/cgroup.freeze   (v1: echo THAWED > .../freezer.state)",
    );
    set_frozen(&cgroup, false)?;
    wait_freezer(&cgroup, false)?;
    cleanup::forget_write_before_kill(&freezer);
    // The sleeper got its SIGKILL while frozen (from the host): once thawed it dies.
    let _ = kill(sleeper.pid, Signal::SIGKILL);
    child::wait(sleeper.pid, "reaping the sleeper")?;
    lab.saw("the sleeper is gone; the busy loop runs again");
    lab.hold(THAWED, json!({ "spin": spin.pid.as_raw() }))?;

    // ── Step 8 ───────────────────────────────────────────────────────────────
    lab.step(
        "Move the last process out of the cgroup, back where the lab is",
        "write(\"<the lab's own cgroup>/cgroup.procs\", <spin's pid>) in each hierarchy",
        "echo $SPIN > /sys/fs/cgroup/<where the lab is>/cgroup.procs",
    );
    move_out(&system, spin.pid)?;
    lab.saw(&format!(
        "the cgroup's processes now: [{}]",
        read_trimmed(&cgroup.dir("pids")?.join("cgroup.procs")).replace('\n', " ")
    ));
    lab.hold(MOVED_OUT, json!({ "spin": spin.pid.as_raw() }))?;
    kill(spin.pid, Signal::SIGKILL).map_err(LabError::sys("kill", spin.pid))?;
    child::wait(spin.pid, "reaping the busy loop")?;

    // ── Step 9 ───────────────────────────────────────────────────────────────
    lab.step(
        "Remove the cgroup: rmdir works once no process is in it",
        "rmdir(\"<parent>/lab-limits\") in each hierarchy",
        "rmdir /sys/fs/cgroup/<parent>/lab-limits",
    );
    remove_cgroup(&cgroup)?;
    // What is still there is removed on the way out (the rmdir registered in step 1).
    let left: Vec<String> = cgroup.paths().filter(|dir| dir.exists()).map(|dir| dir.display().to_string()).collect();
    if !left.is_empty() {
        return Err(anyhow!("the cgroup is still there after remove_cgroup: {}", left.join(", ")));
    }
    for dir in cgroup.paths() {
        cleanup::forget_undo(&["rmdir", &dir.to_string_lossy()]);
    }
    lab.hold(REMOVED, json!({}))?;
    lab.done(
        "Done: the lab removed its cgroups and every process it started. Now answer the questions on the lab sheet.",
    );
    Ok(())
}

// ── The STUDENT regions ──────────────────────────────────────────────────────────

/// Makes the lab's cgroup in every hierarchy it uses.
fn make_cgroup(system: &System) -> Result<LabCgroup> {
    // STUDENT: begin make-cgroup
    // Hint: make it where the lab is (Hierarchy::own, from /proc/self/cgroup), never elsewhere: on v2 a
    // cgroup that holds a process hands no controller down, so there it goes beside the lab's own cgroup
    // (in own's parent); on v1 it goes in own itself. make_dir also registers its removal.
    let mut dirs = Vec::new();
    for hierarchy in &system.hierarchies {
        let parent = match system.version {
            Version::V2 => hierarchy.own.parent().unwrap_or(&hierarchy.own).to_path_buf(),
            Version::V1 => hierarchy.own.clone(),
        };
        let dir = parent.join(CGROUP_NAME);
        make_dir(&dir)?;
        dirs.push((hierarchy.controllers.clone(), dir));
    }
    Ok(LabCgroup::new(system.version, dirs))
    // STUDENT: end make-cgroup
}

/// Writes the cgroup's PID limit.
fn limit_pids(cgroup: &LabCgroup, max: u32) -> Result<()> {
    // STUDENT: begin limit-pids
    // Hint: pids.max in the lab's cgroup (same name on v1 and v2): every process and thread counts.
    write_control(&cgroup.dir("pids")?.join("pids.max"), &max.to_string())
    // STUDENT: end limit-pids
}

/// Writes the cgroup's memory limit, with no swap to escape to.
fn limit_memory(cgroup: &LabCgroup, bytes: u64) -> Result<()> {
    // STUDENT: begin limit-memory
    // Hint: in bytes. v2: memory.max and memory.swap.max=0; v1: memory.limit_in_bytes, then
    // memory.memsw.limit_in_bytes (memory + swap) to the same value where the file exists.
    let dir = cgroup.dir("memory")?;
    match cgroup.version {
        Version::V2 => {
            write_control(&dir.join("memory.max"), &bytes.to_string())?;
            write_if_present(&dir.join("memory.swap.max"), "0")
        }
        Version::V1 => {
            write_control(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
            write_if_present(&dir.join("memory.memsw.limit_in_bytes"), &bytes.to_string())
        }
    }
    // STUDENT: end limit-memory
}

/// Writes the cgroup's cpu quota: `quota_us` of CPU time in every `period_us`.
fn limit_cpu(cgroup: &LabCgroup, quota_us: u64, period_us: u64) -> Result<()> {
    // STUDENT: begin limit-cpu
    // Hint: microseconds. v2: cpu.max takes "<quota> <period>"; v1: cpu.cfs_period_us, then
    // cpu.cfs_quota_us, in the cpu hierarchy.
    let dir = cgroup.dir("cpu")?;
    match cgroup.version {
        Version::V2 => write_control(&dir.join("cpu.max"), &format!("{quota_us} {period_us}")),
        Version::V1 => {
            write_control(&dir.join("cpu.cfs_period_us"), &period_us.to_string())?;
            write_control(&dir.join("cpu.cfs_quota_us"), &quota_us.to_string())
        }
    }
    // STUDENT: end limit-cpu
}

/// Puts process `pid` into the lab's cgroup, in every hierarchy.
fn join_cgroup(cgroup: &LabCgroup, pid: Pid) -> Result<()> {
    // STUDENT: begin join-cgroup
    // Hint: write the PID into cgroup.procs of the lab's directory in each hierarchy, before the
    // workload runs: what it forks afterwards is born where it is, what it forked before stays behind.
    for dir in cgroup.paths() {
        write_control(&dir.join("cgroup.procs"), &pid.to_string())?;
    }
    Ok(())
    // STUDENT: end join-cgroup
}

/// Kills every process in the cgroup.
fn kill_cgroup(cgroup: &LabCgroup) -> Result<()> {
    // STUDENT: begin kill-cgroup
    // Hint: v2: cgroup.kill. v1 has none: freeze the cgroup (freezer.state) so that nothing forks,
    // SIGKILL every PID in cgroup.procs, then thaw it so that the signals are delivered.
    match cgroup.version {
        Version::V2 => write_control(&cgroup.dir("pids")?.join("cgroup.kill"), "1"),
        Version::V1 => {
            let freezer = cgroup.dir("freezer")?.join("freezer.state");
            write_control(&freezer, "FROZEN")?;
            wait_freezer(cgroup, true)?;
            for pid in procs(cgroup.dir("freezer")?)? {
                kill(pid, Signal::SIGKILL).map_err(LabError::sys("kill", pid))?;
            }
            write_control(&freezer, "THAWED")
        }
    }
    // STUDENT: end kill-cgroup
}

/// Freezes (`true`) or thaws the cgroup.
fn set_frozen(cgroup: &LabCgroup, frozen: bool) -> Result<()> {
    // STUDENT: begin freeze
    // Hint: v2: cgroup.freeze, "1" or "0"; v1: freezer.state, "FROZEN" or "THAWED" (in the freezer hierarchy).
    let (file, on, off) = cgroup.freezer()?;
    write_control(&file, if frozen { on } else { off })
    // STUDENT: end freeze
}

/// Moves process `pid` out of the lab's cgroup, back into the lab's own, in every hierarchy.
fn move_out(system: &System, pid: Pid) -> Result<()> {
    // STUDENT: begin move-out
    // Hint: a process leaves a cgroup only by being written into another's cgroup.procs: the lab's own
    // (Hierarchy::own), in each hierarchy.
    for hierarchy in &system.hierarchies {
        write_control(&hierarchy.own.join("cgroup.procs"), &pid.to_string())?;
    }
    Ok(())
    // STUDENT: end move-out
}

/// Removes the lab's cgroup from every hierarchy.
fn remove_cgroup(cgroup: &LabCgroup) -> Result<()> {
    // STUDENT: begin remove-cgroup
    // Hint: rmdir(2) each directory (not rm -r: the files in it are the kernel's); it fails with
    // EBUSY while a process is still in it.
    for dir in cgroup.paths() {
        std::fs::remove_dir(dir).map_err(LabError::io("rmdir", dir))?;
    }
    Ok(())
    // STUDENT: end remove-cgroup
}

// ── The workloads ────────────────────────────────────────────────────────────

/// A child that waits for `go` before it does anything: the lab puts it in the cgroup first.
struct Workload {
    pid: Pid,
    end: child::LabEnd,
}

const GO: u8 = b'g';

impl Workload {
    fn start(name: &'static str, body: fn(&mut child::ChildEnd) -> i32) -> Result<Self> {
        let link = child::Link::new()?;
        let pid = child::spawn(name, move || {
            let mut end = link.child_side();
            match end.next_command() {
                Some(GO) => body(&mut end),
                _ => 0,
            }
        })?;
        let end = link.lab_side(pid)?;
        Ok(Workload { pid, end })
    }

    fn go(&mut self) -> Result<()> {
        Ok(self.end.send(GO)?)
    }

    fn go_and_wait_ready(&mut self, doing: &str) -> Result<()> {
        self.go()?;
        Ok(self.end.wait_ready(doing, "its error would be above")?)
    }

    /// Waits until the workload has exited, leaving it a zombie (WNOWAIT): the host can read
    /// how it ended in /proc/<pid>/stat until the lab reaps it.
    fn wait_exit_unreaped(&self, doing: &str) -> Result<WaitStatus> {
        let pidfd = child::pidfd_open(self.pid).map_err(LabError::sys("pidfd_open", self.pid))?;
        let deadline = Instant::now() + child::deadline();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(anyhow!("{} did not exit within {:?} while {doing}", self.pid, child::deadline()));
            }
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => break,
                Err(errno) => return Err(LabError::sys("poll", "the hog's pidfd")(errno).into()),
            }
        }
        waitid(Id::Pid(self.pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
            .map_err(|e| LabError::sys("waitid(WNOWAIT)", self.pid)(e).into())
    }
}

/// The bomb: forks until the kernel refuses (or BOMB_FORKS times), then says ready. It
/// and its children ignore SIGTERM and sleep: only a SIGKILL ends them. Each child dies
/// with the bomb (PR_SET_PDEATHSIG), as the bomb dies with the lab.
fn bomb(end: &mut child::ChildEnd) -> i32 {
    // SAFETY: ignoring a signal installs no handler code; the children inherit it.
    let _ = unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) };
    let bomb = nix::unistd::getpid();
    for _ in 0..BOMB_FORKS {
        // SAFETY: the child only sets its name and death signal and pauses.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let _ = child::set_name(BOMB_CHILD_COMM);
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                // The bomb may have died before the line above: then nobody would kill us.
                if nix::unistd::getppid() != bomb {
                    child::exit_now(1);
                }
                loop {
                    pause();
                }
            }
            Ok(ForkResult::Parent { .. }) => {}
            Err(Errno::EAGAIN) => break,
            Err(_) => return 1,
        }
    }
    end.ready();
    loop {
        pause();
    }
}

/// The hog: touches memory 1 MiB at a time, up to HOG_BYTES. Exits 0 if it was let.
fn hog(_: &mut child::ChildEnd) -> i32 {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let chunk = 1 << 20;
    while (kept.len() as u64) * (chunk as u64) < HOG_BYTES {
        // vec![1; n] writes every byte: every page is touched, so it is really charged.
        kept.push(vec![1u8; chunk]);
    }
    std::hint::black_box(&kept);
    0
}

/// The busy loop.
fn spin(_: &mut child::ChildEnd) -> i32 {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Sleeps until a signal ends it.
fn sleeper(_: &mut child::ChildEnd) -> i32 {
    loop {
        pause();
    }
}

// ── Helpers ──────────────────────────────────────────────────────────────────

/// Finds the cgroup layout (statfs magic of /sys/fs/cgroup, then the cgroup mounts) and
/// where the lab is in each hierarchy it uses.
fn detect() -> Result<System> {
    let magic =
        nix::sys::statfs::statfs(CGROUP_ROOT).map_err(LabError::sys("statfs", CGROUP_ROOT))?.filesystem_type().0 as i64;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(LabError::io("read", Path::new("/proc/self/mountinfo")))?;
    let own =
        std::fs::read_to_string("/proc/self/cgroup").map_err(LabError::io("read", Path::new("/proc/self/cgroup")))?;
    // /proc/self/cgroup: "<id>:<controllers>:<path>"; v2's line is "0::<path>".
    let mut v1_paths: BTreeMap<String, String> = BTreeMap::new();
    let mut v2_path = None;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if controllers.is_empty() {
            v2_path = Some(path.to_string());
        }
        for controller in controllers.split(',').filter(|c| !c.is_empty()) {
            v1_paths.insert(controller.to_string(), path.to_string());
        }
    }
    if magic == CGROUP2_SUPER_MAGIC {
        let path = v2_path.ok_or_else(|| anyhow!("/proc/self/cgroup has no v2 line on a cgroup v2 machine"))?;
        let own = Path::new(CGROUP_ROOT).join(path.trim_start_matches('/'));
        return Ok(System {
            version: Version::V2,
            layout: "v2",
            hierarchies: vec![Hierarchy { controllers: CONTROLLERS.to_vec(), own }],
        });
    }
    // v1 (or hybrid): one hierarchy per mount, possibly with co-mounted controllers.
    let mut hierarchies: Vec<Hierarchy> = Vec::new();
    let mut v2_mounted = false;
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else { continue };
        let mut fields = after.split_whitespace();
        let (fs_type, options) = (fields.next().unwrap_or(""), fields.nth(1).unwrap_or(""));
        let mount_point = before.split_whitespace().nth(4).unwrap_or("");
        if fs_type == "cgroup2" {
            v2_mounted = true;
        }
        if fs_type != "cgroup" {
            continue;
        }
        let here: Vec<&'static str> =
            CONTROLLERS.iter().copied().filter(|c| options.split(',').any(|o| o == *c)).collect();
        if here.is_empty() || hierarchies.iter().any(|h| h.controllers.contains(&here[0])) {
            continue;
        }
        let path = v1_paths
            .get(here[0])
            .ok_or_else(|| anyhow!("/proc/self/cgroup does not name the {} hierarchy", here[0]))?;
        let own = Path::new(mount_point).join(path.trim_start_matches('/'));
        hierarchies.push(Hierarchy { controllers: here, own });
    }
    for controller in CONTROLLERS {
        if !hierarchies.iter().any(|h| h.controllers.contains(&controller)) {
            return Err(anyhow!("this machine has no v1 `{controller}` hierarchy mounted under {CGROUP_ROOT}"));
        }
    }
    Ok(System { version: Version::V1, layout: if v2_mounted { "hybrid" } else { "v1" }, hierarchies })
}

/// mkdir(2) of one of the lab's cgroup directories, its rmdir registered at once for every
/// way out of the lab (an error in the next hierarchy, Ctrl-C).
fn make_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir(dir).map_err(LabError::io("mkdir", dir))?;
    cleanup::track_undo(&["rmdir", &dir.to_string_lossy()]);
    Ok(())
}

/// A `lab-limits` that exists already was left by a run of this lab that was stopped
/// before it could remove it: say how to get rid of it.
fn left_from_before(error: anyhow::Error) -> anyhow::Error {
    let exists = error
        .chain()
        .any(|cause| matches!(cause.downcast_ref::<LabError>(), Some(LabError::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::AlreadyExists));
    if exists {
        error.context(format!(
            "{CGROUP_NAME} exists already: made twice by this run, or left by a run of this lab that was stopped \
             before it removed it (a frozen one keeps its processes): `cilab doctor` shows a left one, `cilab doctor \
             --clean` thaws it, ends the lab's processes in it and removes it"
        ))
    } else {
        error
    }
}

/// One write(2) into an existing control file (a cgroup's files are the kernel's: none is
/// ever created).
fn write_control(path: &Path, value: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).map_err(LabError::io("open", path)).with_context(
        || "a control file that does not exist: is the controller enabled for this cgroup (its parent's cgroup.subtree_control on v2)? `cilab run cgroup-limits` sets that up",
    )?;
    file.write_all(value.as_bytes())
        .map_err(LabError::io("write", path))
        .with_context(|| format!("writing {value:?}"))?;
    Ok(())
}

/// Writes a control file that this kernel may not have (memory.memsw.* without swap
/// accounting, memory.swap.max without swap support).
fn write_if_present(path: &Path, value: &str) -> Result<()> {
    if path.exists() {
        write_control(path, value)
    } else {
        Ok(())
    }
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path).map(|t| t.trim().to_string()).unwrap_or_else(|e| format!("(unreadable: {e})"))
}

/// The processes in one of the lab's cgroup directories.
fn procs(dir: &Path) -> Result<Vec<Pid>> {
    let path = dir.join("cgroup.procs");
    let text = std::fs::read_to_string(&path).map_err(LabError::io("read", &path))?;
    Ok(text.split_whitespace().filter_map(|p| p.parse().ok()).map(Pid::from_raw).collect())
}

/// Waits (bounded) until the cgroup's freezer says frozen (or thawed). v2 notifies
/// changes of cgroup.events (poll); v1's freezer.state moves from FREEZING to FROZEN as
/// the kernel gets each task to stop, re-checked each time it is read.
fn wait_freezer(cgroup: &LabCgroup, frozen: bool) -> Result<()> {
    let deadline = Instant::now() + child::deadline();
    let (path, want) = match cgroup.version {
        Version::V2 => (cgroup.dir("freezer")?.join("cgroup.events"), if frozen { "frozen 1" } else { "frozen 0" }),
        Version::V1 => (cgroup.dir("freezer")?.join("freezer.state"), if frozen { "FROZEN" } else { "THAWED" }),
    };
    loop {
        let text = std::fs::read_to_string(&path).map_err(LabError::io("read", &path))?;
        if text.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(anyhow!("{} does not say {want:?} after {:?}: {text:?}", path.display(), child::deadline()));
        }
        match cgroup.version {
            Version::V2 => {
                // kernfs wakes a poller of cgroup.events with POLLPRI when it changes.
                let file = std::fs::File::open(&path).map_err(LabError::io("open", &path))?;
                let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
                let _ = poll(&mut fds, PollTimeout::from(10u8));
            }
            // v1 has no notification: ask again shortly.
            Version::V1 => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Waits (bounded) until no process is left in the cgroup, reaping what dies: the bomb
/// (`first`) and the bomblets it leaves to the lab, their subreaper.
fn wait_empty(cgroup: &LabCgroup, first: Pid) -> Result<()> {
    let deadline = Instant::now() + child::deadline();
    let pids_dir = cgroup.dir("pids")?;
    loop {
        // Reap whatever has died (the bomb, and adopted bomblets); never block.
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let left = procs(pids_dir)?;
        let current = read_trimmed(&pids_dir.join("pids.current"));
        if left.is_empty() && current == "0" {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(anyhow!(
                "{} processes are still in the cgroup {:?} after killing it (pids.current {current}); the bomb was {first}",
                left.len(),
                child::deadline()
            ));
        }
        // Wake when one of them exits.
        let fds: Vec<_> = left.iter().filter_map(|pid| child::pidfd_open(*pid).ok()).collect();
        let mut polls: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
        let _ = poll(&mut polls, PollTimeout::from(10u8));
    }
}

/// The CPU time the cgroup used over `window`, as a share of one CPU.
fn measure_cpu_share(cgroup: &LabCgroup, window: Duration) -> Result<f64> {
    let read = || -> Result<u64> {
        Ok(match cgroup.version {
            Version::V2 => {
                let path = cgroup.dir("cpu")?.join("cpu.stat");
                let text = std::fs::read_to_string(&path).map_err(LabError::io("read", &path))?;
                let usec = text.lines().find_map(|l| l.strip_prefix("usage_usec ")).unwrap_or("0");
                usec.trim().parse::<u64>().unwrap_or(0) * 1000
            }
            Version::V1 => read_trimmed(&cgroup.dir("cpuacct")?.join("cpuacct.usage")).parse().unwrap_or(0),
        })
    };
    let (start, before) = (Instant::now(), read()?);
    std::thread::sleep(window);
    let (after, elapsed) = (read()?, start.elapsed());
    Ok(after.saturating_sub(before) as f64 / elapsed.as_nanos() as f64)
}

/// "R (running)" etc.: the State line of /proc/<pid>/status.
fn process_state(pid: Pid) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("State:").map(|v| v.trim().to_string())))
        .unwrap_or_else(|| "(gone)".to_string())
}

/// True if `pid` (a child of the lab) exits within `within`; it is left unreaped.
fn exited_within(pid: Pid, within: Duration) -> bool {
    let Ok(pidfd) = child::pidfd_open(pid) else { return true };
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let millis = u16::try_from(within.as_millis()).unwrap_or(u16::MAX);
    matches!(poll(&mut fds, PollTimeout::from(millis)), Ok(n) if n > 0)
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}: it was not stopped"),
        WaitStatus::Signaled(_, signal, _) => format!("was killed by {}", signal.as_str()),
        other => format!("ended: {other:?}"),
    }
}
