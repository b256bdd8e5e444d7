//! One cgroup per run, in every hierarchy that helps: the v2 hierarchy (tracking, and
//! cgroup.kill), and on v1 the pids, memory and freezer controllers. The lab is placed in
//! it before it runs a single instruction, so its whole process tree stays inside, can
//! be bounded (pids, memory without swap) and killed together.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::setup::CgroupSetup;
use super::PARENT_DIR;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub pids_max: u32,
    pub memory_max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        // Generous for a lab (a handful of processes), tight enough for a fork bomb.
        Limits { pids_max: 256, memory_max_bytes: 512 * 1024 * 1024 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    V1,
    V2,
}

/// The run's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDir {
    pub path: PathBuf,
    pub version: Version,
    /// The v1 controller of this hierarchy; `None` for v2.
    pub controller: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCgroup {
    pub dirs: Vec<GroupDir>,
    /// Limits that were actually written, e.g. "pids.max=256 (v1)".
    pub limits_applied: Vec<String>,
}

const V1_CONTROLLERS_USED: [&str; 3] = ["pids", "memory", "freezer"];

impl RunCgroup {
    /// Creates `<hierarchy>/cilab/<run_id>` in each useful hierarchy and writes the limits.
    pub fn create(setup: &CgroupSetup, run_id: &str, limits: &Limits) -> Result<Self> {
        let mut group = RunCgroup { dirs: Vec::new(), limits_applied: Vec::new() };
        let result = group.populate(setup, run_id, limits);
        if let Err(error) = result {
            let _ = group.remove();
            return Err(error);
        }
        if group.dirs.is_empty() {
            return Err(Error::Cgroup("no usable cgroup hierarchy (no v2 mount, no v1 pids/memory)".into()));
        }
        Ok(group)
    }

    fn populate(&mut self, setup: &CgroupSetup, run_id: &str, limits: &Limits) -> Result<()> {
        if let Some(v2) = &setup.v2 {
            let parent = v2.path.join(PARENT_DIR);
            let dir = parent.join(run_id);
            make_run_dir(&dir)?;
            self.dirs.push(GroupDir { path: dir.clone(), version: Version::V2, controller: None });
            let wanted: Vec<&str> =
                ["pids", "memory"].into_iter().filter(|c| v2.controllers.iter().any(|have| have == c)).collect();
            let enable: String = wanted.iter().map(|c| format!("+{c} ")).collect();
            // Controllers must be enabled in every ancestor's subtree_control to reach us.
            let enabled = !wanted.is_empty()
                && write_file(&v2.path.join("cgroup.subtree_control"), enable.trim()).is_ok()
                && write_file(&parent.join("cgroup.subtree_control"), enable.trim()).is_ok();
            if enabled {
                self.apply(&dir, "pids.max", &limits.pids_max.to_string(), "v2");
                self.apply(&dir, "memory.max", &limits.memory_max_bytes.to_string(), "v2");
                // Swap would let an out-of-memory test pass by paging instead of failing.
                self.apply(&dir, "memory.swap.max", "0", "v2");
            }
        }
        for controller in V1_CONTROLLERS_USED {
            if setup.v2_has(controller) {
                continue;
            }
            let Some(mount) = setup.v1.get(controller) else {
                continue;
            };
            let dir = mount.join(PARENT_DIR).join(run_id);
            make_run_dir(&dir)?;
            self.dirs.push(GroupDir { path: dir.clone(), version: Version::V1, controller: Some(controller.into()) });
            match controller {
                "pids" => self.apply(&dir, "pids.max", &limits.pids_max.to_string(), "v1"),
                "memory" => {
                    let bytes = limits.memory_max_bytes.to_string();
                    self.apply(&dir, "memory.limit_in_bytes", &bytes, "v1");
                    // memory+swap equal to memory: no swap (the file is absent without swap accounting).
                    self.apply(&dir, "memory.memsw.limit_in_bytes", &bytes, "v1");
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn apply(&mut self, dir: &Path, file: &str, value: &str, version: &str) {
        let path = dir.join(file);
        if path.exists() && write_file(&path, value).is_ok() {
            self.limits_applied.push(format!("{file}={value} ({version})"));
        }
    }

    /// Opens every `cgroup.procs` for writing, so that a child between fork and exec can
    /// join with one write(2) and no allocation (see `run`).
    pub fn open_procs_files(&self) -> Result<Vec<File>> {
        self.dirs
            .iter()
            .map(|d| {
                let path = d.path.join("cgroup.procs");
                std::fs::OpenOptions::new().write(true).open(&path).map_err(Error::io("open", path))
            })
            .collect()
    }

    /// The processes in the run's cgroup (any hierarchy).
    pub fn procs(&self) -> BTreeSet<i32> {
        self.dirs.iter().flat_map(|d| read_procs(&d.path)).collect()
    }

    /// Kills every process in the run's cgroup and waits until it is empty. These are
    /// ours by construction: only the lab started in this cgroup, and its descendants.
    pub fn kill_all(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let kill_file = self.dirs.iter().find(|d| d.version == Version::V2).map(|d| d.path.join("cgroup.kill"));
        let freezer = self.dirs.iter().find(|d| d.controller.as_deref() == Some("freezer")).map(|d| d.path.clone());
        loop {
            let procs = self.procs();
            if procs.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Cgroup(format!("processes {procs:?} survived SIGKILL for {timeout:?}")));
            }
            match &kill_file {
                Some(file) if file.exists() => {
                    let _ = write_file(file, "1");
                }
                _ => {
                    // v1: freeze so nothing forks while we kill, then thaw so SIGKILL lands.
                    if let Some(dir) = &freezer {
                        let _ = write_file(&dir.join("freezer.state"), "FROZEN");
                    }
                    for pid in &procs {
                        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
                    }
                    if let Some(dir) = &freezer {
                        let _ = write_file(&dir.join("freezer.state"), "THAWED");
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Removes the run's cgroup directories. Child cgroups a lab left behind are removed
    /// too, and returned so that the run can report them as a leak.
    pub fn remove(&self) -> Result<Vec<PathBuf>> {
        let mut left_by_lab = Vec::new();
        for dir in &self.dirs {
            if !dir.path.exists() {
                continue;
            }
            let mut nested = Vec::new();
            collect_subdirs(&dir.path, &mut nested);
            for sub in nested.iter().rev() {
                remove_dir_retrying(sub)?;
            }
            left_by_lab.extend(nested);
            remove_dir_retrying(&dir.path)?;
            // The shared parent goes too once no run uses it; another run may still.
            if let Some(parent) = dir.path.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        Ok(left_by_lab)
    }
}

/// Creates a run's cgroup and the shared `cilab` parent in one go: another run's
/// `remove` drops the parent when it is empty, and once our dir is in it, it is not.
fn make_run_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(Error::io("create cgroup", path))
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).map_err(Error::io("open", path))?;
    file.write_all(value.as_bytes()).map_err(Error::io("write", path))
}

pub fn read_procs(dir: &Path) -> BTreeSet<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

fn collect_subdirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
            collect_subdirs(&entry.path(), out);
        }
    }
}

/// rmdir on a cgroup can briefly fail with EBUSY while the last task is being released.
fn remove_dir_retrying(path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(Error::io("remove cgroup", path)(e)),
        }
    }
}
