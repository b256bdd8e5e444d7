//! Which cgroup a process is in, per hierarchy: /proc/<pid>/cgroup (cgroups(7)).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

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
    pub fn parse(text: &str) -> Result<Self> {
        let mut membership = Membership::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // The path may itself contain ':', so split at the first two only.
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
                return Err(Error::parse("/proc/<pid>/cgroup line", line));
            };
            if !path.starts_with('/') {
                return Err(Error::parse("/proc/<pid>/cgroup line", line));
            }
            if id == "0" && controllers.is_empty() {
                membership.v2 = Some(path.to_string());
                continue;
            }
            for controller in controllers.split(',').filter(|c| !c.is_empty() && !c.starts_with("name=")) {
                membership.v1.insert(controller.to_string(), path.to_string());
            }
        }
        Ok(membership)
    }

    pub fn read(pid: &str) -> Result<Self> {
        let path = format!("/proc/{pid}/cgroup");
        Self::parse(&std::fs::read_to_string(&path).map_err(Error::io("read", &path))?)
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
    }
}
