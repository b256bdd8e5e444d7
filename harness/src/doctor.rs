//! `cilab doctor`: is this machine ready for the labs, is it one you may break, and did an
//! interrupted run leave anything behind (with a way to clean it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::cgroup::fs::Kernel;
use crate::cgroup::run_group::GroupDir;
use crate::cgroup::scan::{self, Kind};
use crate::cgroup::{CgroupSetup, RunCgroup};
use crate::error::BECOME_ROOT;
use crate::probe::pidfd::PidFd;
use crate::probe::procfs;
use crate::registry::{self, RunRecord};

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub ok: bool,
    pub topic: String,
    pub detail: String,
    /// What to do when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Leftover {
    /// "run" (a record), "cgroup" (a run's), "harness" (a cilab's own v2 leaf),
    /// "scratch", "mount", or "guest" (a qemu guest's files, `backend::qemu`).
    pub kind: String,
    pub path: PathBuf,
    pub detail: String,
    /// For a cgroup: its hierarchy, to kill what is in it the right way.
    #[serde(skip)]
    pub group: Option<GroupDir>,
    /// For what a lab made outside its run ("outside"): the lab whose checks remove it.
    #[serde(skip)]
    pub lab: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub findings: Vec<Finding>,
    pub disposable: bool,
    pub leftovers: Vec<Leftover>,
    /// Runs in progress right now (their cilab is alive): not leftovers.
    pub active_runs: Vec<String>,
}

impl DoctorReport {
    pub fn healthy(&self) -> bool {
        self.findings.iter().all(|f| f.ok) && self.leftovers.is_empty()
    }

    pub fn to_table(&self) -> String {
        let mut out = String::from("cilab doctor\n");
        for finding in &self.findings {
            out.push_str(&format!(
                "  {}  {:<16} {}\n",
                if finding.ok { "ok  " } else { "FAIL" },
                finding.topic,
                finding.detail
            ));
            if let (false, Some(advice)) = (finding.ok, &finding.advice) {
                out.push_str(&format!("        {:<16} -> {advice}\n", ""));
            }
        }
        for run in &self.active_runs {
            out.push_str(&format!("  note  {:<16} {run}\n", "active run"));
        }
        if self.leftovers.is_empty() {
            out.push_str(&format!("  ok    {:<16} none from interrupted runs\n", "leftovers"));
        } else {
            out.push_str(&format!("  FAIL  {:<16} {} from interrupted runs:\n", "leftovers", self.leftovers.len()));
            for leftover in &self.leftovers {
                out.push_str(&format!(
                    "          {:<8} {}  ({})\n",
                    leftover.kind,
                    leftover.path.display(),
                    leftover.detail
                ));
            }
            out.push_str("        -> run `cilab doctor --clean` to kill their processes and remove them\n");
        }
        out
    }
}

