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
}

/// `cilab guest-agent`: finds the port, then runs each request and answers it, until the
/// host hangs up (end of file).
pub fn serve() -> Result<()> {
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
        command.stdin(Stdio::null()).output().map(|output| GuestOutput {
            status: status_code(output.status),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    };
    result.unwrap_or_else(|e| GuestOutput {
        status: 127,
        stderr: format!("cilab guest-agent: cannot run {program}: {e}"),
        ..GuestOutput::default()
    })
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
