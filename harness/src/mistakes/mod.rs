//! The mistake corpus's entries, one file per lab (`corpus` runs them). Their edits quote
//! the solution, so these files are the course author's: `cilab handout` writes each lab's
//! file as an empty list and `edition.rs` with `HANDOUT = true` (see `handout`), leaving the
//! rest of the harness as it is.

mod edition;

pub mod cgroup_limits;
pub mod chroot_escape;
pub mod chroot_jail;
pub mod nsenter_join;
pub mod pid_ns;
pub mod pivot_root;
pub mod rootfs_import;
pub mod userns_maps;

/// True in a student handout: the corpus is empty there, and `cilab dev` says where it is.
pub const HANDOUT: bool = edition::HANDOUT;
