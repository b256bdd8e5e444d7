//! Checks for lab pid-ns. Everything here is read from the host: /proc/<pid>/status and
//! ns links, a proc mount seen through /proc/<init>/root, signals the harness sends with
//! pidfds, and syscalls it makes itself from inside the namespace (setns in a forked
//! child). The lab's own narration decides nothing.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use labkit::protocol::pid_ns::*;
use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, ForkResult};
use serde_json::json;

use crate::error::{Error, Result};
use crate::probe::forked::{self, ProbeFailure};
use crate::probe::pidfd::PidFd;
use crate::probe::procfs::{self, NsId, ProcStatus};
use crate::run::LabRun;
use crate::verdict::redact::{same_or_differs, HOST_PID};
use crate::verdict::{Grader, VerdictSpec};

pub const VERDICTS: [VerdictSpec; 10] = [
    VerdictSpec {
        id: "caller-stays",
        claim: "after unshare(CLONE_NEWPID) the lab itself stays in the host's PID namespace; only its children enter the new one",
        points: 2,
        hint: "compare /proc/<lab>/ns/pid with /proc/<lab>/ns/pid_for_children after the unshare: which one changed?",
    },
    VerdictSpec {
        id: "init-is-pid-1",
        claim: "the namespace's first process is PID 1 inside and another PID on the host (NSpid has both)",
        points: 2,
        hint: "fork after unshare(CLONE_NEWPID); the child, not the caller, is PID 1 (grep NSpid /proc/<pid>/status)",
    },
    VerdictSpec {
        id: "private-proc",
        claim: "a /proc mounted in the init's own mount namespace lists only the namespace's processes",
        points: 2,
        hint: "unshare(CLONE_NEWNS) in the init, make / private, then mount -t proc proc /proc there",
    },
    VerdictSpec {
        id: "host-untouched",
        claim: "the host's /proc and mount table are untouched while the lab runs",
        points: 1,
        hint: "a mount made before the mount namespace is private propagates to the host: mount --make-rprivate / first",
    },
    VerdictSpec {
        id: "signals-ignored",
        claim: "SIGTERM and SIGINT sent from the host to the namespace init without a handler are ignored",
        points: 2,
        hint: "the init must not install handlers or ignore these signals itself: SigCgt and SigIgn in its status say what it did",
    },
    VerdictSpec {
        id: "handler-gets-signal",
        claim: "with handlers installed, SIGTERM and SIGINT from the host are delivered and the handler sees si_pid 0",
        points: 2,
        hint: "install the handlers with SA_SIGINFO and log info->si_pid; a sender outside the namespace has no PID inside it",
    },
    VerdictSpec {
        id: "orphan-reparented",
        claim: "an orphan inside the namespace is re-parented to the namespace init",
        points: 2,
        hint: "the orphan's PPid (host view) must change from its parent's PID to the init's; do not make anyone a subreaper",
    },
    VerdictSpec {
        id: "cannot-signal-host",
        claim: "a process inside the namespace cannot signal a host process it cannot see (ESRCH)",
        points: 1,
        hint: "kill(2) looks the PID up in the caller's namespace; a host PID has no meaning inside",
    },
    VerdictSpec {
        id: "sigkill-kills-all",
        claim: "SIGKILL from the host kills the init, and every other process in the namespace dies with it",
        points: 2,
        hint: "the namespace must still hold its other processes when the init is killed; look at who is in it",
    },
    VerdictSpec {
        id: "no-fork-after-init",
        claim: "once the init is gone, fork into the namespace fails with ENOMEM",
        points: 1,
        hint: "keep the lab process alive after the init died: its pid_for_children still names the dead namespace",
    },
];

/// How long the harness waits to see whether a signal had an effect.
const SIGNAL_SETTLE: Duration = Duration::from_millis(150);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn prepare(_scratch: &Path) -> Result<()> {
    Ok(())
}

