//! Ctrl-C on every path: cilab interrupted during a check tears the run down itself; a
//! person pressing Ctrl-C in the middle of `cilab run` gets a lab that cleans up and a
//! cilab that removes whatever is left. (One test: both look at the whole host.)

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

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

#[test]
fn ctrl_c_cleans_up_during_check_and_during_a_run_by_hand() {
    common::require_root();
    common::adopt_orphans();
    let before = common::host_state();
    let cilab = assert_cmd::cargo::cargo_bin("cilab");

    // 1. `cilab check`, held mid-run: SIGINT to cilab (what Ctrl-C sends; the lab is in
    //    its own process group, so only cilab gets it).
    let mut check = common::OwnedCilab(
        Command::new(&cilab)
            .args(["check", "chroot-jail", "--fault", "hang-at:private-mounts"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cilab check"),
    );
    let stderr = lines_of(check.0.stderr.take().expect("stderr"));
    wait_for(&stderr, "fault injected: hanging");
    kill(Pid::from_raw(check.0.id() as i32), Signal::SIGINT).expect("SIGINT");
    let status = wait_exit(&mut check.0);
    assert_eq!(status.code(), Some(130), "interrupted cilab exits 130");
    common::reap_adopted(Duration::from_secs(5));
    common::assert_host_unchanged(&before);

    // 2. `cilab run pid-ns --step`, paused at step 3 with a namespace alive: Ctrl-C goes
    //    to the whole foreground process group, lab included.
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
    wait_for(&stdout, "Step 3/6");
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
}
