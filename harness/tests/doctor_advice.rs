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
