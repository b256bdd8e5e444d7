//! One run of a lab binary held by the harness: its own scratch dir, cgroup and mount
//! namespace, the handshake at each stage, a deadline on every wait, and a teardown that
//! is verified.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use labkit::protocol::{HoldMessage, CONTINUE};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::LabSpec;
use crate::cgroup::{CgroupSetup, Limits, RunCgroup};
use crate::error::{Error, Result};
use crate::leaks;
use crate::mountns::RunMountNs;
use crate::probe::pidfd::PidFd;
use crate::probe::procfs::{self, HeldNs, NsId};
use crate::registry::{self, RunRecord};
use crate::verdict::redact::{self, Redactor};

/// Test hooks, reachable from `cilab check --fault` (hidden): they break a run on
/// purpose so that the tests can prove teardown and `cilab doctor` work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the lab when it holds at this stage.
    KillLabAt(String),
    /// Stop responding (sleep) when the lab holds at this stage, so that a test can
    /// SIGKILL cilab itself mid-run.
    HangAt(String),
}

impl Fault {
    /// As `--fault` takes it.
    pub fn to_arg(&self) -> String {
        match self {
            Fault::KillLabAt(stage) => format!("kill-lab-at:{stage}"),
            Fault::HangAt(stage) => format!("hang-at:{stage}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How long to wait for the lab to reach each hold point.
    pub hold_timeout: Duration,
    /// How long to wait for the lab to exit once released for the last time.
    pub exit_timeout: Duration,
    pub limits: Limits,
    pub fault: Option<Fault>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            hold_timeout: Duration::from_secs(10),
            exit_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            fault: None,
        }
    }
}

/// What teardown found.
#[derive(Debug, Clone)]
pub struct Teardown {
    pub exit: Option<ExitStatus>,
    /// The lab exited before the teardown (rather than being killed by it): what it left
    /// is its own doing.
    pub exited_by_itself: bool,
    pub leaks: Vec<String>,
    /// The lab's last lines on stderr, all of them read.
    pub narration_tail: Vec<String>,
    /// The commands (comm) of the run's processes the teardown found alive and killed: a
    /// request one of them had in flight (a `docker run`) may still complete outside.
    pub killed: Vec<String>,
}

/// A panic the lab reported (labkit's panic hook writes it on stdout when held): which
/// STUDENT region it happened in picks the hint; it is narration, never evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabPanic {
    pub message: String,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}

impl LabPanic {
    /// Parses one line of a held lab's stdout; `None` if it is not a panic line.
    fn parse(line: &str) -> Option<Self> {
        labkit::protocol::PanicMessage::parse(line).map(|p| LabPanic {
            message: p.message,
            location: Some(p.location),
            region: p.region,
        })
    }

    pub fn describe(&self) -> String {
        let place = match (&self.region, &self.location) {
            (Some(region), _) => format!(" in STUDENT region `{region}`"),
            (None, Some(location)) => format!(" at {location}"),
            (None, None) => String::new(),
        };
        format!("the lab panicked{place}: {}", self.message)
    }
}

/// Runs in progress in this process, for the Ctrl-C handler.
static ACTIVE: Mutex<Vec<RunRecord>> = Mutex::new(Vec::new());
static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

fn active() -> std::sync::MutexGuard<'static, Vec<RunRecord>> {
    ACTIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Kills and removes every run in progress (called on SIGINT/SIGTERM). Returns their ids.
pub fn abort_all() -> Vec<String> {
    let records: Vec<RunRecord> = active().clone();
    for record in &records {
        abort(record);
    }
    records.into_iter().map(|r| r.id).collect()
}

/// Makes cilab the reaper of its labs' orphans: a lab killed mid-run leaves children that
/// the kernel kills (PR_SET_PDEATHSIG) and re-parents; without this they would wait as
/// zombies for the host's init, which on some machines never reaps them.
pub fn become_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(Error::sys("prctl(PR_SET_CHILD_SUBREAPER)", "cilab"))
}

