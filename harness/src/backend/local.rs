//! The local backend: labs run on this machine, as root.
//!
//! One mechanism drives every lab: start it held, and at each stage the catalog declares,
//! wait for the hold, let the lab's observer look from outside and record facts, release;
//! then tear down, record the run's own facts, and decide every verdict on the facts.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Instant;

use crate::catalog::LabSpec;
use crate::cgroup::CgroupSetup;
use crate::error::{Error, Result};
use crate::facts::Facts;
use crate::report::{LabReport, StageClaims};
use crate::run::{LabRun, RunOptions};
use crate::verdict::{decide_all, run_facts, Stop};

use super::Backend;

/// Runs labs on this machine, as root.
#[derive(Debug)]
pub struct Local {
    setup: CgroupSetup,
    binaries: PathBuf,
}

impl Local {
    pub fn new(binaries: PathBuf) -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::NotRoot);
        }
        Ok(Local { setup: CgroupSetup::detect()?, binaries })
    }
}

impl Backend for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn check(&self, lab: &LabSpec, options: &RunOptions) -> Result<LabReport> {
        let started = Instant::now();
        if let Err(missing) = preflight(lab, &self.setup) {
            return Ok(skipped(lab, self.name(), &missing));
        }
        let mut facts = Facts::default();
        // The lab's own run, then each variant's, as if one long run: the first run that
        // stops ends the check (what the others would have shown is "not reached").
        let plans = std::iter::once(None).chain(lab.variants.iter().map(Some));
        let mut runs: Vec<RunOutcome> = Vec::new();
        let mut stop: Option<Stop> = None;
        for variant in plans {
            if stop.is_some() {
                break;
            }
            if let Some((variant, Err(why))) = variant.map(|v| (v, (v.available)())) {
                for stage in variant.stages {
                    facts.skip_stage(stage, format!("variant `{}` skipped: {why}", variant.name));
                }
                continue;
            }
            let outcome = self.run_once(lab, variant, options, &mut facts)?;
            stop = outcome.stop.clone();
            runs.push(outcome);
        }
        facts.record(run_facts::ALL_STAGES_REACHED, stop.is_none());
        let exit = runs.iter().find(|r| !r.exit_ok()).unwrap_or(&runs[0]);
        facts.record(run_facts::LAB_EXIT, exit.described_exit());
        let leaks: Vec<String> = runs.iter().flat_map(|r| r.leaks.iter().cloned()).collect();
        facts.record(run_facts::LEAKS, leaks.clone());
        let failed_somewhere = stop.is_some() || runs.iter().any(|r| !r.exit_ok());
        let every_stage = lab.every_stage();
        let verdicts =
            decide_all(lab.name, &lab.all_verdicts(), &facts, stop.as_ref(), &every_stage, &lab.region_hints());
        let mut observations = facts.into_values();
        let first = &runs[0];
        for value in observations.values_mut() {
            for run in &runs {
                run.redactor.value(value);
            }
        }
        let stopped_run = runs.iter().find(|r| r.stop.is_some());
        Ok(LabReport {
            lab: lab.name.to_string(),
            title: lab.title.to_string(),
            backend: self.name().to_string(),
            verdicts,
            observations,
            leaks,
            stopped: stopped_run.and_then(|r| r.stop.as_ref().map(|s| r.redactor.text(&describe_stop(s)))),
            harness_failure: stop.as_ref().filter(|s| s.harness_failure).map(|s| s.why.clone()),
            panic: runs.iter().find_map(|r| r.panic.clone()),
            narration_tail: if failed_somewhere {
                runs.iter()
                    .find(|r| r.stop.is_some() || !r.exit_ok())
                    .map(|r| r.narration_tail.clone())
                    .unwrap_or_default()
            } else {
                Vec::new()
            },
            lab_claims: runs.iter().flat_map(|r| r.claims.iter().cloned()).collect(),
            cgroup_limits: first.cgroup_limits.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
            guest: None,
        })
    }
}

