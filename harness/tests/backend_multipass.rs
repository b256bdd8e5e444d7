//! `cilab check --backend multipass` end to end, against a fake `multipass` on PATH
//! (tests/support/fake-multipass.sh): Multipass is a snap, and this machine has no snapd,
//! so the real one never ran here. The fake answers as Multipass does, logs every call,
//! and its "instance" is this machine: the check it is asked to run as root is run here,
//! as it is, so the report that comes back is a real one and the command line the backend
//! builds is one that works. The failures of the instance (not there, stopped, not
//! provisioned, a check that crashed, no multipass at all) must each be the backend's
//! failure (exit 2, every verdict a SKIP), never the student's. And Ctrl-C stops the check
//! in the instance too, not only the `multipass exec` here.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use cilab::catalog;
use cilab::probe::pidfd::PidFd;
use cilab::report::Report;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const INSTANCE: &str = "lab-vm";

/// A fake `multipass` on PATH, in a temporary directory with its call log.
struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake-multipass.sh");
        std::os::unix::fs::symlink(&script, dir.path().join("multipass")).expect("symlink the fake");
        Fake { dir }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("calls")
    }

    /// Each call the backend made: its arguments.
    fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('\x1f').filter(|a| !a.is_empty()).map(String::from).collect())
            .collect()
    }

    /// PATH for cilab: the fake, the cilab under test, then this PATH (cargo and rustc: the
    /// "guest"'s cilab builds the labs first). Without the fake: only cilab's directory, so
    /// that no multipass is found even where one is installed.
    fn path(&self, with_fake: bool) -> std::ffi::OsString {
        let cilab = assert_cmd::cargo::cargo_bin("cilab");
        let bin = cilab.parent().expect("target dir").to_path_buf();
        let inherited = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = if with_fake { vec![self.dir.path().to_path_buf()] } else { Vec::new() };
        dirs.push(bin);
        if with_fake {
            dirs.extend(std::env::split_paths(&inherited));
        }
        std::env::join_paths(dirs).expect("PATH")
    }

    /// The environment of cilab and the fake, the instance in the state given.
    fn env(
        &self,
        state: &str,
        has_cilab: &str,
        check: &str,
        with_fake: bool,
    ) -> Vec<(&'static str, std::ffi::OsString)> {
        vec![
            ("PATH", self.path(with_fake)),
            ("CILAB_MULTIPASS_INSTANCE", INSTANCE.into()),
            ("FAKE_MULTIPASS_LOG", self.log().into()),
            ("FAKE_INSTANCE", INSTANCE.into()),
            ("FAKE_STATE", state.into()),
            ("FAKE_HAS_CILAB", has_cilab.into()),
            ("FAKE_CHECK", check.into()),
        ]
    }

    /// `cilab check <args> --backend multipass --format json` with the fake first on PATH
    /// (`with_fake: false`: no multipass on PATH at all), the instance in the state given.
    fn check(&self, args: &[&str], state: &str, has_cilab: &str, check: &str, with_fake: bool) -> (Output, Report) {
        let output = common::cilab()
            .arg("check")
            .args(args)
            .args(["--backend", "multipass", "--format", "json"])
            .envs(self.env(state, has_cilab, check, with_fake))
            .output()
            .expect("run cilab");
        let report: Report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "no report ({e}): exit {:?}\n{}\n{}",
                output.status.code(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output, report)
    }
}

fn words(text: &[&str]) -> Vec<String> {
    text.iter().map(|w| w.to_string()).collect()
}

#[test]
fn the_check_runs_in_the_instance_over_multipass_exec_and_its_report_comes_back() {
    common::require_root();
    common::build_labs();
    let _host = common::host_lock();
    // Any lab will do but chroot-escape, whose escape would reach this host (the fake's
    // instance is this machine): the first other lab of the catalog.
    let lab = catalog::all().iter().find(|l| l.name != "chroot-escape").expect("a lab");
    let fake = Fake::new();

    let (output, report) = fake.check(&[lab.name], "Running", "has-cilab", "run", true);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{:?}\n{}",
        report.labs.iter().map(|l| &l.harness_failure).collect::<Vec<_>>(),
        String::from_utf8_lossy(&output.stderr)
    );
    common::assert_all_passed(&report);
    assert_eq!(report.labs.len(), 1);
    let graded = &report.labs[0];
    assert_eq!((graded.lab.as_str(), graded.backend.as_str()), (lab.name, "multipass"));
    let ids: Vec<&str> = graded.verdicts.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, lab.all_verdicts().iter().map(|v| v.id).collect::<Vec<_>>());
    let guest = graded.guest.as_ref().expect("guest info");
    assert_eq!(
        (guest.backend.as_str(), guest.kernel.as_deref(), guest.cgroup.as_deref()),
        ("multipass", Some("6.8.0-49-generic"), Some("v2")),
        "what the instance said of itself"
    );

    // What Multipass was asked: the instance's state, what it is, then the check as root
    // in a delegated scope of its own name; the check builds the labs first (the student's
    // latest edits). Nothing was stopped: the check ended by itself.
    let calls = fake.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[0], words(&["info", INSTANCE, "--format", "json"]));
    assert_eq!(calls[1][..5], words(&["exec", INSTANCE, "--", "sh", "-c"]));
    let unit = calls[2].get(8).cloned().unwrap_or_default();
    assert!(unit.starts_with("cilab-check-"), "{:?}", calls[2]);
    let mut check = words(&["exec", INSTANCE, "--", "sudo", "systemd-run", "--quiet", "--scope", "--unit", &unit]);
    check.extend(words(&["-p", "TimeoutStopSec=15", "-p", "Delegate=yes"]));
    check.extend(words(&["--", "cilab", "check", "--format", "json", "--allow-jailbreak-on-this-host", lab.name]));
    assert_eq!(calls[2], check);

    // --no-build: the guest's cilab is told not to build.
    let (output, _) = fake.check(&["--no-build", lab.name], "Running", "has-cilab", "run", true);
    assert_eq!(output.status.code(), Some(0));
    let last = fake.calls().pop().expect("a call");
    assert!(last.iter().skip_while(|w| *w != "cilab").any(|w| w == "--no-build"), "{last:?}");
}

