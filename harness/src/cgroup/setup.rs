//! Detecting the cgroup setup: statfs magic of /sys/fs/cgroup first (cgroup2 there means
//! pure v2), then what /proc/self/mountinfo says is mounted (v1 controllers, a v2 mount).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::probe::procfs;

/// statfs f_type values (linux/magic.h).
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
pub const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
pub const TMPFS_MAGIC: i64 = 0x0102_1994;

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupLayout {
    /// Only v1 hierarchies, one per controller (or a few co-mounted).
    V1,
    /// Only the unified v2 hierarchy.
    V2,
    /// v1 controllers and a v2 mount beside them (often with no controllers).
    Hybrid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct V2Mount {
    pub path: PathBuf,
    /// What the root's cgroup.controllers offers (empty on most hybrid machines).
    pub controllers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupSetup {
    pub layout: CgroupLayout,
    /// v1 controller name -> where its hierarchy is mounted (named hierarchies left out).
    pub v1: BTreeMap<String, PathBuf>,
    pub v2: Option<V2Mount>,
    /// Mount point -> the directory of the hierarchy mounted there (mountinfo's root
    /// field): "/" unless a subtree was mounted or bind-mounted (a container's view).
    pub roots: BTreeMap<PathBuf, String>,
}

impl CgroupSetup {
    /// Reads this machine's setup.
    pub fn detect() -> Result<Self> {
        let magic =
            nix::sys::statfs::statfs(CGROUP_ROOT).map_err(Error::sys("statfs", CGROUP_ROOT))?.filesystem_type().0
                as i64;
        let mountinfo = std::fs::read("/proc/self/mountinfo").map_err(Error::io("read", "/proc/self/mountinfo"))?;
        let mountinfo = String::from_utf8_lossy(&mountinfo);
        Self::from_parts(magic, &mountinfo, |mount| std::fs::read_to_string(mount.join("cgroup.controllers")).ok())
    }

    /// The detection itself, on given data: `read_controllers` returns the text of a v2
    /// mount's cgroup.controllers.
    pub fn from_parts(
        root_magic: i64,
        mountinfo: &str,
        read_controllers: impl Fn(&Path) -> Option<String>,
    ) -> Result<Self> {
        let mounts = procfs::parse_mountinfo(mountinfo)?;
        let mut v1 = BTreeMap::new();
        let mut v2_path = None;
        let mut roots = BTreeMap::new();
        for mount in &mounts {
            match mount.fs_type.as_str() {
                "cgroup" => {
                    for option in mount.super_options.split(',') {
                        if is_v1_controller(option) && !v1.contains_key(option) {
                            v1.insert(option.to_string(), PathBuf::from(&mount.mount_point));
                            roots.insert(PathBuf::from(&mount.mount_point), mount.root.clone());
                        }
                    }
                }
                "cgroup2" if v2_path.is_none() => {
                    v2_path = Some(PathBuf::from(&mount.mount_point));
                    roots.insert(PathBuf::from(&mount.mount_point), mount.root.clone());
                }
                _ => {}
            }
        }
        let v2 = v2_path.map(|path| {
            let controllers =
                read_controllers(&path).unwrap_or_default().split_whitespace().map(String::from).collect();
            V2Mount { path, controllers }
        });
        let layout = if root_magic == CGROUP2_SUPER_MAGIC {
            CgroupLayout::V2
        } else {
            match (v1.is_empty(), v2.is_some()) {
                (false, true) => CgroupLayout::Hybrid,
                (false, false) => CgroupLayout::V1,
                (true, true) => CgroupLayout::V2,
                (true, false) => {
                    return Err(Error::Cgroup(format!(
                        "no cgroup filesystem is mounted (statfs({CGROUP_ROOT}) magic {root_magic:#x}); \
                         mount one: `mount -t cgroup2 none {CGROUP_ROOT}`"
                    )))
                }
            }
        };
        Ok(CgroupSetup { layout, v1, v2, roots })
    }

    pub fn v2_has(&self, controller: &str) -> bool {
        self.v2.as_ref().is_some_and(|v2| v2.controllers.iter().any(|c| c == controller))
    }

    /// The directory of cgroup `path` (as /proc/<pid>/cgroup names it) in the hierarchy
    /// mounted at `mount`. A mount of a subtree shows only what lies below its root.
    pub fn dir_of(&self, mount: &Path, path: &str) -> Result<PathBuf> {
        let root = self.roots.get(mount).map(String::as_str).unwrap_or("/");
        let below = if root == "/" {
            Some(path)
        } else {
            path.strip_prefix(root).filter(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        match below {
            Some(rest) => Ok(mount.join(rest.trim_start_matches('/'))),
            None => Err(Error::Cgroup(format!(
                "cilab's cgroup {path} lies outside what is mounted at {} (the hierarchy's {root}): \
                 mount the whole hierarchy there",
                mount.display()
            ))),
        }
    }
}

/// v1 super options also carry rw, relatime, name=..., xattr: only controller names count.
fn is_v1_controller(option: &str) -> bool {
    const CONTROLLERS: [&str; 13] = [
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "blkio",
        "perf_event",
        "net_prio",
        "hugetlb",
        "pids",
        "rdma",
    ];
    CONTROLLERS.contains(&option) || option == "misc"
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// This project's build machines: v1 controllers and an empty v2 at .../unified.
    const HYBRID: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    /// Current Ubuntu and Fedora: cgroup2 on /sys/fs/cgroup itself.
    const PURE_V2: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    /// Older distributions: v1 only, some controllers co-mounted.
    const PURE_V1: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw shared:11 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/memory rw shared:12 - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/pids rw shared:14 - cgroup cgroup rw,pids
";

    #[rstest]
    #[case::hybrid(TMPFS_MAGIC, HYBRID, "", CgroupLayout::Hybrid, &["cpu", "freezer", "memory", "pids"], Some("/sys/fs/cgroup/unified"))]
    #[case::pure_v2(CGROUP2_SUPER_MAGIC, PURE_V2, "cpuset cpu io memory pids", CgroupLayout::V2, &[], Some("/sys/fs/cgroup"))]
    #[case::pure_v1(TMPFS_MAGIC, PURE_V1, "", CgroupLayout::V1, &["cpu", "cpuacct", "memory", "pids"], None)]
    fn detects_the_layout(
        #[case] magic: i64,
        #[case] mountinfo: &str,
        #[case] v2_controllers: &str,
        #[case] layout: CgroupLayout,
        #[case] v1: &[&str],
        #[case] v2_path: Option<&str>,
    ) {
        let setup = CgroupSetup::from_parts(magic, mountinfo, |_| Some(v2_controllers.to_string())).expect("detects");
        assert_eq!(setup.layout, layout);
        assert_eq!(setup.v1.keys().map(String::as_str).collect::<Vec<_>>(), v1);
        assert_eq!(setup.v2.as_ref().map(|v2| v2.path.to_string_lossy().into_owned()).as_deref(), v2_path);
        assert_eq!(setup.v2_has("memory"), layout == CgroupLayout::V2);
    }

    #[test]
    fn cpu_and_cpuacct_co_mounted_share_one_path() {
        let setup = CgroupSetup::from_parts(TMPFS_MAGIC, PURE_V1, |_| None).expect("detects");
        assert_eq!(setup.v1["cpu"], setup.v1["cpuacct"]);
    }

    #[test]
    fn a_cgroup_path_maps_into_the_mount_even_when_a_subtree_is_mounted() {
        let setup = CgroupSetup::from_parts(TMPFS_MAGIC, HYBRID, |_| None).expect("detects");
        let memory = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(setup.dir_of(memory, "/process_api/50d3").expect("maps"), memory.join("process_api/50d3"));
        assert_eq!(setup.dir_of(memory, "/").expect("maps"), memory);
        // A container that sees only its own subtree, bind-mounted at /sys/fs/cgroup.
        let docker = "35 24 0:30 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let setup = CgroupSetup::from_parts(CGROUP2_SUPER_MAGIC, docker, |_| None).expect("detects");
        let mount = Path::new("/sys/fs/cgroup");
        assert_eq!(setup.dir_of(mount, "/docker/abc/sub").expect("maps"), mount.join("sub"));
        assert_eq!(setup.dir_of(mount, "/docker/abc").expect("maps"), mount);
        assert!(setup.dir_of(mount, "/docker/abcdef").is_err());
        assert!(setup.dir_of(mount, "/elsewhere").is_err());
    }

    #[test]
    fn nothing_mounted_says_what_to_do() {
        let error = CgroupSetup::from_parts(TMPFS_MAGIC, "27 1 254:0 / / rw - ext4 /dev/vda rw\n", |_| None)
            .expect_err("no cgroups");
        assert!(error.to_string().contains("mount -t cgroup2"), "{error}");
    }
}
