//! Checks for lab pid-ns. Everything here is read from the host: /proc/<pid>/status and
//! ns links, the proc filesystem the init sees through /proc/<init>/root, the run's mount
//! table, signals the harness sends with pidfds, the kernel's siginfo at the signal-delivery
//! stop (ptrace), and syscalls the harness makes itself from inside the namespace (setns in
//! a forked child). The lab's own narration and its handler's log decide nothing.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use labkit::protocol::pid_ns::*;

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use super::{errno_name, find_child_named};
use crate::catalog::Observer;
use crate::error::{Error, Result};
use crate::facts::{Fact, Facts, Relation};
use crate::probe::forked;
use crate::probe::pidfd::PidFd;
use crate::probe::procfs::{self, NsId, ProcStatus};
use crate::run::LabRun;
use crate::verdict::VerdictSpec;

/// The lab's `pid_for_children` right after the unshare, before any fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForChildren {
    /// ENOENT: a new namespace that has no init yet.
    NoInitYet,
    /// The host's PID namespace: no new namespace was asked for.
    Host,
    /// Another namespace that already has processes.
    Other,
}

/// What an init had done about SIGTERM and SIGINT before the harness sent them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    /// No handler, not ignored, not blocked: whatever happens is the kernel's doing.
    Default,
    Caught,
    Ignored,
    Blocked,
}

/// What became of a signal right after the harness sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfterSignal {
    /// Neither pending nor fatal: the kernel dropped it at send time.
    Dropped,
    /// Queued and waiting (blocked, or not yet delivered).
    Pending,
    /// A fatal default action: SIGKILL is queued for the whole process.
    Dying,
    Dead,
}

// ── facts, by stage ──────────────────────────────────────────────────────────────
const LAB_PID_NS_AT_UNSHARE: Fact<Relation> = Fact::new("unshared.lab_pid_ns_vs_host");
const FOR_CHILDREN_AT_UNSHARE: Fact<ForChildren> = Fact::new("unshared.pid_for_children_before_first_fork");

const LAB_PID_NS: Fact<Relation> = Fact::new("init-running.lab_pid_ns_vs_host");
const LAB_FOR_CHILDREN_VS_INIT: Fact<Relation> = Fact::new("init-running.lab_pid_for_children_vs_init_ns");
const INIT_PID_NS: Fact<Relation> = Fact::new("init-running.init_pid_ns_vs_host");
const INIT_NSPID_LEVELS: Fact<usize> = Fact::new("init-running.init_nspid_levels");
const INIT_PID_INSIDE: Fact<i32> = Fact::new("init-running.init_pid_inside");
const MEMBERS: Fact<Vec<String>> = Fact::new("init-running.members");
const INIT_MNT_NS: Fact<Relation> = Fact::new("init-running.init_mnt_ns_vs_host");
const INIT_MNT_NS_VS_LAB: Fact<Relation> = Fact::new("init-running.init_mnt_ns_vs_lab");
const PROC_MOUNT: Fact<String> = Fact::new("init-running.proc_inside_mount");
const PROC_PID_NS: Fact<Option<Relation>> = Fact::new("init-running.proc_inside_pid_ns_vs_init");
const PROC_LISTS: Fact<Vec<i32>> = Fact::new("init-running.proc_inside_lists");
const PROC_LISTS_MEMBERS: Fact<bool> = Fact::new("init-running.proc_inside_equals_namespace_members");
const HOST_MOUNT_CHANGES: Fact<Vec<String>> = Fact::new("init-running.host_mount_changes");
const ORPHAN_PARENT_BEFORE: Fact<bool> = Fact::new("init-running.orphan_parent_is_pidns_parent");
const DISPOSITION_BEFORE: Fact<Disposition> = Fact::new("init-running.init_term_int_disposition");
const AFTER_TERM_INT: Fact<AfterSignal> = Fact::new("init-running.sigterm_sigint_without_handler");

const PARENT_GONE: Fact<bool> = Fact::new("orphaned.parent_gone");
const ORPHAN_ALIVE: Fact<bool> = Fact::new("orphaned.orphan_alive");
const ORPHAN_PPID_IS_INIT: Fact<bool> = Fact::new("orphaned.orphan_ppid_is_init");

