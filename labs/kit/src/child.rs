//! Starting child processes that cannot outlive the lab, and waiting for them, always
//! with a deadline: a child that dies or hangs ends the lab with an error that says so.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::prctl;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getppid, ForkResult, Pid};

use crate::protocol::PANIC_EXIT;
use crate::{cleanup, LabError, Result};

/// How long the lab waits for a child to name itself, to say it is ready, or to exit,
/// unless [`DEADLINE_ENV`] says longer. Everything the labs wait for takes milliseconds:
/// past this, something went wrong.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Whoever runs the lab may stretch [`deadline`] with this variable: whole seconds,
/// longer than [`DEFAULT_DEADLINE`] (a shorter or unreadable value leaves the default).
/// `cilab check` sets it to its `--hold-timeout` (60 s in a qemu guest that emulates its
/// CPU), so that the lab's own waits for its children stretch with the harness's wait for
/// the lab: a slow machine fails neither. Run by hand, the default.
pub const DEADLINE_ENV: &str = "CILAB_LAB_DEADLINE";

/// How long the lab waits for a child (see [`DEFAULT_DEADLINE`], [`DEADLINE_ENV`]), read
/// once.
pub fn deadline() -> Duration {
    static DEADLINE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *DEADLINE.get_or_init(|| {
        let value = std::env::var(DEADLINE_ENV).ok();
        let deadline = deadline_from(value.as_deref());
        if let Some(value) = value.filter(|v| v.trim().parse::<u64>().is_err()) {
            let _ = writeln!(
                std::io::stderr(),
                "labkit: {DEADLINE_ENV}={value:?} is not a number of seconds: waiting {deadline:?} for children"
            );
        }
        deadline
    })
}

/// The deadline [`DEADLINE_ENV`]'s `value` asks for: never shorter than the default.
pub fn deadline_from(value: Option<&str>) -> Duration {
    let asked = value.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    asked.map_or(DEFAULT_DEADLINE, |asked| asked.max(DEFAULT_DEADLINE))
}

/// Set once this process panicked or saw a child of its own end with [`PANIC_EXIT`]: its
/// own exit status is then [`PANIC_EXIT`] too, so a panic deep down reaches the lab's.
static PANIC_SEEN: AtomicBool = AtomicBool::new(false);

/// How the lab words a child's exit with [`PANIC_EXIT`]: the panic may have been a
/// grandchild's, passed on.
const PANICKED: &str = "exited with the status of a panic (101)";

pub(crate) fn note_panic() {
    PANIC_SEEN.store(true, Ordering::SeqCst);
}

/// True once this process panicked or a child of it ended by a panic.
pub fn panic_seen() -> bool {
    PANIC_SEEN.load(Ordering::SeqCst)
}

/// Forks a child that runs `body` and exits with its return value.
///
/// The child names itself `name` (what `ps` and /proc/<pid>/comm show), asks the kernel to
/// SIGKILL it if the lab dies (PR_SET_PDEATHSIG), and gets default signal dispositions
/// back. The parent tracks it for cleanup. A panic in `body` ends the child with status
/// 101 ([`PANIC_EXIT`]): it never unwinds into the parent's code, which the child shares.
pub fn spawn(name: &str, body: impl FnOnce() -> i32) -> Result<Pid> {
    spawn_with(name, true, body)
}

