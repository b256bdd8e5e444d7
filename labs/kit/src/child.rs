//! Starting child processes that cannot outlive the lab.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};

use nix::sys::prctl;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{fork, getppid, ForkResult, Pid};

use crate::{cleanup, LabError, Result};

/// Forks a child that runs `body` and exits with its return value.
///
/// The child names itself `name` (what `ps` and /proc/<pid>/comm show), asks the kernel to
/// SIGKILL it if the lab dies (PR_SET_PDEATHSIG), and gets default signal dispositions
/// back. The parent tracks it for cleanup.
pub fn spawn(name: &str, body: impl FnOnce() -> i32) -> Result<Pid> {
    spawn_with(name, true, body)
}

/// Like [`spawn`]; with `die_with_parent` false the child survives its parent's death
/// (an orphan that the kernel re-parents, which is what some labs want to show).
///
/// Returns once the child has named itself: whoever looks at /proc after this (the
/// harness, say) finds it under its name, not its parent's.
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
            let mut named = File::from(named_rx);
            let _ = named.read(&mut [0u8]);
            Ok(child)
        }
        ForkResult::Child => {
            drop(named_rx);
            // What the parent tracked is the parent's to clean, never the child's.
            cleanup::forget_all();
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
            let code = body();
            exit_now(code)
        }
    }
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

    /// Call in the lab after `spawn`.
    pub fn lab_side(self) -> LabEnd {
        let _ = nix::unistd::close(self.child_ready);
        let _ = nix::unistd::close(self.child_commands);
        // SAFETY: these descriptors came from pipe() in `new` and nothing else owns them here.
        unsafe { LabEnd { ready: File::from_raw_fd(self.lab_ready), commands: File::from_raw_fd(self.lab_commands) } }
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
    ready: File,
    commands: File,
}

impl LabEnd {
    /// Blocks until the child says it is ready; an error if it died first.
    pub fn wait_ready(&mut self, doing: &str) -> Result<()> {
        let mut byte = [0u8];
        match self.ready.read(&mut byte) {
            Ok(1) => Ok(()),
            Ok(_) => Err(LabError::Setup(format!("the child died while {doing}"))),
            Err(e) => Err(LabError::Setup(format!("waiting for the child while {doing}: {e}"))),
        }
    }

    pub fn send(&mut self, command: u8) -> Result<()> {
        self.commands
            .write_all(&[command])
            .map_err(|e| LabError::Setup(format!("sending command {:?} to the child: {e}", command as char)))
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
