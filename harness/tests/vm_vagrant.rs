//! The Vagrant path for real: a Debian 12 box built here (tests/support/vagrant-box.sh,
//! cached by content), `vagrant up --provider=libvirt` with the repository's own
//! Vagrantfile and vagrant/provision.sh (libvirt's driver qemu: TCG), then
//! `cilab check --all --backend vagrant` from this machine, then `vagrant destroy`.
//!
//! The guest has no internet here, so it takes the seam the Vagrantfile offers: the
//! binaries built on this machine, synced in (CILAB_PREBUILT), and the box carries the
//! packages provisioning wants. libvirtd and virtlogd are started if they are not running
//! (and stopped again); afterwards nothing of the run is left: no domain, volume, pool or
//! network of it, no firewall chain or table libvirt made, no daemon, no VAGRANT_HOME.
//!
//! Boots a VM for minutes, so it is ignored by `cargo test --workspace`; CI runs it:
//! `cargo test --test vm_vagrant -- --ignored --nocapture`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cilab::catalog;
use cilab::report::Report;

const LIBVIRT: &str = "qemu:///system";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} {args:?}: {e}"))
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn virsh(args: &[&str]) -> Output {
    let mut all = vec!["-q", "-c", LIBVIRT];
    all.extend_from_slice(args);
    run("virsh", &all)
}

fn virsh_names(args: &[&str]) -> Vec<String> {
    text(&virsh(args)).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

/// What the run may change on this machine and must put back.
#[derive(Debug, PartialEq, Eq)]
struct Host {
    /// What of `nft list ruleset` libvirt changes (iptables-nft keeps its rules there).
    ruleset: String,
    forwarding: Vec<(String, String)>,
    /// libvirt's objects (empty when libvirtd does not run).
    domains: Vec<String>,
    networks: Vec<String>,
    pools: Vec<String>,
    volumes: Vec<String>,
    /// The `machine` cgroups libvirt makes for its domains.
    machine_cgroups: Vec<PathBuf>,
}

/// The firewall tables, and every line of the ruleset that names libvirt's chains or
/// bridges (other programs, Docker, change the rest while the test runs), counters removed.
fn ruleset() -> String {
    let out = text(&run("nft", &["list", "ruleset"]));
    out.lines()
        .filter(|l| l.starts_with("table ") || l.contains("LIBVIRT") || l.contains("virbr"))
        .map(without_counter)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A rule without "counter packets N bytes M" (changes with traffic, not configuration).
fn without_counter(line: &str) -> String {
    match line.find("counter packets ") {
        Some(at) => {
            let words: Vec<&str> = line[at..].split_whitespace().collect();
            format!("{}counter {}", &line[..at], words.get(5..).map(|w| w.join(" ")).unwrap_or_default())
        }
        None => line.to_string(),
    }
}

fn libvirtd_answers() -> bool {
    UnixStream::connect("/run/libvirt/libvirt-sock").is_ok()
}

fn host() -> Host {
    let forwarding = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]
        .iter()
        .map(|k| {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            (k.to_string(), std::fs::read_to_string(path).unwrap_or_default().trim().to_string())
        })
        .collect();
    let machine_cgroups = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.flatten().map(|e| e.path().join("machine")).filter(|p| p.exists()).collect())
        .unwrap_or_default();
    let (mut domains, mut networks, mut pools, mut volumes) = (vec![], vec![], vec![], vec![]);
    if libvirtd_answers() {
        domains = virsh_names(&["list", "--all", "--name"]);
        networks = virsh_names(&["net-list", "--all", "--name"]);
        pools = virsh_names(&["pool-list", "--all", "--name"]);
        for pool in &pools {
            volumes.extend(virsh_names(&["vol-list", "--pool", pool]).iter().map(|v| format!("{pool}: {v}")));
        }
    }
    let mut host = Host { ruleset: ruleset(), forwarding, domains, networks, pools, volumes, machine_cgroups };
    host.machine_cgroups.sort();
    host
}

