//! `labkit`: the little that every cilab lab shares.
//!
//! A lab is a small program that builds one piece of a container out of kernel
//! primitives and narrates each step. The same binary runs in two ways:
//!
//! - by hand (`sudo target/debug/lab-pid-ns [--step]`): it narrates to the terminal and
//!   plays the host's part itself (sending signals, trying things from outside);
//! - held by the harness (`--hold`): narration goes to stderr, and at each stage the lab
//!   prints one [`protocol::HoldMessage`] line on stdout and waits for `continue` on stdin,
//!   so that the harness can observe the kernel's state from outside and act as the host.
//!
//! Whatever the lab says is narration. The harness never grades on it.

pub mod child;
pub mod cleanup;
pub mod elf;
pub mod error;
pub mod narrate;
pub mod protocol;
pub mod regions;
pub mod rootfs;
pub mod workdir;

pub use error::{LabError, Result};
pub use narrate::{Lab, LabArgs, Mode, Voice};
pub use workdir::{create_searchable_dir, ns_link, require_root, Workdir};

/// The whole `main` of a lab: installs the signal cleanup, runs `lab`, and on an error
/// prints it (with its causes) and cleans up what the lab had started.
pub fn main<E: std::fmt::Display>(
    binary: &str,
    lab: impl FnOnce() -> std::result::Result<(), E>,
) -> std::process::ExitCode {
    let outcome = match cleanup::install() {
        Ok(()) => lab().map_err(|error| format!("{error:#}")),
        Err(error) => Err(error.to_string()),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{binary}: error: {error}");
            cleanup::run_all();
            std::process::ExitCode::FAILURE
        }
    }
}
