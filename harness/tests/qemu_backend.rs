//! `--backend qemu`: every lab passes in a throwaway guest cilab boots itself, in each
//! cgroup layout (pure v2 as on current Ubuntu, v1, and hybrid), on a machine that is
//! itself any one of them. The guest is set up as systemd sets up a distribution (cgroup2
//! with nsdelegate, / shared, / on a tmpfs rather than the initramfs), which the test
//! reads in the guest itself. A guest that hangs, panics or cannot boot is the backend's
//! failure (exit 2), and no qemu is left running.
//!
//! Boot-to-report times are printed (eprintln), never asserted.
//!
//! Needs qemu-system-x86 and a kernel in /boot (linux-image-cloud-amd64).

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cilab::backend::qemu::{self, CgroupLayout, Qemu};
use cilab::backend::{check_in_guest, Guest, GuestCheck, GuestOutput, Payload};
use cilab::catalog;
use cilab::cgroup::Limits;
use cilab::report::Report;
use cilab::verdict::Outcome;

/// One guest at a time: the machine has two cores, and TCG uses both.
fn one_guest_at_a_time() -> MutexGuard<'static, ()> {
    static GUEST: Mutex<()> = Mutex::new(());
    GUEST.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn binaries() -> PathBuf {
    assert_cmd::cargo::cargo_bin("cilab").parent().expect("target dir").to_path_buf()
}

/// The qemu processes running now whose command line names a guest directory of cilab's.
fn guests_running() -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with(qemu::QEMU) && cmdline.contains(qemu::RUN_DIR) && alive(pid) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Running, not a zombie (a killed qemu whose cilab exited is reaped by init later).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// The one reason a guest may not run a variant: cilab puts no Docker engine in its
/// guests, so the variants named `docker` are SKIPs that say Docker is not available.
/// Every other variant runs there (the `subids` one with the host's newuidmap and
/// newgidmap: `apt-get install uidmap` on the machine that runs the tests).
fn skipped_in_guests(_lab: &str, variant: &str) -> Option<&'static str> {
    (variant == "docker").then_some("Docker is not available")
}

/// `cilab check --all --backend qemu --cgroup <layout> --format json`: every lab of the
/// catalog in order, every verdict passed (but for the variants no guest can run, each a
/// SKIP for its named reason: `skipped_in_guests`), the run's limits applied in that
/// layout.
fn check_all_passes_in(layout: &str) -> Report {
    common::require_root();
    common::build_labs();
    let _guest = one_guest_at_a_time();
    let labs = catalog::all();
    let (exit, report) = common::check(&["--all", "--no-build", "--backend", "qemu", "--cgroup", layout]);
    let names: Vec<&str> = report.labs.iter().map(|l| l.lab.as_str()).collect();
    assert_eq!(names, labs.iter().map(|l| l.name).collect::<Vec<_>>(), "every lab of the catalog, in order");
    for (lab_report, lab) in report.labs.iter().zip(labs) {
        let ids: Vec<&str> = lab_report.verdicts.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, lab.all_verdicts().iter().map(|v| v.id).collect::<Vec<_>>(), "{}", lab.name);
        assert_eq!(lab_report.backend, "qemu");
        let guest = lab_report.guest.as_ref().unwrap_or_else(|| panic!("{}: no guest in the report", lab.name));
        assert_eq!(guest.cgroup.as_deref(), Some(layout), "{}", lab.name);
        assert!(matches!(guest.accelerator.as_deref(), Some("kvm" | "tcg")), "{guest:?}");
    }
    let skipped = common::assert_all_passed_but_expected_skips(&report, &skipped_in_guests);
    assert_eq!(exit, if skipped.is_empty() { 0 } else { 1 }, "cilab check (skipped: {skipped:?})");
    assert_eq!(report.summary.max_points, labs.iter().map(|l| l.max_points()).sum::<u32>());
    if let Some(guest) = report.labs.first().and_then(|l| l.guest.as_ref()) {
        eprintln!("qemu {layout}: {}", guest.describe());
    }

    let limits = Limits::default();
    let version = if layout == "v2" { "v2" } else { "v1" };
    for lab in &report.labs {
        let pids = format!("pids.max={} ({version})", limits.pids_max);
        assert!(lab.cgroup_limits.contains(&pids), "{}: no {pids} in {:?}", lab.lab, lab.cgroup_limits);
        assert!(!lab.cgroup_limits.iter().any(|l| l.contains("not applied")), "{}: {:?}", lab.lab, lab.cgroup_limits);
        if layout == "v2" {
            for limit in [format!("memory.max={} (v2)", limits.memory_max_bytes), "memory.swap.max=0 (v2)".into()] {
                assert!(lab.cgroup_limits.contains(&limit), "{}: no {limit} in {:?}", lab.lab, lab.cgroup_limits);
            }
            assert!(lab.cgroup_limits.iter().all(|l| l.ends_with("(v2)")), "{}: {:?}", lab.lab, lab.cgroup_limits);
        }
    }
    // The cgroup-limits lab's facts in this layout (the host's own: tests/lab_cgroup_limits.rs).
    if let Some(lab) = report.labs.iter().find(|l| l.lab == "cgroup-limits") {
        insta::assert_yaml_snapshot!(format!("cgroup_limits_observations_{layout}"), lab.observations);
    }
    assert_eq!(guests_running(), Vec::new(), "a guest is left running");
    report
}

