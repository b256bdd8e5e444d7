//! Lab pid-ns: make a process that is PID 1 in its own PID namespace, and see what
//! that changes (signals, orphans, /proc) and what it does not. Read labs/pid-ns/README.md.
//!
//! The shape of the processes this lab makes:
//!
//! ```text
//! host PID namespace             new PID namespace
//! lab-pid-ns (calls unshare) --> pidns-init (PID 1, own mount namespace, fresh /proc)
//!                                 ├── pidns-sleeper (PID 2)
//!                                 └── pidns-parent  (PID 3) ──> pidns-orphan (PID 4)
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};

use anyhow::Result;
use clap::Parser;
use labkit::protocol::pid_ns::*;
use labkit::{child, cleanup, ns_link, Lab, LabArgs, LabError, Voice};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, getpid, pause, ForkResult, Pid};
use serde_json::json;

/// Make a process that is PID 1 in a new PID namespace, and watch signals, orphans and
/// /proc behave differently there. Run it as root, in a VM: `sudo target/debug/lab-pid-ns --step`.
#[derive(Parser)]
#[command(name = "lab-pid-ns", version)]
struct Cli {
    #[command(flatten)]
    lab: LabArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    labkit::main("lab-pid-ns", include_str!("main.rs"), || run(&cli.lab))
}

/// Commands the lab sends to its namespace init, one byte each.
const MAKE_ORPHAN: u8 = b'o';
const INSTALL_HANDLERS: u8 = b'h';
/// Answered once the init's handler has recorded SIGTERM (SIGINT).
const AWAIT_SIGTERM: u8 = b't';
const AWAIT_SIGINT: u8 = b'i';

