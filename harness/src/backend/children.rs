//! The processes a VM backend starts on this machine (qemu and its KVM probe; `vagrant
//! ssh`, `multipass exec`), kept so that the interrupt handler can kill them: [`Children::close`] kills every one registered and
//! refuses any later spawn. A spawn holds the lock from the check to the registration, so
//! that no process can start between the handler's close and its exit without being
//! killed: the close waits for a spawn under way and then finds its process.

use std::process::Child;
use std::sync::{Mutex, MutexGuard};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, Pid};

/// Processes started by one part of cilab, each with what its owner needs to clean up
/// after it (`T`: a directory, a command to run).
#[derive(Debug)]
pub struct Children<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    closed: bool,
    running: Vec<(i32, T)>,
}

/// Why [`Children::spawn`] started nothing.
#[derive(Debug)]
pub enum SpawnError {
    /// cilab is exiting after an interrupt.
    Closed,
    /// The spawn failed.
    Spawn(std::io::Error),
}

impl<T> Children<T> {
    pub const fn new() -> Self {
        Children { state: Mutex::new(State { closed: false, running: Vec::new() }) }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `spawn` (it starts one process) and registers the process with `data`, unless
    /// the registry is closed: then `spawn` is not called. All under the lock, so that a
    /// [`close`](Self::close) under way waits for the process and kills it.
    pub fn spawn(&self, data: T, spawn: impl FnOnce() -> std::io::Result<Child>) -> Result<Child, SpawnError> {
        let mut state = self.lock();
        if state.closed {
            return Err(SpawnError::Closed);
        }
        let child = spawn().map_err(SpawnError::Spawn)?;
        match i32::try_from(child.id()) {
            Ok(pid) => state.running.push((pid, data)),
            // No pid_t is that large; a process that cannot be named cannot be killed
            // later, so it is killed now.
            Err(_) => {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                return Err(SpawnError::Spawn(std::io::Error::other("a pid beyond pid_t")));
            }
        }
        Ok(child)
    }

    /// Takes the process `pid` out, before its owner kills and reaps it: its data, or
    /// `None` when it is not there ([`close`](Self::close) took it, and killed it).
    pub fn remove(&self, pid: i32) -> Option<T> {
        let mut state = self.lock();
        let at = state.running.iter().position(|(p, _)| *p == pid)?;
        Some(state.running.remove(at).1)
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// From now on nothing is spawned. Gives each process registered to `kill` while the
    /// lock is held (so that its owner, waiting in [`remove`](Self::remove), cannot reap it
    /// and free its pid for another process meanwhile), and returns them all, with their
    /// data, for the rest of the cleaning.
    pub fn close(&self, mut kill: impl FnMut(i32, &T)) -> Vec<(i32, T)> {
        let mut state = self.lock();
        state.closed = true;
        for (pid, data) in &state.running {
            kill(*pid, data);
        }
        state.running.drain(..).collect()
    }
}

/// SIGKILL to `pid`'s process group when it leads one (it was started in a group of its
/// own: the tool and what it started), else to `pid` alone.
pub fn kill_group(pid: i32) -> nix::Result<()> {
    let pid = Pid::from_raw(pid);
    match getpgid(Some(pid)) {
        Ok(group) if group == pid => killpg(group, Signal::SIGKILL),
        _ => kill(pid, Signal::SIGKILL),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Command;

    use super::*;

    fn sleeper() -> std::io::Result<Child> {
        Command::new("sleep").arg("1000").process_group(0).spawn()
    }

    #[test]
    fn a_closed_registry_starts_nothing() {
        let children: Children<()> = Children::new();
        assert!(children.close(|_, _| ()).is_empty());
        assert!(children.is_closed());
        let mut called = false;
        let refused = children.spawn((), || {
            called = true;
            sleeper()
        });
        assert!(matches!(refused, Err(SpawnError::Closed)), "{refused:?}");
        assert!(!called, "a closed registry must not run the spawn");
    }

    #[test]
    fn close_kills_what_is_registered_and_its_owner_finds_it_gone() {
        let children = Children::new();
        let mut child = children.spawn("mine", sleeper).expect("spawn sleep");
        let pid = child.id() as i32;
        let mut killed = Vec::new();
        let taken = children.close(|pid, data| {
            killed.push((pid, *data));
            kill_group(pid).expect("kill the group");
        });
        assert_eq!(taken, vec![(pid, "mine")]);
        assert_eq!(killed, vec![(pid, "mine")]);
        assert_eq!(child.wait().expect("wait").signal(), Some(Signal::SIGKILL as i32));
        assert_eq!(children.remove(pid), None, "the owner learns that close took it");
    }

    #[test]
    fn a_process_spawned_while_close_is_called_is_killed() {
        let children: &'static Children<()> = Box::leak(Box::new(Children::new()));
        let mut closer = None;
        let mut child = children
            .spawn((), || {
                // The interrupt arrives while the spawn is under way: the close waits for
                // it (the lock), then finds its process.
                closer = Some(std::thread::spawn(|| {
                    children.close(|pid, ()| {
                        let _ = kill_group(pid);
                    })
                }));
                sleeper()
            })
            .expect("the spawn began before the close");
        let taken = closer.expect("the closer").join().expect("the closer ran");
        let pid = child.id() as i32;
        assert_eq!(taken, vec![(pid, ())]);
        assert_eq!(child.wait().expect("wait").signal(), Some(Signal::SIGKILL as i32));
        assert!(matches!(children.spawn((), sleeper), Err(SpawnError::Closed)));
    }

    #[test]
    fn removed_processes_are_not_killed() {
        let children = Children::new();
        let mut child = children.spawn(7, sleeper).expect("spawn sleep");
        let pid = child.id() as i32;
        assert_eq!(children.remove(pid), Some(7));
        assert!(children.close(|_, _| panic!("nothing is registered")).is_empty());
        let _ = kill_group(pid);
        assert_eq!(child.wait().expect("wait").signal(), Some(Signal::SIGKILL as i32));
    }
}
