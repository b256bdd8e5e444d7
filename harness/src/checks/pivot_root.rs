//! Checks for lab pivot-root. The harness decides from outside: it reads the container's
//! mount table and namespace links through /proc, and it makes the syscalls that matter
//! itself, in forked probes: pivot_root in a private copy of the container's mount
//! namespace (so that a success changes nothing of the lab's), setns into the container's
//! mount and UTS namespaces (which puts the probe at the namespace's root, whatever the
//! lab's processes claim), the classic chroot escape from there and from a plain chroot,
//! and pidfd_getfd to take the descriptors the container's init holds and walk out
//! through them. A file the harness plants outside the rootfs is the sentinel: a way out
//! is real when it opens that very file (device and inode).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use labkit::protocol::pivot_root::*;
use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::{fstat, Mode};
use nix::unistd::{chdir, chroot, pivot_root};

use super::{errno_name, file_id, find_child_named, hostname, hostname_of, open_ns};
use crate::catalog::Observer;
use crate::error::{Error, Result};
use crate::facts::{Fact, Facts, Relation};
use crate::probe::forked::{self, ProbeFailure};
use crate::probe::procfs;
use crate::run::LabRun;
use crate::verdict::VerdictSpec;

/// What the harness's own pivot_root in a copy of the container's namespace did.
pub const PIVOTS: &str = "pivots";
/// What a probe says when it opened the planted sentinel itself.
pub const REACHED: &str = "reached the sentinel";

// ── facts, by stage ──────────────────────────────────────────────────────────────
const NAMESPACES: Fact<BTreeMap<String, Relation>> = Fact::new("shared.init_namespaces_vs_host");
const PID_INSIDE: Fact<i32> = Fact::new("shared.init_pid_inside");
const SHARED_INVOLVED: Fact<bool> = Fact::new("shared.mounts_pivot_root_involves_are_shared");
const SHARED_MOUNT_POINT: Fact<bool> = Fact::new("shared.new_root_is_a_mount_point");
const SHARED_PIVOT: Fact<String> = Fact::new("shared.pivot_root_by_the_harness");
const SHARED_ALONE: Fact<String> = Fact::new("shared.pivot_root_onto_a_bind_while_shared");
const PRIVATE_BIND: Fact<String> = Fact::new("shared.pivot_root_onto_a_bind_once_private");
const PLAIN_ESCAPE: Fact<String> = Fact::new("shared.chroot_escape_from_a_plain_chroot");

const PRIVATE_INVOLVED: Fact<bool> = Fact::new("private.mounts_pivot_root_involves_are_shared");
const PRIVATE_MOUNT_POINT: Fact<bool> = Fact::new("private.new_root_is_a_mount_point");
const PRIVATE_PIVOT: Fact<String> = Fact::new("private.pivot_root_by_the_harness");

const BOUND_MOUNT_POINT: Fact<bool> = Fact::new("bound.new_root_is_a_mount_point");
const BOUND_SAME_FILES: Fact<bool> = Fact::new("bound.mount_point_shows_the_rootfs");
const BOUND_PIVOT: Fact<String> = Fact::new("bound.pivot_root_by_the_harness");
const BOUND_HOST_CHANGES: Fact<Vec<String>> = Fact::new("bound.host_mount_changes");

const ROOT: Fact<Relation> = Fact::new("pivoted.namespace_root_vs_rootfs");
const MNT_NS: Fact<Relation> = Fact::new("pivoted.init_mnt_namespace_vs_host");
const INIT_ROOT: Fact<Relation> = Fact::new("pivoted.init_root_vs_rootfs");
const INIT_CWD: Fact<Relation> = Fact::new("pivoted.init_cwd_vs_its_root");
const MOUNTS: Fact<Vec<String>> = Fact::new("pivoted.namespace_mounts");
const INIT_MOUNTS: Fact<Vec<String>> = Fact::new("pivoted.mounts_seen_by_init");
const PROC_PID_NS: Fact<Relation> = Fact::new("pivoted.proc_pid_ns_vs_init");
const SENTINEL: Fact<String> = Fact::new("pivoted.open_sentinel_by_host_path");
const VIA_OLDROOT: Fact<String> = Fact::new("pivoted.open_sentinel_under_oldroot");
const ESCAPE_ROOT: Fact<Relation> = Fact::new("pivoted.chroot_escape_lands_vs_rootfs");
const ESCAPE_SENTINEL: Fact<String> = Fact::new("pivoted.chroot_escape_open_sentinel");
const LEAKED_FD: Fact<String> = Fact::new("pivoted.through_the_inits_directory_descriptors");
const HOSTNAME_INSIDE: Fact<String> = Fact::new("pivoted.hostname_inside");
const HOST_HOSTNAME: Fact<Relation> = Fact::new("pivoted.host_hostname_vs_before");
const HOST_CHANGES: Fact<Vec<String>> = Fact::new("pivoted.host_mount_changes");

const FDS_OUT: Fact<usize> = Fact::new("fds-closed.container_descriptors_leading_outside");
const FDS_PLACE_OUT: Fact<bool> = Fact::new("fds-closed.container_cwd_or_root_leads_outside");
const FDS_ROOT: Fact<Relation> = Fact::new("fds-closed.init_root_vs_rootfs");

