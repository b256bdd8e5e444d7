//! Lab userns-maps: who you are inside a user namespace. An unprivileged process unshares
//! a user namespace; its parent writes the maps that say which ids inside are which ids
//! outside; root inside then finds what it may do, and what it may not. Read
//! labs/userns-maps/README.md.
//!
//! The processes and files this lab makes:
//!
//! ```text
//! lab-userns-maps (root) ── userns-parent (drops to the lab's id; writes the maps)
//!                               └─ userns-child (unshares the user namespace; root inside)
//!                                     ├─ userns-exec → sleep (exec'd as the unmapped user)
//!                                     └─ userns-nested (a user namespace in the child's)
//!     (--subids:)          ── subids-parent (a mount namespace of its own with a subuid
//!                               │             range; drops to the lab's id; newuidmap)
//!                               └─ subids-child (unshares the user namespace)
//!
//! <workdir>/home/          the mapped user's directory (owned by the lab's id, mode 0555)
//! <workdir>/home/mnt/      where root inside mounts a tmpfs, in its own mount namespace
//! <workdir>/shared/        (--subids) uid 1 inside's directory (owned by 100000, mode 0755)
//! <workdir>/etc/           (--subids) the copies of /etc/subuid, subgid, passwd, group
//! ```

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use labkit::protocol::userns_maps::*;
use labkit::protocol::PANIC_EXIT;
use labkit::{child, cleanup, Lab, LabArgs, LabError, Voice};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::{chown, getgid, getuid, setgroups, sethostname, setresgid, setresuid, Gid, Pid, Uid};
use serde_json::json;

/// Unshare a user namespace as an unprivileged user, write its maps from the parent, and
/// find what root inside may do. Run it as root, in a VM: `sudo target/debug/lab-userns-maps --step`.
#[derive(Parser)]
#[command(name = "lab-userns-maps", version)]
struct Cli {
    #[command(flatten)]
    lab: LabArgs,
    /// Map a whole range with newuidmap/newgidmap (package uidmap), from a range the lab
    /// adds to /etc/subuid and /etc/subgid in a mount namespace of its own.
    #[arg(long = "subids")]
    subids: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    labkit::main("lab-userns-maps", include_str!("main.rs"), || run(&cli.lab, cli.subids))
}

/// Commands the lab sends down to the parent (which passes them on to the child), one byte each.
const MAP: u8 = b'm';
const ROOT: u8 = b'r';

/// What every process of the lab needs to know (copied into each child).
#[derive(Debug, Clone)]
struct Setup {
    /// The unprivileged id the lab runs its processes as (uid and gid alike).
    id: u32,
    home: PathBuf,
    workdir: PathBuf,
    /// The lab's own user namespace (device, inode): the host's. The child refuses to act
    /// as root inside unless its own differs.
    host_userns: Option<(u64, u64)>,
}

fn run(args: &LabArgs, subids: bool) -> Result<()> {
    labkit::require_root("lab-userns-maps", "setresuid(2) to an id of its choice, and mount(2) for /etc/subuid")?;
    let mut lab = Lab::new(args, "Lab userns-maps: who you are inside", if subids { 2 } else { 3 });
    let workdir = labkit::Workdir::open(args, "userns-maps")?;
    let id = choose_free_id()?;
    lab.saw(&format!(
        "uid and gid {id} have no account, no group and no process on this machine: the lab runs its processes as {id}"
    ));
    let home = workdir.path().join(HOME_DIR);
    if home.exists() {
        anyhow::bail!("{} already exists (left by an earlier run?): remove it and run again", home.display());
    }
    labkit::create_searchable_dir(&home)?;
    cleanup::track_dir(&home);
    let mount_dir = home.join(MOUNT_DIR);
    labkit::create_searchable_dir(&mount_dir)?;
    for dir in [&home, &mount_dir] {
        chown(dir, Some(Uid::from_raw(id)), Some(Gid::from_raw(id))).map_err(LabError::sys("chown", dir.display()))?;
    }
    // Read-only even for its owner: the unprivileged id outside cannot create a file in
    // it; root inside can, with CAP_DAC_OVERRIDE over the inodes of an id its map names.
    set_mode(&home, 0o555)?;
    let setup = Setup { id, home, workdir: workdir.path().to_path_buf(), host_userns: userns_identity("self") };
    if subids {
        subids_variant(&mut lab, &setup)?;
    } else {
        own_maps(&mut lab, &setup)?;
    }
    cleanup::remove_made_dirs()?;
    lab.done(
        "Done: the lab's processes are gone and its directories removed. Now answer the questions on the lab sheet.",
    );
    Ok(())
}

