//! Lab nsenter-join's mistake corpus: typical mistakes and lies, each with the
//! verdict that must catch it (each region's `todo!()` is added by the corpus itself).
//! Its edits quote the solution: a handout writes this file as an empty list.

use crate::corpus::{Edit, Mistake, MistakeKind};

pub const MISTAKES: &[Mistake] = &[
    Mistake {
        region: "join-namespaces",
        name: "only the pid namespace joined (nsenter --pid alone)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "join-namespaces",
            r#"for kind in kinds.iter().filter(|k| **k == "pid") {
    let path = PathBuf::from(format!("/proc/{target}/ns/{kind}"));
    let file = File::open(&path).map_err(LabError::io("open", &path))?;
    setns(file.as_fd(), CloneFlags::empty()).map_err(LabError::sys("setns", path.display()))?;
}
Ok(())"#,
        )],
        caught_by: "joiner-stays",
    },
    Mistake {
        region: "join-namespaces",
        name: "unshare instead of setns: new, empty namespaces instead of the container's",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "join-namespaces",
            r#"let _ = (target, kinds);
let flags = CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWPID;
unshare(flags).map_err(LabError::sys("unshare", "ipc uts net pid"))?;
Ok(())"#,
        )],
        caught_by: "joiner-stays",
    },
    Mistake {
        region: "join-namespaces",
        name: "joins ipc, uts and net, and fakes the pid join with a PID namespace of its own (two NSpid levels, PPid 0)",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "join-namespaces",
            r#"for kind in kinds.iter().filter(|k| **k != "pid") {
    let path = PathBuf::from(format!("/proc/{target}/ns/{kind}"));
    let file = File::open(&path).map_err(LabError::io("open", &path))?;
    setns(file.as_fd(), CloneFlags::empty()).map_err(LabError::sys("setns", path.display()))?;
}
if kinds.contains(&"pid") {
    unshare(CloneFlags::CLONE_NEWPID).map_err(LabError::sys("unshare", "CLONE_NEWPID"))?;
}
Ok(())"#,
        )],
        caught_by: "shares-joined-only",
    },
    Mistake {
        region: "join-namespaces",
        name: "a look-alike network namespace with a service of its own on 127.0.0.1 instead of the container's",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "join-namespaces",
            r#"for kind in kinds.iter().filter(|k| **k != "net") {
    let path = PathBuf::from(format!("/proc/{target}/ns/{kind}"));
    let file = File::open(&path).map_err(LabError::io("open", &path))?;
    setns(file.as_fd(), CloneFlags::empty()).map_err(LabError::sys("setns", path.display()))?;
}
if kinds.contains(&"net") {
    unshare(CloneFlags::CLONE_NEWNET).map_err(LabError::sys("unshare", "CLONE_NEWNET"))?;
    std::process::Command::new("/bin/busybox").args(["ip", "link", "set", "lo", "up"]).status()?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", SERVICE_PORT))?;
    child::spawn("nsj-lookalike", move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.read(&mut [0u8; 512]);
            let _ = stream.write_all(format!("HTTP/1.0 200 OK\r\n\r\n{SERVICE_WORD}\n").as_bytes());
        }
        0
    })?;
}
Ok(())"#,
        )],
        caught_by: "joined-reaches-service",
    },
    Mistake {
        region: "fork-joined",
        name: "the joined process exits at once instead of sleeping",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("fork-joined", "child::spawn(name, || 0)")],
        caught_by: "two-pids",
    },
    Mistake {
        region: "fork-joined",
        name: "forked before the join: the sleeper stays on the host",
        kind: MistakeKind::Mistake,
        edits: &[
            Edit::Replace(
                "    let joined = spawn_joined(JOINED_COMM)?;\n    let victim = spawn_joined(VICTIM_COMM)?;\n    voice.inside(&format!(\"nsj-joiner forked",
                "    voice.inside(&format!(\"nsj-joiner forked",
            ),
            Edit::Replace(
                "    join(target, &JOINED_KINDS)?;\n",
                "    let joined = spawn_joined(JOINED_COMM)?;\n    let victim = spawn_joined(VICTIM_COMM)?;\n    join(target, &JOINED_KINDS)?;\n",
            ),
        ],
        caught_by: "two-pids",
    },
    Mistake {
        region: "fork-joined",
        name: "the sleeper forked back in the lab's PID namespace, while the lab claims it joined",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "fork-joined",
            r#"let lab = nix::unistd::getppid();
let path = PathBuf::from(format!("/proc/{lab}/ns/pid"));
let host = File::open(&path).map_err(LabError::io("open", &path))?;
setns(host.as_fd(), CloneFlags::CLONE_NEWPID).map_err(LabError::sys("setns", path.display()))?;
child::spawn(name, sleep_forever)"#,
        )],
        caught_by: "two-pids",
    },
    Mistake {
        region: "fork-joined",
        name: "the sleeper is PID 1 of a PID namespace of its own, and the container's init is named nsj-sleep",
        kind: MistakeKind::Lie,
        edits: &[
            Edit::Region(
                "fork-joined",
                r#"if name == JOINED_COMM {
    let lab = nix::unistd::getppid();
    let path = PathBuf::from(format!("/proc/{lab}/ns/pid"));
    let host = File::open(&path).map_err(LabError::io("open", &path))?;
    setns(host.as_fd(), CloneFlags::CLONE_NEWPID).map_err(LabError::sys("setns", path.display()))?;
    unshare(CloneFlags::CLONE_NEWPID).map_err(LabError::sys("unshare", "CLONE_NEWPID"))?;
    return child::spawn(name, sleep_forever);
}
child::spawn(name, sleep_forever)"#,
            ),
            Edit::Replace(
                "&& exec /bin/busybox sleep 1000000",
                "&& /bin/busybox ln -sf busybox /bin/nsj-sleep && exec -a sleep /bin/nsj-sleep 1000000",
            ),
        ],
        caught_by: "two-pids",
    },
    Mistake {
        region: "fork-joined",
        name: "the sleeper stays on the host and exits when it sees the container's init die",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "fork-joined",
            r#"if name != JOINED_COMM {
    return child::spawn(name, sleep_forever);
}
use std::os::unix::fs::MetadataExt;
let theirs = std::fs::metadata("/proc/self/ns/pid_for_children").map_err(LabError::io("stat", Path::new("/proc/self/ns/pid_for_children")))?.ino();
let init = numeric_entries(Path::new("/proc")).into_iter().map(|p| Pid::from_raw(p as i32)).find(|p| {
    std::fs::metadata(format!("/proc/{p}/ns/pid")).is_ok_and(|m| m.ino() == theirs) && nspid(*p).last() == Some(&1)
});
let lab = nix::unistd::getppid();
let path = PathBuf::from(format!("/proc/{lab}/ns/pid"));
let host = File::open(&path).map_err(LabError::io("open", &path))?;
setns(host.as_fd(), CloneFlags::CLONE_NEWPID).map_err(LabError::sys("setns", path.display()))?;
let watched = init.and_then(|init| child::pidfd_open(init).ok());
child::spawn(name, move || match &watched {
    Some(fd) => {
        let _ = poll(&mut [PollFd::new(fd.as_fd(), PollFlags::POLLIN)], PollTimeout::NONE);
        0
    }
    None => sleep_forever(),
})"#,
        )],
        caught_by: "dies-with-init",
    },
    Mistake {
        region: "fork-joined",
        name: "the victim has nsj-sleep's container PID in a PID namespace of its own, whose init ends when nsj-sleep dies",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "    let victim = spawn_joined(VICTIM_COMM)?;\n    voice.inside(&format!(\"nsj-joiner forked",
            r#"    let inside = nspid(joined).last().copied().unwrap_or(0);
    let lab = nix::unistd::getppid();
    let host = File::open(format!("/proc/{lab}/ns/pid"))?;
    setns(host.as_fd(), CloneFlags::CLONE_NEWPID)?;
    unshare(CloneFlags::CLONE_NEWPID)?;
    let watched = child::pidfd_open(joined)?;
    child::spawn("nsj-own-init", move || {
        let _ = poll(&mut [PollFd::new(watched.as_fd(), PollFlags::POLLIN)], PollTimeout::NONE);
        0
    })?;
    for _ in 2..inside {
        child::wait(child::spawn("nsj-filler", || 0)?, "a filler")?;
    }
    let victim = spawn_joined(VICTIM_COMM)?;
    voice.inside(&format!("nsj-joiner forked"#,
        )],
        caught_by: "killed-from-inside",
    },
    Mistake {
        region: "debug-tool",
        name: "no mount namespace of its own: proc lands on the host's /proc",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys(\"unshare\", \"CLONE_NEWNS\"))?;\n    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)",
            "    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)",
        )],
        caught_by: "host-untouched",
    },
    Mistake {
        region: "debug-tool",
        name: "/ not made private: the proc mount propagates to the host",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "debug-tool",
            r#"unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys("unshare", "CLONE_NEWNS"))?;
mount(Some("proc"), "/proc", Some("proc"), MsFlags::empty(), None::<&str>)
    .map_err(LabError::sys("mount(\"proc\")", "/proc"))?;
Ok(())"#,
        )],
        caught_by: "host-untouched",
    },
    Mistake {
        region: "debug-tool",
        name: "a private mount namespace, but no fresh proc: the host's /proc stays",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "debug-tool",
            r#"unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys("unshare", "CLONE_NEWNS"))?;
mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
    .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
Ok(())"#,
        )],
        caught_by: "debug-tool",
    },
    Mistake {
        region: "debug-tool",
        name: "a tmpfs on /proc with directories named like the container's PIDs",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "debug-tool",
            r#"unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys("unshare", "CLONE_NEWNS"))?;
mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
    .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
mount(Some("tmpfs"), "/proc", Some("tmpfs"), MsFlags::empty(), None::<&str>)
    .map_err(LabError::sys("mount(\"tmpfs\")", "/proc"))?;
for pid in 1..=12 {
    std::fs::create_dir_all(format!("/proc/{pid}"))?;
}
Ok(())"#,
        )],
        caught_by: "debug-tool",
    },
    Mistake {
        region: "debug-tool",
        name: "a real proc of a PID namespace of its own, numbered like the container's, its PID 1 chrooted into the container's root",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "debug-tool",
            r#"unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys("unshare", "CLONE_NEWNS"))?;
mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
    .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
mount(Some("proc"), "/proc", Some("proc"), MsFlags::empty(), None::<&str>).map_err(LabError::sys("mount", "/proc"))?;
let members = numeric_entries(Path::new("/proc"));
let container_root = File::open("/proc/1/root")?;
nix::mount::umount("/proc").map_err(LabError::sys("umount", "/proc"))?;
unshare(CloneFlags::CLONE_NEWPID).map_err(LabError::sys("unshare", "CLONE_NEWPID"))?;
child::spawn(DEBUG_COMM, move || {
    let _ = mount(Some("proc"), "/proc", Some("proc"), MsFlags::empty(), None::<&str>);
    let _ = fchdir(container_root.as_raw_fd()).and_then(|_| chroot("."));
    sleep_forever()
})?;
for n in 2..=members.iter().copied().max().unwrap_or(1) {
    let pid = child::spawn(DEBUG_COMM, if members.contains(&n) { sleep_forever } else { || 0 })?;
    if !members.contains(&n) {
        child::wait(pid, "a filler")?;
    }
}
std::thread::sleep(std::time::Duration::from_millis(200));
Ok(())"#,
        )],
        caught_by: "debug-tool",
    },
    Mistake {
        region: "all-but-pid",
        name: "the mount namespace left out (nsenter without --mount)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    join(target, &[\"ipc\", \"uts\", \"net\", \"mnt\"])?;",
            "    join(target, &[\"ipc\", \"uts\", \"net\"])?;",
        )],
        caught_by: "invisible-without-pid",
    },
    Mistake {
        region: "all-but-pid",
        name: "no chroot after joining mnt: left at the root of the mount namespace, not the container's",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region("all-but-pid", "let _ = root;\njoin(target, &[\"ipc\", \"uts\", \"net\", \"mnt\"])?;\nOk(())")],
        caught_by: "invisible-without-pid",
    },
    Mistake {
        region: "all-but-pid",
        name: "joins nothing, only chroots into the container's root",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "all-but-pid",
            r#"let _ = target;
fchdir(root.as_raw_fd()).map_err(LabError::sys("fchdir", "the container's root"))?;
chroot(".").map_err(LabError::sys("chroot", "."))?;
Ok(())"#,
        )],
        caught_by: "invisible-without-pid",
    },
];
