//! The run's mount namespace: the "host" a lab sees.
//!
//! Each run gets a mount namespace of its own, made by the harness before the lab starts:
//! a copy of the host's mount table, cut off from the host in both directions (every mount
//! made private), then made shared again recursively inside, as systemd makes `/` on every
//! current distribution. Whatever a lab mounts or unmounts by mistake lands here, where the
//! harness finds it by mount id, and never reaches the real host; nothing the real host
//! does (Docker, systemd, another terminal) appears here, so nothing else on the machine can
//! change what a run sees. A lab that forgets MS_PRIVATE in its own namespace propagates
//! its mounts back here on every machine alike, whether the host's `/` is private or shared.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd};
use std::path::Path;

use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::Mode;

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

use crate::cgroup::RunCgroup;
use crate::error::{Error, Result};
use crate::probe::forked;
use crate::probe::procfs::{self, HeldNs, Mount, NsId};

const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The namespace, held open for the whole run, and its mount table as the lab found it.
#[derive(Debug)]
pub struct RunMountNs {
    held: HeldNs,
    /// A private copy of the namespace as the lab found it, which no lab can reach: what
    /// the real host takes away (see `changes`) goes from both, what the lab does only
    /// from the run's.
    reference: HeldNs,
    baseline: Vec<Mount>,
    /// For a lab that makes cgroups of its own: a cgroup namespace rooted at the run's
    /// cgroup, in which every cgroup hierarchy of the run's mount namespace is mounted.
    cgroup_ns: Option<HeldNs>,
}

/// How the run's cgroup namespace is made (in the child that makes the mount namespace):
/// the child joins `<run>/cgroupns` in every hierarchy of the run (on v2 before it hands
/// controllers down, when a process may still be there), unshares a cgroup namespace,
/// whose root is then that cgroup, and mounts each cgroup hierarchy afresh over the
/// host's, from inside it (read-only where the run has no cgroup). The run's own limit
/// files are one level above the namespace's root: out of the lab's sight and reach. The lab, which joins this namespace, finds itself at `/lab` in
/// /proc/self/cgroup, and `/sys/fs/cgroup` begins at the run's cgroup: a cgroup it makes
/// "at the root", or "beside its parent", is still under the run's, held by the run's
/// limits, as in a container with a cgroup namespace of its own.
struct CgroupNsPlan {
    run_procs: Vec<File>,
    remounts: Vec<Remount>,
}

/// One cgroup mount to make again from inside the run's cgroup namespace.
struct Remount {
    mount_point: String,
    fs_type: &'static str,
    /// v1: the hierarchy's controllers and name (`cpu,cpuacct`, `name=systemd`).
    data: Option<String>,
    read_only: bool,
}

impl CgroupNsPlan {
    /// Prepared before fork: the run's cgroup.procs open for writing, and the cgroup
    /// mounts of this (the harness's) mount namespace, which the run's is a copy of.
    fn prepare(cgroup: &RunCgroup) -> Result<Self> {
        let mut run_procs = Vec::new();
        for dir in &cgroup.dirs {
            let path = dir.ns_root.as_ref().unwrap_or(&dir.path).join("cgroup.procs");
            run_procs.push(std::fs::OpenOptions::new().write(true).open(&path).map_err(Error::io("open", path))?);
        }
        let controllers: Vec<String> = std::fs::read_to_string("/proc/cgroups")
            .map_err(Error::io("read", "/proc/cgroups"))?
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        let mut remounts = Vec::new();
        for mount in procfs::read_mountinfo("self")? {
            let (fs_type, data) = match mount.fs_type.as_str() {
                "cgroup2" => ("cgroup2", None),
                "cgroup" => {
                    let words: Vec<&str> = mount
                        .super_options
                        .split(',')
                        .filter(|o| o.starts_with("name=") || controllers.iter().any(|c| c == o))
                        .collect();
                    ("cgroup", Some(words.join(",")))
                }
                _ => continue,
            };
            // A hierarchy the run has no cgroup in: its namespace root is the harness's own
            // cgroup there (the host's root, often), so the lab sees it read-only.
            let read_only = !cgroup.dirs.iter().any(|d| d.path.starts_with(&mount.mount_point));
            remounts.push(Remount { mount_point: mount.mount_point, fs_type, data, read_only });
        }
        Ok(CgroupNsPlan { run_procs, remounts })
    }

