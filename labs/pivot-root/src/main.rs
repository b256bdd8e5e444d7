//! Lab pivot-root: give a container a root of its own with pivot_root(2), so that the old
//! root is gone from its mount namespace, not only out of sight. Read labs/pivot-root/README.md.
//!
//! The processes and files this lab makes:
//!
//! ```text
//! lab-pivot-root ── pivot-launch (unshares the namespaces) ── pivot-init (PID 1: pivots, execs sh)
//!                └─ runc-launch ── runc-init (PID 1: pivot_root(".", "."), as runc does)
//!    (--tmpfs:)  └─ tmpfs-launch ── tmpfs-init (PID 1: pivots onto a tmpfs copy of the rootfs)
//!
//! <workdir>/rootfs/         the new root (busybox), with rootfs/oldroot for the old one
//! <workdir>/rootfs-tmpfs/   (--tmpfs) where the tmpfs copy of the rootfs is mounted
//! <workdir>/outside/        a sentinel file that the container must not reach
//! ```

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use labkit::protocol::pivot_root::*;
use labkit::protocol::PANIC_EXIT;
use labkit::{child, cleanup, ns_link, rootfs, Lab, LabArgs, LabError, Mode, Voice};
use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode as FileMode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, chroot, execv, fchdir, getpid, pivot_root, sethostname, Pid};
use serde_json::json;

/// Give a container a root of its own with pivot_root, and check that the old root is
/// gone. Run it as root, in a VM: `sudo target/debug/lab-pivot-root --step`.
#[derive(Parser)]
#[command(name = "lab-pivot-root", version)]
struct Cli {
    #[command(flatten)]
    lab: LabArgs,
    /// Copy the rootfs into a tmpfs and pivot onto that (what the seed did with cpio).
    #[arg(long = "tmpfs")]
    tmpfs: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    labkit::main("lab-pivot-root", include_str!("main.rs"), || run(&cli.lab, cli.tmpfs))
}

/// How a container's init gets into its new root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// `pivot_root . oldroot`, then `umount -l /oldroot`.
    Classic,
    /// `pivot_root(".", ".")`, then `umount2(".", MNT_DETACH)`, as runc does.
    Runc,
    /// Classic, onto a tmpfs holding a copy of the rootfs.
    Tmpfs,
}

/// Commands the lab sends to a container's init, one byte each.
const MAKE_PRIVATE: u8 = b'p';
const BIND: u8 = b'b';
const COPY_TO_TMPFS: u8 = b't';
const PIVOT: u8 = b'v';
const CLOSE_FDS: u8 = b'c';

/// The namespace kinds the container must not share with the lab (pid is checked as PID 1).
const OWN_KINDS: [&str; 4] = ["mnt", "uts", "ipc", "net"];

