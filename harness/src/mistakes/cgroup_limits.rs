//! Lab cgroup-limits's mistake corpus: typical mistakes and lies, each with the
//! verdict that must catch it (each region's `todo!()` is added by the corpus itself).
//! Its edits quote the solution: a handout writes this file as an empty list.

use crate::corpus::{Edit, Mistake, MistakeKind};

pub const MISTAKES: &[Mistake] = &[
    Mistake {
        region: "make-cgroup",
        name: "the cgroup made one level too high (beside the run's on a whole machine; under cilab, beside the lab's own on v1, on sysfs on v2)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "make-cgroup",
            "let mut dirs = Vec::new();\n\
             for hierarchy in &system.hierarchies {\n    \
                 let own = match system.version {\n        \
                     Version::V2 => hierarchy.own.parent().unwrap_or(&hierarchy.own),\n        \
                     Version::V1 => &hierarchy.own,\n    \
                 };\n    \
                 let dir = own.parent().unwrap_or(own).join(CGROUP_NAME);\n    \
                 make_dir(&dir)?;\n    \
                 dirs.push((hierarchy.controllers.clone(), dir));\n\
             }\n\
             Ok(LabCgroup::new(system.version, dirs))",
        )],
        caught_by: "in-its-place",
    },
    Mistake {
        region: "make-cgroup",
        name: "the cgroup made at the hierarchy's root, as a tutorial for a whole machine does (under cilab the root is the run's cgroup: beside the lab's own on v1)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "make-cgroup",
            "let mut dirs = Vec::new();\n\
             for hierarchy in &system.hierarchies {\n    \
                 let root = match system.version {\n        \
                     Version::V2 => PathBuf::from(CGROUP_ROOT),\n        \
                     Version::V1 => Path::new(CGROUP_ROOT).join(hierarchy.controllers[0]),\n    \
                 };\n    \
                 let dir = root.join(CGROUP_NAME);\n    \
                 make_dir(&dir)?;\n    \
                 dirs.push((hierarchy.controllers.clone(), dir));\n\
             }\n\
             Ok(LabCgroup::new(system.version, dirs))",
        )],
        caught_by: "in-its-place",
    },
    Mistake {
        region: "limit-pids",
        name: "pids.max written into the run's cgroup (the parent) instead of the lab's",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "limit-pids",
            "let dir = cgroup.dir(\"pids\")?;\n\
             write_control(&dir.parent().unwrap_or(dir).join(\"pids.max\"), &max.to_string())",
        )],
        caught_by: "bomb-held-at-n",
    },
    Mistake {
        region: "remove-cgroup",
        name: "lie: the lab's cgroup removed, a second one made under the run removed only after the last stage",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region(
                "remove-cgroup",
                r#"for dir in cgroup.paths() {
    std::fs::remove_dir(dir).map_err(LabError::io("rmdir", dir))?;
    let extra = dir.parent().unwrap_or(dir).join("lab-extra");
    if std::fs::create_dir(&extra).is_ok() {
        cleanup::track_undo(&["rmdir", &extra.to_string_lossy()]);
    }
}
Ok(())"#,
            ),
            // Removed after the last stage, where nobody looks any more.
            Edit::Replace(
                "    lab.hold(REMOVED, json!({}))?;\n",
                "    lab.hold(REMOVED, json!({}))?;\n    for dir in cgroup.paths() {\n        let _ = std::fs::remove_dir(dir.parent().unwrap_or(dir).join(\"lab-extra\"));\n    }\n",
            ),
        ],
        caught_by: "cgroup-removed",
    },
    Mistake {
        region: "limit-pids",
        name: "no pids limit written: only the run's own limit stops the bomb",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("limit-pids", "let _ = (cgroup, max);\nOk(())")],
        caught_by: "bomb-held-at-n",
    },
    Mistake {
        region: "limit-memory",
        name: "the memory limit in the wrong unit (64 GiB for 64 MiB): only the run's limit stops the hog",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "limit-memory",
            "let dir = cgroup.dir(\"memory\")?;\n\
             let bytes = bytes << 10;\n\
             match cgroup.version {\n    \
                 Version::V2 => write_control(&dir.join(\"memory.max\"), &bytes.to_string()),\n    \
                 Version::V1 => write_control(&dir.join(\"memory.limit_in_bytes\"), &bytes.to_string()),\n\
             }",
        )],
        caught_by: "hog-oom-killed",
    },
    Mistake {
        region: "limit-memory",
        name:
            "the limit written to the wrong file for the cgroup version (memory.max on v1, memory.limit_in_bytes on v2)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "limit-memory",
            "let dir = cgroup.dir(\"memory\")?;\n\
             match cgroup.version {\n    \
                 Version::V1 => write_control(&dir.join(\"memory.max\"), &bytes.to_string()),\n    \
                 Version::V2 => write_control(&dir.join(\"memory.limit_in_bytes\"), &bytes.to_string()),\n\
             }",
        )],
        caught_by: "hog-oom-killed",
    },
    Mistake {
        region: "limit-memory",
        name: "lie: no limit, and the lab SIGKILLs its own hog to look OOM-killed",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region("limit-memory", "let _ = (cgroup, bytes);\nOk(())"),
            Edit::Replace(
                "    hog.go()?;\n    let status",
                "    hog.go()?;\n    let _ = kill(hog.pid, Signal::SIGKILL);\n    let status",
            ),
        ],
        caught_by: "hog-oom-killed",
    },
    Mistake {
        region: "limit-memory",
        name: "bits for bytes: the limit divided by 8 (8 MiB for 64 MiB): the hog is killed, at the wrong limit",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "limit-memory",
            "let dir = cgroup.dir(\"memory\")?;\n\
             let bytes = bytes / 8;\n\
             match cgroup.version {\n    \
                 Version::V2 => {\n        \
                     write_control(&dir.join(\"memory.max\"), &bytes.to_string())?;\n        \
                     write_if_present(&dir.join(\"memory.swap.max\"), \"0\")\n    \
                 }\n    \
                 Version::V1 => write_control(&dir.join(\"memory.limit_in_bytes\"), &bytes.to_string()),\n\
             }",
        )],
        caught_by: "hog-oom-killed",
    },
    Mistake {
        region: "limit-memory",
        name: "lie: a decoy is OOM-killed in the lab's cgroup, and the hog SIGKILLs itself",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "    let mut hog = Workload::start(HOG_COMM, hog)?;\n",
            r#"    let mut decoy = Workload::start("cg-decoy", hog)?;
    join_cgroup(&cgroup, decoy.pid)?;
    decoy.go()?;
    child::wait(decoy.pid, "the decoy")?;
    let mut hog = Workload::start(HOG_COMM, |_: &mut child::ChildEnd| {
        let _ = kill(nix::unistd::getpid(), Signal::SIGKILL);
        0
    })?;
"#,
        )],
        caught_by: "hog-oom-killed",
    },
    Mistake {
        region: "limit-memory",
        name: "lie: no limit; the hog asks to be the OOM victim and a ballast fills the run's memory",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region("limit-memory", "let _ = (cgroup, bytes);\nOk(())"),
            Edit::Replace(
                "    hog.go()?;\n    let status = hog.wait_exit_unreaped(\"touching memory\")?;\n",
                r#"    hog.go()?;
    let hog_pid = hog.pid;
    let ballast = child::spawn("ballast", move || {
        let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
        let _ = std::fs::write(format!("/proc/{hog_pid}/oom_score_adj"), "1000");
        let mut kept: Vec<Vec<u8>> = Vec::new();
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{hog_pid}/stat")).unwrap_or_default();
            if stat.rsplit_once(')').is_none_or(|(_, r)| r.trim_start().starts_with('Z')) || kept.len() > 2000 {
                return 0;
            }
            kept.push(vec![1u8; 1 << 20]);
        }
    })?;
    let status = hog.wait_exit_unreaped("touching memory")?;
    child::wait(ballast, "ballast")?;
"#,
            ),
        ],
        caught_by: "hog-oom-killed",
    },
    Mistake {
        region: "limit-cpu",
        name: "a quota of 12% instead of 20% (within the share's tolerance, but not the limit asked for)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "limit-cpu",
            "let dir = cgroup.dir(\"cpu\")?;\n\
             let quota_us = quota_us * 6 / 10;\n\
             match cgroup.version {\n    \
                 Version::V2 => write_control(&dir.join(\"cpu.max\"), &format!(\"{quota_us} {period_us}\")),\n    \
                 Version::V1 => {\n        \
                     write_control(&dir.join(\"cpu.cfs_period_us\"), &period_us.to_string())?;\n        \
                     write_control(&dir.join(\"cpu.cfs_quota_us\"), &quota_us.to_string())\n    \
                 }\n\
             }",
        )],
        caught_by: "cpu-quota",
    },
    Mistake {
        region: "limit-cpu",
        name: "quota and period swapped: 500% of a CPU instead of 20%",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "limit-cpu",
            "let dir = cgroup.dir(\"cpu\")?;\n\
             match cgroup.version {\n    \
                 Version::V2 => write_control(&dir.join(\"cpu.max\"), &format!(\"{period_us} {quota_us}\")),\n    \
                 Version::V1 => {\n        \
                     write_control(&dir.join(\"cpu.cfs_period_us\"), &quota_us.to_string())?;\n        \
                     write_control(&dir.join(\"cpu.cfs_quota_us\"), &period_us.to_string())\n    \
                 }\n\
             }",
        )],
        caught_by: "cpu-quota",
    },
    Mistake {
        region: "limit-cpu",
        name: "lie: no quota written, the lab prints a 20% share instead of measuring",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "limit-cpu",
            "let _ = (cgroup, period_us);\n\
             println!(\"cpu share: {}% of one CPU, nr_throttled 10\", quota_us / 1000);\n\
             Ok(())",
        )],
        caught_by: "cpu-quota",
    },
    Mistake {
        region: "join-cgroup",
        name: "the bomb put in the cgroup after it forked its children",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    join_cgroup(&cgroup, bomb.pid)?;\n    bomb.go_and_wait_ready(\"forking until EAGAIN\")?;",
            "    bomb.go_and_wait_ready(\"forking until EAGAIN\")?;\n    join_cgroup(&cgroup, bomb.pid)?;",
        )],
        caught_by: "workloads-inside",
    },
    Mistake {
        region: "join-cgroup",
        name: "the workload put in the pids hierarchy only (v1: memory, cpu and freezer do not hold it)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "join-cgroup",
            "write_control(&cgroup.dir(\"pids\")?.join(\"cgroup.procs\"), &pid.to_string())",
        )],
        caught_by: "workloads-inside",
    },
    Mistake {
        region: "kill-cgroup",
        name: "v1: frozen and killed, never thawed: the SIGKILLs wait for a thaw that does not come",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "kill-cgroup",
            "match cgroup.version {\n    \
                 Version::V2 => write_control(&cgroup.dir(\"pids\")?.join(\"cgroup.kill\"), \"1\"),\n    \
                 Version::V1 => {\n        \
                     write_control(&cgroup.dir(\"freezer\")?.join(\"freezer.state\"), \"FROZEN\")?;\n        \
                     wait_freezer(cgroup, true)?;\n        \
                     for pid in procs(cgroup.dir(\"freezer\")?)? {\n            \
                         kill(pid, Signal::SIGKILL).map_err(LabError::sys(\"kill\", pid))?;\n        \
                     }\n        \
                     Ok(())\n    \
                 }\n\
             }",
        )],
        caught_by: "cgroup-killed",
    },
    Mistake {
        region: "kill-cgroup",
        name: "SIGTERM instead of SIGKILL: the bomb and its children ignore it",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "kill-cgroup",
            "for pid in procs(cgroup.dir(\"pids\")?)? {\n    \
                 kill(pid, Signal::SIGTERM).map_err(LabError::sys(\"kill\", pid))?;\n\
             }\n\
             Ok(())",
        )],
        caught_by: "cgroup-killed",
    },
    Mistake {
        region: "freeze",
        name: "lie: SIGSTOP and SIGCONT to each process instead of the freezer",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region(
                "freeze",
                "let signal = if frozen { Signal::SIGSTOP } else { Signal::SIGCONT };\n\
                 for pid in procs(cgroup.dir(\"pids\")?)? {\n    \
                     kill(pid, signal).map_err(LabError::sys(\"kill\", pid))?;\n\
                 }\n\
                 Ok(())",
            ),
            Edit::Replace(
                "    set_frozen(&cgroup, true)?;\n    wait_freezer(&cgroup, true)?;",
                "    set_frozen(&cgroup, true)?;",
            ),
        ],
        caught_by: "frozen",
    },
    Mistake {
        region: "freeze",
        name: "lie: the processes moved back to the run's cgroup and stopped by signals; the empty cgroup is frozen",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "freeze",
            r#"let (file, on, off) = cgroup.freezer()?;
let signal = if frozen { Signal::SIGSTOP } else { Signal::SIGCONT };
let own = |dir: &Path| match cgroup.version {
    Version::V2 => dir.parent().unwrap_or(dir).join("lab"),
    Version::V1 => dir.parent().unwrap_or(dir).to_path_buf(),
};
let pids_dir = cgroup.dir("pids")?;
let pids = if frozen { procs(pids_dir)? } else { procs(&own(pids_dir))? };
for pid in pids {
    kill(pid, signal).map_err(LabError::sys("kill", pid))?;
    if frozen {
        for dir in cgroup.paths() {
            write_control(&own(dir).join("cgroup.procs"), &pid.to_string())?;
        }
    }
}
write_control(&file, if frozen { on } else { off })"#,
        )],
        caught_by: "frozen",
    },
    Mistake {
        region: "freeze",
        name:
            "the value for the other cgroup version (\"1\" into v1's freezer.state, \"FROZEN\" into v2's cgroup.freeze)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "freeze",
            "let (file, _, _) = cgroup.freezer()?;\n\
             let value = match (cgroup.version, frozen) {\n    \
                 (Version::V1, true) => \"1\",\n    \
                 (Version::V1, false) => \"0\",\n    \
                 (Version::V2, true) => \"FROZEN\",\n    \
                 (Version::V2, false) => \"THAWED\",\n\
             };\n\
             write_control(&file, value)",
        )],
        caught_by: "frozen",
    },
    Mistake {
        region: "move-out",
        name: "nothing moved out: the busy loop is killed inside the cgroup",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("move-out", "let _ = (system, pid);\nOk(())")],
        caught_by: "moved-out",
    },
    Mistake {
        region: "move-out",
        name: "moved out one level too high, into the parent of the lab's own cgroup (under cilab the namespace's root; v2 refuses it, EBUSY)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "move-out",
            "for hierarchy in &system.hierarchies {\n    \
                 let parent = hierarchy.own.parent().unwrap_or(&hierarchy.own);\n    \
                 write_control(&parent.join(\"cgroup.procs\"), &pid.to_string())?;\n\
             }\n\
             Ok(())",
        )],
        caught_by: "moved-out",
    },
    Mistake {
        region: "move-out",
        name: "moved out in the pids hierarchy only",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "move-out",
            "let hierarchy = system.hierarchies.iter().find(|h| h.controllers.contains(&\"pids\"));\n\
             let own = hierarchy.map(|h| h.own.clone()).unwrap_or_default();\n\
             write_control(&own.join(\"cgroup.procs\"), &pid.to_string())",
        )],
        caught_by: "moved-out",
    },
    Mistake {
        region: "remove-cgroup",
        name: "the cgroup left behind",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("remove-cgroup", "let _ = cgroup;\nOk(())")],
        caught_by: "cgroup-removed",
    },
    Mistake {
        region: "remove-cgroup",
        name: "rm -r instead of rmdir: the kernel's files cannot be unlinked",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "remove-cgroup",
            "for dir in cgroup.paths() {\n    \
                 std::fs::remove_dir_all(dir).map_err(LabError::io(\"rm -r\", dir))?;\n\
             }\n\
             Ok(())",
        )],
        caught_by: "cgroup-removed",
    },
];