pub fn check(run: &mut LabRun, grader: &mut Grader) -> Result<()> {
    let host_pid_ns = own_ns("pid")?;
    let host_mnt_ns = own_ns("mnt")?;
    let lab = run.pid();

    // ── unshared: the caller stays ─────────────────────────────────────────────
    run.await_hold(UNSHARED)?;
    let lab_ns_after_unshare = procfs::ns_id(lab, "pid")?;
    let pid_for_children_before_init = procfs::ns_id(lab, "pid_for_children")?;
    grader.observe("unshared.lab_pid_ns_vs_host", same_or_differs(&lab_ns_after_unshare, &Some(host_pid_ns)));
    grader.observe(
        "unshared.pid_for_children_before_first_fork",
        match pid_for_children_before_init {
            None => "absent (ENOENT: the namespace has no init yet)".to_string(),
            Some(ns) => format!("{} from host", same_or_differs(&ns, &host_pid_ns)),
        },
    );
    run.release()?;

    // ── init-running ──────────────────────────────────────────────────────────
    run.await_hold(INIT_RUNNING)?;
    let init = find_init(run)?;
    let init_status = procfs::read_status(init)?;
    let init_ns = procfs::ns_id(init, "pid")?.ok_or_else(|| gone("the init"))?;
    run.track_namespace("pid", init_ns);
    let lab_pid_ns = procfs::ns_id(lab, "pid")?;
    let lab_for_children = procfs::ns_id(lab, "pid_for_children")?;
    grader.observe("init.lab_pid_ns_vs_host", same_or_differs(&lab_pid_ns, &Some(host_pid_ns)));
    grader.observe("init.lab_pid_for_children_vs_init_ns", same_or_differs(&lab_for_children, &Some(init_ns)));
    grader.observe("init.init_pid_ns_vs_host", same_or_differs(&init_ns, &host_pid_ns));
    grader.judge(
        "caller-stays",
        lab_ns_after_unshare == Some(host_pid_ns)
            && lab_pid_ns == Some(host_pid_ns)
            && lab_for_children == Some(init_ns)
            && init_ns != host_pid_ns,
        &[
            "unshared.lab_pid_ns_vs_host",
            "init.lab_pid_ns_vs_host",
            "init.lab_pid_for_children_vs_init_ns",
            "init.init_pid_ns_vs_host",
        ],
        format!("lab ns/pid {lab_pid_ns:?}, lab pid_for_children {lab_for_children:?}, init ns/pid {init_ns}, host {host_pid_ns}"),
    );

    let nspid_shape: Vec<serde_json::Value> = init_status
        .nspid
        .iter()
        .enumerate()
        .map(|(level, pid)| if level == 0 { json!(HOST_PID) } else { json!(pid) })
        .collect();
    grader.observe("init.nspid", &nspid_shape);
    grader.judge(
        "init-is-pid-1",
        init_status.nspid.len() == 2 && init_status.inner_pid() == Some(1),
        &["init.nspid"],
        format!("NSpid of the init: {:?}", init_status.nspid),
    );

    // The namespace's members, found by their ns link, named by their comm.
    let members = members_of(init_ns);
    for pid in members.keys() {
        run.track_pid(*pid);
    }
    let by_comm = |name: &str| members.iter().find(|(_, s)| s.name == name).map(|(pid, s)| (*pid, s.clone()));
    let inner_pids: Vec<i32> = members.values().filter_map(ProcStatus::inner_pid).collect();
    let mut member_names: Vec<String> = members.values().map(|s| s.name.clone()).collect();
    member_names.sort();
    grader.observe("init.members", member_names);

    // /proc as the init sees it, through its root: its own mount namespace's proc.
    let init_mnt_ns = procfs::ns_id(init, "mnt")?;
    let proc_seen_inside = procfs::pid_entries(Path::new(&format!("/proc/{init}/root/proc")))?;
    let inside_sorted: Vec<i32> = proc_seen_inside.iter().copied().collect();
    let mut expected = inner_pids.clone();
    expected.sort_unstable();
    grader.observe("init.mnt_ns_vs_host", same_or_differs(&init_mnt_ns, &Some(host_mnt_ns)));
    grader.observe("init.proc_inside_lists", &inside_sorted);
    grader.observe("init.proc_inside_equals_namespace_members", inside_sorted == expected);
    grader.judge(
        "private-proc",
        init_mnt_ns != Some(host_mnt_ns) && inside_sorted == expected && inside_sorted.first() == Some(&1),
        &["init.mnt_ns_vs_host", "init.proc_inside_lists", "init.proc_inside_equals_namespace_members"],
        format!("/proc inside lists {inside_sorted:?}; the namespace holds {expected:?}"),
    );

    let (added, removed) = run.baseline().mount_changes()?;
    let host_proc_sees_init = Path::new(&format!("/proc/{init}")).exists();
    grader.observe("init.host_mounts_added", added.len());
    grader.observe("init.host_mounts_removed", removed.len());
    grader.observe("init.host_proc_still_shows_host_view", host_proc_sees_init);
    grader.judge(
        "host-untouched",
        added.is_empty() && removed.is_empty() && host_proc_sees_init,
        &["init.host_mounts_added", "init.host_mounts_removed", "init.host_proc_still_shows_host_view"],
        format!("host mounts added {added:?}, removed {removed:?}"),
    );

    // The orphan-to-be: still a child of its parent.
    let orphan_before = by_comm(ORPHAN_COMM);
    let orphan_parent = by_comm(ORPHAN_PARENT_COMM);
    let parent_before = match (&orphan_before, &orphan_parent) {
        (Some((_, orphan)), Some((parent, _))) => orphan.ppid == *parent,
        _ => false,
    };
    grader.observe("init.orphan_parent_is_pidns_parent", parent_before);

    // Signals without a handler.
    let init_fd = PidFd::open(init)?;
    let member_fds: Vec<PidFd> = members.keys().filter(|p| **p != init).filter_map(|p| PidFd::open(*p).ok()).collect();
    let catches_before = init_status.catches(libc::SIGTERM) || init_status.catches(libc::SIGINT);
    let ignores_before = init_status.ignores(libc::SIGTERM) || init_status.ignores(libc::SIGINT);
    init_fd.send(Signal::SIGTERM)?;
    init_fd.send(Signal::SIGINT)?;
    let died = init_fd.wait_exit(SIGNAL_SETTLE);
    grader.observe("no_handler.init_catches_or_ignores_term_int", catches_before || ignores_before);
    grader.observe("no_handler.init_after_sigterm_sigint", if died { "dead" } else { "alive" });
    grader.judge(
        "signals-ignored",
        !died && !catches_before && !ignores_before,
        &["no_handler.init_catches_or_ignores_term_int", "no_handler.init_after_sigterm_sigint"],
        format!("init died: {died}; SigCgt {:#x}, SigIgn {:#x}", init_status.sig_cgt, init_status.sig_ign),
    );
    run.release()?;

    // ── orphaned ──────────────────────────────────────────────────────────────
    run.await_hold(ORPHANED)?;
    let orphan_after = orphan_before.as_ref().and_then(|(pid, _)| procfs::read_status(*pid).ok());
    let parent_gone = orphan_parent.as_ref().is_some_and(|(pid, _)| !alive(*pid));
    let reparented = orphan_after.as_ref().is_some_and(|s| s.ppid == init);
    // A zombie also shows its new parent: the orphan must be alive to count.
    let orphan_alive = orphan_before.as_ref().is_some_and(|(pid, _)| alive(*pid));
    grader.observe("orphaned.parent_gone", parent_gone);
    grader.observe("orphaned.orphan_alive", orphan_alive);
    grader.observe("orphaned.orphan_ppid_is_init", reparented);
    grader.judge(
        "orphan-reparented",
        parent_before && parent_gone && orphan_alive && reparented,
        &[
            "init.orphan_parent_is_pidns_parent",
            "orphaned.parent_gone",
            "orphaned.orphan_alive",
            "orphaned.orphan_ppid_is_init",
        ],
        format!(
            "orphan {:?} had parent {:?}; now PPid {:?}, init {init}",
            orphan_before.as_ref().map(|o| o.0),
            orphan_parent.as_ref().map(|p| p.0),
            orphan_after.as_ref().map(|s| s.ppid)
        ),
    );
    run.release()?;

    // ── handler-installed ─────────────────────────────────────────────────────
    run.await_hold(HANDLER_INSTALLED)?;
    let with_handler = procfs::read_status(init)?;
    let log = run.scratch().join(HANDLER_LOG);
    let log_before = std::fs::read_to_string(&log).unwrap_or_default();
    // The kernel's siginfo (read by the harness at the signal-delivery stop) and what the
    // handler wrote down: the first is the evidence, the second shows the handler ran.
    let mut kernel_si_pids = BTreeMap::new();
    let mut logged_si_pids = BTreeMap::new();
    for (signal, name) in [(Signal::SIGTERM, "SIGTERM"), (Signal::SIGINT, "SIGINT")] {
        kernel_si_pids.insert(name, signal_and_read_siginfo(init, signal)?);
        let line = wait_for_log_line(&log, name, Duration::from_secs(2));
        logged_si_pids.insert(name, line.and_then(|l| l.split_whitespace().nth(1).map(String::from)));
    }
    let alive_after = !init_fd.has_exited();
    let all_zero =
        kernel_si_pids.values().all(|v| v == "si_pid 0") && logged_si_pids.values().all(|v| v.as_deref() == Some("0"));
    grader.observe(
        "handler.init_catches_term_int",
        with_handler.catches(libc::SIGTERM) && with_handler.catches(libc::SIGINT),
    );
    grader.observe("handler.log_empty_before_harness_signals", log_before.is_empty());
    grader.observe("handler.kernel_siginfo", &kernel_si_pids);
    grader.observe("handler.si_pid_logged_by_handler", &logged_si_pids);
    grader.observe("handler.init_alive_after", alive_after);
    if ptrace_disabled() {
        grader.skip(
            "handler-gets-signal",
            "ptrace is disabled on this machine (kernel.yama.ptrace_scope=3), so the harness cannot read \
             the siginfo the kernel hands the handler; run the labs in a VM with ptrace_scope 0, 1 or 2",
        );
    } else {
        grader.judge(
            "handler-gets-signal",
            with_handler.catches(libc::SIGTERM)
                && with_handler.catches(libc::SIGINT)
                && log_before.is_empty()
                && all_zero
                && alive_after,
            &[
                "handler.init_catches_term_int",
                "handler.log_empty_before_harness_signals",
                "handler.kernel_siginfo",
                "handler.si_pid_logged_by_handler",
                "handler.init_alive_after",
            ],
            format!("handler log: {:?}", std::fs::read_to_string(&log).unwrap_or_default()),
        );
    }

    // From inside the namespace, try to signal a host process (this probe itself).
    let ns_file =
        File::open(format!("/proc/{init}/ns/pid")).map_err(Error::io("open", format!("/proc/{init}/ns/pid")))?;
    let signal_host = signal_host_from_inside(&ns_file)?;
    grader.observe("inside.kill_host_pid", &signal_host);
    grader.judge(
        "cannot-signal-host",
        signal_host == "ESRCH, the host process was not touched",
        &["inside.kill_host_pid"],
        signal_host.clone(),
    );

    // SIGKILL the init: everything in the namespace must die.
    let alive_before_kill = member_fds.iter().filter(|fd| !fd.has_exited()).count();
    init_fd.send(Signal::SIGKILL)?;
    let init_died = init_fd.wait_exit(Duration::from_secs(2));
    let members_died = member_fds.iter().all(|fd| fd.wait_exit(Duration::from_secs(2)));
    let survivors: Vec<i32> = procfs::processes_in_namespace("pid", init_ns, &[init])
        .into_iter()
        .filter(|pid| procfs::read_status(*pid).is_ok_and(|s| s.state != 'Z'))
        .collect();
    grader.observe("sigkill.init_died", init_died);
    grader.observe("sigkill.other_members_alive_before", alive_before_kill);
    grader.observe("sigkill.other_members_died", members_died);
    grader.observe("sigkill.survivors", survivors.len());
    grader.judge(
        "sigkill-kills-all",
        init_died && members_died && alive_before_kill > 0 && survivors.is_empty(),
        &["sigkill.init_died", "sigkill.other_members_alive_before", "sigkill.other_members_died", "sigkill.survivors"],
        format!("init died {init_died}; members died {members_died}; survivors {survivors:?}"),
    );
    run.release()?;

    // ── init-gone ─────────────────────────────────────────────────────────────
    run.await_hold(INIT_GONE)?;
    let fork_inside = fork_into(&ns_file)?;
    drop(ns_file);
    grader.observe("init_gone.fork_into_namespace", &fork_inside);
    grader.judge(
        "no-fork-after-init",
        fork_inside == "ENOMEM",
        &["init_gone.fork_into_namespace"],
        fork_inside.clone(),
    );
    run.release()?;
    Ok(())
}