pub fn examine() -> DoctorReport {
    let mut findings = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    findings.push(Finding {
        ok: root,
        topic: "root".into(),
        detail: if root { "running as root".into() } else { format!("running as uid {}", nix::unistd::geteuid()) },
        advice: Some(format!("the labs need root: `{BECOME_ROOT}`, ideally in a VM you may break")),
    });
    findings.push(state_dir());
    let kernel = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let pidfd = PidFd::open(std::process::id() as i32).is_ok();
    findings.push(Finding {
        ok: pidfd,
        topic: "kernel".into(),
        detail: format!("{kernel}{}", if pidfd { " (pidfd_open works)" } else { " (no pidfd_open: needs Linux 5.3+)" }),
        advice: Some("use a VM with a kernel 5.3 or newer".into()),
    });
    let setup = CgroupSetup::detect();
    findings.push(match &setup {
        Ok(setup) => Finding { ok: true, topic: "cgroups".into(), detail: describe_cgroups(setup), advice: None },
        Err(error) => Finding { ok: false, topic: "cgroups".into(), detail: error.to_string(), advice: None },
    });
    if let Ok(setup) = &setup {
        findings.extend(v2_delegation(setup));
    }
    findings.push(user_namespaces());
    findings.push(match labkit::rootfs::find_static_busybox() {
        Ok(path) => {
            Finding { ok: true, topic: "busybox".into(), detail: format!("{} (static)", path.display()), advice: None }
        }
        Err(error) => Finding {
            ok: false,
            topic: "busybox".into(),
            detail: error.to_string(),
            advice: Some("apt-get install busybox-static".into()),
        },
    });
    let ptrace_scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").map(|s| s.trim().to_string());
    findings.push(Finding {
        ok: ptrace_scope.as_deref().map_or(true, |s| s != "3"),
        topic: "ptrace".into(),
        detail: match &ptrace_scope {
            Ok(scope) => format!("kernel.yama.ptrace_scope={scope}"),
            Err(_) => "no Yama: allowed for root".into(),
        },
        advice: Some("ptrace_scope 3 forbids ptrace even to root; checks that read a siginfo are skipped".into()),
    });
    let swaps = std::fs::read_to_string("/proc/swaps").map(|t| t.lines().count().saturating_sub(1)).unwrap_or(0);
    findings.push(Finding {
        ok: true,
        topic: "swap".into(),
        detail: if swaps == 0 { "off".into() } else { format!("{swaps} swap area(s): runs limit memory+swap") },
        advice: None,
    });
    // The guard of the labs that break isolation takes the same judgement (labkit::disposable).
    let judgement = labkit::disposable::judge();
    let disposable = judgement.disposable();
    let declared = match (judgement.declared, disposable) {
        (false, _) => String::new(),
        (true, true) => format!(" ({}=1 is set too: a declaration, not counted)", labkit::disposable::DECLARED_ENV),
        (true, false) => format!(
            " ({}=1 is a declaration, not evidence: pass {} to run such a lab anyway)",
            labkit::disposable::DECLARED_ENV,
            labkit::disposable::ALLOW_FLAG
        ),
    };
    findings.push(Finding {
        ok: true,
        topic: "disposable".into(),
        detail: if disposable {
            format!("looks like a VM or container: {}{declared}", judgement.evidence.join("; "))
        } else {
            format!("looks like a real machine: labs that break isolation will refuse to run here{declared}")
        },
        advice: None,
    });
    // Where labs can run (optional backends never make the machine unready).
    findings.push(Finding {
        ok: true,
        topic: "backend local".into(),
        detail: "usable: labs run on this machine (`--backend local`, the default)".into(),
        advice: None,
    });
    let (_, qemu) = crate::backend::qemu::readiness();
    findings.push(Finding { ok: true, topic: "backend qemu".into(), detail: qemu, advice: None });
    let (_, vagrant) = crate::backend::vagrant::readiness();
    findings.push(Finding { ok: true, topic: "backend vagrant".into(), detail: vagrant, advice: None });
    let (_, multipass) = crate::backend::multipass::readiness();
    findings.push(Finding { ok: true, topic: "backend multipass".into(), detail: multipass, advice: None });
    let (leftovers, active_runs) = match &setup {
        Ok(setup) => {
            let scan = scan::scan(&Kernel, setup);
            if !scan.cut_short.is_empty() {
                let hierarchies: Vec<String> = scan.cut_short.iter().map(|p| p.display().to_string()).collect();
                findings.push(Finding {
                    ok: true,
                    topic: "cgroup scan".into(),
                    detail: format!(
                        "stopped after {} cgroups in {}: cilab cgroups deeper than that are not seen here",
                        scan::MAX_DIRS,
                        hierarchies.join(", ")
                    ),
                    advice: None,
                });
            }
            find_leftovers(&scan.found)
        }
        Err(_) => find_leftovers(&[]),
    };
    DoctorReport { findings, disposable, leftovers, active_runs }
}

