//! Process file descriptors: signal exactly the process the harness looked at, even if
//! its PID is reused, and wait for a process that is not the harness's child to exit.
//!
//! nix 0.29 has no wrapper for pidfd_send_signal(2): a raw libc syscall. pidfd_open is
//! labkit's.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct PidFd {
    pid: i32,
    fd: OwnedFd,
}

impl PidFd {
    pub fn open(pid: i32) -> Result<Self> {
        let fd = labkit::child::pidfd_open(nix::unistd::Pid::from_raw(pid)).map_err(Error::sys("pidfd_open", pid))?;
        Ok(PidFd { pid, fd })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn send(&self, signal: Signal) -> Result<()> {
        // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
        let rc = unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.fd.as_raw_fd(), signal as i32, std::ptr::null::<()>(), 0)
        };
        if rc < 0 {
            return Err(Error::sys("pidfd_send_signal", format!("{} {}", self.pid, signal.as_str()))(Errno::last()));
        }
        Ok(())
    }

    /// True once the process has exited (it may still be a zombie until reaped).
    pub fn has_exited(&self) -> bool {
        self.wait_exit(Duration::ZERO)
    }

    /// Waits up to `timeout` until one of `fds` has exited; true if one did.
    pub fn wait_any(fds: &[PidFd], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut polled: Vec<PollFd> = fds.iter().map(|f| PollFd::new(f.fd.as_fd(), PollFlags::POLLIN)).collect();
            match poll(&mut polled, PollTimeout::from(millis)) {
                Ok(n) if n > 0 => return true,
                Ok(_) if left.is_zero() => return false,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Waits up to `timeout` for the process to exit; true if it did.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(n) if n > 0 => return true,
                Ok(_) if left.is_zero() => return false,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => return false,
            }
        }
    }
}