const CATCHES_TERM_INT: Fact<bool> = Fact::new("handler-installed.init_catches_term_int");
const KERNEL_SIGINFO: Fact<BTreeMap<String, String>> = Fact::new("handler-installed.kernel_siginfo");
const HANDLER_RETURNED: Fact<BTreeMap<String, String>> = Fact::new("handler-installed.handler_run");
const ALIVE_AFTER_HANDLERS: Fact<bool> = Fact::new("handler-installed.init_alive_after");
const QUEUED_VALUES_WRITTEN: Fact<bool> =
    Fact::new("handler-installed.handler_wrote_the_values_queued_with_the_signals");
const KILL_HOST_FROM_INSIDE: Fact<String> = Fact::new("handler-installed.kill_host_pid_from_inside");
const KILLED_INIT_DIED: Fact<bool> = Fact::new("handler-installed.sigkill_init_died");
const MEMBERS_ALIVE_BEFORE_KILL: Fact<usize> = Fact::new("handler-installed.sigkill_other_members_alive_before");
const MEMBERS_DIED: Fact<bool> = Fact::new("handler-installed.sigkill_other_members_died");
const SURVIVORS: Fact<usize> = Fact::new("handler-installed.sigkill_survivors");

const FORK_INTO_DEAD_NS: Fact<String> = Fact::new("init-gone.fork_into_namespace");

pub const VERDICTS: [VerdictSpec; 10] = [
    VerdictSpec {
        id: "caller-stays",
        claim: "after unshare(CLONE_NEWPID) the lab itself stays in the host's PID namespace; only its children enter the new one",
        points: 2,
        region: Some("unshare-pid"),
        requires: &[],
        hint: "compare /proc/<lab>/ns/pid with /proc/<lab>/ns/pid_for_children after the unshare: which one changed?",
        decide: |e| {
            Some(
                e.get(LAB_PID_NS_AT_UNSHARE)? == Relation::Same
                    && e.get(FOR_CHILDREN_AT_UNSHARE)? == ForChildren::NoInitYet
                    && e.get(LAB_PID_NS)? == Relation::Same
                    && e.get(LAB_FOR_CHILDREN_VS_INIT)? == Relation::Same
                    && e.get(INIT_PID_NS)? == Relation::Differs,
            )
        },
    },
    VerdictSpec {
        id: "init-is-pid-1",
        claim: "the namespace's first process is PID 1 inside and another PID on the host (NSpid has both)",
        points: 2,
        region: Some("fork-init"),
        requires: &[],
        hint: "fork after unshare(CLONE_NEWPID); the child, not the caller, is PID 1 (grep NSpid /proc/<pid>/status)",
        decide: |e| Some(e.get(INIT_NSPID_LEVELS)? == 2 && e.get(INIT_PID_INSIDE)? == 1),
    },
    VerdictSpec {
        id: "private-proc",
        claim: "a proc filesystem mounted in the init's own mount namespace lists only the namespace's processes",
        points: 2,
        region: Some("private-proc"),
        requires: &["init-is-pid-1"],
        hint: "the init needs its own mount namespace and a fresh mount of type proc on /proc, made from inside the new PID namespace",
        decide: |e| {
            Some(
                e.get(INIT_MNT_NS)? == Relation::Differs
                    && e.get(INIT_MNT_NS_VS_LAB)? == Relation::Differs
                    && e.get(PROC_MOUNT)? == super::PROC_MOUNTED
                    && e.get(PROC_PID_NS)? == Some(Relation::Same)
                    && e.get(PROC_LISTS_MEMBERS)?,
            )
        },
    },
    VerdictSpec {
        id: "host-untouched",
        claim: "the lab's host (the run's mount namespace) keeps its /proc and every mount while the lab runs",
        points: 1,
        region: Some("private-proc"),
        requires: &[],
        hint: "a mount made outside a mount namespace of your own, or before / is made MS_REC|MS_PRIVATE there, lands on the host",
        decide: |e| Some(e.get(HOST_MOUNT_CHANGES)?.is_empty()),
    },
    VerdictSpec {
        id: "signals-ignored",
        claim: "SIGTERM and SIGINT sent from the host to the namespace init without a handler are dropped by the kernel",
        points: 2,
        region: Some("install-handlers"),
        requires: &["init-is-pid-1", "handler-gets-signal"],
        hint: "until the harness has sent these, the init must neither catch, ignore nor block them: SigCgt, SigIgn and SigBlk in its status say what it did",
        decide: |e| Some(e.get(DISPOSITION_BEFORE)? == Disposition::Default && e.get(AFTER_TERM_INT)? == AfterSignal::Dropped),
    },
    VerdictSpec {
        id: "handler-gets-signal",
        claim: "with SA_SIGINFO handlers installed, SIGTERM and SIGINT from the host reach the init's handlers, which return, read their siginfo, and get si_pid 0 from the kernel",
        points: 2,
        region: Some("install-handlers"),
        requires: &[],
        hint: "install `record_sender` for both signals with sigaction(SA_SIGINFO); it must return (not exit). The harness also queues each signal with a random value (sigqueue(3)): only an SA_SIGINFO handler is handed it",
        decide: |e| {
            let both = |m: BTreeMap<String, String>, want: &str| m.len() == 2 && m.values().all(|v| v == want);
            Some(
                e.get(CATCHES_TERM_INT)?
                    && both(e.get(KERNEL_SIGINFO)?, "si_pid 0")
                    && both(e.get(HANDLER_RETURNED)?, "returned")
                    && e.get(QUEUED_VALUES_WRITTEN)?
                    && e.get(ALIVE_AFTER_HANDLERS)?,
            )
        },
    },
    VerdictSpec {
        id: "orphan-reparented",
        claim: "an orphan inside the namespace is re-parented to the namespace init",
        points: 2,
        region: Some("make-orphan"),
        requires: &["init-is-pid-1"],
        hint: "the orphan must be a child of pidns-parent that survives its parent's death (no PR_SET_PDEATHSIG); then its PPid becomes the init's",
        decide: |e| {
            Some(
                e.get(ORPHAN_PARENT_BEFORE)?
                    && e.get(PARENT_GONE)?
                    && e.get(ORPHAN_ALIVE)?
                    && e.get(ORPHAN_PPID_IS_INIT)?,
            )
        },
    },
    VerdictSpec {
        id: "cannot-signal-host",
        claim: "a process inside the namespace cannot signal a host process it cannot see (ESRCH)",
        points: 0,
        region: None,
        requires: &[],
        hint: "kill(2) looks the PID up in the caller's namespace; a host PID has no meaning inside",
        decide: |e| Some(e.get(KILL_HOST_FROM_INSIDE)? == "ESRCH"),
    },
    VerdictSpec {
        id: "sigkill-kills-all",
        claim: "SIGKILL from the host kills the init, and every other process in the namespace dies with it",
        points: 0,
        region: None,
        requires: &[],
        hint: "the namespace must still hold its other processes when the init is killed",
        decide: |e| {
            Some(
                e.get(KILLED_INIT_DIED)?
                    && e.get(MEMBERS_ALIVE_BEFORE_KILL)? > 0
                    && e.get(MEMBERS_DIED)?
                    && e.get(SURVIVORS)? == 0,
            )
        },
    },
    VerdictSpec {
        id: "no-fork-after-init",
        claim: "once the init is gone, fork into the namespace fails with ENOMEM",
        points: 0,
        region: None,
        requires: &[],
        hint: "the lab must stay alive after its init died: its pid_for_children still names the dead namespace",
        decide: |e| Some(e.get(FORK_INTO_DEAD_NS)? == "ENOMEM"),
    },
];

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn prepare(_scratch: &Path) -> Result<()> {
    Ok(())
}

