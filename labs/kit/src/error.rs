//! Typed errors for labs: each names the syscall (or step) and the path it failed on.
//!
//! The errno or I/O error is part of the message, and deliberately not a `source`: a
//! chain printer (`{:#}` of anyhow) would print it a second time.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A syscall failed; `target` is the path or PID it was aimed at.
    #[error("{syscall}({target}) failed: {errno}")]
    Sys { syscall: &'static str, target: String, errno: nix::Error },
    /// A file operation failed.
    #[error("{action} {}: {cause}", path.display())]
    Io { action: &'static str, path: PathBuf, cause: std::io::Error },
    /// The harness that holds this lab stopped talking to it.
    #[error("handshake with the harness broke: {0}")]
    Handshake(String),
    /// A child process did not do what the lab waited for (it died, panicked, or hung).
    #[error("{0}")]
    Child(String),
    /// Something the lab needs is missing on this machine; the text says what to do.
    #[error("{0}")]
    Setup(String),
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;

impl LabError {
    /// `map_err` helper: `.map_err(LabError::sys("chroot", jail))`.
    pub fn sys(syscall: &'static str, target: impl std::fmt::Display) -> impl FnOnce(nix::Error) -> Self {
        let target = target.to_string();
        move |errno| LabError::Sys { syscall, target, errno }
    }

    /// `map_err` helper for std::io errors on a path.
    pub fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |cause| LabError::Io { action, path, cause }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What anyhow's `{:#}` prints: the error, then each source after ": ". (labkit does not
    /// depend on anyhow; the labs do.)
    fn chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }

    #[test]
    fn the_cause_is_printed_once() {
        let io = LabError::io("write", Path::new("/jail/note"))(std::io::Error::from_raw_os_error(libc::EROFS));
        let text = chain(&io);
        assert_eq!(text.matches("Read-only file system").count(), 1, "{text}");
        assert!(text.starts_with("write /jail/note: Read-only file system"), "{text}");

        let sys = LabError::sys("chroot", "/jail")(nix::Error::EPERM);
        let text = chain(&sys);
        assert_eq!(text, "chroot(/jail) failed: EPERM: Operation not permitted");
    }
}
