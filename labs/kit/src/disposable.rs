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

/// DMI system vendors that make only virtual machines (`/sys/class/dmi/id/sys_vendor`).
const VM_VENDORS: [&str; 8] = ["QEMU", "VMware", "innotek GmbH", "Xen", "Parallels", "Bochs", "BHYVE", "Firecracker"];
/// DMI product names that only virtual machines carry, whoever the vendor: Hyper-V's
/// "Virtual Machine" (the vendor, Microsoft Corporation, also makes Surface laptops), Google
/// Compute Engine (Google also makes Pixelbooks), Apple's Virtualization.framework
/// (Apple also makes Macs), and the usual hypervisors' machine types.
const VM_PRODUCTS: [&str; 13] = [
    "KVM",
    "Virtual Machine",
    "VirtualBox",
    "VMware",
    "Standard PC (",
    "HVM domU",
    "Google Compute Engine",
    "OpenStack Nova",
    "Droplet",
    "Parallels",
    "Apple Virtualization",
    "BHYVE",
    "Bochs",
];

/// Whether a DMI vendor and product name, taken together, name a virtual machine. A
/// vendor alone says so only when it makes nothing else; Amazon EC2 names its bare-metal
/// instances (`*.metal`) too, which are real machines.
pub fn dmi_names_a_vm(vendor: &str, product: &str) -> bool {
    VM_VENDORS.iter().any(|v| vendor.contains(v))
        || VM_PRODUCTS.iter().any(|p| product.contains(p))
        || (vendor.contains("Amazon EC2") && !product.ends_with(".metal"))
}