/// What every process of the lab needs to know (copied into each child).
#[derive(Debug, Clone)]
struct Setup {
    mode: Mode,
    workdir: PathBuf,
    rootfs: PathBuf,
    /// The lab's own namespaces, as (device, inode): the container's must differ before it
    /// touches its hostname or its mounts.
    host: Vec<(&'static str, Option<(u64, u64)>)>,
}

fn run(args: &LabArgs, tmpfs: bool) -> Result<()> {
    labkit::require_root("lab-pivot-root", "unshare(2), mount(2) and pivot_root(2)")?;
    let mut lab = Lab::new(args, "Lab pivot-root: a root of the container's own", if tmpfs { 3 } else { 6 });
    let workdir = labkit::Workdir::open(args, "pivot-root")?;
    let busybox = rootfs::find_static_busybox()?;
    let root = workdir.path().join(ROOTFS_DIR);
    if root.exists() {
        anyhow::bail!("{} already exists (left by an earlier run?): remove it and run again", root.display());
    }
    labkit::create_searchable_dir(&root)?;
    cleanup::track_dir(&root);
    rootfs::build_busybox_rootfs(&root, &busybox)?;
    let put_old = root.join(PUT_OLD);
    std::fs::create_dir(&put_old).map_err(LabError::io("create directory", &put_old))?;
    let sentinel_dir = workdir.path().join(SENTINEL_DIR);
    if !sentinel_dir.join(SENTINEL_FILE).exists() {
        // By hand there is no harness to plant it, so the lab does.
        std::fs::create_dir_all(&sentinel_dir).map_err(LabError::io("create directory", &sentinel_dir))?;
        let sentinel = sentinel_dir.join(SENTINEL_FILE);
        std::fs::write(&sentinel, "outside the container\n").map_err(LabError::io("write", &sentinel))?;
        cleanup::track_dir(&sentinel_dir);
    }
    let setup = Setup {
        mode: lab.mode(),
        workdir: workdir.path().to_path_buf(),
        rootfs: root,
        host: OWN_KINDS.iter().map(|kind| (*kind, ns_identity("self", kind))).collect(),
    };
    if tmpfs {
        tmpfs_variant(&mut lab, &setup)?;
    } else {
        classic_and_runc(&mut lab, &setup)?;
    }
    cleanup::remove_made_dirs()?;
    lab.done("Done: the lab removed the rootfs and its workdir. Now answer the questions on the lab sheet.");
    Ok(())
}

fn classic_and_runc(lab: &mut Lab, setup: &Setup) -> Result<()> {
    // ── Step 1 ───────────────────────────────────────────────────────────────
    lab.step(
        "Make the container's namespaces and name it tupperware",
        "in pivot-launch: unshare(CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET|CLONE_NEWPID); fork; in pivot-init: sethostname",
        "unshare --mount --uts --ipc --net --pid --fork --propagation unchanged sh; hostname tupperware",
    );
    // A directory opened before the pivot and not closed: what a careless runtime leaks.
    let outside = open(&setup.workdir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, FileMode::empty())
        .map_err(LabError::sys("open", setup.workdir.display()))?;
    let container = Container::start(lab, setup, Method::Classic, Some(outside));
    // The lab keeps no copy: only the container holds it now.
    let _ = nix::unistd::close(outside);
    let mut container = container?;
    let init = container.init;
    lab.saw(&format!("pivot-init is PID {init} on the host; {}", compare_namespaces(init)));
    lab.why("while the mounts are shared with the host, pivot_root refuses with EINVAL: moving the root would propagate to the host. (Where / was private already, the refusal is the next step's.)");
    lab.hold(SHARED, json!({ "init": init.as_raw(), "leaked_fd": outside }))?;

    // ── Step 2 ───────────────────────────────────────────────────────────────
    lab.step(
        "Make every mount of the container's mount namespace private",
        "mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE, NULL)",
        "mount --make-rprivate /",
    );
    container.command(
        MAKE_PRIVATE,
        "making its mounts private",
        "did make_private fail (its error would be above)?",
    )?;
    lab.why("the mounts are private now, yet pivot_root still refuses: the new root must be a mount point, and a plain directory is not (EINVAL; EBUSY instead when that directory lies on the mount of / itself, as /tmp often does).");
    lab.hold(PRIVATE, json!({ "init": init.as_raw() }))?;

    // ── Step 3 ───────────────────────────────────────────────────────────────
    lab.step(
        "Bind-mount the new root onto itself: now it is a mount point",
        "mount(rootfs, rootfs, NULL, MS_BIND|MS_REC, NULL)",
        "mount --bind rootfs rootfs",
    );
    container.command(
        BIND,
        "bind-mounting the new root",
        "did bind_new_root fail, or are the mounts still shared (its error would be above)?",
    )?;
    lab.saw(&format!("mounts under the rootfs in my own mount table: {}", mounts_under("self", &setup.rootfs)));
    lab.hold(BOUND, json!({ "init": init.as_raw() }))?;

    // ── Step 4 ───────────────────────────────────────────────────────────────
    lab.step(
        "pivot_root into the new root, mount proc, and unmount the old root lazily",
        "chdir(rootfs); pivot_root(\".\", \"oldroot\"); chdir(\"/\"); umount2(\"/oldroot\", MNT_DETACH); mount(\"proc\", \"/proc\", \"proc\")",
        "cd rootfs && pivot_root . oldroot && cd / && umount -l /oldroot && mount -t proc proc /proc",
    );
    container.command(PIVOT, "pivoting", "did pivot_into fail (its error would be above)?")?;
    lab.saw(&format!("on the host, /proc/{init}/root is the rootfs directory: {}", same_dir(init, &setup.rootfs)));
    lab.saw(&format!(
        "its mount table has {} mounts; mine has {}",
        count_mounts(&init.to_string()),
        count_mounts("self")
    ));
    lab.why("after the lazy unmount the old root is no longer in the container's mount namespace: no path leads there, `..` included. Only a descriptor opened before can still reach it.");
    lab.hold(PIVOTED, json!({ "init": init.as_raw() }))?;

    // ── Step 5 ───────────────────────────────────────────────────────────────
    lab.step(
        "Close every descriptor that leads outside, then exec the container's shell",
        "close(fd) for each inherited descriptor; execve(\"/bin/sh\")",
        "exec chroot / sh   (runc closes every descriptor above 2 before it execs)",
    );
    container.command(
        CLOSE_FDS,
        "closing its descriptors",
        "did close_inherited_fds fail (its error would be above)?",
    )?;
    lab.hold(FDS_CLOSED, json!({ "init": init.as_raw() }))?;
    container.finish("running its shell")?;

    // ── Step 6 ───────────────────────────────────────────────────────────────
    lab.step(
        "A second container, pivoted the way runc does it: no oldroot directory",
        "fchdir(new_root); pivot_root(\".\", \".\"); fchdir(old_root); umount2(\".\", MNT_DETACH); chdir(\"/\")",
        "cd rootfs && pivot_root . . && umount -l . && cd /",
    );
    let mut runc = Container::start(lab, setup, Method::Runc, None)?;
    runc.command(MAKE_PRIVATE, "making its mounts private", "did make_private fail (its error would be above)?")?;
    runc.command(BIND, "bind-mounting the new root", "did bind_new_root fail (its error would be above)?")?;
    runc.command(PIVOT, "pivoting like runc", "did pivot_like_runc fail (its error would be above)?")?;
    let runc_init = runc.init;
    lab.saw(&format!(
        "on the host, /proc/{runc_init}/root is the rootfs directory: {}; its mount table has {} mounts",
        same_dir(runc_init, &setup.rootfs),
        count_mounts(&runc_init.to_string())
    ));
    lab.why("pivot_root(\".\", \".\") stacks the old root on top of the new one, at the same place; unmounting \".\" takes the top one away: the old root.");
    lab.hold(RUNC_PIVOTED, json!({ "init": runc_init.as_raw() }))?;
    runc.finish("leaving")?;
    Ok(())
}

fn tmpfs_variant(lab: &mut Lab, setup: &Setup) -> Result<()> {
    let target = setup.workdir.join(TMPFS_ROOT_DIR);
    labkit::create_searchable_dir(&target)?;
    cleanup::track_dir(&target);
    // ── Step 1 ───────────────────────────────────────────────────────────────
    lab.step(
        "Make the container's namespaces, with its mounts private",
        "unshare(CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET|CLONE_NEWPID); fork; mount(\"/\", MS_REC|MS_PRIVATE)",
        "unshare --mount --uts --ipc --net --pid --fork --propagation private sh",
    );
    let mut container = Container::start(lab, setup, Method::Tmpfs, None)?;
    container.command(
        MAKE_PRIVATE,
        "making its mounts private",
        "did make_private fail (its error would be above)?",
    )?;

    // ── Step 2 ───────────────────────────────────────────────────────────────
    lab.step(
        "Copy the rootfs into a tmpfs: the tmpfs is a mount point already",
        "mount(\"tmpfs\", rootfs-tmpfs, \"tmpfs\"); copy every file, link and directory",
        "mount -t tmpfs tmpfs rootfs-tmpfs && (cd rootfs && find . | cpio -pdm ../rootfs-tmpfs)",
    );
    container.command(
        COPY_TO_TMPFS,
        "copying the rootfs into a tmpfs",
        "did the copy fail (its error would be above)?",
    )?;

    // ── Step 3 ───────────────────────────────────────────────────────────────
    lab.step(
        "pivot_root onto the tmpfs, mount proc, unmount the old root",
        "chdir(rootfs-tmpfs); pivot_root(\".\", \"oldroot\"); umount2(\"/oldroot\", MNT_DETACH); mount(\"proc\")",
        "cd rootfs-tmpfs && pivot_root . oldroot && umount -l /oldroot && mount -t proc proc /proc",
    );
    container.command(PIVOT, "pivoting onto the tmpfs", "did pivot_into fail (its error would be above)?")?;
    let init = container.init;
    lab.saw(&format!("its mount table: {}", describe_mounts(&init.to_string())));
    lab.why("the container's root is a tmpfs of its own: nothing it writes there reaches the rootfs on disk, and it goes away with the mount namespace.");
    lab.hold(TMPFS_PIVOTED, json!({ "init": init.as_raw() }))?;
    container.finish("running its shell")?;
    Ok(())
}

/// One container: its launcher (the lab's child, the runtime) and its init (PID 1 inside).
struct Container {
    launcher: Pid,
    init: Pid,
    end: child::LabEnd,
}

impl Container {
    /// Forks the launcher, which unshares the namespaces and forks the init; returns once
    /// the init has said ready (its namespaces made, its hostname set).
    fn start(lab: &Lab, setup: &Setup, method: Method, leaked: Option<RawFd>) -> Result<Self> {
        let (launcher_comm, init_comm) = match method {
            Method::Classic => (LAUNCHER_COMM, INIT_COMM),
            Method::Runc => (RUNC_LAUNCHER_COMM, RUNC_INIT_COMM),
            Method::Tmpfs => (TMPFS_LAUNCHER_COMM, TMPFS_INIT_COMM),
        };
        let link = child::Link::new()?;
        let voice = lab.voice();
        let for_child = setup.clone();
        let launcher = child::spawn(launcher_comm, move || {
            launch(voice, &for_child, method, init_comm, link, leaked)
                .unwrap_or_else(|error| failed(voice, launcher_comm, &error))
        })?;
        let mut end = link.lab_side(launcher)?;
        end.wait_ready("making the container", "did enter_namespaces fail (its error would be above)?")?;
        let init = children_of(launcher)
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{launcher_comm} (PID {launcher}) has no child: where is {init_comm}?"))?;
        Ok(Container { launcher, init, end })
    }

