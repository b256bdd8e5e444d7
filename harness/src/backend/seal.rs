//! A sealed check: the report a guest sends back is signed with a key only the host and
//! the guest's grader know, so that a lab (root in the guest: it may be a student's
//! submission) cannot hand the host a report of its own making.
//!
//! How it holds:
//! - The host draws a fresh key for each check and sends it over the control port, which
//!   the guest agent holds open (a virtio-serial port opens once: nobody else can read it).
//!   The agent writes the key into the grader's stdin and closes it; the grader reads it
//!   and closes its stdin before it starts any lab.
//! - The agent and the grader are not dumpable, and the labs lose CAP_SYS_PTRACE from their
//!   bounding set: with both, the kernel refuses them every way into the grader's memory
//!   and descriptors (ptrace, /proc/<pid>/mem, /proc/<pid>/fd, pidfd_getfd,
//!   process_vm_readv). CAP_SYS_RAWIO goes too (/dev/mem, /proc/kcore), CAP_SYS_MODULE and
//!   CAP_BPF, CAP_PERFMON; module loading and kexec are switched off.
//! - What is left open: a lab keeps CAP_SYS_ADMIN (it mounts and makes namespaces), and
//!   with it the kernel lets it load tracing programs (bpf(2), perf_event_open(2)) that
//!   could read the grader's memory. A seccomp filter would close that, but it would be
//!   inherited by every lab, and a lab that puts a process of its own in seccomp's strict
//!   mode (chroot-escape's witness) cannot once a filter is there.
//! - The grader prints its JSON report, then one line: [`TRAILER`], the HMAC-SHA256 of the
//!   report and of the hardening it achieved, and that hardening. The host checks the
//!   seal before it reads a word of the report.
//!
//! A lab can still kill the grader or the guest: the host then has no sealed report, and
//! that is the backend's failure (every verdict a SKIP, exit 2), never points.

use std::io::Read;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

/// The first word of the line that follows a sealed report.
pub const TRAILER: &str = "cilab-seal-v1";

/// The key's length in bytes (sent as twice as many hex digits).
const KEY_BYTES: usize = 32;

