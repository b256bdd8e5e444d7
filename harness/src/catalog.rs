//! The lab catalog: every lab in course order, what it needs, and how it is checked.

use std::path::Path;

use crate::error::{Error, Result};
use crate::run::LabRun;
use crate::verdict::{Grader, VerdictSpec};
use crate::{checks, verdict};

/// What a lab needs from the machine.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    pub root: bool,
    pub busybox: bool,
    /// Controllers the lab itself uses (the run's own cgroup aside).
    pub cgroup_controllers: &'static [&'static str],
}

pub type CheckFn = fn(&mut LabRun, &mut Grader) -> Result<()>;

#[derive(Debug, Clone, Copy)]
pub struct LabSpec {
    pub name: &'static str,
    pub order: u32,
    pub title: &'static str,
    /// One line: what the student builds.
    pub summary: &'static str,
    /// The cargo package and binary.
    pub package: &'static str,
    pub binary: &'static str,
    /// The stages the lab holds at, in order (from labkit's protocol).
    pub stages: &'static [&'static str],
    pub needs: Needs,
    pub verdicts: &'static [VerdictSpec],
    pub prepare: fn(&Path) -> Result<()>,
    pub check: CheckFn,
}

impl LabSpec {
    pub fn max_points(&self) -> u32 {
        self.verdicts.iter().chain(verdict::COMMON.iter()).map(|v| v.points).sum()
    }
}

static LABS: [LabSpec; 2] = [
    LabSpec {
        name: "chroot-jail",
        order: 1,
        title: "A directory the kernel treats as /",
        summary: "build a busybox jail, chroot into it, and find what chroot does not isolate",
        package: "lab-chroot-jail",
        binary: "lab-chroot-jail",
        stages: &labkit::protocol::chroot_jail::STAGES,
        needs: Needs { root: true, busybox: true, cgroup_controllers: &[] },
        verdicts: &checks::chroot_jail::VERDICTS,
        prepare: checks::chroot_jail::prepare,
        check: checks::chroot_jail::check,
    },
    LabSpec {
        name: "pid-ns",
        order: 2,
        title: "A process that is PID 1",
        summary: "unshare a PID namespace, fork its init, and watch signals, orphans and /proc",
        package: "lab-pid-ns",
        binary: "lab-pid-ns",
        stages: &labkit::protocol::pid_ns::STAGES,
        needs: Needs { root: true, busybox: false, cgroup_controllers: &[] },
        verdicts: &checks::pid_ns::VERDICTS,
        prepare: checks::pid_ns::prepare,
        check: checks::pid_ns::check,
    },
];

/// All labs, in course order.
pub fn all() -> &'static [LabSpec] {
    &LABS
}

pub fn find(name: &str) -> Result<&'static LabSpec> {
    LABS.iter().find(|l| l.name == name).ok_or_else(|| Error::UnknownLab(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labs_are_in_course_order_with_unique_names_and_verdict_ids() {
        let orders: Vec<u32> = all().iter().map(|l| l.order).collect();
        assert!(orders.windows(2).all(|w| w[0] < w[1]), "{orders:?}");
        for lab in all() {
            let mut ids: Vec<&str> = lab.verdicts.iter().chain(verdict::COMMON.iter()).map(|v| v.id).collect();
            let count = ids.len();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), count, "duplicate verdict id in {}", lab.name);
        }
        assert!(find("no-such-lab").is_err());
    }

    /// The lab sheet and the checks say the same thing: every verdict, with its id and
    /// its exact sentence, is listed on the sheet under "What the checks verify".
    #[test]
    fn every_verdict_is_on_its_lab_sheet_word_for_word() {
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for lab in all() {
            let sheet_path = workspace.join("labs").join(lab.name).join("README.md");
            let sheet = std::fs::read_to_string(&sheet_path).expect("every lab has a sheet");
            for verdict in lab.verdicts.iter().chain(verdict::COMMON.iter()) {
                let line = format!("- `{}` — {}", verdict.id, verdict.claim);
                assert!(sheet.contains(&line), "{} lacks the line:\n{line}", sheet_path.display());
            }
        }
    }
}