/// Whether cilab can keep its records, scratch dirs and results. Root ignores permission
/// bits, so only making a file tells (a read-only mount, a full disk).
fn state_dir() -> Finding {
    use std::io::Write;
    let dir = Path::new(registry::STATE_DIR);
    let probe = dir.join(format!(".doctor-probe-{}", std::process::id()));
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe)?;
        let written = file.write_all(b"cilab doctor\n").and_then(|()| file.sync_all());
        let _ = std::fs::remove_file(&probe);
        written
    });
    let topic = "state dir".to_string();
    match written {
        Ok(()) => Finding { ok: true, topic, detail: format!("{} is writable", dir.display()), advice: None },
        Err(error) => {
            let mount = mount_point_of(dir);
            let advice = match error.raw_os_error() {
                Some(libc::EROFS) => format!(
                    "{mount} is mounted read-only: remount it read-write (`mount -o remount,rw {mount}`) or bind \
                     a writable directory on {}",
                    dir.display()
                ),
                Some(libc::ENOSPC | libc::EDQUOT) => format!("{mount} is full: free some space there"),
                Some(libc::EACCES | libc::EPERM) => format!("cilab must run as root: `{BECOME_ROOT}`"),
                _ => format!("cilab keeps its run records there: make {} a writable directory", dir.display()),
            };
            Finding {
                ok: false,
                topic,
                detail: format!("cannot write in {}: {error}", dir.display()),
                advice: Some(advice),
            }
        }
    }
}

/// The mount point a path is on (the longest mount point that is a prefix of it).
fn mount_point_of(path: &Path) -> String {
    procfs::read_mountinfo("self")
        .ok()
        .and_then(|mounts| {
            mounts.into_iter().map(|m| m.mount_point).filter(|m| path.starts_with(m)).max_by_key(|m| m.len())
        })
        .unwrap_or_else(|| "/".into())
}

fn describe_cgroups(setup: &CgroupSetup) -> String {
    let layout = match setup.layout {
        crate::cgroup::CgroupLayout::V1 => "v1",
        crate::cgroup::CgroupLayout::V2 => "v2 (unified)",
        crate::cgroup::CgroupLayout::Hybrid => "hybrid",
    };
    let v1: Vec<&str> = setup.v1.keys().map(String::as_str).collect();
    let v2 = match &setup.v2 {
        Some(v2) if v2.controllers.is_empty() => {
            format!("v2 at {} with no controllers", v2.path.display())
        }
        Some(v2) => format!("v2 at {}: {}", v2.path.display(), v2.controllers.join(" ")),
        None => "no v2".into(),
    };
    if v1.is_empty() {
        format!("{layout}; {v2}")
    } else {
        format!("{layout}; v1: {}; {v2}", v1.join(" "))
    }
}

/// Pure v2: whether a lab that makes cgroups of its own (cgroup-limits) can have its
/// controllers handed down from where cilab is started. Read-only: cgroup v2 lets a
/// cgroup other than the root hand controllers down only while it holds no process, so
/// other processes beside cilab (a login shell in its session scope) stop it.
fn v2_delegation(setup: &CgroupSetup) -> Option<Finding> {
    if setup.layout != crate::cgroup::CgroupLayout::V2 {
        return None;
    }
    let v2 = setup.v2.as_ref()?;
    let membership = crate::cgroup::membership::Membership::read("self").ok()?;
    let start = setup.dir_of(&v2.path, membership.v2.as_deref()?).ok()?;
    let offered = std::fs::read_to_string(start.join("cgroup.controllers")).unwrap_or_default();
    let lacking: Vec<&str> =
        ["pids", "memory", "cpu"].into_iter().filter(|c| !offered.split_whitespace().any(|o| o == *c)).collect();
    let me = std::process::id() as i32;
    let others = crate::cgroup::run_group::read_procs(&start).into_iter().filter(|p| *p != me).count();
    let is_root = start == v2.path;
    let ok = lacking.is_empty() && (is_root || others == 0);
    let detail = if ok {
        format!("{} can hand pids, memory and cpu down to the runs", start.display())
    } else if !lacking.is_empty() {
        format!(
            "{} is not given {} by its parent: labs that make cgroups of their own will SKIP",
            start.display(),
            lacking.join(", ")
        )
    } else {
        format!(
            "{} holds {others} other process(es): cgroup v2 lets it hand no controller down, so labs that make cgroups of their own (cgroup-limits) will SKIP",
            start.display()
        )
    };
    Some(Finding {
        ok,
        topic: "cgroup delegation".into(),
        detail,
        advice: Some(
            "start cilab in a delegated cgroup of its own: `sudo systemd-run --scope -p Delegate=yes cilab check ...`"
                .into(),
        ),
    })
}

