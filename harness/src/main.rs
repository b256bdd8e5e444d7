//! The `cilab` command: list, run, check and doctor.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use cilab::backend::{Backend, Local};
use cilab::catalog::{self, LabSpec};
use cilab::cgroup::CgroupSetup;
use cilab::registry::{self, LastResult};
use cilab::report::Report;
use cilab::run::{Fault, RunOptions};
use cilab::{doctor, labbuild, run};
use clap::{Parser, Subcommand, ValueEnum};

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
    /// List the labs in course order, with your last result for each.
    List,
    /// Run a lab for a person: each step narrated with its syscall and shell equivalent.
    Run {
        /// The lab's name, as `cilab list` shows it.
        lab: String,
        /// Pause before each step until you press Enter.
        #[arg(long)]
        step: bool,
        /// Do not rebuild the lab binaries with cargo first.
        #[arg(long)]
        no_build: bool,
    },
    /// Grade labs: run each under the harness and check from outside what the kernel did.
    /// Exits 0 when every verdict passed, 1 when one failed, 2 when cilab could not run.
    Check {
        /// Labs to check (see `cilab list`).
        labs: Vec<String>,
        /// Check every lab.
        #[arg(long, conflicts_with = "labs")]
        all: bool,
        /// How to print the report: a table for people, JSON for tools.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Run each lab this many times in a row (a soak: every run must pass and leak nothing).
        #[arg(long, default_value_t = 1, value_name = "N")]
        repeat: u32,
        /// Do not rebuild the lab binaries with cargo first.
        #[arg(long)]
        no_build: bool,
        /// Break a run on purpose, for cilab's own tests: kill-lab-at:<stage> or hang-at:<stage>.
        #[arg(long, hide = true, value_parser = parse_fault)]
        fault: Option<Fault>,
    },
    /// Check this machine: root, kernel, cgroups (v1, v2 or hybrid), user namespaces,
    /// busybox, whether it is a disposable VM, and leftovers of interrupted runs.
    /// Tools for course authors (the mistake corpus).
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
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
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
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
    if let Err(error) = install_interrupt_handler() {
        eprintln!("cilab: warning: {error:#}");
    }
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cilab: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Ctrl-C, SIGTERM, a closed terminal: kill and remove every run in progress, then exit.
/// While a person runs a lab by hand, the lab gets Ctrl-C itself and cilab cleans after it.
fn install_interrupt_handler() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("cilab-interrupt".into()).spawn(move || {
        for signal in signals.forever() {
            if run::BY_HAND.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            let aborted = run::abort_all();
            eprintln!("\ncilab: interrupted (signal {signal}); killed and removed runs: {aborted:?}");
            std::process::exit(130);
        }
    })?;
    Ok(())
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::List => list(),
        Command::Run { lab, step, no_build } => run_by_hand(&lab, step, no_build),
        Command::Check { labs, all, format, repeat, no_build, fault } => {
            check(&labs, all, format, repeat, no_build, fault)
        }
        Command::Doctor { clean, format } => doctor_command(clean, format),
        Command::Dev { command: DevCommand::Corpus { labs, only, format } } => corpus(&labs, only.as_deref(), format),
    }
}

fn list() -> Result<ExitCode> {
    let results = registry::load_results();
    println!("{:<3} {:<13} {:<36} last result", "#", "lab", "title");
    for lab in catalog::all() {
        let last = match results.get(lab.name) {
            Some(r) => format!("{} {}/{}", r.result, r.points, r.max_points),
            None => format!("not checked yet ({} points)", lab.max_points()),
        };
        println!("{:<3} {:<13} {:<36} {last}", lab.order, lab.name, lab.title);
        println!("    {}", lab.summary);
    }
    println!("\nRun one by hand: cilab run <lab> --step     Grade: cilab check <lab> | --all");
    Ok(ExitCode::SUCCESS)
}

