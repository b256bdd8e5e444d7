//! Checks for lab userns-maps. The harness learns the lab's unprivileged id from outside
//! (the Uid line of its map writer's /proc/<pid>/status), never from what the lab says.
//! It reads the maps and setgroups through /proc from the host, and from inside the lab's
//! user namespace in forked probes that setns into it (single-threaded children, never a
//! test thread); it asks the kernel who owns a namespace (ioctl NS_GET_USERNS,
//! NS_GET_PARENT, NS_GET_OWNER_UID); it stats the files made inside from the host. The
//! rules of the maps it demonstrates itself, in probes with the lab's id as credentials,
//! only with writes the kernel must refuse (a write that succeeded would take the lab's
//! one chance to write its map). As root inside, its probes try mount, sethostname,
//! chown, and kill host processes the harness started for the purpose.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use labkit::protocol::userns_maps::*;
use nix::errno::Errno;
use nix::mount::MntFlags;
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, setgroups, setresgid, setresuid, ForkResult, Gid, Pid, Uid};

use super::{errno_name, find_child_named, hostname, hostname_of, open_ns};
use crate::catalog::Observer;
use crate::error::{Error, Result};
use crate::facts::{Fact, Facts, Relation};
use crate::probe::forked::{self, ProbeFailure};
use crate::probe::pidfd::PidFd;
use crate::probe::procfs::{self, IdMapLine, Setgroups};
use crate::run::{LabRun, RunDoor};
use crate::verdict::VerdictSpec;

/// How the lab's id appears in facts: it is chosen at run time.
pub const LAB_ID: &str = "[lab id]";
/// What a write the kernel accepted is recorded as.
pub const WRITTEN: &str = "written";
/// How a creations watch says the scratch filesystem cannot report them (fanotify's
/// directory events need file handles: tmpfs before Linux 6.7 has none).
const NO_FID: &str = "not watched: the scratch filesystem cannot report creations";
/// What a probe records for what it did not try, and why.
const NOT_TRIED: &str = "not tried";

// ── facts, by stage ──────────────────────────────────────────────────────────────
const WRITER_UIDS: Fact<Vec<String>> = Fact::new("unshared.writer_uids_real_effective_saved_fs");
const WRITER_GIDS: Fact<Vec<String>> = Fact::new("unshared.writer_gids_real_effective_saved_fs");
const WRITER_GROUPS: Fact<Vec<String>> = Fact::new("unshared.writer_supplementary_groups");
const WRITER_CAPS: Fact<Vec<String>> = Fact::new("unshared.writer_capeff_capprm_capamb");
const WRITER_MNT_NS: Fact<Relation> = Fact::new("unshared.writer_mnt_ns_vs_the_runs");
const WRITER_UTS_NS: Fact<Relation> = Fact::new("unshared.writer_uts_ns_vs_the_runs");
const CHILD_MNT_NS_BEFORE: Fact<Relation> = Fact::new("unshared.child_mnt_ns_vs_the_runs");
const CHILD_UTS_NS_BEFORE: Fact<Relation> = Fact::new("unshared.child_uts_ns_vs_the_runs");
const EXEC_PROGRAM: Fact<String> = Fact::new("unshared.program_of_the_process_exec_d_as_the_unmapped_user");
const LAB_ID_IS_ROOT: Fact<bool> = Fact::new("unshared.lab_id_is_root");
const LAB_ID_ACCOUNT: Fact<bool> = Fact::new("unshared.lab_id_has_an_account_or_group");
const LAB_ID_ELSEWHERE: Fact<usize> = Fact::new("unshared.processes_of_the_lab_id_outside_the_lab");
const CHILD_USERNS: Fact<Relation> = Fact::new("unshared.child_user_ns_vs_host");
const CHILD_USERNS_OWNER: Fact<Relation> = Fact::new("unshared.child_user_ns_owner_vs_writer_uid");
const UID_MAP_BEFORE: Fact<Vec<String>> = Fact::new("unshared.uid_map_read_from_host");
const IDS_INSIDE_BEFORE: Fact<String> = Fact::new("unshared.child_ids_read_from_inside");
const OVERFLOW_IDS: Fact<String> = Fact::new("unshared.overflowuid_overflowgid");
const CHILD_CAPS: Fact<String> = Fact::new("unshared.child_capeff");
const EXEC_CAPS: Fact<String> = Fact::new("unshared.capeff_after_exec_as_the_unmapped_user");
const GID_MAP_FIRST: Fact<String> = Fact::new("unshared.gid_map_before_setgroups_deny_by_the_lab_id");
const NOT_OWNED: Fact<String> = Fact::new("unshared.uid_map_of_an_id_not_owned_by_the_lab_id");
const TWO_IDS: Fact<String> = Fact::new("unshared.uid_map_of_two_ids_by_the_lab_id");

const UID_MAP: Fact<Vec<String>> = Fact::new("mapped.uid_map_read_from_host");
const GID_MAP: Fact<Vec<String>> = Fact::new("mapped.gid_map_read_from_host");
const SETGROUPS: Fact<String> = Fact::new("mapped.setgroups_read_from_host");
const UID_MAP_INSIDE: Fact<Vec<String>> = Fact::new("mapped.uid_map_read_from_inside");
const GID_MAP_INSIDE: Fact<Vec<String>> = Fact::new("mapped.gid_map_read_from_inside");
const IDS_INSIDE: Fact<String> = Fact::new("mapped.child_ids_read_from_inside");
const MAP_WRITES: Fact<Vec<String>> = Fact::new("mapped.writes_to_the_map_files_seen_by_fanotify");
const SECOND_WRITE: Fact<String> = Fact::new("mapped.second_uid_map_write_by_the_lab_id");
const BACK_TO_ALLOW: Fact<String> = Fact::new("mapped.setgroups_allow_after_deny_by_the_lab_id");

const MNT_NS: Fact<Relation> = Fact::new("root-inside.child_mnt_ns_vs_host");
const UTS_NS: Fact<Relation> = Fact::new("root-inside.child_uts_ns_vs_host");
const MNT_OWNER: Fact<Relation> = Fact::new("root-inside.child_mnt_ns_owner_vs_child_user_ns");
const UTS_OWNER: Fact<Relation> = Fact::new("root-inside.child_uts_ns_owner_vs_child_user_ns");
const UMOUNT_COPY: Fact<String> = Fact::new("root-inside.umount_of_home_mnt_in_a_copy_of_the_childs_mnt_ns");
const TMPFS_IN_HOME: Fact<bool> = Fact::new("root-inside.child_has_a_tmpfs_on_home_mnt");
const HOST_CHANGES: Fact<Vec<String>> = Fact::new("root-inside.host_mount_changes");
const HOSTNAME_INSIDE: Fact<String> = Fact::new("root-inside.hostname_inside");
const HOST_HOSTNAME: Fact<Relation> = Fact::new("root-inside.host_hostname_vs_before");
const HOME_CREATIONS: Fact<Vec<String>> = Fact::new("root-inside.creations_in_home_seen_by_fanotify");
const MADE_INSIDE_OWNER: Fact<String> = Fact::new("root-inside.lab_file_made_inside_owner_on_host");
const PROBE_FILE_OWNER: Fact<String> = Fact::new("root-inside.file_made_by_root_inside_owner_on_host");
const ROOT_FILE_INSIDE: Fact<String> = Fact::new("root-inside.root_owned_host_dir_owner_seen_inside");
const CHOWN_UNMAPPED: Fact<String> = Fact::new("root-inside.chown_to_an_unmapped_id");
const MOUNT_HOST: Fact<String> = Fact::new("root-inside.mount_in_the_runs_mount_ns");
const MOUNT_OWNED: Fact<String> = Fact::new("root-inside.mount_in_a_mount_ns_of_the_user_ns");
const HOSTNAME_HOST: Fact<String> = Fact::new("root-inside.sethostname_in_the_hosts_uts_ns");
const HOSTNAME_OWNED: Fact<String> = Fact::new("root-inside.sethostname_in_a_uts_ns_of_the_user_ns");
const PID_NS: Fact<Relation> = Fact::new("root-inside.child_pid_ns_vs_host");
const KILL_OTHER: Fact<String> = Fact::new("root-inside.kill_of_a_host_process_of_another_user");
const KILL_OTHER_AFTER: Fact<String> = Fact::new("root-inside.that_process_afterwards");
const KILL_LAB_ID: Fact<String> = Fact::new("root-inside.kill_of_a_host_process_of_the_lab_id");
const KILL_LAB_ID_AFTER: Fact<String> = Fact::new("root-inside.that_lab_id_process_afterwards");
const KILL_FROM_PID_NS: Fact<String> = Fact::new("root-inside.kill_of_the_lab_id_process_from_a_pid_ns_of_the_user_ns");
const NESTED_PARENT: Fact<Relation> = Fact::new("root-inside.nested_user_ns_parent_vs_child_user_ns");
const NESTED_FROM_HOST: Fact<Vec<String>> = Fact::new("root-inside.nested_uid_map_read_from_host");
const NESTED_FROM_PARENT: Fact<Vec<String>> = Fact::new("root-inside.nested_uid_map_read_from_the_child_user_ns");
const HOST_MAP_INSIDE: Fact<Vec<String>> = Fact::new("root-inside.host_uid_map_read_from_inside");
const HOST_MAP_HOST: Fact<Vec<String>> = Fact::new("root-inside.host_uid_map_read_from_host");

