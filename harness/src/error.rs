//! The harness's typed errors: each names the syscall or file and says what to do.

use std::path::PathBuf;

/// The one way to become root that cilab tells, everywhere it tells it.
pub const BECOME_ROOT: &str = "sudo -E env PATH=\"$PATH\" cargo run -p cilab -- <command>";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The errno (the I/O error) is in the message and deliberately no `source`: a chain
    // printer (`{:#}`) would print it twice.
    #[error("{syscall}({target}) failed: {errno}")]
    Sys { syscall: &'static str, target: String, errno: nix::Error },
    #[error("{action} {}: {cause}", path.display())]
    Io { action: &'static str, path: PathBuf, cause: std::io::Error },
    #[error(
        "cilab must run as root to make namespaces, mounts and cgroups. Run it as root \
         (`{BECOME_ROOT}`) on a machine you may break: a VM (README: Requirements)"
    )]
    NotRoot,
    #[error("unknown lab `{0}`: `cilab list` shows the labs")]
    UnknownLab(String),
    #[error("lab {lab}: {message}")]
    Lab { lab: String, message: String },
    #[error("building the lab binaries failed: {0}")]
    Build(String),
    #[error("cgroups: {0}")]
    Cgroup(String),
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
    /// The harness itself could not do its part (a fork, a pipe, a thread: EAGAIN under a
    /// tight pids limit, say). Never the student's fault, never graded as theirs.
    #[error("the harness could not do its part: {0}")]
    Harness(String),
    /// A handout could not be written (where it would go, or the tree it comes from).
    #[error("handout: {0}")]
    Handout(String),
    /// A VM backend could not run the check in its guest (it did not start, died, hung,
    /// or answered nonsense): the backend's failure, never the student's.
    #[error("the {backend} backend: {message}")]
    Backend { backend: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn sys(syscall: &'static str, target: impl std::fmt::Display) -> impl FnOnce(nix::Error) -> Self {
        let target = target.to_string();
        move |errno| Error::Sys { syscall, target, errno }
    }

    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |cause| Error::Io { action, path, cause }
    }

    pub fn parse(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Parse { what: what.into(), detail: detail.into() }
    }

    /// `map_err` helper for a syscall the harness makes for itself (fork, pipe): its
    /// failure is the harness's.
    pub fn harness(syscall: &'static str, what: impl std::fmt::Display) -> impl FnOnce(nix::Error) -> Self {
        let what = what.to_string();
        move |errno| Error::Harness(format!("{syscall} for {what} failed: {errno}"))
    }

    /// True when the harness, not the lab, failed: its own resources ran out, or it could
    /// not set up. A lab that misbehaves (exits early, loses a process) is the lab's.
    pub fn is_harness_failure(&self) -> bool {
        use nix::errno::Errno;
        const RESOURCES: [Errno; 5] = [Errno::EAGAIN, Errno::ENOMEM, Errno::EMFILE, Errno::ENFILE, Errno::ENOSPC];
        match self {
            Error::Harness(_) | Error::Cgroup(_) | Error::Build(_) | Error::NotRoot | Error::Backend { .. } => true,
            Error::Sys { .. } | Error::Io { .. } => self.errno().is_some_and(|e| RESOURCES.contains(&e)),
            Error::UnknownLab(_) | Error::Lab { .. } | Error::Parse { .. } | Error::Handout(_) => false,
        }
    }

    /// The errno of a failed syscall or file operation, if that is what failed.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        match self {
            Error::Sys { errno, .. } => Some(*errno),
            Error::Io { cause, .. } => cause.raw_os_error().map(nix::errno::Errno::from_raw),
            _ => None,
        }
    }
}
