//! Verdicts: named checks a student understands, each decided on the typed facts the
//! harness observed (see `facts`), with points (none for a fact the harness only
//! demonstrates), the STUDENT region whose work it grades, the facts it rests on, and a
//! hint when it fails.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::facts::{stage_of, Evidence, Fact, Facts};

/// A verdict as a lab's checks declare it.
#[derive(Debug, Clone, Copy)]
pub struct VerdictSpec {
    pub id: &'static str,
    /// The sentence that is true when the check passes.
    pub claim: &'static str,
    /// Zero for a fact the harness demonstrates itself: shown, never points earned.
    pub points: u32,
    /// The STUDENT region whose work this verdict grades; `None` for facts and the run.
    pub region: Option<&'static str>,
    /// Verdicts this one counts after: if one of them did not pass, this one earns nothing
    /// and shows no hint (a check that nothing done passes, or whose failure follows from
    /// another region's mistake, is charged to that mistake alone).
    pub requires: &'static [&'static str],
    /// Shown when the check fails: where to look, not the answer.
    pub hint: &'static str,
    /// Decides on the facts: `None` when a fact it needs was never observed.
    pub decide: fn(&Evidence) -> Option<bool>,
}

impl VerdictSpec {
    pub fn kind(&self) -> Kind {
        if self.points == 0 {
            Kind::Fact
        } else {
            Kind::Graded
        }
    }
}

/// Facts every run records about itself, and the verdicts every lab gets from them.
pub mod run_facts {
    use super::Fact;
    /// Every stage the lab declares was reached and observed.
    pub const ALL_STAGES_REACHED: Fact<bool> = Fact::new("run.all_stages_reached");
    /// How the lab ended: "exit status 0", "killed by SIGKILL", "did not exit".
    pub const LAB_EXIT: Fact<String> = Fact::new("run.lab_exit");
    /// What the run left behind (empty when clean).
    pub const LEAKS: Fact<Vec<String>> = Fact::new("run.leaks");
}