    /// In the child, inside the run's new mount namespace.
    fn make(&self) -> nix::Result<()> {
        for file in &self.run_procs {
            nix::unistd::write(file, b"0")?;
        }
        unshare(CloneFlags::CLONE_NEWCGROUP)?;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME;
        for remount in &self.remounts {
            nix::mount::umount2(remount.mount_point.as_str(), nix::mount::MntFlags::MNT_DETACH)?;
            mount(
                Some(remount.fs_type),
                remount.mount_point.as_str(),
                Some(remount.fs_type),
                flags,
                remount.data.as_deref(),
            )?;
            if remount.read_only {
                set_read_only(Path::new(&remount.mount_point), true, false)?;
            }
        }
        Ok(())
    }
}

/// A mount before and now.
type Changed = (Mount, Mount);

/// How a mount table differs from the one a run started with, mount by mount id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountChanges {
    pub added: Vec<Mount>,
    pub removed: Vec<Mount>,
    /// The same mount (same id) with other options, place or propagation: (before, now).
    pub changed: Vec<Changed>,
}

impl MountChanges {
    /// Mount by mount: what each mount is (place, source, per-mount options, propagation),
    /// not its filesystem's own options, which belong to a filesystem every namespace
    /// shares: a remount of it on the real host (a tmpfs resized) shows here as well, and is
    /// nobody's doing in this run.
    pub fn between(before: &[Mount], now: &[Mount]) -> Self {
        let per_mount = |m: &Mount| Mount { super_options: String::new(), ..m.clone() };
        let before_by_id: BTreeMap<u32, &Mount> = before.iter().map(|m| (m.id, m)).collect();
        let now_by_id: BTreeMap<u32, &Mount> = now.iter().map(|m| (m.id, m)).collect();
        let mut changes = MountChanges::default();
        for (id, mount) in &now_by_id {
            match before_by_id.get(id) {
                None => changes.added.push((*mount).clone()),
                Some(old) if per_mount(old) != per_mount(mount) => {
                    changes.changed.push(((*old).clone(), (*mount).clone()))
                }
                Some(_) => {}
            }
        }
        changes.removed =
            before_by_id.iter().filter(|(id, _)| !now_by_id.contains_key(id)).map(|(_, m)| (*m).clone()).collect();
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// One sentence per change, naming the mount by id. Mounts whose propagation alone
    /// changed (a `mount --make-rprivate /` run on the host) make one sentence together.
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self.added.iter().map(|m| format!("added {}", m.describe())).collect();
        out.extend(self.removed.iter().map(|m| format!("removed {}", m.describe())));
        let only_propagation =
            |(old, new): &&Changed| Mount { propagation: new.propagation.clone(), ..old.clone() } == *new;
        let (propagation, other): (Vec<&Changed>, Vec<&Changed>) = self.changed.iter().partition(only_propagation);
        out.extend(other.iter().map(|(old, new)| {
            format!("changed {} (was: {} on {} ({}))", new.describe(), old.source, old.mount_point, old.options)
        }));
        if let Some(((old, new), rest)) = propagation.split_first() {
            let was = if old.propagation.is_empty() { "private".to_string() } else { old.propagation.join(" ") };
            let now = if new.propagation.is_empty() { "private".to_string() } else { new.propagation.join(" ") };
            let others = if rest.is_empty() { String::new() } else { format!(" and {} more mounts", rest.len()) };
            out.push(format!(
                "changed the propagation of mount {} on {}{others}: {was} before, {now} now (was a mount made \
                 private, or shared, outside a mount namespace of the lab's own?)",
                new.id, new.mount_point
            ));
        }
        out
    }
}