/// Reaps every child cilab still has once a run's cgroup is empty. These are the orphans
/// of cilab's own labs, re-parented to it: nothing else makes cilab their parent. Each is
/// waited for through its pidfd: a killed process leaves the cgroup a moment before it
/// becomes a zombie.
/// They are reaped in whatever order they end: a PID namespace's init (a container's)
/// finishes dying only once the zombies of its namespace, orphans of cilab too, are reaped.
fn reap_orphans() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let own = std::process::id() as i32;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let alive: Vec<PidFd> = procfs::children(own)
            .into_iter()
            .filter(|pid| {
                matches!(waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive))
            })
            .filter_map(|pid| PidFd::open(pid).ok())
            .collect();
        let left = deadline.saturating_duration_since(Instant::now());
        if alive.is_empty() || left.is_zero() {
            return;
        }
        PidFd::wait_any(&alive, left);
    }
}

/// Kills, removes and forgets one run, quietly (Ctrl-C, a run that could not start).
fn abort(record: &RunRecord) {
    let _ = dismantle(record);
}

/// How a leak of a cgroup the lab made in the run's and did not remove begins.
pub const LEFT_CGROUP: &str = "the lab left a cgroup behind";

/// Ends a run on the host: kills what is left in its cgroup, reaps the orphans, removes
/// the cgroup (and any a lab nested in it) and the scratch dir (detaching mounts left in
/// it), and forgets the record. Returns what it had to clean, as leaks.
fn dismantle(record: &RunRecord) -> Vec<String> {
    let mut leaks = Vec::new();
    if let Err(error) = record.cgroup.kill_all(Duration::from_secs(5)) {
        leaks.push(format!("could not empty the run's cgroup: {error}"));
    }
    reap_orphans();
    match record.cgroup.remove() {
        Ok(nested) => leaks.extend(nested.iter().map(|d| format!("{LEFT_CGROUP}: {}", d.display()))),
        Err(error) => leaks.push(format!("could not remove the run's cgroup: {error}")),
    }
    leaks.extend(registry::remove_scratch(&record.scratch));
    active().retain(|r| r.id != record.id);
    record.delete();
    leaks
}

/// Processes still in the run's cgroup once the lab has exited and everything that was
/// dying with it has died: they outlived it. A process is dying when SIGKILL is pending for
/// it (PR_SET_PDEATHSIG queues it as its parent exits; a PID namespace's end does the same),
/// when it has begun to exit (a namespace's init, between taking its own SIGKILL and
/// sending one to the rest of its namespace), or when one of its ancestors in the cgroup is
/// dying; the harness waits on the pidfds of exactly those, and what is left alive and not
/// dying is a leak.
fn outlived(record: &RunRecord) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let statuses: BTreeMap<i32, procfs::ProcStatus> = record
            .cgroup
            .procs()
            .into_iter()
            .filter_map(|pid| procfs::read_status(pid).ok().map(|s| (pid, s)))
            .collect();
        let live = |s: &procfs::ProcStatus| !matches!(s.state, 'Z' | 'X');
        let dying_itself =
            |pid: i32, s: &procfs::ProcStatus| live(s) && (s.pending(libc::SIGKILL) || procfs::is_exiting(pid));
        let dying = |pid: i32| {
            let mut at = pid;
            // Walk up the parents inside the cgroup (bounded: PIDs can form no cycle).
            for _ in 0..statuses.len() {
                match statuses.get(&at) {
                    Some(status) if dying_itself(at, status) => return true,
                    Some(status) => at = status.ppid,
                    None => return false,
                }
            }
            false
        };
        let waiting: Vec<PidFd> = statuses
            .iter()
            .filter(|(pid, s)| live(s) && dying(**pid))
            .filter_map(|(pid, _)| PidFd::open(*pid).ok())
            .collect();
        if waiting.is_empty() || Instant::now() >= deadline {
            return statuses
                .iter()
                .filter(|(pid, s)| live(s) && (waiting.is_empty() || !dying(**pid)))
                .map(|(pid, s)| format!("process {pid} ({}) was still running after the lab exited", s.name))
                .collect();
        }
        // Wake when one of them exits, then look again: its death may start others'.
        PidFd::wait_any(&waiting, deadline.saturating_duration_since(Instant::now()));
    }
}

