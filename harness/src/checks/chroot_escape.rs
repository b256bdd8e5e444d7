//! Checks for lab chroot-escape. The lab jails one process per attempt (an escape, with
//! or without a defence); the harness decides from outside:
//!
//! - at `jailed`, before anything is planted: each attempt's process is found by its name
//!   among the lab's descendants (never taken from the claims); its root (the /proc link,
//!   by device and inode) is the jail, its working directory is its root, and the harness
//!   walks `..` up from each directory descriptor it holds to count those that lead out of
//!   the jail. Its capabilities (none but CAP_SYS_CHROOT: no setns, no pidfd_getfd of a
//!   process holding more), ids, user namespace and PID inside come from /proc, and so do
//!   the processes of the run outside the jail it could ptrace (each must be sealed:
//!   seccomp strict, holding only pipes and character devices, as the lab's witness is).
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
use crate::error::{Error, Result};
use crate::facts::{Fact, Facts};
use crate::probe::forked::{self, ProbeFailure};
use crate::probe::procfs::{self, NsId};
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
    /// [`JAIL`], [`HOST_ROOT`] or where else.
    pub root: String,
    /// "its root" or "elsewhere".
    pub cwd: String,
    /// Threads in the process (/proc/<pid>/status): a second thread may keep a root or a
    /// working directory of its own (unshare(CLONE_FS)) that /proc/<pid>/root does not show.
    pub threads: u64,
    /// [`RUN_NS`] or [`OWN_NS`].
    pub mount_ns: String,
    /// Every mount its mountinfo shows (those under its root), each said as the harness
    /// sees it: the jail, a directory of it, a proc of which PID namespace, or a mount
    /// that [`EXPOSES_THE_HOST`].
    pub mounts: Vec<String>,
    /// Every descriptor it holds, sorted, as the harness sees it: a pipe, the loot file, a
    /// directory in the jail, a directory leading out (a door: what, how opened, through
    /// which mount), or a route the attempt did not declare (a namespace, a pidfd, a socket).
    pub fds: Vec<String>,
    /// The capability sets that still hold CAP_SYS_CHROOT: effective, permitted,
    /// inheritable, bounding, ambient.
    pub cap_sys_chroot_in: Vec<String>,
    /// The sets that hold any capability but CAP_SYS_CHROOT: none, or the escape it is
    /// told to try is not its only way out (CAP_SYS_ADMIN: setns; CAP_SYS_PTRACE:
    /// pidfd_getfd; CAP_DAC_READ_SEARCH: open_by_handle_at...).
    pub other_caps_in: Vec<String>,
    /// The processes of the run outside the jail that it could ptrace or take descriptors
    /// from (pidfd_getfd), each said with whether it is [`SEALED`].
    pub within_reach: Vec<String>,
    /// Real, effective, saved and filesystem uid, and gid, as the host sees them.
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    /// "the host's" or "its own".
    pub user_ns: String,
    /// It is PID 1 of its PID namespace.
    pub pid_1: bool,
}

/// An attempt's process at `escaped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escaped {
    /// [`JAIL`], [`HOST_ROOT`] (the root directory of the run's root mount), or where else.
    pub root: String,
    pub mount_ns: String,
    pub threads: u64,
    /// Descriptors it holds now that it did not hold at `jailed` (a door it got since).
    pub new_fds: Vec<String>,
    /// The processes of the run outside the jail within its reach now (as at `jailed`).
    pub within_reach: Vec<String>,
    /// What became of the 0600 sentinel, and of the 0644 one: [`HANDED_BACK`], [`NOT_OPENED`]
    /// or what else was seen.
    pub secret: String,
    pub public: String,
}

pub const JAIL: &str = "the jail";
/// The root directory of the run's mount namespace, on that namespace's root mount.
pub const HOST_ROOT: &str = "the host's root";
/// The same directory, on another mount: a bind mount of the host's `/` (a lie's way).
pub const HOST_ROOT_ELSEWHERE: &str = "the host's root directory, but on another mount than the run's root mount";
pub const HANDED_BACK: &str = "opened by the attempt alone, content handed back";
pub const NOT_OPENED: &str = "not opened, not handed back";
pub const RUN_NS: &str = "the run's";
pub const OWN_NS: &str = "its own";
/// In a mount's words: its filesystem's root is outside the jail.
pub const EXPOSES_THE_HOST: &str = "exposes the host";
/// The mount the pivot attempts stand on: the jail, bind-mounted, their root mount.
pub const PIVOTED_ROOT: &str = "/: the jail, its root mount";
pub const HOST_PROC: &str = "/proc: proc of the host's PID namespace";
pub const OWN_PROC: &str = "/proc: proc of its own PID namespace";
/// The one door the fd attempts declare: the workdir, opened as a directory before the
/// chroot (or the unshare and pivot), so on the run's own mount of the scratch dir.
pub const DOOR: &str =
    "a directory leading out: the workdir, opened O_RDONLY|O_DIRECTORY, on the run's mount of the scratch dir";
const LEADING_OUT: &str = "a directory leading out";
const LOOT: &str = "its loot file, in the jail";
const PIPE: &str = "a pipe";
/// Descriptors that are no way out: a non-directory cannot be fchdir'ed or walked up from.
const HARMLESS: [&str; 5] = [LOOT, PIPE, "a file, not a directory", "a character device", "a directory in the jail"];
const CHAR_DEVICE: &str = "a character device";
/// A process outside the jail within an attempt's reach that gives it nothing: in seccomp's
/// strict mode (read, write, exit: it can open or receive nothing), one thread, holding only
/// pipes and character devices.
pub const SEALED: &str = "sealed: seccomp strict, one thread, holding only pipes and character devices";

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

/// How an attempt must be found at `jailed`: its mount namespace, the mounts it sees, the
/// doors it holds.
struct Walls {
    mount_ns: &'static str,
    mounts: &'static [&'static str],
    doors: usize,
}

/// A plain chroot in the run's mount namespace: no mount under its root, no door.
const PLAIN: Walls = Walls { mount_ns: RUN_NS, mounts: &[], doors: 0 };

