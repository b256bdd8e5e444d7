//! Checks for lab chroot-jail. The harness builds nothing: it looks at the jail the lab
//! built in the scratch dir, execs programs in it itself (chroot in a forked child, stopped
//! right after execve to see which files the kernel mapped), reads the jailed process's
//! root and working directory through /proc, compares namespaces, and tries to write
//! through the lab's read-only bind mount to a file it planted.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use labkit::protocol::chroot_jail::*;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::ptrace;
use nix::sys::stat::{fstatat, Mode};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, chroot, execv, fork, ForkResult, Gid, Uid};

use super::{errno_name, file_id, find_child_named, list_dir};
use crate::catalog::Observer;
use crate::error::{Error, Result};
use crate::facts::{Fact, Facts, Relation};
use crate::probe::forked::{self, ProbeFailure};
use crate::probe::procfs::{self, NAMESPACE_KINDS};
use crate::run::{LabRun, RunDoor};
use crate::verdict::VerdictSpec;

// ── facts, by stage ──────────────────────────────────────────────────────────────
const ALONE_PRESENT: Fact<bool> = Fact::new("binary-alone.program_present_in_jail");
const ALONE_DYNAMIC: Fact<bool> = Fact::new("binary-alone.program_has_interpreter");
const ALONE_LOADER_PRESENT: Fact<bool> = Fact::new("binary-alone.interpreter_present_in_jail");
const ALONE_EXEC: Fact<String> = Fact::new("binary-alone.exec");
const BUSYBOX_STATIC: Fact<bool> = Fact::new("binary-alone.busybox_is_static");
const BUSYBOX_EXEC: Fact<String> = Fact::new("binary-alone.busybox_exec");

const LIB_LOADER_PRESENT: Fact<bool> = Fact::new("with-libraries.interpreter_present_in_jail");
const LIB_EXEC: Fact<String> = Fact::new("with-libraries.exec");
const LIB_EXE_IS_PROGRAM: Fact<bool> = Fact::new("with-libraries.executed_file_is_the_dynamic_program");
const LIB_LOADER_MAPPED: Fact<bool> = Fact::new("with-libraries.interpreter_mapped_after_exec");
const LIB_LOADER_IS_HOSTS: Fact<bool> = Fact::new("with-libraries.interpreter_is_the_hosts_loader");

const ROOT: Fact<Relation> = Fact::new("jailed.root_vs_jail_dir");
const CWD: Fact<Relation> = Fact::new("jailed.cwd_after_cd_dotdot_twice_vs_jail_dir");
const SLASH_LISTS: Fact<Vec<String>> = Fact::new("jailed.slash_lists_besides_lib_dirs");
const SLASH_IS_JAIL: Fact<bool> = Fact::new("jailed.slash_equals_jail_dir");
const SLASH_IS_HOST: Fact<bool> = Fact::new("jailed.slash_equals_host_root");
const NAMESPACES: Fact<BTreeMap<String, Relation>> = Fact::new("jailed.namespaces_vs_host");
const NOBODY_CHROOT: Fact<String> = Fact::new("jailed.chroot_as_uid_65534");

const PRIVATE_MNT_NS: Fact<Relation> = Fact::new("private-mounts.mnt_ns_vs_host");
const PROC_FS: Fact<String> = Fact::new("private-mounts.jail_proc_mount");
const PROC_SHOWS_HARNESS: Fact<bool> = Fact::new("private-mounts.jail_proc_shows_the_harness_in_its_pid_ns");
const HOST_MOUNT_CHANGES: Fact<Vec<String>> = Fact::new("private-mounts.host_mount_changes");
const BIND_READ_ONLY: Fact<bool> = Fact::new("private-mounts.bind_mount_read_only_over_a_writable_filesystem");
const BIND_IS_HOST_DIR: Fact<bool> = Fact::new("private-mounts.bind_shows_the_planted_host_file");
const APPEND: Fact<String> = Fact::new("private-mounts.append_to_note");
const CREATE: Fact<String> = Fact::new("private-mounts.create_file");
const HOST_NOTE_UNCHANGED: Fact<bool> = Fact::new("private-mounts.host_note_unchanged");