const SUB_WRITER_UIDS: Fact<Vec<String>> = Fact::new("subids-unshared.writer_uids_real_effective_saved_fs");
const SUB_WRITER_GIDS: Fact<Vec<String>> = Fact::new("subids-unshared.writer_gids_real_effective_saved_fs");
const SUB_WRITER_GROUPS: Fact<Vec<String>> = Fact::new("subids-unshared.writer_supplementary_groups");
const SUB_WRITER_CAPS: Fact<Vec<String>> = Fact::new("subids-unshared.writer_capeff_capprm_capamb");
const SUB_CHILD_USERNS_OWNER: Fact<Relation> = Fact::new("subids-unshared.child_user_ns_owner_vs_writer_uid");
const SUB_MAP_WRITES: Fact<Vec<String>> = Fact::new("subids-mapped.writes_to_the_map_files_seen_by_fanotify");
const SUB_UID_MAP: Fact<Vec<String>> = Fact::new("subids-mapped.uid_map_read_from_host");
const SUB_GID_MAP: Fact<Vec<String>> = Fact::new("subids-mapped.gid_map_read_from_host");
const SUB_LAB_FILE: Fact<String> = Fact::new("subids-mapped.lab_file_made_by_uid_1_inside_owner_on_host");
const SUB_PROBE_FILE: Fact<String> = Fact::new("subids-mapped.file_made_by_uid_1_inside_owner_on_host");
const SUB_GRANTED: Fact<String> = Fact::new("subids-mapped.newuidmap_of_the_granted_range");
const SUB_REFUSED: Fact<String> = Fact::new("subids-mapped.newuidmap_of_a_range_not_in_etc_subuid");
const SUB_MNT_NS: Fact<Relation> = Fact::new("subids-mapped.writer_mnt_ns_vs_host");
const SUB_HOST_CHANGES: Fact<Vec<String>> = Fact::new("subids-mapped.host_mount_changes");

/// "0 [lab id] 1": a map that maps 0 inside to the lab's id and nothing else.
fn own_id_only(map: &[String]) -> bool {
    map == [format!("0 {LAB_ID} 1")]
}

/// "none" for each of CapEff, CapPrm and CapAmb.
fn no_caps(caps: &[String]) -> bool {
    caps.len() == 3 && caps.iter().all(|c| c == "none")
}

/// The writes fanotify saw: each of uid_map, setgroups and gid_map written by the writer
/// (it may write more than once only where the kernel refused: a refused write makes no
/// event), no write by another process, setgroups before gid_map.
fn written_by_the_writer(writes: &[String]) -> bool {
    let at = |file: &str| writes.iter().position(|w| *w == format!("{file} by the writer"));
    writes.iter().all(|w| w.ends_with(" by the writer"))
        && at("uid_map").is_some()
        && matches!((at("setgroups"), at("gid_map")), (Some(s), Some(g)) if s < g)
}

/// The range the variant maps from 1 inside.
fn subordinate_line() -> String {
    format!("1 {SUBID_START} {SUBID_COUNT}")
}

