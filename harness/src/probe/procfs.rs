//! /proc: status, namespace links, mountinfo, children, on the `procfs` crate's parsers,
//! mapped to the few fields the checks use. Parsers take text so that they are unit-tested
//! without root; `read_*` functions add the file access. By hand only what the crate lacks
//! or gets wrong for us (each says why): one namespace link, mountinfo's octal escapes and
//! non-UTF-8 lines.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use procfs::process::{MountInfo, MountOptFields, Process, Status};
use procfs::{FromRead, ProcError};

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
    pub gid: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    pub cap_eff: u64,
    /// Permitted, inheritable and ambient capability sets.
    pub cap_prm: u64,
    pub cap_inh: u64,
    pub cap_amb: u64,
    /// The bounding set: what an exec may still give back.
    pub cap_bnd: u64,
    /// Threads in the process.
    pub threads: u64,
    /// Seccomp mode: 0 none, 1 strict, 2 filter (None: a kernel without seccomp).
    pub seccomp: Option<u32>,
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

/// Parses the text of /proc/<pid>/status (the crate's parser, mapped to the fields above).
pub fn parse_status(text: &str) -> Result<ProcStatus> {
    status_from_text(text, "/proc/<pid>/status")
}

pub fn read_status(pid: i32) -> Result<ProcStatus> {
    // Read here rather than by Process::status(): the text also gives the Name the crate
    // truncates (below), and the I/O error keeps its errno (ESRCH: the process is gone).
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(Error::io("read", &path))?;
    status_from_text(&text, &path)
}

fn status_from_text(text: &str, what: &str) -> Result<ProcStatus> {
    let status = Status::from_read(text.as_bytes()).map_err(|e| Error::parse(what, e.to_string()))?;
    let nspid = status.nspid.ok_or_else(|| Error::parse(what, "NSpid: missing (kernel older than 4.1?)"))?;
    // The crate splits each line at every ':' and keeps the second piece, so a name with
    // a colon ("init:1") loses its tail; the kernel puts the whole name after the first.
    let name = text.lines().find_map(|l| l.strip_prefix("Name:")).map_or(status.name, |n| n.trim().to_string());
    Ok(ProcStatus {
        name,
        state: status.state.chars().next().ok_or_else(|| Error::parse(what, "State: empty"))?,
        ppid: status.ppid,
        nspid,
        uid: [status.ruid, status.euid, status.suid, status.fuid],
        gid: [status.rgid, status.egid, status.sgid, status.fgid],
        groups: status.groups,
        cap_eff: status.capeff,
        cap_prm: status.capprm,
        cap_inh: status.capinh,
        cap_amb: status.capamb.unwrap_or(0),
        cap_bnd: status.capbnd.ok_or_else(|| Error::parse(what, "CapBnd: missing"))?,
        threads: status.threads,
        seccomp: status.seccomp,
        sig_cgt: status.sigcgt,
        sig_ign: status.sigign,
        sig_blk: status.sigblk,
        sig_pnd: status.sigpnd,
        shd_pnd: status.shdpnd,
    })
}

