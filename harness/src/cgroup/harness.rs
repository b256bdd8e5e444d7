//! Where cilab itself sits in each hierarchy, and where its runs go: below the cgroup
//! cilab was started in, so that whatever bounds the caller (a course machine that limits
//! each student) bounds the labs as well.
//!
//! v1: runs are `<start>/cilab/<run>`.
//!
//! v2: a controller reaches a cgroup only through its parent's cgroup.subtree_control,
//! and a cgroup other than the root that has controllers enabled there may hold no
//! processes (the no-internal-processes rule). So cilab first moves itself (its whole
//! thread group) into a leaf of its own, `<start>/cilab/harness-<pid>`, enables pids and
//! memory in `<start>/cilab`, and makes runs as siblings of that leaf. A controller the
//! start cgroup cannot hand down is named in every run's limits, never dropped silently.
//! At exit cilab moves back and removes its leaf; a killed cilab's leaf is found by
//! `cilab doctor`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::fs::{words, CgroupFs, Kernel};
use super::membership::Membership;
use super::run_group::{GroupDir, Version};
use super::setup::CgroupSetup;
use super::PARENT_DIR;
use crate::error::{Error, Result};

/// The name of a cilab's own v2 leaf is this and its PID.
pub const LEAF_PREFIX: &str = "harness-";
/// Controllers a run is bounded with on v2.
const V2_WANTED: [&str; 2] = ["pids", "memory"];
/// v1 hierarchies a run gets a cgroup in (freezer: to stop a fork bomb while killing it).
pub const V1_USED: [&str; 3] = ["pids", "memory", "freezer"];
/// v1 hierarchies a run gets a cgroup in only when its lab declares the controller
/// (`Needs::cgroup_controllers`): other labs' runs are made as before.
const V1_ON_REQUEST: [&str; 2] = ["cpu", "cpuacct"];
/// The leaf that holds a lab that makes cgroups of its own, in `RUN_NS_ROOT`: on v2 the
/// cgroups above it hand controllers down, so they may hold no process.
pub const RUN_LEAF: &str = "lab";
/// The root of the cgroup namespace of a lab that makes cgroups of its own, one level
/// below the run's cgroup: the run's limit files are above it, out of the lab's sight and
/// reach (`<run>/cgroupns/lab`).
pub const RUN_NS_ROOT: &str = "cgroupns";
/// Controllers whose limits every run must have, or say why not.
const BOUNDED_BY: [&str; 2] = ["pids", "memory"];

/// cilab's place in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub version: Version,
    /// The cgroup cilab was started in.
    pub start: PathBuf,
    /// `<start>/cilab`: runs are made here (and on v2, cilab's own leaf).
    pub parent: PathBuf,
    /// v2: where cilab itself is while it runs labs.
    pub leaf: Option<PathBuf>,
    /// v1: this hierarchy's controllers that cilab uses. v2: those enabled for the runs.
    pub controllers: Vec<String>,
    /// v2: what cilab added to `start`'s subtree_control itself, undone at exit so that
    /// `start` can take cilab back (the root cgroup's is left: others may use it).
    pub enabled_in_start: Vec<String>,
    /// v2: `start` is the hierarchy's root (which may hold processes and hand controllers down).
    pub start_is_root: bool,
}

/// Where cilab and its runs are, in every hierarchy it uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub places: Vec<Place>,
    /// Controllers no run of this cilab can be bounded by, and why.
    pub missing: Vec<(String, String)>,
}

impl Placement {
    /// Works out and makes the placement: on v2 this moves process `pid` into its leaf.
    pub fn make(fs: &dyn CgroupFs, setup: &CgroupSetup, membership: &Membership, pid: u32) -> Result<Self> {
        let mut placement = Placement::default();
        if let Some(v2) = &setup.v2 {
            let path = membership.v2.as_deref().ok_or_else(|| {
                Error::Cgroup(format!(
                    "cgroup2 is mounted at {} but /proc/self/cgroup has no v2 line",
                    v2.path.display()
                ))
            })?;
            let start = setup.dir_of(&v2.path, path)?;
            let wanted: Vec<&str> = V2_WANTED.into_iter().filter(|c| setup.v2_has(c)).collect();
            let place = place_v2(fs, start.clone(), start == v2.path, pid, &wanted, &mut placement.missing)?;
            placement.places.push(place);
        }
        // Co-mounted v1 controllers share one hierarchy, hence one run dir.
        let mut v1: BTreeMap<&Path, Vec<String>> = BTreeMap::new();
        for controller in V1_USED.into_iter().chain(V1_ON_REQUEST).filter(|c| !setup.v2_has(c)) {
            if let Some(mount) = setup.v1.get(controller) {
                v1.entry(mount.as_path()).or_default().push(controller.to_string());
            }
        }
        for (mount, controllers) in v1 {
            let path = membership.v1.get(&controllers[0]).ok_or_else(|| {
                Error::Cgroup(format!("/proc/self/cgroup does not say where cilab is in {}", mount.display()))
            })?;
            let start = setup.dir_of(mount, path)?;
            placement.places.push(Place {
                version: Version::V1,
                parent: start.join(PARENT_DIR),
                start,
                leaf: None,
                controllers,
                enabled_in_start: Vec::new(),
                start_is_root: false,
            });
        }
        for controller in BOUNDED_BY {
            if !setup.v2_has(controller) && !setup.v1.contains_key(controller) {
                placement.missing.push((controller.into(), format!("this machine has no `{controller}` controller")));
            }
        }
        Ok(placement)
    }