pub const VERDICTS: [VerdictSpec; 16] = [
    VerdictSpec {
        id: "writer-unprivileged",
        claim: "the parent that writes the maps runs as an id the lab chose, not root: its real, effective, saved and filesystem uid and gid are that id, it has no supplementary groups and no capabilities (effective, permitted, ambient), and the id has no account and no process outside the lab",
        points: 2,
        region: Some("drop-to-user"),
        requires: &[],
        hint: "drop the supplementary groups first, then the gids, then the uids: each call needs the privilege the next one gives up",
        decide: |e| {
            let every = |ids: Vec<String>| ids.len() == 4 && ids.iter().all(|id| id == LAB_ID);
            Some(
                every(e.get(WRITER_UIDS)?)
                    && every(e.get(WRITER_GIDS)?)
                    && e.get(WRITER_GROUPS)?.is_empty()
                    && no_caps(&e.get(WRITER_CAPS)?)
                    && !e.get(LAB_ID_IS_ROOT)?
                    && !e.get(LAB_ID_ACCOUNT)?
                    && e.get(LAB_ID_ELSEWHERE)? == 0,
            )
        },
    },
    VerdictSpec {
        id: "own-user-namespace",
        claim: "the child is in a user namespace of its own, owned by the uid of the parent that writes its maps",
        points: 2,
        region: Some("unshare-user"),
        requires: &[],
        hint: "unshare(CLONE_NEWUSER) in the child itself: the user namespace, unlike the PID namespace, moves the caller",
        decide: |e| Some(e.get(CHILD_USERNS)? == Relation::Differs && e.get(CHILD_USERNS_OWNER)? == Relation::Same),
    },
    VerdictSpec {
        id: "overflow-before-map",
        claim: "before any map, the child's uid_map is empty and its ids read from inside its namespace are the overflow ids of /proc/sys/kernel/overflowuid and overflowgid",
        points: 0,
        region: None,
        requires: &[],
        hint: "at the first stage the child must have unshared its user namespace, and no map may be written yet",
        decide: |e| {
            let overflow = e.get(OVERFLOW_IDS)?;
            let (uid, gid) = overflow.split_once(' ')?;
            Some(e.get(UID_MAP_BEFORE)?.is_empty() && e.get(IDS_INSIDE_BEFORE)? == format!("uid {uid} gid {gid}"))
        },
    },
    VerdictSpec {
        id: "caps-until-exec",
        claim: "the child that called unshare holds every capability in its new namespace; a program it execs as the unmapped user (sleep, by its /proc/<pid>/exe) holds none",
        points: 0,
        region: None,
        requires: &[],
        hint: "at the first stage the child has unshared and forked a process that exec'd sleep before any map",
        decide: |e| {
            Some(e.get(CHILD_CAPS)? == "all" && e.get(EXEC_PROGRAM)? == "sleep" && e.get(EXEC_CAPS)? == "none")
        },
    },
    VerdictSpec {
        id: "unprivileged-writer-limits",
        claim: "a writer with the lab's id and no privilege is refused (EPERM) a uid_map of an id it does not own, a uid_map of more than one id, and a gid_map while setgroups is still allow",
        points: 0,
        region: None,
        requires: &[],
        hint: "the harness writes these itself, as the lab's id, before the lab's own maps: the writer must not be root",
        decide: |e| {
            Some(e.get(NOT_OWNED)? == "EPERM" && e.get(TWO_IDS)? == "EPERM" && e.get(GID_MAP_FIRST)? == "EPERM")
        },
    },
    VerdictSpec {
        id: "maps-written",
        claim: "the parent, and no other process, writes uid_map, setgroups and gid_map (fanotify names the writing process of each write), setgroups before gid_map; uid_map and gid_map map 0 inside to the lab's id and nothing else, setgroups is deny, and the child's ids read from inside are 0",
        points: 3,
        region: Some("write-maps"),
        requires: &[],
        hint: "uid_map first, then setgroups \"deny\", then gid_map: an unprivileged writer may map only its own id, one id, once",
        decide: |e| {
            Some(
                written_by_the_writer(&e.get(MAP_WRITES)?)
                    && own_id_only(&e.get(UID_MAP)?)
                    && own_id_only(&e.get(GID_MAP)?)
                    && e.get(SETGROUPS)? == "deny"
                    && e.get(IDS_INSIDE)? == "uid 0 gid 0",
            )
        },
    },
    VerdictSpec {
        id: "same-map-inside",
        claim: "the child's maps read from inside its namespace are the same as read from the host, its parent's namespace",
        points: 0,
        region: None,
        requires: &[],
        hint: "the maps must be written by the second stage",
        decide: |e| {
            let uid_map = e.get(UID_MAP)?;
            Some(!uid_map.is_empty() && e.get(UID_MAP_INSIDE)? == uid_map && e.get(GID_MAP_INSIDE)? == e.get(GID_MAP)?)
        },
    },
    VerdictSpec {
        id: "maps-write-once",
        claim: "a map is written once: a second write of uid_map is refused (EPERM), and setgroups cannot go back from deny to allow (EPERM)",
        points: 0,
        region: None,
        requires: &[],
        hint: "the harness writes these itself, as the lab's id, once the lab has written its maps and setgroups deny",
        decide: |e| Some(e.get(SECOND_WRITE)? == "EPERM" && e.get(BACK_TO_ALLOW)? == "EPERM"),
    },
    VerdictSpec {
        id: "root-in-owned-namespaces",
        claim: "root inside has a mount and a UTS namespace owned by its user namespace, with a tmpfs on the mapped user's mnt directory and the hostname userns-lab, where the writer and the child were in the run's own mount and UTS namespaces at the first stage; the tmpfs was mounted inside: in a copy of the child's mount namespace it can be unmounted (a mount copied from a more privileged mount namespace is locked); the host's mounts and hostname are unchanged",
        points: 3,
        region: Some("root-inside"),
        requires: &[],
        hint: "unshare CLONE_NEWNS and CLONE_NEWUTS from inside the user namespace (they are then owned by it), then mount and sethostname there",
        decide: |e| {
            Some(
                e.get(WRITER_MNT_NS)? == Relation::Same
                    && e.get(WRITER_UTS_NS)? == Relation::Same
                    && e.get(CHILD_MNT_NS_BEFORE)? == Relation::Same
                    && e.get(CHILD_UTS_NS_BEFORE)? == Relation::Same
                    && e.get(MNT_NS)? == Relation::Differs
                    && e.get(UTS_NS)? == Relation::Differs
                    && e.get(UMOUNT_COPY)? == "unmounted"
                    && e.get(MNT_OWNER)? == Relation::Same
                    && e.get(UTS_OWNER)? == Relation::Same
                    && e.get(TMPFS_IN_HOME)?
                    && e.get(HOSTNAME_INSIDE)? == HOSTNAME
                    && e.get(HOST_HOSTNAME)? == Relation::Same
                    && e.get(HOST_CHANGES)?.is_empty(),
            )
        },
    },
    VerdictSpec {
        id: "file-owned-by-lab-id",
        claim: "the file root inside creates in the mapped user's directory is owned by the lab's id on the host, and fanotify sees the child, and no other process, create what is created there (where the filesystem can report creations)",
        points: 1,
        region: Some("root-inside"),
        requires: &[],
        hint: "create home/made-inside as root inside: the kernel stores the id root inside maps to",
        decide: |e| {
            let creations = e.get(HOME_CREATIONS)?;
            let by_the_child = !creations.is_empty() && creations.iter().all(|c| c == "by the child");
            let unwatchable = creations.len() == 1 && creations[0].starts_with(NO_FID);
            Some((by_the_child || unwatchable) && e.get(MADE_INSIDE_OWNER)? == format!("{LAB_ID}:{LAB_ID}"))
        },
    },
    VerdictSpec {
        id: "ownership-through-the-map",
        claim: "a file the harness creates as root inside is owned by the lab's id on the host, a root-owned host directory is seen inside as owned by 65534, and chown to an unmapped id fails with EINVAL",
        points: 0,
        region: None,
        requires: &[],
        hint: "the harness does this itself as root inside, once the maps are written",
        decide: |e| {
            Some(
                e.get(PROBE_FILE_OWNER)? == format!("{LAB_ID}:{LAB_ID}")
                    && e.get(ROOT_FILE_INSIDE)? == "65534:65534"
                    && e.get(CHOWN_UNMAPPED)? == "EINVAL",
            )
        },
    },
    VerdictSpec {
        id: "root-powerless-outside",
        claim: "root inside cannot mount in the host's mount namespace nor set the host's hostname (EPERM), and can in a mount and a UTS namespace its user namespace owns",
        points: 0,
        region: None,
        requires: &[],
        hint: "the harness does this itself as root inside, once the maps are written",
        decide: |e| {
            Some(
                e.get(MOUNT_HOST)? == "EPERM"
                    && e.get(MOUNT_OWNED)? == "mounted"
                    && e.get(HOSTNAME_HOST)? == "EPERM"
                    && e.get(HOSTNAME_OWNED)? == "set",
            )
        },
    },
    VerdictSpec {
        id: "kill-surprise",
        claim: "root inside cannot kill a host process of another user (EPERM), but without a PID namespace of its own it kills a host process that runs as the lab's id; from a PID namespace of its user namespace it cannot see that process (ESRCH)",
        points: 0,
        region: None,
        requires: &[],
        hint: "the harness starts both processes and sends the kills itself, as root inside",
        decide: |e| {
            Some(
                e.get(PID_NS)? == Relation::Same
                    && e.get(KILL_OTHER)? == "EPERM"
                    && e.get(KILL_OTHER_AFTER)? == "alive"
                    && e.get(KILL_FROM_PID_NS)? == "ESRCH"
                    && e.get(KILL_LAB_ID)? == "sent"
                    && e.get(KILL_LAB_ID_AFTER)? == "killed by SIGKILL",
            )
        },
    },
    VerdictSpec {
        id: "views-of-a-map",
        claim: "a nested namespace's uid_map reads 0 0 1 from its parent namespace and 0 <lab id> 1 from the host, and the host's own uid_map reads 0 4294967295 4294967295 from inside",
        points: 0,
        region: None,
        requires: &[],
        hint: "at the last stage the child has a nested user namespace mapped 0 to its own 0",
        decide: |e| {
            Some(
                e.get(NESTED_PARENT)? == Relation::Same
                    && e.get(NESTED_FROM_PARENT)? == ["0 0 1"]
                    && own_id_only(&e.get(NESTED_FROM_HOST)?)
                    && e.get(HOST_MAP_INSIDE)? == ["0 4294967295 4294967295"]
                    && e.get(HOST_MAP_HOST)? == ["0 0 4294967295"],
            )
        },
    },
    VerdictSpec {
        id: "subid-range-mapped",
        claim: "with --subids, the writer runs as the lab's id with no supplementary groups and no capabilities and owns the child's user namespace; fanotify sees a process that exec'd newuidmap write uid_map and one that exec'd newgidmap write gid_map, and no other process write them; the maps are 0 to the lab's id and 1-65536 to 100000-165535, and a file the harness creates as uid 1 inside is owned by 100000 on the host",
        points: 3,
        region: Some("newuidmap"),
        requires: &[],
        hint: "newuidmap <pid> 0 <id> 1 1 100000 65536, and newgidmap likewise; check their exit status (`cilab run userns-maps --variant subids`)",
        decide: |e| {
            let expected = vec![format!("0 {LAB_ID} 1"), subordinate_line()];
            let owner = format!("{SUBID_START}:{SUBID_START}");
            let every = |ids: Vec<String>| ids.len() == 4 && ids.iter().all(|id| id == LAB_ID);
            Some(
                every(e.get(SUB_WRITER_UIDS)?)
                    && every(e.get(SUB_WRITER_GIDS)?)
                    && e.get(SUB_WRITER_GROUPS)?.is_empty()
                    && no_caps(&e.get(SUB_WRITER_CAPS)?)
                    && e.get(SUB_CHILD_USERNS_OWNER)? == Relation::Same
                    && e.get(SUB_MAP_WRITES)? == ["uid_map by newuidmap", "gid_map by newgidmap"]
                    && e.get(SUB_UID_MAP)? == expected
                    && e.get(SUB_GID_MAP)? == expected
                    && e.get(SUB_PROBE_FILE)? == owner,
            )
        },
    },
    VerdictSpec {
        id: "subid-range-enforced",
        claim: "newuidmap maps a range /etc/subuid grants the caller and refuses one it does not; the lab's /etc/subuid stays in a mount namespace of its own",
        points: 0,
        region: None,
        requires: &[],
        hint: "the harness runs newuidmap itself in the lab's mount namespace; the lab must bind its copies there, not on the host",
        decide: |e| {
            Some(
                e.get(SUB_GRANTED)? == "mapped"
                    && e.get(SUB_REFUSED)?.starts_with("refused")
                    && e.get(SUB_MNT_NS)? == Relation::Differs
                    && e.get(SUB_HOST_CHANGES)?.is_empty(),
            )
        },
    },
];

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a process the harness killed may take to be gone.
const DEATH_TIMEOUT: Duration = Duration::from_secs(2);
/// The user of the host process that root inside must not be able to kill.
const OTHER_USER: u32 = 65534;
/// The file the harness's probe creates as root inside (in the mapped user's directory)
/// and as uid 1 inside (in the variant's shared directory).
const PROBE_FILE: &str = "made-by-cilab";
/// A range no /etc/subuid grants the lab's id: newuidmap must refuse it.
const UNGRANTED_START: u32 = 300000;

pub fn prepare(_scratch: &Path) -> Result<()> {
    Ok(())
}

pub fn observer() -> Box<dyn Observer> {
    Box::new(UsernsMaps::default())
}

/// The variant needs the set-user-ID helpers of the uidmap package.
pub fn uidmap_available() -> std::result::Result<(), String> {
    for program in ["newuidmap", "newgidmap"] {
        if which::which(program).is_err() {
            return Err(format!(
                "`{program}` is not on PATH: install it with `apt-get install uidmap` (Debian, Ubuntu); the subordinate-id verdicts are skipped until then"
            ));
        }
    }
    Ok(())
}

