//! Where labs run.
//!
//! The **local** backend ([`local`]) runs them on this machine: one mechanism drives every
//! lab (hold, observe, release; teardown; decide).
//!
//! A **VM backend** is only a transport around that same mechanism: it puts the built
//! binaries into a guest, runs `cilab check --format json <labs>` there as root,
//! and parses the same [`Report`] back, tagged with where it ran ([`GuestInfo`]). The
//! grading happens in the guest, by the same code; the host only carries the report. A
//! VM backend is one [`Guest`] implementation (start, run a command as root, stop) and
//! nothing else: [`check_in_guest`] does the rest for all of them, so that qemu, Vagrant,
//! Multipass or Lima is one file each.
//!
//! What every VM backend promises:
//! - the guest is made for the check and thrown away, so labs that break isolation on
//!   purpose (chroot-escape) always run there (`--allow-jailbreak-on-this-host` in the
//!   guest);
//! - a guest that cannot be started, panics, hangs or overruns its deadline is the
//!   backend's failure, never the student's: every verdict is a SKIP that says why, the
//!   report has `harness_failure`, and cilab exits 2;
//! - [`Guest::stop`] leaves nothing running (and `Drop` calls it, also on an early return).

pub mod agent;
pub(crate) mod children;
pub mod command;
pub mod initramfs;
pub mod local;
pub mod multipass;
pub mod qemu;
pub mod seal;
pub mod vagrant;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::catalog::LabSpec;
use crate::error::{Error, Result};
use crate::report::{GuestInfo, LabReport, Report, SCHEMA_VERSION};
use crate::run::{Fault, RunOptions};
use crate::verdict::Outcome;
use seal::SealKey;

pub use local::{preflight, Local};

/// Runs labs and grades them: the local backend, lab by lab.
pub trait Backend {
    fn name(&self) -> &'static str;
    /// Runs one lab under the harness and grades it.
    fn check(&self, lab: &LabSpec, options: &RunOptions) -> Result<LabReport>;
}

/// A machine that is not this one, which cilab starts, runs commands in as root, and
/// stops. A VM backend is one implementation of this trait.
pub trait Guest {
    /// The backend's name, as `--backend` takes it ("qemu", "vagrant").
    fn name(&self) -> &'static str;

    /// Brings the guest up with `payload` in it: afterwards `cilab` and the lab binaries
    /// are on root's PATH there, with the tools the labs need.
    fn start(&mut self, payload: &Payload) -> Result<()>;

    /// Runs `argv` as root in the guest, its output captured, and waits at most `deadline`.
    /// `Err` is the backend's failure (the guest died, hung or could not be reached); a
    /// command that ran and failed is an `Ok` with its status.
    fn run_as_root(&mut self, argv: &[String], deadline: Duration) -> Result<GuestOutput>;

    /// Whether the guest can run a sealed check ([`seal`]): its grader can be handed a
    /// key that nothing else in the guest can read. Only a guest cilab made for the check
    /// (qemu) can promise that; a student's own VM cannot.
    fn can_seal(&self) -> bool {
        false
    }

    /// As [`Guest::run_as_root`], with `input` written to the command's stdin (then
    /// closed). Only guests that [`Guest::can_seal`] need it.
    fn run_as_root_with_input(&mut self, argv: &[String], input: &str, deadline: Duration) -> Result<GuestOutput> {
        let _ = (argv, input, deadline);
        Err(Error::Backend { backend: self.name().to_string(), message: "cannot pass input to a command".into() })
    }

    /// Runs `argv` as root in the guest on this terminal (a lab's narration, a shell) and
    /// returns its exit status. No deadline: a person is at the keyboard.
    fn run_on_terminal(&mut self, argv: &[String]) -> Result<i32>;

    /// Where the labs ran, for the report: accelerator, kernel, cgroup layout, timings.
    fn describe(&self) -> GuestInfo;

    /// Powers the guest off and removes what `start` made. Nothing of it is left running
    /// afterwards. Safe to call more than once.
    fn stop(&mut self) -> Result<()>;
}