impl RunMountNs {
    /// Makes the namespace in a forked child (unshare and mount change only that child),
    /// holds it open through `/proc/<child>/ns/mnt`; then the child makes the private
    /// reference copy, which is held the same way, and goes.
    ///
    /// With `cgroup` (a run whose lab makes cgroups of its own, see `RunCgroup::hand_down`),
    /// the child also makes the run's cgroup namespace (see `CgroupNsPlan`), held the same way.
    pub fn create(scratch: &Path, cgroup: Option<&RunCgroup>) -> Result<Self> {
        let scratch = scratch.to_path_buf();
        let cgroup_plan = cgroup.map(CgroupNsPlan::prepare).transpose()?;
        let (ready_rx, ready_tx) = nix::unistd::pipe().map_err(Error::harness("pipe", "run mount namespace"))?;
        let (go_rx, go_tx) = nix::unistd::pipe().map_err(Error::harness("pipe", "run mount namespace"))?;
        // SAFETY: the child makes syscalls, reads and writes pipes, and leaves with _exit.
        match unsafe { fork() }.map_err(Error::harness("fork", "run mount namespace"))? {
            ForkResult::Child => {
                drop(ready_rx);
                drop(go_tx);
                let (mut ready, mut go) = (File::from(ready_tx), File::from(go_rx));
                let private = |flags| mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | flags, None::<&str>);
                // Step by step, the parent opening our namespace after each: the run's
                // namespace, then the reference copy of it.
                let steps: [&dyn Fn() -> nix::Result<()>; 2] = [
                    &|| {
                        unshare(CloneFlags::CLONE_NEWNS)?;
                        private(MsFlags::MS_PRIVATE)?;
                        private(MsFlags::MS_SHARED)?;
                        read_only_but_scratch(&scratch)?;
                        cgroup_plan.as_ref().map_or(Ok(()), CgroupNsPlan::make)
                    },
                    &|| {
                        unshare(CloneFlags::CLONE_NEWNS)?;
                        private(MsFlags::MS_PRIVATE)
                    },
                ];
                let mut code = 0;
                for step in steps {
                    if let Err(errno) = step() {
                        code = errno as i32;
                        break;
                    }
                    // Live until the parent has opened this namespace (it answers a byte).
                    if ready.write_all(b"r").is_err() || go.read(&mut [0u8]).map_or(true, |n| n == 0) {
                        code = 1;
                        break;
                    }
                }
                // SAFETY: _exit has no preconditions; nix 0.29 has no wrapper for it.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(ready_tx);
                drop(go_rx);
                let (mut ready, mut go) = (File::from(ready_rx), File::from(go_tx));
                let mut cgroup_ns = None;
                let mut open_next = |with_cgroup: bool| -> Result<Option<HeldNs>> {
                    if !ready.read(&mut [0u8]).is_ok_and(|n| n == 1) {
                        return Ok(None);
                    }
                    if with_cgroup {
                        cgroup_ns = Some(HeldNs::open(child.as_raw(), "cgroup"));
                    }
                    let held = HeldNs::open(child.as_raw(), "mnt");
                    let _ = go.write_all(b"g");
                    held
                };
                let held = open_next(cgroup_plan.is_some());
                let reference = open_next(false);
                drop(go);
                let status = waitpid(child, None).map_err(Error::sys("waitpid", child))?;
                let with_cgroup = if cgroup_plan.is_some() {
                    ", then joining the run's cgroup, unshare(CLONE_NEWCGROUP) and each cgroup hierarchy mounted again"
                } else {
                    ""
                };
                let failed = || {
                    Error::Harness(format!(
                        "could not make the run's mount namespace (unshare(CLONE_NEWNS), then / made \
                         MS_REC|MS_PRIVATE and MS_REC|MS_SHARED{with_cgroup}): the child ended with {status:?}"
                    ))
                };
                let held = held?.ok_or_else(failed)?;
                let reference = reference?.ok_or_else(failed)?;
                let cgroup_ns = match cgroup_ns {
                    Some(opened) => Some(opened?.ok_or_else(failed)?),
                    None if cgroup_plan.is_some() => return Err(failed()),
                    None => None,
                };
                let mut ns = RunMountNs { held, reference, baseline: Vec::new(), cgroup_ns };
                ns.baseline = ns.mounts()?;
                // The promise to every lab: its host's / is shared, as under systemd.
                if !ns.baseline.iter().any(|m| m.mount_point == "/" && m.is_shared()) {
                    return Err(Error::Harness("the run's / did not become shared (MS_REC|MS_SHARED)".into()));
                }
                Ok(ns)
            }
        }
    }

    pub fn id(&self) -> NsId {
        self.held.id
    }

    /// The open nsfs file: `setns(file, CLONE_NEWNS)` enters the namespace.
    pub fn file(&self) -> &File {
        self.held.file()
    }

    /// The run's cgroup namespace, for a lab that makes cgroups of its own:
    /// `setns(file, CLONE_NEWCGROUP)` enters it.
    pub fn cgroup_ns(&self) -> Option<&File> {
        self.cgroup_ns.as_ref().map(HeldNs::file)
    }

    /// The mount table now, read by a forked child that enters the namespace.
    pub fn mounts(&self) -> Result<Vec<Mount>> {
        read_mounts(&self.held)
    }

    /// What changed in the lab's host since the run began. One change is the real host's
    /// and not the lab's: when a directory or file that is a mount point is deleted on the
    /// host (Docker removing a container, a temp dir going away), the kernel detaches that
    /// mount's copies in every namespace, this one and its private reference copy
    /// included. A mount gone from both was taken by the host, so it is left out; one gone
    /// only from the run's namespace was taken by the lab.
    pub fn changes(&self) -> Result<MountChanges> {
        let mut changes = MountChanges::between(&self.baseline, &self.mounts()?);
        // Read after the run's table: whatever the host took before that is gone here too.
        let reference = read_mounts(&self.reference)?;
        let same_place = |a: &Mount, b: &Mount| {
            (&a.mount_point, &a.source, &a.root, &a.fs_type) == (&b.mount_point, &b.source, &b.root, &b.fs_type)
        };
        changes.removed.retain(|gone| reference.iter().any(|kept| same_place(gone, kept)));
        Ok(changes)
    }
}

