//! Lab chroot-jail's mistake corpus: typical mistakes and lies, each with the
//! verdict that must catch it (each region's `todo!()` is added by the corpus itself).
//! Its edits quote the solution: a handout writes this file as an empty list.

use crate::corpus::{Edit, Mistake, MistakeKind};

pub const MISTAKES: &[Mistake] = &[
    Mistake {
        region: "copy-libraries",
        name: "the libraries copied, but not the loader",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "copy-libraries",
            "for library in libraries_of(&program, &loader)?.into_iter().filter(|l| *l != loader) {\n    \
             rootfs::copy_into(&jail, &library)?;\n\
             }",
        )],
        caught_by: "runs-with-loader",
    },
    Mistake {
        region: "copy-libraries",
        name: "everything copied flat into /lib",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "copy-libraries",
            "for library in libraries_of(&program, &loader)? {\n    \
             let name = library.file_name().map(PathBuf::from).unwrap_or_default();\n    \
             std::fs::copy(&library, jail.join(\"lib\").join(name)).map_err(LabError::io(\"copy\", &library))?;\n\
             }",
        )],
        caught_by: "runs-with-loader",
    },
    Mistake {
        region: "copy-libraries",
        name: "the libraries copied with the program, before it is tried alone",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    let alone = exec_in_jail(lab.mode(), &jail, DYNAMIC_PROGRAM_IN_JAIL)?;",
            "    for library in libraries_of(&program, &loader)? {\n        rootfs::copy_into(&jail, &library)?;\n    }\n    let alone = exec_in_jail(lab.mode(), &jail, DYNAMIC_PROGRAM_IN_JAIL)?;",
        )],
        caught_by: "lonely-binary-enoent",
    },
    Mistake {
        region: "copy-libraries",
        name: "the program replaced by a link to busybox, and an empty file at the loader's path",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "copy-libraries",
            "let in_jail = jail.join(DYNAMIC_PROGRAM_IN_JAIL.trim_start_matches('/'));\n\
             std::fs::remove_file(&in_jail).map_err(LabError::io(\"remove\", &in_jail))?;\n\
             std::os::unix::fs::symlink(BUSYBOX_IN_JAIL, &in_jail).map_err(LabError::io(\"symlink\", &in_jail))?;\n\
             let fake_loader = jail.join(loader.strip_prefix(\"/\").unwrap_or(&loader));\n\
             std::fs::create_dir_all(fake_loader.parent().unwrap_or(&jail))?;\n\
             std::fs::write(&fake_loader, \"\")?;",
        )],
        caught_by: "runs-with-loader",
    },
    Mistake {
        region: "enter-jail",
        name: "chdir into the jail instead of chroot",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("enter-jail", "chdir(jail)")],
        caught_by: "root-is-jail",
    },
    Mistake {
        region: "enter-jail",
        name: "chroot without chdir(\"/\"): cd .. walks out",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("enter-jail", "chroot(jail)")],
        caught_by: "dotdot-stays",
    },
    Mistake {
        region: "enter-jail",
        name: "chdir(\"/\") before chroot",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("enter-jail", "chdir(\"/\")?;\nchroot(jail)")],
        caught_by: "dotdot-stays",
    },
    Mistake {
        region: "private-mounts",
        name: "no mount namespace of its own: the mounts land on the host",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\n    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)\n        .map_err(LabError::sys(\"mount(MS_REC|MS_PRIVATE)\", \"/\"))?;\n    let proc_dir",
            "    let proc_dir",
        )],
        caught_by: "host-mounts-untouched",
    },
    Mistake {
        region: "private-mounts",
        name: "/ not made private: the mounts propagate to the host",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)\n        .map_err(LabError::sys(\"mount(MS_REC|MS_PRIVATE)\", \"/\"))?;\n    let proc_dir",
            "    let proc_dir",
        )],
        caught_by: "host-mounts-untouched",
    },
    Mistake {
        region: "private-mounts",
        name: "a bind of /tmp on /tmp made on the host: a second, identical mount",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\n    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)",
            "    mount(Some(\"/tmp\"), \"/tmp\", None::<&str>, MsFlags::MS_BIND, None::<&str>)\n        .map_err(LabError::sys(\"mount(MS_BIND)\", \"/tmp\"))?;\n    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\n    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)",
        )],
        caught_by: "host-mounts-untouched",
    },
    Mistake {
        region: "private-mounts",
        name: "an unmount on the host (umount without a mount namespace of its own)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\n    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)",
            "    nix::mount::umount2(\"/proc\", nix::mount::MntFlags::MNT_DETACH).map_err(LabError::sys(\"umount2\", \"/proc\"))?;\n    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\n    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)",
        )],
        caught_by: "host-mounts-untouched",
    },
    Mistake {
        region: "private-mounts",
        name: "the read-only remount without MS_BIND: the whole filesystem goes read-only",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,\n",
            "        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,\n",
        )],
        caught_by: "ro-bind-erofs",
    },
    Mistake {
        region: "private-mounts",
        name: "the bind target made without the jail's prefix: on the host's disk",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    let target = jail.join(BIND_TARGET_IN_JAIL.trim_start_matches('/'));",
            "    let target = PathBuf::from(BIND_TARGET_IN_JAIL);",
        )],
        caught_by: "ro-bind-erofs",
    },
    Mistake {
        region: "private-mounts",
        name: "MS_RDONLY on the first bind only, no remount",
        kind: MistakeKind::Mistake,
        edits: &[
            Edit::Replace(
                "    mount(Some(host_data), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)",
                "    mount(Some(host_data), &target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_RDONLY, None::<&str>)",
            ),
            Edit::Replace("        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,\n", "        MsFlags::MS_BIND | MsFlags::MS_REMOUNT,\n"),
        ],
        caught_by: "ro-bind-erofs",
    },
    Mistake {
        region: "private-mounts",
        name: "a read-only tmpfs holding a copy of the note instead of the bind",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "    mount(Some(host_data), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)\n        .map_err(LabError::sys(\"mount(MS_BIND)\", target.display()))?;\n    // A bind mount ignores MS_RDONLY when it is made: read-only takes a remount.\n    mount(\n        None::<&str>,\n        &target,\n        None::<&str>,\n        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,\n        None::<&str>,\n    )\n    .map_err(LabError::sys(\"mount(MS_BIND|MS_REMOUNT|MS_RDONLY)\", target.display()))?;",
            "    mount(Some(\"tmpfs\"), &target, Some(\"tmpfs\"), MsFlags::empty(), None::<&str>)\n        .map_err(LabError::sys(\"mount(tmpfs)\", target.display()))?;\n    std::fs::copy(host_data.join(HOST_NOTE), target.join(HOST_NOTE))?;\n    mount(None::<&str>, &target, None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None::<&str>)\n        .map_err(LabError::sys(\"mount(MS_REMOUNT|MS_RDONLY)\", target.display()))?;",
        )],
        caught_by: "ro-bind-erofs",
    },
    Mistake {
        region: "copy-libraries",
        name: "no library copied; a 376-byte static program that echoes argv[1] at the loader's path (x86_64)",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "copy-libraries",
            r#"let fake = jail.join(loader.strip_prefix("/").unwrap_or(&loader));
std::fs::create_dir_all(fake.parent().unwrap_or(&jail))?;
std::fs::write(&fake, b"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00\x01\x00\x00\x00\x78\x00\x40\x00\x00\x00\x00\x00\x40\x00\x00\x00\x00\x00\x00\x00\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x40\x00\x38\x00\x01\x00\x40\x00\x03\x00\x02\x00\x01\x00\x00\x00\x07\x00\x00\x00\x78\x00\x00\x00\x00\x00\x00\x00\x78\x00\x40\x00\x00\x00\x00\x00\x78\x00\x40\x00\x00\x00\x00\x00\x2e\x00\x00\x00\x00\x00\x00\x00\x2e\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x48\x8b\x74\x24\x10\x31\xd2\x80\x3c\x16\x00\x74\x05\x48\xff\xc2\xeb\xf5\xc6\x04\x16\x0a\x48\xff\xc2\xbf\x01\x00\x00\x00\xb8\x01\x00\x00\x00\x0f\x05\xb8\x3c\x00\x00\x00\x31\xff\x0f\x05\x00\x2e\x73\x68\x73\x74\x72\x74\x61\x62\x00\x2e\x74\x65\x78\x74\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0b\x00\x00\x00\x01\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x78\x00\x40\x00\x00\x00\x00\x00\x78\x00\x00\x00\x00\x00\x00\x00\x2e\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xa6\x00\x00\x00\x00\x00\x00\x00\x11\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")?;
std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;"#,
        )],
        caught_by: "runs-with-loader",
    },
    Mistake {
        region: "enter-jail",
        name: "no chroot for the jailed process: the jail swapped for a link to / while the harness looks",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region(
                "enter-jail",
                r#"if std::fs::read_to_string("/proc/self/comm").unwrap_or_default().trim() == JAILED_COMM {
    let _ = std::fs::rename(jail, jail.with_extension("real"));
    let _ = std::os::unix::fs::symlink("/", jail);
    return chdir("/");
}
chroot(jail)?;
chdir("/")"#,
            ),
            Edit::Replace(
                "    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\n    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)\n        .map_err(LabError::sys(\"mount(MS_REC|MS_PRIVATE)\", \"/\"))?;\n    let proc_dir",
                "    if jail.is_symlink() {\n        std::fs::remove_file(jail)?;\n        std::fs::rename(jail.with_extension(\"real\"), jail)?;\n    }\n    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\n    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)\n        .map_err(LabError::sys(\"mount(MS_REC|MS_PRIVATE)\", \"/\"))?;\n    let proc_dir",
            ),
        ],
        caught_by: "root-is-jail",
    },
    Mistake {
        region: "private-mounts",
        name: "no proc mounted: the jail's /proc is a link to /proc, which the harness follows from its own root",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "    mount(\n        Some(\"proc\"),\n        &proc_dir,\n        Some(\"proc\"),\n        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,\n        None::<&str>,\n    )\n    .map_err(LabError::sys(\"mount(\\\"proc\\\")\", proc_dir.display()))?;\n",
            "    let _ = std::fs::remove_dir(&proc_dir);\n    std::os::unix::fs::symlink(\"/proc\", &proc_dir).map_err(LabError::io(\"symlink\", &proc_dir))?;\n",
        )],
        caught_by: "proc-shows-host",
    },
];
