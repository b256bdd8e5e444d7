//! /proc parsing: status, namespace links, mountinfo, children. Parsers take text so
//! that they are unit-tested without root; `read_*` functions add the file access.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The fields of /proc/<pid>/status the checks use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcStatus {
    pub name: String,
    /// One letter: R, S, D, Z, T...
    pub state: char,
    pub ppid: i32,
    /// The PID in each namespace, outermost (the reader's) first.
    pub nspid: Vec<i32>,
    /// Real, effective, saved, filesystem.
    pub uid: [u32; 4],
    pub cap_eff: u64,
    /// Signals with a handler installed (bit n-1 for signal n).
    pub sig_cgt: u64,
    pub sig_ign: u64,
    /// Signals blocked by this thread.
    pub sig_blk: u64,
    /// Signals pending for this thread (SigPnd) and for the whole process (ShdPnd).
    pub sig_pnd: u64,
    pub shd_pnd: u64,
}

impl ProcStatus {
    pub fn catches(&self, signal: i32) -> bool {
        self.sig_cgt & (1u64 << (signal - 1)) != 0
    }

    pub fn ignores(&self, signal: i32) -> bool {
        self.sig_ign & (1u64 << (signal - 1)) != 0
    }

    pub fn blocks(&self, signal: i32) -> bool {
        self.sig_blk & (1u64 << (signal - 1)) != 0
    }

    /// Queued and not yet delivered, to the thread or to the process.
    pub fn pending(&self, signal: i32) -> bool {
        (self.sig_pnd | self.shd_pnd) & (1u64 << (signal - 1)) != 0
    }

    /// The PID as the innermost namespace sees it.
    pub fn inner_pid(&self) -> Option<i32> {
        self.nspid.last().copied()
    }
}

pub fn parse_status(text: &str) -> Result<ProcStatus> {
    let mut status = ProcStatus::default();
    let bad = |field: &str, value: &str| Error::parse("/proc/<pid>/status", format!("{field}: {value:?}"));
    let hex = |field: &str, value: &str| u64::from_str_radix(value.trim(), 16).map_err(|_| bad(field, value));
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Name" => status.name = value.to_string(),
            "State" => status.state = value.chars().next().ok_or_else(|| bad(key, value))?,
            "PPid" => status.ppid = value.parse().map_err(|_| bad(key, value))?,
            "NSpid" => {
                status.nspid = value
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| bad(key, value))?
            }
            "Uid" => {
                let ids: Vec<u32> = value.split_whitespace().filter_map(|v| v.parse().ok()).collect();
                status.uid = ids.try_into().map_err(|_| bad(key, value))?;
            }
            "CapEff" => status.cap_eff = hex(key, value)?,
            "SigCgt" => status.sig_cgt = hex(key, value)?,
            "SigIgn" => status.sig_ign = hex(key, value)?,
            "SigBlk" => status.sig_blk = hex(key, value)?,
            "SigPnd" => status.sig_pnd = hex(key, value)?,
            "ShdPnd" => status.shd_pnd = hex(key, value)?,
            _ => {}
        }
    }
    if status.nspid.is_empty() {
        return Err(bad("NSpid", "missing (kernel older than 4.1?)"));
    }
    Ok(status)
}

pub fn read_status(pid: i32) -> Result<ProcStatus> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(Error::io("read", &path))?;
    parse_status(&text)
}

/// A namespace's identity: the device and inode of its nsfs file. The inode number alone
/// is reused by the kernel once a namespace is gone, so whoever identifies things by a
/// namespace holds it open ([`HeldNs`]) for as long as it compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

/// The namespace kinds a process has links for (pid_for_children aside).
pub const NAMESPACE_KINDS: [&str; 8] = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// The namespace of `kind` that `pid` is in; `None` if the link does not exist
/// (pid_for_children before the namespace has an init, a process that is gone).
pub fn ns_id(pid: i32, kind: &str) -> Result<Option<NsId>> {
    let path = format!("/proc/{pid}/ns/{kind}");
    match nix::sys::stat::stat(path.as_str()) {
        Ok(st) => Ok(Some(NsId { dev: st.st_dev, ino: st.st_ino })),
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ESRCH) => Ok(None),
        Err(errno) => Err(Error::sys("stat", path)(errno)),
    }
}

