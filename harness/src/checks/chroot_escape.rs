//! Checks for lab chroot-escape. The lab jails one process per attempt (an escape, with
//! or without a defence); the harness decides from outside:
//!
//! - at `jailed`, before anything is planted: each attempt's process is found by its name
//!   among the lab's descendants (never taken from the claims); its root (the /proc link,
//!   by device and inode) is the jail, its working directory is its root, and the harness
//!   walks `..` up from each directory descriptor it holds to count those that lead out of
//!   the jail. Its capabilities, ids, user namespace and PID inside come from /proc.
//!   Then the harness plants, outside the jail, per attempt a 0600 and a 0644 sentinel with
//!   random content, and arms fanotify on them: every open names the opening process.
//!   It also makes the syscalls the defence table rests on itself, in forked probes in the
//!   run: chroot(sub) without CAP_SYS_CHROOT, as uid 65534, and unshare(CLONE_NEWUSER) from
//!   a chroot.
//! - at `escaped`: each process's root again, the opens fanotify saw, and the loot file the
//!   process wrote into the jail. A sentinel counts as handed back only if its exact random
//!   content is in the loot and the attempt's process, and no other process, opened it:
//!   the content exists only in the sentinel, planted after the process was seen jailed
//!   with no way out, so it cannot have been read before the escape or by the lab. The
//!   sentinels and every file of the scratch dir outside the jail are compared, content
//!   and metadata, with what the harness planted: the escaped processes only read.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use labkit::protocol::chroot_escape::*;
use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use nix::sys::stat::{fstat, Mode};
use nix::unistd::{chdir, chroot, Gid, Uid};
use serde::{Deserialize, Serialize};

use super::{errno_name, file_id};
use crate::catalog::Observer;
use crate::corpus::{Edit, Mistake, MistakeKind};
use crate::error::{Error, Result};
use crate::facts::{Fact, Facts};
use crate::probe::forked::{self, ProbeFailure};
use crate::probe::procfs;
use crate::run::LabRun;
use crate::verdict::VerdictSpec;

// ── the guard ────────────────────────────────────────────────────────────────────
static ALLOWED_BY_FLAG: AtomicBool = AtomicBool::new(false);
static IN_VM_BACKEND: AtomicBool = AtomicBool::new(false);

/// The person passed `--allow-jailbreak-on-this-host` to cilab: the lab runs on a machine
/// that does not look disposable, and the lab binary gets the same flag.
pub fn allow_jailbreak() {
    ALLOWED_BY_FLAG.store(true, Ordering::SeqCst);
}

/// The hook for a VM backend (issue 9): its guest is made for the run and thrown away, so
/// the lab always runs there. A VM backend calls this before it checks the lab.
pub fn runs_in_vm_backend() {
    IN_VM_BACKEND.store(true, Ordering::SeqCst);
}

/// The guard, as the catalog's `available`: the lab runs where `cilab doctor`'s evidence
/// says the machine is disposable, in a VM backend, or with the explicit flag.
pub fn guard_available() -> std::result::Result<(), String> {
    labkit::disposable::guard(
        "chroot-escape",
        ALLOWED_BY_FLAG.load(Ordering::SeqCst),
        IN_VM_BACKEND.load(Ordering::SeqCst),
    )
    .map(|_| ())
}

/// Arguments the lab binary gets besides its variant's: the flag, when cilab was given it.
pub fn extra_args(lab: &str) -> &'static [&'static str] {
    const ALLOW: [&str; 1] = [labkit::disposable::ALLOW_FLAG];
    if lab == "chroot-escape" && ALLOWED_BY_FLAG.load(Ordering::SeqCst) {
        &ALLOW
    } else {
        &[]
    }
}

// ── facts ────────────────────────────────────────────────────────────────────────
/// An attempt's process at `jailed`, before any sentinel exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jailed {
    /// "the jail", "the host's root" or "elsewhere".
    pub root: String,
    /// "its root" or "elsewhere".
    pub cwd: String,
    /// Directory descriptors it holds whose `..` does not pass through the jail.
    pub dirs_leading_out: usize,
    pub cap_sys_chroot: bool,
    /// Its effective uid as the host sees it.
    pub host_uid: u32,
    /// "the host's" or "its own".
    pub user_ns: String,
    /// It is PID 1 of its PID namespace.
    pub pid_1: bool,
}

/// An attempt's process at `escaped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escaped {
    pub root: String,
    /// What became of the 0600 sentinel, and of the 0644 one: [`HANDED_BACK`], [`NOT_OPENED`]
    /// or what else was seen.
    pub secret: String,
    pub public: String,
}

pub const JAIL: &str = "the jail";
pub const HOST_ROOT: &str = "the host's root";
pub const HANDED_BACK: &str = "opened by the attempt alone, content handed back";
pub const NOT_OPENED: &str = "not opened, not handed back";

