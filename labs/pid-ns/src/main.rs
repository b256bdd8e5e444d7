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

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use labkit::protocol::pid_ns::*;
use labkit::{child, cleanup, ns_link, Lab, LabArgs, LabError, Voice};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
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
    labkit::main("lab-pid-ns", || run(&cli.lab))
}

/// Commands the lab sends to its namespace init, one byte each.
const MAKE_ORPHAN: u8 = b'o';
const INSTALL_HANDLERS: u8 = b'h';

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
    // STUDENT: begin unshare-pid
    // Hint: nix::sched::unshare with CloneFlags::CLONE_NEWPID. The caller does not move.
    unshare(CloneFlags::CLONE_NEWPID).map_err(LabError::sys("unshare", "CLONE_NEWPID"))?;
    // STUDENT: end unshare-pid
    lab.saw(&format!(
        "my PID is still {me}; /proc/self/ns/pid is {} (before: {pid_ns_before})",
        ns_link("self", "pid")
    ));
    lab.saw(&format!("/proc/self/ns/pid_for_children: {}", ns_link("self", "pid_for_children")));
    lab.why("pid_for_children cannot be opened yet (ENOENT): the new namespace has no init until the first fork.");
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
    // STUDENT: begin fork-init
    // Hint: labkit::child::spawn forks; the child runs `namespace_init`, which is PID 1.
    let init = child::spawn(INIT_COMM, move || match namespace_init(voice, me, link.child_side(), &handler_log) {
        Ok(()) => 0,
        Err(error) => {
            voice.inside(&format!("init failed: {error:#}"));
            1
        }
    })?;
    // STUDENT: end fork-init
    let mut init_link = link.lab_side();
    init_link.wait_ready("setting up its mounts and children")?;
    lab.saw(&format!("fork() returned {init} here on the host; inside, the same process calls itself 1"));
    lab.saw(&format!("/proc/{init}/status says {}", status_line(init, "NSpid").unwrap_or_default()));
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
        std::thread::sleep(Duration::from_millis(200));
        lab.saw(&format!("the init is still there: {}", status_line(init, "State").unwrap_or_default()));
    }
    lab.why("the kernel drops signals to a namespace init for which it has no handler (SIGKILL and SIGSTOP from an ancestor namespace excepted): PID 1 must not die by accident.");

    // ── Step 4 ───────────────────────────────────────────────────────────────
    lab.step(
        "Orphan a process inside: its new parent is the namespace init",
        "inside: kill(pidns-parent, SIGTERM); the kernel re-parents pidns-orphan",
        "sh -c 'sleep 1000 &' ; ps -o pid,ppid,comm   (inside the namespace)",
    );
    init_link.send(MAKE_ORPHAN)?;
    init_link.wait_ready("orphaning a process")?;
    lab.hold(ORPHANED, json!({ "init": init.as_raw() }))?;

    // ── Step 5 ───────────────────────────────────────────────────────────────
    lab.step(
        "Install handlers in the init, then signal it again from the host",
        "inside: sigaction(SIGTERM/SIGINT, SA_SIGINFO); host: kill(init, SIGTERM)",
        &format!("kill -TERM {init}   (the init now traps it)"),
    );
    init_link.send(INSTALL_HANDLERS)?;
    init_link.wait_ready("installing its signal handlers")?;
    lab.hold(HANDLER_INSTALLED, json!({ "init": init.as_raw() }))?;
    if lab.plays_host() {
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            lab.as_host(&format!("kill -{} {init}", signal.as_str().trim_start_matches("SIG")));
            kill(init, signal).map_err(LabError::sys("kill", init))?;
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = std::fs::read_to_string(workdir.path().join(HANDLER_LOG)).unwrap_or_default();
        lab.saw(&format!("the handler wrote: {}", log.trim().replace('\n', "; ")));
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
    let status = waitpid(init, None).map_err(LabError::sys("waitpid", init))?;
    cleanup::forget_child(init);
    lab.saw(&format!("the init ended: {}", describe(status)));
    lab.why("when a namespace's init dies, the kernel SIGKILLs every other process in it.");
    // STUDENT: begin fork-into-dead-namespace
    // Hint: fork() again. The namespace has no init any more: expect ENOMEM.
    // SAFETY: the child exits at once.
    match unsafe { fork() } {
        Err(errno) => lab.saw(&format!("fork() into the dead namespace failed: {errno:?} ({})", errno.desc())),
        Ok(ForkResult::Child) => child::exit_now(0),
        Ok(ForkResult::Parent { child }) => {
            let _ = waitpid(child, None);
            lab.saw(&format!("fork() unexpectedly worked (child {child})"));
        }
    }
    // STUDENT: end fork-into-dead-namespace
    lab.why("a PID namespace whose init has exited accepts no new process: fork fails with ENOMEM.");
    lab.hold(INIT_GONE, json!({ "lab": me.as_raw() }))?;

    cleanup::remove_made_dirs()?;
    lab.done("Done: the namespace is gone and nothing is left behind. Now answer the questions on the lab sheet.");
    Ok(())
}