fn run_by_hand(name: &str, step: bool, no_build: bool) -> Result<ExitCode> {
    let lab = catalog::find(name)?;
    if !nix::unistd::geteuid().is_root() {
        return Err(cilab::Error::NotRoot.into());
    }
    let binaries = labbuild::ensure_built(&[lab], no_build)?;
    let setup = CgroupSetup::detect()?;
    let teardown = run::run_by_hand(
        lab.name,
        &binaries.join(lab.binary),
        &setup,
        run::ByHand { pause_each_step: step, ..run::ByHand::default() },
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

fn check(
    names: &[String],
    all: bool,
    format: Format,
    repeat: u32,
    no_build: bool,
    fault: Option<Fault>,
) -> Result<ExitCode> {
    let labs: Vec<&LabSpec> = if all {
        catalog::all().iter().collect()
    } else if names.is_empty() {
        bail!("name the labs to check, or --all (`cilab list` shows them)");
    } else {
        names.iter().map(|n| catalog::find(n)).collect::<Result<_, _>>()?
    };
    if labs.iter().any(|l| l.needs.root) && !nix::unistd::geteuid().is_root() {
        return Err(cilab::Error::NotRoot.into());
    }
    if let Some(Fault::KillLabAt(stage) | Fault::HangAt(stage)) = &fault {
        if let Some(lab) = labs.iter().find(|l| !l.stages.contains(&stage.as_str())) {
            bail!("--fault names stage `{stage}`, which lab {} does not have: {}", lab.name, lab.stages.join(", "));
        }
    }
    let binaries = labbuild::ensure_built(&labs, no_build)?;
    let backend = Local::new(binaries)?;
    let options = RunOptions { fault, ..RunOptions::default() };
    let mut reports = Vec::new();
    for lab in &labs {
        for _ in 0..repeat.max(1) {
            let report = backend.check(lab, &options).with_context(|| format!("checking lab {}", lab.name))?;
            // A run broken on purpose (cilab's own tests) is not the student's result.
            if options.fault.is_none() {
                save_last_result(lab.name, &report);
            }
            reports.push(report);
        }
    }
    let report = Report::new(reports);
    match format {
        Format::Table => print!("{}", report.to_table()),
        Format::Json => println!("{}", report.to_json()),
    }
    Ok(if report.all_passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn save_last_result(lab: &str, report: &cilab::report::LabReport) {
    let (points, max_points) = report.points();
    let when = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let result = LastResult { result: report.result_word().to_string(), points, max_points, when };
    if let Err(error) = registry::save_result(lab, result) {
        eprintln!("cilab: warning: could not save the result: {error}");
    }
}

fn corpus(names: &[String], only: Option<&str>, format: Format) -> Result<ExitCode> {
    let labs: Vec<&'static LabSpec> = if names.is_empty() {
        catalog::all().iter().collect()
    } else {
        names.iter().map(|n| catalog::find(n)).collect::<Result<_, _>>()?
    };
    if !nix::unistd::geteuid().is_root() {
        return Err(cilab::Error::NotRoot.into());
    }
    let workspace = labbuild::workspace_root()
        .context("the mistake corpus needs the source tree cilab was built from (it edits a copy of it)")?;
    // The corpus builds from the tree as it is: the unmutated labs must be built too.
    labbuild::ensure_built(&labs, false)?;
    let results = cilab::corpus::run(&labs, &workspace, only)?;
    match format {
        Format::Table => print!("{}", cilab::corpus::to_table(&results)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&results)?),
    }
    Ok(if results.iter().all(|r| r.ok()) && !results.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn doctor_command(clean: bool, format: Format) -> Result<ExitCode> {
    let mut report = doctor::examine();
    if clean && !report.leftovers.is_empty() {
        for line in doctor::clean(&report) {
            eprintln!("cilab doctor: {line}");
        }
        report = doctor::examine();
    }
    match format {
        Format::Table => print!("{}", report.to_table()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.healthy() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
