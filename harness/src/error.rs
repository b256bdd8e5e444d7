//! The harness's typed errors: each names the syscall or file and says what to do.

use std::path::PathBuf;

/// The one way to become root that cilab tells, everywhere it tells it.
pub const BECOME_ROOT: &str = "sudo -E env PATH=\"$PATH\" cargo run -p cilab -- <command>";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{syscall}({target}) failed: {source}")]
    Sys {
        syscall: &'static str,
        target: String,
        #[source]
        source: nix::Error,
    },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn sys(syscall: &'static str, target: impl std::fmt::Display) -> impl FnOnce(nix::Error) -> Self {
        let target = target.to_string();
        move |source| Error::Sys { syscall, target, source }
    }

    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }

    pub fn parse(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Parse { what: what.into(), detail: detail.into() }
    }
}
