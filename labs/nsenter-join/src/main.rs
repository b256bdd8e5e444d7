//! Lab nsenter-join: enter a running container with setns(2), as `nsenter` and
//! `docker exec` do, and settle by measurement what happens to a process that joined it.
//! Read labs/nsenter-join/README.md.
//!
//! The processes this lab makes (the lab's own target container; with `--docker` the
//! target is a real Docker container started by dockerd instead of nsj-shim):
//!
//! ```text
//! host                                   the target container (pid, mnt, uts, ipc, net)
//! lab-nsenter-join
//!  ├── nsj-shim ───────────────────────> init (PID 1: busybox sh, then sleep) + httpd
//!  ├── nsj-joiner (setns ipc uts net pid)
//!  │    ├─────────────────────────────> nsj-sleep   (joined: `nsenter ... sleep 600`)
//!  │    └─────────────────────────────> nsj-victim  (joined, to be killed from inside)
//!  ├── nsj-debugger (setns pid net, not mnt)
//!  │    └─────────────────────────────> nsj-debug   (its own mount ns, a fresh proc)
//!  ├── nsj-nopid (setns ipc uts net mnt, not pid: inside everything but the PID namespace)
//!  └── nsj-threaded (two threads: setns(CLONE_NEWNS) fails with EINVAL)
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use labkit::protocol::nsenter_join::*;
use labkit::{child, cleanup, ns_link, rootfs, Lab, LabArgs, LabError, Voice};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, chroot, execv, fchdir, fork, getpid, pause, ForkResult, Pid};
use serde_json::json;

/// Join a running container's namespaces with setns(2), as nsenter does, and find out
/// which PID the joined process has, what stopping the container does to it, and who can
/// kill it. Run it as root, in a VM: `sudo target/debug/lab-nsenter-join --step`.
#[derive(Parser)]
#[command(name = "lab-nsenter-join", version)]
struct Cli {
    #[command(flatten)]
    lab: LabArgs,
    /// Join a real Docker container (made with `docker import` from the lab's busybox
    /// rootfs; nothing is pulled) instead of the lab's own.
    #[arg(long)]
    docker: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    labkit::main("lab-nsenter-join", include_str!("main.rs"), || run(&cli.lab, cli.docker))
}

/// What `nsenter -t <pid> --ipc --uts --net --pid` joins.
const JOINED_KINDS: [&str; 4] = ["ipc", "uts", "net", "pid"];
/// What a debug tool joins: the container's processes and network, not its files.
const DEBUG_KINDS: [&str; 2] = ["pid", "net"];

/// The container's command: start the service on its loopback (httpd returns once it
/// listens), say so, and stay. The lab's own container brings its loopback up first (a
/// Docker container has it up already, and no CAP_NET_ADMIN to do it).
fn container_script(bring_lo_up: bool) -> String {
    let lo = if bring_lo_up { "/bin/busybox ip link set lo up && " } else { "" };
    format!(
        "{lo}/bin/busybox httpd -p 127.0.0.1:{SERVICE_PORT} -h /www && echo {LISTENING} && exec /bin/busybox sleep 1000000"
    )
}

/// How long a docker command may take.
const DOCKER_DEADLINE: Duration = Duration::from_secs(60);

