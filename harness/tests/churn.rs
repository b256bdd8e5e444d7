//! `cilab check --all` while the rest of the machine mounts and unmounts: a thread of this
//! test mounts and unmounts a tmpfs on a temp dir in a loop, and, where Docker is usable,
//! another starts and stops containers in a loop (`docker run --rm <image> true`, from an
//! image this test imports from a busybox rootfs it builds). Every run passes, and the
//! host is as it was but for the churn's own mounts and Docker's.
//!
//! The regression: "cilab check --all while Docker starts containers in a loop failed 5
//! of 6 runs; while another process mounts and unmounts a tmpfs, 8 of 8". Each run now
//! has a mount namespace of its own, so what the rest of the machine mounts is not the
//! lab's doing. But a private copy is not out of reach: removing a mount point on the host
//! (rmdir after umount, as Docker does with each container's rootfs dir, and as the tmpfs
//! churn here does with each of its dirs) detaches the mounts on it in every namespace
//! (Linux 3.18+), the run's included, without the lab doing anything.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// `--repeat`: every lab of the catalog this many times.
const REPEAT: usize = 20;
const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);

fn docker(args: &[&str]) -> Option<std::process::Output> {
    common::output_within(Command::new("docker").args(args), DOCKER_TIMEOUT)
}

fn said(output: &Option<std::process::Output>) -> String {
    match output {
        None => "did not start or did not finish in time".into(),
        Some(o) => format!("{}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim()),
    }
}

/// Docker, if `docker info` works here (and CILAB_TEST_NO_DOCKER is not set); else why not.
fn docker_usable() -> Result<(), String> {
    if std::env::var_os("CILAB_TEST_NO_DOCKER").is_some() {
        return Err("CILAB_TEST_NO_DOCKER is set".into());
    }
    let info = docker(&["info"]);
    match &info {
        Some(o) if o.status.success() => Ok(()),
        _ => Err(format!("`docker info` {}", said(&info))),
    }
}

/// An image imported from a busybox rootfs tarball built here; removed on drop.
struct DockerImage {
    tag: String,
    /// `docker run` options the machine needs (`--network none` where bridges fail).
    run_options: Vec<&'static str>,
}

impl DockerImage {
    fn import(dir: &Path) -> Self {
        let busybox = labkit::rootfs::find_static_busybox().expect("a static busybox for the image");
        let rootfs = dir.join("rootfs");
        labkit::rootfs::build_busybox_rootfs(&rootfs, &busybox).expect("build the busybox rootfs");
        let tarball = dir.join("rootfs.tar");
        let tar = common::output_within(
            Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tarball).arg("."),
            DOCKER_TIMEOUT,
        );
        assert!(tar.as_ref().is_some_and(|o| o.status.success()), "tar of the rootfs: {}", said(&tar));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let tag = format!("cilab-churn-test:{}-{nanos}", std::process::id());
        let tarball = tarball.to_str().expect("a UTF-8 temp path");
        let imported = docker(&["import", tarball, &tag]);
        let mut image = DockerImage { tag, run_options: Vec::new() };
        assert!(imported.as_ref().is_some_and(|o| o.status.success()), "docker import: {}", said(&imported));
        let _ = std::fs::remove_dir_all(&rootfs);
        let _ = std::fs::remove_file(tarball);
        // One container first: the default bridge network, or none where bridges fail.
        let probe = |options: &[&str]| docker(&[&["run", "--rm"], options, &[image.tag.as_str(), "true"]].concat());
        let bridged = probe(&[]);
        if !bridged.as_ref().is_some_and(|o| o.status.success()) {
            eprintln!(
                "churn: NOTE: `docker run` on the default network failed ({}); trying --network none",
                said(&bridged)
            );
            let alone = probe(&["--network", "none"]);
            assert!(
                alone.as_ref().is_some_and(|o| o.status.success()),
                "`docker info` works but no container runs here: {}",
                said(&alone)
            );
            image.run_options = vec!["--network", "none"];
        }
        image
    }
}

impl Drop for DockerImage {
    fn drop(&mut self) {
        let removed = docker(&["rmi", "-f", &self.tag]);
        if !removed.as_ref().is_some_and(|o| o.status.success()) {
            eprintln!("churn: WARNING: could not remove image {}: {}", self.tag, said(&removed));
        }
    }
}

#[derive(Default)]
struct Counts {
    tmpfs_cycles: AtomicU64,
    containers_started: AtomicU64,
    container_failures: AtomicU64,
    /// The first thing that went wrong, per kind.
    errors: Mutex<Vec<String>>,
}