pub fn observer() -> Box<dyn Observer> {
    Box::new(PidNs::default())
}

/// What the observer carries from one stage to the next.
#[derive(Default)]
struct PidNs {
    init: Option<Init>,
}

struct Init {
    pid: i32,
    fd: PidFd,
    ns: NsId,
    /// The init's PID namespace, open: the probes setns into it, even once it is dead.
    ns_file: File,
    /// The other members when the init was found, by pidfd.
    members: Vec<PidFd>,
    orphan: Option<i32>,
    orphan_parent: Option<i32>,
}

impl Observer for PidNs {
    fn observe(&mut self, stage: &str, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        match stage {
            UNSHARED => unshared(run, facts),
            INIT_RUNNING => {
                self.init = Some(init_running(run, facts)?);
                Ok(())
            }
            ORPHANED => orphaned(self.init()?, facts),
            HANDLER_INSTALLED => handler_installed(self.init()?, &run.scratch().join(HANDLER_LOG), facts),
            INIT_GONE => {
                let outcome = fork_into(&self.init()?.ns_file)?;
                facts.record(FORK_INTO_DEAD_NS, outcome);
                Ok(())
            }
            other => Err(Error::Harness(format!("pid-ns has no stage `{other}`"))),
        }
    }
}

impl PidNs {
    fn init(&self) -> Result<&Init> {
        self.init.as_ref().ok_or_else(|| Error::Harness("the init was not found at an earlier stage".into()))
    }
}