/// A key for one sealed check.
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey([u8; KEY_BYTES]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// A fresh key from the kernel's random source.
    pub fn random() -> Result<SealKey> {
        let path = "/dev/urandom";
        let mut key = [0u8; KEY_BYTES];
        std::fs::File::open(path).and_then(|mut file| file.read_exact(&mut key)).map_err(Error::io("read", path))?;
        Ok(SealKey(key))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(text: &str) -> Result<SealKey> {
        let text = text.trim();
        let bad = || Error::parse("the seal key", format!("{} hex digits expected", KEY_BYTES * 2));
        if text.len() != KEY_BYTES * 2 || !text.is_ascii() {
            return Err(bad());
        }
        let mut key = [0u8; KEY_BYTES];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(SealKey(key))
    }

    fn mac(&self, report: &str, hardening: &str) -> Hmac<Sha256> {
        // A key of any length is accepted by HMAC: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(report.as_bytes());
        mac.update(b"\n");
        mac.update(hardening.as_bytes());
        mac
    }

    /// The line that follows `report` on the grader's stdout.
    pub fn trailer(&self, report: &str, hardening: &[String]) -> String {
        let hardening = serde_json::to_string(hardening).unwrap_or_else(|_| "[]".into());
        let tag: String =
            self.mac(report, &hardening).finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("{TRAILER} {tag} {hardening}")
    }

    /// The report and the guest's hardening from a sealed stdout (`<report>\n<trailer>\n`),
    /// if and only if the seal is this key's over exactly those bytes.
    pub fn open(&self, stdout: &str) -> std::result::Result<(String, Vec<String>), String> {
        let body = stdout.strip_suffix('\n').unwrap_or(stdout);
        let (report, trailer) = body.rsplit_once('\n').ok_or("no seal line after the report")?;
        let rest =
            trailer.strip_prefix(TRAILER).and_then(|r| r.strip_prefix(' ')).ok_or("no seal line after the report")?;
        let (tag, hardening) = rest.split_once(' ').ok_or("a seal line without the guest's hardening")?;
        let tag: Vec<u8> = (0..tag.len() / 2)
            .map(|i| tag.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<_>>()
            .ok_or("a seal that is not hex")?;
        self.mac(report, hardening)
            .verify_slice(&tag)
            .map_err(|_| "the seal does not match the report: it was not written by the guest's grader")?;
        let hardening: Vec<String> =
            serde_json::from_str(hardening).map_err(|e| format!("the sealed hardening does not parse: {e}"))?;
        Ok((report.to_string(), hardening))
    }
}

/// In the guest, before the grader starts any lab: reads the key from stdin (then stdin is
/// /dev/null), and hardens the guest against the labs. Returns the key and, one line each,
/// what was done and what could not be (the host reports both).
pub fn enter_sealed_mode() -> Result<(SealKey, Vec<String>)> {
    let mut text = String::new();
    std::io::stdin().take(KEY_BYTES as u64 * 2 + 1).read_to_string(&mut text).map_err(Error::io("read", "stdin"))?;
    let key = SealKey::from_hex(&text)?;
    let null = std::fs::File::open("/dev/null").map_err(Error::io("open", "/dev/null"))?;
    nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0).map_err(Error::sys("dup2", "/dev/null onto stdin"))?;
    Ok((key, harden()))
}

/// Makes this process (the agent, the grader) unreadable to processes without
/// CAP_SYS_PTRACE.
pub fn not_dumpable() -> Result<()> {
    nix::sys::prctl::set_dumpable(false).map_err(Error::sys("prctl(PR_SET_DUMPABLE, 0)", "this process"))
}

/// The capabilities no lab keeps (dropped from the bounding set: the grader keeps them),
/// by their numbers in linux/capability.h (the libc crate has no names for them).
const DROPPED: &[(u32, &str)] =
    &[(19, "CAP_SYS_PTRACE"), (17, "CAP_SYS_RAWIO"), (16, "CAP_SYS_MODULE"), (39, "CAP_BPF"), (38, "CAP_PERFMON")];

fn harden() -> Vec<String> {
    let mut done = Vec::new();
    let mut step = |what: &str, result: std::result::Result<(), String>| match result {
        Ok(()) => done.push(what.to_string()),
        Err(why) => done.push(format!("NOT {what}: {why}")),
    };
    step("grader not dumpable", not_dumpable().map_err(|e| e.to_string()));
    for (cap, name) in DROPPED {
        // SAFETY: PR_CAPBSET_DROP takes a capability number. (nix has no wrapper for it.)
        let dropped =
            nix::errno::Errno::result(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, *cap as libc::c_ulong, 0, 0, 0) });
        step(&format!("labs without {name}"), dropped.map(drop).map_err(|e| format!("prctl(PR_CAPBSET_DROP): {e}")));
    }
    for (sysctl, value) in [("/proc/sys/kernel/modules_disabled", "1"), ("/proc/sys/kernel/kexec_load_disabled", "1")] {
        let name = sysctl.trim_start_matches("/proc/sys/").replace('/', ".");
        step(&format!("{name}={value}"), std::fs::write(sysctl, value).map_err(|e| format!("write {sysctl}: {e}")));
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hardening() -> Vec<String> {
        vec!["grader not dumpable".into()]
    }

    #[test]
    fn a_sealed_report_opens_with_its_key_only() {
        let key = SealKey::random().expect("urandom");
        let report = "{\n  \"labs\": []\n}";
        let stdout = format!("{report}\n{}\n", key.trailer(report, &hardening()));
        assert_eq!(key.open(&stdout), Ok((report.to_string(), hardening())));
        let other = SealKey::random().expect("urandom");
        assert!(other.open(&stdout).is_err());
    }

    #[test]
    fn a_changed_report_or_hardening_or_a_missing_seal_is_refused() {
        let key = SealKey::random().expect("urandom");
        let report = "{\"points\": 1}";
        let trailer = key.trailer(report, &hardening());
        assert!(key.open(&format!("{{\"points\": 9}}\n{trailer}\n")).is_err());
        let forged_hardening = trailer.replace("grader not dumpable", "all sealed");
        assert!(key.open(&format!("{report}\n{forged_hardening}\n")).is_err());
        assert!(key.open(&format!("{report}\n")).is_err());
        // A report printed before the grader's own (a lab writing into the same stdout).
        assert!(key.open(&format!("{{\"points\": 9}}\n{report}\n{trailer}\n")).is_err());
    }

    #[test]
    fn keys_travel_as_hex() {
        let key = SealKey::random().expect("urandom");
        assert_eq!(SealKey::from_hex(&format!("{}\n", key.to_hex())).expect("parses"), key);
        assert!(SealKey::from_hex("abc").is_err());
        assert!(SealKey::from_hex(&"zz".repeat(KEY_BYTES)).is_err());
    }
}
