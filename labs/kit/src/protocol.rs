//! The hold handshake between a lab and the harness, and the contract both sides share.
//!
//! In hold mode a lab prints exactly one JSON line per stage on stdout:
//! `{"cilab":"hold","stage":"init-running","claims":{...}}` and then blocks until the
//! harness writes `continue` on its stdin. End of file on stdin means the harness is gone:
//! the lab tears down and exits. `claims` are what the lab believes (its PIDs, say); the
//! harness shows them to a student but grades only on what it observes itself.
//!
//! A held lab (or any process it forked) that panics prints one [`PanicMessage`] line on
//! stdout instead: `{"cilab":"panic","message":"...","location":"src/main.rs:123","region":"private-proc"}`
//! (`region` is null outside any STUDENT region), then exits with status 101.

use serde::{Deserialize, Serialize};

/// The word the harness writes (one line) to let a held lab go on.
pub const CONTINUE: &str = "continue";
/// The value of the `cilab` key that marks a protocol line on a lab's stdout.
pub const HOLD_TAG: &str = "hold";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldMessage {
    pub cilab: String,
    pub stage: String,
    #[serde(default)]
    pub claims: serde_json::Value,
}

impl HoldMessage {
    pub fn new(stage: &str, claims: serde_json::Value) -> Self {
        HoldMessage { cilab: HOLD_TAG.to_string(), stage: stage.to_string(), claims }
    }

    /// Parses one line of a lab's stdout; `None` if it is not a protocol line.
    pub fn parse(line: &str) -> Option<Self> {
        serde_json::from_str::<HoldMessage>(line.trim()).ok().filter(|m| m.cilab == HOLD_TAG)
    }
}

/// The value of the `cilab` key on the line a panicking lab prints.
pub const PANIC_TAG: &str = "panic";
/// The exit status of a lab (or of one of its processes) that panicked, as Rust's own.
pub const PANIC_EXIT: i32 = 101;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PanicMessage {
    pub cilab: String,
    /// The panic's message, e.g. `not yet implemented: <hint>`.
    pub message: String,
    /// `file:line` of the panic; the lab's own source is `src/main.rs`.
    pub location: String,
    /// The STUDENT region that encloses `location`, if any.
    pub region: Option<String>,
}

impl PanicMessage {
    pub fn new(message: &str, location: &str, region: Option<&str>) -> Self {
        PanicMessage {
            cilab: PANIC_TAG.to_string(),
            message: message.to_string(),
            location: location.to_string(),
            region: region.map(str::to_string),
        }
    }

    /// Parses one line of a lab's stdout; `None` if it is not a panic line.
    pub fn parse(line: &str) -> Option<Self> {
        serde_json::from_str::<PanicMessage>(line.trim()).ok().filter(|m| m.cilab == PANIC_TAG)
    }
}

/// The pid-ns lab: stages and the names its processes give themselves (comm), so the
/// harness can tell them apart in /proc.
pub mod pid_ns {
    pub const UNSHARED: &str = "unshared";
    pub const INIT_RUNNING: &str = "init-running";
    pub const ORPHANED: &str = "orphaned";
    pub const HANDLER_INSTALLED: &str = "handler-installed";
    pub const INIT_GONE: &str = "init-gone";
    pub const STAGES: [&str; 5] = [UNSHARED, INIT_RUNNING, ORPHANED, HANDLER_INSTALLED, INIT_GONE];

    pub const INIT_COMM: &str = "pidns-init";
    pub const SLEEPER_COMM: &str = "pidns-sleeper";
    pub const ORPHAN_PARENT_COMM: &str = "pidns-parent";
    pub const ORPHAN_COMM: &str = "pidns-orphan";
    /// File in the workdir where the init's signal handler records `<signal> <si_pid>` lines.
    pub const HANDLER_LOG: &str = "handler-si_pid.log";
}