    fn command(&mut self, command: u8, doing: &str, likely: &str) -> Result<()> {
        self.end.send(command)?;
        self.end.wait_ready(doing, likely)?;
        Ok(())
    }

    /// Lets the init go on to its end (exec the shell, or exit) and waits for the launcher.
    fn finish(self, doing: &str) -> Result<()> {
        self.end.release();
        match child::wait(self.launcher, doing)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            other => Err(anyhow!("the container's launcher ended badly while {doing}: {other:?}")),
        }
    }
}

/// The launcher: the runtime's part. It makes the namespaces, forks the init into them,
/// and waits for it.
fn launch(
    voice: Voice,
    setup: &Setup,
    method: Method,
    init_comm: &'static str,
    link: child::Link,
    leaked: Option<RawFd>,
) -> Result<i32> {
    enter_namespaces()?;
    let for_init = setup.clone();
    let init =
        child::spawn(init_comm, move || match container_init(voice, &for_init, method, link.child_side(), leaked) {
            Ok(()) => 0,
            Err(error) => failed(voice, init_comm, &error),
        })?;
    // The launcher keeps nothing of the container's: its copies of the pipes and of the
    // leaked descriptor go, so that only the init holds them.
    drop(link.child_side());
    if let Some(fd) = leaked {
        let _ = nix::unistd::close(fd);
    }
    // The init lives as long as the lab holds it: no deadline here (the lab has its own).
    let status = loop {
        match waitpid(init, None) {
            Err(Errno::EINTR) => continue,
            other => break other.map_err(LabError::sys("waitpid", init))?,
        }
    };
    cleanup::forget_child(init);
    Ok(match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, signal, _) => {
            voice.inside(&format!("{init_comm} was killed by {}", signal.as_str()));
            1
        }
        _ => 1,
    })
}

