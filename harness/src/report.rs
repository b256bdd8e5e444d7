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

/// The version of the JSON report's shape, written as `schema_version`. A change that
/// could break a reader (a field renamed, removed or made optional, a new outcome) comes
/// with a new number and a new `harness/schema/report.v<N>.schema.json`.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`] of the cilab that wrote it.
    pub schema_version: u32,
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
        Report { schema_version: SCHEMA_VERSION, cilab_version: env!("CARGO_PKG_VERSION").to_string(), labs, summary }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Verdict;
    use serde_json::Value;

    /// The JSON Schema of this report, kept in the tree for other tools.
    pub(crate) const SCHEMA: &str = include_str!("../schema/report.v1.schema.json");

    /// A report with every field serde can write set, so that every key appears.
    fn every_field_set() -> Report {
        let verdict = Verdict {
            id: "a-verdict".into(),
            claim: "a claim".into(),
            outcome: Outcome::Fail,
            kind: Kind::Graded,
            points: 0,
            max_points: 3,
            stage: Some("a-stage".into()),
            region: Some("a-region".into()),
            rests_on: vec!["a-stage.a-fact".into()],
            detail: Some("what was seen".into()),
            hint: Some("where to look".into()),
        };
        let lab = LabReport {
            lab: "a-lab".into(),
            title: "A lab".into(),
            backend: "qemu".into(),
            verdicts: vec![verdict],
            observations: [("a-stage.a-fact".to_string(), serde_json::json!({"any": ["shape"]}))].into(),
            leaks: vec!["a leak".into()],
            stopped: Some("stopped at a-stage".into()),
            harness_failure: Some("the harness failed".into()),
            panic: Some(LabPanic { message: "boom".into(), location: Some("main.rs:1".into()), region: None }),
            narration_tail: vec!["last words".into()],
            lab_claims: vec![StageClaims { stage: "a-stage".into(), claims: serde_json::json!({"pid": 1}) }],
            cgroup_limits: vec!["pids.max=256 (v2)".into()],
            duration_ms: 12,
            guest: Some(GuestInfo {
                backend: "qemu".into(),
                accelerator: Some("tcg".into()),
                kernel: Some("6.1.0".into()),
                cgroup: Some("v2".into()),
                boot_to_report_ms: Some(2400),
                sealed: Some(vec!["grader not dumpable".into()]),
            }),
        };
        Report::new(vec![lab])
    }

    fn schema() -> Value {
        serde_json::from_str(SCHEMA).expect("the report's schema is JSON")
    }

    /// Follows a local `$ref` ("#/$defs/name") to the schema it names.
    fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.strip_prefix("#/$defs/").expect("only local $defs references");
                resolve(root, &root["$defs"][name])
            }
            None => node,
        }
    }

    /// Walks `value` beside `node`: every key serde wrote must be a property of a schema
    /// that names its properties, and every property must have been written (the sample
    /// sets every field): a field added to the structs without the schema, or a schema
    /// property no struct writes, shows up here by its path.
    fn compare(root: &Value, node: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
        let node = resolve(root, node);
        match value {
            Value::Object(fields) => {
                let Some(properties) = node.get("properties").and_then(Value::as_object) else { return };
                for (key, item) in fields {
                    match properties.get(key) {
                        Some(schema) => compare(root, schema, item, &format!("{path}.{key}"), problems),
                        None => problems.push(format!("{path}.{key} is written but not in the schema")),
                    }
                }
                for key in properties.keys().filter(|k| !fields.contains_key(*k)) {
                    problems.push(format!("{path}.{key} is in the schema but never written"));
                }
                let required = node.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
                for key in required.iter().filter_map(Value::as_str) {
                    if !properties.contains_key(key) {
                        problems.push(format!("{path}.{key} is required but not a property"));
                    }
                }
                if node.get("additionalProperties") != Some(&Value::Bool(false)) {
                    problems.push(format!("{path}: a closed struct, but the schema lets other fields in"));
                }
            }
            Value::Array(items) => {
                if let Some(schema) = node.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        compare(root, schema, item, &format!("{path}[{i}]"), problems);
                    }
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_schema_names_every_field_serde_writes_and_no_other() {
        let root = schema();
        let value = serde_json::to_value(every_field_set()).expect("a report serialises");
        let mut problems = Vec::new();
        compare(&root, &root, &value, "report", &mut problems);
        assert!(
            problems.is_empty(),
            "harness/schema/report.v1.schema.json and the report differ:\n{}",
            problems.join("\n")
        );
    }

    /// The fields serde always writes are the schema's required ones: a sample with every
    /// optional field left out writes exactly those.
    #[test]
    fn the_fields_always_written_are_the_schemas_required_ones() {
        let root = schema();
        let mut report = every_field_set();
        let lab = &mut report.labs[0];
        (lab.stopped, lab.harness_failure, lab.guest) = (None, None, None);
        lab.narration_tail.clear();
        lab.panic = None;
        let verdict = &mut lab.verdicts[0];
        (verdict.stage, verdict.region, verdict.detail, verdict.hint) = (None, None, None, None);
        let value = serde_json::to_value(&report).expect("a report serialises");
        let keys = |v: &Value| v.as_object().expect("an object").keys().cloned().collect::<Vec<_>>();
        let required = |def: &Value| {
            let mut names: Vec<String> = resolve(&root, def)["required"]
                .as_array()
                .expect("required")
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            names.sort();
            names
        };
        let sorted = |mut names: Vec<String>| {
            names.sort();
            names
        };
        assert_eq!(sorted(keys(&value)), required(&root));
        assert_eq!(sorted(keys(&value["labs"][0])), required(&root["$defs"]["lab"]));
        assert_eq!(sorted(keys(&value["labs"][0]["verdicts"][0])), required(&root["$defs"]["verdict"]));
        assert_eq!(sorted(keys(&value["summary"])), required(&root["$defs"]["summary"]));
    }

    #[test]
    fn the_schema_is_of_this_schema_version() {
        let root = schema();
        assert_eq!(root["properties"]["schema_version"]["const"], serde_json::json!(SCHEMA_VERSION));
        let id = root["$id"].as_str().expect("$id");
        assert!(id.ends_with(&format!("report.v{SCHEMA_VERSION}.schema.json")), "{id}");
        assert_eq!(Report::new(Vec::new()).schema_version, SCHEMA_VERSION);
    }
}
