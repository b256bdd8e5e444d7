//! Checks for lab nsenter-join. The harness finds the target container itself (the lab's
//! nsj-shim's child, or the Docker container labelled with the run's scratch dir, through
//! `docker inspect`), compares every /proc/<pid>/ns/* of the processes that joined it with
//! the container's init, reads NSpid and the container's own /proc, plants files and looks
//! for them, connects to the container's service from inside its network namespace and
//! from the host's, kills from inside the container itself (setns in a forked probe),
//! stops the container and watches who dies with pidfds. The lab's narration and claims
//! decide nothing.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use labkit::protocol::nsenter_join::*;
use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::{errno_name, file_id, find_child_named};
use crate::catalog::Observer;
use crate::error::{Error, Result};
use crate::facts::{Evidence, Fact, Facts, Relation};
use crate::probe::forked;
use crate::probe::pidfd::PidFd;
use crate::probe::procfs::{self, HeldNs, NsId, NAMESPACE_KINDS};
use crate::run::LabRun;
use crate::verdict::VerdictSpec;

/// Whose namespace of one kind a process is in, compared with the container's init and
/// with the lab's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sharing {
    /// The container's (and not the host's).
    Container,
    /// The host's (and not the container's).
    Host,
    /// The container did not make one of this kind: it is the host's, and the container's.
    Both,
    /// Neither: one of its own.
    Own,
    /// The process or the link is gone.
    Gone,
}

/// The facts of one run (the lab's own container, or the Docker variant), by stage.
pub struct Keys {
    root_reaches_rootfs: Fact<bool>,
    service_from_host: Fact<String>,
    threads_setns_mnt: Fact<String>,

    joiner_pid_ns: Fact<Relation>,
    joiner_for_children: Fact<Relation>,
    joiner_namespaces: Fact<BTreeMap<String, Sharing>>,
    joined_namespaces: Fact<BTreeMap<String, Sharing>>,
    joined_nspid_levels: Fact<usize>,
    joined_pid_inside_differs: Fact<bool>,
    joined_ppid_inside: Fact<Option<i32>>,
    joined_listed_inside: Fact<bool>,
    victim_pid_ns: Fact<Relation>,
    service_from_joined: Fact<String>,
    cgroup_vs_container: Fact<Relation>,
    cgroup_vs_lab: Fact<Relation>,
    container_pids_max: Fact<Option<String>>,

    debug_namespaces: Fact<BTreeMap<String, Sharing>>,
    debug_sees_host_file: Fact<bool>,
    debug_proc_mount: Fact<String>,
    debug_proc_lists_container: Fact<bool>,
    debug_proc_1_root_is_containers: Fact<bool>,
    host_mount_changes: Fact<Vec<String>>,

    nopid_namespaces: Fact<BTreeMap<String, Sharing>>,
    nopid_root_is_containers: Fact<bool>,
    nopid_listed_inside: Fact<bool>,
    kill_nopid_from_inside: Fact<String>,
    nopid_alive_after_kill: Fact<bool>,
    kill_victim_from_inside: Fact<String>,
    victim_died: Fact<bool>,
    init_died: Fact<bool>,
    /// The joined process was still running when the init was killed: one that exited at
    /// once would "die with" any init, and look right to a probe that came early.
    joined_alive_until_init_killed: Fact<bool>,
    joined_died_with_init: Fact<bool>,
    debug_died_with_init: Fact<bool>,
    nopid_survived_init: Fact<bool>,

    container_namespaces_empty: Fact<bool>,
}

macro_rules! keys {
    ($running:literal, $joined:literal, $debugging:literal, $all_but_pid:literal, $stopped:literal) => {
        Keys {
            root_reaches_rootfs: Fact::new(concat!($running, ".file_planted_through_proc_init_root_is_in_the_rootfs")),
            service_from_host: Fact::new(concat!($running, ".service_from_the_hosts_net_ns")),
            threads_setns_mnt: Fact::new(concat!($running, ".setns_mnt_with_two_threads")),

            joiner_pid_ns: Fact::new(concat!($joined, ".joiner_pid_ns_vs_host")),
            joiner_for_children: Fact::new(concat!($joined, ".joiner_pid_for_children_vs_container")),
            joiner_namespaces: Fact::new(concat!($joined, ".joiner_namespaces")),
            joined_namespaces: Fact::new(concat!($joined, ".joined_namespaces")),
            joined_nspid_levels: Fact::new(concat!($joined, ".joined_nspid_levels")),
            joined_pid_inside_differs: Fact::new(concat!($joined, ".joined_pid_inside_differs_from_outside")),
            joined_ppid_inside: Fact::new(concat!($joined, ".joined_ppid_in_the_containers_proc")),
            joined_listed_inside: Fact::new(concat!($joined, ".joined_listed_in_the_containers_proc")),
            victim_pid_ns: Fact::new(concat!($joined, ".victim_pid_ns_vs_container")),
            service_from_joined: Fact::new(concat!($joined, ".service_from_the_joined_net_ns")),
            cgroup_vs_container: Fact::new(concat!($joined, ".joined_cgroups_vs_container_init")),
            cgroup_vs_lab: Fact::new(concat!($joined, ".joined_cgroups_vs_lab")),
            container_pids_max: Fact::new(concat!($joined, ".container_pids_max")),

            debug_namespaces: Fact::new(concat!($debugging, ".debug_namespaces")),
            debug_sees_host_file: Fact::new(concat!($debugging, ".debug_sees_the_file_planted_on_the_host")),
            debug_proc_mount: Fact::new(concat!($debugging, ".debug_proc_mount")),
            debug_proc_lists_container: Fact::new(concat!($debugging, ".debug_proc_lists_the_containers_processes")),
            debug_proc_1_root_is_containers: Fact::new(concat!(
                $debugging,
                ".debug_proc_1_root_holds_the_file_planted_in_the_container"
            )),
            host_mount_changes: Fact::new(concat!($debugging, ".host_mount_changes")),

            nopid_namespaces: Fact::new(concat!($all_but_pid, ".nopid_namespaces")),
            nopid_root_is_containers: Fact::new(concat!($all_but_pid, ".nopid_root_is_the_containers")),
            nopid_listed_inside: Fact::new(concat!($all_but_pid, ".nopid_listed_in_the_containers_proc")),
            kill_nopid_from_inside: Fact::new(concat!($all_but_pid, ".kill_nopid_host_pid_from_inside")),
            nopid_alive_after_kill: Fact::new(concat!($all_but_pid, ".nopid_alive_after_that_kill")),
            kill_victim_from_inside: Fact::new(concat!($all_but_pid, ".kill_victim_inner_pid_from_inside")),
            victim_died: Fact::new(concat!($all_but_pid, ".victim_died")),
            init_died: Fact::new(concat!($all_but_pid, ".container_init_died")),
            joined_alive_until_init_killed: Fact::new(concat!($all_but_pid, ".joined_alive_until_the_init_was_killed")),
            joined_died_with_init: Fact::new(concat!($all_but_pid, ".joined_died_with_the_init")),
            debug_died_with_init: Fact::new(concat!($all_but_pid, ".debug_died_with_the_init")),
            nopid_survived_init: Fact::new(concat!($all_but_pid, ".nopid_survived_the_init")),

            container_namespaces_empty: Fact::new(concat!($stopped, ".no_process_left_in_the_containers_namespaces")),
        }
    };
}

