//! Lab pivot-root's mistake corpus: typical mistakes and lies, each with the
//! verdict that must catch it (each region's `todo!()` is added by the corpus itself).
//! Its edits quote the solution: a handout writes this file as an empty list.

use crate::corpus::{Edit, Mistake, MistakeKind};

pub const MISTAKES: &[Mistake] = &[
    Mistake {
        region: "unshare-namespaces",
        name: "no CLONE_NEWPID: the init is not PID 1",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "unshare-namespaces",
            "unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWNET)\n    \
             .map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET\"))?;\n\
             Ok(())",
        )],
        caught_by: "own-namespaces",
    },
    Mistake {
        region: "unshare-namespaces",
        name: "no CLONE_NEWUTS: the init refuses to rename the host and stops",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "unshare-namespaces",
            "unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWPID)\n    \
             .map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS|CLONE_NEWIPC|CLONE_NEWNET|CLONE_NEWPID\"))?;\n\
             Ok(())",
        )],
        caught_by: "hostname-tupperware",
    },
    Mistake {
        region: "unshare-namespaces",
        name: "no CLONE_NEWNET: the container shares the host's network",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "unshare-namespaces",
            "unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWPID)\n    \
             .map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWPID\"))?;\n\
             Ok(())",
        )],
        caught_by: "own-namespaces",
    },
    Mistake {
        region: "make-private",
        name: "MS_PRIVATE without MS_REC: the mounts below / stay shared",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "make-private",
            "mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_PRIVATE, None::<&str>)\n    \
             .map_err(LabError::sys(\"mount(MS_PRIVATE)\", \"/\"))?;\n\
             Ok(())",
        )],
        caught_by: "private-not-mount-point",
    },
    Mistake {
        region: "make-private",
        name: "propagation left as it is: everything stays shared with the host",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("make-private", "Ok(())")],
        caught_by: "private-not-mount-point",
    },
    Mistake {
        region: "bind-new-root",
        name: "the workdir bound onto the new root instead of the new root itself",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "bind-new-root",
            "let source = new_root.parent().unwrap_or(new_root);\n\
             mount(Some(source), new_root, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)\n    \
             .map_err(LabError::sys(\"mount(MS_BIND|MS_REC)\", new_root.display()))?;\n\
             Ok(())",
        )],
        caught_by: "bind-makes-mount-point",
    },
    Mistake {
        region: "bind-new-root",
        name: "an empty tmpfs mounted on the new root instead of the bind",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "bind-new-root",
            "mount(Some(\"tmpfs\"), new_root, Some(\"tmpfs\"), MsFlags::empty(), None::<&str>)\n    \
             .map_err(LabError::sys(\"mount(tmpfs)\", new_root.display()))?;\n\
             Ok(())",
        )],
        caught_by: "bind-makes-mount-point",
    },
    Mistake {
        region: "pivot",
        name: "the old root left mounted at /oldroot (no umount)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "pivot",
            "chdir(new_root).map_err(LabError::sys(\"chdir\", new_root.display()))?;\n\
             pivot_root(\".\", PUT_OLD).map_err(LabError::sys(\"pivot_root\", format!(\". {PUT_OLD}\")))?;\n\
             chdir(\"/\").map_err(LabError::sys(\"chdir\", \"/\"))?;\n\
             Ok(())",
        )],
        caught_by: "only-root-and-proc",
    },
    Mistake {
        region: "pivot",
        name: "umount2 without MNT_DETACH: the busy old root refuses (EBUSY)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    umount2(old.as_str(), MntFlags::MNT_DETACH).map_err(LabError::sys(\"umount2(MNT_DETACH)\", &old))?;",
            "    umount2(old.as_str(), MntFlags::empty()).map_err(LabError::sys(\"umount2\", &old))?;",
        )],
        caught_by: "only-root-and-proc",
    },
    Mistake {
        region: "pivot",
        name: "chroot into the new root instead of pivot_root: the old root stays the namespace's",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "pivot",
            "chroot(new_root).map_err(LabError::sys(\"chroot\", new_root.display()))?;\n\
             chdir(\"/\").map_err(LabError::sys(\"chdir\", \"/\"))?;\n\
             Ok(())",
        )],
        caught_by: "sentinel-unreachable",
    },
    Mistake {
        region: "runc-pivot",
        name: "no umount2 after pivot_root(\".\", \".\"): the old root stays on top",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    umount2(\".\", MntFlags::MNT_DETACH).map_err(LabError::sys(\"umount2(MNT_DETACH)\", \".\"))?;\n",
            "",
        )],
        caught_by: "runc-pivot-same",
    },
    Mistake {
        region: "runc-pivot",
        name: "no chdir(\"/\") at the end: the working directory stays in the detached old root",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    umount2(\".\", MntFlags::MNT_DETACH).map_err(LabError::sys(\"umount2(MNT_DETACH)\", \".\"))?;\n    chdir(\"/\").map_err(LabError::sys(\"chdir\", \"/\"))?;\n",
            "    umount2(\".\", MntFlags::MNT_DETACH).map_err(LabError::sys(\"umount2(MNT_DETACH)\", \".\"))?;\n",
        )],
        caught_by: "runc-pivot-same",
    },
    Mistake {
        region: "close-fds",
        name: "nothing closed: the workdir's descriptor goes into the container",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("close-fds", "let _ = keep;\nOk(())")],
        caught_by: "no-fd-leads-out",
    },
    Mistake {
        region: "close-fds",
        name: "every descriptor above 2 closed, the pipes to the lab too",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "close-fds",
            "let _ = keep;\n\
             for fd in open_fds().into_iter().filter(|fd| *fd > 2) {\n    \
             let _ = nix::unistd::close(fd);\n\
             }\n\
             Ok(())",
        )],
        caught_by: "no-fd-leads-out",
    },
    Mistake {
        region: "close-fds",
        name: "the outside directory moved onto fd 0 before the others are closed",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "close-fds",
            "for fd in open_fds() {\n    \
             if fd > 2 && !keep.contains(&fd) {\n        \
             let is_dir = nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);\n        \
             if is_dir {\n            \
             let _ = nix::unistd::dup2(fd, 0);\n        \
             }\n        \
             let _ = nix::unistd::close(fd);\n    \
             }\n\
             }\n\
             Ok(())",
        )],
        caught_by: "no-fd-leads-out",
    },
    Mistake {
        region: "close-fds",
        name: "the outside directory made the working directory, then closed",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "close-fds",
            "for fd in open_fds() {\n    \
             if fd > 2 && !keep.contains(&fd) {\n        \
             let _ = fchdir(fd);\n        \
             let _ = nix::unistd::close(fd);\n    \
             }\n\
             }\n\
             Ok(())",
        )],
        caught_by: "no-fd-leads-out",
    },
    Mistake {
        region: "runc-pivot",
        name: "the old root's descriptor kept open after the pivot",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "    chdir(\"/\").map_err(LabError::sys(\"chdir\", \"/\"))?;\n    Ok(())\n    // STUDENT: end runc-pivot",
            "    chdir(\"/\").map_err(LabError::sys(\"chdir\", \"/\"))?;\n    std::mem::forget(old);\n    Ok(())\n    // STUDENT: end runc-pivot",
        )],
        caught_by: "runc-pivot-same",
    },
    Mistake {
        region: "make-private",
        name: "the mounts made private in a throwaway namespace of a child",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "make-private",
            "let copy = child::spawn(\"private-copy\", || {\n    \
             let _ = unshare(CloneFlags::CLONE_NEWNS);\n    \
             let _ = mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>);\n    \
             0\n\
             })?;\n\
             child::wait(copy, \"making a private copy\")?;\n\
             Ok(())",
        )],
        caught_by: "private-not-mount-point",
    },
    Mistake {
        region: "pivot",
        name: "the old root bound at /mnt before the lazy unmount",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "    let old = format!(\"/{PUT_OLD}\");\n    umount2(",
            "    let old = format!(\"/{PUT_OLD}\");\n    \
             mount(Some(old.as_str()), \"/mnt\", None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)\n        \
             .map_err(LabError::sys(\"mount(MS_BIND|MS_REC)\", \"/mnt\"))?;\n    umount2(",
        )],
        caught_by: "only-root-and-proc",
    },
    Mistake {
        region: "pivot",
        name: "pivot_root by absolute paths, no chdir: the working directory stays outside",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "pivot",
            "pivot_root(new_root, &new_root.join(PUT_OLD)).map_err(LabError::sys(\"pivot_root\", new_root.display()))?;\n\
             let old = format!(\"/{PUT_OLD}\");\n\
             umount2(old.as_str(), MntFlags::MNT_DETACH).map_err(LabError::sys(\"umount2(MNT_DETACH)\", &old))?;\n\
             Ok(())",
        )],
        caught_by: "root-is-rootfs",
    },
    Mistake {
        region: "close-fds",
        name: "a child of the init keeps the outside directory open",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "close-fds",
            "let _keeper = child::spawn(\"fd-keeper\", || {\n    \
             std::thread::sleep(std::time::Duration::from_secs(20));\n    \
             0\n\
             })?;\n\
             for fd in open_fds() {\n    \
             if fd > 2 && !keep.contains(&fd) {\n        \
             let _ = nix::unistd::close(fd);\n    \
             }\n\
             }\n\
             Ok(())",
        )],
        caught_by: "no-fd-leads-out",
    },
    Mistake {
        region: "make-private",
        name: "MS_REC|MS_SHARED instead of MS_PRIVATE: the mounts stay peers of the host's",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "make-private",
            "mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SHARED, None::<&str>)\n    \
             .map_err(LabError::sys(\"mount(MS_REC|MS_SHARED)\", \"/\"))?;\n\
             Ok(())",
        )],
        caught_by: "private-not-mount-point",
    },
    Mistake {
        region: "pivot",
        name: "chdir into the new root and chroot(\".\"): a chroot, not a pivot",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "pivot",
            "chdir(new_root).map_err(LabError::sys(\"chdir\", new_root.display()))?;\n\
             chroot(\".\").map_err(LabError::sys(\"chroot\", \".\"))?;\n\
             Ok(())",
        )],
        caught_by: "escape-stays-inside",
    },
];