/// Whether unprivileged user namespaces work here (the userns-maps lab needs them): the
/// sysctls that turn them off, and a real try; what to do when they are off.
fn user_namespaces() -> Finding {
    let read = |path: &str| std::fs::read_to_string(path).ok().map(|s| s.trim().to_string());
    let mut parts = Vec::new();
    if let Some(max) = read("/proc/sys/user/max_user_namespaces") {
        parts.push(format!("max_user_namespaces={max}"));
    }
    if let Some(v) = read("/proc/sys/kernel/unprivileged_userns_clone") {
        parts.push(format!("unprivileged_userns_clone={v}"));
    }
    if let Some(v) = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") {
        parts.push(format!("apparmor_restrict_unprivileged_userns={v}"));
    }
    let blocked = crate::checks::userns_maps::unprivileged_userns_blocked();
    let detail = match &blocked {
        None => format!("{}; an unprivileged user can make one", parts.join(", ")),
        Some((why, _)) => {
            format!("{}; off for unprivileged users: {why} (lab userns-maps is skipped)", parts.join(", "))
        }
    };
    Finding {
        ok: blocked.is_none(),
        topic: "user namespaces".into(),
        detail,
        advice: Some(
            blocked.map_or_else(|| "sysctl -w user.max_user_namespaces=15000".to_string(), |(_, advice)| advice),
        ),
    }
}

/// A live cilab made it: a process with that PID is running, and it is cilab. (Its
/// run record may not be written yet, or already gone: never clean a live cilab's runs.)
fn cilab_alive(pid: i32) -> bool {
    procfs::comm(pid).is_some_and(|comm| comm == "cilab")
}

/// What runs of gone cilabs left: their records, and cgroups, scratch dirs and mounts
/// named after runs or cilabs that are not alive. `found` is the cgroup scan.
fn find_leftovers(found: &[scan::Found]) -> (Vec<Leftover>, Vec<String>) {
    let mut leftovers = Vec::new();
    let mut active = Vec::new();
    let mut live_ids: BTreeSet<String> = BTreeSet::new();
    let mut record_dirs = Vec::new();
    for record in registry::all_records() {
        match record {
            Ok(record) if record.owner_alive() => {
                active.push(format!("{} (cilab PID {})", record.id, record.owner_pid));
                live_ids.insert(record.id.clone());
            }
            Ok(record) => {
                let why = format!("whose cilab (PID {}) is gone", record.owner_pid);
                leftovers.push(record_leftover(&record, &why));
                record_dirs.extend(record.cgroup.dirs.iter().filter(|d| names_its_run(&record, d)).cloned());
            }
            Err(error) => leftovers.push(Leftover {
                kind: "run".into(),
                path: registry::runs_dir(),
                detail: error,
                group: None,
                lab: None,
            }),
        }
    }
    let is_live = |name: &str| live_ids.contains(name) || registry::run_id_owner(name).is_some_and(cilab_alive);
    let mut cgroups: BTreeMap<PathBuf, Leftover> = BTreeMap::new();
    for dir in record_dirs {
        cgroups.insert(dir.path.clone(), cgroup_leftover("cgroup", dir));
    }
    let lab_running = by_hand_lab_running();
    for found in found {
        if found.kind == Kind::ByHand {
            if !lab_running {
                cgroups.entry(found.dir.path.clone()).or_insert_with(|| by_hand_leftover(found.dir.clone()));
            }
            continue;
        }
        let (kind, live) = match &found.kind {
            Kind::Run { id, .. } => ("cgroup", is_live(id)),
            // A cilab is in its leaf from its first run until it exits, whatever its name.
            Kind::Leaf { owner } => (
                "harness",
                cilab_alive(*owner) || crate::cgroup::run_group::read_procs(&found.dir.path).contains(owner),
            ),
            Kind::ByHand => continue,
        };
        if !live {
            cgroups.entry(found.dir.path.clone()).or_insert_with(|| cgroup_leftover(kind, found.dir.clone()));
        }
    }
    leftovers.extend(cgroups.into_values());
    leftovers.extend(scratch_leftovers(|name| !is_live(name)));
    leftovers.extend(temporary_leftovers(|pid| !cilab_alive(pid)));
    leftovers.extend(crate::backend::qemu::leftovers().into_iter().map(|(path, detail)| Leftover {
        kind: "guest".into(),
        path,
        detail,
        group: None,
        lab: None,
    }));
    // What labs made outside their runs (Docker containers and images), labelled with the
    // scratch dir of a run that is gone.
    for lab in crate::catalog::all() {
        for (scratch, what) in (lab.observer)().made_outside() {
            let run = scratch.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !is_live(&run) {
                let detail = format!("{what}, made by run {run} of lab {}", lab.name);
                leftovers.push(Leftover {
                    kind: "outside".into(),
                    path: scratch,
                    detail,
                    group: None,
                    lab: Some(lab.name),
                });
            }
        }
    }
    (leftovers, active)
}

