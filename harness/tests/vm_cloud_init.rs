//! The Multipass path, as far as it can run here: what `multipass launch 24.04 --cloud-init
//! vagrant/cloud-init.yaml` does, done by hand. A Debian 12 cloud image built here
//! (tests/support/cloud-image.sh, cached by content) boots under qemu (TCG, direct kernel
//! boot) with a NoCloud seed made by `cloud-localds` that carries exactly the repository's
//! vagrant/cloud-init.yaml as user-data, on a virtio drive (the cloud kernel has no AHCI).
//!
//! The guest has no internet here, so provisioning takes the seam vagrant/provision.sh
//! offers: binaries built on this machine at /opt/cilab-prebuilt, here a second virtio
//! drive the image mounts there; the image carries the packages provisioning wants. The
//! test's guest side (tests/support/cloud-agent.sh, on that drive, started by a unit of
//! the image) waits for cloud-init, then sends back over a virtio-serial port (never the
//! console): what `cloud-init status` says, the hash of the user-data cloud-init was
//! given, the provisioning log, and the report of `cilab check --all` run with the cilab
//! provisioning installed; then powers the guest off.
//!
//! Boots a VM for minutes, so it is ignored by `cargo test --workspace`; CI runs it:
//! `cargo test --test vm_cloud_init -- --ignored --nocapture`.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cilab::catalog;
use cilab::probe::pidfd::PidFd;
use cilab::report::Report;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn sha256(path: &Path) -> String {
    let output = run("sha256sum", &[path.to_str().expect("UTF-8 path")]);
    String::from_utf8_lossy(&output.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// The qemu of this test, in its own process group: killed (the group) and reaped when
/// dropped, also when an assertion fails.
struct Qemu {
    child: Child,
    pidfd: PidFd,
    exit: Option<std::process::ExitStatus>,
}

impl Qemu {
    /// Waits up to `timeout` for qemu to exit by itself; its status if it did.
    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        if self.exit.is_none() && self.pidfd.wait_exit(timeout) {
            self.exit = self.child.wait().ok();
        }
        self.exit
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let group = nix::unistd::Pid::from_raw(self.pidfd.pid());
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = self.child.wait();
            eprintln!("cloud-init test: qemu (pid {}) killed", self.pidfd.pid());
        }
    }
}

/// One section the guest sent: its header's words, when it arrived, its lines.
#[derive(Debug)]
struct Section {
    name: String,
    fields: Vec<String>,
    at: Duration,
    body: String,
}

const HEADER: &str = "=== cilab-test: ";

/// The last lines of what the guest sent in one section.
fn common_tail(text: &str) -> String {
    cilab::backend::tail(text, 30)
}

/// The last lines of the guest's console, for a failure message (never evidence).
fn console_tail(dir: &Path) -> String {
    let console = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
    cilab::backend::tail(&console, 40)
}