    /// Moves cilab back where it started and removes its leaf and empty parents. Returns
    /// what could not be done, for a warning: `cilab doctor --clean` removes what stays.
    pub fn leave(&self, fs: &dyn CgroupFs, pid: u32) -> Vec<String> {
        let mut problems = Vec::new();
        for place in &self.places {
            if let Some(leaf) = &place.leaf {
                problems.extend(leave_v2(fs, place, leaf, pid));
            }
            // Another cilab's leaf or run may still be in it: then it stays.
            let _ = fs.remove_dir(&place.parent);
        }
        problems
    }

    /// This cilab's run cgroups (named `<lab>-<pid>-...`) that still exist.
    pub fn own_run_dirs(&self, fs: &dyn CgroupFs, pid: u32) -> Vec<GroupDir> {
        let mut dirs = Vec::new();
        for place in &self.places {
            for path in fs.subdirs(&place.parent).unwrap_or_default() {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if crate::registry::run_id_owner(&name) == Some(pid as i32) {
                    dirs.push(place.group_dir(path));
                }
            }
        }
        dirs
    }
}

impl Place {
    pub fn group_dir(&self, path: PathBuf) -> GroupDir {
        let controller = (self.version == Version::V1).then(|| self.controllers.join(","));
        GroupDir { path, version: self.version, controller, leaf: None, ns_root: None, hand_down: Vec::new() }
    }
}

fn place_v2(
    fs: &dyn CgroupFs,
    start: PathBuf,
    start_is_root: bool,
    pid: u32,
    wanted: &[&str],
    missing: &mut Vec<(String, String)>,
) -> Result<Place> {
    let parent = start.join(PARENT_DIR);
    let leaf = parent.join(format!("{LEAF_PREFIX}{pid}"));
    make_dir(fs, &leaf)?;
    let procs = leaf.join("cgroup.procs");
    if let Err(error) = fs.write(&procs, &pid.to_string()) {
        let _ = fs.remove_dir(&leaf);
        let _ = fs.remove_dir(&parent);
        return Err(Error::io("move cilab (its whole thread group) into", procs)(error));
    }
    let mut place = Place {
        version: Version::V2,
        start: start.clone(),
        parent: parent.clone(),
        leaf: Some(leaf),
        controllers: Vec::new(),
        enabled_in_start: Vec::new(),
        start_is_root,
    };
    for controller in wanted {
        match enable_v2(fs, &mut place, controller) {
            Ok(()) => place.controllers.push(controller.to_string()),
            Err(why) => missing.push((controller.to_string(), why)),
        }
    }
    Ok(place)
}

/// Makes `controller` reach the runs: enabled in `start`'s subtree_control (if it is not
/// yet, and cilab may) and in `<start>/cilab`'s. Says why when it cannot.
fn enable_v2(fs: &dyn CgroupFs, place: &mut Place, controller: &str) -> std::result::Result<(), String> {
    let start = place.start.clone();
    let start_controllers = start.join("cgroup.controllers");
    let start_subtree = start.join("cgroup.subtree_control");
    let offered = fs.read(&start_controllers).map(|t| words(&t)).unwrap_or_default();
    if !offered.iter().any(|c| c == controller) {
        return Err(format!(
            "{} does not list `{controller}`: the cgroup cilab was started in is not given it by its \
             parent (start cilab in a delegated cgroup)",
            start_controllers.display()
        ));
    }
    let enabled = fs.read(&start_subtree).map(|t| words(&t)).unwrap_or_default();
    if !enabled.iter().any(|c| c == controller) {
        // cilab has left `start`: if it was alone there, `start` may now hand it down.
        match fs.write(&start_subtree, &format!("+{controller}")) {
            Ok(()) if place.start_is_root => {}
            Ok(()) => place.enabled_in_start.push(controller.to_string()),
            Err(error) => {
                return Err(if error.raw_os_error() == Some(libc::EBUSY) {
                    format!(
                        "{} holds other processes, so its cgroup.subtree_control cannot gain `{controller}` \
                         (cgroup v2 lets no cgroup but the root hold processes and hand controllers down); \
                         start cilab in a cgroup of its own",
                        start.display()
                    )
                } else {
                    format!("writing +{controller} to {}: {error}", start_subtree.display())
                })
            }
        }
    }
    let parent_subtree = place.parent.join("cgroup.subtree_control");
    fs.write(&parent_subtree, &format!("+{controller}"))
        .map_err(|error| format!("writing +{controller} to {}: {error}", parent_subtree.display()))
}

