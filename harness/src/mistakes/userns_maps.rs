//! Lab userns-maps's mistake corpus: typical mistakes and lies, each with the
//! verdict that must catch it (each region's `todo!()` is added by the corpus itself).
//! Its edits quote the solution: a handout writes this file as an empty list.

use crate::corpus::{Edit, Mistake, MistakeKind};

/// A drop to the lab's id that keeps every capability (PR_SET_KEEPCAPS, then capset raises
/// the effective set again): the writer is uid <id> in name only. Two lies use it.
const KEEPCAPS_DROP: &str = r#"nix::sys::prctl::set_keepcaps(true).map_err(LabError::sys("prctl(PR_SET_KEEPCAPS)", 1))?;
setgroups(&[]).map_err(LabError::sys("setgroups", "[]"))?;
setresgid(Gid::from_raw(id), Gid::from_raw(id), Gid::from_raw(id)).map_err(LabError::sys("setresgid", id))?;
setresuid(Uid::from_raw(id), Uid::from_raw(id), Uid::from_raw(id)).map_err(LabError::sys("setresuid", id))?;
#[repr(C)]
struct Header { version: u32, pid: i32 }
let mut header = Header { version: 0x2008_0522, pid: 0 };
let mut data = [0u32; 6];
unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()) };
data[0] = data[1];
data[3] = data[4];
if unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) } != 0 {
    return Err(anyhow!("capset failed"));
}
Ok(())"#;