const JAILED_ATTEMPTS: Fact<BTreeMap<String, Jailed>> = Fact::new("jailed.attempts");
const NO_CAP_CHROOT: Fact<String> = Fact::new("jailed.chroot_sub_without_cap_sys_chroot_by_the_harness");
const NOBODY_CHROOT: Fact<String> = Fact::new("jailed.chroot_sub_as_65534_by_the_harness");
const USERNS_IN_CHROOT: Fact<String> = Fact::new("jailed.unshare_user_from_a_chroot_by_the_harness");
const ESCAPED_ATTEMPTS: Fact<BTreeMap<String, Escaped>> = Fact::new("escaped.attempts");
const OUTSIDE_CHANGES: Fact<Vec<String>> = Fact::new("escaped.changes_outside_the_jail");
const HOST_CHANGES: Fact<Vec<String>> = Fact::new("escaped.host_mount_changes");

fn jailed(e: &crate::facts::Evidence, attempt: &str) -> Option<Jailed> {
    e.get(JAILED_ATTEMPTS)?.remove(attempt)
}

fn escaped(e: &crate::facts::Evidence, attempt: &str) -> Option<Escaped> {
    e.get(ESCAPED_ATTEMPTS)?.remove(attempt)
}

/// In the jail, at its root, with `doors` directory descriptors leading out.
fn locked_in(j: &Jailed, doors: usize) -> bool {
    j.root == JAIL && j.cwd == "its root" && j.dirs_leading_out == doors
}

/// Reached the host's root and handed the 0600 sentinel back.
fn out_with_secret(x: &Escaped) -> bool {
    x.root == HOST_ROOT && x.secret == HANDED_BACK
}

/// Still in the jail, nothing opened.
fn stayed(x: &Escaped) -> bool {
    x.root == JAIL && x.secret == NOT_OPENED && x.public == NOT_OPENED
}