#[test]
fn every_lab_passes_in_a_pure_v2_guest() {
    check_all_passes_in("v2");
}

#[test]
fn every_lab_passes_in_a_v1_guest() {
    check_all_passes_in("v1");
}

#[test]
fn every_lab_passes_in_a_hybrid_guest() {
    check_all_passes_in("hybrid");
}

/// A guest of the library's, for looking inside.
fn boot(layout: CgroupLayout) -> Qemu {
    common::build_labs();
    let labs: Vec<_> = catalog::all().iter().collect();
    let payload = Payload::for_labs(&labs, &binaries()).expect("the payload");
    let mut guest = Qemu::new(qemu::Options { cgroup: layout, ..qemu::Options::default() }).expect("a kernel");
    guest.start(&payload).expect("the guest boots");
    guest
}

fn run(guest: &mut Qemu, argv: &[&str]) -> GuestOutput {
    let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    guest.run_as_root(&argv, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{argv:?} in the guest: {e}"))
}

/// The mountinfo line of `mount_point`, as `(fstype, super options, optional fields)`.
fn mount_at(mountinfo: &str, mount_point: &str) -> Option<(String, String, String)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        (fields.get(4) == Some(&mount_point)).then(|| {
            let right: Vec<&str> = right.split(' ').collect();
            (right[0].to_string(), right.get(2).unwrap_or(&"").to_string(), fields[6..].join(" "))
        })
    })
}

fn doctor_cgroups(guest: &mut Qemu) -> String {
    let output = run(guest, &["cilab", "doctor", "--format", "json"]);
    let doctor: serde_json::Value = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|e| panic!("doctor's JSON ({e}): {}\n{}", output.stdout, output.stderr));
    let cgroups = doctor["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["topic"] == "cgroups"))
        .unwrap_or_else(|| panic!("doctor has no cgroups finding: {doctor:#}"));
    cgroups["detail"].as_str().unwrap_or_default().to_string()
}

/// What the catalog's labs need as v1 controllers (the run's own: pids, memory, freezer).
const V1_CONTROLLERS: [&str; 5] = ["pids", "memory", "cpu", "cpuacct", "freezer"];