const OWN: Keys = keys!("running", "joined", "debugging", "all-but-pid", "stopped");
const DOCKER: Keys =
    keys!("docker-running", "docker-joined", "docker-debugging", "docker-all-but-pid", "docker-stopped");
const DOCKER_GONE: Fact<Vec<String>> = Fact::new("docker-removed.labelled_containers_and_images_left");

/// What the joiner joins, what the debug tool joins, what nsj-nopid joins.
const JOINED_KINDS: [&str; 4] = ["ipc", "net", "pid", "uts"];
const DEBUG_KINDS: [&str; 2] = ["net", "pid"];
const NOPID_KINDS: [&str; 4] = ["ipc", "mnt", "net", "uts"];

/// Every kind in `kinds` is the container's; every other kind the host's (or both, where
/// the container made none), and for `own` kinds one of the process's own.
fn shares_exactly(map: &BTreeMap<String, Sharing>, kinds: &[&str], own: &[&str]) -> bool {
    !map.is_empty()
        && map.iter().all(|(kind, sharing)| {
            if kinds.contains(&kind.as_str()) {
                *sharing == Sharing::Container
            } else if own.contains(&kind.as_str()) {
                *sharing == Sharing::Own
            } else {
                matches!(sharing, Sharing::Host | Sharing::Both)
            }
        })
}

fn joiner_stays(e: &Evidence, k: &Keys) -> Option<bool> {
    let joiner = e.get(k.joiner_namespaces)?;
    Some(
        e.get(k.joiner_pid_ns)? == Relation::Same
            && e.get(k.joiner_for_children)? == Relation::Same
            && ["ipc", "net", "uts"].iter().all(|kind| joiner.get(*kind) == Some(&Sharing::Container)),
    )
}

fn shares_joined_only(e: &Evidence, k: &Keys) -> Option<bool> {
    Some(shares_exactly(&e.get(k.joined_namespaces)?, &JOINED_KINDS, &[]))
}

/// Whether the joined process is in the container's namespace of `kind`, as the kernel's
/// links say: what it shows (a service, a PID, a death) counts only then, since a lab can
/// make a look-alike of any of them.
fn joined_in(e: &Evidence, k: &Keys, kind: &str) -> Option<bool> {
    Some(e.get(k.joined_namespaces)?.get(kind) == Some(&Sharing::Container))
}

fn reaches_service(e: &Evidence, k: &Keys) -> Option<bool> {
    Some(
        joined_in(e, k, "net")?
            && e.get(k.service_from_joined)? == "answers"
            // Refused where the host's loopback is up; unreachable where it is down (a
            // minimal VM guest): either way the host's 127.0.0.1 is not the container's.
            && matches!(e.get(k.service_from_host)?.as_str(), "ECONNREFUSED" | "ENETUNREACH"),
    )
}

fn two_pids(e: &Evidence, k: &Keys) -> Option<bool> {
    Some(
        joined_in(e, k, "pid")?
            && e.get(k.joined_nspid_levels)? == 2
            && e.get(k.joined_pid_inside_differs)?
            && e.get(k.joined_ppid_inside)? == Some(0)
            && e.get(k.joined_listed_inside)?
            && e.get(k.joined_alive_until_init_killed)?,
    )
}

fn killed_from_inside(e: &Evidence, k: &Keys) -> Option<bool> {
    Some(
        e.get(k.victim_pid_ns)? == Relation::Same
            && e.get(k.kill_victim_from_inside)? == "kill succeeded"
            && e.get(k.victim_died)?,
    )
}

fn dies_with_init(e: &Evidence, k: &Keys) -> Option<bool> {
    Some(
        joined_in(e, k, "pid")?
            && e.get(k.joined_alive_until_init_killed)?
            && e.get(k.init_died)?
            && e.get(k.joined_died_with_init)?,
    )
}

fn debug_tool(e: &Evidence, k: &Keys) -> Option<bool> {
    Some(
        shares_exactly(&e.get(k.debug_namespaces)?, &DEBUG_KINDS, &["mnt"])
            && e.get(k.debug_sees_host_file)?
            && e.get(k.debug_proc_mount)? == super::PROC_MOUNTED
            && e.get(k.debug_proc_lists_container)?
            && e.get(k.debug_proc_1_root_is_containers)?,
    )
}

fn invisible_without_pid(e: &Evidence, k: &Keys) -> Option<bool> {
    Some(
        shares_exactly(&e.get(k.nopid_namespaces)?, &NOPID_KINDS, &[])
            && e.get(k.nopid_root_is_containers)?
            && !e.get(k.nopid_listed_inside)?
            && e.get(k.kill_nopid_from_inside)? == "ESRCH"
            && e.get(k.nopid_alive_after_kill)?
            && e.get(k.nopid_survived_init)?,
    )
}