impl Counts {
    fn error(&self, what: String) {
        let mut errors = self.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if errors.len() < 5 {
            eprintln!("churn: {what}");
            errors.push(what);
        }
    }

    fn now(&self) -> (u64, u64, u64) {
        (
            self.tmpfs_cycles.load(Ordering::SeqCst),
            self.containers_started.load(Ordering::SeqCst),
            self.container_failures.load(Ordering::SeqCst),
        )
    }
}

/// The churn threads; stopped on drop (a panic included), their tmpfs unmounted and
/// their containers removed.
struct Churn {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    threads: Vec<JoinHandle<()>>,
    mount_dir: PathBuf,
    container_prefix: String,
}

impl Churn {
    fn start(mount_dir: PathBuf, image: Option<&DockerImage>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let container_prefix = format!("cilab-churn-test-{}", std::process::id());
        let mut threads = Vec::new();
        {
            let (stop, counts, dir) = (stop.clone(), counts.clone(), mount_dir.clone());
            threads.push(std::thread::spawn(move || mount_loop(&stop, &counts, &dir)));
        }
        if let Some(image) = image {
            let (stop, counts) = (stop.clone(), counts.clone());
            let prefix = container_prefix.clone();
            let mut args: Vec<String> = ["run", "--rm"].iter().map(|s| s.to_string()).collect();
            args.extend(image.run_options.iter().map(|s| s.to_string()));
            let tag = image.tag.clone();
            threads.push(std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let name = format!("{prefix}-{n}");
                    let ran = common::output_within(
                        Command::new("docker").args(&args).args(["--name", &name, &tag, "true"]),
                        DOCKER_TIMEOUT,
                    );
                    if ran.as_ref().is_some_and(|o| o.status.success()) {
                        counts.containers_started.fetch_add(1, Ordering::SeqCst);
                    } else {
                        counts.container_failures.fetch_add(1, Ordering::SeqCst);
                        counts.error(format!("docker run {name}: {}", said(&ran)));
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }));
        }
        Churn { stop, counts, threads, mount_dir, container_prefix }
    }

    /// Waits until every kind of churn has gone round at least once.
    fn wait_until_going(&self, docker: bool) {
        let deadline = Instant::now() + DOCKER_TIMEOUT;
        loop {
            let (cycles, started, _) = self.counts.now();
            if cycles > 0 && (started > 0 || !docker) {
                return;
            }
            assert!(Instant::now() < deadline, "the churn never got going: {:?}", self.counts.errors.lock());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // The loop unmounts before it ends; if it died on the way, its tmpfs goes here.
        let under = |line: &&String| common::mount_point(line).starts_with(&self.mount_dir);
        for line in common::host_state().mounts.iter().filter(under) {
            let point = common::mount_point(line);
            if let Err(e) = umount2(&point, MntFlags::MNT_DETACH) {
                eprintln!("churn: WARNING: could not unmount {}: {e}", point.display());
            }
        }
        // A container whose `docker run` timed out (and was killed) may still be there.
        let filter = format!("name={}", self.container_prefix);
        if let Some(listed) = docker(&["ps", "-aq", "--filter", &filter]).filter(|o| o.status.success()) {
            for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
                let _ = docker(&["rm", "-f", id]);
            }
        }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Mounts a small tmpfs and unmounts it, again and again, until told to stop, each time
/// on a fresh directory under `dir` that it removes afterwards (as Docker does with each
/// container's rootfs); leaves nothing mounted.
fn mount_loop(stop: &AtomicBool, counts: &Counts, dir: &Path) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let point = dir.join(n.to_string());
        if let Err(e) = std::fs::create_dir(&point) {
            counts.error(format!("mkdir {}: {e}", point.display()));
            return;
        }
        if let Err(e) = mount(Some("tmpfs"), &point, Some("tmpfs"), MsFlags::empty(), Some("size=64k")) {
            counts.error(format!("mount tmpfs on {}: {e}", point.display()));
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
        if let Err(e) = umount2(&point, MntFlags::empty()) {
            counts.error(format!("umount {}: {e}", point.display()));
            let _ = umount2(&point, MntFlags::MNT_DETACH);
            return;
        }
        if let Err(e) = std::fs::remove_dir(&point) {
            counts.error(format!("rmdir {}: {e}", point.display()));
            return;
        }
        counts.tmpfs_cycles.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Where Docker mounts while it starts and stops containers, all on the host's table:
/// its data root (`docker info`'s DockerRootDir: each container's rootfs, e.g.
/// fuse-overlayfs/<id>/merged, and containers/<id>/mounts/shm), its exec root /run/docker
/// (libnetwork bind-mounts each container's network namespace on netns/<id>), and
/// containerd's state dir /run/containerd (where its snapshotter mounts task rootfs).
fn docker_mounts() -> Vec<PathBuf> {
    let root = docker(&["info", "--format", "{{.DockerRootDir}}"])
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|r| r.starts_with('/'))
        .unwrap_or_else(|| "/var/lib/docker".into());
    vec![PathBuf::from(root), PathBuf::from("/run/docker"), PathBuf::from("/run/containerd")]
}

#[test]
fn check_all_passes_every_run_while_the_machine_mounts_and_starts_containers() {
    common::require_root();
    let _clean = common::CleanOnPanic;
    common::build_labs();
    let labs = cilab::catalog::all();
    assert!(!labs.is_empty(), "the catalog has no labs");

    // Declared in this order, dropped in the reverse one: churn, image, then the temp dir.
    let dir = tempfile::Builder::new().prefix("cilab-churn-").tempdir().expect("temp dir");
    // As the mount table names it (TMPDIR may go through a symlink).
    let dir_path = dir.path().canonicalize().expect("canonical temp dir");
    let mount_dir = dir_path.join("tmpfs");
    std::fs::create_dir(&mount_dir).expect("mount points' dir");
    let docker_ok = docker_usable();
    if let Err(why) = &docker_ok {
        eprintln!(
            "churn: SKIPPED the Docker half of this test: {why}. Only the tmpfs churn runs; \
             this is not the Docker regression test."
        );
    }
    let image = docker_ok.is_ok().then(|| DockerImage::import(&dir_path));
    let mut ignored = vec![dir_path.clone()];
    if image.is_some() {
        ignored.extend(docker_mounts());
    }

    let before = common::host_state();
    let mut churn = Churn::start(mount_dir, image.as_ref());
    churn.wait_until_going(image.is_some());
    let repeat = REPEAT.to_string();
    let at_start = churn.counts.now();
    let started = Instant::now();
    let (code, report) = common::check(&["--all", "--no-build", "--repeat", &repeat]);
    let elapsed = started.elapsed();
    let at_end = churn.counts.now();
    churn.halt();
    let (cycles, containers, failures) = (at_end.0 - at_start.0, at_end.1 - at_start.1, at_end.2 - at_start.2);
    eprintln!(
        "churn: cilab check --all --repeat {REPEAT} took {elapsed:.1?}; meanwhile a tmpfs was mounted and \
         unmounted {cycles} times and {} (docker run failures: {failures})",
        if image.is_some() {
            format!("{containers} docker containers started and stopped")
        } else {
            "no Docker".into()
        }
    );

    assert_eq!(report.labs.len(), REPEAT * labs.len(), "one report per run");
    let mut tallies = Vec::new();
    for lab in labs {
        let runs: Vec<_> = report.labs.iter().filter(|r| r.lab == lab.name).collect();
        let passed = runs.iter().filter(|r| r.result_word() == "passed" && r.leaks.is_empty()).count();
        eprintln!("churn: {}: {passed}/{} runs passed", lab.name, runs.len());
        tallies.push((lab.name, passed, runs.len()));
    }
    let blamed: Vec<String> = report
        .labs
        .iter()
        .flat_map(|l| l.verdicts.iter().filter(|v| v.outcome != cilab::verdict::Outcome::Pass))
        .filter_map(|v| v.detail.clone())
        .filter(|detail| ignored.iter().any(|dir| detail.contains(&*dir.to_string_lossy())))
        .collect();
    if !blamed.is_empty() {
        eprintln!(
            "churn: {} failed verdicts name a mount of the churn or of Docker (mount points removed on the host \
             detach their copies in the run's namespace too): cilab blamed the lab for what the rest of the \
             machine did. First: {}",
            blamed.len(),
            blamed[0]
        );
    }
    common::assert_all_passed(&report);
    assert!(tallies.iter().all(|&(_, passed, runs)| passed == REPEAT && runs == REPEAT), "{tallies:?}");
    assert_eq!(code, 0);
    assert!(cycles > 0, "the tmpfs churn did not run while cilab did: the test tested nothing");
    if image.is_some() {
        assert!(containers > 0, "no container started while cilab ran: the test did not test Docker churn");
    }
    let errors = churn.counts.errors.lock().map(|e| e.clone()).unwrap_or_default();
    assert!(errors.iter().all(|e| e.starts_with("docker run")), "the churn failed: {errors:?}");
    common::assert_host_unchanged_except(&before, &ignored);
}