fn own_ns(kind: &str) -> Result<NsId> {
    procfs::ns_id(getpid().as_raw(), kind)?.ok_or_else(|| gone("the harness's own namespace link"))
}

fn gone(what: &str) -> Error {
    Error::parse("/proc", format!("{what} vanished while being observed"))
}

fn alive(pid: i32) -> bool {
    procfs::read_status(pid).is_ok_and(|s| s.state != 'Z')
}

/// The lab's child named pidns-init: found by the harness, not taken from the lab's claims.
fn find_init(run: &mut LabRun) -> Result<i32> {
    let lab = run.pid();
    let candidates: Vec<i32> =
        procfs::children(lab).into_iter().filter(|pid| procfs::comm(*pid).as_deref() == Some(INIT_COMM)).collect();
    match candidates.as_slice() {
        [init] => {
            run.track_pid(*init);
            Ok(*init)
        }
        [] => Err(Error::Lab {
            lab: "pid-ns".into(),
            message: format!("no child of the lab is named `{INIT_COMM}`: did the fork after unshare happen?"),
        }),
        many => {
            Err(Error::Lab { lab: "pid-ns".into(), message: format!("several children named `{INIT_COMM}`: {many:?}") })
        }
    }
}

/// Every live process in the PID namespace, by host PID.
fn members_of(ns: NsId) -> BTreeMap<i32, ProcStatus> {
    procfs::processes_in_namespace("pid", ns, &[])
        .into_iter()
        .filter_map(|pid| procfs::read_status(pid).ok().map(|s| (pid, s)))
        .filter(|(_, s)| s.state != 'Z')
        .collect()
}