/// Filesystems a lab may need to write through (a process's own files in /proc, cgroups,
/// devices): kernel interfaces, not the host's data.
const KERNEL_FILESYSTEMS: [&str; 9] =
    ["proc", "sysfs", "cgroup", "cgroup2", "devtmpfs", "devpts", "mqueue", "binfmt_misc", "hugetlbfs"];

/// In the namespace being made: every mount becomes read-only in it, but for the run's own
/// scratch filesystem and the kernel's interfaces that were writable. The host's mounts
/// keep their own flags; here a lab can neither write on the host's disk by mistake nor
/// delete a directory that is a mount point of the host (which would take that mount away
/// from the host too). Needs mount_setattr(2) (Linux 5.12); without it the namespace stays
/// writable, as before.
fn read_only_but_scratch(scratch: &Path) -> nix::Result<()> {
    let mounts = procfs::read_mountinfo("self").map_err(|_| nix::errno::Errno::EIO)?;
    match set_read_only(Path::new("/"), true, true) {
        Err(nix::errno::Errno::ENOSYS) => return Ok(()),
        other => other?,
    }
    for mount in mounts.iter().filter(|m| !m.is_read_only()) {
        let point = Path::new(&mount.mount_point);
        if point == scratch || KERNEL_FILESYSTEMS.contains(&mount.fs_type.as_str()) {
            set_read_only(point, false, false)?;
        }
    }
    Ok(())
}

