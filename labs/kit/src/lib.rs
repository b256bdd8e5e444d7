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

pub mod archives;
pub mod caps;
pub mod child;
pub mod cleanup;
pub mod disposable;
pub mod elf;
pub mod error;
pub mod ids;
pub mod narrate;
pub mod panics;
pub mod protocol;
pub mod regions;
pub mod rootfs;
pub mod workdir;

use std::io::Write;

pub use error::{LabError, Result};
pub use narrate::{Lab, LabArgs, Mode, Voice};
pub use workdir::{create_searchable_dir, ns_link, require_root, Workdir};

/// The whole `main` of a lab: installs the panic hook and the signal cleanup, runs `lab`,
/// and on an error prints it (with its causes) and cleans up what the lab had started.
///
/// `source` is the lab's own main.rs (`include_str!("main.rs")`): a panic names the
/// STUDENT region it happened in. A panic, in the lab or in a child it forked, cleans up
/// too and ends the lab with status 101.
pub fn main<E: std::fmt::Display>(
    binary: &'static str,
    source: &'static str,
    lab: impl FnOnce() -> std::result::Result<(), E>,
) -> std::process::ExitCode {
    // clap has parsed the arguments already; the hook only needs to know this one.
    let held = std::env::args_os().skip(1).any(|a| a == "--hold");
    panics::install(binary, source, held);
    // Read now, while the lab is one thread and has forked nothing: its children inherit it.
    child::deadline();
    let outcome = match cleanup::install() {
        Ok(()) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(lab)) {
            Ok(result) => result.map_err(|error| format!("{error:#}")),
            // The hook has said what happened.
            Err(_) => Err(String::new()),
        },
        Err(error) => Err(error.to_string()),
    };
    match outcome {
        Ok(()) => {
            cleanup::settle();
            let left = cleanup::kill_adopted();
            if !left.is_empty() {
                let _ = writeln!(
                    std::io::stderr(),
                    "{binary}: killed what its children had left behind: {}",
                    left.join(", ")
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            if !error.is_empty() {
                let _ = writeln!(std::io::stderr(), "{binary}: error: {error}");
            }
            cleanup::run_all();
            if child::panic_seen() {
                std::process::ExitCode::from(protocol::PANIC_EXIT as u8)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}
