//! `--backend qemu`: a throwaway guest cilab boots itself, from a kernel of this machine
//! (the newest /boot/vmlinuz-*, or `--kernel`) and an initramfs it builds and caches by
//! content in [`CACHE_DIR`]: busybox, cilab, the lab binaries, the tools the catalog
//! names, the libraries of all of them, the kernel modules the guest needs, and
//! `guest_init.sh`. The init sets the guest up (root on a tmpfs, proc/sys/dev, the cgroup
//! layout asked for, / shared, lo up) and starts `cilab guest-agent`, which runs what
//! this side asks over a virtio-serial port ([`super::agent`]) and answers the same way.
//! The console is never read for results.
//!
//! KVM is used only when a real, bounded boot with it works (a /dev/kvm that exists can
//! still hang under nested virtualisation); a definite answer (KVM booted the kernel, or
//! it hung while TCG booted the same kernel) is cached per boot of this machine and per
//! kernel, never the answer of a probe whose kernel did not boot at all. Otherwise qemu
//! emulates (TCG). A guest that hangs or overruns its deadline is killed (its own
//! process group), and a guest that panics powers off at once (`panic=-1`,
//! `-no-reboot`): either way the backend failed, not the lab. qemu dies with cilab
//! (PR_SET_PDEATHSIG) and Ctrl-C kills it ([`kill_all`]): the guest, or the KVM probe's
//! qemu, and after that no qemu is started (an interrupt while the image is built or KVM
//! probed does not leave a guest booting behind cilab).
//!
//! A guest that goes away unasked is the backend's failure under `cilab run` and `cilab
//! shell` too (they exit 2); only a person's `poweroff -f` at the console is not. Its
//! console log (which qemu writes also while the console is on a terminal) is read then,
//! to say how it ended ([`guest_end`]): a kernel panic is named as the guest's crash.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::agent::{Request, MAX_ANSWER, PORT_NAME};
use super::children::{kill_group, Children, SpawnError};
use super::initramfs::{self, Image};
use super::{tail, Guest, GuestOutput, Payload, GUEST_BIN};
use crate::error::{Error, Result};
use crate::probe::pidfd::PidFd;
use crate::report::GuestInfo;

/// Where built initramfs images and the KVM probe's answers are kept (`cilab doctor
/// --clean` may remove it; the next boot builds again).
pub const CACHE_DIR: &str = "/var/cache/cilab/qemu";
/// Where a running guest keeps its control socket and console log, one directory each.
pub const RUN_DIR: &str = "/run/cilab/qemu";
pub const QEMU: &str = "qemu-system-x86_64";
/// The init, in the image as /init.
const GUEST_INIT: &str = include_str!("guest_init.sh");

/// How long a guest may take to boot and answer its first request, on top of the
/// request's own deadline (TCG on a busy machine).
const BOOT_DEADLINE: Duration = Duration::from_secs(90);
/// How long a guest may take to power off once the host hangs up.
const POWEROFF_DEADLINE: Duration = Duration::from_secs(30);
/// How long the KVM probe boot may take before KVM is taken to hang.
const KVM_PROBE_DEADLINE: Duration = Duration::from_secs(8);

/// The guest's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupLayout {
    /// Every v1 controller at /sys/fs/cgroup/<name>, no cgroup2.
    V1,
    /// The v1 controllers, and cgroup2 without controllers at /sys/fs/cgroup/unified.
    Hybrid,
    /// cgroup2 alone at /sys/fs/cgroup (nsdelegate), as current distributions.
    #[default]
    V2,
}

impl CgroupLayout {
    pub fn name(self) -> &'static str {
        match self {
            CgroupLayout::V1 => "v1",
            CgroupLayout::Hybrid => "hybrid",
            CgroupLayout::V2 => "v2",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// qemu's machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// The i440FX PC with the qboot firmware when qemu has it (no BIOS delays).
    Pc,
    /// A minimal machine (no PCI): virtio over MMIO. It boots the Debian cloud kernel and
    /// was about 1 s faster under TCG, but here 2 boots in 4 hung at TSC calibration ("no
    /// reference (HPET/PMTIMER)") on a loaded host: not the default (`cargo bench -p cilab
    /// --bench qemu_boot -- microvm` measures it).
    Microvm,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The kernel to boot; the newest /boot/vmlinuz-* when none.
    pub kernel: Option<PathBuf>,
    pub cgroup: CgroupLayout,
    pub memory_mib: u32,
    pub cpus: u32,
    /// The guest's console on this terminal (`cilab shell`, `cilab run`), not in a log.
    pub terminal: bool,
    /// More words for the kernel command line (e.g. `sysctl.user.max_user_namespaces=0`).
    pub kernel_args: Vec<String>,
    pub machine: Machine,
    /// Force an accelerator instead of probing (tests, or a user who knows).
    pub accel: Option<Accel>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            kernel: None,
            cgroup: CgroupLayout::V2,
            // The cgroup-limits lab's memory hog runs under a 512 MiB run limit.
            memory_mib: 1536,
            cpus: 2,
            terminal: false,
            kernel_args: Vec::new(),
            machine: Machine::Pc,
            accel: None,
        }
    }
}

/// A qemu guest (see the module's documentation).
#[derive(Debug)]
pub struct Qemu {
    options: Options,
    kernel: PathBuf,
    release: String,
    accel: Option<(Accel, String)>,
    vm: Option<Running>,
    boot_to_report: Option<Duration>,
}

#[derive(Debug)]
struct Running {
    child: Child,
    pidfd: PidFd,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    workdir: PathBuf,
    started: Instant,
    answered: bool,
}

/// The qemu processes of this process (guests and KVM probes), for Ctrl-C: qemu's pid,
/// its directory.
static RUNNING: Children<PathBuf> = Children::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Kills every qemu this process started and removes its directory, and from now on
/// starts none (the interrupt handler calls this); says what it did.
pub fn kill_all() -> Vec<String> {
    let mut killed = Vec::new();
    // Its own process group (the terminal's, when a person is at the console: then qemu
    // alone).
    let guests = RUNNING.close(|pid, _| killed.push(kill_group(pid)));
    let mut done = Vec::new();
    for ((pid, workdir), killed) in guests.into_iter().zip(killed) {
        let _ = std::fs::remove_dir_all(&workdir);
        done.push(format!("killed qemu guest {pid} ({killed:?}), removed {}", workdir.display()));
    }
    done
}

