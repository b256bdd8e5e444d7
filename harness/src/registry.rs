//! Where cilab keeps its state on the machine: one record per active run (so that a
//! later `cilab doctor` can find what an interrupted run left), scratch directories, and
//! the last result of each lab for `cilab list`.

use std::path::{Path, PathBuf};

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

/// Creates the scratch dir of a run, and cilab's state dirs above it, with mode 0755
/// whatever the umask: a check that drops to another user must be able to reach it.
pub fn create_scratch_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).map_err(Error::io("create scratch directory", path))?;
    for dir in [Path::new(STATE_DIR), &scratch_root(), path] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(Error::io("chmod 0755", dir))?;
    }
    Ok(())
}

pub fn results_file() -> PathBuf {
    Path::new(STATE_DIR).join("last-results.json")
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

    pub fn save(&self) -> Result<()> {
        let dir = runs_dir();
        std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::parse("run record", e.to_string()))?;
        let path = self.path();
        std::fs::write(&path, text).map_err(Error::io("write", path))
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

/// The last graded result of a lab, for `cilab list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    /// "passed", "failed" or "skipped".
    pub result: String,
    pub points: u32,
    pub max_points: u32,
    /// Seconds since the Unix epoch.
    pub when: u64,
}

pub fn load_results() -> std::collections::BTreeMap<String, LastResult> {
    std::fs::read_to_string(results_file()).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

pub fn save_result(lab: &str, result: LastResult) -> Result<()> {
    let mut all = load_results();
    all.insert(lab.to_string(), result);
    let path = results_file();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    }
    let text = serde_json::to_string_pretty(&all).map_err(|e| Error::parse("results", e.to_string()))?;
    std::fs::write(&path, text).map_err(Error::io("write", path))
}