fn wait_for_log_line(log: &Path, signal: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with(signal)) {
            return Some(line.to_string());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Yama's ptrace_scope 3 forbids ptrace to everyone, root included.
fn ptrace_disabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").is_ok_and(|v| v.trim() == "3")
}

/// A forked probe attaches to the init with PTRACE_SEIZE (no stop, nothing changes for the
/// init), sends `signal` from the host, and at the signal-delivery stop reads the siginfo
/// the init's handler is about to get (PTRACE_GETSIGINFO). Detaching passes the signal on.
/// If the probe dies, the kernel detaches it and the init goes on.
fn signal_and_read_siginfo(init: i32, signal: Signal) -> Result<String> {
    let target = nix::unistd::Pid::from_raw(init);
    let outcome = forked::probe("read the siginfo of a signal to the init", PROBE_TIMEOUT, |out| {
        ptrace::seize(target, ptrace::Options::empty())?;
        kill(target, signal)?;
        loop {
            match waitpid(target, Some(WaitPidFlag::__WALL))? {
                WaitStatus::Stopped(_, stopped_by) if stopped_by == signal => {
                    let info = ptrace::getsiginfo(target)?;
                    // SAFETY: for a signal sent with kill(2) the siginfo carries si_pid.
                    let sender = unsafe { info.si_pid() };
                    forked::say(out, &format!("si_pid {sender}"));
                    return ptrace::detach(target, Some(signal));
                }
                // Some other signal arrived first: let it through and keep waiting.
                WaitStatus::Stopped(_, other) => ptrace::cont(target, Some(other))?,
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => return Err(Errno::ESRCH),
                _ => ptrace::cont(target, None)?,
            }
        }
    })?;
    Ok(match outcome.status {
        Ok(()) => outcome.output.trim().to_string(),
        Err(failure) => format!("could not read the siginfo: {failure:?}"),
    })
}

