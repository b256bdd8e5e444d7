//! Reading the truth from outside: /proc, pidfds, and syscalls the harness makes itself
//! in forked children (never in a test thread, never trusting the lab's word).

pub mod forked;
pub mod pidfd;
pub mod procfs;