/// Makes a run's scratch dir and cgroup. The record is saved first, so that a `cilab
/// doctor` running meanwhile knows that what is named after this id belongs to a live
/// run; it is registered for the Ctrl-C handler again once it knows its cgroup.
fn open_run(lab: &str, id: &str, setup: &CgroupSetup, limits: &Limits) -> Result<RunRecord> {
    let own_pid = std::process::id() as i32;
    let mut record = RunRecord {
        id: id.to_string(),
        lab: lab.to_string(),
        owner_pid: own_pid,
        owner_start_time: procfs::start_time(own_pid).unwrap_or_default(),
        scratch: registry::scratch_root().join(id),
        cgroup: RunCgroup::default(),
    };
    record.save()?;
    active().push(record.clone());
    let made = registry::create_scratch_dir(&record.scratch).and_then(|()| RunCgroup::create(setup, id, limits));
    match made {
        Ok(cgroup) => {
            record.cgroup = cgroup;
            for registered in active().iter_mut().filter(|r| r.id == record.id) {
                registered.cgroup = record.cgroup.clone();
            }
            if let Err(error) = record.save() {
                abort(&record);
                return Err(error);
            }
            Ok(record)
        }
        Err(error) => {
            abort(&record);
            Err(error)
        }
    }
}

pub struct LabRun {
    record: RunRecord,
    child: Child,
    lab_fd: Option<PidFd>,
    stdin: Option<ChildStdin>,
    protocol: Receiver<String>,
    narration: Arc<Mutex<VecDeque<String>>>,
    /// Joined at teardown, so that the lab's last words (an error as it exits) are kept.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    /// The lab's host: the run's own mount namespace (see `mountns`).
    mount_ns: RunMountNs,
    /// Namespaces the checks looked at, held open so that their identity stays theirs.
    namespaces: Vec<HeldNs>,
    redactor: Redactor,
    claims: Vec<(String, Value)>,
    stage: Option<String>,
    panic: Option<LabPanic>,
    options: RunOptions,
    /// The harness killed the lab (an injected fault): what it could not clean up is not its leak.
    killed_by_harness: bool,
    torn_down: bool,
}

impl LabRun {
    /// Makes the scratch dir, cgroup and mount namespace, lets `prepare` plant files in
    /// the scratch dir, and starts the lab binary in hold mode inside all three.
    pub fn start(
        lab: &str,
        binary: &Path,
        setup: &CgroupSetup,
        options: RunOptions,
        prepare: fn(&Path) -> Result<()>,
        args: &[&str],
    ) -> Result<Self> {
        if !binary.exists() {
            return Err(Error::Lab {
                lab: lab.to_string(),
                message: format!("{} does not exist: build it with `cargo build --workspace`", binary.display()),
            });
        }
        become_subreaper()?;
        let id = format!("{lab}-{}-{}", std::process::id(), RUN_COUNTER.fetch_add(1, Ordering::SeqCst));
        let mut record = open_run(lab, &id, setup, &options.limits)?;
        let started = prepare(&record.scratch).and_then(|()| make_namespaces(&mut record)).and_then(|mount_ns| {
            let command = held_command(binary, &record.scratch, args, options.hold_timeout);
            let child = spawn_in_run(command, &record, &mount_ns, true)?;
            Ok((mount_ns, child))
        });
        let (mount_ns, child) = match started {
            Ok(started) => started,
            Err(error) => {
                abort(&record);
                return Err(error);
            }
        };
        let mut redactor = Redactor::default();
        redactor.path(&record.scratch, redact::SCRATCH);
        redactor.number(child.id().into(), redact::HOST_PID);
        let lab_fd = PidFd::open(child.id() as i32).ok();
        let (mut child, readers) = match attach_readers(child) {
            Ok(attached) => attached,
            Err((mut child, error)) => {
                let _ = child.kill();
                let _ = child.wait();
                abort(&record);
                return Err(error);
            }
        };
        let stdin = child.stdin.take();
        Ok(LabRun {
            record,
            child,
            lab_fd,
            stdin,
            protocol: readers.protocol,
            narration: readers.narration,
            stderr_reader: readers.stderr_reader,
            mount_ns,
            namespaces: Vec::new(),
            redactor,
            claims: Vec::new(),
            stage: None,
            panic: None,
            options,
            killed_by_harness: false,
            torn_down: false,
        })
    }

