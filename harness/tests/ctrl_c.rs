//! Ctrl-C on every path. `cilab check` interrupted at any moment (while it starts, with a
//! lab held mid-run, while it tears a run down) grades nothing: it exits 130, prints no
//! report, leaves this tree's saved results byte for byte as they were, and leaves the
//! host as it was. A person pressing Ctrl-C in the middle of `cilab run` gets a lab that
//! cleans up and a cilab that removes whatever is left. (The tests look at the whole
//! host: one at a time.)

mod cgroup_state;
mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cilab::probe::pidfd::PidFd;
use cilab::registry::RunRecord;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn lines_of(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    receiver
}

fn wait_for(lines: &Receiver<String>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(needle) => return,
            Ok(_) => continue,
            Err(e) => panic!("never saw `{needle}`: {e}"),
        }
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "cilab did not exit after Ctrl-C");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a state of the host that nothing notifies (a file, a /proc field), looking
/// every millisecond: the moments below are a few milliseconds wide.
fn poll_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// When in a check the SIGINT comes.
#[derive(Debug, Clone)]
enum Moment {
    /// As soon as cilab catches SIGINT (its handler is in place), before any run.
    HandlerInstalled,
    /// Once the run's record is saved (scratch dir and cgroup being made).
    RecordSaved,
    /// Once the lab process is in its cgroup.
    LabRunning,
    /// With the lab held at this stage and cilab hanging (`--fault hang-at:`).
    HeldAt(&'static str),
    /// The lab killed at this stage (`--fault kill-lab-at:`), cilab tearing the run down.
    TearingDownAfter(&'static str),
}

/// This tree's saved results, byte for byte (`None`: no file).
fn saved_results() -> Option<Vec<u8>> {
    std::fs::read(cilab::registry::results_file()).ok()
}

/// The record of cilab `pid`'s first run (run ids are `<lab>-<cilab pid>-<n>`).
fn record_path(lab: &str, pid: u32) -> PathBuf {
    cilab::registry::runs_dir().join(format!("{lab}-{pid}-0.json"))
}

fn run_record(lab: &str, pid: u32) -> Option<RunRecord> {
    serde_json::from_str(&std::fs::read_to_string(record_path(lab, pid)).ok()?).ok()
}

fn catches_sigint(pid: u32) -> bool {
    let status = procfs::process::Process::new(pid as i32).and_then(|p| p.status());
    status.is_ok_and(|s| s.sigcgt & (1 << (libc::SIGINT - 1)) != 0)
}

/// The lab: the process in the run's cgroup whose parent is cilab.
fn lab_process(record: &RunRecord, cilab_pid: u32) -> Option<i32> {
    record.cgroup.procs().into_iter().find(|pid| {
        procfs::process::Process::new(*pid).and_then(|p| p.stat()).is_ok_and(|stat| stat.ppid == cilab_pid as i32)
    })
}

/// SIGINT at a moment that must come before cilab has its report: cilab is stopped
/// (SIGSTOP; the kernel tells its parent when it is), the run's record is seen to exist
/// still (its teardown is not over, so there can be no report yet), then SIGINT and
/// SIGCONT. False if the moment had passed: the record was gone (cilab goes on without
/// a SIGINT) or cilab had exited.
fn interrupt_while_stopped(cilab: &mut Child, record: &Path) -> bool {
    let pid = Pid::from_raw(cilab.id() as i32);
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP cilab");
    match waitpid(pid, Some(WaitPidFlag::WUNTRACED)).expect("waitpid") {
        WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
        WaitStatus::Exited(..) | WaitStatus::Signaled(..) => return false,
        other => panic!("cilab did not stop: {other:?}"),
    }
    let in_time = record.exists();
    if in_time {
        kill(pid, Signal::SIGINT).expect("SIGINT");
    }
    kill(pid, Signal::SIGCONT).expect("SIGCONT");
    in_time
}

/// One `cilab check` interrupted at `moment`. Returns None if the moment was missed
/// (only possible at teardown, with a fault run, whose result is never saved).
fn interrupted_check(cilab_bin: &Path, lab: &str, moment: &Moment) -> Option<(i32, String, String)> {
    let mut args = vec!["check".to_string(), lab.to_string(), "--no-build".into(), "--format".into(), "json".into()];
    match moment {
        Moment::HeldAt(stage) => args.extend(["--fault".into(), format!("hang-at:{stage}")]),
        Moment::TearingDownAfter(stage) => args.extend(["--fault".into(), format!("kill-lab-at:{stage}")]),
        _ => {}
    }
    let mut cilab = common::OwnedCilab(
        Command::new(cilab_bin).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start"),
    );
    let pid = cilab.0.id();
    let mut stdout = cilab.0.stdout.take().expect("stdout");
    let printed = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let stderr = lines_of(cilab.0.stderr.take().expect("stderr"));
    let record = record_path(lab, pid);
    let sigint = || kill(Pid::from_raw(pid as i32), Signal::SIGINT).expect("SIGINT");
    let in_time = match moment {
        Moment::HandlerInstalled => {
            poll_until("cilab to catch SIGINT", || catches_sigint(pid).then_some(()));
            sigint();
            true
        }
        Moment::RecordSaved => {
            poll_until("the run record", || record.exists().then_some(()));
            interrupt_while_stopped(&mut cilab.0, &record)
        }
        Moment::LabRunning => {
            poll_until("the lab in its cgroup", || run_record(lab, pid).and_then(|r| lab_process(&r, pid)));
            interrupt_while_stopped(&mut cilab.0, &record)
        }
        Moment::HeldAt(_) => {
            wait_for(&stderr, "fault injected: hanging");
            sigint();
            true
        }
        Moment::TearingDownAfter(_) => {
            let lab_pid =
                poll_until("the lab in its cgroup", || run_record(lab, pid).and_then(|r| lab_process(&r, pid)));
            // The kernel says when the lab is dead (cilab killed it at the stage): then
            // cilab is tearing the run down.
            // ESRCH: the lab was killed and reaped between finding it and opening its pidfd.
            match PidFd::open(lab_pid) {
                Ok(lab) => assert!(lab.wait_exit(Duration::from_secs(30)), "cilab never killed the lab"),
                Err(e) if e.errno() == Some(nix::errno::Errno::ESRCH) => {}
                Err(e) => panic!("pidfd of the lab {lab_pid}: {e}"),
            }
            interrupt_while_stopped(&mut cilab.0, &record)
        }
    };
    // A cilab that exited while being stopped was reaped there.
    let code = match cilab.0.try_wait() {
        Err(_) => None,
        Ok(_) => wait_exit(&mut cilab.0).code(),
    };
    let printed = printed.join().expect("stdout reader");
    // Everything cilab said, up to the end of its stderr.
    let mut errors = Vec::new();
    while let Ok(line) = stderr.recv_timeout(Duration::from_secs(10)) {
        errors.push(line);
    }
    in_time.then(|| (code.unwrap_or(-1), printed, errors.join("\n")))
}

#[test]
fn twenty_interrupted_checks_exit_130_grade_nothing_and_leave_nothing() {
    common::require_root();
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    common::adopt_orphans();
    let cilab = assert_cmd::cargo::cargo_bin("cilab");
    common::build_labs();
    // Results to keep intact: one graded check makes sure this tree has some.
    if saved_results().is_none() {
        let (_, report) = common::check(&["pid-ns", "--no-build"]);
        assert_eq!(report.labs.len(), 1);
    }
    let results_before = saved_results().expect("this tree has saved results");
    let before = common::host_state();
    let cgroups_before = cgroup_state::cilab_cgroups();

    // Every lab of the catalog, interrupted at every moment: before and during the run,
    // held at each stage, and tearing down after each stage.
    let mut cases: Vec<(&str, Moment)> = Vec::new();
    for lab in cilab::catalog::all() {
        cases.extend([Moment::HandlerInstalled, Moment::RecordSaved, Moment::LabRunning].map(|m| (lab.name, m)));
        cases.extend(lab.every_stage().into_iter().map(|stage| (lab.name, Moment::HeldAt(stage))));
        cases.extend(lab.every_stage().into_iter().map(|stage| (lab.name, Moment::TearingDownAfter(stage))));
    }
    assert!(cases.len() >= 20, "the issue's reproduction interrupted 20 checks; the catalog gives {}", cases.len());
    let mut missed = 0;
    for (lab, moment) in &cases {
        // A teardown lasts milliseconds: a missed moment is tried again (a fault run,
        // never saved, so a miss changes nothing).
        let outcome = (0..5).find_map(|_| {
            let outcome = interrupted_check(&cilab, lab, moment);
            missed += usize::from(outcome.is_none());
            outcome
        });
        let (code, printed, errors) =
            outcome.unwrap_or_else(|| panic!("{lab} {moment:?}: the moment was missed 5 times"));
        let case = format!("{lab}, SIGINT {moment:?}");
        assert_eq!(code, 130, "{case}: exit status\nstdout:\n{printed}\nstderr:\n{errors}");
        assert_eq!(printed, "", "{case}: an interrupted check prints no report\nstderr:\n{errors}");
        assert!(errors.contains("cilab: interrupted"), "{case}: {errors}");
        assert!(!errors.contains("panicked"), "{case}: {errors}");
        assert!(saved_results() == Some(results_before.clone()), "{case}: the saved results changed");
        common::reap_adopted(Duration::from_secs(5));
        common::assert_host_unchanged(&before);
        cgroup_state::assert_unchanged(&cgroups_before);
    }
    eprintln!("{0}/{0} interrupted checks exited 130; teardown moments missed and retried: {missed}", cases.len());
}

#[test]
fn ctrl_c_during_a_run_by_hand_leaves_nothing() {
    common::require_root();
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    common::adopt_orphans();
    let before = common::host_state();
    let cgroups_before = cgroup_state::cilab_cgroups();
    let cilab = assert_cmd::cargo::cargo_bin("cilab");
    // `cilab run pid-ns --step`, paused at step 3 with a namespace alive: Ctrl-C goes to
    // the whole foreground process group, lab included.
    let mut by_hand = common::OwnedCilab(
        Command::new(&cilab)
            .args(["run", "pid-ns", "--step", "--no-build"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start cilab run"),
    );
    let stdout = lines_of(by_hand.0.stdout.take().expect("stdout"));
    let mut stdin = by_hand.0.stdin.take().expect("stdin");
    use std::io::Write;
    stdin.write_all(b"\n\n").expect("press Enter twice");
    // Step 3 is announced only once the init has said it is ready, children and all.
    wait_for(&stdout, "-- Step 3/");
    assert!(
        common::host_state().lab_processes.iter().any(|(_, comm)| comm == "pidns-init"),
        "the namespace init should be running at step 3"
    );
    killpg(Pid::from_raw(by_hand.0.id() as i32), Signal::SIGINT).expect("Ctrl-C to the group");
    let status = wait_exit(&mut by_hand.0);
    assert!(!status.success(), "an interrupted lab is not a success");
    drop(stdin);
    common::reap_adopted(Duration::from_secs(5));
    common::assert_host_unchanged(&before);
    cgroup_state::assert_unchanged(&cgroups_before);
}