/// What one run of a lab binary (the lab's own, or a variant's) left to report.
struct RunOutcome {
    variant: Option<&'static str>,
    stop: Option<Stop>,
    exit: Option<ExitStatus>,
    panic: Option<crate::run::LabPanic>,
    cgroup_limits: Vec<String>,
    claims: Vec<StageClaims>,
    /// Redacted already.
    leaks: Vec<String>,
    narration_tail: Vec<String>,
    redactor: crate::verdict::redact::Redactor,
}

impl RunOutcome {
    fn exit_ok(&self) -> bool {
        self.exit.is_some_and(|s| s.success())
    }

    fn described_exit(&self) -> String {
        match self.variant {
            Some(variant) => format!("{} (variant `{variant}`)", describe_exit(self.exit)),
            None => describe_exit(self.exit),
        }
    }
}

impl Local {
    /// Starts the lab (or one of its variants) held, observes it at each of its stages, lets
    /// it finish, tears down.
    fn run_once(
        &self,
        lab: &LabSpec,
        variant: Option<&'static crate::catalog::Variant>,
        options: &RunOptions,
        facts: &mut Facts,
    ) -> Result<RunOutcome> {
        let (stages, args) = variant.map_or((lab.stages, &[][..]), |v| (v.stages, v.args));
        let binary = self.binaries.join(lab.binary);
        let mut options = options.clone();
        options.limits.lab_controllers = lab.needs.cgroup_controllers;
        // Made before the lab starts, so that it can see what was there before the lab.
        let mut observer = (lab.observer)();
        let args: Vec<&str> = args.iter().chain(crate::checks::chroot_escape::extra_args(lab.name)).copied().collect();
        let mut run = LabRun::start(lab.name, &binary, &self.setup, options, lab.prepare, &args)?;
        let mut stop: Option<Stop> = None;
        for stage in stages {
            let stage_went = run.await_hold(stage).and_then(|()| observer.observe(stage, &mut run, facts));
            if let Err(error) = stage_went.and_then(|()| run.release()) {
                stop = Some(stop_at(Some(stage), &error, &run));
                break;
            }
        }
        let exit = if stop.is_none() {
            match run.finish() {
                Ok(status) => Some(status),
                Err(error) => {
                    stop = Some(stop_at(None, &error, &run));
                    None
                }
            }
        } else {
            None
        };
        let panic = run.panic().cloned();
        let cgroup_limits = run.cgroup_limits().to_vec();
        let redactor = run.redactor().clone();
        let mut claims: Vec<StageClaims> = run
            .claims()
            .iter()
            .map(|(stage, claims)| StageClaims { stage: stage.clone(), claims: claims.clone() })
            .collect();
        for claim in &mut claims {
            redactor.value(&mut claim.claims);
        }
        let scratch = run.scratch().to_path_buf();
        let teardown = run.teardown();
        let exit = exit.or(teardown.exit);
        // What the lab made outside the run is removed in any case; it is the lab's leak only
        // if the lab ended by itself (one killed mid-run could not clean up).
        let outside = observer.clean_up_outside(&scratch, &teardown.killed);
        let outside = if teardown.exited_by_itself { outside } else { Vec::new() };
        let mut leaks: Vec<String> = teardown.leaks.iter().chain(&outside).map(|l| redactor.text(l)).collect();
        if let Some(variant) = variant {
            for leak in &mut leaks {
                *leak = format!("(variant `{}`) {leak}", variant.name);
            }
        }
        Ok(RunOutcome {
            variant: variant.map(|v| v.name),
            stop,
            exit,
            panic,
            cgroup_limits,
            claims,
            leaks,
            narration_tail: teardown.narration_tail,
            redactor,
        })
    }
}

fn stop_at(stage: Option<&str>, error: &Error, run: &LabRun) -> Stop {
    Stop {
        stage: stage.map(String::from),
        why: error.to_string(),
        harness_failure: error.is_harness_failure(),
        panic_region: run.panic().and_then(|p| p.region.clone()),
    }
}