pub const VERDICTS: [VerdictSpec; 14] = [
    VerdictSpec {
        id: "classic-escape",
        claim: "from a plain chroot, root in the jail with no way out (root the jail, working directory at it, no directory descriptor leading out), the classic escape moves the process's root to the host's root, and it alone opens the 0600 sentinel planted outside afterwards and hands back its random content",
        points: 3,
        region: Some("classic-escape"),
        requires: &[],
        hint: "chroot into a subdirectory WITHOUT chdir into it: the working directory is then outside the root, and `..` from there is not stopped; walk it until it stops moving, then chroot(\".\")",
        decide: |e| Some(locked_in(&jailed(e, CLASSIC)?, 0) && out_with_secret(&escaped(e, CLASSIC)?)),
    },
    VerdictSpec {
        id: "door-opened-before",
        claim: "the fd attempt's process is in the jail holding exactly one directory descriptor that leads out of it, opened before the chroot",
        points: 1,
        region: Some("open-door"),
        requires: &[],
        hint: "open the directory before the chroot: after it, every path is resolved inside the jail",
        decide: |e| Some(locked_in(&jailed(e, FD)?, 1)),
    },
    VerdictSpec {
        id: "fd-escape",
        claim: "through that descriptor (fchdir, `..` until it stops, chroot \".\") the process's root becomes the host's root, and it alone opens the 0600 sentinel and hands back its content",
        points: 3,
        region: Some("fd-escape"),
        requires: &[],
        hint: "fchdir to the descriptor puts the working directory outside the root; `..` is not stopped from there: walk it up before chroot(\".\")",
        decide: |e| Some(locked_in(&jailed(e, FD)?, 1) && out_with_secret(&escaped(e, FD)?)),
    },
    VerdictSpec {
        id: "proc-escape",
        claim: "with the host's proc mounted in the jail, chdir into /proc/<pid>/root of a process outside the jail and chroot(\".\") make the host's root the process's root; it alone opens the 0600 sentinel and hands back its content",
        points: 3,
        region: Some("proc-escape"),
        requires: &[],
        hint: "/proc/<pid>/root is a link to that process's root directory: chdir through it, then chroot(\".\"); not PID 1's where PID 1 is an agent you may not trace (EACCES)",
        decide: |e| Some(locked_in(&jailed(e, PROC)?, 0) && out_with_secret(&escaped(e, PROC)?)),
    },
    VerdictSpec {
        id: "reads-only",
        claim: "the escaped processes only read: every sentinel and every other file of the scratch dir outside the jail is, byte for byte and by metadata, as the harness planted it, and the lab's host mount table is unchanged",
        points: 1,
        region: Some("classic-escape"),
        requires: &["classic-escape"],
        hint: "an escape reads the sentinel and writes only into its loot descriptor, opened in the jail before",
        decide: |e| Some(e.get(OUTSIDE_CHANGES)?.is_empty() && e.get(HOST_CHANGES)?.is_empty()),
    },
    VerdictSpec {
        id: "no-cap-stays",
        claim: "without CAP_SYS_CHROOT the classic escape stays in the jail: chroot(sub) fails with EPERM, and no sentinel is opened",
        points: 0,
        region: None,
        requires: &["classic-escape"],
        hint: "the lab drops CAP_SYS_CHROOT from the no-cap attempt's bounding, permitted and effective sets",
        decide: |e| {
            let j = jailed(e, NO_CAP)?;
            Some(
                locked_in(&j, 0)
                    && !j.cap_sys_chroot
                    && e.get(NO_CAP_CHROOT)? == "EPERM"
                    && stayed(&escaped(e, NO_CAP)?),
            )
        },
    },
    VerdictSpec {
        id: "nobody-stays",
        claim: "as uid 65534 the classic escape stays in the jail: chroot(sub) fails with EPERM, and no sentinel is opened",
        points: 0,
        region: None,
        requires: &["classic-escape"],
        hint: "the lab makes the nobody attempt uid 65534 after the chroot",
        decide: |e| {
            let j = jailed(e, AS_NOBODY)?;
            Some(
                locked_in(&j, 0)
                    && j.host_uid == NOBODY
                    && e.get(NOBODY_CHROOT)? == "EPERM"
                    && stayed(&escaped(e, AS_NOBODY)?),
            )
        },
    },
    VerdictSpec {
        id: "pivot-lands-inside",
        claim: "after pivot_root into the jail and the lazy unmount of the old root, in a mount namespace of its own, the classic escape lands in the new root: its root is still the jail and nothing outside is opened",
        points: 0,
        region: None,
        requires: &["classic-escape"],
        hint: "the lab pivots the pivot attempt into the jail and unmounts the old root",
        decide: |e| Some(locked_in(&jailed(e, PIVOT)?, 0) && stayed(&escaped(e, PIVOT)?)),
    },
    VerdictSpec {
        id: "pivot-fd-leads-out",
        claim: "but a directory descriptor opened before the pivot still leads out: through it the process reaches the host's root and hands back the 0600 sentinel (why runc closes every descriptor before it execs)",
        points: 0,
        region: None,
        requires: &["fd-escape"],
        hint: "the lab opens the pivot-fd attempt's door before its pivot_root",
        decide: |e| Some(locked_in(&jailed(e, PIVOT_FD)?, 1) && out_with_secret(&escaped(e, PIVOT_FD)?)),
    },
    VerdictSpec {
        id: "userns-root-escapes",
        claim: "a user namespace does not stop the escape: with root mapped to root, the classic escape reaches the host's root and hands back the 0600 sentinel of root's",
        points: 0,
        region: None,
        requires: &["classic-escape"],
        hint: "the lab makes the user namespace before the chroot and maps 0 to 0",
        decide: |e| {
            let j = jailed(e, USERNS_ROOT)?;
            Some(
                locked_in(&j, 0) && j.user_ns == "its own" && j.host_uid == 0 && out_with_secret(&escaped(e, USERNS_ROOT)?),
            )
        },
    },
    VerdictSpec {
        id: "userns-mapped-escapes",
        claim: "with root mapped to 100000 the classic escape still lands at the host's root; there it reads the 0644 sentinel but not the 0600 one: permissions stop it, not the walls",
        points: 0,
        region: None,
        requires: &["classic-escape"],
        hint: "the lab maps 0 inside to 100000 and becomes root inside after the map",
        decide: |e| {
            let j = jailed(e, USERNS_MAPPED)?;
            let x = escaped(e, USERNS_MAPPED)?;
            Some(
                locked_in(&j, 0)
                    && j.user_ns == "its own"
                    && j.host_uid == MAPPED_ID
                    && x.root == HOST_ROOT
                    && x.public == HANDED_BACK
                    && x.secret == NOT_OPENED,
            )
        },
    },
    VerdictSpec {
        id: "pidns-own-proc-stays",
        claim: "as PID 1 of a PID namespace with only that namespace's proc in the jail, /proc/<pid>/root of the host process is not there: the proc escape stays in the jail",
        points: 0,
        region: None,
        requires: &["proc-escape"],
        hint: "the lab mounts the PID namespace's own proc in the jail, in the pidns-proc attempt's mount namespace",
        decide: |e| {
            let j = jailed(e, PIDNS_PROC)?;
            Some(locked_in(&j, 0) && j.pid_1 && stayed(&escaped(e, PIDNS_PROC)?))
        },
    },
    VerdictSpec {
        id: "pidns-alone-escapes",
        claim: "a PID namespace alone does not stop the classic escape: its PID 1 reaches the host's root and hands back the 0600 sentinel",
        points: 0,
        region: None,
        requires: &["classic-escape"],
        hint: "the pidns attempt is PID 1 of its namespace and chrooted, nothing more",
        decide: |e| {
            let j = jailed(e, PIDNS)?;
            Some(locked_in(&j, 0) && j.pid_1 && out_with_secret(&escaped(e, PIDNS)?))
        },
    },
    VerdictSpec {
        id: "no-userns-from-chroot",
        claim: "a chrooted process cannot make a user namespace: unshare(CLONE_NEWUSER) fails with EPERM",
        points: 0,
        region: None,
        requires: &[],
        hint: "the harness tries it itself, chrooted into the lab's jail",
        decide: |e| Some(e.get(USERNS_IN_CHROOT)? == "EPERM"),
    },
];

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
use labkit::caps::CAP_SYS_CHROOT;

