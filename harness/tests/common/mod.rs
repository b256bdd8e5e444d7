//! Shared by the integration tests: they drive the real `cilab` binary, as root, on the
//! real kernel, and parse its JSON report.
#![allow(dead_code)] // each test file uses a different part of this module

pub mod bare_metal;

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use cilab::report::Report;
use cilab::verdict::Outcome;

/// The labs run for real: without root they cannot, and a test that silently skipped
/// would count as a pass. So it fails, and says what to do.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "cilab's integration tests run the labs on the real kernel and need root: run \
         `cargo test` as root inside a VM (see README, 'Where to run the labs')"
    );
}

pub fn cilab() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("cilab").expect("the cilab binary is built by cargo test")
}

/// `cilab check <args> --format json`: the exit code and the parsed report.
pub fn check(args: &[&str]) -> (i32, Report) {
    let output = cilab().arg("check").args(args).args(["--format", "json"]).output().expect("run cilab");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "cilab check {args:?} did not print a JSON report ({e}); exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

/// Fails with every failed verdict, its detail and hint, and any leak.
pub fn assert_all_passed(report: &Report) {
    assert_passed(report, false);
    assert!(report.all_passed(), "summary: {:?}", report.summary);
}

/// How the detail of a verdict skipped because its lab's variant cannot run here begins.
pub const VARIANT_SKIPPED: &str = "not run on this machine: variant `";

/// As `assert_all_passed`, except that verdicts of a variant this machine cannot run (a
/// guest with no Docker) may be SKIPs: they are printed, loudly, and returned.
pub fn assert_all_passed_but_unavailable_variants(report: &Report) -> Vec<String> {
    let skipped = assert_passed(report, true);
    for line in &skipped {
        eprintln!("SKIPPED (not a pass): {line}");
    }
    skipped
}

/// As `assert_all_passed`, except that verdicts of the variants `expected` names may be
/// SKIPs, and only for the reason it gives: `expected(lab, variant)` is `Some(words the
/// reason must contain)` for a variant that may be skipped. A SKIP of any other variant,
/// or for another reason, fails. The skips are printed and returned.
pub fn assert_all_passed_but_expected_skips(
    report: &Report,
    expected: &dyn Fn(&str, &str) -> Option<&'static str>,
) -> Vec<String> {
    let skipped = assert_passed_but(report, &|lab, detail| {
        let variant = detail.strip_prefix(VARIANT_SKIPPED).and_then(|rest| rest.split('`').next());
        variant.and_then(|variant| expected(lab, variant)).is_some_and(|reason| detail.contains(reason))
    });
    for line in &skipped {
        eprintln!("SKIPPED (not a pass, expected): {line}");
    }
    skipped
}

fn assert_passed(report: &Report, variants_may_skip: bool) -> Vec<String> {
    assert_passed_but(report, &|_, detail| variants_may_skip && detail.starts_with(VARIANT_SKIPPED))
}

/// Fails with every verdict that did not pass, but a SKIP whose detail `may_skip(lab,
/// detail)` accepts; returns those.
fn assert_passed_but(report: &Report, may_skip: &dyn Fn(&str, &str) -> bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut skipped = Vec::new();
    for lab in &report.labs {
        for verdict in lab.verdicts.iter().filter(|v| v.outcome != Outcome::Pass) {
            let detail = verdict.detail.as_deref().unwrap_or_default();
            if verdict.outcome == Outcome::Skip && may_skip(&lab.lab, detail) {
                skipped.push(format!("{} / {}: {detail}", lab.lab, verdict.id));
                continue;
            }
            problems.push(format!(
                "{} / {}: {:?} — {}\n    saw: {}\n    hint: {}",
                lab.lab,
                verdict.id,
                verdict.outcome,
                verdict.claim,
                verdict.detail.as_deref().unwrap_or("-"),
                verdict.hint.as_deref().unwrap_or("-")
            ));
        }
        problems.extend(lab.leaks.iter().map(|l| format!("{}: leak: {l}", lab.lab)));
        if !lab.narration_tail.is_empty() && !problems.is_empty() {
            problems.push(format!("{} said last:\n    {}", lab.lab, lab.narration_tail.join("\n    ")));
        }
    }
    assert!(problems.is_empty(), "verdicts that did not pass:\n{}", problems.join("\n"));
    skipped
}

/// Runs and cilab leaves are made below the cgroup cilab was started in, at any depth
/// (memory is nested on the machines this is built on): every hierarchy is walked, bounded.
const MAX_CGROUP_DEPTH: usize = 12;

/// Every `cilab` directory under /sys/fs/cgroup, and every directory in one.
pub fn cilab_cgroups() -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    walk_cgroups(std::path::Path::new("/sys/fs/cgroup"), 0, &mut found);
    found
}