fn describe_stop(stop: &Stop) -> String {
    let place = match &stop.stage {
        Some(stage) => format!("at stage `{stage}`"),
        None => "after the last stage".to_string(),
    };
    if stop.harness_failure {
        format!("{place}, the harness failed (not the lab): {}", stop.why)
    } else {
        format!("{place}: {}", stop.why)
    }
}

fn describe_exit(exit: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match exit {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
                Ok(signal) => format!("killed by {}", signal.as_str()),
                Err(_) => format!("killed by signal {signal}"),
            },
            (None, None) => format!("{status}"),
        },
        None => "did not exit".to_string(),
    }
}

/// What the lab needs that this machine lacks, in words that say what to do.
pub fn preflight(lab: &LabSpec, setup: &CgroupSetup) -> std::result::Result<(), String> {
    (lab.available)()?;
    for tool in lab.needs.tools {
        if tool.must_be_static && tool.program == "busybox" {
            labkit::rootfs::find_static_busybox().map_err(|e| e.to_string())?;
        } else if which::which(tool.program).is_err() {
            return Err(format!(
                "`{}` is not on PATH: install it with `apt-get install {}` (Debian, Ubuntu)",
                tool.program, tool.package
            ));
        }
    }
    for controller in lab.needs.cgroup_controllers {
        // Pure v2 folds cpuacct into cpu and has the freezer in every cgroup (cgroup.freeze).
        let in_v2_core = setup.layout == crate::cgroup::CgroupLayout::V2
            && match *controller {
                "freezer" => true,
                "cpuacct" => setup.v2_has("cpu"),
                _ => false,
            };
        if !setup.v1.contains_key(*controller) && !setup.v2_has(controller) && !in_v2_core {
            return Err(format!("this machine offers no `{controller}` cgroup controller (see `cilab doctor`)"));
        }
    }
    lab_controllers_handed_down(lab, setup)
}

/// Pure v2: a lab that makes cgroups of its own needs its controllers handed down to the
/// run. cilab tries (as the run would) and, where cgroup v2 refuses (the cgroup cilab was
/// started in holds other processes: a login session's scope), says why and the way out,
/// rather than a run whose limits are missing and a lab that fails for it.
fn lab_controllers_handed_down(lab: &LabSpec, setup: &CgroupSetup) -> std::result::Result<(), String> {
    if setup.layout != crate::cgroup::CgroupLayout::V2 || lab.needs.cgroup_controllers.is_empty() {
        return Ok(());
    }
    let wanted: Vec<&str> =
        lab.needs.cgroup_controllers.iter().copied().filter(|c| *c != "freezer" && *c != "cpuacct").collect();
    let missing = crate::cgroup::harness::with_placement(setup, |placement| {
        Ok(placement.enable_for_lab(&crate::cgroup::fs::Kernel, setup, &wanted))
    })
    .map_err(|e| e.to_string())?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the lab's cgroup controllers cannot be handed down to its run here: {}. Start cilab in a \
         delegated cgroup of its own, e.g. `sudo systemd-run --scope -p Delegate=yes cilab check {}` \
         (see `cilab doctor`)",
        missing.join("; "),
        lab.name
    ))
}

/// A lab that cannot run here: every verdict is a SKIP that says why (never a pass).
pub(crate) fn skipped(lab: &LabSpec, backend: &str, why: &str) -> LabReport {
    let mut facts = Facts::default();
    for spec in lab.all_verdicts() {
        facts.skip(spec.id, format!("not run: {why}"));
    }
    let verdicts = decide_all(lab.name, &lab.all_verdicts(), &facts, None, &lab.every_stage(), &lab.region_hints());
    LabReport {
        lab: lab.name.to_string(),
        title: lab.title.to_string(),
        backend: backend.to_string(),
        verdicts,
        stopped: Some(format!("not run: {why}")),
        ..LabReport::default()
    }
}