#[test]
fn each_layout_is_mounted_as_systemd_mounts_it_on_a_root_that_can_be_pivoted() {
    common::require_root();
    let _one = one_guest_at_a_time();
    for layout in [CgroupLayout::V2, CgroupLayout::V1, CgroupLayout::Hybrid] {
        let mut guest = boot(layout);
        let mountinfo = run(&mut guest, &["cat", "/proc/self/mountinfo"]).stdout;
        let detail = doctor_cgroups(&mut guest);
        guest.stop().expect("the guest powers off");
        eprintln!("qemu {}: doctor says cgroups {detail}", layout.name());
        let context = format!("{}:\n{mountinfo}", layout.name());
        // / is a tmpfs (the init left the initramfs, which pivot_root refuses), and shared.
        let (fstype, _, optional) = mount_at(&mountinfo, "/").unwrap_or_else(|| panic!("no / in {context}"));
        assert_eq!(fstype, "tmpfs", "{context}");
        assert!(optional.contains("shared:"), "/ is not shared: {context}");
        let v2_at = match layout {
            CgroupLayout::V2 => Some("/sys/fs/cgroup"),
            CgroupLayout::Hybrid => Some("/sys/fs/cgroup/unified"),
            CgroupLayout::V1 => None,
        };
        if let Some(v2_at) = v2_at {
            let (fstype, options, _) = mount_at(&mountinfo, v2_at).unwrap_or_else(|| panic!("no {v2_at}: {context}"));
            assert_eq!(fstype, "cgroup2", "{context}");
            // A cgroup namespace is a delegation boundary, as systemd mounts it.
            assert!(options.contains("nsdelegate"), "{context}");
        } else {
            assert!(!mountinfo.contains(" - cgroup2 "), "{context}");
        }
        if layout == CgroupLayout::V2 {
            assert!(!mountinfo.contains(" - cgroup "), "a v1 hierarchy in pure v2: {context}");
            assert!(detail.starts_with("v2 (unified); v2 at /sys/fs/cgroup"), "doctor in the guest: {detail}");
        } else {
            for controller in V1_CONTROLLERS {
                let at = format!("/sys/fs/cgroup/{controller}");
                let (fstype, options, _) = mount_at(&mountinfo, &at).unwrap_or_else(|| panic!("no {at}: {context}"));
                assert_eq!(fstype, "cgroup", "{context}");
                assert!(options.split(',').any(|o| o == controller), "{at}: {options}");
            }
            assert!(detail.starts_with(layout.name()), "doctor in the guest: {detail}");
        }
    }
    assert_eq!(guests_running(), Vec::new(), "a guest is left running");
}