fn record_leftover(record: &RunRecord, why: &str) -> Leftover {
    Leftover {
        kind: "run".into(),
        path: record.path(),
        detail: format!("run {} of lab {} {why}", record.id, record.lab),
        group: None,
        lab: None,
    }
}

fn cgroup_leftover(kind: &str, dir: GroupDir) -> Leftover {
    let procs = crate::cgroup::run_group::read_procs(&dir.path);
    let mut detail = if procs.is_empty() {
        "empty".to_string()
    } else {
        let names: Vec<String> =
            procs.iter().map(|p| format!("{p} ({})", procfs::comm(*p).unwrap_or_default())).collect();
        format!("still holds processes {}", names.join(", "))
    };
    if kind == "harness" {
        detail = format!("the cgroup a cilab moved itself into, {detail}");
    }
    Leftover { kind: kind.into(), path: dir.path.clone(), detail, group: Some(dir), lab: None }
}

/// Whether lab cgroup-limits runs right now (by hand, or in a run): its cgroup may be live.
fn by_hand_lab_running() -> bool {
    let Ok(pids) = procfs::pid_entries(Path::new("/proc")) else { return true };
    pids.into_iter().any(|pid| procfs::comm(pid).is_some_and(|c| c == labkit::protocol::cgroup_limits::LAB_COMM))
}

/// Lab cgroup-limits' cgroup, left by a run by hand that was killed before it removed it
/// (a frozen v1 cgroup keeps its processes, in state D, until it is thawed). `--clean`
/// thaws it, kills what is in it and removes it, but only when every process in it is one
/// of the lab's workloads (by name): anything else in it was not started by the lab.
fn by_hand_leftover(dir: GroupDir) -> Leftover {
    use labkit::protocol::cgroup_limits::WORKLOAD_COMMS;
    let procs = crate::cgroup::run_group::read_procs(&dir.path);
    let names: Vec<(i32, String)> = procs.iter().map(|p| (*p, procfs::comm(*p).unwrap_or_default())).collect();
    let foreign: Vec<String> = names
        .iter()
        .filter(|(_, comm)| !WORKLOAD_COMMS.contains(&comm.as_str()))
        .map(|(pid, comm)| format!("{pid} ({comm})"))
        .collect();
    let frozen = ["freezer.state", "cgroup.freeze"].iter().any(|file| {
        std::fs::read_to_string(dir.path.join(file)).is_ok_and(|t| matches!(t.trim(), "FROZEN" | "FREEZING" | "1"))
    });
    let holds = if names.is_empty() {
        "empty".to_string()
    } else {
        let all: Vec<String> = names.iter().map(|(pid, comm)| format!("{pid} ({comm})")).collect();
        format!("holds {}", all.join(", "))
    };
    let state = if frozen { format!("frozen, {holds}") } else { holds };
    let mut detail =
        format!("lab cgroup-limits' cgroup, left by a run by hand that was stopped before it removed it: {state}");
    let group = if foreign.is_empty() {
        Some(dir.clone())
    } else {
        detail.push_str(&format!(
            "; {} not the lab's: not cleaned (thaw it, end those yourself, then rmdir it)",
            foreign.join(", ")
        ));
        None
    };
    Leftover { kind: "cgroup".into(), path: dir.path, detail, group, lab: None }
}

