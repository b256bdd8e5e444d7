//! Lab chroot-jail: build a directory tree, make the kernel treat it as `/` for one
//! process, and find out what chroot does and does not isolate. Read labs/chroot-jail/README.md.
//!
//! Everything lives in the workdir:
//!
//! ```text
//! <workdir>/jail/        busybox rootfs + one dynamically linked program (/usr/bin/echo)
//! <workdir>/host-data/   a host directory bound read-only at /mnt/host-data in the jail
//! ```

use std::ffi::CString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use labkit::protocol::chroot_jail::*;
use labkit::{child, cleanup, elf, ns_link, rootfs, Lab, LabArgs, LabError, Mode, Voice};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::WaitStatus;
use nix::unistd::{chdir, chroot, execv, getcwd, getpid, Gid, Pid, Uid};
use serde_json::json;

/// Build a chroot jail from busybox, lock a process in it, and test what chroot isolates.
/// Run it as root, in a VM: `sudo target/debug/lab-chroot-jail --step`.
#[derive(Parser)]
#[command(name = "lab-chroot-jail", version)]
struct Cli {
    #[command(flatten)]
    lab: LabArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    labkit::main("lab-chroot-jail", include_str!("main.rs"), || run(&cli.lab))
}

/// The uid and gid of `nobody`: a user with no capabilities.
const NOBODY: u32 = 65534;