/// In the launcher: new mount, UTS, IPC and network namespaces for itself, and a new PID
/// namespace for the children it forks next (the init).
fn enter_namespaces() -> Result<()> {
    // STUDENT: begin unshare-namespaces
    // Hint: one unshare(2) with a flag for each namespace the seed names: mount, UTS, IPC,
    // network and PID. Which of them moves the caller, and which only its children?
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWPID,
    )
    .map_err(LabError::sys("unshare", "CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET|CLONE_NEWPID"))?;
    Ok(())
    // STUDENT: end unshare-namespaces
}

/// The container's init, PID 1 of its namespace: each command of the lab is one step.
fn container_init(
    voice: Voice,
    setup: &Setup,
    method: Method,
    mut link: child::ChildEnd,
    leaked: Option<RawFd>,
) -> Result<()> {
    refuse_host_namespaces(setup)?;
    sethostname(HOSTNAME).map_err(LabError::sys("sethostname", HOSTNAME))?;
    let name = nix::sys::utsname::uname().map(|u| u.nodename().to_string_lossy().into_owned()).unwrap_or_default();
    voice.inside(&format!("getpid() = {}; hostname -> {name}", getpid()));
    let new_root = match method {
        Method::Tmpfs => setup.workdir.join(TMPFS_ROOT_DIR),
        Method::Classic | Method::Runc => setup.rootfs.clone(),
    };
    if method == Method::Classic {
        try_pivot(voice, &new_root);
    }
    link.ready();
    while let Some(command) = link.next_command() {
        match command {
            MAKE_PRIVATE => {
                make_private()?;
                if method == Method::Classic {
                    try_pivot(voice, &new_root);
                }
            }
            BIND => {
                refuse_shared_parent(&new_root)?;
                bind_new_root(&new_root)?;
            }
            COPY_TO_TMPFS => {
                refuse_shared_parent(&new_root)?;
                copy_into_tmpfs(&setup.rootfs, &new_root)?;
            }
            PIVOT => {
                match method {
                    Method::Runc => pivot_like_runc(&new_root)?,
                    Method::Classic | Method::Tmpfs => pivot_into(&new_root)?,
                }
                mount_proc()?;
                look_around(voice, leaked);
            }
            CLOSE_FDS => {
                close_inherited_fds(&link.raw_fds())?;
                voice.inside(&format!("descriptors left open: {:?}", open_fds()));
            }
            _ => {}
        }
        link.ready();
    }
    match method {
        Method::Classic | Method::Tmpfs => exec_shell(setup.mode),
        Method::Runc => Ok(()),
    }
}