/// In the jail, at its root, one thread, in the mount namespace and with the mounts its
/// defence makes, holding `doors` doors (each the declared [`DOOR`]) and no other way out:
/// no mount exposing the host, no namespace, pidfd or socket descriptor.
fn locked_in(j: &Jailed, walls: &Walls) -> bool {
    j.root == JAIL
        && j.cwd == "its root"
        && j.threads == 1
        && j.other_caps_in.is_empty()
        && all_sealed(&j.within_reach)
        && j.mount_ns == walls.mount_ns
        && j.mounts == walls.mounts
        && j.fds.iter().filter(|f| f.as_str() == DOOR).count() == walls.doors
        && j.fds.iter().all(|f| f == DOOR || HARMLESS.contains(&f.as_str()))
}

/// Reached the host's root (its directory, on the run's root mount), one thread, no
/// descriptor it did not hold when jailed, and handed the 0600 sentinel back.
fn out_with_secret(x: &Escaped) -> bool {
    out(x) && x.secret == HANDED_BACK
}

fn out(x: &Escaped) -> bool {
    x.root == HOST_ROOT && x.threads == 1 && x.new_fds.is_empty() && all_sealed(&x.within_reach)
}

/// Still in the jail, one thread, nothing opened.
fn stayed(x: &Escaped) -> bool {
    x.root == JAIL && x.threads == 1 && x.secret == NOT_OPENED && x.public == NOT_OPENED
}

/// Every process outside the jail within the attempt's reach is [`SEALED`].
fn all_sealed(within_reach: &[String]) -> bool {
    within_reach.iter().all(|p| p.ends_with(SEALED))
}

