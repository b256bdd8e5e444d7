//! Where cilab keeps its state on the machine: one record per active run (so that a
//! later `cilab doctor` can find what an interrupted run left), scratch directories, and
//! the results of each lab per source tree, for `cilab list`.

use nix::errno::Errno;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::cgroup::RunCgroup;
use crate::error::{Error, Result};
use crate::probe::procfs;

/// Everything cilab writes outside a cgroup lives under here.
pub const STATE_DIR: &str = "/var/lib/cilab";

pub fn runs_dir() -> PathBuf {
    Path::new(STATE_DIR).join("runs")
}

/// Scratch dirs live on a real disk (not /run, often noexec) so a jail can exec there.
pub fn scratch_root() -> PathBuf {
    Path::new(STATE_DIR).join("scratch")
}

/// The PID of the cilab that made a run, from the run's id: `<lab>-<pid>-<n>` or
/// `<lab>-<pid>-by-hand-<n>` (scratch dirs, records and cgroups are named after it).
pub fn run_id_owner(id: &str) -> Option<i32> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let without_counter = id.rsplit_once('-').filter(|(_, n)| digits(n)).map(|(rest, _)| rest);
    let rest = match without_counter.unwrap_or(id).strip_suffix("-by-hand") {
        Some(rest) => rest,
        None => without_counter?,
    };
    let (lab, pid) = rest.rsplit_once('-')?;
    let lab_like = !lab.is_empty() && lab.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !lab_like || !digits(pid) {
        return None;
    }
    pid.parse().ok().filter(|pid| *pid > 0)
}

/// Set once cilab is exiting after an interrupt: no new record or scratch dir is made.
static CLOSED: Mutex<bool> = Mutex::new(false);

fn closed() -> MutexGuard<'static, bool> {
    CLOSED.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Holds the gate while something is made, so that `close` waits for it to be done.
fn while_open<T>(what: &'static str, path: &Path, make: impl FnOnce() -> Result<T>) -> Result<T> {
    let closed = closed();
    if *closed {
        let why = std::io::Error::new(std::io::ErrorKind::Interrupted, "cilab is exiting after an interrupt");
        return Err(Error::io(what, path)(why));
    }
    make()
}

/// From now on no run record is saved and no scratch dir made (an interrupt was taken).
/// Returns once whatever was being made meanwhile is done.
pub fn close() {
    *closed() = true;
}

/// Creates the scratch dir of a run, and cilab's state dirs above it, with mode 0755
/// whatever the umask: a check that drops to another user must be able to reach it.
pub fn create_scratch_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    while_open("create scratch directory", path, || {
        std::fs::create_dir_all(path).map_err(Error::io("create scratch directory", path))?;
        for dir in [Path::new(STATE_DIR), &scratch_root()] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(Error::io("chmod 0755", dir))?;
        }
        // A filesystem of the run's own: whatever a lab does to the filesystem it works on
        // (a remount read-only without MS_BIND applies to the whole filesystem) stays
        // with the run, never the host's disk. Sized to the run's memory limit.
        let options = format!("mode=0755,size={}", crate::cgroup::Limits::default().memory_max_bytes);
        nix::mount::mount(
            Some(SCRATCH_SOURCE),
            path,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(Error::sys("mount(\"tmpfs\")", path.display()))
    })
}

/// The source name of a run's scratch filesystem in the mount table.
pub const SCRATCH_SOURCE: &str = "cilab-scratch";

/// `mount` is the scratch filesystem of the run whose scratch dir is `scratch`.
pub fn is_scratch_filesystem(mount: &crate::probe::procfs::Mount, scratch: &Path) -> bool {
    Path::new(&mount.mount_point) == scratch && mount.source == SCRATCH_SOURCE
}

/// `mount` is the scratch filesystem of a run that belongs to a cilab other than this one.
pub fn is_scratch_of_another_cilab(mount: &crate::probe::procfs::Mount) -> bool {
    let point = Path::new(&mount.mount_point);
    let run = point.strip_prefix(scratch_root()).ok().and_then(|p| p.iter().next()).map(|c| c.to_string_lossy());
    mount.source == SCRATCH_SOURCE
        && run.is_some_and(|id| run_id_owner(&id).is_some_and(|owner| owner != std::process::id() as i32))
}

