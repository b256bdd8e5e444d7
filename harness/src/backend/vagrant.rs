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
//! rebuilds the labs before grading them ([`super::GuestCheck::build`]). In a guest with systemd the check runs in a delegated
//! scope (`systemd-run --scope -p Delegate=yes`): a login session's cgroup cannot hand
//! controllers down, and lab cgroup-limits needs them.

use std::time::Duration;

use super::{command, Guest, GuestOutput, Payload};
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
    /// when it overruns `deadline`.
    fn ssh(&self, script: &str, deadline: Duration) -> Result<GuestOutput> {
        command::run_captured(NAME, &self.program, &["ssh", "--no-tty", "-c", script], deadline)
    }
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
/// the guest runs systemd, else plain sudo.
pub fn as_root_script(argv: &[String]) -> String {
    let words = shell_words(argv);
    format!(
        "if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then \
         exec sudo systemd-run --quiet --scope -p Delegate=yes -- {words}; else exec sudo -- {words}; fi"
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
        let output = self.ssh(command::PROBE, REACH_DEADLINE)?;
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

    fn run_as_root(&mut self, argv: &[String], deadline: Duration) -> Result<GuestOutput> {
        self.ssh(&as_root_script(argv), deadline)
    }

    fn run_on_terminal(&mut self, argv: &[String]) -> Result<i32> {
        command::run_on_terminal(NAME, &self.program, &["ssh", "-c", &as_root_script(argv), "--", "-t"])
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
        let script = as_root_script(&["cilab".to_string(), "check".to_string()]);
        assert!(script.contains("systemd-run --quiet --scope -p Delegate=yes -- cilab check"), "{script}");
        assert!(script.contains("else exec sudo -- cilab check"), "{script}");
    }
}