/// The chroot-jail lab: where things are inside its workdir and the jail.
pub mod chroot_jail {
    pub const BINARY_ALONE: &str = "binary-alone";
    pub const WITH_LIBRARIES: &str = "with-libraries";
    pub const JAILED: &str = "jailed";
    pub const PRIVATE_MOUNTS: &str = "private-mounts";
    pub const STAGES: [&str; 4] = [BINARY_ALONE, WITH_LIBRARIES, JAILED, PRIVATE_MOUNTS];

    /// The jail directory, relative to the workdir.
    pub const JAIL_DIR: &str = "jail";
    /// A host directory (relative to the workdir) bound read-only into the jail.
    pub const HOST_DATA_DIR: &str = "host-data";
    pub const HOST_NOTE: &str = "notes.txt";
    /// Where the host data appears inside the jail.
    pub const BIND_TARGET_IN_JAIL: &str = "/mnt/host-data";
    /// The dynamically linked host program copied into the jail, and where it lands.
    pub const DYNAMIC_PROGRAM: &str = "echo";
    pub const DYNAMIC_PROGRAM_IN_JAIL: &str = "/usr/bin/echo";
    pub const BUSYBOX_IN_JAIL: &str = "/bin/busybox";
    pub const JAILED_COMM: &str = "jail-shell";
    pub const PRIVATE_COMM: &str = "jail-private";
}

/// The nsenter-join lab: stages (the lab's own target container, and the `--docker`
/// variant's, named apart), the names its processes give themselves, and what the target
/// container holds.
pub mod nsenter_join {
    pub const RUNNING: &str = "running";
    pub const JOINED: &str = "joined";
    pub const DEBUGGING: &str = "debugging";
    pub const ALL_BUT_PID: &str = "all-but-pid";
    pub const STOPPED: &str = "stopped";
    pub const STAGES: [&str; 5] = [RUNNING, JOINED, DEBUGGING, ALL_BUT_PID, STOPPED];

    /// The argument that makes the target a real Docker container (the variant).
    pub const DOCKER_FLAG: &str = "--docker";
    pub const DOCKER_RUNNING: &str = "docker-running";
    pub const DOCKER_JOINED: &str = "docker-joined";
    pub const DOCKER_DEBUGGING: &str = "docker-debugging";
    pub const DOCKER_ALL_BUT_PID: &str = "docker-all-but-pid";
    pub const DOCKER_STOPPED: &str = "docker-stopped";
    pub const DOCKER_REMOVED: &str = "docker-removed";
    pub const DOCKER_STAGES: [&str; 6] =
        [DOCKER_RUNNING, DOCKER_JOINED, DOCKER_DEBUGGING, DOCKER_ALL_BUT_PID, DOCKER_STOPPED, DOCKER_REMOVED];
    /// The label (its value: the lab's workdir) on the Docker image and container the lab
    /// makes: how the harness finds them from outside, and removes them if the lab cannot.
    pub const DOCKER_LABEL: &str = "cilab.scratch";
    /// The image the lab imports (`<repository>:<lab's PID>`).
    pub const DOCKER_REPOSITORY: &str = "cilab-nsenter-join";
    /// The Docker container's PID limit (`docker run --pids-limit`).
    pub const DOCKER_PIDS_LIMIT: u32 = 64;

    /// The lab's own container: the process that unshares its namespaces and forks its init.
    pub const SHIM_COMM: &str = "nsj-shim";
    /// Joins ipc, uts, net and pid of the target, then forks the joined processes.
    pub const JOINER_COMM: &str = "nsj-joiner";
    /// The joined process (the seed's `nsenter ... sleep 600`).
    pub const JOINED_COMM: &str = "nsj-sleep";
    /// A second joined process, for a kill from inside the container.
    pub const VICTIM_COMM: &str = "nsj-victim";
    /// The debug tool: joins pid and net, not mnt; its child mounts a proc of its own.
    pub const DEBUGGER_COMM: &str = "nsj-debugger";
    pub const DEBUG_COMM: &str = "nsj-debug";
    /// Joins every namespace of the target but its PID namespace.
    pub const NOPID_COMM: &str = "nsj-nopid";
    /// Tries setns(CLONE_NEWNS) with two threads.
    pub const THREADED_COMM: &str = "nsj-threaded";