fn run(args: &LabArgs, docker: bool) -> Result<()> {
    labkit::require_root("lab-nsenter-join", "setns(2) into another process's namespaces")?;
    let title = if docker {
        "Lab nsenter-join: joining a Docker container from outside"
    } else {
        "Lab nsenter-join: joining a container from outside"
    };
    let mut lab = Lab::new(args, title, if docker { 7 } else { 6 });
    let workdir = labkit::Workdir::open(args, "nsenter-join")?;
    let stages: &[&str] = if docker { &DOCKER_STAGES } else { &STAGES };
    let voice = lab.voice();
    let me = getpid();

    // ── Step 1 ───────────────────────────────────────────────────────────────
    let rootfs = workdir.path().join(ROOTFS_DIR);
    rootfs::build_busybox_rootfs(&rootfs, &rootfs::find_static_busybox()?)?;
    let page = rootfs.join(SERVICE_FILE);
    std::fs::create_dir_all(rootfs.join("www")).map_err(LabError::io("create directory", &rootfs.join("www")))?;
    std::fs::write(&page, format!("{SERVICE_WORD}\n")).map_err(LabError::io("write", &page))?;
    let target = if docker {
        lab.step(
            "Start the target: a Docker container from the busybox rootfs, found by `docker inspect`",
            "(dockerd: clone(CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET), pivot_root, exec)",
            "tar -C rootfs -c . | docker import - img; docker run -d --pids-limit 64 img sh -c '...'; docker inspect -f '{{.State.Pid}}' ctr",
        );
        Target::docker(workdir.path(), &rootfs)?
    } else {
        lab.step(
            "Start the target: a container of the lab's own, with a service on its loopback",
            "unshare(CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET); fork(); chroot(rootfs); execve(sh)",
            "unshare --pid --mount --uts --ipc --net --fork chroot rootfs sh -c 'ip link set lo up; httpd -p 127.0.0.1:7654 ...'",
        );
        Target::own(voice, &rootfs)?
    };
    let init = target.init();
    lab.saw(&format!(
        "the container's init is PID {init} on the host; /proc/{init}/status has NSpid {}",
        status_field(init, "NSpid").unwrap_or_else(|| "(unreadable)".into())
    ));
    for kind in ["pid", "net", "mnt"] {
        lab.saw(&format!(
            "/proc/{init}/ns/{kind} -> {}   (mine: {})",
            ns_link(&init.to_string(), kind),
            ns_link("self", kind)
        ));
    }
    lab.why("PID 1 of this machine need not be an init you may look at (here it may answer EACCES): take the container's init PID from the container's manager, never /proc/1.");
    lab.hold(stages[0], json!({ "lab": me.as_raw(), "init": init.as_raw() }))?;

    // ── Step 2 ───────────────────────────────────────────────────────────────
    lab.step(
        "Join its ipc, uts, net and pid namespaces, then fork `sleep 600` into them",
        "open(/proc/<init>/ns/{ipc,uts,net,pid}); setns(fd, 0) each; fork()",
        &format!("nsenter -t {init} --ipc --uts --net --pid sleep 600 &"),
    );
    let joiner_link = child::Link::new()?;
    let joiner =
        child::spawn(JOINER_COMM, move || exit_code(voice, JOINER_COMM, joiner_process(voice, init, joiner_link)))?;
    joiner_link.lab_side(joiner)?.wait_ready(
        "joining the container and forking into it",
        "did join-namespaces or fork-joined fail (its error would be above)?",
    )?;
    let joined = child_named(joiner, JOINED_COMM);
    let victim = child_named(joiner, VICTIM_COMM);
    lab.saw(&format!(
        "nsj-joiner (PID {joiner}): ns/pid -> {}, pid_for_children -> {}",
        ns_link(&joiner.to_string(), "pid"),
        ns_link(&joiner.to_string(), "pid_for_children")
    ));
    if let Some(joined) = joined {
        lab.saw(&format!(
            "nsj-sleep: PID {joined} on the host; NSpid {}; PPid {} (the joiner's)",
            status_field(joined, "NSpid").unwrap_or_default(),
            status_field(joined, "PPid").unwrap_or_default()
        ));
    }
    lab.why("setns(2) into a PID namespace cannot change the caller's PID: only the children it forks afterwards are born in the container, with one PID there and another on the host.");
    lab.hold(
        stages[1],
        json!({ "init": init.as_raw(), "joiner": joiner.as_raw(), "joined": joined.map(Pid::as_raw), "victim": victim.map(Pid::as_raw) }),
    )?;

    // ── Step 3 ───────────────────────────────────────────────────────────────
    lab.step(
        "A debug tool: join pid and net, not mnt; mount a proc of its own",
        "setns(pid), setns(net); fork(); unshare(CLONE_NEWNS); mount(MS_REC|MS_PRIVATE, /); mount(\"proc\", /proc)",
        &format!("nsenter -t {init} --pid --net unshare --mount --fork sh -c 'mount --make-rprivate /; mount -t proc proc /proc; ps; ls /proc/1/root'"),
    );
    let debugger_link = child::Link::new()?;
    let debugger = child::spawn(DEBUGGER_COMM, move || {
        exit_code(voice, DEBUGGER_COMM, debugger_process(voice, init, debugger_link))
    })?;
    debugger_link.lab_side(debugger)?.wait_ready(
        "joining pid and net and mounting a proc of its own",
        "did the debug tool fail (its error would be above)?",
    )?;
    let debug = child_named(debugger, DEBUG_COMM);
    lab.hold(stages[2], json!({ "init": init.as_raw(), "debug": debug.map(Pid::as_raw) }))?;

    // ── Step 4 ───────────────────────────────────────────────────────────────
    lab.step(
        "Join everything but the PID namespace",
        "setns(ipc), setns(uts), setns(net), setns(mnt); fchdir(root of the init); chroot(\".\")",
        &format!("nsenter -t {init} --ipc --uts --net --mount --root --wd sleep 600 &"),
    );
    let nopid_link = child::Link::new()?;
    let nopid = child::spawn(NOPID_COMM, move || exit_code(voice, NOPID_COMM, nopid_process(voice, init, nopid_link)))?;
    nopid_link
        .lab_side(nopid)?
        .wait_ready("joining every namespace but pid", "did all-but-pid fail (its error would be above)?")?;
    lab.saw(&format!("nsj-nopid is PID {nopid}; NSpid {}", status_field(nopid, "NSpid").unwrap_or_default()));

    // ── Step 5 ───────────────────────────────────────────────────────────────
    lab.step(
        "setns into a mount namespace from a process with two threads",
        "pthread_create(); setns(/proc/<init>/ns/mnt, CLONE_NEWNS)",
        "(why nsenter is single-threaded, and tests must never setns(mnt) on a test thread)",
    );
    let threaded = child::spawn(THREADED_COMM, move || threaded_setns(init))?;
    let threaded_result = match child::wait(threaded, "trying setns(CLONE_NEWNS) with two threads")? {
        WaitStatus::Exited(_, 0) => "it worked".to_string(),
        WaitStatus::Exited(_, code) => format!("{:?}", Errno::from_raw(code)),
        other => format!("{other:?}"),
    };
    lab.saw(&format!("setns(CLONE_NEWNS) with two threads: {threaded_result}"));
    lab.why("a mount namespace holds the root and cwd that all threads of a process share (CLONE_FS): the kernel refuses to move one thread of a shared fs_struct (EINVAL).");
    if lab.plays_host() {
        let inside = File::open(format!("/proc/{init}/ns/pid")).with_context(|| format!("open /proc/{init}/ns/pid"))?;
        // Only a PID the container has: kill(0) or kill(-1) would reach whole groups.
        let inner = victim.map(nspid).filter(|levels| levels.len() >= 2).and_then(|levels| levels.last().copied());
        if let (Some(victim), Some(inner)) = (victim, inner.filter(|pid| *pid > 0)) {
            lab.as_host(&format!(
                "from inside the container: kill -KILL {inner}   (nsj-victim, PID {victim} on the host)"
            ));
            lab.saw(&format!("kill from inside: {}", kill_from_inside(&inside, Pid::from_raw(inner))?));
        }
        lab.as_host(&format!("from inside the container: kill -KILL {nopid}   (nsj-nopid's host PID)"));
        lab.saw(&format!("kill from inside: {}", kill_from_inside(&inside, nopid)?));
    }
    lab.why("kill(2) looks a PID up in the caller's PID namespace: inside the container nsj-victim has a PID, nsj-nopid has none.");
    lab.hold(
        stages[3],
        json!({ "init": init.as_raw(), "nopid": nopid.as_raw(), "threaded_setns_mnt": threaded_result }),
    )?;

    // ── Step 6 ───────────────────────────────────────────────────────────────
    lab.step(
        "Stop the container: its init dies, and with it every process in its PID namespace",
        "kill(init, SIGKILL)",
        if docker { "docker stop -t 0 <container>" } else { "kill -KILL <init>" },
    );
    if lab.plays_host() || target.init_alive() {
        if !lab.plays_host() {
            lab.saw("the harness left the container running; stopping it now so the lab can go on");
        }
        target.stop(&lab)?;
    }
    target.wait_stopped()?;
    for (pid, comm) in [(joiner, JOINER_COMM), (debugger, DEBUGGER_COMM)] {
        child::wait(pid, &format!("its joined children dying with the container ({comm})"))?;
    }
    lab.saw("nsj-sleep, nsj-victim and nsj-debug are gone: the kernel killed them with the container's init");
    match status_field(nopid, "State") {
        Some(state) if !state.starts_with('Z') => {
            lab.saw(&format!(
                "nsj-nopid (PID {nopid}) is still running ({state}): it was never in the container's PID namespace"
            ));
            kill(nopid, Signal::SIGKILL).map_err(LabError::sys("kill", nopid))?;
        }
        _ => lab.saw("nsj-nopid is gone too"),
    }
    child::wait(nopid, "dying of SIGKILL")?;
    lab.why("when a PID namespace's init dies, the kernel SIGKILLs every other process in that namespace, joined or not; the other namespaces do not kill anyone.");
    lab.hold(stages[4], json!({ "lab": me.as_raw() }))?;

    // ── Step 7 (Docker) ──────────────────────────────────────────────────────
    if let Target::Docker { .. } = &target {
        lab.step(
            "Remove the container and the image the lab imported",
            "(dockerd: unmount the container's rootfs, remove its layers)",
            "docker rm -f <container>; docker rmi <image>",
        );
        target.remove(&lab)?;
        lab.hold(DOCKER_REMOVED, json!({}))?;
    }

    cleanup::remove_made_dirs()?;
    lab.done("Done: the container is gone and the lab removed its workdir. Now answer the questions on the lab sheet.");
    Ok(())
}