fn unshared(run: &mut LabRun, facts: &mut Facts) -> Result<()> {
    let host = run.host_ns("pid")?;
    let lab = run.pid();
    let lab_ns = run.namespace_of(lab, "pid")?;
    facts.record(LAB_PID_NS_AT_UNSHARE, Relation::of(&lab_ns, &Some(host)));
    let for_children = match run.namespace_of(lab, "pid_for_children")? {
        None => ForChildren::NoInitYet,
        Some(ns) if ns == host => ForChildren::Host,
        Some(_) => ForChildren::Other,
    };
    facts.record(FOR_CHILDREN_AT_UNSHARE, for_children);
    Ok(())
}

fn init_running(run: &mut LabRun, facts: &mut Facts) -> Result<Init> {
    let host_pid = run.host_ns("pid")?;
    let host_mnt = run.host_ns("mnt")?;
    let lab = run.pid();
    let init = find_child_named(run, INIT_COMM)?;
    let status = procfs::read_status(init)?;
    let fd = PidFd::open(init)?;
    let ns = run.namespace_of(init, "pid")?.ok_or_else(|| gone("the init"))?;
    let ns_file =
        File::open(format!("/proc/{init}/ns/pid")).map_err(Error::io("open", format!("/proc/{init}/ns/pid")))?;
    facts.record(LAB_PID_NS, Relation::of(&run.namespace_of(lab, "pid")?, &Some(host_pid)));
    facts.record(LAB_FOR_CHILDREN_VS_INIT, Relation::of(&run.namespace_of(lab, "pid_for_children")?, &Some(ns)));
    facts.record(INIT_PID_NS, Relation::of(&ns, &host_pid));
    facts.record(INIT_NSPID_LEVELS, status.nspid.len());
    facts.record(INIT_PID_INSIDE, status.inner_pid().unwrap_or_default());

    // The namespace's members, found by their ns link, named by their comm.
    let members = members_of(ns);
    for pid in members.keys() {
        run.track_pid(*pid);
    }
    let by_comm = |name: &str| members.iter().find(|(_, s)| s.name == name).map(|(pid, s)| (*pid, s.clone()));
    let mut names: Vec<String> = members.values().map(|s| s.name.clone()).collect();
    names.sort();
    facts.record(MEMBERS, names);

    // /proc as the init sees it, through its root: which filesystem, which PID namespace
    // (stat of proc's own ns link follows it to the nsfs inode; a fake symlink leads nowhere)
    // and what it lists.
    let init_mnt = run.namespace_of(init, "mnt")?;
    facts.record(INIT_MNT_NS, Relation::of(&init_mnt, &Some(host_mnt)));
    facts.record(INIT_MNT_NS_VS_LAB, Relation::of(&init_mnt, &run.namespace_of(lab, "mnt")?));
    // What is mounted on the init's /proc, from its own mount table: a fresh proc shows
    // the root of its filesystem; a bind of some directory of another proc does not.
    facts.record(PROC_MOUNT, super::what_is_mounted_at(&procfs::read_mountinfo(&init.to_string())?, "/proc"));
    let proc_inside = format!("/proc/{init}/root/proc");
    let proc_pid_ns = nix::sys::stat::stat(format!("{proc_inside}/1/ns/pid").as_str())
        .ok()
        .map(|st| Relation::of(&NsId { dev: st.st_dev, ino: st.st_ino }, &ns));
    facts.record(PROC_PID_NS, proc_pid_ns);
    let listed: Vec<i32> = procfs::pid_entries(Path::new(&proc_inside)).unwrap_or_default().into_iter().collect();
    let mut inner: Vec<i32> = members.values().filter_map(ProcStatus::inner_pid).collect();
    inner.sort_unstable();
    facts.record(PROC_LISTS_MEMBERS, listed == inner);
    facts.record(PROC_LISTS, listed);
    facts.record(HOST_MOUNT_CHANGES, run.mount_ns().changes()?.describe());

    // The orphan-to-be: still a child of its parent.
    let orphan = by_comm(ORPHAN_COMM);
    let orphan_parent = by_comm(ORPHAN_PARENT_COMM);
    let parent_before = match (&orphan, &orphan_parent) {
        (Some((_, orphan)), Some((parent, _))) => orphan.ppid == *parent,
        _ => false,
    };
    facts.record(ORPHAN_PARENT_BEFORE, parent_before);

    // Signals without a handler: what the init had done about them, then what the kernel
    // did with them. An init's SIGTERM with no handler is dropped while kill() runs; a
    // fatal one queues SIGKILL at once; a blocked one stays pending. No waiting needed.
    let disposition = [libc::SIGTERM, libc::SIGINT]
        .into_iter()
        .map(|sig| {
            if status.catches(sig) {
                Disposition::Caught
            } else if status.ignores(sig) {
                Disposition::Ignored
            } else if status.blocks(sig) {
                Disposition::Blocked
            } else {
                Disposition::Default
            }
        })
        .find(|d| *d != Disposition::Default)
        .unwrap_or(Disposition::Default);
    facts.record(DISPOSITION_BEFORE, disposition);
    let members_fds: Vec<PidFd> = members.keys().filter(|p| **p != init).filter_map(|p| PidFd::open(*p).ok()).collect();
    fd.send(Signal::SIGTERM)?;
    fd.send(Signal::SIGINT)?;
    facts.record(AFTER_TERM_INT, after_signal(&fd, init, &[libc::SIGTERM, libc::SIGINT]));
    Ok(Init {
        pid: init,
        fd,
        ns,
        ns_file,
        members: members_fds,
        orphan: orphan.map(|(pid, _)| pid),
        orphan_parent: orphan_parent.map(|(pid, _)| pid),
    })
}