/// With user.max_user_namespaces=0 in the guest (never on the machine the tests run on:
/// the sysctl is host-wide), doctor fails its user-namespace finding with the sysctl to
/// set, and every verdict of userns-maps is a SKIP that names it; cilab check exits 1.
#[test]
fn without_user_namespaces_doctor_says_so_and_userns_maps_is_skipped() {
    const SYSCTL: &str = "user.max_user_namespaces";
    const ADVICE: &str = "sysctl -w user.max_user_namespaces=15000";
    common::require_root();
    let _one = one_guest_at_a_time();
    let mut guest = boot(CgroupLayout::V2);
    let set = run(&mut guest, &["sysctl", "-w", "user.max_user_namespaces=0"]);
    assert_eq!(set.status, 0, "{set:?}");
    let doctor = run(&mut guest, &["cilab", "doctor", "--format", "json"]);
    let check = run(&mut guest, &["cilab", "check", "userns-maps", "--no-build", "--format", "json"]);
    guest.stop().expect("the guest powers off");

    let doctor: serde_json::Value = serde_json::from_str(&doctor.stdout).unwrap_or_else(|e| panic!("{e}: {doctor:?}"));
    let finding = doctor["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["topic"] == "user namespaces"))
        .unwrap_or_else(|| panic!("doctor has no user namespaces finding: {doctor:#}"));
    assert_eq!(finding["ok"], false, "{finding:#}");
    assert!(finding["detail"].as_str().unwrap_or_default().contains(SYSCTL), "{finding:#}");
    assert!(finding["advice"].as_str().unwrap_or_default().contains(ADVICE), "{finding:#}");

    assert_eq!(check.status, 1, "a check whose every verdict is a SKIP exits 1: {}", check.stderr);
    let report: Report = serde_json::from_str(&check.stdout).unwrap_or_else(|e| panic!("({e}):\n{}", check.stdout));
    let [lab] = report.labs.as_slice() else { panic!("one lab report: {}", check.stdout) };
    assert_eq!(lab.lab, "userns-maps");
    assert!(!lab.verdicts.is_empty());
    for verdict in &lab.verdicts {
        let detail = verdict.detail.as_deref().unwrap_or_default();
        assert_eq!(verdict.outcome, Outcome::Skip, "{}: {detail}", verdict.id);
        assert!(detail.contains(SYSCTL) && detail.contains(ADVICE), "{}: {detail}", verdict.id);
    }
    assert_eq!(report.summary.points, 0, "a SKIP earns nothing");
}

/// A command that overruns its deadline gets the guest killed (its qemu gone, its
/// directory removed), as the backend's failure; so does a guest whose kernel panics.
#[test]
fn a_guest_that_hangs_or_panics_is_the_backends_failure_and_is_gone() {
    common::require_root();
    let _one = one_guest_at_a_time();
    let mut guest = boot(CgroupLayout::V2);
    let pid = guest.pid().expect("a running guest");
    // Booted (the first answer's deadline includes the boot's).
    assert_eq!(run(&mut guest, &["true"]).status, 0);
    let hang: Vec<String> = ["sleep", "600"].map(String::from).to_vec();
    let error = guest.run_as_root(&hang, Duration::from_secs(2)).expect_err("a deadline of 2 s for sleep 600");
    assert!(error.is_harness_failure(), "{error}");
    assert!(error.to_string().contains("did not answer `sleep 600` in time"), "{error}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "qemu {pid} is still there after the deadline");
    assert_eq!(guest.pid(), None);

    let mut guest = boot(CgroupLayout::V2);
    let panic: Vec<String> = ["sh", "-c", "echo c > /proc/sysrq-trigger"].map(String::from).to_vec();
    let error = guest.run_as_root(&panic, Duration::from_secs(120)).expect_err("a guest that panics answers nothing");
    assert!(error.is_harness_failure(), "{error}");
    let crashed = "the guest crashed: its kernel panicked (Kernel panic - not syncing: sysrq triggered crash)";
    assert!(error.to_string().contains(crashed), "{error}");
    assert_eq!(guests_running(), Vec::new(), "a guest is left running");
}

/// What the guest's kernel says at KERN_ERR or worse reaches the host: a command the OOM
/// killer ends (sysrq f, with the command's oom_score_adj at the top) comes back killed,
/// the kill in its stderr; a guest whose agent the OOM killer ends fails the backend, the
/// kill in the failure, with the init's word that the agent died.
#[test]
fn an_oom_kill_in_the_guest_reaches_the_host() {
    const KILLED: &str = "Out of memory: Killed process";
    common::require_root();
    let _one = one_guest_at_a_time();
    let mut guest = boot(CgroupLayout::V2);
    let command = run(
        &mut guest,
        &["sh", "-c", "echo 1000 > /proc/self/oom_score_adj; echo f > /proc/sysrq-trigger; exec sleep 120"],
    );
    assert_eq!(command.status, 128 + 9, "{command:?}");
    assert!(command.stderr.contains("the guest kernel said, while it ran:"), "{command:?}");
    assert!(command.stderr.contains(KILLED), "{command:?}");
    let agent: Vec<String> =
        ["sh", "-c", "echo 1000 > /proc/$PPID/oom_score_adj; echo f > /proc/sysrq-trigger; sleep 120"]
            .map(String::from)
            .to_vec();
    let error = guest.run_as_root(&agent, Duration::from_secs(120)).expect_err("a guest without its agent");
    assert!(error.is_harness_failure(), "{error}");
    let said = error.to_string();
    assert!(said.contains("the guest's init failed: the agent exited with status 137"), "{said}");
    assert!(said.contains("the guest kernel said:") && said.contains(&format!("{KILLED} ")), "{said}");
    assert!(said.contains("(cilab)"), "the agent, cilab, was the one killed: {said}");
    assert_eq!(guests_running(), Vec::new(), "a guest is left running");
}

/// A guest whose kernel panics while it runs the check (here at once: no init to run) is
/// named as the guest's crash, with the panic, in every lab's report: the backend's
/// failure, every verdict a SKIP.
#[test]
fn a_guest_that_panics_during_a_check_is_reported_as_a_guest_crash() {
    common::require_root();
    common::build_labs();
    let _one = one_guest_at_a_time();
    let lab = catalog::find("pid-ns").expect("lab pid-ns");
    let payload = Payload::for_labs(&[lab], &binaries()).expect("the payload");
    // The last rdinit= wins: no init, and no root to fall back on: the kernel panics.
    let options = qemu::Options { kernel_args: vec!["rdinit=/nonexistent".into()], ..qemu::Options::default() };
    let mut guest = Qemu::new(options).expect("a kernel");
    let check = GuestCheck { labs: vec![lab], repeat: 1, ..GuestCheck::default() };
    let reports = check_in_guest(&mut guest, &payload, &check);
    let [report] = reports.as_slice() else { panic!("one report: {reports:?}") };
    let failure = report.harness_failure.as_deref().unwrap_or_else(|| panic!("no harness_failure: {report:?}"));
    assert!(failure.contains("the guest crashed: its kernel panicked (Kernel panic - not syncing: "), "{failure}");
    assert!(report.verdicts.iter().all(|v| v.outcome == Outcome::Skip), "{report:?}");
    assert_eq!(guests_running(), Vec::new(), "a guest is left running");
}

/// A kernel that cannot boot: every lab's verdicts are SKIPs that say the backend failed,
/// the report says it is the harness's failure, and cilab exits 2 (nothing graded as the
/// student's).
#[test]
fn a_kernel_that_cannot_boot_fails_the_backend_not_the_labs() {
    common::require_root();
    common::build_labs();
    let _one = one_guest_at_a_time();
    let kernel = qemu::newest_kernel().expect("a kernel in /boot");
    let dir = tempfile::tempdir().expect("tempdir");
    // The real kernel's setup header, cut short: qemu loads it and the guest dies at once.
    let head = std::fs::read(&kernel).expect("read the kernel");
    let broken = dir.path().join("vmlinuz-broken");
    std::fs::write(&broken, &head[..head.len().min(128 * 1024)]).expect("write");
    let kernel_arg = broken.display().to_string();
    let (exit, report) = common::check(&["pid-ns", "--no-build", "--backend", "qemu", "--kernel", &kernel_arg]);
    assert_eq!(exit, 2, "{}", report.to_table());
    let [lab] = report.labs.as_slice() else { panic!("one lab: {}", report.to_table()) };
    let failure = lab.harness_failure.as_deref().unwrap_or_else(|| panic!("no harness_failure: {}", report.to_table()));
    assert!(failure.contains("qemu"), "{failure}");
    assert!(lab.verdicts.iter().all(|v| v.outcome == Outcome::Skip), "{}", report.to_table());
    assert_eq!(report.summary.points, 0);
    assert_eq!(guests_running(), Vec::new(), "a guest is left running");
}

/// `cilab shell --backend qemu --no-build`, driven through a pty as a person would: waits
/// for the guest's prompt, types `line`, then waits (bounded) until `done` says the screen
/// is complete and cilab has exited. Returns cilab's exit code (`None`: it did not exit,
/// and was killed) and the screen.
fn at_the_guests_shell(line: &[u8], done: &dyn Fn(&str) -> bool) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    use std::sync::mpsc;

    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = std::fs::File::from(pty.slave);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cilab"))
        .args(["shell", "--backend", "qemu", "--no-build"])
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave)
        .spawn()
        .expect("start cilab shell");
    let mut master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone().expect("dup");
    let (chunks, received) = mpsc::channel::<Vec<u8>>();
    // Reads until the pty closes (EIO once every holder of the slave is gone).
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 || chunks.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let mut screen = String::new();
    let wait_for = |what: &dyn Fn(&str) -> bool, screen: &mut String| -> bool {
        while !what(screen) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match received.recv_timeout(left) {
                Ok(chunk) => screen.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => return false,
            }
        }
        true
    };
    let prompt = wait_for(&|s: &str| s.contains("cilab-guest:"), &mut screen);
    if !prompt {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no guest prompt:\n{screen}");
    }
    master.write_all(line).expect("type");
    let complete = wait_for(done, &mut screen);
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    let pidfd = cilab::probe::pidfd::PidFd::open(child.id() as i32).expect("pidfd_open");
    let exited = pidfd.wait_exit(left).then(|| child.wait().expect("wait"));
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // What cilab printed last, once it has exited (the reader drains the pty).
    while let Ok(chunk) = received.recv_timeout(Duration::from_millis(200)) {
        screen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(complete, "the screen never got there:\n{screen}");
    (exited.and_then(|s| s.code()), screen)
}

