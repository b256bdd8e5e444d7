//! cgroups: which layout this machine has (v1, v2 or hybrid) and one cgroup per run,
//! so that the harness can bound a lab's whole process tree and kill all of it.

pub mod run_group;
pub mod setup;

pub use run_group::{Limits, RunCgroup};
pub use setup::{CgroupLayout, CgroupSetup};

/// The directory under each hierarchy's root that holds cilab's run cgroups.
pub const PARENT_DIR: &str = "cilab";