/// What a command run in the guest gave back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestOutput {
    /// Its exit status; 128 + N when killed by signal N (as a shell says).
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// What goes into a guest: files of this machine, each at the same path in the guest
/// (programs find their libraries and interpreters there as here), and the cilab
/// binaries in [`GUEST_BIN`].
#[derive(Debug, Clone, Default)]
pub struct Payload {
    /// `cilab` and the lab binaries, copied into [`GUEST_BIN`].
    pub binaries: Vec<PathBuf>,
    /// The programs the labs run or copy (the catalog's tools, found on PATH, and those of
    /// the labs' variants that this machine has): each at the path it has here.
    pub tools: Vec<PathBuf>,
}

/// Where the cilab binaries are in a guest, first on root's PATH.
pub const GUEST_BIN: &str = "/opt/cilab/bin";

impl Payload {
    /// `cilab` and the binaries of `labs` (from `binaries`, where cargo put them all), and
    /// every tool the catalog says the labs need. A tool missing here is an error that
    /// names its package; a variant's tool missing here is left out.
    pub fn for_labs(labs: &[&LabSpec], binaries: &Path) -> Result<Payload> {
        let mut payload = Payload { binaries: vec![binaries.join("cilab")], tools: Vec::new() };
        for lab in labs {
            payload.binaries.push(binaries.join(lab.binary));
        }
        for tool in labs.iter().flat_map(|l| l.needs.tools) {
            let path = if tool.must_be_static && tool.program == "busybox" {
                labkit::rootfs::find_static_busybox().map_err(|e| Error::Build(e.to_string()))?
            } else {
                which::which(tool.program).map_err(|_| {
                    Error::Build(format!(
                        "`{}` is not on PATH, and the guest gets it from here: `apt-get install {}`",
                        tool.program, tool.package
                    ))
                })?
            };
            if !payload.tools.contains(&path) {
                payload.tools.push(path);
            }
        }
        // A variant's own tools go along where this machine has them; where it has not,
        // the variant is a SKIP in the guest as it would be here.
        let variant_tools = labs.iter().flat_map(|l| l.variants).flat_map(|v| v.tools);
        for path in variant_tools.filter_map(|tool| which::which(tool.program).ok()) {
            if !payload.tools.contains(&path) {
                payload.tools.push(path);
            }
        }
        for binary in &payload.binaries {
            if !binary.is_file() {
                return Err(Error::Build(format!("{} is not built: `cargo build --workspace`", binary.display())));
            }
        }
        Ok(payload)
    }
}

/// What `cilab check` should do in the guest.
#[derive(Debug, Clone, Default)]
pub struct GuestCheck {
    pub labs: Vec<&'static LabSpec>,
    pub repeat: u32,
    pub fault: Option<Fault>,
    /// The guest builds the labs first, from its own copy of the tree (`cilab check`
    /// without `--no-build`): for guests that keep the student's tree and cargo (Vagrant,
    /// Multipass), so that the check grades the latest edits. Where the guest has only
    /// binaries (built here and sent, or prebuilt ones synced in) there is nothing to build
    /// and the guest's cilab uses what it has. `false`: `--no-build`.
    pub build: bool,
    /// `--hold-timeout` in the guest; `None`: the guest's default, or [`TCG_HOLD_TIMEOUT`]
    /// where the guest says its CPU is emulated.
    pub hold_timeout: Option<Duration>,
    /// The guest's grader reads a key on stdin and seals its report ([`seal`]): set by
    /// [`check_in_guest`] for guests that [`Guest::can_seal`].
    pub sealed: bool,
}