const RUNC_ROOT: Fact<Relation> = Fact::new("runc-pivoted.namespace_root_vs_rootfs");
const RUNC_MNT_NS: Fact<Relation> = Fact::new("runc-pivoted.init_mnt_namespace_vs_host");
const RUNC_INIT_ROOT: Fact<Relation> = Fact::new("runc-pivoted.init_root_vs_rootfs");
const RUNC_CWD: Fact<Relation> = Fact::new("runc-pivoted.init_cwd_vs_its_root");
const RUNC_MOUNTS: Fact<Vec<String>> = Fact::new("runc-pivoted.namespace_mounts");
const RUNC_SENTINEL: Fact<String> = Fact::new("runc-pivoted.open_sentinel_by_host_path");
const RUNC_ESCAPE_ROOT: Fact<Relation> = Fact::new("runc-pivoted.chroot_escape_lands_vs_rootfs");
const RUNC_ESCAPE_SENTINEL: Fact<String> = Fact::new("runc-pivoted.chroot_escape_open_sentinel");
const RUNC_FDS_OUT: Fact<usize> = Fact::new("runc-pivoted.init_descriptors_leading_outside");
const RUNC_HOST_CHANGES: Fact<Vec<String>> = Fact::new("runc-pivoted.host_mount_changes");

const TMPFS_ROOT_DEVICE: Fact<Relation> = Fact::new("tmpfs-pivoted.root_device_vs_scratch_filesystem");
const TMPFS_HOLDS_COPY: Fact<bool> = Fact::new("tmpfs-pivoted.root_holds_busybox");
const TMPFS_MOUNTS: Fact<Vec<String>> = Fact::new("tmpfs-pivoted.namespace_mounts");
const TMPFS_SENTINEL: Fact<String> = Fact::new("tmpfs-pivoted.open_sentinel_by_host_path");
const TMPFS_VIA_OLDROOT: Fact<String> = Fact::new("tmpfs-pivoted.open_sentinel_under_oldroot");
const TMPFS_HOST_CHANGES: Fact<Vec<String>> = Fact::new("tmpfs-pivoted.host_mount_changes");

/// The mounts a pivoted container has: its root and its proc, nothing else.
fn only_root_and_proc(mounts: &[String]) -> bool {
    let points: Vec<&str> = mounts.iter().filter_map(|m| m.split(' ').next()).collect();
    points == ["/", "/proc"] && mounts.iter().any(|m| m == "/proc proc")
}