/// Removes a run's scratch dir: whatever the lab mounted in it is detached and returned as
/// leaks, the run's own filesystem unmounted, the directory removed.
pub fn remove_scratch(scratch: &Path) -> Vec<String> {
    let mut leaks = crate::leaks::detach_mounts_under(scratch);
    let _ = unmount_scratch(scratch);
    match std::fs::remove_dir_all(scratch) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            leaks.push(format!("could not remove the scratch dir: {error}"))
        }
        _ => {}
    }
    leaks
}

/// Unmounts a run's scratch filesystem (see `create_scratch_dir`); nothing if it is not
/// one. True if it unmounted one.
pub fn unmount_scratch(path: &Path) -> bool {
    let is_ours = crate::probe::procfs::read_mountinfo("self")
        .is_ok_and(|mounts| mounts.iter().any(|m| is_scratch_filesystem(m, path)));
    is_ours && nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).is_ok()
}

/// Writes a file whole or not at all (a temporary file renamed over it): a reader never
/// sees half of it. A cilab killed while writing leaves the temporary file, named with
/// its PID (see `temporary_owner`) for `cilab doctor`.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().ok_or_else(|| Error::parse("state file path", path.display().to_string()))?;
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| file.write_all(text.as_bytes()).and_then(|()| file.sync_all()))
        .map_err(Error::io("write", &temporary));
    if let Err(error) = written.and_then(|()| std::fs::rename(&temporary, path).map_err(Error::io("rename into", path)))
    {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    Ok(())
}

/// The PID of the cilab writing a temporary file `.<name>.<pid>.tmp` (`write_atomically`).
pub fn temporary_owner(file_name: &str) -> Option<i32> {
    let inner = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    inner.rsplit_once('.')?.1.parse().ok()
}

/// Temporary files in cilab's state dirs: (path, PID of the cilab that wrote it).
pub fn temporary_files() -> Vec<(PathBuf, i32)> {
    [runs_dir(), results_dir()]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten())
        .filter_map(|e| temporary_owner(&e.file_name().to_string_lossy()).map(|pid| (e.path(), pid)))
        .collect()
}

/// What an active run has made on the machine, and who owns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub lab: String,
    pub owner_pid: i32,
    /// With the PID, names the owning cilab even after its PID is reused.
    pub owner_start_time: u64,
    pub scratch: PathBuf,
    pub cgroup: RunCgroup,
}

impl RunRecord {
    pub fn path(&self) -> PathBuf {
        runs_dir().join(format!("{}.json", self.id))
    }

    /// Saves the record (refused once cilab is exiting after an interrupt).
    pub fn save(&self) -> Result<()> {
        let path = self.path();
        while_open("save the run record", &path, || {
            let text = serde_json::to_string_pretty(self).map_err(|e| Error::parse("run record", e.to_string()))?;
            write_atomically(&path, &text)
        })
    }

    pub fn delete(&self) {
        let _ = std::fs::remove_file(self.path());
    }

    /// True while the cilab that started the run is still running.
    pub fn owner_alive(&self) -> bool {
        procfs::start_time(self.owner_pid) == Some(self.owner_start_time)
    }
}

/// Every run record on the machine (unreadable ones are reported as errors).
pub fn all_records() -> Vec<std::result::Result<RunRecord, String>> {
    let Ok(entries) = std::fs::read_dir(runs_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let path = e.path();
            std::fs::read_to_string(&path)
                .map_err(|err| format!("{}: {err}", path.display()))
                .and_then(|text| serde_json::from_str(&text).map_err(|err| format!("{}: {err}", path.display())))
        })
        .collect()
}

/// One graded attempt at a lab, for `cilab list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// "passed", "failed" or "skipped".
    pub result: String,
    pub points: u32,
    pub max_points: u32,
    /// Seconds since the Unix epoch.
    pub when: u64,
}

/// How many attempts per lab are kept.
pub const HISTORY: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabHistory {
    /// The attempt with the most points (the latest of equals), even once out of `attempts`.
    pub best: Option<Attempt>,
    /// The last `HISTORY` attempts, oldest first.
    pub attempts: Vec<Attempt>,
    /// What the last check failed, for `cilab hint` (absent in results saved before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<LastCheck>,
}