/// The error of a qemu not started because cilab is exiting after an interrupt.
fn interrupted() -> Error {
    Error::Backend {
        backend: "qemu".into(),
        message: "cilab is exiting after an interrupt: no guest is started".into(),
    }
}

/// What guests of cilabs that are gone left: their directories in [`RUN_DIR`] (qemu's
/// socket and console log; a qemu still running there, which PR_SET_PDEATHSIG should have
/// stopped), and half-written images in [`CACHE_DIR`]. Each with why.
pub fn leftovers() -> Vec<(PathBuf, String)> {
    let alive = |pid: i32| Path::new(&format!("/proc/{pid}")).exists();
    let owner = |name: &str| -> Option<i32> {
        let name = name.strip_prefix("kvm-probe-").or_else(|| name.strip_prefix(".initramfs-")).unwrap_or(name);
        name.split(['-', '.']).next()?.parse().ok()
    };
    let mut found = Vec::new();
    for dir in [RUN_DIR, CACHE_DIR] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if dir == CACHE_DIR && !name.ends_with(".partial") {
                continue;
            }
            if let Some(pid) = owner(&name).filter(|pid| !alive(*pid)) {
                found.push((entry.path(), format!("a qemu guest's files; its cilab (PID {pid}) is gone")));
            }
        }
    }
    found
}

/// Kills any qemu whose command line names `path` (a guest directory), and removes it.
pub fn clean_leftover(path: &Path) -> Vec<String> {
    let mut done = Vec::new();
    let named = path.display().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with(QEMU) && cmdline.contains(&named) {
            let killed = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            done.push(format!("killed qemu {pid} of {named} ({killed:?})"));
        }
    }
    let removed = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    done.push(match removed {
        Ok(()) => format!("removed {named}"),
        Err(e) => format!("could not remove {named}: {e}"),
    });
    done
}

/// Removes the cache of built images and probe answers (the next boot builds again).
pub fn clear_cache() -> Option<String> {
    let size: u64 =
        std::fs::read_dir(CACHE_DIR).ok()?.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
    Some(match std::fs::remove_dir_all(CACHE_DIR) {
        Ok(()) => {
            format!("removed the qemu backend's cache {CACHE_DIR} ({} MiB; the next boot builds it again)", size >> 20)
        }
        Err(e) => format!("could not remove {CACHE_DIR}: {e}"),
    })
}

/// What `cilab doctor` says about the qemu backend: whether it can run here, and what is
/// missing otherwise.
pub fn readiness() -> (bool, String) {
    let mut missing = Vec::new();
    let qemu = which::which(QEMU).ok();
    if qemu.is_none() {
        missing.push(format!("{QEMU} (apt-get install qemu-system-x86)"));
    }
    let kernel = newest_kernel().and_then(|k| initramfs::kernel_release(&k).map(|r| (k, r)));
    if kernel.is_err() {
        missing.push("a kernel in /boot (apt-get install linux-image-cloud-amd64)".to_string());
    }
    if !missing.is_empty() {
        return (false, format!("cannot run: needs {}", missing.join(" and ")));
    }
    let accel = kernel
        .as_ref()
        .ok()
        .and_then(|(path, _)| cache_file(Path::new(CACHE_DIR), path))
        .and_then(|file| read_cached(&file))
        .map(|(accel, why)| format!("{} ({why})", accel.name()))
        .unwrap_or_else(|| "KVM not probed yet for this kernel (the first boot probes it; TCG otherwise)".into());
    let kernel = kernel.map(|(path, release)| format!("{release} ({})", path.display())).unwrap_or_default();
    (true, format!("usable: `--backend qemu`; kernel {kernel}; accelerator {accel}"))
}

impl Qemu {
    /// Finds the kernel and its release; boots nothing yet.
    pub fn new(options: Options) -> Result<Qemu> {
        let kernel = match &options.kernel {
            Some(kernel) => kernel.clone(),
            None => newest_kernel()?,
        };
        let release = initramfs::kernel_release(&kernel)?;
        Ok(Qemu { options, kernel, release, accel: None, vm: None, boot_to_report: None })
    }

    pub fn kernel(&self) -> &Path {
        &self.kernel
    }

    /// The image for `payload`: built, or taken from the cache.
    pub fn initramfs(&self, payload: &Payload) -> Result<PathBuf> {
        build_image(payload, &self.release, self.options.machine)?.cached(Path::new(CACHE_DIR))
    }

