//! The lab catalog: every lab in course order, declared in one place: its binary, its
//! source (whose STUDENT regions carry the hints), the stages it holds at, what it needs
//! from the machine, its verdicts, and the observer that looks at it from outside at each
//! stage. Tests, the mistake corpus and the VM guest derive labs, stages, verdicts and
//! packages from here.

use std::path::Path;

use crate::checks;
use crate::corpus::Mistake;
use crate::error::{Error, Result};
use crate::facts::Facts;
use crate::mistakes;
use crate::run::LabRun;
use crate::verdict::{self, RegionHints, VerdictSpec};

/// A program a lab runs or copies, and the Debian/Ubuntu package that has it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
    /// It must be statically linked (a busybox that runs alone in a jail).
    pub must_be_static: bool,
}

/// What a lab needs from the machine.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    pub root: bool,
    pub tools: &'static [Tool],
    /// Controllers the lab itself uses (the run's own cgroup aside).
    pub cgroup_controllers: &'static [&'static str],
}

/// Looks at a held lab from outside, stage by stage, and records what it saw. It may act
/// as the host would (send signals, make syscalls in forked probes); it never decides a
/// verdict: verdicts are decided afterwards on the facts alone.
pub trait Observer {
    fn observe(&mut self, stage: &str, run: &mut LabRun, facts: &mut Facts) -> Result<()>;

    /// Called once the run is torn down (also after the lab was killed at any stage):
    /// removes what the lab made outside the run, where the run's own teardown cannot
    /// reach (a Docker container and image), and says what it had to remove. Each line is
    /// a leak: a lab that finishes cleanly leaves nothing for this to find.
    /// `scratch` is the run's scratch dir (the lab's workdir): gone by now, but a name the
    /// lab can have labelled what it made with. `killed` names the commands of the run's
    /// processes that were killed rather than left to finish: a request one had in flight
    /// (a `docker run` cut short) can still complete after the run.
    fn clean_up_outside(&mut self, _scratch: &Path, _killed: &[String]) -> Vec<String> {
        Vec::new()
    }

    /// Everything labs like this one made outside their runs and that is still there (all
    /// Docker containers and images labelled by some run), each with the scratch dir of the
    /// run that made it: `cilab doctor` reports those of runs that are gone.
    fn made_outside(&mut self) -> Vec<(std::path::PathBuf, String)> {
        Vec::new()
    }
}

/// Another way to run the same lab binary, chosen by extra arguments (`--docker`,
/// `--tmpfs`): a run of its own, with its own stages (named apart from the lab's), watched
/// by a fresh observer and graded by the same verdicts. A check runs the lab, then each
/// variant; a variant this machine cannot run turns every verdict that reads one of its
/// stages into a SKIP that says why.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub name: &'static str,
    pub args: &'static [&'static str],
    pub stages: &'static [&'static str],
    /// `Err(what to do)` when this machine cannot run the variant.
    pub available: fn() -> std::result::Result<(), String>,
    /// Programs the variant runs that the lab does not need (the uidmap package's): a VM
    /// guest gets them from this machine where it has them (see `backend::Payload`).
    pub tools: &'static [Tool],
}

pub struct LabSpec {
    pub name: &'static str,
    pub order: u32,
    pub title: &'static str,
    /// One line: what the student builds.
    pub summary: &'static str,
    /// The cargo package and binary.
    pub package: &'static str,
    pub binary: &'static str,
    /// The lab's source (src/main.rs): its STUDENT regions and their hints.
    pub source: &'static str,
    /// The stages the lab holds at, in order (from labkit's protocol).
    pub stages: &'static [&'static str],
    /// Further runs of the same binary with other arguments (none for most labs).
    pub variants: &'static [Variant],
    pub needs: Needs,
    /// `Err(why, and what to do)` when this machine cannot run the lab at all (user
    /// namespaces turned off, say): every verdict is then a SKIP that says so.
    pub available: fn() -> std::result::Result<(), String>,
    pub verdicts: &'static [VerdictSpec],
    /// Plants what the harness will look for, in the run's scratch dir, before the lab starts.
    pub prepare: fn(&Path) -> Result<()>,
    pub observer: fn() -> Box<dyn Observer>,
    /// Typical mistakes and lies, each with the verdict that must catch it (see `corpus`).
    pub mistakes: &'static [Mistake],
}

impl std::fmt::Debug for LabSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabSpec").field("name", &self.name).finish_non_exhaustive()
    }
}