/// How long a lab may take to reach a stage in a guest whose CPU is emulated (TCG runs
/// the labs several times slower than the 10 s default allows for).
pub const TCG_HOLD_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a guest may take for one lab run of a check, on top of its boot (TCG on a
/// busy machine is slow; a lab that hangs is stopped by the guest's own harness sooner).
pub const PER_LAB_RUN: Duration = Duration::from_secs(120);

/// How long the guest's own build may take on top ([`GuestCheck::build`]): a first build
/// of the workspace on a small VM takes minutes.
pub const GUEST_BUILD: Duration = Duration::from_secs(900);

impl GuestCheck {
    /// The command run in the guest, as root.
    pub fn argv(&self) -> Vec<String> {
        let mut argv: Vec<String> =
            ["cilab", "check", "--format", "json", "--allow-jailbreak-on-this-host"].map(String::from).to_vec();
        if !self.build {
            argv.insert(2, "--no-build".to_string());
        }
        if self.repeat > 1 {
            argv.extend(["--repeat".to_string(), self.repeat.to_string()]);
        }
        if let Some(hold_timeout) = self.hold_timeout {
            argv.extend(["--hold-timeout".to_string(), hold_timeout.as_secs().max(1).to_string()]);
        }
        if let Some(fault) = &self.fault {
            argv.push(format!("--fault={}", fault.to_arg()));
        }
        if self.sealed {
            argv.push("--sealed".to_string());
        }
        argv.extend(self.labs.iter().map(|l| l.name.to_string()));
        argv
    }

    /// How long the guest may take for the whole check. Each lab gets [`PER_LAB_RUN`], or,
    /// where `--hold-timeout` allows more, one hold timeout per stage and one for its end:
    /// the guest's own harness must be the one that stops a slow or hung lab, so that the
    /// report says which lab it was.
    pub fn deadline(&self) -> Duration {
        let per_lab = |lab: &LabSpec| match self.hold_timeout {
            Some(hold) => PER_LAB_RUN.max(hold * (lab.every_stage().len() as u32 + 1)),
            None => PER_LAB_RUN,
        };
        let runs = self.labs.iter().map(|lab| per_lab(lab)).sum::<Duration>() * self.repeat.max(1);
        let runs = runs.max(PER_LAB_RUN);
        if self.build {
            runs + GUEST_BUILD
        } else {
            runs
        }
    }
}

/// Starts the guest, runs the check there, parses its report and stops the guest. Every
/// failure of the guest (it would not start, died, hung, answered nonsense, sent a report
/// its grader did not seal or that does not fit this cilab's catalog) becomes a report per
/// lab whose verdicts are SKIPs and whose `harness_failure` says what went wrong: the
/// backend's failure, never the student's.
pub fn check_in_guest(guest: &mut dyn Guest, payload: &Payload, check: &GuestCheck) -> Vec<LabReport> {
    crate::checks::chroot_escape::runs_in_vm_backend();
    let key = match guest.can_seal().then(SealKey::random).transpose() {
        Ok(key) => key,
        Err(error) => return backend_failed(guest.name(), &guest.describe(), check, &error.to_string()),
    };
    let outcome = guest.start(payload).and_then(|()| {
        // Only a started guest knows how its CPU runs.
        let mut check = check.clone();
        if check.hold_timeout.is_none() && guest.describe().accelerator.as_deref() == Some("tcg") {
            check.hold_timeout = Some(TCG_HOLD_TIMEOUT);
        }
        match &key {
            Some(key) => {
                check.sealed = true;
                guest.run_as_root_with_input(&check.argv(), &format!("{}\n", key.to_hex()), check.deadline())
            }
            None => guest.run_as_root(&check.argv(), check.deadline()),
        }
    });
    let mut info = guest.describe();
    let stopped = guest.stop();
    let reports = outcome
        .and_then(|output| {
            stopped?;
            let (reports, hardening) = parse_guest_report(guest.name(), &output, key.as_ref())?;
            info.sealed = hardening;
            Ok(reports)
        })
        .and_then(|reports| same_labs(reports, check))
        .and_then(|reports| fits_the_catalog(reports, check));
    match reports {
        Ok(mut reports) => {
            for report in &mut reports {
                report.backend = guest.name().to_string();
                report.guest = Some(info.clone());
            }
            reports
        }
        Err(error) => backend_failed(guest.name(), &info, check, &error.to_string()),
    }
}

/// The report `cilab check --format json` printed in the guest. A check that ran exits 0,
/// 1 or 2 with a report; anything else (no report, another status) is the backend's
/// failure, with what the guest said on stderr. With a `key`, the report must carry the
/// grader's seal: the hardening it sealed comes back too.
pub fn parse_guest_report(
    backend: &str,
    output: &GuestOutput,
    key: Option<&SealKey>,
) -> Result<(Vec<LabReport>, Option<Vec<String>>)> {
    let stderr_tail = || tail(&output.stderr, 15);
    let failed = |message: String| Error::Backend { backend: backend.to_string(), message };
    if !(0..=2).contains(&output.status) {
        return Err(failed(format!("`cilab check` in the guest exited {}: {}", output.status, stderr_tail())));
    }
    let (text, hardening) = match key {
        Some(key) => {
            let (text, hardening) = key.open(&output.stdout).map_err(|why| {
                failed(format!(
                    "the guest's report is refused: {why} (a lab that tampered with its grader, or a grader that died): {}",
                    stderr_tail()
                ))
            })?;
            (text, Some(hardening))
        }
        None => (output.stdout.clone(), None),
    };
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        failed(format!(
            "`cilab check` in the guest (exit {}) printed no report ({e}): {}",
            output.status,
            stderr_tail()
        ))
    })?;
    // What the guest says reaches a terminal: no escape sequences or other controls.
    printable(&mut value);
    // Named before the shape is read: a guest's cilab of another schema fails by saying so.
    let version = value.get("schema_version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(SCHEMA_VERSION)) {
        let theirs = version.map_or_else(|| "none".to_string(), |v| v.to_string());
        return Err(failed(format!(
            "the guest's cilab wrote report schema version {theirs}, this cilab reads version {SCHEMA_VERSION}: \
             build the guest's cilab from the same tree"
        )));
    }
    let report: Report = serde_json::from_value(value)
        .map_err(|e| failed(format!("`cilab check` in the guest printed a report this cilab cannot read ({e})")))?;
    Ok((report.labs, hardening))
}

