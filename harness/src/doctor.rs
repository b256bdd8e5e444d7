//! `cilab doctor`: is this machine ready for the labs, is it one you may break, and did an
//! interrupted run leave anything behind (with a way to clean it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::cgroup::run_group::{GroupDir, Version};
use crate::cgroup::{CgroupSetup, RunCgroup, PARENT_DIR};
use crate::probe::pidfd::PidFd;
use crate::probe::procfs;
use crate::registry;

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
    pub kind: String,
    pub path: PathBuf,
    pub detail: String,
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
        advice: Some("the labs need root: `sudo -E cargo run -p cilab -- ...`, ideally in a VM you may break".into()),
    });
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
    let evidence = disposable_evidence();
    let disposable = !evidence.is_empty();
    findings.push(Finding {
        ok: true,
        topic: "disposable".into(),
        detail: if disposable {
            format!("looks like a VM or container: {}", evidence.join("; "))
        } else {
            "looks like a real machine: labs that break isolation will refuse to run here".into()
        },
        advice: None,
    });
    let (leftovers, active_runs) = find_leftovers(setup.as_ref().ok());
    DoctorReport { findings, disposable, leftovers, active_runs }
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

fn user_namespaces() -> Finding {
    let read = |path: &str| std::fs::read_to_string(path).ok().map(|s| s.trim().to_string());
    let mut parts = Vec::new();
    let max = read("/proc/sys/user/max_user_namespaces");
    if let Some(max) = &max {
        parts.push(format!("max_user_namespaces={max}"));
    }
    if let Some(v) = read("/proc/sys/kernel/unprivileged_userns_clone") {
        parts.push(format!("unprivileged_userns_clone={v}"));
    }
    if let Some(v) = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") {
        parts.push(format!("apparmor_restrict_unprivileged_userns={v}"));
    }
    let ok = max.as_deref().is_some_and(|m| m != "0");
    Finding {
        ok,
        topic: "user namespaces".into(),
        detail: parts.join(", "),
        advice: Some("sysctl -w user.max_user_namespaces=15000".into()),
    }
}

/// Signs that this machine is a VM or container that may be broken and thrown away.
pub fn disposable_evidence() -> Vec<String> {
    let mut evidence = Vec::new();
    if std::fs::read_to_string("/proc/cpuinfo")
        .is_ok_and(|c| c.lines().any(|l| l.starts_with("flags") && l.contains(" hypervisor")))
    {
        evidence.push("cpu flag `hypervisor`".to_string());
    }
    for file in ["/sys/class/dmi/id/sys_vendor", "/sys/class/dmi/id/product_name"] {
        if let Ok(vendor) = std::fs::read_to_string(file) {
            let vendor = vendor.trim();
            let known = [
                "QEMU",
                "KVM",
                "VMware",
                "VirtualBox",
                "innotek",
                "Xen",
                "Microsoft",
                "Amazon",
                "Google",
                "Firecracker",
            ];
            if known.iter().any(|k| vendor.contains(k)) {
                evidence.push(format!("{file}: {vendor}"));
            }
        }
    }
    for (path, what) in [
        ("/.dockerenv", "a Docker container"),
        ("/run/.containerenv", "a Podman container"),
        ("/vagrant", "a Vagrant box"),
    ] {
        if Path::new(path).exists() {
            evidence.push(format!("{path} ({what})"));
        }
    }
    if std::env::var("CILAB_DISPOSABLE").is_ok_and(|v| v == "1") {
        evidence.push("CILAB_DISPOSABLE=1".to_string());
    }
    evidence
}