    /// The lab process's PID on the host.
    /// The lab's name.
    pub fn lab(&self) -> &str {
        &self.record.lab
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn scratch(&self) -> &Path {
        &self.record.scratch
    }

    /// The run's own cgroup: its directory in each hierarchy.
    pub fn cgroup(&self) -> &RunCgroup {
        &self.record.cgroup
    }

    pub fn cgroup_limits(&self) -> &[String] {
        &self.record.cgroup.limits_applied
    }

    /// What the lab claimed at each stage (narration, never evidence).
    pub fn claims(&self) -> &[(String, Value)] {
        &self.claims
    }

    /// The last lines the lab wrote on stderr (so far).
    fn narration_tail(&self, lines: usize) -> Vec<String> {
        let narration = self.narration.lock().unwrap_or_else(|p| p.into_inner());
        narration.iter().skip(narration.len().saturating_sub(lines)).cloned().collect()
    }

    /// The lab's host mount namespace: the run's own (see `mountns`).
    pub fn mount_ns(&self) -> &RunMountNs {
        &self.mount_ns
    }

    /// The namespace of `kind` that the lab runs in as its host: the run's mount
    /// namespace for `mnt`, the harness's own for every other kind.
    pub fn host_ns(&self, kind: &'static str) -> Result<NsId> {
        if kind == "mnt" {
            return Ok(self.mount_ns.id());
        }
        procfs::ns_id(std::process::id() as i32, kind)?
            .ok_or_else(|| Error::Harness(format!("the harness has no {kind} namespace link")))
    }

    /// The namespace of `kind` that `pid` is in, held open until the run ends so that its
    /// identity cannot pass to another; `None` if the process or link is gone. A namespace
    /// other than the host's is the lab's: teardown checks that no process is left in it.
    pub fn namespace_of(&mut self, pid: i32, kind: &'static str) -> Result<Option<NsId>> {
        let Some(held) = HeldNs::open(pid, kind)? else {
            return Ok(None);
        };
        let id = held.id;
        self.redactor.number(id.ino, "[namespace]");
        if !self.namespaces.iter().any(|n| n.kind == kind && n.id == id) {
            self.namespaces.push(held);
        }
        Ok(Some(id))
    }

    /// What a forked probe needs to enter this run: the run's cgroup (so that teardown kills
    /// whatever it leaves) and its mount namespace (so that whatever it mounts stays there).
    /// Opened here, before the fork; see [`RunDoor::enter`].
    pub fn door(&self) -> Result<RunDoor> {
        Ok(RunDoor {
            procs: self.record.cgroup.open_procs_files()?,
            mount_ns: self.mount_ns.file().try_clone().map_err(Error::io("dup", "the run's mount namespace"))?,
        })
    }

    /// The panic the lab reported, if it did.
    pub fn panic(&self) -> Option<&LabPanic> {
        self.panic.as_ref()
    }

    /// A host PID the checks looked at: it never appears raw in an observation.
    pub fn track_pid(&mut self, pid: i32) {
        if let Ok(pid) = u64::try_from(pid) {
            self.redactor.number(pid, redact::HOST_PID);
        }
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Waits until the lab holds at `stage`.
    pub fn await_hold(&mut self, stage: &str) -> Result<()> {
        let deadline = Instant::now() + self.options.hold_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.protocol.recv_timeout(left) {
                Ok(line) => {
                    if let Some(panic) = LabPanic::parse(&line) {
                        // The first panic is the cause; a parent's panic may follow its child's.
                        self.panic.get_or_insert(panic);
                        continue;
                    }
                    let Some(message) = HoldMessage::parse(&line) else {
                        self.push_narration(line);
                        continue;
                    };
                    self.stage = Some(message.stage.clone());
                    self.claims.push((message.stage.clone(), message.claims));
                    if message.stage != stage {
                        return Err(
                            self.failure(format!("expected it to hold at `{stage}`, it held at `{}`", message.stage))
                        );
                    }
                    self.apply_fault(stage)?;
                    return Ok(());
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(
                        self.failure(format!("it did not reach `{stage}` within {:?}", self.options.hold_timeout))
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if let Some(panic) = &self.panic {
                        return Err(self.failure(format!("{} (before reaching `{stage}`)", panic.describe())));
                    }
                    // Its stdout is closed; give the exit status a moment to be there.
                    if let Some(fd) = &self.lab_fd {
                        fd.wait_exit(Duration::from_secs(1));
                    }
                    let status = self.child.try_wait().ok().flatten();
                    return Err(self.failure(format!(
                        "it exited ({}) before reaching `{stage}`",
                        status.map(|s| s.to_string()).unwrap_or_else(|| "closed its stdout".into())
                    )));
                }
            }
        }
    }

    fn apply_fault(&mut self, stage: &str) -> Result<()> {
        match &self.options.fault {
            Some(Fault::KillLabAt(at)) if at == stage => {
                let _ = nix::sys::signal::kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
                self.killed_by_harness = true;
                Err(self.failure(format!("fault injected: SIGKILL to the lab at `{stage}`")))
            }
            Some(Fault::HangAt(at)) if at == stage => {
                eprintln!("cilab: fault injected: hanging at `{stage}` (kill me)");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            _ => Ok(()),
        }
    }

    /// Lets the held lab go on to its next stage.
    pub fn release(&mut self) -> Result<()> {
        let stage = self.stage.clone().unwrap_or_default();
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.failure("its stdin is already closed".into()));
        };
        if let Err(e) = writeln!(stdin, "{CONTINUE}").and_then(|()| stdin.flush()) {
            return Err(self.failure(format!("could not release it at `{stage}`: {e}")));
        }
        Ok(())
    }

    /// Closes the lab's stdin and waits (on its pidfd) for it to exit.
    pub fn finish(&mut self) -> Result<ExitStatus> {
        self.stdin = None;
        let exited = self.lab_fd.as_ref().is_none_or(|fd| fd.wait_exit(self.options.exit_timeout));
        match self.child.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) if !exited => {
                Err(self.failure(format!("it did not exit within {:?} of its last release", self.options.exit_timeout)))
            }
            Ok(None) => self.child.wait().map_err(Error::io("wait for", format!("lab {}", self.record.lab))),
            Err(e) => Err(Error::io("wait for", format!("lab {}", self.record.lab))(e)),
        }
    }

    /// Kills whatever is left, checks what the run changed in the lab's host (its mount
    /// namespace, by mount id), removes the cgroup and scratch dir, and checks that nothing
    /// is left. Leaks are returned, never hidden.
    pub fn teardown(mut self) -> Teardown {
        self.torn_down = true;
        self.stdin = None;
        // A lab that exited by itself must have taken its processes with it.
        let exited = self.child.try_wait().ok().flatten();
        let killed = commands_in(&self.record.cgroup);
        let mut leaks = if exited.is_some() { outlived(&self.record) } else { Vec::new() };
        if exited.is_none() {
            let _ = self.record.cgroup.kill_all(Duration::from_secs(5));
        }
        // std reaps the lab itself, before `dismantle` reaps everything else.
        let exit = exited.or_else(|| self.child.wait().ok());
        leaks.extend(host_changes(&self.mount_ns));
        let dismantled = dismantle(&self.record);
        // A lab the harness killed (an injected fault) had no chance to remove the cgroups
        // it made: they are removed all the same, and not charged to it.
        leaks.extend(dismantled.into_iter().filter(|l| !(self.killed_by_harness && l.starts_with(LEFT_CGROUP))));
        leaks.extend(leaks::processes_left(&self.record.cgroup, &self.namespaces));
        leaks.extend(leaks::files_left(&self.record.cgroup, &self.record.scratch));
        leaks.dedup();
        // Every process holding the lab's stderr is gone now: the reader meets its end.
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        Teardown {
            exit,
            exited_by_itself: exited.is_some() && !self.killed_by_harness,
            leaks,
            narration_tail: self.narration_tail(NARRATION_TAIL),
            killed,
        }
    }

    fn push_narration(&self, line: String) {
        keep_line(&self.narration, line);
    }

    fn failure(&self, message: String) -> Error {
        Error::Lab { lab: self.record.lab.clone(), message }
    }
}