fn run(args: &LabArgs) -> Result<()> {
    labkit::require_root("lab-chroot-jail", "chroot(2) and mount(2)")?;
    let mut lab = Lab::new(args, "Lab chroot-jail: a directory the kernel treats as /", 5);
    let workdir = labkit::Workdir::open(args, "chroot-jail")?;
    let busybox = rootfs::find_static_busybox()?;
    let program = which::which(DYNAMIC_PROGRAM)
        .with_context(|| format!("`{DYNAMIC_PROGRAM}` is not on PATH (package coreutils)"))?;
    let loader = elf::interpreter(&program)?.with_context(|| {
        format!("{} is statically linked here; this lab needs a dynamically linked one", program.display())
    })?;
    let jail = workdir.path().join(JAIL_DIR);
    if jail.exists() {
        anyhow::bail!("{} already exists (left by an earlier run?): remove it and run again", jail.display());
    }
    labkit::create_searchable_dir(&jail)?;
    cleanup::track_dir(&jail);
    let voice = lab.voice();

    // ── Step 1 ───────────────────────────────────────────────────────────────
    lab.step(
        "Build a jail and copy one dynamically linked program into it, alone",
        "mkdir, copy; then in a child: chroot(jail), execve(\"/usr/bin/echo\")",
        "mkdir -p jail/usr/bin && cp /usr/bin/echo jail/usr/bin/ && chroot jail /usr/bin/echo hi",
    );
    rootfs::build_busybox_rootfs(&jail, &busybox)?;
    let program_in_jail = jail.join(DYNAMIC_PROGRAM_IN_JAIL.trim_start_matches('/'));
    std::fs::copy(&program, &program_in_jail).map_err(LabError::io("copy", &program))?;
    lab.saw(&format!(
        "busybox rootfs in {}; {} copied to {DYNAMIC_PROGRAM_IN_JAIL}",
        jail.display(),
        program.display()
    ));
    let alone = exec_in_jail(lab.mode(), &jail, DYNAMIC_PROGRAM_IN_JAIL)?;
    lab.saw(&format!("inside the jail, execve(\"{DYNAMIC_PROGRAM_IN_JAIL}\") -> {}", describe_exec(alone)));
    lab.why(&format!(
        "the file is there, but it names an interpreter, {} (its PT_INTERP header), and that path does not exist inside the jail: the kernel reports ENOENT.",
        loader.display()
    ));
    let static_busybox = exec_in_jail(lab.mode(), &jail, BUSYBOX_IN_JAIL)?;
    lab.saw(&format!("the static {BUSYBOX_IN_JAIL} needs no interpreter -> {}", describe_exec(static_busybox)));
    lab.hold(BINARY_ALONE, json!({ "jail": jail }))?;

    // ── Step 2 ───────────────────────────────────────────────────────────────
    lab.step(
        "Copy the loader and the libraries the program needs",
        "read PT_INTERP and the needed libraries; copy them to the same paths in the jail",
        &format!(
            "ldd {0}; cp --parents {1} <libs...> jail/; chroot jail {DYNAMIC_PROGRAM_IN_JAIL} hi",
            program.display(),
            loader.display()
        ),
    );
    {
        // STUDENT: begin copy-libraries
        // Hint: the loader is the PT_INTERP path (`loader`), `libraries_of` asks ldd for the
        // rest; labkit::rootfs has a copy that keeps each file's path inside the jail.
        for library in libraries_of(&program, &loader)? {
            rootfs::copy_into(&jail, &library)?;
            lab.saw(&format!("copied {}", library.display()));
        }
        // STUDENT: end copy-libraries
    }
    let with_libraries = exec_in_jail(lab.mode(), &jail, DYNAMIC_PROGRAM_IN_JAIL)?;
    lab.saw(&format!("execve(\"{DYNAMIC_PROGRAM_IN_JAIL}\") inside the jail -> {}", describe_exec(with_libraries)));
    lab.hold(WITH_LIBRARIES, json!({ "jail": jail }))?;

    // ── Step 3 ───────────────────────────────────────────────────────────────
    lab.step(
        "Lock a process in the jail and look around",
        "chroot(jail); chdir(\"/\"); chdir(\"..\")",
        "chroot jail /bin/sh -c 'ls /; cd ..; cd ..; pwd; ls'",
    );
    let link = child::Link::new()?;
    let jail_for_child = jail.clone();
    let jailed = child::spawn(JAILED_COMM, move || exit_code(jailed_shell(voice, &jail_for_child, link.child_side())))?;
    let mut jailed_end = link.lab_side(jailed)?;
    jailed_end.wait_ready("entering the jail", "did enter_jail fail (its error would be above)?")?;
    lab.saw(&format!("on the host, readlink /proc/{jailed}/root -> {}", read_root(jailed)));
    let (theirs, mine) = (ns_link(&jailed.to_string(), "mnt"), ns_link("self", "mnt"));
    let same = if theirs == mine { "the same" } else { "a different one" };
    lab.saw(&format!("its mount namespace is {theirs}, mine is {mine}: {same}"));
    lab.hold(JAILED, json!({ "jailed": jailed.as_raw() }))?;
    jailed_end.release();
    child::wait(jailed, "leaving the jail")?;

    // ── Step 4 ───────────────────────────────────────────────────────────────
    lab.step(
        "Mount proc and a read-only host directory in the jail, in a private mount namespace",
        "unshare(CLONE_NEWNS); mount(\"/\", MS_REC|MS_PRIVATE); mount(\"proc\"); mount(MS_BIND); mount(MS_BIND|MS_REMOUNT|MS_RDONLY); chroot",
        "unshare --mount --propagation private sh -c 'mount -t proc proc jail/proc; mount --bind -o ro host-data jail/mnt/host-data; chroot jail sh'",
    );
    let host_data = workdir.path().join(HOST_DATA_DIR);
    if !host_data.join(HOST_NOTE).exists() {
        // By hand there is no harness to plant it, so the lab does.
        std::fs::create_dir_all(&host_data).map_err(LabError::io("create directory", &host_data))?;
        let note = host_data.join(HOST_NOTE);
        std::fs::write(&note, "written on the host\n").map_err(LabError::io("write", &note))?;
        cleanup::track_dir(&host_data);
    }
    let link = child::Link::new()?;
    let (jail_for_child, data_for_child) = (jail.clone(), host_data.clone());
    let private = child::spawn(PRIVATE_COMM, move || {
        exit_code(private_jail(voice, &jail_for_child, &data_for_child, link.child_side()))
    })?;
    let mut private_end = link.lab_side(private)?;
    private_end
        .wait_ready("mounting in its private namespace", "did private_mounts fail (its error would be above)?")?;
    lab.saw(&format!(
        "its mount namespace is {}, mine is {}",
        ns_link(&private.to_string(), "mnt"),
        ns_link("self", "mnt")
    ));
    // Its mount table shows paths as seen from its root, the jail: all of it is in the jail.
    let theirs = mounts(&private.to_string());
    let jail_on_host = jail.canonicalize().map_err(LabError::io("resolve", &jail))?;
    let mine = mounts("self").into_iter().filter(|m| Path::new(&m.point).starts_with(&jail_on_host)).count();
    lab.saw(&format!(
        "its mount table, from its root: {}; mounts under the jail in mine: {mine}",
        theirs.iter().map(Mount::describe).collect::<Vec<_>>().join(", ")
    ));
    let host_init = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    lab.saw(&format!("on the host, PID 1 is `{}`", host_init.trim()));
    lab.hold(PRIVATE_MOUNTS, json!({ "private": private.as_raw() }))?;
    private_end.release();
    child::wait(private, "leaving its private namespace")?;

    // ── Step 5 ───────────────────────────────────────────────────────────────
    lab.step(
        "Try chroot as an ordinary user",
        "setresgid(65534); setresuid(65534); chroot(jail)",
        "setpriv --reuid=65534 --regid=65534 --clear-groups chroot jail /bin/sh",
    );
    let as_nobody = run_in_child("chroot-nobody", "trying chroot as nobody", || {
        nix::unistd::setgroups(&[])?;
        nix::unistd::setresgid(Gid::from_raw(NOBODY), Gid::from_raw(NOBODY), Gid::from_raw(NOBODY))?;
        nix::unistd::setresuid(Uid::from_raw(NOBODY), Uid::from_raw(NOBODY), Uid::from_raw(NOBODY))?;
        chroot(&jail)
    })?;
    lab.saw(&format!("chroot as uid {NOBODY} -> {}", describe_exec(as_nobody)));
    lab.why("chroot needs CAP_SYS_CHROOT: an ordinary user could otherwise plant a fake /etc/passwd and run a set-user-ID program in it.");

    cleanup::remove_made_dirs()?;
    lab.done("Done: the lab removed the jail and its workdir. Now answer the questions on the lab sheet.");
    Ok(())
}

