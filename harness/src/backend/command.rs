//! Running the program a VM backend drives (`vagrant`, `multipass`) on this machine: its
//! output captured, its whole process group killed when it overruns its deadline. Shared
//! by the backends that reach their guest through another tool's command line.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::GuestOutput;
use crate::error::{Error, Result};
use crate::probe::pidfd::PidFd;

/// Runs `program args`, stdin empty, stdout and stderr captured, in a process group of its
/// own. `Err` when it cannot be started or overruns `deadline` (then the group is killed:
/// the tool and the ssh it runs): the backend's failure, in `backend`'s name.
pub fn run_captured<S: AsRef<OsStr>>(
    backend: &str,
    program: &str,
    args: &[S],
    deadline: Duration,
) -> Result<GuestOutput> {
    let error = |message: String| Error::Backend { backend: backend.to_string(), message };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| error(format!("could not run `{program}`: {e} (is it installed?)")))?;
    let pid = i32::try_from(child.id()).map_err(|_| error(format!("{program}'s pid does not fit")))?;
    let pidfd = PidFd::open(pid)?;
    let readers = [child.stdout.take().map(drain), child.stderr.take().map(drain)];
    let exited = pidfd.wait_exit(deadline);
    if !exited {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let status = child.wait().map_err(Error::io("wait for", program))?;
    let [stdout, stderr] = readers.map(|r| r.and_then(|h| h.join().ok()).unwrap_or_default());
    if !exited {
        return Err(error(format!(
            "`{program}` did not finish within {} s and was killed; it said: {}",
            deadline.as_secs(),
            super::tail(&stderr, 10)
        )));
    }
    Ok(GuestOutput { status: exit_code(status), stdout, stderr })
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