pub const VERDICTS: [VerdictSpec; 15] = [
    VerdictSpec {
        id: "own-namespaces",
        claim: "the container's init is PID 1 in namespaces of its own: mount, UTS, IPC, network and PID all differ from the host's",
        points: 2,
        region: Some("unshare-namespaces"),
        requires: &[],
        hint: "one unshare in the launcher, before it forks the init: CLONE_NEWPID takes effect for its children only",
        decide: |e| {
            let namespaces = e.get(NAMESPACES)?;
            Some(namespaces.len() == 5 && namespaces.values().all(|r| *r == Relation::Differs) && e.get(PID_INSIDE)? == 1)
        },
    },
    VerdictSpec {
        id: "hostname-tupperware",
        claim: "inside, the hostname is tupperware; the host's hostname is unchanged",
        points: 1,
        region: Some("unshare-namespaces"),
        requires: &[],
        hint: "the hostname belongs to the UTS namespace: the init can only name itself once it has one of its own",
        decide: |e| Some(e.get(HOSTNAME_INSIDE)? == HOSTNAME && e.get(HOST_HOSTNAME)? == Relation::Same),
    },
    VerdictSpec {
        id: "shared-refused",
        claim: "while the mounts involved are shared, pivot_root refuses with EINVAL, even onto a mount point; once they are private, the same pivot_root works",
        points: 0,
        region: None,
        requires: &[],
        hint: "at the first stage the container's mounts must still be shared, as the host's are, and its new root a plain directory",
        decide: |e| {
            Some(
                e.get(SHARED_INVOLVED)?
                    && !e.get(SHARED_MOUNT_POINT)?
                    && e.get(SHARED_PIVOT)? == "EINVAL"
                    && e.get(SHARED_ALONE)? == "EINVAL"
                    && e.get(PRIVATE_BIND)? == PIVOTS,
            )
        },
    },
    VerdictSpec {
        id: "private-not-mount-point",
        claim: "after MS_REC|MS_PRIVATE no mount pivot_root involves is shared, and pivot_root still refuses with EINVAL: the new root is not a mount point yet",
        points: 2,
        region: Some("make-private"),
        requires: &[],
        hint: "make \"/\" and every mount below it private (MS_REC|MS_PRIVATE), and mount nothing else in this step",
        decide: |e| {
            Some(!e.get(PRIVATE_INVOLVED)? && !e.get(PRIVATE_MOUNT_POINT)? && e.get(PRIVATE_PIVOT)? == "EINVAL")
        },
    },
    VerdictSpec {
        id: "host-untouched",
        claim: "the bind mount, the pivot and the lazy unmount stay in the container: the lab's host (the run's mount namespace) does not change",
        points: 1,
        region: Some("make-private"),
        requires: &[],
        hint: "a mount made while its parent is shared propagates to the host: make the container's mounts private first",
        decide: |e| {
            Some(
                e.get(BOUND_HOST_CHANGES)?.is_empty()
                    && e.get(HOST_CHANGES)?.is_empty()
                    && e.get(RUNC_HOST_CHANGES)?.is_empty(),
            )
        },
    },
    VerdictSpec {
        id: "bind-makes-mount-point",
        claim: "bind-mounting the new root onto itself makes it a mount point showing the same files, and pivot_root onto it works",
        points: 2,
        region: Some("bind-new-root"),
        requires: &["private-not-mount-point"],
        hint: "a bind mount whose source and target are both the new root: the same files, now a mount point",
        decide: |e| Some(e.get(BOUND_MOUNT_POINT)? && e.get(BOUND_SAME_FILES)? && e.get(BOUND_PIVOT)? == PIVOTS),
    },
    VerdictSpec {
        id: "root-is-rootfs",
        claim: "after pivot_root the root of the container's mount namespace (not the host's) is the rootfs, and so are the init's root and working directory",
        points: 2,
        region: Some("pivot"),
        requires: &[],
        hint: "pivot_root moves the namespace's root (chroot moves only the caller's); chdir(\"/\") after it",
        decide: |e| {
            Some(
                e.get(MNT_NS)? == Relation::Differs
                    && e.get(ROOT)? == Relation::Same
                    && e.get(INIT_ROOT)? == Relation::Same
                    && e.get(INIT_CWD)? == Relation::Same,
            )
        },
    },
    VerdictSpec {
        id: "only-root-and-proc",
        claim: "after the lazy unmount of the old root, the container's mount namespace holds only its root and its own proc",
        points: 2,
        region: Some("pivot"),
        requires: &[],
        hint: "umount2(\"/oldroot\", MNT_DETACH) takes the old root and every mount below it out of the namespace",
        decide: |e| Some(only_root_and_proc(&e.get(MOUNTS)?) && e.get(PROC_PID_NS)? == Relation::Same),
    },
    VerdictSpec {
        id: "sentinel-unreachable",
        claim: "a file planted outside the rootfs cannot be opened from inside the container, by its host path or under /oldroot",
        points: 2,
        region: Some("pivot"),
        requires: &[],
        hint: "the old root must be gone from the namespace, not only hidden: pivot_root, then the lazy unmount",
        decide: |e| Some(e.get(SENTINEL)? == "ENOENT" && e.get(VIA_OLDROOT)? == "ENOENT"),
    },
    VerdictSpec {
        id: "escape-stays-inside",
        claim: "the classic chroot escape (chroot into a subdirectory, cd .. 64 times, chroot .) run inside the container lands in its own root",
        points: 2,
        region: Some("pivot"),
        requires: &[],
        hint: "`..` stops only at the top of the namespace's mount tree: after a chroot alone that top is still the host's",
        decide: |e| Some(e.get(ESCAPE_ROOT)? == Relation::Same && e.get(ESCAPE_SENTINEL)? == "ENOENT"),
    },
    VerdictSpec {
        id: "escapes-plain-chroot",
        claim: "the same escape from a plain chroot, without pivot_root, reaches the host's files",
        points: 0,
        region: None,
        requires: &[],
        hint: "the harness tries it itself, on the rootfs in the lab's host: the rootfs must be there at the first stage",
        decide: |e| Some(e.get(PLAIN_ESCAPE)? == REACHED),
    },
    VerdictSpec {
        id: "open-fd-leads-out",
        claim: "a directory descriptor opened outside before the pivot and still open in the container leads out: the harness reads the sentinel through it",
        points: 0,
        region: None,
        requires: &[],
        hint: "the lab leaves its workdir open in the init on purpose, until the step that closes it",
        decide: |e| Some(e.get(LEAKED_FD)? == REACHED),
    },
    VerdictSpec {
        id: "no-fd-leads-out",
        claim: "before the exec, neither the init nor any process below it holds a descriptor that leads outside its root and survives the exec, or has its working directory or root outside it",
        points: 2,
        region: Some("close-fds"),
        requires: &["open-fd-leads-out"],
        hint: "every descriptor above 2 the init inherited must be closed (or close-on-exec), except its pipes to the lab; and the working directory stays inside the root",
        decide: |e| Some(e.get(FDS_OUT)? == 0 && !e.get(FDS_PLACE_OUT)? && e.get(FDS_ROOT)? == Relation::Same),
    },
    VerdictSpec {
        id: "runc-pivot-same",
        claim: "pivot_root(\".\", \".\") followed by umount2(\".\", MNT_DETACH), as runc does it, gives the same result: the rootfs as root, only root and proc mounted, no way to the sentinel, no descriptor of the old root left open",
        points: 2,
        region: Some("runc-pivot"),
        requires: &[],
        hint: "after pivot_root(\".\", \".\") the old root is stacked on top of the new one: fchdir to the old root's descriptor before unmounting \".\", then chdir(\"/\"); close both descriptors",
        decide: |e| {
            Some(
                e.get(RUNC_MNT_NS)? == Relation::Differs
                    && e.get(RUNC_ROOT)? == Relation::Same
                    && e.get(RUNC_INIT_ROOT)? == Relation::Same
                    && e.get(RUNC_CWD)? == Relation::Same
                    && only_root_and_proc(&e.get(RUNC_MOUNTS)?)
                    && e.get(RUNC_SENTINEL)? == "ENOENT"
                    && e.get(RUNC_ESCAPE_ROOT)? == Relation::Same
                    && e.get(RUNC_ESCAPE_SENTINEL)? == "ENOENT"
                    && e.get(RUNC_FDS_OUT)? == 0,
            )
        },
    },
    VerdictSpec {
        id: "tmpfs-root",
        claim: "with --tmpfs, the container's root is a tmpfs of its own holding the copied rootfs; the old root is gone and the sentinel unreachable",
        points: 2,
        region: Some("pivot"),
        requires: &[],
        hint: "the tmpfs is a mount point already: pivot_root onto it, then the lazy unmount of the old root (`cilab run pivot-root --variant tmpfs`)",
        decide: |e| {
            let mounts = e.get(TMPFS_MOUNTS)?;
            Some(
                e.get(TMPFS_ROOT_DEVICE)? == Relation::Differs
                    && e.get(TMPFS_HOLDS_COPY)?
                    && only_root_and_proc(&mounts)
                    && mounts.first().is_some_and(|m| m == "/ tmpfs")
                    && e.get(TMPFS_SENTINEL)? == "ENOENT"
                    && e.get(TMPFS_VIA_OLDROOT)? == "ENOENT"
                    && e.get(TMPFS_HOST_CHANGES)?.is_empty(),
            )
        },
    },
];

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const PLANTED: &str = "planted outside the rootfs by cilab before the run\n";
/// How many times the escape walks `..`: more than any path is deep.
const DOTDOTS: usize = 64;