    fn boot(&mut self, initrd: &Path) -> Result<()> {
        if which::which(QEMU).is_err() {
            return Err(Error::Build(format!("{QEMU} is not on PATH: apt-get install qemu-system-x86")));
        }
        let (accel, _) = self.accel.get_or_insert_with(|| match self.options.accel {
            Some(accel) => (accel, "asked for".to_string()),
            None => accelerator(&self.kernel),
        });
        let accel = *accel;
        let id = format!("{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let workdir = Path::new(RUN_DIR).join(id);
        std::fs::create_dir_all(&workdir).map_err(Error::io("create", &workdir))?;
        let socket = workdir.join("control.sock");
        let listener = UnixListener::bind(&socket).map_err(Error::io("bind", &socket))?;
        let mut command = Command::new(QEMU);
        command.args(qemu_args(&self.options, accel, &self.kernel, initrd, &workdir));
        command.stdin(if self.options.terminal { Stdio::inherit() } else { Stdio::null() });
        if !self.options.terminal {
            // Its own process group: the terminal's Ctrl-C is cilab's to handle, and a kill
            // reaches all of qemu.
            command.process_group(0);
            let log = workdir.join("qemu.log");
            let file = std::fs::File::create(&log).map_err(Error::io("create", &log))?;
            let again = file.try_clone().map_err(Error::io("dup", &log))?;
            command.stdout(file).stderr(again);
        }
        let listening = listener.as_raw_fd();
        // SAFETY: only async-signal-safe calls (dup2, prctl) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // The listening socket, as qemu's fd 3 (`-chardev socket,fd=3`); dup2
                // clears close-on-exec on the copy.
                if listening == 3 {
                    // dup2 onto itself would keep close-on-exec: clear it instead.
                    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
                    fcntl(3, FcntlArg::F_SETFD(FdFlag::empty())).map_err(std::io::Error::from)?;
                } else {
                    nix::unistd::dup2(listening, 3).map_err(std::io::Error::from)?;
                }
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        // Registered as it starts, unless an interrupt came first (then nothing starts).
        let child = RUNNING.spawn(workdir.clone(), || command.spawn()).map_err(|e| {
            let _ = std::fs::remove_dir_all(&workdir);
            match e {
                SpawnError::Closed => interrupted(),
                SpawnError::Spawn(e) => {
                    Error::Backend { backend: "qemu".into(), message: format!("starting {QEMU}: {e}") }
                }
            }
        })?;
        let pid = child.id() as i32;
        // qemu listens on the socket made here: this connection waits in its backlog until
        // qemu accepts it (no waiting for a socket file to appear).
        let parts = UnixStream::connect(&socket)
            .map_err(Error::io("connect", &socket))
            .and_then(|writer| Ok((writer.try_clone().map_err(Error::io("dup", &socket))?, writer)))
            .and_then(|(reader, writer)| Ok((PidFd::open(pid)?, BufReader::new(reader), writer)));
        drop(listener);
        let (pidfd, reader, writer) = match parts {
            Ok(parts) => parts,
            Err(error) => {
                unregister(pid);
                kill_and_reap(pid, child, &workdir);
                return Err(Error::Backend { backend: "qemu".into(), message: error.to_string() });
            }
        };
        self.vm = Some(Running { child, pidfd, reader, writer, workdir, started: Instant::now(), answered: false });
        Ok(())
    }

    fn request(&mut self, request: &Request, deadline: Option<Duration>) -> Result<GuestOutput> {
        let vm = self.vm.as_mut().ok_or_else(|| Error::Backend {
            backend: "qemu".into(),
            message: "the guest is not running (start it first)".into(),
        })?;
        let mut line = serde_json::to_string(request).map_err(|e| Error::parse("a request", e.to_string()))?;
        line.push('\n');
        let sent = vm.writer.write_all(line.as_bytes()).and_then(|()| vm.writer.flush());
        // The first answer includes the boot.
        let deadline = deadline.map(|d| Instant::now() + d + if vm.answered { Duration::ZERO } else { BOOT_DEADLINE });
        let started = vm.started;
        let mut answer = String::new();
        let read = sent.and_then(|()| loop {
            let timeout = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
                    }
                    Some(left)
                }
                None => None,
            };
            vm.reader.get_ref().set_read_timeout(timeout)?;
            // A guest that floods the port must not fill this machine's memory.
            let room = (MAX_ANSWER + 1).saturating_sub(answer.len()) as u64;
            match (&mut vm.reader).take(room).read_line(&mut answer) {
                Ok(_) if answer.len() > MAX_ANSWER => {
                    break Err(std::io::Error::other(format!("the guest's answer is longer than {MAX_ANSWER} bytes")))
                }
                Ok(n) => break Ok(n),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        });
        // End of file, or a reset (qemu exited with the request unread): qemu is gone or
        // going (the socket closes with it). Its console, complete once it has exited,
        // says how the guest ended.
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        let gone = match &read {
            Ok(n) => *n == 0,
            Err(e) => matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe),
        };
        let ended = gone.then(|| {
            vm.pidfd.wait_exit(POWEROFF_DEADLINE);
            guest_end(&read_console(&vm.workdir))
        });
        if request.terminal && ended == Some(GuestEnd::PoweredOff) {
            // The person at the console powered the guest off (`poweroff -f`).
            self.kill();
            return Ok(GuestOutput::default());
        }
        let failure = match read {
            _ if ended.is_some() => ended.map(|end| end.describe()),
            Ok(_) if !answer.ends_with('\n') => Some("the guest's answer was cut short".to_string()),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                let waited = deadline.map(|d| d.saturating_duration_since(started)).unwrap_or_default();
                Some(format!(
                    "the guest did not answer `{}` in time ({waited:.0?} since boot): killed",
                    request.argv.join(" ")
                ))
            }
            Err(e) => Some(format!("talking to the guest: {e}")),
        };
        if let Some(why) = failure {
            let console = self.console_tail();
            self.kill();
            return Err(Error::Backend { backend: "qemu".into(), message: format!("{why}\n{console}") });
        }
        if let Some(vm) = self.vm.as_mut().filter(|vm| !vm.answered) {
            vm.answered = true;
            self.boot_to_report = Some(vm.started.elapsed());
        }
        serde_json::from_str(&answer).map_err(|e| Error::Backend {
            backend: "qemu".into(),
            message: format!("the guest's answer does not parse ({e}): {}", tail(&answer, 5)),
        })
    }

    /// How many bytes the guest's console log holds now.
    fn console_length(&self) -> usize {
        self.vm
            .as_ref()
            .and_then(|vm| std::fs::metadata(vm.workdir.join("console.log")).ok())
            .map_or(0, |m| usize::try_from(m.len()).unwrap_or(usize::MAX))
    }

    /// A command run as root with its output captured (and `stdin` written to it).
    fn run_captured(&mut self, argv: &[String], stdin: Option<String>, deadline: Duration) -> Result<GuestOutput> {
        let before = self.console_length();
        let mut output = self.request(&Request { argv: argv.to_vec(), terminal: false, stdin }, Some(deadline))?;
        // Killed by a signal: the kernel may say why (an OOM kill). Its lines since the
        // command began end its stderr, which a failure quotes.
        if output.status > 128 {
            let said = self.vm.as_ref().map(|vm| read_console_from(&vm.workdir, before)).unwrap_or_default();
            let said = kernel_said(&said);
            if !said.is_empty() {
                output.stderr.push_str(&format!("\n(the guest kernel said, while it ran:\n{})\n", said.join("\n")));
            }
        }
        Ok(output)
    }

    /// The last lines of the guest's console (its log, also when it is on a terminal).
    fn console_tail(&self) -> String {
        self.vm.as_ref().map(|vm| console_tail(&vm.workdir)).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(vm) = self.vm.take() {
            let pid = vm.child.id() as i32;
            unregister(pid);
            kill_and_reap(pid, vm.child, &vm.workdir);
        }
    }

    /// qemu's process, while the guest runs.
    pub fn pid(&self) -> Option<i32> {
        self.vm.as_ref().map(|vm| vm.child.id() as i32)
    }

    /// From starting qemu to the first answer (the report, for a check).
    pub fn boot_to_report(&self) -> Option<Duration> {
        self.boot_to_report
    }

    pub fn accelerator(&self) -> Option<(Accel, &str)> {
        self.accel.as_ref().map(|(a, why)| (*a, why.as_str()))
    }
}

/// A guest's console log, as far as qemu wrote it (nothing if it has none).
fn read_console(workdir: &Path) -> String {
    read_console_from(workdir, 0)
}

