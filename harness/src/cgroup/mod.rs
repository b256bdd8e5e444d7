//! cgroups: which layout this machine has (v1, v2 or hybrid), where cilab itself sits,
//! and one cgroup per run, so that the harness can bound a lab's whole process tree and
//! kill all of it.

pub mod fs;
pub mod harness;
pub mod membership;
pub mod run_group;
pub mod scan;
pub mod setup;

pub use harness::{Placement, LEAF_PREFIX};
pub use run_group::{Limits, RunCgroup};
pub use setup::{CgroupLayout, CgroupSetup};

/// The directory, below the cgroup cilab was started in, that holds its runs' cgroups
/// (and on v2 cilab's own leaf).
pub const PARENT_DIR: &str = "cilab";
