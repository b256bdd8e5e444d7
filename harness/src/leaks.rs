//! What "nothing leaked" means, measured. The lab's host is the run's mount namespace,
//! whose changes `run` reads by mount id (see `mountns`); here: the run's cgroups gone, no
//! process left in its cgroup or in a namespace the lab made, the scratch dir removed, and
//! no mount of the run on the real host (it has no way there: if one appears, it is
//! detached and named).

use std::path::Path;

use crate::cgroup::RunCgroup;
use crate::probe::procfs::{self, HeldNs};

/// Processes left in the run's cgroup or in a namespace the lab made (held open, so that
/// the namespace is the lab's and not a newer one with a reused inode number).
pub fn processes_left(cgroup: &RunCgroup, namespaces: &[HeldNs]) -> Vec<String> {
    let own = std::process::id() as i32;
    let mut leaks: Vec<String> = cgroup
        .procs()
        .into_iter()
        .map(|pid| format!("process {pid} ({}) still in the run's cgroup", procfs::comm(pid).unwrap_or_default()))
        .collect();
    for held in namespaces {
        // The harness's own namespaces are the host's, never the lab's.
        if procfs::ns_id(own, held.kind).ok().flatten() == Some(held.id) {
            continue;
        }
        for pid in procfs::processes_in_namespace(held.kind, held.id, &[]) {
            leaks.push(format!(
                "process {pid} ({}) still in the {} namespace the lab made",
                procfs::comm(pid).unwrap_or_default(),
                held.kind
            ));
        }
    }
    leaks
}

/// Cgroup directories and the scratch dir that should be gone.
pub fn files_left(cgroup: &RunCgroup, scratch: &Path) -> Vec<String> {
    let mut leaks: Vec<String> = cgroup
        .dirs
        .iter()
        .filter(|d| d.path.exists())
        .map(|d| format!("cgroup still exists: {}", d.path.display()))
        .collect();
    if scratch.exists() {
        leaks.push(format!("scratch directory still exists: {}", scratch.display()));
    }
    leaks
}

/// Detaches (MNT_DETACH) mounts of the real host at or below the run's scratch dir, so that
/// it can be removed. They are the run's by their place; each is returned as a leak.
pub fn detach_mounts_under(scratch: &Path) -> Vec<String> {
    let Ok(mounts) = procfs::read_mountinfo("self") else { return Vec::new() };
    // The run's own scratch filesystem is not a leak (registry::unmount_scratch removes it).
    let mut under: Vec<&procfs::Mount> = mounts
        .iter()
        .filter(|m| Path::new(&m.mount_point).starts_with(scratch))
        .filter(|m| !crate::registry::is_scratch_filesystem(m, scratch))
        .collect();
    // Deepest first, so that nested mounts go before the ones they sit on.
    under.sort_by_key(|m| std::cmp::Reverse(m.mount_point.len()));
    under
        .into_iter()
        .map(|mount| {
            let result = nix::mount::umount2(mount.mount_point.as_str(), nix::mount::MntFlags::MNT_DETACH);
            format!("mount on the real host in the scratch dir: {} (detached: {result:?})", mount.describe())
        })
        .collect()
}
