//! Reports: our own JSON (the source of truth) and a terminal table made from it.

use serde::{Deserialize, Serialize};

use crate::run::LabPanic;
use crate::verdict::{Kind, Outcome, Verdict};

/// The facts a run recorded, by key, redacted: what the snapshots record.
pub type Observations = std::collections::BTreeMap<String, serde_json::Value>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabReport {
    pub lab: String,
    pub title: String,
    pub backend: String,
    pub verdicts: Vec<Verdict>,
    /// Redacted facts the harness observed: what the snapshots record.
    pub observations: Observations,
    /// What the run left on the host (empty when clean).
    pub leaks: Vec<String>,
    /// Where and why the run stopped early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// The harness itself failed (its verdicts not checked are SKIPs, and cilab exits 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_failure: Option<String>,
    /// The panic the lab reported, with the STUDENT region it happened in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic: Option<LabPanic>,
    /// The lab's last narration lines, kept when something failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub narration_tail: Vec<String>,
    /// What the lab said about itself at each stage (redacted): shown beside the
    /// observations, never graded.
    #[serde(default)]
    pub lab_claims: Vec<StageClaims>,
    /// The bounds the run's cgroup put on the lab's process tree, e.g. "pids.max=256 (v1)".
    #[serde(default)]
    pub cgroup_limits: Vec<String>,
    pub duration_ms: u64,
    /// Set by a VM backend: the guest the lab ran in (the local backend leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestInfo>,
}

/// Where a VM backend ran the labs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestInfo {
    /// The backend, as `--backend` takes it.
    pub backend: String,
    /// How the guest's CPU ran: "kvm" or "tcg" (emulated) for qemu.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    /// The guest's kernel release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// The guest's cgroup layout: "v1", "hybrid" or "v2".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// From starting the guest to the report in hand (milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_to_report_ms: Option<u64>,
    /// The report came sealed by the guest's grader (qemu): what it did to keep the labs
    /// away from it, one step each ("NOT ..." for a step the guest could not take).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Vec<String>>,
}

impl GuestInfo {
    /// One line for people: "qemu guest (tcg, kernel 6.1.0, cgroup v2), boot to report 2.4 s".
    pub fn describe(&self) -> String {
        let details: Vec<String> = [
            self.accelerator.clone(),
            self.kernel.as_ref().map(|k| format!("kernel {k}")),
            self.cgroup.as_ref().map(|c| format!("cgroup {c}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut line = format!("{} guest", self.backend);
        if !details.is_empty() {
            line.push_str(&format!(" ({})", details.join(", ")));
        }
        if let Some(ms) = self.boot_to_report_ms {
            line.push_str(&format!(", boot to report {:.1} s", ms as f64 / 1000.0));
        }
        if let Some(steps) = &self.sealed {
            let gaps: Vec<&String> = steps.iter().filter(|s| s.starts_with("NOT ")).collect();
            if gaps.is_empty() {
                line.push_str(", report sealed");
            } else {
                line.push_str(&format!(
                    ", report sealed, but {}",
                    gaps.iter().map(|g| g.as_str()).collect::<Vec<_>>().join("; ")
                ));
            }
        }
        line
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageClaims {
    pub stage: String,
    pub claims: serde_json::Value,
}

impl LabReport {
    pub fn points(&self) -> (u32, u32) {
        (self.verdicts.iter().map(|v| v.points).sum(), self.verdicts.iter().map(|v| v.max_points).sum())
    }

    /// One word for the whole lab: "passed" (every verdict), "failed" (any failed),
    /// or "skipped" (none failed, some could not be checked).
    pub fn result_word(&self) -> &'static str {
        if self.verdicts.iter().any(|v| v.outcome == Outcome::Fail) {
            "failed"
        } else if self.verdicts.iter().any(|v| v.outcome == Outcome::Skip) {
            "skipped"
        } else {
            "passed"
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub labs: usize,
    pub verdicts: usize,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub points: u32,
    pub max_points: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub cilab_version: String,
    pub labs: Vec<LabReport>,
    pub summary: Summary,
}

impl Report {
    pub fn new(labs: Vec<LabReport>) -> Self {
        let mut summary = Summary { labs: labs.len(), ..Summary::default() };
        for verdict in labs.iter().flat_map(|l| &l.verdicts) {
            summary.verdicts += 1;
            summary.points += verdict.points;
            summary.max_points += verdict.max_points;
            match verdict.outcome {
                Outcome::Pass => summary.passed += 1,
                Outcome::Fail => summary.failed += 1,
                Outcome::Skip => summary.skipped += 1,
            }
        }
        Report { cilab_version: env!("CARGO_PKG_VERSION").to_string(), labs, summary }
    }

    /// Every verdict of every lab passed (a skip is not a pass).
    pub fn all_passed(&self) -> bool {
        self.summary.failed == 0 && self.summary.skipped == 0 && self.summary.verdicts > 0
    }

    /// The harness failed on some lab: not the student's result.
    pub fn harness_failed(&self) -> bool {
        self.labs.iter().any(|l| l.harness_failure.is_some())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The terminal table: per lab, one line per verdict, then hints and leaks.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        for lab in &self.labs {
            let (points, max) = lab.points();
            out.push_str(&format!("\n{}  {}  ({points}/{max} points, {} ms)\n", lab.lab, lab.title, lab.duration_ms));
            // A reason shared by several verdicts (a run that stopped early) is said once.
            let mut previous_detail = None;
            for verdict in &lab.verdicts {
                let mark = match verdict.outcome {
                    Outcome::Pass => "PASS",
                    Outcome::Fail => "FAIL",
                    Outcome::Skip => "SKIP",
                };
                let points = match verdict.kind {
                    Kind::Graded => format!("{}/{}", verdict.points, verdict.max_points),
                    Kind::Fact => "fact".to_string(),
                };
                out.push_str(&format!("  {mark}  {points:>4}  {}\n", verdict.claim));
                if let Some(detail) = verdict.detail.as_ref().filter(|d| previous_detail != Some(*d)) {
                    out.push_str(&format!("              saw:  {detail}\n"));
                }
                previous_detail = verdict.detail.as_ref();
                if let Some(hint) = &verdict.hint {
                    out.push_str(&format!("              hint: {hint}\n"));
                }
            }
            if let Some(panic) = &lab.panic {
                out.push_str(&format!("  {}\n", panic.describe()));
            }
            if let Some(guest) = &lab.guest {
                out.push_str(&format!("  ran in: {}\n", guest.describe()));
            }
            if let Some(stopped) = &lab.stopped {
                out.push_str(&format!("  stopped: {stopped}\n"));
            }
            for leak in &lab.leaks {
                out.push_str(&format!("  LEAK: {leak}\n"));
            }
            if !lab.narration_tail.is_empty() {
                out.push_str("  the lab's last words:\n");
                for line in &lab.narration_tail {
                    out.push_str(&format!("    | {line}\n"));
                }
            }
        }
        let s = &self.summary;
        out.push_str(&format!(
            "\n{} lab(s): {} passed, {} failed, {} skipped; {}/{} points\n",
            s.labs, s.passed, s.failed, s.skipped, s.points, s.max_points
        ));
        out
    }
}