fn after_signal(fd: &PidFd, pid: i32, signals: &[i32]) -> AfterSignal {
    if fd.has_exited() {
        return AfterSignal::Dead;
    }
    match procfs::read_status(pid) {
        Err(_) => AfterSignal::Dead,
        Ok(status) if status.pending(libc::SIGKILL) || matches!(status.state, 'Z' | 'X') => AfterSignal::Dying,
        Ok(status) if signals.iter().any(|s| status.pending(*s)) => AfterSignal::Pending,
        Ok(_) => AfterSignal::Dropped,
    }
}

fn orphaned(init: &Init, facts: &mut Facts) -> Result<()> {
    let orphan_status = init.orphan.and_then(|pid| procfs::read_status(pid).ok());
    facts.record(PARENT_GONE, init.orphan_parent.is_some_and(|pid| !alive(pid)));
    // A zombie also shows its new parent: the orphan must be alive to count.
    facts.record(ORPHAN_ALIVE, init.orphan.is_some_and(alive));
    facts.record(ORPHAN_PPID_IS_INIT, orphan_status.is_some_and(|s| s.ppid == init.pid));
    Ok(())
}

fn handler_installed(init: &Init, log_path: &Path, facts: &mut Facts) -> Result<()> {
    let status = procfs::read_status(init.pid)?;
    facts.record(CATCHES_TERM_INT, status.catches(libc::SIGTERM) && status.catches(libc::SIGINT));
    if ptrace_disabled() {
        let why = "ptrace is disabled on this machine (kernel.yama.ptrace_scope=3), so the harness cannot read \
                   the siginfo the kernel hands the handler; run the labs in a VM with ptrace_scope 0, 1 or 2";
        facts.skip("handler-gets-signal", why);
    } else {
        let mut siginfo = BTreeMap::new();
        let mut returned = BTreeMap::new();
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            let (si_pid, handler) = signal_and_follow_handler(init.pid, signal, None)?;
            siginfo.insert(signal.as_str().to_string(), si_pid);
            returned.insert(signal.as_str().to_string(), handler);
        }
        facts.record(KERNEL_SIGINFO, siginfo);
        facts.record(HANDLER_RETURNED, returned);
        // A challenge only a handler that reads its siginfo can answer: each signal queued
        // with a value nobody can guess, which the init must write to its handler log.
        let log = log_path.to_path_buf();
        let mut written = true;
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            let value = random_value()?;
            signal_and_follow_handler(init.pid, signal, Some(value))?;
            let line = format!("{} value {value}", signal.as_str());
            written &= wait_for_line(&log, &line, Duration::from_secs(5));
        }
        facts.record(QUEUED_VALUES_WRITTEN, written);
    }
    facts.record(ALIVE_AFTER_HANDLERS, !init.fd.has_exited());

    // From inside the namespace, try to signal a host process (the probe itself).
    facts.record(KILL_HOST_FROM_INSIDE, signal_host_from_inside(&init.ns_file)?);

    // SIGKILL the init: everything in the namespace must die. Each wait ends when the
    // pidfd says the process exited.
    let alive_before = init.members.iter().filter(|fd| !fd.has_exited()).count();
    init.fd.send(Signal::SIGKILL)?;
    let init_died = init.fd.wait_exit(Duration::from_secs(5));
    let members_died = init.members.iter().all(|fd| fd.wait_exit(Duration::from_secs(5)));
    let survivors =
        procfs::processes_in_namespace("pid", init.ns, &[init.pid]).into_iter().filter(|p| alive(*p)).count();
    facts.record(KILLED_INIT_DIED, init_died);
    facts.record(MEMBERS_ALIVE_BEFORE_KILL, alive_before);
    facts.record(MEMBERS_DIED, members_died);
    facts.record(SURVIVORS, survivors);
    Ok(())
}