#[test]
#[ignore = "boots a VM for minutes: cargo test --test vm_cloud_init -- --ignored"]
fn cloud_init_runs_the_repositorys_user_data_and_the_check_passes_inside() {
    common::require_root();
    for program in ["mmdebstrap", "cloud-localds", "qemu-system-x86_64", "qemu-img", "mkfs.ext4"] {
        assert!(
            which::which(program).is_ok(),
            "{program} is missing: apt-get install -y mmdebstrap cloud-image-utils qemu-system-x86 qemu-utils e2fsprogs"
        );
    }
    common::build_labs();
    let labs = catalog::all();
    let user_data = common::workspace().join("vagrant/cloud-init.yaml");

    // The image, built once and cached by content.
    let packages = common::provision_packages();
    for package in catalog::packages() {
        assert!(packages.iter().any(|p| p == package), "provision.sh does not install {package}");
    }
    let started = Instant::now();
    let built = Command::new("bash")
        .arg(common::workspace().join("harness/tests/support/cloud-image.sh"))
        .env("CILAB_IMAGE_PACKAGES", packages.join(" "))
        .stderr(Stdio::inherit())
        .output()
        .expect("run cloud-image.sh");
    assert!(built.status.success(), "building the image failed ({})", built.status);
    let image = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    let image_took = started.elapsed();

    let dir = tempfile::Builder::new().prefix("cilab-cloud-init-").tempdir().expect("tempdir");
    let dir_path = dir.path().to_path_buf();
    let path = |name: &str| dir.path().join(name).to_str().expect("UTF-8 temp path").to_string();

    // The root disk: a copy-on-write layer over the cached image, which stays as built.
    let backing = image.join("disk.qcow2");
    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing.to_str().expect("UTF-8"), &path("root.qcow2")],
    );
    // The NoCloud seed: exactly the repository's user-data.
    run("cloud-localds", &[&path("seed.img"), user_data.to_str().expect("UTF-8")]);
    // The prebuilt binaries and the test's agent, on an ext4 drive labelled cilab-prebuilt.
    let prebuilt = dir.path().join("prebuilt");
    std::fs::create_dir_all(prebuilt.join("cilab-test")).expect("mkdir prebuilt");
    let cilab = assert_cmd::cargo::cargo_bin("cilab");
    let bin_dir = cilab.parent().expect("target dir");
    let mut bytes = 0;
    for binary in std::iter::once("cilab").chain(labs.iter().map(|l| l.binary)) {
        bytes +=
            std::fs::copy(bin_dir.join(binary), prebuilt.join(binary)).unwrap_or_else(|e| panic!("copy {binary}: {e}"));
    }
    std::fs::copy(common::workspace().join("harness/tests/support/cloud-agent.sh"), prebuilt.join("cilab-test/agent"))
        .expect("copy the agent");
    let size_mib = (bytes / (1 << 20)) * 5 / 4 + 64;
    let drive = path("prebuilt.ext4");
    std::fs::File::create(&drive).and_then(|f| f.set_len(size_mib << 20)).expect("make the prebuilt drive");
    run("mkfs.ext4", &["-q", "-L", "cilab-prebuilt", "-d", prebuilt.to_str().expect("UTF-8"), &drive]);

    // The report comes back over a virtio-serial port: qemu connects to this socket at start.
    let socket = path("report.sock");
    let listener = UnixListener::bind(&socket).expect("bind the report socket");
    let kernel = image.join("vmlinuz");
    let initrd = image.join("initrd.img");
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(["-accel", "tcg", "-m", "2048", "-smp", "2", "-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "root=/dev/vda rw console=ttyS0 panic=-1 quiet"])
        .args(["-drive", &format!("file={},if=virtio,format=qcow2", path("root.qcow2"))])
        .args(["-drive", &format!("file={},if=virtio,format=raw,readonly=on", path("seed.img"))])
        .args(["-drive", &format!("file={drive},if=virtio,format=raw,readonly=on")])
        .args(["-device", "virtio-rng-pci", "-device", "virtio-serial-pci"])
        .args(["-chardev", &format!("socket,id=report,path={socket}")])
        .args(["-device", "virtserialport,chardev=report,name=cilab.report"])
        .args(["-serial", &format!("file:{}", path("console.log"))])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(path("qemu.err")).expect("qemu.err"))
        .process_group(0);
    let booted = Instant::now();
    let child = command.spawn().expect("start qemu-system-x86_64");
    let pidfd = PidFd::open(child.id() as i32).expect("pidfd of qemu");
    let mut qemu = Qemu { child, pidfd, exit: None };

    // qemu connects before the guest runs; or it exits, saying why.
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::from(30_000u16)).expect("poll the report socket");
    assert!(
        ready == 1 && !qemu.pidfd.has_exited(),
        "qemu did not connect to the report socket: {}",
        std::fs::read_to_string(path("qemu.err")).unwrap_or_default()
    );
    let (stream, _) = listener.accept().expect("accept qemu's connection");

    // Sections until "end" (or qemu's end: the stream closes), within the deadlines: the
    // first (cloud-init done) within BOOT, the end within BOOT and a time per lab.
    const BOOT: Duration = Duration::from_secs(600);
    let mut sections: Vec<Section> = Vec::new();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        let deadline = if sections.is_empty() { BOOT } else { BOOT + Duration::from_secs(120) * labs.len() as u32 };
        let left = deadline.saturating_sub(booted.elapsed());
        assert!(
            !left.is_zero(),
            "the guest sent {} within {deadline:?}:\n{}",
            if sections.is_empty() { "nothing" } else { "no report" },
            console_tail(&dir_path)
        );
        reader.get_ref().set_read_timeout(Some(left)).expect("set the read timeout");
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                continue
            }
            Err(e) => panic!("reading the report port: {e}"),
        }
        if let Some(header) = line.trim_end().strip_prefix(HEADER).and_then(|h| h.strip_suffix(" ===")) {
            let mut words = header.split_whitespace().map(String::from);
            let name = words.next().unwrap_or_default();
            let at = booted.elapsed();
            eprintln!("cloud-init test: {at:.1?} after qemu started: {header}");
            sections.push(Section { name: name.clone(), fields: words.collect(), at, body: String::new() });
            if name == "end" {
                break;
            }
        } else if let Some(section) = sections.last_mut() {
            section.body.push_str(&line);
        }
    }
    let section = |name: &str| -> &Section {
        sections.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "the guest sent no section `{name}` (got {:?}):\n{}",
                sections.iter().map(|s| &s.name).collect::<Vec<_>>(),
                console_tail(&dir_path)
            )
        })
    };
    // What the guest said, for the log (the report itself is checked below).
    for sent in sections.iter().filter(|s| s.name != "check") {
        eprintln!("cloud-init test: --- {} {} ---\n{}", sent.name, sent.fields.join(" "), common_tail(&sent.body));
    }
    let end = section("end").at;
    // The agent powers the guest off: qemu exits by itself (-no-reboot), status 0.
    let exit = qemu.wait(Duration::from_secs(120));
    let powered_off = booted.elapsed();

    // cloud-init ran and says it is done, without errors.
    let cloud_init = section("cloud-init");
    assert_eq!(
        cloud_init.fields.first().map(String::as_str),
        Some("0"),
        "`cloud-init status --wait` failed:\n{}",
        cloud_init.body
    );
    assert!(cloud_init.body.contains("status: done"), "cloud-init is not done:\n{}", cloud_init.body);
    // It was given exactly the repository's user-data.
    assert_eq!(
        section("user-data").body.trim(),
        sha256(&user_data),
        "the user-data cloud-init was given is not vagrant/cloud-init.yaml"
    );
    // It ran provision.sh, which took the prebuilt binaries and said the next command; the
    // image has no Docker and no mirror, so that is a warning; final_message came last.
    let log = &section("provisioning").body;
    for said in [
        "cilab-provision: packages: all there",
        "cilab-provision: warning: Docker could not be installed",
        "cilab-provision: installed the prebuilt binaries from /opt/cilab-prebuilt into /var/lib/cilab/bin",
        "cilab-provision: ready. Next:",
        "cilab: cloud-init finished after",
    ] {
        assert!(log.contains(said), "the provisioning log does not say `{said}`:\n{log}");
    }
    assert_eq!(section("cilab").body.trim(), "/var/lib/cilab/bin/cilab", "the cilab on PATH is provisioning's");

    // The check, with that cilab, passed every lab (Docker variants: SKIPs, exit 1).
    let check = section("check");
    let report: Report = serde_json::from_str(&check.body).unwrap_or_else(|e| {
        panic!("the guest's check printed no report ({e}):\n{}\n{}", check.body, section("check-stderr").body)
    });
    let names: Vec<&str> = report.labs.iter().map(|l| l.lab.as_str()).collect();
    assert_eq!(names, labs.iter().map(|l| l.name).collect::<Vec<_>>(), "every lab of the catalog, in order");
    for (lab_report, lab) in report.labs.iter().zip(labs) {
        let ids: Vec<&str> = lab_report.verdicts.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, lab.all_verdicts().iter().map(|v| v.id).collect::<Vec<_>>(), "{}", lab.name);
    }
    let skipped = common::assert_all_passed_but_unavailable_variants(&report);
    let expected = if skipped.is_empty() { "0" } else { "1" };
    assert_eq!(
        check.fields.first().map(String::as_str),
        Some(expected),
        "the check's exit status; skipped: {skipped:?}"
    );

    let exit = exit.unwrap_or_else(|| panic!("the guest did not power off:\n{}", console_tail(&dir_path)));
    assert!(exit.success(), "qemu exited {exit:?} (signal {:?})", exit.signal());

    // Nothing left: qemu reaped, the temporary directory gone, no mount or loop device of it.
    drop(qemu);
    drop(reader);
    drop(listener);
    drop(dir);
    assert!(!dir_path.exists(), "{} is left", dir_path.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let dir_name = dir_path.to_string_lossy();
    assert!(!mounts.contains(dir_name.as_ref()), "a mount of the test is left:\n{mounts}");
    for entry in std::fs::read_dir("/sys/block").expect("/sys/block").flatten() {
        let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).unwrap_or_default();
        assert!(
            !backing.contains(dir_name.as_ref()) && !backing.contains("/var/cache/cilab"),
            "loop device left: {backing}"
        );
    }

    let seconds = |d: Duration| d.as_secs_f64();
    eprintln!("cloud-init test: image (built or cached): {:.1} s", seconds(image_took));
    eprintln!(
        "cloud-init test: boot to cloud-init done: {:.1} s (guest uptime {} s)",
        seconds(cloud_init.at),
        cloud_init.fields.get(1).map(String::as_str).unwrap_or("?")
    );
    eprintln!(
        "cloud-init test: boot to report: {:.1} s (guest uptime {} s); the check took {:.1} s",
        seconds(check.at),
        check.fields.get(1).map(String::as_str).unwrap_or("?"),
        seconds(check.at.saturating_sub(cloud_init.at))
    );
    eprintln!("cloud-init test: boot to end {:.1} s, to power-off {:.1} s", seconds(end), seconds(powered_off));
}