/// `cilab shell --backend qemu`: at the guest's prompt, `cilab list` names every lab of the
/// catalog, a marker echoed with a number the guest's shell makes comes back, and
/// `poweroff -f` ends the guest and cilab (exit 0), with no qemu left.
#[test]
fn cilab_shell_gives_a_root_shell_in_the_guest_with_the_labs_on_path() {
    common::require_root();
    common::build_labs();
    let _one = one_guest_at_a_time();
    // The typed line echoes `$((6 * 7))`; only the shell's own output says 42.
    let (exit, screen) = at_the_guests_shell(b"cilab list; echo done-$((6 * 7))-marker; poweroff -f\n", &|s| {
        s.contains("done-42-marker")
    });
    for lab in catalog::all() {
        assert!(screen.contains(lab.name), "`cilab list` in the guest does not name {}:\n{screen}", lab.name);
    }
    assert_eq!(exit, Some(0), "cilab shell after poweroff -f:\n{screen}");
    assert_eq!(guests_running(), Vec::new(), "a guest is left running");
}

/// A guest whose kernel panics under `cilab shell` (`cilab run` alike) is the backend's
/// failure: cilab exits 2 and says the guest crashed, with the panic and the console's
/// tail, and no qemu is left.
#[test]
fn a_guest_that_panics_under_cilab_shell_fails_the_backend() {
    common::require_root();
    common::build_labs();
    let _one = one_guest_at_a_time();
    let (exit, screen) = at_the_guests_shell(b"echo c > /proc/sysrq-trigger\n", &|s| s.contains("cilab: error: "));
    assert_eq!(exit, Some(2), "cilab shell after a panic:\n{screen}");
    let said = screen.split_once("cilab: error: ").map(|(_, said)| said).unwrap_or_default();
    assert!(
        said.contains("the guest crashed: its kernel panicked (Kernel panic - not syncing: sysrq triggered crash)"),
        "{said}"
    );
    assert!(said.contains("console ended with"), "{said}");
    assert_eq!(guests_running(), Vec::new(), "a guest is left running");
}