pub const LAB_FINISHED: &str = "lab-finished";
pub const NOTHING_LEAKED: &str = "nothing-leaked";
pub const COMMON: [VerdictSpec; 2] = [
    VerdictSpec {
        id: LAB_FINISHED,
        claim: "the lab ran through every stage and exited with status 0",
        points: 1,
        region: None,
        requires: &[],
        hint: "run the lab by hand (`cilab run <lab>`) and read its last lines: an error names the syscall that failed",
        decide: |e| Some(e.get(run_facts::ALL_STAGES_REACHED)? && e.get(run_facts::LAB_EXIT)? == "exit status 0"),
    },
    VerdictSpec {
        id: NOTHING_LEAKED,
        claim:
            "after the run, the lab's host (the run's mount namespace), its cgroup and its processes are as they were",
        points: 2,
        region: None,
        requires: &[LAB_FINISHED],
        hint: "make the mount tree private before mounting, kill and reap every child, and remove what you created",
        decide: |e| Some(e.get(run_facts::LEAKS)?.is_empty()),
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Could not be checked here; `detail` says why. Never counted as a pass.
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Earns points: something the student writes can fail it.
    #[default]
    Graded,
    /// The harness demonstrates it; shown without points.
    Fact,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub id: String,
    pub claim: String,
    pub outcome: Outcome,
    #[serde(default)]
    pub kind: Kind,
    pub points: u32,
    pub max_points: u32,
    /// The stage the verdict's evidence comes from (or where the run stopped short of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The STUDENT region this verdict grades.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Keys of the facts this verdict was decided on.
    pub rests_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// How the detail of a verdict the run never got to begins.
const NOT_REACHED: &str = "not reached";

/// The run stopped before this verdict's facts were observed.
fn not_reached(verdict: &Verdict) -> bool {
    verdict.detail.as_deref().is_some_and(|d| d.starts_with(NOT_REACHED))
}

/// Why a run ended before its last stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    /// The stage the harness was waiting for or observing.
    pub stage: Option<String>,
    pub why: String,
    /// The harness failed, not the lab: what was not checked is a SKIP, not a FAIL.
    pub harness_failure: bool,
    /// The STUDENT region the lab panicked in, if it did.
    pub panic_region: Option<String>,
}

/// What a lab's regions say, for hints: region name to its hint.
pub type RegionHints = BTreeMap<String, String>;

/// Decides every verdict on the facts, in declaration order, then keeps hints only where
/// they help: the first failure of each region at each stage (ten hints after a `todo!()`
/// help nobody).
pub fn decide_all(
    lab: &str,
    specs: &[VerdictSpec],
    facts: &Facts,
    stop: Option<&Stop>,
    stages: &[&str],
    regions: &RegionHints,
) -> Vec<Verdict> {
    let stage_index = |key: &str| {
        let stage = stage_of(key);
        stages.iter().position(|s| *s == stage).unwrap_or(stages.len())
    };
    let mut verdicts: Vec<Verdict> = specs
        .iter()
        .map(|spec| {
            let mut verdict = Verdict {
                id: spec.id.to_string(),
                claim: spec.claim.to_string(),
                outcome: Outcome::Fail,
                kind: spec.kind(),
                points: 0,
                max_points: spec.points,
                stage: None,
                region: spec.region.map(String::from),
                rests_on: Vec::new(),
                detail: None,
                hint: None,
            };
            if let Some(why) = facts.skipped(spec.id) {
                verdict.outcome = Outcome::Skip;
                verdict.detail = Some(why.to_string());
                return verdict;
            }
            let evidence = Evidence::new(facts);
            let decision = (spec.decide)(&evidence);
            let asked = evidence.asked();
            verdict.stage = asked
                .iter()
                .max_by_key(|k| stage_index(k))
                .map(|k| stage_of(k))
                .filter(|s| *s != "run")
                .map(String::from);
            verdict.rests_on = asked.iter().map(|k| k.to_string()).collect();
            match decision {
                Some(true) => {
                    verdict.outcome = Outcome::Pass;
                    verdict.points = spec.points;
                }
                Some(false) => {
                    let seen: Vec<String> =
                        evidence.seen().into_iter().map(|(key, value)| format!("{key} = {value}")).collect();
                    verdict.detail = Some(seen.join("; "));
                    verdict.hint = Some(hint_text(lab, spec, regions));
                }
                None => {
                    let missing = evidence.missing();
                    verdict.stage = missing.first().map(|k| stage_of(k)).filter(|s| *s != "run").map(String::from);
                    verdict.rests_on.retain(|k| !missing.contains(&k.as_str()));
                    if let Some(why) = missing.iter().find_map(|k| facts.stage_skipped(k)) {
                        verdict.outcome = Outcome::Skip;
                        verdict.detail = Some(format!("not run on this machine: {why}"));
                        return verdict;
                    }
                    match stop {
                        Some(stop) if stop.harness_failure => {
                            verdict.outcome = Outcome::Skip;
                            verdict.detail = Some(format!("not checked: {}", stop.why));
                        }
                        Some(stop) => {
                            verdict.detail = Some(format!("{NOT_REACHED}: {}", stop.why));
                            verdict.hint = Some(hint_text(lab, spec, regions));
                        }
                        // Every stage ran and still a fact is missing: a bug in the checks.
                        None => verdict.detail = Some(format!("never observed: {}", missing.join(", "))),
                    }
                }
            }
            verdict
        })
        .collect();
    apply_requirements(specs, &mut verdicts);
    keep_first_hints(&mut verdicts, stop);
    verdicts
}

/// A verdict that passed counts only once what it requires passed too (no points for
/// what doing nothing passes). A verdict that failed defers to a requirement that failed on
/// its own evidence: it keeps its outcome but gives no hint (the mistake is charged once,
/// to the region it is in). A requirement never reached (the run stopped first) takes
/// nothing from a failure decided on evidence.
fn apply_requirements(specs: &[VerdictSpec], verdicts: &mut [Verdict]) {
    let passed: BTreeSet<String> =
        verdicts.iter().filter(|v| v.outcome == Outcome::Pass).map(|v| v.id.clone()).collect();
    let failed_on_evidence: BTreeSet<String> =
        verdicts.iter().filter(|v| v.outcome == Outcome::Fail && !not_reached(v)).map(|v| v.id.clone()).collect();
    for (spec, verdict) in specs.iter().zip(verdicts.iter_mut()) {
        if verdict.outcome == Outcome::Skip || not_reached(verdict) {
            continue;
        }
        if verdict.outcome == Outcome::Pass {
            if let Some(missing) = spec.requires.iter().find(|r| !passed.contains(**r)) {
                verdict.outcome = Outcome::Fail;
                verdict.points = 0;
                verdict.detail = Some(format!("counts only once `{missing}` passes (it held on its own)"));
            }
        } else if let Some(failed) = spec.requires.iter().find(|r| failed_on_evidence.contains(**r)) {
            verdict.hint = None;
            let own = verdict.detail.take().unwrap_or_default();
            verdict.detail = Some(format!("counts only once `{failed}` passes ({own})"));
        }
    }
}

fn hint_text(lab: &str, spec: &VerdictSpec, regions: &RegionHints) -> String {
    match spec.region.and_then(|r| regions.get(r).map(|hint| (r, hint))) {
        Some((region, region_hint)) => {
            format!("{} (your code: STUDENT region `{region}` in labs/{lab}/src/main.rs: {region_hint})", spec.hint)
        }
        None => spec.hint.to_string(),
    }
}

/// A hint stays on the first failed verdict of each region at each stage. When the run
/// stopped early, a verdict it never reached keeps a hint only if it grades the region the
/// lab panicked in or, without a panic, if it is the first of its region at the stage the
/// run stopped at: the regions that can have stopped it, once each.
fn keep_first_hints(verdicts: &mut [Verdict], stop: Option<&Stop>) {
    let mut hinted: BTreeSet<(bool, Option<String>, Option<String>)> = BTreeSet::new();
    for verdict in verdicts.iter_mut().filter(|v| v.hint.is_some()) {
        let not_reached = not_reached(verdict);
        let region = verdict.region.clone().or_else(|| Some(verdict.id.clone()));
        let keep = match (not_reached, stop) {
            (true, Some(stop)) => match stop.panic_region.as_deref() {
                Some(panicked) => verdict.region.as_deref() == Some(panicked) && hinted.insert((true, None, region)),
                None => verdict.stage == stop.stage && hinted.insert((true, None, region)),
            },
            _ => hinted.insert((false, verdict.stage.clone(), region)),
        };
        if !keep {
            verdict.hint = None;
        }
    }
}

/// Words used in observations instead of raw values.
pub mod redact {
    use std::path::Path;

    use serde_json::Value;

    pub const HOST_PID: &str = "[host pid]";
    pub const SCRATCH: &str = "[scratch]";

    /// Raw values a run saw (host PIDs, namespace inodes, the scratch path) and the
    /// words that replace them wherever they still appear in an observation.
    #[derive(Debug, Default, Clone)]
    pub struct Redactor {
        numbers: Vec<(u64, &'static str)>,
        texts: Vec<(String, &'static str)>,
    }

    impl Redactor {
        pub fn number(&mut self, raw: u64, word: &'static str) {
            if !self.numbers.iter().any(|(n, _)| *n == raw) {
                self.numbers.push((raw, word));
            }
        }

        pub fn path(&mut self, raw: &Path, word: &'static str) {
            self.texts.push((raw.to_string_lossy().into_owned(), word));
        }

        pub fn value(&self, value: &mut Value) {
            match value {
                Value::Number(n) => {
                    if let Some((_, word)) = self.numbers.iter().find(|(raw, _)| n.as_u64() == Some(*raw)) {
                        *value = Value::String(word.to_string());
                    }
                }
                Value::String(s) => *s = self.text(s),
                Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
                Value::Object(map) => map.values_mut().for_each(|v| self.value(v)),
                Value::Bool(_) | Value::Null => {}
            }
        }

        pub fn text(&self, text: &str) -> String {
            let mut out = text.to_string();
            // Longest first, so that a path is replaced before a prefix of it.
            let mut texts = self.texts.clone();
            texts.sort_by_key(|(raw, _)| std::cmp::Reverse(raw.len()));
            for (raw, word) in texts {
                if !raw.is_empty() {
                    out = out.replace(&raw, word);
                }
            }
            for (raw, word) in &self.numbers {
                out = replace_whole_number(&out, *raw, word);
            }
            out
        }
    }

    /// Replaces `raw` where it stands as a whole number (not inside a longer one).
    fn replace_whole_number(text: &str, raw: u64, word: &str) -> String {
        let needle = raw.to_string();
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(&needle) {
            let before = rest[..at].chars().last();
            let after = rest[at + needle.len()..].chars().next();
            let whole = !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit());
            out.push_str(&rest[..at]);
            out.push_str(if whole { word } else { &needle });
            rest = &rest[at + needle.len()..];
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::redact::*;
    use super::*;
    use serde_json::json;

    const X: Fact<u32> = Fact::new("one.x");
    const Y: Fact<bool> = Fact::new("two.y");

    const SPECS: [VerdictSpec; 4] = [
        VerdictSpec {
            id: "a",
            claim: "A holds",
            points: 2,
            region: Some("r1"),
            requires: &[],
            hint: "look at A",
            decide: |e| Some(e.get(X)? == 1),
        },
        VerdictSpec {
            id: "b",
            claim: "B holds",
            points: 1,
            region: Some("r1"),
            requires: &[],
            hint: "look at B",
            decide: |e| Some(e.get(X)? == 2),
        },
        VerdictSpec {
            id: "c",
            claim: "C holds",
            points: 0,
            region: None,
            requires: &[],
            hint: "look at C",
            decide: |e| e.get(Y),
        },
        VerdictSpec {
            id: "d",
            claim: "D holds",
            points: 1,
            region: Some("r2"),
            requires: &[],
            hint: "look at D",
            decide: |e| Some(e.get(Y)? && e.get(X)? > 0),
        },
    ];

    fn regions() -> RegionHints {
        [("r1".to_string(), "hint of r1".to_string()), ("r2".to_string(), "hint of r2".to_string())].into()
    }

    #[test]
    fn verdicts_are_decided_on_facts_and_rest_on_what_they_read() {
        let mut facts = Facts::default();
        facts.record(X, 1);
        facts.record(Y, true);
        let verdicts = decide_all("lab", &SPECS, &facts, None, &["one", "two"], &regions());
        let outcomes: Vec<Outcome> = verdicts.iter().map(|v| v.outcome).collect();
        assert_eq!(outcomes, [Outcome::Pass, Outcome::Fail, Outcome::Pass, Outcome::Pass]);
        assert_eq!(verdicts[0].points, 2);
        assert_eq!(verdicts[1].points, 0);
        assert_eq!(verdicts[1].detail.as_deref(), Some("one.x = 1"));
        assert_eq!(verdicts[3].rests_on, vec!["two.y", "one.x"]);
        assert_eq!(verdicts[3].stage.as_deref(), Some("two"));
        assert_eq!(verdicts[2].kind, Kind::Fact);
    }

    #[test]
    fn one_hint_per_region_and_stage_with_the_region_hint() {
        let mut facts = Facts::default();
        facts.record(X, 3);
        facts.record(Y, false);
        let verdicts = decide_all("lab", &SPECS, &facts, None, &["one", "two"], &regions());
        assert!(verdicts.iter().all(|v| v.outcome == Outcome::Fail));
        let hint = verdicts[0].hint.as_deref().expect("first failure of r1 keeps its hint");
        assert!(hint.contains("look at A") && hint.contains("STUDENT region `r1` in labs/lab/src/main.rs: hint of r1"));
        assert_eq!(verdicts[1].hint, None, "the second failure of r1 at the same stage has none");
        assert!(verdicts[2].hint.is_some() && verdicts[3].hint.is_some());
    }

    #[test]
    fn a_run_that_stopped_hints_the_region_it_panicked_in() {
        let facts = Facts::default();
        let stop = Stop {
            stage: Some("one".into()),
            why: "the lab panicked".into(),
            harness_failure: false,
            panic_region: Some("r2".into()),
        };
        let verdicts = decide_all("lab", &SPECS, &facts, Some(&stop), &["one", "two"], &regions());
        assert!(verdicts.iter().all(|v| v.outcome == Outcome::Fail));
        assert_eq!(verdicts[0].detail.as_deref(), Some("not reached: the lab panicked"));
        let hinted: Vec<&str> = verdicts.iter().filter(|v| v.hint.is_some()).map(|v| v.id.as_str()).collect();
        assert_eq!(hinted, ["d"]);
    }

    #[test]
    fn a_run_that_stopped_without_a_panic_hints_each_region_of_that_stage_once() {
        let mut facts = Facts::default();
        facts.record(X, 1);
        let stop = Stop {
            stage: Some("two".into()),
            why: "the lab exited".into(),
            harness_failure: false,
            panic_region: None,
        };
        let verdicts = decide_all("lab", &SPECS, &facts, Some(&stop), &["one", "two"], &regions());
        let hinted: Vec<&str> = verdicts.iter().filter(|v| v.hint.is_some()).map(|v| v.id.as_str()).collect();
        assert_eq!(hinted, ["b", "c", "d"], "b failed at stage one; c and d were not reached at stage two");
    }

    #[test]
    fn a_verdict_counts_only_after_what_it_requires() {
        const NEEDS_A: [VerdictSpec; 2] = [
            VerdictSpec {
                id: "a",
                claim: "A",
                points: 2,
                region: Some("r1"),
                requires: &[],
                hint: "look at A",
                decide: |e| Some(e.get(X)? == 1),
            },
            VerdictSpec {
                id: "b",
                claim: "B",
                points: 1,
                region: Some("r2"),
                requires: &["a"],
                hint: "look at B",
                decide: |e| Some(e.get(X)? > 0),
            },
        ];
        let mut facts = Facts::default();
        facts.record(X, 5);
        let verdicts = decide_all("lab", &NEEDS_A, &facts, None, &["one"], &regions());
        assert_eq!((verdicts[0].outcome, verdicts[0].hint.is_some()), (Outcome::Fail, true));
        assert_eq!((verdicts[1].outcome, verdicts[1].points, verdicts[1].hint.is_some()), (Outcome::Fail, 0, false));
        assert_eq!(verdicts[1].detail.as_deref(), Some("counts only once `a` passes (it held on its own)"));
    }

    #[test]
    fn a_harness_failure_skips_what_it_could_not_check_and_gives_no_points() {
        let mut facts = Facts::default();
        facts.record(X, 1);
        facts.skip("b", "kernel too old");
        let stop =
            Stop { stage: Some("two".into()), why: "fork: EAGAIN".into(), harness_failure: true, panic_region: None };
        let verdicts = decide_all("lab", &SPECS, &facts, Some(&stop), &["one", "two"], &regions());
        assert_eq!(verdicts[0].outcome, Outcome::Pass);
        assert_eq!((verdicts[1].outcome, verdicts[1].points), (Outcome::Skip, 0));
        assert_eq!(verdicts[1].detail.as_deref(), Some("kernel too old"));
        assert_eq!(verdicts[3].outcome, Outcome::Skip);
        assert_eq!(verdicts[3].detail.as_deref(), Some("not checked: fork: EAGAIN"));
    }

    #[test]
    fn a_stage_this_machine_cannot_run_skips_the_verdicts_that_read_it_and_only_those() {
        let mut facts = Facts::default();
        facts.record(X, 1);
        facts.skip_stage("two", "Docker is not available");
        let verdicts = decide_all("lab", &SPECS, &facts, None, &["one", "two"], &regions());
        let outcomes: Vec<Outcome> = verdicts.iter().map(|v| v.outcome).collect();
        assert_eq!(outcomes, [Outcome::Pass, Outcome::Fail, Outcome::Skip, Outcome::Skip]);
        assert_eq!(verdicts[3].detail.as_deref(), Some("not run on this machine: Docker is not available"));
        assert_eq!((verdicts[3].points, verdicts[3].hint.as_deref()), (0, None));
    }

    #[test]
    fn redaction_replaces_raw_pids_inodes_and_paths_everywhere() {
        let mut redactor = Redactor::default();
        redactor.number(4347, HOST_PID);
        redactor.number(4026532178, "[namespace]");
        redactor.path(std::path::Path::new("/var/lib/cilab/scratch/pid-ns-1"), SCRATCH);
        let mut value = json!({
            "nspid": [4347, 1],
            "ns": 4026532178u64,
            "note": "pid 4347 wrote /var/lib/cilab/scratch/pid-ns-1/log, not 143470",
            "count": 3,
        });
        redactor.value(&mut value);
        assert_eq!(
            value,
            json!({
                "nspid": ["[host pid]", 1],
                "ns": "[namespace]",
                "note": "pid [host pid] wrote [scratch]/log, not 143470",
                "count": 3,
            })
        );
    }
}