fn run(args: &LabArgs) -> Result<()> {
    labkit::require_root("lab-pid-ns", "unshare(CLONE_NEWPID) and mount(\"proc\")")?;
    let mut lab = Lab::new(args, "Lab pid-ns: a process that is PID 1", 6);
    let workdir = labkit::Workdir::open(args, "pid-ns")?;
    let me = getpid();

    // ── Step 1 ───────────────────────────────────────────────────────────────
    lab.step(
        "Ask for a new PID namespace for your children",
        "unshare(CLONE_NEWPID)",
        "unshare --pid --fork --mount-proc /bin/sh   (--fork: the shell must be a child)",
    );
    let pid_ns_before = ns_link("self", "pid");
    {
        // STUDENT: begin unshare-pid
        // Hint: nix::sched::unshare with the flag for a new PID namespace (unshare(2)).
        // It changes where your children are born, not where you are.
        unshare(CloneFlags::CLONE_NEWPID).map_err(LabError::sys("unshare", "CLONE_NEWPID"))?;
        // STUDENT: end unshare-pid
    }
    lab.saw(&format!(
        "getpid() is {} (before: {me}); /proc/self/ns/pid is {} (before: {pid_ns_before})",
        getpid(),
        ns_link("self", "pid")
    ));
    lab.saw(&format!("/proc/self/ns/pid_for_children: {}", ns_link("self", "pid_for_children")));
    lab.why("after unshare(CLONE_NEWPID), pid_for_children cannot be opened (ENOENT) until the first fork: the new namespace has no process yet.");
    lab.why("unshare(CLONE_NEWPID) never moves the caller: a process's PID cannot change. Only the children it forks from now on are born in the new namespace.");
    lab.hold(UNSHARED, json!({ "lab": me.as_raw() }))?;

    // ── Step 2 ───────────────────────────────────────────────────────────────
    lab.step(
        "Fork the namespace's first process: it is PID 1 there",
        "fork(); then in the child: unshare(CLONE_NEWNS), mount(\"proc\", \"/proc\", \"proc\")",
        "unshare --pid --fork --mount --mount-proc sh -c 'echo $$; ps ax'",
    );
    let link = child::Link::new()?;
    let voice = lab.voice();
    let handler_log = workdir.path().join(HANDLER_LOG);
    let init: Pid = {
        // STUDENT: begin fork-init
        // Hint: labkit::child::spawn forks a child named INIT_COMM that runs `init_process`;
        // the block's value is the PID that spawn returns.
        child::spawn(INIT_COMM, move || init_process(voice, me, link, &handler_log))?
        // STUDENT: end fork-init
    };
    // The lab signals its init below (it plays the host): never a process that is not its own.
    child::ensure_own_child(init, "the init fork-init returned")?;
    let mut init_link = link.lab_side(init)?;
    init_link.wait_ready(
        "setting up its mounts and children",
        "did the init fail (its error would be above), or block before it said ready?",
    )?;
    let init_pid_ns = ns_link(&init.to_string(), "pid");
    match nspid(init).as_slice() {
        [host, inner] => lab.saw(&format!(
            "fork() returned {init}; /proc/{init}/status has NSpid {host} {inner}: in its own namespace the init is PID {inner}"
        )),
        [only] => lab.saw(&format!(
            "fork() returned {init}; /proc/{init}/status has NSpid {only}, one PID only: the init is in my PID namespace, not in a new one"
        )),
        other => lab.saw(&format!("fork() returned {init}; /proc/{init}/status has NSpid {other:?}")),
    }
    lab.hold(INIT_RUNNING, json!({ "lab": me.as_raw(), "init": init.as_raw() }))?;

    // ── Step 3 ───────────────────────────────────────────────────────────────
    lab.step(
        "Send SIGTERM and SIGINT to the init from the host, with no handler installed",
        "kill(init, SIGTERM); kill(init, SIGINT)",
        &format!("kill -TERM {init}; kill -INT {init}; ps -p {init}"),
    );
    if lab.plays_host() {
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            lab.as_host(&format!("kill -{} {init}", signal.as_str().trim_start_matches("SIG")));
            kill(init, signal).map_err(LabError::sys("kill", init))?;
        }
        // A signal the kernel drops is dropped inside kill(): nothing is left to happen.
        lab.saw(&format!(
            "right after kill() returned, /proc/{init}/status says State {}; of SIGTERM and SIGINT, pending: {}",
            status_field(init, "State").unwrap_or_else(|| "(gone)".into()),
            pending(init, &[Signal::SIGTERM, Signal::SIGINT])
        ));
    }
    lab.why("the kernel drops signals to a namespace init for which it has no handler (SIGKILL and SIGSTOP from an ancestor namespace excepted): PID 1 must not die by accident.");

    // ── Step 4 ───────────────────────────────────────────────────────────────
    lab.step(
        "Orphan a process inside: its new parent is the namespace init",
        "inside: kill(pidns-parent, SIGTERM); the kernel re-parents pidns-orphan",
        "sh -c 'sleep 1000 &' ; ps -o pid,ppid,comm   (inside the namespace)",
    );
    init_link.send(MAKE_ORPHAN)?;
    init_link.wait_ready(
        "orphaning a process",
        "if the signals of step 3 killed it, it was no namespace's PID 1 (was it forked before the unshare?)",
    )?;
    match find_in_namespace(&init_pid_ns, ORPHAN_COMM) {
        Some(orphan) => {
            let ppid = status_field(orphan, "PPid").unwrap_or_default();
            let whose = if ppid == init.to_string() { "the init's PID" } else { "not the init's PID" };
            lab.saw(&format!("on the host, pidns-orphan is PID {orphan}; its PPid is now {ppid}, {whose}"));
        }
        None => lab.saw(&format!("no live process named {ORPHAN_COMM} in the init's PID namespace")),
    }
    lab.hold(ORPHANED, json!({ "init": init.as_raw() }))?;

    // ── Step 5 ───────────────────────────────────────────────────────────────
    lab.step(
        "Install handlers in the init, then signal it again from the host",
        "inside: sigaction(SIGTERM/SIGINT, SA_SIGINFO); host: kill(init, SIGTERM)",
        &format!("kill -TERM {init}   (the init now traps it)"),
    );
    init_link.send(INSTALL_HANDLERS)?;
    init_link.wait_ready("installing its signal handlers", "did install_handlers fail (its error would be above)?")?;
    lab.hold(HANDLER_INSTALLED, json!({ "init": init.as_raw() }))?;
    if lab.plays_host() {
        for (signal, confirm) in [(Signal::SIGTERM, AWAIT_SIGTERM), (Signal::SIGINT, AWAIT_SIGINT)] {
            let caught = catches(init, signal);
            lab.as_host(&format!("kill -{} {init}", signal.as_str().trim_start_matches("SIG")));
            kill(init, signal).map_err(LabError::sys("kill", init))?;
            if !caught {
                // No handler: dropped inside kill(), if the init is a namespace's PID 1.
                lab.saw(&format!(
                    "the init's SigCgt has no {signal}; right after kill() returned, pending: {}",
                    pending(init, &[signal])
                ));
                continue;
            }
            // The init answers once its handler has recorded this signal.
            init_link.send(confirm)?;
            init_link.wait_ready(
                &format!("recording {signal} in its handler"),
                "is the handler `record_sender`, installed with SA_SIGINFO?",
            )?;
        }
        let log = std::fs::read_to_string(workdir.path().join(HANDLER_LOG)).unwrap_or_default();
        let log = if log.trim().is_empty() { "(nothing)".to_string() } else { log.trim().replace('\n', "; ") };
        lab.saw(&format!("the handler log says: {log}"));
        lab.why("a signal from an ancestor namespace carries si_pid 0: the sender has no PID the init could name.");
        lab.as_host(&format!("kill -KILL {init}"));
        kill(init, Signal::SIGKILL).map_err(LabError::sys("kill", init))?;
    } else if kill(init, None).is_ok() && !is_zombie(init) {
        lab.saw("the harness left the init alive; killing it now so the lab can go on");
        kill(init, Signal::SIGKILL).map_err(LabError::sys("kill", init))?;
    }

    // ── Step 6 ───────────────────────────────────────────────────────────────
    lab.step(
        "Kill the init: the whole namespace dies, and nobody can enter it again",
        "kill(init, SIGKILL); waitpid(init); fork()",
        &format!("kill -KILL {init}; nsenter --target {me} --pid=/proc/{me}/ns/pid_for_children true"),
    );
    let status = child::wait(init, "dying of SIGKILL")?;
    lab.saw(&format!("the init ended: {}", describe(status)));
    lab.saw(&format!("processes left in its PID namespace ({init_pid_ns}): {}", count_in_namespace(&init_pid_ns)));
    lab.why("when a namespace's init dies, the kernel SIGKILLs every other process in it.");
    // SAFETY: the child exits at once.
    match unsafe { fork() } {
        Err(errno) => lab.saw(&format!("fork() into the dead namespace failed: {errno:?} ({})", errno.desc())),
        Ok(ForkResult::Child) => child::exit_now(0),
        Ok(ForkResult::Parent { child }) => {
            let _ = waitpid(child, None);
            lab.saw(&format!("fork() worked: child {child}"));
        }
    }
    lab.why("a PID namespace whose init has exited accepts no new process: fork fails with ENOMEM.");
    lab.hold(INIT_GONE, json!({ "lab": me.as_raw() }))?;

    cleanup::remove_made_dirs()?;
    lab.done("Done: the lab removed its workdir. Now answer the questions on the lab sheet.");
    Ok(())
}