#[test]
fn a_missing_stopped_unprovisioned_or_crashing_instance_is_the_backends_failure() {
    let lab = &catalog::all()[0];
    let cases: [(&str, &str, &str, bool, &str); 5] = [
        ("Stopped", "has-cilab", "run", true, "`multipass start lab-vm`"),
        ("Running", "no-cilab", "run", true, "sudo cilab-provision"),
        ("Running", "has-cilab", "garbage", true, "exited 139"),
        ("Suspended", "has-cilab", "run", true, "is Suspended, not Running"),
        ("Running", "has-cilab", "run", false, "could not run `multipass`"),
    ];
    for (state, has_cilab, check, with_fake, says) in cases {
        let fake = Fake::new();
        let (output, report) = fake.check(&[lab.name], state, has_cilab, check, with_fake);
        let case = format!("{state}/{has_cilab}/{check}/fake on PATH: {with_fake}");
        assert_eq!(output.status.code(), Some(2), "{case}: the backend's failure exits 2");
        assert_eq!(report.labs.len(), 1, "{case}");
        let failure = report.labs[0].harness_failure.as_deref().unwrap_or_else(|| panic!("{case}: no harness_failure"));
        assert!(failure.contains(says), "{case}: `{failure}` does not say `{says}`");
        assert!(
            report.labs[0].verdicts.iter().all(|v| v.outcome == cilab::verdict::Outcome::Skip),
            "{case}: every verdict a SKIP"
        );
    }
    // Another instance than the one named is not used: the fake has only `lab-vm`.
    let fake = Fake::new();
    let output = common::cilab()
        .args(["check", lab.name, "--backend", "multipass", "--format", "json"])
        .env("PATH", std::env::join_paths([fake.dir.path(), Path::new("/usr/bin"), Path::new("/bin")]).expect("PATH"))
        .env("CILAB_MULTIPASS_INSTANCE", "someone-else")
        .env("FAKE_MULTIPASS_LOG", fake.log())
        .env("FAKE_INSTANCE", INSTANCE)
        .env("FAKE_STATE", "Running")
        .env("FAKE_HAS_CILAB", "has-cilab")
        .env("FAKE_CHECK", "run")
        .output()
        .expect("run cilab");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stdout).contains("no Multipass instance `someone-else`"));
    assert_eq!(fake.calls(), vec![words(&["info", "someone-else", "--format", "json"])]);
}

/// Kills the "instance"'s check (a process the fake started for this test) if the test
/// ends before the backend stopped it.
struct GuestCheck(PidFd);

impl Drop for GuestCheck {
    fn drop(&mut self) {
        let _ = self.0.send(Signal::SIGKILL);
    }
}

/// Ctrl-C while the check runs in the instance: cilab kills its `multipass exec`, and,
/// since that does not stop the check in the instance, stops its scope there with a second
/// `multipass exec ... systemctl stop`, says so, and exits 130.
#[test]
fn ctrl_c_stops_the_check_in_the_instance_too() {
    let lab = &catalog::all()[0];
    let fake = Fake::new();
    let ready = fake.dir.path().join("ready");
    nix::unistd::mkfifo(&ready, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let cilab = std::process::Command::new(assert_cmd::cargo::cargo_bin("cilab"))
        .args(["check", lab.name, "--backend", "multipass", "--format", "json"])
        .envs(fake.env("Running", "has-cilab", "hang", true))
        .env("FAKE_READY", &ready)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cilab");
    let cilab_pid = Pid::from_raw(cilab.id() as i32);
    // The check runs in the "instance" once it says so.
    let mut started = String::new();
    std::fs::File::open(&ready).expect("open the fifo").read_to_string(&mut started).expect("read the fifo");
    assert_eq!(started, "started\n");
    let calls = fake.calls();
    let unit = calls.last().and_then(|call| call.get(8)).cloned().unwrap_or_default();
    assert!(unit.starts_with("cilab-check-"), "{calls:?}");
    let pid: i32 = std::fs::read_to_string(fake.dir.path().join(format!("{unit}.pid")))
        .expect("the check's pid file")
        .trim()
        .parse()
        .expect("a pid");
    let guest_check = GuestCheck(PidFd::open(pid).expect("pidfd of the check in the instance"));

    kill(cilab_pid, Signal::SIGINT).expect("Ctrl-C");
    let output = cilab.wait_with_output().expect("wait for cilab");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing graded: no report");
    assert!(stderr.contains("killed `multipass`"), "{stderr}");
    assert!(
        stderr.contains(&format!("stopped the command in the instance `{INSTANCE}` (scope {unit}.scope)")),
        "{stderr}"
    );
    assert_eq!(
        fake.calls().last(),
        Some(&words(&["exec", INSTANCE, "--", "sudo", "systemctl", "stop", &format!("{unit}.scope")])),
        "the scope is stopped in the instance"
    );
    assert!(guest_check.0.wait_exit(Duration::from_secs(10)), "the check in the instance still runs");
}
