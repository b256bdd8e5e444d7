//! Observations (stable, redacted facts the harness saw) and verdicts (named checks a
//! student understands, with points, the observations they rest on and a hint).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A verdict as declared by a lab's checks, before the run.
#[derive(Debug, Clone, Copy)]
pub struct VerdictSpec {
    pub id: &'static str,
    /// The sentence that is true when the check passes.
    pub claim: &'static str,
    pub points: u32,
    /// Shown when the check fails: where to look, not the answer.
    pub hint: &'static str,
}

/// Verdicts every lab gets, judged by the run itself.
pub const LAB_FINISHED: &str = "lab-finished";
pub const NOTHING_LEAKED: &str = "nothing-leaked";
pub const COMMON: [VerdictSpec; 2] = [
    VerdictSpec {
        id: LAB_FINISHED,
        claim: "the lab ran through every stage and exited with status 0",
        points: 1,
        hint: "run the lab by hand (`cilab run <lab>`) and read its last lines: an error names the syscall that failed",
    },
    VerdictSpec {
        id: NOTHING_LEAKED,
        claim: "after the run, the host's mount table, cgroup tree and process list are as they were",
        points: 2,
        hint: "make the mount tree private before mounting, kill and reap every child, and remove what you created",
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub id: String,
    pub claim: String,
    pub outcome: Outcome,
    pub points: u32,
    pub max_points: u32,
    /// Keys of the observations this verdict was decided on.
    pub rests_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

pub type Observations = BTreeMap<String, Value>;

/// Collects observations and verdicts during one run.
#[derive(Debug)]
pub struct Grader {
    specs: Vec<VerdictSpec>,
    observations: Observations,
    verdicts: BTreeMap<&'static str, Verdict>,
}

impl Grader {
    pub fn new(lab_specs: &[VerdictSpec]) -> Self {
        let specs = lab_specs.iter().chain(COMMON.iter()).copied().collect();
        Grader { specs, observations: Observations::new(), verdicts: BTreeMap::new() }
    }

    /// Records a fact. `value` must already be redacted (see `redact`); the run also
    /// sweeps every observation for raw PIDs, inodes and paths before it is reported.
    pub fn observe(&mut self, key: &str, value: impl Serialize) {
        let value = serde_json::to_value(value).unwrap_or_else(|e| Value::String(format!("(unserialisable: {e})")));
        self.observations.insert(key.to_string(), value);
    }

    /// Decides a verdict. `detail` says what was seen when it failed. Every key in
    /// `rests_on` must have been observed: a verdict never claims evidence it lacks.
    pub fn judge(&mut self, id: &str, passed: bool, rests_on: &[&str], detail: impl Into<String>) {
        if let Some(missing) = rests_on.iter().find(|key| !self.observations.contains_key(**key)) {
            // Like an undeclared verdict id: a bug in the check, caught by the lab's tests.
            panic!("verdict `{id}` rests on `{missing}`, which was never observed");
        }
        let outcome = if passed { Outcome::Pass } else { Outcome::Fail };
        self.decide(id, outcome, rests_on, Some(detail.into()));
    }

    /// Marks a verdict as not checkable here, with the reason.
    pub fn skip(&mut self, id: &str, why: impl Into<String>) {
        self.decide(id, Outcome::Skip, &[], Some(why.into()));
    }

    fn decide(&mut self, id: &str, outcome: Outcome, rests_on: &[&str], detail: Option<String>) {
        let Some(spec) = self.specs.iter().find(|s| s.id == id) else {
            // A check naming a verdict it did not declare is a bug in the harness.
            panic!("verdict `{id}` is not declared for this lab");
        };
        let verdict = Verdict {
            id: spec.id.to_string(),
            claim: spec.claim.to_string(),
            outcome,
            points: if outcome == Outcome::Pass { spec.points } else { 0 },
            max_points: spec.points,
            rests_on: rests_on.iter().map(|s| s.to_string()).collect(),
            detail: if outcome == Outcome::Pass { None } else { detail },
            hint: (outcome == Outcome::Fail).then(|| spec.hint.to_string()),
        };
        self.verdicts.insert(spec.id, verdict);
    }

    /// Every declared verdict, in declaration order; the ones never decided failed
    /// because the run stopped before them (`stopped` says where and why).
    pub fn finish(mut self, stopped: Option<&str>) -> (Vec<Verdict>, Observations) {
        let reason = match stopped {
            Some(why) => format!("not reached: {why}"),
            None => "not reached: the check ended without deciding it".to_string(),
        };
        let specs = self.specs.clone();
        for spec in &specs {
            if !self.verdicts.contains_key(spec.id) {
                self.decide(spec.id, Outcome::Fail, &[], Some(reason.clone()));
            }
        }
        let verdicts = specs.iter().filter_map(|s| self.verdicts.remove(s.id)).collect();
        (verdicts, self.observations)
    }
}

/// Words used in observations instead of raw values.
pub mod redact {
    use std::path::Path;

    use serde_json::Value;

    pub const HOST_PID: &str = "[host pid]";
    pub const SCRATCH: &str = "[scratch]";

    /// "same" or "differs": a relation instead of two inode numbers.
    pub fn same_or_differs<T: PartialEq>(a: &T, b: &T) -> &'static str {
        if a == b {
            "same"
        } else {
            "differs"
        }
    }

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

    const SPECS: [VerdictSpec; 2] = [
        VerdictSpec { id: "a", claim: "A holds", points: 2, hint: "look at A" },
        VerdictSpec { id: "b", claim: "B holds", points: 1, hint: "look at B" },
    ];

    #[test]
    fn undecided_verdicts_fail_with_the_reason_the_run_stopped() {
        let mut grader = Grader::new(&SPECS);
        grader.observe("x", 1);
        grader.judge("a", true, &["x"], "unused");
        let (verdicts, _) = grader.finish(Some("the lab died at stage s"));
        assert_eq!(verdicts.len(), 2 + COMMON.len());
        assert_eq!(verdicts[0].outcome, Outcome::Pass);
        assert_eq!(verdicts[0].points, 2);
        assert_eq!(verdicts[0].hint, None);
        assert_eq!(verdicts[1].outcome, Outcome::Fail);
        assert_eq!(verdicts[1].points, 0);
        assert_eq!(verdicts[1].detail.as_deref(), Some("not reached: the lab died at stage s"));
        assert_eq!(verdicts[1].hint.as_deref(), Some("look at B"));
    }

    #[test]
    #[should_panic(expected = "rests on `never.seen`")]
    fn a_verdict_cannot_rest_on_an_observation_never_made() {
        let mut grader = Grader::new(&SPECS);
        grader.observe("x", true);
        grader.judge("a", true, &["x", "never.seen"], "");
    }

    #[test]
    fn a_skip_is_not_a_pass_and_has_no_points() {
        let mut grader = Grader::new(&SPECS);
        grader.skip("b", "kernel too old");
        let (verdicts, _) = grader.finish(None);
        let b = verdicts.iter().find(|v| v.id == "b").expect("b");
        assert_eq!((b.outcome, b.points), (Outcome::Skip, 0));
        assert_eq!(b.detail.as_deref(), Some("kernel too old"));
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

    #[test]
    fn relations_instead_of_values() {
        assert_eq!(same_or_differs(&1, &1), "same");
        assert_eq!(same_or_differs(&1, &2), "differs");
    }
}
