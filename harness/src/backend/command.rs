//! Running the program a VM backend drives (`vagrant`, `multipass`) on this machine: its
//! output captured, its whole process group killed when it overruns its deadline or when
//! cilab is interrupted ([`kill_all`]). Shared by the backends that reach their guest
//! through another tool's command line.
//!
//! Killing the tool here does not stop what it started in the guest (`cilab check` runs on
//! there as root): a command may come with a [`RemoteStop`], a second command of the same
//! tool that stops it in the guest, run (bounded by [`STOP_DEADLINE`], best effort) after
//! the tool is killed.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::children::{kill_group, Children, SpawnError};
use super::GuestOutput;
use crate::error::{Error, Result};
use crate::probe::pidfd::PidFd;

/// How long the command that stops a command in the guest may take (the tool connects
/// again, and systemd stops the scope: [`SCOPE_STOP_TIMEOUT`]).
pub const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// How long systemd in the guest gives a stopped scope's processes between SIGTERM (cilab
/// in the guest cleans up its labs on it) and SIGKILL (`-p TimeoutStopSec=`).
pub const SCOPE_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How to stop, in the guest, what a command started there once the command is killed
/// here: `program args` run on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteStop {
    /// What it stops, for the messages ("the check in the guest (systemd scope ...)").
    pub what: String,
    pub program: String,
    pub args: Vec<String>,
}

impl RemoteStop {
    /// Runs the stop command (not registered: the interrupt handler runs it after it has
    /// closed the registry), at most [`STOP_DEADLINE`]; says how it went.
    fn run(&self) -> String {
        let command = format!("`{} {}`", self.program, self.args.join(" "));
        let outcome = spawn_captured(&self.program, &self.args)
            .map_err(|e| format!("could not run it: {e}"))
            .and_then(|child| wait_captured(child, STOP_DEADLINE, |_| true).map_err(|e| e.to_string()));
        match outcome {
            Ok(Captured { exited: true, status: 0, .. }) => {
                format!("stopped {} with {command}", self.what)
            }
            Ok(Captured { exited: true, status, stderr, .. }) => format!(
                "tried to stop {} with {command}, which exited {status} ({}): it may still be running there",
                self.what,
                super::tail(&stderr, 3).replace('\n', " ")
            ),
            Ok(Captured { exited: false, .. }) => format!(
                "tried to stop {} with {command}, which did not finish within {} s and was killed: it may still \
                 be running there",
                self.what,
                STOP_DEADLINE.as_secs()
            ),
            Err(why) => format!("tried to stop {} with {command}: {why}: it may still be running there", self.what),
        }
    }
}

/// A command of this process: the tool's name, and how to stop what it started in the guest.
#[derive(Debug)]
struct Entry {
    program: String,
    stop: Option<RemoteStop>,
}

/// The commands running now, for Ctrl-C.
static RUNNING: Children<Entry> = Children::new();

/// Kills every command this process runs (its process group), runs the stop command of
/// each in the guest, and from now on runs no command (the interrupt handler calls this);
/// says what it did.
pub fn kill_all() -> Vec<String> {
    kill_all_in(&RUNNING)
}

fn kill_all_in(registry: &Children<Entry>) -> Vec<String> {
    let mut killed = Vec::new();
    let taken = registry.close(|pid, _| killed.push(kill_group(pid)));
    let mut done = Vec::new();
    for ((pid, entry), killed) in taken.into_iter().zip(killed) {
        done.push(format!("killed `{}` (process group {pid}: {killed:?})", entry.program));
        if let Some(stop) = entry.stop {
            done.push(stop.run());
        }
    }
    done
}