pub const VERDICTS: [VerdictSpec; 11] = [
    VerdictSpec {
        id: "lonely-binary-enoent",
        claim: "a dynamically linked program copied alone into the jail is there, yet exec fails with ENOENT: its ELF interpreter is missing",
        points: 2,
        region: Some("copy-libraries"),
        requires: &["runs-with-loader"],
        hint: "copy only the program at first (the libraries come in step 2): ENOENT names the loader from its PT_INTERP header, not the program",
        decide: |e| {
            Some(
                e.get(ALONE_PRESENT)?
                    && e.get(ALONE_DYNAMIC)?
                    && !e.get(ALONE_LOADER_PRESENT)?
                    && e.get(ALONE_EXEC)? == "ENOENT",
            )
        },
    },
    VerdictSpec {
        id: "runs-with-loader",
        claim: "once its loader and libraries are copied into the jail, the same program runs there with that loader mapped",
        points: 2,
        region: Some("copy-libraries"),
        requires: &[],
        hint: "copy the PT_INTERP loader and every library `ldd` lists, each to the same path inside the jail",
        decide: |e| {
            Some(
                e.get(LIB_LOADER_PRESENT)?
                    && e.get(LIB_EXEC)? == "runs"
                    && e.get(LIB_EXE_IS_PROGRAM)?
                    && e.get(LIB_LOADER_MAPPED)?
                    && e.get(LIB_LOADER_IS_HOSTS)?,
            )
        },
    },
    VerdictSpec {
        id: "static-busybox-runs",
        claim: "a statically linked busybox runs in the jail with no libraries at all",
        points: 0,
        region: None,
        requires: &[],
        hint: "use the busybox from busybox-static: a dynamic busybox needs its loader too",
        decide: |e| Some(e.get(BUSYBOX_STATIC)? && e.get(BUSYBOX_EXEC)? == "runs" && !e.get(ALONE_LOADER_PRESENT)?),
    },
    VerdictSpec {
        id: "root-is-jail",
        claim: "on the host, /proc/<pid>/root of the jailed process is the jail directory",
        points: 2,
        region: Some("enter-jail"),
        requires: &[],
        hint: "chroot(jail) in the process that stays in the jail: chdir alone changes only where relative paths start",
        decide: |e| Some(e.get(ROOT)? == Relation::Same),
    },
    VerdictSpec {
        id: "dotdot-stays",
        claim: "inside, cd .. twice from / leaves the jailed process at the top of the jail",
        points: 2,
        region: Some("enter-jail"),
        requires: &[],
        hint: "after chroot, chdir(\"/\"): a working directory left outside the new root lets `cd ..` walk out of the jail",
        decide: |e| Some(e.get(CWD)? == Relation::Same),
    },
    VerdictSpec {
        id: "slash-is-jail",
        claim: "inside, / lists the jail, not the host's root",
        points: 0,
        region: None,
        requires: &[],
        hint: "the jailed process's / is its root directory: the jail",
        decide: |e| Some(e.get(SLASH_IS_JAIL)? && !e.get(SLASH_IS_HOST)?),
    },
    VerdictSpec {
        id: "no-namespace",
        claim: "chroot changes no namespace: the jailed process shares every namespace with the host",
        points: 0,
        region: None,
        requires: &[],
        hint: "the plain jailed process must not unshare anything: chroot alone is the point of this step",
        decide: |e| {
            let namespaces = e.get(NAMESPACES)?;
            Some(!namespaces.is_empty() && namespaces.values().all(|r| *r == Relation::Same))
        },
    },
    VerdictSpec {
        id: "proc-shows-host",
        claim: "proc mounted inside the jail shows the host's processes: chroot does not isolate PIDs",
        points: 2,
        region: Some("private-mounts"),
        requires: &[],
        hint: "mount a filesystem of type proc on <jail>/proc from a process still in the host's PID namespace",
        decide: |e| Some(e.get(PROC_FS)? == super::PROC_MOUNTED && e.get(PROC_SHOWS_HARNESS)?),
    },
    VerdictSpec {
        id: "host-mounts-untouched",
        claim: "the jail's mounts live in a private mount namespace: the lab's host (the run's mount namespace) does not change",
        points: 1,
        region: Some("private-mounts"),
        requires: &[],
        hint: "unshare(CLONE_NEWNS) and mount / MS_REC|MS_PRIVATE before mounting anything: the host's / is shared",
        decide: |e| Some(e.get(PRIVATE_MNT_NS)? == Relation::Differs && e.get(HOST_MOUNT_CHANGES)?.is_empty()),
    },
    VerdictSpec {
        id: "ro-bind-erofs",
        claim: "a read-only bind mount of the host's directory in the jail refuses writes with EROFS, and the file on the host is unchanged",
        points: 2,
        region: Some("private-mounts"),
        requires: &[],
        hint: "bind-mount host-data, then remount it with MS_BIND|MS_REMOUNT|MS_RDONLY: MS_RDONLY on the first bind is ignored",
        decide: |e| {
            Some(
                e.get(BIND_READ_ONLY)?
                    && e.get(BIND_IS_HOST_DIR)?
                    && e.get(APPEND)? == "EROFS"
                    && e.get(CREATE)? == "EROFS"
                    && e.get(HOST_NOTE_UNCHANGED)?,
            )
        },
    },
    VerdictSpec {
        id: "nonroot-eperm",
        claim: "chroot by a user without CAP_SYS_CHROOT fails with EPERM",
        points: 0,
        region: None,
        requires: &[],
        hint: "EACCES means uid 65534 cannot reach the jail (a directory on its path is not searchable: chmod 755); \
               the capability is checked only after the path",
        decide: |e| Some(e.get(NOBODY_CHROOT)? == "EPERM"),
    },
];