/// Why unprivileged user namespaces are off on this machine, and what to do, if they are.
/// Decided by a real try, never by a sysctl alone: a forked child drops to an unprivileged
/// id and unshares a user namespace (user.max_user_namespaces=0 refuses that: ENOSPC;
/// kernel.unprivileged_userns_clone=0: EPERM), then, inside it, a mount namespace (what
/// Ubuntu's kernel.apparmor_restrict_unprivileged_userns=1 refuses: the namespace is made,
/// but AppArmor takes its capabilities, EPERM). The sysctl that explains a refusal is
/// named; a machine where the try succeeds is fine whatever its sysctls say (an AppArmor
/// profile that allows the lab, for example).
pub fn unprivileged_userns_blocked() -> Option<(String, String)> {
    let tried = forked::probe(
        "unshare a user namespace, then a mount namespace in it, as an unprivileged id",
        PROBE_TIMEOUT,
        |out| {
            drop_to(OTHER_USER, OTHER_USER)?;
            if let Err(errno) = unshare(CloneFlags::CLONE_NEWUSER) {
                forked::say(out, "user");
                return Err(errno);
            }
            if let Err(errno) = unshare(CloneFlags::CLONE_NEWNS) {
                forked::say(out, "mount");
                return Err(errno);
            }
            Ok(())
        },
    );
    let outcome = match tried {
        Ok(outcome) => outcome,
        // The harness could not fork: it is not the machine's answer.
        Err(_) => return None,
    };
    let errno = match outcome.status {
        Ok(()) => return None,
        Err(ProbeFailure::Errno(errno)) => errno,
        Err(ProbeFailure::Signaled(signal)) => {
            return Some((
                format!("the probe that tries a user namespace was killed by {}", signal.as_str()),
                String::new(),
            ))
        }
    };
    let read = |path: &str| std::fs::read_to_string(path).ok().map(|s| s.trim().to_string());
    let step = outcome.output.trim();
    if step == "user" && read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some((
            format!("user.max_user_namespaces is 0: no user namespace can be made, not even by root (unshare(CLONE_NEWUSER): {})", errno_name(errno)),
            "sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d/ to keep it)".into(),
        ));
    }
    if step == "user" && read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some((
            format!("kernel.unprivileged_userns_clone is 0: only root may make a user namespace (unshare(CLONE_NEWUSER): {})", errno_name(errno)),
            "sysctl -w kernel.unprivileged_userns_clone=1".into(),
        ));
    }
    if step == "mount" && read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Some((
            format!(
                "kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu): an unprivileged user namespace is made, but AppArmor takes its capabilities (unshare(CLONE_NEWNS) inside it: {})",
                errno_name(errno)
            ),
            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 on a VM you may change (and in /etc/sysctl.d/ to keep it)".into(),
        ));
    }
    let what = if step == "mount" {
        "unshare(CLONE_NEWNS) inside an unprivileged user namespace"
    } else {
        "an unprivileged unshare(CLONE_NEWUSER)"
    };
    Some((
        format!("{what} fails here with {}", errno_name(errno)),
        "look at user.max_user_namespaces, kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns, and AppArmor or SELinux policy (`cilab doctor`)".into(),
    ))
}

/// The lab's availability: unprivileged user namespaces must be on.
pub fn userns_available() -> std::result::Result<(), String> {
    match unprivileged_userns_blocked() {
        None => Ok(()),
        Some((why, advice)) => Err(format!("unprivileged user namespaces are off on this machine: {why}; to turn them on: {advice} (see `cilab doctor`)")),
    }
}

#[derive(Default)]
struct UsernsMaps {
    /// The lab's id, learned from its writer's status (its effective uid).
    lab_id: Option<u32>,
    child: Option<i32>,
    /// The map writer (the lab's unprivileged parent) and the lab's root process.
    writer: Option<i32>,
    lab: Option<i32>,
    host_hostname: Option<String>,
    /// The fanotify group armed before the maps are written, or why it could not be.
    watch: Option<std::result::Result<Watch, String>>,
    /// The fanotify group watching creations in the mapped user's directory.
    creations: Option<std::result::Result<Fanotify, String>>,
}

impl Observer for UsernsMaps {
    fn observe(&mut self, stage: &str, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        match stage {
            UNSHARED => self.unshared(run, facts),
            MAPPED => {
                // Armed while the lab is held, before root inside acts.
                self.creations = Some(watch_creations(&run.scratch().join(HOME_DIR)));
                self.mapped(facts)
            }
            SUBIDS_UNSHARED => self.subids_unshared(run, facts),
            ROOT_INSIDE => self.root_inside(run, facts),
            SUBIDS_MAPPED => self.subids_mapped(run, facts),
            other => Err(Error::Harness(format!("userns-maps has no stage `{other}`"))),
        }
    }
}

impl UsernsMaps {
    fn child(&self) -> Result<i32> {
        self.child.ok_or_else(|| Error::Harness("the lab's child was not found at an earlier stage".into()))
    }

    /// The lab's id, if it is not root: the harness writes as the lab's id only then.
    fn unprivileged_id(&self) -> Option<u32> {
        self.lab_id.filter(|id| *id != 0)
    }

    fn name(&self, id: u32) -> String {
        name_id(id, self.lab_id)
    }