/// The directory outside the jail where the sentinels go (planted at `jailed`).
pub fn prepare(scratch: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch.join(OUTSIDE_DIR);
    std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(Error::io("chmod", &dir))
}

pub fn observer() -> Box<dyn Observer> {
    Box::new(ChrootEscape::default())
}

#[derive(Default)]
struct ChrootEscape {
    jail: Option<(u64, u64)>,
    /// Each attempt's process (host PID), found at `jailed`.
    processes: BTreeMap<String, i32>,
    /// Each sentinel's file name and content.
    planted: BTreeMap<String, String>,
    /// The scratch dir outside the jail as planted.
    before: BTreeMap<String, String>,
    watch: Option<Fanotify>,
}

impl Observer for ChrootEscape {
    fn observe(&mut self, stage: &str, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        match stage {
            JAILED => self.jailed(run, facts),
            ESCAPED => self.escaped(run, facts),
            other => Err(Error::Harness(format!("chroot-escape has no stage `{other}`"))),
        }
    }
}

impl ChrootEscape {
    fn jailed(&mut self, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let jail = run.scratch().join(JAIL_DIR);
        self.jail = lstat_dir(&jail);
        let host_user_ns = run.host_ns("user")?;
        let descendants = descendants(run.pid());
        let mut states = BTreeMap::new();
        for attempt in ATTEMPTS {
            let comm = format!("{COMM_PREFIX}{attempt}");
            let found: Vec<i32> = descendants
                .iter()
                .copied()
                .filter(|pid| procfs::comm(*pid).as_deref() == Some(comm.as_str()))
                .collect();
            let [pid] = found.as_slice() else {
                return Err(Error::Lab {
                    lab: run.lab().to_string(),
                    message: format!(
                        "{} processes of the lab are named `{comm}` at `jailed`; expected one",
                        found.len()
                    ),
                });
            };
            run.track_pid(*pid);
            self.processes.insert(attempt.to_string(), *pid);
            let status = procfs::read_status(*pid)?;
            let user_ns = run.namespace_of(*pid, "user")?;
            states.insert(
                attempt.to_string(),
                Jailed {
                    root: self.place(*pid, "root"),
                    cwd: if file_id(Path::new(&format!("/proc/{pid}/cwd")))
                        == file_id(Path::new(&format!("/proc/{pid}/root")))
                    {
                        "its root".to_string()
                    } else {
                        "elsewhere".to_string()
                    },
                    dirs_leading_out: self.dirs_leading_out(*pid),
                    cap_sys_chroot: status.cap_eff & (1u64 << CAP_SYS_CHROOT) != 0,
                    host_uid: status.uid[1],
                    user_ns: if user_ns == Some(host_user_ns) { "the host's" } else { "its own" }.to_string(),
                    pid_1: status.nspid.last() == Some(&1),
                },
            );
        }
        facts.record(JAILED_ATTEMPTS, states);
        let door = run.door()?;
        facts.record(NO_CAP_CHROOT, chroot_sub_probe(&door, &jail, Dropped::CapSysChroot)?);
        facts.record(NOBODY_CHROOT, chroot_sub_probe(&door, &jail, Dropped::Root)?);
        facts.record(USERNS_IN_CHROOT, userns_in_chroot_probe(&door, &jail)?);
        // Only now, with every attempt seen jailed and no way out but the declared ones.
        let outside = run.scratch().join(OUTSIDE_DIR);
        self.planted = plant(&outside)?;
        self.before = tree_outside_jail(run.scratch())?;
        self.watch = Some(watch_opens(&outside)?);
        Ok(())
    }