/// Scratch dirs, and mounts in them, of runs `left(run id)` says are leftovers.
fn scratch_leftovers(left: impl Fn(&str) -> bool) -> Vec<Leftover> {
    let mut leftovers = Vec::new();
    let scratch_root = registry::scratch_root();
    if let Ok(entries) = std::fs::read_dir(&scratch_root) {
        for entry in entries.flatten() {
            if left(&entry.file_name().to_string_lossy()) {
                leftovers.push(Leftover {
                    kind: "scratch".into(),
                    path: entry.path(),
                    detail: "scratch directory".into(),
                    group: None,
                    lab: None,
                });
            }
        }
    }
    if let Ok(mounts) = procfs::read_mountinfo("self") {
        for mount in mounts.iter().filter(|m| Path::new(&m.mount_point).starts_with(&scratch_root)) {
            let path = PathBuf::from(&mount.mount_point);
            let run = path.strip_prefix(&scratch_root).ok().and_then(|p| p.iter().next()).map(|c| c.to_string_lossy());
            if run.is_some_and(|run| left(&run)) {
                let detail = format!("{} mount", mount.fs_type);
                leftovers.push(Leftover { kind: "mount".into(), path, detail, group: None, lab: None });
            }
        }
    }
    leftovers
}

/// Files a cilab was writing when it was killed, by whether `left(its PID)`.
fn temporary_leftovers(left: impl Fn(i32) -> bool) -> Vec<Leftover> {
    registry::temporary_files()
        .into_iter()
        .filter(|(_, pid)| left(*pid))
        .map(|(path, pid)| Leftover {
            kind: "run".into(),
            path,
            detail: format!("a file cilab PID {pid} was writing when it stopped"),
            group: None,
            lab: None,
        })
        .collect()
}

/// Removes the leftovers: kills processes in leftover cgroups (they were started inside a
/// cilab run cgroup or a cilab's own, so they are cilab's), detaches mounts, removes
/// directories and records. Returns what it did, one line each.
pub fn clean(report: &DoctorReport) -> Vec<String> {
    clean_leftovers(&report.leftovers)
}

fn clean_leftovers(leftovers: &[Leftover]) -> Vec<String> {
    let mut done = Vec::new();
    for leftover in leftovers.iter().filter(|l| l.kind == "mount") {
        done.extend(crate::leaks::detach_mounts_under(&leftover.path));
        // A run's own scratch filesystem, which the loop above leaves to its owner.
        if crate::registry::unmount_scratch(&leftover.path) {
            done.push(format!("unmounted the scratch filesystem at {}", leftover.path.display()));
        }
    }
    // One run's dirs together: on v1 its freezer stops forks while the pids dir is killed.
    let mut groups: BTreeMap<String, RunCgroup> = BTreeMap::new();
    for dir in leftovers.iter().filter_map(|l| l.group.clone()) {
        let name = dir.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        groups.entry(name).or_default().dirs.push(dir);
    }
    let mut killed: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, group) in &groups {
        killed.insert(name.as_str(), crate::run::commands_in(group));
        let paths: Vec<String> = group.dirs.iter().map(|d| d.path.display().to_string()).collect();
        // A lab's cgroup left by hand sits in somebody else's: only it is removed.
        let by_hand = name == labkit::protocol::cgroup_limits::CGROUP_NAME;
        let remove = || if by_hand { group.remove_only_these() } else { group.remove() };
        match group.kill_all(Duration::from_secs(5)).and_then(|()| remove()) {
            Ok(_) => done.push(format!("killed what was in and removed {}", paths.join(", "))),
            Err(error) => done.push(format!("could not clean {}: {error}", paths.join(", "))),
        }
    }
    // What interrupted runs' labs made outside them (a Docker container), once per run:
    // named by a leftover record (whose killed processes may have had a request in flight)
    // or found by its label.
    let records = registry::all_records();
    let mut outside: BTreeMap<PathBuf, (&'static crate::catalog::LabSpec, Vec<String>)> = BTreeMap::new();
    for leftover in leftovers {
        let (scratch, lab, killed) = match leftover.kind.as_str() {
            "run" => match records.iter().flatten().find(|r| r.path() == leftover.path) {
                Some(record) => (
                    record.scratch.clone(),
                    record.lab.as_str(),
                    killed.get(record.id.as_str()).cloned().unwrap_or_default(),
                ),
                None => continue,
            },
            "outside" => match leftover.lab {
                Some(lab) => (leftover.path.clone(), lab, Vec::new()),
                None => continue,
            },
            _ => continue,
        };
        if let Ok(lab) = crate::catalog::find(lab) {
            outside.entry(scratch).or_insert((lab, Vec::new())).1.extend(killed);
        }
    }
    for (scratch, (lab, killed)) in &outside {
        done.extend((lab.observer)().clean_up_outside(scratch, killed));
    }
    for leftover in leftovers.iter().filter(|l| l.kind == "guest") {
        done.extend(crate::backend::qemu::clean_leftover(&leftover.path));
    }
    for leftover in leftovers {
        let result = match leftover.kind.as_str() {
            "scratch" => std::fs::remove_dir_all(&leftover.path),
            "run" if leftover.path.is_file() => std::fs::remove_file(&leftover.path),
            _ => continue,
        };
        done.push(match result {
            Ok(()) => format!("removed {}", leftover.path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("{} was gone already", leftover.path.display())
            }
            Err(e) => format!("could not remove {}: {e}", leftover.path.display()),
        });
    }
    done
}