impl LabSpec {
    /// The lab's verdicts and the ones every lab gets, in report order.
    pub fn all_verdicts(&self) -> Vec<VerdictSpec> {
        self.verdicts.iter().chain(verdict::COMMON.iter()).copied().collect()
    }

    pub fn max_points(&self) -> u32 {
        self.all_verdicts().iter().map(|v| v.points).sum()
    }

    /// The STUDENT regions of the lab's source.
    pub fn regions(&self) -> Result<Vec<labkit::regions::Region>> {
        labkit::regions::parse(self.source).map_err(|e| Error::parse(format!("labs/{}/src/main.rs", self.name), e))
    }

    pub fn region_hints(&self) -> RegionHints {
        self.regions().unwrap_or_default().into_iter().map(|r| (r.name, r.hint)).collect()
    }

    /// Every stage a full check holds at: the lab's, then each variant's.
    pub fn every_stage(&self) -> Vec<&'static str> {
        self.stages.iter().chain(self.variants.iter().flat_map(|v| v.stages.iter())).copied().collect()
    }

    pub fn variant(&self, name: &str) -> Result<&Variant> {
        self.variants.iter().find(|v| v.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.variants.iter().map(|v| v.name).collect();
            Error::Lab {
                lab: self.name.to_string(),
                message: if known.is_empty() {
                    format!("has no variant `{name}` (it has none)")
                } else {
                    format!("has no variant `{name}` (it has: {})", known.join(", "))
                },
            }
        })
    }

    /// The packages this lab needs installed, by name.
    pub fn packages(&self) -> Vec<&'static str> {
        self.needs.tools.iter().map(|t| t.package).collect()
    }
}

const BUSYBOX: Tool = Tool { program: "busybox", package: "busybox-static", must_be_static: true };
const ECHO: Tool = Tool { program: "echo", package: "coreutils", must_be_static: false };
const LDD: Tool = Tool { program: "ldd", package: "libc-bin", must_be_static: false };
// Set-user-ID root: the image keeps the mode bits.
const NEWUIDMAP: Tool = Tool { program: "newuidmap", package: "uidmap", must_be_static: false };
const NEWGIDMAP: Tool = Tool { program: "newgidmap", package: "uidmap", must_be_static: false };

