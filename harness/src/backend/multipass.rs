//! `--backend multipass`: the check runs in the student's Multipass instance, launched with
//! the repository's user-data (`multipass launch 24.04 --name cilab --cloud-init
//! vagrant/cloud-init.yaml`, which runs vagrant/provision.sh), reached with `multipass
//! exec <instance> -- ...`. The instance is `cilab` unless `CILAB_MULTIPASS_INSTANCE` names
//! another.
//!
//! As with Vagrant, the instance is the student's and outlives the check: [`Guest::start`]
//! asks `multipass info` that it is running and the instance what it is, and
//! [`Guest::stop`] leaves it up. It has cilab from provisioning (built in the instance from
//! the tree mounted at /home/ubuntu/cilab, `multipass mount`, which is live: nothing to
//! sync before a build), so the payload is not sent. The check runs as root in a delegated
//! systemd scope (lab cgroup-limits needs controllers handed down; Ubuntu runs systemd),
//! named for the check (`--unit cilab-check-...`): killing `multipass exec` here does not
//! stop the check in the instance, so when it overruns its deadline or cilab is
//! interrupted, `multipass exec <instance> -- sudo systemctl stop <unit>.scope` does
//! ([`command::RemoteStop`]).
//!
//! The check is plain words after `--`, and the one script (the probe, `sh -c`) is one
//! line with no quotes and no empty word: multipass before 1.12 mangled quotes, newlines
//! and empty strings on their way through ssh (canonical/multipass#3117).
//!
//! Not run against a real Multipass here (it is a snap; this machine has no snapd): the
//! tests drive this file against a fake `multipass` on PATH that answers as the real one
//! does, and the cloud-init boot of the user-data is tested in tests/vm_cloud_init.rs.

use std::time::Duration;

use serde_json::Value;

use super::command::{self, RemoteStop};
use super::{Guest, GuestOutput, Payload};
use crate::error::{Error, Result};
use crate::report::GuestInfo;

const NAME: &str = "multipass";

/// The environment variable naming the instance (default [`DEFAULT_INSTANCE`]).
pub const INSTANCE_ENV: &str = "CILAB_MULTIPASS_INSTANCE";

/// The instance README's `multipass launch` makes.
pub const DEFAULT_INSTANCE: &str = "cilab";

/// How long `multipass info` and the first `multipass exec` may take.
const REACH_DEADLINE: Duration = Duration::from_secs(120);

/// For `cilab doctor`: whether `--backend multipass` can work here, and what is missing.
pub fn readiness() -> (bool, String) {
    if which::which("multipass").is_err() {
        return (false, "cannot run: needs multipass (`snap install multipass`)".into());
    }
    (
        true,
        format!(
            "usable once `multipass launch 24.04 --name {DEFAULT_INSTANCE} --cloud-init vagrant/cloud-init.yaml` has made the instance"
        ),
    )
}

/// The student's Multipass instance, reached with the `multipass` program on PATH.
#[derive(Debug)]
pub struct Multipass {
    program: String,
    instance: String,
    info: GuestInfo,
}

impl Default for Multipass {
    /// The instance `CILAB_MULTIPASS_INSTANCE` names, else `cilab`.
    fn default() -> Self {
        Multipass::with_instance(&instance_name(std::env::var(INSTANCE_ENV).ok()))
    }
}

impl Multipass {
    pub fn new() -> Self {
        Multipass::default()
    }