/// Like [`spawn`]; with `die_with_parent` false the child survives its parent's death
/// (an orphan that the kernel re-parents, which is what some labs want to show).
///
/// Returns once the child has named itself (or died): whoever looks at /proc after this
/// (the harness, say) finds it under its name, not its parent's.
pub fn spawn_with(name: &str, die_with_parent: bool, body: impl FnOnce() -> i32) -> Result<Pid> {
    let parent = nix::unistd::getpid();
    let (named_rx, named_tx) = nix::unistd::pipe().map_err(LabError::sys("pipe", name))?;
    // SAFETY: the child only makes syscalls and runs `body`, which the labs keep to
    // syscalls and simple allocation (glibc's malloc is safe after fork).
    match unsafe { fork() }.map_err(LabError::sys("fork", name))? {
        ForkResult::Parent { child } => {
            cleanup::track_child(child);
            drop(named_tx);
            // One byte once it is named; end of file if it died first. Either way, go on.
            let deadline = deadline();
            if !poll_until(&mut [PollFd::new(named_rx.as_fd(), PollFlags::POLLIN)], Instant::now() + deadline)? {
                return Err(LabError::Child(format!(
                    "{name} (PID {child}) did not name itself within {deadline:?} of its fork"
                )));
            }
            let _ = File::from(named_rx).read(&mut [0u8]);
            Ok(child)
        }
        ForkResult::Child => {
            drop(named_rx);
            // What the parent tracked is the parent's to clean, never the child's; and a
            // panic the parent saw is not the child's (its exit status says only its own).
            cleanup::forget_all();
            PANIC_SEEN.store(false, Ordering::SeqCst);
            if die_with_parent {
                let _ = prctl::set_pdeathsig(Signal::SIGKILL);
                // The parent may have died before the line above: then nobody would kill
                // us. In a new PID namespace our parent is outside it: getppid() says 0.
                let ppid = getppid();
                if ppid != parent && ppid != Pid::from_raw(0) {
                    exit_now(1);
                }
            }
            let _ = set_name(name);
            let _ = File::from(named_tx).write_all(b"n");
            for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
                // SAFETY: restoring the default disposition installs no Rust code as a handler.
                let _ = unsafe { signal(sig, SigHandler::SigDfl) };
            }
            // The panic hook has already said what happened; the status tells the parent.
            let code = catch_unwind(AssertUnwindSafe(body)).unwrap_or(PANIC_EXIT);
            exit_now(if panic_seen() { PANIC_EXIT } else { code })
        }
    }
}

/// Waits (at most [`deadline`]) for the child `pid` to exit, reaps it and forgets it.
/// A child that panicked is an error: the panic is the news, not its exit status.
/// Refuses a PID that is not a child of this process. Whatever a lab signals, it signals
/// its own children: a wrong PID (1, say, whose SIGINT reboots a systemd machine) must
/// never reach someone else's process.
pub fn ensure_own_child(pid: Pid, what: &str) -> Result<()> {
    let parent = procfs::process::Process::new(pid.as_raw()).and_then(|p| p.stat()).map(|stat| stat.ppid).ok();
    if pid.as_raw() > 0 && parent == Some(nix::unistd::getpid().as_raw()) {
        return Ok(());
    }
    Err(LabError::Setup(format!(
        "{what} is PID {pid}, which is not a child of this lab (its parent is {}): the lab signals only \
         its own children, so it stops here",
        parent.map_or("unknown".to_string(), |p| p.to_string())
    )))
}

pub fn wait(pid: Pid, doing: &str) -> Result<WaitStatus> {
    let who = describe_child(pid);
    let pidfd = pidfd_open(pid).map_err(LabError::sys("pidfd_open", pid))?;
    if !poll_until(&mut [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)], Instant::now() + deadline())? {
        return Err(LabError::Child(format!("{who} did not exit within {:?} while {doing}", deadline())));
    }
    let status = waitpid(pid, None).map_err(LabError::sys("waitpid", pid))?;
    cleanup::forget_child(pid);
    if let WaitStatus::Exited(_, PANIC_EXIT) = status {
        note_panic();
        return Err(LabError::Child(format!("{who} {PANICKED} while {doing}: the panic's message is above")));
    }
    Ok(status)
}

/// Waits for a command the lab started (docker, say) to exit, at most until `deadline`:
/// true once it has exited (left for `Child::wait` to reap), false if it still runs.
pub fn exited_by(child: &std::process::Child, deadline: Instant) -> Result<bool> {
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(|_| LabError::Child(format!("PID {}", child.id())))?);
    let pidfd = pidfd_open(pid).map_err(LabError::sys("pidfd_open", pid))?;
    poll_until(&mut [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)], deadline)
}

/// "pidns-init (PID 1234)": what the lab calls a child in its messages.
fn describe_child(pid: Pid) -> String {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => format!("{} (PID {pid})", comm.trim()),
        Err(_) => format!("the child (PID {pid})"),
    }
}