/// A forked probe P joins the namespace for its children, forks G (inside), and G tries
/// kill(P's host PID, SIGTERM). If that worked P would die; if not, G reports the errno.
fn signal_host_from_inside(ns: &File) -> Result<String> {
    let outcome = forked::probe("kill from inside the namespace", PROBE_TIMEOUT, |out| {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWPID)?;
        let target = getpid();
        // SAFETY: the grandchild only calls kill and _exit.
        match unsafe { fork() }? {
            ForkResult::Child => {
                let code = match kill(target, Signal::SIGTERM) {
                    Ok(()) => 0,
                    Err(errno) => errno as i32,
                };
                // SAFETY: _exit has no preconditions (nix 0.29 has no wrapper).
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                let result = match waitpid(child, None)? {
                    WaitStatus::Exited(_, 0) => "kill succeeded".to_string(),
                    WaitStatus::Exited(_, code) => format!("{:?}", Errno::from_raw(code)),
                    other => format!("{other:?}"),
                };
                forked::say(out, &result);
                Ok(())
            }
        }
    })?;
    Ok(match outcome.status {
        Ok(()) if outcome.output.trim() == "ESRCH" => "ESRCH, the host process was not touched".to_string(),
        Ok(()) => format!("{}, the host process was not touched", outcome.output.trim()),
        Err(ProbeFailure::Signaled(Signal::SIGTERM)) => "the host process was killed from inside".to_string(),
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
            Err(errno) => format!("{errno:?}"),
        };
        forked::say(out, &result);
        Ok(())
    })?;
    Ok(match outcome.status {
        Ok(()) => outcome.output.trim().to_string(),
        Err(failure) => format!("probe failed before fork: {failure:?}"),
    })
}
