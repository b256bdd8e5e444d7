//! A student stepping through the labs: `cilab list` (progress, NEXT, history), `cilab
//! hint`, `cilab reset` and `cilab watch`, and progress drawn only on a terminal. Results go
//! to a throwaway directory (CILAB_RESULTS_DIR); whatever edits a lab does so in a copy of
//! the tree (CILAB_SOURCE_TREE), never in this one.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cilab::catalog::{self, LabSpec};
use cilab::verdict::Outcome;

/// The lab the tests that build and check a copy use: a quick one.
const QUICK_LAB: &str = "pid-ns";

fn first_lab() -> &'static LabSpec {
    catalog::all().iter().min_by_key(|l| l.order).expect("the catalog has labs")
}

/// `cilab` with this test's results directory (and, if given, a copy of the tree).
fn cilab_in(results: &Path, tree: Option<&Tree>) -> std::process::Command {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("cilab"));
    command.env("CILAB_RESULTS_DIR", results).env_remove("CILAB_SOURCE_TREE").env_remove("CARGO_TARGET_DIR");
    if let Some(tree) = tree {
        command.env("CILAB_SOURCE_TREE", &tree.root).env("CARGO_TARGET_DIR", &tree.target);
    }
    command
}

fn stdout_of(command: &mut std::process::Command) -> (i32, String) {
    let output = command.output().expect("run cilab");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.code().is_some_and(|c| c <= 1),
        "{command:?}: exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), stdout)
}

/// A copy of this tree's sources (no target/, no .git) with a target dir of its own, both
/// kept under this tree's target/ so that a rerun rebuilds only what changed.
struct Tree {
    root: PathBuf,
    target: PathBuf,
}

impl Tree {
    fn copy(name: &str) -> Tree {
        let base = common::workspace().join("target").join("cilab-student").join(name);
        let tree = Tree { root: base.join("tree"), target: base.join("target") };
        let _ = std::fs::remove_dir_all(tree.root.join(".cilab-backups"));
        sync(&common::workspace(), &tree.root);
        tree
    }

    fn source(&self, lab: &LabSpec) -> PathBuf {
        self.root.join("labs").join(lab.name).join("src/main.rs")
    }
}

/// Copies `from` to `to`, writing only files whose content differs (cargo goes by mtimes).
fn sync(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let name = entry.file_name();
        if [".git", "target", ".cilab-backups"].iter().any(|skip| name == *skip) {
            continue;
        }
        let (source, target) = (entry.path(), to.join(&name));
        if entry.file_type().expect("stat").is_dir() {
            sync(&source, &target);
        } else if entry.file_type().expect("stat").is_file() {
            let bytes = std::fs::read(&source).expect("read");
            if std::fs::read(&target).ok().as_deref() != Some(bytes.as_slice()) {
                std::fs::write(&target, bytes).expect("write");
            }
        }
    }
}

/// The lines of `source` outside every STUDENT region's inside (markers and hints kept).
fn outside_regions(source: &str) -> Vec<String> {
    let regions = labkit::regions::parse(source).expect("regions");
    source
        .lines()
        .enumerate()
        .filter(|(i, _)| !regions.iter().any(|r| *i + 1 > r.begin_line && *i + 1 < r.end_line))
        .map(|(_, l)| l.to_string())
        .collect()
}

#[test]
fn list_shows_progress_next_and_history_after_real_checks() {
    common::require_root();
    let _host = common::host_lock();
    let _clean = common::CleanOnPanic;
    let results = tempfile::tempdir().expect("tempdir");
    let lab = first_lab();
    let (_, before) = stdout_of(cilab_in(results.path(), None).arg("list"));
    assert!(before.contains(&format!("NEXT: lab {} {}: cilab run", lab.order, lab.name)), "{before}");
    assert!(before.contains(&format!("Progress: 0 of {} labs", catalog::all().len())), "{before}");

    let mut reports = Vec::new();
    for _ in 0..2 {
        let (_, json) = stdout_of(cilab_in(results.path(), None).args(["check", lab.name, "--format", "json"]));
        let report: cilab::report::Report = serde_json::from_str(&json).expect("a JSON report");
        reports.push(report.labs.into_iter().next().expect("one lab"));
    }
    let (points, max) = reports[1].points();
    let (_, after) = stdout_of(cilab_in(results.path(), None).arg("list"));
    let row = after.lines().find(|l| l.split_whitespace().nth(1) == Some(lab.name)).expect("the lab's row");
    assert!(row.contains(&format!("{} {points}/{max}", reports[1].result_word())), "{row}");
    // NEXT is the first lab in course order not passed with full points.
    let mut ordered: Vec<&LabSpec> = catalog::all().iter().collect();
    ordered.sort_by_key(|l| l.order);
    let full = |r: &cilab::report::LabReport| r.result_word() == "passed" && r.points().0 == r.points().1;
    let next = if reports.iter().any(full) { ordered.get(1) } else { ordered.first() };
    match next {
        Some(next) => assert!(after.contains(&format!("NEXT: lab {} {}:", next.order, next.name)), "{after}"),
        None => assert!(after.contains("Every lab passed"), "{after}"),
    }

    let (_, history) = stdout_of(cilab_in(results.path(), None).args(["list", "--history", lab.name]));
    let attempts: Vec<&str> = history.lines().filter(|l| l.contains(" UTC  ")).collect();
    let expected: Vec<String> =
        reports.iter().map(|r| format!("{} {}/{}", r.result_word(), r.points().0, r.points().1)).collect();
    assert_eq!(attempts.len(), expected.len(), "{history}");
    for (line, want) in attempts.iter().zip(&expected) {
        assert!(line.ends_with(want.as_str()), "{line:?} should end with {want:?}\n{history}");
    }
    assert!(attempts.windows(2).all(|w| w[0] <= w[1]), "newest last:\n{history}");
    let (_, everything) = stdout_of(cilab_in(results.path(), None).args(["list", "--history"]));
    for other in catalog::all() {
        assert!(everything.contains(&format!("{} {} (", other.order, other.name)), "{everything}");
    }
}