pub fn prepare(scratch: &Path) -> Result<()> {
    let dir = scratch.join(SENTINEL_DIR);
    std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
    let sentinel = dir.join(SENTINEL_FILE);
    std::fs::write(&sentinel, PLANTED).map_err(Error::io("write", sentinel))
}

pub fn observer() -> Box<dyn Observer> {
    Box::new(PivotRoot::default())
}

#[derive(Default)]
struct PivotRoot {
    /// The rootfs directory (device, inode) as the lab first held: what "the rootfs" is.
    rootfs: Option<(u64, u64)>,
    /// The planted sentinel.
    sentinel: Option<(u64, u64)>,
    host_hostname: Option<String>,
    init: Option<i32>,
}

impl Observer for PivotRoot {
    fn observe(&mut self, stage: &str, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let rootfs = run.scratch().join(ROOTFS_DIR);
        match stage {
            SHARED => {
                self.rootfs = lstat_dir(&rootfs);
                self.sentinel = file_id(&self.sentinel_path(run));
                self.host_hostname = Some(hostname());
                let init = container_init(run, LAUNCHER_COMM, INIT_COMM)?;
                self.init = Some(init);
                self.shared(run, init, &rootfs, facts)
            }
            PRIVATE => {
                let init = self.init()?;
                let (shared, mount_point) = propagation(init, &rootfs)?;
                facts.record(PRIVATE_INVOLVED, shared);
                facts.record(PRIVATE_MOUNT_POINT, mount_point);
                facts.record(PRIVATE_PIVOT, pivot_in_copy(init, &rootfs, Copy::AsItIs)?);
                Ok(())
            }
            BOUND => {
                let init = self.init()?;
                let (_, mount_point) = propagation(init, &rootfs)?;
                facts.record(BOUND_MOUNT_POINT, mount_point);
                let through = PathBuf::from(format!("/proc/{init}/root{}", rootfs.display()));
                facts.record(BOUND_SAME_FILES, self.rootfs.is_some() && file_id(&through) == self.rootfs);
                facts.record(BOUND_PIVOT, pivot_in_copy(init, &rootfs, Copy::AsItIs)?);
                facts.record(BOUND_HOST_CHANGES, run.mount_ns().changes()?.describe());
                Ok(())
            }
            PIVOTED => self.pivoted(run, facts),
            FDS_CLOSED => {
                let init = self.init()?;
                // Right before the exec: a close-on-exec descriptor does not reach the shell.
                let fds = self.descriptors(run, init, true)?;
                facts.record(FDS_OUT, fds.leading_out);
                facts.record(FDS_PLACE_OUT, fds.place_leads_out);
                facts.record(FDS_ROOT, Relation::of(&file_id(Path::new(&format!("/proc/{init}/root"))), &self.rootfs));
                Ok(())
            }
            RUNC_PIVOTED => {
                let init = container_init(run, RUNC_LAUNCHER_COMM, RUNC_INIT_COMM)?;
                let view = self.view(run, init)?;
                let mnt_ns = run.namespace_of(init, "mnt")?;
                facts.record(RUNC_MNT_NS, Relation::of(&mnt_ns, &Some(run.host_ns("mnt")?)));
                facts.record(RUNC_ROOT, Relation::of(&view.root, &self.rootfs));
                facts.record(
                    RUNC_INIT_ROOT,
                    Relation::of(&file_id(Path::new(&format!("/proc/{init}/root"))), &self.rootfs),
                );
                facts.record(RUNC_CWD, cwd_vs_root(init));
                facts.record(RUNC_MOUNTS, view.mounts);
                facts.record(RUNC_SENTINEL, view.sentinel);
                facts.record(RUNC_ESCAPE_ROOT, Relation::of(&view.escape_root, &self.rootfs));
                facts.record(RUNC_ESCAPE_SENTINEL, view.escape_sentinel);
                // This init never execs: close-on-exec changes nothing for it.
                facts.record(RUNC_FDS_OUT, self.descriptors(run, init, false)?.leading_out);
                facts.record(RUNC_HOST_CHANGES, run.mount_ns().changes()?.describe());
                Ok(())
            }
            TMPFS_PIVOTED => {
                self.sentinel = file_id(&self.sentinel_path(run));
                let init = container_init(run, TMPFS_LAUNCHER_COMM, TMPFS_INIT_COMM)?;
                let view = self.view(run, init)?;
                let scratch_device = nix::sys::stat::stat(run.scratch()).ok().map(|st| st.st_dev);
                facts.record(TMPFS_ROOT_DEVICE, Relation::of(&view.root.map(|(dev, _)| dev), &scratch_device));
                facts.record(TMPFS_HOLDS_COPY, view.has_busybox);
                facts.record(TMPFS_MOUNTS, view.mounts);
                facts.record(TMPFS_SENTINEL, view.sentinel);
                facts.record(TMPFS_VIA_OLDROOT, view.via_oldroot);
                facts.record(TMPFS_HOST_CHANGES, run.mount_ns().changes()?.describe());
                Ok(())
            }
            other => Err(Error::Harness(format!("pivot-root has no stage `{other}`"))),
        }
    }
}