fn own_maps(lab: &mut Lab, setup: &Setup) -> Result<()> {
    let id = setup.id;
    // ── Step 1 ───────────────────────────────────────────────────────────────
    lab.step(
        "Drop to an unprivileged id, then unshare a user namespace",
        "in userns-parent: setgroups([]); setresgid(id); setresuid(id); in userns-child: unshare(CLONE_NEWUSER)",
        &format!("setpriv --reuid={id} --regid={id} --clear-groups unshare --user sh"),
    );
    let link = child::Link::new()?;
    let voice = lab.voice();
    let for_parent = setup.clone();
    let parent = child::spawn(PARENT_COMM, move || {
        parent_of_the_namespace(voice, &for_parent, link).unwrap_or_else(|error| failed(voice, PARENT_COMM, &error))
    })?;
    let mut end = link.lab_side(parent)?;
    end.wait_ready(
        "dropping to the lab's id and unsharing a user namespace",
        "did drop_to_user or unshare_user fail (its error would be above)?",
    )?;
    let child_pid = only_child(parent, CHILD_COMM)?;
    lab.saw(&format!(
        "userns-child (PID {child_pid}): {}; its uid_map: {:?}",
        status_ids(child_pid),
        read_map(child_pid, "uid_map")
    ));
    lab.why("before a map, the kernel has no name inside for the child's ids: getuid() says the overflow id 65534. Yet the child holds every capability in its new namespace, until it execs as that unmapped user.");
    lab.hold(UNSHARED, json!({ "parent": parent.as_raw(), "child": child_pid.as_raw(), "id": id }))?;

    // ── Step 2 ───────────────────────────────────────────────────────────────
    lab.step(
        "From the parent, write the child's uid_map, then setgroups deny, then gid_map",
        &format!(
            "write(\"/proc/<child>/uid_map\", \"0 {id} 1\"); write(\".../setgroups\", \"deny\"); write(\".../gid_map\", \"0 {id} 1\")"
        ),
        &format!(
            "echo '0 {id} 1' > /proc/$CHILD/uid_map; echo deny > /proc/$CHILD/setgroups; echo '0 {id} 1' > /proc/$CHILD/gid_map"
        ),
    );
    end.send(MAP)?;
    end.wait_ready("writing the maps", "did write_maps fail (its error would be above)?")?;
    for file in ["uid_map", "setgroups", "gid_map"] {
        lab.saw(&format!("/proc/{child_pid}/{file}: {:?}", read_map(child_pid, file)));
    }
    lab.saw(&format!("userns-child: {}", status_ids(child_pid)));
    if lab.plays_host() && !read_map(child_pid, "uid_map").is_empty() {
        // Over a written map only: a first write would be the lab's, not the student's.
        let again = std::fs::write(format!("/proc/{child_pid}/uid_map"), format!("0 {id} 1\n"));
        lab.as_host(&format!("root writes the same uid_map again -> {}", describe_io(&again)));
    }
    lab.why("the seed's \"0 1000 1\" is \"0 <your uid> 1\": one id, yours, the only one an unprivileged writer may map. Each map can be written once.");
    lab.hold(MAPPED, json!({ "child": child_pid.as_raw() }))?;

    // ── Step 3 ───────────────────────────────────────────────────────────────
    lab.step(
        "As root inside: a mount and a hostname in namespaces of its own, a file, a nested namespace",
        "unshare(CLONE_NEWNS|CLONE_NEWUTS); mount(\"tmpfs\", home/mnt); sethostname; creat(home/made-inside)",
        "unshare --mount --uts sh -c 'mount -t tmpfs tmpfs ~/mnt; hostname userns-lab; touch ~/made-inside'",
    );
    end.send(ROOT)?;
    end.wait_ready("acting as root inside", "did root_inside fail (its error would be above)?")?;
    let made = setup.home.join(MADE_INSIDE);
    lab.saw(&format!("on the host, {} is owned by {}", made.display(), owner(&made)));
    lab.why("root inside is uid 0 only through the map: on the host its files belong to the mapped id, and it may mount or rename only in namespaces its user namespace owns.");
    let nested = only_child(child_pid, NESTED_COMM)?;
    lab.saw(&format!(
        "userns-nested (PID {nested}): its uid_map read from the host: {:?}",
        read_map(nested, "uid_map")
    ));
    lab.hold(ROOT_INSIDE, json!({ "child": child_pid.as_raw(), "nested": nested.as_raw() }))?;
    end.release();
    finish(parent, "ending")
}