/// What the harness plants on the host before the run, to look for afterwards.
const PLANTED_NOTE: &str = "planted on the host by cilab before the run\n";
/// What the harness's own exec probes print.
const PROBE_WORD: &str = "cilab-probe-was-here";
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const NOBODY: u32 = 65534;

pub fn prepare(scratch: &Path) -> Result<()> {
    let dir = scratch.join(HOST_DATA_DIR);
    std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
    let note = dir.join(HOST_NOTE);
    std::fs::write(&note, PLANTED_NOTE).map_err(Error::io("write", note))
}

pub fn observer() -> Box<dyn Observer> {
    Box::new(ChrootJail::default())
}

#[derive(Default)]
struct ChrootJail {
    /// The jail directory's (device, inode) when the lab first held: what "the jail" is,
    /// whatever the lab later puts at its path.
    jail_id: Option<(u64, u64)>,
}

impl Observer for ChrootJail {
    fn observe(&mut self, stage: &str, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let jail = run.scratch().join(JAIL_DIR);
        match stage {
            BINARY_ALONE => {
                let door = run.door()?;
                // lstat: the directory itself, never what a link at its path points to.
                self.jail_id = std::fs::symlink_metadata(&jail)
                    .ok()
                    .filter(|m| m.is_dir())
                    .map(|m| (std::os::unix::fs::MetadataExt::dev(&m), std::os::unix::fs::MetadataExt::ino(&m)));
                binary_alone(&jail, &door, facts)
            }
            WITH_LIBRARIES => with_libraries(&jail, &run.door()?, facts),
            JAILED => jailed(run, &jail, self.jail_id, facts),
            PRIVATE_MOUNTS => private_mounts(run, &jail, facts),
            other => Err(Error::Harness(format!("chroot-jail has no stage `{other}`"))),
        }
    }
}