/// Nothing below may touch the host: the init refuses to set a hostname or mount anything
/// while it shares a namespace with the lab.
fn refuse_host_namespaces(setup: &Setup) -> Result<()> {
    for (kind, host) in &setup.host {
        if ns_identity("self", kind) == *host {
            return Err(anyhow!(
                "the container is still in the host's {kind} namespace ({}): it stops here rather than change the host",
                ns_link("self", kind)
            ));
        }
    }
    Ok(())
}

/// Nor does it mount anything that would propagate to the host: a mount lands in
/// every peer of the mount it is made on, and run by hand, on a machine whose mounts are
/// shared (systemd), the host's is one of them.
fn refuse_shared_parent(new_root: &Path) -> Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(LabError::io("read", Path::new("/proc/self/mountinfo")))?;
    let parent = mountinfo
        .lines()
        .filter_map(|line| Some((line.split_whitespace().nth(4)?, line.split(" - ").next()?.contains(" shared:"))))
        .filter(|(point, _)| new_root.starts_with(point))
        .fold(None, |best: Option<(&str, bool)>, (point, shared)| match best {
            Some((best_point, _)) if best_point.len() > point.len() => best,
            _ => Some((point, shared)),
        });
    if let Some((point, true)) = parent {
        return Err(anyhow!(
            "the mount {point} that {} lies on is still shared with the host: a mount there would appear on the host too; the container stops here",
            new_root.display()
        ));
    }
    Ok(())
}