fn gone(what: &str) -> Error {
    Error::Lab { lab: "pid-ns".into(), message: format!("{what} vanished while being observed") }
}

fn alive(pid: i32) -> bool {
    procfs::read_status(pid).is_ok_and(|s| !matches!(s.state, 'Z' | 'X'))
}

/// Every live process in the PID namespace, by host PID.
fn members_of(ns: NsId) -> BTreeMap<i32, ProcStatus> {
    procfs::processes_in_namespace("pid", ns, &[])
        .into_iter()
        .filter_map(|pid| procfs::read_status(pid).ok().map(|s| (pid, s)))
        .filter(|(_, s)| !matches!(s.state, 'Z' | 'X'))
        .collect()
}

/// Yama's ptrace_scope 3 forbids ptrace to everyone, root included.
fn ptrace_disabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").is_ok_and(|v| v.trim() == "3")
}

/// A forked probe attaches to the init with PTRACE_SEIZE (nothing changes for the init),
/// sends `signal` from the host, and at the signal-delivery stop reads the siginfo the
/// kernel is about to hand the handler (PTRACE_GETSIGINFO). It then lets the signal through
/// and follows the init from syscall stop to syscall stop until the handler returns
/// (rt_sigreturn) or the init exits. Detaching leaves the init as it was; if the probe
/// dies, the kernel detaches it.
fn signal_and_follow_handler(init: i32, signal: Signal, queued: Option<u32>) -> Result<(String, String)> {
    let target = Pid::from_raw(init);
    let outcome = forked::probe("follow a signal to the init's handler", PROBE_TIMEOUT, |out| {
        ptrace::seize(target, ptrace::Options::PTRACE_O_TRACESYSGOOD)?;
        match queued {
            None => kill(target, signal)?,
            Some(value) => {
                // nix has no sigqueue: glibc's, with the value in the int of the union.
                let sigval = libc::sigval { sival_ptr: value as usize as *mut libc::c_void };
                // SAFETY: a PID, a signal number and a value; no pointer is dereferenced.
                if unsafe { libc::sigqueue(init, signal as i32, sigval) } != 0 {
                    return Err(Errno::last());
                }
            }
        }
        let mut delivered = false;
        loop {
            match waitpid(target, Some(WaitPidFlag::__WALL))? {
                WaitStatus::Stopped(_, stopped_by) if stopped_by == signal && !delivered => {
                    let info = ptrace::getsiginfo(target)?;
                    // SAFETY: for a signal sent with kill(2) the siginfo carries si_pid.
                    let sender = unsafe { info.si_pid() };
                    forked::say(out, &format!("siginfo si_pid {sender}"));
                    delivered = true;
                    ptrace::syscall(target, Some(signal))?;
                }
                WaitStatus::PtraceSyscall(_) => {
                    if delivered && syscall_entry_number(target) == Some(libc::SYS_rt_sigreturn as u64) {
                        forked::say(out, "handler returned");
                        return ptrace::detach(target, None);
                    }
                    ptrace::syscall(target, None)?;
                }
                // Some other signal arrived: let it through and keep following.
                WaitStatus::Stopped(_, other) => ptrace::syscall(target, Some(other))?,
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {
                    forked::say(out, "handler exited the init");
                    return Ok(());
                }
                _ => ptrace::syscall(target, None)?,
            }
        }
    })?;
    let line = |prefix: &str| outcome.output.lines().find_map(|l| l.strip_prefix(prefix)).map(str::to_string);
    let si_pid = match (&outcome.status, line("siginfo ")) {
        (_, Some(si_pid)) => si_pid,
        (Err(failure), None) => format!("not delivered ({failure:?})"),
        (Ok(()), None) => "not delivered".to_string(),
    };
    let handler = if outcome.output.contains("handler returned") {
        "returned".to_string()
    } else if outcome.output.contains("handler exited the init") {
        "exited the init".to_string()
    } else {
        format!("never returned ({:?})", outcome.status)
    };
    Ok((si_pid, handler))
}

