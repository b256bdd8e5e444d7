//! The files a student's VM is made from, checked in seconds (the VM boots themselves:
//! tests/vm_vagrant.rs): the Vagrantfile is valid for Vagrant, vagrant/cloud-init.yaml is
//! valid cloud-config with only known top-level keys and carries vagrant/provision.sh
//! byte for byte, and provisioning installs what the catalog says the labs need.

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