/// A procfs error as the harness's: a process or file that is not there keeps its
/// "not found" kind (callers read it as "the process is gone"), a refusal names the path.
pub(crate) fn proc_error(action: &'static str, path: String) -> impl FnOnce(ProcError) -> Error {
    move |error| match error {
        // The crate folds ENOENT and ESRCH into NotFound and keeps no errno: ENOENT stands for both.
        ProcError::NotFound(_) => Error::io(action, path)(std::io::Error::from_raw_os_error(libc::ENOENT)),
        ProcError::PermissionDenied(_) => Error::io(action, path)(std::io::Error::from_raw_os_error(libc::EACCES)),
        ProcError::Io(cause, _) => Error::io(action, path)(cause),
        other => Error::parse(path, other.to_string()),
    }
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
///
/// One stat of one link, by hand: the crate's `Process::namespaces()` stats every link
/// at once and fails whole, with an InternalError and no errno, when one cannot be stat'ed
/// — as pid_for_children cannot between unshare(CLONE_NEWPID) and the first fork, the very
/// moment the pid-ns lab is observed in. Its identity is the same (st_dev, st_ino).
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

/// The PIDs of `pid`'s children (all threads), from /proc/<pid>/task/*/children. Empty if
/// the process is gone: whoever asks wants the children there are.
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = Process::new(pid).and_then(|p| p.tasks()) else {
        return Vec::new();
    };
    let mut kids: Vec<i32> = tasks
        .flatten()
        .filter_map(|task| task.children().ok())
        .flatten()
        .filter_map(|kid| i32::try_from(kid).ok())
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
    /// The filesystem's device, `major:minor` (its files' st_dev).
    pub dev: String,
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

/// Parses mountinfo text, line by line with the crate's parser. Blank lines are skipped, a
/// broken line is an error.
pub fn parse_mountinfo(text: &str) -> Result<Vec<Mount>> {
    text.lines().filter(|l| !l.trim().is_empty()).map(parse_mount_line).collect()
}

fn parse_mount_line(line: &str) -> Result<Mount> {
    let bad = || Error::parse("mountinfo line", line);
    let info = MountInfo::from_line(line).map_err(|_| bad())?;
    // The crate keeps options in HashMaps; their order, which `describe` shows and the
    // snapshots hold, is the kernel's, read from the line the crate split the same way.
    let fields: Vec<&str> = line.split(' ').collect();
    let super_at = fields.iter().skip(6).position(|f| *f == "-").map(|dash| 6 + dash + 3);
    Ok(Mount {
        id: u32::try_from(info.mnt_id).map_err(|_| bad())?,
        parent: u32::try_from(info.pid).map_err(|_| bad())?,
        dev: info.majmin.clone(),
        root: unescape(&info.root),
        mount_point: unescape(&info.mount_point.to_string_lossy()),
        options: options_in_order(&info.mount_options, fields.get(5).copied()),
        propagation: info.opt_fields.iter().map(propagation_field).collect(),
        fs_type: info.fs_type,
        // The crate reads the kernel's "none" (no source) as None: shown as the kernel does.
        source: unescape(info.mount_source.as_deref().unwrap_or("none")),
        super_options: options_in_order(&info.super_options, super_at.and_then(|at| fields.get(at).copied())),
    })
}

fn propagation_field(field: &MountOptFields) -> String {
    match field {
        MountOptFields::Shared(group) => format!("shared:{group}"),
        MountOptFields::Master(group) => format!("master:{group}"),
        MountOptFields::PropagateFrom(group) => format!("propagate_from:{group}"),
        MountOptFields::Unbindable => "unbindable".to_string(),
    }
}

/// An option map as a comma-separated list, in the order of `raw` (the field as the kernel
/// wrote it) when that lists the same names, sorted otherwise: the same mount always gives
/// the same string, which `MountChanges` compares.
fn options_in_order(options: &HashMap<String, Option<String>>, raw: Option<&str>) -> String {
    let mut names: Vec<&str> = Vec::new();
    for name in raw.into_iter().flat_map(|r| r.split(',')).map(|o| o.split_once('=').map_or(o, |(n, _)| n)) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.len() != options.len() || !names.iter().all(|n| options.contains_key(*n)) {
        names = options.keys().map(String::as_str).collect();
        names.sort_unstable();
    }
    let render = |name: &str| match options.get(name) {
        Some(Some(value)) => format!("{name}={value}"),
        _ => name.to_string(),
    };
    names.into_iter().map(render).collect::<Vec<_>>().join(",")
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`). Kept by hand: the
/// crate leaves the escapes in root, mount point and source.
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
/// mount on any name): they are read as such and shown lossily, never refused. (The crate's
/// `Process::mountinfo()` reads lines as UTF-8 and fails on such a mount point: the bytes are
/// read here and only the lines go to its parser.)
pub fn read_mountinfo(pid: &str) -> Result<Vec<Mount>> {
    let path = format!("/proc/{pid}/mountinfo");
    let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
    parse_mountinfo(&String::from_utf8_lossy(&bytes))
}

/// The start time of a process (field 22 of /proc/<pid>/stat, in clock ticks since boot):
/// with the PID, it names one process even after the PID is reused.
pub fn start_time(pid: i32) -> Option<u64> {
    Process::new(pid).and_then(|p| p.stat()).ok().map(|stat| stat.starttime)
}

/// The kernel's PF_EXITING task flag (include/linux/sched.h): set as a process starts to
/// exit, before it is a zombie. The procfs crate gives the flags word but not this bit.
const PF_EXITING: u32 = 0x4;

/// Whether a process has begun to exit (field 9 of /proc/<pid>/stat has PF_EXITING): it
/// has already taken its SIGKILL off the pending set, and is no zombie yet. A PID
/// namespace's init spends a while like this killing the rest of its namespace.
pub fn is_exiting(pid: i32) -> bool {
    Process::new(pid).and_then(|p| p.stat()).is_ok_and(|stat| stat.flags & PF_EXITING != 0)
}

/// One line of /proc/<pid>/uid_map or gid_map: `count` ids from `inside` on, in the
/// process's user namespace, are the ids from `outside` on in the namespace of whoever
/// reads the file (its parent's, when the reader is in the process's own namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapLine {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

impl std::fmt::Display for IdMapLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.inside, self.outside, self.count)
    }
}

/// Parses the text of a uid_map or gid_map: one line per range, three decimal numbers
/// right-aligned in columns of 10 (the kernel's `%10u %10u %10u`). Empty text is a
/// namespace whose map was never written. By hand: the procfs crate reads neither file.
pub fn parse_id_map(text: &str) -> Result<Vec<IdMapLine>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let numbers: Vec<u32> = line
                .split_whitespace()
                .map(|n| n.parse::<u32>().map_err(|e| Error::parse("an id map line", format!("{line:?}: {e}"))))
                .collect::<Result<_>>()?;
            match numbers.as_slice() {
                [inside, outside, count] => Ok(IdMapLine { inside: *inside, outside: *outside, count: *count }),
                _ => Err(Error::parse("an id map line", format!("{line:?}: expected three numbers"))),
            }
        })
        .collect()
}

/// `/proc/<pid>/<file>` (`uid_map` or `gid_map`) as the harness (the host) reads it.
pub fn read_id_map(pid: i32, file: &str) -> Result<Vec<IdMapLine>> {
    let path = format!("/proc/{pid}/{file}");
    let text = std::fs::read_to_string(&path).map_err(Error::io("read", &path))?;
    parse_id_map(&text)
}

/// What /proc/<pid>/setgroups says: whether setgroups(2) may ever be allowed in the
/// process's user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setgroups {
    Allow,
    Deny,
}

/// Parses the text of /proc/<pid>/setgroups ("allow" or "deny", and a newline).
pub fn parse_setgroups(text: &str) -> Result<Setgroups> {
    match text.trim() {
        "allow" => Ok(Setgroups::Allow),
        "deny" => Ok(Setgroups::Deny),
        other => Err(Error::parse("setgroups", format!("{other:?}: neither allow nor deny"))),
    }
}

pub fn read_setgroups(pid: i32) -> Result<Setgroups> {
    let path = format!("/proc/{pid}/setgroups");
    let text = std::fs::read_to_string(&path).map_err(Error::io("read", &path))?;
    parse_setgroups(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A namespace init's status as a 6.x kernel writes it (the fields the crate requires,
    /// and some it does not know).
    const INIT_STATUS: &str = "Name:\tpidns-init\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4347\n\
        Ngid:\t0\nPid:\t4347\nPPid:\t4345\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n\
        FDSize:\t64\nGroups:\t \nNStgid:\t4347\t1\nNSpid:\t4347\t1\nNSpgid:\t4345\t0\nNSsid:\t100\t0\n\
        Kthread:\t0\nVmPeak:\t    3060 kB\nThreads:\t1\nSigQ:\t0/95000\nSigPnd:\t0000000000000000\n\
        ShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\n\
        SigCgt:\t0000000000004002\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
        CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nSeccomp:\t0\n\
        Cpus_allowed_list:\t0-1\nvoluntary_ctxt_switches:\t3\n";

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
        let old_kernel: String =
            INIT_STATUS.lines().filter(|l| !l.starts_with("NS")).map(|l| format!("{l}\n")).collect();
        assert!(matches!(parse_status(&old_kernel), Err(Error::Parse { detail, .. }) if detail.contains("NSpid")));
        assert!(parse_status("Name:\tx\nState:\tR (running)\nPPid:\t1\nNSpid:\t5\n").is_err(), "fields missing");
    }

    #[test]
    fn a_name_with_a_colon_is_whole() {
        let status = parse_status(&INIT_STATUS.replace("pidns-init", "init:1")).expect("parses");
        assert_eq!(status.name, "init:1");
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
    fn own_status_and_a_gone_process() {
        let own = std::process::id() as i32;
        let status = read_status(own).expect("own status");
        assert_eq!(status.nspid.first(), Some(&own));
        assert!(start_time(own).is_some());
        // PIDs stop well below i32::MAX (pid_max is at most 2^22).
        assert!(matches!(read_status(i32::MAX), Err(Error::Io { .. })));
        assert_eq!(start_time(i32::MAX), None);
        assert!(children(i32::MAX).is_empty());
    }

    #[test]
    fn id_maps_as_the_kernel_writes_them() {
        let text = "         0       1000          1\n         1     100000      65536\n";
        let map = parse_id_map(text).expect("parses");
        assert_eq!(
            map,
            vec![
                IdMapLine { inside: 0, outside: 1000, count: 1 },
                IdMapLine { inside: 1, outside: 100000, count: 65536 }
            ]
        );
        assert_eq!(map[1].to_string(), "1 100000 65536");
        assert_eq!(parse_id_map("").expect("a map never written is empty"), vec![]);
        // The init namespace's map, read from inside a user namespace that maps no root.
        let init = parse_id_map("         0 4294967295 4294967295\n").expect("parses");
        assert_eq!(init[0].outside, u32::MAX);
        assert!(parse_id_map("0 1000\n").is_err(), "two numbers");
        assert!(parse_id_map("0 -1 1\n").is_err(), "a negative id");
        assert!(parse_id_map("0 1000 1 7\n").is_err(), "four numbers");
    }

    #[test]
    fn setgroups_is_allow_or_deny() {
        assert_eq!(parse_setgroups("allow\n").expect("parses"), Setgroups::Allow);
        assert_eq!(parse_setgroups("deny\n").expect("parses"), Setgroups::Deny);
        assert!(parse_setgroups("maybe\n").is_err());
    }

    #[test]
    fn own_id_map_and_setgroups_read() {
        let own = std::process::id() as i32;
        let map = read_id_map(own, "uid_map").expect("own uid_map");
        assert!(!map.is_empty(), "every process's namespace has a uid map");
        assert!(read_setgroups(own).is_ok());
        let status = read_status(own).expect("own status");
        assert_eq!(status.gid[0], nix::unistd::getgid().as_raw());
    }

    #[test]
    fn children_of_this_process_include_a_spawned_one() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().expect("spawn sleep");
        let found = children(std::process::id() as i32).contains(&(child.id() as i32));
        let _ = child.kill();
        let _ = child.wait();
        assert!(found);
    }

    #[test]
    fn a_held_namespace_has_the_identity_stat_gives() {
        let own = std::process::id() as i32;
        let held = HeldNs::open(own, "net").expect("open").expect("own net ns");
        assert_eq!(ns_id(own, "net").expect("stat"), Some(held.id));
        assert_eq!(ns_id(own, "no-such-kind").expect("absent is not an error"), None);
        assert_eq!(ns_id(i32::MAX, "net").expect("a gone process is not an error"), None);
    }

    #[test]
    fn mountinfo_lines_with_optional_fields_and_escapes() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n\
                    42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    90 27 0:50 /a\\134b /mnt/my\\040dir ro,nosuid master:3 shared:7 - tmpfs none rw\n";
        let mounts = parse_mountinfo(text).expect("parses");
        assert_eq!(mounts.len(), 3);
        assert_eq!((mounts[0].id, mounts[0].parent), (27, 1));
        assert_eq!(mounts[1].mount_point, "/var/lib/docker");
        assert_eq!(mounts[1].fs_type, "ext4");
        assert_eq!(mounts[2].mount_point, "/mnt/my dir");
        assert_eq!(mounts[2].root, "/a\\b");
        assert!(mounts[2].is_read_only() && !mounts[0].is_read_only());
        assert_eq!(mounts[2].source, "none");
        assert_eq!(mounts[2].propagation, vec!["master:3", "shared:7"]);
        assert!(mounts[2].is_shared() && mounts[1].is_shared() && !mounts[0].is_shared());
        assert_eq!(mounts[2].describe(), "mount 90: none on /mnt/my dir type tmpfs (ro,nosuid) root /a\\b");
    }

    #[test]
    fn options_keep_the_kernels_order() {
        let line = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime unbindable - cgroup2 cgroup2 \
                    rw,nsdelegate,memory_recursiveprot,size=10%\n";
        let mounts = parse_mountinfo(line).expect("parses");
        assert_eq!(mounts[0].options, "rw,nosuid,nodev,noexec,relatime");
        assert_eq!(mounts[0].super_options, "rw,nsdelegate,memory_recursiveprot,size=10%");
        assert_eq!(mounts[0].propagation, vec!["unbindable"]);
        assert_eq!(
            mounts[0].describe(),
            "mount 35: cgroup2 on /sys/fs/cgroup type cgroup2 (rw,nosuid,nodev,noexec,relatime)"
        );
    }

    #[test]
    fn a_broken_mountinfo_line_is_an_error() {
        assert!(parse_mountinfo("27 1 254:0 / / rw\n").is_err());
        assert!(parse_mountinfo("x 1 254:0 / / rw - ext4 /dev/vda rw\n").is_err());
        assert!(parse_mountinfo("27 1 254:0 / / rw shared:x - ext4 /dev/vda rw\n").is_err());
    }

    #[test]
    fn a_non_utf8_mount_point_is_read_lossily() {
        let mut bytes = b"27 1 254:0 / / rw - ext4 /dev/vda rw\n90 27 0:50 / /mnt/caf".to_vec();
        bytes.extend_from_slice(b"\xe9 rw shared:4 - tmpfs tmpfs rw\n");
        let mounts = parse_mountinfo(&String::from_utf8_lossy(&bytes)).expect("parses");
        assert_eq!(mounts[1].mount_point, "/mnt/caf\u{fffd}");
        assert!(mounts[1].is_shared());
        // An escape that decodes to a byte that is not UTF-8 on its own.
        let escaped = parse_mountinfo("90 27 0:50 / /mnt/caf\\351 rw - tmpfs tmpfs rw\n").expect("parses");
        assert_eq!(escaped[0].mount_point, "/mnt/caf\u{fffd}");
    }

    #[test]
    fn own_mount_table_reads() {
        let mounts = read_mountinfo("self").expect("own mountinfo");
        assert!(mounts.iter().any(|m| m.mount_point == "/"));
        // The options rebuilt from the crate's maps are the kernel's strings, line by line.
        let bytes = std::fs::read("/proc/self/mountinfo").expect("read");
        for (mount, line) in mounts.iter().zip(String::from_utf8_lossy(&bytes).lines()) {
            let (before, after) = line.split_once(" - ").expect("separator");
            assert_eq!(Some(mount.options.as_str()), before.split(' ').nth(5), "{line}");
            assert_eq!(Some(mount.super_options.as_str()), after.split(' ').nth(2), "{line}");
        }
    }
}