/// Runs `body` in a forked child; its errno (or success) comes back as the exit status.
/// (A panic's status, 101, would read as ENETUNREACH: `child::wait` takes it first.)
fn run_in_child(name: &str, doing: &str, body: impl FnOnce() -> nix::Result<()>) -> Result<Result<(), Errno>> {
    let pid = child::spawn(name, || match body() {
        Ok(()) => 0,
        Err(errno) => errno as i32,
    })?;
    let status = child::wait(pid, doing)?;
    Ok(match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, code) => Err(Errno::from_raw(code)),
        _ => Err(Errno::UnknownErrno),
    })
}

/// chroot into `jail` in a child and exec `program` there.
fn exec_in_jail(mode: Mode, jail: &Path, program: &str) -> Result<Result<(), Errno>> {
    let path = CString::new(program).context("program path")?;
    // argv[0] is "echo" for both programs: busybox picks its applet by that name.
    let argv = [
        CString::new(DYNAMIC_PROGRAM).context("argv[0]")?,
        CString::new("hello from inside the jail").context("argument")?,
    ];
    run_in_child("jail-exec", &format!("running {program} in the jail"), || {
        enter_jail(jail)?;
        if mode == Mode::Held {
            // The harness reads stdout for the protocol: the program speaks on stderr.
            nix::unistd::dup2(2, 1)?;
        }
        execv(&path, &argv).map(|_| ())
    })
}

/// Makes `jail` this process's root directory, and its working directory too: a working
/// directory left outside the jail would be a way out.
fn enter_jail(jail: &Path) -> nix::Result<()> {
    // STUDENT: begin enter-jail
    // Hint: chroot(2) then chdir(2), both in nix::unistd. Where is the working directory
    // after chroot alone?
    chroot(jail)?;
    chdir("/")
    // STUDENT: end enter-jail
}

/// Step 3's child: in the jail, it looks around, says it is ready and waits.
fn jailed_shell(voice: Voice, jail: &Path, mut link: child::ChildEnd) -> Result<()> {
    enter_jail(jail).map_err(LabError::sys("enter_jail", jail.display()))?;
    voice.inside(&format!("ls / -> {}", list(Path::new("/")).join(" ")));
    for _ in 0..2 {
        chdir("..").map_err(LabError::sys("chdir", ".."))?;
    }
    voice.inside(&format!("cd ..; cd ..; pwd -> {}", getcwd().map(|p| p.display().to_string()).unwrap_or_default()));
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    voice.inside(&format!("cat /etc/hostname -> {}", hostname.trim()));
    link.ready();
    while link.next_command().is_some() {}
    Ok(())
}