    /// Who a process is, for a write fanotify saw.
    fn who(&self, pid: i32) -> &'static str {
        if Some(pid) == self.writer {
            "the writer"
        } else if Some(pid) == self.lab {
            "the lab's root process"
        } else if Some(pid) == self.child {
            "the child"
        } else {
            "another process"
        }
    }

    /// The watched files' events, "<file> by <who>", in the order the kernel queued them.
    fn writes_seen(&mut self, exec_names: &[(&str, &str)]) -> Vec<String> {
        let events = match self.watch.take() {
            Some(Ok(watch)) => watch.events(),
            Some(Err(why)) => Err(why),
            None => Err("no watch was armed at the first stage".into()),
        };
        match events {
            Ok(events) => {
                let exec_pids = |program: &str| -> Vec<i32> {
                    events.iter().filter(|(file, _)| *file == program).map(|(_, pid)| *pid).collect()
                };
                events
                    .iter()
                    .filter(|(file, _)| !exec_names.iter().any(|(_, program)| program == file))
                    .map(|(file, pid)| {
                        let by_program = exec_names
                            .iter()
                            .find(|(map, program)| map == file && exec_pids(program).contains(pid))
                            .map(|(_, program)| *program);
                        format!("{file} by {}", by_program.unwrap_or_else(|| self.who(*pid)))
                    })
                    .collect()
            }
            Err(why) => vec![format!("not watched: {why}")],
        }
    }

    /// "by <who>" for each creation (or move, or link) into the mapped user's directory.
    fn creations_seen(&mut self) -> Vec<String> {
        let fan = match self.creations.take() {
            Some(Ok(fan)) => fan,
            Some(Err(why)) => return vec![why],
            None => return vec!["not watched: no watch was armed at the second stage".into()],
        };
        let mut seen = Vec::new();
        loop {
            match fan.read_events() {
                Ok(events) if events.is_empty() => break,
                Ok(events) => seen.extend(events.iter().map(|event| format!("by {}", self.who(event.pid())))),
                Err(Errno::EAGAIN) => break,
                Err(errno) => {
                    seen.push(format!("not read: {}", errno_name(errno)));
                    break;
                }
            }
        }
        seen
    }

    fn describe_map(&self, map: &[IdMapLine]) -> Vec<String> {
        map.iter().map(|line| format!("{} {} {}", line.inside, self.name(line.outside), line.count)).collect()
    }

    /// Finds the writer (its Uid line names the lab's id) and its child.
    fn learn(
        &mut self,
        run: &mut LabRun,
        writer_comm: &str,
        child_comm: &str,
    ) -> Result<(i32, procfs::ProcStatus, i32)> {
        let writer = find_child_named(run, writer_comm)?;
        let status = procfs::read_status(writer)?;
        self.lab_id = Some(status.uid[1]);
        let child = only_child(run, writer, child_comm)?;
        self.child = Some(child);
        self.writer = Some(writer);
        self.lab = Some(run.pid());
        Ok((writer, status, child))
    }

    fn unshared(&mut self, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let (writer, status, child) = self.learn(run, PARENT_COMM, CHILD_COMM)?;
        // Before anything else: the maps must not be written before the watch is armed
        // (the lab is held; a write that came earlier shows as a map already there).
        let maps =
            ["uid_map", "setgroups", "gid_map"].map(|f| (f, format!("/proc/{child}/{f}"), MaskFlags::FAN_MODIFY));
        self.watch = Some(Watch::arm(&maps));
        let lab_id = status.uid[1];
        facts.record(WRITER_UIDS, status.uid.iter().map(|id| self.name(*id)).collect());
        facts.record(WRITER_GIDS, status.gid.iter().map(|id| self.name(*id)).collect());
        facts.record(WRITER_GROUPS, status.groups.iter().map(|id| self.name(*id)).collect());
        facts.record(WRITER_CAPS, caps_of(&status));
        for (fact, pid, kind) in [
            (WRITER_MNT_NS, writer, "mnt"),
            (WRITER_UTS_NS, writer, "uts"),
            (CHILD_MNT_NS_BEFORE, child, "mnt"),
            (CHILD_UTS_NS_BEFORE, child, "uts"),
        ] {
            let theirs = run.namespace_of(pid, kind)?;
            facts.record(fact, Relation::of(&theirs, &Some(run.host_ns(kind)?)));
        }
        facts.record(LAB_ID_IS_ROOT, lab_id == 0);
        facts.record(LAB_ID_ACCOUNT, labkit::ids::has_account(lab_id));
        facts.record(LAB_ID_ELSEWHERE, processes_of_id_outside(lab_id, run.pid()));
        let userns = run.namespace_of(child, "user")?;
        let host_userns = run.host_ns("user")?;
        let own = userns.is_some_and(|ns| ns != host_userns);
        facts.record(CHILD_USERNS, if own { Relation::Differs } else { Relation::Same });
        let owner = owner_uid(&open_ns(child, "user")?).ok();
        facts.record(CHILD_USERNS_OWNER, Relation::of(&owner, &Some(status.uid[1])));
        let uid_map = procfs::read_id_map(child, "uid_map")?;
        facts.record(UID_MAP_BEFORE, self.describe_map(&uid_map));
        facts.record(
            IDS_INSIDE_BEFORE,
            if own { self.inside_view(child)?.ids } else { "not in a user namespace of its own".into() },
        );
        facts.record(OVERFLOW_IDS, overflow_ids());
        facts.record(CHILD_CAPS, describe_caps(procfs::read_status(child)?.cap_eff));
        let exec = procfs::children(child).into_iter().find(|pid| procfs::comm(*pid).as_deref() == Some("sleep"));
        facts.record(
            EXEC_CAPS,
            match exec {
                Some(pid) => {
                    run.track_pid(pid);
                    describe_caps(procfs::read_status(pid)?.cap_eff)
                }
                None => "no child of the child exec'd sleep".into(),
            },
        );
        facts.record(EXEC_PROGRAM, exec.map_or_else(|| "no child of the child exec'd sleep".into(), program_of));
        // Writes the kernel must refuse, so that the lab's own writes still come first.
        let tries = [
            (GID_MAP_FIRST, "gid_map", format!("0 {lab_id} 1\n")),
            (NOT_OWNED, "uid_map", "0 0 1\n".to_string()),
            (TWO_IDS, "uid_map", format!("0 {lab_id} 2\n")),
        ];
        for (fact, file, text) in tries {
            let outcome = match self.unprivileged_id() {
                Some(id) if own && uid_map.is_empty() => write_as(id, child, file, &text)?,
                _ => format!("{NOT_TRIED}: the writer is root, or the child has no user namespace of its own"),
            };
            facts.record(fact, outcome);
        }
        self.host_hostname = Some(hostname());
        Ok(())
    }

    fn mapped(&mut self, facts: &mut Facts) -> Result<()> {
        let child = self.child()?;
        facts.record(MAP_WRITES, self.writes_seen(&[]));
        let uid_map = procfs::read_id_map(child, "uid_map")?;
        facts.record(UID_MAP, self.describe_map(&uid_map));
        facts.record(GID_MAP, self.describe_map(&procfs::read_id_map(child, "gid_map")?));
        let setgroups = procfs::read_setgroups(child)?;
        facts.record(
            SETGROUPS,
            match setgroups {
                Setgroups::Allow => "allow".to_string(),
                Setgroups::Deny => "deny".to_string(),
            },
        );
        let view = self.inside_view(child)?;
        facts.record(UID_MAP_INSIDE, view.uid_map);
        facts.record(GID_MAP_INSIDE, view.gid_map);
        facts.record(IDS_INSIDE, view.ids);
        // Only over a map already written: a first write would be the harness's, not the lab's.
        let (second, allow) = match self.unprivileged_id() {
            Some(id) if !uid_map.is_empty() => {
                let second = write_as(id, child, "uid_map", &format!("0 {id} 1\n"))?;
                let allow = if setgroups == Setgroups::Deny {
                    write_as(id, child, "setgroups", "allow\n")?
                } else {
                    format!("{NOT_TRIED}: setgroups is allow")
                };
                (second, allow)
            }
            _ => {
                let why = format!("{NOT_TRIED}: no map written, or the writer is root");
                (why.clone(), why)
            }
        };
        facts.record(SECOND_WRITE, second);
        facts.record(BACK_TO_ALLOW, allow);
        Ok(())
    }

    fn root_inside(&mut self, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let child = self.child()?;
        let userns = run.namespace_of(child, "user")?;
        let host_userns = run.host_ns("user")?;
        let own = userns.is_some_and(|ns| ns != host_userns);
        for (fact, kind) in [(MNT_NS, "mnt"), (UTS_NS, "uts"), (PID_NS, "pid")] {
            let theirs = run.namespace_of(child, kind)?;
            facts.record(fact, Relation::of(&theirs, &Some(run.host_ns(kind)?)));
        }
        for (fact, kind) in [(MNT_OWNER, "mnt"), (UTS_OWNER, "uts")] {
            let owner = owning_userns(&open_ns(child, kind)?).ok();
            facts.record(fact, Relation::of(&owner, &userns));
        }
        // First, before the harness's own probes create their file there.
        facts.record(HOME_CREATIONS, self.creations_seen());
        let home = run.scratch().join(HOME_DIR);
        let mount_dir = home.join(MOUNT_DIR);
        let tmpfs = procfs::read_mountinfo(&child.to_string())?
            .iter()
            .any(|m| Path::new(&m.mount_point) == mount_dir && m.fs_type == "tmpfs");
        facts.record(TMPFS_IN_HOME, tmpfs);
        facts.record(UMOUNT_COPY, umount_in_a_copy(child, &mount_dir)?);
        facts.record(HOST_CHANGES, run.mount_ns().changes()?.describe());
        facts.record(HOSTNAME_INSIDE, hostname_of(child, PROBE_TIMEOUT)?);
        facts.record(HOST_HOSTNAME, Relation::of(&Some(hostname()), &self.host_hostname));
        facts.record(MADE_INSIDE_OWNER, self.owner(&home.join(MADE_INSIDE)));

        let door = run.door()?;
        match self.unprivileged_id() {
            Some(id) if own => {
                let powers = self.powers_as_root_inside(&door, child, run.scratch())?;
                let said = |key: &str| said(&powers, key).unwrap_or_else(|| format!("{NOT_TRIED}: the probe stopped"));
                facts.record(MOUNT_HOST, said("mount-host"));
                facts.record(MOUNT_OWNED, said("mount-owned"));
                facts.record(HOSTNAME_HOST, said("sethostname-host"));
                facts.record(HOSTNAME_OWNED, said("sethostname-owned"));
                facts.record(ROOT_FILE_INSIDE, said("root-owned-seen-inside"));
                facts.record(CHOWN_UNMAPPED, said("chown-unmapped"));
                facts.record(PROBE_FILE_OWNER, self.owner(&home.join(PROBE_FILE)));
                let kills = kill_from_inside(&door, child, id)?;
                facts.record(KILL_OTHER, kills.other);
                facts.record(KILL_OTHER_AFTER, kills.other_after);
                facts.record(KILL_LAB_ID, kills.lab_id);
                facts.record(KILL_LAB_ID_AFTER, kills.lab_id_after);
                facts.record(KILL_FROM_PID_NS, kills.from_pid_ns);
            }
            _ => {
                let why = format!("{NOT_TRIED}: the writer is root, or the child has no user namespace of its own");
                for fact in [
                    MOUNT_HOST,
                    MOUNT_OWNED,
                    HOSTNAME_HOST,
                    HOSTNAME_OWNED,
                    ROOT_FILE_INSIDE,
                    CHOWN_UNMAPPED,
                    PROBE_FILE_OWNER,
                    KILL_OTHER,
                    KILL_OTHER_AFTER,
                    KILL_LAB_ID,
                    KILL_LAB_ID_AFTER,
                    KILL_FROM_PID_NS,
                ] {
                    facts.record(fact, why.clone());
                }
            }
        }

        let nested = only_child(run, child, NESTED_COMM)?;
        let parent = parent_userns(&open_ns(nested, "user")?).ok();
        facts.record(NESTED_PARENT, Relation::of(&parent, &userns));
        facts.record(NESTED_FROM_HOST, self.describe_map(&procfs::read_id_map(nested, "uid_map")?));
        let harness = std::process::id() as i32;
        let (from_parent, host_inside) = self.nested_views(child, nested, harness)?;
        facts.record(NESTED_FROM_PARENT, from_parent);
        facts.record(HOST_MAP_INSIDE, host_inside);
        facts.record(HOST_MAP_HOST, self.describe_map(&procfs::read_id_map(harness, "uid_map")?));
        Ok(())
    }

    /// The variant's first stage: the writer's credentials, the child's user namespace's
    /// owner, and a watch on newuidmap, newgidmap and the child's maps.
    fn subids_unshared(&mut self, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let (_, status, child) = self.learn(run, SUBIDS_PARENT_COMM, SUBIDS_CHILD_COMM)?;
        let mut files = Vec::new();
        for program in ["newuidmap", "newgidmap"] {
            let path = which::which(program).ok().and_then(|p| p.canonicalize().ok());
            if let Some(path) = path {
                files.push((program, path.display().to_string(), MaskFlags::FAN_OPEN_EXEC));
            }
        }
        for file in ["uid_map", "gid_map"] {
            files.push((file, format!("/proc/{child}/{file}"), MaskFlags::FAN_MODIFY));
        }
        self.watch = Some(Watch::arm(&files));
        facts.record(SUB_WRITER_UIDS, status.uid.iter().map(|id| self.name(*id)).collect());
        facts.record(SUB_WRITER_GIDS, status.gid.iter().map(|id| self.name(*id)).collect());
        facts.record(SUB_WRITER_GROUPS, status.groups.iter().map(|id| self.name(*id)).collect());
        facts.record(SUB_WRITER_CAPS, caps_of(&status));
        let owner = owner_uid(&open_ns(child, "user")?).ok();
        facts.record(SUB_CHILD_USERNS_OWNER, Relation::of(&owner, &Some(status.uid[1])));
        Ok(())
    }

    fn subids_mapped(&mut self, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let (writer, status, child) = self.learn(run, SUBIDS_PARENT_COMM, SUBIDS_CHILD_COMM)?;
        // First, before the harness runs newuidmap itself.
        facts.record(SUB_MAP_WRITES, self.writes_seen(&[("uid_map", "newuidmap"), ("gid_map", "newgidmap")]));
        let lab_id = status.uid[1];
        facts.record(SUB_UID_MAP, self.describe_map(&procfs::read_id_map(child, "uid_map")?));
        facts.record(SUB_GID_MAP, self.describe_map(&procfs::read_id_map(child, "gid_map")?));
        let shared = run.scratch().join(SHARED_DIR);
        facts.record(SUB_LAB_FILE, self.owner(&shared.join(MADE_BY_UID_1)));
        facts.record(SUB_PROBE_FILE, self.file_as_uid_1(&run.door()?, child, &shared)?);
        let mnt = run.namespace_of(writer, "mnt")?;
        facts.record(SUB_MNT_NS, Relation::of(&mnt, &Some(run.host_ns("mnt")?)));
        let (granted, refused) = match self.unprivileged_id() {
            Some(id) => newuidmap_tries(&run.door()?, writer, id)?,
            None => {
                let why = format!("{NOT_TRIED}: the writer is root");
                (why.clone(), why)
            }
        };
        let _ = lab_id;
        facts.record(SUB_GRANTED, granted);
        facts.record(SUB_REFUSED, refused);
        facts.record(SUB_HOST_CHANGES, run.mount_ns().changes()?.describe());
        Ok(())
    }

    /// "uid:gid" of a file as the host sees it, the lab's id named.
    fn owner(&self, path: &Path) -> String {
        match std::fs::symlink_metadata(path) {
            Ok(meta) => format!("{}:{}", self.name(meta.uid()), self.name(meta.gid())),
            Err(e) => {
                format!("not there ({})", e.raw_os_error().map_or(e.to_string(), |n| errno_name(Errno::from_raw(n))))
            }
        }
    }

    /// The child's maps and ids as a probe in its user namespace reads them.
    fn inside_view(&self, child: i32) -> Result<InsideView> {
        let ns = open_ns(child, "user")?;
        let outcome = forked::probe("read the maps from inside the user namespace", PROBE_TIMEOUT, |out| {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER)?;
            for file in ["uid_map", "gid_map"] {
                let text = std::fs::read_to_string(format!("/proc/{child}/{file}")).map_err(io_errno)?;
                for line in text.lines() {
                    forked::say(out, &format!("{file} {}", line.split_whitespace().collect::<Vec<_>>().join(" ")));
                }
            }
            // /proc/<pid>/status gives the ids as the reader's namespace names them.
            let status = std::fs::read_to_string(format!("/proc/{child}/status")).map_err(io_errno)?;
            let first = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next())
                    .unwrap_or("?")
                    .to_string()
            };
            forked::say(out, &format!("ids uid {} gid {}", first("Uid:"), first("Gid:")));
            Ok(())
        })?;
        if let Err(failure) = outcome.status {
            return Err(Error::Harness(format!("the probe in the child's user namespace failed: {failure:?}")));
        }
        let lines = |file: &str| -> Result<Vec<String>> {
            let text: String = outcome
                .output
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{file} ")))
                .map(|l| format!("{l}\n"))
                .collect();
            Ok(self.describe_map(&procfs::parse_id_map(&text)?))
        };
        Ok(InsideView {
            uid_map: lines("uid_map")?,
            gid_map: lines("gid_map")?,
            ids: said(&outcome.output, "ids").unwrap_or_default(),
        })
    }

    /// A probe becomes root inside the child's user namespace (setns, then uid and gid 0,
    /// which the map makes the lab's id) and tries what root may: mount and sethostname,
    /// first in the run's namespaces, then in namespaces of its own; creates a file in the
    /// mapped user's directory, looks at a root-owned directory, chowns to an unmapped id.
    fn powers_as_root_inside(&self, door: &RunDoor, child: i32, scratch: &Path) -> Result<String> {
        let ns = open_ns(child, "user")?;
        let host_name = hostname();
        let home = scratch.join(HOME_DIR);
        let outcome = forked::probe("act as root inside the user namespace", PROBE_TIMEOUT, |out| {
            // The run's cgroup and mount namespace: whatever the probe mounts by mistake
            // lands there, where the run's teardown finds it.
            door.enter()?;
            setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER)?;
            setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))?;
            setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))?;
            let target = home.join(MOUNT_DIR);
            let tmpfs = || mount(Some("tmpfs"), &target, Some("tmpfs"), MsFlags::empty(), Some("size=1m"));
            forked::say(out, &format!("mount-host {}", outcome_of(tmpfs(), "mounted")));
            // The host's own name, should the kernel ever allow it: nothing would change.
            forked::say(out, &format!("sethostname-host {}", outcome_of(nix::unistd::sethostname(&host_name), "set")));
            let file = home.join(PROBE_FILE);
            std::fs::write(&file, "made by cilab as root inside\n").map_err(io_errno)?;
            let chowned = nix::unistd::chown(&file, Some(Uid::from_raw(1)), Some(Gid::from_raw(1)));
            forked::say(out, &format!("chown-unmapped {}", outcome_of(chowned, "changed")));
            let seen = nix::sys::stat::stat(scratch)?;
            forked::say(out, &format!("root-owned-seen-inside {}:{}", seen.st_uid, seen.st_gid));
            unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)?;
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
            forked::say(out, &format!("mount-owned {}", outcome_of(tmpfs(), "mounted")));
            forked::say(
                out,
                &format!("sethostname-owned {}", outcome_of(nix::unistd::sethostname("cilab-probe"), "set")),
            );
            Ok(())
        })?;
        if let Err(failure) = outcome.status {
            return Err(Error::Harness(format!(
                "the probe acting as root inside failed: {failure:?} (it said: {})",
                outcome.output.trim()
            )));
        }
        Ok(outcome.output)
    }

    /// The nested namespace's uid_map and the harness's own, read from the child's namespace.
    fn nested_views(&self, child: i32, nested: i32, harness: i32) -> Result<(Vec<String>, Vec<String>)> {
        let ns = open_ns(child, "user")?;
        let outcome = forked::probe("read maps from the child's user namespace", PROBE_TIMEOUT, |out| {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER)?;
            for (key, pid) in [("nested", nested), ("host", harness)] {
                let text = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).map_err(io_errno)?;
                for line in text.lines() {
                    forked::say(out, &format!("{key} {}", line.split_whitespace().collect::<Vec<_>>().join(" ")));
                }
            }
            Ok(())
        })?;
        if let Err(failure) = outcome.status {
            return Err(Error::Harness(format!("the probe reading maps from inside failed: {failure:?}")));
        }
        let lines = |key: &str| -> Result<Vec<String>> {
            let text: String = outcome
                .output
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{key} ")))
                .map(|l| format!("{l}\n"))
                .collect();
            Ok(self.describe_map(&procfs::parse_id_map(&text)?))
        };
        Ok((lines("nested")?, lines("host")?))
    }

    /// A probe becomes uid and gid 1 in the variant's user namespace and creates a file in
    /// the shared directory; the host says who owns it.
    fn file_as_uid_1(&self, door: &RunDoor, child: i32, shared: &Path) -> Result<String> {
        let ns = open_ns(child, "user")?;
        let file = shared.join(PROBE_FILE);
        let outcome = forked::probe("create a file as uid 1 inside", PROBE_TIMEOUT, |_| {
            door.enter()?;
            setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER)?;
            // Allowed only where setgroups is allow: the probe's groups are root's, unmapped.
            let _ = setgroups(&[]);
            setresgid(Gid::from_raw(1), Gid::from_raw(1), Gid::from_raw(1))?;
            setresuid(Uid::from_raw(1), Uid::from_raw(1), Uid::from_raw(1))?;
            std::fs::write(&file, "made by cilab as uid 1 inside\n").map_err(io_errno)
        })?;
        Ok(match outcome.status {
            Ok(()) => self.owner(&file),
            Err(ProbeFailure::Errno(errno)) => format!("not made ({})", errno_name(errno)),
            Err(ProbeFailure::Signaled(signal)) => format!("probe killed by {}", signal.as_str()),
        })
    }
}

