//! The files a student's VM is made from, checked in seconds (the VM boots themselves:
//! tests/vm_vagrant.rs): the Vagrantfile is valid for Vagrant, vagrant/cloud-init.yaml is
//! valid cloud-config with only known top-level keys and carries vagrant/provision.sh
//! byte for byte, provisioning installs what the catalog says the labs need, and a later
//! `sudo cilab-provision` builds the tree the first run was given, with the tree's own
//! provision.sh (the script sourced, its paths in a temporary directory: nothing installed).

mod common;

use std::process::Command;

fn read(relative: &str) -> String {
    let path = common::workspace().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The top-level keys of cloud-config this file may use: cloud-init's modules' keys
/// (cloud-init 22.4+). `cloud-init schema` accepts any other key without a word, so a
/// misspelled one (`runcmds:`) would be ignored silently at boot.
const KNOWN_KEYS: &[&str] = &[
    "apt",
    "bootcmd",
    "final_message",
    "groups",
    "hostname",
    "package_reboot_if_required",
    "package_update",
    "package_upgrade",
    "packages",
    "runcmd",
    "snap",
    "ssh_authorized_keys",
    "ssh_pwauth",
    "timezone",
    "users",
    "write_files",
];

fn top_level_keys(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter(|l| !l.starts_with([' ', '#', '-']) && !l.trim().is_empty())
        .map(|l| l.split(':').next().unwrap_or_default().to_string())
        .collect()
}

/// The `content: |` block of write_files, dedented: what cloud-init writes.
fn embedded_script(yaml: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "content: |").skip(1);
    let mut script = String::new();
    for line in lines.by_ref() {
        if line.is_empty() {
            script.push('\n');
        } else if let Some(text) = line.strip_prefix("      ") {
            script.push_str(text);
            script.push('\n');
        } else {
            break;
        }
    }
    // A `|` block keeps one final newline and drops the other trailing empty lines.
    let trimmed = script.trim_end_matches('\n').len();
    script.truncate(trimmed);
    script.push('\n');
    script
}

#[test]
fn cloud_init_carries_provision_sh_byte_for_byte() {
    let yaml = read("vagrant/cloud-init.yaml");
    let script = read("vagrant/provision.sh");
    let embedded = embedded_script(&yaml);
    if embedded != script {
        let first = embedded.lines().zip(script.lines()).position(|(a, b)| a != b);
        panic!(
            "vagrant/cloud-init.yaml does not carry vagrant/provision.sh as it is (first differing line: {first:?}): \
             paste provision.sh into its write_files content again, indented by six spaces"
        );
    }
    assert!(
        yaml.contains("/usr/local/sbin/cilab-provision") && yaml.contains("runcmd:"),
        "cloud-init must write the script and run it"
    );
}

#[test]
fn cloud_init_uses_known_top_level_keys_only() {
    let yaml = read("vagrant/cloud-init.yaml");
    assert_eq!(yaml.lines().next(), Some("#cloud-config"), "user-data must start with #cloud-config");
    let keys = top_level_keys(&yaml);
    assert!(keys.contains(&"runcmd".to_string()) && keys.contains(&"write_files".to_string()), "{keys:?}");
    for key in &keys {
        assert!(KNOWN_KEYS.contains(&key.as_str()), "unknown top-level cloud-config key `{key}` (misspelled?)");
    }
    // The check itself catches a misspelling.
    assert!(!KNOWN_KEYS.contains(&top_level_keys("runcmds:\n  - true\n")[0].as_str()));
}

#[test]
fn cloud_init_schema_accepts_it() {
    let Ok(program) = which::which("cloud-init") else {
        panic!("cloud-init is not installed: apt-get install -y cloud-init (CI installs it)");
    };
    let output = Command::new(program)
        .args(["schema", "--config-file"])
        .arg(common::workspace().join("vagrant/cloud-init.yaml"))
        .output()
        .expect("run cloud-init schema");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.contains("Valid cloud-config"), "{said}");
}

