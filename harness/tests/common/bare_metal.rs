//! A fake root for the disposable-machine guard (labkit::disposable::FAKE_ROOT_ENV).

use std::path::{Path, PathBuf};

/// A directory laid out like `/` with none of the evidence doctor reads: a CPU without the
/// `hypervisor` flag, a DMI vendor of bare metal, no container marker.
pub struct BareMetal(PathBuf);

impl BareMetal {
    pub fn new() -> Self {
        let root = std::env::temp_dir().join(format!("cilab-bare-metal-{}", std::process::id()));
        std::fs::create_dir_all(root.join("proc")).expect("mkdir");
        std::fs::create_dir_all(root.join("sys/class/dmi/id")).expect("mkdir");
        std::fs::write(root.join("proc/cpuinfo"), "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae\n")
            .expect("write");
        std::fs::write(root.join("sys/class/dmi/id/sys_vendor"), "Dell Inc.\n").expect("write");
        std::fs::write(root.join("sys/class/dmi/id/product_name"), "PowerEdge R650\n").expect("write");
        BareMetal(root)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for BareMetal {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