/// The verdicts the last check of a lab failed, and which hint `cilab hint` shows next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCheck {
    /// Seconds since the Unix epoch.
    pub when: u64,
    /// In report order.
    pub failing: Vec<FailingVerdict>,
    /// The index in `failing` of the hint shown next; `failing.len()` once all were shown.
    pub cursor: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingVerdict {
    pub id: String,
    pub claim: String,
    /// The STUDENT region it grades, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// What the harness saw (the verdict's detail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<String>,
    pub hint: String,
}

/// What `cilab hint` shows on one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HintStep {
    /// The lab was never checked in this tree.
    NoCheck,
    /// The last check failed nothing.
    NothingFailed { when: u64 },
    /// The `index`-th (0-based) of `of` failing verdicts.
    Failing { verdict: FailingVerdict, index: usize, of: usize, when: u64 },
    /// Every hint was shown; the next call starts over.
    NoMore { of: usize, when: u64 },
}

/// The source tree a cilab was built from. Its path alone would hand a fresh clone at
/// the same place the results of the last one: the root directory's device, inode and
/// birth time tell the two apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceTree {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    /// (seconds, nanoseconds) since the epoch, where the filesystem records it.
    pub born: Option<(u64, u32)>,
}

impl SourceTree {
    pub fn identify(root: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let path = root.canonicalize()?;
        let meta = std::fs::metadata(&path)?;
        let born = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| (d.as_secs(), d.subsec_nanos()));
        Ok(SourceTree { path, dev: meta.dev(), ino: meta.ino(), born })
    }

    /// The tree this cilab was built from, if it is still there.
    pub fn of_this_cilab() -> Option<Self> {
        crate::labbuild::workspace_root().and_then(|root| Self::identify(&root).ok())
    }
}

/// The key results are filed under: readable (the tree's directory name) and unique (a
/// hash of the whole identity). A cilab without its tree (copied into a VM) has one key.
pub fn results_key(tree: Option<&SourceTree>) -> String {
    let Some(tree) = tree else { return "no-tree".to_string() };
    // FNV-1a: stable across Rust releases, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    use std::os::unix::ffi::OsStrExt;
    feed(tree.path.as_os_str().as_bytes());
    feed(&tree.dev.to_le_bytes());
    feed(&tree.ino.to_le_bytes());
    if let Some((secs, nanos)) = tree.born {
        feed(&secs.to_le_bytes());
        feed(&nanos.to_le_bytes());
    }
    let name: String = tree
        .path
        .file_name()
        .map(|n| n.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect())
        .unwrap_or_else(|| "root".into());
    format!("{name}-{hash:016x}")
}

/// A source tree's results: what `cilab list` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Results {
    pub tree: Option<SourceTree>,
    pub labs: BTreeMap<String, LabHistory>,
}

impl Results {
    /// Records a check of `lab`: its attempt and, for `cilab hint`, what it failed (the
    /// hints start over).
    pub fn add_check(&mut self, lab: &str, attempt: Attempt, failing: Vec<FailingVerdict>) {
        let when = attempt.when;
        self.add(lab, attempt);
        if let Some(history) = self.labs.get_mut(lab) {
            history.last_check = Some(LastCheck { when, failing, cursor: 0 });
        }
    }

    /// The next hint of `lab`'s last check, moving the cursor on (round and round).
    pub fn next_hint(&mut self, lab: &str) -> HintStep {
        let Some(check) = self.labs.get_mut(lab).and_then(|h| h.last_check.as_mut()) else {
            return HintStep::NoCheck;
        };
        let (when, of) = (check.when, check.failing.len());
        if of == 0 {
            return HintStep::NothingFailed { when };
        }
        match check.failing.get(check.cursor).cloned() {
            Some(verdict) => {
                let index = check.cursor;
                check.cursor += 1;
                HintStep::Failing { verdict, index, of, when }
            }
            None => {
                check.cursor = 0;
                HintStep::NoMore { of, when }
            }
        }
    }

    pub fn add(&mut self, lab: &str, attempt: Attempt) {
        let history = self.labs.entry(lab.to_string()).or_default();
        let better = match &history.best {
            Some(best) => attempt.points >= best.points,
            None => true,
        };
        if better {
            history.best = Some(attempt.clone());
        }
        history.attempts.push(attempt);
        let excess = history.attempts.len().saturating_sub(HISTORY);
        history.attempts.drain(..excess);
    }