impl Drop for LabRun {
    fn drop(&mut self) {
        if !self.torn_down {
            // Only reached on a panic or an early return that skipped teardown: still clean.
            let _ = self.record.cgroup.kill_all(Duration::from_secs(5));
            let _ = self.child.wait();
            abort(&self.record);
        }
    }
}

/// The run's mount namespace, and for a lab that makes cgroups of its own (its run has a
/// leaf for it) the run's cgroup namespace; only then does the run hand its controllers
/// down (v2), as no process may be in it from then on.
fn make_namespaces(record: &mut RunRecord) -> Result<RunMountNs> {
    let own_cgroups = record.cgroup.dirs.iter().any(|d| d.leaf.is_some());
    let mount_ns = RunMountNs::create(&record.scratch, own_cgroups.then_some(&record.cgroup))?;
    if own_cgroups {
        record.cgroup.hand_down();
    }
    Ok(mount_ns)
}

/// Starts `command` inside the run before its first instruction: between fork and exec
/// the child writes "0" (itself) into each of the run's cgroup.procs, enters the run's
/// cgroup namespace (if it has one) and mount namespace and changes into the scratch dir, using descriptors and a path the
/// parent prepared, so no allocation happens after fork. If cilab dies, even by SIGKILL,
/// the kernel kills the lab (PR_SET_PDEATHSIG). With `own_group`, the lab gets its own
/// process group, so Ctrl-C in the terminal reaches only cilab.
fn spawn_in_run(mut command: Command, record: &RunRecord, mount_ns: &RunMountNs, own_group: bool) -> Result<Child> {
    let procs_files = record.cgroup.open_procs_files()?;
    let raw_fds: Vec<i32> = procs_files.iter().map(|f| f.as_raw_fd()).collect();
    let ns_fd = mount_ns.file().as_fd().as_raw_fd();
    let cgroup_ns_fd = mount_ns.cgroup_ns().map(|f| f.as_fd().as_raw_fd());
    let workdir = CString::new(record.scratch.as_os_str().as_bytes())
        .map_err(|_| Error::parse("scratch path", record.scratch.display().to_string()))?;
    // SAFETY: the closure only makes syscalls (write, setns, chdir, setpgid, prctl) on data
    // prepared before fork; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            for fd in &raw_fds {
                let fd = BorrowedFd::borrow_raw(*fd);
                nix::unistd::write(fd, b"0").map_err(std::io::Error::from)?;
            }
            if let Some(fd) = cgroup_ns_fd {
                nix::sched::setns(BorrowedFd::borrow_raw(fd), nix::sched::CloneFlags::CLONE_NEWCGROUP)
                    .map_err(std::io::Error::from)?;
            }
            nix::sched::setns(BorrowedFd::borrow_raw(ns_fd), nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(std::io::Error::from)?;
            nix::unistd::chdir(workdir.as_c_str()).map_err(std::io::Error::from)?;
            // The same umask for every run: what the lab makes, the harness's unprivileged
            // probes (uid 65534) can reach, whatever the caller's umask.
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
            if own_group {
                nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(std::io::Error::from)?;
            }
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let program = command.get_program().to_owned();
    let child = command.spawn().map_err(|e| match e.raw_os_error() {
        Some(libc::EAGAIN | libc::ENOMEM) => {
            Error::Harness(format!("could not start {}: {e}", Path::new(&program).display()))
        }
        _ => Error::io("start", program)(e),
    })?;
    drop(procs_files);
    Ok(child)
}