// ── Joining ─────────────────────────────────────────────────────────────────

/// setns(2) into the namespaces `kinds` of `target`, as `nsenter -t <target> --<kind>...`.
fn join(target: Pid, kinds: &[&str]) -> Result<()> {
    // STUDENT: begin join-namespaces
    // Hint: open every /proc/<target>/ns/<kind> first (after a setns into a mount namespace
    // those paths may be gone), then nix::sched::setns each descriptor (nstype may be
    // empty: any kind). setns(2) into a pid namespace moves only the children you fork later.
    let mut opened = Vec::new();
    for kind in kinds {
        let path = PathBuf::from(format!("/proc/{target}/ns/{kind}"));
        let file = File::open(&path).map_err(LabError::io("open", &path))?;
        opened.push((file, path));
    }
    for (file, path) in &opened {
        setns(file.as_fd(), CloneFlags::empty()).map_err(LabError::sys("setns", path.display()))?;
    }
    Ok(())
    // STUDENT: end join-namespaces
}

/// Forks one joined process named `name` (the seed's `sleep 600`) and returns its PID.
fn spawn_joined(name: &str) -> labkit::Result<Pid> {
    // STUDENT: begin fork-joined
    // Hint: only a process forked after setns(pid) is born in the container's PID
    // namespace, and it must stay alive (named `name`) until someone kills it: labkit's
    // child module forks and names; this file has a body that never returns.
    child::spawn(name, sleep_forever)
    // STUDENT: end fork-joined
}