    pub fn last(&self, lab: &str) -> Option<&Attempt> {
        self.labs.get(lab).and_then(|h| h.attempts.last())
    }

    pub fn best(&self, lab: &str) -> Option<&Attempt> {
        self.labs.get(lab).and_then(|h| h.best.as_ref())
    }
}

/// Puts the results elsewhere than under `STATE_DIR`: for cilab's tests, which must not
/// touch a student's results.
pub const RESULTS_DIR_ENV: &str = "CILAB_RESULTS_DIR";

pub fn results_dir() -> PathBuf {
    match std::env::var_os(RESULTS_DIR_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(STATE_DIR).join("results"),
    }
}

/// The results file of the tree this cilab was built from.
pub fn results_file() -> PathBuf {
    results_dir().join(format!("{}.json", results_key(SourceTree::of_this_cilab().as_ref())))
}

fn read_results(path: &Path) -> Results {
    std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// This tree's results (empty for a tree never checked, or a fresh clone).
pub fn load_results() -> Results {
    read_results(&results_file())
}

/// Adds attempts to this tree's results, under a lock so that two cilabs checking at
/// once both count.
pub fn save_attempts(attempts: &[(String, Attempt)]) -> Result<()> {
    update_results(|results| {
        for (lab, attempt) in attempts {
            results.add(lab, attempt.clone());
        }
    })
}

/// Adds checks (lab, attempt, what it failed) to this tree's results.
pub fn save_checks(checks: Vec<(String, Attempt, Vec<FailingVerdict>)>) -> Result<()> {
    update_results(|results| {
        for (lab, attempt, failing) in checks {
            results.add_check(&lab, attempt, failing);
        }
    })
}

/// The next hint of `lab`'s last check in this tree (the cursor saved moved on).
pub fn next_hint(lab: &str) -> Result<HintStep> {
    // Nothing to move on: no need to write a results file for a tree never checked.
    let mut results = load_results();
    if results.labs.get(lab).and_then(|h| h.last_check.as_ref()).is_none() {
        return Ok(HintStep::NoCheck);
    }
    match update_results(|results| results.next_hint(lab)) {
        // Without root the cursor in root's results cannot move: the hint it points at,
        // again, rather than none.
        Err(error) if error.errno().is_some_and(|e| [Errno::EACCES, Errno::EPERM, Errno::EROFS].contains(&e)) => {
            Ok(results.next_hint(lab))
        }
        answer => answer,
    }
}

/// Reads, changes and writes back this tree's results under a lock: two cilabs at once
/// both count.
fn update_results<T>(change: impl FnOnce(&mut Results) -> T) -> Result<T> {
    use nix::fcntl::{Flock, FlockArg};
    let tree = SourceTree::of_this_cilab();
    let path = results_dir().join(format!("{}.json", results_key(tree.as_ref())));
    let lock_path = path.with_extension("lock");
    std::fs::create_dir_all(results_dir()).map_err(Error::io("create directory", results_dir()))?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(Error::io("open", &lock_path))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| Error::sys("flock", lock_path.display())(errno))?;
    let mut results = read_results(&path);
    results.tree = tree;
    let answer = change(&mut results);
    let text = serde_json::to_string_pretty(&results).map_err(|e| Error::parse("results", e.to_string()))?;
    write_atomically(&path, &text)?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(path: &str, ino: u64, born: Option<(u64, u32)>) -> SourceTree {
        SourceTree { path: path.into(), dev: 2049, ino, born }
    }

    #[test]
    fn results_are_keyed_by_the_whole_identity_of_the_tree() {
        let here = tree("/home/ana/cilab", 1234, Some((1_700_000_000, 5)));
        assert_eq!(results_key(Some(&here)), results_key(Some(&here.clone())), "stable");
        assert!(results_key(Some(&here)).starts_with("cilab-"));
        let elsewhere = SourceTree { path: "/home/ana/cilab2".into(), ..here.clone() };
        // A fresh clone at the same path: a new root directory.
        let fresh_inode = SourceTree { ino: 99, ..here.clone() };
        let fresh_reused_inode = SourceTree { born: Some((1_700_000_900, 0)), ..here.clone() };
        let other_disk = SourceTree { dev: 2050, ..here.clone() };
        let keys: std::collections::BTreeSet<String> =
            [&here, &elsewhere, &fresh_inode, &fresh_reused_inode, &other_disk]
                .into_iter()
                .map(|t| results_key(Some(t)))
                .collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
        assert_eq!(results_key(None), "no-tree");
        assert!(results_key(Some(&tree("/", 2, None))).starts_with("root-"));
    }

    #[test]
    fn a_fresh_clone_at_the_same_path_is_another_tree() {
        let base = tempfile::tempdir().expect("tempdir");
        let root = base.path().join("cilab");
        std::fs::create_dir(&root).expect("mkdir");
        let first = SourceTree::identify(&root).expect("identify");
        assert_eq!(first, SourceTree::identify(&root).expect("identify again"));
        std::fs::remove_dir(&root).expect("rm");
        std::fs::create_dir(&root).expect("clone again");
        let second = SourceTree::identify(&root).expect("identify");
        assert_eq!(first.path, second.path);
        assert_ne!(results_key(Some(&first)), results_key(Some(&second)), "{first:?} vs {second:?}");
    }

    #[test]
    fn history_keeps_the_last_attempts_and_the_best_ever() {
        let attempt = |points, when| Attempt { result: "failed".into(), points, max_points: 20, when };
        let mut results = Results::default();
        results.add("pid-ns", attempt(20, 1));
        for when in 2..20 {
            results.add("pid-ns", attempt(9, when));
        }
        let history = &results.labs["pid-ns"];
        assert_eq!(history.attempts.len(), HISTORY);
        assert_eq!(history.attempts.first().map(|a| a.when), Some(10));
        assert_eq!(results.last("pid-ns").map(|a| a.when), Some(19));
        assert_eq!(results.best("pid-ns").map(|a| (a.points, a.when)), Some((20, 1)));
        results.add("pid-ns", attempt(20, 30));
        assert_eq!(results.best("pid-ns").map(|a| a.when), Some(30), "the latest of equals");
        assert!(results.last("chroot-jail").is_none());
    }

    #[test]
    fn hints_go_round_the_last_checks_failures_and_a_new_check_starts_over() {
        let attempt = |when| Attempt { result: "failed".into(), points: 4, max_points: 20, when };
        let failing = |id: &str| FailingVerdict {
            id: id.into(),
            claim: format!("{id} holds"),
            region: None,
            seen: None,
            hint: format!("look at {id}"),
        };
        let mut results = Results::default();
        assert_eq!(results.next_hint("pid-ns"), HintStep::NoCheck);
        results.add_check("pid-ns", attempt(1), vec![failing("a"), failing("b")]);
        let ids: Vec<String> = (0..5)
            .map(|_| match results.next_hint("pid-ns") {
                HintStep::Failing { verdict, .. } => verdict.id,
                HintStep::NoMore { of, .. } => format!("no more of {of}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, ["a", "b", "no more of 2", "a", "b"]);
        results.add_check("pid-ns", attempt(2), vec![failing("c")]);
        assert!(
            matches!(results.next_hint("pid-ns"), HintStep::Failing { verdict, index: 0, of: 1, when: 2 } if verdict.id == "c")
        );
        results.add_check("pid-ns", attempt(3), Vec::new());
        assert_eq!(results.next_hint("pid-ns"), HintStep::NothingFailed { when: 3 });
    }

    #[test]
    fn temporary_files_name_their_cilab() {
        assert_eq!(temporary_owner(".pid-ns-12-0.json.4242.tmp"), Some(4242));
        assert_eq!(temporary_owner(".wt-ops-56b2.json.7.tmp"), Some(7));
        assert_eq!(temporary_owner("pid-ns-12-0.json"), None);
        assert_eq!(temporary_owner(".x.json.tmp"), None);
    }

    #[test]
    fn run_ids_name_their_cilab() {
        assert_eq!(run_id_owner("pid-ns-4242-0"), Some(4242));
        assert_eq!(run_id_owner("chroot-jail-17-by-hand"), Some(17));
        assert_eq!(run_id_owner("nsenter-join-19178-by-hand-1"), Some(19178));
        assert_eq!(run_id_owner("chroot-jail-17-12"), Some(17));
        for not_a_run in ["harness-12", "pid-ns", "pid-ns-x-1", "cilab.service", "-12-0", "Pid-12-0", "a-+1-0"] {
            assert_eq!(run_id_owner(not_a_run), None, "{not_a_run}");
        }
    }
}