fn in_jail(jail: &Path, absolute: &str) -> PathBuf {
    jail.join(absolute.trim_start_matches('/'))
}

/// The program's PT_INTERP, if it is a dynamically linked ELF file.
fn interpreter_of(program: &Path) -> Option<PathBuf> {
    labkit::elf::interpreter(program).ok().flatten()
}

fn binary_alone(jail: &Path, door: &RunDoor, facts: &mut Facts) -> Result<()> {
    let program = in_jail(jail, DYNAMIC_PROGRAM_IN_JAIL);
    let interpreter = interpreter_of(&program);
    facts.record(ALONE_PRESENT, program.is_file());
    facts.record(ALONE_DYNAMIC, interpreter.is_some());
    facts.record(ALONE_LOADER_PRESENT, loader_present(jail, interpreter.as_deref()));
    facts.record(ALONE_EXEC, exec_in_jail(jail, DYNAMIC_PROGRAM_IN_JAIL, door)?.result);
    let busybox = in_jail(jail, BUSYBOX_IN_JAIL);
    facts.record(BUSYBOX_STATIC, busybox.is_file() && labkit::elf::interpreter(&busybox).is_ok_and(|i| i.is_none()));
    facts.record(BUSYBOX_EXEC, exec_in_jail(jail, BUSYBOX_IN_JAIL, door)?.result);
    Ok(())
}

/// Whether the interpreter's path exists inside the jail (a dangling link does not count).
fn loader_present(jail: &Path, interpreter: Option<&Path>) -> bool {
    interpreter.is_some_and(|i| in_jail(jail, &i.to_string_lossy()).exists())
}

fn with_libraries(jail: &Path, door: &RunDoor, facts: &mut Facts) -> Result<()> {
    let program = in_jail(jail, DYNAMIC_PROGRAM_IN_JAIL);
    facts.record(LIB_LOADER_PRESENT, loader_present(jail, interpreter_of(&program).as_deref()));
    let exec = exec_in_jail(jail, DYNAMIC_PROGRAM_IN_JAIL, door)?;
    facts.record(LIB_EXEC, exec.result);
    facts.record(LIB_EXE_IS_PROGRAM, exec.exe_is_program_and_dynamic);
    facts.record(LIB_LOADER_MAPPED, exec.interpreter_mapped);
    facts.record(LIB_LOADER_IS_HOSTS, exec.interpreter_is_hosts);
    Ok(())
}

fn jailed(run: &mut LabRun, jail: &Path, jail_id: Option<(u64, u64)>, facts: &mut Facts) -> Result<()> {
    let jailed = find_child_named(run, JAILED_COMM)?;
    // stat follows /proc/<pid>/root and cwd to the directories themselves.
    facts.record(ROOT, Relation::of(&file_id(Path::new(&format!("/proc/{jailed}/root"))), &jail_id));
    facts.record(CWD, Relation::of(&file_id(Path::new(&format!("/proc/{jailed}/cwd"))), &jail_id));
    let inside = list_dir(Path::new(&format!("/proc/{jailed}/root")))?;
    // lib, lib64, lib32...: where the loader lives depends on the architecture.
    facts.record(SLASH_LISTS, inside.iter().filter(|n| !n.starts_with("lib")).cloned().collect::<Vec<_>>());
    facts.record(SLASH_IS_JAIL, !inside.is_empty() && inside == list_dir(jail)?);
    facts.record(SLASH_IS_HOST, inside == list_dir(Path::new("/"))?);
    let mut namespaces = BTreeMap::new();
    for kind in NAMESPACE_KINDS {
        let theirs = run.namespace_of(jailed, kind)?;
        let host = run.host_ns(kind).ok();
        if theirs.is_some() || host.is_some() {
            namespaces.insert(kind.to_string(), Relation::of(&theirs, &host));
        }
    }
    facts.record(NAMESPACES, namespaces);
    facts.record(NOBODY_CHROOT, chroot_as_nobody(jail)?);
    Ok(())
}