pub const VERDICTS: [VerdictSpec; 14] = [
    VerdictSpec {
        id: "classic-escape",
        claim: "from a plain chroot, root in the jail with no way out (root the jail, working directory at it, one thread, no capability but CAP_SYS_CHROOT, no mount under it, no directory descriptor leading out, no namespace, pidfd or socket descriptor, no process outside the jail within its ptrace reach that is not sealed), the classic escape moves the process's root to the root of the run's mount namespace (its root directory on its root mount, the process still in that namespace), and it alone opens the 0600 sentinel planted outside afterwards and hands back its random content",
        points: 3,
        region: Some("classic-escape"),
        requires: &[],
        hint: "chroot into a subdirectory WITHOUT chdir into it: the working directory is then outside the root, and `..` from there is not stopped; walk it until it stops moving, then chroot(\".\")",
        decide: |e| {
            let x = escaped(e, CLASSIC)?;
            Some(locked_in(&jailed(e, CLASSIC)?, &PLAIN) && x.mount_ns == RUN_NS && out_with_secret(&x))
        },
    },
    VerdictSpec {
        id: "door-opened-before",
        claim: "the fd attempt's process is in the jail, one thread, holding exactly one directory descriptor that leads out of it: the workdir, opened O_RDONLY|O_DIRECTORY on the run's own mount (so before the chroot), and no other way out",
        points: 1,
        region: Some("open-door"),
        requires: &[],
        hint: "open the directory before the chroot: after it, every path is resolved inside the jail",
        decide: |e| Some(locked_in(&jailed(e, FD)?, &Walls { doors: 1, ..PLAIN })),
    },
    VerdictSpec {
        id: "fd-escape",
        claim: "through that descriptor (fchdir, `..` until it stops, chroot \".\") the process's root becomes the root of the run's mount namespace, with no descriptor it did not hold when jailed, and it alone opens the 0600 sentinel and hands back its content",
        points: 3,
        region: Some("fd-escape"),
        requires: &[],
        hint: "fchdir to the descriptor puts the working directory outside the root; `..` is not stopped from there: walk it up before chroot(\".\")",
        decide: |e| {
            let x = escaped(e, FD)?;
            Some(locked_in(&jailed(e, FD)?, &Walls { doors: 1, ..PLAIN }) && x.mount_ns == RUN_NS && out_with_secret(&x))
        },
    },
    VerdictSpec {
        id: "proc-escape",
        claim: "with the host's proc mounted in the jail (the only mount under its root, in a mount namespace of its own), chdir into /proc/<pid>/root of a process outside the jail and chroot(\".\") make the root of the run's mount namespace the process's root; it alone opens the 0600 sentinel and hands back its content",
        points: 3,
        region: Some("proc-escape"),
        requires: &[],
        hint: "/proc/<pid>/root is a link to that process's root directory: chdir through it, then chroot(\".\"); not PID 1's where PID 1 is an agent you may not trace (EACCES)",
        decide: |e| {
            let walls = Walls { mount_ns: OWN_NS, mounts: &[HOST_PROC], doors: 0 };
            Some(locked_in(&jailed(e, PROC)?, &walls) && out_with_secret(&escaped(e, PROC)?))
        },
    },
    VerdictSpec {
        id: "reads-only",
        claim: "the escaped processes only read: the scratch dir, every entry in it outside the jail (the sentinels and their directory among them) and the host's root directory are, byte for byte and by metadata (type, mode, owner, size, modification and change times), as the harness planted them, and the lab's host mount table is unchanged",
        points: 1,
        region: Some("classic-escape"),
        requires: &["classic-escape"],
        hint: "an escape reads the sentinel and writes only into its loot descriptor, opened in the jail before",
        decide: |e| Some(e.get(OUTSIDE_CHANGES)?.is_empty() && e.get(HOST_CHANGES)?.is_empty()),
    },
    VerdictSpec {
        id: "no-cap-stays",
        claim: "without CAP_SYS_CHROOT (gone from its effective, permitted, inheritable, bounding and ambient sets) and any other capability, the classic escape stays in the jail: chroot(sub) fails with EPERM, and no sentinel is opened",
        points: 0,
        region: None,
        requires: &["classic-escape"],
        hint: "the lab drops every capability of the no-cap attempt, CAP_SYS_CHROOT too, from every set",
        decide: |e| {
            let j = jailed(e, NO_CAP)?;
            Some(
                locked_in(&j, &PLAIN)
                    && j.cap_sys_chroot_in.is_empty()
                    && j.uids == [0; 4]
                    && e.get(NO_CAP_CHROOT)? == "EPERM"
                    && stayed(&escaped(e, NO_CAP)?),
            )
        },
    },
    VerdictSpec {
        id: "nobody-stays",
        claim: "as uid and gid 65534 (real, effective, saved and filesystem), CAP_SYS_CHROOT gone from its effective and permitted sets, the classic escape stays in the jail: chroot(sub) fails with EPERM, and no sentinel is opened",
        points: 0,
        region: None,
        requires: &["classic-escape"],
        hint: "the lab makes the nobody attempt uid 65534 after the chroot",
        decide: |e| {
            let j = jailed(e, AS_NOBODY)?;
            Some(
                locked_in(&j, &PLAIN)
                    && j.uids == [NOBODY; 4]
                    && j.gids == [NOBODY; 4]
                    && j.cap_sys_chroot_in.iter().all(|set| set == "bounding")
                    && e.get(NOBODY_CHROOT)? == "EPERM"
                    && stayed(&escaped(e, AS_NOBODY)?),
            )
        },
    },
    VerdictSpec {
        id: "pivot-lands-inside",
        claim: "after pivot_root into the jail and the lazy unmount of the old root, in a mount namespace of its own (its root mount the jail, the only mount it has: the old root is gone from it), the classic escape lands in the new root: its root is still the jail and nothing outside is opened",
        points: 0,
        region: None,
        requires: &["classic-escape"],
        hint: "the lab pivots the pivot attempt into the jail and unmounts the old root",
        decide: |e| {
            let walls = Walls { mount_ns: OWN_NS, mounts: &[PIVOTED_ROOT], doors: 0 };
            Some(locked_in(&jailed(e, PIVOT)?, &walls) && stayed(&escaped(e, PIVOT)?))
        },
    },
    VerdictSpec {
        id: "pivot-fd-leads-out",
        claim: "but a directory descriptor opened before the pivot still leads out: pivoted the same way, through it the process reaches the root of the run's mount namespace and hands back the 0600 sentinel (why runc closes every descriptor before it execs)",
        points: 0,
        region: None,
        requires: &["fd-escape"],
        hint: "the lab opens the pivot-fd attempt's door before its pivot_root",
        decide: |e| {
            let walls = Walls { mount_ns: OWN_NS, mounts: &[PIVOTED_ROOT], doors: 1 };
            Some(locked_in(&jailed(e, PIVOT_FD)?, &walls) && out_with_secret(&escaped(e, PIVOT_FD)?))
        },
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
                locked_in(&j, &PLAIN)
                    && j.user_ns == "its own"
                    && j.uids == [0; 4]
                    && out_with_secret(&escaped(e, USERNS_ROOT)?),
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
                locked_in(&j, &PLAIN)
                    && j.user_ns == "its own"
                    && j.uids == [MAPPED_ID; 4]
                    && out(&x)
                    && x.public == HANDED_BACK
                    && x.secret == NOT_OPENED,
            )
        },
    },
    VerdictSpec {
        id: "pidns-own-proc-stays",
        claim: "as PID 1 of a PID namespace with only that namespace's proc in the jail (a proc whose PID 1 is the process itself, the only mount under its root), /proc/<pid>/root of the host process is not there: the proc escape stays in the jail",
        points: 0,
        region: None,
        requires: &["proc-escape"],
        hint: "the lab mounts the PID namespace's own proc in the jail, in the pidns-proc attempt's mount namespace",
        decide: |e| {
            let j = jailed(e, PIDNS_PROC)?;
            let walls = Walls { mount_ns: OWN_NS, mounts: &[OWN_PROC], doors: 0 };
            Some(locked_in(&j, &walls) && j.pid_1 && stayed(&escaped(e, PIDNS_PROC)?))
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
            Some(locked_in(&j, &PLAIN) && j.pid_1 && out_with_secret(&escaped(e, PIDNS)?))
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
    /// What the harness judges the processes by, read at `jailed`.
    marks: Option<Landmarks>,
    /// Each attempt's process (host PID), found at `jailed`.
    processes: BTreeMap<String, i32>,
    /// Each attempt's descriptors at `jailed`: number -> what it is.
    fds_at_jailed: BTreeMap<String, BTreeMap<i32, String>>,
    /// Each sentinel's file name and content.
    planted: BTreeMap<String, String>,
    /// The scratch dir outside the jail as planted.
    before: BTreeMap<String, String>,
    watch: Option<Fanotify>,
}

/// Where things are, as the harness reads them in the run at `jailed`.
struct Landmarks {
    /// The jail directory (device, inode), its filesystem's device (`major:minor`) and its
    /// path inside that filesystem (as mountinfo's `root` field says paths).
    jail: Option<(u64, u64)>,
    jail_dev: String,
    jail_in_fs: Option<String>,
    /// The scratch dir (the lab's workdir), and the run's mount it is on.
    workdir: Option<(u64, u64)>,
    workdir_mount: Option<u32>,
    /// The root directory (the harness's `/`, the same directory as the run's) and the id
    /// of the run mount namespace's root mount.
    host_root: Option<(u64, u64)>,
    run_root_mount: Option<u32>,
    run_mount_ns: NsId,
    host_pid_ns: NsId,
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
        let marks = Landmarks::read(run, &jail)?;
        let host_user_ns = run.host_ns("user")?;
        let descendants = descendants(run.pid());
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
        }
        let outside = self.outside_processes(run, &marks, &descendants)?;
        let mut states = BTreeMap::new();
        for (attempt, pid) in &self.processes {
            let status = procfs::read_status(*pid)?;
            let user_ns = run.namespace_of(*pid, "user")?;
            let mount_ns = run.namespace_of(*pid, "mnt")?;
            let pid_ns = run.namespace_of(*pid, "pid")?;
            let loot = file_id(&jail.join(LOOT_DIR).join(attempt));
            let fds = marks.fds(*pid, loot);
            let within_reach = within_reach(&status, user_ns, host_user_ns, &outside);
            let (cap_sys_chroot_in, other_caps_in) = cap_sets(&status);
            states.insert(
                attempt.to_string(),
                Jailed {
                    root: marks.place(*pid),
                    cwd: if file_id(Path::new(&format!("/proc/{pid}/cwd")))
                        == file_id(Path::new(&format!("/proc/{pid}/root")))
                    {
                        "its root".to_string()
                    } else {
                        "elsewhere".to_string()
                    },
                    threads: status.threads,
                    mount_ns: marks.mount_ns(mount_ns),
                    mounts: marks.mounts(*pid, pid_ns)?,
                    fds: sorted(fds.values().cloned().collect()),
                    cap_sys_chroot_in,
                    other_caps_in,
                    within_reach,
                    uids: status.uid,
                    gids: status.gid,
                    user_ns: if user_ns == Some(host_user_ns) { "the host's" } else { "its own" }.to_string(),
                    pid_1: status.nspid.last() == Some(&1),
                },
            );
            self.fds_at_jailed.insert(attempt.to_string(), fds);
        }
        facts.record(JAILED_ATTEMPTS, states);
        let door = run.door()?;
        facts.record(NO_CAP_CHROOT, chroot_sub_probe(&door, &jail, Dropped::CapSysChroot)?);
        facts.record(NOBODY_CHROOT, chroot_sub_probe(&door, &jail, Dropped::Root)?);
        facts.record(USERNS_IN_CHROOT, userns_in_chroot_probe(&door, &jail)?);
        self.marks = Some(marks);
        // Only now, with every attempt seen jailed and no way out but the declared ones.
        let outside = run.scratch().join(OUTSIDE_DIR);
        self.planted = plant(&outside)?;
        self.before = tree_outside_jail(run.scratch())?;
        self.watch = Some(watch_opens(&outside)?);
        Ok(())
    }

    fn escaped(&mut self, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let outside = run.scratch().join(OUTSIDE_DIR);
        let (Some(watch), Some(marks)) = (&self.watch, &self.marks) else {
            return Err(Error::Harness("the sentinels were not watched at `jailed`".into()));
        };
        let opens = read_opens(watch, &outside)?;
        let jail = run.scratch().join(JAIL_DIR);
        let host_user_ns = run.host_ns("user")?;
        let outside = self.outside_processes(run, marks, &descendants(run.pid()))?;
        let mut states = BTreeMap::new();
        for (attempt, pid) in &self.processes {
            let loot_path = jail.join(LOOT_DIR).join(attempt);
            let loot = std::fs::read_to_string(&loot_path).unwrap_or_default();
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
            let held = self.fds_at_jailed.get(attempt).cloned().unwrap_or_default();
            let new_fds = marks
                .fds(*pid, file_id(&loot_path))
                .into_iter()
                .filter(|(number, what)| held.get(number) != Some(what))
                .map(|(_, what)| what)
                .collect();
            let status = procfs::read_status(*pid)?;
            let mount_ns = run.namespace_of(*pid, "mnt")?;
            let user_ns = run.namespace_of(*pid, "user")?;
            states.insert(
                attempt.clone(),
                Escaped {
                    root: marks.place(*pid),
                    mount_ns: marks.mount_ns(mount_ns),
                    threads: status.threads,
                    new_fds,
                    within_reach: within_reach(&status, user_ns, host_user_ns, &outside),
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
}

impl ChrootEscape {
    /// The lab and every descendant of it that is not an attempt's process (launchers,
    /// the witness, whatever else the lab made), as an attempt could reach them.
    fn outside_processes(&self, run: &mut LabRun, marks: &Landmarks, descendants: &[i32]) -> Result<Vec<Outside>> {
        let mut found = Vec::new();
        let attempts: Vec<i32> = self.processes.values().copied().collect();
        for pid in std::iter::once(run.pid()).chain(descendants.iter().copied()).filter(|p| !attempts.contains(p)) {
            // A process that ended since it was listed reaches nobody.
            let Ok(status) = procfs::read_status(pid) else { continue };
            let user_ns = run.namespace_of(pid, "user")?;
            let fds = marks.fds(pid, None).into_values().collect();
            found.push(Outside { name: status.name.clone(), status, user_ns, fds });
        }
        Ok(found)
    }
}

/// A process of the run outside the jail.
struct Outside {
    name: String,
    status: procfs::ProcStatus,
    user_ns: Option<NsId>,
    /// Its descriptors, as [`Landmarks::fd`] says them.
    fds: Vec<String>,
}

/// Which sets of `status` hold CAP_SYS_CHROOT, and which hold any other capability.
fn cap_sets(status: &procfs::ProcStatus) -> (Vec<String>, Vec<String>) {
    let chroot_bit = 1u64 << CAP_SYS_CHROOT;
    let sets = [
        ("effective", status.cap_eff),
        ("permitted", status.cap_prm),
        ("inheritable", status.cap_inh),
        ("bounding", status.cap_bnd),
        ("ambient", status.cap_amb),
    ];
    let holding = |mask: u64| -> Vec<String> {
        sets.iter().filter(|(_, set)| set & mask != 0).map(|(name, _)| name.to_string()).collect()
    };
    (holding(chroot_bit), holding(!chroot_bit))
}

/// The processes of `outside` that a process with `status`, in user namespace `user_ns`,
/// may ptrace or take descriptors from (ptrace access, proc(5) and ptrace(2)): in the same
/// user namespace, with ids it can take without a capability (any of its real, effective
/// and saved ids) equal to all of the other's real, effective and saved ids, and the
/// other's permitted set within its own; or anything when it holds CAP_SYS_PTRACE. A
/// process in yet another user namespace counts as within reach (its owner may be root).
/// Whether the other is dumpable cannot be read from outside: counted as if it were.
fn within_reach(
    status: &procfs::ProcStatus,
    user_ns: Option<NsId>,
    host_user_ns: NsId,
    outside: &[Outside],
) -> Vec<String> {
    const CAP_SYS_PTRACE: u32 = 19;
    let ids_match = |mine: &[u32; 4], theirs: &[u32; 4]| mine[..3].iter().any(|id| theirs[..3].iter().all(|t| t == id));
    let reachable = |other: &Outside| {
        if other.user_ns != user_ns {
            return other.user_ns != Some(host_user_ns);
        }
        status.cap_eff & (1u64 << CAP_SYS_PTRACE) != 0
            || (ids_match(&status.uid, &other.status.uid)
                && ids_match(&status.gid, &other.status.gid)
                && other.status.cap_prm & !status.cap_prm == 0)
    };
    let said = outside
        .iter()
        .filter(|other| reachable(other))
        .map(|other| {
            let sealed = other.status.seccomp == Some(1)
                && other.status.threads == 1
                && other.fds.iter().all(|f| f == PIPE || f == CHAR_DEVICE);
            if sealed {
                format!("{}: {SEALED}", other.name)
            } else {
                format!(
                    "{}: not sealed: seccomp mode {}, {} thread(s), holding {}",
                    other.name,
                    other.status.seccomp.map_or("unknown".to_string(), |m| m.to_string()),
                    other.status.threads,
                    if other.fds.is_empty() { "nothing".to_string() } else { sorted(other.fds.clone()).join("; ") }
                )
            }
        })
        .collect();
    sorted(said)
}

impl Landmarks {
    fn read(run: &LabRun, jail: &Path) -> Result<Self> {
        let mounts = run.mount_ns().mounts()?;
        let jail_stat = nix::sys::stat::lstat(jail).ok().filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        let jail_dev = jail_stat.map(|st| device(st.st_dev)).unwrap_or_default();
        // The jail's path in its filesystem: the root of the run's mount it is on, and the
        // rest of its path below that mount's mount point.
        let jail_in_fs = mount_under(&mounts, jail).filter(|m| m.dev == jail_dev).and_then(|m| {
            let below = jail.strip_prefix(&m.mount_point).ok()?;
            Some(Path::new(&m.root).join(below).display().to_string())
        });
        Ok(Landmarks {
            jail: jail_stat.map(|st| (st.st_dev, st.st_ino)),
            jail_dev,
            jail_in_fs,
            workdir: file_id(run.scratch()),
            workdir_mount: mount_under(&mounts, run.scratch()).map(|m| m.id),
            host_root: file_id(Path::new("/")),
            run_root_mount: mount_under(&mounts, Path::new("/")).filter(|m| m.mount_point == "/").map(|m| m.id),
            run_mount_ns: run.host_ns("mnt")?,
            host_pid_ns: run.host_ns("pid")?,
        })
    }

    /// Where a process's root is: the jail, the host's root (that directory on the run's
    /// root mount), that directory on another mount, or elsewhere.
    fn place(&self, pid: i32) -> String {
        let link = format!("/proc/{pid}/root");
        let id = file_id(Path::new(&link));
        if id.is_some() && id == self.jail {
            JAIL.to_string()
        } else if id.is_some() && id == self.host_root {
            if mount_id(Path::new(&link)).is_some() && mount_id(Path::new(&link)) == self.run_root_mount {
                HOST_ROOT.to_string()
            } else {
                HOST_ROOT_ELSEWHERE.to_string()
            }
        } else {
            "elsewhere".to_string()
        }
    }

    fn mount_ns(&self, ns: Option<NsId>) -> String {
        if ns == Some(self.run_mount_ns) { RUN_NS } else { OWN_NS }.to_string()
    }

    /// Every mount under the process's root (what its mountinfo shows), said by what its
    /// filesystem root is: the jail or a directory of it, a proc of which PID namespace,
    /// or a mount that exposes the host (its root outside the jail: a bind mount of `/`).
    fn mounts(&self, pid: i32, pid_ns: Option<NsId>) -> Result<Vec<String>> {
        let root_mount = mount_id(Path::new(&format!("/proc/{pid}/root")));
        let said = procfs::read_mountinfo(&pid.to_string())?
            .iter()
            .map(|m| {
                let at = &m.mount_point;
                let in_jail = self
                    .jail_in_fs
                    .as_deref()
                    .filter(|_| m.dev == self.jail_dev)
                    .map(|jail| (m.root == jail, Path::new(&m.root).starts_with(jail)));
                match in_jail {
                    Some((true, _)) if at == "/" && Some(m.id) == root_mount => PIVOTED_ROOT.to_string(),
                    Some((true, _)) => format!("{at}: the jail, mounted again"),
                    Some((false, true)) => format!("{at}: a directory of the jail"),
                    _ if m.fs_type == "proc" => {
                        let ns = proc_pid_ns(pid, at);
                        let whose = if ns.is_some() && ns == Some(self.host_pid_ns) {
                            "the host's PID namespace"
                        } else if ns.is_some() && ns == pid_ns {
                            "its own PID namespace"
                        } else {
                            "another PID namespace"
                        };
                        format!("{at}: proc of {whose}")
                    }
                    _ => format!("{at}: {EXPOSES_THE_HOST}: {} {} of {}", m.fs_type, m.root, m.source),
                }
            })
            .collect();
        Ok(said)
    }

    /// Each descriptor of `pid`: number -> what it is, as the harness sees it.
    fn fds(&self, pid: i32, loot: Option<(u64, u64)>) -> BTreeMap<i32, String> {
        let numbers = procfs::pid_entries(Path::new(&format!("/proc/{pid}/fd"))).unwrap_or_default();
        numbers.into_iter().map(|number| (number, self.fd(pid, number, loot))).collect()
    }

    fn fd(&self, pid: i32, number: i32, loot: Option<(u64, u64)>) -> String {
        let path = format!("/proc/{pid}/fd/{number}");
        let target = std::fs::read_link(&path).map(|t| t.display().to_string()).unwrap_or_default();
        let kind = target.split(":[").next().unwrap_or_default();
        if target.starts_with("pipe:[") {
            return PIPE.to_string();
        }
        if target.starts_with("socket:[") {
            return "a socket: descriptors may come through it (SCM_RIGHTS)".to_string();
        }
        if target == "anon_inode:[pidfd]" {
            return "a pidfd: a way to another process's descriptors (pidfd_getfd) and namespaces (setns)".to_string();
        }
        if procfs::NAMESPACE_KINDS.contains(&kind) || kind.ends_with("_for_children") {
            return format!("a namespace ({kind}): a way into it by setns");
        }
        if target.starts_with("anon_inode:") {
            return format!("{target}: not a declared route");
        }
        let Ok(st) = nix::sys::stat::stat(path.as_str()) else {
            return format!("{target}: not readable by the harness");
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {}
            libc::S_IFREG if Some((st.st_dev, st.st_ino)) == loot => return LOOT.to_string(),
            libc::S_IFREG => return "a file, not a directory".to_string(),
            libc::S_IFCHR => return "a character device".to_string(),
            _ => return format!("{target}: not a declared route"),
        }
        let Ok(fd) = open(path.as_str(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()) else {
            return format!("{target}: not readable by the harness");
        };
        // SAFETY: open just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if passes_through(fd, self.jail) {
            return "a directory in the jail".to_string();
        }
        let what =
            if Some((st.st_dev, st.st_ino)) == self.workdir { "the workdir" } else { "a directory outside the jail" };
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{number}")).unwrap_or_default();
        let field = |name: &str| info.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        let flags = field("flags:").and_then(|f| i32::from_str_radix(f, 8).ok()).unwrap_or(-1);
        let how = open_flags(flags);
        let mount = field("mnt_id:").and_then(|m| m.parse::<u32>().ok());
        let on = if mount.is_some() && mount == self.workdir_mount {
            "on the run's mount of the scratch dir"
        } else {
            "on another mount (another namespace's, or a tree of no namespace)"
        };
        format!("{LEADING_OUT}: {what}, opened {how}, {on}")
    }
}

fn sorted(mut list: Vec<String>) -> Vec<String> {
    list.sort();
    list
}

/// The access mode and the flags that matter for a door: O_PATH, O_DIRECTORY.
fn open_flags(flags: i32) -> String {
    if flags < 0 {
        return "with flags unknown".to_string();
    }
    let mut said = vec![if flags & libc::O_PATH != 0 {
        "O_PATH"
    } else {
        match flags & libc::O_ACCMODE {
            libc::O_RDONLY => "O_RDONLY",
            libc::O_WRONLY => "O_WRONLY",
            _ => "O_RDWR",
        }
    }];
    if flags & libc::O_DIRECTORY != 0 {
        said.push("O_DIRECTORY");
    }
    said.join("|")
}

/// `major:minor` of a device number, as mountinfo writes it.
fn device(dev: u64) -> String {
    format!("{}:{}", nix::sys::stat::major(dev), nix::sys::stat::minor(dev))
}

/// The mount `path` is on in `mounts` (paths as the run's namespace sees them): the last
/// listed (the topmost) of those with the longest mount point above it.
fn mount_under<'m>(mounts: &'m [procfs::Mount], path: &Path) -> Option<&'m procfs::Mount> {
    let mut best: Option<&procfs::Mount> = None;
    for m in mounts.iter().filter(|m| path.starts_with(&m.mount_point)) {
        if best.is_none_or(|b| {
            Path::new(&m.mount_point).components().count() >= Path::new(&b.mount_point).components().count()
        }) {
            best = Some(m);
        }
    }
    best
}

/// The id of the mount `path` leads to (a /proc link followed): the `mnt_id` of
/// /proc/self/fdinfo for a descriptor opened on it. Mount ids are unique across namespaces.
fn mount_id(path: &Path) -> Option<u32> {
    let fd = open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    // SAFETY: open just returned this descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines().find_map(|l| l.strip_prefix("mnt_id:")).and_then(|m| m.trim().parse().ok())
}

/// The PID namespace of the proc mounted at `at` under `pid`'s root: that of the proc's
/// PID 1 (the namespace's init), or, where PID 1 may not be looked at (a sandbox's agent),
/// that of a process the proc shows in no deeper namespace (one NSpid entry). Each path
/// component is opened beneath the process's root without following links: a link the lab
/// made cannot send the harness elsewhere.
fn proc_pid_ns(pid: i32, at: &str) -> Option<NsId> {
    let mut dir = open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()
    // SAFETY: open just returned this descriptor; nothing else owns it.
    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })?;
    for part in Path::new(at).components().filter(|c| matches!(c, std::path::Component::Normal(_))) {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let next = openat(Some(dir.as_raw_fd()), part.as_os_str(), flags, Mode::empty()).ok()?;
        // SAFETY: openat just returned this descriptor; nothing else owns it.
        dir = unsafe { OwnedFd::from_raw_fd(next) };
    }
    let is_proc =
        nix::sys::statfs::fstatfs(&dir).is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC);
    if !is_proc {
        return None;
    }
    let ns_of = |entry: &str| {
        nix::sys::stat::fstatat(Some(dir.as_raw_fd()), format!("{entry}/ns/pid").as_str(), nix::fcntl::AtFlags::empty())
            .ok()
            .map(|st| NsId { dev: st.st_dev, ino: st.st_ino })
    };
    if let Some(ns) = ns_of("1") {
        return Some(ns);
    }
    let listed = procfs::pid_entries(Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd()))).ok()?;
    listed.into_iter().find_map(|n| {
        let status = openat(
            Some(dir.as_raw_fd()),
            format!("{n}/status").as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        // SAFETY: openat just returned this descriptor; the File owns it from here.
        let text = std::io::read_to_string(unsafe { std::fs::File::from_raw_fd(status) }).ok()?;
        let top_level = procfs::parse_status(&text).ok()?.nspid.len() == 1;
        if top_level {
            ns_of(&n.to_string())
        } else {
            None
        }
    })
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

/// What the escapes could write without the harness seeing it otherwise: the scratch dir
/// itself and every entry in it but the jail (the sentinels' directory and the sentinels
/// among them), and the host's root directory itself. Relative path (`.` for the scratch
/// dir, `/` for the root) -> type and mode, owner, size, modification and change times, and
/// the exact content (files) or target (links). A change time moves with any write, chmod,
/// chown, link or rename, even one that puts the modification time back.
fn tree_outside_jail(scratch: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    out.insert(ROOT_ENTRY.to_string(), describe_entry(Path::new("/")).unwrap_or_default());
    out.insert(".".to_string(), describe_entry(scratch).unwrap_or_default());
    let mut pending = vec![scratch.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(Error::io("list", &dir))?.flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(scratch).unwrap_or(&path).display().to_string();
            if relative == JAIL_DIR {
                continue;
            }
            let Some(line) = describe_entry(&path) else { continue };
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path.clone());
            }
            out.insert(relative, line);
        }
    }
    Ok(out)
}

