//! Cleanup on every path: the lab registers the children it started and the directories
//! it made; on SIGINT, SIGTERM or SIGHUP (Ctrl-C, the harness, a closed terminal), and on
//! an error, [`run_all`] kills those children by PID and removes those directories.
//!
//! The lab is also a child subreaper: a process that its children leave behind (an
//! orphan of a lab that went wrong, say) becomes the lab's child instead of the host
//! init's, and [`run_all`] kills it too. Inside a PID namespace the namespace's init
//! still adopts the orphans, as pid_namespaces(7) says: the labs show nothing different.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, Pid};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::{LabError, Result};

/// Each round kills one generation of the lab's descendants; labs make at most three.
const ADOPTION_ROUNDS: usize = 8;

#[derive(Default)]
struct Registry {
    children: Vec<Pid>,
    dirs: Vec<PathBuf>,
    /// Commands that undo what the lab made outside itself (`docker rm -f <name>`).
    undo: Vec<Vec<String>>,
    /// Values written to files before the children are killed: "THAWED" into a v1
    /// freezer.state, without which a frozen child's SIGKILL waits forever.
    before_kill: Vec<(PathBuf, String)>,
}

static REGISTRY: Mutex<Registry> =
    Mutex::new(Registry { children: Vec::new(), dirs: Vec::new(), undo: Vec::new(), before_kill: Vec::new() });

/// Held for the whole of a cleanup. On Ctrl-C in a terminal the signal reaches the lab's
/// children too: the main thread sees its child die and starts its own cleanup while the
/// signal thread is still in the middle of one. Without this lock the main thread would
/// find the registry already emptied, return at once, and end the process before the
/// signal thread had removed the lab's directories.
static CLEANING: Mutex<()> = Mutex::new(());

fn lock_cleaning() -> std::sync::MutexGuard<'static, ()> {
    CLEANING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    // A panic while holding the lock must not stop the cleanup: use the data anyway.
    let mut guard = REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&mut guard)
}

/// Makes the lab a subreaper and installs the signal handling thread. Call once, first
/// thing in `main`.
pub fn install() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(LabError::sys("prctl(PR_SET_CHILD_SUBREAPER)", "the lab"))?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| LabError::Setup(format!("cannot install the signal handlers: {e}")))?;
    std::thread::Builder::new()
        .name("lab-cleanup".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                eprintln!("\nlab: caught signal {signal}: cleaning up before exiting");
                // Exit with the lock still held: the main thread, waiting for it, never
                // returns a status of its own over the signal's.
                let _cleaning = lock_cleaning();
                clean_up_everything();
                std::process::exit(128 + signal);
            }
        })
        .map_err(|e| LabError::Setup(format!("cannot start the cleanup thread: {e}")))?;
    Ok(())
}

pub fn track_child(pid: Pid) {
    with_registry(|r| r.children.push(pid));
}

/// The child was reaped by the lab itself: nothing to kill any more.
pub fn forget_child(pid: Pid) {
    with_registry(|r| r.children.retain(|p| *p != pid));
}

pub fn track_dir(path: &Path) {
    with_registry(|r| r.dirs.push(path.to_path_buf()));
}

/// Registers a command (program and arguments) that undoes something the lab made outside
/// its own processes and directories, such as a Docker container: [`run_all`] runs it
/// (newest first) after killing the lab's children.
pub fn track_undo(command: &[&str]) {
    with_registry(|r| r.undo.push(command.iter().map(|s| s.to_string()).collect()));
}

/// The lab undid it itself: forget the command registered with exactly these words.
pub fn forget_undo(command: &[&str]) {
    with_registry(|r| r.undo.retain(|c| c.iter().map(String::as_str).ne(command.iter().copied())));
}

/// Registers a value to write into `path` (one write(2)) before the children are killed.
pub fn track_write_before_kill(path: &Path, value: &str) {
    with_registry(|r| r.before_kill.push((path.to_path_buf(), value.to_string())));
}

/// Forgets the writes registered for `path`.
pub fn forget_write_before_kill(path: &Path) {
    with_registry(|r| r.before_kill.retain(|(p, _)| p != path));
}

/// Removes every directory the lab made (newest first) and forgets them: how a lab that
/// finished cleans up, by the same list Ctrl-C and errors use.
pub fn remove_made_dirs() -> Result<()> {
    let dirs = with_registry(|r| std::mem::take(&mut r.dirs));
    for dir in dirs.iter().rev() {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LabError::io("remove", dir)(e)),
        }
    }
    Ok(())
}

/// Drops everything tracked without acting on it (a forked child starts with none).
pub fn forget_all() {
    with_registry(|r| {
        r.children.clear();
        r.dirs.clear();
        r.undo.clear();
        r.before_kill.clear();
    });
}