fn private_mounts(run: &mut LabRun, jail: &Path, facts: &mut Facts) -> Result<()> {
    let private = find_child_named(run, PRIVATE_COMM)?;
    let host_mnt = run.host_ns("mnt")?;
    facts.record(PRIVATE_MNT_NS, Relation::of(&run.namespace_of(private, "mnt")?, &Some(host_mnt)));
    let root = PathBuf::from(format!("/proc/{private}/root"));
    let mounts = procfs::read_mountinfo(&private.to_string())?;
    facts.record(PROC_FS, super::what_is_mounted_at(&mounts, "/proc"));
    // The harness's own entry in that proc, in the harness's PID namespace: host PIDs.
    let own = std::process::id();
    let own_pid_ns = run.host_ns("pid")?;
    let theirs = nix::sys::stat::stat(&root.join(format!("proc/{own}/ns/pid"))).ok();
    facts.record(
        PROC_SHOWS_HARNESS,
        theirs.is_some_and(|st| (st.st_dev, st.st_ino) == (own_pid_ns.dev, own_pid_ns.ino)),
    );
    facts.record(HOST_MOUNT_CHANGES, run.mount_ns().changes()?.describe());

    let bind = mounts.iter().rev().find(|m| m.mount_point == BIND_TARGET_IN_JAIL);
    // Read-only as a mount, over a filesystem still writable: a remount without MS_BIND
    // would have made the whole filesystem read-only instead.
    let filesystem_writable = |m: &procfs::Mount| m.super_options.split(',').any(|o| o == "rw");
    facts.record(BIND_READ_ONLY, bind.is_some_and(|m| m.is_read_only() && filesystem_writable(m)));
    let host_note = run.scratch().join(HOST_DATA_DIR).join(HOST_NOTE);
    let through = PathBuf::from(format!("/proc/{private}/root{BIND_TARGET_IN_JAIL}"));
    facts.record(
        BIND_IS_HOST_DIR,
        file_id(&host_note).is_some() && file_id(&through.join(HOST_NOTE)) == file_id(&host_note),
    );
    let (append, create) = write_attempts(private)?;
    facts.record(APPEND, append);
    facts.record(CREATE, create);
    let note_unchanged = std::fs::read_to_string(&host_note).is_ok_and(|t| t == PLANTED_NOTE);
    let no_new_file = !run.scratch().join(HOST_DATA_DIR).join("new-file").exists();
    facts.record(HOST_NOTE_UNCHANGED, note_unchanged && no_new_file);
    let _ = jail;
    Ok(())
}

/// What the harness saw when it ran a program in the jail itself.
struct Exec {
    /// "runs" (printed the probe word, exit 0), an errno name, or what else happened.
    result: String,
    /// The file the kernel executed is the jail's program itself (not a link to another
    /// program) and it names an interpreter.
    exe_is_program_and_dynamic: bool,
    /// The file named by the program's PT_INTERP, resolved inside the jail, is mapped in
    /// the process right after execve: the kernel really loaded that loader.
    interpreter_mapped: bool,
    /// That file has the bytes of the host's loader for the same program: the real one.
    interpreter_is_hosts: bool,
}