/// mount_setattr(2) with MOUNT_ATTR_RDONLY set or cleared, on one mount or all below.
/// nix has no wrapper for it: a raw syscall, with the kernel's struct mount_attr.
fn set_read_only(point: &Path, read_only: bool, recursive: bool) -> nix::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let attr = MountAttr {
        attr_set: if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: if read_only { 0 } else { MOUNT_ATTR_RDONLY },
        propagation: 0,
        userns_fd: 0,
    };
    let path = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()).map_err(|_| nix::errno::Errno::EINVAL)?;
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: a NUL-terminated path, a struct of the size passed, no other pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::errno::Errno::result(rc).map(drop)
}

/// The mount table of a namespace, read by a forked child that enters it.
fn read_mounts(ns: &HeldNs) -> Result<Vec<Mount>> {
    let outcome = forked::probe("read the run's mount table", PROBE_TIMEOUT, |out| {
        // The host's /proc, opened before entering: a lab may have mounted another proc
        // (of another PID namespace, where this probe has no PID) over the run's /proc.
        let proc_dir = open("/proc", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        setns(ns.file().as_fd(), CloneFlags::CLONE_NEWNS)?;
        let fd = openat(Some(proc_dir), "self/mountinfo", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        // SAFETY: openat just returned this descriptor; the File owns it from here.
        let mut file = unsafe { File::from_raw_fd(fd) };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|_| nix::errno::Errno::EIO)?;
        out.write_all(&bytes).map_err(|_| nix::errno::Errno::EPIPE)
    })?;
    match outcome.status {
        Ok(()) => procfs::parse_mountinfo(&outcome.output),
        Err(failure) => Err(Error::Harness(format!("reading a run's mount table failed: {failure:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts(text: &str) -> Vec<Mount> {
        procfs::parse_mountinfo(text).expect("parses")
    }

    const BEFORE: &str = "\
100 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
101 100 0:5 / /proc rw shared:2 - proc proc rw
102 100 0:30 / /tmp rw shared:3 - tmpfs tmpfs rw
";

    #[test]
    fn a_second_identical_mount_is_a_change() {
        let now = format!("{BEFORE}140 102 0:30 / /tmp rw shared:3 - tmpfs tmpfs rw\n");
        let changes = MountChanges::between(&mounts(BEFORE), &mounts(&now));
        assert_eq!(changes.added.len(), 1);
        assert_eq!(changes.describe(), vec!["added mount 140: tmpfs on /tmp type tmpfs (rw)"]);
    }

    #[test]
    fn removed_remounted_and_made_private_mounts_are_changes() {
        let now = "\
100 1 254:0 / / rw,relatime - ext4 /dev/vda rw
102 100 0:30 / /tmp ro shared:3 - tmpfs tmpfs rw
";
        let changes = MountChanges::between(&mounts(BEFORE), &mounts(now));
        assert_eq!(changes.removed.iter().map(|m| m.id).collect::<Vec<_>>(), vec![101]);
        assert_eq!(changes.changed.iter().map(|(_, m)| m.id).collect::<Vec<_>>(), vec![100, 102]);
        assert_eq!(
            changes.describe(),
            vec![
                "removed mount 101: proc on /proc type proc (rw)",
                "changed mount 102: tmpfs on /tmp type tmpfs (ro) (was: tmpfs on /tmp (rw))",
                "changed the propagation of mount 100 on /: shared:1 before, private now (was a mount made private, \
                 or shared, outside a mount namespace of the lab's own?)",
            ]
        );
        assert!(!changes.is_empty());
        assert!(MountChanges::between(&mounts(BEFORE), &mounts(BEFORE)).is_empty());
        let resized = BEFORE.replace("tmpfs tmpfs rw\n", "tmpfs tmpfs rw,size=1024k\n");
        assert!(MountChanges::between(&mounts(BEFORE), &mounts(&resized)).is_empty(), "a filesystem's own options");
    }
}