fn subids_variant(lab: &mut Lab, setup: &Setup) -> Result<()> {
    let id = setup.id;
    let shared = setup.workdir.join(SHARED_DIR);
    labkit::create_searchable_dir(&shared)?;
    cleanup::track_dir(&shared);
    // uid 1 inside is SUBID_START outside: its directory, which the lab's id cannot write.
    chown(&shared, Some(Uid::from_raw(SUBID_START)), Some(Gid::from_raw(SUBID_START)))
        .map_err(LabError::sys("chown", shared.display()))?;
    set_mode(&shared, 0o755)?;
    let copies = setup.workdir.join(ETC_COPIES_DIR);
    labkit::create_searchable_dir(&copies)?;
    cleanup::track_dir(&copies);
    // ── Step 1 ───────────────────────────────────────────────────────────────
    lab.step(
        &format!("Give id {id} the range {SUBID_START}-{} in /etc/subuid and /etc/subgid, in a mount namespace of the lab's own", SUBID_START + SUBID_COUNT - 1),
        "unshare(CLONE_NEWNS); mount(\"/\", MS_REC|MS_PRIVATE); mount(copy, \"/etc/subuid\", MS_BIND) (and subgid, passwd, group)",
        &format!("usermod --add-subuids {SUBID_START}-{} --add-subgids {SUBID_START}-{} <user>   (on your own VM)", SUBID_START + SUBID_COUNT - 1, SUBID_START + SUBID_COUNT - 1),
    );
    // ── Step 2 ───────────────────────────────────────────────────────────────
    lab.step(
        "Unshare a user namespace as that id, and map it with newuidmap and newgidmap",
        &format!("unshare(CLONE_NEWUSER); execve(\"newuidmap\", [<child>, 0, {id}, 1, 1, {SUBID_START}, {SUBID_COUNT}])"),
        &format!("newuidmap $CHILD 0 {id} 1 1 {SUBID_START} {SUBID_COUNT}; newgidmap $CHILD 0 {id} 1 1 {SUBID_START} {SUBID_COUNT}"),
    );
    let link = child::Link::new()?;
    let voice = lab.voice();
    let for_parent = setup.clone();
    let parent = child::spawn(SUBIDS_PARENT_COMM, move || {
        subids_parent(voice, &for_parent, link).unwrap_or_else(|error| failed(voice, SUBIDS_PARENT_COMM, &error))
    })?;
    let mut end = link.lab_side(parent)?;
    end.wait_ready(
        "dropping to the lab's id and unsharing a user namespace",
        "did drop_to_user or unshare_user fail (its error would be above)?",
    )?;
    let child_pid = only_child(parent, SUBIDS_CHILD_COMM)?;
    lab.saw(&format!("subids-child (PID {child_pid}): {}", status_ids(child_pid)));
    lab.hold(SUBIDS_UNSHARED, json!({ "parent": parent.as_raw(), "child": child_pid.as_raw() }))?;
    end.send(MAP)?;
    end.wait_ready(
        "mapping a range with newuidmap and newgidmap",
        "did map_with_newuidmap fail (its error, and newuidmap's, would be above)?",
    )?;
    for file in ["uid_map", "gid_map"] {
        lab.saw(&format!("/proc/{child_pid}/{file}: {:?}", read_map(child_pid, file)));
    }
    let made = shared.join(MADE_BY_UID_1);
    lab.saw(&format!("on the host, {} (made by uid 1 inside) is owned by {}", made.display(), owner(&made)));
    lab.why("newuidmap is set-user-ID root: it may write what an unprivileged writer may not, but only the ranges /etc/subuid grants to the caller.");
    lab.hold(SUBIDS_MAPPED, json!({ "child": child_pid.as_raw() }))?;
    end.release();
    finish(parent, "ending")
}