/// The lab's own try at pivot_root (before each fix): it shows the refusal.
fn try_pivot(voice: Voice, new_root: &Path) {
    let put_old = new_root.join(PUT_OLD);
    let outcome = match pivot_root(new_root, &put_old) {
        Ok(()) => "it worked (!)".to_string(),
        Err(errno) => format!("{errno:?} ({})", errno.desc()),
    };
    // The root mount's propagation: the last line for "/" in the mount table.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let root_line = mountinfo.lines().rfind(|l| l.split_whitespace().nth(4) == Some("/")).unwrap_or_default();
    let root_shared = root_line.split(" - ").next().is_some_and(|l| l.contains(" shared:"));
    voice.inside(&format!(
        "pivot_root({}, {}) -> {outcome}; / is {} here",
        new_root.display(),
        put_old.display(),
        if root_shared { "shared" } else { "not shared" }
    ));
}

/// In the init: no mount of its namespace is shared with the host any more.
fn make_private() -> Result<()> {
    // STUDENT: begin make-private
    // Hint: one mount(2) call on "/" that changes only propagation (mount_namespaces(7)),
    // for every mount below it too.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
    Ok(())
    // STUDENT: end make-private
}

/// In the init: the new root becomes a mount point (of the same directory).
fn bind_new_root(new_root: &Path) -> Result<()> {
    // STUDENT: begin bind-new-root
    // Hint: a bind mount (MS_BIND, with MS_REC for what is mounted below) of new_root onto
    // new_root itself: the same files, now a mount point.
    mount(Some(new_root), new_root, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(LabError::sys("mount(MS_BIND|MS_REC)", new_root.display()))?;
    Ok(())
    // STUDENT: end bind-new-root
}

/// In the init: new_root becomes `/`; the old root, put at /oldroot, is detached.
fn pivot_into(new_root: &Path) -> Result<()> {
    // STUDENT: begin pivot
    // Hint: pivot_root(2) (nix::unistd::pivot_root) takes put_old relative to where you are:
    // stand in new_root first. Where is your working directory afterwards? The old root, now
    // under "/" + PUT_OLD, is busy: umount(2) names the one flag that unmounts it anyway.
    chdir(new_root).map_err(LabError::sys("chdir", new_root.display()))?;
    pivot_root(".", PUT_OLD).map_err(LabError::sys("pivot_root", format!(". {PUT_OLD}")))?;
    chdir("/").map_err(LabError::sys("chdir", "/"))?;
    let old = format!("/{PUT_OLD}");
    umount2(old.as_str(), MntFlags::MNT_DETACH).map_err(LabError::sys("umount2(MNT_DETACH)", &old))?;
    Ok(())
    // STUDENT: end pivot
}

/// In the runc-style init: the same without a directory for the old root.
fn pivot_like_runc(new_root: &Path) -> Result<()> {
    // STUDENT: begin runc-pivot
    // Hint: pivot_root(2), NOTES: after pivot_root(".", ".") which root is on top at "."?
    // umount2(".") unmounts the top one of where you stand: descriptors of both roots, opened
    // before (O_DIRECTORY, closed on return), get you there and back. End at "/".
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let old = Fd(open("/", flags, FileMode::empty()).map_err(LabError::sys("open", "/"))?);
    let new = Fd(open(new_root, flags, FileMode::empty()).map_err(LabError::sys("open", new_root.display()))?);
    fchdir(new.0).map_err(LabError::sys("fchdir", new_root.display()))?;
    pivot_root(".", ".").map_err(LabError::sys("pivot_root", ". ."))?;
    fchdir(old.0).map_err(LabError::sys("fchdir", "the old root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(LabError::sys("umount2(MNT_DETACH)", "."))?;
    chdir("/").map_err(LabError::sys("chdir", "/"))?;
    Ok(())
    // STUDENT: end runc-pivot
}

/// Before the exec: every descriptor but stdin, stdout, stderr and `keep` is closed.
fn close_inherited_fds(keep: &[RawFd]) -> Result<()> {
    // STUDENT: begin close-fds
    // Hint: list /proc/self/fd (the container's own proc is mounted), then close every
    // descriptor above 2 that is not in `keep`, the lab's pipes to this process.
    for fd in open_fds() {
        if fd > 2 && !keep.contains(&fd) {
            let _ = nix::unistd::close(fd);
        }
    }
    Ok(())
    // STUDENT: end close-fds
}

/// A descriptor closed when dropped.
struct Fd(RawFd);

impl Drop for Fd {
    fn drop(&mut self) {
        let _ = nix::unistd::close(self.0);
    }
}

/// The descriptors this process has open, from /proc/self/fd.
fn open_fds() -> Vec<RawFd> {
    let mut fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|entries| entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    fds.sort_unstable();
    // The directory listing's own descriptor is closed by now.
    fds.retain(|fd| nix::fcntl::fcntl(*fd, nix::fcntl::FcntlArg::F_GETFD).is_ok());
    fds
}

fn mount_proc() -> Result<()> {
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(LabError::sys("mount(\"proc\")", "/proc"))?;
    Ok(())
}

/// In the tmpfs variant: a fresh tmpfs on `target`, holding a copy of the rootfs.
fn copy_into_tmpfs(rootfs: &Path, target: &Path) -> Result<()> {
    mount(Some("tmpfs"), target, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))
        .map_err(LabError::sys("mount(\"tmpfs\")", target.display()))?;
    copy_tree(rootfs, target)
}

/// Copies directories, regular files (with their modes) and symlinks, as `cpio -pdm` does.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(from).map_err(LabError::io("list", from))? {
        let entry = entry.map_err(LabError::io("list", from))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(LabError::io("stat", &source))?;
        if kind.is_symlink() {
            let link = std::fs::read_link(&source).map_err(LabError::io("readlink", &source))?;
            std::os::unix::fs::symlink(&link, &target).map_err(LabError::io("symlink", &target))?;
        } else if kind.is_dir() {
            std::fs::create_dir(&target).map_err(LabError::io("create directory", &target))?;
            copy_tree(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).map_err(LabError::io("copy", &source))?;
        }
        let mode = std::fs::symlink_metadata(&source).map_err(LabError::io("stat", &source))?.permissions().mode();
        if !kind.is_symlink() {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(LabError::io("chmod", &target))?;
        }
    }
    Ok(())
}