    /// The container's rootfs, relative to the workdir.
    pub const ROOTFS_DIR: &str = "rootfs";
    /// The service on the container's loopback (busybox httpd) and what it serves.
    pub const SERVICE_PORT: u16 = 7654;
    pub const SERVICE_FILE: &str = "www/cilab";
    pub const SERVICE_WORD: &str = "cilab-service-in-the-container";
    /// What the container's init prints once its service listens.
    pub const LISTENING: &str = "cilab-listening";
    /// The container's hostname (the lab's own container).
    pub const HOSTNAME: &str = "nsj-target";
}

/// The pivot-root lab: stages, names of its processes, and where things are in its workdir.
pub mod pivot_root {
    /// The container's namespaces are made; its mounts are still shared with the host's.
    pub const SHARED: &str = "shared";
    /// `/` made private (MS_REC|MS_PRIVATE) in the container's mount namespace.
    pub const PRIVATE: &str = "private";
    /// The new root bind-mounted onto itself: a mount point.
    pub const BOUND: &str = "bound";
    /// pivot_root done, the old root lazily unmounted, proc mounted.
    pub const PIVOTED: &str = "pivoted";
    /// The descriptors that led outside are closed, right before the exec.
    pub const FDS_CLOSED: &str = "fds-closed";
    /// A second container, pivoted the way runc does it: pivot_root(".", ".").
    pub const RUNC_PIVOTED: &str = "runc-pivoted";
    pub const STAGES: [&str; 6] = [SHARED, PRIVATE, BOUND, PIVOTED, FDS_CLOSED, RUNC_PIVOTED];

    /// The variant `--tmpfs`: the rootfs copied into a tmpfs, and the pivot onto that.
    pub const TMPFS_FLAG: &str = "--tmpfs";
    pub const TMPFS_PIVOTED: &str = "tmpfs-pivoted";
    pub const TMPFS_STAGES: [&str; 1] = [TMPFS_PIVOTED];

    /// The new root, relative to the workdir.
    pub const ROOTFS_DIR: &str = "rootfs";
    /// Where the tmpfs variant mounts its tmpfs (relative to the workdir).
    pub const TMPFS_ROOT_DIR: &str = "rootfs-tmpfs";
    /// Where pivot_root puts the old root, inside the new one.
    pub const PUT_OLD: &str = "oldroot";
    /// A directory outside the new root, with a file the container must not reach.
    pub const SENTINEL_DIR: &str = "outside";
    pub const SENTINEL_FILE: &str = "sentinel.txt";
    pub const HOSTNAME: &str = "tupperware";

    pub const LAUNCHER_COMM: &str = "pivot-launch";
    pub const INIT_COMM: &str = "pivot-init";
    pub const RUNC_LAUNCHER_COMM: &str = "runc-launch";
    pub const RUNC_INIT_COMM: &str = "runc-init";
    pub const TMPFS_LAUNCHER_COMM: &str = "tmpfs-launch";
    pub const TMPFS_INIT_COMM: &str = "tmpfs-init";
}

/// The userns-maps lab: stages (the lab's own maps, and the `--subids` variant's, named
/// apart), the names its processes give themselves, and where things are in its workdir.
pub mod userns_maps {
    /// The child has unshared its user namespace; no map is written yet.
    pub const UNSHARED: &str = "unshared";
    /// The parent wrote uid_map, setgroups and gid_map.
    pub const MAPPED: &str = "mapped";
    /// Root inside: a mount and a hostname in namespaces the user namespace owns, a file
    /// made in the mapped user's directory, and a nested user namespace.
    pub const ROOT_INSIDE: &str = "root-inside";
    pub const STAGES: [&str; 3] = [UNSHARED, MAPPED, ROOT_INSIDE];

