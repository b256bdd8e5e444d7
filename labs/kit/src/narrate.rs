//! Narration for a person, and the hold points for the harness.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use crate::protocol::{HoldMessage, CONTINUE};
use crate::{LabError, Result};

/// The flags every lab binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct LabArgs {
    /// Pause before each step until you press Enter.
    #[arg(long)]
    pub step: bool,
    /// Run under the harness: narrate on stderr, stop at each stage for `continue` on stdin.
    #[arg(long, hide = true)]
    pub hold: bool,
    /// Work in this directory instead of a fresh one under /tmp (it must exist).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A person runs the lab; the lab also plays the host's part.
    ByHand { pause_each_step: bool },
    /// The harness runs the lab and plays the host's part itself.
    Held,
}

/// Narrates the lab's steps and, in held mode, stops at each stage.
pub struct Lab {
    mode: Mode,
    total_steps: usize,
    current_step: usize,
}

impl Lab {
    pub fn new(args: &LabArgs, title: &str, total_steps: usize) -> Self {
        let mode = if args.hold { Mode::Held } else { Mode::ByHand { pause_each_step: args.step } };
        let lab = Lab { mode, total_steps, current_step: 0 };
        lab.line(&format!("== {title} =="));
        lab
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// True when a person runs the lab: then the lab itself does what the harness would do
    /// from the host (send signals, try things from outside) so the student sees it.
    pub fn plays_host(&self) -> bool {
        matches!(self.mode, Mode::ByHand { .. })
    }

    fn line(&self, text: &str) {
        emit(self.mode, text);
    }

    /// A voice for a child process, which cannot borrow the `Lab` across `fork`.
    pub fn voice(&self) -> Voice {
        Voice(self.mode)
    }

    /// Starts a numbered step: what it does, the syscall the lab makes, the shell equivalent.
    pub fn step(&mut self, title: &str, syscall: &str, shell: &str) {
        self.current_step += 1;
        self.line("");
        self.line(&format!("-- Step {}/{}: {title}", self.current_step, self.total_steps));
        self.line(&format!("   syscall: {syscall}"));
        self.line(&format!("   shell:   {shell}"));
        if let Mode::ByHand { pause_each_step: true } = self.mode {
            print!("   [press Enter to run this step] ");
            let _ = std::io::stdout().flush();
            let mut buf = String::new();
            let _ = std::io::stdin().lock().read_line(&mut buf);
        }
    }

    /// Something the lab saw (narration: the harness checks it independently).
    pub fn saw(&self, text: &str) {
        self.line(&format!("   saw:     {text}"));
    }

    /// An explanation: why the kernel behaves this way.
    pub fn why(&self, text: &str) {
        self.line(&format!("   why:     {text}"));
    }

    /// What the lab does in the host's place when run by hand.
    pub fn as_host(&self, text: &str) {
        self.line(&format!("   host:    {text}"));
    }

    pub fn done(&self, text: &str) {
        self.line("");
        self.line(text);
    }

    /// A hold point. By hand: nothing happens. Held: announce `stage` on stdout, then wait
    /// for the harness to write `continue`. `claims` are what the lab believes, shown to the
    /// student beside the harness's own observations.
    pub fn hold(&self, stage: &str, claims: serde_json::Value) -> Result<()> {
        if self.mode != Mode::Held {
            return Ok(());
        }
        let message = HoldMessage::new(stage, claims);
        let line = serde_json::to_string(&message).map_err(|e| LabError::Handshake(e.to_string()))?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")
            .and_then(|_| stdout.flush())
            .map_err(|e| LabError::Handshake(format!("writing the hold line for {stage}: {e}")))?;
        drop(stdout);
        let mut reply = String::new();
        let read = std::io::stdin()
            .lock()
            .read_line(&mut reply)
            .map_err(|e| LabError::Handshake(format!("reading the harness's reply at {stage}: {e}")))?;
        if read == 0 {
            return Err(LabError::Handshake(format!("the harness went away while the lab held at {stage}")));
        }
        if reply.trim() != CONTINUE {
            return Err(LabError::Handshake(format!("expected `{CONTINUE}` at {stage}, got {:?}", reply.trim())));
        }
        Ok(())
    }
}

fn emit(mode: Mode, text: &str) {
    // Held: stdout carries the protocol, so the narration goes to stderr.
    let result = match mode {
        Mode::Held => writeln!(std::io::stderr(), "{text}"),
        Mode::ByHand { .. } => writeln!(std::io::stdout(), "{text}"),
    };
    // A closed terminal is no reason to stop a lab half way: its teardown matters more.
    let _ = result;
}

/// How a process inside the container narrates what it sees from there.
#[derive(Debug, Clone, Copy)]
pub struct Voice(Mode);

impl Voice {
    pub fn inside(&self, text: &str) {
        emit(self.0, &format!("   inside:  {text}"));
    }
}
