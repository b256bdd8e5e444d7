//! What a lab says when it panics: one line naming the STUDENT region it panicked in,
//! never a backtrace (a student's `todo!()` is news, not a crash report). Held by the
//! harness, the lab also prints a [`PanicMessage`] protocol line on stdout.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use crate::protocol::PanicMessage;
use crate::regions;

/// The protocol line must reach the harness in one piece: a pipe keeps writes of up to
/// PIPE_BUF (4096) bytes whole, so the message is cut well below that.
const MAX_MESSAGE: usize = 2000;

struct Context {
    binary: &'static str,
    source: &'static str,
    held: bool,
    /// The lab's own PID: any other process is a child it forked.
    lab_pid: i32,
}

static CONTEXT: OnceLock<Context> = OnceLock::new();

/// Replaces Rust's panic hook for the whole lab (its forked children inherit it).
/// `source` is the lab's own src/main.rs, where its STUDENT regions are.
pub fn install(binary: &'static str, source: &'static str, held: bool) {
    let lab_pid = nix::unistd::getpid().as_raw();
    let _ = CONTEXT.set(Context { binary, source, held, lab_pid });
    std::panic::set_hook(Box::new(|info| {
        let Some(context) = CONTEXT.get() else { return };
        crate::child::note_panic();
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(a panic without a message)");
        let (location, region) = match info.location() {
            Some(at) => locate(context.source, at.file(), at.line()),
            None => ("an unknown place".to_string(), None),
        };
        report(context, message, &location, region.as_deref());
    }));
}

/// `src/main.rs:123` and its region, for a panic in the lab's main.rs; else `file:line`.
fn locate(source: &str, file: &str, line: u32) -> (String, Option<String>) {
    if !Path::new(file).ends_with("src/main.rs") {
        return (format!("{file}:{line}"), None);
    }
    let regions = regions::parse(source).unwrap_or_default();
    let region = usize::try_from(line).ok().and_then(|l| regions::at_line(&regions, l)).map(|r| r.name.clone());
    (format!("src/main.rs:{line}"), region)
}

fn report(context: &Context, message: &str, location: &str, region: Option<&str>) {
    let who = if nix::unistd::getpid().as_raw() == context.lab_pid {
        context.binary.to_string()
    } else {
        let comm = nix::sys::prctl::get_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{} (in {comm})", context.binary)
    };
    let place = match region {
        Some(region) => format!("in STUDENT region `{region}` ({location})"),
        None => format!("at {location}"),
    };
    // A broken stderr must not turn the panic into an abort: ignore write errors.
    let _ = writeln!(std::io::stderr(), "{who}: panicked {place}: {message}");
    if context.held {
        let message = cut(message, MAX_MESSAGE);
        if let Ok(mut line) = serde_json::to_string(&PanicMessage::new(message, location, region)) {
            line.push('\n');
            // One write(2), bypassing std's buffer, so the line cannot interleave with another.
            let _ = nix::unistd::write(std::io::stdout(), line.as_bytes());
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "fn f() {\n    // STUDENT: begin r\n    // Hint: h\n    todo!()\n    // STUDENT: end r\n}\n";

    #[test]
    fn a_panic_in_main_rs_names_its_region() {
        assert_eq!(locate(SOURCE, "labs/pid-ns/src/main.rs", 4), ("src/main.rs:4".to_string(), Some("r".to_string())));
        assert_eq!(locate(SOURCE, "src/main.rs", 1), ("src/main.rs:1".to_string(), None));
        assert_eq!(locate(SOURCE, "labs/kit/src/child.rs", 4), ("labs/kit/src/child.rs:4".to_string(), None));
        // A file that merely ends in "main.rs" is not the lab's.
        assert_eq!(locate(SOURCE, "labs/x/src/notmain.rs", 4).1, None);
    }

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("short", 100), "short");
    }
}