pub const MISTAKES: &[Mistake] = &[
    Mistake {
        region: "drop-to-user",
        name: "no drop: the parent stays root and maps whatever it likes",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("drop-to-user", "let _ = id;\nOk(())")],
        caught_by: "writer-unprivileged",
    },
    Mistake {
        region: "drop-to-user",
        name: "the uid dropped before the gid: setresgid is refused",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "drop-to-user",
            "setgroups(&[]).map_err(LabError::sys(\"setgroups\", \"[]\"))?;\n\
             setresuid(Uid::from_raw(id), Uid::from_raw(id), Uid::from_raw(id)).map_err(LabError::sys(\"setresuid\", id))?;\n\
             setresgid(Gid::from_raw(id), Gid::from_raw(id), Gid::from_raw(id)).map_err(LabError::sys(\"setresgid\", id))?;\n\
             Ok(())",
        )],
        caught_by: "writer-unprivileged",
    },
    Mistake {
        region: "drop-to-user",
        name: "only the effective uid dropped (seteuid): the real and saved uid stay root",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "drop-to-user",
            "setgroups(&[]).map_err(LabError::sys(\"setgroups\", \"[]\"))?;\n\
             setresgid(Gid::from_raw(id), Gid::from_raw(id), Gid::from_raw(id)).map_err(LabError::sys(\"setresgid\", id))?;\n\
             nix::unistd::seteuid(Uid::from_raw(id)).map_err(LabError::sys(\"seteuid\", id))?;\n\
             Ok(())",
        )],
        caught_by: "writer-unprivileged",
    },
    Mistake {
        region: "unshare-user",
        name: "no unshare: the child stays in the host's user namespace",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("unshare-user", "Ok(())")],
        caught_by: "own-user-namespace",
    },
    Mistake {
        region: "unshare-user",
        name: "CLONE_NEWNS instead of CLONE_NEWUSER: refused without privilege",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "unshare-user",
            "unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\nOk(())",
        )],
        caught_by: "own-user-namespace",
    },
    Mistake {
        region: "unshare-user",
        name: "the user namespace unshared in a throwaway child; the caller stays outside",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "unshare-user",
            "let helper = child::spawn(\"userns-helper\", || match unshare(CloneFlags::CLONE_NEWUSER) {\n    \
             Ok(()) => 0,\n    \
             Err(errno) => errno as i32,\n\
             })?;\n\
             child::wait(helper, \"unsharing in a helper\")?;\n\
             Ok(())",
        )],
        caught_by: "own-user-namespace",
    },
    Mistake {
        region: "write-maps",
        name: "gid_map written before setgroups deny: refused",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "[(\"uid_map\", format!(\"0 {uid} 1\\n\")), (\"setgroups\", \"deny\\n\".to_string()), (\"gid_map\", format!(\"0 {gid} 1\\n\"))]",
            "[(\"uid_map\", format!(\"0 {uid} 1\\n\")), (\"gid_map\", format!(\"0 {gid} 1\\n\")), (\"setgroups\", \"deny\\n\".to_string())]",
        )],
        caught_by: "maps-written",
    },
    Mistake {
        region: "write-maps",
        name: "no setgroups deny at all: gid_map refused",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "[(\"uid_map\", format!(\"0 {uid} 1\\n\")), (\"setgroups\", \"deny\\n\".to_string()), (\"gid_map\", format!(\"0 {gid} 1\\n\"))]",
            "[(\"uid_map\", format!(\"0 {uid} 1\\n\")), (\"gid_map\", format!(\"0 {gid} 1\\n\"))]",
        )],
        caught_by: "maps-written",
    },
    Mistake {
        region: "write-maps",
        name: "the seed's 0 1000 1 copied: an id the writer does not own",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "[(\"uid_map\", format!(\"0 {uid} 1\\n\")), (\"setgroups\", \"deny\\n\".to_string()), (\"gid_map\", format!(\"0 {gid} 1\\n\"))]",
            "[(\"uid_map\", format!(\"0 {} 1\\n\", if uid == 0 { 0 } else { 1000 })), (\"setgroups\", \"deny\\n\".to_string()), (\"gid_map\", format!(\"0 {gid} 1\\n\"))]",
        )],
        caught_by: "maps-written",
    },
    Mistake {
        region: "write-maps",
        name: "more than one id mapped (0 <id> 65536)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "[(\"uid_map\", format!(\"0 {uid} 1\\n\")), (\"setgroups\", \"deny\\n\".to_string()), (\"gid_map\", format!(\"0 {gid} 1\\n\"))]",
            "[(\"uid_map\", format!(\"0 {uid} 65536\\n\")), (\"setgroups\", \"deny\\n\".to_string()), (\"gid_map\", format!(\"0 {gid} 65536\\n\"))]",
        )],
        caught_by: "maps-written",
    },
    Mistake {
        region: "write-maps",
        name: "the maps printed, not written",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "write-maps",
            "eprintln!(\"   inside:  wrote /proc/{pid}/uid_map \\\"0 {uid} 1\\\", setgroups deny, gid_map \\\"0 {gid} 1\\\"\");\n\
             Ok(())",
        )],
        caught_by: "maps-written",
    },
    Mistake {
        region: "write-maps",
        name: "no maps; the lab (root) chowns the file on the host to look mapped",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region("write-maps", "let _ = (pid, uid, gid);\nOk(())"),
            Edit::Replace(
                "    let made = setup.home.join(MADE_INSIDE);\n    lab.saw(",
                "    let made = setup.home.join(MADE_INSIDE);\n    \
                 let _ = std::fs::write(&made, \"made by root inside\\n\");\n    \
                 let _ = chown(&made, Some(Uid::from_raw(id)), Some(Gid::from_raw(id)));\n    \
                 lab.saw(",
            ),
        ],
        caught_by: "maps-written",
    },
    Mistake {
        region: "root-inside",
        name: "no CLONE_NEWNS: the mount is tried in the host's mount namespace",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)\n        .map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS|CLONE_NEWUTS\"))?;\n    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)\n        .map_err(LabError::sys(\"mount(MS_REC|MS_PRIVATE)\", \"/\"))?;\n",
            "    unshare(CloneFlags::CLONE_NEWUTS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWUTS\"))?;\n",
        )],
        caught_by: "root-in-owned-namespaces",
    },
    Mistake {
        region: "root-inside",
        name: "no CLONE_NEWUTS: sethostname is tried on the host's",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)\n        .map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS|CLONE_NEWUTS\"))?;\n",
            "    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\n",
        )],
        caught_by: "root-in-owned-namespaces",
    },
    Mistake {
        region: "root-inside",
        name: "the mount and the hostname made in a throwaway child's namespaces",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)\n        .map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS|CLONE_NEWUTS\"))?;\n    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)\n        .map_err(LabError::sys(\"mount(MS_REC|MS_PRIVATE)\", \"/\"))?;\n    let target = home.join(MOUNT_DIR);\n    mount(Some(\"tmpfs\"), &target, Some(\"tmpfs\"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(\"size=1m\"))\n        .map_err(LabError::sys(\"mount(\\\"tmpfs\\\")\", target.display()))?;\n    sethostname(HOSTNAME).map_err(LabError::sys(\"sethostname\", HOSTNAME))?;\n",
            "    let target = home.join(MOUNT_DIR);\n    \
             let helper = child::spawn(\"root-helper\", || {\n        \
             let _ = unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS);\n        \
             let _ = mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>);\n        \
             let _ = mount(Some(\"tmpfs\"), &target, Some(\"tmpfs\"), MsFlags::empty(), None::<&str>);\n        \
             let _ = sethostname(HOSTNAME);\n        \
             0\n    \
             })?;\n    \
             child::wait(helper, \"mounting in a helper\")?;\n",
        )],
        caught_by: "root-in-owned-namespaces",
    },
    Mistake {
        region: "root-inside",
        name: "no file made in the mapped user's directory",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    let made = home.join(MADE_INSIDE);\n    std::fs::write(&made, \"made by root inside\\n\").map_err(LabError::io(\"write\", &made))?;\n",
            "",
        )],
        caught_by: "file-owned-by-lab-id",
    },
    Mistake {
        region: "newuidmap",
        name: "only the caller's own id mapped: no subordinate range",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "            .args([\"1\".to_string(), SUBID_START.to_string(), SUBID_COUNT.to_string()])\n",
            "",
        )],
        caught_by: "subid-range-mapped",
    },
    Mistake {
        region: "newuidmap",
        name: "a range /etc/subuid does not grant: newuidmap refuses",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "            .args([\"1\".to_string(), SUBID_START.to_string(), SUBID_COUNT.to_string()])\n",
            "            .args([\"1\".to_string(), (SUBID_START * 3).to_string(), SUBID_COUNT.to_string()])\n",
        )],
        caught_by: "subid-range-mapped",
    },
    Mistake {
        region: "newuidmap",
        name: "the newuidmap and newgidmap commands printed, not run",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "newuidmap",
            "eprintln!(\"   inside:  newuidmap {pid} 0 {uid} 1 1 {SUBID_START} {SUBID_COUNT}; newgidmap {pid} 0 {gid} 1 1 {SUBID_START} {SUBID_COUNT}\");\n\
             Ok(())",
        )],
        caught_by: "subid-range-mapped",
    },
    Mistake {
        region: "drop-to-user",
        name: "the writer keeps its capabilities across the uid change (PR_SET_KEEPCAPS, then capset)",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region("drop-to-user", KEEPCAPS_DROP)],
        caught_by: "writer-unprivileged",
    },
    Mistake {
        region: "write-maps",
        name: "the lab (root) writes the maps; the unprivileged parent writes none",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region("write-maps", "let _ = (pid, uid, gid);\nOk(())"),
            Edit::Replace(
                "    end.send(MAP)?;\n    end.wait_ready(\"writing the maps\"",
                r#"    for (file, text) in [("uid_map", format!("0 {id} 1\n")), ("setgroups", "deny\n".to_string()), ("gid_map", format!("0 {id} 1\n"))] {
        std::fs::write(format!("/proc/{child_pid}/{file}"), text)?;
    }
    end.send(MAP)?;
    end.wait_ready("writing the maps""#,
            ),
        ],
        caught_by: "maps-written",
    },
    Mistake {
        region: "root-inside",
        name: "the file made by the unprivileged parent on the host, not by root inside",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Replace(
                "    let made = home.join(MADE_INSIDE);\n    std::fs::write(&made, \"made by root inside\\n\").map_err(LabError::io(\"write\", &made))?;\n",
                "",
            ),
            Edit::Replace(
                "    voice.inside(&format!(\"userns-parent: {}\", status_ids(Pid::this())));\n",
                "    voice.inside(&format!(\"userns-parent: {}\", status_ids(Pid::this())));\n    std::fs::write(setup.home.join(MADE_INSIDE), \"made by root inside\\n\")?;\n",
            ),
        ],
        caught_by: "file-owned-by-lab-id",
    },
    Mistake {
        region: "root-inside",
        name: "real root mounts and sets the hostname before dropping; the child's namespaces only copy them",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Replace(
                "    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)\n        .map_err(LabError::sys(\"mount(MS_REC|MS_PRIVATE)\", \"/\"))?;\n    let target = home.join(MOUNT_DIR);\n    mount(Some(\"tmpfs\"), &target, Some(\"tmpfs\"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(\"size=1m\"))\n        .map_err(LabError::sys(\"mount(\\\"tmpfs\\\")\", target.display()))?;\n    sethostname(HOSTNAME).map_err(LabError::sys(\"sethostname\", HOSTNAME))?;\n",
                "",
            ),
            Edit::Replace(
                "    let lab_pid = nix::unistd::getppid();\n    drop_to_user(setup.id)?;\n",
                r#"    let lab_pid = nix::unistd::getppid();
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
    mount(Some("tmpfs"), &setup.home.join(MOUNT_DIR), Some("tmpfs"), MsFlags::empty(), Some("size=1m"))?;
    sethostname(HOSTNAME)?;
    drop_to_user(setup.id)?;
"#,
            ),
        ],
        caught_by: "root-in-owned-namespaces",
    },
    Mistake {
        region: "newuidmap",
        name: "no newuidmap: the writer writes the range while still root, and drops afterwards",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Replace(
                "    give_subordinate_range(voice, setup)?;\n    drop_to_user(setup.id)?;\n    after_dropping(lab_pid)?;\n",
                "    give_subordinate_range(voice, setup)?;\n",
            ),
            Edit::Region("newuidmap", r#"for file in ["uid_map", "gid_map"] {
    std::fs::write(format!("/proc/{pid}/{file}"), format!("0 {uid} 1\n1 {SUBID_START} {SUBID_COUNT}\n"))?;
}
let _ = gid;
Ok(())"#),
            Edit::Replace(
                "        map_with_newuidmap(child_pid, setup.id, setup.id)?;\n",
                "        map_with_newuidmap(child_pid, setup.id, setup.id)?;\n        drop_to_user(setup.id)?;\n        after_dropping(lab_pid)?;\n",
            ),
        ],
        caught_by: "subid-range-mapped",
    },
    Mistake {
        region: "newuidmap",
        name: "no newuidmap: the lab (root) writes the range into the child's maps",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region("newuidmap", "let _ = (pid, uid, gid);\nOk(())"),
            Edit::Replace(
                "    end.send(MAP)?;\n    end.wait_ready(\n        \"mapping a range with newuidmap and newgidmap\",",
                r#"    for file in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{child_pid}/{file}"), format!("0 {id} 1\n1 {SUBID_START} {SUBID_COUNT}\n"))?;
    }
    end.send(MAP)?;
    end.wait_ready(
        "mapping a range with newuidmap and newgidmap","#,
            ),
        ],
        caught_by: "subid-range-mapped",
    },
    Mistake {
        region: "newuidmap",
        name: "no newuidmap: a writer that kept its capabilities writes the range itself",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region("drop-to-user", KEEPCAPS_DROP), Edit::Region("newuidmap", r#"for file in ["uid_map", "gid_map"] {
    std::fs::write(format!("/proc/{pid}/{file}"), format!("0 {uid} 1\n1 {SUBID_START} {SUBID_COUNT}\n"))?;
}
let _ = gid;
Ok(())"#)],
        caught_by: "subid-range-mapped",
    },
    Mistake {
        region: "root-inside",
        name: "the lab (root, on the host) creates the file and chowns it to the lab's id; root inside makes none",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Replace(
                "    let made = home.join(MADE_INSIDE);\n    std::fs::write(&made, \"made by root inside\\n\").map_err(LabError::io(\"write\", &made))?;\n",
                "",
            ),
            Edit::Replace(
                "    let made = setup.home.join(MADE_INSIDE);\n    lab.saw(",
                "    let made = setup.home.join(MADE_INSIDE);\n    \
                 let _ = std::fs::write(&made, \"made by root inside\\n\");\n    \
                 let _ = chown(&made, Some(Uid::from_raw(id)), Some(Gid::from_raw(id)));\n    \
                 lab.saw(",
            ),
        ],
        caught_by: "file-owned-by-lab-id",
    },
];