// ── The namespace init (runs as PID 1) ──────────────────────────────────────

/// The si_pid the init's handler saw, per signal (-1: none yet).
static SIGTERM_SI_PID: AtomicI32 = AtomicI32::new(-1);
static SIGINT_SI_PID: AtomicI32 = AtomicI32::new(-1);
/// The value the last sigqueue(3) of each signal carried (-1: none yet). Only a handler
/// installed with SA_SIGINFO is handed it: the harness checks for the values it queued.
static SIGTERM_VALUE: AtomicI64 = AtomicI64::new(-1);
static SIGINT_VALUE: AtomicI64 = AtomicI64::new(-1);
/// The write end of the init's self-pipe (-1: none yet): a handler writes one byte there
/// so that the init's poll wakes up exactly when a signal was handled.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// The init's handler for SIGTERM and SIGINT: notes who sent the signal (si_pid), then
/// wakes the init, which writes it to the handler log.
extern "C" fn record_sender(signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    if !info.is_null() {
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
        let (code, sender, value) = unsafe { ((*info).si_code, (*info).si_pid(), (*info).si_int()) };
        let (sender_slot, value_slot) = match signal {
            libc::SIGTERM => (&SIGTERM_SI_PID, &SIGTERM_VALUE),
            libc::SIGINT => (&SIGINT_SI_PID, &SIGINT_VALUE),
            _ => return wake_up(signal),
        };
        if code == libc::SI_QUEUE {
            value_slot.store(i64::from(value as u32), Ordering::SeqCst);
        } else {
            sender_slot.store(sender, Ordering::SeqCst);
        }
    }
    wake_up(signal);
}

