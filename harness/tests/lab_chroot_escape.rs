//! Lab chroot-escape, graded by the real harness on the real kernel (needs root, and a
//! machine that looks disposable: the lab breaks out of its jail on purpose). And its
//! guard: on a machine whose evidence says it is not disposable (faked with a root
//! directory that holds none, which can only take evidence away), `cilab check` skips
//! every verdict loudly, `cilab run` and the lab binary refuse, and the explicit flag
//! lets them run.

mod common;

use cilab::verdict::Outcome;

#[test]
fn chroot_escape_every_verdict_passes() {
    common::require_root();
    assert!(
        !labkit::disposable::evidence().is_empty(),
        "this machine does not look disposable: chroot-escape refuses to run here (see the guard test)"
    );
    let (code, report) = common::check(&["chroot-escape"]);
    common::assert_all_passed(&report);
    assert_eq!(code, 0, "cilab check exits 0 when every verdict passed");
    assert_eq!(report.labs.len(), 1);
    insta::assert_yaml_snapshot!("chroot_escape_observations", &report.labs[0].observations);
}

#[test]
fn the_guard_refuses_where_the_evidence_says_not_disposable() {
    common::require_root();
    let bare = common::bare_metal::BareMetal::new();
    let env = labkit::disposable::FAKE_ROOT_ENV;
    let before = common::host_state();

    // cilab doctor reads the same evidence.
    let doctor = common::cilab().arg("doctor").env(env, bare.path()).output().expect("run cilab doctor");
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("looks like a real machine"), "doctor:\n{text}");
    // A declaration is shown, and counts for doctor exactly as for the guard: not at all.
    let doctor = common::cilab()
        .args(["doctor", "--format", "json"])
        .env(env, bare.path())
        .env(labkit::disposable::DECLARED_ENV, "1")
        .output()
        .expect("run cilab doctor");
    let said: serde_json::Value = serde_json::from_slice(&doctor.stdout).expect("doctor's JSON");
    assert_eq!(said["disposable"], serde_json::Value::Bool(false), "{said}");
    assert!(said.to_string().contains(labkit::disposable::DECLARED_ENV), "{said}");

    // cilab check: every verdict a SKIP that says why and what to do; nothing ran.
    let output = common::cilab()
        .args(["check", "chroot-escape", "--format", "json"])
        .env(env, bare.path())
        .output()
        .expect("run cilab");
    let report: cilab::report::Report = serde_json::from_slice(&output.stdout).expect("a JSON report");
    let lab = &report.labs[0];
    assert!(!lab.verdicts.is_empty());
    for verdict in &lab.verdicts {
        assert_eq!(verdict.outcome, Outcome::Skip, "{}: {:?}", verdict.id, verdict.detail);
        let detail = verdict.detail.as_deref().unwrap_or_default();
        assert!(detail.contains("does not look disposable"), "{}: {detail}", verdict.id);
        assert!(detail.contains(labkit::disposable::ALLOW_FLAG), "{}: {detail}", verdict.id);
    }
    assert_eq!(output.status.code(), Some(1), "a SKIP is never a pass");
    assert!(lab.observations.is_empty(), "nothing was observed: the lab never ran");

    // cilab run refuses before it starts anything.
    let run = common::cilab().args(["run", "chroot-escape", "--no-build"]).env(env, bare.path()).output().expect("run");
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("does not look disposable"), "{run:?}");

    // The lab binary by hand refuses too, with the same words, and makes nothing.
    let binary = assert_cmd::cargo::cargo_bin("lab-chroot-escape");
    let by_hand = std::process::Command::new(&binary).env(env, bare.path()).output().expect("run the lab");
    assert_eq!(by_hand.status.code(), Some(1));
    let said = String::from_utf8_lossy(&by_hand.stderr);
    assert!(said.contains("refusing to run") && said.contains(labkit::disposable::ALLOW_FLAG), "{said}");
    assert!(by_hand.stdout.is_empty(), "it refused before its first step");

    // A declaration is not evidence.
    let declared = std::process::Command::new(&binary)
        .env(env, bare.path())
        .env(labkit::disposable::DECLARED_ENV, "1")
        .output()
        .expect("run the lab");
    assert_eq!(declared.status.code(), Some(1), "CILAB_DISPOSABLE=1 alone does not let it run");

    // The explicit flag does: through cilab run (which hands it to the lab), through
    // cilab check, and for the lab binary by hand.
    let run = common::cilab()
        .args(["run", "chroot-escape", "--no-build", labkit::disposable::ALLOW_FLAG])
        .env(env, bare.path())
        .output()
        .expect("run");
    assert!(run.status.success(), "{run:?}");
    let workdir = std::env::temp_dir().join(format!("cilab-guard-test-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).expect("mkdir");
    let flagged = std::process::Command::new(&binary)
        .arg(labkit::disposable::ALLOW_FLAG)
        .arg("--workdir")
        .arg(&workdir)
        .env(env, bare.path())
        .output()
        .expect("run the lab");
    let _ = std::fs::remove_dir(&workdir);
    assert!(flagged.status.success(), "{flagged:?}");
    assert!(String::from_utf8_lossy(&flagged.stdout).contains(&format!("{} was given", labkit::disposable::ALLOW_FLAG)));
    let (code, allowed) = common::check(&["chroot-escape", labkit::disposable::ALLOW_FLAG]);
    common::assert_all_passed(&allowed);
    assert_eq!(code, 0);
    // Only this lab's: another cilab (a colleague's corpus) may come and go meanwhile.
    let theirs = |line: &String| {
        let run_of_another_lab =
            ["/cilab/", "scratch/", "runs/"].iter().any(|p| line.contains(p)) && !line.contains("chroot-escape");
        let process_of_another_lab =
            line.contains("lab process left") && !line.contains("esc-") && !line.contains("lab-chroot-esc");
        run_of_another_lab || process_of_another_lab
    };
    let changes: Vec<String> =
        common::host_changes(&before, &common::host_state(), &[]).into_iter().filter(|l| !theirs(l)).collect();
    assert!(changes.is_empty(), "nothing of the host changed: {changes:?}");
}
