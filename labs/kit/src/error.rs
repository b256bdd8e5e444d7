//! Typed errors for labs: each names the syscall (or step) and the path it failed on.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A syscall failed; `target` is the path or PID it was aimed at.
    #[error("{syscall}({target}) failed: {source}")]
    Sys {
        syscall: &'static str,
        target: String,
        #[source]
        source: nix::Error,
    },
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The harness that holds this lab stopped talking to it.
    #[error("handshake with the harness broke: {0}")]
    Handshake(String),
    /// Something the lab needs is missing on this machine; the text says what to do.
    #[error("{0}")]
    Setup(String),
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;

impl LabError {
    /// `map_err` helper: `.map_err(LabError::sys("chroot", jail))`.
    pub fn sys(syscall: &'static str, target: impl std::fmt::Display) -> impl FnOnce(nix::Error) -> Self {
        let target = target.to_string();
        move |source| LabError::Sys { syscall, target, source }
    }

    /// `map_err` helper for std::io errors on a path.
    pub fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| LabError::Io { action, path, source }
    }
}