#[test]
fn reset_restores_the_starters_in_a_copy_and_keeps_a_backup() {
    let results = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = Tree { root: dir.path().to_path_buf(), target: dir.path().join("target") };
    std::fs::copy(common::workspace().join("Cargo.toml"), tree.root.join("Cargo.toml")).expect("copy Cargo.toml");
    for lab in catalog::all() {
        let source = tree.source(lab);
        std::fs::create_dir_all(source.parent().expect("src")).expect("mkdir");
        std::fs::copy(common::workspace().join("labs").join(lab.name).join("src/main.rs"), &source).expect("copy");
        let original = std::fs::read_to_string(&source).expect("read");
        let regions = labkit::regions::parse(&original).expect("regions");
        let first = regions.first().expect("a lab has regions");

        let (_, dry) = stdout_of(cilab_in(results.path(), Some(&tree)).args(["reset", lab.name, "--dry-run"]));
        assert!(dry.contains("dry run"), "{dry}");
        assert_eq!(std::fs::read_to_string(&source).expect("read"), original, "--dry-run changed {}", lab.name);

        // One region.
        stdout_of(cilab_in(results.path(), Some(&tree)).args(["reset", lab.name, "--region", &first.name]));
        let one = labkit::regions::parse(&std::fs::read_to_string(&source).expect("read")).expect("regions");
        for (now, was) in one.iter().zip(&regions) {
            let want = if now.name == first.name { labkit::regions::todo_body(was) } else { was.body.clone() };
            assert_eq!(now.body, want, "{} region {}", lab.name, now.name);
        }

        // All of them; the backup is the file as it was just before.
        let just_before = std::fs::read_to_string(&source).expect("read");
        let (_, said) = stdout_of(cilab_in(results.path(), Some(&tree)).args(["reset", lab.name]));
        let reset = std::fs::read_to_string(&source).expect("read");
        for (now, was) in labkit::regions::parse(&reset).expect("regions").iter().zip(&regions) {
            assert_eq!(now.body, labkit::regions::todo_body(was), "{} region {}", lab.name, now.name);
        }
        assert_eq!(
            outside_regions(&reset),
            outside_regions(&original),
            "{}: code outside the regions changed",
            lab.name
        );
        let restore = said.lines().find_map(|l| l.strip_prefix("To restore it: cp ")).expect("how to restore");
        let backup = PathBuf::from(restore.split_whitespace().next().expect("the backup's path"));
        assert!(backup.starts_with(tree.root.join(".cilab-backups")), "{said}");
        assert_eq!(std::fs::read_to_string(&backup).expect("the backup"), just_before, "{said}");

        let (_, again) = stdout_of(cilab_in(results.path(), Some(&tree)).args(["reset", lab.name]));
        assert!(again.contains("Nothing to reset"), "{again}");
    }
    // Not a source tree: a clear error, nothing touched.
    let output = cilab_in(results.path(), None)
        .env("CILAB_SOURCE_TREE", dir.path().join("no-tree"))
        .args(["reset", first_lab().name])
        .output()
        .expect("run cilab");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("source tree"), "{output:?}");
}

/// Reads a child's stdout line by line into a channel.
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

/// Everything `lines` gives until a line containing `until` (included), within `timeout`.
fn read_until(lines: &mpsc::Receiver<String>, until: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut text = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                if line.contains(until) {
                    return text;
                }
            }
            Err(error) => panic!("no line with {until:?} within {timeout:?} ({error}); got:\n{text}"),
        }
    }
}