impl PivotRoot {
    fn init(&self) -> Result<i32> {
        self.init.ok_or_else(|| Error::Harness("the container's init was not found at an earlier stage".into()))
    }

    fn sentinel_path(&self, run: &LabRun) -> PathBuf {
        run.scratch().join(SENTINEL_DIR).join(SENTINEL_FILE)
    }

    fn shared(&self, run: &mut LabRun, init: i32, rootfs: &Path, facts: &mut Facts) -> Result<()> {
        let mut namespaces = BTreeMap::new();
        for kind in ["mnt", "uts", "ipc", "net", "pid"] {
            let theirs = run.namespace_of(init, kind)?;
            namespaces.insert(kind.to_string(), Relation::of(&theirs, &Some(run.host_ns(kind)?)));
        }
        facts.record(NAMESPACES, namespaces);
        facts.record(PID_INSIDE, procfs::read_status(init)?.inner_pid().unwrap_or_default());
        let (shared, mount_point) = propagation(init, rootfs)?;
        facts.record(SHARED_INVOLVED, shared);
        facts.record(SHARED_MOUNT_POINT, mount_point);
        facts.record(SHARED_PIVOT, pivot_in_copy(init, rootfs, Copy::AsItIs)?);
        facts.record(SHARED_ALONE, pivot_in_copy(init, rootfs, Copy::SharedBind)?);
        facts.record(PRIVATE_BIND, pivot_in_copy(init, rootfs, Copy::PrivateBind)?);
        facts.record(PLAIN_ESCAPE, self.plain_chroot_escape(run, rootfs)?);
        Ok(())
    }

    fn pivoted(&self, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let init = self.init()?;
        let view = self.view(run, init)?;
        // The namespace pivoted must still be the container's, not the host's.
        let mnt_ns = run.namespace_of(init, "mnt")?;
        facts.record(MNT_NS, Relation::of(&mnt_ns, &Some(run.host_ns("mnt")?)));
        facts.record(ROOT, Relation::of(&view.root, &self.rootfs));
        facts.record(INIT_ROOT, Relation::of(&file_id(Path::new(&format!("/proc/{init}/root"))), &self.rootfs));
        facts.record(INIT_CWD, cwd_vs_root(init));
        facts.record(MOUNTS, view.mounts);
        facts.record(INIT_MOUNTS, describe_mounts(&procfs::read_mountinfo(&init.to_string())?));
        let init_pid_ns = run.namespace_of(init, "pid")?;
        facts.record(PROC_PID_NS, Relation::of(&view.proc_pid_ns, &init_pid_ns.map(|n| (n.dev, n.ino))));
        facts.record(SENTINEL, view.sentinel);
        facts.record(VIA_OLDROOT, view.via_oldroot);
        facts.record(ESCAPE_ROOT, Relation::of(&view.escape_root, &self.rootfs));
        facts.record(ESCAPE_SENTINEL, view.escape_sentinel);
        let fds = self.descriptors(run, init, false)?;
        facts.record(
            LEAKED_FD,
            if fds.reached { REACHED.to_string() } else { "did not reach the sentinel".to_string() },
        );
        facts.record(HOSTNAME_INSIDE, hostname_of(init, PROBE_TIMEOUT)?);
        facts.record(HOST_HOSTNAME, Relation::of(&Some(hostname()), &self.host_hostname));
        facts.record(HOST_CHANGES, run.mount_ns().changes()?.describe());
        Ok(())
    }