    /// The variant `--subids`: maps written by newuidmap/newgidmap from /etc/subuid ranges.
    pub const SUBIDS_FLAG: &str = "--subids";
    /// The variant's child has unshared its user namespace; newuidmap has not run yet.
    pub const SUBIDS_UNSHARED: &str = "subids-unshared";
    pub const SUBIDS_MAPPED: &str = "subids-mapped";
    pub const SUBIDS_STAGES: [&str; 2] = [SUBIDS_UNSHARED, SUBIDS_MAPPED];

    /// The unprivileged writer of the maps (runs as the id the lab chose).
    pub const PARENT_COMM: &str = "userns-parent";
    /// The process that unshares the user namespace (root inside once mapped).
    pub const CHILD_COMM: &str = "userns-child";
    /// A child of the child that execs `sleep` as the unmapped user.
    pub const EXEC_COMM: &str = "userns-exec";
    /// A child of the child in a user namespace nested in the child's.
    pub const NESTED_COMM: &str = "userns-nested";
    /// The variant's writer (runs newuidmap/newgidmap) and its child.
    pub const SUBIDS_PARENT_COMM: &str = "subids-parent";
    pub const SUBIDS_CHILD_COMM: &str = "subids-child";

    /// The lab chooses its unprivileged id from here up: an id with no account, no group
    /// and no process on the machine (below the subordinate range).
    pub const FIRST_CANDIDATE_ID: u32 = 42000;
    pub const LAST_CANDIDATE_ID: u32 = 42999;
    /// The subordinate range the variant adds to /etc/subuid and /etc/subgid.
    pub const SUBID_START: u32 = 100000;
    pub const SUBID_COUNT: u32 = 65536;
    /// The account name the variant gives the lab's id in its copy of /etc/passwd.
    pub const ACCOUNT: &str = "cilab-userns";

    /// The mapped user's directory (relative to the workdir), owned by the lab's id.
    pub const HOME_DIR: &str = "home";
    /// Where root inside mounts a tmpfs (in its own mount namespace), under HOME_DIR.
    pub const MOUNT_DIR: &str = "mnt";
    /// The file root inside creates in HOME_DIR.
    pub const MADE_INSIDE: &str = "made-inside";
    /// The hostname root inside sets in its own UTS namespace.
    pub const HOSTNAME: &str = "userns-lab";
    /// The variant: a directory everybody may write in (mode 1777), and the file uid 1
    /// inside creates there.
    pub const SHARED_DIR: &str = "shared";
    pub const MADE_BY_UID_1: &str = "made-by-uid-1";
    /// The variant's copies of the files newuidmap reads (relative to the workdir).
    pub const ETC_COPIES_DIR: &str = "etc";
}

/// The cgroup-limits lab: stages, the names its workloads give themselves, the cgroup it
/// makes and the limits it writes.
pub mod cgroup_limits {
    /// The lab's cgroup is made under the run's and its limits written; no workload yet.
    pub const MADE: &str = "made";
    /// A bounded fork bomb, put in the cgroup before it forked, has forked until EAGAIN.
    pub const BOMB_HELD: &str = "bomb-held";
    /// The lab killed its cgroup (v2 cgroup.kill; v1 freeze, SIGKILL each, thaw).
    pub const BOMB_KILLED: &str = "bomb-killed";
    /// A memory hog touched more than the limit; it is held as a zombie, not yet reaped.
    pub const OOM: &str = "oom";
    /// A busy loop runs under the cpu quota.
    pub const CPU: &str = "cpu";
    /// The cgroup is frozen, with the busy loop and a sleeper in it.
    pub const FROZEN: &str = "frozen";
    /// The cgroup is thawed.
    pub const THAWED: &str = "thawed";
    /// The lab moved its last process out of its cgroup.
    pub const MOVED_OUT: &str = "moved-out";
    /// The lab removed its cgroups.
    pub const REMOVED: &str = "removed";
    pub const STAGES: [&str; 9] = [MADE, BOMB_HELD, BOMB_KILLED, OOM, CPU, FROZEN, THAWED, MOVED_OUT, REMOVED];

