//! Cleanup on every path: the lab registers the children it started and the directories
//! it made; on SIGINT, SIGTERM or SIGHUP (Ctrl-C, the harness, a closed terminal), and on
//! an error, [`run_all`] kills those children by PID and removes those directories.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::{LabError, Result};

#[derive(Default)]
struct Registry {
    children: Vec<Pid>,
    dirs: Vec<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { children: Vec::new(), dirs: Vec::new() });

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    // A panic while holding the lock must not stop the cleanup: use the data anyway.
    let mut guard = REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&mut guard)
}

/// Installs the signal handling thread. Call once, first thing in `main`.
pub fn install() -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| LabError::Setup(format!("cannot install the signal handlers: {e}")))?;
    std::thread::Builder::new()
        .name("lab-cleanup".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                eprintln!("\nlab: caught signal {signal}: cleaning up before exiting");
                run_all();
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
    });
}

/// Kills every tracked child (SIGKILL, by PID, then reaps it) and removes tracked dirs.
pub fn run_all() {
    let (children, dirs) = with_registry(|r| (std::mem::take(&mut r.children), std::mem::take(&mut r.dirs)));
    for pid in children {
        if kill(pid, Signal::SIGKILL).is_ok() {
            let _ = waitpid(pid, None);
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
