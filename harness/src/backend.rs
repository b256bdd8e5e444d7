//! Where labs run. The local backend runs them on this machine; a VM backend (later) is
//! only a transport that runs `cilab check --format json` in the guest and parses the
//! same report back.

use std::path::PathBuf;
use std::time::Instant;

use crate::catalog::LabSpec;
use crate::cgroup::CgroupSetup;
use crate::error::{Error, Result};
use crate::report::{LabReport, StageClaims};
use crate::run::{LabRun, RunOptions};
use crate::verdict::{Grader, LAB_FINISHED, NOTHING_LEAKED};

pub trait Backend {
    fn name(&self) -> &'static str;
    /// Runs one lab under the harness and grades it.
    fn check(&self, lab: &LabSpec, options: &RunOptions) -> Result<LabReport>;
}

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
        let mut grader = Grader::new(lab.verdicts);
        if let Err(missing) = self.preflight(lab) {
            return Ok(skipped(lab, self.name(), grader, &missing));
        }
        let binary = self.binaries.join(lab.binary);
        let mut run = LabRun::start(lab.name, &binary, &self.setup, options.clone(), lab.prepare)?;
        let mut stopped = (lab.check)(&mut run, &mut grader).err().map(|e| e.to_string());
        let exit = if stopped.is_none() {
            match run.finish() {
                Ok(status) => Some(status),
                Err(error) => {
                    stopped = Some(error.to_string());
                    None
                }
            }
        } else {
            None
        };
        let finished = exit.is_some_and(|s| s.success());
        let stage = run.stage().map(String::from);
        let cgroup_limits = run.cgroup_limits().to_vec();
        let redactor = run.redactor().clone();
        let mut lab_claims: Vec<StageClaims> = run
            .claims()
            .iter()
            .map(|(stage, claims)| StageClaims { stage: stage.clone(), claims: claims.clone() })
            .collect();
        for claim in &mut lab_claims {
            redactor.value(&mut claim.claims);
        }
        let teardown = run.teardown();
        let failed_somewhere = stopped.is_some() || !finished;
        let narration_tail = if failed_somewhere { teardown.narration_tail.clone() } else { Vec::new() };
        grader.judge(
            LAB_FINISHED,
            finished,
            &[],
            match (&stopped, exit) {
                (Some(why), _) => why.clone(),
                (None, Some(status)) => format!("the lab exited with {status}"),
                (None, None) => "the lab did not exit".to_string(),
            },
        );
        grader.judge(NOTHING_LEAKED, teardown.leaks.is_empty(), &[], teardown.leaks.join("; "));
        let stopped = stopped.map(|why| match stage {
            Some(stage) => format!("at stage `{stage}`: {why}"),
            None => format!("before the first stage: {why}"),
        });
        let (verdicts, mut observations) = grader.finish(stopped.as_deref());
        for value in observations.values_mut() {
            redactor.value(value);
        }
        Ok(LabReport {
            lab: lab.name.to_string(),
            title: lab.title.to_string(),
            backend: self.name().to_string(),
            verdicts,
            observations,
            leaks: teardown.leaks,
            stopped,
            narration_tail,
            lab_claims,
            cgroup_limits,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

impl Local {
    /// What the lab needs that this machine lacks, in words that say what to do.
    fn preflight(&self, lab: &LabSpec) -> std::result::Result<(), String> {
        if lab.needs.busybox {
            labkit::rootfs::find_static_busybox().map_err(|e| e.to_string())?;
        }
        for controller in lab.needs.cgroup_controllers {
            if !self.setup.v1.contains_key(*controller) && !self.setup.v2_has(controller) {
                return Err(format!("this machine offers no `{controller}` cgroup controller (see `cilab doctor`)"));
            }
        }
        Ok(())
    }
}

/// A lab that cannot run here: every verdict is a SKIP that says why (never a pass).
fn skipped(lab: &LabSpec, backend: &str, mut grader: Grader, why: &str) -> LabReport {
    for spec in lab.verdicts.iter().chain(crate::verdict::COMMON.iter()) {
        grader.skip(spec.id, format!("not run: {why}"));
    }
    let (verdicts, observations) = grader.finish(None);
    LabReport {
        lab: lab.name.to_string(),
        title: lab.title.to_string(),
        backend: backend.to_string(),
        verdicts,
        observations,
        leaks: Vec::new(),
        stopped: Some(format!("not run: {why}")),
        narration_tail: Vec::new(),
        lab_claims: Vec::new(),
        cgroup_limits: Vec::new(),
        duration_ms: 0,
    }
}