    fn escaped(&mut self, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let outside = run.scratch().join(OUTSIDE_DIR);
        let opens = match &self.watch {
            Some(watch) => read_opens(watch, &outside)?,
            None => return Err(Error::Harness("the sentinels were not watched at `jailed`".into())),
        };
        let jail = run.scratch().join(JAIL_DIR);
        let mut states = BTreeMap::new();
        for (attempt, pid) in &self.processes {
            let loot = std::fs::read_to_string(jail.join(LOOT_DIR).join(attempt)).unwrap_or_default();
            let fate = |kind: &str, suffix: &str| {
                let name = format!("{attempt}{suffix}");
                let content = self.planted.get(&name).cloned().unwrap_or_default();
                let handed_back = !content.is_empty() && loot.lines().any(|l| l == format!("{kind} {content}"));
                let openers: Vec<i32> = opens.get(&name).cloned().unwrap_or_default();
                let by_it = openers.contains(pid);
                let others: Vec<String> = openers
                    .iter()
                    .filter(|p| *p != pid)
                    .map(|p| procfs::comm(*p).unwrap_or_else(|| "a process gone by now".into()))
                    .collect();
                match (by_it, others.is_empty(), handed_back) {
                    (true, true, true) => HANDED_BACK.to_string(),
                    (false, true, false) => NOT_OPENED.to_string(),
                    _ => format!(
                        "opened by {}; content {}",
                        match (by_it, others.is_empty()) {
                            (true, true) => "the attempt alone".to_string(),
                            (true, false) => format!("the attempt and {}", others.join(", ")),
                            (false, false) => others.join(", "),
                            (false, true) => "nobody".to_string(),
                        },
                        if handed_back { "handed back" } else { "not handed back" }
                    ),
                }
            };
            states.insert(
                attempt.clone(),
                Escaped {
                    root: self.place(*pid, "root"),
                    secret: fate("secret", SECRET_SUFFIX),
                    public: fate("public", PUBLIC_SUFFIX),
                },
            );
        }
        facts.record(ESCAPED_ATTEMPTS, states);
        let after = tree_outside_jail(run.scratch())?;
        facts.record(OUTSIDE_CHANGES, differences(&self.before, &after));
        facts.record(HOST_CHANGES, run.mount_ns().changes()?.describe());
        Ok(())
    }

    /// Where a process's root (or cwd) is: the jail, the host's root, elsewhere.
    fn place(&self, pid: i32, which: &str) -> String {
        let id = file_id(Path::new(&format!("/proc/{pid}/{which}")));
        if id.is_some() && id == self.jail {
            JAIL.to_string()
        } else if id.is_some() && id == file_id(Path::new("/")) {
            HOST_ROOT.to_string()
        } else {
            "elsewhere".to_string()
        }
    }