/// The key of the host's root directory in [`tree_outside_jail`].
const ROOT_ENTRY: &str = "/ (the host's root directory)";

fn describe_entry(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    let mut line = format!(
        "mode {:o} owner {}:{} size {} mtime {}.{} ctime {}.{}",
        meta.mode(),
        meta.uid(),
        meta.gid(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    );
    if meta.file_type().is_symlink() {
        line.push_str(&format!(" -> {:?}", std::fs::read_link(path).unwrap_or_default()));
    } else if meta.is_file() {
        let content = std::fs::read(path).unwrap_or_default();
        line.push_str(&format!(" content \"{}\"", content.escape_ascii()));
    }
    Some(line)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Evidence;

    /// Every attempt as a correct lab leaves it (the reviewed snapshot's facts, in short).
    fn as_measured() -> (BTreeMap<String, Jailed>, BTreeMap<String, Escaped>) {
        let (mut jailed, mut escaped) = (BTreeMap::new(), BTreeMap::new());
        for attempt in ATTEMPTS {
            let (mount_ns, mounts): (&str, &[&str]) = match attempt {
                PROC => (OWN_NS, &[HOST_PROC]),
                PIDNS_PROC => (OWN_NS, &[OWN_PROC]),
                PIVOT | PIVOT_FD => (OWN_NS, &[PIVOTED_ROOT]),
                _ => (RUN_NS, &[]),
            };
            let mut fds = vec![PIPE.to_string(), PIPE.to_string(), LOOT.to_string()];
            if [FD, PIVOT_FD].contains(&attempt) {
                fds.push(DOOR.to_string());
            }
            let id = match attempt {
                AS_NOBODY => NOBODY,
                USERNS_MAPPED => MAPPED_ID,
                _ => 0,
            };
            let caps: &[&str] = match attempt {
                NO_CAP => &[],
                AS_NOBODY => &["bounding"],
                _ => &["effective", "permitted", "bounding"],
            };
            // The witness is within reach of the attempts that are root in the host's user namespace.
            let within_reach = if attempt == AS_NOBODY || attempt.starts_with("userns") {
                Vec::new()
            } else {
                vec![format!("{WITNESS_COMM}: {SEALED}")]
            };
            jailed.insert(
                attempt.to_string(),
                Jailed {
                    root: JAIL.into(),
                    cwd: "its root".into(),
                    threads: 1,
                    mount_ns: mount_ns.into(),
                    mounts: mounts.iter().map(|m| m.to_string()).collect(),
                    fds: sorted(fds),
                    cap_sys_chroot_in: caps.iter().map(|c| c.to_string()).collect(),
                    other_caps_in: Vec::new(),
                    within_reach: within_reach.clone(),
                    uids: [id; 4],
                    gids: [id; 4],
                    user_ns: if attempt.starts_with("userns") { "its own" } else { "the host's" }.into(),
                    pid_1: attempt.starts_with("pidns"),
                },
            );
            let stays = [NO_CAP, AS_NOBODY, PIVOT, PIDNS_PROC].contains(&attempt);
            let secret = if stays || attempt == USERNS_MAPPED { NOT_OPENED } else { HANDED_BACK };
            escaped.insert(
                attempt.to_string(),
                Escaped {
                    root: if stays { JAIL } else { HOST_ROOT }.into(),
                    mount_ns: mount_ns.into(),
                    threads: 1,
                    new_fds: Vec::new(),
                    within_reach,
                    secret: secret.into(),
                    public: if stays { NOT_OPENED } else { HANDED_BACK }.into(),
                },
            );
        }
        (jailed, escaped)
    }

    /// Each verdict's decision on the facts `change` makes of the measured ones.
    fn decide(
        change: impl FnOnce(&mut BTreeMap<String, Jailed>, &mut BTreeMap<String, Escaped>),
    ) -> BTreeMap<&'static str, bool> {
        let (mut jailed, mut escaped) = as_measured();
        change(&mut jailed, &mut escaped);
        let mut facts = Facts::default();
        facts.record(JAILED_ATTEMPTS, jailed);
        facts.record(ESCAPED_ATTEMPTS, escaped);
        for probe in [NO_CAP_CHROOT, NOBODY_CHROOT, USERNS_IN_CHROOT] {
            facts.record(probe, "EPERM".to_string());
        }
        facts.record(OUTSIDE_CHANGES, Vec::new());
        facts.record(HOST_CHANGES, Vec::new());
        let evidence = Evidence::new(&facts);
        VERDICTS.iter().map(|v| (v.id, (v.decide)(&evidence) == Some(true))).collect()
    }

    /// The verdicts that do not pass once `change` is made.
    fn failing(
        change: impl FnOnce(&mut BTreeMap<String, Jailed>, &mut BTreeMap<String, Escaped>),
    ) -> Vec<&'static str> {
        decide(change).into_iter().filter(|(_, passed)| !passed).map(|(id, _)| id).collect()
    }

    fn jailed_mut<'a>(j: &'a mut BTreeMap<String, Jailed>, attempt: &str) -> &'a mut Jailed {
        j.get_mut(attempt).expect("every attempt is measured")
    }

    #[test]
    fn the_measured_facts_pass_every_verdict() {
        assert_eq!(failing(|_, _| {}), Vec::<&str>::new());
    }

    #[test]
    fn a_root_on_a_bind_mount_of_the_host_or_a_mount_exposing_it_is_no_classic_escape() {
        let failed = failing(|_, x| x.get_mut(CLASSIC).expect("classic").root = HOST_ROOT_ELSEWHERE.into());
        assert!(failed.contains(&"classic-escape"), "{failed:?}");
        let failed = failing(|j, _| {
            jailed_mut(j, CLASSIC).mounts = vec![format!("/host: {EXPOSES_THE_HOST}: ext4 / of /dev/vda")]
        });
        assert!(failed.contains(&"classic-escape"), "{failed:?}");
        let failed = failing(|_, x| x.get_mut(CLASSIC).expect("classic").mount_ns = OWN_NS.into());
        assert!(failed.contains(&"classic-escape"), "{failed:?}");
    }

    #[test]
    fn a_second_thread_at_either_stage_fails_the_attempt() {
        assert!(failing(|j, _| jailed_mut(j, CLASSIC).threads = 2).contains(&"classic-escape"));
        assert!(failing(|_, x| x.get_mut(FD).expect("fd").threads = 2).contains(&"fd-escape"));
        assert!(failing(|j, _| jailed_mut(j, PIVOT).threads = 2).contains(&"pivot-lands-inside"));
    }

    #[test]
    fn a_route_the_verdict_does_not_name_fails_it() {
        let pidfd = "a pidfd: a way to another process's descriptors (pidfd_getfd) and namespaces (setns)";
        assert!(failing(|j, _| jailed_mut(j, CLASSIC).fds.push(pidfd.into())).contains(&"classic-escape"));
        assert!(failing(|j, _| jailed_mut(j, CLASSIC).fds.push(DOOR.into())).contains(&"classic-escape"));
        let twice = failing(|j, _| jailed_mut(j, FD).fds.push(DOOR.into()));
        assert!(twice.contains(&"door-opened-before") && twice.contains(&"fd-escape"), "{twice:?}");
        let elsewhere = "a directory leading out: the workdir, opened O_RDONLY|O_DIRECTORY, on another mount \
                         (another namespace's, or a tree of no namespace)";
        let failed = failing(|j, _| {
            let fd = jailed_mut(j, FD);
            fd.fds.retain(|f| f != DOOR);
            fd.fds.push(elsewhere.into());
        });
        assert!(failed.contains(&"door-opened-before"), "{failed:?}");
        let failed = failing(|_, x| x.get_mut(FD).expect("fd").new_fds = vec![DOOR.into()]);
        assert!(failed.contains(&"fd-escape"), "{failed:?}");
    }

    #[test]
    fn a_defence_row_checks_its_defence_was_really_there() {
        // Not pivoted (a chroot in a mount namespace of its own), or the old root still mounted.
        assert!(failing(|j, _| jailed_mut(j, PIVOT).mounts.clear()).contains(&"pivot-lands-inside"));
        let old_root = format!("/.oldroot: {EXPOSES_THE_HOST}: ext4 / of /dev/vda");
        assert!(failing(|j, _| jailed_mut(j, PIVOT).mounts.push(old_root)).contains(&"pivot-lands-inside"));
        assert!(failing(|j, _| jailed_mut(j, PIVOT_FD).mounts.clear()).contains(&"pivot-fd-leads-out"));
        // The host's proc in the PID namespace's jail, or none at all.
        let failed = failing(|j, _| jailed_mut(j, PIDNS_PROC).mounts = vec![HOST_PROC.into()]);
        assert!(failed.contains(&"pidns-own-proc-stays"), "{failed:?}");
        assert!(failing(|j, _| jailed_mut(j, PIDNS_PROC).mounts.clear()).contains(&"pidns-own-proc-stays"));
        // CAP_SYS_CHROOT left in the bounding set; a saved or filesystem uid of root's.
        let failed = failing(|j, _| jailed_mut(j, NO_CAP).cap_sys_chroot_in = vec!["bounding".into()]);
        assert!(failed.contains(&"no-cap-stays"), "{failed:?}");
        assert!(failing(|j, _| jailed_mut(j, AS_NOBODY).uids[2] = 0).contains(&"nobody-stays"));
        assert!(failing(|j, _| jailed_mut(j, AS_NOBODY).uids[3] = 0).contains(&"nobody-stays"));
        assert!(failing(|j, _| jailed_mut(j, AS_NOBODY).gids[2] = 0).contains(&"nobody-stays"));
        let failed = failing(|j, _| jailed_mut(j, AS_NOBODY).cap_sys_chroot_in = vec!["permitted".into()]);
        assert!(failed.contains(&"nobody-stays"), "{failed:?}");
    }

    #[test]
    fn a_capability_beyond_cap_sys_chroot_or_an_unsealed_process_within_reach_fails_the_attempt() {
        // CAP_SYS_ADMIN kept: setns into the host's mount namespace is another way out.
        let failed = failing(|j, _| jailed_mut(j, CLASSIC).other_caps_in = vec!["effective".into()]);
        assert!(failed.contains(&"classic-escape"), "{failed:?}");
        let failed = failing(|j, _| jailed_mut(j, AS_NOBODY).other_caps_in = vec!["bounding".into()]);
        assert!(failed.contains(&"nobody-stays"), "{failed:?}");
        let helper = "esc-helper: not sealed: seccomp mode 0, 1 thread(s), holding a pipe".to_string();
        let failed = failing(|j, _| jailed_mut(j, PROC).within_reach.push(helper.clone()));
        assert!(failed.contains(&"proc-escape"), "{failed:?}");
        let failed = failing(|_, x| x.get_mut(FD).expect("fd").within_reach.push(helper.clone()));
        assert!(failed.contains(&"fd-escape"), "{failed:?}");
    }

    fn outside(name: &str, uid: u32, cap_prm: u64, seccomp: u32, fds: &[&str]) -> Outside {
        let status = procfs::ProcStatus {
            name: name.into(),
            uid: [uid; 4],
            cap_prm,
            threads: 1,
            seccomp: Some(seccomp),
            ..Default::default()
        };
        Outside {
            name: name.into(),
            status,
            user_ns: Some(NsId { dev: 4, ino: 1 }),
            fds: fds.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn within_reach_is_what_ptrace_access_allows() {
        let host = NsId { dev: 4, ino: 1 };
        let chroot_only = procfs::ProcStatus { cap_eff: 1 << 18, cap_prm: 1 << 18, ..Default::default() };
        let everything = u64::MAX >> 23;
        let processes = [
            outside("lab-chroot-escape", 0, everything, 0, &[PIPE]),
            outside("esc-witness", 0, 0, 1, &[PIPE, CHAR_DEVICE]),
            outside("esc-helper", 0, 1 << 18, 0, &[PIPE, "a directory leading out: /"]),
            outside("nobody-helper", NOBODY, 0, 0, &[]),
        ];
        assert_eq!(
            within_reach(&chroot_only, Some(host), host, &processes),
            [
                "esc-helper: not sealed: seccomp mode 0, 1 thread(s), holding a directory leading out: /; a pipe",
                &format!("esc-witness: {SEALED}"),
            ]
        );
        // CAP_SYS_PTRACE reaches every one of them.
        let ptrace = procfs::ProcStatus { cap_eff: 1 << 19, ..chroot_only.clone() };
        assert_eq!(within_reach(&ptrace, Some(host), host, &processes).len(), processes.len());
        // In a user namespace of its own, the host's processes are out of reach.
        assert!(within_reach(&chroot_only, Some(NsId { dev: 4, ino: 2 }), host, &processes).is_empty());
    }

    #[test]
    fn open_flags_are_said_as_open_2_names_them() {
        assert_eq!(open_flags(libc::O_RDONLY | libc::O_DIRECTORY | libc::O_LARGEFILE), "O_RDONLY|O_DIRECTORY");
        assert_eq!(open_flags(libc::O_PATH | libc::O_DIRECTORY), "O_PATH|O_DIRECTORY");
        assert_eq!(open_flags(libc::O_RDWR), "O_RDWR");
    }

    #[test]
    fn the_mount_a_path_is_on_is_the_topmost_of_the_deepest() {
        let text = "27 1 254:0 / / rw - ext4 /dev/vda rw\n\
                    50 27 0:60 / /var/lib/cilab/scratch/r rw - tmpfs cilab-scratch rw\n\
                    51 50 0:61 / /var/lib/cilab/scratch/r rw - tmpfs cilab-scratch rw\n";
        let mounts = procfs::parse_mountinfo(text).expect("parses");
        assert_eq!(mount_under(&mounts, Path::new("/var/lib/cilab/scratch/r/jail")).map(|m| m.id), Some(51));
        assert_eq!(mount_under(&mounts, Path::new("/var/lib")).map(|m| m.id), Some(27));
        assert_eq!(mounts[1].dev, "0:60");
    }
}