/// Removes control characters (but newlines and tabs) from every string and key.
fn printable(value: &mut serde_json::Value) {
    let clean = |text: &str| text.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect::<String>();
    match value {
        serde_json::Value::String(text) => *text = clean(text),
        serde_json::Value::Array(items) => items.iter_mut().for_each(printable),
        serde_json::Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                printable(&mut item);
                map.insert(clean(&key), item);
            }
        }
        _ => {}
    }
}

/// The guest graded every lab asked for, in order, once per repeat: anything else is the
/// backend's failure (a report of other labs would be someone else's result).
fn same_labs(reports: Vec<LabReport>, check: &GuestCheck) -> Result<Vec<LabReport>> {
    let asked: Vec<&str> = check.labs.iter().flat_map(|l| (0..check.repeat.max(1)).map(move |_| l.name)).collect();
    let got: Vec<&str> = reports.iter().map(|r| r.lab.as_str()).collect();
    if asked != got {
        return Err(Error::Backend {
            backend: "guest".into(),
            message: format!("the guest reported labs {got:?}, not the ones asked for {asked:?}"),
        });
    }
    Ok(reports)
}

/// Points are this cilab's to give, not the guest's: each lab's verdicts must be this
/// catalog's, in its order, each worth what the catalog says, earned only by a pass whose
/// requirements passed too. Titles, claims and regions are taken from the catalog.
fn fits_the_catalog(mut reports: Vec<LabReport>, check: &GuestCheck) -> Result<Vec<LabReport>> {
    let refuse = |lab: &str, why: String| {
        Error::Backend {
        backend: "guest".into(),
        message: format!(
            "the guest's report of {lab} does not fit this cilab's catalog: {why} (a guest cilab of another version, or a report not made by the grader)"
        ),
    }
    };
    for report in &mut reports {
        let Some(lab) = check.labs.iter().find(|l| l.name == report.lab) else {
            return Err(refuse(&report.lab, "not a lab asked for".into()));
        };
        let specs = lab.all_verdicts();
        let ids: Vec<&str> = report.verdicts.iter().map(|v| v.id.as_str()).collect();
        let expected: Vec<&str> = specs.iter().map(|s| s.id).collect();
        if ids != expected {
            return Err(refuse(lab.name, format!("verdicts {ids:?}, expected {expected:?}")));
        }
        let passed: Vec<&str> =
            report.verdicts.iter().filter(|v| v.outcome == Outcome::Pass).map(|v| v.id.as_str()).collect();
        for (spec, verdict) in specs.iter().zip(&report.verdicts) {
            let earned = if verdict.outcome == Outcome::Pass { spec.points } else { 0 };
            if verdict.max_points != spec.points || verdict.points != earned || verdict.kind != spec.kind() {
                return Err(refuse(
                    lab.name,
                    format!(
                        "`{}` is {:?} with {}/{} points",
                        spec.id, verdict.outcome, verdict.points, verdict.max_points
                    ),
                ));
            }
            if let Some(missing) =
                spec.requires.iter().find(|r| verdict.outcome == Outcome::Pass && !passed.contains(r))
            {
                return Err(refuse(
                    lab.name,
                    format!("`{}` passed but `{missing}`, which it requires, did not", spec.id),
                ));
            }
        }
        report.title = lab.title.to_string();
        for (spec, verdict) in specs.iter().zip(report.verdicts.iter_mut()) {
            verdict.claim = spec.claim.to_string();
            verdict.region = spec.region.map(String::from);
        }
    }
    Ok(reports)
}