#[test]
fn provisioning_installs_what_the_catalog_says_the_labs_need() {
    let packages = common::provision_packages();
    for package in cilab::catalog::packages() {
        assert!(packages.iter().any(|p| p == package), "vagrant/provision.sh does not install {package}");
    }
}

/// `vagrant validate` on the repository's Vagrantfile, as a student gets it and as the
/// Vagrant test sets it (a local box, prebuilt binaries, libvirt's TCG driver). Vagrant
/// writes its state into a temporary directory, never into the tree.
#[test]
fn vagrant_validates_the_vagrantfile() {
    let Ok(vagrant) = which::which("vagrant") else {
        panic!("vagrant is not installed: apt-get install -y vagrant vagrant-libvirt (CI installs it)");
    };
    let state = tempfile::tempdir().expect("tempdir");
    let prebuilt = state.path().to_str().expect("a UTF-8 temporary path");
    let settings: [&[(&str, &str)]; 2] = [
        &[],
        &[
            ("CILAB_VAGRANT_BOX", "cilab-test-box"),
            ("CILAB_PREBUILT", prebuilt),
            ("CILAB_LIBVIRT_DRIVER", "qemu"),
            ("CILAB_WITH_DOCKER", "0"),
            ("CILAB_VM_MEMORY", "2048"),
        ],
    ];
    for env in settings {
        let output = Command::new(&vagrant)
            .arg("validate")
            .current_dir(common::workspace())
            .env("VAGRANT_HOME", state.path().join("home"))
            .env("VAGRANT_DOTFILE_PATH", state.path().join("dot"))
            .env("VAGRANT_NO_COLOR", "1")
            .envs(env.iter().copied())
            .output()
            .expect("run vagrant validate");
        let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success() && said.contains("Vagrantfile validated successfully"), "{env:?}: {said}");
    }
    assert!(!common::workspace().join(".vagrant").exists(), "vagrant wrote .vagrant into the tree");
    // And it does catch a mistake: a prebuilt directory that is not there.
    let output = Command::new(&vagrant)
        .arg("validate")
        .current_dir(common::workspace())
        .env("VAGRANT_HOME", state.path().join("home"))
        .env("VAGRANT_DOTFILE_PATH", state.path().join("dot"))
        .env("CILAB_PREBUILT", state.path().join("missing"))
        .output()
        .expect("run vagrant validate");
    assert!(!output.status.success(), "vagrant validate accepted a missing synced folder");
}

/// provision.sh's choice of the tree and of the script to run, in a temporary directory:
/// the script is sourced (its functions, nothing run) with its paths pointed there, and
/// `choose_source` runs as provisioning runs it, `$0` being the script that runs.
struct Provisioning {
    dir: tempfile::TempDir,
}

impl Provisioning {
    fn new() -> Provisioning {
        // Sourcing a script that does not stop after its functions would provision this
        // machine: refuse one without the guard before its first command.
        let script = read("vagrant/provision.sh");
        let guard = script.find("(return 0 2>/dev/null) && return 0");
        let first_command = script.find("[ \"$(id -u)\" = 0 ]");
        assert!(
            matches!((guard, first_command), (Some(g), Some(c)) if g < c),
            "vagrant/provision.sh does not return, when sourced, before it provisions (guard at {guard:?}, root check \
             at {first_command:?})"
        );
        let provisioning = Provisioning { dir: tempfile::tempdir().expect("tempdir") };
        std::fs::create_dir_all(provisioning.tree().join("vagrant")).expect("a tree");
        provisioning
    }

    fn path(&self, relative: &str) -> std::path::PathBuf {
        self.dir.path().join(relative)
    }

    fn tree(&self) -> std::path::PathBuf {
        self.path("tree")
    }

    fn installed(&self) -> std::path::PathBuf {
        self.path("sbin/cilab-provision")
    }

