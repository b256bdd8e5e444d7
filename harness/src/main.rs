//! The `cilab` command: list, run, check and doctor.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cilab::backend::command;
use cilab::backend::multipass::Multipass;
use cilab::backend::qemu::{self, CgroupLayout, Qemu};
use cilab::backend::seal::SealKey;
use cilab::backend::vagrant::Vagrant;
use cilab::backend::{check_in_guest, Backend, Guest, GuestCheck, Local, Payload};
use cilab::catalog::{self, LabSpec};
use cilab::cgroup::{self, CgroupSetup, RunCgroup};
use cilab::progress::Progress;
use cilab::registry::{self, Attempt};
use cilab::report::{LabReport, Report};
use cilab::run::{Fault, RunOptions};
use cilab::{doctor, labbuild, run};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// cilab: build a container out of kernel primitives, one lab at a time, and let the
/// harness check from outside what the kernel really did.
///
/// Each lab is a small program (labs/<name>) that you can read top to bottom and run by
/// hand. `cilab run <lab>` runs it for you with narration; `cilab check <lab>` runs it
/// under the harness, which holds it at each stage, looks at /proc, namespaces, mounts
/// and cgroups from the host, and grades what it sees. The labs need root: use a VM.
#[derive(Parser)]
#[command(
    name = "cilab",
    version,
    propagate_version = true,
    after_help = "A first session (as root, in a VM):
  cilab doctor                    is this machine ready, and did anything leak?
  cilab list                      the labs, in course order
  cilab run chroot-jail --step    walk through lab 1, Enter before each step
  cilab check chroot-jail         grade it: what did the kernel really do?
  cilab check --all --format json the whole course, for a grader