    /// The directory descriptors of `pid` from which `..` never passes through the jail.
    fn dirs_leading_out(&self, pid: i32) -> usize {
        let numbers = procfs::pid_entries(Path::new(&format!("/proc/{pid}/fd"))).unwrap_or_default();
        numbers
            .into_iter()
            .filter(|number| {
                let path = format!("/proc/{pid}/fd/{number}");
                let Ok(fd) = open(path.as_str(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                else {
                    return false;
                };
                // SAFETY: open just returned this descriptor; nothing else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                !passes_through(fd, self.jail)
            })
            .count()
    }
}

/// Walks `..` up from `start` until it stops moving: whether it passes `dir` on the way.
fn passes_through(start: OwnedFd, dir: Option<(u64, u64)>) -> bool {
    let mut at = start;
    for _ in 0..4096 {
        let Ok(here) = fstat(at.as_raw_fd()).map(|st| (st.st_dev, st.st_ino)) else { return false };
        if Some(here) == dir {
            return true;
        }
        let Ok(up) =
            openat(Some(at.as_raw_fd()), "..", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        else {
            return false;
        };
        // SAFETY: openat just returned this descriptor; nothing else owns it.
        let up = unsafe { OwnedFd::from_raw_fd(up) };
        if fstat(up.as_raw_fd()).map(|st| (st.st_dev, st.st_ino)).ok() == Some(here) {
            return false;
        }
        at = up;
    }
    false
}

/// The lab's descendants (its children, theirs, ...).
fn descendants(lab: i32) -> Vec<i32> {
    let mut found = procfs::children(lab);
    let mut next = 0;
    while next < found.len() {
        let kids = procfs::children(found[next]);
        found.extend(kids.into_iter().filter(|kid| !found.contains(kid)).collect::<Vec<_>>());
        next += 1;
    }
    found
}

fn lstat_dir(path: &Path) -> Option<(u64, u64)> {
    nix::sys::stat::lstat(path)
        .ok()
        .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .map(|st| (st.st_dev, st.st_ino))
}

/// Per attempt a 0600 `<attempt>.secret` and a 0644 `<attempt>.public` of root's, each
/// with 128 random bits: (file name, content).
fn plant(outside: &Path) -> Result<BTreeMap<String, String>> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{fchmod, Mode};
    use std::io::Write;
    // The harness writes in the real host's mount namespace, in a dir the lab could have
    // changed: never through a symlink, never into a file that was already there.
    let dir = nix::fcntl::open(
        outside,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(Error::sys("open(O_DIRECTORY|O_NOFOLLOW)", outside.display()))?;
    // SAFETY: open just returned this descriptor; the OwnedFd owns it from here.
    let dir = unsafe { std::os::fd::OwnedFd::from_raw_fd(dir) };
    let mut planted = BTreeMap::new();
    for attempt in ATTEMPTS {
        for (suffix, mode) in [(SECRET_SUFFIX, 0o600), (PUBLIC_SUFFIX, 0o644)] {
            let name = format!("{attempt}{suffix}");
            let path = outside.join(&name);
            let mut bytes = [0u8; 16];
            let mut random = std::fs::File::open("/dev/urandom").map_err(Error::io("open", "/dev/urandom"))?;
            std::io::Read::read_exact(&mut random, &mut bytes).map_err(Error::io("read", "/dev/urandom"))?;
            let content: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let fd = openat(
                Some(dir.as_raw_fd()),
                name.as_str(),
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(mode),
            )
            .map_err(Error::sys("openat(O_CREAT|O_EXCL|O_NOFOLLOW)", path.display()))?;
            // SAFETY: openat just returned this descriptor; the File owns it from here.
            let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
            fchmod(file.as_raw_fd(), Mode::from_bits_truncate(mode)).map_err(Error::sys("fchmod", path.display()))?;
            file.write_all(format!("{content}\n").as_bytes()).map_err(Error::io("write", &path))?;
            planted.insert(name, content);
        }
    }
    Ok(planted)
}

/// Every entry of the scratch dir but the jail: relative path -> type, mode, owner, size,
/// modification time and content (files), target (links).
fn tree_outside_jail(scratch: &Path) -> Result<BTreeMap<String, String>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut pending = vec![scratch.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(Error::io("list", &dir))?.flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(scratch).unwrap_or(&path).display().to_string();
            if relative == JAIL_DIR {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            let mut line = format!(
                "mode {:o} owner {}:{} size {} mtime {}.{}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec()
            );
            if meta.is_dir() {
                pending.push(path.clone());
            } else if meta.file_type().is_symlink() {
                line.push_str(&format!(" -> {}", std::fs::read_link(&path).unwrap_or_default().display()));
            } else if meta.is_file() {
                let content = std::fs::read(&path).unwrap_or_default();
                line.push_str(&format!(" content {}", String::from_utf8_lossy(&content).trim()));
            }
            out.insert(relative, line);
        }
    }
    Ok(out)
}

fn differences(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, was) in before {
        match after.get(path) {
            None => out.push(format!("{path} removed")),
            Some(now) if now != was => out.push(format!("{path} changed")),
            Some(_) => {}
        }
    }
    out.extend(after.keys().filter(|p| !before.contains_key(*p)).map(|p| format!("{p} created")));
    out
}

/// A fanotify group that reports every open of a file in `dir` with the opening PID.
fn watch_opens(dir: &Path) -> Result<Fanotify> {
    let fan = Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_NONBLOCK | InitFlags::FAN_CLOEXEC,
        EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC | EventFFlags::O_LARGEFILE,
    )
    .map_err(Error::sys("fanotify_init", "the sentinels"))?;
    fan.mark(MarkFlags::FAN_MARK_ADD, MaskFlags::FAN_OPEN | MaskFlags::FAN_EVENT_ON_CHILD, None, Some(dir))
        .map_err(Error::sys("fanotify_mark", dir.display()))?;
    Ok(fan)
}

/// Each sentinel's name -> the PIDs that opened it (the events carry a descriptor of the
/// opened file: matched by device and inode).
fn read_opens(watch: &Fanotify, outside: &Path) -> Result<BTreeMap<String, Vec<i32>>> {
    let ids: Vec<(String, Option<(u64, u64)>)> = super::list_dir(outside)?
        .into_iter()
        .map(|name| {
            let id = file_id(&outside.join(&name));
            (name, id)
        })
        .collect();
    let mut opens: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    loop {
        let events = match watch.read_events() {
            Ok(events) if events.is_empty() => break,
            Ok(events) => events,
            Err(Errno::EAGAIN) => break,
            Err(errno) => return Err(Error::sys("read", "fanotify events")(errno)),
        };
        for event in events {
            let Some(fd) = event.fd() else {
                return Err(Error::Harness("fanotify's queue overflowed".into()));
            };
            let id = fstat(fd.as_raw_fd()).ok().map(|st| (st.st_dev, st.st_ino));
            let name = ids.iter().find(|(_, i)| *i == id).map_or("another file".to_string(), |(n, _)| n.clone());
            let pids = opens.entry(name).or_default();
            if !pids.contains(&event.pid()) {
                pids.push(event.pid());
            }
        }
    }
    Ok(opens)
}

#[derive(Clone, Copy)]
enum Dropped {
    CapSysChroot,
    Root,
}