impl Placement {
    /// Makes the v2 controllers a lab declares (`cpu`, say) reach the runs too, once: the
    /// first run of such a lab enables them where cilab enabled pids and memory. Returns
    /// what could not be enabled, with why, for the run's limits.
    pub fn enable_for_lab(&mut self, fs: &dyn CgroupFs, setup: &CgroupSetup, wanted: &[&str]) -> Vec<String> {
        let mut missing = Vec::new();
        for place in self.places.iter_mut().filter(|p| p.version == Version::V2) {
            for controller in wanted.iter().filter(|c| setup.v2_has(c)) {
                if place.controllers.iter().any(|c| c == controller) {
                    continue;
                }
                match enable_v2(fs, place, controller) {
                    Ok(()) => place.controllers.push(controller.to_string()),
                    Err(why) => missing.push(format!("{controller} not enabled for the lab (v2): {why}")),
                }
            }
        }
        missing
    }
}

fn leave_v2(fs: &dyn CgroupFs, place: &Place, leaf: &Path, pid: u32) -> Vec<String> {
    let mut problems = Vec::new();
    if !place.enabled_in_start.is_empty() {
        // `start` takes processes again only with its subtree_control as it was, and a
        // controller leaves it only once no child hands it down. Another cilab's leaf or
        // run in the parent still needs them: then cilab stays in its leaf.
        let others = fs.subdirs(&place.parent).unwrap_or_default().into_iter().any(|d| d != leaf);
        if !others {
            let off: Vec<String> = place.enabled_in_start.iter().map(|c| format!("-{c}")).collect();
            let _ = fs.write(&place.parent.join("cgroup.subtree_control"), &off.join(" "));
            if let Err(error) = fs.write(&place.start.join("cgroup.subtree_control"), &off.join(" ")) {
                problems.push(format!("could not undo {} in {}: {error}", off.join(" "), place.start.display()));
            }
        }
    }
    let procs = place.start.join("cgroup.procs");
    if let Err(error) = fs.write(&procs, &pid.to_string()) {
        problems.push(format!("could not move cilab back into {}: {error}", place.start.display()));
        return problems;
    }
    if let Err(error) = remove_dir_retrying(fs, leaf) {
        problems.push(format!("could not remove {}: {error}", leaf.display()));
    }
    problems
}

/// Creates a cgroup and its parents. Another cilab removes the shared `cilab` parent when
/// it empties; if that happens between our mkdirs, try again.
pub fn make_dir(fs: &dyn CgroupFs, path: &Path) -> Result<()> {
    let mut attempts = 0;
    loop {
        match fs.create_dir_all(path) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && attempts < 5 => attempts += 1,
            Err(error) => return Err(Error::io("create cgroup", path)(error)),
        }
    }
}

/// rmdir on a cgroup can briefly fail with EBUSY while the last task is being released.
pub fn remove_dir_retrying(fs: &dyn CgroupFs, path: &Path) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs.remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// This process's placement: made with its first run, kept until exit.
enum State {
    Unplaced,
    Placed(Placement),
    /// No new runs (cilab is exiting); what it had is kept for the final sweep.
    Closed(Option<Placement>),
}

static STATE: Mutex<State> = Mutex::new(State::Unplaced);

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `make` with cilab placed (placing it first if need be), under the lock that
/// `close` takes: once cilab is closing, no run cgroup is made any more.
pub fn with_placement<T>(setup: &CgroupSetup, make: impl FnOnce(&mut Placement) -> Result<T>) -> Result<T> {
    let mut state = state();
    if let State::Unplaced = *state {
        let membership = Membership::read("self")?;
        *state = State::Placed(Placement::make(&Kernel, setup, &membership, std::process::id())?);
        leave_at_exit();
    }
    match &mut *state {
        State::Placed(placement) => make(placement),
        _ => Err(Error::Cgroup("cilab is exiting: it makes no new run cgroup".into())),
    }
}