fn find_leftovers(setup: Option<&CgroupSetup>) -> (Vec<Leftover>, Vec<String>) {
    let mut leftovers = Vec::new();
    let mut active = Vec::new();
    // Scratch dirs and cgroups are named after their run's id.
    let mut live_ids: BTreeSet<std::ffi::OsString> = BTreeSet::new();
    for record in registry::all_records() {
        match record {
            Ok(record) if record.owner_alive() => {
                active.push(format!("{} (cilab PID {})", record.id, record.owner_pid));
                live_ids.insert(record.id.clone().into());
            }
            Ok(record) => leftovers.push(Leftover {
                kind: "run".into(),
                path: record.path(),
                detail: format!(
                    "run {} of lab {} whose cilab (PID {}) is gone",
                    record.id, record.lab, record.owner_pid
                ),
            }),
            Err(error) => leftovers.push(Leftover { kind: "run".into(), path: registry::runs_dir(), detail: error }),
        }
    }
    let is_live = |path: &Path| path.file_name().is_some_and(|name| live_ids.contains(name));
    for dir in cgroup_run_dirs(setup) {
        if is_live(&dir.path) {
            continue;
        }
        let procs = crate::cgroup::run_group::read_procs(&dir.path);
        let detail = if procs.is_empty() {
            "empty".to_string()
        } else {
            let names: Vec<String> =
                procs.iter().map(|p| format!("{p} ({})", procfs::comm(*p).unwrap_or_default())).collect();
            format!("still holds processes {}", names.join(", "))
        };
        leftovers.push(Leftover { kind: "cgroup".into(), path: dir.path, detail });
    }
    let scratch_root = registry::scratch_root();
    if let Ok(entries) = std::fs::read_dir(&scratch_root) {
        for entry in entries.flatten() {
            if !is_live(&entry.path()) {
                leftovers.push(Leftover {
                    kind: "scratch".into(),
                    path: entry.path(),
                    detail: "scratch directory".into(),
                });
            }
        }
    }
    if let Ok(mounts) = procfs::read_mountinfo("self") {
        for mount in mounts.iter().filter(|m| Path::new(&m.mount_point).starts_with(&scratch_root)) {
            let path = PathBuf::from(&mount.mount_point);
            let run_dir =
                path.strip_prefix(&scratch_root).ok().and_then(|p| p.iter().next()).map(|c| scratch_root.join(c));
            if !run_dir.is_some_and(|d| is_live(&d)) {
                leftovers.push(Leftover { kind: "mount".into(), path, detail: format!("{} mount", mount.fs_type) });
            }
        }
    }
    (leftovers, active)
}

/// Every `<hierarchy>/cilab/<run>` directory on the machine.
fn cgroup_run_dirs(setup: Option<&CgroupSetup>) -> Vec<GroupDir> {
    let Some(setup) = setup else {
        return Vec::new();
    };
    let mut hierarchies: Vec<(PathBuf, Version, Option<String>)> =
        setup.v1.iter().map(|(c, p)| (p.clone(), Version::V1, Some(c.clone()))).collect();
    if let Some(v2) = &setup.v2 {
        hierarchies.push((v2.path.clone(), Version::V2, None));
    }
    let mut seen = BTreeMap::new();
    for (mount, version, controller) in hierarchies {
        let Ok(entries) = std::fs::read_dir(mount.join(PARENT_DIR)) else {
            continue;
        };
        for entry in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            seen.entry(entry.path()).or_insert(GroupDir {
                path: entry.path(),
                version,
                controller: controller.clone(),
            });
        }
    }
    seen.into_values().collect()
}

/// Removes the leftovers: kills processes in leftover cgroups (they were started inside a
/// cilab run cgroup, so they are cilab's), detaches mounts, removes directories and
/// records. Returns what it did, one line each.
pub fn clean(report: &DoctorReport) -> Vec<String> {
    let mut done = Vec::new();
    let mut cgroup_dirs = Vec::new();
    for leftover in &report.leftovers {
        match leftover.kind.as_str() {
            "cgroup" => cgroup_dirs.push(leftover.path.clone()),
            // Deepest first: detaching a mount lazily takes the ones below it along.
            "mount" => done.extend(crate::leaks::detach_mounts_under(&leftover.path)),
            _ => {}
        }
    }
    let setup = CgroupSetup::detect().ok();
    let dirs: Vec<GroupDir> =
        cgroup_run_dirs(setup.as_ref()).into_iter().filter(|d| cgroup_dirs.contains(&d.path)).collect();
    if !dirs.is_empty() {
        let group = RunCgroup { dirs, limits_applied: Vec::new() };
        match group.kill_all(Duration::from_secs(5)).and_then(|()| group.remove().map(drop)) {
            Ok(()) => {
                done.extend(group.dirs.iter().map(|d| format!("killed what was in and removed {}", d.path.display())))
            }
            Err(error) => done.push(format!("could not clean cgroups: {error}")),
        }
    }
    for leftover in &report.leftovers {
        let result = match leftover.kind.as_str() {
            "scratch" => std::fs::remove_dir_all(&leftover.path),
            "run" if leftover.path.is_file() => std::fs::remove_file(&leftover.path),
            _ => continue,
        };
        done.push(match result {
            Ok(()) => format!("removed {}", leftover.path.display()),
            Err(e) => format!("could not remove {}: {e}", leftover.path.display()),
        });
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RunRecord;

    #[test]
    fn a_record_whose_owner_is_gone_is_not_alive() {
        let record = RunRecord {
            id: "x".into(),
            lab: "pid-ns".into(),
            owner_pid: std::process::id() as i32,
            owner_start_time: u64::MAX, // not this process's start time: a reused PID
            scratch: PathBuf::from("/nonexistent"),
            cgroup: RunCgroup { dirs: Vec::new(), limits_applied: Vec::new() },
        };
        assert!(!record.owner_alive());
        let alive =
            RunRecord { owner_start_time: procfs::start_time(std::process::id() as i32).expect("own stat"), ..record };
        assert!(alive.owner_alive());
    }
}