/// The parent: drops to the lab's id, starts the child (which unshares), and writes the
/// child's maps when the lab says so.
fn parent_of_the_namespace(voice: Voice, setup: &Setup, link: child::Link) -> Result<i32> {
    let mut lab_link = link.child_side();
    let lab_pid = nix::unistd::getppid();
    drop_to_user(setup.id)?;
    after_dropping(lab_pid)?;
    voice.inside(&format!("userns-parent: {}", status_ids(Pid::this())));
    let child_link = child::Link::new()?;
    let for_child = setup.clone();
    let child_pid = child::spawn(CHILD_COMM, move || {
        child_in_the_namespace(voice, &for_child, child_link).unwrap_or_else(|error| failed(voice, CHILD_COMM, &error))
    })?;
    let mut end = child_link.lab_side(child_pid)?;
    end.wait_ready("unsharing the user namespace", "did unshare_user fail (its error would be above)?")?;
    lab_link.ready();
    while let Some(command) = lab_link.next_command() {
        if command == MAP {
            write_maps(child_pid, setup.id, setup.id)?;
        }
        end.send(command)?;
        end.wait_ready("acting on the lab's command", "its error would be above")?;
        lab_link.ready();
    }
    end.release();
    finish(child_pid, "ending").map(|()| 0)
}

/// The child: unshares the user namespace, shows what an exec as the unmapped user keeps,
/// and acts as root inside once mapped.
fn child_in_the_namespace(voice: Voice, setup: &Setup, link: child::Link) -> Result<i32> {
    let mut link = link.child_side();
    unshare_user().context(
        "making the user namespace (if unprivileged user namespaces are off here, `cilab doctor` says which sysctl)",
    )?;
    // Nothing below may act as root on the host: the child goes on only in a user
    // namespace of its own.
    if userns_identity("self") == setup.host_userns {
        return Err(anyhow!(
            "the child is still in the host's user namespace ({}): it stops here rather than act as root on the host",
            labkit::ns_link("self", "user")
        ));
    }
    voice.inside(&format!("after unshare(CLONE_NEWUSER): getuid() = {}, getgid() = {}", getuid(), getgid()));
    let exec = exec_as_the_unmapped_user()?;
    link.ready();
    let mut nested_end: Option<(Pid, child::LabEnd)> = None;
    while let Some(command) = link.next_command() {
        match command {
            MAP => {
                // The exec'd sleep has shown its capabilities: it goes.
                let _ = kill(exec, Signal::SIGKILL);
                let _ = child::wait(exec, "ending the exec'd sleep");
                voice.inside(&format!("after the maps: getuid() = {}, getgid() = {}", getuid(), getgid()));
            }
            ROOT => {
                try_outside(voice, &setup.home);
                root_inside(&setup.home)?;
                let made = setup.home.join(MADE_INSIDE);
                let chown_to_1 = chown(&made, Some(Uid::from_raw(1)), Some(Gid::from_raw(1)));
                voice.inside(&format!("chown(made-inside, 1, 1) -> {chown_to_1:?}: uid 1 has no map"));
                nested_end = Some(nested_namespace(voice)?);
            }
            _ => {}
        }
        link.ready();
    }
    if let Some((nested, end)) = nested_end {
        end.release();
        finish(nested, "ending the nested namespace")?;
    }
    Ok(0)
}