/// A guest's console log from its byte `from` on.
fn read_console_from(workdir: &Path, from: usize) -> String {
    let bytes = std::fs::read(workdir.join("console.log")).unwrap_or_default();
    String::from_utf8_lossy(bytes.get(from..).unwrap_or_default()).into_owned()
}

/// How a guest that went away without answering ended, as its console tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestEnd {
    /// Its kernel panicked: the panic's line ("Kernel panic - not syncing: ...").
    Panicked(String),
    /// cilab's init or agent in the guest failed: what the init said.
    InitFailed(String),
    /// It powered off (or rebooted) as asked: `poweroff -f` at its console.
    PoweredOff,
    /// Its console does not say.
    Unknown,
}

/// What the kernel prints when it panics, and when it powers off or restarts as asked.
const PANIC: &str = "Kernel panic - not syncing";
const POWERED_OFF: [&str; 2] = ["reboot: Power down", "reboot: Restarting system"];
/// How guest_init.sh begins a line that says it (or the agent) failed.
const INIT_FAILED: &str = "cilab guest: failed: ";

/// How the guest ended, from its console: a panic first (whatever follows it), then a
/// failure the init reported, then a power-off.
pub fn guest_end(console: &str) -> GuestEnd {
    let lines: Vec<&str> = console.lines().map(|l| l.trim_end_matches('\r')).collect();
    if let Some(line) = lines.iter().find_map(|l| l.find(PANIC).map(|at| &l[at..])) {
        return GuestEnd::Panicked(line.trim_end_matches(" ]---").trim().to_string());
    }
    if let Some(what) = lines.iter().rev().find_map(|l| l.split_once(INIT_FAILED).map(|(_, what)| what)) {
        return GuestEnd::InitFailed(what.trim().to_string());
    }
    if lines.iter().any(|l| POWERED_OFF.iter().any(|said| l.ends_with(said))) {
        return GuestEnd::PoweredOff;
    }
    GuestEnd::Unknown
}

impl GuestEnd {
    /// Why the backend failed, for a guest that ended so before it answered.
    pub fn describe(&self) -> String {
        match self {
            GuestEnd::Panicked(line) => format!("the guest crashed: its kernel panicked ({line})"),
            GuestEnd::InitFailed(what) => format!("the guest's init failed: {what}"),
            GuestEnd::PoweredOff => "the guest powered off before it answered".into(),
            GuestEnd::Unknown => {
                "the guest went away before it answered (its console does not say why: qemu itself may have died)"
                    .into()
            }
        }
    }
}

/// What a guest's console log says last: the kernel's lines (KERN_ERR or worse, as the
/// init sets the console's level: an OOM kill, an oops, a panic) apart from the rest
/// (the init's, a person's session), and what qemu itself said.
fn console_tail(workdir: &Path) -> String {
    let console = read_console(workdir);
    let mut text = String::new();
    let said = kernel_said(&console);
    if !said.is_empty() {
        let start = said.len().saturating_sub(KERNEL_LINES);
        text.push_str(&format!("the guest kernel said:\n{}\n", said[start..].join("\n")));
    }
    let rest: String =
        console.lines().filter(|line| kernel_line(line).is_none()).map(|line| format!("{line}\n")).collect();
    text.push_str(&format!("its console ended with:\n{}", tail(&rest, 10)));
    let qemu = String::from_utf8_lossy(&std::fs::read(workdir.join("qemu.log")).unwrap_or_default()).into_owned();
    if !qemu.trim().is_empty() {
        text.push_str(&format!("\n(qemu said: {})", tail(&qemu, 5)));
    }
    text
}

/// How many of the kernel's lines a failure quotes (the last ones).
const KERNEL_LINES: usize = 12;

/// The text of a line the kernel printed on the console ("[   12.345678] text"), `None`
/// for any other line.
fn kernel_line(line: &str) -> Option<&str> {
    let (stamp, text) = line.trim_end_matches('\r').strip_prefix('[')?.split_once("] ")?;
    let stamp = stamp.trim_start();
    let is_time = !stamp.is_empty() && stamp.chars().all(|c| c.is_ascii_digit() || c == '.');
    is_time.then_some(text)
}

/// What the guest's kernel said on `console`, without the lines of its dumps (a call
/// trace's frames, registers, code bytes) that say nothing to a reader of a report: each
/// as the console has it, its time stamp kept.
pub fn kernel_said(console: &str) -> Vec<String> {
    let is_hex = |text: &str| text.len() >= 4 && text.chars().take(4).all(|c| c.is_ascii_hexdigit());
    console
        .lines()
        .filter_map(|line| kernel_line(line).map(|text| (line.trim_end_matches('\r'), text)))
        .filter(|(_, text)| {
            let mut words = text.split_whitespace();
            let first = words.next().unwrap_or_default();
            let register = first.ends_with(':') && words.next().is_some_and(is_hex);
            !(text.is_empty() || text.starts_with(char::is_whitespace) || first == "Code:" || register)
        })
        .map(|(line, _)| line.to_string())
        .collect()
}

fn unregister(pid: i32) {
    RUNNING.remove(pid);
}

fn kill_and_reap(pid: i32, mut child: Child, workdir: &Path) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(workdir);
}

impl Guest for Qemu {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn start(&mut self, payload: &Payload) -> Result<()> {
        if self.vm.is_some() {
            return Ok(());
        }
        if RUNNING.is_closed() {
            return Err(interrupted());
        }
        let initrd = self.initramfs(payload)?;
        self.boot(&initrd)
    }

    fn run_as_root(&mut self, argv: &[String], deadline: Duration) -> Result<GuestOutput> {
        self.run_captured(argv, None, deadline)
    }

    fn can_seal(&self) -> bool {
        true
    }

    fn run_as_root_with_input(&mut self, argv: &[String], input: &str, deadline: Duration) -> Result<GuestOutput> {
        self.run_captured(argv, Some(input.to_string()), deadline)
    }

    fn run_on_terminal(&mut self, argv: &[String]) -> Result<i32> {
        // A session of its own with the console as its controlling terminal: Ctrl-C and
        // job control work as on a machine's console.
        let mut wrapped: Vec<String> = ["setsid", "cttyhack"].map(String::from).to_vec();
        wrapped.extend(argv.iter().cloned());
        self.request(&Request { argv: wrapped, terminal: true, stdin: None }, None).map(|output| output.status)
    }

    fn describe(&self) -> GuestInfo {
        GuestInfo {
            backend: "qemu".into(),
            accelerator: self.accel.as_ref().map(|(a, _)| a.name().to_string()),
            kernel: Some(self.release.clone()),
            cgroup: Some(self.options.cgroup.name().to_string()),
            boot_to_report_ms: self.boot_to_report.map(|d| d.as_millis() as u64),
            sealed: None,
        }
    }

