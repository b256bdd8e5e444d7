//! Checks for lab chroot-jail. The harness builds nothing: it looks at the jail the lab
//! built in the scratch dir, execs programs in it itself (chroot in a forked child),
//! enters the jailed process's root through /proc/<pid>/root, compares namespace links,
//! and tries to write through the lab's read-only bind mount.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use labkit::protocol::chroot_jail::*;
use nix::errno::Errno;
use nix::unistd::{chdir, chroot, execv, getpid, Gid, Uid};

use crate::error::{Error, Result};
use crate::probe::forked::{self, ProbeFailure, ProbeOutcome};
use crate::probe::procfs::{self, NAMESPACE_KINDS};
use crate::run::LabRun;
use crate::verdict::redact::same_or_differs;
use crate::verdict::{Grader, VerdictSpec};

pub const VERDICTS: [VerdictSpec; 11] = [
    VerdictSpec {
        id: "lonely-binary-enoent",
        claim: "a dynamically linked program copied alone into the jail is there, yet exec fails with ENOENT: its ELF interpreter is missing",
        points: 2,
        hint: "copy only the program at first; ENOENT names the loader from its PT_INTERP header, not the program",
    },
    VerdictSpec {
        id: "runs-with-loader",
        claim: "once its loader and libraries are copied into the jail, the same program runs there",
        points: 2,
        hint: "copy the PT_INTERP loader and every library `ldd` lists, each to the same path inside the jail",
    },
    VerdictSpec {
        id: "static-busybox-runs",
        claim: "a statically linked busybox runs in the jail with no libraries at all",
        points: 1,
        hint: "use the busybox from busybox-static: a dynamic busybox needs its loader too",
    },
    VerdictSpec {
        id: "root-is-jail",
        claim: "on the host, /proc/<pid>/root of the jailed process points at the jail directory",
        points: 2,
        hint: "chroot(jail) in the child that stays in the jail, then chdir(\"/\")",
    },
    VerdictSpec {
        id: "slash-is-jail",
        claim: "inside, / lists the jail, not the host's root",
        points: 1,
        hint: "the jailed process's / must be the jail directory",
    },
    VerdictSpec {
        id: "dotdot-stays",
        claim: "inside, cd .. at / stays at the top of the jail",
        points: 1,
        hint: "the kernel stops .. at a process's root: make sure the root really is the jail",
    },
    VerdictSpec {
        id: "no-namespace",
        claim: "chroot changes no namespace: the jailed process shares every namespace with the host",
        points: 2,
        hint: "the plain jailed process must not unshare anything: chroot alone is the point of this step",
    },
    VerdictSpec {
        id: "proc-shows-host",
        claim: "proc mounted inside the jail shows the host's processes: chroot does not isolate PIDs",
        points: 2,
        hint: "mount proc on <jail>/proc from a process that is still in the host's PID namespace",
    },
    VerdictSpec {
        id: "host-mounts-untouched",
        claim: "the jail's mounts live in a private mount namespace: the host's mount table does not change",
        points: 1,
        hint: "unshare(CLONE_NEWNS) and mount --make-rprivate / before mounting anything",
    },
    VerdictSpec {
        id: "ro-bind-erofs",
        claim: "a read-only bind mount in the jail refuses writes with EROFS, and the file on the host is unchanged",
        points: 2,
        hint: "bind-mount host-data, then remount it with MS_BIND|MS_REMOUNT|MS_RDONLY: MS_RDONLY on the first bind is ignored",
    },
    VerdictSpec {
        id: "nonroot-eperm",
        claim: "chroot by a user without CAP_SYS_CHROOT fails with EPERM",
        points: 1,
        hint: "EACCES means uid 65534 cannot reach the jail (a directory on its path is not searchable: chmod 755); \
               the capability is checked only after the path",
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

pub fn check(run: &mut LabRun, grader: &mut Grader) -> Result<()> {
    let jail = run.scratch().join(JAIL_DIR);
    let program = jail.join(DYNAMIC_PROGRAM_IN_JAIL.trim_start_matches('/'));

    // ── binary-alone ──────────────────────────────────────────────────────────
    run.await_hold(BINARY_ALONE)?;
    let present = program.is_file();
    let interpreter = if present { labkit::elf::interpreter(&program).ok().flatten() } else { None };
    let interpreter_in_jail = |jail: &Path| interpreter.as_ref().map(|i| in_jail(jail, i).exists());
    let alone = exec_in_jail(&jail, DYNAMIC_PROGRAM_IN_JAIL)?;
    grader.observe("alone.program_present_in_jail", present);
    grader.observe(
        "alone.program_has_interpreter",
        // The loader's path differs between architectures: only whether there is one.
        interpreter.is_some(),
    );
    grader.observe("alone.interpreter_present_in_jail", interpreter_in_jail(&jail));
    grader.observe("alone.exec", describe(&alone));
    grader.judge(
        "lonely-binary-enoent",
        present
            && interpreter.is_some()
            && interpreter_in_jail(&jail) == Some(false)
            && errno_of(&alone) == Some(Errno::ENOENT),
        &[
            "alone.program_present_in_jail",
            "alone.program_has_interpreter",
            "alone.interpreter_present_in_jail",
            "alone.exec",
        ],
        format!("program present: {present}; exec: {}", describe(&alone)),
    );

    let busybox = jail.join(BUSYBOX_IN_JAIL.trim_start_matches('/'));
    let busybox_static = busybox.is_file() && labkit::elf::interpreter(&busybox).is_ok_and(|i| i.is_none());
    let busybox_run = exec_in_jail(&jail, BUSYBOX_IN_JAIL)?;
    let jail_has_no_loader = interpreter_in_jail(&jail) == Some(false);
    grader.observe("alone.busybox_is_static", busybox_static);
    grader.observe("alone.busybox_exec", describe(&busybox_run));
    grader.judge(
        "static-busybox-runs",
        busybox_static && printed_probe_word(&busybox_run) && jail_has_no_loader,
        &["alone.busybox_is_static", "alone.busybox_exec", "alone.interpreter_present_in_jail"],
        format!("busybox static: {busybox_static}; exec: {}", describe(&busybox_run)),
    );
    run.release()?;

    // ── with-libraries ────────────────────────────────────────────────────────
    run.await_hold(WITH_LIBRARIES)?;
    let with_libraries = exec_in_jail(&jail, DYNAMIC_PROGRAM_IN_JAIL)?;
    grader.observe("libraries.interpreter_present_in_jail", interpreter_in_jail(&jail));
    grader.observe("libraries.exec", describe(&with_libraries));
    grader.judge(
        "runs-with-loader",
        interpreter_in_jail(&jail) == Some(true) && printed_probe_word(&with_libraries),
        &["libraries.interpreter_present_in_jail", "libraries.exec"],
        format!("exec: {}", describe(&with_libraries)),
    );
    run.release()?;

    // ── jailed ────────────────────────────────────────────────────────────────
    run.await_hold(JAILED)?;
    let jailed = find_child(run, JAILED_COMM)?;
    let canonical_jail = jail.canonicalize().map_err(Error::io("resolve", &jail))?;
    let root = procfs::root_link(jailed)?;
    grader.observe("jailed.root_link", if root == canonical_jail { "the jail directory" } else { "elsewhere" });
    grader.judge("root-is-jail", root == canonical_jail, &["jailed.root_link"], format!("root -> {}", root.display()));

    let view = look_from_root_of(jailed)?;
    let jail_listing = list(&jail)?;
    let host_listing = list(Path::new("/"))?;
    let jail_stat = std::fs::metadata(&jail).map_err(Error::io("stat", &jail))?;
    // lib, lib64, lib32...: where the loader lives depends on the architecture.
    let portable: Vec<&String> = view.listing.iter().filter(|n| !n.starts_with("lib")).collect();
    grader.observe("jailed.slash_lists_besides_lib_dirs", &portable);
    grader.observe("jailed.slash_equals_jail_dir", view.listing == jail_listing);
    grader.observe("jailed.slash_equals_host_root", view.listing == host_listing);
    grader.observe("jailed.dotdot_at_top_is_jail_top", view.dotdot == Some((jail_stat.dev(), jail_stat.ino())));
    grader.judge(
        "slash-is-jail",
        !view.listing.is_empty() && view.listing == jail_listing && view.listing != host_listing,
        &["jailed.slash_lists_besides_lib_dirs", "jailed.slash_equals_jail_dir", "jailed.slash_equals_host_root"],
        format!("/ inside lists {:?}", view.listing),
    );
    grader.judge(
        "dotdot-stays",
        view.dotdot == Some((jail_stat.dev(), jail_stat.ino())),
        &["jailed.dotdot_at_top_is_jail_top"],
        format!("cd ..; cd .. from / reached {:?}", view.dotdot),
    );

    let own = getpid().as_raw();
    let mut namespaces = BTreeMap::new();
    for kind in NAMESPACE_KINDS {
        let theirs = procfs::ns_id(jailed, kind)?;
        let ours = procfs::ns_id(own, kind)?;
        if theirs.is_some() || ours.is_some() {
            namespaces.insert(kind, same_or_differs(&theirs, &ours));
        }
    }
    grader.observe("jailed.namespaces_vs_host", &namespaces);
    grader.judge(
        "no-namespace",
        !namespaces.is_empty() && namespaces.values().all(|r| *r == "same"),
        &["jailed.namespaces_vs_host"],
        format!("{namespaces:?}"),
    );

    let as_nobody = chroot_as_nobody(&jail)?;
    grader.observe("nonroot.chroot", &as_nobody);
    grader.judge("nonroot-eperm", as_nobody == "EPERM", &["nonroot.chroot"], as_nobody.clone());
    run.release()?;

    // ── private-mounts ────────────────────────────────────────────────────────
    run.await_hold(PRIVATE_MOUNTS)?;
    let private = find_child(run, PRIVATE_COMM)?;
    let private_mnt = procfs::ns_id(private, "mnt")?;
    let host_mnt = procfs::ns_id(own, "mnt")?;
    if let Some(ns) = private_mnt {
        run.track_namespace("mnt", ns);
    }
    let proc_inside = procfs::pid_entries(Path::new(&format!("/proc/{private}/root/proc"))).unwrap_or_default();
    let shows_harness = proc_inside.contains(&own);
    let shows_host_init = proc_inside.contains(&1);
    let their_mounts = procfs::read_mountinfo(&private.to_string())?;
    let proc_mounted = their_mounts.iter().any(|m| m.fs_type == "proc" && m.mount_point == "/proc");
    grader.observe("private.mnt_ns_vs_host", same_or_differs(&private_mnt, &host_mnt));
    grader.observe("private.proc_mounted_at_jail_proc", proc_mounted);
    grader.observe("private.proc_inside_shows_the_harness", shows_harness);
    grader.observe("private.proc_inside_shows_host_pid_1", shows_host_init);
    grader.judge(
        "proc-shows-host",
        proc_mounted && shows_harness && shows_host_init,
        &[
            "private.proc_mounted_at_jail_proc",
            "private.proc_inside_shows_the_harness",
            "private.proc_inside_shows_host_pid_1",
        ],
        format!("proc inside lists {} PIDs; harness among them: {shows_harness}", proc_inside.len()),
    );

    let (added, removed) = run.baseline().mount_changes()?;
    grader.observe("private.host_mounts_added", added.len());
    grader.observe("private.host_mounts_removed", removed.len());
    grader.judge(
        "host-mounts-untouched",
        private_mnt != host_mnt && added.is_empty() && removed.is_empty(),
        &["private.mnt_ns_vs_host", "private.host_mounts_added", "private.host_mounts_removed"],
        format!("host mounts added {added:?}, removed {removed:?}"),
    );

    let bind = their_mounts.iter().find(|m| m.mount_point == BIND_TARGET_IN_JAIL);
    let bind_read_only = bind.is_some_and(procfs::Mount::is_read_only);
    let through = PathBuf::from(format!("/proc/{private}/root{BIND_TARGET_IN_JAIL}"));
    let append = write_attempt(|| std::fs::OpenOptions::new().append(true).open(through.join(HOST_NOTE)).map(drop));
    let create = write_attempt(|| std::fs::write(through.join("new-file"), "x"));
    let host_note = run.scratch().join(HOST_DATA_DIR).join(HOST_NOTE);
    let note_unchanged = std::fs::read_to_string(&host_note).is_ok_and(|t| t == PLANTED_NOTE);
    let no_new_file = !run.scratch().join(HOST_DATA_DIR).join("new-file").exists();
    grader.observe("private.bind_mount_read_only", bind_read_only);
    grader.observe("private.append_to_note", &append);
    grader.observe("private.create_file", &create);
    grader.observe("private.host_note_unchanged", note_unchanged && no_new_file);
    grader.judge(
        "ro-bind-erofs",
        bind_read_only && append == "EROFS" && create == "EROFS" && note_unchanged && no_new_file,
        &[
            "private.bind_mount_read_only",
            "private.append_to_note",
            "private.create_file",
            "private.host_note_unchanged",
        ],
        format!("append: {append}; create: {create}; note unchanged: {note_unchanged}"),
    );
    run.release()?;
    Ok(())
}

fn in_jail(jail: &Path, absolute: &Path) -> PathBuf {
    jail.join(absolute.strip_prefix("/").unwrap_or(absolute))
}

fn find_child(run: &mut LabRun, comm: &str) -> Result<i32> {
    let found: Vec<i32> =
        procfs::children(run.pid()).into_iter().filter(|pid| procfs::comm(*pid).as_deref() == Some(comm)).collect();
    match found.as_slice() {
        [pid] => {
            run.track_pid(*pid);
            Ok(*pid)
        }
        _ => Err(Error::Lab {
            lab: "chroot-jail".into(),
            message: format!("expected one child of the lab named `{comm}`, found {found:?}"),
        }),
    }
}

/// chroot(jail) and exec `program` as `echo PROBE_WORD`, in a forked child.
fn exec_in_jail(jail: &Path, program: &str) -> Result<ProbeOutcome> {
    let path = CString::new(program).map_err(|_| Error::parse("program path", program))?;
    let argv = [c"echo".to_owned(), CString::new(PROBE_WORD).map_err(|_| Error::parse("word", PROBE_WORD))?];
    forked::probe("exec in the jail", PROBE_TIMEOUT, |out| {
        chroot(jail)?;
        chdir("/")?;
        forked::pipe_as_stdout(out)?;
        execv(&path, &argv).map(drop)
    })
}

fn errno_of(outcome: &ProbeOutcome) -> Option<Errno> {
    match outcome.status {
        Err(ProbeFailure::Errno(errno)) => Some(errno),
        _ => None,
    }
}

fn printed_probe_word(outcome: &ProbeOutcome) -> bool {
    outcome.status.is_ok() && outcome.output.trim() == PROBE_WORD
}

fn describe(outcome: &ProbeOutcome) -> String {
    match outcome.status {
        Ok(()) if outcome.output.trim() == PROBE_WORD => "runs".to_string(),
        Ok(()) => format!("runs, printed {:?}", outcome.output.trim()),
        Err(ProbeFailure::Errno(errno)) => format!("{errno:?}"),
        Err(ProbeFailure::Signaled(signal)) => format!("killed by {}", signal.as_str()),
    }
}

struct RootView {
    listing: Vec<String>,
    /// (device, inode) of where `cd ..` twice from / ends.
    dotdot: Option<(u64, u64)>,
}

/// Enters the jailed process's root (like `nsenter --root`) in a forked child, lists /,
/// and walks .. twice.
fn look_from_root_of(pid: i32) -> Result<RootView> {
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let outcome = forked::probe("look around the jail", PROBE_TIMEOUT, |out| {
        chroot(&root)?;
        chdir("/")?;
        let names = list(Path::new("/")).map_err(|_| Errno::EIO)?;
        forked::say(out, &format!("ls {}", names.join(" ")));
        chdir("..")?;
        chdir("..")?;
        let here = nix::sys::stat::stat(".")?;
        forked::say(out, &format!("dotdot {} {}", here.st_dev, here.st_ino));
        Ok(())
    })?;
    let mut view = RootView { listing: Vec::new(), dotdot: None };
    for line in outcome.output.lines() {
        if let Some(names) = line.strip_prefix("ls ") {
            view.listing = names.split_whitespace().map(String::from).collect();
        } else if let Some(ids) = line.strip_prefix("dotdot ") {
            let mut numbers = ids.split_whitespace().filter_map(|n| n.parse::<u64>().ok());
            view.dotdot = numbers.next().zip(numbers.next());
        }
    }
    Ok(view)
}

fn chroot_as_nobody(jail: &Path) -> Result<String> {
    let outcome = forked::probe("chroot as nobody", PROBE_TIMEOUT, |_| {
        nix::unistd::setgroups(&[])?;
        nix::unistd::setresgid(Gid::from_raw(NOBODY), Gid::from_raw(NOBODY), Gid::from_raw(NOBODY))?;
        nix::unistd::setresuid(Uid::from_raw(NOBODY), Uid::from_raw(NOBODY), Uid::from_raw(NOBODY))?;
        chroot(jail)
    })?;
    Ok(match outcome.status {
        Ok(()) => "chroot succeeded".to_string(),
        Err(ProbeFailure::Errno(errno)) => format!("{errno:?}"),
        Err(ProbeFailure::Signaled(signal)) => format!("probe killed by {}", signal.as_str()),
    })
}

fn write_attempt(attempt: impl FnOnce() -> std::io::Result<()>) -> String {
    match attempt() {
        Ok(()) => "the write went through".to_string(),
        Err(e) => e.raw_os_error().map(|code| format!("{:?}", Errno::from_raw(code))).unwrap_or_else(|| e.to_string()),
    }
}

fn list(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(Error::io("list", dir))?;
    let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    Ok(names)
}