static LABS: [LabSpec; 8] = [
    LabSpec {
        name: "chroot-jail",
        order: 1,
        title: "A directory the kernel treats as /",
        summary: "build a busybox jail, chroot into it, and find what chroot does not isolate",
        package: "lab-chroot-jail",
        binary: "lab-chroot-jail",
        source: include_str!("../../labs/chroot-jail/src/main.rs"),
        stages: &labkit::protocol::chroot_jail::STAGES,
        variants: &[],
        needs: Needs { root: true, tools: &[BUSYBOX, ECHO, LDD], cgroup_controllers: &[] },
        available: || Ok(()),
        verdicts: &checks::chroot_jail::VERDICTS,
        prepare: checks::chroot_jail::prepare,
        observer: checks::chroot_jail::observer,
        mistakes: mistakes::chroot_jail::MISTAKES,
    },
    LabSpec {
        name: "pid-ns",
        order: 2,
        title: "A process that is PID 1",
        summary: "unshare a PID namespace, fork its init, and watch signals, orphans and /proc",
        package: "lab-pid-ns",
        binary: "lab-pid-ns",
        source: include_str!("../../labs/pid-ns/src/main.rs"),
        stages: &labkit::protocol::pid_ns::STAGES,
        variants: &[],
        needs: Needs { root: true, tools: &[], cgroup_controllers: &[] },
        available: || Ok(()),
        verdicts: &checks::pid_ns::VERDICTS,
        prepare: checks::pid_ns::prepare,
        observer: checks::pid_ns::observer,
        mistakes: mistakes::pid_ns::MISTAKES,
    },
    LabSpec {
        name: "nsenter-join",
        order: 3,
        title: "Joining a running container",
        summary: "setns into a container's namespaces as nsenter does: which PID, who can kill it, what stop does",
        package: "lab-nsenter-join",
        binary: "lab-nsenter-join",
        source: include_str!("../../labs/nsenter-join/src/main.rs"),
        stages: &labkit::protocol::nsenter_join::STAGES,
        variants: &[Variant {
            name: "docker",
            args: &[labkit::protocol::nsenter_join::DOCKER_FLAG],
            stages: &labkit::protocol::nsenter_join::DOCKER_STAGES,
            available: checks::nsenter_join::docker_available,
            tools: &[],
        }],
        needs: Needs { root: true, tools: &[BUSYBOX], cgroup_controllers: &[] },
        available: || Ok(()),
        verdicts: &checks::nsenter_join::VERDICTS,
        prepare: checks::nsenter_join::prepare,
        observer: checks::nsenter_join::observer,
        mistakes: mistakes::nsenter_join::MISTAKES,
    },
    LabSpec {
        name: "pivot-root",
        order: 4,
        title: "A root of the container's own",
        summary: "pivot_root into a busybox rootfs, unmount the old root, and find which ways out are closed",
        package: "lab-pivot-root",
        binary: "lab-pivot-root",
        source: include_str!("../../labs/pivot-root/src/main.rs"),
        stages: &labkit::protocol::pivot_root::STAGES,
        variants: &[Variant {
            name: "tmpfs",
            args: &[labkit::protocol::pivot_root::TMPFS_FLAG],
            stages: &labkit::protocol::pivot_root::TMPFS_STAGES,
            available: || Ok(()),
            tools: &[],
        }],
        needs: Needs { root: true, tools: &[BUSYBOX], cgroup_controllers: &[] },
        available: || Ok(()),
        verdicts: &checks::pivot_root::VERDICTS,
        prepare: checks::pivot_root::prepare,
        observer: checks::pivot_root::observer,
        mistakes: mistakes::pivot_root::MISTAKES,
    },
    LabSpec {
        name: "userns-maps",
        order: 5,
        title: "Who you are inside",
        summary: "unshare a user namespace as an unprivileged id, write its maps, and find what root inside may do",
        package: "lab-userns-maps",
        binary: "lab-userns-maps",
        source: include_str!("../../labs/userns-maps/src/main.rs"),
        stages: &labkit::protocol::userns_maps::STAGES,
        variants: &[Variant {
            name: "subids",
            args: &[labkit::protocol::userns_maps::SUBIDS_FLAG],
            stages: &labkit::protocol::userns_maps::SUBIDS_STAGES,
            available: checks::userns_maps::uidmap_available,
            tools: &[NEWUIDMAP, NEWGIDMAP],
        }],
        needs: Needs { root: true, tools: &[], cgroup_controllers: &[] },
        available: checks::userns_maps::userns_available,
        verdicts: &checks::userns_maps::VERDICTS,
        prepare: checks::userns_maps::prepare,
        observer: checks::userns_maps::observer,
        mistakes: mistakes::userns_maps::MISTAKES,
    },
    LabSpec {
        name: "cgroup-limits",
        order: 6,
        title: "How much you may use",
        summary:
            "make a cgroup under the run's, hold a fork bomb, a memory hog and a busy loop to its limits, freeze it",
        package: "lab-cgroup-limits",
        binary: "lab-cgroup-limits",
        source: include_str!("../../labs/cgroup-limits/src/main.rs"),
        stages: &labkit::protocol::cgroup_limits::STAGES,
        variants: &[],
        needs: Needs { root: true, tools: &[], cgroup_controllers: &["pids", "memory", "cpu", "cpuacct", "freezer"] },
        available: || Ok(()),
        verdicts: &checks::cgroup_limits::VERDICTS,
        prepare: checks::cgroup_limits::prepare,
        observer: checks::cgroup_limits::observer,
        mistakes: mistakes::cgroup_limits::MISTAKES,
    },
    LabSpec {
        name: "rootfs-import",
        order: 7,
        title: "Where a container's files come from",
        summary: "import a rootfs tarball with an importer of your own, run busybox in it, flatten layers, refuse hostile archives",
        package: "lab-rootfs-import",
        binary: "lab-rootfs-import",
        source: include_str!("../../labs/rootfs-import/src/main.rs"),
        stages: &labkit::protocol::rootfs_import::STAGES,
        variants: &[Variant {
            name: "docker",
            args: &[labkit::protocol::rootfs_import::DOCKER_FLAG],
            stages: &labkit::protocol::rootfs_import::DOCKER_STAGES,
            available: checks::rootfs_import::docker_available,
            tools: &[],
        }],
        needs: Needs { root: true, tools: &[BUSYBOX], cgroup_controllers: &[] },
        available: || Ok(()),
        verdicts: &checks::rootfs_import::VERDICTS,
        prepare: checks::rootfs_import::prepare,
        observer: checks::rootfs_import::observer,
        mistakes: mistakes::rootfs_import::MISTAKES,
    },
    LabSpec {
        name: "chroot-escape",
        order: 8,
        title: "Where a jail's walls end",
        summary:
            "break out of a chroot as root three ways (.., a kept fd, /proc/<pid>/root) and see which defences hold",
        package: "lab-chroot-escape",
        binary: "lab-chroot-escape",
        source: include_str!("../../labs/chroot-escape/src/main.rs"),
        stages: &labkit::protocol::chroot_escape::STAGES,
        variants: &[],
        needs: Needs { root: true, tools: &[BUSYBOX], cgroup_controllers: &[] },
        // Breaks isolation on purpose: only where the machine looks disposable, in a VM
        // backend, or with --allow-jailbreak-on-this-host.
        available: checks::chroot_escape::guard_available,
        verdicts: &checks::chroot_escape::VERDICTS,
        prepare: checks::chroot_escape::prepare,
        observer: checks::chroot_escape::observer,
        mistakes: mistakes::chroot_escape::MISTAKES,
    },
];

