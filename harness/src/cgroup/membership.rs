//! Which cgroup a process is in, per hierarchy: /proc/<pid>/cgroup (cgroups(7)).

use std::collections::BTreeMap;
use std::path::PathBuf;

use ::procfs::process::Process;
use ::procfs::{FromRead, ProcessCGroups};

use crate::error::{Error, Result};
use crate::probe::procfs;

/// Paths are relative to each hierarchy's root as seen from the process's cgroup
/// namespace, e.g. "/user.slice/user-1000.slice/session-3.scope".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// The v2 line ("0::<path>").
    pub v2: Option<String>,
    /// v1 controller -> path; co-mounted controllers ("cpu,cpuacct") each get the path.
    pub v1: BTreeMap<String, String>,
}

impl Membership {
    /// Parses the text of /proc/<pid>/cgroup (the crate's parser, which splits each line at
    /// its first two ':' only: the path may hold more).
    pub fn parse(text: &str) -> Result<Self> {
        let groups = ProcessCGroups::from_read(text.as_bytes())
            .map_err(|e| Error::parse("/proc/<pid>/cgroup", e.to_string()))?;
        Self::from_groups(groups, "/proc/<pid>/cgroup")
    }

    pub fn read(pid: &str) -> Result<Self> {
        let path = format!("/proc/{pid}/cgroup");
        let groups = Process::new_with_root(PathBuf::from(format!("/proc/{pid}")))
            .and_then(|process| process.cgroups())
            .map_err(procfs::proc_error("read", path.clone()))?;
        Self::from_groups(groups, &path)
    }

    fn from_groups(groups: ProcessCGroups, what: &str) -> Result<Self> {
        let mut membership = Membership::default();
        for group in groups {
            if !group.pathname.starts_with('/') {
                return Err(Error::parse(what, format!("a path that is not absolute: {:?}", group.pathname)));
            }
            if group.hierarchy == 0 && group.controllers.is_empty() {
                membership.v2 = Some(group.pathname);
                continue;
            }
            for controller in group.controllers.into_iter().filter(|c| !c.starts_with("name=")) {
                membership.v1.insert(controller, group.pathname.clone());
            }
        }
        Ok(membership)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_lines_with_co_mounted_and_named_hierarchies() {
        let text = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/50d3\n2:cpu,cpuacct:/a:b\n0::/\n";
        let m = Membership::parse(text).expect("parses");
        assert_eq!(m.v2.as_deref(), Some("/"));
        assert_eq!(m.v1["memory"], "/process_api/50d3");
        assert_eq!(m.v1["cpu"], "/a:b");
        assert_eq!(m.v1["cpuacct"], "/a:b");
        assert!(!m.v1.contains_key("name=systemd"));
    }

    #[test]
    fn pure_v2_is_one_line() {
        let m = Membership::parse("0::/user.slice/user-1000.slice/session-3.scope\n").expect("parses");
        assert_eq!(m.v2.as_deref(), Some("/user.slice/user-1000.slice/session-3.scope"));
        assert!(m.v1.is_empty());
    }

    #[test]
    fn a_line_without_a_path_is_an_error() {
        assert!(Membership::parse("8:pids\n").is_err());
        assert!(Membership::parse("8:pids:relative\n").is_err());
        assert!(Membership::parse("x:pids:/\n").is_err());
    }

    #[test]
    fn own_membership_and_a_gone_process() {
        let own = Membership::read("self").expect("own cgroup");
        assert!(own.v2.is_some() || !own.v1.is_empty());
        assert!(matches!(Membership::read(&i32::MAX.to_string()), Err(Error::Io { .. })));
    }
}
