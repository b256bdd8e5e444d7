//! Progress on long work (building the labs, each lab of `check --all`, a VM's boot and
//! check), drawn on stderr and only when stdout is a terminal: piped, cilab prints exactly
//! what it printed before, and tools reading its stdout or stderr see no drawing.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A spinner or bar, or nothing when stdout is not a terminal. Dropped, it is cleared.
#[derive(Debug)]
pub struct Progress(Option<ProgressBar>);

/// How often a spinner turns (its elapsed time is redrawn with it).
const TICK: Duration = Duration::from_millis(120);

/// Progress is drawn only for a person: stdout and stderr both on a terminal.
pub fn wanted() -> bool {
    std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

impl Progress {
    /// A spinner with the elapsed time: "⠋ building lab-pid-ns (3s)".
    pub fn spinner(message: impl Into<String>) -> Self {
        if !wanted() {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.into());
        bar.enable_steady_tick(TICK);
        Progress(Some(bar))
    }

    /// A bar of `len` steps with the current step's name: "[2/8] ████░░ pid-ns (14s)".
    pub fn bar(len: usize) -> Self {
        if !wanted() {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("[{pos}/{len}] {wide_bar} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(TICK);
        Progress(Some(bar))
    }

    /// Names the step now under way.
    pub fn step(&self, message: impl Into<String>) {
        if let Some(bar) = &self.0 {
            bar.set_message(message.into());
        }
    }

    /// One step done.
    pub fn advance(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }

    /// Runs `f` with the drawing hidden, so that what it prints on the terminal is not
    /// torn by the next redraw.
    pub fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.0 {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// True when something is drawn (a terminal).
    pub fn is_drawn(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
