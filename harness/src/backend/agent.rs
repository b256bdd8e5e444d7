//! The two ends of the qemu guest's control channel: a virtio-serial port named
//! [`PORT_NAME`], a byte stream between a unix socket on the host and /dev/vport*p* in
//! the guest. Each request is one line of JSON ([`Request`]), each answer one line of
//! JSON ([`GuestOutput`]). In the guest, `cilab guest-agent` (started by the init) serves
//! requests until the host hangs up; then the init powers the guest off.
//!
//! Nothing is read from the console: it carries only what a person would see.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::GuestOutput;
use crate::error::{Error, Result};

/// The name qemu gives the port (`-device virtserialport,name=...`) and the guest finds
/// in /sys/class/virtio-ports/*/name.
pub const PORT_NAME: &str = "cilab.control";

/// How long the agent waits for the port to appear (the driver is loaded just before,
/// and the port's name arrives from the host a moment after its device).
const PORT_DEADLINE: Duration = Duration::from_secs(60);

/// One command for the guest to run as root.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub argv: Vec<String>,
    /// Run it on the guest's console (a person's terminal), not captured.
    #[serde(default)]
    pub terminal: bool,
    /// Written to the command's stdin, which is then closed (a sealed check's key: see
    /// [`super::seal`]). Without it, stdin is /dev/null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

/// The most of a command's stdout an answer carries (a report is well under a MiB): more
/// is dropped and said on stderr, and the host refuses a longer answer outright.
pub const MAX_STDOUT: usize = 16 << 20;
/// The most of a command's stderr an answer carries: its end, where the error is.
pub const MAX_STDERR: usize = 64 << 10;
/// The longest answer line the host reads: both of the above, escaped, with room to spare.
pub const MAX_ANSWER: usize = 4 * (MAX_STDOUT + MAX_STDERR);

/// `cilab guest-agent`: finds the port, then runs each request and answers it, until the
/// host hangs up (end of file).
pub fn serve() -> Result<()> {
    // The agent holds a sealed check's key for a moment: no lab may read its memory.
    super::seal::not_dumpable()?;
    let port = find_port(PORT_DEADLINE)?;
    let file = OpenOptions::new().read(true).write(true).open(&port).map_err(Error::io("open", &port))?;
    let mut writer = file.try_clone().map_err(Error::io("dup", &port))?;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(Error::io("read", &port))?;
        if read == 0 {
            return Ok(());
        }
        let output = match serde_json::from_str::<Request>(&line) {
            Ok(request) => run(&request),
            Err(e) => GuestOutput {
                status: 127,
                stderr: format!("cilab guest-agent: a request it cannot read: {e}"),
                ..GuestOutput::default()
            },
        };
        let mut answer = serde_json::to_string(&output).map_err(|e| Error::parse("the answer", e.to_string()))?;
        answer.push('\n');
        writer.write_all(answer.as_bytes()).map_err(Error::io("write", &port))?;
        writer.flush().map_err(Error::io("write", &port))?;
    }
}

fn run(request: &Request) -> GuestOutput {
    let Some((program, args)) = request.argv.split_first() else {
        return GuestOutput {
            status: 127,
            stderr: "cilab guest-agent: an empty command".into(),
            ..GuestOutput::default()
        };
    };
    let mut command = Command::new(program);
    command.args(args);
    let result = if request.terminal {
        command.status().map(|status| GuestOutput { status: status_code(status), ..GuestOutput::default() })
    } else {
        let stdin = if request.stdin.is_some() { Stdio::piped() } else { Stdio::null() };
        command.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().and_then(|mut child| {
            if let (Some(mut pipe), Some(input)) = (child.stdin.take(), request.stdin.as_ref()) {
                // Short (a key): the pipe holds it whole, and the child reads it first.
                let written = pipe.write_all(input.as_bytes());
                drop(pipe);
                if let Err(e) = written {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            }
            let output = child.wait_with_output()?;
            Ok(capped(status_code(output.status), &output.stdout, &output.stderr))
        })
    };
    result.unwrap_or_else(|e| GuestOutput {
        status: 127,
        stderr: format!("cilab guest-agent: cannot run {program}: {e}"),
        ..GuestOutput::default()
    })
}

/// The answer for a command that printed `stdout` and `stderr`, within [`MAX_STDOUT`] and
/// [`MAX_STDERR`]: a longer stdout is dropped whole (half a report is no report), a longer
/// stderr keeps its end.
fn capped(status: i32, stdout: &[u8], stderr: &[u8]) -> GuestOutput {
    let mut stderr = String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(MAX_STDERR)..]).into_owned();
    let stdout = if stdout.len() > MAX_STDOUT {
        stderr.push_str(&format!(
            "\ncilab guest-agent: the command printed {} bytes on stdout, more than the {MAX_STDOUT} an answer carries: dropped",
            stdout.len()
        ));
        String::new()
    } else {
        String::from_utf8_lossy(stdout).into_owned()
    };
    GuestOutput { status, stdout, stderr }
}

/// As a shell says it: the exit code, or 128 + the signal that killed it.
fn status_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(255)
}

/// The device of the port named [`PORT_NAME`]. The kernel makes the port's device when
/// the host adds it and sets its name in a later message, announcing each with a uevent:
/// listen to uevents first, then look, and look again after each one (no sleeping).
fn find_port(deadline: Duration) -> Result<PathBuf> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{
        bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
    };

    let uevents =
        socket(AddressFamily::Netlink, SockType::Datagram, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkKObjectUEvent)
            .map_err(Error::sys("socket", "NETLINK_KOBJECT_UEVENT"))?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&uevents), &NetlinkAddr::new(0, 1))
        .map_err(Error::sys("bind", "NETLINK_KOBJECT_UEVENT"))?;
    let started = Instant::now();
    let mut buffer = vec![0u8; 8192];
    loop {
        if let Some(port) = port_named(Path::new("/sys/class/virtio-ports"), PORT_NAME) {
            return Ok(port);
        }
        let left = deadline.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(Error::Harness(format!(
                "no virtio-serial port named {PORT_NAME} appeared within {deadline:?} \
                 (the guest needs virtio_console and the host's -device virtserialport)"
            )));
        }
        let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(uevents.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(n) if n > 0 => {
                // Whatever the event, look again; drain it first.
                let _ = recv(std::os::fd::AsRawFd::as_raw_fd(&uevents), &mut buffer, MsgFlags::MSG_DONTWAIT);
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(Error::sys("poll", "the uevent socket")(errno)),
        }
    }
}

/// /dev/<port> for the port in `class` (/sys/class/virtio-ports) whose name is `name`.
fn port_named(class: &Path, name: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(class).ok()?;
    for entry in entries.flatten() {
        let said = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if said.trim() == name {
            let device = Path::new("/dev").join(entry.file_name());
            if device.exists() {
                return Some(device);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_stays_within_its_caps() {
        let small = capped(0, b"{}", b"fine");
        assert_eq!((small.stdout.as_str(), small.stderr.as_str()), ("{}", "fine"));
        let flood = vec![b'x'; MAX_STDOUT + 1];
        let big = capped(0, &flood, &flood);
        assert!(big.stdout.is_empty(), "half a report is no report");
        assert!(
            big.stderr.len() < MAX_STDERR + 200 && big.stderr.contains("dropped"),
            "{}",
            &big.stderr[big.stderr.len() - 200..]
        );
        let answer = serde_json::to_string(&big).expect("serialises");
        assert!(answer.len() < MAX_ANSWER);
    }
}