    /// The container's mount namespace as a process that enters it sees it.
    fn view(&self, run: &LabRun, init: i32) -> Result<View> {
        let ns = open_ns(init, "mnt")?;
        let sentinel_path = self.sentinel_path(run);
        let sentinel_id = self.sentinel;
        let outcome = forked::probe("look around the container's mount namespace", PROBE_TIMEOUT, |out| {
            // The host's /proc, opened before entering: the container's proc lists only its own.
            let proc_dir = open("/proc", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
            // setns into a mount namespace puts the caller at the namespace's root.
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNS)?;
            say_id(out, "root", Path::new("/"));
            say_id(out, "proc-pid-ns", Path::new("/proc/1/ns/pid"));
            say_id(out, "busybox", Path::new("/bin/busybox"));
            let fd = openat(Some(proc_dir), "self/mountinfo", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
            // SAFETY: openat just returned this descriptor; the File owns it from here.
            let mut file = unsafe { File::from_raw_fd(fd) };
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut file, &mut text);
            for line in text.lines() {
                forked::say(out, &format!("mountinfo {line}"));
            }
            forked::say(out, &format!("sentinel {}", open_sentinel(None, &sentinel_path, sentinel_id)));
            let under_oldroot =
                Path::new("/").join(PUT_OLD).join(sentinel_path.strip_prefix("/").unwrap_or(&sentinel_path));
            forked::say(out, &format!("via-oldroot {}", open_sentinel(None, &under_oldroot, sentinel_id)));
            match escape() {
                Ok(()) => {
                    say_id(out, "escape-root", Path::new("/"));
                    forked::say(out, &format!("escape-sentinel {}", open_sentinel(None, &sentinel_path, sentinel_id)));
                }
                Err(errno) => forked::say(out, &format!("escape-sentinel escape failed: {}", errno_name(errno))),
            }
            Ok(())
        })?;
        if let Err(failure) = outcome.status {
            return Err(Error::Harness(format!("the probe in the container's mount namespace failed: {failure:?}")));
        }
        let said =
            |key: &str| outcome.output.lines().find_map(|l| l.strip_prefix(&format!("{key} "))).map(str::to_string);
        let id = |key: &str| said(key).and_then(|v| parse_id(&v));
        let mountinfo: String =
            outcome.output.lines().filter_map(|l| l.strip_prefix("mountinfo ")).map(|l| format!("{l}\n")).collect();
        Ok(View {
            root: id("root"),
            has_busybox: id("busybox").is_some(),
            proc_pid_ns: id("proc-pid-ns"),
            mounts: describe_mounts(&procfs::parse_mountinfo(&mountinfo)?),
            sentinel: said("sentinel").unwrap_or_default(),
            via_oldroot: said("via-oldroot").unwrap_or_default(),
            escape_root: id("escape-root"),
            escape_sentinel: said("escape-sentinel").unwrap_or_default(),
        })
    }

    /// The classic escape from a plain chroot into the rootfs, in the lab's host.
    fn plain_chroot_escape(&self, run: &LabRun, rootfs: &Path) -> Result<String> {
        let door = run.door()?;
        let sentinel_path = self.sentinel_path(run);
        let sentinel_id = self.sentinel;
        let outcome = forked::probe("escape from a plain chroot", PROBE_TIMEOUT, |out| {
            door.enter()?;
            chroot(rootfs)?;
            chdir("/")?;
            escape()?;
            forked::say(out, &open_sentinel(None, &sentinel_path, sentinel_id));
            Ok(())
        })?;
        Ok(match outcome.status {
            Ok(()) => outcome.output.trim().to_string(),
            Err(ProbeFailure::Errno(errno)) => format!("escape failed: {}", errno_name(errno)),
            Err(ProbeFailure::Signaled(signal)) => format!("probe killed by {}", signal.as_str()),
        })
    }