/// nsj-joiner: joins the target and forks nsj-sleep and nsj-victim into it; exits once both
/// have ended.
fn joiner_process(voice: Voice, target: Pid, link: child::Link) -> Result<()> {
    let mut link = link.child_side();
    join(target, &JOINED_KINDS)?;
    voice.inside(&format!(
        "nsj-joiner after setns: getpid() = {} (unchanged); ns/pid {}; pid_for_children {}",
        getpid(),
        ns_link("self", "pid"),
        ns_link("self", "pid_for_children")
    ));
    let joined = spawn_joined(JOINED_COMM)?;
    let victim = spawn_joined(VICTIM_COMM)?;
    voice.inside(&format!("nsj-joiner forked nsj-sleep (PID {joined}) and nsj-victim (PID {victim})"));
    link.ready();
    reap_until_none(voice, JOINER_COMM)
}

/// nsj-debugger: joins pid and net, and forks nsj-debug, which makes its own mount
/// namespace with a fresh proc; exits once nsj-debug has ended.
fn debugger_process(voice: Voice, target: Pid, link: child::Link) -> Result<()> {
    let mut link = link.child_side();
    join(target, &DEBUG_KINDS)?;
    let debug_link = child::Link::new()?;
    let debug = child::spawn(DEBUG_COMM, move || exit_code(voice, DEBUG_COMM, debug_process(voice, debug_link)))?;
    debug_link.lab_side(debug)?.wait_ready(
        "making a mount namespace with a proc of its own",
        "did debug-tool fail (its error would be above)?",
    )?;
    link.ready();
    reap_until_none(voice, DEBUGGER_COMM)
}