pub const VERDICTS: [VerdictSpec; 22] = [
    VerdictSpec {
        id: "joiner-stays",
        claim: "after setns(2) into the container's ipc, uts, net and pid namespaces, the joiner is in its ipc, uts and net namespaces but keeps its own PID namespace: only its pid_for_children is the container's",
        points: 2,
        region: Some("join-namespaces"),
        requires: &[],
        hint: "open /proc/<init>/ns/{ipc,uts,net,pid} of the target and setns(2) into each; compare /proc/<joiner>/ns/pid and pid_for_children with the init's",
        decide: |e| joiner_stays(e, &OWN),
    },
    VerdictSpec {
        id: "shares-joined-only",
        claim: "the joined process shares exactly the namespaces it joined (ipc, net, pid, uts) with the container's init, and every other one with the host",
        points: 2,
        region: Some("join-namespaces"),
        requires: &[],
        hint: "compare every /proc/<pid>/ns/* of nsj-sleep with the container init's: setns each kind nsenter --ipc --uts --net --pid joins, and no other",
        decide: |e| shares_joined_only(e, &OWN),
    },
    VerdictSpec {
        id: "joined-reaches-service",
        claim: "the service on the container's 127.0.0.1 answers from the joined process's network namespace and not from the host's (ECONNREFUSED, or ENETUNREACH where the host's loopback is down)",
        points: 1,
        region: Some("join-namespaces"),
        requires: &[],
        hint: "127.0.0.1 is a different loopback in every network namespace: the joined process must be in the container's (setns net)",
        decide: |e| reaches_service(e, &OWN),
    },
    VerdictSpec {
        id: "two-pids",
        claim: "the joined process has one PID on the host and another inside the container (NSpid has two), PPid 0 inside, the container's own /proc lists it, and it is still running when the container's init is killed",
        points: 2,
        region: Some("fork-joined"),
        requires: &[],
        hint: "fork the joined process after setns(pid), and keep it running: the caller of setns stays where it was",
        decide: |e| two_pids(e, &OWN),
    },
    VerdictSpec {
        id: "killed-from-inside",
        claim: "a process inside the container kills a joined process by its PID there",
        points: 2,
        region: Some("fork-joined"),
        requires: &[],
        hint: "nsj-victim must be a child forked after setns(pid): then it has a PID inside the container, which any process there can kill",
        decide: |e| killed_from_inside(e, &OWN),
    },
    VerdictSpec {
        id: "dies-with-init",
        claim: "when the container's init dies (SIGKILL), the joined process, running until then, dies with it",
        points: 2,
        region: Some("fork-joined"),
        requires: &[],
        hint: "only a process in the container's PID namespace is killed with its init: fork after setns(pid)",
        decide: |e| dies_with_init(e, &OWN),
    },
    VerdictSpec {
        id: "debug-tool",
        claim: "a debug tool that joins pid and net but not mnt still sees the host's files, its own proc lists the container's processes, and /proc/1/root there reaches the container's files",
        points: 2,
        region: Some("debug-tool"),
        requires: &[],
        hint: "in nsj-debug (already in the container's PID namespace): a mount namespace of its own, / made private, then a fresh proc on /proc",
        decide: |e| debug_tool(e, &OWN),
    },
    VerdictSpec {
        id: "host-untouched",
        claim: "the lab's host (the run's mount namespace) keeps its /proc and every mount while the debug tool runs",
        points: 1,
        region: Some("debug-tool"),
        requires: &[],
        hint: "a mount made outside a mount namespace of your own, or before / is made MS_REC|MS_PRIVATE there, lands on the host",
        decide: |e| Some(e.get(OWN.host_mount_changes)?.is_empty()),
    },
    VerdictSpec {
        id: "invisible-without-pid",
        claim: "a process that joined every namespace but pid (and the container's root) is not in the container's /proc, a kill of its host PID from inside gets ESRCH, and it outlives the container's init",
        points: 2,
        region: Some("all-but-pid"),
        requires: &[],
        hint: "setns into ipc, uts, net and mnt of the init, not pid; then fchdir to the root you opened before and chroot(\".\"), as nsenter --root does",
        decide: |e| invisible_without_pid(e, &OWN),
    },
    VerdictSpec {
        id: "root-reaches-rootfs",
        claim: "a file the harness writes through /proc/<init>/root lands in the container's root filesystem",
        points: 0,
        region: None,
        requires: &[],
        hint: "the container's init must be chrooted into the lab's rootfs",
        decide: |e| e.get(OWN.root_reaches_rootfs),
    },
    VerdictSpec {
        id: "threads-einval",
        claim: "setns(2) into a mount namespace from a process with two threads fails with EINVAL",
        points: 0,
        region: None,
        requires: &[],
        hint: "the harness tries it itself, in a forked probe that starts a second thread",
        decide: |e| Some(e.get(OWN.threads_setns_mnt)? == "EINVAL"),
    },
    VerdictSpec {
        id: "container-emptied",
        claim: "once the container is stopped and the lab has cleaned up, no process is left in any of the container's namespaces",
        points: 0,
        region: None,
        requires: &[],
        hint: "the lab must kill what outlived the container's init (nsj-nopid) before it goes on",
        decide: |e| e.get(OWN.container_namespaces_empty),
    },
    VerdictSpec {
        id: "docker-two-pids",
        claim: "joined into a Docker container, the process has one PID on the host and another inside (NSpid has two), PPid 0 inside, the container's /proc lists it, and it is still running when the container is stopped",
        points: 1,
        region: Some("fork-joined"),
        requires: &[],
        hint: "the same join as with the lab's own container: fork after setns(pid) into the PID namespace of the PID `docker inspect` gives",
        decide: |e| two_pids(e, &DOCKER),
    },
    VerdictSpec {
        id: "docker-shares-joined-only",
        claim: "joined into a Docker container, the process shares exactly ipc, net, pid and uts with the container's init (every other namespace with the host) and reaches the service on the container's 127.0.0.1, which the host's network namespace refuses",
        points: 1,
        region: Some("join-namespaces"),
        requires: &[],
        hint: "compare every /proc/<pid>/ns/* of nsj-sleep with those of the PID `docker inspect -f '{{.State.Pid}}'` gives",
        decide: |e| Some(shares_joined_only(e, &DOCKER)? && reaches_service(e, &DOCKER)?),
    },
    VerdictSpec {
        id: "docker-killed-from-inside",
        claim: "a process inside the Docker container kills a joined process by its PID there",
        points: 1,
        region: Some("fork-joined"),
        requires: &[],
        hint: "as with the lab's own container: the joined process must have a PID inside",
        decide: |e| killed_from_inside(e, &DOCKER),
    },
    VerdictSpec {
        id: "docker-dies-with-stop",
        claim: "docker stop kills the joined process, running until then, with the container's init",
        points: 1,
        region: Some("fork-joined"),
        requires: &[],
        hint: "only a process in the container's PID namespace dies when its init does",
        decide: |e| dies_with_init(e, &DOCKER),
    },
    VerdictSpec {
        id: "docker-debug-tool",
        claim: "the debug tool joined to a Docker container's pid and net sees the host's files, lists the container's processes in its own proc, and reaches the container's files by /proc/1/root",
        points: 1,
        region: Some("debug-tool"),
        requires: &[],
        hint: "as with the lab's own container: a private mount namespace and a fresh proc, mounted from inside the container's PID namespace",
        decide: |e| Some(debug_tool(e, &DOCKER)? && e.get(DOCKER.host_mount_changes)?.is_empty()),
    },
    VerdictSpec {
        id: "docker-invisible-without-pid",
        claim: "a process that joined every namespace of a Docker container but pid is not in its /proc, cannot be killed from inside by its host PID (ESRCH), and outlives docker stop",
        points: 1,
        region: Some("all-but-pid"),
        requires: &[],
        hint: "as with the lab's own container: every namespace but pid, then the container's root",
        decide: |e| invisible_without_pid(e, &DOCKER),
    },
    VerdictSpec {
        id: "docker-root-reaches-rootfs",
        claim: "a file the harness writes through /proc/<init>/root of a Docker container is a change docker diff reports in that container",
        points: 0,
        region: None,
        requires: &[],
        hint: "/proc/<pid>/root is the container's root, whatever the mount namespace of the one who looks",
        decide: |e| e.get(DOCKER.root_reaches_rootfs),
    },
    VerdictSpec {
        id: "docker-not-bounded",
        claim: "the process joined into a Docker container stays in the lab's cgroups, not the container's: the container's PID limit does not bound it",
        points: 0,
        region: None,
        requires: &[],
        hint: "setns(2) moves no process between cgroups; the container's limits are on its cgroup",
        decide: |e| {
            Some(
                e.get(DOCKER.cgroup_vs_container)? == Relation::Differs
                    && e.get(DOCKER.cgroup_vs_lab)? == Relation::Same
                    && e.get(DOCKER.container_pids_max)? == Some(DOCKER_PIDS_LIMIT.to_string()),
            )
        },
    },
    VerdictSpec {
        id: "docker-emptied",
        claim: "once docker stop has ended the container and the lab has cleaned up, no process is left in any of its namespaces",
        points: 0,
        region: None,
        requires: &[],
        hint: "the lab must kill what outlived the container's init (nsj-nopid) before it goes on",
        decide: |e| e.get(DOCKER.container_namespaces_empty),
    },
    VerdictSpec {
        id: "docker-removed",
        claim: "afterwards the Docker container and the image the lab imported are gone",
        points: 0,
        region: None,
        requires: &[],
        hint: "docker rm -f the container and docker rmi the image the lab imported",
        decide: |e| Some(e.get(DOCKER_GONE)?.is_empty()),
    },
];