struct InsideView {
    uid_map: Vec<String>,
    gid_map: Vec<String>,
    ids: String,
}

/// An id as facts show it: the lab's own (chosen at run time) by name.
fn name_id(id: u32, lab_id: Option<u32>) -> String {
    if lab_id == Some(id) && id != 0 {
        LAB_ID.to_string()
    } else {
        id.to_string()
    }
}

/// The value after `key ` on the first line that has it.
fn said(output: &str, key: &str) -> Option<String> {
    output.lines().find_map(|l| l.strip_prefix(&format!("{key} "))).map(str::to_string)
}

fn outcome_of<T>(result: nix::Result<T>, done: &str) -> String {
    match result {
        Ok(_) => done.to_string(),
        Err(errno) => errno_name(errno),
    }
}

fn io_errno(error: std::io::Error) -> Errno {
    Errno::from_raw(error.raw_os_error().unwrap_or(libc::EIO))
}

/// In a probe (a forked child of root): become `uid` and `gid` for good, as a process
/// that was never root would be: no groups, dumpable again (the kernel made it
/// non-dumpable when its ids changed, and its /proc files root's).
fn drop_to(uid: u32, gid: u32) -> nix::Result<()> {
    setgroups(&[])?;
    setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid))?;
    setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid))?;
    nix::sys::prctl::set_dumpable(true)
}