/// Step 4's child: a private mount namespace, proc and a read-only bind in the jail.
fn private_jail(voice: Voice, jail: &Path, host_data: &Path, mut link: child::ChildEnd) -> Result<()> {
    private_mounts(jail, host_data)?;
    enter_jail(jail).map_err(LabError::sys("enter_jail", jail.display()))?;
    let pids = list(Path::new("/proc")).into_iter().filter(|n| n.parse::<u32>().is_ok()).count();
    let first = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let me = getpid();
    let listed = if Path::new(&format!("/proc/{me}")).exists() { "listed" } else { "not listed" };
    voice.inside(&format!("/proc lists {pids} processes; PID 1 is `{}`; my own PID, {me}, is {listed}", first.trim()));
    let note = Path::new(BIND_TARGET_IN_JAIL).join(HOST_NOTE);
    let write = std::fs::OpenOptions::new().append(true).open(&note);
    voice.inside(&format!(
        "echo >> {} -> {}",
        note.display(),
        match write {
            Ok(_) => "it opened for writing!".to_string(),
            Err(e) => e.to_string(),
        }
    ));
    link.ready();
    while link.next_command().is_some() {}
    Ok(())
}

/// Step 4's mounts, in a mount namespace of the child's own: proc in the jail, and the
/// host's data bound read-only into it.
fn private_mounts(jail: &Path, host_data: &Path) -> Result<()> {
    // STUDENT: begin private-mounts
    // Hint: a mount namespace of its own with "/" private (mount_namespaces(7)) before any
    // mount; then proc, the bind, and the remount that makes a bind read-only (mount(8)).
    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys("unshare", "CLONE_NEWNS"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
    let proc_dir = jail.join("proc");
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(LabError::sys("mount(\"proc\")", proc_dir.display()))?;
    let target = jail.join(BIND_TARGET_IN_JAIL.trim_start_matches('/'));
    std::fs::create_dir_all(&target).map_err(LabError::io("create directory", &target))?;
    mount(Some(host_data), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(LabError::sys("mount(MS_BIND)", target.display()))?;
    // A bind mount ignores MS_RDONLY when it is made: read-only takes a remount.
    mount(
        None::<&str>,
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(LabError::sys("mount(MS_BIND|MS_REMOUNT|MS_RDONLY)", target.display()))?;
    Ok(())
    // STUDENT: end private-mounts
}

/// The libraries `program` needs, with the loader first, from `ldd`.
fn libraries_of(program: &Path, loader: &Path) -> Result<Vec<PathBuf>> {
    let output = duct::cmd!("ldd", program).stderr_to_stdout().read().context("running ldd (package libc-bin)")?;
    let mut libraries = vec![loader.to_path_buf()];
    for line in output.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line.split("=>").last().and_then(|rest| rest.split_whitespace().next());
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            let path = PathBuf::from(path);
            if !libraries.contains(&path) {
                libraries.push(path);
            }
        }
    }
    Ok(libraries)
}

fn exit_code(outcome: Result<()>) -> i32 {
    match outcome {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("lab-chroot-jail (child): {error:#}");
            1
        }
    }
}

fn describe_exec(outcome: Result<(), Errno>) -> String {
    match outcome {
        Ok(()) => "works".to_string(),
        Err(errno) => format!("{errno:?} ({})", errno.desc()),
    }
}

fn read_root(pid: Pid) -> String {
    std::fs::read_link(format!("/proc/{pid}/root")).map(|p| p.display().to_string()).unwrap_or_else(|e| e.to_string())
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// One line of /proc/<pid>/mountinfo, the fields the lab shows.
struct Mount {
    /// Where it is mounted, as seen from that process's root.
    point: String,
    fs_type: String,
    read_only: bool,
}

impl Mount {
    fn describe(&self) -> String {
        format!("{} ({}, {})", self.point, self.fs_type, if self.read_only { "ro" } else { "rw" })
    }
}

/// The mount table of a process ("self" for the lab), from its mountinfo.
fn mounts(pid: &str) -> Vec<Mount> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            // "id parent major:minor root point options [optional...] - type source super-options"
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split_whitespace().collect();
            Some(Mount {
                point: fields.get(4)?.to_string(),
                fs_type: right.split_whitespace().next()?.to_string(),
                read_only: fields.get(5)?.split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_student_regions_are_the_expected_ones() {
        let regions = labkit::regions::parse(include_str!("main.rs")).expect("regions parse");
        let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["copy-libraries", "enter-jail", "private-mounts"]);
    }
}
