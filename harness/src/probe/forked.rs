//! Syscalls the harness makes itself, each in a forked child: setns into a lab's
//! namespaces, chroot into its jail, exec there, try a signal. The child is
//! single-threaded (fork copies only the calling thread), so setns into a mount namespace
//! is allowed, and nothing it changes touches the harness.
//!
//! The child writes what it saw on a pipe and exits with 0, or with the errno of the
//! step that failed; the parent waits with a timeout and kills the child (its own, by
//! PID) if it hangs.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

use crate::error::{Error, Result};

/// What a forked probe reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// Ok if the probe's body returned Ok (or the program it exec'd exited 0).
    pub status: std::result::Result<(), ProbeFailure>,
    /// What the body wrote (or the exec'd program printed on stdout).
    pub output: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFailure {
    /// A syscall failed with this errno (or an exec'd program exited with this code).
    Errno(Errno),
    /// The probe was killed by a signal.
    Signaled(Signal),
}

/// Runs `body` in a forked child. `body` gets the write end of the result pipe, which it
/// may also make its stdout before an exec.
pub fn probe(what: &str, timeout: Duration, body: impl FnOnce(&mut File) -> nix::Result<()>) -> Result<ProbeOutcome> {
    let (read_end, write_end) = nix::unistd::pipe().map_err(Error::sys("pipe", what))?;
    // SAFETY: the child makes syscalls, writes to the pipe, and leaves with _exit; glibc's
    // malloc stays usable after fork for the little it allocates.
    match unsafe { fork() }.map_err(Error::sys("fork", what))? {
        ForkResult::Child => {
            drop(read_end);
            // The harness may trap these for its own cleanup; a probe must feel them.
            for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
                // SAFETY: restoring the default disposition installs no handler.
                let _ = unsafe { signal(sig, SigHandler::SigDfl) };
            }
            let mut out = File::from(write_end);
            let code = match body(&mut out) {
                Ok(()) => 0,
                Err(errno) => errno as i32,
            };
            let _ = out.flush();
            // SAFETY: _exit has no preconditions; nix 0.29 has no wrapper for it.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let output = read_with_deadline(File::from(read_end), Instant::now() + timeout);
            let status = match output {
                Ok(_) => waitpid(child, None),
                Err(_) => {
                    // Timed out: the probe is our own child, end it by PID.
                    let _ = kill(child, Signal::SIGKILL);
                    waitpid(child, None)
                }
            }
            .map_err(Error::sys("waitpid", child))?;
            let output = output.map_err(|()| Error::Lab {
                lab: what.to_string(),
                message: format!("the probe did not finish within {timeout:?}"),
            })?;
            let status = match status {
                WaitStatus::Exited(_, 0) => Ok(()),
                WaitStatus::Exited(_, code) => Err(ProbeFailure::Errno(Errno::from_raw(code))),
                WaitStatus::Signaled(_, sig, _) => Err(ProbeFailure::Signaled(sig)),
                other => return Err(Error::parse("probe exit status", format!("{other:?}"))),
            };
            Ok(ProbeOutcome { status, output })
        }
    }
}

fn read_with_deadline(mut pipe: File, deadline: Instant) -> std::result::Result<String, ()> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(());
        }
        let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return Err(()),
        }
        match pipe.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
}

/// In a probe body: make the result pipe this process's stdout (before an exec).
pub fn pipe_as_stdout(out: &File) -> nix::Result<()> {
    nix::unistd::dup2(out.as_raw_fd(), 1).map(|_| ())
}

/// In a probe body: write a line of result text.
pub fn say(out: &mut File, line: &str) {
    let _ = writeln!(out, "{line}");
}