    /// `choose_source again` run as `running`, with these variables set; what it printed
    /// (`src=...` when it went on, the other script's words when it handed over).
    fn choose(&self, running: &std::path::Path, env: &[(&str, &std::ffi::OsStr)]) -> String {
        let script = r#"source "$PROVISION"; installed=$T/sbin/cilab-provision; settings=$T/etc/provision.env
                        choose_source again; echo "src=$src""#;
        let output = Command::new("bash")
            .args(["-c", script])
            .arg(running)
            .env("PROVISION", common::workspace().join("vagrant/provision.sh"))
            .env("T", self.dir.path())
            .env_remove("CILAB_SRC")
            .env_remove("CILAB_PROVISION_HANDED_OVER")
            .envs(env.iter().copied())
            .output()
            .expect("run bash");
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{said}{}", String::from_utf8_lossy(&output.stderr));
        said
    }
}

#[test]
fn provisioning_again_builds_the_tree_it_was_first_given_with_the_trees_own_script() {
    let real = common::workspace().join("vagrant/provision.sh");
    let run = Provisioning::new();
    let tree = run.tree().into_os_string();
    // The first run (cloud-init's, or Vagrant's upload) is given the tree, installs itself.
    let uploaded = run.path("vagrant-shell");
    std::fs::copy(&real, &uploaded).expect("copy the script");
    assert_eq!(run.choose(&uploaded, &[("CILAB_SRC", &tree)]), format!("src={}\n", run.tree().display()));
    assert_eq!(std::fs::read(run.installed()).ok(), std::fs::read(&real).ok(), "the script installs itself");

    // `sudo cilab-provision` later: no CILAB_SRC, and the tree written down is built.
    assert_eq!(run.choose(&run.installed(), &[]), format!("src={}\n", run.tree().display()));
    // The tree's script the same as the installed one: it goes on.
    std::fs::copy(&real, run.tree().join("vagrant/provision.sh")).expect("copy the script");
    assert_eq!(run.choose(&run.installed(), &[]), format!("src={}\n", run.tree().display()));

    // After a `git pull` the tree's script is another: installed in place and run instead,
    // with the tree and the arguments, once.
    let newer = "#!/bin/sh\necho \"the tree's script: src=$CILAB_SRC once=$CILAB_PROVISION_HANDED_OVER args=$*\"\n";
    std::fs::write(run.tree().join("vagrant/provision.sh"), newer).expect("write the tree's script");
    assert_eq!(
        run.choose(&run.installed(), &[]),
        format!("cilab-provision: {}/vagrant/provision.sh is not this copy ({}): installing it in its place and running it\n\
                 the tree's script: src={} once=1 args=again\n",
                run.tree().display(), run.installed().display(), run.tree().display())
    );
    assert_eq!(std::fs::read_to_string(run.installed()).ok().as_deref(), Some(newer), "the tree's script is installed");
    // A script that has handed over once does not hand over again.
    std::fs::copy(&real, run.installed()).expect("copy the script");
    let once = std::ffi::OsStr::new("1");
    assert_eq!(
        run.choose(&run.installed(), &[("CILAB_PROVISION_HANDED_OVER", once)]),
        format!("src={}\n", run.tree().display())
    );

    // A script run from elsewhere (Vagrant's upload of the host's) is the one asked for:
    // it runs, and installs itself, whatever the tree has.
    assert_eq!(run.choose(&uploaded, &[]), format!("src={}\n", run.tree().display()));
    assert_eq!(std::fs::read(run.installed()).ok(), std::fs::read(&real).ok());

    // Never given a tree: /vagrant. Given another: that one, from then on.
    let fresh = Provisioning::new();
    assert_eq!(fresh.choose(&real, &[]), "src=/vagrant\n");
    let other = fresh.path("other").into_os_string();
    assert_eq!(fresh.choose(&real, &[("CILAB_SRC", &other)]), format!("src={}\n", fresh.path("other").display()));
    assert_eq!(fresh.choose(&fresh.installed(), &[]), format!("src={}\n", fresh.path("other").display()));
}