/// A probe with the lab's id (and nothing else) writes `text` to /proc/<pid>/<file> in
/// one write: WRITTEN, or the errno of the open or the write.
fn write_as(id: u32, pid: i32, file: &str, text: &str) -> Result<String> {
    let path = format!("/proc/{pid}/{file}");
    let outcome = forked::probe("write a map as the lab's id", PROBE_TIMEOUT, |_| {
        drop_to(id, id)?;
        let fd = nix::fcntl::open(
            path.as_str(),
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        // SAFETY: open just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let written = nix::unistd::write(&fd, text.as_bytes())?;
        if written != text.len() {
            return Err(Errno::EIO);
        }
        Ok(())
    })?;
    Ok(match outcome.status {
        Ok(()) => WRITTEN.to_string(),
        Err(ProbeFailure::Errno(errno)) => errno_name(errno),
        Err(ProbeFailure::Signaled(signal)) => format!("probe killed by {}", signal.as_str()),
    })
}

/// The one child of `parent` named `comm` (its host PID redacted from then on).
fn only_child(run: &mut LabRun, parent: i32, comm: &str) -> Result<i32> {
    let found: Vec<i32> =
        procfs::children(parent).into_iter().filter(|pid| procfs::comm(*pid).as_deref() == Some(comm)).collect();
    match found.as_slice() {
        [pid] => {
            run.track_pid(*pid);
            Ok(*pid)
        }
        _ => Err(Error::Lab {
            lab: run.lab().to_string(),
            message: format!("the lab's process has {} children named `{comm}`; expected one", found.len()),
        }),
    }
}

/// Processes on the machine whose uid or gid is `id`, the lab and its descendants aside.
fn processes_of_id_outside(id: u32, lab: i32) -> usize {
    let mut lab_tree = vec![lab];
    let mut next = 0;
    while next < lab_tree.len() {
        let kids = procfs::children(lab_tree[next]);
        lab_tree.extend(kids.into_iter().filter(|k| !lab_tree.contains(k)).collect::<Vec<_>>());
        next += 1;
    }
    procfs::all_pids()
        .into_iter()
        .filter(|pid| !lab_tree.contains(pid))
        .filter_map(|pid| procfs::read_status(pid).ok())
        .filter(|status| status.uid.contains(&id) || status.gid.contains(&id))
        .count()
}

/// "65534 65534": the ids the kernel shows for an id without a map.
fn overflow_ids() -> String {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{name}")).map(|s| s.trim().to_string()).unwrap_or_default()
    };
    format!("{} {}", read("overflowuid"), read("overflowgid"))
}

/// "all" (every capability this kernel has), "none", or the mask.
fn describe_caps(caps: u64) -> String {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40);
    let all = if last >= 63 { u64::MAX } else { (1u64 << (last + 1)) - 1 };
    match caps {
        0 => "none".into(),
        c if c == all => "all".into(),
        c => format!("{c:#x}"),
    }
}

/// ioctl(2) requests on namespace files (linux/nsfs.h); nix has no wrappers for them.
const NS_GET_USERNS: libc::c_ulong = 0xb701;
const NS_GET_PARENT: libc::c_ulong = 0xb702;
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// The namespace an ioctl on `ns` returns a descriptor of, by identity.
fn ns_ioctl(ns: &File, request: libc::c_ulong) -> nix::Result<procfs::NsId> {
    // SAFETY: NS_GET_USERNS and NS_GET_PARENT take no argument and return a new descriptor.
    let fd = Errno::result(unsafe { libc::ioctl(ns.as_raw_fd(), request) })?;
    // SAFETY: the kernel just made this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    Ok(procfs::NsId { dev: st.st_dev, ino: st.st_ino })
}

/// The user namespace that owns namespace `ns`.
fn owning_userns(ns: &File) -> nix::Result<procfs::NsId> {
    ns_ioctl(ns, NS_GET_USERNS)
}

/// The parent of user namespace `userns`.
fn parent_userns(userns: &File) -> nix::Result<procfs::NsId> {
    ns_ioctl(userns, NS_GET_PARENT)
}

/// The uid (in the reader's namespace) of whoever made user namespace `userns`.
fn owner_uid(userns: &File) -> nix::Result<u32> {
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer it is given.
    Errno::result(unsafe { libc::ioctl(userns.as_raw_fd(), NS_GET_OWNER_UID, &mut uid as *mut libc::uid_t) })?;
    Ok(uid)
}

/// This machine's hostname, as the harness (in the host's UTS namespace) sees it.
/// A host process the harness starts in the run's cgroup, running as `uid`, doing nothing.
struct Victim {
    pid: Pid,
    fd: PidFd,
}

impl Victim {
    fn start(door: &RunDoor, uid: u32) -> Result<Self> {
        let (ready_rx, ready_tx) = nix::unistd::pipe().map_err(Error::sys("pipe", "a victim"))?;
        // SAFETY: the child makes syscalls only, and leaves with _exit.
        match unsafe { fork() }.map_err(Error::sys("fork", "a victim"))? {
            ForkResult::Child => {
                drop(ready_rx);
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                let code = match door.enter().and_then(|()| drop_to(uid, uid)) {
                    Ok(()) => {
                        let _ = nix::sys::prctl::set_name(c"cilab-victim");
                        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                        let _ = nix::unistd::write(&ready_tx, b"r");
                        loop {
                            nix::unistd::pause();
                        }
                    }
                    Err(errno) => errno as i32,
                };
                // SAFETY: _exit has no preconditions; nix 0.29 has no wrapper for it.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(ready_tx);
                let fd = PidFd::open(child.as_raw())?;
                let mut byte = [0u8];
                let ready = nix::unistd::read(ready_rx.as_raw_fd(), &mut byte);
                let victim = Victim { pid: child, fd };
                if ready != Ok(1) {
                    drop(victim);
                    return Err(Error::Harness(format!("the harness's host process as uid {uid} did not start")));
                }
                Ok(victim)
            }
        }
    }

    /// "alive", or how it ended (it is reaped then); waits up to DEATH_TIMEOUT if `expect_dead`.
    fn afterwards(&self, expect_dead: bool) -> String {
        if expect_dead {
            self.fd.wait_exit(DEATH_TIMEOUT);
        }
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => "alive".into(),
            Ok(WaitStatus::Signaled(_, signal, _)) => format!("killed by {}", signal.as_str()),
            Ok(other) => format!("{other:?}"),
            Err(errno) => errno_name(errno),
        }
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        // Our own child, by PID; reaped whether it was alive or not.
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}

struct Kills {
    other: String,
    other_after: String,
    lab_id: String,
    lab_id_after: String,
    from_pid_ns: String,
}

/// Two host processes of the harness's, one as another user, one as the lab's id; a probe
/// that is root inside the child's user namespace sends each a SIGKILL.
fn kill_from_inside(door: &RunDoor, child: i32, lab_id: u32) -> Result<Kills> {
    let other = Victim::start(door, OTHER_USER)?;
    let same = Victim::start(door, lab_id)?;
    let ns = open_ns(child, "user")?;
    let from_pid_ns = kill_from_a_pid_ns(&ns, same.pid)?;
    let targets = [("other", other.pid), ("lab-id", same.pid)];
    let outcome = forked::probe("kill host processes as root inside", PROBE_TIMEOUT, |out| {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER)?;
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))?;
        for (key, pid) in targets {
            forked::say(out, &format!("{key} {}", outcome_of(kill(pid, Signal::SIGKILL), "sent")));
        }
        Ok(())
    })?;
    if let Err(failure) = outcome.status {
        return Err(Error::Harness(format!("the probe killing from inside failed: {failure:?}")));
    }
    let said = |key: &str| said(&outcome.output, key).unwrap_or_default();
    Ok(Kills {
        other: said("other"),
        other_after: other.afterwards(false),
        lab_id: said("lab-id"),
        lab_id_after: same.afterwards(true),
        from_pid_ns,
    })
}

/// A probe root inside the child's user namespace unshares a PID namespace (its user
/// namespace owns it); the probe's child, the new namespace's init, sends `target` (a
/// host PID) a SIGKILL: a PID namespace shows no process outside it.
fn kill_from_a_pid_ns(userns: &File, target: Pid) -> Result<String> {
    let outcome = forked::probe("kill from a PID namespace of the user namespace", PROBE_TIMEOUT, |out| {
        setns(userns.as_fd(), CloneFlags::CLONE_NEWUSER)?;
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))?;
        unshare(CloneFlags::CLONE_NEWPID)?;
        // SAFETY: the grandchild makes one syscall and leaves with _exit.
        match unsafe { fork() }? {
            ForkResult::Child => {
                let code = match kill(target, Signal::SIGKILL) {
                    Ok(()) => 0,
                    Err(errno) => errno as i32,
                };
                // SAFETY: _exit has no preconditions; nix 0.29 has no wrapper for it.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                let said = match waitpid(child, None)? {
                    WaitStatus::Exited(_, 0) => "sent".to_string(),
                    WaitStatus::Exited(_, code) => errno_name(Errno::from_raw(code)),
                    other => format!("{other:?}"),
                };
                forked::say(out, &said);
                Ok(())
            }
        }
    })?;
    Ok(match outcome.status {
        Ok(()) => outcome.output.trim().to_string(),
        Err(ProbeFailure::Errno(errno)) => format!("{NOT_TRIED}: {}", errno_name(errno)),
        Err(ProbeFailure::Signaled(signal)) => format!("probe killed by {}", signal.as_str()),
    })
}