/// A namespace held open: while this lives, its identity cannot be given to another.
#[derive(Debug)]
pub struct HeldNs {
    pub kind: &'static str,
    pub id: NsId,
    file: std::fs::File,
}

impl HeldNs {
    /// Opens `/proc/<pid>/ns/<kind>`; `None` if the process or the link is gone.
    pub fn open(pid: i32, kind: &'static str) -> Result<Option<Self>> {
        let path = format!("/proc/{pid}/ns/{kind}");
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => return Ok(None),
            Err(e) => return Err(Error::io("open", path)(e)),
        };
        let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&file)).map_err(Error::sys("fstat", &path))?;
        Ok(Some(HeldNs { kind, id: NsId { dev: st.st_dev, ino: st.st_ino }, file }))
    }

    pub fn file(&self) -> &std::fs::File {
        &self.file
    }
}

pub fn root_link(pid: i32) -> Result<PathBuf> {
    let path = format!("/proc/{pid}/root");
    std::fs::read_link(&path).map_err(Error::io("readlink", path))
}

pub fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim_end().to_string())
}

/// The PIDs of `pid`'s children (all threads), from /proc/<pid>/task/*/children.
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut kids: Vec<i32> = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| text.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<_>>())
        .collect();
    kids.sort_unstable();
    kids
}

/// Numeric entries of a proc-like directory: the PIDs it lists.
pub fn pid_entries(dir: &Path) -> Result<BTreeSet<i32>> {
    let entries = std::fs::read_dir(dir).map_err(Error::io("list", dir))?;
    Ok(entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
}

/// Every process the harness's /proc shows.
pub fn all_pids() -> BTreeSet<i32> {
    pid_entries(Path::new("/proc")).unwrap_or_default()
}

/// Processes (other than `except`) whose namespace of `kind` is `ns` (hold `ns` open:
/// see [`HeldNs`]).
pub fn processes_in_namespace(kind: &str, ns: NsId, except: &[i32]) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|pid| !except.contains(pid))
        .filter(|pid| matches!(ns_id(*pid, kind), Ok(Some(id)) if id == ns))
        .collect()
}

/// One line of /proc/<pid>/mountinfo (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mount {
    pub id: u32,
    pub parent: u32,
    pub root: String,
    pub mount_point: String,
    pub options: String,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
    /// The optional fields: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub propagation: Vec<String>,
}

impl Mount {
    pub fn is_read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }

    /// Receives and sends mount events from and to its peers.
    pub fn is_shared(&self) -> bool {
        self.propagation.iter().any(|p| p.starts_with("shared:"))
    }

    /// A person's words for the mount, with its id: two mounts of the same thing on the
    /// same place are two mounts.
    pub fn describe(&self) -> String {
        format!(
            "mount {}: {} on {} type {} ({}){}",
            self.id,
            self.source,
            self.mount_point,
            self.fs_type,
            self.options,
            if self.root == "/" { String::new() } else { format!(" root {}", self.root) }
        )
    }
}

pub fn parse_mountinfo(text: &str) -> Result<Vec<Mount>> {
    text.lines().filter(|l| !l.trim().is_empty()).map(parse_mount_line).collect()
}