/// A program exec'd now runs as the unmapped user: the kernel recomputes its capabilities
/// in execve, and uid 65534 inside is not root. Returns once the exec is done (a
/// close-on-exec pipe reaches its end of file then).
fn exec_as_the_unmapped_user() -> Result<Pid> {
    let (done_rx, done_tx) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(LabError::sys("pipe2", "the exec's"))?;
    // The forked child holds its copy of done_tx until its exec closes it.
    let exec = child::spawn(EXEC_COMM, || {
        let argv = [c"sleep".to_owned(), c"600".to_owned()];
        let error = nix::unistd::execvp(c"sleep", &argv).err();
        eprintln!("   inside:  execvp(sleep) failed: {error:?}");
        1
    })?;
    drop(done_tx);
    let mut done = std::fs::File::from(done_rx);
    let _ = std::io::Read::read(&mut done, &mut [0u8]);
    // That end of file comes once execve is past its point of no return, a moment before
    // the kernel renames the task and commits its new credentials. Opening its environ
    // waits for the rest: the kernel takes the lock execve holds until it is done
    // (exec_update_lock) before it lets anyone read another process's memory.
    let _ = std::fs::read(format!("/proc/{exec}/environ"));
    let comm = std::fs::read_to_string(format!("/proc/{exec}/comm")).unwrap_or_default();
    if comm.trim() != "sleep" {
        return Err(anyhow!("{EXEC_COMM} (PID {exec}) did not exec sleep (its comm is {:?})", comm.trim()));
    }
    Ok(exec)
}

/// Before it has namespaces of its own, root inside tries the host's: both refuse.
fn try_outside(voice: Voice, home: &Path) {
    let target = home.join(MOUNT_DIR);
    let mounted = mount(Some("tmpfs"), &target, Some("tmpfs"), MsFlags::empty(), None::<&str>);
    voice.inside(&format!("mount(\"tmpfs\", home/mnt) in the host's mount namespace -> {mounted:?}"));
    let renamed = sethostname("not-the-host");
    voice.inside(&format!("sethostname in the host's UTS namespace -> {renamed:?}"));
}

/// In the child (root inside): a user namespace nested in its own, mapped by the child
/// as the parent mapped the child's.
fn nested_namespace(voice: Voice) -> Result<(Pid, child::LabEnd)> {
    let link = child::Link::new()?;
    let nested = child::spawn(NESTED_COMM, move || {
        let mut link = link.child_side();
        match unshare_user() {
            Ok(()) => {
                link.ready();
                while link.next_command().is_some() {}
                0
            }
            Err(error) => failed(voice, NESTED_COMM, &error),
        }
    })?;
    let mut end = link.lab_side(nested)?;
    end.wait_ready("unsharing a nested user namespace", "did unshare_user fail (its error would be above)?")?;
    write_maps(nested, 0, 0).context("mapping the nested namespace's 0 to the child's 0")?;
    voice.inside(&format!("nested uid_map, read by the child: {:?}", read_map(nested, "uid_map")));
    Ok((nested, end))
}