/// All labs, in course order.
pub fn all() -> &'static [LabSpec] {
    &LABS
}

pub fn find(name: &str) -> Result<&'static LabSpec> {
    LABS.iter().find(|l| l.name == name).ok_or_else(|| Error::UnknownLab(name.to_string()))
}

/// Every package the labs need, once each, in course order.
pub fn packages() -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = Vec::new();
    for package in all().iter().flat_map(LabSpec::packages) {
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    packages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Kind;

    /// Facts are keyed by stage: a variant's stages must not reuse the lab's or another's.
    #[test]
    fn stage_names_are_unique_across_a_lab_and_its_variants() {
        for lab in all() {
            let mut stages = lab.every_stage();
            let count = stages.len();
            stages.sort_unstable();
            stages.dedup();
            assert_eq!(stages.len(), count, "{}: a stage name is used twice", lab.name);
        }
    }

    #[test]
    fn labs_are_in_course_order_with_unique_names_and_verdict_ids() {
        let orders: Vec<u32> = all().iter().map(|l| l.order).collect();
        assert!(orders.windows(2).all(|w| w[0] < w[1]), "{orders:?}");
        for lab in all() {
            let mut ids: Vec<&str> = lab.all_verdicts().iter().map(|v| v.id).collect();
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
            for verdict in lab.all_verdicts() {
                let line = format!("- `{}` — {}", verdict.id, verdict.claim);
                assert!(sheet.contains(&line), "{} lacks the line:\n{line}", sheet_path.display());
            }
        }
    }

    /// A verdict counts after verdicts of its own lab that themselves count after nothing
    /// (requirements are decided in one step).
    #[test]
    fn requirements_name_verdicts_of_the_lab_without_chains() {
        for lab in all() {
            let verdicts = lab.all_verdicts();
            for verdict in &verdicts {
                for required in verdict.requires {
                    let found = verdicts.iter().find(|v| v.id == *required);
                    let found =
                        found.unwrap_or_else(|| panic!("{}: `{}` requires unknown `{required}`", lab.name, verdict.id));
                    assert!(found.requires.is_empty(), "{}: `{required}` has requirements of its own", lab.name);
                }
            }
        }
    }

    /// Points are earned only where the student's code can fail the check: every graded
    /// verdict of a lab names one of its STUDENT regions, every region is graded by some
    /// verdict, and a verdict that names no region is a fact shown without points.
    #[test]
    fn graded_verdicts_and_student_regions_match() {
        for lab in all() {
            let regions = lab.regions().expect("the lab's regions parse");
            assert!(!regions.is_empty(), "{} has no STUDENT region", lab.name);
            for region in &regions {
                assert!(!region.hint.is_empty(), "{} region {} has no hint", lab.name, region.name);
                assert!(
                    lab.verdicts.iter().any(|v| v.region == Some(region.name.as_str()) && v.points > 0),
                    "{}: no graded verdict for STUDENT region `{}`",
                    lab.name,
                    region.name
                );
            }
            for verdict in lab.verdicts {
                match verdict.region {
                    Some(name) => {
                        assert!(
                            regions.iter().any(|r| r.name == name),
                            "{}: `{}` names region `{name}`",
                            lab.name,
                            verdict.id
                        );
                        assert_eq!(
                            verdict.kind(),
                            Kind::Graded,
                            "{}: `{}` grades a region without points",
                            lab.name,
                            verdict.id
                        );
                    }
                    None => assert_eq!(
                        verdict.kind(),
                        Kind::Fact,
                        "{}: `{}` earns points for no region",
                        lab.name,
                        verdict.id
                    ),
                }
            }
        }
    }
}