#[test]
fn hint_cycles_through_a_failed_check_and_watch_rechecks_after_a_save() {
    common::require_root();
    common::adopt_orphans();
    let _host = common::host_lock();
    let lab = catalog::find(QUICK_LAB).expect("the lab");
    let results = tempfile::tempdir().expect("tempdir");
    let tree = Tree::copy("watch");
    let cilab = || cilab_in(results.path(), Some(&tree));

    stdout_of(cilab().args(["hint", lab.name])).1.contains("cilab check").then_some(()).expect("no check yet");
    let (_, said) = stdout_of(cilab().args(["reset", lab.name]));
    let backup = said.lines().find_map(|l| l.strip_prefix("To restore it: cp ")).expect("a backup");
    let backup = PathBuf::from(backup.split_whitespace().next().expect("path"));

    let before = common::host_state();
    let (code, json) = stdout_of(cilab().args(["check", lab.name, "--format", "json"]));
    assert_eq!(code, 1, "the starter fails");
    let report: cilab::report::Report = serde_json::from_str(&json).expect("a JSON report");
    let failed: Vec<&cilab::verdict::Verdict> =
        report.labs[0].verdicts.iter().filter(|v| v.outcome == Outcome::Fail).collect();
    assert!(!failed.is_empty());

    // Each call the next failing verdict; then "no more"; then from the first again.
    let mut shown = Vec::new();
    for _ in 0..failed.len() {
        let (_, out) = stdout_of(cilab().args(["hint", lab.name]));
        let id = out.lines().find_map(|l| l.strip_prefix("FAILED  ")).and_then(|l| l.split(':').next()).expect(&out);
        assert!(out.contains("  hint: "), "{out}");
        shown.push(id.to_string());
    }
    let mut expected: Vec<String> = failed.iter().map(|v| v.id.clone()).collect();
    let first_hinted = failed.iter().find(|v| v.hint.is_some()).map(|v| v.id.clone());
    assert_eq!(shown.first().cloned(), first_hinted, "the first hint is the report's first");
    shown.sort();
    expected.sort();
    assert_eq!(shown, expected, "every failing verdict once");
    let (_, no_more) = stdout_of(cilab().args(["hint", lab.name]));
    assert!(no_more.contains("No more hints"), "{no_more}");
    let (_, again) = stdout_of(cilab().args(["hint", lab.name]));
    assert!(again.contains(&format!("Hint 1 of {}", failed.len())), "{again}");

    // Watch: the first check fails; restoring the file as an editor saves it (a temporary
    // file renamed over it) checks again, and every point comes back.
    let child = cilab()
        .args(["watch", lab.name])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start cilab watch");
    let mut watch = common::OwnedCilab(child);
    let lines = lines_of(watch.0.stdout.take().expect("stdout"));
    let first = read_until(&lines, "Watching ", Duration::from_secs(300));
    assert!(first.contains("first check") && first.contains(&format!("0/{}", lab.max_points())), "{first}");
    let temporary = tree.source(lab).with_file_name(".main.rs.swp");
    std::fs::copy(&backup, &temporary).expect("write the save");
    std::fs::rename(&temporary, tree.source(lab)).expect("rename the save");
    let second = read_until(&lines, "Watching ", Duration::from_secs(300));
    assert!(second.contains("checked again after a save of main.rs"), "{second}");
    assert!(second.contains(&format!("Points: 0 -> {0} of {0}", lab.max_points())), "{second}");
    for verdict in &failed {
        assert!(second.contains(&format!("(fail -> pass): {}", verdict.id)), "{second}");
    }
    // A file that does not build is shown as such, and the watch goes on.
    let good = std::fs::read_to_string(tree.source(lab)).expect("read");
    std::fs::write(tree.source(lab), format!("{good}\nthis is not rust\n")).expect("write");
    let broken = read_until(&lines, "Watching ", Duration::from_secs(300));
    assert!(broken.contains("BUILD FAILED"), "{broken}");
    std::fs::write(tree.source(lab), &good).expect("write");
    read_until(&lines, "Watching ", Duration::from_secs(300));

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(watch.0.id() as i32), nix::sys::signal::SIGINT).expect("SIGINT");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = watch.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "cilab watch did not end on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    drop(watch);
    common::assert_host_unchanged(&before);
}

#[test]
fn progress_is_drawn_on_a_terminal_and_not_when_piped() {
    common::require_root();
    let _host = common::host_lock();
    let _clean = common::CleanOnPanic;
    let lab = first_lab();
    let results = tempfile::tempdir().expect("tempdir");
    let output = cilab_in(results.path(), None).args(["check", lab.name]).output().expect("run cilab");
    assert!(output.status.code().is_some_and(|c| c <= 1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.is_empty(), "piped, nothing is drawn on stderr:\n{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains('\x1b'), "no escape codes when piped");

    // On a terminal (a pty for stdout and stderr) the spinner is drawn.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut child = cilab_in(results.path(), None)
        .args(["check", lab.name])
        .stdin(std::process::Stdio::null())
        .stdout(pty.slave.try_clone().expect("dup"))
        .stderr(pty.slave)
        .spawn()
        .expect("run cilab on a pty");
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // EIO once the child (the last holder of the slave) is gone.
        let _ = std::io::Read::read_to_end(&mut master, &mut bytes);
        bytes
    });
    let status = child.wait().expect("wait");
    let drawn = String::from_utf8_lossy(&reader.join().expect("reader")).into_owned();
    assert!(status.code().is_some_and(|c| c <= 1), "{drawn}");
    assert!(drawn.contains(&format!("checking {}", lab.name)), "no spinner on a terminal:\n{drawn}");
}