/// One report per lab asked for, each a SKIP of every verdict, saying the backend failed.
fn backend_failed(backend: &str, info: &GuestInfo, check: &GuestCheck, why: &str) -> Vec<LabReport> {
    check
        .labs
        .iter()
        .map(|lab| {
            let mut report = local::skipped(lab, backend, &format!("the {backend} guest failed (not the lab): {why}"));
            report.harness_failure = Some(format!("the {backend} backend failed: {why}"));
            report.guest = Some(info.clone());
            report
        })
        .collect()
}

/// The last `lines` lines of `text`, for an error message.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = all.len().saturating_sub(lines);
    if all.is_empty() {
        "(nothing)".to_string()
    } else {
        all[start..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of `lab` in which every verdict passed, as a grader would write it.
    fn all_passed(lab: &'static LabSpec) -> LabReport {
        let mut report = local::skipped(lab, "qemu", "a test");
        for verdict in &mut report.verdicts {
            verdict.outcome = Outcome::Pass;
            verdict.points = verdict.max_points;
        }
        report
    }

    fn check_of(labs: Vec<&'static LabSpec>) -> GuestCheck {
        GuestCheck { labs, repeat: 1, ..GuestCheck::default() }
    }

    #[test]
    fn a_report_that_fits_the_catalog_is_taken_and_its_words_are_the_catalogs() {
        let labs: Vec<&'static LabSpec> = crate::catalog::all().iter().collect();
        let mut reports: Vec<LabReport> = labs.iter().map(|lab| all_passed(lab)).collect();
        reports[0].title = "something else".into();
        reports[0].verdicts[0].claim = "\u{1b}[2Jyou passed".into();
        let taken = fits_the_catalog(reports, &check_of(labs.clone())).expect("fits");
        assert_eq!(taken[0].title, labs[0].title);
        assert_eq!(taken[0].verdicts[0].claim, labs[0].all_verdicts()[0].claim);
    }

    #[test]
    fn points_the_catalog_does_not_give_are_refused() {
        for lab in crate::catalog::all() {
            let check = check_of(vec![lab]);
            let graded = lab.all_verdicts().iter().position(|s| s.points > 0).expect("a graded verdict");
            let specs = lab.all_verdicts();

            let mut failed_with_points = all_passed(lab);
            failed_with_points.verdicts[graded].outcome = Outcome::Fail;
            assert!(fits_the_catalog(vec![failed_with_points], &check).is_err(), "{}: a FAIL that earns", lab.name);

            let mut worth_more = all_passed(lab);
            worth_more.verdicts[graded].points += 10;
            worth_more.verdicts[graded].max_points += 10;
            assert!(fits_the_catalog(vec![worth_more], &check).is_err(), "{}: points the catalog lacks", lab.name);

            let mut one_missing = all_passed(lab);
            one_missing.verdicts.remove(graded);
            assert!(fits_the_catalog(vec![one_missing], &check).is_err(), "{}: a verdict left out", lab.name);

            if let Some(needy) = specs.iter().position(|s| !s.requires.is_empty()) {
                let required = specs.iter().position(|s| s.id == specs[needy].requires[0]).expect("declared");
                let mut requirement_failed = all_passed(lab);
                requirement_failed.verdicts[required].outcome = Outcome::Fail;
                requirement_failed.verdicts[required].points = 0;
                assert!(
                    fits_the_catalog(vec![requirement_failed], &check).is_err(),
                    "{}: a pass whose requirement failed",
                    lab.name
                );
            }
        }
    }

    #[test]
    fn a_sealed_check_refuses_a_report_without_the_graders_seal() {
        let lab = &crate::catalog::all()[0];
        let json = Report::new(vec![all_passed(lab)]).to_json();
        let key = SealKey::random().expect("urandom");
        let unsealed = GuestOutput { status: 0, stdout: format!("{json}\n"), stderr: String::new() };
        let error = parse_guest_report("qemu", &unsealed, Some(&key)).expect_err("unsealed");
        assert!(error.to_string().contains("refused"), "{error}");
        let sealed = GuestOutput {
            status: 0,
            stdout: format!("{json}\n{}\n", key.trailer(&json, &["grader not dumpable".to_string()])),
            stderr: String::new(),
        };
        let (reports, hardening) = parse_guest_report("qemu", &sealed, Some(&key)).expect("sealed");
        assert_eq!(reports.len(), 1);
        assert_eq!(hardening, Some(vec!["grader not dumpable".to_string()]));
    }

    #[test]
    fn a_report_of_another_schema_version_is_refused_by_name() {
        let lab = &crate::catalog::all()[0];
        let mut report = Report::new(vec![all_passed(lab)]);
        let output = |report: &Report| GuestOutput { status: 0, stdout: report.to_json(), stderr: String::new() };
        assert!(parse_guest_report("vagrant", &output(&report), None).is_ok());
        report.schema_version = SCHEMA_VERSION + 1;
        let error = parse_guest_report("vagrant", &output(&report), None).expect_err("another version");
        assert!(error.to_string().contains(&format!("schema version {}", SCHEMA_VERSION + 1)), "{error}");
    }

    #[test]
    fn controls_are_taken_out_of_what_the_guest_says() {
        let mut value = serde_json::json!({"a\u{1b}b": ["x\u{1b}[31my\ttab\nline\u{7}"]});
        printable(&mut value);
        assert_eq!(value, serde_json::json!({"ab": ["x[31my\ttab\nline"]}));
    }

    #[test]
    fn the_guests_deadline_leaves_its_own_harness_time_to_stop_each_lab() {
        let labs: Vec<&'static LabSpec> = crate::catalog::all().iter().collect();
        let default = GuestCheck { labs: labs.clone(), repeat: 1, ..GuestCheck::default() };
        assert_eq!(default.deadline(), PER_LAB_RUN * labs.len() as u32);
        let hold = Duration::from_secs(180);
        let slow = GuestCheck { labs: labs.clone(), repeat: 2, hold_timeout: Some(hold), ..GuestCheck::default() };
        let needed: Duration = labs.iter().map(|lab| hold * (lab.every_stage().len() as u32 + 1)).sum::<Duration>() * 2;
        assert!(slow.deadline() >= needed, "{:?} < {needed:?}", slow.deadline());
        assert!(slow.deadline() > default.deadline() * 2);
    }
}
