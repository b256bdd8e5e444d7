//! Finding cilab's cgroups wherever they are nested: every `cilab` directory in every
//! hierarchy, and in it the runs (`<lab>-<pid>-<n>`) and cilab leaves (`harness-<pid>`).
//! Breadth first, with a bound on depth and on directories read, so that `cilab doctor`
//! stays fast on a machine with thousands of cgroups, and says when it stopped early.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use super::fs::CgroupFs;
use super::harness::LEAF_PREFIX;
use super::run_group::{GroupDir, Version};
use super::setup::CgroupSetup;
use super::PARENT_DIR;

/// Deeper than any systemd tree (root/slice/user slice/unit/cilab/run is 5).
pub const MAX_DEPTH: usize = 16;
/// Directories read per hierarchy before the scan gives up.
pub const MAX_DIRS: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A run's cgroup; the PID of the cilab that made it is in its name.
    Run { id: String, owner: i32 },
    /// A cilab's own v2 leaf.
    Leaf { owner: i32 },
    /// A cgroup a lab makes, by its name (lab cgroup-limits' `lab-limits`), outside any
    /// cilab dir: made by the lab run by hand, and left if that run was killed.
    ByHand,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub dir: GroupDir,
    pub kind: Kind,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub found: Vec<Found>,
    pub dirs_read: usize,
    /// Hierarchies where the bound stopped the scan before the end.
    pub cut_short: Vec<PathBuf>,
}

/// Every hierarchy once (co-mounted v1 controllers share one), with what to call it.
fn hierarchies(setup: &CgroupSetup) -> Vec<(PathBuf, Version, Option<String>)> {
    let mut v1: BTreeMap<&Path, Vec<&str>> = BTreeMap::new();
    for (controller, mount) in &setup.v1 {
        v1.entry(mount.as_path()).or_default().push(controller);
    }
    let mut all: Vec<_> =
        v1.into_iter().map(|(mount, cs)| (mount.to_path_buf(), Version::V1, Some(cs.join(",")))).collect();
    if let Some(v2) = &setup.v2 {
        all.push((v2.path.clone(), Version::V2, None));
    }
    all
}

pub fn scan(fs: &dyn CgroupFs, setup: &CgroupSetup) -> Scan {
    let mut scan = Scan::default();
    for (mount, version, controller) in hierarchies(setup) {
        let mut queue = VecDeque::from([(mount.clone(), 0usize)]);
        let mut read = 0;
        while let Some((dir, depth)) = queue.pop_front() {
            if read >= MAX_DIRS {
                scan.cut_short.push(mount.clone());
                break;
            }
            read += 1;
            for sub in fs.subdirs(&dir).unwrap_or_default() {
                if sub.file_name().is_some_and(|n| n == PARENT_DIR) {
                    // What is in a `cilab` dir is a run or a leaf: nothing deeper is cilab's.
                    read += 1;
                    for entry in fs.subdirs(&sub).unwrap_or_default() {
                        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        if let Some(kind) = classify(&name) {
                            let dir = GroupDir {
                                path: entry,
                                version,
                                controller: controller.clone(),
                                leaf: None,
                                ns_root: None,
                                hand_down: Vec::new(),
                            };
                            scan.found.push(Found { dir, kind });
                        }
                    }
                } else if sub.file_name().is_some_and(|n| n == labkit::protocol::cgroup_limits::CGROUP_NAME) {
                    let dir = GroupDir {
                        path: sub,
                        version,
                        controller: controller.clone(),
                        leaf: None,
                        ns_root: None,
                        hand_down: Vec::new(),
                    };
                    scan.found.push(Found { dir, kind: Kind::ByHand });
                } else if depth + 1 < MAX_DEPTH {
                    queue.push_back((sub, depth + 1));
                }
            }
        }
        scan.dirs_read += read;
    }
    scan
}

/// What a directory in a `cilab` dir is, by its name; `None` for anything not cilab's.
pub fn classify(name: &str) -> Option<Kind> {
    if let Some(pid) = name.strip_prefix(LEAF_PREFIX) {
        return pid.parse().ok().map(|owner| Kind::Leaf { owner });
    }
    crate::registry::run_id_owner(name).map(|owner| Kind::Run { id: name.to_string(), owner })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::harness::fake::FakeV2;
    use crate::cgroup::setup::CGROUP2_SUPER_MAGIC;

    #[test]
    fn finds_runs_and_leaves_nested_anywhere_and_nothing_else() {
        let fs = FakeV2::new("/sys/fs/cgroup", &["pids"]);
        fs.add("/sys/fs/cgroup/cilab/pid-ns-12-0", &[], &[]);
        fs.add("/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/cilab/harness-77", &[], &[]);
        fs.add("/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/cilab/chroot-jail-77-by-hand", &[], &[]);
        fs.add("/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/cilab/not-a-run", &[], &[]);
        // A lab's own nested cgroup goes with its run; a dir merely called cilab-ish does not count.
        fs.add("/sys/fs/cgroup/cilab/pid-ns-12-0/cilab/pid-ns-13-0", &[], &[]);
        fs.add("/sys/fs/cgroup/system.slice/cilab.service", &[], &[]);
        // Lab cgroup-limits' own cgroup, left by a run by hand; inside a run it goes with the run.
        fs.add("/sys/fs/cgroup/user.slice/lab-limits", &[], &[]);
        fs.add("/sys/fs/cgroup/cilab/pid-ns-12-0/lab-limits", &[], &[]);
        let mountinfo = "35 24 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let setup = CgroupSetup::from_parts(CGROUP2_SUPER_MAGIC, mountinfo, |_| None).expect("detects");
        let scan = scan(&fs, &setup);
        let mut found: Vec<(String, Kind)> =
            scan.found.into_iter().map(|f| (f.dir.path.display().to_string(), f.kind)).collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            found,
            [
                ("/sys/fs/cgroup/cilab/pid-ns-12-0".to_string(), Kind::Run { id: "pid-ns-12-0".into(), owner: 12 }),
                ("/sys/fs/cgroup/user.slice/lab-limits".into(), Kind::ByHand),
                (
                    "/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/cilab/chroot-jail-77-by-hand".into(),
                    Kind::Run { id: "chroot-jail-77-by-hand".into(), owner: 77 }
                ),
                (
                    "/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope/cilab/harness-77".into(),
                    Kind::Leaf { owner: 77 }
                ),
            ]
        );
        assert!(scan.cut_short.is_empty());
    }
}