// ── The namespace init (runs as PID 1) ──────────────────────────────────────

/// Signal number and si_pid the init's handler saw last, per signal (-1: none yet).
static SIGTERM_SI_PID: AtomicI32 = AtomicI32::new(-1);
static SIGINT_SI_PID: AtomicI32 = AtomicI32::new(-1);

extern "C" fn record_sender(signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let sender = unsafe { (*info).si_pid() };
    match signal {
        libc::SIGTERM => SIGTERM_SI_PID.store(sender, Ordering::SeqCst),
        libc::SIGINT => SIGINT_SI_PID.store(sender, Ordering::SeqCst),
        _ => {}
    }
}

fn namespace_init(voice: Voice, lab_host_pid: Pid, mut link: child::ChildEnd, handler_log: &Path) -> Result<()> {
    voice.inside(&format!("getpid() = {}", getpid()));

    // STUDENT: begin private-proc
    // Hint: a new mount namespace, made private so nothing propagates to the host, then
    // a fresh proc filesystem on /proc: it shows the PID namespace of the mounting process.
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
    // STUDENT: end private-proc

    // The lab's host PID means nothing here: there is no such process in this namespace.
    match kill(lab_host_pid, None) {
        Err(Errno::ESRCH) => {
            voice.inside(&format!("kill -0 {lab_host_pid} (the lab's host PID): ESRCH, no such process here"))
        }
        other => voice.inside(&format!("kill -0 {lab_host_pid}: {other:?}")),
    }

    child::spawn(SLEEPER_COMM, || loop {
        pause();
    })?;
    let parent_link = child::Link::new()?;
    let orphan_parent = child::spawn(ORPHAN_PARENT_COMM, move || {
        let mut to_init = parent_link.child_side();
        // The orphan must outlive its parent, so it does not ask to die with it.
        if child::spawn_with(ORPHAN_COMM, false, || loop {
            pause();
        })
        .is_err()
        {
            return 1;
        }
        to_init.ready();
        loop {
            pause();
        }
    })?;
    parent_link.lab_side().wait_ready("forking the orphan-to-be")?;
    voice.inside(&format!("ls /proc: {:?}", numeric_entries(Path::new("/proc"))));
    link.ready();

    let mut logged = [false, false];
    loop {
        reap_children();
        log_handled_signals(voice, handler_log, &mut logged)?;
        let mut poll_fds =
            [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&link.commands), nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut poll_fds, nix::poll::PollTimeout::from(50u16)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(errno) => return Err(LabError::sys("poll", "the lab's command pipe")(errno).into()),
        }
        let Some(command) = link.next_command() else {
            return Ok(()); // the lab closed the pipe: it is ending
        };
        match command {
            MAKE_ORPHAN => {
                kill(orphan_parent, Signal::SIGTERM).map_err(LabError::sys("kill", orphan_parent))?;
                let _ = waitpid(orphan_parent, None);
                voice.inside(&format!("pidns-parent (PID {orphan_parent}) is gone; its child is now mine"));
            }
            INSTALL_HANDLERS => {
                let action = SigAction::new(SigHandler::SigAction(record_sender), SaFlags::SA_SIGINFO, SigSet::empty());
                for signal in [Signal::SIGTERM, Signal::SIGINT] {
                    // SAFETY: the handler only stores into atomics, which is async-signal-safe.
                    unsafe { sigaction(signal, &action) }.map_err(LabError::sys("sigaction", signal))?;
                }
                voice.inside("handlers installed for SIGTERM and SIGINT");
            }
            _ => {}
        }
        link.ready();
    }
}

fn log_handled_signals(voice: Voice, log: &Path, logged: &mut [bool; 2]) -> Result<()> {
    for (index, (name, slot)) in [("SIGTERM", &SIGTERM_SI_PID), ("SIGINT", &SIGINT_SI_PID)].into_iter().enumerate() {
        let sender = slot.load(Ordering::SeqCst);
        if sender < 0 || logged[index] {
            continue;
        }
        logged[index] = true;
        voice.inside(&format!("handler ran: {name} with si_pid {sender}"));
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(LabError::io("open", log))?;
        writeln!(file, "{name} {sender}").map_err(LabError::io("write", log))?;
    }
    Ok(())
}

/// PID 1 must reap: every orphan in the namespace becomes its child.
fn reap_children() {
    while let Ok(status) = waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

fn numeric_entries(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

fn status_line(pid: Pid, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn is_zombie(pid: Pid) -> bool {
    status_line(pid, "State").is_some_and(|state| state.contains("zombie"))
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Signaled(_, signal, _) => format!("killed by {}", signal.as_str()),
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        other => format!("{other:?}"),
    }
}