/// Ctrl-C while the guest runs the check: cilab kills the guest at once, grades and
/// prints nothing, exits 130, and leaves no qemu and no guest directory.
#[test]
fn ctrl_c_during_a_guest_check_kills_the_guest() {
    common::require_root();
    common::build_labs();
    let _one = one_guest_at_a_time();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cilab"))
        .args(["check", "pid-ns", "--backend", "qemu", "--no-build", "--format", "json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start cilab");
    let pid = child.id() as i32;
    let dir = format!("{}/{pid}-", qemu::RUN_DIR);
    // Nothing notifies a process appearing: look every few milliseconds, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let guest = loop {
        if let Some(guest) = guests_running().into_iter().find(|(_, cmdline)| cmdline.contains(&dir)) {
            break guest;
        }
        if std::time::Instant::now() > deadline || child.try_wait().expect("try_wait").is_some() {
            let _ = child.kill();
            let output = child.wait_with_output().expect("wait");
            panic!("no guest of cilab {pid} appeared: {}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let pidfd = cilab::probe::pidfd::PidFd::open(pid).expect("pidfd_open");
    let exited = pidfd.wait_exit(Duration::from_secs(30));
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(exited, "cilab did not exit within 30 s of Ctrl-C: {stderr}");
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(output.stdout.is_empty(), "a report after Ctrl-C: {}", String::from_utf8_lossy(&output.stdout));
    assert!(stderr.contains("killed qemu guest"), "{stderr}");
    assert!(!alive(guest.0), "qemu {} outlived cilab: {stderr}", guest.0);
    let left: Vec<_> = std::fs::read_dir(qemu::RUN_DIR)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.display().to_string().starts_with(&dir)).collect())
        .unwrap_or_default();
    assert_eq!(left, Vec::<PathBuf>::new(), "guest directories left");
}

/// A lab that attacks its grader: it finds the processes of the sealed check (the agent
/// and `cilab check --sealed`) and tries every way to their memory and descriptors, then
/// says on one line per process what the kernel let it open.
const ATTACKING_LAB: &str = r#"#!/opt/cilab/bin/busybox sh
for d in /proc/[0-9]*; do
  cmdline=$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)
  case "$cmdline" in
    *guest-agent*) who=agent ;;
    *--sealed*) who=grader ;;
    *) continue ;;
  esac
  line="ATTACK $who"
  for what in environ mem fd/0 fd/1 fd/2; do
    if (exec 9<"$d/$what") 2>/dev/null; then line="$line $what=opened"; else line="$line $what=refused"; fi
  done
  if (exec 9>>"$d/fd/1") 2>/dev/null; then line="$line stdout-for-writing=opened"; else line="$line stdout-for-writing=refused"; fi
  echo "$line"