fn debug_process(voice: Voice, link: child::Link) -> Result<()> {
    let mut link = link.child_side();
    proc_of_its_own()?;
    voice.inside(&format!("nsj-debug: getpid() = {}; ls /proc: {:?}", getpid(), numeric_entries(Path::new("/proc"))));
    let hostname = std::fs::read_to_string("/proc/1/root/etc/hostname").unwrap_or_else(|e| format!("({e})"));
    voice.inside(&format!("nsj-debug: cat /proc/1/root/etc/hostname (the container's file): {}", hostname.trim()));
    voice.inside(&format!("nsj-debug: ls / (the host's files, not the container's): {:?}", names(Path::new("/"))));
    link.ready();
    sleep_body()
}

/// In nsj-debug (already in the container's PID namespace): a mount namespace of its own
/// and a proc that shows the container's processes.
fn proc_of_its_own() -> Result<()> {
    // STUDENT: begin debug-tool
    // Hint: a mount namespace of your own (unshare), "/" made MS_REC|MS_PRIVATE in it
    // (the host's / is shared), then a fresh proc mounted on /proc: it shows the PID
    // namespace of whoever mounts it.
    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys("unshare", "CLONE_NEWNS"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(LabError::sys("mount(\"proc\")", "/proc"))?;
    Ok(())
    // STUDENT: end debug-tool
}

/// nsj-nopid: inside every namespace of the container but its PID namespace.
fn nopid_process(voice: Voice, target: Pid, link: child::Link) -> Result<()> {
    let mut link = link.child_side();
    // The container's root, opened while /proc/<target> is still reachable.
    let root_path = PathBuf::from(format!("/proc/{target}/root"));
    let root = File::open(&root_path).map_err(LabError::io("open", &root_path))?;
    enter_all_but_pid(target, &root)?;
    voice.inside(&format!(
        "nsj-nopid: hostname {}; ls /: {:?}; getpid() = {} (a host PID: nobody inside can name it)",
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        names(Path::new("/")),
        getpid()
    ));
    link.ready();
    sleep_body()
}

fn enter_all_but_pid(target: Pid, root: &File) -> Result<()> {
    // STUDENT: begin all-but-pid
    // Hint: join (above) every namespace nsenter --ipc --uts --net --mount joins, not pid.
    // setns into a mount namespace puts you at that namespace's root, which need not be
    // the container's root: `root` was opened before; do what nsenter --root does with it.
    join(target, &["ipc", "uts", "net", "mnt"])?;
    fchdir(root.as_raw_fd()).map_err(LabError::sys("fchdir", "the container's root"))?;
    chroot(".").map_err(LabError::sys("chroot", "."))?;
    Ok(())
    // STUDENT: end all-but-pid
}

/// nsj-threaded: a second thread, then setns into the target's mount namespace. Its exit
/// status is the errno (0 if it worked).
fn threaded_setns(target: Pid) -> i32 {
    let Ok(ns) = File::open(format!("/proc/{target}/ns/mnt")) else { return Errno::ENOENT as i32 };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let Ok(helper) = std::thread::Builder::new().name("second".into()).spawn(move || {
        let _ = rx.recv();
    }) else {
        return Errno::EAGAIN as i32;
    };
    let result = setns(ns.as_fd(), CloneFlags::CLONE_NEWNS);
    drop(tx);
    let _ = helper.join();
    match result {
        Ok(()) => 0,
        Err(errno) => errno as i32,
    }
}

/// From inside the container: a child joins its PID namespace (for its children), and
/// its child kills `inner` (a PID as the container sees it). Says what happened.
fn kill_from_inside(pid_ns: &File, inner: Pid) -> Result<String> {
    if inner.as_raw() <= 0 {
        bail!("refusing to kill PID {inner} from inside: that names a group of processes, not one");
    }
    let ns = pid_ns.try_clone().context("dup the container's pid namespace")?;
    let prober = child::spawn("nsj-inside", move || {
        if setns(ns.as_fd(), CloneFlags::CLONE_NEWPID).is_err() {
            return 100;
        }
        // SAFETY: the grandchild only calls kill and _exit.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => child::exit_now(match kill(inner, Signal::SIGKILL) {
                Ok(()) => 0,
                Err(errno) => errno as i32,
            }),
            Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => code,
                _ => 101,
            },
            Err(_) => 102,
        }
    })?;
    Ok(match child::wait(prober, "killing from inside the container")? {
        WaitStatus::Exited(_, 0) => "kill() succeeded".to_string(),
        WaitStatus::Exited(_, code) if code < 100 => format!("{:?}", Errno::from_raw(code)),
        other => format!("the prober failed: {other:?}"),
    })
}

