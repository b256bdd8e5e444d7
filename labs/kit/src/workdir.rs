//! The directory a lab works in: the harness's scratch dir when held, else a fresh one
//! under /tmp, tracked in `cleanup` so that the lab removes it when it ends.

use std::path::{Path, PathBuf};

use crate::{cleanup, LabArgs, LabError, Result};

#[derive(Debug)]
pub struct Workdir {
    path: PathBuf,
}

impl Workdir {
    pub fn open(args: &LabArgs, lab_name: &str) -> Result<Self> {
        if let Some(path) = &args.workdir {
            if !path.is_dir() {
                return Err(LabError::Setup(format!("--workdir {} is not a directory", path.display())));
            }
            let path = path.canonicalize().map_err(LabError::io("resolve", path))?;
            return Ok(Workdir { path });
        }
        let path = std::env::temp_dir().join(format!("lab-{lab_name}-{}", std::process::id()));
        if path.exists() {
            return Err(LabError::Setup(format!("{} already exists: remove it, or pass --workdir", path.display())));
        }
        create_searchable_dir(&path)?;
        cleanup::track_dir(&path);
        Ok(Workdir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `path` (if missing) with mode 0755 whatever the umask: other users must be
/// able to reach what is inside (a jail that uid 65534 is to try to chroot into, say).
pub fn create_searchable_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(LabError::io("create directory", path)(e)),
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(LabError::io("chmod 0755", path))
}

/// Labs make namespaces, mounts and chroots: they need root. Says how to get it.
pub fn require_root(lab_binary: &str, because: &str) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    Err(LabError::Setup(format!(
        "{lab_binary} must run as root: it calls {because}. Run it as `sudo target/debug/{lab_binary}` \
         on a machine you may break, ideally a VM (README: Requirements)."
    )))
}

/// Reads the namespace link of a process, e.g. `pid:[4026531836]` for ("self", "pid").
pub fn ns_link(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("(unreadable: {e})"))
}