/// Written by `prepare` in the scratch dir (the host's files, for the debug tool to see).
const HOST_FILE: &str = "host-file-planted-by-cilab";
/// Written by the harness through /proc/<init>/root (at the container's root).
const PLANTED_IN_CONTAINER: &str = "cilab-planted-in-the-container";
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const DOCKER_TIMEOUT: Duration = Duration::from_secs(30);

pub fn prepare(scratch: &Path) -> Result<()> {
    let path = scratch.join(HOST_FILE);
    std::fs::write(&path, "planted on the host by cilab before the run\n").map_err(Error::io("write", path))
}

pub fn observer() -> Box<dyn Observer> {
    Box::new(NsenterJoin::default())
}

/// Whether this machine can run the Docker variant: a client on PATH and a daemon that
/// answers.
pub fn docker_available() -> std::result::Result<(), String> {
    let how = "Docker is not available: install docker.io (apt-get install docker.io) and start dockerd \
               (systemctl start docker); the Docker verdicts are skipped until then";
    if which::which("docker").is_err() {
        return Err(format!("{how} (no `docker` on PATH)"));
    }
    docker(&["version", "--format", "{{.Server.Version}}"], Duration::from_secs(5))
        .map(drop)
        .map_err(|e| format!("{how} (the daemon does not answer: {e})"))
}

