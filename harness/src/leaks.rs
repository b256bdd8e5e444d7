//! What "nothing leaked" means, measured: the host's mount table before and after a run,
//! the run's cgroups gone, no process left in its cgroup or in a namespace it made.

use std::collections::BTreeSet;
use std::path::Path;

use crate::cgroup::RunCgroup;
use crate::error::Result;
use crate::probe::procfs::{self, NsId};

/// The host's state before a run.
#[derive(Debug, Clone)]
pub struct Baseline {
    mounts: BTreeSet<String>,
}

impl Baseline {
    pub fn take() -> Result<Self> {
        Ok(Baseline { mounts: mount_identities()? })
    }

    /// Mounts added to and removed from the harness's (the host's) mount table since.
    pub fn mount_changes(&self) -> Result<(Vec<String>, Vec<String>)> {
        let now = mount_identities()?;
        let added = now.difference(&self.mounts).cloned().collect();
        let removed = self.mounts.difference(&now).cloned().collect();
        Ok((added, removed))
    }
}

fn mount_identities() -> Result<BTreeSet<String>> {
    Ok(procfs::read_mountinfo("self")?.iter().map(procfs::Mount::identity).collect())
}

/// Everything a finished run left on the host, in words for the report.
pub fn find_leaks(
    baseline: &Baseline,
    cgroup: &RunCgroup,
    namespaces: &BTreeSet<(&'static str, NsId)>,
    scratch: &Path,
) -> Vec<String> {
    let mut leaks = Vec::new();
    match baseline.mount_changes() {
        Ok((added, removed)) => {
            leaks.extend(added.into_iter().map(|m| format!("mount left on the host: {m}")));
            leaks.extend(removed.into_iter().map(|m| format!("host mount removed: {m}")));
        }
        Err(error) => leaks.push(format!("could not re-read the mount table: {error}")),
    }
    for dir in cgroup.dirs.iter().filter(|d| d.path.exists()) {
        leaks.push(format!("cgroup still exists: {}", dir.path.display()));
    }
    for pid in cgroup.procs() {
        leaks.push(format!("process {pid} ({}) still in the run's cgroup", procfs::comm(pid).unwrap_or_default()));
    }
    for (kind, ns) in namespaces {
        for pid in procfs::processes_in_namespace(kind, *ns, &[]) {
            leaks.push(format!(
                "process {pid} ({}) still in the {kind} namespace the lab made",
                procfs::comm(pid).unwrap_or_default()
            ));
        }
    }
    if scratch.exists() {
        leaks.push(format!("scratch directory still exists: {}", scratch.display()));
    }
    leaks
}

/// Detaches (MNT_DETACH) host mounts at or below the run's scratch dir, so that it can be
/// removed. They are the run's by their place; each is returned as a leak.
pub fn detach_mounts_under(scratch: &Path) -> Vec<String> {
    let Ok(mounts) = procfs::read_mountinfo("self") else { return Vec::new() };
    let mut under: Vec<&procfs::Mount> =
        mounts.iter().filter(|m| Path::new(&m.mount_point).starts_with(scratch)).collect();
    // Deepest first, so that nested mounts go before the ones they sit on.
    under.sort_by_key(|m| std::cmp::Reverse(m.mount_point.len()));
    under
        .into_iter()
        .map(|mount| {
            let result = nix::mount::umount2(mount.mount_point.as_str(), nix::mount::MntFlags::MNT_DETACH);
            format!("mount left on the host in the scratch dir: {} (detached: {result:?})", mount.identity())
        })
        .collect()
}