/// A daemon this test started (libvirtd, virtlogd), as its child: ready when it says so
/// over NOTIFY_SOCKET (sd_notify's READY=1), stopped with SIGTERM and waited for.
struct Daemon {
    name: &'static str,
    child: Child,
}

impl Daemon {
    fn start(name: &'static str, socket: &str) -> Option<Daemon> {
        if UnixStream::connect(socket).is_ok() {
            eprintln!("vagrant test: {name} runs already: left as it is");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let notify = dir.path().join("notify");
        let listener = UnixDatagram::bind(&notify).expect("bind the notify socket");
        listener.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let child = Command::new(name)
            .env("NOTIFY_SOCKET", &notify)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e} (apt-get install -y libvirt-daemon-system)"));
        let mut buf = [0u8; 4096];
        loop {
            let n = listener.recv(&mut buf).unwrap_or_else(|e| panic!("{name} never said READY=1: {e}"));
            if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1") {
                break;
            }
        }
        eprintln!("vagrant test: started {name} (pid {})", child.id());
        Some(Daemon { name, child })
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let status = self.child.wait();
        eprintln!("vagrant test: stopped {} ({status:?})", self.name);
    }
}

/// Puts back what libvirt changed and this test did not ask for: firewall chains and the
/// tables it made for them, the forwarding sysctls, empty `machine` cgroups.
fn put_back(before: &Host) {
    for tool in ["iptables", "ip6tables"] {
        for table in ["filter", "nat", "mangle"] {
            let rules = text(&run(tool, &["-t", table, "-S"]));
            let new_chains: Vec<&str> = rules
                .lines()
                .filter_map(|l| l.strip_prefix("-N "))
                .filter(|c| c.starts_with("LIBVIRT_") && !before.ruleset.contains(&format!("chain {c} ")))
                .collect();
            for rule in rules.lines().filter(|l| l.starts_with("-A ")) {
                if new_chains.iter().any(|c| rule.ends_with(&format!("-j {c}"))) {
                    let mut args = vec!["-t", table, "-D"];
                    args.extend(rule["-A ".len()..].split_whitespace());
                    run(tool, &args);
                }
            }
            for chain in &new_chains {
                run(tool, &["-t", table, "-F", chain]);
                run(tool, &["-t", table, "-X", chain]);
            }
        }
    }
    // Tables iptables-nft made for libvirt's chains, now holding no rule.
    let tables = text(&run("nft", &["list", "tables"]));
    for table in tables.lines().filter_map(|l| l.strip_prefix("table ")) {
        let family_name: Vec<&str> = table.split_whitespace().collect();
        if before.ruleset.contains(&format!("table {table} {{")) || family_name.len() != 2 {
            continue;
        }
        let listing = text(&run("nft", &["list", "table", family_name[0], family_name[1]]));
        let has_rules = listing.lines().map(str::trim).any(|l| {
            !(l.is_empty() || l == "}" || l.starts_with("table ") || l.starts_with("chain ") || l.starts_with("type "))
        });
        if !has_rules {
            run("nft", &["delete", "table", family_name[0], family_name[1]]);
        }
    }
    for (key, value) in &before.forwarding {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        if std::fs::read_to_string(&path).map(|v| v.trim() != value).unwrap_or(false) {
            let _ = std::fs::write(&path, value);
        }
    }
    for dir in host().machine_cgroups {
        if !before.machine_cgroups.contains(&dir) {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Removes the libvirt objects the run made: the box's volume, and the pools and networks
/// that were not there before.
fn remove_libvirt_objects(before: &Host, box_name: &str) {
    for pool in virsh_names(&["pool-list", "--all", "--name"]) {
        for volume in virsh_names(&["vol-list", "--pool", &pool]) {
            let name = volume.split_whitespace().next().unwrap_or_default().to_string();
            if name.starts_with(&format!("{box_name}_vagrant_box_image_")) {
                virsh(&["vol-delete", "--pool", &pool, &name]);
            }
        }
        if !before.pools.contains(&pool) {
            virsh(&["pool-destroy", &pool]);
            virsh(&["pool-undefine", &pool]);
        }
    }
    for network in virsh_names(&["net-list", "--all", "--name"]) {
        if !before.networks.contains(&network) {
            virsh(&["net-destroy", &network]);
            virsh(&["net-undefine", &network]);
        }
    }
}

fn timed(what: &str, times: &mut Vec<(String, Duration)>, mut command: Command) -> Output {
    let started = Instant::now();
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let took = started.elapsed();
    eprintln!("vagrant test: {what}: {took:.1?} ({})", output.status);
    times.push((what.to_string(), took));
    output
}

#[test]
#[ignore = "boots a VM for minutes: cargo test --test vm_vagrant -- --ignored"]
fn the_check_passes_in_the_vagrant_vm_of_the_repositorys_vagrantfile() {
    common::require_root();
    for program in ["vagrant", "virsh", "libvirtd", "virtlogd", "mmdebstrap", "nft"] {
        assert!(
            which::which(program).is_ok(),
            "{program} is missing: apt-get install -y vagrant vagrant-libvirt libvirt-daemon-system mmdebstrap nftables"
        );
    }
    common::build_labs();
    let labs = catalog::all();
    let before = host();
    let mut times: Vec<(String, Duration)> = Vec::new();

    // The box, built once and cached by content.
    let packages = common::provision_packages();
    for package in catalog::packages() {
        assert!(packages.iter().any(|p| p == package), "provision.sh does not install {package}");
    }
    let started = Instant::now();
    let built = Command::new("bash")
        .arg(common::workspace().join("harness/tests/support/vagrant-box.sh"))
        .env("CILAB_BOX_PACKAGES", packages.join(" "))
        .stderr(Stdio::inherit())
        .output()
        .expect("run vagrant-box.sh");
    assert!(built.status.success(), "building the box failed ({})", built.status);
    let box_file = text(&built).trim().to_string();
    times.push(("box (built or cached)".into(), started.elapsed()));
    let box_name = format!(
        "cilab-test-{}",
        Path::new(&box_file).file_stem().and_then(|s| s.to_str()).unwrap_or("box").trim_start_matches("cilab-")
    );

    let virtlogd = Daemon::start("virtlogd", "/run/libvirt/virtlogd-sock");
    let libvirtd = Daemon::start("libvirtd", "/run/libvirt/libvirt-sock");
    let libvirt_before = host();

    // VAGRANT_HOME and the machine's state in a directory of the test; libvirt's qemu
    // (another user) reads the box's kernel from it.
    let home = tempfile::Builder::new().prefix("cilab-vagrant-").tempdir().expect("tempdir");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let prebuilt = home.path().join("prebuilt");
    std::fs::create_dir(&prebuilt).expect("mkdir prebuilt");
    let cilab = assert_cmd::cargo::cargo_bin("cilab");
    let bin_dir = cilab.parent().expect("target dir");
    for binary in std::iter::once("cilab").chain(labs.iter().map(|l| l.binary)) {
        std::fs::copy(bin_dir.join(binary), prebuilt.join(binary)).unwrap_or_else(|e| panic!("copy {binary}: {e}"));
    }
    let driver = std::env::var("CILAB_TEST_LIBVIRT_DRIVER").unwrap_or_else(|_| "qemu".into());
    let vagrant = |args: &[&str]| {
        let mut command = Command::new("vagrant");
        command
            .args(args)
            .current_dir(common::workspace())
            .env("VAGRANT_HOME", home.path().join("vagrant.d"))
            .env("VAGRANT_DOTFILE_PATH", home.path().join("dot"))
            .env("CILAB_VAGRANT_BOX", &box_name)
            .env("CILAB_PREBUILT", &prebuilt)
            .env("CILAB_LIBVIRT_DRIVER", &driver)
            .env("CILAB_WITH_DOCKER", "0")
            .env("CILAB_VM_MEMORY", "2048")
            .env("VAGRANT_NO_COLOR", "1");
        command
    };

    // Everything below ends in the clean-up, also when an assertion fails.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let added = timed("vagrant box add", &mut times, vagrant(&["box", "add", "--name", &box_name, &box_file]));
        assert!(added.status.success(), "box add: {}", String::from_utf8_lossy(&added.stderr));
        let up = timed("vagrant up (boot and provision, TCG)", &mut times, vagrant(&["up", "--provider=libvirt"]));
        let up_text = format!("{}{}", text(&up), String::from_utf8_lossy(&up.stderr));
        assert!(up.status.success(), "vagrant up failed:\n{up_text}");
        assert!(
            up_text.contains("cilab-provision: installed the prebuilt binaries")
                && up_text.contains("cilab-provision: ready. Next:"),
            "provisioning did not take the prebuilt binaries and say the next command:\n{up_text}"
        );
        let ssh = timed("vagrant ssh -c", &mut times, vagrant(&["ssh", "--no-tty", "-c", "cilab --version"]));
        assert!(ssh.status.success() && text(&ssh).contains("cilab"), "{ssh:?}");

        let mut check = Command::new(&cilab);
        // The VM's CPU is emulated here (libvirt's qemu driver, TCG): the labs take longer to
        // reach their stages than the default allows.
        check.args(["check", "--all", "--backend", "vagrant", "--format", "json", "--hold-timeout", "180"]);
        for (key, value) in vagrant(&[]).get_envs() {
            if let Some(value) = value {
                check.env(key, value);
            }
        }
        check.current_dir(common::workspace());
        let checked = timed("cilab check --all --backend vagrant", &mut times, check);
        let report: Report = serde_json::from_slice(&checked.stdout).unwrap_or_else(|e| {
            panic!("no report ({e}): {}\n{}", text(&checked), String::from_utf8_lossy(&checked.stderr))
        });
        let names: Vec<&str> = report.labs.iter().map(|l| l.lab.as_str()).collect();
        assert_eq!(names, labs.iter().map(|l| l.name).collect::<Vec<_>>(), "every lab of the catalog, in order");
        for (lab_report, lab) in report.labs.iter().zip(labs) {
            assert_eq!(lab_report.backend, "vagrant", "{}", lab.name);
            let guest = lab_report.guest.as_ref().unwrap_or_else(|| panic!("{}: no guest info", lab.name));
            assert_eq!(guest.cgroup.as_deref(), Some("v2"), "Debian 12 with systemd: pure v2 ({guest:?})");
            assert!(guest.kernel.as_deref().is_some_and(|k| k.contains("cloud")), "the box's kernel: {guest:?}");
            let ids: Vec<&str> = lab_report.verdicts.iter().map(|v| v.id.as_str()).collect();
            assert_eq!(ids, lab.all_verdicts().iter().map(|v| v.id).collect::<Vec<_>>(), "{}", lab.name);
        }
        // The box has no Docker: its variants are SKIPs, and a skip is not a pass (exit 1).
        let skipped = common::assert_all_passed_but_unavailable_variants(&report);
        let expected = if skipped.is_empty() { 0 } else { 1 };
        assert_eq!(checked.status.code(), Some(expected), "skipped: {skipped:?}");
    }));

    let destroyed = timed("vagrant destroy -f", &mut times, vagrant(&["destroy", "-f"]));
    remove_libvirt_objects(&libvirt_before, &box_name);
    let libvirt_after = host();
    if let Some(daemon) = libvirtd {
        daemon.stop();
    }
    if let Some(daemon) = virtlogd {
        daemon.stop();
    }
    put_back(&before);
    let home_path = home.path().to_path_buf();
    drop(home);
    let after = host();
    for (what, took) in &times {
        eprintln!("vagrant test: {what}: {:.1} s", took.as_secs_f64());
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(destroyed.status.success(), "vagrant destroy: {destroyed:?}");
    assert_eq!(libvirt_after.domains, libvirt_before.domains, "a domain is left");
    assert_eq!(libvirt_after.volumes, libvirt_before.volumes, "a volume is left");
    assert_eq!(after, before, "the host is not as it was");
    assert!(!home_path.exists(), "VAGRANT_HOME is left: {}", home_path.display());
}