done
if (exec 9</proc/kcore) 2>/dev/null; then echo "ATTACK kernel kcore=opened"; else echo "ATTACK kernel kcore=refused"; fi
exit 3
"#;

#[test]
fn a_lab_in_a_sealed_guest_cannot_reach_its_grader_and_its_report_comes_back_sealed() {
    use std::os::unix::fs::PermissionsExt;

    common::require_root();
    common::build_labs();
    let _guest = one_guest_at_a_time();
    let lab = catalog::find("pid-ns").expect("pid-ns is in the catalog");
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::copy(binaries().join("cilab"), dir.path().join("cilab")).expect("copy cilab");
    let attacker = dir.path().join(lab.binary);
    std::fs::write(&attacker, ATTACKING_LAB).expect("write the attacking lab");
    std::fs::set_permissions(&attacker, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let payload = Payload::for_labs(&[lab], dir.path()).expect("the payload");
    let mut guest = Qemu::new(qemu::Options::default()).expect("a kernel");
    let check = cilab::backend::GuestCheck { labs: vec![lab], repeat: 1, ..Default::default() };
    let reports = cilab::backend::check_in_guest(&mut guest, &payload, &check);
    assert!(guests_running().is_empty(), "no qemu left: {:?}", guests_running());

    let report = &reports[0];
    assert_eq!(report.harness_failure, None, "the check ran and its report came back: {report:#?}");
    let sealed = report.guest.as_ref().and_then(|g| g.sealed.clone()).expect("a sealed report");
    let gaps: Vec<&String> = sealed.iter().filter(|s| s.starts_with("NOT ")).collect();
    assert!(gaps.is_empty(), "every hardening step taken: {sealed:?}");
    let attacks: Vec<&String> = report.narration_tail.iter().filter(|l| l.contains("ATTACK")).collect();
    eprintln!("sealed: {sealed:?}\nwhat the lab tried: {attacks:#?}");
    for who in ["agent", "grader", "kernel"] {
        assert!(attacks.iter().any(|l| l.contains(&format!("ATTACK {who}"))), "{who} attacked: {attacks:#?}");
    }
    assert!(attacks.iter().all(|l| !l.contains("=opened")), "the kernel let the lab in: {attacks:#?}");
    assert_eq!(report.points().0, 0, "a lab that did nothing earns nothing");
}