fn walk_cgroups(dir: &std::path::Path, depth: usize, found: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
        let path = entry.path();
        if entry.file_name() == "cilab" {
            found.insert(path.clone());
            if let Ok(inside) = std::fs::read_dir(&path) {
                found.extend(inside.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
            }
        } else if depth < MAX_CGROUP_DEPTH {
            walk_cgroups(&path, depth + 1, found);
        }
    }
}

/// The host state that no run may change, seen by the test itself (not by cilab).
#[derive(Debug, PartialEq, Eq)]
pub struct HostState {
    pub mounts: BTreeSet<String>,
    pub cilab_cgroups: BTreeSet<PathBuf>,
    pub lab_processes: BTreeSet<(i32, String)>,
    pub scratch_dirs: BTreeSet<PathBuf>,
    pub run_records: BTreeSet<PathBuf>,
}

/// Names the lab processes give themselves.
const LAB_COMMS: [&str; 9] =
    ["lab-", "pidns-", "jail-", "chroot-", "userns-", "subids-", "cilab-victim", "ri-", "esc-"];

pub fn host_state() -> HostState {
    // Read as bytes, lossily: a lab may mount on a name that is not UTF-8 (the crate's own
    // Process::mountinfo() would refuse the whole table).
    let mountinfo = std::fs::read("/proc/self/mountinfo").expect("mountinfo");
    let mounts = String::from_utf8_lossy(&mountinfo)
        .lines()
        .map(|line| procfs::process::MountInfo::from_line(line).unwrap_or_else(|e| panic!("mountinfo {line:?}: {e}")))
        .map(|mount| mount_line(&mount))
        .collect();
    let cilab_cgroups = cilab_cgroups();
    let mut lab_processes = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_string();
        if LAB_COMMS.iter().any(|prefix| comm.starts_with(prefix)) {
            lab_processes.insert((pid, comm));
        }
    }
    let list = |dir: &str| -> BTreeSet<PathBuf> {
        std::fs::read_dir(dir).map(|e| e.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    };
    HostState {
        mounts,
        cilab_cgroups,
        lab_processes,
        scratch_dirs: list("/var/lib/cilab/scratch"),
        run_records: list("/var/lib/cilab/runs"),
    }
}

/// Asserts that the host is as `before`, naming every difference.
pub fn assert_host_unchanged(before: &HostState) {
    assert_host_unchanged_except(before, &[]);
}

/// Asserts that the host is as `before`, naming every difference, except for mounts whose
/// mount point is at or under one of `ignored_mounts` (what something else the test started
/// on purpose mounts and unmounts: its own churn, Docker's containers).
pub fn assert_host_unchanged_except(before: &HostState, ignored_mounts: &[PathBuf]) {
    let problems = host_changes(before, &host_state(), ignored_mounts);
    assert!(problems.is_empty(), "the host changed:\n{}", problems.join("\n"));
}