/// A probe enters the child's user namespace and mount namespace, makes a copy of the
/// latter (unshare: its own, so nothing it does reaches the child), and unmounts the
/// tmpfs there. A mount made inside the user namespace comes off ("unmounted"); one the
/// child's namespace copied from a more privileged mount namespace is locked (EINVAL).
fn umount_in_a_copy(child: i32, target: &Path) -> Result<String> {
    let user = open_ns(child, "user")?;
    let mnt = open_ns(child, "mnt")?;
    let outcome = forked::probe("unmount in a copy of the child's mount namespace", PROBE_TIMEOUT, |out| {
        setns(user.as_fd(), CloneFlags::CLONE_NEWUSER)?;
        setns(mnt.as_fd(), CloneFlags::CLONE_NEWNS)?;
        unshare(CloneFlags::CLONE_NEWNS)?;
        // Private first: an unmount must not propagate to a peer in the child's namespace.
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
        forked::say(out, &outcome_of(nix::mount::umount2(target, MntFlags::MNT_DETACH), "unmounted"));
        Ok(())
    })?;
    Ok(match outcome.status {
        Ok(()) => outcome.output.trim().to_string(),
        Err(ProbeFailure::Errno(errno)) => format!("{NOT_TRIED}: {}", errno_name(errno)),
        Err(ProbeFailure::Signaled(signal)) => format!("probe killed by {}", signal.as_str()),
    })
}

/// A fanotify group (notification class) with inode marks on some files: the kernel
/// queues each write (FAN_MODIFY) or exec (FAN_OPEN_EXEC) with the PID of the process
/// that made it. procfs files are watched like any other: a write that succeeds makes
/// an event (a refused write makes none).
struct Watch {
    fan: Fanotify,
    /// Each watched file's name and (device, inode).
    files: Vec<(&'static str, (u64, u64))>,
}

impl Watch {
    fn arm(files: &[(&'static str, String, MaskFlags)]) -> std::result::Result<Watch, String> {
        let fan = Fanotify::init(
            InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_NONBLOCK | InitFlags::FAN_CLOEXEC,
            EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC | EventFFlags::O_LARGEFILE,
        )
        .map_err(|errno| format!("fanotify_init: {}", errno_name(errno)))?;
        let mut marked = Vec::new();
        for (name, path, mask) in files {
            fan.mark(MarkFlags::FAN_MARK_ADD, *mask, None, Some(path.as_str()))
                .map_err(|errno| format!("fanotify_mark {name}: {}", errno_name(errno)))?;
            let st =
                nix::sys::stat::stat(path.as_str()).map_err(|errno| format!("stat {name}: {}", errno_name(errno)))?;
            marked.push((*name, (st.st_dev, st.st_ino)));
        }
        Ok(Watch { fan, files: marked })
    }

    /// (watched file's name, PID) of each event, in the order the kernel queued them.
    fn events(&self) -> std::result::Result<Vec<(&'static str, i32)>, String> {
        let mut seen = Vec::new();
        loop {
            let events = match self.fan.read_events() {
                Ok(events) if events.is_empty() => break,
                Ok(events) => events,
                Err(Errno::EAGAIN) => break,
                Err(errno) => return Err(format!("reading fanotify events: {}", errno_name(errno))),
            };
            for event in events {
                let Some(fd) = event.fd() else {
                    return Err("fanotify's queue overflowed".into());
                };
                let st = nix::sys::stat::fstat(fd.as_raw_fd())
                    .map_err(|errno| format!("fstat of an event's file: {}", errno_name(errno)))?;
                let name =
                    self.files.iter().find(|(_, id)| *id == (st.st_dev, st.st_ino)).map_or("another file", |f| f.0);
                seen.push((name, event.pid()));
            }
        }
        Ok(seen)
    }
}

/// A fanotify group that reports each entry created in (or moved or linked into) `dir`,
/// with the PID of the process that made it. Directory events need a group that reports
/// file handles (FAN_REPORT_DIR_FID, which nix 0.29's InitFlags does not name: the raw
/// bit from libc); a filesystem without them refuses the mark (EOPNOTSUPP, ENODEV).
fn watch_creations(dir: &Path) -> std::result::Result<Fanotify, String> {
    let fan = Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF
            | InitFlags::FAN_NONBLOCK
            | InitFlags::FAN_CLOEXEC
            | InitFlags::from_bits_retain(libc::FAN_REPORT_DIR_FID),
        EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC,
    )
    .map_err(|errno| format!("not watched: fanotify_init: {}", errno_name(errno)))?;
    match fan.mark(
        MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_ONLYDIR,
        MaskFlags::FAN_CREATE | MaskFlags::FAN_MOVED_TO | MaskFlags::FAN_ONDIR,
        None,
        Some(dir),
    ) {
        Ok(()) => Ok(fan),
        Err(errno @ (Errno::EOPNOTSUPP | Errno::ENODEV | Errno::EXDEV)) => {
            Err(format!("{NO_FID} ({})", errno_name(errno)))
        }
        Err(errno) => Err(format!("not watched: fanotify_mark: {}", errno_name(errno))),
    }
}

/// CapEff, CapPrm and CapAmb of a status, each "none", "all" or a mask.
fn caps_of(status: &procfs::ProcStatus) -> Vec<String> {
    [status.cap_eff, status.cap_prm, status.cap_amb].into_iter().map(describe_caps).collect()
}

/// "sleep" if /proc/<pid>/exe is the sleep on the harness's PATH (the same file), else
/// the name of the program the process runs.
fn program_of(pid: i32) -> String {
    let exe = std::fs::metadata(format!("/proc/{pid}/exe"));
    let sleep = which::which("sleep").ok().and_then(|p| std::fs::metadata(p).ok());
    match (exe, sleep) {
        (Ok(exe), Some(sleep)) if (exe.dev(), exe.ino()) == (sleep.dev(), sleep.ino()) => "sleep".into(),
        (Ok(_), _) => {
            let link = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            format!("not sleep: {}", link.file_name().map_or("?".into(), |n| n.to_string_lossy().into_owned()))
        }
        (Err(e), _) => format!("not read: {e}"),
    }
}

/// In the variant's mount namespace (its /etc/subuid grants the lab's id its range), a
/// probe runs newuidmap as the lab's id on throwaway user namespaces of its own: once with
/// the granted range, once with a range no /etc/subuid line grants.
fn newuidmap_tries(door: &RunDoor, writer: i32, id: u32) -> Result<(String, String)> {
    let mnt = open_ns(writer, "mnt")?;
    let mut results = Vec::new();
    for start in [SUBID_START, UNGRANTED_START] {
        let outcome = forked::probe("newuidmap as the lab's id", PROBE_TIMEOUT * 2, |out| {
            door.enter()?;
            setns(mnt.as_fd(), CloneFlags::CLONE_NEWNS)?;
            let (ready_rx, ready_tx) = nix::unistd::pipe()?;
            // SAFETY: the grandchild makes syscalls only, and leaves with _exit.
            let target = match unsafe { fork() }? {
                ForkResult::Child => {
                    drop(ready_rx);
                    let code = match drop_to(id, id).and_then(|()| unshare(CloneFlags::CLONE_NEWUSER)) {
                        Ok(()) => {
                            let _ = nix::unistd::write(&ready_tx, b"r");
                            drop(ready_tx);
                            nix::unistd::pause();
                            0
                        }
                        Err(errno) => errno as i32,
                    };
                    // SAFETY: _exit has no preconditions.
                    unsafe { libc::_exit(code) }
                }
                ForkResult::Parent { child } => child,
            };
            drop(ready_tx);
            let mut byte = [0u8];
            let ready = nix::unistd::read(ready_rx.as_raw_fd(), &mut byte);
            let said = if ready == Ok(1) {
                let ran = std::process::Command::new("newuidmap")
                    .args([target.to_string(), "0".into(), id.to_string(), "1".into()])
                    .args(["1".to_string(), start.to_string(), SUBID_COUNT.to_string()])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .uid(id)
                    .gid(id)
                    .status();
                match ran {
                    Ok(status) if status.success() => {
                        let map = std::fs::read_to_string(format!("/proc/{target}/uid_map")).unwrap_or_default();
                        if map.lines().count() == 2 {
                            "mapped".to_string()
                        } else {
                            format!("exit 0, but uid_map is {map:?}")
                        }
                    }
                    Ok(status) => format!("refused ({status})"),
                    Err(e) => format!("not run: {e}"),
                }
            } else {
                "the throwaway namespace was not made".to_string()
            };
            let _ = kill(target, Signal::SIGKILL);
            let _ = waitpid(target, None);
            forked::say(out, &said);
            Ok(())
        })?;
        results.push(match outcome.status {
            Ok(()) => outcome.output.trim().to_string(),
            Err(failure) => format!("probe failed: {failure:?}"),
        });
    }
    let refused = results.pop().unwrap_or_default();
    let granted = results.pop().unwrap_or_default();
    Ok((granted, refused))
}