/// One byte into the self-pipe: write(2) is async-signal-safe. errno is put back as the
/// interrupted code left it.
extern "C" fn wake_up(_signal: libc::c_int) {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    let saved = Errno::last_raw();
    // SAFETY: the write end stays open for the init's whole life (it is never closed).
    let _ = nix::unistd::write(unsafe { BorrowedFd::borrow_raw(fd) }, b"!");
    Errno::set_raw(saved);
}

/// The init's whole life, as the body of its process: its exit status says how it went.
fn init_process(voice: Voice, lab_host_pid: Pid, link: child::Link, handler_log: &Path) -> i32 {
    exit_code(voice, "init", namespace_init(voice, lab_host_pid, link.child_side(), handler_log))
}

fn namespace_init(voice: Voice, lab_host_pid: Pid, mut link: child::ChildEnd, handler_log: &Path) -> Result<()> {
    voice.inside(&format!("getpid() = {}", getpid()));
    private_proc()?;

    // The lab's host PID means nothing here: there is no such process in this namespace.
    match kill(lab_host_pid, None) {
        Err(Errno::ESRCH) => {
            voice.inside(&format!("kill -0 {lab_host_pid} (the lab's host PID): ESRCH, no such process here"))
        }
        other => voice.inside(&format!("kill -0 {lab_host_pid}: {other:?}")),
    }

    child::spawn(SLEEPER_COMM, sleep_forever)?;
    let parent_link = child::Link::new()?;
    let orphan_parent = child::spawn(ORPHAN_PARENT_COMM, move || {
        exit_code(voice, ORPHAN_PARENT_COMM, orphan_parent_process(voice, parent_link))
    })?;
    parent_link
        .lab_side(orphan_parent)?
        .wait_ready("forking the orphan-to-be", "did make-orphan fail (its error would be above)?")?;
    voice.inside(&format!("ls /proc: {:?}", numeric_entries(Path::new("/proc"))));

    // The self-pipe: handlers write to it, the command loop polls it.
    let (wake_rx, wake_tx) =
        nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(LabError::sys("pipe2", "self-pipe"))?;
    WAKE_FD.store(wake_tx.into_raw_fd(), Ordering::SeqCst);
    let mut wake_rx = File::from(wake_rx);
    // PID 1 must reap: every orphan in the namespace becomes its child.
    let on_child =
        SigAction::new(SigHandler::Handler(wake_up), SaFlags::SA_NOCLDSTOP | SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: wake_up only write(2)s one byte, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGCHLD, &on_child) }.map_err(LabError::sys("sigaction", Signal::SIGCHLD))?;
    link.ready();

    let mut logged = [false, false];
    let mut values_logged = [-1i64, -1];
    let mut awaited: Option<usize> = None;
    loop {
        reap_children();
        log_handled_signals(voice, handler_log, &mut logged, &mut values_logged)?;
        if awaited.is_some_and(|index| logged[index]) {
            awaited = None;
            link.ready();
        }
        let has_command = {
            let mut fds = [
                PollFd::new(link.commands.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                // EINTR: a handler ran; its byte is in the self-pipe as well.
                Ok(_) | Err(Errno::EINTR) => {}
                Err(errno) => return Err(LabError::sys("poll", "the lab's command pipe")(errno).into()),
            }
            fds[0].revents().is_some_and(|r| !r.is_empty())
        };
        // Empty the self-pipe: the loop's next turn looks at whatever the handlers recorded.
        while wake_rx.read(&mut [0u8; 16]).is_ok_and(|n| n > 0) {}
        if !has_command {
            continue;
        }
        let Some(command) = link.next_command() else {
            return Ok(()); // the lab closed the pipe: it is ending
        };
        match command {
            MAKE_ORPHAN => {
                kill(orphan_parent, Signal::SIGTERM).map_err(LabError::sys("kill", orphan_parent))?;
                let status = child::wait(orphan_parent, "dying of SIGTERM")?;
                voice.inside(&format!("pidns-parent (PID {orphan_parent}) ended: {}", describe(status)));
                link.ready();
            }
            INSTALL_HANDLERS => {
                install_handlers()?;
                let caught: Vec<&str> = [Signal::SIGTERM, Signal::SIGINT]
                    .into_iter()
                    .filter(|s| catches("self", *s))
                    .map(Signal::as_str)
                    .collect();
                let caught =
                    if caught.is_empty() { "neither SIGTERM nor SIGINT".to_string() } else { caught.join(" and ") };
                voice.inside(&format!("after install_handlers, /proc/self/status says I catch {caught}"));
                link.ready();
            }
            AWAIT_SIGTERM => awaited = Some(0),
            AWAIT_SIGINT => awaited = Some(1),
            _ => {}
        }
    }
}