/// Four random bytes from the kernel.
fn random_value() -> Result<u32> {
    let mut bytes = [0u8; 4];
    std::io::Read::read_exact(&mut File::open("/dev/urandom").map_err(Error::io("open", "/dev/urandom"))?, &mut bytes)
        .map_err(Error::io("read", "/dev/urandom"))?;
    // Kept below 2^31: the handler stores it as a non-negative number.
    Ok(u32::from_ne_bytes(bytes) & 0x7fff_ffff)
}

/// Waits until the file has a line `line`, woken by inotify as its directory changes.
fn wait_for_line(file: &Path, line: &str, timeout: Duration) -> bool {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let has_line = || std::fs::read_to_string(file).is_ok_and(|t| t.lines().any(|l| l == line));
    let Some(dir) = file.parent() else { return has_line() };
    let Ok(inotify) = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) else { return has_line() };
    let flags = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CLOSE_WRITE;
    if inotify.add_watch(dir, flags).is_err() {
        return has_line();
    }
    let deadline = std::time::Instant::now() + timeout;
    loop {
        // Looked at after the watch is set: a write before it is seen here, one after wakes us.
        if has_line() {
            return true;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [nix::poll::PollFd::new(inotify.as_fd(), nix::poll::PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(millis));
        let _ = inotify.read_events();
    }
}

/// The syscall a tracee stopped at the entry of. nix has no wrapper for
/// PTRACE_GET_SYSCALL_INFO (arch-independent, Linux 5.3+): raw libc.
fn syscall_entry_number(pid: Pid) -> Option<u64> {
    // SAFETY: ptrace_syscall_info is plain old data; the kernel fills at most its size.
    let mut info: libc::ptrace_syscall_info = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::ptrace_syscall_info>();
    // SAFETY: a valid tracee in a syscall stop, a buffer of `size` bytes.
    let filled = unsafe {
        libc::ptrace(libc::PTRACE_GET_SYSCALL_INFO, pid.as_raw(), size as *mut libc::c_void, &mut info as *mut _)
    };
    // SAFETY: op says which member of the union the kernel filled.
    (filled > 0 && info.op == libc::PTRACE_SYSCALL_INFO_ENTRY).then_some(unsafe { info.u.entry.nr })
}

/// A forked probe P joins the namespace for its children, forks G (inside), and G tries
/// kill(P's host PID, SIGTERM). If that worked P would die; if not, G reports the errno.
fn signal_host_from_inside(ns: &File) -> Result<String> {
    let outcome = super::kill_from_inside(
        "kill from inside the namespace",
        ns.as_fd(),
        super::KillTarget::TheProbeOnTheHost,
        Signal::SIGTERM,
        PROBE_TIMEOUT,
    )?;
    Ok(match outcome.status {
        Ok(()) => outcome.output.trim().to_string(),
        Err(forked::ProbeFailure::Signaled(Signal::SIGTERM)) => "the host process was killed from inside".to_string(),
        Err(failure) => format!("probe failed: {failure:?}"),
    })
}

/// A forked probe joins the (dead) namespace for its children and forks.
fn fork_into(ns: &File) -> Result<String> {
    let outcome = forked::probe("fork into the namespace", PROBE_TIMEOUT, |out| {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWPID)?;
        // SAFETY: a child, if any, exits at once.
        let result = match unsafe { fork() } {
            Ok(ForkResult::Child) => unsafe { libc::_exit(0) },
            Ok(ForkResult::Parent { child }) => {
                let _ = waitpid(child, None);
                "fork succeeded".to_string()
            }
            Err(errno) => errno_name(errno),
        };
        forked::say(out, &result);
        Ok(())
    })?;
    Ok(match outcome.status {
        Ok(()) => outcome.output.trim().to_string(),
        Err(failure) => format!("probe failed before fork: {failure:?}"),
    })
}