/// The variant's parent: its own mount namespace with a subuid range for the lab's id,
/// then the same drop and child, and the maps written by newuidmap and newgidmap.
fn subids_parent(voice: Voice, setup: &Setup, link: child::Link) -> Result<i32> {
    let mut lab_link = link.child_side();
    let lab_pid = nix::unistd::getppid();
    give_subordinate_range(voice, setup)?;
    drop_to_user(setup.id)?;
    after_dropping(lab_pid)?;
    let child_link = child::Link::new()?;
    let shared = setup.workdir.join(SHARED_DIR);
    let child_pid = child::spawn(SUBIDS_CHILD_COMM, move || {
        let mut link = child_link.child_side();
        let mut body = || -> Result<()> {
            unshare_user()?;
            link.ready();
            // Mapped now: a process of uid 1 inside makes a file.
            link.next_command().ok_or_else(|| anyhow!("the parent went away before mapping"))?;
            let maker = child::spawn("subids-uid-1", || match make_file_as_uid_1(&shared) {
                Ok(()) => 0,
                Err(error) => failed(voice, "subids-uid-1", &error),
            })?;
            match child::wait(maker, "making a file as uid 1")? {
                WaitStatus::Exited(_, 0) => {}
                other => return Err(anyhow!("uid 1 inside could not make its file: {other:?}")),
            }
            link.ready();
            while link.next_command().is_some() {}
            Ok(())
        };
        body().map(|()| 0).unwrap_or_else(|error| failed(voice, SUBIDS_CHILD_COMM, &error))
    })?;
    let mut end = child_link.lab_side(child_pid)?;
    end.wait_ready("unsharing the user namespace", "did unshare_user fail (its error would be above)?")?;
    lab_link.ready();
    // The lab holds (the harness watches who writes the maps), then says MAP.
    if lab_link.next_command() == Some(MAP) {
        map_with_newuidmap(child_pid, setup.id, setup.id)?;
        end.send(MAP)?;
        end.wait_ready("making a file as uid 1 inside", "its error would be above")?;
        lab_link.ready();
        while lab_link.next_command().is_some() {}
    }
    end.release();
    finish(child_pid, "ending").map(|()| 0)
}

/// uid 1 inside (which the range maps to SUBID_START outside) makes a file.
fn make_file_as_uid_1(shared: &Path) -> Result<()> {
    setresgid(Gid::from_raw(1), Gid::from_raw(1), Gid::from_raw(1)).map_err(LabError::sys("setresgid", 1))?;
    setresuid(Uid::from_raw(1), Uid::from_raw(1), Uid::from_raw(1)).map_err(LabError::sys("setresuid", 1))?;
    let file = shared.join(MADE_BY_UID_1);
    std::fs::write(&file, "made by uid 1 inside\n").map_err(LabError::io("write", &file))?;
    Ok(())
}

/// In the variant's parent, still root: a mount namespace of its own in which /etc/subuid,
/// /etc/subgid, /etc/passwd and /etc/group are copies with the lab's id added. The host's
/// /etc is never written (where cilab runs the lab, it is read-only anyway).
fn give_subordinate_range(voice: Voice, setup: &Setup) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys("unshare", "CLONE_NEWNS"))?;
    // Nothing mounted below may reach the host: every mount private first.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
    let id = setup.id;
    let range = format!("{ACCOUNT}:{SUBID_START}:{SUBID_COUNT}\n");
    let additions = [
        ("subuid", range.clone()),
        ("subgid", range),
        ("passwd", format!("{ACCOUNT}:x:{id}:{id}:cilab userns-maps lab:/nonexistent:/usr/sbin/nologin\n")),
        ("group", format!("{ACCOUNT}:x:{id}:\n")),
    ];
    for (name, line) in additions {
        let original = Path::new("/etc").join(name);
        if !original.exists() {
            return Err(anyhow!(
                "{} does not exist: newuidmap reads it (create it empty as root: `touch {}`; the uidmap package's \
                 dependencies make it)",
                original.display(),
                original.display()
            ));
        }
        let mut text = std::fs::read_to_string(&original).map_err(LabError::io("read", &original))?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
        let copy = setup.workdir.join(ETC_COPIES_DIR).join(name);
        std::fs::write(&copy, text).map_err(LabError::io("write", &copy))?;
        mount(Some(&copy), &original, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(LabError::sys("mount(MS_BIND)", original.display()))?;
        voice.inside(&format!("bound {} onto {} with `{}` added", copy.display(), original.display(), line.trim()));
    }
    Ok(())
}

/// After a process drops from root its credentials changed: the kernel cleared its
/// parent-death signal and made it non-dumpable (its /proc files then belong to root, so
/// that it could not even write its own child's uid_map). Both are set back.
fn after_dropping(lab_pid: Pid) -> Result<()> {
    nix::sys::prctl::set_dumpable(true).map_err(LabError::sys("prctl(PR_SET_DUMPABLE)", 1))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(LabError::sys("prctl(PR_SET_PDEATHSIG)", "SIGKILL"))?;
    // The lab may have died before the line above: then nobody would end this process.
    if nix::unistd::getppid() != lab_pid {
        return Err(anyhow!("the lab is gone: stopping"));
    }
    Ok(())
}