/// In the init: a mount namespace of its own, with a /proc that shows this PID namespace.
fn private_proc() -> Result<()> {
    // STUDENT: begin private-proc
    // Hint: a mount namespace of its own (unshare), "/" made private in it
    // (mount_namespaces(7)), and only then a fresh proc mounted on /proc.
    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys("unshare", "CLONE_NEWNS"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(LabError::sys("mount(\"proc\")", "/proc"))?;
    Ok(())
    // STUDENT: end private-proc
}

/// Run by the init on INSTALL_HANDLERS: from now on it catches SIGTERM and SIGINT.
fn install_handlers() -> Result<()> {
    // STUDENT: begin install-handlers
    // Hint: sigaction(2) with SA_SIGINFO, so that `record_sender` (above) gets the
    // sender's siginfo; for SIGTERM and for SIGINT. nix::sys::signal has it.
    let action = SigAction::new(SigHandler::SigAction(record_sender), SaFlags::SA_SIGINFO, SigSet::empty());
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: record_sender only stores into atomics and write(2)s one byte: async-signal-safe.
        unsafe { sigaction(signal, &action) }.map_err(LabError::sys("sigaction", signal))?;
    }
    Ok(())
    // STUDENT: end install-handlers
}

/// pidns-parent: forks the orphan-to-be, tells the init, and waits to be killed.
fn orphan_parent_process(voice: Voice, link: child::Link) -> Result<()> {
    let mut to_init = link.child_side();
    let orphan: Pid = {
        // STUDENT: begin make-orphan
        // Hint: labkit::child::spawn_with forks a child named ORPHAN_COMM that must not die
        // with its parent; it may just sleep. The block's value is its PID.
        child::spawn_with(ORPHAN_COMM, false, sleep_forever)?
        // STUDENT: end make-orphan
    };
    voice.inside(&format!("pidns-parent forked pidns-orphan, PID {orphan}"));
    to_init.ready();
    loop {
        pause();
    }
}

fn sleep_forever() -> i32 {
    loop {
        pause();
    }
}

/// A child's exit status from its outcome; an error is narrated first.
fn exit_code(voice: Voice, who: &str, outcome: Result<()>) -> i32 {
    match outcome {
        Ok(()) => 0,
        Err(error) => {
            voice.inside(&format!("{who} failed: {error:#}"));
            1
        }
    }
}