/// Whatever process placed itself (cilab, or a test that grades in-process) leaves its
/// leaf when it exits normally, even if it never calls `leave` (a test binary does not).
/// cilab's own `leave` comes first; this one then finds nothing left to do.
fn leave_at_exit() {
    extern "C" fn on_exit() {
        // Never wait at exit: a thread that holds the lock now is ending cilab itself.
        let placed = match STATE.try_lock() {
            Ok(mut state) => match std::mem::replace(&mut *state, State::Closed(None)) {
                State::Placed(placement) | State::Closed(Some(placement)) => Some(placement),
                State::Unplaced | State::Closed(None) => None,
            },
            Err(_) => None,
        };
        if let Some(placement) = placed {
            let _ = placement.leave(&Kernel, std::process::id());
        }
    }
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: registers a plain function with no arguments; nix has no atexit wrapper.
        unsafe {
            libc::atexit(on_exit);
        }
    });
}

/// No new run cgroups from now on (an interrupt was taken).
pub fn close() {
    let mut state = state();
    let placement = match std::mem::replace(&mut *state, State::Closed(None)) {
        State::Placed(placement) => Some(placement),
        State::Closed(placement) => placement,
        State::Unplaced => None,
    };
    *state = State::Closed(placement);
}

/// Moves cilab back where it started (cilab's last step before it exits). Returns what
/// could not be done.
pub fn leave() -> Vec<String> {
    let mut state = state();
    let placement = match std::mem::replace(&mut *state, State::Closed(None)) {
        State::Placed(placement) | State::Closed(Some(placement)) => placement,
        State::Unplaced | State::Closed(None) => return Vec::new(),
    };
    placement.leave(&Kernel, std::process::id())
}