/// Every difference between two host states, one sentence each; mounts at or under
/// `ignored_mounts` are left out.
pub fn host_changes(before: &HostState, after: &HostState, ignored_mounts: &[PathBuf]) -> Vec<String> {
    let diff = |what: &str, a: &BTreeSet<String>, b: &BTreeSet<String>| -> Vec<String> {
        let mut out: Vec<String> = b.difference(a).map(|x| format!("{what} appeared: {x}")).collect();
        out.extend(a.difference(b).map(|x| format!("{what} vanished: {x}")));
        out
    };
    let strings = |set: &BTreeSet<PathBuf>| set.iter().map(|p| p.display().to_string()).collect::<BTreeSet<_>>();
    let kept = |mounts: &BTreeSet<String>| -> BTreeSet<String> {
        mounts
            .iter()
            .filter(|line| {
                let point = mount_point(line);
                !ignored_mounts.iter().any(|ignored| point.starts_with(ignored))
            })
            .cloned()
            .collect()
    };
    let mut problems = diff("mount", &kept(&before.mounts), &kept(&after.mounts));
    problems.extend(diff("cilab cgroup", &strings(&before.cilab_cgroups), &strings(&after.cilab_cgroups)));
    problems.extend(
        after
            .lab_processes
            .difference(&before.lab_processes)
            .map(|(pid, comm)| format!("lab process left: {pid} {comm}")),
    );
    problems.extend(diff("scratch dir", &strings(&before.scratch_dirs), &strings(&after.scratch_dirs)));
    problems.extend(diff("run record", &strings(&before.run_records), &strings(&after.run_records)));
    problems
}

/// A mount as `HostState::mounts` holds it: its mountinfo line without the mount and parent
/// ids (what matters is what is mounted where), options sorted (the crate keeps them
/// unordered), escapes left in place.
fn mount_line(mount: &procfs::process::MountInfo) -> String {
    use procfs::process::MountOptFields;
    let options = |map: &std::collections::HashMap<String, Option<String>>| {
        let mut list: Vec<String> =
            map.iter().map(|(name, value)| value.as_ref().map_or(name.clone(), |v| format!("{name}={v}"))).collect();
        list.sort();
        list.join(",")
    };
    let propagation: String = mount
        .opt_fields
        .iter()
        .map(|field| match field {
            MountOptFields::Shared(group) => format!("shared:{group} "),
            MountOptFields::Master(group) => format!("master:{group} "),
            MountOptFields::PropagateFrom(group) => format!("propagate_from:{group} "),
            MountOptFields::Unbindable => "unbindable ".to_string(),
        })
        .collect();
    format!(
        "{} {} {} {} {propagation}- {} {} {}",
        mount.majmin,
        mount.root,
        mount.mount_point.display(),
        options(&mount.mount_options),
        mount.fs_type,
        mount.mount_source.as_deref().unwrap_or("none"),
        options(&mount.super_options)
    )
}

