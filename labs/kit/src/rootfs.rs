//! A small root filesystem made of a static busybox and the skeleton in fixtures/rootfs.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::{elf, LabError, Result};

const APPLETS: &str = include_str!("../../../fixtures/rootfs/applets.txt");
const SKELETON: [(&str, &str); 4] = [
    ("etc/hostname", include_str!("../../../fixtures/rootfs/etc/hostname")),
    ("etc/motd", include_str!("../../../fixtures/rootfs/etc/motd")),
    ("etc/passwd", include_str!("../../../fixtures/rootfs/etc/passwd")),
    ("etc/group", include_str!("../../../fixtures/rootfs/etc/group")),
];
/// Directories every rootfs gets (mount points included, so that labs can mount on them).
const DIRECTORIES: [&str; 8] = ["bin", "etc", "proc", "tmp", "mnt", "usr/bin", "dev", "root"];

/// Finds a statically linked busybox on PATH, or says which package to install.
pub fn find_static_busybox() -> Result<PathBuf> {
    let install = "install it with `apt-get install busybox-static` (Debian, Ubuntu) or your \
                   distribution's static busybox package";
    let path = which::which("busybox").map_err(|_| LabError::Setup(format!("busybox is not on PATH: {install}")))?;
    if elf::interpreter(&path)?.is_some() {
        return Err(LabError::Setup(format!(
            "{} is dynamically linked, so it would not run alone in a jail: {install}",
            path.display()
        )));
    }
    Ok(path)
}

/// The busybox applets a rootfs links into /bin.
pub fn applets() -> impl Iterator<Item = &'static str> {
    APPLETS.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Builds the rootfs in `root` (created if missing): directories, busybox at /bin/busybox,
/// one symlink per applet, and the /etc skeleton.
pub fn build_busybox_rootfs(root: &Path, busybox: &Path) -> Result<()> {
    for dir in DIRECTORIES {
        let path = root.join(dir);
        std::fs::create_dir_all(&path).map_err(LabError::io("create directory", &path))?;
    }
    let target = root.join("bin/busybox");
    std::fs::copy(busybox, &target).map_err(LabError::io("copy busybox to", &target))?;
    for applet in applets() {
        let link = root.join("bin").join(applet);
        symlink("busybox", &link).map_err(LabError::io("symlink", &link))?;
    }
    for (relative, content) in SKELETON {
        let path = root.join(relative);
        std::fs::write(&path, content).map_err(LabError::io("write", &path))?;
    }
    Ok(())
}

/// Copies `host_path` (following symlinks) to the same absolute path under `root`.
pub fn copy_into(root: &Path, host_path: &Path) -> Result<PathBuf> {
    let relative = host_path.strip_prefix("/").unwrap_or(host_path);
    let target = root.join(relative);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(LabError::io("create directory", parent))?;
    }
    std::fs::copy(host_path, &target).map_err(LabError::io("copy into the rootfs", host_path))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applet_list_has_a_shell_and_no_comments() {
        let applets: Vec<_> = applets().collect();
        assert!(applets.contains(&"sh"));
        assert!(applets.iter().all(|a| !a.starts_with('#') && !a.contains(' ')));
    }
}