/// Kills every tracked child (SIGKILL, by PID, then reaps it), then every process the lab
/// adopted as a subreaper, and removes tracked dirs. If a signal's cleanup is under way on
/// the cleanup thread, waits until it is done (then the process exits with the signal).
pub fn run_all() {
    let _cleaning = lock_cleaning();
    clean_up_everything();
}

/// Waits for a signal's cleanup that is under way, if any: a lab that finished calls this
/// before it exits, so that Ctrl-C at its very end still removes everything.
pub fn settle() {
    drop(lock_cleaning());
}

/// How long one undo command may take.
const UNDO_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

fn clean_up_everything() {
    let (children, dirs, undo, before_kill) = with_registry(|r| {
        (
            std::mem::take(&mut r.children),
            std::mem::take(&mut r.dirs),
            std::mem::take(&mut r.undo),
            std::mem::take(&mut r.before_kill),
        )
    });
    for (path, value) in &before_kill {
        use std::io::Write;
        let written =
            std::fs::OpenOptions::new().write(true).open(path).and_then(|mut f| f.write_all(value.as_bytes()));
        if let Err(e) = written {
            eprintln!("lab: could not write {value} into {}: {e}", path.display());
        }
    }
    for pid in &children {
        let _ = kill(*pid, Signal::SIGKILL);
    }
    reap(&children);
    kill_adopted();
    for command in undo.iter().rev() {
        if let Some((program, args)) = command.split_first() {
            let quiet = std::process::Stdio::null();
            let started = std::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(quiet)
                .stderr(std::process::Stdio::null())
                .spawn();
            // An undo (`docker rm -f`) against a daemon that hangs must not hang the lab's exit.
            let ran = started.and_then(|mut child| {
                let exited = crate::child::exited_by(&child, std::time::Instant::now() + UNDO_DEADLINE);
                if !exited.as_ref().is_ok_and(|e| *e) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(std::io::Error::other(format!("did not finish within {UNDO_DEADLINE:?} ({exited:?})")));
                }
                child.wait()
            });
            if !ran.as_ref().is_ok_and(|s| s.success()) {
                eprintln!("lab: could not undo with `{}`: {ran:?}", command.join(" "));
            }
        }
    }
    for dir in dirs.iter().rev() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("lab: could not remove {}: {e}", dir.display());
            }
        }
    }
}

/// Kills and reaps every child of the lab that it did not fork itself: processes its
/// children left behind, adopted by the lab as their subreaper. Returns them as
/// "comm (PID n)". A lab that ends well calls this too: it leaves nothing behind, and
/// says what it had to kill.
pub fn kill_adopted() -> Vec<String> {
    let mut killed = Vec::new();
    // Killing a child can hand us its own children: a few rounds, until none is left.
    for _ in 0..ADOPTION_ROUNDS {
        let own = with_registry(|r| r.children.clone());
        let adopted: Vec<Pid> = children_of(getpid()).into_iter().filter(|pid| !own.contains(pid)).collect();
        if adopted.is_empty() {
            break;
        }
        for pid in &adopted {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            // A zombie is already dead: reap it, nothing to say.
            if !matches!(waitpid(*pid, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive)) {
                continue;
            }
            if kill(*pid, Signal::SIGKILL).is_ok() {
                killed.push(format!("{} (PID {pid})", comm.trim()));
            }
        }
        reap(&adopted);
    }
    killed
}

/// Reaps `pids` (each sent SIGKILL already) in whatever order they end. Waiting for one
/// of them in particular could wait forever: a PID namespace's init that was adopted here
/// does not finish dying before the zombies of its namespace, adopted here too, are reaped.
fn reap(pids: &[Pid]) {
    let mut left = pids.to_vec();
    loop {
        let mine = children_of(getpid());
        left.retain(|pid| mine.contains(pid));
        if left.is_empty() {
            return;
        }
        match waitpid(None::<Pid>, None) {
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    left.retain(|p| *p != pid);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// The live children of `parent`, from the PPid field of every /proc/<pid>/stat.
fn children_of(parent: Pid) -> Vec<Pid> {
    let Ok(processes) = procfs::process::all_processes() else { return Vec::new() };
    processes
        .flatten()
        .filter(|process| process.stat().is_ok_and(|stat| stat.ppid == parent.as_raw()))
        .map(|process| Pid::from_raw(process.pid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_of_finds_a_child_by_its_ppid() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().expect("spawn sleep");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
        let found = children_of(getpid()).contains(&pid);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found, "{pid} is not among the children of {}", getpid());
    }
}