/// A record's cgroup dir is acted on only if it has the shape cilab gives one,
/// `<...>/cilab/<the record's run id>`, and exists: a record is a file anyone root can
/// write (a lab, say), and doctor kills what is in the cgroups it names.
fn names_its_run(record: &registry::RunRecord, dir: &GroupDir) -> bool {
    has_run_shape(&record.id, &dir.path) && dir.path.exists()
}

fn has_run_shape(run_id: &str, path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str());
    let parent = path.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str());
    name == Some(run_id)
        && parent == Some(crate::cgroup::PARENT_DIR)
        && path.starts_with(crate::cgroup::setup::CGROUP_ROOT)
}

/// After an interrupt, once this cilab makes nothing more: removes whatever of its own
/// runs is still on the machine (records, cgroups, scratch dirs, mounts), as `cilab
/// doctor --clean` would once it had exited.
pub fn clean_own() -> Vec<String> {
    let me = std::process::id() as i32;
    let mut leftovers = Vec::new();
    let mut dirs: BTreeMap<PathBuf, GroupDir> = BTreeMap::new();
    for record in registry::all_records().into_iter().flatten().filter(|r| r.owner_pid == me) {
        leftovers.push(record_leftover(&record, "of this cilab, interrupted"));
        let own: Vec<GroupDir> = record.cgroup.dirs.iter().filter(|d| names_its_run(&record, d)).cloned().collect();
        dirs.extend(own.into_iter().map(|d| (d.path.clone(), d)));
    }
    dirs.extend(crate::cgroup::harness::own_run_dirs().into_iter().map(|d| (d.path.clone(), d)));
    leftovers.extend(dirs.into_values().filter(|d| d.path.exists()).map(|d| cgroup_leftover("cgroup", d)));
    leftovers.extend(scratch_leftovers(|name| registry::run_id_owner(name) == Some(me)));
    leftovers.extend(temporary_leftovers(|pid| pid == me));
    clean_leftovers(&leftovers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RunRecord;

    #[test]
    fn a_record_names_only_its_own_run_cgroups() {
        let id = "pid-ns-1-0";
        assert!(has_run_shape(id, Path::new("/sys/fs/cgroup/pids/cilab/pid-ns-1-0")));
        assert!(has_run_shape(id, Path::new("/sys/fs/cgroup/memory/process_api/x/cilab/pid-ns-1-0")));
        for planted in ["/sys/fs/cgroup/unified/victim", "/sys/fs/cgroup/pids/cilab/other-run", "/tmp/cilab/pid-ns-1-0"]
        {
            assert!(!has_run_shape(id, Path::new(planted)), "{planted}");
        }
    }

    #[test]
    fn a_record_whose_owner_is_gone_is_not_alive() {
        let record = RunRecord {
            id: "x".into(),
            lab: "pid-ns".into(),
            owner_pid: std::process::id() as i32,
            owner_start_time: u64::MAX, // not this process's start time: a reused PID
            scratch: PathBuf::from("/nonexistent"),
            cgroup: RunCgroup::default(),
        };
        assert!(!record.owner_alive());
        let alive =
            RunRecord { owner_start_time: procfs::start_time(std::process::id() as i32).expect("own stat"), ..record };
        assert!(alive.owner_alive());
    }
}
