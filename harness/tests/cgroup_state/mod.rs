//! cilab's cgroups as the tests see them for themselves (runs and cilab leaves are made
//! below the cgroup cilab was started in), and the test's own place in them.
#![allow(dead_code)] // each test file uses a different part of this module

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every `cilab` directory under /sys/fs/cgroup, and every directory in one.
pub fn cilab_cgroups() -> BTreeSet<PathBuf> {
    crate::common::cilab_cgroups()
}

/// Asserts that cilab's cgroups are as `before`, naming every difference.
pub fn assert_unchanged(before: &BTreeSet<PathBuf>) {
    let after = cilab_cgroups();
    let mut problems: Vec<String> = after.difference(before).map(|p| format!("appeared: {}", p.display())).collect();
    problems.extend(before.difference(&after).map(|p| format!("vanished: {}", p.display())));
    assert!(problems.is_empty(), "cilab's cgroups changed:\n{}", problems.join("\n"));
}

/// The cgroup this process is in, in the hierarchy of `controller` (v1) or v2 (`None`),
/// as a directory.
pub fn own_cgroup(controller: Option<&str>) -> PathBuf {
    let groups = procfs::process::Process::myself().and_then(|p| p.cgroups()).expect("read /proc/self/cgroup").0;
    for group in &groups {
        let mount = match controller {
            // Pure v2 has cgroup2 on /sys/fs/cgroup itself; hybrid mounts it at unified/.
            None if group.controllers.is_empty() && Path::new("/sys/fs/cgroup/cgroup.controllers").exists() => {
                PathBuf::from("/sys/fs/cgroup")
            }
            None if group.controllers.is_empty() => PathBuf::from("/sys/fs/cgroup/unified"),
            Some(wanted) if group.controllers.iter().any(|c| c == wanted) => Path::new("/sys/fs/cgroup").join(wanted),
            _ => continue,
        };
        return mount.join(group.pathname.trim_start_matches('/'));
    }
    panic!("this process is in no {controller:?} cgroup: {groups:?}");
}
