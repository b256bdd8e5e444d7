//! Typed observations. A lab's checks declare each fact once, as a [`Fact`] constant with a
//! key and a value type; the stage that observes it records a value, and the verdicts read
//! it back through [`Evidence`], which lists every fact a verdict read as the evidence it
//! rests on. Values are the stable, redacted form (relations, errno names, counts, PIDs as
//! seen inside a namespace): what is reported and snapshotted is exactly what was judged.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A kind of fact: its key (`<stage>.<name>`, or `run.<name>` for the run itself) and type.
pub struct Fact<T> {
    pub key: &'static str,
    value: PhantomData<fn() -> T>,
}

impl<T> Fact<T> {
    pub const fn new(key: &'static str) -> Self {
        Fact { key, value: PhantomData }
    }
}

impl<T> Clone for Fact<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Fact<T> {}

/// The stage whose observation a fact is: its key up to the first dot.
pub fn stage_of(key: &str) -> &str {
    key.split_once('.').map_or(key, |(stage, _)| stage)
}

/// Two namespaces, files or processes compared: the relation, never the raw ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Relation {
    Same,
    Differs,
}

impl Relation {
    pub fn of<T: PartialEq>(a: &T, b: &T) -> Self {
        if a == b {
            Relation::Same
        } else {
            Relation::Differs
        }
    }
}

/// Every fact a run recorded, by key.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    values: BTreeMap<String, Value>,
    /// Verdicts that cannot be checked on this machine, and why (never a pass).
    skips: BTreeMap<String, String>,
    /// Stages that cannot be run on this machine, and why: a verdict that reads one is a SKIP.
    skipped_stages: BTreeMap<String, String>,
}

impl Facts {
    pub fn record<T: Serialize>(&mut self, fact: Fact<T>, value: T) {
        let value = serde_json::to_value(value).unwrap_or_else(|e| Value::String(format!("(unserialisable: {e})")));
        self.values.insert(fact.key.to_string(), value);
    }

    pub fn get<T: DeserializeOwned>(&self, fact: Fact<T>) -> Option<T> {
        self.values.get(fact.key).and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// Marks verdict `id` as not checkable here, with the reason.
    pub fn skip(&mut self, id: &str, why: impl Into<String>) {
        self.skips.insert(id.to_string(), why.into());
    }

    pub fn skipped(&self, id: &str) -> Option<&str> {
        self.skips.get(id).map(String::as_str)
    }

    /// Marks `stage` as not run here, with the reason.
    pub fn skip_stage(&mut self, stage: &str, why: impl Into<String>) {
        self.skipped_stages.insert(stage.to_string(), why.into());
    }

    /// Why the stage of fact `key` was not run here, if it was skipped.
    pub fn stage_skipped(&self, key: &str) -> Option<&str> {
        self.skipped_stages.get(stage_of(key)).map(String::as_str)
    }

    pub fn into_values(self) -> BTreeMap<String, Value> {
        self.values
    }
}

/// What one verdict's decision reads. Asking for a fact makes it part of the evidence; a
/// fact never recorded makes the decision impossible (`None`: the run did not get there).
pub struct Evidence<'a> {
    facts: &'a Facts,
    asked: RefCell<Vec<&'static str>>,
}

impl<'a> Evidence<'a> {
    pub fn new(facts: &'a Facts) -> Self {
        Evidence { facts, asked: RefCell::new(Vec::new()) }
    }

    pub fn get<T: DeserializeOwned>(&self, fact: Fact<T>) -> Option<T> {
        let mut asked = self.asked.borrow_mut();
        if !asked.contains(&fact.key) {
            asked.push(fact.key);
        }
        self.facts.get(fact)
    }

    /// The keys asked for, in the order asked.
    pub fn asked(&self) -> Vec<&'static str> {
        self.asked.borrow().clone()
    }

    /// The keys asked for and never recorded.
    pub fn missing(&self) -> Vec<&'static str> {
        self.asked.borrow().iter().copied().filter(|k| !self.facts.values.contains_key(*k)).collect()
    }

    /// `key = value` for each fact asked for and recorded: what the verdict saw.
    pub fn seen(&self) -> Vec<(String, Value)> {
        self.asked
            .borrow()
            .iter()
            .filter_map(|k| self.facts.values.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNT: Fact<u32> = Fact::new("stage-a.count");
    const NAME: Fact<String> = Fact::new("stage-b.name");

    #[test]
    fn facts_round_trip_with_their_type_and_evidence_lists_what_was_read() {
        let mut facts = Facts::default();
        facts.record(COUNT, 3);
        let evidence = Evidence::new(&facts);
        let decided = (|| Some(evidence.get(COUNT)? == 3 && evidence.get(NAME)? == "x"))();
        assert_eq!(decided, None, "a fact never recorded leaves the verdict undecided");
        assert_eq!(evidence.asked(), vec!["stage-a.count", "stage-b.name"]);
        assert_eq!(evidence.missing(), vec!["stage-b.name"]);
        assert_eq!(evidence.seen(), vec![("stage-a.count".to_string(), serde_json::json!(3))]);
        assert_eq!(stage_of(NAME.key), "stage-b");
    }

    #[test]
    fn relations_instead_of_values() {
        assert_eq!(Relation::of(&1, &1), Relation::Same);
        assert_eq!(serde_json::to_value(Relation::of(&1, &2)).expect("json"), serde_json::json!("differs"));
    }
}
