//! The few cgroupfs operations cilab places itself and its runs with, behind a trait so
//! that the v2 rules can be exercised on fake data (see `harness` tests): on a hybrid
//! machine the kernel cannot show what pure v2 does.

use std::io;
use std::path::{Path, PathBuf};

pub trait CgroupFs {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// One write(2) of `value` into an existing control file.
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Creates a cgroup and any missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// The child cgroups of `path`.
    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
}

/// The real cgroup filesystems.
#[derive(Debug, Clone, Copy)]
pub struct Kernel;

impl CgroupFs for Kernel {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        use std::io::Write;
        // A control file takes one write; a buffered writer could split it.
        std::fs::OpenOptions::new().write(true).open(path)?.write_all(value.as_bytes())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            }
        }
        Ok(dirs)
    }
}

/// The words of a space-separated control file (cgroup.controllers, cgroup.subtree_control).
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(String::from).collect()
}