/// The lab in hold mode. Its own waits for its children (labkit's deadline) stretch with
/// `hold_timeout`, the harness's wait for it: where the harness waits longer (a slow
/// machine, an emulated guest), so does the lab.
fn held_command(binary: &Path, scratch: &Path, args: &[&str], hold_timeout: Duration) -> Command {
    let mut command = Command::new(binary);
    command
        .env(labkit::child::DEADLINE_ENV, hold_timeout.as_secs().max(1).to_string())
        .arg("--hold")
        .arg("--workdir")
        .arg(scratch)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// How every change to the lab's host begins, as a leak.
pub const HOST_CHANGED: &str = "the lab's host mount namespace changed";

/// What the run changed in the lab's host, as leaks (each begins with `HOST_CHANGED`).
fn host_changes(mount_ns: &RunMountNs) -> Vec<String> {
    match mount_ns.changes() {
        Ok(changes) => changes.describe().into_iter().map(|c| format!("{HOST_CHANGED}: {c}")).collect(),
        Err(error) => vec![format!("could not re-read the run's mount table: {error}")],
    }
}

/// Descriptors into a run, for a forked probe that runs code the lab controls.
#[derive(Debug)]
pub struct RunDoor {
    procs: Vec<std::fs::File>,
    mount_ns: std::fs::File,
}

impl RunDoor {
    /// In the forked probe: join the run's cgroup and enter its mount namespace.
    pub fn enter(&self) -> nix::Result<()> {
        for file in &self.procs {
            nix::unistd::write(file, b"0")?;
        }
        nix::sched::setns(self.mount_ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNS)
    }
}

/// Set while a person runs a lab: Ctrl-C is then the lab's to handle (it cleans up and
/// exits), and cilab tears down after it.
pub static BY_HAND: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `cilab run`: the lab binary on the terminal, narrating, in its own cgroup and scratch
/// dir, so that whatever it leaves (even after Ctrl-C) is killed and removed after it.
/// How `run_by_hand` runs the lab.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByHand {
    /// The lab pauses before each step until Enter.
    pub pause_each_step: bool,
    /// The lab's output is discarded and Ctrl-C stays cilab's (the mistake corpus).
    pub quiet: bool,
    /// Kill the lab if it has not exited by then; the teardown says so.
    pub deadline: Option<Duration>,
    /// Arguments after the lab's own (a variant's, such as `--docker`).
    pub args: &'static [&'static str],
}