    /// The lab's cgroup, made in each hierarchy it uses.
    pub const CGROUP_NAME: &str = "lab-limits";
    /// pids.max of the lab's cgroup: the bomb is held at this many processes.
    pub const PIDS_MAX: u32 = 16;
    /// The most forks the bomb tries (it stops at its first EAGAIN): more than the run's
    /// own pids.max, so that a bomb without a limit of its own meets the run's.
    pub const BOMB_FORKS: u32 = 1024;
    /// The memory limit of the lab's cgroup (no swap), in bytes: 64 MiB.
    pub const MEMORY_MAX: u64 = 64 * 1024 * 1024;
    /// The most the hog touches: more than the run's own memory limit (512 MiB).
    pub const HOG_BYTES: u64 = 1024 * 1024 * 1024;
    /// The cpu quota: 20 ms of CPU time in every 100 ms period, 20% of one CPU.
    pub const CPU_QUOTA_US: u64 = 20_000;
    pub const CPU_PERIOD_US: u64 = 100_000;

    pub const BOMB_COMM: &str = "cg-bomb";
    pub const BOMB_CHILD_COMM: &str = "cg-bomblet";
    pub const HOG_COMM: &str = "cg-hog";
    pub const SPIN_COMM: &str = "cg-spin";
    pub const SLEEPER_COMM: &str = "cg-sleeper";
    /// Every process the lab puts in its cgroup, by name.
    pub const WORKLOAD_COMMS: [&str; 5] = [BOMB_COMM, BOMB_CHILD_COMM, HOG_COMM, SPIN_COMM, SLEEPER_COMM];
    /// The lab binary's name as /proc/<pid>/comm shows it (cut to 15 bytes).
    pub const LAB_COMM: &str = "lab-cgroup-limi";
}

/// The rootfs-import lab: stages (the lab's own, and the `--docker` variant's, named
/// apart), where the archives and the trees are in its workdir, and the importer's limits.
pub mod rootfs_import {
    /// The busybox rootfs tarball is imported into ROOTFS_DIR.
    pub const IMPORTED: &str = "imported";
    /// busybox runs chrooted in the imported root, in a private mount namespace, proc mounted.
    pub const RUNNING: &str = "running";
    /// The two-layer OCI image is flattened into FLAT_DIR.
    pub const FLATTENED: &str = "flattened";
    /// Each archive of the hostile corpus is imported into a target of its own.
    pub const HOSTILE: &str = "hostile";
    pub const STAGES: [&str; 4] = [IMPORTED, RUNNING, FLATTENED, HOSTILE];

    /// The variant `--docker`: `docker import` of the same tarball, and a container from it.
    pub const DOCKER_FLAG: &str = "--docker";
    pub const DOCKER_RUNNING: &str = "docker-running";
    pub const DOCKER_REMOVED: &str = "docker-removed";
    pub const DOCKER_STAGES: [&str; 2] = [DOCKER_RUNNING, DOCKER_REMOVED];
    /// The label (its value: the lab's workdir) on the image and container the lab makes
    /// (not nsenter-join's: each lab's observer cleans up what carries its own).
    pub const DOCKER_LABEL: &str = "cilab.rootfs-import.scratch";
    pub const DOCKER_REPOSITORY: &str = "cilab-rootfs-import";