/// In the parent, which starts as root: become the lab's unprivileged id for good.
fn drop_to_user(id: u32) -> Result<()> {
    // STUDENT: begin drop-to-user
    // Hint: three calls, in an order that still has the privilege each needs: the
    // supplementary groups (root's include 0), the real, effective and saved gid, then the
    // real, effective and saved uid (setgroups(2), setresgid(2), setresuid(2)).
    setgroups(&[]).map_err(LabError::sys("setgroups", "[]"))?;
    setresgid(Gid::from_raw(id), Gid::from_raw(id), Gid::from_raw(id)).map_err(LabError::sys("setresgid", id))?;
    setresuid(Uid::from_raw(id), Uid::from_raw(id), Uid::from_raw(id)).map_err(LabError::sys("setresuid", id))?;
    Ok(())
    // STUDENT: end drop-to-user
}

/// In the child: a new user namespace, for the caller itself.
fn unshare_user() -> Result<()> {
    // STUDENT: begin unshare-user
    // Hint: one unshare(2) flag. Unlike the PID namespace's, it moves the caller itself;
    // the caller must be single-threaded (a forked child is).
    unshare(CloneFlags::CLONE_NEWUSER).map_err(LabError::sys("unshare", "CLONE_NEWUSER"))?;
    Ok(())
    // STUDENT: end unshare-user
}

/// From the parent namespace: `pid`'s namespace maps its 0 to `uid` and `gid` outside.
fn write_maps(pid: Pid, uid: u32, gid: u32) -> Result<()> {
    // STUDENT: begin write-maps
    // Hint: three files under /proc/<pid>/, each written once with one write
    // (user_namespaces(7)): uid_map "0 <uid> 1", setgroups "deny", gid_map "0 <gid> 1".
    // An unprivileged writer may write gid_map only after one of the other two.
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    for (file, text) in
        [("uid_map", format!("0 {uid} 1\n")), ("setgroups", "deny\n".to_string()), ("gid_map", format!("0 {gid} 1\n"))]
    {
        let path = proc_dir.join(file);
        std::fs::write(&path, text).map_err(LabError::io("write", &path))?;
    }
    Ok(())
    // STUDENT: end write-maps
}

/// In the child, root inside once mapped: namespaces its user namespace owns, a mount and
/// a hostname in them, and a file in the mapped user's directory.
fn root_inside(home: &Path) -> Result<()> {
    // STUDENT: begin root-inside
    // Hint: unshare(2) a mount and a UTS namespace (owned by the user namespace you are
    // in), make "/" private in it, mount a tmpfs on home/MOUNT_DIR, sethostname(HOSTNAME),
    // and create the file home/MADE_INSIDE.
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)
        .map_err(LabError::sys("unshare", "CLONE_NEWNS|CLONE_NEWUTS"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
    let target = home.join(MOUNT_DIR);
    mount(Some("tmpfs"), &target, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("size=1m"))
        .map_err(LabError::sys("mount(\"tmpfs\")", target.display()))?;
    sethostname(HOSTNAME).map_err(LabError::sys("sethostname", HOSTNAME))?;
    let made = home.join(MADE_INSIDE);
    std::fs::write(&made, "made by root inside\n").map_err(LabError::io("write", &made))?;
    Ok(())
    // STUDENT: end root-inside
}

/// In the variant's parent (the lab's id): the maps, with a subordinate range, written by
/// the set-user-ID helpers of the uidmap package.
fn map_with_newuidmap(pid: Pid, uid: u32, gid: u32) -> Result<()> {
    // STUDENT: begin newuidmap
    // Hint: newuidmap(1) takes the pid, then triples "inside outside count": your own id
    // for 0, and the range /etc/subuid gives you (SUBID_START, SUBID_COUNT) from 1 on.
    // newgidmap(1) likewise with gid. Check each exit status.
    for (program, own) in [("newuidmap", uid), ("newgidmap", gid)] {
        let status = std::process::Command::new(program)
            .args([pid.to_string(), "0".into(), own.to_string(), "1".into()])
            .args(["1".to_string(), SUBID_START.to_string(), SUBID_COUNT.to_string()])
            .status()
            .with_context(|| format!("running {program} (apt-get install uidmap)"))?;
        if !status.success() {
            return Err(anyhow!("{program} {pid} ... refused: {status} (its message is above)"));
        }
    }
    Ok(())
    // STUDENT: end newuidmap
}

/// An id (uid and gid alike) with no passwd entry, no group entry and no process using it
/// as a uid or gid: the lab's own, never an account's.
fn choose_free_id() -> Result<u32> {
    let in_use = ids_in_use();
    (FIRST_CANDIDATE_ID..=LAST_CANDIDATE_ID)
        .find(|id| !in_use.contains(id) && !labkit::ids::has_account(*id))
        .ok_or_else(|| {
            anyhow!("no id between {FIRST_CANDIDATE_ID} and {LAST_CANDIDATE_ID} is free of accounts and processes")
        })
}

/// Every uid and gid a process on the machine has (real, effective, saved, filesystem).
fn ids_in_use() -> std::collections::BTreeSet<u32> {
    let mut ids = std::collections::BTreeSet::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return ids };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        for line in text.lines().filter(|l| l.starts_with("Uid:") || l.starts_with("Gid:")) {
            ids.extend(line.split_whitespace().skip(1).filter_map(|n| n.parse::<u32>().ok()));
        }
    }
    ids
}