/// The mount point of a `HostState::mounts` line (`major:minor root mount-point options
/// ...`), with mountinfo's octal escapes undone (the crate leaves them in).
pub fn mount_point(line: &str) -> PathBuf {
    let escaped = line.split(' ').nth(2).unwrap_or_default();
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Builds every lab of the catalog (and cilab) with the cargo that runs the tests, so that
/// what follows can pass `--no-build` and time only the runs.
pub fn build_labs() {
    let cargo = std::env::var("CARGO").expect("cargo test sets CARGO");
    let mut command = std::process::Command::new(&cargo);
    command.args(["build", "-q", "-p", "cilab"]);
    for lab in cilab::catalog::all() {
        command.args(["-p", lab.package]);
    }
    let status = command.status().expect("run cargo build");
    assert!(status.success(), "cargo build of the catalog's labs failed: {status}");
}

/// Builds one lab's package (and nothing else) with the cargo that runs the tests.
pub fn build_lab(package: &str) {
    let cargo = std::env::var("CARGO").expect("cargo test sets CARGO");
    let status = std::process::Command::new(&cargo).args(["build", "-q", "-p", package]).status();
    assert!(status.expect("run cargo build").success(), "cargo build -p {package} failed");
}

/// The host state that the tests of one file compare must not be changed under them by
/// another test of the same file: the tests that run labs or compare the host take this.
pub fn host_lock() -> std::sync::MutexGuard<'static, ()> {
    static HOST: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HOST.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Threads of the test's own that keep CPUs busy (a busy loop each) until stopped: by
/// `stop`, or on drop, a panic included.
pub struct CpuHogs {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl CpuHogs {
    /// One busy thread per CPU this process may run on.
    pub fn on_every_cpu() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self::start(cpus)
    }

    pub fn start(count: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..count)
            .map(|i| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("cpu-hog-{i}"))
                    .spawn(move || {
                        let mut spins: u64 = 0;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            spins = std::hint::black_box(spins.wrapping_add(1));
                        }
                        spins
                    })
                    .expect("start a busy thread")
            })
            .collect();
        CpuHogs { stop, threads }
    }

    pub fn count(&self) -> usize {
        self.threads.len()
    }

    /// Stops the threads and returns how many loops each made (each was running).
    pub fn stop(mut self) -> Vec<u64> {
        self.halt()
    }

    fn halt(&mut self) -> Vec<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.threads.drain(..).map(|t| t.join().unwrap_or(0)).collect()
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Held while a test runs cilab: if the test panics, `cilab doctor --clean` removes what
/// a dead run may have left (cilab's teardown normally leaves nothing).
pub struct CleanOnPanic;

impl Drop for CleanOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = cilab().args(["doctor", "--clean"]).output();
        }
    }
}

/// Runs `command` with stdout and stderr captured; past `timeout`, kills it (the child
/// we started, by its PID) and returns `None`.
pub fn output_within(
    command: &mut std::process::Command,
    timeout: std::time::Duration,
) -> Option<std::process::Output> {
    use std::process::Stdio;
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().ok()?;
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let collect =
        |reader: Option<std::thread::JoinHandle<Vec<u8>>>| reader.and_then(|h| h.join().ok()).unwrap_or_default();
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    status.map(|status| std::process::Output { status, stdout, stderr })
}

fn read_all(mut stream: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        bytes
    })
}

/// Makes the test process the reaper of the orphans of what it starts (PR_SET_CHILD_SUBREAPER),
/// so that a cilab it kills does not leave zombies for the host's init to reap whenever it
/// gets to it.
pub fn adopt_orphans() {
    nix::sys::prctl::set_child_subreaper(true).expect("prctl(PR_SET_CHILD_SUBREAPER)");
}

/// Reaps the test process's children that have exited (adopted orphans among them),
/// waiting up to `timeout` for them to exit.
pub fn reap_adopted(timeout: std::time::Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let own = std::process::id();
        let children = cilab::probe::procfs::children(own as i32);
        if children.is_empty() || std::time::Instant::now() >= deadline {
            return;
        }
        for pid in children {
            let _ =
                nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A cilab the test started. Dropped, it ends that cilab (by its PID) if it still runs,
/// reaps what it left, and, if the test is failing, has `cilab doctor --clean` remove the
/// leftovers of the dead run, so that a test that fails halfway leaves nothing either.
pub struct OwnedCilab(pub std::process::Child);

impl Drop for OwnedCilab {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
        reap_adopted(std::time::Duration::from_secs(5));
        if std::thread::panicking() {
            let _ = cilab().args(["doctor", "--clean"]).output();
        }
    }
}

/// The workspace's top directory (the repository).
pub fn workspace() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

/// The packages vagrant/provision.sh installs when they are missing (its `packages=(...)`
/// line): what the VM tests' images carry, since their guests cannot download them here.
pub fn provision_packages() -> Vec<String> {
    let script = std::fs::read_to_string(workspace().join("vagrant/provision.sh")).expect("provision.sh");
    let line = script.lines().find_map(|l| l.strip_prefix("packages=(")).expect("a packages=(...) line");
    line.trim_end_matches(')').split_whitespace().map(String::from).collect()
}