/// A pidfd turns readable when its process exits: a wait that poll can bound.
/// A process file descriptor for `pid`: it names exactly that process, and polls readable
/// once it has exited. nix 0.29 has no wrapper for pidfd_open(2), hence the raw syscall.
/// (The harness opens its pidfds with this too.)
pub fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a PID and flags, and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = RawFd::try_from(Errno::result(fd)?).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just made this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Polls `fds` for input until `deadline`: true if one is ready, false if time ran out.
/// A signal (the lab's cleanup thread catches some) only interrupts: poll goes on.
fn poll_until(fds: &mut [PollFd], deadline: Instant) -> Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(fds, timeout) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(LabError::sys("poll", "a child's pipe")(errno)),
        }
    }
}

/// How the child behind `pidfd` ended, waiting for its end at most until `deadline`; its
/// status is left for the lab to reap (WNOWAIT). `None` if it still runs.
fn how_it_ended(pidfd: BorrowedFd, deadline: Instant) -> Result<Option<WaitStatus>> {
    if !poll_until(&mut [PollFd::new(pidfd, PollFlags::POLLIN)], deadline)? {
        return Ok(None);
    }
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    Ok(waitid(Id::PIDFd(pidfd), flags).ok().filter(|s| !matches!(s, WaitStatus::StillAlive)))
}

/// Sets this process's comm (at most 15 bytes are kept by the kernel).
pub fn set_name(name: &str) -> Result<()> {
    let c_name = std::ffi::CString::new(name).map_err(|_| LabError::Setup(format!("bad process name {name:?}")))?;
    prctl::set_name(&c_name).map_err(LabError::sys("prctl(PR_SET_NAME)", name))
}

/// Ends a forked child at once: no atexit handlers, no flushing of buffers the parent
/// owns too. nix has no wrapper for `_exit`, hence raw libc.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Two pipes between the lab and one child: the child says "ready", the lab sends
/// one-byte commands, and closing the lab's end tells the child to finish.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    child_ready: RawFd,
    lab_ready: RawFd,
    lab_commands: RawFd,
    child_commands: RawFd,
}

impl Link {
    pub fn new() -> Result<Self> {
        let (lab_ready, child_ready) = nix::unistd::pipe().map_err(LabError::sys("pipe", "child ready"))?;
        let (child_commands, lab_commands) = nix::unistd::pipe().map_err(LabError::sys("pipe", "lab commands"))?;
        // The numbers travel into the forked child, which owns its copies; each side
        // closes the other side's ends in `lab_side` / `child_side`.
        Ok(Link {
            child_ready: child_ready.into_raw_fd(),
            lab_ready: lab_ready.into_raw_fd(),
            lab_commands: lab_commands.into_raw_fd(),
            child_commands: child_commands.into_raw_fd(),
        })
    }

    /// Call in the lab after `spawn`, with the child's PID.
    pub fn lab_side(self, child: Pid) -> Result<LabEnd> {
        let _ = nix::unistd::close(self.child_ready);
        let _ = nix::unistd::close(self.child_commands);
        // SAFETY: these descriptors came from pipe() in `new` and nothing else owns them here.
        let (ready, commands) = unsafe { (File::from_raw_fd(self.lab_ready), File::from_raw_fd(self.lab_commands)) };
        Ok(LabEnd {
            who: describe_child(child),
            pidfd: pidfd_open(child).map_err(LabError::sys("pidfd_open", child))?,
            ready,
            commands,
        })
    }

    /// Call first thing in the child.
    pub fn child_side(self) -> ChildEnd {
        let _ = nix::unistd::close(self.lab_ready);
        let _ = nix::unistd::close(self.lab_commands);
        // SAFETY: as above, in the child's copy of the descriptor table.
        unsafe {
            ChildEnd { ready: File::from_raw_fd(self.child_ready), commands: File::from_raw_fd(self.child_commands) }
        }
    }
}

#[derive(Debug)]
pub struct LabEnd {
    who: String,
    /// Readable once the child exited: its own descendants may hold copies of its end of
    /// the pipes, so the pipes alone would never tell.
    pidfd: OwnedFd,
    ready: File,
    commands: File,
}