/// Runs the docker client, at most `timeout`; what it printed on stdout.
pub(crate) fn docker(args: &[&str], timeout: Duration) -> Result<String> {
    let what = format!("docker {}", args.join(" "));
    let mut child = std::process::Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(Error::io("start", &what))?;
    let done = PidFd::open(child.id() as i32)?;
    // Read while it runs: output larger than a pipe would otherwise stall it until the timeout.
    let read = |stream: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read(child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>));
    let stderr = read(child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>));
    if !done.wait_exit(timeout) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Harness(format!("`{what}` did not finish within {timeout:?}")));
    }
    let status = child.wait().map_err(Error::io("wait for", &what))?;
    let output = std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if !output.status.success() {
        return Err(Error::Harness(format!(
            "`{what}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The label filter for what the lab made in the run with this scratch dir.
fn label_filter(scratch: &Path) -> String {
    let scratch = scratch.canonicalize().unwrap_or_else(|_| scratch.to_path_buf());
    format!("label={DOCKER_LABEL}={}", scratch.display())
}

/// Docker containers (all, running or not) and images labelled with the run's scratch dir.
fn labelled(scratch: &Path) -> Result<(Vec<String>, Vec<String>)> {
    labelled_by(&label_filter(scratch))
}

/// Docker containers (all, running or not) and images that `filter` selects.
fn labelled_by(filter: &str) -> Result<(Vec<String>, Vec<String>)> {
    let ids = |text: String| text.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let containers = ids(docker(&["ps", "-aq", "--no-trunc", "--filter", filter], DOCKER_TIMEOUT)?);
    let images = ids(docker(&["images", "-q", "--no-trunc", "--filter", filter], DOCKER_TIMEOUT)?);
    Ok((containers, images))
}

/// How long dockerd may take to finish a request whose client was killed.
const CUT_REQUEST_SETTLES: Duration = Duration::from_secs(2);

/// A docker client killed mid-request (`docker run`, `docker import`) does not stop the
/// daemon: the container or image can appear after the client is gone. The daemon's own
/// event stream for this run's label is read until the requests had time to complete
/// (`--until` bounds it), so the removal that follows sees what they made.
fn settle_cut_requests(scratch: &Path) {
    let until = std::time::SystemTime::now() + CUT_REQUEST_SETTLES;
    let until = until.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() + 1).unwrap_or_default();
    let filter = label_filter(scratch);
    let _ = docker(
        &["events", "--since", "5m", "--until", &until.to_string(), "--filter", &filter, "--format", "{{.ID}}"],
        CUT_REQUEST_SETTLES + Duration::from_secs(3),
    );
}

#[derive(Default)]
struct NsenterJoin {
    docker: bool,
    target: Option<Target>,
    joined: Option<PidFd>,
    victim: Option<(PidFd, i32)>,
    debug: Option<PidFd>,
}

struct Target {
    init: PidFd,
    /// Its namespaces, held open for as long as the observer compares with them.
    namespaces: Vec<HeldNs>,
    /// The Docker container's id (the Docker variant).
    container: Option<String>,
}

impl Target {
    fn ns(&self, kind: &str) -> Option<NsId> {
        self.namespaces.iter().find(|n| n.kind == kind).map(|n| n.id)
    }

    fn ns_file(&self, kind: &str) -> Result<&File> {
        self.namespaces
            .iter()
            .find(|n| n.kind == kind)
            .map(HeldNs::file)
            .ok_or_else(|| Error::Harness(format!("the container's {kind} namespace was not held")))
    }

    fn pid(&self) -> i32 {
        self.init.pid()
    }
}

impl Observer for NsenterJoin {
    fn observe(&mut self, stage: &str, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let index = match (STAGES.iter().position(|s| *s == stage), DOCKER_STAGES.iter().position(|s| *s == stage)) {
            (Some(index), _) => index,
            (None, Some(index)) => {
                self.docker = true;
                index
            }
            (None, None) => return Err(Error::Harness(format!("nsenter-join has no stage `{stage}`"))),
        };
        let keys = if self.docker { &DOCKER } else { &OWN };
        match index {
            0 => self.running(run, keys, facts),
            1 => self.joined(run, keys, facts),
            2 => self.debugging(run, keys, facts),
            3 => self.all_but_pid(run, keys, facts),
            4 => self.stopped(keys, facts),
            _ => {
                let (containers, images) = labelled(run.scratch())?;
                let left: Vec<String> = containers
                    .iter()
                    .map(|_| "a container".to_string())
                    .chain(images.iter().map(|_| "an image".to_string()))
                    .collect();
                facts.record(DOCKER_GONE, left);
                Ok(())
            }
        }
    }

    fn made_outside(&mut self) -> Vec<(std::path::PathBuf, String)> {
        if which::which("docker").is_err() {
            return Vec::new();
        }
        // Each with the scratch dir its label names.
        let label_of = |kind: &str, ids: &[String]| -> Vec<(std::path::PathBuf, String)> {
            if ids.is_empty() {
                return Vec::new();
            }
            let format = format!("{{{{.Id}}}} {{{{index .Config.Labels \"{DOCKER_LABEL}\"}}}}");
            let mut args = vec![kind, "inspect", "--format", format.as_str()];
            args.extend(ids.iter().map(String::as_str));
            let text = docker(&args, DOCKER_TIMEOUT).unwrap_or_default();
            text.lines()
                .filter_map(|line| line.split_once(' '))
                .map(|(id, scratch)| (std::path::PathBuf::from(scratch), format!("Docker {kind} {id}")))
                .collect()
        };
        let (containers, images) = labelled_by(&format!("label={DOCKER_LABEL}")).unwrap_or_default();
        let mut found = label_of("container", &containers);
        found.extend(label_of("image", &images));
        found
    }

    fn clean_up_outside(&mut self, scratch: &Path, killed: &[String]) -> Vec<String> {
        if which::which("docker").is_err() {
            return Vec::new();
        }
        if killed.iter().any(|command| command == "docker") {
            settle_cut_requests(scratch);
        }
        let mut leaks = Vec::new();
        let (containers, images) = match labelled(scratch) {
            Ok(found) => found,
            // A run that used Docker must not pass unlooked-at when the daemon does not
            // answer; a run that never did has nothing there to ask about.
            Err(error) if self.docker => {
                leaks.push(format!("could not ask Docker what is labelled with {}: {error}", scratch.display()));
                return leaks;
            }
            Err(_) => return leaks,
        };
        for id in containers {
            let removed = docker(&["rm", "-f", &id], DOCKER_TIMEOUT).map(drop);
            leaks.push(format!("the lab left Docker container {id} (removed: {removed:?})"));
        }
        for id in images {
            let removed = docker(&["rmi", "-f", &id], DOCKER_TIMEOUT).map(drop);
            leaks.push(format!("the lab left Docker image {id} (removed: {removed:?})"));
        }
        // The Docker container's namespaces, which the run's teardown does not hold.
        if let Some(target) = self.target.as_ref().filter(|t| t.container.is_some()) {
            for held in &target.namespaces {
                if procfs::ns_id(std::process::id() as i32, held.kind).ok().flatten() == Some(held.id) {
                    continue;
                }
                for pid in procfs::processes_in_namespace(held.kind, held.id, &[]) {
                    leaks.push(format!(
                        "process {pid} ({}) still in the Docker container's {} namespace",
                        procfs::comm(pid).unwrap_or_default(),
                        held.kind
                    ));
                }
            }
        }
        leaks
    }
}

impl NsenterJoin {
    fn target(&self) -> Result<&Target> {
        self.target.as_ref().ok_or_else(|| Error::Harness("the container was not found at an earlier stage".into()))
    }

    fn running(&mut self, run: &mut LabRun, keys: &Keys, facts: &mut Facts) -> Result<()> {
        // The container's init, found by the harness: nsj-shim's only child, or the PID
        // `docker inspect` gives for the container labelled with this run's scratch dir.
        let (init, container) = if self.docker {
            let (containers, _) = labelled(run.scratch())?;
            let [id] = containers.as_slice() else {
                return Err(lab_error(format!("{} Docker containers carry this run's label, not 1", containers.len())));
            };
            let pid = docker(&["inspect", "-f", "{{.State.Pid}}", id], DOCKER_TIMEOUT)?;
            let pid: i32 = pid.trim().parse().map_err(|_| Error::parse("docker inspect State.Pid", pid.trim()))?;
            (pid, Some(id.clone()))
        } else {
            let shim = find_child_named(run, SHIM_COMM)?;
            match procfs::children(shim).as_slice() {
                [init] => (*init, None),
                other => return Err(lab_error(format!("nsj-shim has {} children, not 1 (the init)", other.len()))),
            }
        };
        run.track_pid(init);
        let fd = PidFd::open(init)?;
        let mut namespaces = Vec::new();
        for kind in NAMESPACE_KINDS {
            // The lab's own container is the run's: teardown checks it is left empty.
            if container.is_none() {
                run.namespace_of(init, kind)?;
            }
            if let Some(held) = HeldNs::open(init, kind)? {
                namespaces.push(held);
            }
        }
        let target = Target { init: fd, namespaces, container };

        // A file planted at the container's root through /proc/<init>/root (O_EXCL: never
        // through a link the lab put there), then looked for where the rootfs really is.
        let planted = PathBuf::from(format!("/proc/{init}/root/{PLANTED_IN_CONTAINER}"));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&planted)
            .and_then(|mut f| f.write_all(b"planted by cilab\n"));
        let reaches = written.is_ok()
            && match &target.container {
                None => {
                    let in_rootfs = run.scratch().join(ROOTFS_DIR).join(PLANTED_IN_CONTAINER);
                    file_id(&in_rootfs).is_some() && file_id(&in_rootfs) == file_id(&planted)
                }
                Some(id) => docker(&["diff", id], DOCKER_TIMEOUT)?
                    .lines()
                    .any(|l| l.trim() == format!("A /{PLANTED_IN_CONTAINER}")),
            };
        facts.record(keys.root_reaches_rootfs, reaches);
        facts.record(keys.service_from_host, service(None)?);
        facts.record(keys.threads_setns_mnt, setns_mnt_with_two_threads(target.ns_file("mnt")?)?);
        self.target = Some(target);
        Ok(())
    }

    fn joined(&mut self, run: &mut LabRun, keys: &Keys, facts: &mut Facts) -> Result<()> {
        let joiner = find_child_named(run, JOINER_COMM)?;
        let target = self.target()?;
        facts.record(keys.joiner_pid_ns, Relation::of(&procfs::ns_id(joiner, "pid")?, &Some(run.host_ns("pid")?)));
        facts.record(
            keys.joiner_for_children,
            Relation::of(&procfs::ns_id(joiner, "pid_for_children")?, &target.ns("pid")),
        );
        facts.record(keys.joiner_namespaces, sharing(run, target, joiner)?);

        let joined = child_of(joiner, JOINED_COMM);
        let victim = child_of(joiner, VICTIM_COMM);
        for pid in joined.iter().chain(victim.iter()) {
            run.track_pid(*pid);
        }
        let status = joined.and_then(|pid| procfs::read_status(pid).ok());
        let levels = status.as_ref().map_or(0, |s| s.nspid.len());
        facts.record(keys.joined_nspid_levels, levels);
        let inner = status.as_ref().and_then(|s| s.inner_pid());
        facts
            .record(keys.joined_pid_inside_differs, status.as_ref().is_some_and(|s| s.nspid.first() != s.nspid.last()));
        // The container's own view: its /proc, through its init's root.
        let inside = PathBuf::from(format!("/proc/{}/root/proc", target.pid()));
        let inside_status = inner.filter(|_| levels >= 2).and_then(|inner| {
            std::fs::read_to_string(inside.join(inner.to_string()).join("status"))
                .ok()
                .and_then(|t| procfs::parse_status(&t).ok())
        });
        facts.record(keys.joined_ppid_inside, inside_status.as_ref().filter(|s| s.name == JOINED_COMM).map(|s| s.ppid));
        facts.record(keys.joined_listed_inside, inside_status.is_some_and(|s| s.name == JOINED_COMM));
        match joined {
            Some(pid) => {
                facts.record(keys.joined_namespaces, sharing(run, target, pid)?);
                let net = File::open(format!("/proc/{pid}/ns/net"))
                    .map_err(Error::io("open", format!("/proc/{pid}/ns/net")))?;
                facts.record(keys.service_from_joined, service(Some(&net))?);
                let cgroups = |pid: i32| {
                    ::procfs::process::Process::new(pid)
                        .and_then(|p| p.cgroups())
                        .map(|c| c.into_iter().map(|g| (g.hierarchy, g.pathname)).collect::<Vec<_>>())
                        .ok()
                };
                // Only a Docker container has cgroups of its own (the lab's shares the run's).
                if target.container.is_some() {
                    let joined_cgroups = cgroups(pid);
                    facts.record(keys.cgroup_vs_container, Relation::of(&joined_cgroups, &cgroups(target.pid())));
                    facts.record(keys.cgroup_vs_lab, Relation::of(&joined_cgroups, &cgroups(run.pid())));
                    facts.record(keys.container_pids_max, pids_max(target.pid()));
                }
            }
            None => {
                facts.record(keys.joined_namespaces, BTreeMap::new());
                facts.record(keys.service_from_joined, "no joined process".to_string());
            }
        }
        // Killed from inside by its PID there: only a victim in the container's PID namespace
        // has one (in a namespace of its own, that number names another process inside).
        let victim_ns = victim.and_then(|pid| procfs::ns_id(pid, "pid").ok().flatten());
        let victim_pid_ns = Relation::of(&victim_ns, &target.ns("pid"));
        facts.record(keys.victim_pid_ns, victim_pid_ns);
        self.victim = victim.filter(|_| victim_pid_ns == Relation::Same).and_then(|pid| {
            let status = procfs::read_status(pid).ok()?;
            let inner = status.inner_pid().filter(|_| status.nspid.len() >= 2)?;
            Some((PidFd::open(pid).ok()?, inner))
        });
        self.joined = joined.and_then(|pid| PidFd::open(pid).ok());
        Ok(())
    }

    fn debugging(&mut self, run: &mut LabRun, keys: &Keys, facts: &mut Facts) -> Result<()> {
        let debugger = find_child_named(run, DEBUGGER_COMM)?;
        let debug = child_of(debugger, DEBUG_COMM);
        let target = self.target()?;
        facts.record(keys.host_mount_changes, run.mount_ns().changes()?.describe());
        let Some(debug) = debug else {
            facts.record(keys.debug_namespaces, BTreeMap::new());
            return Ok(());
        };
        run.track_pid(debug);
        facts.record(keys.debug_namespaces, sharing(run, target, debug)?);
        let root = PathBuf::from(format!("/proc/{debug}/root"));
        let host_file = run.scratch().join(HOST_FILE);
        let through = root.join(host_file.strip_prefix("/").unwrap_or(&host_file));
        facts.record(
            keys.debug_sees_host_file,
            file_id(&host_file).is_some() && file_id(&through) == file_id(&host_file),
        );
        facts.record(
            keys.debug_proc_mount,
            super::what_is_mounted_at(&procfs::read_mountinfo(&debug.to_string())?, "/proc"),
        );
        // What its /proc lists, against the container's members as the host sees them.
        let pid_ns = target.ns("pid").ok_or_else(|| Error::Harness("the container has no pid namespace".into()))?;
        let mut members: Vec<i32> = procfs::processes_in_namespace("pid", pid_ns, &[])
            .into_iter()
            .filter_map(|pid| procfs::read_status(pid).ok())
            .filter(|s| !matches!(s.state, 'Z' | 'X'))
            .filter_map(|s| s.inner_pid())
            .collect();
        members.sort_unstable();
        let listed: Vec<i32> = procfs::pid_entries(&root.join("proc")).unwrap_or_default().into_iter().collect();
        // The same numbers are not enough (a PID namespace of the lab's own can be numbered
        // alike): each process listed must be in the container's PID namespace.
        let container_pid_ns = file_id(Path::new(&format!("/proc/{}/ns/pid", target.pid())));
        let in_container = container_pid_ns.is_some()
            && listed.iter().all(|n| file_id(&root.join(format!("proc/{n}/ns/pid"))) == container_pid_ns);
        facts.record(keys.debug_proc_lists_container, !listed.is_empty() && listed == members && in_container);
        let planted = PathBuf::from(format!("/proc/{}/root/{PLANTED_IN_CONTAINER}", target.pid()));
        let via_debug = root.join("proc/1/root").join(PLANTED_IN_CONTAINER);
        facts.record(
            keys.debug_proc_1_root_is_containers,
            file_id(&planted).is_some() && file_id(&via_debug) == file_id(&planted),
        );
        self.debug = PidFd::open(debug).ok();
        Ok(())
    }

    fn all_but_pid(&mut self, run: &mut LabRun, keys: &Keys, facts: &mut Facts) -> Result<()> {
        let nopid = find_child_named(run, NOPID_COMM)?;
        let target = self.target()?;
        facts.record(keys.nopid_namespaces, sharing(run, target, nopid)?);
        let root_of = |pid: i32| file_id(Path::new(&format!("/proc/{pid}/root")));
        facts
            .record(keys.nopid_root_is_containers, root_of(nopid).is_some() && root_of(nopid) == root_of(target.pid()));
        let inside = PathBuf::from(format!("/proc/{}/root/proc", target.pid()));
        let listed = procfs::pid_entries(&inside).unwrap_or_default().into_iter().any(|pid| {
            std::fs::read_to_string(inside.join(pid.to_string()).join("comm")).is_ok_and(|c| c.trim() == NOPID_COMM)
        });
        facts.record(keys.nopid_listed_inside, listed);
        let nopid_fd = PidFd::open(nopid)?;
        let pid_ns = target.ns_file("pid")?;
        // A kill "from inside" a PID namespace that is the host's would reach host PIDs.
        if target.ns("pid") == Some(run.host_ns("pid")?) {
            return Err(lab_error(
                "the container's init is in the host's PID namespace: nothing to kill from inside".into(),
            ));
        }
        facts.record(keys.kill_nopid_from_inside, kill_from_inside(pid_ns, nopid)?);
        facts.record(keys.nopid_alive_after_kill, !nopid_fd.has_exited());

        // The second question's other half: a joined process killed from inside by the PID
        // it has there.
        match &self.victim {
            Some((fd, inner)) => {
                facts.record(keys.kill_victim_from_inside, kill_from_inside(pid_ns, *inner)?);
                facts.record(keys.victim_died, fd.wait_exit(PROBE_TIMEOUT));
            }
            None => {
                facts.record(keys.kill_victim_from_inside, "no victim with a PID inside".to_string());
                facts.record(keys.victim_died, false);
            }
        }

        facts.record(keys.joined_alive_until_init_killed, self.joined.as_ref().is_some_and(|fd| !fd.has_exited()));
        // Stop the container: SIGKILL to its init, or `docker stop`; then who died.
        match &target.container {
            None => target.init.send(Signal::SIGKILL)?,
            Some(id) => {
                docker(&["stop", "-t", "0", id], DOCKER_TIMEOUT)?;
            }
        }
        facts.record(keys.init_died, target.init.wait_exit(PROBE_TIMEOUT));
        facts.record(keys.joined_died_with_init, self.joined.as_ref().is_some_and(|fd| fd.wait_exit(PROBE_TIMEOUT)));
        facts.record(keys.debug_died_with_init, self.debug.as_ref().is_some_and(|fd| fd.wait_exit(PROBE_TIMEOUT)));
        facts.record(keys.nopid_survived_init, !nopid_fd.has_exited());
        Ok(())
    }

    fn stopped(&mut self, keys: &Keys, facts: &mut Facts) -> Result<()> {
        let target = self.target()?;
        let own = std::process::id() as i32;
        let empty = target.namespaces.iter().all(|held| {
            procfs::ns_id(own, held.kind).ok().flatten() == Some(held.id)
                || procfs::processes_in_namespace(held.kind, held.id, &[]).is_empty()
        });
        facts.record(keys.container_namespaces_empty, empty);
        Ok(())
    }
}

fn lab_error(message: String) -> Error {
    Error::Lab { lab: "nsenter-join".into(), message }
}

/// The child of `parent` named `comm`, if there is one.
fn child_of(parent: i32, comm: &str) -> Option<i32> {
    procfs::children(parent).into_iter().find(|pid| procfs::comm(*pid).as_deref() == Some(comm))
}

/// For every kind of namespace: whether `pid` is in the container's, the host's, both
/// (the container made none of that kind) or one of its own.
fn sharing(run: &LabRun, target: &Target, pid: i32) -> Result<BTreeMap<String, Sharing>> {
    let mut map = BTreeMap::new();
    for kind in NAMESPACE_KINDS {
        let theirs = procfs::ns_id(pid, kind)?;
        let container = target.ns(kind);
        let host = run.host_ns(kind).ok();
        let value = match theirs {
            None => Sharing::Gone,
            Some(ns) if Some(ns) == container && Some(ns) == host => Sharing::Both,
            Some(ns) if Some(ns) == container => Sharing::Container,
            Some(ns) if Some(ns) == host => Sharing::Host,
            Some(_) => Sharing::Own,
        };
        if container.is_some() || host.is_some() {
            map.insert(kind.to_string(), value);
        }
    }
    Ok(map)
}

/// The container's pids.max (v1 pids controller, or v2), from its init's cgroup.
fn pids_max(pid: i32) -> Option<String> {
    let cgroups = ::procfs::process::Process::new(pid).and_then(|p| p.cgroups()).ok()?;
    cgroups.into_iter().find_map(|group| {
        let base = if group.controllers.iter().any(|c| c == "pids") {
            PathBuf::from("/sys/fs/cgroup/pids")
        } else if group.hierarchy == 0 {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            return None;
        };
        let file = base.join(group.pathname.trim_start_matches('/')).join("pids.max");
        std::fs::read_to_string(file).ok().map(|v| v.trim().to_string())
    })
}

/// Connects to the service on 127.0.0.1 from the given network namespace (the harness's
/// own, the host's, if none) in a forked probe: "answers", or the errno of the connect.
fn service(net: Option<&File>) -> Result<String> {
    let outcome = forked::probe("connect to the container's service", PROBE_TIMEOUT, |out| {
        if let Some(net) = net {
            setns(net.as_fd(), CloneFlags::CLONE_NEWNET)?;
        }
        let io_errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], SERVICE_PORT));
        let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).map_err(io_errno)?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(io_errno)?;
        let path = SERVICE_FILE.trim_start_matches("www");
        stream.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).map_err(io_errno)?;
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        forked::say(out, if reply.contains(SERVICE_WORD) { "answers" } else { "answers something else" });
        Ok(())
    })?;
    Ok(match outcome.status {
        Ok(()) => outcome.output.trim().to_string(),
        Err(forked::ProbeFailure::Errno(errno)) => errno_name(errno),
        Err(failure) => format!("probe failed: {failure:?}"),
    })
}