// ── The target container ────────────────────────────────────────────────────

enum Target {
    Own { shim: Pid, init: Pid },
    Docker { name: String, image: String, init: Pid, init_fd: OwnedFd },
}

impl Target {
    /// The lab's own container: nsj-shim unshares the namespaces and forks the init.
    fn own(voice: Voice, rootfs: &Path) -> Result<Self> {
        let (said_rx, said_tx) = nix::unistd::pipe().map_err(LabError::sys("pipe", "the init's stdout"))?;
        let root = rootfs.to_path_buf();
        let shim = child::spawn(SHIM_COMM, move || exit_code(voice, SHIM_COMM, shim_process(voice, &root, said_tx)))?;
        await_line(said_rx, LISTENING, "the container's init starting its service")?;
        let init = child_named(shim, "busybox").context("nsj-shim has no child: the container's init is gone")?;
        Ok(Target::Own { shim, init })
    }

    /// A Docker container from the same rootfs: `docker import`, `docker run -d`, and its
    /// init's host PID from `docker inspect`.
    fn docker(workdir: &Path, rootfs: &Path) -> Result<Self> {
        let me = getpid();
        let tarball = workdir.join("rootfs.tar");
        write_tarball(rootfs, &tarball)?;
        let image = format!("{DOCKER_REPOSITORY}:{me}");
        let name = format!("{DOCKER_REPOSITORY}-{me}");
        let label = format!("{DOCKER_LABEL}={}", workdir.display());
        let tarball = tarball.to_string_lossy().into_owned();
        cleanup::track_undo(&["docker", "rmi", "-f", &image]);
        docker_cli(&["import", "--change", &format!("LABEL {label}"), &tarball, &image])?;
        cleanup::track_undo(&["docker", "rm", "-f", &name]);
        let limit = DOCKER_PIDS_LIMIT.to_string();
        docker_cli(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            &label,
            "--network",
            "none",
            "--pids-limit",
            &limit,
            &image,
            "/bin/busybox",
            "sh",
            "-c",
            &container_script(false),
        ])?;
        let pid = docker_cli(&["inspect", "-f", "{{.State.Pid}}", &name])?;
        let init = Pid::from_raw(pid.trim().parse().with_context(|| format!("docker inspect gave State.Pid {pid:?}"))?);
        if init.as_raw() <= 0 {
            bail!("docker inspect says the container has no running process (State.Pid {init})");
        }
        let init_fd = child::pidfd_open(init).map_err(LabError::sys("pidfd_open", init))?;
        // The init says when its service listens, on its stdout: `docker logs --follow`.
        let mut logs = std::process::Command::new("docker")
            .args(["logs", "--follow", &name])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("start `docker logs --follow`")?;
        let pipe: OwnedFd = logs.stdout.take().context("docker logs has no stdout")?.into();
        let heard = await_line(pipe, LISTENING, "the Docker container's init starting its service");
        let _ = logs.kill();
        let _ = logs.wait();
        heard?;
        Ok(Target::Docker { name, image, init, init_fd })
    }

    fn init(&self) -> Pid {
        match self {
            Target::Own { init, .. } | Target::Docker { init, .. } => *init,
        }
    }

    fn init_alive(&self) -> bool {
        status_field(self.init(), "State").is_some_and(|s| !s.starts_with('Z'))
    }

    /// Kills the container's init, as `docker stop` ends by doing.
    fn stop(&self, lab: &Lab) -> Result<()> {
        match self {
            Target::Own { shim, init } => {
                // The lab signals only its own processes: the init must be nsj-shim's child.
                if status_field(*init, "PPid").as_deref() != Some(shim.to_string().as_str()) {
                    bail!("PID {init} is not nsj-shim's child any more: the lab will not signal it");
                }
                lab.as_host(&format!("kill -KILL {init}"));
                kill(*init, Signal::SIGKILL).map_err(LabError::sys("kill", init))?;
            }
            Target::Docker { name, .. } => {
                lab.as_host(&format!("docker stop -t 0 {name}"));
                docker_cli(&["stop", "-t", "0", name])?;
            }
        }
        Ok(())
    }

    /// Waits until the container's init has ended.
    fn wait_stopped(&self) -> Result<()> {
        match self {
            Target::Own { shim, .. } => {
                child::wait(*shim, "its init dying")?;
            }
            Target::Docker { init_fd, .. } => {
                let mut fds = [PollFd::new(init_fd.as_fd(), PollFlags::POLLIN)];
                if !poll_until(&mut fds, Instant::now() + child::deadline())? {
                    bail!("the Docker container's init did not end within {:?}", child::deadline());
                }
            }
        }
        Ok(())
    }

    /// Removes the Docker container and the image the lab imported.
    fn remove(&self, lab: &Lab) -> Result<()> {
        if let Target::Docker { name, image, .. } = self {
            for command in [["rm", "-f", name.as_str()], ["rmi", "-f", image.as_str()]] {
                lab.as_host(&format!("docker {}", command.join(" ")));
                docker_cli(&command)?;
                let undo = ["docker", command[0], command[1], command[2]];
                cleanup::forget_undo(&undo);
            }
            lab.saw(&format!("docker ps -a and docker images name neither {name} nor {image} any more"));
        }
        Ok(())
    }
}