pub fn run_by_hand(spec: &LabSpec, binary: &Path, setup: &CgroupSetup, how: ByHand) -> Result<Teardown> {
    let lab = spec.name;
    if !how.quiet {
        BY_HAND.store(true, Ordering::SeqCst);
    }
    become_subreaper()?;
    let id = format!("{lab}-{}-by-hand-{}", std::process::id(), RUN_COUNTER.fetch_add(1, Ordering::SeqCst));
    let limits = Limits { lab_controllers: spec.needs.cgroup_controllers, ..Limits::default() };
    let mut record = open_run(lab, &id, setup, &limits)?;
    let mount_ns = match make_namespaces(&mut record) {
        Ok(ns) => ns,
        Err(error) => {
            abort(&record);
            return Err(error);
        }
    };
    let mut command = Command::new(binary);
    command.arg("--workdir").arg(&record.scratch);
    if how.pause_each_step {
        command.arg("--step");
    }
    command.args(how.args);
    if how.quiet {
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    }
    let mut timed_out = false;
    let mut killed = Vec::new();
    let exit = spawn_in_run(command, &record, &mount_ns, false).and_then(|mut child| {
        if let (Some(deadline), Ok(fd)) = (how.deadline, PidFd::open(child.id() as i32)) {
            if !fd.wait_exit(deadline) {
                timed_out = true;
                killed = commands_in(&record.cgroup);
                let _ = record.cgroup.kill_all(Duration::from_secs(5));
            }
        }
        child.wait().map_err(Error::io("wait for", binary))
    });
    killed.extend(commands_in(&record.cgroup));
    let mut leaks = Vec::new();
    if timed_out {
        leaks.push(format!("the lab did not exit within {:?}: it was killed", how.deadline.unwrap_or_default()));
    }
    if exit.is_ok() && !timed_out {
        leaks.extend(outlived(&record));
    }
    leaks.extend(host_changes(&mount_ns));
    leaks.extend(dismantle(&record));
    drop(mount_ns);
    leaks.extend(leaks::files_left(&record.cgroup, &record.scratch));
    let outside = (spec.observer)().clean_up_outside(&record.scratch, &killed);
    if !timed_out {
        leaks.extend(outside);
    }
    Ok(Teardown { exit: Some(exit?), exited_by_itself: !timed_out, leaks, narration_tail: Vec::new(), killed })
}

/// The commands (comm) of the processes in a run's cgroup.
pub fn commands_in(cgroup: &RunCgroup) -> Vec<String> {
    cgroup.procs().into_iter().filter_map(procfs::comm).collect()
}

/// The narration a run keeps: the last lines only, whatever a lab prints.
const NARRATION_LINES_KEPT: usize = 200;
/// How many of those a report shows when a run failed.
const NARRATION_TAIL: usize = 15;

fn keep_line(narration: &Mutex<VecDeque<String>>, line: String) {
    let mut lines = narration.lock().unwrap_or_else(|p| p.into_inner());
    if lines.len() >= NARRATION_LINES_KEPT {
        lines.pop_front();
    }
    lines.push_back(line);
}

