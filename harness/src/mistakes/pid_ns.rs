//! Lab pid-ns's mistake corpus: typical mistakes and lies, each with the
//! verdict that must catch it (each region's `todo!()` is added by the corpus itself).
//! Its edits quote the solution: a handout writes this file as an empty list.

use crate::corpus::{Edit, Mistake, MistakeKind};

pub const MISTAKES: &[Mistake] = &[
    Mistake {
        region: "unshare-pid",
        name: "unshare with no flag",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("unshare-pid", "unshare(CloneFlags::empty()).map_err(LabError::sys(\"unshare\", \"no flag\"))?;")],
        caught_by: "caller-stays",
    },
    Mistake {
        region: "unshare-pid",
        name: "the mount-namespace flag instead of the PID one",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "unshare-pid",
            "unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;",
        )],
        caught_by: "caller-stays",
    },
    Mistake {
        region: "fork-init",
        name: "fork before unshare",
        kind: MistakeKind::Mistake,
        edits: &[
            Edit::Region("unshare-pid", "let _moved_below = ();"),
            Edit::Region(
                "fork-init",
                "let init = child::spawn(INIT_COMM, move || init_process(voice, me, link, &handler_log))?;\n\
                 unshare(CloneFlags::CLONE_NEWPID).map_err(LabError::sys(\"unshare\", \"CLONE_NEWPID\"))?;\n\
                 init",
            ),
        ],
        caught_by: "init-is-pid-1",
    },
    Mistake {
        region: "fork-init",
        name: "the init forked, but it does not run the init's body",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("fork-init", "let _ = (voice, link, &handler_log);\nchild::spawn(INIT_COMM, || 0)?")],
        caught_by: "init-is-pid-1",
    },
    Mistake {
        region: "fork-init",
        name: "fork-init returns a PID that is not the init's (the lab's own): nothing may be signalled",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "fork-init",
            "let _init = child::spawn(INIT_COMM, move || init_process(voice, me, link, &handler_log))?;\ngetpid()",
        )],
        caught_by: "init-is-pid-1",
    },
    Mistake {
        region: "private-proc",
        name: "no mount namespace of its own: proc lands on the host's /proc",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace("    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\n    mount(None::<&str>, \"/\"", "    mount(None::<&str>, \"/\"")],
        caught_by: "host-untouched",
    },
    Mistake {
        region: "private-proc",
        name: "/ not made private: the proc mount propagates to the host",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)\n        .map_err(LabError::sys(\"mount(MS_REC|MS_PRIVATE)\", \"/\"))?;\n    mount(\n        Some(\"proc\"),\n        \"/proc\"",
            "    mount(\n        Some(\"proc\"),\n        \"/proc\"",
        )],
        caught_by: "host-untouched",
    },
    Mistake {
        region: "private-proc",
        name: "proc mounted before / is made private",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "private-proc",
            "unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\n\
             mount(Some(\"proc\"), \"/proc\", Some(\"proc\"), MsFlags::empty(), None::<&str>)\n    \
             .map_err(LabError::sys(\"mount(\\\"proc\\\")\", \"/proc\"))?;\n\
             mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)\n    \
             .map_err(LabError::sys(\"mount(MS_REC|MS_PRIVATE)\", \"/\"))?;\n\
             Ok(())",
        )],
        caught_by: "host-untouched",
    },
    Mistake {
        region: "private-proc",
        name: "a private mount namespace, but no fresh proc",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "private-proc",
            "unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\n\
             mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)\n    \
             .map_err(LabError::sys(\"mount(MS_REC|MS_PRIVATE)\", \"/\"))?;\n\
             Ok(())",
        )],
        caught_by: "private-proc",
    },
    Mistake {
        region: "private-proc",
        name: "a tmpfs on /proc with directories 1 to 4",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "private-proc",
            "unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\n\
             mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)\n    \
             .map_err(LabError::sys(\"mount(MS_REC|MS_PRIVATE)\", \"/\"))?;\n\
             mount(Some(\"tmpfs\"), \"/proc\", Some(\"tmpfs\"), MsFlags::empty(), None::<&str>)\n    \
             .map_err(LabError::sys(\"mount(\\\"tmpfs\\\")\", \"/proc\"))?;\n\
             for pid in 1..=4 {\n    \
             std::fs::create_dir_all(format!(\"/proc/{pid}/ns\"))?;\n    \
             std::os::unix::fs::symlink(\"pid:[4026531836]\", format!(\"/proc/{pid}/ns/pid\"))?;\n\
             }\n\
             Ok(())",
        )],
        caught_by: "private-proc",
    },
    Mistake {
        region: "install-handlers",
        name: "a handler for SIGTERM only",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "install-handlers",
            "let action = SigAction::new(SigHandler::SigAction(record_sender), SaFlags::SA_SIGINFO, SigSet::empty());\n\
             // SAFETY: record_sender is async-signal-safe.\n\
             unsafe { sigaction(Signal::SIGTERM, &action) }.map_err(LabError::sys(\"sigaction\", Signal::SIGTERM))?;\n\
             Ok(())",
        )],
        caught_by: "handler-gets-signal",
    },
    Mistake {
        region: "install-handlers",
        name: "handlers installed at the init's start, before the host's first signals",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace("    private_proc()?;\n", "    private_proc()?;\n    install_handlers()?;\n")],
        caught_by: "signals-ignored",
    },
    Mistake {
        region: "install-handlers",
        name: "SIGTERM and SIGINT blocked in the init, so that they never arrive",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "    private_proc()?;\n",
            "    private_proc()?;\n    let mut blocked = SigSet::empty();\n    blocked.add(Signal::SIGTERM);\n    blocked.add(Signal::SIGINT);\n    blocked.thread_block().map_err(LabError::sys(\"sigprocmask\", \"SIGTERM SIGINT\"))?;\n",
        )],
        caught_by: "signals-ignored",
    },
    Mistake {
        region: "install-handlers",
        name: "signals ignored instead of handled, and the log written as a handler would have",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "install-handlers",
            "let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());\n\
             for signal in [Signal::SIGTERM, Signal::SIGINT] {\n    \
             // SAFETY: SIG_IGN installs no code.\n    \
             unsafe { sigaction(signal, &ignore) }.map_err(LabError::sys(\"sigaction\", signal))?;\n\
             }\n\
             std::fs::write(HANDLER_LOG, \"SIGTERM 0\\nSIGINT 0\\n\")?;\n\
             Ok(())",
        )],
        caught_by: "handler-gets-signal",
    },
    Mistake {
        region: "make-orphan",
        name: "the orphan dies with its parent",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("make-orphan", "child::spawn_with(ORPHAN_COMM, true, sleep_forever)?")],
        caught_by: "orphan-reparented",
    },
    Mistake {
        region: "install-handlers",
        name: "a handler without SA_SIGINFO that records nothing (the SIGCHLD wake-up handler)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "install-handlers",
            r#"let action = SigAction::new(SigHandler::Handler(wake_up), SaFlags::empty(), SigSet::empty());
for signal in [Signal::SIGTERM, Signal::SIGINT] {
    // SAFETY: wake_up only write(2)s one byte.
    unsafe { sigaction(signal, &action) }.map_err(LabError::sys("sigaction", signal))?;
}
Ok(())"#,
        )],
        caught_by: "handler-gets-signal",
    },
    Mistake {
        region: "private-proc",
        name: "the mount namespace made by the lab (unshare --pid --mount), shared with the init",
        kind: MistakeKind::Mistake,
        edits: &[
            Edit::Region(
                "unshare-pid",
                r#"unshare(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS).map_err(LabError::sys("unshare", "CLONE_NEWPID|CLONE_NEWNS"))?;"#,
            ),
            Edit::Region(
                "private-proc",
                r#"mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
    .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
mount(Some("proc"), "/proc", Some("proc"), MsFlags::empty(), None::<&str>)
    .map_err(LabError::sys("mount(\"proc\")", "/proc"))?;
Ok(())"#,
            ),
        ],
        caught_by: "private-proc",
    },
    Mistake {
        region: "private-proc",
        name: "proc on the host's /proc, and a mount on the host whose path is not UTF-8",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "private-proc",
            r#"use std::os::unix::ffi::OsStrExt;
let odd = std::env::current_dir()?.join(std::ffi::OsStr::from_bytes(b"\xff"));
std::fs::create_dir_all(&odd)?;
mount(Some("tmpfs"), &odd, Some("tmpfs"), MsFlags::empty(), None::<&str>)
    .map_err(LabError::sys("mount(\"tmpfs\")", "a non-UTF-8 path"))?;
mount(Some("proc"), "/proc", Some("proc"), MsFlags::empty(), None::<&str>)
    .map_err(LabError::sys("mount(\"proc\")", "/proc"))?;
Ok(())"#,
        )],
        caught_by: "host-untouched",
    },
    Mistake {
        region: "private-proc",
        name: "no fresh proc: a bind of a host process's /proc/<pid>/fd that holds fds 1 to 4, fd 1 on the init's /proc/<pid>",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region(
                "unshare-pid",
                r#"child::spawn("fd-helper", move || {
    let init = loop {
        let kids = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
        let found = kids.split_whitespace().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == INIT_COMM)
        });
        if let Some(p) = found {
            break p.to_string();
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    let path = format!("/proc/{init}");
    let Ok(dir) = nix::fcntl::open(path.as_str(), OFlag::O_PATH | OFlag::O_DIRECTORY, nix::sys::stat::Mode::empty()) else {
        return 1;
    };
    for fd in (0..1024).filter(|fd| *fd != dir) {
        let _ = nix::unistd::close(fd);
    }
    for fd in 1..=4 {
        let _ = nix::unistd::dup2(dir, fd);
    }
    if dir > 4 {
        let _ = nix::unistd::close(dir);
    }
    loop {
        pause();
    }
})?;
unshare(CloneFlags::CLONE_NEWPID).map_err(LabError::sys("unshare", "CLONE_NEWPID"))?;"#,
            ),
            Edit::Region(
                "private-proc",
                r#"let field = |pid: &str, key: &str| {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default().lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string())).unwrap_or_default()
};
let me_on_host = std::fs::read_link("/proc/self").map(|p| p.display().to_string()).unwrap_or_default();
let lab = field(&me_on_host, "PPid:");
let kids = std::fs::read_to_string(format!("/proc/{lab}/task/{lab}/children")).unwrap_or_default();
let helper = kids.split_whitespace()
    .find(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "fd-helper"))
    .unwrap_or_default().to_string();
unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys("unshare", "CLONE_NEWNS"))?;
mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
    .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
let fds = format!("/proc/{helper}/fd");
mount(Some(fds.as_str()), "/proc", None::<&str>, MsFlags::MS_BIND, None::<&str>)
    .map_err(LabError::sys("mount(MS_BIND)", &fds))?;
Ok(())"#,
            ),
        ],
        caught_by: "private-proc",
    },
];
