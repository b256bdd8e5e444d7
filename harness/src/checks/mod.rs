//! One module per lab: its facts, its verdicts (each decided on facts alone), what it
//! plants before the run, and the observer that looks at the held lab from outside at each
//! stage. Helpers shared by the labs' observers live here.

pub mod cgroup_limits;
pub mod chroot_escape;
pub mod chroot_jail;
pub mod nsenter_join;
pub mod pid_ns;
pub mod pivot_root;
pub mod rootfs_import;
pub mod userns_maps;

use std::path::Path;

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::probe::procfs;
use crate::run::LabRun;

/// Who a kill from inside a PID namespace aims at.
#[derive(Debug, Clone, Copy)]
pub enum KillTarget {
    /// A PID as the namespace numbers its processes.
    Inside(i32),
    /// The probe itself, by its PID on the host (invisible inside unless it is there).
    TheProbeOnTheHost,
}

/// A forked probe P joins `pid_ns` for its children (setns moves only those), forks G
/// inside, and G sends `signal` to `target`. The probe's output is "kill succeeded" or the
/// errno's name; a probe killed by its own signal is reported as such by `ProbeFailure`.
pub fn kill_from_inside(
    what: &str,
    pid_ns: std::os::fd::BorrowedFd,
    target: KillTarget,
    signal: nix::sys::signal::Signal,
    timeout: std::time::Duration,
) -> Result<crate::probe::forked::ProbeOutcome> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, getpid, ForkResult, Pid};
    crate::probe::forked::probe(what, timeout, |out| {
        nix::sched::setns(pid_ns, nix::sched::CloneFlags::CLONE_NEWPID)?;
        let target = match target {
            KillTarget::Inside(pid) => Pid::from_raw(pid),
            KillTarget::TheProbeOnTheHost => getpid(),
        };
        // SAFETY: the grandchild only calls kill and _exit.
        match unsafe { fork() }? {
            ForkResult::Child => {
                let code = match nix::sys::signal::kill(target, signal) {
                    Ok(()) => 0,
                    Err(errno) => errno as i32,
                };
                // SAFETY: _exit has no preconditions (nix 0.29 has no wrapper).
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                let result = match waitpid(child, None)? {
                    WaitStatus::Exited(_, 0) => "kill succeeded".to_string(),
                    WaitStatus::Exited(_, code) => errno_name(Errno::from_raw(code)),
                    other => format!("{other:?}"),
                };
                crate::probe::forked::say(out, &result);
                Ok(())
            }
        }
    })
}

/// "ENOENT", never the number nor a sentence.
pub fn errno_name(errno: Errno) -> String {
    format!("{errno:?}")
}

/// The one child of the lab named `comm`, found by the harness (not taken from the lab's
/// claims), its host PID redacted from then on.
pub fn find_child_named(run: &mut LabRun, comm: &str) -> Result<i32> {
    let found: Vec<i32> =
        procfs::children(run.pid()).into_iter().filter(|pid| procfs::comm(*pid).as_deref() == Some(comm)).collect();
    match found.as_slice() {
        [pid] => {
            run.track_pid(*pid);
            Ok(*pid)
        }
        [] => Err(Error::Lab {
            lab: run.lab().to_string(),
            message: format!("no child of the lab is named `{comm}` at this stage (did it fork, and did it die?)"),
        }),
        many => Err(Error::Lab {
            lab: run.lab().to_string(),
            message: format!("{} children of the lab are named `{comm}`; expected one", many.len()),
        }),
    }
}

/// What `what_is_mounted_at` says of a fresh proc mounted there.
pub const PROC_MOUNTED: &str = "proc, mount root /";

/// What a process sees mounted at `point` (in its own mount table, whose paths are relative
/// to its root): the topmost mount there, its type and the part of its filesystem it shows
/// ("proc, mount root /" for a fresh proc; a bind of some /proc/<pid>/fd shows another
/// root). "nothing" if no mount is there (a directory, or a symlink, of the filesystem below).
pub fn what_is_mounted_at(mounts: &[procfs::Mount], point: &str) -> String {
    match mounts.iter().rev().find(|m| m.mount_point == point) {
        Some(mount) => format!("{}, mount root {}", mount.fs_type, mount.root),
        None => "nothing".to_string(),
    }
}

/// (device, inode) of what `path` names, following symlinks; `None` if it does not exist.
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    nix::sys::stat::stat(path).ok().map(|st| (st.st_dev, st.st_ino))
}

/// The names in a directory, sorted.
pub fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(Error::io("list", dir))?;
    let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    Ok(names)
}

/// This process's hostname (its UTS namespace's).
pub fn hostname() -> String {
    nix::sys::utsname::uname().map(|u| u.nodename().to_string_lossy().into_owned()).unwrap_or_default()
}

/// Opens /proc/<pid>/ns/<kind>: held, it names the namespace even after the process ends.
pub fn open_ns(pid: i32, kind: &str) -> Result<std::fs::File> {
    let path = format!("/proc/{pid}/ns/{kind}");
    std::fs::File::open(&path).map_err(Error::io("open", path))
}

/// The hostname in the UTS namespace of process `pid`, as a forked probe that enters it
/// sees it (setns in a child: never in the harness's own threads).
pub fn hostname_of(pid: i32, timeout: std::time::Duration) -> Result<String> {
    use std::os::fd::AsFd;
    let ns = open_ns(pid, "uts")?;
    let outcome = crate::probe::forked::probe("read a container's hostname", timeout, |out| {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWUTS)?;
        crate::probe::forked::say(out, &hostname());
        Ok(())
    })?;
    Ok(match outcome.status {
        Ok(()) => outcome.output.trim().to_string(),
        Err(failure) => format!("not read ({failure:?})"),
    })
}
