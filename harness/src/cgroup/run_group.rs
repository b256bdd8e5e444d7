//! One cgroup per run, in every hierarchy that helps: the v2 hierarchy (tracking, and
//! cgroup.kill), and on v1 the pids, memory and freezer controllers. Each is made below
//! the cgroup cilab was started in (see `harness`), so the caller's limits bound the lab
//! too. The lab is placed in it before it runs a single instruction, so its whole process
//! tree stays inside, can be bounded (pids, memory without swap) and killed together.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::fs::{CgroupFs, Kernel};
use super::harness::{self, Placement};
use super::setup::CgroupSetup;
use crate::error::{Error, Result};
use crate::probe::pidfd::PidFd;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub pids_max: u32,
    pub memory_max_bytes: u64,
    /// Controllers the lab makes cgroups of its own with (`Needs::cgroup_controllers`):
    /// the run's cgroup then exists in their v1 hierarchies too, and on v2 it hands them
    /// down to the lab's cgroups; the lab itself sits in the leaf `<run>/lab`, in a cgroup
    /// namespace rooted at the run's cgroup (see `RunMountNs::create`).
    pub lab_controllers: &'static [&'static str],
}

impl Default for Limits {
    fn default() -> Self {
        // Generous for a lab (a handful of processes), tight enough for a fork bomb.
        Limits { pids_max: 256, memory_max_bytes: 512 * 1024 * 1024, lab_controllers: &[] }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Version {
    V1,
    V2,
}

/// The run's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDir {
    pub path: PathBuf,
    pub version: Version,
    /// The v1 controllers of this hierarchy ("pids", or "cpu,cpuacct" co-mounted); `None` for v2.
    pub controller: Option<String>,
    /// Where the lab's processes are put, when not in `path` itself: the leaf `<run>/lab`
    /// of a lab that makes cgroups of its own (beside it on v2, in it on v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf: Option<PathBuf>,
    /// The root of the lab's cgroup namespace, `<run>/cgroupns`, the leaf's parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_root: Option<PathBuf>,
    /// v2: the controllers handed down ("+pids"): by the run's cgroup when it is made, by
    /// the namespace's root in `hand_down`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hand_down: Vec<String>,
}

impl GroupDir {
    fn has_controller(&self, wanted: &str) -> bool {
        self.controller.as_deref().is_some_and(|c| c.split(',').any(|c| c == wanted))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCgroup {
    pub dirs: Vec<GroupDir>,
    /// Limits that were actually written, e.g. "pids.max=256 (v1)", and those that could
    /// not be, with why: "memory.max not applied (v2): ...".
    pub limits_applied: Vec<String>,
}

impl RunCgroup {
    /// Creates `<start>/cilab/<run_id>` in each useful hierarchy, `<start>` being where
    /// cilab was started (placing cilab itself first, once), and writes the limits.
    pub fn create(setup: &CgroupSetup, run_id: &str, limits: &Limits) -> Result<Self> {
        harness::with_placement(setup, |placement| {
            let missing = placement.enable_for_lab(&Kernel, setup, limits.lab_controllers);
            let mut group = Self::create_in(&Kernel, placement, run_id, limits)?;
            group.limits_applied.extend(missing);
            Ok(group)
        })
    }

    pub fn create_in(fs: &dyn CgroupFs, placement: &Placement, run_id: &str, limits: &Limits) -> Result<Self> {
        let mut group = RunCgroup::default();
        if let Err(error) = group.populate(fs, placement, run_id, limits) {
            let _ = group.remove_in(fs);
            return Err(error);
        }
        if group.dirs.is_empty() {
            return Err(Error::Cgroup("no usable cgroup hierarchy (no v2 mount, no v1 pids/memory)".into()));
        }
        Ok(group)
    }

    fn populate(&mut self, fs: &dyn CgroupFs, placement: &Placement, run_id: &str, limits: &Limits) -> Result<()> {
        let for_lab = |c: &String| limits.lab_controllers.contains(&c.as_str());
        for place in &placement.places {
            // A v1 hierarchy that only a lab asks for (cpu) gets a run dir only for that lab.
            if place.version == Version::V1
                && !place.controllers.iter().any(|c| harness::V1_USED.contains(&c.as_str()) || for_lab(c))
            {
                continue;
            }
            let dir = place.parent.join(run_id);
            harness::make_dir(fs, &dir)?;
            self.dirs.push(place.group_dir(dir.clone()));
            let version = match place.version {
                Version::V1 => "v1",
                Version::V2 => "v2",
            };
            for controller in &place.controllers {
                match (controller.as_str(), place.version) {
                    ("pids", _) => self.apply(fs, &dir, "pids.max", &limits.pids_max.to_string(), version),
                    ("memory", Version::V2) => {
                        self.apply(fs, &dir, "memory.max", &limits.memory_max_bytes.to_string(), version);
                        // Swap would let an out-of-memory test pass by paging instead of failing.
                        self.apply(fs, &dir, "memory.swap.max", "0", version);
                    }
                    ("memory", Version::V1) => {
                        let bytes = limits.memory_max_bytes.to_string();
                        self.apply(fs, &dir, "memory.limit_in_bytes", &bytes, version);
                        // memory+swap equal to memory: no swap (absent without swap accounting).
                        self.apply(fs, &dir, "memory.memsw.limit_in_bytes", &bytes, version);
                    }
                    _ => {}
                }
            }
            if !limits.lab_controllers.is_empty() {
                let ns_root = dir.join(harness::RUN_NS_ROOT);
                let handed: Vec<String> = match place.version {
                    Version::V2 => place.controllers.iter().filter(|c| for_lab(c)).map(|c| format!("+{c}")).collect(),
                    Version::V1 => Vec::new(),
                };
                harness::make_dir(fs, &ns_root)?;
                // The run's own cgroup never holds a process: it hands down at once. The
                // namespace's root holds the process that makes the namespace first.
                if !handed.is_empty() {
                    self.write_subtree_control(fs, &dir, &handed);
                }
                harness::make_dir(fs, &ns_root.join(harness::RUN_LEAF))?;
                if let Some(group) = self.dirs.last_mut() {
                    group.leaf = Some(ns_root.join(harness::RUN_LEAF));
                    group.ns_root = Some(ns_root);
                    group.hand_down = handed;
                }
            }
        }
        // Never silently unbounded: a limit no hierarchy could take is named, with why.
        for (controller, why) in &placement.missing {
            self.limits_applied.push(format!("{controller}.max not applied: {why}"));
        }
        Ok(())
    }

    /// v2, for a lab that makes cgroups of its own: the root of its cgroup namespace,
    /// `<run>/cgroupns`, hands the lab's controllers down (so from now on it may hold no
    /// process, the no-internal-processes rule; the lab is in the leaf `<run>/cgroupns/lab`).
    /// Called once the namespace has been made, which needed a process in its root (see
    /// `RunMountNs::create`). The run's limits hold for all below.
    pub fn hand_down(&mut self) {
        self.hand_down_in(&Kernel)
    }

    pub fn hand_down_in(&mut self, fs: &dyn CgroupFs) {
        let todo: Vec<(PathBuf, Vec<String>)> = self
            .dirs
            .iter()
            .filter(|d| !d.hand_down.is_empty())
            .filter_map(|d| d.ns_root.clone().map(|root| (root, d.hand_down.clone())))
            .collect();
        for (ns_root, handed) in todo {
            self.write_subtree_control(fs, &ns_root, &handed);
        }
    }

    fn write_subtree_control(&mut self, fs: &dyn CgroupFs, dir: &Path, handed: &[String]) {
        let wanted = handed.join(" ");
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let what =
            if name == harness::RUN_NS_ROOT { "cgroupns/cgroup.subtree_control" } else { "cgroup.subtree_control" };
        match fs.write(&dir.join("cgroup.subtree_control"), &wanted) {
            Ok(()) => self.limits_applied.push(format!("{what}={wanted} (v2)")),
            Err(error) => self.limits_applied.push(format!("{what}={wanted} not applied (v2): {error}")),
        }
    }

    /// Writes one limit. A file the kernel does not have (memsw without swap accounting)
    /// is left out; one it refuses is named.
    fn apply(&mut self, fs: &dyn CgroupFs, dir: &Path, file: &str, value: &str, version: &str) {
        let path = dir.join(file);
        if !fs.exists(&path) {
            return;
        }
        match fs.write(&path, value) {
            Ok(()) => self.limits_applied.push(format!("{file}={value} ({version})")),
            Err(error) => self.limits_applied.push(format!("{file}={value} not applied ({version}): {error}")),
        }
    }

    /// Opens every `cgroup.procs` for writing, so that a child between fork and exec can
    /// join with one write(2) and no allocation (see `run`).
    pub fn open_procs_files(&self) -> Result<Vec<File>> {
        self.dirs
            .iter()
            .map(|d| {
                let path = d.leaf.as_deref().unwrap_or(&d.path).join("cgroup.procs");
                std::fs::OpenOptions::new().write(true).open(&path).map_err(Error::io("open", path))
            })
            .collect()
    }

    /// The processes in the run's cgroup and in every cgroup below it (any hierarchy).
    pub fn procs(&self) -> BTreeSet<i32> {
        let mut dirs = Vec::new();
        for dir in &self.dirs {
            dirs.push(dir.path.clone());
            collect_subdirs(&Kernel, &dir.path, &mut dirs);
        }
        dirs.iter().flat_map(|d| read_procs(d)).collect()
    }

    /// Kills every process in the run's cgroup and waits until it is empty. These are
    /// ours by construction: only the lab started in this cgroup, and its descendants.
    pub fn kill_all(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let kill_file = self.dirs.iter().find(|d| d.version == Version::V2).map(|d| d.path.join("cgroup.kill"));
        let freezer = self.dirs.iter().find(|d| d.has_controller("freezer")).map(|d| d.path.clone());
        loop {
            let procs = self.procs();
            if procs.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Cgroup(format!("processes {procs:?} survived SIGKILL for {timeout:?}")));
            }
            // Opened before the kill, each names exactly its process even once the PID is free.
            let fds: Vec<PidFd> = procs.iter().filter_map(|pid| PidFd::open(*pid).ok()).collect();
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
                }
            }
            if let Some(dir) = &freezer {
                // A v1 cgroup the lab froze below holds its tasks' SIGKILL (cgroup.kill's
                // too, on a hybrid machine) until it thaws: thaw it, and the run's own.
                let mut nested = Vec::new();
                collect_subdirs(&Kernel, dir, &mut nested);
                for sub in nested.iter().chain(std::iter::once(dir)) {
                    let _ = write_file(&sub.join("freezer.state"), "THAWED");
                }
            }
            // Wake when they have all exited (or the deadline passed), then look again:
            // one may have forked just before it died.
            for fd in &fds {
                fd.wait_exit(deadline.saturating_duration_since(Instant::now()));
            }
            if fds.is_empty() {
                // Not one could be opened: they are exiting right now; look again shortly.
                std::thread::yield_now();
            }
        }
    }

    /// Removes the run's cgroup directories. Child cgroups a lab left behind are removed
    /// too, and returned so that the run can report them as a leak.
    pub fn remove(&self) -> Result<Vec<PathBuf>> {
        self.remove_in(&Kernel)
    }

    pub fn remove_in(&self, fs: &dyn CgroupFs) -> Result<Vec<PathBuf>> {
        self.remove_dirs(fs, true)
    }

    /// Removes these directories (and what is nested in them) and nothing above: for a
    /// cgroup that is not a run's, whose parent is somebody else's.
    pub fn remove_only_these(&self) -> Result<Vec<PathBuf>> {
        self.remove_dirs(&Kernel, false)
    }

    fn remove_dirs(&self, fs: &dyn CgroupFs, with_shared_parent: bool) -> Result<Vec<PathBuf>> {
        let mut left_by_lab = Vec::new();
        for dir in &self.dirs {
            if !fs.exists(&dir.path) {
                continue;
            }
            let mut nested = Vec::new();
            collect_subdirs(fs, &dir.path, &mut nested);
            for sub in nested.iter().rev() {
                harness::remove_dir_retrying(fs, sub).map_err(Error::io("remove cgroup", sub))?;
            }
            // The run's own leaf and namespace root are the harness's, not something the lab left.
            left_by_lab.extend(
                nested.into_iter().filter(|sub| Some(sub) != dir.leaf.as_ref() && Some(sub) != dir.ns_root.as_ref()),
            );
            harness::remove_dir_retrying(fs, &dir.path).map_err(Error::io("remove cgroup", &dir.path))?;
            // The shared parent goes too once nothing uses it; another run or cilab may.
            if let Some(parent) = dir.path.parent().filter(|_| with_shared_parent) {
                let _ = fs.remove_dir(parent);
            }
        }
        Ok(left_by_lab)
    }
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    Kernel.write(path, value).map_err(Error::io("write", path))
}

pub fn read_procs(dir: &Path) -> BTreeSet<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

fn collect_subdirs(fs: &dyn CgroupFs, dir: &Path, out: &mut Vec<PathBuf>) {
    for sub in fs.subdirs(dir).unwrap_or_default() {
        out.push(sub.clone());
        collect_subdirs(fs, &sub, out);
    }
}
