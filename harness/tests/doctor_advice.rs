//! `cilab doctor` finds what root's permissions would hide (a state dir cilab cannot
//! write in), and every place cilab tells how to become root tells the same command.

mod common;

use std::process::Command;

use cilab::error::BECOME_ROOT;

fn finding<'a>(report: &'a serde_json::Value, topic: &str) -> &'a serde_json::Value {
    report["findings"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["topic"] == topic))
        .unwrap_or_else(|| panic!("no `{topic}` finding: {report:#}"))
}

/// Root writes through any permission bits: only a read-only mount (or a full disk)
/// stops it, so that is what the test makes, in a mount namespace of its own.
#[test]
fn a_read_only_state_dir_is_a_failing_finding_with_advice() {
    common::require_root();
    let before = common::host_state();
    std::fs::create_dir_all(cilab::registry::STATE_DIR).expect("mkdir the state dir");
    let cilab = assert_cmd::cargo::cargo_bin("cilab");
    let script = format!(
        "mount -t tmpfs -o ro none {} && exec {} doctor --format json",
        cilab::registry::STATE_DIR,
        cilab.display()
    );
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("doctor printed no JSON ({e}):\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr))
    });
    assert_eq!(output.status.code(), Some(1), "a failing finding makes doctor exit 1: {report:#}");
    let state = finding(&report, "state dir");
    assert_eq!(state["ok"], false, "{state:#}");
    let detail = state["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(cilab::registry::STATE_DIR) && detail.contains("Read-only"), "{state:#}");
    let advice = state["advice"].as_str().unwrap_or_default();
    assert!(advice.contains("read-only") && advice.contains("mount -o remount,rw"), "{state:#}");
    // The read-only mount lived and died with the namespace.
    common::assert_host_unchanged(&before);
}

/// The NotRoot error and doctor's advice name one command: `error::BECOME_ROOT`.
#[test]
fn becoming_root_is_told_one_way_everywhere() {
    common::require_root(); // to become someone else
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("cilab");
    std::fs::copy(assert_cmd::cargo::cargo_bin("cilab"), &copy).expect("copy cilab");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&copy)
            .args(args)
            .output()
            .expect("run setpriv")
    };
    let refused = as_nobody(&["check", "pid-ns", "--no-build"]);
    assert_eq!(refused.status.code(), Some(2));
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains(&format!("`{BECOME_ROOT}`")), "{error}");

    let doctor = as_nobody(&["doctor", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).expect("doctor prints JSON");
    for topic in ["root", "state dir"] {
        let advice = finding(&report, topic)["advice"].as_str().unwrap_or_default().to_string();
        assert!(advice.contains(&format!("`{BECOME_ROOT}`")), "{topic}: {advice}");
    }
}

/// A Docker container and image labelled by a run that is gone (its cilab SIGKILLed once
/// the run's record was removed, while `docker run` was still being answered): `cilab
/// doctor` finds them by their label, and `--clean` removes them.
#[test]
fn doctor_finds_and_removes_what_a_gone_run_left_in_docker() {
    common::require_root();
    let timeout = std::time::Duration::from_secs(60);
    let docker = |args: &[&str]| common::output_within(Command::new("docker").args(args), timeout);
    if !docker(&["info"]).is_some_and(|o| o.status.success()) {
        eprintln!("doctor_advice: SKIPPED (not a pass): no Docker engine answers here (`docker info`)");
        return;
    }
    // A run id whose cilab is this test process: not a cilab, so the run is gone.
    let run = format!("nsenter-join-{}-0", std::process::id());
    let scratch = cilab::registry::scratch_root().join(&run);
    let label = format!("cilab.scratch={}", scratch.display());
    let dir = tempfile::tempdir().expect("temp dir");
    let busybox = labkit::rootfs::find_static_busybox().expect("a static busybox");
    labkit::rootfs::build_busybox_rootfs(&dir.path().join("rootfs"), &busybox).expect("busybox rootfs");
    let tarball = dir.path().join("rootfs.tar");
    let tar = common::output_within(
        Command::new("tar").arg("-C").arg(dir.path().join("rootfs")).arg("-cf").arg(&tarball).arg("."),
        timeout,
    );
    assert!(tar.is_some_and(|o| o.status.success()), "tar of the rootfs");
    let tag = format!("cilab-doctor-test:{}", std::process::id());
    let name = format!("cilab-doctor-test-{}", std::process::id());
    // Whatever fails below, nothing of this test stays.
    struct Remove(Vec<Vec<String>>);
    impl Drop for Remove {
        fn drop(&mut self) {
            for args in &self.0 {
                let _ = common::output_within(Command::new("docker").args(args), std::time::Duration::from_secs(60));
            }
        }
    }
    let _remove =
        Remove(vec![vec!["rm".into(), "-f".into(), name.clone()], vec!["rmi".into(), "-f".into(), tag.clone()]]);
    let change = format!("LABEL {label}");
    let tarball = tarball.to_str().expect("a UTF-8 temp path");
    assert!(docker(&["import", "--change", &change, tarball, &tag]).is_some_and(|o| o.status.success()));
    let ran =
        docker(&["run", "-d", "--network", "none", "--name", &name, "--label", &label, &tag, "/bin/sleep", "600"]);
    assert!(ran.is_some_and(|o| o.status.success()), "docker run");

    let cilab = assert_cmd::cargo::cargo_bin("cilab");
    let output = Command::new(&cilab).args(["doctor", "--format", "json"]).output().expect("cilab doctor");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("doctor's JSON");
    let outside: Vec<String> = report["leftovers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["kind"] == "outside" && l["path"] == scratch.display().to_string())
        .map(|l| l["detail"].as_str().unwrap_or_default().to_string())
        .collect();
    let cleaned = Command::new(&cilab).args(["doctor", "--clean"]).output().expect("cilab doctor --clean");
    let left = |what: &str| {
        let listed = docker(&[what, "-aq", "--filter", &format!("label={label}")]);
        listed.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
    };
    let (containers, images) = (left("ps"), left("images"));
    assert_eq!(outside.len(), 2, "one container and one image, each a leftover: {report:#}");
    assert!(
        outside.iter().any(|d| d.starts_with("Docker container"))
            && outside.iter().any(|d| d.starts_with("Docker image"))
    );
    assert!(cleaned.status.success(), "doctor --clean: {}", String::from_utf8_lossy(&cleaned.stderr));
    assert_eq!((containers.as_str(), images.as_str()), ("", ""), "left after doctor --clean");
}