    /// Takes each descriptor of the init and of every process below it (pidfd_getfd) in a
    /// probe inside the container's mount namespace, and walks `..` up from each directory:
    /// one whose top is not the container's root leads outside; from that top the probe
    /// tries the sentinel. Their working directories and roots are walked the same way.
    /// With `skip_cloexec`, the init's descriptors that the kernel closes at its next
    /// execve (O_CLOEXEC in fdinfo) are not counted.
    fn descriptors(&self, run: &LabRun, init: i32, skip_cloexec: bool) -> Result<Descriptors> {
        let ns = open_ns(init, "mnt")?;
        let mut processes = Vec::new();
        for pid in container_processes(init) {
            // A process that is gone by now holds nothing; the init must be there.
            let Ok(pidfd) = labkit::child::pidfd_open(nix::unistd::Pid::from_raw(pid)) else {
                if pid == init {
                    return Err(Error::Harness(format!("pidfd_open({init}): the container's init is gone")));
                }
                continue;
            };
            let numbers: Vec<RawFd> = procfs::pid_entries(Path::new(&format!("/proc/{pid}/fd")))
                .unwrap_or_default()
                .into_iter()
                .filter(|number| !(skip_cloexec && pid == init && close_on_exec(pid, *number)))
                .collect();
            let mut places = Vec::new();
            for which in ["cwd", "root"] {
                let path = format!("/proc/{pid}/{which}");
                let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                match open(path.as_str(), flags, Mode::empty()) {
                    // SAFETY: open just returned this descriptor; nothing else owns it.
                    Ok(fd) => places.push(unsafe { OwnedFd::from_raw_fd(fd) }),
                    // Not seen is not inside: the init's must be seen.
                    Err(errno) if pid == init => return Err(Error::sys("open", &path)(errno)),
                    Err(_) => {}
                }
            }
            processes.push((pidfd, numbers, places));
        }
        let scratch_relative = run.scratch().strip_prefix("/").unwrap_or(run.scratch()).to_path_buf();
        let sentinel_id = self.sentinel;
        let outcome = forked::probe("walk out through the container's descriptors", PROBE_TIMEOUT, |out| {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNS)?;
            let root = nix::sys::stat::stat("/").map(|st| (st.st_dev, st.st_ino))?;
            let top_of = |fd: OwnedFd| -> nix::Result<Option<OwnedFd>> {
                let top = walk_up(fd)?;
                let top_id = fstat(top.as_raw_fd()).map(|st| (st.st_dev, st.st_ino))?;
                Ok((top_id != root).then_some(top))
            };
            for (pidfd, numbers, places) in &processes {
                for place in places {
                    if top_of(place.try_clone().map_err(|_| Errno::EBADF)?)?.is_some() {
                        forked::say(out, "place-leads-out");
                    }
                }
                for number in numbers {
                    let Ok(fd) = pidfd_getfd(pidfd.as_raw_fd(), *number) else { continue };
                    if fstat(fd.as_raw_fd()).map_or(true, |st| st.st_mode & libc::S_IFMT != libc::S_IFDIR) {
                        continue;
                    }
                    let Some(top) = top_of(fd)? else { continue };
                    forked::say(out, "leads-out");
                    let in_scratch = Path::new(SENTINEL_DIR).join(SENTINEL_FILE);
                    let from_host_root = scratch_relative.join(&in_scratch);
                    for relative in [in_scratch, from_host_root] {
                        if open_sentinel(Some(top.as_raw_fd()), &relative, sentinel_id) == REACHED {
                            forked::say(out, "reached");
                        }
                    }
                }
            }
            Ok(())
        })?;
        if let Err(failure) = outcome.status {
            return Err(Error::Harness(format!("the probe of the container's descriptors failed: {failure:?}")));
        }
        Ok(Descriptors {
            leading_out: outcome.output.lines().filter(|l| *l == "leads-out").count(),
            place_leads_out: outcome.output.lines().any(|l| l == "place-leads-out"),
            reached: outcome.output.lines().any(|l| l == "reached"),
        })
    }
}

/// The init and every process below it.
fn container_processes(init: i32) -> Vec<i32> {
    let mut found = vec![init];
    let mut next = 0;
    while next < found.len() {
        let kids = procfs::children(found[next]);
        found.extend(kids.into_iter().filter(|kid| !found.contains(kid)).collect::<Vec<_>>());
        next += 1;
    }
    found
}

/// What a probe in the container's mount namespace saw.
struct View {
    root: Option<(u64, u64)>,
    has_busybox: bool,
    proc_pid_ns: Option<(u64, u64)>,
    mounts: Vec<String>,
    sentinel: String,
    via_oldroot: String,
    escape_root: Option<(u64, u64)>,
    escape_sentinel: String,
}

struct Descriptors {
    leading_out: usize,
    place_leads_out: bool,
    reached: bool,
}

/// The container's init: the one child named `init_comm` of the lab's child `launcher_comm`.
fn container_init(run: &mut LabRun, launcher_comm: &str, init_comm: &str) -> Result<i32> {
    let launcher = find_child_named(run, launcher_comm)?;
    let found: Vec<i32> =
        procfs::children(launcher).into_iter().filter(|pid| procfs::comm(*pid).as_deref() == Some(init_comm)).collect();
    match found.as_slice() {
        [pid] => {
            run.track_pid(*pid);
            Ok(*pid)
        }
        _ => Err(Error::Lab {
            lab: run.lab().to_string(),
            message: format!("{launcher_comm} has {} children named `{init_comm}`; expected one", found.len()),
        }),
    }
}

fn lstat_dir(path: &Path) -> Option<(u64, u64)> {
    nix::sys::stat::lstat(path)
        .ok()
        .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .map(|st| (st.st_dev, st.st_ino))
}

/// (mount point, type) of each mount, as "point type".
fn describe_mounts(mounts: &[procfs::Mount]) -> Vec<String> {
    mounts.iter().map(|m| format!("{} {}", m.mount_point, m.fs_type)).collect()
}

/// In the init's own mount table: whether a mount pivot_root involves is shared (the
/// root's, and the one the new root lies on), and whether the new root is a mount point.
fn propagation(init: i32, new_root: &Path) -> Result<(bool, bool)> {
    let mounts = procfs::read_mountinfo(&init.to_string())?;
    let root = mounts.iter().rev().find(|m| m.mount_point == "/");
    let holding = mounts
        .iter()
        .rev()
        .filter(|m| Path::new(&m.mount_point) != new_root && new_root.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.len());
    let shared = root.is_some_and(procfs::Mount::is_shared) || holding.is_some_and(procfs::Mount::is_shared);
    let mount_point = mounts.iter().any(|m| Path::new(&m.mount_point) == new_root);
    Ok((shared, mount_point))
}

