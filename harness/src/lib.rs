//! cilab: runs container-internals labs, observes from outside what the kernel did,
//! and grades it. README.md has the tour and the architecture.

pub mod backend;
pub mod bench;
pub mod catalog;
pub mod cgroup;
pub mod checks;
pub mod corpus;
pub mod devcheck;
pub mod doctor;
pub mod error;
pub mod facts;
pub mod formats;
pub mod grade;
pub mod handout;
pub mod labbuild;
pub mod leaks;
pub mod mistakes;
pub mod mountns;
pub mod probe;
pub mod progress;
pub mod registry;
pub mod report;
pub mod run;
pub mod student;
pub mod submission;
pub mod verdict;

pub use error::{Error, Result};