/// Protocol lines waiting for the harness; a lab that writes more waits.
const PROTOCOL_LINES_QUEUED: usize = 256;
/// The longest line kept from a lab's output; the rest of a longer one is dropped.
const LINE_BYTES_KEPT: usize = 16 * 1024;

/// The next line of a lab's output, at most `LINE_BYTES_KEPT` bytes of it (the rest of the
/// line is read and dropped), lossily decoded; `None` at the end.
fn read_bounded_line(reader: &mut impl BufRead) -> Option<String> {
    let mut kept = Vec::new();
    let mut read_any = false;
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if buffer.is_empty() {
            break;
        }
        read_any = true;
        let (chunk, ends_line) = match buffer.iter().position(|b| *b == b'\n') {
            Some(at) => (&buffer[..at], Some(at + 1)),
            None => (buffer, None),
        };
        let room = LINE_BYTES_KEPT.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = ends_line.unwrap_or(buffer.len());
        reader.consume(used);
        if ends_line.is_some() {
            break;
        }
    }
    read_any.then(|| String::from_utf8_lossy(&kept).into_owned())
}

struct Readers {
    protocol: Receiver<String>,
    narration: Arc<Mutex<VecDeque<String>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

/// One thread per output stream: stdout lines go to a channel (protocol), stderr lines
/// are kept as narration. A thread that cannot start (a tight pids limit) is the harness's
/// failure, returned with the child so that the caller can end it.
fn attach_readers(mut child: Child) -> std::result::Result<(Child, Readers), (Child, Error)> {
    // Bounded: a lab that floods its stdout waits for the harness, it cannot fill its memory.
    let (sender, receiver) = std::sync::mpsc::sync_channel(PROTOCOL_LINES_QUEUED);
    let narration = Arc::new(Mutex::new(VecDeque::new()));
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let spawned = std::thread::Builder::new()
        .name("lab-stdout".into())
        .spawn(move || {
            if let Some(stdout) = stdout {
                let mut reader = BufReader::new(stdout);
                while let Some(line) = read_bounded_line(&mut reader) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            }
        })
        .and_then(|_| {
            let narration = Arc::clone(&narration);
            std::thread::Builder::new().name("lab-stderr".into()).spawn(move || {
                if let Some(stderr) = stderr {
                    let mut reader = BufReader::new(stderr);
                    while let Some(line) = read_bounded_line(&mut reader) {
                        keep_line(&narration, line);
                    }
                }
            })
        });
    match spawned {
        Ok(stderr_reader) => Ok((child, Readers { protocol: receiver, narration, stderr_reader: Some(stderr_reader) })),
        Err(e) => Err((child, Error::Harness(format!("could not start a thread to read the lab's output: {e}")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lab_line_is_kept_up_to_its_bound_and_the_next_line_is_intact() {
        let flood = format!("{}\nnext\nlast without newline", "x".repeat(LINE_BYTES_KEPT * 3));
        let mut reader = BufReader::with_capacity(1024, flood.as_bytes());
        assert_eq!(read_bounded_line(&mut reader).map(|l| l.len()), Some(LINE_BYTES_KEPT));
        assert_eq!(read_bounded_line(&mut reader).as_deref(), Some("next"));
        assert_eq!(read_bounded_line(&mut reader).as_deref(), Some("last without newline"));
        assert_eq!(read_bounded_line(&mut reader), None);
    }

    /// The lab's own waits for its children follow the harness's hold timeout (labkit reads
    /// the variable; `labkit::child::deadline_from` is tested there).
    #[test]
    fn a_held_lab_is_told_the_hold_timeout_for_its_own_waits() {
        let hold_timeout = Duration::from_secs(180);
        let command = held_command(Path::new("/lab"), Path::new("/scratch"), &[], hold_timeout);
        let told: Vec<_> = command.get_envs().filter(|(name, _)| *name == labkit::child::DEADLINE_ENV).collect();
        assert_eq!(told, [(std::ffi::OsStr::new(labkit::child::DEADLINE_ENV), Some(std::ffi::OsStr::new("180")))]);
        assert_eq!(labkit::child::deadline_from(Some("180")), hold_timeout);
    }
}