/// Lets a child go and waits for it to end well.
fn finish(pid: Pid, doing: &str) -> Result<()> {
    match child::wait(pid, doing)? {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(anyhow!("a process of the lab ended badly while {doing}: {other:?}")),
    }
}

/// The one child of `parent` named `comm`.
fn only_child(parent: Pid, comm: &str) -> Result<Pid> {
    let found: Vec<Pid> = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok().map(Pid::from_raw))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .collect();
    match found.as_slice() {
        [pid] => Ok(*pid),
        _ => Err(anyhow!("PID {parent} has {} children named {comm}; expected one", found.len())),
    }
}

/// "uid 1000 1000 1000 1000, gid ..., CapEff ...": the ids and capabilities in /proc/<pid>/status.
fn status_ids(pid: Pid) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    format!("Uid {}, Gid {}, Groups [{}], CapEff {}", field("Uid:"), field("Gid:"), field("Groups:"), field("CapEff:"))
}

/// The lines of /proc/<pid>/<file>, spaces squeezed.
fn read_map(pid: Pid, file: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// "ok" or the errno's name of a file operation.
fn describe_io(result: &std::io::Result<()>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(e) => e.raw_os_error().map_or_else(|| e.to_string(), |n| format!("{:?}", nix::errno::Errno::from_raw(n))),
    }
}

/// chmod, for a directory the lab made.
fn set_mode(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(LabError::io("chmod", dir))?;
    Ok(())
}

/// "uid:gid" of a file, as the host sees it.
fn owner(path: &Path) -> String {
    match nix::sys::stat::stat(path) {
        Ok(st) => format!("{}:{}", st.st_uid, st.st_gid),
        Err(errno) => format!("(not there: {errno})"),
    }
}

/// (device, inode) of a process's user namespace.
fn userns_identity(pid: &str) -> Option<(u64, u64)> {
    nix::sys::stat::stat(format!("/proc/{pid}/ns/user").as_str()).ok().map(|st| (st.st_dev, st.st_ino))
}

/// A child's exit status for an error, which it says first.
fn failed(voice: Voice, who: &str, error: &anyhow::Error) -> i32 {
    voice.inside(&format!("{who} failed: {error:#}"));
    if child::panic_seen() {
        PANIC_EXIT
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_student_regions_are_the_expected_ones() {
        let regions = labkit::regions::parse(include_str!("main.rs")).expect("regions parse");
        let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["drop-to-user", "unshare-user", "write-maps", "root-inside", "newuidmap"]);
    }
}