/// After the pivot, the init looks around: its root, its mounts, a way out it tries, and
/// the descriptor it was left holding.
fn look_around(voice: Voice, leaked: Option<RawFd>) {
    voice.inside(&format!("ls / -> {}", list(Path::new("/")).join(" ")));
    voice.inside(&format!("its mounts: {}", describe_mounts("self")));
    // The classic chroot escape, in a child: it changes only that child's root.
    let escaped = child::spawn("escape-try", || {
        let attempt = || -> nix::Result<()> {
            chroot("/tmp")?;
            for _ in 0..64 {
                chdir("..")?;
            }
            chroot(".")
        };
        match attempt() {
            Ok(()) => {
                let listed = list(Path::new("/")).join(" ");
                let _ = std::fs::write(
                    "/proc/self/fd/2",
                    format!("   inside:  after mkdir, chroot, cd .. x64, chroot .: ls / -> {listed}\n"),
                );
                0
            }
            Err(errno) => errno as i32,
        }
    });
    if let Ok(pid) = escaped {
        let _ = child::wait(pid, "trying the chroot escape");
    }
    if let Some(fd) = leaked {
        let through = openat(
            Some(fd),
            format!("{SENTINEL_DIR}/{SENTINEL_FILE}").as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            FileMode::empty(),
        );
        let said = match through {
            Ok(file) => {
                let _ = nix::unistd::close(file);
                "it opens: the descriptor still leads outside".to_string()
            }
            Err(errno) => format!("{errno:?}"),
        };
        voice.inside(&format!("openat(fd {fd} opened before the pivot, \"{SENTINEL_DIR}/{SENTINEL_FILE}\") -> {said}"));
    }
}

