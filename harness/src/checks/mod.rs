//! One module per lab: its verdicts, what it plants before the run, and the check that
//! drives the held lab from stage to stage and observes the kernel from outside.

pub mod chroot_jail;
pub mod pid_ns;