/// In the run, chrooted into the jail: drops `dropped` and tries chroot("sub"): "chroots"
/// or the errno.
fn chroot_sub_probe(door: &crate::run::RunDoor, jail: &Path, dropped: Dropped) -> Result<String> {
    let outcome = forked::probe("chroot(sub) in the jail, unprivileged", PROBE_TIMEOUT, |_| {
        door.enter()?;
        chroot(jail)?;
        chdir("/")?;
        match dropped {
            Dropped::CapSysChroot => {
                labkit::caps::drop_capability(CAP_SYS_CHROOT)?;
            }
            Dropped::Root => {
                let (gid, uid) = (Gid::from_raw(NOBODY), Uid::from_raw(NOBODY));
                nix::unistd::setgroups(&[])?;
                nix::unistd::setresgid(gid, gid, gid)?;
                nix::unistd::setresuid(uid, uid, uid)?;
            }
        }
        chroot(SUB_DIR)
    })?;
    Ok(describe(outcome.status, "chroots"))
}

/// In the run, chrooted into the jail: unshare(CLONE_NEWUSER).
fn userns_in_chroot_probe(door: &crate::run::RunDoor, jail: &Path) -> Result<String> {
    let outcome = forked::probe("unshare(CLONE_NEWUSER) in a chroot", PROBE_TIMEOUT, |_| {
        door.enter()?;
        chroot(jail)?;
        chdir("/")?;
        unshare(CloneFlags::CLONE_NEWUSER)
    })?;
    Ok(describe(outcome.status, "made a user namespace"))
}

fn describe(status: std::result::Result<(), ProbeFailure>, worked: &str) -> String {
    match status {
        Ok(()) => worked.to_string(),
        Err(ProbeFailure::Errno(errno)) => errno_name(errno),
        Err(ProbeFailure::Signaled(signal)) => format!("probe killed by {}", signal.as_str()),
    }
}