fn log_handled_signals(voice: Voice, log: &Path, logged: &mut [bool; 2], values: &mut [i64; 2]) -> Result<()> {
    let signals = [("SIGTERM", &SIGTERM_SI_PID, &SIGTERM_VALUE), ("SIGINT", &SIGINT_SI_PID, &SIGINT_VALUE)];
    for (index, (name, sender_slot, value_slot)) in signals.into_iter().enumerate() {
        let mut lines = Vec::new();
        let sender = sender_slot.load(Ordering::SeqCst);
        if sender >= 0 && !logged[index] {
            logged[index] = true;
            voice.inside(&format!("handler ran: {name} with si_pid {sender}"));
            lines.push(format!("{name} {sender}"));
        }
        // A value queued with the signal (sigqueue): written down each time it changes.
        let value = value_slot.load(Ordering::SeqCst);
        if value >= 0 && value != values[index] {
            values[index] = value;
            voice.inside(&format!("handler ran: {name} queued with the value {value}"));
            lines.push(format!("{name} value {value}"));
        }
        if lines.is_empty() {
            continue;
        }
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(LabError::io("open", log))?;
        for line in lines {
            writeln!(file, "{line}").map_err(LabError::io("write", log))?;
        }
    }
    Ok(())
}

/// Reaps every child that has ended, without waiting for the others.
fn reap_children() {
    while let Ok(status) = waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

// ── What the lab reads in /proc ─────────────────────────────────────────────

fn numeric_entries(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// The value of `key` in /proc/<pid>/status, its blanks squeezed ("S (sleeping)").
fn status_field(pid: impl std::fmt::Display, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    Some(value.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The PIDs of `pid` in each namespace, outermost first.
fn nspid(pid: Pid) -> Vec<i32> {
    status_field(pid, "NSpid").unwrap_or_default().split_whitespace().filter_map(|n| n.parse().ok()).collect()
}

/// Whether the signal's bit is set in a mask of /proc/<pid>/status (SigCgt, ShdPnd...).
fn in_mask(pid: impl std::fmt::Display, mask: &str, signal: Signal) -> bool {
    let bits = status_field(pid, mask).and_then(|hex| u64::from_str_radix(&hex, 16).ok()).unwrap_or(0);
    bits & (1 << (signal as u32 - 1)) != 0
}

fn catches(pid: impl std::fmt::Display, signal: Signal) -> bool {
    in_mask(pid, "SigCgt", signal)
}

/// Which of `signals` are pending for the process (shared or its own), or "none".
fn pending(pid: Pid, signals: &[Signal]) -> String {
    let names: Vec<&str> = signals
        .iter()
        .filter(|s| in_mask(pid, "ShdPnd", **s) || in_mask(pid, "SigPnd", **s))
        .map(|s| s.as_str())
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

fn is_zombie(pid: Pid) -> bool {
    status_field(pid, "State").is_some_and(|state| state.starts_with('Z'))
}

/// Live (not zombie) processes whose /proc/<pid>/ns/pid is `ns`.
fn in_namespace(ns: &str) -> impl Iterator<Item = Pid> + '_ {
    numeric_entries(Path::new("/proc"))
        .into_iter()
        .filter_map(|n| i32::try_from(n).ok().map(Pid::from_raw))
        .filter(move |pid| ns_link(&pid.to_string(), "pid") == ns && !is_zombie(*pid))
}

fn find_in_namespace(ns: &str, comm: &str) -> Option<Pid> {
    in_namespace(ns).find(|pid| status_field(pid, "Name").as_deref() == Some(comm))
}

fn count_in_namespace(ns: &str) -> usize {
    in_namespace(ns).count()
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Signaled(_, signal, _) => format!("killed by {}", signal.as_str()),
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_student_regions_are_the_expected_ones() {
        let regions = labkit::regions::parse(include_str!("main.rs")).expect("regions parse");
        let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["unshare-pid", "fork-init", "private-proc", "install-handlers", "make-orphan"]);
    }
}