/// A forked probe enters the run (its cgroup and mount namespace: whatever the lab's files
/// do stays in the run and dies with it), chroots into the jail and forks a child that
/// becomes uid 65534 without capabilities or a way to gain them, asks to be traced and
/// execs `program` as `echo PROBE_WORD`: files the lab controls never run as root on the
/// host. A successful execve stops the child (SIGTRAP) before its first instruction: the
/// probe reads /proc/<child>/exe and maps, then lets it run.
fn exec_in_jail(jail: &Path, program: &str, door: &RunDoor) -> Result<Exec> {
    let path = CString::new(program).map_err(|_| Error::parse("program path", program))?;
    let argv = [c"echo".to_owned(), CString::new(PROBE_WORD).map_err(|_| Error::parse("word", PROBE_WORD))?];
    // The host's own loader for the program, to compare with whatever the jail holds.
    let hosts_loader: Option<Vec<u8>> = which::which(DYNAMIC_PROGRAM)
        .ok()
        .and_then(|program| labkit::elf::interpreter(&program).ok().flatten())
        .and_then(|loader| std::fs::read(loader).ok());
    let outcome = forked::probe("exec in the jail", PROBE_TIMEOUT, |out| {
        // The host's /proc, opened before the chroot: inside the jail there is none.
        let proc_dir =
            nix::fcntl::open("/proc", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        door.enter()?;
        chroot(jail)?;
        chdir("/")?;
        // SAFETY: the child makes syscalls and execs or _exits.
        match unsafe { fork() }? {
            ForkResult::Child => {
                let code = drop_to_nobody()
                    .and_then(|()| ptrace::traceme())
                    .and_then(|()| forked::pipe_as_stdout(out))
                    .and_then(|()| execv(&path, &argv).map(drop))
                    .err()
                    .map_or(0, |errno| errno as i32);
                // SAFETY: _exit has no preconditions (nix 0.29 has no wrapper).
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                let mut status = waitpid(child, None)?;
                // A successful execve stops the traced child; a failed one lets it exit.
                if let WaitStatus::Stopped(_, nix::sys::signal::Signal::SIGTRAP) = status {
                    let exe = fstatat(Some(proc_dir), format!("{child}/exe").as_str(), AtFlags::empty()).ok();
                    let program_file = nix::sys::stat::lstat(path.as_c_str()).ok();
                    let is_program = exe.zip(program_file).is_some_and(|(e, p)| {
                        (e.st_dev, e.st_ino) == (p.st_dev, p.st_ino) && p.st_mode & libc::S_IFMT == libc::S_IFREG
                    });
                    let interpreter = labkit::elf::interpreter(Path::new(program)).ok().flatten();
                    let is_hosts = interpreter
                        .as_ref()
                        .and_then(|i| std::fs::read(i).ok())
                        .is_some_and(|bytes| hosts_loader.as_deref() == Some(bytes.as_slice()));
                    forked::say(out, &format!("interpreter-is-hosts {is_hosts}"));
                    let mapped = interpreter
                        .and_then(|i| nix::sys::stat::stat(&i).ok())
                        .is_some_and(|st| maps_file(proc_dir, child.as_raw(), st.st_dev, st.st_ino));
                    forked::say(out, &format!("exe-is-program {}", is_program && interpreter_named(program)));
                    forked::say(out, &format!("interpreter-mapped {mapped}"));
                    ptrace::detach(child, None)?;
                    status = waitpid(child, None)?;
                }
                match status {
                    WaitStatus::Exited(_, 0) => Ok(()),
                    WaitStatus::Exited(_, code) => Err(Errno::from_raw(code)),
                    _ => Err(Errno::EINTR),
                }
            }
        }
    })?;
    let said = |key: &str| outcome.output.lines().any(|l| l == format!("{key} true"));
    // The probe's own lines; everything else is what the program printed.
    const SAID: [&str; 3] = ["exe-is-program ", "interpreter-mapped ", "interpreter-is-hosts "];
    let printed: Vec<&str> = outcome.output.lines().filter(|l| !SAID.iter().any(|k| l.starts_with(k))).collect();
    let result = match outcome.status {
        Ok(()) if printed == [PROBE_WORD] => "runs".to_string(),
        Ok(()) => format!("runs, printed {:?}", printed.join(" ")),
        Err(ProbeFailure::Errno(errno)) => errno_name(errno),
        Err(ProbeFailure::Signaled(signal)) => format!("killed by {}", signal.as_str()),
    };
    Ok(Exec {
        result,
        exe_is_program_and_dynamic: said("exe-is-program"),
        interpreter_mapped: said("interpreter-mapped"),
        interpreter_is_hosts: said("interpreter-is-hosts"),
    })
}

/// In the probe (chrooted): the program at this path names an interpreter.
fn interpreter_named(program: &str) -> bool {
    labkit::elf::interpreter(Path::new(program)).is_ok_and(|i| i.is_some())
}

/// Whether the process maps the file with this device and inode. Each mapping's own file
/// is stat'ed through /proc/<pid>/map_files (device numbers in /proc/<pid>/maps differ
/// from stat's on some filesystems, btrfs among them).
fn maps_file(proc_dir: std::os::fd::RawFd, pid: i32, dev: u64, ino: u64) -> bool {
    let path = format!("{pid}/map_files");
    let Ok(mut dir) =
        nix::dir::Dir::openat(Some(proc_dir), path.as_str(), OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())
    else {
        return false;
    };
    let names: Vec<String> = dir
        .iter()
        .flatten()
        .filter_map(|e| e.file_name().to_str().ok().map(String::from))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.iter().any(|name| {
        fstatat(Some(proc_dir), format!("{path}/{name}").as_str(), AtFlags::empty())
            .is_ok_and(|st| (st.st_dev, st.st_ino) == (dev, ino))
    })
}

/// Becomes uid and gid 65534 with no groups: no capabilities, and (no_new_privs) no
/// set-user-ID program can give any back.
fn drop_to_nobody() -> nix::Result<()> {
    nix::unistd::setgroups(&[])?;
    nix::unistd::setresgid(Gid::from_raw(NOBODY), Gid::from_raw(NOBODY), Gid::from_raw(NOBODY))?;
    nix::unistd::setresuid(Uid::from_raw(NOBODY), Uid::from_raw(NOBODY), Uid::from_raw(NOBODY))?;
    nix::sys::prctl::set_no_new_privs()
}

fn chroot_as_nobody(jail: &Path) -> Result<String> {
    let outcome = forked::probe("chroot as nobody", PROBE_TIMEOUT, |_| {
        drop_to_nobody()?;
        chroot(jail)
    })?;
    Ok(match outcome.status {
        Ok(()) => "chroot succeeded".to_string(),
        Err(ProbeFailure::Errno(errno)) => errno_name(errno),
        Err(ProbeFailure::Signaled(signal)) => format!("probe killed by {}", signal.as_str()),
    })
}

/// Tries, as root, to append to the note and to create a file through the lab's bind
/// mount: in a forked probe chrooted into the jailed process's own root (so that no link
/// the lab made can lead the writes anywhere else), never following a link at the end,
/// never blocking on a FIFO, under a deadline.
fn write_attempts(private: i32) -> Result<(String, String)> {
    let root = format!("/proc/{private}/root");
    let outcome = forked::probe("write through the bind mount", PROBE_TIMEOUT, |out| {
        let dir =
            nix::fcntl::open(root.as_str(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        nix::unistd::fchdir(dir)?;
        chroot(".")?;
        let base = BIND_TARGET_IN_JAIL.trim_start_matches('/');
        let no_surprises = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let note = format!("{base}/{HOST_NOTE}");
        let append = nix::fcntl::open(note.as_str(), OFlag::O_WRONLY | OFlag::O_APPEND | no_surprises, Mode::empty());
        let new_file = format!("{base}/new-file");
        let create_flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | no_surprises;
        let create = nix::fcntl::open(new_file.as_str(), create_flags, Mode::from_bits_truncate(0o644));
        for (what, result) in [("append", append), ("create", create)] {
            let said = match result {
                Ok(fd) => {
                    let _ = nix::unistd::close(fd);
                    "the write went through".to_string()
                }
                Err(errno) => errno_name(errno),
            };
            forked::say(out, &format!("{what} {said}"));
        }
        Ok(())
    })?;
    let said = |what: &str| {
        let found = outcome.output.lines().find_map(|l| l.strip_prefix(&format!("{what} ")).map(String::from));
        found.unwrap_or_else(|| format!("not tried ({:?})", outcome.status))
    };
    Ok((said("append"), said("create")))
}
