//! Is this machine one you may break? The evidence `cilab doctor` shows, and the guard of
//! the labs that break isolation on purpose (chroot-escape): they run only where the
//! evidence says the machine is a VM or a container, or when the person passes a flag
//! whose name says what it risks ([`ALLOW_FLAG`]).
//!
//! The evidence is read from the machine: the CPU's `hypervisor` flag, the DMI vendor, the
//! files container engines leave. Tests fake a machine that is NOT disposable by pointing
//! [`FAKE_ROOT_ENV`] at a directory laid out like `/` (fake `proc/cpuinfo`,
//! `sys/class/dmi/id/*`, `.dockerenv`): the evidence is then what the machine shows AND the
//! fake root shows, so the variable can only take evidence away, never add it. No
//! environment variable can make a real machine look disposable to the guard.

use std::path::Path;

/// The flag that runs a lab that breaks isolation on a machine that does not look disposable.
pub const ALLOW_FLAG: &str = "--allow-jailbreak-on-this-host";
/// Points the evidence reader at a fake root too (tests): evidence must be in both.
pub const FAKE_ROOT_ENV: &str = "CILAB_EVIDENCE_ROOT";
/// A person's declaration that the machine is disposable. `cilab doctor` shows it; the
/// guard does not take it as evidence (it asks for [`ALLOW_FLAG`] instead).
pub const DECLARED_ENV: &str = "CILAB_DISPOSABLE";

/// DMI vendors and products of hypervisors and clouds.
const VIRTUAL_VENDORS: [&str; 10] =
    ["QEMU", "KVM", "VMware", "VirtualBox", "innotek", "Xen", "Microsoft", "Amazon", "Google", "Firecracker"];

/// Signs, read under `root` (normally "/"), that the machine is a VM or a container.
/// Each names the file it came from as the machine's path (never the fake root's).
pub fn evidence_under(root: &Path) -> Vec<String> {
    let at = |path: &str| root.join(path.trim_start_matches('/'));
    let mut evidence = Vec::new();
    if std::fs::read_to_string(at("/proc/cpuinfo"))
        .is_ok_and(|c| c.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor")))
    {
        evidence.push("cpu flag `hypervisor`".to_string());
    }
    for file in ["/sys/class/dmi/id/sys_vendor", "/sys/class/dmi/id/product_name"] {
        if let Ok(vendor) = std::fs::read_to_string(at(file)) {
            let vendor = vendor.trim();
            if VIRTUAL_VENDORS.iter().any(|k| vendor.contains(k)) {
                evidence.push(format!("{file}: {vendor}"));
            }
        }
    }
    for (path, what) in [
        ("/.dockerenv", "a Docker container"),
        ("/run/.containerenv", "a Podman container"),
        ("/vagrant", "a Vagrant box"),
    ] {
        if at(path).exists() {
            evidence.push(format!("{path} ({what})"));
        }
    }
    evidence
}

/// The machine's evidence: read under "/", and, when [`FAKE_ROOT_ENV`] names a directory,
/// only what is found there as well (a fake can hide evidence, not make it).
pub fn evidence() -> Vec<String> {
    let real = evidence_under(Path::new("/"));
    match std::env::var_os(FAKE_ROOT_ENV) {
        Some(fake) => in_both(real, &evidence_under(Path::new(&fake))),
        None => real,
    }
}

/// The machine's evidence that the fake root shows too.
fn in_both(real: Vec<String>, fake: &[String]) -> Vec<String> {
    real.into_iter().filter(|e| fake.contains(e)).collect()
}

/// Whether the person declared the machine disposable ([`DECLARED_ENV`]`=1`).
pub fn declared() -> bool {
    std::env::var(DECLARED_ENV).is_ok_and(|v| v == "1")
}

/// The guard of a lab that breaks isolation: `Ok(why it may run)` or `Err(why not, and
/// what to do)`. `allowed` is the person's [`ALLOW_FLAG`]; `vm_backend` says the lab runs
/// in a guest that a VM backend made and throws away (issue 9's backends pass true).
pub fn guard(lab: &str, allowed: bool, vm_backend: bool) -> Result<String, String> {
    if vm_backend {
        return Ok("runs in a VM backend's guest, which is thrown away".to_string());
    }
    if allowed {
        return Ok(format!("{ALLOW_FLAG} was given"));
    }
    let evidence = evidence();
    if !evidence.is_empty() {
        return Ok(format!("the machine looks disposable: {}", evidence.join("; ")));
    }
    let declared = if declared() {
        format!(" ({DECLARED_ENV}=1 is a declaration, not evidence: it is not enough here)")
    } else {
        String::new()
    };
    Err(format!(
        "{lab} breaks out of a jail on purpose, and this machine does not look disposable (no hypervisor \
         CPU flag, no VM vendor in DMI, no container marker; see `cilab doctor`){declared}. Run it in a VM, \
         or pass {ALLOW_FLAG} if you accept that a mistake in the lab may touch this host"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root(cpu_flags: &str, vendor: Option<&str>, dockerenv: bool) -> tempdir::Dir {
        let dir = tempdir::Dir::new();
        std::fs::create_dir_all(dir.0.join("proc")).expect("mkdir");
        std::fs::write(dir.0.join("proc/cpuinfo"), format!("processor\t: 0\nflags\t\t: {cpu_flags}\n")).expect("w");
        if let Some(vendor) = vendor {
            std::fs::create_dir_all(dir.0.join("sys/class/dmi/id")).expect("mkdir");
            std::fs::write(dir.0.join("sys/class/dmi/id/sys_vendor"), format!("{vendor}\n")).expect("w");
        }
        if dockerenv {
            std::fs::write(dir.0.join(".dockerenv"), "").expect("w");
        }
        dir
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "labkit-evidence-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                std::fs::create_dir_all(&path).expect("mkdir");
                Dir(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn evidence_is_read_under_a_root_and_named_by_the_machine_path() {
        let vm = fake_root("fpu vme hypervisor lahf_lm", Some("QEMU"), true);
        assert_eq!(
            evidence_under(&vm.0),
            ["cpu flag `hypervisor`", "/sys/class/dmi/id/sys_vendor: QEMU", "/.dockerenv (a Docker container)"]
        );
        let metal = fake_root("fpu vme lahf_lm hypervisorish", Some("Dell Inc."), false);
        assert!(evidence_under(&metal.0).is_empty());
    }

    /// A fake root hides evidence; it never adds any: a machine without evidence stays so
    /// whatever the fake root holds.
    #[test]
    fn a_fake_root_only_takes_evidence_away() {
        let vm = fake_root("fpu hypervisor", Some("QEMU"), true);
        let metal = fake_root("fpu", None, false);
        assert!(in_both(Vec::new(), &evidence_under(&vm.0)).is_empty());
        let real = vec!["cpu flag `hypervisor`".to_string(), "/.dockerenv (a Docker container)".to_string()];
        assert!(in_both(real.clone(), &evidence_under(&metal.0)).is_empty());
        assert_eq!(in_both(real.clone(), &evidence_under(&vm.0)), real);
    }

    #[test]
    fn the_guard_says_why_and_the_way_out() {
        assert!(guard("x", false, true).is_ok(), "a VM backend's guest always runs it");
        assert_eq!(guard("x", true, false), Ok(format!("{ALLOW_FLAG} was given")));
    }
}
