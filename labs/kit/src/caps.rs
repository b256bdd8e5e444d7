//! Dropping capabilities for good: from the bounding set, so no exec can give them back,
//! and from the permitted, effective, inheritable and ambient sets of the calling thread.

use nix::errno::Errno;

/// CAP_SYS_CHROOT's number (linux/capability.h; libc does not name it).
pub const CAP_SYS_CHROOT: u32 = 18;
/// CAP_SETPCAP's number: what dropping from the bounding set needs.
pub const CAP_SETPCAP: u32 = 8;

/// Drops capability `cap` from the bounding set (prctl PR_CAPBSET_DROP), then from the
/// permitted and effective sets (capget, capset). nix has no wrapper for capget/capset:
/// raw syscalls with the kernel's v3 structs.
pub fn drop_capability(cap: u32) -> nix::Result<()> {
    drop_from_bounding(cap)?;
    let mut sets = Sets::get()?;
    sets.effective &= !bit(cap);
    sets.permitted &= !bit(cap);
    sets.set()
}

/// Keeps at most the capabilities `keep` in every set: every other one leaves the bounding
/// set (so no exec gives it back; this needs CAP_SETPCAP, which goes last), the ambient set
/// is cleared, the inheritable set emptied, and the permitted and effective sets keep only
/// what they held of `keep`.
pub fn keep_only(keep: &[u32]) -> nix::Result<()> {
    limit_exec(keep)?;
    let mut sets = Sets::get()?;
    let kept = keep.iter().fold(0u64, |set, cap| set | bit(*cap));
    sets.effective &= kept;
    sets.permitted &= kept;
    sets.set()
}

/// What an exec could give back, limited to `keep`: the bounding set, the ambient set
/// (cleared) and the inheritable set (emptied); the permitted and effective sets stay,
/// for a setresuid to come (away from root, which empties them).
pub fn limit_exec(keep: &[u32]) -> nix::Result<()> {
    // PR_CAPBSET_DROP needs CAP_SETPCAP in the effective set: drop it from the bounding set
    // last (the effective set keeps it until the capset below).
    let last = last_cap();
    for cap in (0..=last).filter(|c| *c != CAP_SETPCAP).chain([CAP_SETPCAP]) {
        if !keep.contains(&cap) {
            drop_from_bounding(cap)?;
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointer. (nix has no wrapper for it.)
    Errno::result(unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0)
    })?;
    let mut sets = Sets::get()?;
    sets.inheritable = 0;
    sets.set()
}

/// The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap; 40 when it
/// cannot be read: CAP_CHECKPOINT_RESTORE, the last of Linux 5.9 to 6.x).
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

fn bit(cap: u32) -> u64 {
    1u64 << cap
}

fn drop_from_bounding(cap: u32) -> nix::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number. (nix has no wrapper for it.)
    Errno::result(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) }).map(drop)
}

/// The calling thread's effective, permitted and inheritable sets. nix has no wrapper for
/// capget/capset: raw syscalls with the kernel's v3 structs.
struct Sets {
    effective: u64,
    permitted: u64,
    inheritable: u64,
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const VERSION_3: u32 = 0x2008_0522;

impl Sets {
    fn get() -> nix::Result<Self> {
        let mut header = Header { version: VERSION_3, pid: 0 };
        let mut data = [Data::default(); 2];
        // SAFETY: a v3 header and two data structs, as capget(2) expects.
        Errno::result(unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) })?;
        // Capabilities 0-31 are in the first struct, 32-63 in the second.
        let join = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
        Ok(Sets {
            effective: join(data[0].effective, data[1].effective),
            permitted: join(data[0].permitted, data[1].permitted),
            inheritable: join(data[0].inheritable, data[1].inheritable),
        })
    }

    fn set(&self) -> nix::Result<()> {
        let mut header = Header { version: VERSION_3, pid: 0 };
        let split = |set: u64| (set as u32, (set >> 32) as u32);
        let (e, p, i) = (split(self.effective), split(self.permitted), split(self.inheritable));
        let data = [
            Data { effective: e.0, permitted: p.0, inheritable: i.0 },
            Data { effective: e.1, permitted: p.1, inheritable: i.1 },
        ];
        // SAFETY: as in get; capset reads them.
        Errno::result(unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) }).map(drop)
    }
}