/// A name for a command in the guest that no other run of cilab gives: `cilab-check-`,
/// this process's pid, a counter and the time.
pub fn unit_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    format!("cilab-check-{}-{}-{nanos:x}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// Runs `program args`, stdin empty, stdout and stderr captured, in a process group of its
/// own. `Err` when it cannot be started or overruns `deadline` (then the group is killed:
/// the tool and the ssh it runs), or when cilab is interrupted: the backend's failure, in
/// `backend`'s name.
pub fn run_captured<S: AsRef<OsStr>>(
    backend: &str,
    program: &str,
    args: &[S],
    deadline: Duration,
) -> Result<GuestOutput> {
    run_stoppable(backend, program, args, deadline, None)
}

/// [`run_captured`], and when the command is killed (its deadline, or an interrupt),
/// `stop` is run to stop in the guest what it started there.
pub fn run_stoppable<S: AsRef<OsStr>>(
    backend: &str,
    program: &str,
    args: &[S],
    deadline: Duration,
    stop: Option<RemoteStop>,
) -> Result<GuestOutput> {
    run_in(&RUNNING, backend, program, args, deadline, stop)
}

fn run_in<S: AsRef<OsStr>>(
    registry: &Children<Entry>,
    backend: &str,
    program: &str,
    args: &[S],
    deadline: Duration,
    stop: Option<RemoteStop>,
) -> Result<GuestOutput> {
    let error = |message: String| Error::Backend { backend: backend.to_string(), message };
    let entry = Entry { program: program.to_string(), stop };
    // Registered as it starts, unless an interrupt came first (then nothing starts).
    let child = registry.spawn(entry, || spawn_captured(program, args)).map_err(|e| match e {
        SpawnError::Closed => error(format!("cilab is exiting after an interrupt: `{program}` is not run")),
        SpawnError::Spawn(e) => error(format!("could not run `{program}`: {e} (is it installed?)")),
    })?;
    let pid = child.id() as i32;
    let mut taken_back = None;
    let captured = wait_captured(child, deadline, |pid| {
        // Ours to kill, unless the interrupt handler has taken it (and killed it).
        taken_back = registry.remove(pid);
        taken_back.is_some()
    });
    let captured = match captured {
        Ok(captured) => captured,
        Err(e) => {
            registry.remove(pid);
            return Err(e);
        }
    };
    if captured.exited {
        taken_back = registry.remove(pid);
    }
    if taken_back.is_none() {
        return Err(error(format!(
            "`{program}` was killed: cilab is exiting after an interrupt; it said: {}",
            super::tail(&captured.stderr, 10)
        )));
    }
    if !captured.exited {
        let stopped = taken_back.and_then(|entry| entry.stop).map(|stop| format!("; {}", stop.run()));
        return Err(error(format!(
            "`{program}` did not finish within {} s and was killed{}; it said: {}",
            deadline.as_secs(),
            stopped.unwrap_or_default(),
            super::tail(&captured.stderr, 10)
        )));
    }
    Ok(GuestOutput { status: captured.status, stdout: captured.stdout, stderr: captured.stderr })
}

/// `program args`, stdin empty, stdout and stderr piped, in a process group of its own.
fn spawn_captured<S: AsRef<OsStr>>(program: &str, args: &[S]) -> std::io::Result<Child> {
    Command::new(program)
        .args(args.iter().map(|a| OsString::from(a.as_ref())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
}

/// What a command captured, and whether it exited by itself within its deadline.
struct Captured {
    exited: bool,
    status: i32,
    stdout: String,
    stderr: String,
}

/// Waits for `child` (a group leader) at most `deadline`; past it, kills its process group
/// when `may_kill(pid)` says it is still the caller's to kill; reaps it and collects what
/// it printed.
fn wait_captured(mut child: Child, deadline: Duration, may_kill: impl FnOnce(i32) -> bool) -> Result<Captured> {
    let pid = child.id() as i32;
    let readers = [child.stdout.take().map(drain), child.stderr.take().map(drain)];
    // Without a pidfd there is no waiting with a deadline: killed at once.
    let waited = PidFd::open(pid).map(|pidfd| pidfd.wait_exit(deadline));
    let exited = matches!(waited, Ok(true));
    if !exited && may_kill(pid) {
        let _ = kill_group(pid);
    }
    let status = child.wait().map_err(Error::io("wait for", format!("process {pid}")));
    let [stdout, stderr] = readers.map(|r| r.and_then(|h| h.join().ok()).unwrap_or_default());
    waited?;
    let status = status?;
    Ok(Captured { exited, status: exit_code(status), stdout, stderr })
}

/// Runs `program args` on this terminal (a person at the keyboard: no deadline) and
/// returns its exit status.
pub fn run_on_terminal<S: AsRef<OsStr>>(backend: &str, program: &str, args: &[S]) -> Result<i32> {
    let status = Command::new(program).args(args).status().map_err(|e| Error::Backend {
        backend: backend.to_string(),
        message: format!("could not run `{program}`: {e}"),
    })?;
    Ok(exit_code(status))
}

/// The status as a shell says it: 128 + N when killed by signal N.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A one-line POSIX shell script that tells what a guest is: its kernel, the type of the
/// file system at /sys/fs/cgroup, whether /sys/fs/cgroup/unified exists, whether `cilab`
/// is on PATH. One line, no quotes, no empty words: it survives any tool's argument
/// passing (`vagrant ssh -c`, `multipass exec -- sh -c`).
pub const PROBE: &str = "uname -r; stat -fc %T /sys/fs/cgroup; \
                         test -d /sys/fs/cgroup/unified && echo unified || echo -; \
                         command -v cilab >/dev/null 2>&1 && echo has-cilab || echo no-cilab";

/// What [`PROBE`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub kernel: String,
    /// "v1", "hybrid" or "v2", as `cilab doctor` names them.
    pub cgroup: &'static str,
    pub has_cilab: bool,
}

/// Reads [`PROBE`]'s four lines.
pub fn read_probe(backend: &str, stdout: &str) -> Result<Probe> {
    let lines: Vec<&str> = stdout.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let [kernel, fs_type, unified, cilab] = lines.as_slice() else {
        return Err(Error::Backend {
            backend: backend.to_string(),
            message: format!("the guest's answer is not four lines: {stdout:?}"),
        });
    };
    Ok(Probe {
        kernel: kernel.to_string(),
        cgroup: cgroup_layout(fs_type, *unified == "unified"),
        has_cilab: *cilab == "has-cilab",
    })
}

/// The guest's cgroup layout from `stat -fc %T /sys/fs/cgroup` and whether
/// /sys/fs/cgroup/unified exists.
fn cgroup_layout(fs_type: &str, has_unified: bool) -> &'static str {
    match (fs_type, has_unified) {
        ("cgroup2fs", _) => "v2",
        (_, true) => "hybrid",
        _ => "v1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stop command that leaves a file saying it ran.
    fn stop_marking(marker: &std::path::Path) -> RemoteStop {
        RemoteStop {
            what: "the test's command".into(),
            program: "sh".into(),
            args: vec!["-c".into(), format!("echo stopped >{}", marker.display())],
        }
    }

    #[test]
    fn a_command_past_its_deadline_is_killed_and_stopped_in_the_guest() {
        let registry = Children::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("stopped");
        let failed =
            run_in(&registry, "test", "sh", &["-c", "exec sleep 1000"], Duration::ZERO, Some(stop_marking(&marker)))
                .expect_err("past its deadline");
        let said = failed.to_string();
        assert!(said.contains("`sh` did not finish within 0 s and was killed"), "{said}");
        assert!(said.contains("stopped the test's command with `sh -c echo stopped"), "{said}");
        assert_eq!(std::fs::read_to_string(&marker).ok().as_deref(), Some("stopped\n"));
        assert!(registry.close(|_, _| ()).is_empty(), "nothing left registered");
        // A stop that fails says that the command may still run in the guest.
        let failing = RemoteStop { what: "it".into(), program: "sh".into(), args: vec!["-c".into(), "exit 3".into()] };
        let said = run_in(&Children::new(), "test", "sh", &["-c", "exec sleep 1000"], Duration::ZERO, Some(failing))
            .expect_err("past its deadline")
            .to_string();
        assert!(said.contains("which exited 3") && said.contains("may still be running there"), "{said}");
    }

    #[test]
    fn an_interrupt_kills_the_command_stops_it_in_the_guest_and_nothing_runs_after() {
        let registry: &'static Children<Entry> = Box::leak(Box::new(Children::new()));
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("stopped");
        let fifo = dir.path().join("started");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let script = format!("echo started >{}; exec sleep 1000", fifo.display());
        let stop = stop_marking(&marker);
        // Its deadline far enough that only the interrupt can end it first.
        let running = std::thread::spawn(move || {
            run_in(registry, "test", "sh", &["-c", &script], Duration::from_secs(300), Some(stop))
        });
        let mut started = String::new();
        std::fs::File::open(&fifo).expect("open the fifo").read_to_string(&mut started).expect("read the fifo");
        assert_eq!(started, "started\n");

        let said = kill_all_in(registry);
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said[0].starts_with("killed `sh` (process group "), "{said:?}");
        assert!(said[1].starts_with("stopped the test's command with `sh -c echo stopped"), "{said:?}");
        assert_eq!(std::fs::read_to_string(&marker).ok().as_deref(), Some("stopped\n"));
        let failed = running.join().expect("the runner").expect_err("killed by the interrupt").to_string();
        assert!(failed.contains("`sh` was killed: cilab is exiting after an interrupt"), "{failed}");

        // After the interrupt nothing is started.
        let refused = run_in(registry, "test", "sh", &["-c", "true"], Duration::from_secs(300), None)
            .expect_err("refused after the interrupt")
            .to_string();
        assert!(refused.contains("`sh` is not run"), "{refused}");
    }

    #[test]
    fn cgroup_layouts_are_named_as_doctor_names_them() {
        assert_eq!(cgroup_layout("cgroup2fs", false), "v2");
        assert_eq!(cgroup_layout("tmpfs", true), "hybrid");
        assert_eq!(cgroup_layout("tmpfs", false), "v1");
    }

    #[test]
    fn the_probe_is_read_back_or_refused() {
        let probe = read_probe("x", "6.8.0-31-generic\ncgroup2fs\n-\nhas-cilab\n").expect("four lines");
        assert_eq!(probe, Probe { kernel: "6.8.0-31-generic".into(), cgroup: "v2", has_cilab: true });
        assert!(!read_probe("x", "5.4\ntmpfs\nunified\nno-cilab\n").expect("four lines").has_cilab);
        assert!(read_probe("x", "6.8\ncgroup2fs\n").is_err());
        // And the shell here runs it and answers in that form.
        let out = Command::new("sh").args(["-c", PROBE]).output().expect("sh runs");
        assert!(read_probe("x", &String::from_utf8_lossy(&out.stdout)).is_ok());
    }
}
