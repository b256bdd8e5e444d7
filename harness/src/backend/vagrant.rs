//! `--backend vagrant`: the check runs in the student's Vagrant VM (the repository's
//! Vagrantfile, provisioned by vagrant/provision.sh), reached with `vagrant ssh -c` from the
//! directory cilab runs in (Vagrant finds the Vagrantfile upwards from there, or through
//! `VAGRANT_CWD`).
//!
//! The VM is the student's and outlives the check: [`Guest::start`] only makes sure it
//! answers, and [`Guest::stop`] leaves it running (`vagrant destroy` is the student's). It
//! got cilab and the labs at provisioning (built in the guest, or prebuilt binaries synced
//! in), so the payload is not sent. In a guest with systemd the check runs in a delegated
//! scope (`systemd-run --scope -p Delegate=yes`): a login session's cgroup cannot hand
//! controllers down, and lab cgroup-limits needs them.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::{Guest, GuestOutput, Payload};
use crate::error::{Error, Result};
use crate::probe::pidfd::PidFd;
use crate::report::GuestInfo;

const NAME: &str = "vagrant";

/// How long the first answer of the VM may take (`vagrant` starts Ruby, then ssh).
const REACH_DEADLINE: Duration = Duration::from_secs(120);

/// The student's Vagrant VM, reached with the `vagrant` program.
#[derive(Debug)]
pub struct Vagrant {
    program: String,
    info: GuestInfo,
}

impl Default for Vagrant {
    fn default() -> Self {
        Vagrant { program: "vagrant".into(), info: GuestInfo { backend: NAME.into(), ..GuestInfo::default() } }
    }
}

impl Vagrant {
    pub fn new() -> Self {
        Vagrant::default()
    }

    /// `vagrant ssh -c <script>`, its output captured, killed (its whole process group)
    /// when it overruns `deadline`.
    fn ssh(&self, script: &str, deadline: Duration) -> Result<GuestOutput> {
        let mut child = Command::new(&self.program)
            .args(["ssh", "--no-tty", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| backend_error(format!("could not run `{}`: {e} (is Vagrant installed?)", self.program)))?;
        let pid = i32::try_from(child.id()).map_err(|_| backend_error("vagrant's pid does not fit"))?;
        let pidfd = PidFd::open(pid)?;
        let readers = [child.stdout.take().map(drain), child.stderr.take().map(drain)];
        let exited = pidfd.wait_exit(deadline);
        if !exited {
            // The group: vagrant (Ruby) and the ssh it runs.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let status = child.wait().map_err(Error::io("wait for", &self.program))?;
        let [stdout, stderr] = readers.map(|r| r.and_then(|h| h.join().ok()).unwrap_or_default());
        if !exited {
            return Err(backend_error(format!(
                "`vagrant ssh -c` did not finish within {} s and was killed; it said: {}",
                deadline.as_secs(),
                super::tail(&stderr, 10)
            )));
        }
        use std::os::unix::process::ExitStatusExt;
        let status = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Ok(GuestOutput { status, stdout, stderr })
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn backend_error(message: impl Into<String>) -> Error {
    Error::Backend { backend: NAME.into(), message: message.into() }
}

/// `argv` as one POSIX shell word each.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b)) {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The script `vagrant ssh -c` runs for `argv` as root: in a delegated systemd scope when
/// the guest runs systemd, else plain sudo.
pub fn as_root_script(argv: &[String]) -> String {
    let words = shell_words(argv);
    format!(
        "if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then \
         exec sudo systemd-run --quiet --scope -p Delegate=yes -- {words}; else exec sudo -- {words}; fi"
    )
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

impl Guest for Vagrant {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The VM must be up already (`vagrant up`): this asks it for its kernel and cgroup
    /// layout, and that it has cilab.
    fn start(&mut self, _payload: &Payload) -> Result<()> {
        let probe = "uname -r; stat -fc %T /sys/fs/cgroup; test -d /sys/fs/cgroup/unified && echo unified || echo -; \
                     command -v cilab >/dev/null 2>&1 && echo has-cilab || echo no-cilab";
        let output = self.ssh(probe, REACH_DEADLINE)?;
        if output.status != 0 {
            return Err(backend_error(format!(
                "the Vagrant VM did not answer (`vagrant ssh` exited {}): {} Run `vagrant up` in the cilab tree \
                 (or set VAGRANT_CWD to it) first",
                output.status,
                super::tail(&output.stderr, 10).replace('\n', " ")
            )));
        }
        let lines: Vec<&str> = output.stdout.lines().map(str::trim).collect();
        let [kernel, fs_type, unified, cilab] = lines.as_slice() else {
            return Err(backend_error(format!("the VM's answer is not four lines: {:?}", output.stdout)));
        };
        if *cilab != "has-cilab" {
            return Err(backend_error(
                "the Vagrant VM has no `cilab` on PATH: provisioning did not finish (`vagrant provision`)",
            ));
        }
        self.info.kernel = Some(kernel.to_string());
        self.info.cgroup = Some(cgroup_layout(fs_type, *unified == "unified").to_string());
        Ok(())
    }

    fn run_as_root(&mut self, argv: &[String], deadline: Duration) -> Result<GuestOutput> {
        self.ssh(&as_root_script(argv), deadline)
    }

    fn run_on_terminal(&mut self, argv: &[String]) -> Result<i32> {
        let status = Command::new(&self.program)
            .args(["ssh", "-c", &as_root_script(argv), "--", "-t"])
            .status()
            .map_err(|e| backend_error(format!("could not run `{}`: {e}", self.program)))?;
        use std::os::unix::process::ExitStatusExt;
        Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    fn describe(&self) -> GuestInfo {
        self.info.clone()
    }

    /// The VM is the student's: it stays up.
    fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_guests_shell() {
        let argv: Vec<String> = ["cilab", "check", "--format", "json", "it's", "", "a b"].map(String::from).to_vec();
        assert_eq!(shell_words(&argv), r#"cilab check --format json 'it'\''s' '' 'a b'"#);
        // And a POSIX shell reads them back as they were.
        let out = Command::new("sh")
            .args(["-c", &format!("printf '%s\\n' {}", shell_words(&argv))])
            .output()
            .expect("sh runs");
        let back: Vec<&str> = std::str::from_utf8(&out.stdout).expect("utf-8").split('\n').collect();
        assert_eq!(&back[..argv.len()], argv.iter().map(String::as_str).collect::<Vec<_>>().as_slice());
    }

    #[test]
    fn cgroup_layouts_are_named_as_doctor_names_them() {
        assert_eq!(cgroup_layout("cgroup2fs", false), "v2");
        assert_eq!(cgroup_layout("tmpfs", true), "hybrid");
        assert_eq!(cgroup_layout("tmpfs", false), "v1");
    }

    #[test]
    fn the_check_runs_in_a_delegated_scope_where_systemd_runs() {
        let script = as_root_script(&["cilab".to_string(), "check".to_string()]);
        assert!(script.contains("systemd-run --quiet --scope -p Delegate=yes -- cilab check"), "{script}");
        assert!(script.contains("else exec sudo -- cilab check"), "{script}");
    }
}
