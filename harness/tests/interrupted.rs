//! cilab itself SIGKILLed in the middle of a run: `cilab doctor` finds what it left,
//! wherever its cgroups are nested (its runs' and its own v2 leaf), and `cilab doctor
//! --clean` removes it. (Alone in its file: doctor looks at the whole host.)

mod cgroup_state;
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn doctor_reports_and_cleans_what_a_killed_cilab_left() {
    common::require_root();
    let before = common::host_state();
    let cgroups_before = cgroup_state::cilab_cgroups();
    let doctor = |args: &[&str]| -> serde_json::Value {
        let output = common::cilab().arg("doctor").args(args).args(["--format", "json"]).output().expect("doctor");
        serde_json::from_slice(&output.stdout).expect("doctor prints JSON")
    };
    assert_eq!(doctor(&[])["leftovers"], serde_json::json!([]), "the host must be clean before the test");

    // The lab dies with cilab (PR_SET_PDEATHSIG); we started cilab, so we reap its orphans.
    common::adopt_orphans();
    let binary = assert_cmd::cargo::cargo_bin("cilab");
    let mut cilab = common::OwnedCilab(
        Command::new(binary)
            .args(["check", "pid-ns", "--fault", "hang-at:init-running"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cilab"),
    );
    // Wait until cilab says it is hanging with the lab held at init-running.
    let stderr = cilab.0.stderr.take().expect("stderr");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = receiver.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        match line {
            Ok(line) if line.contains("fault injected: hanging") => break,
            Ok(_) => continue,
            Err(e) => panic!("cilab never reached the hang point: {e}"),
        }
    }
    // The cilab we started, by its PID.
    kill(Pid::from_raw(cilab.0.id() as i32), Signal::SIGKILL).expect("kill cilab");
    cilab.0.wait().expect("reap cilab");
    common::reap_adopted(Duration::from_secs(5));

    let found = doctor(&[]);
    let leftovers = found["leftovers"].as_array().expect("list");
    let kinds: Vec<&str> = leftovers.iter().filter_map(|l| l["kind"].as_str()).collect();
    assert!(kinds.contains(&"run"), "doctor names the run record: {found:#}");
    assert!(kinds.contains(&"cgroup"), "doctor names the run's cgroups: {found:#}");
    assert!(kinds.contains(&"scratch"), "doctor names the scratch dir: {found:#}");
    assert!(kinds.contains(&"harness"), "doctor names the killed cilab's own v2 cgroup: {found:#}");
    // Each run cgroup sits below the cgroup cilab was started in (this test's), nested
    // or not, in every hierarchy it used.
    let paths: Vec<&str> = leftovers.iter().filter_map(|l| l["path"].as_str()).collect();
    for controller in [Some("pids"), Some("memory"), Some("freezer"), None] {
        let start = cgroup_state::own_cgroup(controller).join("cilab");
        assert!(
            paths.iter().any(|p| std::path::Path::new(p).starts_with(&start)),
            "no leftover below {} ({controller:?}): {paths:?}",
            start.display()
        );
    }

    let cleaned = doctor(&["--clean"]);
    assert_eq!(cleaned["leftovers"], serde_json::json!([]), "after --clean: {cleaned:#}");
    common::assert_host_unchanged(&before);
    cgroup_state::assert_unchanged(&cgroups_before);
}