Each lab has a sheet: labs/<name>/README.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the labs in course order, with your best and last points for each and what
    /// to do next.
    List {
        /// Show the attempts kept for this source tree (the last 10 per lab, newest last),
        /// of every lab or of LAB.
        #[arg(long, value_name = "LAB", num_args = 0..=1)]
        history: Option<Option<String>>,
    },
    /// The hint of the first verdict your last `cilab check <lab>` failed; each call shows
    /// the next one, then starts over. A new check starts over too.
    Hint {
        /// The lab's name, as `cilab list` shows it.
        lab: String,
    },
    /// Put a lab's STUDENT regions in labs/<lab>/src/main.rs back to the starter
    /// (`todo!("<hint>")`), after saving your file in .cilab-backups/<lab>/ (it says how to
    /// restore it). Code outside the regions stays. Needs the source tree.
    Reset {
        /// The lab's name, as `cilab list` shows it.
        lab: String,
        /// Only this region (its name is on its `// STUDENT: begin` line).
        #[arg(long, value_name = "NAME")]
        region: Option<String>,
        /// Show what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check a lab, then again each time its source is saved: the table, and what changed
    /// since the check before (verdicts fixed or broken, points). Ctrl-C ends it.
    Watch {
        /// The lab's name, as `cilab list` shows it.
        lab: String,
        /// As for `cilab check`.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        hold_timeout: Option<u64>,
    },
    /// Run a lab for a person: each step narrated with its syscall and shell equivalent.
    Run {
        /// The lab's name, as `cilab list` shows it.
        lab: String,
        /// Pause before each step until you press Enter.
        #[arg(long)]
        step: bool,
        /// Run one of the lab's variants instead (`cilab list` names them), e.g.
        /// `--variant docker` joins a real Docker container.
        #[arg(long, value_name = "NAME")]
        variant: Option<String>,
        /// Do not rebuild the lab binaries with cargo first.
        #[arg(long)]
        no_build: bool,
        /// Let labs that break isolation on purpose (chroot-escape) run although this
        /// machine does not look disposable (see `cilab doctor`): their escapes reach this
        /// host's root. They only read, but a mistake in a lab could do more.
        #[arg(long = "allow-jailbreak-on-this-host")]
        allow_jailbreak: bool,
        #[command(flatten)]
        vm: VmArgs,
    },
    /// Grade labs: run each under the harness and check from outside what the kernel did.
    /// Exits 0 when every verdict passed, 1 when one failed, 2 when cilab could not run.
    Check {
        /// Labs to check (see `cilab list`).
        labs: Vec<String>,
        /// Check every lab.
        #[arg(long, conflicts_with = "labs")]
        all: bool,
        /// How to print the report: a table for people; JSON for tools (the source of
        /// truth, the others are made from it); JUnit XML for CI test reporters (a suite
        /// per lab, a case per verdict); Markdown for CI job summaries; Gradescope's
        /// results.json. Whatever the format, with $GITHUB_STEP_SUMMARY set the Markdown
        /// summary is also added to that file.
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Also write the same report in every format into DIR (made if missing):
        /// report.json, junit.xml, summary.md and Gradescope's results.json. CI runs the
        /// check once and publishes each.
        #[arg(long, value_name = "DIR")]
        save: Option<std::path::PathBuf>,
        /// Run each lab this many times in a row (a soak: every run must pass and leak nothing).
        #[arg(long, default_value_t = 1, value_name = "N")]
        repeat: u32,
        /// Do not rebuild the lab binaries with cargo first.
        #[arg(long)]
        no_build: bool,
        /// How long a lab may take to reach each of its stages before its run is stopped as
        /// hung (default 10 s; in a qemu guest that emulates its CPU, TCG, 60 s). Raise it
        /// on a slow machine, such as a VM without KVM. The labs' own waits for their
        /// children stretch with it (CILAB_LAB_DEADLINE).
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        hold_timeout: Option<u64>,
        /// Break a run on purpose, for cilab's own tests: kill-lab-at:<stage> or hang-at:<stage>.
        #[arg(long, hide = true, value_parser = parse_fault)]
        fault: Option<Fault>,
        /// Let labs that break isolation on purpose (chroot-escape) run although this
        /// machine does not look disposable (see `cilab doctor`): their escapes reach this
        /// host's root. They only read, but a mistake in a lab could do more.
        #[arg(long = "allow-jailbreak-on-this-host")]
        allow_jailbreak: bool,
        /// In cilab's qemu guest: read a key on stdin, keep the labs away from this
        /// process, and seal the JSON report with the key (the host checks the seal).
        #[arg(long, hide = true)]
        sealed: bool,
        #[command(flatten)]
        vm: VmArgs,
    },
    /// Grade a class: each submission (a student's tree, or a .tar/.tar.gz/.tgz of it, in
    /// SUBMISSIONS) with this cilab's own harness and checks. Only the lab sources
    /// (labs/<lab>/src/**/*.rs) are taken from a submission; what it changed elsewhere is
    /// ignored and noted. Each is built here (environment cleared) and run in its own
    /// throwaway qemu guest, sealed. Results: a class table here; class.csv, class.md and
    /// per student (students/<name>/) every report format and the build logs in --out.
    /// Exits 0 when every submission was graded (whatever its score), 2 when any was not
    /// (its guest failed twice, grading stopped), after writing every result.
    Grade {
        /// A directory of submissions: student trees and/or tarballs of them.
        submissions: std::path::PathBuf,
        /// Grade only these labs (default: every lab).
        #[arg(long, num_args = 1.., value_name = "LAB")]
        labs: Vec<String>,
        /// Where the results go.
        #[arg(long, value_name = "DIR", default_value = "cilab-grades")]
        out: std::path::PathBuf,
        /// How many submissions at once (default: the number of cores).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
        jobs: Option<u64>,
        /// Where the students' labs run.
        #[arg(long, value_enum, default_value_t = GradeBackend::Qemu)]
        backend: GradeBackend,
        /// What to print: the class table; JSON of every grade (with each report); JUnit
        /// XML (a suite per student and lab); the Markdown summary; Gradescope's
        /// results.json per student.
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// The kernel the guests boot (qemu); default: the newest /boot/vmlinuz-*.
        #[arg(long, value_name = "PATH")]
        kernel: Option<std::path::PathBuf>,
    },
    /// A root shell in a throwaway VM with every lab on PATH (`cilab list`, `lab-pid-ns`,
    /// `cilab check --all`): do the labs by hand without touching this machine. `exit`
    /// or `poweroff -f` ends it; nothing of it is kept.
    Shell {
        /// Do not rebuild the lab binaries with cargo first.
        #[arg(long)]
        no_build: bool,
        #[command(flatten)]
        vm: VmArgs,
    },
    /// Inside cilab's qemu guest: serve the host's requests on the control port.
    #[command(hide = true)]
    GuestAgent,
    /// For course authors: write the student handout of this tree into DIR.
    ///
    /// The handout is a fresh tree, not a clone (no .git, no history to dig answers from):
    /// the workspace with every STUDENT region's body replaced by `todo!("<its hint>")`,
    /// so that it builds and each lab stops at the first region left to write; the lab
    /// sheets (labs/*/README.md), the fixtures, the Vagrantfile and vagrant/, and the
    /// harness that grades it. Nothing of the solution: the mistake corpus
    /// (harness/src/mistakes/<lab>.rs, whose edits quote the solution) is written as an
    /// empty list, and files whose first line is `//! Course authors only` (tests that
    /// read the corpus) are left out. It gets a README for students instead of this one.
    #[command(after_help = "Example (then prove the course sound with `cilab dev check`):
  cilab handout --out ../student-tree
  cd ../student-tree && cargo build --workspace --offline && git init")]
    Handout {
        /// Where to write the handout: a new or empty directory, outside this tree.
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
    /// Tools for course authors (the mistake corpus, the proof that the course is sound).
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
    /// Check this machine: root, kernel, cgroups (v1, v2 or hybrid), user namespaces,
    /// busybox, whether it is a disposable VM, and leftovers of interrupted runs.
    Doctor {
        /// Kill and remove what interrupted runs left behind.
        #[arg(long)]
        clean: bool,
        /// How to print the report: a table for people, JSON for tools.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// For course authors: proofs that the course is sound.
#[derive(Subcommand)]
enum DevCommand {
    /// Run the mistake corpus: for every STUDENT region, typical mistakes and lies (the
    /// region left as `todo!()`, a missing flag, the wrong order, a faked outcome), each
    /// built in a copy of this tree, graded, and run by hand. Each must fail the verdict
    /// named for it and show its region's hint, and leave nothing behind. Exits 0 when
    /// every entry is caught, 1 otherwise. Needs the source tree and cargo.
    Corpus {
        /// Labs whose entries to run (default: all).
        labs: Vec<String>,
        /// Only the entries whose name contains this text.
        #[arg(long, value_name = "TEXT")]
        only: Option<String>,
        /// How to print the results: a table for people, JSON for tools.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Prove the course sound (CI runs it): every region has a hint; every verdict is on
    /// its sheet; the handout builds (in target/cilab-handout); each lab's starter fails
    /// its graded verdicts with its regions' hints (the handout's lab binaries, graded by
    /// this tree's harness); each solution passes; the mistake corpus is caught (see `dev
    /// corpus`: minutes). Prints a line per check; exits 0 when every line passes, 1
    /// otherwise (a SKIPPED line is not a pass), 2 when it could not run (not root, or in
    /// a student handout, which has no corpus).
    Check {
        /// Leave the mistake corpus out, for speed: its line says SKIPPED, and the exit
        /// code is 1 however the rest went.
        #[arg(long)]
        skip_corpus: bool,
        /// How to print the results: a table for people, JSON for tools (each check, and
        /// each corpus entry's result).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// Where the labs run.
#[derive(Args, Clone)]
struct VmArgs {
    /// `local`: on this machine, as root. The others run the same check in a VM and read
    /// the same report back. `qemu`: a throwaway guest cilab boots from a kernel of this
    /// machine and an initramfs it builds (needs qemu-system-x86 and a kernel in /boot; see
    /// `cilab doctor`). `vagrant`: the VM of the repository's Vagrantfile, already up
    /// (`vagrant up`), reached with `vagrant ssh`. `multipass`: the instance launched with
    /// vagrant/cloud-init.yaml (`cilab`, or the one CILAB_MULTIPASS_INSTANCE names), reached
    /// with `multipass exec`. Vagrant and Multipass rebuild the labs in the VM from its copy
    /// of the tree first, unless --no-build.
    #[arg(long, value_enum, default_value_t = BackendChoice::Local)]
    backend: BackendChoice,
    /// The guest's cgroup layout (qemu): pure v2, v1, or hybrid (v1 controllers and
    /// cgroup2 at /sys/fs/cgroup/unified).
    #[arg(long, value_enum, default_value_t = LayoutChoice::V2)]
    cgroup: LayoutChoice,
    /// The kernel the guest boots (qemu); default: the newest /boot/vmlinuz-*.
    #[arg(long, value_name = "PATH")]
    kernel: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Local,
    Qemu,
    Vagrant,
    Multipass,
}

/// Where `cilab grade` runs the students' labs.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GradeBackend {
    /// Each submission in a throwaway qemu guest of its own, its report sealed.
    Qemu,
    /// UNSAFE: the students' code runs as root on this machine.
    Local,
}

#[derive(Clone, Copy, ValueEnum)]
enum LayoutChoice {
    V1,
    Hybrid,
    V2,
}

impl VmArgs {
    fn qemu_options(&self, terminal: bool) -> qemu::Options {
        qemu::Options {
            kernel: self.kernel.clone(),
            cgroup: match self.cgroup {
                LayoutChoice::V1 => CgroupLayout::V1,
                LayoutChoice::Hybrid => CgroupLayout::Hybrid,
                LayoutChoice::V2 => CgroupLayout::V2,
            },
            terminal,
            ..qemu::Options::default()
        }
    }

    /// --cgroup and --kernel mean something only in a guest.
    fn qemu_only_flags(&self) -> Result<()> {
        if self.backend != BackendChoice::Qemu && (self.kernel.is_some() || !matches!(self.cgroup, LayoutChoice::V2)) {
            bail!("--cgroup and --kernel choose a guest's: use them with --backend qemu");
        }
        Ok(())
    }

    /// Vagrant's and Multipass's VMs are the student's own, with a terminal of their own.
    fn not_a_session_vm(&self, command: &str) -> Result<()> {
        let (name, enter) = match self.backend {
            BackendChoice::Vagrant => ("vagrant", "vagrant ssh"),
            BackendChoice::Multipass => ("multipass", "multipass shell cilab"),
            BackendChoice::Local | BackendChoice::Qemu => return Ok(()),
        };
        bail!(
            "`cilab {command} --backend {name}`: that VM is yours to log in to: `{enter}`, then \
             `sudo cilab {command} ...` there (`--backend qemu` boots a throwaway one for you)"
        )
    }
}

/// Every lab's binary and tools: one guest image serves check, run and shell alike.
fn guest_payload(no_build: bool) -> Result<Payload> {
    let labs: Vec<&LabSpec> = catalog::all().iter().collect();
    let binaries = labbuild::ensure_built(&labs, no_build)?;
    Ok(Payload::for_labs(&labs, &binaries)?)
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// The formats of `cilab check`'s report (see `cilab::formats`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Table,
    Json,
    Junit,
    Markdown,
    Gradescope,
}

fn parse_fault(text: &str) -> Result<Fault, String> {
    match text.split_once(':') {
        Some(("kill-lab-at", stage)) => Ok(Fault::KillLabAt(stage.to_string())),
        Some(("hang-at", stage)) => Ok(Fault::HangAt(stage.to_string())),
        _ => Err("expected kill-lab-at:<stage> or hang-at:<stage>".into()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = dispatch(cli.command);
    // After an interrupt this never returns: the handler ends cilab.
    may_finish();
    for problem in cgroup::harness::leave() {
        let _ = writeln!(std::io::stderr(), "cilab: warning: {problem} (`cilab doctor --clean` removes what stays)");
    }
    match result {
        Ok(code) => code,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "cilab: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// How cilab ends is decided once, by whoever comes first: the interrupt handler (exit
/// 130, nothing graded: no result saved, no report printed) or the main thread with a
/// complete report (saved and printed, its own exit status; a later Ctrl-C is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Running,
    Interrupted,
    Finishing,
}

struct End {
    ending: Ending,
    /// The main thread is parked in `may_finish`: it touches nothing any more.
    main_parked: bool,
}

static END: Mutex<End> = Mutex::new(End { ending: Ending::Running, main_parked: false });
static END_CHANGED: Condvar = Condvar::new();
/// Set by the signal handler itself, the instant the signal is delivered: the handler
/// thread may be scheduled a moment later, and the interrupt is taken from the delivery.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

fn end() -> MutexGuard<'static, End> {
    END.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The main thread calls this before it saves or prints anything. Once an interrupt is
/// taken it parks here for good, and the handler exits.
fn may_finish() {
    let mut end = end();
    if end.ending == Ending::Running && SIGNALLED.load(Ordering::SeqCst) && !run::BY_HAND.load(Ordering::SeqCst) {
        end.ending = Ending::Interrupted;
    }
    if end.ending == Ending::Interrupted {
        end.main_parked = true;
        END_CHANGED.notify_all();
        loop {
            end = END_CHANGED.wait(end).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
    end.ending = Ending::Finishing;
}

/// How long the handler waits for the main thread to tear its runs down once their labs
/// are killed; it then removes them itself (a main thread stuck in a build or a fault).
const MAIN_GRACE: Duration = Duration::from_secs(3);

/// Ctrl-C, SIGTERM, a closed terminal: kill and remove every run in progress, then exit
/// 130. While a person runs a lab by hand, the lab gets Ctrl-C itself and cilab cleans
/// after it. Without its thread cilab could not clean up: not starting it is an error.
fn install_interrupt_handler() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];
    let mut signals = signal_hook::iterator::Signals::new(SIGNALS).context("installing the handler for Ctrl-C")?;
    let spawned = std::thread::Builder::new().name("cilab-interrupt".into()).spawn(move || {
        for signal in signals.forever() {
            if run::BY_HAND.load(Ordering::SeqCst) {
                continue;
            }
            {
                let mut end = end();
                if end.ending == Ending::Finishing {
                    continue;
                }
                end.ending = Ending::Interrupted;
            }
            interrupted(signal);
        }
    });
    match spawned {
        Ok(_) => {
            for signal in SIGNALS {
                // SAFETY: the action is one atomic store, which is async-signal-safe.
                unsafe { signal_hook::low_level::register(signal, || SIGNALLED.store(true, Ordering::SeqCst)) }
                    .context("installing the handler for Ctrl-C")?;
            }
            Ok(())
        }
        Err(error) => {
            let hint = if error.raw_os_error() == Some(libc::EAGAIN) {
                " (the cgroup cilab runs in may be at its pids.max)"
            } else {
                ""
            };
            bail!("could not start cilab's interrupt thread: {error}{hint}")
        }
    }
}

/// The interrupt is taken: nothing new is made, the labs are killed so that the main
/// thread tears its runs down and parks, whatever is left is removed, and cilab exits.
fn interrupted(signal: i32) -> ! {
    registry::close();
    cgroup::harness::close();
    // A guest first: the main thread waits on its answer, and its runs are inside it. Then
    // a `vagrant ssh` or `multipass exec` (and the check it started in the VM).
    let mut cleaned = qemu::kill_all();
    cleaned.extend(command::kill_all());
    cleaned.extend(cilab::grade::kill_builds());
    let me = std::process::id() as i32;
    let records: Vec<registry::RunRecord> =
        registry::all_records().into_iter().flatten().filter(|r| r.owner_pid == me).collect();
    let runs: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    let deadline = Instant::now() + MAIN_GRACE;
    let mut killed: Vec<String> = Vec::new();
    loop {
        // Again each time: a lab the main thread had forked just before `close` is killed too.
        let labs = RunCgroup { dirs: cgroup::harness::own_run_dirs(), limits_applied: Vec::new() };
        killed.extend(run::commands_in(&labs));
        let _ = labs.kill_all(Duration::from_secs(1));
        let end = end();
        let left = deadline.saturating_duration_since(Instant::now());
        let (end, _) = END_CHANGED
            .wait_timeout_while(end, left.min(Duration::from_millis(50)), |end| !end.main_parked)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if end.main_parked || left.is_zero() {
            break;
        }
    }
    let aborted = run::abort_all();
    cleaned.extend(doctor::clean_own());
    // What the runs' labs made outside them (a Docker container), which killing and
    // removing the runs does not reach; the records said which labs and scratch dirs.
    for record in &records {
        if let Ok(lab) = catalog::find(&record.lab) {
            cleaned.extend((lab.observer)().clean_up_outside(&record.scratch, &killed));
        }
    }
    let problems = cgroup::harness::leave();
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "\ncilab: interrupted (signal {signal}): nothing graded or saved; runs removed: {runs:?}");
    for line in aborted.iter().map(|id| format!("aborted {id}")).chain(cleaned).chain(problems) {
        let _ = writeln!(stderr, "cilab: {line}");
    }
    std::process::exit(130)
}

fn dispatch(command: Command) -> Result<ExitCode> {
    // Every command that runs labs tears them down on Ctrl-C.
    if matches!(
        command,
        Command::Run { .. }
            | Command::Check { .. }
            | Command::Dev { .. }
            | Command::Shell { .. }
            | Command::Watch { .. }
            | Command::Grade { .. }
    ) {
        install_interrupt_handler()?;
    }
    match command {
        Command::List { history: None } => list(),
        Command::List { history: Some(lab) } => history(lab.as_deref()),
        Command::Hint { lab } => hint(&lab),
        Command::Reset { lab, region, dry_run } => reset(&lab, region.as_deref(), dry_run),
        Command::Watch { lab, hold_timeout } => watch(&lab, hold_timeout),
        Command::Run { lab, step, variant, no_build, allow_jailbreak, vm } => {
            vm.qemu_only_flags()?;
            vm.not_a_session_vm("run")?;
            if vm.backend == BackendChoice::Qemu {
                return run_in_guest(&lab, step, variant.as_deref(), no_build, &vm);
            }
            if allow_jailbreak {
                cilab::checks::chroot_escape::allow_jailbreak();
            }
            run_by_hand(&lab, step, variant.as_deref(), no_build)
        }
        Command::Check {
            labs,
            all,
            format,
            save,
            repeat,
            no_build,
            hold_timeout,
            fault,
            allow_jailbreak,
            sealed,
            vm,
        } => {
            // First, before anything runs: the key, then the walls around this process.
            let seal = if sealed {
                if format != ReportFormat::Json || vm.backend != BackendChoice::Local || save.is_some() {
                    bail!("--sealed is for cilab's qemu guest: with --format json, the local backend, no --save");
                }
                Some(cilab::backend::seal::enter_sealed_mode().context("entering sealed mode")?)
            } else {
                None
            };
            vm.qemu_only_flags()?;
            if allow_jailbreak {
                cilab::checks::chroot_escape::allow_jailbreak();
            }
            let mut options = RunOptions { fault, ..RunOptions::default() };
            let guest_hold_timeout = hold_timeout.map(Duration::from_secs);
            if let Some(hold_timeout) = guest_hold_timeout {
                options.hold_timeout = hold_timeout;
            }
            check(&labs, all, (format, save), repeat, no_build, (options, guest_hold_timeout, seal), &vm)
        }
        Command::Shell { no_build, vm } => shell(no_build, &vm),
        Command::Grade { submissions, labs, out, jobs, backend, format, kernel } => {
            grade(&submissions, &labs, &out, jobs, backend, format, kernel)
        }
        Command::GuestAgent => {
            cilab::backend::agent::serve()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { clean, format } => doctor_command(clean, format),
        Command::Handout { out } => handout(&out),
        Command::Dev { command } => {
            if cilab::mistakes::HANDOUT {
                eprintln!(
                    "cilab: this is a student handout: the mistake corpus and `cilab dev` are in the course \
                     author's tree"
                );
                return Ok(ExitCode::from(2));
            }
            match command {
                DevCommand::Corpus { labs, only, format } => corpus(&labs, only.as_deref(), format),
                DevCommand::Check { skip_corpus, format } => dev_check(skip_corpus, format),
            }
        }
    }
}

fn list() -> Result<ExitCode> {
    let results = registry::load_results();
    let show = cilab::student::show_attempt;
    println!("{:<3} {:<13} {:<36} {:<18} best", "#", "lab", "title", "last result");
    for lab in catalog::all() {
        match (results.last(lab.name), results.best(lab.name)) {
            (Some(last), Some(best)) => {
                println!("{:<3} {:<13} {:<36} {:<18} {}", lab.order, lab.name, lab.title, show(last), show(best))
            }
            _ => println!(
                "{:<3} {:<13} {:<36} not checked yet ({} points)",
                lab.order,
                lab.name,
                lab.title,
                lab.max_points()
            ),
        }
        println!("    {}", lab.summary);
        for variant in lab.variants {
            let here = match (variant.available)() {
                Ok(()) => String::new(),
                Err(why) => format!(" (not on this machine: {why})"),
            };
            println!("    variant `{}`: cilab run {} --variant {}{here}", variant.name, lab.name, variant.name);
        }
    }
    match &results.tree {
        Some(tree) => println!("\nResults of the source tree at {}.", tree.path.display()),
        None if registry::SourceTree::of_this_cilab().is_none() => {
            println!("\nResults of this cilab, which runs without its source tree.")
        }
        None => {}
    }
    let labs = catalog::all();
    let done = labs.iter().filter(|lab| cilab::student::done(lab, &results)).count();
    println!("\nProgress: {done} of {} labs passed with full points.", labs.len());
    match cilab::student::next_lab(labs, &results) {
        Some((lab, command)) => println!("NEXT: lab {} {}: {command}", lab.order, lab.name),
        None => println!("Every lab passed with full points."),
    }
    println!("\nRun one by hand: cilab run <lab> --step     Grade: cilab check <lab> | --all");
    println!("Stuck: cilab hint <lab>     Start a lab over: cilab reset <lab>     History: cilab list --history");
    Ok(ExitCode::SUCCESS)
}

/// `cilab list --history [LAB]`.
fn history(name: Option<&str>) -> Result<ExitCode> {
    let labs: Vec<&LabSpec> = match name {
        Some(name) => vec![catalog::find(name)?],
        None => catalog::all().iter().collect(),
    };
    let results = registry::load_results();
    print!("{}", cilab::student::history_text(&labs, &results));
    match &results.tree {
        Some(tree) => println!("\nAttempts in the source tree at {} (times in UTC).", tree.path.display()),
        None => println!("\nNo attempt saved for this tree yet: `cilab check <lab>` saves one."),
    }
    Ok(ExitCode::SUCCESS)
}

/// `cilab hint <lab>`: the next hint of the last check's failures.
fn hint(name: &str) -> Result<ExitCode> {
    use registry::HintStep;
    let lab = catalog::find(name)?;
    let when = cilab::student::format_time;
    match registry::next_hint(lab.name)? {
        HintStep::NoCheck => {
            println!("Lab {} was not checked yet in this tree: run `cilab check {}` first.", lab.name, lab.name);
            let root = labbuild::workspace_root();
            if let Some(region) = cilab::student::regions_in(root.as_deref(), lab)?.first() {
                println!(
                    "\nMeanwhile, the hint of its first STUDENT region, `{}` (labs/{}/src/main.rs line {}), from the source:\n  {}",
                    region.name, lab.name, region.begin_line, region.hint
                );
            }
        }
        HintStep::NothingFailed { when: at } => {
            println!("Your last check of {} ({}) failed nothing: no hint needed.", lab.name, when(at));
        }
        HintStep::Failing { verdict, index, of, when: at } => {
            println!("Hint {} of {} from your last check of {} ({}):", index + 1, of, lab.name, when(at));
            println!("\nFAILED  {}: {}", verdict.id, verdict.claim);
            if let Some(seen) = &verdict.seen {
                println!("  seen: {seen}");
            }
            println!("  hint: {}", verdict.hint);
            if index + 1 < of {
                println!("\n`cilab hint {}` again shows the next one.", lab.name);
            }
        }
        HintStep::NoMore { of, when: at } => {
            println!(
                "No more hints: that was all {of} failing verdicts of your last check of {} ({}). \
                 The next `cilab hint {}` starts over; `cilab check {}` again once you have changed your code.",
                lab.name,
                when(at),
                lab.name,
                lab.name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cilab reset <lab> [--region NAME] [--dry-run]`.
fn reset(name: &str, region: Option<&str>, dry_run: bool) -> Result<ExitCode> {
    let lab = catalog::find(name)?;
    let root = labbuild::workspace_root().with_context(|| {
        format!(
            "cilab reset edits labs/{}/src/main.rs of the source tree cilab was built from, and that tree is \
             not here: run it from your clone (`cargo run -p cilab -- reset {}`)",
            lab.name, lab.name
        )
    })?;
    let plan = cilab::student::plan_reset(&root, lab, region)?;
    let source = plan.source.display();
    if plan.changed.is_empty() {
        println!("Nothing to reset: every region asked for in {source} is the starter already.");
        return Ok(ExitCode::SUCCESS);
    }
    for (name, before, starter) in &plan.changed {
        println!("region `{name}`:");
        for line in before.lines() {
            println!("-    {line}");
        }
        println!("+    {starter}");
    }
    if dry_run {
        println!("\n(dry run: {source} is unchanged; without --dry-run these regions become the starter)");
        return Ok(ExitCode::SUCCESS);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let backup = cilab::student::apply_reset(&root, lab, &plan, now)?;
    println!(
        "\nReset {} region(s) of {source} to the starter. Your file was saved first as\n  {}\nTo restore it: cp {} {source}",
        plan.changed.len(),
        backup.display(),
        backup.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_by_hand(name: &str, step: bool, variant: Option<&str>, no_build: bool) -> Result<ExitCode> {
    let lab = catalog::find(name)?;
    let args = match variant.map(|v| lab.variant(v)).transpose()? {
        Some(variant) => {
            if let Err(why) = (variant.available)() {
                bail!("lab {} cannot run its variant `{}` here: {why}", lab.name, variant.name);
            }
            variant.args
        }
        None => cilab::checks::chroot_escape::extra_args(lab.name),
    };
    if let Err(why) = (lab.available)() {
        bail!("lab {} cannot run here: {why}", lab.name);
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(cilab::Error::NotRoot.into());
    }
    let binaries = labbuild::ensure_built(&[lab], no_build)?;
    let setup = CgroupSetup::detect()?;
    let teardown = run::run_by_hand(
        lab,
        &binaries.join(lab.binary),
        &setup,
        run::ByHand { pause_each_step: step, args, ..run::ByHand::default() },
    )?;
    for leak in &teardown.leaks {
        eprintln!("cilab: LEAK: {leak} (cleaned up)");
    }
    let success = teardown.exit.is_some_and(|s| s.success());
    if success {
        println!("\nNext: `cilab check {}` grades it from outside.", lab.name);
    }
    Ok(if success && teardown.leaks.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `cilab watch <lab>`: a check, then another after each save of the lab's source, until
/// Ctrl-C (which tears a check in progress down, as in `cilab check`).
fn watch(name: &str, hold_timeout: Option<u64>) -> Result<ExitCode> {
    use cilab::student::{SourceWatch, Woken};
    use std::io::IsTerminal;
    use std::os::fd::AsFd;
    let lab = catalog::find(name)?;
    if lab.needs.root && !nix::unistd::geteuid().is_root() {
        return Err(cilab::Error::NotRoot.into());
    }
    let root = labbuild::workspace_root().with_context(|| {
        format!(
            "cilab watch rebuilds lab {} from its source tree, and the tree cilab was built from is not here",
            lab.name
        )
    })?;
    let src = root.join("labs").join(lab.name).join("src");
    let watcher = SourceWatch::new(&src)?;
    // Ctrl-C also wakes the wait for a save (the interrupt thread does the rest).
    let (interrupt, interrupt_writer) = std::os::unix::net::UnixStream::pair().context("making Ctrl-C's pipe")?;
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        let writer = interrupt_writer.try_clone().context("making Ctrl-C's pipe")?;
        signal_hook::low_level::pipe::register(signal, writer).context("installing the handler for Ctrl-C")?;
    }
    let mut options = RunOptions::default();
    if let Some(seconds) = hold_timeout {
        options.hold_timeout = Duration::from_secs(seconds);
    }
    let terminal = std::io::stdout().is_terminal();
    let mut previous: Option<LabReport> = None;
    let mut saved: Vec<String> = Vec::new();
    loop {
        let checked =
            labbuild::ensure_built(&[lab], false).and_then(|binaries| Local::new(binaries)?.check(lab, &options));
        // The check is over: from here to `resume` a Ctrl-C waits (after one, this never returns).
        may_finish();
        if terminal {
            print!("\x1b[2J\x1b[H");
        } else {
            println!("==== cilab watch {} ====", lab.name);
        }
        match saved.as_slice() {
            [] => println!("cilab watch {}: first check", lab.name),
            names => println!("cilab watch {}: checked again after a save of {}", lab.name, names.join(", ")),
        }
        match checked {
            Ok(report) => {
                if report.harness_failure.is_none() {
                    save_attempts(std::slice::from_ref(&report));
                }
                print!("{}", Report::new(vec![report.clone()]).to_table());
                println!("\nWhat changed:");
                print!("{}", cilab::student::changes(previous.as_ref(), &report));
                previous = Some(report);
            }
            Err(cilab::Error::Build(errors)) => {
                println!("\nBUILD FAILED: fix it and save again (nothing was checked).\n{errors}");
            }
            Err(error) => println!("\nThe check could not run: {error}"),
        }
        println!("\nWatching {} for saves. Ctrl-C ends.", src.display());
        let _ = std::io::stdout().flush();
        if !resume() {
            return Ok(ExitCode::from(130));
        }
        match watcher.wait_for_save(interrupt.as_fd())? {
            Woken::Saved(names) => saved = names,
            Woken::Interrupted => {
                // The interrupt thread has it: this parks, and cilab exits 130.
                may_finish();
                return Ok(ExitCode::from(130));
            }
        }
    }
}

/// After `may_finish`, lets a Ctrl-C tear the next check down again (`cilab watch`). False
/// when one came meanwhile: nothing runs, and cilab ends.
fn resume() -> bool {
    let mut end = end();
    if SIGNALLED.load(Ordering::SeqCst) {
        let _ = writeln!(std::io::stderr(), "\ncilab: interrupted: nothing was running");
        return false;
    }
    end.ending = Ending::Running;
    true
}

/// In a qemu guest (`--sealed`): the key the report is sealed with, and what the guest did
/// to keep the labs away from it.
type Sealing = (SealKey, Vec<String>);

fn check(
    names: &[String],
    all: bool,
    // How to print the report, and where to write it in every format (--save).
    (format, save): (ReportFormat, Option<std::path::PathBuf>),
    repeat: u32,
    no_build: bool,
    // The run's options, `--hold-timeout` as given (a guest picks its own default), and
    // the key to seal the report with (in a qemu guest, `--sealed`).
    (options, hold_timeout, seal): (RunOptions, Option<Duration>, Option<Sealing>),
    vm: &VmArgs,
) -> Result<ExitCode> {
    let labs: Vec<&'static LabSpec> = if all {
        catalog::all().iter().collect()
    } else if names.is_empty() {
        bail!("name the labs to check, or --all (`cilab list` shows them)");
    } else {
        names.iter().map(|n| catalog::find(n)).collect::<Result<_, _>>()?
    };
    if vm.backend == BackendChoice::Local && labs.iter().any(|l| l.needs.root) && !nix::unistd::geteuid().is_root() {
        return Err(cilab::Error::NotRoot.into());
    }
    if let Some(Fault::KillLabAt(stage) | Fault::HangAt(stage)) = &options.fault {
        if let Some(lab) = labs.iter().find(|l| !l.every_stage().contains(&stage.as_str())) {
            bail!(
                "--fault names stage `{stage}`, which lab {} does not have: {}",
                lab.name,
                lab.every_stage().join(", ")
            );
        }
    }
    let mut reports = Vec::new();
    match vm.backend {
        BackendChoice::Qemu => {
            // The host builds and sends every binary: the guest builds nothing.
            let payload = guest_payload(no_build)?;
            let mut guest = Qemu::new(vm.qemu_options(false))?;
            let _progress = Progress::spinner("qemu guest: booting and checking");
            let check = GuestCheck {
                labs: labs.clone(),
                repeat: repeat.max(1),
                fault: options.fault.clone(),
                build: false,
                hold_timeout,
                sealed: false,
            };
            reports = check_in_guest(&mut guest, &payload, &check);
        }
        BackendChoice::Vagrant | BackendChoice::Multipass => {
            // The VM built (or was given) its own binaries at provisioning: nothing is
            // built or sent from here. Unless --no-build, the guest builds the labs again
            // from its copy of the tree first (Vagrant: `vagrant rsync` brings the edits),
            // so the check grades the student's latest edits.
            let check = GuestCheck {
                labs: labs.clone(),
                repeat: repeat.max(1),
                fault: options.fault.clone(),
                build: !no_build,
                hold_timeout,
                sealed: false,
            };
            reports = if vm.backend == BackendChoice::Vagrant {
                check_in_guest(&mut Vagrant::new().syncing_tree(!no_build), &Payload::default(), &check)
            } else {
                check_in_guest(&mut Multipass::new(), &Payload::default(), &check)
            };
        }
        BackendChoice::Local => {
            let binaries = labbuild::ensure_built(&labs, no_build)?;
            let backend = Local::new(binaries)?;
            let progress = if labs.len() > 1 || repeat > 1 {
                Progress::bar(labs.len() * repeat.max(1) as usize)
            } else {
                Progress::spinner(format!("checking {}", labs.iter().map(|l| l.name).collect::<Vec<_>>().join(", ")))
            };
            for lab in &labs {
                for _ in 0..repeat.max(1) {
                    progress.step(lab.name);
                    let report = backend.check(lab, &options).with_context(|| format!("checking lab {}", lab.name))?;
                    reports.push(report);
                    progress.advance();
                }
            }
        }
    }
    // The report is complete: from here a Ctrl-C no longer stops cilab (after one, this
    // never returns).
    may_finish();
    // A run broken on purpose (cilab's own tests) is not the student's result, and
    // neither is a run the harness itself could not finish.
    if options.fault.is_none() {
        let graded: Vec<LabReport> = reports.iter().filter(|r| r.harness_failure.is_none()).cloned().collect();
        save_attempts(&graded);
    }
    let report = Report::new(reports);
    match format {
        ReportFormat::Table => print!("{}", report.to_table()),
        ReportFormat::Json => {
            let json = report.to_json();
            println!("{json}");
            if let Some((key, hardening)) = &seal {
                println!("{}", key.trailer(&json, hardening));
            }
        }
        ReportFormat::Junit => print!("{}", cilab::formats::to_junit(&report)),
        ReportFormat::Markdown => print!("{}", cilab::formats::to_markdown(&report)),
        ReportFormat::Gradescope => {
            println!("{}", serde_json::to_string_pretty(&cilab::formats::to_gradescope(&report))?)
        }
    }
    // A CI job's summary page (GitHub Actions sets the variable to a file of the job's).
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|_| seal.is_none()) {
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&summary)
            .and_then(|mut file| file.write_all(cilab::formats::to_markdown(&report).as_bytes()));
        if let Err(error) = appended {
            let _ = writeln!(
                std::io::stderr(),
                "cilab: warning: could not add the summary to $GITHUB_STEP_SUMMARY ({}): {error}",
                std::path::Path::new(&summary).display()
            );
        }
    }
    if let Some(dir) = &save {
        let written = cilab::formats::write_all(&report, dir)
            .with_context(|| format!("saving the report in every format into {}", dir.display()))?;
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        let _ = writeln!(std::io::stderr(), "cilab: report saved: {}", names.join(", "));
    }
    Ok(if report.harness_failed() {
        // Exit 2: cilab could not do its part; nothing here is the student's result.
        ExitCode::from(2)
    } else if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One attempt per lab and `cilab check`: with --repeat, the worst of its runs (a soak
/// passes only if every run did).
fn save_attempts(reports: &[LabReport]) {
    let when = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut worst: Vec<(String, Attempt, &LabReport)> = Vec::new();
    for report in reports {
        let (points, max_points) = report.points();
        let attempt = Attempt { result: report.result_word().to_string(), points, max_points, when };
        match worst.iter_mut().find(|(lab, _, _)| *lab == report.lab) {
            Some((_, kept, kept_report)) if attempt.points <= kept.points => (*kept, *kept_report) = (attempt, report),
            Some(_) => {}
            None => worst.push((report.lab.clone(), attempt, report)),
        }
    }
    // With its failing verdicts, for `cilab hint`.
    let checks = worst
        .into_iter()
        .map(|(lab, attempt, report)| {
            let failing =
                catalog::find(&lab).map(|spec| cilab::student::failing_verdicts(spec, report)).unwrap_or_default();
            (lab, attempt, failing)
        })
        .collect();
    if let Err(error) = registry::save_checks(checks) {
        let _ = writeln!(std::io::stderr(), "cilab: warning: could not save the results: {error}");
    }
}

/// `cilab run <lab> --backend qemu`: the lab by hand in a throwaway guest, its narration
/// on this terminal.
fn run_in_guest(name: &str, step: bool, variant: Option<&str>, no_build: bool, vm: &VmArgs) -> Result<ExitCode> {
    let lab = catalog::find(name)?;
    if let Some(variant) = variant {
        lab.variant(variant)?;
    }
    let mut argv: Vec<String> = vec!["cilab".into(), "run".into(), lab.name.into(), "--no-build".into()];
    // The guest is thrown away: a lab that breaks isolation on purpose runs there.
    argv.push("--allow-jailbreak-on-this-host".into());
    if step {
        argv.push("--step".into());
    }
    if let Some(variant) = variant {
        argv.extend(["--variant".into(), variant.into()]);
    }
    let status = on_guest_terminal(no_build, vm, &argv)?;
    Ok(ExitCode::from(u8::try_from(status).unwrap_or(1)))
}

/// `cilab shell --backend qemu`.
fn shell(no_build: bool, vm: &VmArgs) -> Result<ExitCode> {
    if vm.backend == BackendChoice::Local {
        bail!("`cilab shell` opens a shell in a throwaway VM: say which, e.g. `cilab shell --backend qemu`");
    }
    vm.not_a_session_vm("shell")?;
    eprintln!(
        "cilab: a root shell in a throwaway guest; `cilab list` shows the labs; `exit` or `poweroff -f` ends it."
    );
    on_guest_terminal(no_build, vm, &["sh".to_string(), "-l".to_string()])?;
    Ok(ExitCode::SUCCESS)
}

/// Boots a guest with its console on this terminal, runs `argv` there, powers it off.
fn on_guest_terminal(no_build: bool, vm: &VmArgs, argv: &[String]) -> Result<i32> {
    if !nix::unistd::geteuid().is_root() {
        return Err(cilab::Error::NotRoot.into());
    }
    let payload = guest_payload(no_build)?;
    let mut guest = Qemu::new(vm.qemu_options(true))?;
    // A person is at the guest's console: Ctrl-C is the guest's (qemu's terminal is raw).
    run::BY_HAND.store(true, Ordering::SeqCst);
    guest.start(&payload)?;
    let status = guest.run_on_terminal(argv);
    let stopped = guest.stop();
    let status = status?;
    stopped?;
    Ok(status)
}

/// `cilab grade`.
fn grade(
    submissions: &std::path::Path,
    names: &[String],
    out: &std::path::Path,
    jobs: Option<u64>,
    backend: GradeBackend,
    format: ReportFormat,
    kernel: Option<std::path::PathBuf>,
) -> Result<ExitCode> {
    use cilab::grade::{self, Where};
    let labs = named_or_every_lab(names)?;
    if !nix::unistd::geteuid().is_root() {
        return Err(cilab::Error::NotRoot.into());
    }
    let workspace = labbuild::workspace_root()
        .context("cilab grade builds each submission in a copy of the source tree cilab was built from")?;
    let (class, skipped) = cilab::submission::discover(submissions)
        .with_context(|| format!("reading the submissions in {}", submissions.display()))?;
    for skip in &skipped {
        eprintln!("cilab grade: skipped {}: {}", skip.entry, skip.why);
    }
    if class.is_empty() {
        bail!(
            "no submissions in {}: student trees (directories) or .tar, .tar.gz, .tgz of them",
            submissions.display()
        );
    }
    // The instructor's labs and their dependencies, which every grading tree starts from.
    let all: Vec<&LabSpec> = catalog::all().iter().collect();
    let binaries = labbuild::ensure_built(&all, false)?;
    if backend == GradeBackend::Local {
        eprintln!("cilab grade: WARNING: --backend local runs the students' code as root on this machine");
    }
    let exclude = [submissions, out].iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect();
    let options = grade::Options {
        labs: labs.clone(),
        jobs: jobs.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |j| j as usize),
        backend: match backend {
            GradeBackend::Qemu => Where::Qemu(qemu::Options { kernel, ..qemu::Options::default() }),
            GradeBackend::Local => Where::Local,
        },
        workspace,
        binaries,
        exclude,
    };
    let started = Instant::now();
    let total = class.len();
    let count = std::sync::atomic::AtomicUsize::new(0);
    let done = |g: &grade::Graded| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        eprintln!("cilab grade: [{n}/{total}] {} {} ({:.0} s)", g.name, g.total(), g.seconds);
    };
    let result = grade::grade_class(class, &options, &done);
    may_finish();
    // Written whatever happened: what was graded is kept, what was not says why.
    let graded = &result.graded;
    grade::write_results(graded, &labs, &skipped, out)
        .with_context(|| format!("writing the results into {}", out.display()))?;
    match format {
        ReportFormat::Table => print!("{}", grade::to_table(graded, &labs)),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&graded)?),
        ReportFormat::Markdown => print!("{}", grade::to_markdown(graded, &labs, &skipped)),
        ReportFormat::Junit => {
            let mut all = Vec::new();
            for g in graded {
                all.extend(g.report.labs.iter().cloned().map(|mut lab| {
                    lab.lab = format!("{}/{}", g.name, lab.lab);
                    lab
                }));
            }
            print!("{}", cilab::formats::to_junit(&Report::new(all)));
        }
        ReportFormat::Gradescope => {
            let each: serde_json::Map<String, serde_json::Value> = graded
                .iter()
                .map(|g| Ok((g.name.clone(), serde_json::to_value(cilab::formats::to_gradescope(&g.report))?)))
                .collect::<Result<_>>()?;
            println!("{}", serde_json::to_string_pretty(&each)?);
        }
    }
    let not_graded = graded.iter().filter(|g| g.not_graded.is_some()).count();
    eprintln!(
        "cilab grade: {} of {total} submissions graded in {:.0} s; results in {}",
        total - not_graded,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    if let Some(error) = &result.stopped {
        eprintln!("cilab grade: grading stopped: {error}");
    }
    if !result.all_graded() {
        eprintln!("cilab grade: {not_graded} submissions NOT graded (see class.md): grade them again");
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// The labs `names` names, in that order; every lab of the catalog when it names none.
fn named_or_every_lab(names: &[String]) -> Result<Vec<&'static LabSpec>> {
    if names.is_empty() {
        return Ok(catalog::all().iter().collect());
    }
    Ok(names.iter().map(|n| catalog::find(n)).collect::<Result<_, _>>()?)
}

fn corpus(names: &[String], only: Option<&str>, format: Format) -> Result<ExitCode> {
    let labs = named_or_every_lab(names)?;
    if !nix::unistd::geteuid().is_root() {
        return Err(cilab::Error::NotRoot.into());
    }
    let workspace = labbuild::workspace_root()
        .context("the mistake corpus needs the source tree cilab was built from (it edits a copy of it)")?;
    // The corpus builds from the tree as it is: the unmutated labs must be built too.
    labbuild::ensure_built(&labs, false)?;
    let results = cilab::corpus::run(&labs, &workspace, only)?;
    for lab in &labs {
        let skipped: Vec<&cilab::corpus::EntryResult> =
            results.iter().filter(|r| r.lab == lab.name && r.skipped.is_some()).collect();
        if let Some(first) = skipped.first() {
            let why = first.skipped.as_deref().unwrap_or_default();
            eprintln!("cilab: {} entries of {} SKIPPED, not run and not caught: {why}", skipped.len(), lab.name);
        }
    }
    match format {
        Format::Table => print!("{}", cilab::corpus::to_table(&results)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&results)?),
    }
    Ok(if results.iter().all(|r| r.ok()) && !results.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn handout(out: &std::path::Path) -> Result<ExitCode> {
    if cilab::mistakes::HANDOUT {
        bail!("this is a student handout already: handouts are written from the course author's tree");
    }
    let workspace = labbuild::workspace_root()
        .context("a handout is written from the source tree cilab was built from, which is not there")?;
    let summary = cilab::handout::write(&workspace, out)
        .with_context(|| format!("writing the handout of {} into {}", workspace.display(), out.display()))?;
    println!(
        "Wrote the handout into {}: {} files, {} STUDENT regions left as todo!(\"<hint>\").",
        out.display(),
        summary.files,
        summary.regions.len()
    );
    println!("Left out or emptied (they quote the solution):");
    for path in &summary.left_out {
        println!("  {}", path.display());
    }
    println!("Next: cd {} && cargo build --workspace --offline", out.display());
    Ok(ExitCode::SUCCESS)
}

fn dev_check(skip_corpus: bool, format: Format) -> Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        return Err(cilab::Error::NotRoot.into());
    }
    let workspace = labbuild::workspace_root()
        .context("`cilab dev check` needs the source tree cilab was built from (it writes and builds its handout)")?;
    let labs: Vec<&'static LabSpec> = catalog::all().iter().collect();
    let solutions = labbuild::ensure_built(&labs, false)?;
    let result = cilab::devcheck::run(&workspace, &solutions, skip_corpus)?;
    may_finish();
    match format {
        Format::Table => print!("{}", result.to_table()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&result)?),
    }
    if skip_corpus {
        eprintln!("cilab: the mistake corpus was SKIPPED (--skip-corpus): this is not a passing dev check");
    }
    Ok(if result.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn doctor_command(clean: bool, format: Format) -> Result<ExitCode> {
    let mut report = doctor::examine();
    if clean && !report.leftovers.is_empty() {
        for line in doctor::clean(&report) {
            eprintln!("cilab doctor: {line}");
        }
        report = doctor::examine();
    }
    if clean {
        // The qemu backend's images are a cache: gone, they are built again at the next boot.
        if let Some(line) = qemu::clear_cache() {
            eprintln!("cilab doctor: {line}");
        }
    }
    match format {
        Format::Table => print!("{}", report.to_table()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.healthy() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