/// Signs, read under `root` (normally "/"), that the machine is a VM or a container.
/// Each names the file it came from as the machine's path (never the fake root's).
pub fn evidence_under(root: &Path) -> Vec<String> {
    let at = |path: &str| root.join(path.trim_start_matches('/'));
    let read = |path: &str| std::fs::read_to_string(at(path)).map(|t| t.trim().to_string()).ok();
    let mut evidence = Vec::new();
    // x86's CPUID hypervisor bit; ARM's /proc/cpuinfo has `Features`, no such flag.
    if read("/proc/cpuinfo")
        .is_some_and(|c| c.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor")))
    {
        evidence.push("cpu flag `hypervisor`".to_string());
    }
    let vendor = read("/sys/class/dmi/id/sys_vendor").unwrap_or_default();
    let product = read("/sys/class/dmi/id/product_name").unwrap_or_default();
    if dmi_names_a_vm(&vendor, &product) {
        evidence.push(format!("/sys/class/dmi/id: {vendor} / {product}"));
    }
    if let Some(kind) = read("/sys/hypervisor/type").filter(|k| !k.is_empty()) {
        evidence.push(format!("/sys/hypervisor/type: {kind}"));
    }
    // A guest's device tree (aarch64, powerpc) has a hypervisor node under KVM and Xen;
    // QEMU's generic ARM machine says so in its compatible string.
    if at("/proc/device-tree/hypervisor").exists() {
        evidence.push("/proc/device-tree/hypervisor (a hypervisor node in the device tree)".to_string());
    }
    if read("/proc/device-tree/compatible").is_some_and(|c| c.contains("linux,dummy-virt")) {
        evidence.push("/proc/device-tree/compatible: linux,dummy-virt (QEMU's virt machine)".to_string());
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

/// Whether this machine may be broken: what `cilab doctor` shows and what the guard of
/// the labs that break isolation decides by, one judgement for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// The machine's evidence ([`evidence`]).
    pub evidence: Vec<String>,
    /// The person's declaration ([`DECLARED_ENV`]`=1`): shown, never counted.
    pub declared: bool,
}

impl Judgement {
    /// Disposable by the evidence alone: a declaration is not evidence (the person who
    /// sets it on a laptop by mistake would lose that laptop to a lab's mistake).
    pub fn disposable(&self) -> bool {
        !self.evidence.is_empty()
    }
}

/// This machine's judgement, as doctor and the guard both take it.
pub fn judge() -> Judgement {
    Judgement { evidence: evidence(), declared: declared() }
}

/// The guard of a lab that breaks isolation: `Ok(why it may run)` or `Err(why not, and
/// what to do)`. `allowed` is the person's [`ALLOW_FLAG`]; `vm_backend` says the lab runs
/// in a guest that a VM backend made and throws away (issue 9's backends pass true).
pub fn guard(lab: &str, allowed: bool, vm_backend: bool) -> Result<String, String> {
    guard_by(&judge(), lab, allowed, vm_backend)
}

fn guard_by(judgement: &Judgement, lab: &str, allowed: bool, vm_backend: bool) -> Result<String, String> {
    if vm_backend {
        return Ok("runs in a VM backend's guest, which is thrown away".to_string());
    }
    if allowed {
        return Ok(format!("{ALLOW_FLAG} was given"));
    }
    if judgement.disposable() {
        return Ok(format!("the machine looks disposable: {}", judgement.evidence.join("; ")));
    }
    let declared = if judgement.declared {
        format!(" ({DECLARED_ENV}=1 is a declaration, not evidence: it is not enough here)")
    } else {
        String::new()
    };
    Err(format!(
        "{lab} breaks out of a jail on purpose, and this machine does not look disposable (no hypervisor \
         CPU flag, no VM in DMI or the device tree, no container marker; see `cilab doctor`){declared}. Run it \
         in a VM, or pass {ALLOW_FLAG} if you accept that a mistake in the lab may touch this host"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory laid out like `/` with the given files (path under it, content).
    fn fake_root(files: &[(&str, &str)]) -> tempdir::Dir {
        let dir = tempdir::Dir::new();
        for (path, content) in files {
            let path = dir.0.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, content).expect("write");
        }
        dir
    }

    fn cpu(flags: &str) -> (&'static str, String) {
        ("/proc/cpuinfo", format!("processor\t: 0\nflags\t\t: {flags}\n"))
    }

    /// An aarch64 cpuinfo: `Features`, no `flags` line at all.
    const ARM_CPU: (&str, &str) = ("/proc/cpuinfo", "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32\n");

    fn evidence_of(files: &[(&str, &str)]) -> Vec<String> {
        evidence_under(&fake_root(files).0)
    }

    fn dmi(vendor: &'static str, product: &'static str) -> [(&'static str, &'static str); 2] {
        [("/sys/class/dmi/id/sys_vendor", vendor), ("/sys/class/dmi/id/product_name", product)]
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
        let flags = cpu("fpu vme hypervisor lahf_lm");
        let [vendor, product] = dmi("QEMU\n", "Standard PC (Q35 + ICH9, 2009)\n");
        let vm = fake_root(&[(flags.0, &flags.1), vendor, product, ("/.dockerenv", "")]);
        assert_eq!(
            evidence_under(&vm.0),
            [
                "cpu flag `hypervisor`",
                "/sys/class/dmi/id: QEMU / Standard PC (Q35 + ICH9, 2009)",
                "/.dockerenv (a Docker container)"
            ]
        );
        let flags = cpu("fpu vme lahf_lm hypervisorish");
        let [vendor, product] = dmi("Dell Inc.\n", "PowerEdge R650\n");
        assert!(evidence_of(&[(flags.0, &flags.1), vendor, product]).is_empty());
    }

    /// Vendors that make real machines too are a VM only with a VM's product name.
    #[test]
    fn a_vendor_that_also_makes_real_machines_is_not_evidence_alone() {
        for (vendor, product, vm) in [
            ("Microsoft Corporation", "Virtual Machine", true),
            ("Microsoft Corporation", "Surface Laptop 4", false),
            ("Google", "Google Compute Engine", true),
            ("Google", "Eve", false),
            ("Apple Inc.", "Apple Virtualization Generic Platform", true),
            ("Apple Inc.", "MacBookPro15,1", false),
            ("Amazon EC2", "m5.large", true),
            ("Amazon EC2", "m5.metal", false),
            ("Parallels Software International Inc.", "Parallels Virtual Platform", true),
            ("Parallels International GmbH.", "Parallels ARM Virtual Machine", true),
            ("innotek GmbH", "VirtualBox", true),
            ("VMware, Inc.", "VMware7,1", true),
            ("Red Hat", "KVM", true),
            ("LENOVO", "20XW0055GE", false),
        ] {
            assert_eq!(dmi_names_a_vm(vendor, product), vm, "{vendor} / {product}");
            // Read from files, with the newline the kernel ends them with.
            let (v, p) = (format!("{vendor}\n"), format!("{product}\n"));
            let files = [("/sys/class/dmi/id/sys_vendor", v.as_str()), ("/sys/class/dmi/id/product_name", p.as_str())];
            assert_eq!(!evidence_of(&files).is_empty(), vm, "{vendor} / {product}");
        }
    }

    /// aarch64 has no `hypervisor` cpu flag: a guest is told by its device tree or its DMI.
    #[test]
    fn an_arm_guest_without_cpu_flags_is_told_by_its_device_tree_or_dmi() {
        assert!(evidence_of(&[ARM_CPU]).is_empty(), "an ARM board with nothing else");
        assert_eq!(
            evidence_of(&[ARM_CPU, ("/proc/device-tree/hypervisor/compatible", "linux,kvm\0")]),
            ["/proc/device-tree/hypervisor (a hypervisor node in the device tree)"]
        );
        assert_eq!(
            evidence_of(&[ARM_CPU, ("/proc/device-tree/compatible", "linux,dummy-virt\0")]),
            ["/proc/device-tree/compatible: linux,dummy-virt (QEMU's virt machine)"]
        );
        let [vendor, product] = dmi("Apple Inc.\n", "Apple Virtualization Generic Platform\n");
        assert_eq!(evidence_of(&[ARM_CPU, vendor, product]).len(), 1, "Virtualization.framework");
        assert!(evidence_of(&[ARM_CPU, ("/proc/device-tree/compatible", "raspberrypi,4-model-b\0")]).is_empty());
        assert_eq!(evidence_of(&[("/sys/hypervisor/type", "xen\n")]), ["/sys/hypervisor/type: xen"]);
    }

    /// A fake root hides evidence; it never adds any: a machine without evidence stays so
    /// whatever the fake root holds.
    #[test]
    fn a_fake_root_only_takes_evidence_away() {
        let flags = cpu("fpu hypervisor");
        let vm = fake_root(&[(flags.0, &flags.1), ("/.dockerenv", "")]);
        let plain = cpu("fpu");
        let metal = fake_root(&[(plain.0, &plain.1)]);
        assert!(in_both(Vec::new(), &evidence_under(&vm.0)).is_empty());
        let real = vec!["cpu flag `hypervisor`".to_string(), "/.dockerenv (a Docker container)".to_string()];
        assert!(in_both(real.clone(), &evidence_under(&metal.0)).is_empty());
        assert_eq!(in_both(real.clone(), &evidence_under(&vm.0)), real);
    }

    /// One judgement for doctor and the guard: a declaration shows but never counts.
    #[test]
    fn the_guard_runs_exactly_where_the_judgement_says_disposable() {
        let cases = [
            Judgement { evidence: vec![], declared: false },
            Judgement { evidence: vec![], declared: true },
            Judgement { evidence: vec!["cpu flag `hypervisor`".into()], declared: false },
            Judgement { evidence: vec!["cpu flag `hypervisor`".into()], declared: true },
        ];
        for judgement in &cases {
            let guarded = guard_by(judgement, "x", false, false);
            assert_eq!(guarded.is_ok(), judgement.disposable(), "{judgement:?}: {guarded:?}");
            assert_eq!(judgement.disposable(), !judgement.evidence.is_empty());
        }
        let refused = guard_by(&cases[1], "x", false, false).expect_err("a declaration alone");
        assert!(refused.contains(DECLARED_ENV) && refused.contains(ALLOW_FLAG), "{refused}");
    }

    #[test]
    fn the_guard_says_why_and_the_way_out() {
        let none = Judgement { evidence: vec![], declared: false };
        assert!(guard_by(&none, "x", false, true).is_ok(), "a VM backend's guest always runs it");
        assert_eq!(guard_by(&none, "x", true, false), Ok(format!("{ALLOW_FLAG} was given")));
    }
}