    pub fn with_instance(instance: &str) -> Self {
        Multipass {
            program: "multipass".into(),
            instance: instance.to_string(),
            info: GuestInfo { backend: NAME.into(), ..GuestInfo::default() },
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// `multipass`'s arguments to run `argv` in the instance as its default user.
    pub fn exec_args(&self, argv: &[String]) -> Vec<String> {
        let mut args = vec!["exec".to_string(), self.instance.clone(), "--".to_string()];
        args.extend(argv.iter().cloned());
        args
    }

    /// `multipass`'s arguments to run `argv` in the instance as root, in a delegated
    /// systemd scope; named `unit` when given, so that [`Multipass::stop_args`] can stop it.
    pub fn exec_as_root_args(&self, argv: &[String], unit: Option<&str>) -> Vec<String> {
        let mut root: Vec<String> = ["sudo", "systemd-run", "--quiet", "--scope"].map(String::from).to_vec();
        if let Some(unit) = unit {
            root.extend([
                "--unit".to_string(),
                unit.to_string(),
                "-p".to_string(),
                format!("TimeoutStopSec={}", command::SCOPE_STOP_TIMEOUT.as_secs()),
            ]);
        }
        root.extend(["-p", "Delegate=yes", "--"].map(String::from));
        root.extend(argv.iter().cloned());
        self.exec_args(&root)
    }

    /// `multipass`'s arguments to stop the scope `unit` in the instance, and all in it.
    pub fn stop_args(&self, unit: &str) -> Vec<String> {
        self.exec_args(&["sudo", "systemctl", "stop", &format!("{unit}.scope")].map(String::from))
    }

    fn multipass(&self, args: &[String], deadline: Duration) -> Result<GuestOutput> {
        command::run_captured(NAME, &self.program, args, deadline)
    }

    fn launch_hint(&self) -> String {
        format!(
            "launch it from the cilab tree: `multipass launch 24.04 --name {0} --cpus 2 --memory 4G --disk 20G \
             --cloud-init vagrant/cloud-init.yaml`, then `multipass mount . {0}:/home/ubuntu/cilab` and \
             `multipass exec {0} -- sudo cilab-provision`",
            self.instance
        )
    }
}

/// The instance a value of [`INSTANCE_ENV`] names: [`DEFAULT_INSTANCE`] when unset or blank.
fn instance_name(value: Option<String>) -> String {
    value.filter(|name| !name.trim().is_empty()).unwrap_or_else(|| DEFAULT_INSTANCE.to_string())
}

fn backend_error(message: impl Into<String>) -> Error {
    Error::Backend { backend: NAME.into(), message: message.into() }
}

/// The instance's state ("Running", "Stopped", ...) and release from `multipass info
/// <instance> --format json`: `{"errors": [], "info": {"<instance>": {"state": ...,
/// "release": ...}}}`.
pub fn instance_state(instance: &str, json: &str) -> Result<(String, Option<String>)> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| backend_error(format!("`multipass info --format json` printed no JSON ({e}): {json:?}")))?;
    let entry = value
        .get("info")
        .and_then(|info| info.get(instance))
        .ok_or_else(|| backend_error(format!("`multipass info` says nothing of the instance `{instance}`")))?;
    let state = entry
        .get("state")
        .and_then(Value::as_str)
        .ok_or_else(|| backend_error(format!("`multipass info` gives no state for `{instance}`")))?;
    let release = entry.get("release").and_then(Value::as_str).map(String::from);
    Ok((state.to_string(), release))
}

impl Guest for Multipass {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The instance must be running already: this asks Multipass that it is, and the
    /// instance for its kernel and cgroup layout, and that it has cilab.
    fn start(&mut self, _payload: &Payload) -> Result<()> {
        let info_args: Vec<String> = ["info", self.instance.as_str(), "--format", "json"].map(String::from).to_vec();
        let info = self.multipass(&info_args, REACH_DEADLINE)?;
        if info.status != 0 {
            return Err(backend_error(format!(
                "no Multipass instance `{}` (`multipass info` exited {}: {}): {}",
                self.instance,
                info.status,
                super::tail(&info.stderr, 5).replace('\n', " "),
                self.launch_hint()
            )));
        }
        let (state, _release) = instance_state(&self.instance, &info.stdout)?;
        if state != "Running" {
            return Err(backend_error(format!(
                "the Multipass instance `{0}` is {state}, not Running: `multipass start {0}`",
                self.instance
            )));
        }
        let probe = self.exec_args(&["sh".to_string(), "-c".to_string(), command::PROBE.to_string()]);
        let output = self.multipass(&probe, REACH_DEADLINE)?;
        if output.status != 0 {
            return Err(backend_error(format!(
                "the Multipass instance `{}` did not answer (`multipass exec` exited {}): {}",
                self.instance,
                output.status,
                super::tail(&output.stderr, 10).replace('\n', " ")
            )));
        }
        let probe = command::read_probe(NAME, &output.stdout)?;
        if !probe.has_cilab {
            return Err(backend_error(format!(
                "the Multipass instance `{}` has no `cilab` on PATH: provisioning has not built the tree yet: {}",
                self.instance,
                self.launch_hint()
            )));
        }
        self.info.kernel = Some(probe.kernel);
        self.info.cgroup = Some(probe.cgroup.to_string());
        Ok(())
    }