    /// The rootfs tarball (gzip), relative to the workdir.
    pub const ROOTFS_TARBALL: &str = "rootfs.tar.gz";
    /// Where it is imported.
    pub const ROOTFS_DIR: &str = "rootfs";
    /// The OCI layout, and where its layers are flattened.
    pub const OCI_DIR: &str = "oci";
    pub const FLAT_DIR: &str = "flat";
    /// The hostile corpus: HOSTILE_DIR/archives/<name>.tar[.gz], each imported into
    /// HOSTILE_DIR/targets/<name>/, beside the sentinel tree HOSTILE_DIR/outside/.
    pub const HOSTILE_DIR: &str = "hostile";
    pub const ARCHIVES_DIR: &str = "archives";
    pub const TARGETS_DIR: &str = "targets";
    pub const OUTSIDE_DIR: &str = "outside";
    pub const SENTINEL_FILE: &str = "secret.txt";
    pub const SENTINEL_SUBDIR: &str = "dir";
    pub const SENTINEL_TEXT: &str = "outside every target: no archive may change this\n";
    /// A file of the sentinel tree owned by SENTINEL_OWNER (uid and gid).
    pub const SENTINEL_OWNED: &str = "owned.txt";
    pub const SENTINEL_OWNER: u32 = 4242;
    /// The name of the harmless entry every corpus archive begins with: this, then 16 hex
    /// digits picked at random when the archives are made.
    pub const FIRST_PREFIX: &str = "cilab-first-";
    /// The file `pax-global` makes after its PAX global header.
    pub const GLOBAL_TEXT: &str = "made after a PAX global header, inside the target\n";
    /// The last entry of every corpus archive.
    pub const MARKER: &str = "imported-to-the-end";
    /// Contents the corpus writes where a file is replaced, and what it held before.
    pub const ORIGINAL: &str = "the first file of this name\n";
    pub const REPLACED: &str = "the entry that replaced it\n";

    /// The most bytes an import may write (all regular files together): 64 MiB.
    pub const SIZE_LIMIT: u64 = 64 * 1024 * 1024;
    /// The gzip bomb's one file: 2 GiB of zeros.
    pub const BOMB_BYTES: u64 = 2 * 1024 * 1024 * 1024;
    /// The long-name bomb's GNU long name: 1 GiB.
    pub const LONG_NAME_BOMB_BYTES: u64 = 1024 * 1024 * 1024;
    /// The PAX bomb's one `comment` record: 200 MiB (a multiple of 512: no padding).
    pub const PAX_BOMB_BYTES: u64 = 200 * 1024 * 1024;
    /// The most entries an import may take from an archive.
    pub const MAX_ENTRIES: u64 = 100_000;
    /// The most bytes the tar reader may read between two entries on its own: headers,
    /// GNU long names, PAX records, the padding and skipped body of the entry before.
    pub const HEADER_LIMIT: u64 = 1024 * 1024;
    /// The most bytes an import may read from an archive (decompressed), all together.
    pub const READ_LIMIT: u64 = 256 * 1024 * 1024;
    /// The lab's safety net for memory (RLIMIT_AS of the process that imports the corpus):
    /// a reader that buffers a 1 GiB long name fails here instead of taking the machine's memory.
    pub const ADDRESS_SPACE_NET: u64 = 768 * 1024 * 1024;
    /// The lab's own safety net under the importer (RLIMIT_FSIZE of the process that
    /// imports the corpus): an importer without a size limit stops here, not at a full disk.
    pub const FILE_SIZE_NET: u64 = 2 * SIZE_LIMIT;

    /// The process that runs busybox in the imported root (its comm until the exec).
    pub const RUNNER_COMM: &str = "ri-runner";
    /// The process that imports the corpus.
    pub const HOSTILE_COMM: &str = "ri-hostile";
}

/// The chroot-escape lab: stages, the escape attempts (each one process, named
/// `esc-<attempt>`), and where things are in its workdir.
pub mod chroot_escape {
    /// Every attempt's process is in its jail, its defence applied; nothing tried yet.
    pub const JAILED: &str = "jailed";
    /// Every attempt has tried its escape and handed back what it read; still alive.
    pub const ESCAPED: &str = "escaped";
    pub const STAGES: [&str; 2] = [JAILED, ESCAPED];