fn parse_mount_line(line: &str) -> Result<Mount> {
    let bad = || Error::parse("mountinfo line", line);
    let (before, after) = line.split_once(" - ").ok_or_else(bad)?;
    let fields: Vec<&str> = before.split(' ').collect();
    let tail: Vec<&str> = after.split(' ').collect();
    if fields.len() < 6 || tail.len() < 3 {
        return Err(bad());
    }
    Ok(Mount {
        id: fields[0].parse().map_err(|_| bad())?,
        parent: fields[1].parse().map_err(|_| bad())?,
        root: unescape(fields[3]),
        mount_point: unescape(fields[4]),
        options: fields[5].to_string(),
        propagation: fields[6..].iter().map(|f| f.to_string()).collect(),
        fs_type: tail[0].to_string(),
        source: unescape(tail[1]),
        super_options: tail[2].to_string(),
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a process's mount table. Mount points are bytes, not always UTF-8 (a lab can
/// mount on any name): they are read as such and shown lossily, never refused.
pub fn read_mountinfo(pid: &str) -> Result<Vec<Mount>> {
    let path = format!("/proc/{pid}/mountinfo");
    let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
    parse_mountinfo(&String::from_utf8_lossy(&bytes))
}

/// The start time of a process (field 22 of /proc/<pid>/stat, in clock ticks since boot):
/// with the PID, it names one process even after the PID is reused.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT_STATUS: &str = "Name:\tpidns-init\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4347\n\
        Ngid:\t0\nPid:\t4347\nPPid:\t4345\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n\
        NStgid:\t4347\t1\nNSpid:\t4347\t1\nNSpgid:\t4345\t0\nNSsid:\t100\t0\n\
        SigQ:\t0/95000\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n\
        SigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\nSigCgt:\t0000000000004002\n\
        CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n";

    #[test]
    fn status_fields_of_a_namespace_init() {
        let status = parse_status(INIT_STATUS).expect("parses");
        assert_eq!(status.name, "pidns-init");
        assert_eq!(status.state, 'S');
        assert_eq!(status.ppid, 4345);
        assert_eq!(status.nspid, vec![4347, 1]);
        assert_eq!(status.inner_pid(), Some(1));
        assert_eq!(status.uid, [0, 0, 0, 0]);
        assert_eq!(status.cap_eff, 0x1ff_ffff_ffff);
        assert!(status.catches(libc::SIGTERM) && status.catches(libc::SIGINT));
        assert!(!status.catches(libc::SIGKILL));
        assert!(status.ignores(libc::SIGPIPE));
    }

    #[test]
    fn status_without_nspid_is_an_error() {
        assert!(parse_status("Name:\tx\nState:\tR (running)\nPPid:\t1\n").is_err());
    }

    #[test]
    fn pending_blocked_and_caught_signals() {
        let text = INIT_STATUS
            .replace("SigPnd:\t0000000000000000", "SigPnd:\t0000000000000100")
            .replace("ShdPnd:\t0000000000000000", "ShdPnd:\t0000000000004000")
            .replace("SigBlk:\t0000000000000000", "SigBlk:\t0000000000004000");
        let status = parse_status(&text).expect("parses");
        assert!(status.pending(libc::SIGKILL) && status.pending(libc::SIGTERM));
        assert!(!status.pending(libc::SIGINT));
        assert!(status.blocks(libc::SIGTERM) && !status.blocks(libc::SIGINT));
    }

    #[test]
    fn a_held_namespace_has_the_identity_stat_gives() {
        let own = std::process::id() as i32;
        let held = HeldNs::open(own, "net").expect("open").expect("own net ns");
        assert_eq!(ns_id(own, "net").expect("stat"), Some(held.id));
        assert_eq!(ns_id(own, "no-such-kind").expect("absent is not an error"), None);
    }

    #[test]
    fn mountinfo_lines_with_optional_fields_and_escapes() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n\
                    42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    90 27 0:50 / /mnt/my\\040dir ro,nosuid master:3 shared:7 - tmpfs none rw\n";
        let mounts = parse_mountinfo(text).expect("parses");
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[1].mount_point, "/var/lib/docker");
        assert_eq!(mounts[1].fs_type, "ext4");
        assert_eq!(mounts[2].mount_point, "/mnt/my dir");
        assert!(mounts[2].is_read_only() && !mounts[0].is_read_only());
        assert_eq!(mounts[2].source, "none");
        assert_eq!(mounts[2].propagation, vec!["master:3", "shared:7"]);
        assert!(mounts[2].is_shared() && mounts[1].is_shared() && !mounts[0].is_shared());
        assert_eq!(mounts[2].describe(), "mount 90: none on /mnt/my dir type tmpfs (ro,nosuid)");
    }

    #[test]
    fn a_broken_mountinfo_line_is_an_error() {
        assert!(parse_mountinfo("27 1 254:0 / / rw\n").is_err());
    }
}