    fn stop(&mut self) -> Result<()> {
        let Some(vm) = self.vm.take() else { return Ok(()) };
        let pid = vm.child.id() as i32;
        // Hanging up ends the agent, and the init powers off.
        let _ = vm.writer.shutdown(std::net::Shutdown::Both);
        let powered_off = vm.pidfd.wait_exit(POWEROFF_DEADLINE);
        unregister(pid);
        let console = console_tail(&vm.workdir);
        kill_and_reap(pid, vm.child, &vm.workdir);
        if powered_off {
            Ok(())
        } else {
            Err(Error::Backend {
                backend: "qemu".into(),
                message: format!("the guest did not power off within {POWEROFF_DEADLINE:?}: killed\n{}", console),
            })
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.vm.is_some() {
            self.kill();
        }
    }
}

/// qemu's command line.
fn qemu_args(options: &Options, accel: Accel, kernel: &Path, initrd: &Path, workdir: &Path) -> Vec<String> {
    let mut cmdline: Vec<String> = ["console=ttyS0", "quiet", "panic=-1", "rdinit=/init"].map(String::from).to_vec();
    if options.machine == Machine::Pc {
        // No keyboard or mouse to probe, one serial port: a little less boot under TCG.
        cmdline.extend(["i8042.noaux", "i8042.nokbd", "i8042.nopnp", "8250.nr_uarts=1"].map(String::from));
    }
    cmdline.push(format!("cilab.cgroup={}", options.cgroup.name()));
    if options.cgroup == CgroupLayout::V2 {
        cmdline.push("cgroup_no_v1=all".into());
    }
    if options.terminal {
        cmdline.push("cilab.console=1".into());
    }
    cmdline.extend(options.kernel_args.iter().cloned());
    let (machine, bus) = match options.machine {
        Machine::Pc => ("pc", "pci"),
        Machine::Microvm => ("microvm", "device"),
    };
    let mut args: Vec<String> = vec![
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-accel".into(),
        accel.name().into(),
        "-M".into(),
        machine.into(),
    ];
    if options.machine == Machine::Pc && Path::new("/usr/share/qemu/qboot.rom").is_file() {
        args.extend(["-bios".into(), "qboot.rom".into()]);
    }
    if accel == Accel::Kvm {
        args.extend(["-cpu".into(), "host".into()]);
    }
    args.extend([
        "-smp".into(),
        options.cpus.to_string(),
        "-m".into(),
        options.memory_mib.to_string(),
        "-kernel".into(),
        kernel.display().to_string(),
        "-initrd".into(),
        initrd.display().to_string(),
        "-append".into(),
        cmdline.join(" "),
        "-device".into(),
        format!("virtio-serial-{bus}"),
        "-chardev".into(),
        "socket,id=control,fd=3,server=on,wait=off".into(),
        "-device".into(),
        format!("virtserialport,chardev=control,name={PORT_NAME}"),
        "-device".into(),
        format!("virtio-rng-{bus}"),
    ]);
    if options.terminal {
        // On this terminal, and in a log too: the host reads it if the guest goes away.
        args.extend([
            "-chardev".into(),
            format!("stdio,id=console,signal=off,logfile={}", workdir.join("console.log").display()),
            "-serial".into(),
            "chardev:console".into(),
        ]);
    } else {
        args.extend(["-serial".into(), format!("file:{}", workdir.join("console.log").display())]);
    }
    args
}

/// The newest /boot/vmlinuz-*, by version.
pub fn newest_kernel() -> Result<PathBuf> {
    let boot = Path::new("/boot");
    let mut kernels: Vec<PathBuf> = std::fs::read_dir(boot)
        .map_err(Error::io("read", boot))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))
        .collect();
    kernels.sort_by_key(|p| version_key(&p.to_string_lossy()));
    kernels.pop().ok_or_else(|| {
        Error::Build(
            "no kernel in /boot (vmlinuz-*): `apt-get install linux-image-cloud-amd64`, or --kernel PATH".into(),
        )
    })
}

/// "vmlinuz-6.1.0-56-cloud-amd64" → [6, 1, 0, 56]: compares as versions do.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
}

/// What the guest needs from the kernel as modules (built in, nothing).
fn wanted_modules(machine: Machine) -> &'static [&'static str] {
    match machine {
        Machine::Pc => &["virtio_pci", "virtio_console", "virtio_rng"],
        Machine::Microvm => &["virtio_mmio", "virtio_console", "virtio_rng"],
    }
}

/// The initramfs for `payload` (see the module's documentation).
pub fn build_image(payload: &Payload, release: &str, machine: Machine) -> Result<Image> {
    let mut image = Image::new();
    // The top directories as this machine has them (a merged /usr's links kept), so that
    // programs are where they are here.
    for dir in ["/bin", "/sbin", "/lib", "/lib64", "/usr/bin", "/usr/sbin", "/usr/lib"] {
        match std::fs::read_link(dir) {
            Ok(target) => image.symlink(dir, &target),
            Err(_) => image.dir(dir),
        }
    }
    for dir in ["/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/etc", "/var/tmp", "/opt/cilab/modules"] {
        image.dir(dir);
    }
    image.char_device("/dev/console", 5, 1, 0o600);
    image.bytes("/init", GUEST_INIT, 0o755);
    image.bytes(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    );
    image.bytes("/etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644);
    // Empty, as the uidmap package's dependencies leave them: newuidmap and newgidmap read
    // them, and lab userns-maps (variant subids) binds copies with its range over them.
    for file in ["/etc/subuid", "/etc/subgid"] {
        image.bytes(file, "", 0o644);
    }
    let busybox = labkit::rootfs::find_static_busybox().map_err(|e| Error::Build(e.to_string()))?;
    image.host_file(Path::new(GUEST_BIN).join("busybox"), &busybox)?;
    for binary in &payload.binaries {
        let name = binary.file_name().ok_or_else(|| Error::Build(format!("{} has no file name", binary.display())))?;
        image.host_program_stripped(Path::new(GUEST_BIN).join(name), binary)?;
        image.libraries(binary)?;
    }
    for tool in &payload.tools {
        image.program(tool)?;
    }
    let mut order = String::new();
    for (i, module) in initramfs::modules_for(release, wanted_modules(machine))?.iter().enumerate() {
        let file = module.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let name = format!("{i:02}-{}.ko", file.split(".ko").next().unwrap_or(&file));
        image.bytes(Path::new("/opt/cilab/modules").join(&name), initramfs::module_bytes(module)?, 0o644);
        order.push_str(&name);
        order.push('\n');
    }
    if !order.is_empty() {
        image.bytes("/opt/cilab/modules/order", order, 0o644);
    }
    Ok(image)
}

/// KVM if a bounded boot with it works, else TCG; a definite answer (and why) is cached
/// per boot of this machine and per kernel in [`CACHE_DIR`] (see [`accelerator_in`]).
pub fn accelerator(kernel: &Path) -> (Accel, String) {
    accelerator_in(Path::new(CACHE_DIR), kernel, probe_kvm)
}

/// What a KVM probe found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// True of this machine until it reboots, for this kernel: KVM booted it, or KVM hung
    /// while TCG booted the same kernel. Cached.
    Definite(Accel, String),
    /// Says nothing lasting about KVM (no /dev/kvm to open, which is cheap to look at
    /// again; the probe could not start; the kernel itself did not boot, as a broken
    /// `--kernel` does): used for this boot of the guest only, never cached.
    ThisTime(Accel, String),
}