    /// In a scope of its own, which is stopped in the instance when the command is killed
    /// here (its deadline, or Ctrl-C).
    fn run_as_root(&mut self, argv: &[String], deadline: Duration) -> Result<GuestOutput> {
        let unit = command::unit_name();
        let args = self.exec_as_root_args(argv, Some(&unit));
        let stop = RemoteStop {
            what: format!("the command in the instance `{}` (scope {unit}.scope)", self.instance),
            program: self.program.clone(),
            args: self.stop_args(&unit),
        };
        command::run_stoppable(NAME, &self.program, &args, deadline, Some(stop))
    }

    fn run_on_terminal(&mut self, argv: &[String]) -> Result<i32> {
        command::run_on_terminal(NAME, &self.program, &self.exec_as_root_args(argv, None))
    }

    fn describe(&self) -> GuestInfo {
        self.info.clone()
    }

    /// The instance is the student's: it stays up.
    fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::GuestCheck;
    use crate::catalog;

    #[test]
    fn the_check_runs_as_root_in_a_delegated_scope_of_the_named_instance() {
        let guest = Multipass::with_instance("lab-vm");
        let check = GuestCheck {
            labs: vec![&catalog::all()[0]],
            repeat: 1,
            fault: None,
            build: true,
            hold_timeout: None,
            sealed: false,
        };
        let args = guest.exec_as_root_args(&check.argv(), Some("cilab-check-1"));
        let mut expected: Vec<String> = [
            "exec",
            "lab-vm",
            "--",
            "sudo",
            "systemd-run",
            "--quiet",
            "--scope",
            "--unit",
            "cilab-check-1",
            "-p",
            "TimeoutStopSec=15",
            "-p",
            "Delegate=yes",
            "--",
        ]
        .map(String::from)
        .to_vec();
        expected.extend(
            ["cilab", "check", "--format", "json", "--allow-jailbreak-on-this-host", catalog::all()[0].name]
                .map(String::from),
        );
        assert_eq!(args, expected);
        // Stopping the scope stops the check and all it started.
        assert_eq!(
            guest.stop_args("cilab-check-1"),
            ["exec", "lab-vm", "--", "sudo", "systemctl", "stop", "cilab-check-1.scope"].map(String::from)
        );
        // On the terminal (a person at the keyboard, who has Ctrl-C): no name needed.
        assert!(!guest.exec_as_root_args(&check.argv(), None).contains(&"--unit".to_string()));
    }

    #[test]
    fn building_in_the_guest_is_a_flag_of_the_check() {
        let labs = vec![&catalog::all()[0]];
        let built =
            GuestCheck { labs: labs.clone(), repeat: 1, fault: None, build: true, hold_timeout: None, sealed: false };
        let not = GuestCheck { labs, repeat: 1, fault: None, build: false, hold_timeout: None, sealed: false };
        assert!(!built.argv().contains(&"--no-build".to_string()), "{:?}", built.argv());
        assert_eq!(not.argv()[..3], ["cilab", "check", "--no-build"]);
        assert!(built.deadline() > not.deadline(), "a build in the guest gets time");
    }

    #[test]
    fn the_instance_is_cilab_unless_the_environment_names_another() {
        assert_eq!(instance_name(None), DEFAULT_INSTANCE);
        assert_eq!(instance_name(Some("other".into())), "other");
        assert_eq!(instance_name(Some(" ".into())), DEFAULT_INSTANCE);
    }

    #[test]
    fn multipass_info_is_read_for_the_instances_state() {
        let json = r#"{"errors": [], "info": {"cilab": {"cpu_count": "2", "image_release": "24.04 LTS",
            "ipv4": ["10.12.0.5"], "mounts": {}, "release": "Ubuntu 24.04.1 LTS", "state": "Running"}}}"#;
        assert_eq!(
            instance_state("cilab", json).expect("parsed"),
            ("Running".to_string(), Some("Ubuntu 24.04.1 LTS".to_string()))
        );
        let stopped = r#"{"errors": [], "info": {"cilab": {"state": "Stopped"}}}"#;
        assert_eq!(instance_state("cilab", stopped).expect("parsed").0, "Stopped");
        assert!(instance_state("other", json).is_err(), "another instance");
        assert!(instance_state("cilab", "info failed").is_err(), "not JSON");
    }
}