/// nsj-shim: the container's namespaces, then its init.
fn shim_process(voice: Voice, rootfs: &Path, said: OwnedFd) -> Result<()> {
    let flags = CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET;
    unshare(flags).map_err(LabError::sys("unshare", "the container's namespaces"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
    nix::unistd::sethostname(HOSTNAME).map_err(LabError::sys("sethostname", HOSTNAME))?;
    let root = rootfs.to_path_buf();
    let init = child::spawn("nsj-init", move || exit_code(voice, "the container's init", container_init(&root, said)))?;
    loop {
        match waitpid(init, None) {
            Ok(status) => {
                voice.inside(&format!("nsj-shim: the container's init ended: {}", describe(status)));
                cleanup::forget_child(init);
                return Ok(());
            }
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(LabError::sys("waitpid", init)(errno).into()),
        }
    }
}

/// The container's PID 1: its proc, its root, then busybox sh with the service.
fn container_init(rootfs: &Path, said: OwnedFd) -> Result<()> {
    let proc_dir = rootfs.join("proc");
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(LabError::sys("mount(\"proc\")", proc_dir.display()))?;
    chroot(rootfs).map_err(LabError::sys("chroot", rootfs.display()))?;
    chdir("/").map_err(LabError::sys("chdir", "/"))?;
    nix::unistd::dup2(said.as_raw_fd(), 1).map_err(LabError::sys("dup2", "the init's stdout"))?;
    let argv = [c"sh".to_owned(), c"-c".to_owned(), std::ffi::CString::new(container_script(true))?];
    match execv(c"/bin/busybox", &argv) {
        Err(errno) => Err(LabError::sys("execve", "/bin/busybox")(errno).into()),
        Ok(never) => match never {},
    }
}

/// The rootfs as a tar archive (symlinks kept as links), for `docker import`.
fn write_tarball(rootfs: &Path, tarball: &Path) -> Result<()> {
    let file = File::create(tarball).map_err(LabError::io("create", tarball))?;
    let mut archive = tar::Builder::new(file);
    archive.follow_symlinks(false);
    archive.append_dir_all(".", rootfs).map_err(LabError::io("archive", rootfs))?;
    archive.into_inner().and_then(|mut f| f.flush()).map_err(LabError::io("write", tarball))?;
    Ok(())
}

/// Runs the docker client (at most DOCKER_DEADLINE) and returns what it printed.
fn docker_cli(args: &[&str]) -> Result<String> {
    let mut command = std::process::Command::new("docker");
    command.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut running = command.spawn().context("start `docker` (is docker.io installed?)")?;
    let pid = Pid::from_raw(i32::try_from(running.id()).context("docker's PID")?);
    let done = child::pidfd_open(pid).map_err(LabError::sys("pidfd_open", pid))?;
    // Its output is small: read once it exited (a pipe holds 64 KiB).
    if !poll_until(&mut [PollFd::new(done.as_fd(), PollFlags::POLLIN)], Instant::now() + DOCKER_DEADLINE)? {
        let _ = running.kill();
        let _ = running.wait();
        bail!("`docker {}` did not finish within {DOCKER_DEADLINE:?}", args.join(" "));
    }
    let output = running.wait_with_output().context("wait for docker")?;
    if !output.status.success() {
        bail!(
            "`docker {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Reads `pipe` until a line `word` arrives, at most child::deadline().
fn await_line(pipe: OwnedFd, word: &str, doing: &str) -> Result<()> {
    let deadline = Instant::now() + child::deadline();
    let mut file = File::from(pipe);
    let mut seen = Vec::new();
    loop {
        if !poll_until(&mut [PollFd::new(file.as_fd(), PollFlags::POLLIN)], deadline)? {
            bail!("no `{word}` within {:?} while {doing}", child::deadline());
        }
        let mut buf = [0u8; 512];
        match file.read(&mut buf) {
            Ok(0) => bail!("the output ended without `{word}` while {doing}: {}", String::from_utf8_lossy(&seen)),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => bail!("reading the output while {doing}: {e}"),
        }
        if String::from_utf8_lossy(&seen).lines().any(|l| l.trim() == word) {
            return Ok(());
        }
    }
}

fn poll_until(fds: &mut [PollFd], deadline: Instant) -> Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(fds, timeout) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(LabError::sys("poll", "a pipe")(errno).into()),
        }
    }
}

// ── Small things ────────────────────────────────────────────────────────────

fn sleep_forever() -> i32 {
    loop {
        pause();
    }
}

fn sleep_body() -> Result<()> {
    loop {
        pause();
    }
}

/// Reaps this process's children until it has none, then returns.
fn reap_until_none(voice: Voice, who: &str) -> Result<()> {
    loop {
        match waitpid(None, None) {
            Ok(status) => voice.inside(&format!("{who}: a child ended: {}", describe(status))),
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Ok(()),
            Err(errno) => return Err(LabError::sys("waitpid", who)(errno).into()),
        }
    }
}

fn exit_code(voice: Voice, who: &str, outcome: Result<()>) -> i32 {
    match outcome {
        Ok(()) => 0,
        Err(error) => {
            voice.inside(&format!("{who} failed: {error:#}"));
            1
        }
    }
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Signaled(pid, signal, _) => format!("PID {pid} killed by {}", signal.as_str()),
        WaitStatus::Exited(pid, code) => format!("PID {pid} exited with status {code}"),
        other => format!("{other:?}"),
    }
}

/// The child of `parent` whose comm is `comm`, from /proc/<parent>/task/<parent>/children.
fn child_named(parent: Pid, comm: &str) -> Option<Pid> {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .map(Pid::from_raw)
        .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
}

/// The value of `key` in /proc/<pid>/status, its blanks squeezed.
fn status_field(pid: Pid, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    Some(value.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn nspid(pid: Pid) -> Vec<i32> {
    status_field(pid, "NSpid").unwrap_or_default().split_whitespace().filter_map(|n| n.parse().ok()).collect()
}

fn numeric_entries(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_student_regions_are_the_expected_ones() {
        let regions = labkit::regions::parse(include_str!("main.rs")).expect("regions parse");
        let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["join-namespaces", "fork-joined", "debug-tool", "all-but-pid"]);
    }
}