impl ProbeAnswer {
    fn answer(self) -> (Accel, String) {
        match self {
            ProbeAnswer::Definite(accel, why) | ProbeAnswer::ThisTime(accel, why) => (accel, why),
        }
    }
}

/// [`accelerator`] with its cache in `cache` and its probe given: the cached answer for
/// this boot of the machine and this `kernel` (its path, size and modification time: a
/// kernel replaced in place is another kernel), else the probe's, cached only when it is
/// [`ProbeAnswer::Definite`].
pub fn accelerator_in(cache: &Path, kernel: &Path, probe: impl FnOnce(&Path) -> ProbeAnswer) -> (Accel, String) {
    let file = cache_file(cache, kernel);
    if let Some(answer) = file.as_deref().and_then(read_cached) {
        return answer;
    }
    match probe(kernel) {
        ProbeAnswer::Definite(accel, why) => {
            if let Some(file) = &file {
                // A cache that cannot be written only costs the next boot a probe.
                let _ = std::fs::create_dir_all(cache);
                let _ = std::fs::write(file, format!("{} {why}\n", accel.name()));
            }
            (accel, why)
        }
        answer @ ProbeAnswer::ThisTime(..) => answer.answer(),
    }
}

/// The file holding the probe's answer for this boot of the machine and `kernel`; `None`
/// when either cannot be told (nothing is cached then).
fn cache_file(cache: &Path, kernel: &Path) -> Option<PathBuf> {
    use sha2::{Digest, Sha256};
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let path = std::fs::canonicalize(kernel).ok()?;
    let meta = std::fs::metadata(&path).ok()?;
    let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    let mut hasher = Sha256::new();
    hasher.update(path.as_os_str().as_encoded_bytes());
    hasher.update(format!("\0{}\0{}.{:09}", meta.len(), modified.as_secs(), modified.subsec_nanos()));
    let kernel_id = initramfs::hex(&hasher.finalize());
    Some(cache.join(format!("accel-{}-{}", boot_id.trim(), &kernel_id[..16])))
}

fn read_cached(file: &Path) -> Option<(Accel, String)> {
    let said = std::fs::read_to_string(file).ok()?;
    if let Some(why) = said.strip_prefix("kvm ") {
        return Some((Accel::Kvm, why.trim().to_string()));
    }
    said.strip_prefix("tcg ").map(|why| (Accel::Tcg, why.trim().to_string()))
}

/// How long the TCG boot that tells a kernel that hangs under KVM from one that does not
/// boot at all may take.
const TCG_PROBE_DEADLINE: Duration = Duration::from_secs(90);

/// Boots `kernel` with KVM and no initramfs: it panics at once (no root) and, with
/// `panic=-1 -no-reboot`, qemu exits. Within [`KVM_PROBE_DEADLINE`], KVM works. If it
/// hangs, the same boot under TCG says whether KVM or the kernel is to blame.
fn probe_kvm(kernel: &Path) -> ProbeAnswer {
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return ProbeAnswer::ThisTime(Accel::Tcg, "no usable /dev/kvm".into());
    }
    judge_probe(probe_boot(kernel, Accel::Kvm, KVM_PROBE_DEADLINE), || {
        probe_boot(kernel, Accel::Tcg, TCG_PROBE_DEADLINE)
    })
}

/// How a probe boot (no initramfs: the kernel panics for want of a root) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeBoot {
    /// The kernel booted as far as its panic, and qemu exited.
    Panicked,
    /// qemu exited, but the kernel never said it panicked: what qemu said.
    Failed(String),
    /// Still running at the deadline (killed).
    Hung(Duration),
    /// The probe could not be run: why.
    NotRun(String),
}

/// The answer from the KVM probe boot and, only where that one hung, a TCG boot of the
/// same kernel.
pub fn judge_probe(kvm: ProbeBoot, tcg: impl FnOnce() -> ProbeBoot) -> ProbeAnswer {
    match kvm {
        ProbeBoot::Panicked => {
            ProbeAnswer::Definite(Accel::Kvm, format!("a probe boot with KVM ended within {KVM_PROBE_DEADLINE:?}"))
        }
        ProbeBoot::Failed(said) => ProbeAnswer::ThisTime(
            Accel::Tcg,
            format!("a probe boot with KVM failed before the kernel ran (qemu said: {said}); KVM not judged"),
        ),
        ProbeBoot::NotRun(why) => ProbeAnswer::ThisTime(Accel::Tcg, format!("could not probe KVM: {why}")),
        ProbeBoot::Hung(waited) => {
            let hung = format!("/dev/kvm is there but a probe boot with it hung for {waited:?}");
            match tcg() {
                ProbeBoot::Panicked => ProbeAnswer::Definite(Accel::Tcg, format!("{hung}, and TCG boots that kernel")),
                other => ProbeAnswer::ThisTime(
                    Accel::Tcg,
                    format!("{hung}, and a probe boot of that kernel with TCG did not boot it either ({other:?})"),
                ),
            }
        }
    }
}