impl LabEnd {
    /// Waits until the child says it is ready, at most [`deadline`]. If it dies or hangs
    /// instead, the error says so, then `likely`: what probably went wrong, for the student.
    pub fn wait_ready(&mut self, doing: &str, likely: &str) -> Result<()> {
        let waiting = self::deadline();
        let deadline = Instant::now() + waiting;
        loop {
            let mut fds = [
                PollFd::new(self.ready.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN),
            ];
            if !poll_until(&mut fds, deadline)? {
                return Err(LabError::Child(format!(
                    "{} was not ready within {waiting:?} while {doing}: {likely}",
                    self.who
                )));
            }
            // Ready wins over exited: a child may say ready and then end.
            if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                match self.ready.read(&mut [0u8]) {
                    Ok(1) => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // End of file: the child closed its end, as a dying process does.
                    _ => {}
                }
            }
            let ended = match how_it_ended(self.pidfd.as_fd(), deadline)? {
                Some(WaitStatus::Exited(_, PANIC_EXIT)) => {
                    note_panic();
                    return Err(LabError::Child(format!(
                        "{} {PANICKED} while {doing}: the panic's message is above",
                        self.who
                    )));
                }
                Some(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
                Some(WaitStatus::Signaled(_, signal, _)) => format!("was killed by {}", signal.as_str()),
                Some(other) => format!("ended ({other:?})"),
                None => format!("closed its pipe yet did not exit within {waiting:?}"),
            };
            return Err(LabError::Child(format!("{} {ended} while {doing}: {likely}", self.who)));
        }
    }

    pub fn send(&mut self, command: u8) -> Result<()> {
        self.commands
            .write_all(&[command])
            .map_err(|e| LabError::Child(format!("sending command {:?} to {}: {e}", command as char, self.who)))
    }

    /// Closes the command pipe: the child's `next_command` returns `None`.
    pub fn release(self) {}
}

#[derive(Debug)]
pub struct ChildEnd {
    ready: File,
    pub commands: File,
}

impl ChildEnd {
    pub fn ready(&mut self) {
        let _ = self.ready.write_all(b"r");
    }

    /// The descriptors of this end: a child that closes the descriptors it inherited
    /// keeps these.
    pub fn raw_fds(&self) -> [RawFd; 2] {
        use std::os::fd::AsRawFd;
        [self.ready.as_raw_fd(), self.commands.as_raw_fd()]
    }

    /// Blocks for the next command; `None` once the lab closed its end (or died).
    pub fn next_command(&mut self) -> Option<u8> {
        let mut byte = [0u8];
        loop {
            match self.commands.read(&mut byte) {
                Ok(1) => return Some(byte[0]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_stretches_as_asked_and_never_shrinks() {
        assert_eq!(deadline_from(None), DEFAULT_DEADLINE);
        assert_eq!(deadline_from(Some("60")), Duration::from_secs(60));
        assert_eq!(deadline_from(Some(" 180\n")), Duration::from_secs(180));
        // Shorter than the default, or not a number of seconds: the default.
        assert_eq!(deadline_from(Some("2")), DEFAULT_DEADLINE);
        assert_eq!(deadline_from(Some("0")), DEFAULT_DEADLINE);
        assert_eq!(deadline_from(Some("1m")), DEFAULT_DEADLINE);
        assert_eq!(deadline_from(Some("")), DEFAULT_DEADLINE);
    }

    #[test]
    fn a_panicking_child_exits_101_and_its_parent_knows() {
        let pid = spawn("labkit-panics", || panic!("on purpose")).expect("fork");
        let error = wait(pid, "testing").expect_err("a panic is an error");
        assert!(error.to_string().contains("status of a panic (101)"), "{error}");
        assert!(panic_seen());
    }

    #[test]
    fn wait_ready_tells_ready_from_dead() {
        let link = Link::new().expect("pipes");
        let pid = spawn("labkit-ready", move || {
            link.child_side().ready();
            0
        })
        .expect("fork");
        link.lab_side(pid).expect("pidfd").wait_ready("testing", "likely").expect("ready");
        assert_eq!(wait(pid, "testing").expect("exits"), WaitStatus::Exited(pid, 0));

        let link = Link::new().expect("pipes");
        let pid = spawn("labkit-dies", move || {
            drop(link.child_side());
            3
        })
        .expect("fork");
        let error = link.lab_side(pid).expect("pidfd").wait_ready("testing", "the likely cause").expect_err("dead");
        assert_eq!(
            error.to_string(),
            format!("labkit-dies (PID {pid}) exited with status 3 while testing: the likely cause")
        );
        let _ = wait(pid, "testing");
    }
}