/// This process's run cgroups that still exist (for the sweep after an interrupt).
pub fn own_run_dirs() -> Vec<GroupDir> {
    match &*state() {
        State::Placed(placement) | State::Closed(Some(placement)) => {
            placement.own_run_dirs(&Kernel, std::process::id())
        }
        State::Unplaced | State::Closed(None) => Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory cgroup v2 hierarchy with the kernel's rules (cgroup-v2.rst): the
    //! controllers of a cgroup are those its parent enables in cgroup.subtree_control;
    //! enabling needs the controller available and, but in the root, no processes;
    //! disabling needs no child to hand it down; a cgroup with controllers enabled for
    //! its children takes no processes, but the root; rmdir needs no children and no
    //! processes.

    use std::cell::RefCell;
    use std::collections::{BTreeMap, BTreeSet};
    use std::io;
    use std::path::{Path, PathBuf};

    use crate::cgroup::fs::CgroupFs;

    #[derive(Debug, Default, Clone)]
    pub struct Group {
        pub subtree: BTreeSet<String>,
        pub procs: BTreeSet<u32>,
        pub files: BTreeMap<String, String>,
    }

    #[derive(Debug)]
    pub struct FakeV2 {
        pub root: PathBuf,
        root_controllers: BTreeSet<String>,
        pub groups: RefCell<BTreeMap<PathBuf, Group>>,
    }

    fn err(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    impl FakeV2 {
        pub fn new(root: &str, controllers: &[&str]) -> Self {
            let mut groups = BTreeMap::new();
            groups.insert(PathBuf::from(root), Group::default());
            FakeV2 {
                root: root.into(),
                root_controllers: controllers.iter().map(|c| c.to_string()).collect(),
                groups: RefCell::new(groups),
            }
        }

        /// A cgroup (and its parents) holding `procs`, with `subtree` enabled.
        pub fn add(&self, path: &str, subtree: &[&str], procs: &[u32]) {
            self.create_dir_all(Path::new(path)).expect("fake mkdir");
            let mut groups = self.groups.borrow_mut();
            let group = groups.get_mut(Path::new(path)).expect("made");
            group.subtree = subtree.iter().map(|c| c.to_string()).collect();
            group.procs = procs.iter().copied().collect();
        }

        pub fn group(&self, path: &str) -> Option<Group> {
            self.groups.borrow().get(Path::new(path)).cloned()
        }

        pub fn paths(&self) -> Vec<String> {
            self.groups.borrow().keys().map(|p| p.display().to_string()).collect()
        }

        fn controllers(&self, dir: &Path) -> BTreeSet<String> {
            if dir == self.root {
                return self.root_controllers.clone();
            }
            let groups = self.groups.borrow();
            dir.parent().and_then(|p| groups.get(p)).map(|p| p.subtree.clone()).unwrap_or_default()
        }

        fn split(path: &Path) -> io::Result<(PathBuf, String)> {
            let dir = path.parent().ok_or_else(|| err(libc::ENOENT))?.to_path_buf();
            let file = path.file_name().ok_or_else(|| err(libc::ENOENT))?.to_string_lossy().into_owned();
            Ok((dir, file))
        }

        /// A limit file such as pids.max exists where its controller is enabled.
        fn limit_file_exists(&self, dir: &Path, file: &str) -> bool {
            let controller = file.split('.').next().unwrap_or_default();
            dir != self.root && self.controllers(dir).contains(controller)
        }
    }

    impl CgroupFs for FakeV2 {
        fn read(&self, path: &Path) -> io::Result<String> {
            let (dir, file) = Self::split(path)?;
            let controllers = self.controllers(&dir);
            let groups = self.groups.borrow();
            let group = groups.get(&dir).ok_or_else(|| err(libc::ENOENT))?;
            let join = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(" ");
            match file.as_str() {
                "cgroup.controllers" => Ok(join(&controllers)),
                "cgroup.subtree_control" => Ok(join(&group.subtree)),
                "cgroup.procs" => Ok(group.procs.iter().map(|p| format!("{p}\n")).collect()),
                other => group.files.get(other).cloned().ok_or_else(|| err(libc::ENOENT)),
            }
        }

        fn write(&self, path: &Path, value: &str) -> io::Result<()> {
            let (dir, file) = Self::split(path)?;
            if !self.groups.borrow().contains_key(&dir) {
                return Err(err(libc::ENOENT));
            }
            match file.as_str() {
                "cgroup.subtree_control" => {
                    let available = self.controllers(&dir);
                    let mut groups = self.groups.borrow_mut();
                    let children_hand_down = |c: &str| {
                        groups.iter().any(|(p, g)| p.parent() == Some(dir.as_path()) && g.subtree.contains(c))
                    };
                    let mut subtree = groups[&dir].subtree.clone();
                    for token in value.split_whitespace() {
                        let (on, controller) = token.split_at(1);
                        match on {
                            "+" if !available.contains(controller) => return Err(err(libc::ENOENT)),
                            "+" if dir != self.root && !groups[&dir].procs.is_empty() => return Err(err(libc::EBUSY)),
                            "+" => {
                                subtree.insert(controller.to_string());
                            }
                            "-" if children_hand_down(controller) => return Err(err(libc::EBUSY)),
                            "-" => {
                                subtree.remove(controller);
                            }
                            _ => return Err(err(libc::EINVAL)),
                        }
                    }
                    groups.get_mut(&dir).ok_or_else(|| err(libc::ENOENT))?.subtree = subtree;
                    Ok(())
                }
                "cgroup.procs" => {
                    let pid: u32 = value.trim().parse().map_err(|_| err(libc::EINVAL))?;
                    let mut groups = self.groups.borrow_mut();
                    if dir != self.root && !groups[&dir].subtree.is_empty() {
                        return Err(err(libc::EBUSY));
                    }
                    for group in groups.values_mut() {
                        group.procs.remove(&pid);
                    }
                    groups.get_mut(&dir).ok_or_else(|| err(libc::ENOENT))?.procs.insert(pid);
                    Ok(())
                }
                other if self.limit_file_exists(&dir, other) => {
                    let mut groups = self.groups.borrow_mut();
                    let group = groups.get_mut(&dir).ok_or_else(|| err(libc::ENOENT))?;
                    group.files.insert(other.to_string(), value.to_string());
                    Ok(())
                }
                _ => Err(err(libc::ENOENT)),
            }
        }

        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            let mut missing = Vec::new();
            let mut at = path;
            while !self.groups.borrow().contains_key(at) {
                missing.push(at.to_path_buf());
                at = at.parent().ok_or_else(|| err(libc::ENOENT))?;
            }
            for dir in missing.into_iter().rev() {
                self.groups.borrow_mut().insert(dir, Group::default());
            }
            Ok(())
        }

        fn remove_dir(&self, path: &Path) -> io::Result<()> {
            let mut groups = self.groups.borrow_mut();
            let group = groups.get(path).ok_or_else(|| err(libc::ENOENT))?;
            if !group.procs.is_empty() || groups.keys().any(|p| p.parent() == Some(path)) {
                return Err(err(libc::EBUSY));
            }
            groups.remove(path);
            Ok(())
        }

        fn exists(&self, path: &Path) -> bool {
            if self.groups.borrow().contains_key(path) {
                return true;
            }
            let Ok((dir, file)) = Self::split(path) else { return false };
            self.groups.borrow().contains_key(&dir)
                && (file.starts_with("cgroup.") || self.limit_file_exists(&dir, &file))
        }

        fn subdirs(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
            Ok(self.groups.borrow().keys().filter(|p| p.parent() == Some(path)).cloned().collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeV2;
    use super::*;
    use crate::cgroup::run_group::{Limits, RunCgroup};
    use crate::cgroup::setup::{CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};

    const PURE_V2: &str = "35 24 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
    const CILAB: u32 = 4242;

    fn pure_v2(offered: &str) -> CgroupSetup {
        let offered = offered.to_string();
        CgroupSetup::from_parts(CGROUP2_SUPER_MAGIC, PURE_V2, move |_| Some(offered.clone())).expect("detects")
    }

    fn in_v2(path: &str) -> Membership {
        Membership::parse(&format!("0::{path}\n")).expect("parses")
    }

    fn set(words: &[&str]) -> std::collections::BTreeSet<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    /// The QEMU guest: init (and so cilab) in the root cgroup, which may hand anything down.
    #[test]
    fn pure_v2_from_the_root_cgroup_bounds_runs_and_leaves_no_trace() {
        let fs = FakeV2::new("/sys/fs/cgroup", &["cpu", "io", "memory", "pids"]);
        fs.add("/sys/fs/cgroup", &[], &[1, CILAB]);
        let setup = pure_v2("cpu io memory pids");
        let placement = Placement::make(&fs, &setup, &in_v2("/"), CILAB).expect("placed");
        assert!(placement.missing.is_empty(), "{:?}", placement.missing);
        let leaf = "/sys/fs/cgroup/cilab/harness-4242";
        assert_eq!(fs.group(leaf).expect("leaf").procs, [CILAB].into());
        assert_eq!(fs.group("/sys/fs/cgroup").expect("root").procs, [1].into());
        assert_eq!(fs.group("/sys/fs/cgroup/cilab").expect("parent").subtree, set(&["memory", "pids"]));

        let run = RunCgroup::create_in(&fs, &placement, "pid-ns-4242-0", &Limits::default()).expect("run made");
        assert_eq!(run.dirs.len(), 1);
        assert_eq!(run.dirs[0].path, Path::new("/sys/fs/cgroup/cilab/pid-ns-4242-0"));
        assert_eq!(run.limits_applied, ["pids.max=256 (v2)", "memory.max=536870912 (v2)", "memory.swap.max=0 (v2)"]);
        let files = fs.group("/sys/fs/cgroup/cilab/pid-ns-4242-0").expect("run").files;
        assert_eq!(files["pids.max"], "256");
        assert_eq!(placement.own_run_dirs(&fs, CILAB).len(), 1);

        run.remove_in(&fs).expect("removed");
        assert!(placement.leave(&fs, CILAB).is_empty());
        assert_eq!(fs.paths(), ["/sys/fs/cgroup"]);
        assert!(fs.group("/sys/fs/cgroup").expect("root").procs.contains(&CILAB));
    }

    /// Ubuntu: cilab under sudo in a session scope that holds the shell as well. The
    /// scope is given pids and memory but may not hand them down: runs are made, tracked
    /// and killable, and their limits say why they are missing.
    #[test]
    fn pure_v2_in_a_busy_session_scope_says_which_limits_it_could_not_set() {
        let scope = "/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope";
        let fs = FakeV2::new("/sys/fs/cgroup", &["cpu", "io", "memory", "pids"]);
        fs.add("/sys/fs/cgroup", &["cpu", "io", "memory", "pids"], &[]);
        fs.add("/sys/fs/cgroup/user.slice", &["memory", "pids"], &[]);
        fs.add("/sys/fs/cgroup/user.slice/user-1000.slice", &["memory", "pids"], &[]);
        fs.add(scope, &[], &[900, 901, CILAB]);
        let placement =
            Placement::make(&fs, &pure_v2("cpu io memory pids"), &in_v2(&scope[14..]), CILAB).expect("placed");
        assert_eq!(placement.missing.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["pids", "memory"]);
        assert!(placement.missing[0].1.contains("holds other processes"), "{:?}", placement.missing);
        assert!(fs.group(scope).expect("scope").subtree.is_empty(), "the scope is left as it was");

        let run = RunCgroup::create_in(&fs, &placement, "pid-ns-4242-0", &Limits::default()).expect("run made");
        assert_eq!(run.dirs[0].path, Path::new(scope).join("cilab/pid-ns-4242-0"));
        assert!(run.limits_applied.iter().all(|l| l.contains("not applied")), "{:?}", run.limits_applied);
        assert!(run.limits_applied.iter().any(|l| l.starts_with("pids.max not applied: ")));
        assert!(!run.limits_applied.iter().any(|l| l.starts_with("pids.max=")));

        run.remove_in(&fs).expect("removed");
        assert!(placement.leave(&fs, CILAB).is_empty());
        assert_eq!(fs.group(scope).expect("scope").procs, [900, 901, CILAB].into());
        assert!(fs.group(&format!("{scope}/cilab")).is_none());
    }

    /// A delegated cgroup of its own (`systemd-run --scope -p Delegate=yes cilab ...`):
    /// once cilab has moved to its leaf the scope is empty, may hand controllers down, and
    /// is put back as it was at exit so that cilab can return to it.
    #[test]
    fn pure_v2_alone_in_a_delegated_scope_enables_what_it_needs_and_undoes_it() {
        let scope = "/sys/fs/cgroup/system.slice/run-u7.scope";
        let fs = FakeV2::new("/sys/fs/cgroup", &["memory", "pids"]);
        fs.add("/sys/fs/cgroup", &["memory", "pids"], &[]);
        fs.add("/sys/fs/cgroup/system.slice", &["memory", "pids"], &[]);
        fs.add(scope, &[], &[CILAB]);
        let placement =
            Placement::make(&fs, &pure_v2("memory pids"), &in_v2("/system.slice/run-u7.scope"), CILAB).expect("placed");
        assert!(placement.missing.is_empty(), "{:?}", placement.missing);
        assert_eq!(placement.places[0].enabled_in_start, ["pids", "memory"]);
        let run = RunCgroup::create_in(&fs, &placement, "chroot-jail-4242-0", &Limits::default()).expect("made");
        assert!(run.limits_applied.contains(&"pids.max=256 (v2)".to_string()));
        run.remove_in(&fs).expect("removed");
        assert!(placement.leave(&fs, CILAB).is_empty());
        let back = fs.group(scope).expect("scope");
        assert!(back.subtree.is_empty() && back.procs.contains(&CILAB), "{back:?}");
        assert!(fs.group(&format!("{scope}/cilab")).is_none());
    }

    /// The start cgroup is not given memory by its parent: nothing cilab may change.
    #[test]
    fn pure_v2_without_memory_delegated_runs_with_pids_only_and_says_so() {
        let fs = FakeV2::new("/sys/fs/cgroup", &["memory", "pids"]);
        fs.add("/sys/fs/cgroup", &["pids"], &[]);
        fs.add("/sys/fs/cgroup/lab.slice", &["pids"], &[]);
        fs.add("/sys/fs/cgroup/lab.slice/student", &[], &[CILAB]);
        let placement =
            Placement::make(&fs, &pure_v2("memory pids"), &in_v2("/lab.slice/student"), CILAB).expect("placed");
        assert_eq!(placement.missing.len(), 1);
        assert_eq!(placement.missing[0].0, "memory");
        assert!(placement.missing[0].1.contains("is not given it by its parent"));
        let run = RunCgroup::create_in(&fs, &placement, "pid-ns-4242-1", &Limits::default()).expect("made");
        assert!(run.limits_applied.contains(&"pids.max=256 (v2)".to_string()));
        assert!(run.limits_applied.iter().any(|l| l.starts_with("memory.max not applied: ")));
    }

    /// Two cilabs started in the same cgroup share `<start>/cilab`: the first to leave
    /// leaves the other's leaf, its controllers and the parent alone.
    #[test]
    fn two_cilabs_in_one_start_cgroup_do_not_undo_each_other() {
        let fs = FakeV2::new("/sys/fs/cgroup", &["memory", "pids"]);
        fs.add("/sys/fs/cgroup", &[], &[1, 10, 20]);
        let setup = pure_v2("memory pids");
        let first = Placement::make(&fs, &setup, &in_v2("/"), 10).expect("first");
        let second = Placement::make(&fs, &setup, &in_v2("/"), 20).expect("second");
        assert!(first.leave(&fs, 10).is_empty());
        assert!(fs.group("/sys/fs/cgroup/cilab/harness-20").expect("kept").procs.contains(&20));
        let run = RunCgroup::create_in(&fs, &second, "pid-ns-20-0", &Limits::default()).expect("made");
        assert!(run.limits_applied.contains(&"pids.max=256 (v2)".to_string()), "{:?}", run.limits_applied);
        run.remove_in(&fs).expect("removed");
        assert!(second.leave(&fs, 20).is_empty());
        assert_eq!(fs.paths(), ["/sys/fs/cgroup"]);
    }

    /// A lab that makes cgroups of its own (cgroup-limits): its run hands pids, memory and
    /// cpu down at once, the root of its cgroup namespace `<run>/cgroupns` does once the
    /// namespace is made, the lab sits in the leaf `<run>/cgroupns/lab`, and the lab's own
    /// cgroup beside it takes limits. Other labs' runs are made as before; the leaf and the
    /// namespace's root are not leaks, the lab's cgroup left behind is.
    #[test]
    fn pure_v2_a_lab_with_cgroups_of_its_own_sits_in_a_leaf_of_its_run() {
        const WANTED: &[&str] = &["pids", "memory", "cpu", "cpuacct", "freezer"];
        let fs = FakeV2::new("/sys/fs/cgroup", &["cpu", "memory", "pids"]);
        fs.add("/sys/fs/cgroup", &[], &[1, CILAB]);
        let setup = pure_v2("cpu memory pids");
        let mut placement = Placement::make(&fs, &setup, &in_v2("/"), CILAB).expect("placed");
        assert_eq!(placement.places[0].controllers, ["pids", "memory"], "cpu only once a lab asks");
        assert!(placement.enable_for_lab(&fs, &setup, WANTED).is_empty());
        assert_eq!(placement.places[0].controllers, ["pids", "memory", "cpu"]);
        let limits = Limits { lab_controllers: WANTED, ..Limits::default() };
        let mut run = RunCgroup::create_in(&fs, &placement, "cgroup-limits-4242-0", &limits).expect("made");
        let dir = "/sys/fs/cgroup/cilab/cgroup-limits-4242-0";
        let ns_root = format!("{dir}/cgroupns");
        assert_eq!(run.dirs[0].leaf.as_deref(), Some(Path::new(&format!("{ns_root}/lab"))));
        let handed: Vec<&str> = ["cpu", "memory", "pids"].into();
        let subtree = |path: &str| fs.group(path).expect("a cgroup").subtree.iter().cloned().collect::<Vec<String>>();
        assert_eq!(subtree(dir), handed, "the run holds no process: it hands down at once");
        // Not the namespace's root yet: the namespace is made by a process in it.
        assert!(subtree(&ns_root).is_empty());
        fs.write(&Path::new(&ns_root).join("cgroup.procs"), "5001").expect("a process may join the root before");
        fs.groups.borrow_mut().get_mut(Path::new(&ns_root)).expect("ns root").procs.clear();
        run.hand_down_in(&fs);
        assert_eq!(subtree(&ns_root), handed);
        assert!(run.limits_applied.contains(&"pids.max=256 (v2)".to_string()), "{:?}", run.limits_applied);
        // The lab joins its leaf; its own cgroup, beside the leaf, takes a cpu quota.
        fs.write(&run.dirs[0].leaf.clone().expect("leaf").join("cgroup.procs"), "5000").expect("joins the leaf");
        fs.add(&format!("{ns_root}/lab-limits"), &[], &[]);
        fs.write(Path::new(&format!("{ns_root}/lab-limits/cpu.max")), "20000 100000").expect("cpu reaches the lab");
        fs.groups.borrow_mut().get_mut(Path::new(&format!("{ns_root}/lab"))).expect("leaf").procs.clear();
        // Another lab's run: no leaf, nothing handed down.
        let other = RunCgroup::create_in(&fs, &placement, "pid-ns-4242-1", &Limits::default()).expect("made");
        assert!(other.dirs[0].leaf.is_none());
        assert!(subtree("/sys/fs/cgroup/cilab/pid-ns-4242-1").is_empty());
        let left = run.remove_in(&fs).expect("removed");
        assert_eq!(left, [PathBuf::from(format!("{ns_root}/lab-limits"))], "the leaf is the harness's, not a leak");
        assert!(other.remove_in(&fs).expect("removed").is_empty());
        assert!(placement.leave(&fs, CILAB).is_empty());
    }

    /// This project's build machines: an empty v2 beside v1 controllers, cilab's memory
    /// cgroup nested, the others at the root.
    #[test]
    fn hybrid_runs_go_below_cilabs_own_cgroup_in_every_hierarchy() {
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
33 31 0:30 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
34 31 0:31 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
35 31 0:32 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        let setup = CgroupSetup::from_parts(TMPFS_MAGIC, mountinfo, |_| Some(String::new())).expect("detects");
        let membership =
            Membership::parse("8:pids:/student-7\n6:freezer:/\n4:memory:/process_api/50d3\n0::/\n").expect("parses");
        let fs = FakeV2::new("/sys/fs/cgroup/unified", &[]);
        let placement = Placement::make(&fs, &setup, &membership, CILAB).expect("placed");
        let parents: Vec<String> = placement.places.iter().map(|p| p.parent.display().to_string()).collect();
        assert_eq!(
            parents,
            [
                "/sys/fs/cgroup/unified/cilab",
                "/sys/fs/cgroup/freezer/cilab",
                "/sys/fs/cgroup/memory/process_api/50d3/cilab",
                "/sys/fs/cgroup/pids/student-7/cilab",
            ]
        );
        assert!(placement.missing.is_empty());
        assert_eq!(placement.places[0].leaf.as_deref(), Some(Path::new("/sys/fs/cgroup/unified/cilab/harness-4242")));
    }
}