/// The copy of the container's mount namespace a probe tries pivot_root in.
#[derive(Clone, Copy)]
enum Copy {
    /// As the lab made it.
    AsItIs,
    /// Its mounts made slaves of the container's and shared among themselves (so that
    /// nothing propagates out), then the new root bound onto itself: shared alone.
    SharedBind,
    /// Its mounts made private, then the bind: the fix.
    PrivateBind,
}

/// A forked probe enters the init's mount namespace, unshares a copy of it of its own
/// (a pivot that works changes only that copy), prepares it as `copy` says, and tries
/// `pivot_root(".", "oldroot")` from the new root. "pivots", or the errno.
fn pivot_in_copy(init: i32, new_root: &Path, copy: Copy) -> Result<String> {
    let ns = open_ns(init, "mnt")?;
    let outcome = forked::probe("pivot_root in a copy of the container's mount namespace", PROBE_TIMEOUT, |_| {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNS)?;
        unshare(CloneFlags::CLONE_NEWNS)?;
        let propagate = |flags: MsFlags| mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | flags, None::<&str>);
        let bind = || mount(Some(new_root), new_root, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>);
        match copy {
            Copy::AsItIs => {}
            Copy::SharedBind => {
                propagate(MsFlags::MS_SLAVE)?;
                propagate(MsFlags::MS_SHARED)?;
                bind()?;
            }
            Copy::PrivateBind => {
                propagate(MsFlags::MS_PRIVATE)?;
                bind()?;
            }
        }
        chdir(new_root)?;
        pivot_root(".", PUT_OLD)
    })?;
    Ok(match outcome.status {
        Ok(()) => PIVOTS.to_string(),
        Err(ProbeFailure::Errno(errno)) => errno_name(errno),
        Err(ProbeFailure::Signaled(signal)) => format!("probe killed by {}", signal.as_str()),
    })
}

/// The classic chroot escape, from where the process is: chroot into a subdirectory
/// (the working directory is left outside it), `..` many times, chroot there.
fn escape() -> nix::Result<()> {
    chroot("tmp")?;
    for _ in 0..DOTDOTS {
        chdir("..")?;
    }
    chroot(".")
}

/// Opens `path` (relative to `dir` if given) without following a link at its end or
/// blocking: REACHED if it is the planted sentinel, else what happened.
fn open_sentinel(dir: Option<RawFd>, path: &Path, sentinel: Option<(u64, u64)>) -> String {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    match openat(dir, path, flags, Mode::empty()) {
        Ok(fd) => {
            let id = fstat(fd).ok().map(|st| (st.st_dev, st.st_ino));
            let _ = nix::unistd::close(fd);
            if id.is_some() && id == sentinel {
                REACHED.to_string()
            } else {
                "opened another file".to_string()
            }
        }
        Err(errno) => errno_name(errno),
    }
}

fn say_id(out: &mut File, key: &str, path: &Path) {
    if let Ok(st) = nix::sys::stat::stat(path) {
        forked::say(out, &format!("{key} {} {}", st.st_dev, st.st_ino));
    }
}

fn parse_id(text: &str) -> Option<(u64, u64)> {
    let (dev, ino) = text.split_once(' ')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Walks `..` from a directory until it stops moving: the top of what it can reach.
fn walk_up(start: OwnedFd) -> nix::Result<OwnedFd> {
    let mut at = start;
    for _ in 0..4096 {
        let here = fstat(at.as_raw_fd()).map(|st| (st.st_dev, st.st_ino))?;
        let up =
            openat(Some(at.as_raw_fd()), "..", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        // SAFETY: openat just returned this descriptor; nothing else owns it.
        let up = unsafe { OwnedFd::from_raw_fd(up) };
        if fstat(up.as_raw_fd()).map(|st| (st.st_dev, st.st_ino))? == here {
            return Ok(at);
        }
        at = up;
    }
    Err(Errno::ELOOP)
}

/// A copy of descriptor `number` of the process behind `pidfd`. nix 0.29 has no wrapper
/// for pidfd_getfd(2) (Linux 5.6): the raw syscall.
fn pidfd_getfd(pidfd: RawFd, number: RawFd) -> nix::Result<OwnedFd> {
    // SAFETY: a pidfd, a descriptor number and no flags; the kernel returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, number, 0) };
    let fd = RawFd::try_from(Errno::result(fd)?).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just made this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether descriptor `number` of `pid` is close-on-exec (the `flags` line of its fdinfo).
fn close_on_exec(pid: i32, number: RawFd) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{number}"))
        .ok()
        .and_then(|text| {
            let flags = text.lines().find_map(|l| l.strip_prefix("flags:"))?.trim().to_string();
            i32::from_str_radix(&flags, 8).ok()
        })
        .is_some_and(|flags| flags & libc::O_CLOEXEC != 0)
}

/// Whether the process's working directory is its root.
fn cwd_vs_root(pid: i32) -> Relation {
    let root = file_id(Path::new(&format!("/proc/{pid}/root")));
    let cwd = file_id(Path::new(&format!("/proc/{pid}/cwd")));
    if root.is_none() {
        return Relation::Differs;
    }
    Relation::of(&cwd, &root)
}
