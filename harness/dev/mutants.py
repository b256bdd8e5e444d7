"""Mutation check for cilab's verdicts: breaks a lab on purpose, one change at a time,
runs `cilab check` on it, prints which verdicts failed, and puts the file back as it was.
A mutant that no verdict catches is a check that cannot fail: fix the check.

Run from the workspace root, as root, after `cargo build --workspace`:
    python3 harness/dev/mutants.py            # all mutants
    python3 harness/dev/mutants.py "<name>"   # some, by name
Not part of CI: it edits the tree (and restores it).
"""
import json, subprocess, sys


def edit(path, old, new):
    """Applies one mutant; returns the file's text before, to put back afterwards."""
    text = open(path).read()
    if text.count(old) != 1:
        sys.exit(f"mutant does not apply to {path} (found {text.count(old)} times):\n{old}")
    open(path, "w").write(text.replace(old, new))
    return text

M = [
 ("pid-ns", "labs/pid-ns/src/main.rs", "unshare without CLONE_NEWPID",
  '''unshare(CloneFlags::CLONE_NEWPID)''', '''unshare(CloneFlags::empty())'''),
 ("pid-ns", "labs/pid-ns/src/main.rs", "a mount made in the host's mount namespace",
  '''    voice.inside(&format!("getpid() = {}", getpid()));
''', '''    voice.inside(&format!("getpid() = {}", getpid()));
    if let Some(workdir) = handler_log.parent() {
        mount(Some("tmpfs"), workdir, Some("tmpfs"), MsFlags::empty(), None::<&str>).map_err(LabError::sys("mount", "tmpfs"))?;
    }
'''),
 ("pid-ns", "labs/pid-ns/src/main.rs", "no fresh proc in the init",
  '''    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(LabError::sys("mount(\\"proc\\")", "/proc"))?;''', ''),
 ("pid-ns", "labs/pid-ns/src/main.rs", "handlers installed from the start",
  '''    voice.inside(&format!("getpid() = {}", getpid()));''',
  '''    voice.inside(&format!("getpid() = {}", getpid()));
    let early = SigAction::new(SigHandler::SigAction(record_sender), SaFlags::SA_SIGINFO, SigSet::empty());
    unsafe { sigaction(Signal::SIGTERM, &early) }.map_err(LabError::sys("sigaction", "SIGTERM"))?;'''),
 ("pid-ns", "labs/pid-ns/src/main.rs", "orphan dies with its parent",
  '''child::spawn_with(ORPHAN_COMM, false,''', '''child::spawn_with(ORPHAN_COMM, true,'''),
 ("pid-ns", "labs/pid-ns/src/main.rs", "lab leaves a sleeper behind outside the namespace",
  '''    let me = getpid();''', '''    let me = getpid();
    let _ = child::spawn_with("lab-straggler", false, || loop { pause(); });'''),
 ("chroot-jail", "labs/chroot-jail/src/main.rs", "libraries copied with the program",
  '''    let alone = exec_in_jail(lab.mode(), &jail, DYNAMIC_PROGRAM_IN_JAIL)?;''',
  '''    for library in libraries_of(&program, &loader)? { rootfs::copy_into(&jail, &library)?; }
    let alone = exec_in_jail(lab.mode(), &jail, DYNAMIC_PROGRAM_IN_JAIL)?;'''),
 ("chroot-jail", "labs/chroot-jail/src/main.rs", "jailed shell only chdirs",
  '''fn jailed_shell(voice: Voice, jail: &Path, mut link: child::ChildEnd) -> Result<()> {
    chroot(jail).map_err(LabError::sys("chroot", jail.display()))?;
    chdir("/").map_err(LabError::sys("chdir", "/"))?;''',
  '''fn jailed_shell(voice: Voice, jail: &Path, mut link: child::ChildEnd) -> Result<()> {
    chdir(jail).map_err(LabError::sys("chdir", jail.display()))?;'''),
 ("chroot-jail", "labs/chroot-jail/src/main.rs", "jailed shell unshares a mount namespace",
  '''fn jailed_shell(voice: Voice, jail: &Path, mut link: child::ChildEnd) -> Result<()> {''',
  '''fn jailed_shell(voice: Voice, jail: &Path, mut link: child::ChildEnd) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys("unshare", "CLONE_NEWNS"))?;'''),
 ("chroot-jail", "labs/chroot-jail/src/main.rs", "bind mount left writable",
  '''        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,''', '''        MsFlags::MS_BIND | MsFlags::MS_REMOUNT,'''),
]
only = sys.argv[1:] 
for lab, path, name, old, new in M:
    if only and name not in only: continue
    original = edit(path, old, new)
    try:
        out = subprocess.run(["target/debug/cilab", "check", lab, "--format", "json"], capture_output=True, text=True)
        try:
            r = json.loads(out.stdout)
            failed = [v["id"] for l in r["labs"] for v in l["verdicts"] if v["outcome"] != "pass"]
            leaks = [x for l in r["labs"] for x in l["leaks"]]
        except Exception as e:
            failed, leaks = ["NO REPORT: " + out.stderr[-300:]], []
        print(f"{lab:12} {name:48} exit={out.returncode} failed={failed}" + (f" leaks={leaks}" if leaks else ""))
    finally:
        # The file as it was, uncommitted work included (git checkout would lose it).
        open(path, "w").write(original)
subprocess.run(["cargo", "build", "--quiet", "--workspace"], check=True)