    /// The jail (a busybox rootfs), relative to the workdir.
    pub const JAIL_DIR: &str = "jail";
    /// Outside the jail, relative to the workdir: the sentinels, planted once every attempt
    /// is jailed (by the harness; by hand, by the lab).
    pub const OUTSIDE_DIR: &str = "outside";
    /// Per attempt `<attempt>.secret` (mode 0600, root's) and `<attempt>.public` (0644).
    pub const SECRET_SUFFIX: &str = ".secret";
    pub const PUBLIC_SUFFIX: &str = ".public";
    /// In the jail: one file per attempt, opened before the escape, where the escaped
    /// process writes `secret <content>` and `public <content>` lines of what it read.
    pub const LOOT_DIR: &str = "loot";
    /// In the jail: the directory the classic escape chroots into (made by the lab, so
    /// that an unprivileged attempt gets as far as the chroot).
    pub const SUB_DIR: &str = "sub";
    /// In the jail: where pivot_root puts the old root (unmounted at once).
    pub const PUT_OLD: &str = ".oldroot";
    /// The host id root is mapped to in the `userns-100k` attempt.
    pub const MAPPED_ID: u32 = 100000;
    /// The unprivileged user of the `nobody` attempt.
    pub const NOBODY: u32 = 65534;

    pub const CLASSIC: &str = "classic";
    pub const FD: &str = "fd";
    pub const PROC: &str = "proc";
    pub const NO_CAP: &str = "no-cap";
    pub const AS_NOBODY: &str = "nobody";
    pub const PIVOT: &str = "pivot";
    pub const PIVOT_FD: &str = "pivot-fd";
    pub const USERNS_ROOT: &str = "userns-root";
    pub const USERNS_MAPPED: &str = "userns-100k";
    pub const PIDNS_PROC: &str = "pidns-proc";
    pub const PIDNS: &str = "pidns";
    /// Every attempt, in the order the lab makes them.
    pub const ATTEMPTS: [&str; 11] =
        [CLASSIC, FD, PROC, NO_CAP, AS_NOBODY, PIVOT, PIVOT_FD, USERNS_ROOT, USERNS_MAPPED, PIDNS_PROC, PIDNS];
    /// An attempt's process names itself `esc-<attempt>`.
    pub const COMM_PREFIX: &str = "esc-";
    /// Unshares a PID namespace and forks the attempt's process as its init.
    pub const LAUNCHER_COMM: &str = "esc-launcher";
    /// Chroots, then tries to make a user namespace.
    pub const USERNS_TRY_COMM: &str = "esc-userns-try";
    /// A process outside the jail, root's, with no capability, sealed by seccomp's strict
    /// mode: the proc escapes walk its /proc/<pid>/root.
    pub const WITNESS_COMM: &str = "esc-witness";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_line_round_trips_and_other_lines_are_not_protocol() {
        let line = serde_json::to_string(&HoldMessage::new("x", serde_json::json!({"init": 5}))).expect("serialise");
        assert_eq!(HoldMessage::parse(&line).map(|m| m.stage), Some("x".to_string()));
        assert_eq!(HoldMessage::parse("hello"), None);
        assert_eq!(HoldMessage::parse(r#"{"cilab":"other","stage":"x"}"#), None);
    }

    #[test]
    fn panic_line_round_trips_and_is_no_hold_line() {
        let message = PanicMessage::new("not yet implemented: x", "src/main.rs:12", Some("fork-init"));
        let line = serde_json::to_string(&message).expect("serialise");
        assert_eq!(
            line,
            r#"{"cilab":"panic","message":"not yet implemented: x","location":"src/main.rs:12","region":"fork-init"}"#
        );
        assert_eq!(PanicMessage::parse(&line), Some(message));
        assert_eq!(HoldMessage::parse(&line), None);
        let outside = r#"{"cilab":"panic","message":"m","location":"src/main.rs:3","region":null}"#;
        assert_eq!(PanicMessage::parse(outside).and_then(|m| m.region), None);
        assert_eq!(PanicMessage::parse(r#"{"cilab":"hold","stage":"x","claims":{}}"#), None);
    }
}