/// Typical mistakes and lies; each region's `todo!()` is added by the corpus itself.
pub const MISTAKES: [Mistake; 18] = [
    Mistake {
        region: "classic-escape",
        name: "chroot(sub) without the chdir(\"..\") loop",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace("    chroot(SUB_DIR)?;\n    climb()?;\n    chroot(\".\")\n", "    chroot(SUB_DIR)?;\n    chroot(\".\")\n")],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "chdir into sub after chroot(sub): the working directory is inside the new root",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    chroot(SUB_DIR)?;\n    climb()?;\n",
            "    chroot(SUB_DIR)?;\n    chdir(\"/\")?;\n    climb()?;\n",
        )],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "one chdir(\"..\") instead of walking until it stops",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace("    chroot(SUB_DIR)?;\n    climb()?;\n", "    chroot(SUB_DIR)?;\n    chdir(\"..\")?;\n")],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the `..` walk from the jail's root, without chroot(sub) first",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace("    chroot(SUB_DIR)?;\n    climb()?;\n", "    climb()?;\n")],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "open-door",
        name: "the escape fd opened after the chroot, on / (the jail by then)",
        kind: MistakeKind::Mistake,
        edits: &[
            Edit::Replace(
                "    let door = if attempt.escape == Escape::Fd {\n        \
                 Some(open_door(&setup.workdir).map_err(LabError::sys(\"open_door\", setup.workdir.display()))?)\n    \
                 } else {\n        None\n    };\n",
                "",
            ),
            Edit::Replace(
                "        chdir(\"/\").map_err(LabError::sys(\"chdir\", \"/\"))?;\n    }\n    apply_defence_in_jail(attempt)?;\n",
                "        chdir(\"/\").map_err(LabError::sys(\"chdir\", \"/\"))?;\n    }\n    \
                 let door = if attempt.escape == Escape::Fd {\n        \
                 Some(open_door(Path::new(\"/\")).map_err(LabError::sys(\"open_door\", \"/\"))?)\n    \
                 } else {\n        None\n    };\n    \
                 apply_defence_in_jail(attempt)?;\n",
            ),
        ],
        caught_by: "door-opened-before",
    },
    Mistake {
        region: "open-door",
        name: "the door opened on the jail itself",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "open-door",
            "let fd = open(&outside.join(JAIL_DIR), OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())?;\nOk(own(fd))",
        )],
        caught_by: "door-opened-before",
    },
    Mistake {
        region: "fd-escape",
        name: "fchdir, then chroot(\".\") without walking up: the root is the workdir",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("fd-escape", "fchdir(door.as_raw_fd())?;\nchroot(\".\")")],
        caught_by: "fd-escape",
    },
    Mistake {
        region: "fd-escape",
        name: "the walk and the chroot without fchdir: the descriptor is never used",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("fd-escape", "let _ = door;\nclimb()?;\nchroot(\".\")")],
        caught_by: "fd-escape",
    },
    Mistake {
        region: "proc-escape",
        name: "through /proc/self/root: its own root, the jail",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("proc-escape", "let _ = host_pid;\nchdir(\"/proc/self/root\")?;\nchroot(\".\")")],
        caught_by: "proc-escape",
    },
    Mistake {
        region: "proc-escape",
        name: "chdir through /proc/<pid>/root without chroot(\".\"): absolute paths still start at the jail",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("proc-escape", "chdir(format!(\"/proc/{host_pid}/root\").as_str())")],
        caught_by: "proc-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the escape claimed, nothing done",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region("classic-escape", "Ok(())")],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the lab reads the sentinel itself and writes it into the attempt's loot",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region("classic-escape", "Ok(())"),
            Edit::Replace(
                "    lab.hold(JAILED, json!({ \"attempts\": claims, \"host_pid\": setup.host_pid.as_raw() }))?;\n",
                "    lab.hold(JAILED, json!({ \"attempts\": claims, \"host_pid\": setup.host_pid.as_raw() }))?;\n    \
                 for (kind, suffix) in [(\"secret\", SECRET_SUFFIX), (\"public\", PUBLIC_SUFFIX)] {\n        \
                 let content = std::fs::read_to_string(outside.join(format!(\"{CLASSIC}{suffix}\"))).unwrap_or_default();\n        \
                 let loot = jail.join(LOOT_DIR).join(CLASSIC);\n        \
                 let _ = std::fs::OpenOptions::new().append(true).open(&loot).and_then(|mut f| writeln!(f, \"{kind} {}\", content.trim()));\n    \
                 }\n",
            ),
        ],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the lab copies the sentinels into the jail, where the attempt reads the copy",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region("classic-escape", "Ok(())"),
            Edit::Replace(
                "    lab.hold(JAILED, json!({ \"attempts\": claims, \"host_pid\": setup.host_pid.as_raw() }))?;\n",
                "    lab.hold(JAILED, json!({ \"attempts\": claims, \"host_pid\": setup.host_pid.as_raw() }))?;\n    \
                 let copy = jail.join(outside.strip_prefix(\"/\").unwrap_or(&outside));\n    \
                 std::fs::create_dir_all(&copy).map_err(LabError::io(\"create directory\", &copy))?;\n    \
                 for name in [format!(\"{CLASSIC}{SECRET_SUFFIX}\"), format!(\"{CLASSIC}{PUBLIC_SUFFIX}\")] {\n        \
                 let _ = std::fs::copy(outside.join(&name), copy.join(&name));\n    \
                 }\n",
            ),
        ],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the attempt reads its sentinel before the chroot, hands it back after",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region("classic-escape", "Ok(())"),
            Edit::Replace(
                "    apply_defence_before_jail(setup, attempt, &mut link)?;\n",
                "    let early = hand_back(&setup.workdir, attempt.name, &loot);\n    \
                 voice.inside(&format!(\"{} before the chroot: {early}\", attempt.name));\n    \
                 apply_defence_before_jail(setup, attempt, &mut link)?;\n",
            ),
        ],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the escaped process leaves a copy of each sentinel beside it",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "                let _ = writeln!(loot, \"{kind} {}\", content.trim());\n",
            "                let _ = writeln!(loot, \"{kind} {}\", content.trim());\n                \
             let _ = std::fs::write(path.with_extension(\"copy\"), &content);\n",
        )],
        caught_by: "reads-only",
    },
    Mistake {
        region: "proc-escape",
        name: "the proc escape claimed, nothing done",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region("proc-escape", "let _ = host_pid;\nOk(())")],
        caught_by: "proc-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "a real escape, but the lab reads the sentinel and writes the loot",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Replace(
                "    let read = hand_back(&setup.workdir, attempt.name, &loot);\n",
                "    let read = if attempt.name == CLASSIC {\n        \
                 \"left to the lab\".to_string()\n    \
                 } else {\n        \
                 hand_back(&setup.workdir, attempt.name, &loot)\n    \
                 };\n",
            ),
            Edit::Replace(
                "    lab.hold(ESCAPED, json!({ \"attempts\": claims }))?;\n",
                "    for (kind, suffix) in [(\"secret\", SECRET_SUFFIX), (\"public\", PUBLIC_SUFFIX)] {\n        \
                 let content = std::fs::read_to_string(outside.join(format!(\"{CLASSIC}{suffix}\"))).unwrap_or_default();\n        \
                 let loot = jail.join(LOOT_DIR).join(CLASSIC);\n        \
                 let _ = std::fs::OpenOptions::new().append(true).open(&loot).and_then(|mut f| writeln!(f, \"{kind} {}\", content.trim()));\n    \
                 }\n    \
                 lab.hold(ESCAPED, json!({ \"attempts\": claims }))?;\n",
            ),
        ],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "a real escape that hands back made-up content",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "                let _ = writeln!(loot, \"{kind} {}\", content.trim());\n",
            "                let _ = writeln!(loot, \"{kind} {}\", \"0\".repeat(32));\n",
        )],
        caught_by: "classic-escape",
    },
];