/// The init's last act: `exec chroot / sh` (the root is already its own).
fn exec_shell(mode: Mode) -> Result<()> {
    if mode == Mode::Held {
        // The harness reads stdout for the protocol: the shell speaks on stderr.
        nix::unistd::dup2(2, 1).map_err(LabError::sys("dup2", "stderr onto stdout"))?;
    }
    let script = "echo \"   inside:  sh is PID $$ on $(hostname); ls / ->\" $(ls /)";
    let argv = [c"sh".to_owned(), c"-c".to_owned(), CString::new(script).context("script")?];
    execv(c"/bin/sh", &argv).map_err(LabError::sys("execve", "/bin/sh"))?;
    Ok(())
}

/// A child's exit status for an error, which it says first.
fn failed(voice: Voice, who: &str, error: &anyhow::Error) -> i32 {
    voice.inside(&format!("{who} failed: {error:#}"));
    if child::panic_seen() {
        PANIC_EXIT
    } else {
        1
    }
}

fn ns_identity(pid: &str, kind: &str) -> Option<(u64, u64)> {
    nix::sys::stat::stat(format!("/proc/{pid}/ns/{kind}").as_str()).ok().map(|st| (st.st_dev, st.st_ino))
}

fn compare_namespaces(pid: Pid) -> String {
    let kinds = ["mnt", "uts", "ipc", "net", "pid"];
    let differ: Vec<&str> =
        kinds.iter().copied().filter(|k| ns_identity(&pid.to_string(), k) != ns_identity("self", k)).collect();
    format!(
        "its namespaces that differ from mine: {}",
        if differ.is_empty() { "none".into() } else { differ.join(", ") }
    )
}

/// The children of `pid`, from /proc/<pid>/task/<pid>/children.
fn children_of(pid: Pid) -> Vec<Pid> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok().map(Pid::from_raw))
        .collect()
}

/// Whether the process's root is `dir` (same device and inode).
fn same_dir(pid: Pid, dir: &Path) -> &'static str {
    let id = |path: &Path| nix::sys::stat::stat(path).ok().map(|st| (st.st_dev, st.st_ino));
    if id(Path::new(&format!("/proc/{pid}/root"))) == id(dir) && id(dir).is_some() {
        "yes"
    } else {
        "no"
    }
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// (mount point, type) of each line of /proc/<pid>/mountinfo.
fn mounts(pid: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            Some((left.split_whitespace().nth(4)?.to_string(), right.split_whitespace().next()?.to_string()))
        })
        .collect()
}

fn count_mounts(pid: &str) -> usize {
    mounts(pid).len()
}

fn describe_mounts(pid: &str) -> String {
    mounts(pid).iter().map(|(point, kind)| format!("{point} ({kind})")).collect::<Vec<_>>().join(", ")
}

fn mounts_under(pid: &str, dir: &Path) -> String {
    let found: Vec<String> = mounts(pid)
        .into_iter()
        .filter(|(point, _)| Path::new(point).starts_with(dir))
        .map(|(p, k)| format!("{p} ({k})"))
        .collect();
    if found.is_empty() {
        "none: the bind lives in the container's private mount namespace".to_string()
    } else {
        found.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_student_regions_are_the_expected_ones() {
        let regions = labkit::regions::parse(include_str!("main.rs")).expect("regions parse");
        let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["unshare-namespaces", "make-private", "bind-new-root", "pivot", "runc-pivot", "close-fds"]);
    }
}
