//! `--backend vagrant`: the check runs in the student's Vagrant VM (the repository's
//! Vagrantfile, provisioned by vagrant/provision.sh), reached with `vagrant ssh -c` from the
//! directory cilab runs in (Vagrant finds the Vagrantfile upwards from there, or through
//! `VAGRANT_CWD`).
//!
//! The VM is the student's and outlives the check: [`Guest::start`] only makes sure it
//! answers, and [`Guest::stop`] leaves it running (`vagrant destroy` is the student's). It
//! got cilab and the labs at provisioning (built in the guest, or prebuilt binaries synced
//! in), so the payload is not sent. Unless `--no-build`, the tree is copied in again first
//! (`vagrant rsync`; a no-op where the provider shares it live) and the guest's cilab
//! rebuilds the labs before grading them ([`super::GuestCheck::build`]). In a guest with
//! systemd the check runs in a delegated scope (`systemd-run --scope -p Delegate=yes`): a
//! login session's cgroup cannot hand controllers down, and lab cgroup-limits needs them.
//!
//! Killing `vagrant ssh` here does not stop the check in the VM, so it runs under a name:
//! the scope `cilab-check-....scope` (a guest without systemd: a shell whose pid is in
//! `/run/cilab-check-....pid`), and when it overruns its deadline or cilab is interrupted
//! a second `vagrant ssh` stops that ([`stop_script`], [`command::RemoteStop`]).

use std::time::Duration;

use super::command::{self, RemoteStop};
use super::{Guest, GuestOutput, Payload};
use crate::error::{Error, Result};
use crate::report::GuestInfo;

const NAME: &str = "vagrant";

/// How long the first answer of the VM may take (`vagrant` starts Ruby, then ssh).
const REACH_DEADLINE: Duration = Duration::from_secs(120);

/// The student's Vagrant VM, reached with the `vagrant` program.
#[derive(Debug)]
pub struct Vagrant {
    program: String,
    info: GuestInfo,
    sync_tree: bool,
}

impl Default for Vagrant {
    fn default() -> Self {
        Vagrant {
            program: "vagrant".into(),
            info: GuestInfo { backend: NAME.into(), ..GuestInfo::default() },
            sync_tree: false,
        }
    }
}

impl Vagrant {
    pub fn new() -> Self {
        Vagrant::default()
    }

    /// Copies the tree into the VM again (`vagrant rsync`) before the check, so that the
    /// check's build in the guest ([`super::GuestCheck::build`]) grades the latest edits.
    pub fn syncing_tree(mut self, sync: bool) -> Self {
        self.sync_tree = sync;
        self
    }

    /// `vagrant ssh -c <script>`, its output captured, killed (its whole process group)
    /// when it overruns `deadline` or cilab is interrupted; then `stop`, another script, is
    /// run the same way to stop what `script` started in the VM.
    fn ssh(&self, script: &str, deadline: Duration, stop: Option<(String, String)>) -> Result<GuestOutput> {
        let stop = stop.map(|(what, stop)| RemoteStop { what, program: self.program.clone(), args: ssh_args(&stop) });
        command::run_stoppable(NAME, &self.program, &ssh_args(script), deadline, stop)
    }
}

/// `vagrant`'s arguments to run `script` in the VM.
fn ssh_args(script: &str) -> Vec<String> {
    ["ssh", "--no-tty", "-c", script].map(String::from).to_vec()
}