/// Boots `kernel` alone with `accel`, at most `deadline`.
fn probe_boot(kernel: &Path, accel: Accel, deadline: Duration) -> ProbeBoot {
    let dir = Path::new(RUN_DIR).join(format!("kvm-probe-{}-{}", std::process::id(), accel.name()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return ProbeBoot::NotRun(format!("creating {}: {e}", dir.display()));
    }
    let log = dir.join("console.log");
    let qemu_log = dir.join("qemu.log");
    let stderr = match std::fs::File::create(&qemu_log) {
        Ok(file) => file,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return ProbeBoot::NotRun(format!("creating {}: {e}", qemu_log.display()));
        }
    };
    let mut command = Command::new(QEMU);
    command
        .args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-accel", accel.name(), "-M", "pc"])
        .args(["-m", "256", "-kernel"])
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1", "-serial"])
        .arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0);
    // SAFETY: prctl only, between fork and exec.
    unsafe {
        command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
    }
    let result = match RUNNING.spawn(dir.clone(), || command.spawn()) {
        // After an interrupt nothing is started, and nothing is learnt of KVM.
        Err(SpawnError::Closed) => ProbeBoot::NotRun("cilab is exiting after an interrupt".into()),
        Err(SpawnError::Spawn(e)) => ProbeBoot::NotRun(format!("starting {QEMU}: {e}")),
        Ok(child) => {
            let pid = child.id() as i32;
            let exited = PidFd::open(pid).map(|fd| fd.wait_exit(deadline)).unwrap_or(false);
            // Not there any more: the interrupt handler killed it, which says nothing of KVM.
            let ours = RUNNING.remove(pid).is_some();
            kill_and_reap(pid, child, Path::new("/nonexistent"));
            let console = std::fs::read_to_string(&log).unwrap_or_default();
            if !ours {
                ProbeBoot::NotRun("killed by an interrupt".into())
            } else if exited && console.contains("Kernel panic") {
                ProbeBoot::Panicked
            } else if exited {
                ProbeBoot::Failed(tail(&std::fs::read_to_string(&qemu_log).unwrap_or_default(), 3))
            } else {
                ProbeBoot::Hung(deadline)
            }
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After the interrupt handler's `kill_all`, neither `start` (before the image is
    /// built) nor the boot itself (after it, with the image and the probe done) starts a
    /// qemu. The only test here that touches the registry of this process: no other test of
    /// this binary boots a guest.
    #[test]
    fn after_an_interrupt_no_guest_is_started() {
        assert!(kill_all().is_empty(), "no test of this binary started a qemu");
        let mut qemu = Qemu {
            options: Options::default(),
            kernel: PathBuf::from("/nonexistent/vmlinuz"),
            release: "0.0.0-test".into(),
            accel: Some((Accel::Tcg, "asked for".into())),
            vm: None,
            boot_to_report: None,
        };
        let refused = qemu.start(&Payload::default()).expect_err("start after an interrupt");
        assert!(refused.to_string().contains("after an interrupt"), "{refused}");
        if which::which(QEMU).is_ok() {
            // This process's guest directories (other cilabs may boot guests meanwhile).
            let ours = || -> Vec<PathBuf> {
                let prefix = format!("{}-", std::process::id());
                let entries = std::fs::read_dir(RUN_DIR).into_iter().flatten().flatten();
                entries.filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path()).collect()
            };
            let refused = qemu.boot(Path::new("/nonexistent/initrd")).expect_err("boot after an interrupt");
            assert!(refused.to_string().contains("after an interrupt"), "{refused}");
            assert!(qemu.pid().is_none());
            assert_eq!(ours(), Vec::<PathBuf>::new(), "the refused guest's directory is removed");
        }
    }
    use std::cell::Cell;

    fn kernel_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write a kernel stand-in");
        path
    }

    #[test]
    fn a_probe_whose_kernel_did_not_boot_is_not_cached_for_any_kernel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        let broken = kernel_file(dir.path(), "vmlinuz-broken", b"cut short");
        let good = kernel_file(dir.path(), "vmlinuz-good", b"a whole kernel");
        let probes = Cell::new(0);
        let failed = |_: &Path| {
            probes.set(probes.get() + 1);
            judge_probe(ProbeBoot::Failed("no kernel there".into()), || unreachable!("KVM did not hang"))
        };
        assert_eq!(accelerator_in(&cache, &broken, failed).0, Accel::Tcg);
        assert_eq!(accelerator_in(&cache, &broken, failed).0, Accel::Tcg);
        assert_eq!(probes.get(), 2, "the broken kernel's answer was cached");
        let worked = |_: &Path| judge_probe(ProbeBoot::Panicked, || unreachable!("KVM did not hang"));
        assert_eq!(accelerator_in(&cache, &good, worked).0, Accel::Kvm, "the broken kernel's answer was reused");
    }

    #[test]
    fn a_definite_answer_is_cached_for_its_kernel_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        let one = kernel_file(dir.path(), "vmlinuz-one", b"one kernel");
        let other = kernel_file(dir.path(), "vmlinuz-other", b"another kernel");
        let worked = |_: &Path| judge_probe(ProbeBoot::Panicked, || unreachable!("KVM did not hang"));
        assert_eq!(accelerator_in(&cache, &one, worked).0, Accel::Kvm);
        let never = |_: &Path| -> ProbeAnswer { panic!("probed again: the answer for this kernel was cached") };
        assert_eq!(accelerator_in(&cache, &one, never).0, Accel::Kvm);
        // Another kernel is probed for itself.
        let hung = |_: &Path| judge_probe(ProbeBoot::Hung(KVM_PROBE_DEADLINE), || ProbeBoot::Panicked);
        let (accel, why) = accelerator_in(&cache, &other, hung);
        assert_eq!(accel, Accel::Tcg);
        assert!(why.contains("hung") && why.contains("TCG boots that kernel"), "{why}");
        assert_eq!(accelerator_in(&cache, &other, never).0, Accel::Tcg);
        // The same path with other contents (a kernel upgraded in place) is another kernel.
        std::fs::write(&one, b"one kernel, rebuilt and longer").expect("rewrite");
        let probes = Cell::new(0);
        let counted = |_: &Path| {
            probes.set(probes.get() + 1);
            judge_probe(ProbeBoot::Panicked, || unreachable!("KVM did not hang"))
        };
        accelerator_in(&cache, &one, counted);
        assert_eq!(probes.get(), 1, "a replaced kernel got the old kernel's answer");
    }

    /// The end of a console as the guest's kernel and init write it (serial: CR LF).
    const PANICKED: &str = "cilab-guest:/# echo c > /proc/sysrq-trigger\r\n\
        [    9.055036] sysrq: Trigger a crash\r\n\
        [    9.056169] Kernel panic - not syncing: sysrq triggered crash\r\n\
        [    9.057253]  dump_stack_lvl+0x44/0x5c\r\n\
        [    9.057253] Kernel Offset: 0x6e00000 from 0xffffffff81000000\r\n";

    #[test]
    fn the_console_says_how_a_guest_that_went_away_ended() {
        assert_eq!(guest_end(PANICKED), GuestEnd::Panicked("Kernel panic - not syncing: sysrq triggered crash".into()));
        assert!(guest_end(PANICKED).describe().starts_with("the guest crashed: its kernel panicked (Kernel panic"));
        // A panic wins over whatever follows it (a power-off line, say).
        let later = format!("{PANICKED}[    9.1] reboot: Power down\r\n");
        assert!(matches!(guest_end(&later), GuestEnd::Panicked(_)), "{later}");
        let init = "cilab guest: failed: the agent exited with status 137\r\n[   20.1] reboot: Power down\r\n";
        assert_eq!(guest_end(init), GuestEnd::InitFailed("the agent exited with status 137".into()));
        let person = "cilab-guest:/# poweroff -f\r\n[  148.164807] reboot: Power down\r\n";
        assert_eq!(guest_end(person), GuestEnd::PoweredOff);
        assert_eq!(
            guest_end("cilab-guest:/# reboot -f\r\n[ 12.0] reboot: Restarting system\r\n"),
            GuestEnd::PoweredOff
        );
        // A console that stops mid-way (qemu killed from outside) says nothing.
        assert_eq!(guest_end("cilab-guest:/# ls\r\nbin dev\r\n"), GuestEnd::Unknown);
        assert_eq!(guest_end(""), GuestEnd::Unknown);
    }

    #[test]
    fn what_the_kernel_said_is_told_from_the_rest_of_the_console_without_its_dumps() {
        let console = "cilab guest: the host hung up; powering off\r\n\
            [   31.402311] Out of memory: Killed process 81 (cilab) total-vm:9000kB, anon-rss:100kB\r\n\
            [    9.057253] CPU: 1 PID: 95 Comm: sh Not tainted 6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2\r\n\
            [    9.057253] Call Trace:\r\n\
            [    9.057253]  <TASK>\r\n\
            [    9.057253]  dump_stack_lvl+0x44/0x5c\r\n\
            [    9.057253] RIP: 0033:0x47b7a0\r\n\
            [    9.057253] Code: 40 00 48 c7 c2 e0 ff ff ff f7 d8 64 89 02 48 c7\r\n\
            [    9.057253] RSP: 002b:00007ffe0b870968 EFLAGS: 00000202 ORIG_RAX: 0000000000000001\r\n\
            [    9.057253] FS:  0000000000000000(0000) GS:ffff8d0a3bd00000(0000) knlGS:0000000000000000\r\n\
            [ 1234.5] Kernel panic - not syncing: sysrq triggered crash\r\n\
            [not a time] a person's text\r\n\
            cilab-guest:/# echo done\r\n";
        assert_eq!(
            kernel_said(console),
            [
                "[   31.402311] Out of memory: Killed process 81 (cilab) total-vm:9000kB, anon-rss:100kB",
                "[    9.057253] CPU: 1 PID: 95 Comm: sh Not tainted 6.1.0-56-cloud-amd64 #1  Debian 6.1.192-2",
                "[    9.057253] Call Trace:",
                "[ 1234.5] Kernel panic - not syncing: sysrq triggered crash",
            ]
        );
        assert_eq!(kernel_line("[    9.0] RIP: 0033:0x47b7a0\r"), Some("RIP: 0033:0x47b7a0"));
        assert_eq!(kernel_line("[not a time] text"), None);
        assert_eq!(kernel_line("cilab guest: failed: x"), None);
    }

    /// The subids variant's newuidmap and newgidmap go into the guest where this machine
    /// has them, as they are (set-user-ID root); where it has not, the payload is made all
    /// the same (the variant is then a SKIP in the guest, as here).
    #[test]
    fn a_guest_gets_the_variants_tools_this_machine_has() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lab = crate::catalog::find("userns-maps").expect("lab userns-maps");
        for binary in ["cilab", lab.binary] {
            std::fs::write(dir.path().join(binary), b"").expect("a stand-in binary");
        }
        let payload = Payload::for_labs(&[lab], dir.path()).expect("a payload, uidmap or not");
        let tools = lab.variants.iter().flat_map(|v| v.tools).map(|t| t.program).collect::<Vec<_>>();
        assert!(tools.contains(&"newuidmap") && tools.contains(&"newgidmap"), "{tools:?}");
        for tool in tools {
            match which::which(tool) {
                Ok(path) => assert!(payload.tools.contains(&path), "{tool} ({}) not sent", path.display()),
                Err(_) => assert!(!payload.tools.iter().any(|p| p.ends_with(tool)), "{:?}", payload.tools),
            }
        }
        let mut image = Image::new();
        for tool in &payload.tools {
            image.program(tool).expect("the tool in an image");
        }
        if let Ok(path) = which::which("newuidmap") {
            let real = std::fs::canonicalize(&path).expect("newuidmap's path");
            match image.entries().get(&real) {
                Some(initramfs::Entry::HostFile { mode, .. }) => assert_eq!(mode & 0o4000, 0o4000, "{mode:o}"),
                other => panic!("{}: {other:?}", real.display()),
            }
        }
    }

    #[test]
    fn only_a_hang_that_tcg_does_not_share_blames_kvm() {
        let tcg_also_hangs = judge_probe(ProbeBoot::Hung(KVM_PROBE_DEADLINE), || ProbeBoot::Hung(TCG_PROBE_DEADLINE));
        assert!(matches!(tcg_also_hangs, ProbeAnswer::ThisTime(Accel::Tcg, _)), "{tcg_also_hangs:?}");
        let tcg_fails = judge_probe(ProbeBoot::Hung(KVM_PROBE_DEADLINE), || ProbeBoot::Failed("bad".into()));
        assert!(matches!(tcg_fails, ProbeAnswer::ThisTime(Accel::Tcg, _)), "{tcg_fails:?}");
        let kvm_hangs = judge_probe(ProbeBoot::Hung(KVM_PROBE_DEADLINE), || ProbeBoot::Panicked);
        assert!(matches!(kvm_hangs, ProbeAnswer::Definite(Accel::Tcg, _)), "{kvm_hangs:?}");
        let not_run = judge_probe(ProbeBoot::NotRun("no qemu".into()), || unreachable!("not run"));
        assert!(matches!(not_run, ProbeAnswer::ThisTime(Accel::Tcg, _)), "{not_run:?}");
    }
}
