//! Dropping one capability for good: from the bounding set, so no exec can give it back,
//! and from the permitted and effective sets of the calling thread.

use nix::errno::Errno;

/// CAP_SYS_CHROOT's number (linux/capability.h; libc does not name it).
pub const CAP_SYS_CHROOT: u32 = 18;

/// Drops capability `cap` from the bounding set (prctl PR_CAPBSET_DROP), then from the
/// permitted and effective sets (capget, capset). nix has no wrapper for capget/capset:
/// raw syscalls with the kernel's v3 structs.
pub fn drop_capability(cap: u32) -> nix::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number.
    Errno::result(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) })?;
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
    let mut header = Header { version: VERSION_3, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: a v3 header and two data structs, as capget(2) expects.
    Errno::result(unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) })?;
    // Capabilities 0-31 are in the first struct, 32-63 in the second.
    let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
    data[word].effective &= !bit;
    data[word].permitted &= !bit;
    // SAFETY: as above; capset reads them.
    Errno::result(unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) })?;
    Ok(())
}