/// A forked probe starts a second thread and tries setns(CLONE_NEWNS) into `mnt`.
fn setns_mnt_with_two_threads(mnt: &File) -> Result<String> {
    let outcome = forked::probe("setns(mnt) with two threads", PROBE_TIMEOUT, |out| {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::Builder::new().spawn(move || {
            let _ = rx.recv();
        });
        let result = match helper {
            Ok(_) => match setns(mnt.as_fd(), CloneFlags::CLONE_NEWNS) {
                Ok(()) => "setns succeeded".to_string(),
                Err(errno) => errno_name(errno),
            },
            Err(_) => "no second thread".to_string(),
        };
        drop(tx);
        forked::say(out, &result);
        Ok(())
    })?;
    Ok(match outcome.status {
        Ok(()) => outcome.output.trim().to_string(),
        Err(failure) => format!("probe failed: {failure:?}"),
    })
}

/// A forked probe joins the container's PID namespace (for its children) and forks; the
/// grandchild, inside, sends SIGKILL to `pid` as the container numbers its processes.
fn kill_from_inside(pid_ns: &File, pid: i32) -> Result<String> {
    // kill(0) and kill(-n) name process groups, never one process.
    if pid <= 0 {
        return Ok(format!("no PID to kill ({pid})"));
    }
    let outcome = super::kill_from_inside(
        "kill from inside the container",
        pid_ns.as_fd(),
        super::KillTarget::Inside(pid),
        Signal::SIGKILL,
        PROBE_TIMEOUT,
    )?;
    Ok(match outcome.status {
        Ok(()) => outcome.output.trim().to_string(),
        Err(failure) => format!("probe failed: {failure:?}"),
    })
}