/// For `cilab doctor`: whether `--backend vagrant` can work here, and what is missing. It
/// reads only what is installed (starting `vagrant` takes seconds): whether the VM is up
/// is the check's first question.
pub fn readiness() -> (bool, String) {
    if which::which("vagrant").is_err() {
        return (
            false,
            "cannot run: needs vagrant and a provider (apt-get install vagrant vagrant-libvirt \
             libvirt-daemon-system, or VirtualBox); then `vagrant up` in this tree"
                .into(),
        );
    }
    let providers: Vec<&str> = [("virsh", "libvirt"), ("VBoxManage", "virtualbox")]
        .iter()
        .filter(|(p, _)| which::which(p).is_ok())
        .map(|(_, n)| *n)
        .collect();
    if providers.is_empty() {
        return (
            false,
            "vagrant is here but no provider: apt-get install vagrant-libvirt libvirt-daemon-system, or VirtualBox"
                .into(),
        );
    }
    (true, format!("usable once `vagrant up` has made the VM (providers here: {})", providers.join(", ")))
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
/// the guest runs systemd, else plain sudo. Named `unit` when given, so that
/// [`stop_script`] can stop it: the scope `<unit>.scope`, or without systemd a shell whose
/// pid is in `/run/<unit>.pid`, with the command its child.
pub fn as_root_script(argv: &[String], unit: Option<&str>) -> String {
    let words = shell_words(argv);
    let systemd =
        "if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then exec sudo systemd-run \
                   --quiet --scope";
    match unit {
        None => format!("{systemd} -p Delegate=yes -- {words}; else exec sudo -- {words}; fi"),
        Some(unit) => format!(
            "{systemd} --unit {unit} -p TimeoutStopSec={} -p Delegate=yes -- {words}; \
             else exec sudo sh -c 'echo $$ >/run/{unit}.pid; \"$@\"; status=$?; rm -f /run/{unit}.pid; exit $status' \
             sh {words}; fi",
            command::SCOPE_STOP_TIMEOUT.as_secs()
        ),
    }
}

/// The script that stops what [`as_root_script`] started as `unit`: systemd stops the
/// scope (SIGTERM, then SIGKILL); without systemd the command gets SIGTERM (cilab in the
/// guest then cleans up its labs).
pub fn stop_script(unit: &str) -> String {
    format!(
        "if [ -f /run/{unit}.pid ]; then exec sudo pkill -TERM -P \"$(cat /run/{unit}.pid)\"; \
         else exec sudo systemctl stop {unit}.scope; fi"
    )
}

impl Guest for Vagrant {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The VM must be up already (`vagrant up`): this asks it for its kernel and cgroup
    /// layout, and that it has cilab.
    fn start(&mut self, _payload: &Payload) -> Result<()> {
        if self.sync_tree {
            // The student's latest edits: libvirt's synced folder is a copy made by rsync
            // (VirtualBox shares the tree live: then this is a no-op, exit 0).
            let synced = command::run_captured(NAME, &self.program, &["rsync"], REACH_DEADLINE)?;
            if synced.status != 0 {
                return Err(backend_error(format!(
                    "`vagrant rsync` (the tree into the VM, to build the latest edits there) exited {}: {}",
                    synced.status,
                    super::tail(&synced.stderr, 10).replace('\n', " ")
                )));
            }
        }
        let output = self.ssh(command::PROBE, REACH_DEADLINE, None)?;
        if output.status != 0 {
            return Err(backend_error(format!(
                "the Vagrant VM did not answer (`vagrant ssh` exited {}): {} Run `vagrant up` in the cilab tree \
                 (or set VAGRANT_CWD to it) first",
                output.status,
                super::tail(&output.stderr, 10).replace('\n', " ")
            )));
        }
        let probe = command::read_probe(NAME, &output.stdout)?;
        if !probe.has_cilab {
            return Err(backend_error(
                "the Vagrant VM has no `cilab` on PATH: provisioning did not finish (`vagrant provision`)",
            ));
        }
        self.info.kernel = Some(probe.kernel);
        self.info.cgroup = Some(probe.cgroup.to_string());
        Ok(())
    }

    /// Under a name, which is stopped in the VM when the command is killed here (its
    /// deadline, or Ctrl-C).
    fn run_as_root(&mut self, argv: &[String], deadline: Duration) -> Result<GuestOutput> {
        let unit = command::unit_name();
        let what = format!("the command in the Vagrant VM (scope {unit}.scope, or /run/{unit}.pid)");
        self.ssh(&as_root_script(argv, Some(&unit)), deadline, Some((what, stop_script(&unit))))
    }

    fn run_on_terminal(&mut self, argv: &[String]) -> Result<i32> {
        command::run_on_terminal(NAME, &self.program, &["ssh", "-c", &as_root_script(argv, None), "--", "-t"])
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
    use std::process::Command;

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
    fn the_check_runs_in_a_delegated_scope_where_systemd_runs() {
        let argv = ["cilab".to_string(), "check".to_string()];
        let script = as_root_script(&argv, None);
        assert!(script.contains("systemd-run --quiet --scope -p Delegate=yes -- cilab check"), "{script}");
        assert!(script.contains("else exec sudo -- cilab check"), "{script}");
        // Named, so that it can be stopped in the VM.
        let named = as_root_script(&argv, Some("cilab-check-1"));
        assert!(
            named.contains(
                "systemd-run --quiet --scope --unit cilab-check-1 -p TimeoutStopSec=15 -p Delegate=yes -- cilab check"
            ),
            "{named}"
        );
        assert!(named.contains("echo $$ >/run/cilab-check-1.pid;"), "{named}");
        let stop = stop_script("cilab-check-1");
        assert!(stop.contains("pkill -TERM -P \"$(cat /run/cilab-check-1.pid)\""), "{stop}");
        assert!(stop.contains("systemctl stop cilab-check-1.scope"), "{stop}");
        for script in [script, named, stop] {
            let syntax = Command::new("sh").args(["-n", "-c", &script]).output().expect("sh runs");
            assert!(syntax.status.success(), "{script}: {}", String::from_utf8_lossy(&syntax.stderr));
        }
    }

    /// A guest without systemd: the command runs as the child of a shell whose pid is in
    /// the pid file, and the stop script's SIGTERM reaches it. Run here with `sudo` and the
    /// pid file's directory replaced (this machine may run systemd; nothing is run as
    /// another user).
    #[test]
    fn without_systemd_the_stop_script_stops_the_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().to_str().expect("a UTF-8 temporary path");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        // `sudo [--] ARGS`: runs ARGS.
        std::fs::write(bin.join("sudo"), "#!/bin/sh\n[ \"$1\" = -- ] && shift\nexec \"$@\"\n").expect("write sudo");
        std::fs::set_permissions(bin.join("sudo"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod sudo");
        let fifo = dir.path().join("started");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let without_systemd =
            |script: String| script.replace("[ -d /run/systemd/system ]", "false").replace("/run/", &format!("{run}/"));
        // The command says it started, then waits for a signal.
        let argv: Vec<String> =
            ["sh", "-c", &format!("echo started >{}; exec sleep 1000", fifo.display())].map(String::from).to_vec();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let mut check = Command::new("sh")
            .args(["-c", &without_systemd(as_root_script(&argv, Some("cilab-check-1")))])
            .env("PATH", &path)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run the script");
        let mut started = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::open(&fifo).expect("open the fifo"), &mut started)
            .expect("read the fifo");
        assert_eq!(started, "started\n");
        assert!(dir.path().join("cilab-check-1.pid").is_file(), "the pid file is written first");
        let stop = Command::new("sh")
            .args(["-c", &without_systemd(stop_script("cilab-check-1"))])
            .env("PATH", &path)
            .status()
            .expect("run the stop script");
        assert!(stop.success());
        let status = check.wait().expect("wait");
        assert_eq!(status.code(), Some(128 + 15), "the command got SIGTERM and the shell said so");
        assert!(!dir.path().join("cilab-check-1.pid").exists(), "the pid file is removed");
    }
}
