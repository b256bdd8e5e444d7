//! Lab rootfs-import: a container's files come from tarballs. Import one (plain or gzip)
//! into a directory with an importer you complete, run busybox in it, flatten a two-layer
//! OCI image with whiteouts, and feed the importer archives made to attack it. Read
//! labs/rootfs-import/README.md.
//!
//! The processes and files this lab makes:
//!
//! ```text
//! lab-rootfs-import ── ri-runner (unshares a mount namespace, mounts proc, chroots, execs busybox)
//!                   └─ ri-hostile (imports each hostile archive, under RLIMIT_FSIZE and RLIMIT_AS)
//!    (--docker:)    docker import / docker run (dockerd makes the container)
//!
//! <workdir>/rootfs.tar.gz               the rootfs tarball (planted by the harness; by hand, made here)
//! <workdir>/rootfs/                     where it is imported
//! <workdir>/oci/                        a two-layer image in OCI layout; <workdir>/flat/: flattened
//! <workdir>/hostile/archives/           the hostile corpus; hostile/targets/<name>/: each import;
//! <workdir>/hostile/outside/            the sentinel tree beside the targets
//! ```

use std::cell::Cell;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use labkit::protocol::rootfs_import::*;
use labkit::{archives, child, cleanup, rootfs, Lab, LabArgs, LabError};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::{fchmod, fstatat, makedev, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::{chdir, chroot, execv, fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use serde_json::json;
use tar::EntryType;

/// Import a rootfs tarball with an importer you complete, run busybox in it, and see which
/// hostile archives it refuses. Run it as root, in a VM: `sudo target/debug/lab-rootfs-import --step`.
#[derive(Parser)]
#[command(name = "lab-rootfs-import", version)]
struct Cli {
    #[command(flatten)]
    lab: LabArgs,
    /// `docker import` the same tarball and run a container from it (needs Docker).
    #[arg(long = "docker")]
    docker: bool,
    /// Only import this archive (tar, or tar.gz) with your importer, into --into, and say
    /// what it did: try it on any tarball (the benchmark uses it).
    #[arg(long = "import", requires = "into", value_name = "ARCHIVE")]
    import: Option<PathBuf>,
    /// The directory --import imports into (it must exist).
    #[arg(long = "into", requires = "import", value_name = "DIR")]
    into: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let (Some(archive), Some(into)) = (&cli.import, &cli.into) {
        // A tool, not a lab run: no children, nothing to clean up.
        return match import_only(archive, into) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("lab-rootfs-import: error: {error:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    labkit::main("lab-rootfs-import", include_str!("main.rs"), || run(&cli.lab, cli.docker))
}

/// `--import ARCHIVE --into DIR`: the importer alone, under the same safety nets as the
/// corpus's importer (a last line of defence if the importer's own limits fail).
fn import_only(archive: &Path, into: &Path) -> Result<()> {
    safety_nets()?;
    let report = import(open_archive(archive)?, into, false)?;
    println!("{} entries, {} bytes of files imported into {}", report.entries, report.written, into.display());
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    Ok(())
}

fn run(args: &LabArgs, docker: bool) -> Result<()> {
    labkit::require_root("lab-rootfs-import", "chown(2), mount(2) and chroot(2)")?;
    let title = if docker {
        "Lab rootfs-import --docker: the same tarball, imported by Docker"
    } else {
        "Lab rootfs-import: a container's files come from a tarball"
    };
    let mut lab = Lab::new(args, title, if docker { 2 } else { 4 });
    let workdir = labkit::Workdir::open(args, "rootfs-import")?;
    let work = workdir.path().to_path_buf();
    make_archives_if_missing(&work)?;
    if docker {
        docker_variant(&mut lab, &work)?;
    } else {
        import_and_run(&mut lab, &work)?;
        flatten_layers(&mut lab, &work)?;
        hostile(&mut lab, &work)?;
    }
    cleanup::remove_made_dirs()?;
    lab.done("Done: the lab removed what it imported. Now answer the questions on the lab sheet.");
    Ok(())
}

/// Run by hand there is no harness to plant the archives: the lab makes them the same way.
fn make_archives_if_missing(work: &Path) -> Result<()> {
    let tarball = work.join(ROOTFS_TARBALL);
    if !tarball.exists() {
        let tar = archives::busybox_rootfs_tar(&rootfs::find_static_busybox()?)?;
        std::fs::write(&tarball, archives::gzip(&tar)).map_err(LabError::io("write", &tarball))?;
    }
    let oci = work.join(OCI_DIR);
    if !oci.exists() {
        cleanup::track_dir(&oci);
        archives::write_oci_layout(&oci)?;
    }
    let hostile = work.join(HOSTILE_DIR);
    if !hostile.exists() {
        cleanup::track_dir(&hostile);
        let outside = hostile.join(OUTSIDE_DIR);
        archives::plant_sentinel_tree(&outside)?;
        archives::write_hostile_corpus(&hostile.join(ARCHIVES_DIR), &outside, &archives::Salt::random()?)?;
    }
    Ok(())
}

fn import_and_run(lab: &mut Lab, work: &Path) -> Result<()> {
    // ── Step 1 ───────────────────────────────────────────────────────────────
    lab.step(
        "Import the rootfs tarball: every entry checked, made beneath the target, owned and moded as the archive says",
        "openat(dir, name, O_DIRECTORY|O_NOFOLLOW) per component; mkdirat, openat(O_CREAT|O_EXCL|O_NOFOLLOW), symlinkat, linkat, fchownat, fchmodat",
        "mkdir rootfs && tar -xzpf rootfs.tar.gz -C rootfs --numeric-owner",
    );
    let tarball = work.join(ROOTFS_TARBALL);
    let root = work.join(ROOTFS_DIR);
    make_target(&root)?;
    let report = import(open_archive(&tarball)?, &root, false)?;
    lab.saw(&format!(
        "{} entries, {} bytes of files, into {}; ls / -> {}",
        report.entries,
        report.written,
        root.display(),
        list(&root).join(" ")
    ));
    lab.why("a container image's filesystem is a tarball (or several): `docker export` gives one back, `docker import` takes one. Every path in it is a name the archive's author chose.");
    lab.hold(IMPORTED, json!({ "entries": report.entries, "warnings": report.warnings }))?;

    // ── Step 2 ───────────────────────────────────────────────────────────────
    lab.step(
        "Run busybox in the imported root: a private mount namespace, proc mounted, chroot",
        "unshare(CLONE_NEWNS); mount(\"/\", MS_REC|MS_PRIVATE); mount(\"proc\", rootfs/proc); chroot(rootfs); execve(\"/bin/sh\")",
        "unshare --mount --propagation private sh -c 'mount -t proc proc rootfs/proc && exec chroot rootfs /bin/sh'",
    );
    let runner = Runner::start(lab, &root)?;
    lab.saw(&format!("busybox runs as PID {} on the host, rooted in the imported tree", runner.pid));
    lab.hold(RUNNING, json!({ "pid": runner.pid.as_raw() }))?;
    runner.stop()?;
    Ok(())
}

fn flatten_layers(lab: &mut Lab, work: &Path) -> Result<()> {
    // ── Step 3 ───────────────────────────────────────────────────────────────
    lab.step(
        "Flatten a two-layer OCI image: each layer in order, whiteouts (.wh.name) and opaque directories (.wh..wh..opq) applied",
        "per layer: unlinkat what each whiteout hides, beneath the target; then import the layer's other entries",
        "for l in $(jq -r '.layers[].digest' manifest); do tar -xzf blobs/sha256/${l#sha256:} -C flat; done  (tar knows no whiteouts)",
    );
    let flat = work.join(FLAT_DIR);
    make_target(&flat)?;
    let layers = flatten(&work.join(OCI_DIR), &flat)?;
    lab.saw(&format!("{layers} layers flattened; find flat -> {}", describe_tree(&flat).join(" ")));
    lab.why("overlayfs shows lower layers through the upper one; a whiteout is how an upper layer deletes, an opaque directory how it hides everything below it.");
    lab.hold(FLATTENED, json!({ "layers": layers }))?;
    Ok(())
}

fn hostile(lab: &mut Lab, work: &Path) -> Result<()> {
    // ── Step 4 ───────────────────────────────────────────────────────────────
    lab.step(
        "Feed the importer the hostile corpus: each archive into a target of its own, beside a sentinel tree",
        "the same importer; the process that runs it has RLIMIT_FSIZE as a safety net",
        "for a in hostile/archives/*; do mkdir t && tar -xf $a -C t; done   (compare: the sheet's table)",
    );
    let dir = work.join(HOSTILE_DIR);
    let archives_dir = dir.join(ARCHIVES_DIR);
    let targets = dir.join(TARGETS_DIR);
    make_target(&targets)?;
    let (reader, writer) = nix::unistd::pipe().map_err(LabError::sys("pipe", "for the outcomes"))?;
    let (reader_fd, writer_fd) = (reader.as_raw_fd(), writer.as_raw_fd());
    let importer = child::spawn(HOSTILE_COMM, || {
        let _ = nix::unistd::close(reader_fd);
        let mut out = File::from(owned(writer_fd));
        match import_corpus(&archives_dir, &targets, &mut out) {
            Ok(()) => 0,
            Err(error) => {
                let _ = writeln!(out, "{}", json!({ "failed": format!("{error:#}") }));
                1
            }
        }
    })?;
    // The parent keeps no copy of the write end: end of file once the importer is done.
    drop(writer);
    let mut outcomes = serde_json::Map::new();
    for line in std::io::BufReader::new(File::from(reader)).lines() {
        let line = line.context("read the importer's outcomes")?;
        let value: serde_json::Value = serde_json::from_str(&line).context("an outcome line")?;
        if let Some(failed) = value.get("failed") {
            bail!("the corpus importer failed: {failed}");
        }
        let name = value["archive"].as_str().unwrap_or_default().to_string();
        let said = match value["error"].as_str() {
            Some(error) => format!("refused: {error}"),
            None => format!("imported ({} warnings)", value["warnings"].as_array().map_or(0, Vec::len)),
        };
        lab.saw(&format!("{name}: {}", said.chars().take(160).collect::<String>()));
        outcomes.insert(name, value);
    }
    child::wait(importer, "importing the hostile corpus")?;
    lab.why("an archive is input from whoever made it: a path with `..`, a symlink it made a moment ago, a size it lied about. The importer decides, entry by entry, and never leaves its target.");
    lab.hold(HOSTILE, json!({ "outcomes": outcomes }))?;
    Ok(())
}

/// The safety nets under an importer that runs on archives it did not make: no file may
/// grow past FILE_SIZE_NET (write(2) fails with EFBIG instead of SIGXFSZ killing it), and
/// the process may not map more than ADDRESS_SPACE_NET (an allocation past it fails).
fn safety_nets() -> Result<()> {
    use nix::sys::resource::{setrlimit, Resource};
    // SAFETY: ignoring a signal installs no handler.
    unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGXFSZ, nix::sys::signal::SigHandler::SigIgn) }
        .map_err(LabError::sys("signal(SIGXFSZ)", "SIG_IGN"))?;
    setrlimit(Resource::RLIMIT_FSIZE, FILE_SIZE_NET, FILE_SIZE_NET)
        .map_err(LabError::sys("setrlimit(RLIMIT_FSIZE)", FILE_SIZE_NET))?;
    setrlimit(Resource::RLIMIT_AS, ADDRESS_SPACE_NET, ADDRESS_SPACE_NET)
        .map_err(LabError::sys("setrlimit(RLIMIT_AS)", ADDRESS_SPACE_NET))?;
    Ok(())
}

/// In ri-hostile: each archive of the corpus into a target of its own; one JSON line each.
fn import_corpus(archives_dir: &Path, targets: &Path, out: &mut File) -> Result<()> {
    safety_nets()?;
    let mut names: Vec<PathBuf> = std::fs::read_dir(archives_dir)
        .map_err(LabError::io("list", archives_dir))?
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for path in names {
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let name = file_name.trim_end_matches(".gz").trim_end_matches(".tar").to_string();
        let target = targets.join(&name);
        make_target(&target)?;
        let line = match open_archive(&path).and_then(|archive| import(archive, &target, false)) {
            Ok(report) => json!({ "archive": name, "entries": report.entries, "warnings": report.warnings }),
            Err(error) => json!({ "archive": name, "error": format!("{error:#}") }),
        };
        writeln!(out, "{line}").context("write an outcome")?;
    }
    Ok(())
}

fn make_target(dir: &Path) -> Result<()> {
    labkit::create_searchable_dir(dir)?;
    cleanup::track_dir(dir);
    Ok(())
}

/// The archive's bytes, decompressed if they start with gzip's magic number.
fn open_archive(path: &Path) -> Result<Box<dyn Read>> {
    let mut file = std::io::BufReader::with_capacity(1 << 16, File::open(path).map_err(LabError::io("open", path))?);
    let magic = file.fill_buf().map_err(LabError::io("read", path))?.starts_with(&[0x1f, 0x8b]);
    Ok(if magic {
        // A gzip file may hold many members, one after the other: read them all, as gzip -d does.
        Box::new(flate2::bufread::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// What an import did.
#[derive(Debug, Default)]
struct Report {
    entries: usize,
    written: u64,
    warnings: Vec<String>,
}

/// Imports `archive` into the directory `target`. With `layer`, whiteout entries (applied
/// before by `flatten`) are skipped.
fn import(archive: impl Read, target: &Path, layer: bool) -> Result<Report> {
    let root = open_dir(None, target.as_os_str())?;
    let mut importer = Importer { root, budget: SIZE_LIMIT, report: Report::default(), cached: None };
    for_each_entry(archive, |number, entry| {
        let path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&path).escape_debug().to_string();
        if layer && is_whiteout(&path) {
            return Ok(());
        }
        importer.entry(entry, &path).with_context(|| format!("entry #{number} `{shown}`"))?;
        importer.report.entries += 1;
        Ok(())
    })?;
    Ok(importer.report)
}

/// What reading one archive has cost so far: shared by the reader under the tar crate
/// (`Metered`, which counts every byte) and the loop that takes the entries.
#[derive(Debug, Default)]
struct Meter {
    /// Entries taken from the archive.
    entries: Cell<u64>,
    /// Whether the loop is asking the tar reader for the next entry: what it reads then
    /// is its own (headers, GNU long names, PAX records, padding), not an entry's body.
    in_headers: Cell<bool>,
    /// Bytes read so far since the loop last asked for an entry.
    between: Cell<u64>,
    /// Bytes read in all (decompressed).
    total: Cell<u64>,
}

/// The archive's bytes on their way to the tar reader, every read charged to the meter:
/// the tar crate reads a GNU long name or a PAX header whole into memory before it hands
/// out the entry, so the limit must sit beneath it.
struct Metered<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        let meter = &self.meter;
        if meter.in_headers.get() {
            meter.between.set(meter.between.get() + read as u64);
        }
        meter.total.set(meter.total.get() + read as u64);
        within_read_limits(meter.entries.get(), meter.between.get(), meter.total.get())
            .map_err(|error| std::io::Error::other(format!("{error:#}")))?;
        Ok(read)
    }
}

/// Calls `each` with every entry of `archive` and its number (from 1), within the read
/// limits; what `each` leaves of an entry's body is read (and counted) before the next.
fn for_each_entry<R: Read>(
    archive: R,
    mut each: impl FnMut(u64, &mut tar::Entry<Metered<R>>) -> Result<()>,
) -> Result<()> {
    let meter = Rc::new(Meter::default());
    let mut archive = tar::Archive::new(Metered { inner: archive, meter: Rc::clone(&meter) });
    let mut entries = archive.entries().context("read the archive")?;
    loop {
        // From here to the next entry, the tar reader reads on its own.
        meter.between.set(0);
        meter.in_headers.set(true);
        let number = meter.entries.get() + 1;
        let next = entries.next();
        meter.in_headers.set(false);
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(|e| anyhow!("entry #{number}: {e}"))?;
        meter.entries.set(number);
        within_read_limits(number, 0, meter.total.get()).with_context(|| format!("entry #{number}"))?;
        each(number, &mut entry)?;
        std::io::copy(&mut entry, &mut std::io::sink()).with_context(|| format!("entry #{number}: skip its body"))?;
    }
    Ok(())
}

/// Whether reading an archive stays within its limits, after `entries` entries taken,
/// `between` bytes read on the tar reader's own since the last one (its headers and
/// extensions), `total` bytes read in all.
fn within_read_limits(entries: u64, between: u64, total: u64) -> Result<()> {
    // STUDENT: begin read-limits
    // Hint: three limits, each an error that says which: more than MAX_ENTRIES entries,
    // more than HEADER_LIMIT bytes of headers and extensions before one entry (a 1 GiB GNU
    // long name is read into memory whole), more than READ_LIMIT bytes read in all.
    if entries > MAX_ENTRIES {
        bail!("more than {MAX_ENTRIES} entries: the limit of entries per import");
    }
    if between > HEADER_LIMIT {
        bail!("more than {HEADER_LIMIT} bytes of headers and extensions (GNU long name, PAX) before one entry");
    }
    if total > READ_LIMIT {
        bail!("more than {READ_LIMIT} bytes read from the archive: the read limit");
    }
    Ok(())
    // STUDENT: end read-limits
}

struct Importer {
    /// The target directory: nothing is made anywhere but beneath it.
    root: OwnedFd,
    /// How many bytes of files the import may still write.
    budget: u64,
    report: Report,
    /// The last parent directory opened (its components, its descriptor): most entries
    /// share their parent with the one before.
    cached: Option<(Vec<OsString>, OwnedFd)>,
}

impl Importer {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>, path: &[u8]) -> Result<()> {
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().context("the header's mode")?;
        let Some(mode) = policy(kind, mode)? else {
            self.report.warnings.push(format!("`{}`: skipped ({kind:?})", String::from_utf8_lossy(path)));
            return Ok(());
        };
        let parts = entry_components(path)?;
        let Some((name, dirs)) = parts.split_last() else {
            // `./`: the target itself.
            return Ok(());
        };
        let parent = self.parent(dirs)?;
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let made = self.make(parent.as_fd(), name, kind, link.as_deref(), entry)?;
        let (uid, gid) = (entry.header().uid().context("uid")?, entry.header().gid().context("gid")?);
        let owner = |id: u64| u32::try_from(id).context("an owner id beyond 32 bits");
        let (uid, gid) = (Some(Uid::from_raw(owner(uid)?)), Some(Gid::from_raw(owner(gid)?)));
        match made {
            // A file or a directory: its owner and mode set through the descriptor it was
            // made with, chown first (it clears the set-id bits).
            Some(fd) => {
                fchown(fd.as_raw_fd(), uid, gid).map_err(LabError::sys("fchown", name.to_string_lossy()))?;
                fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode))
                    .map_err(LabError::sys("fchmod", name.to_string_lossy()))?;
            }
            // A symlink: its owner only (a symlink has no mode of its own); a device node or
            // a fifo (made with its mode): its owner.
            None if matches!(kind, EntryType::Symlink | EntryType::Char | EntryType::Block | EntryType::Fifo) => {
                fchownat(Some(parent.as_raw_fd()), name.as_os_str(), uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(LabError::sys("fchownat", name.to_string_lossy()))?;
            }
            // A hard link: a second name for an inode already made, owned and moded already.
            None => {}
        }
        self.cached = Some((dirs.to_vec(), parent));
        Ok(())
    }

    /// The parent directory of an entry: the cached one, or opened beneath the target.
    fn parent(&mut self, dirs: &[OsString]) -> Result<OwnedFd> {
        match self.cached.take() {
            Some((cached, fd)) if cached.as_slice() == dirs => Ok(fd),
            _ => open_beneath(self.root.as_fd(), dirs),
        }
    }

    /// Makes one entry named `name` in `parent`, replacing what the archive made there
    /// before (a file, a link) but never a directory by a non-directory.
    fn make<R: Read>(
        &mut self,
        parent: BorrowedFd,
        name: &OsStr,
        kind: EntryType,
        link: Option<&[u8]>,
        body: &mut tar::Entry<R>,
    ) -> Result<Option<OwnedFd>> {
        // STUDENT: begin make-entry
        // Hint: what is already at `name` matters (existing(), remove()). A directory entry
        // keeps a directory and replaces anything else; a file or a symlink replaces a
        // file or a link (never write through one: O_CREAT|O_EXCL|O_NOFOLLOW), and refuses
        // to replace a directory. Files are written by write_body, hard links by hardlink.
        // Return the descriptor of a file or directory made (its owner and mode are set
        // through it), None for a link.
        let link = || link.ok_or_else(|| anyhow!("a {kind:?} entry without a link name"));
        let there = existing(parent, name)?;
        let is_dir = there == Some(SFlag::S_IFDIR);
        match kind {
            EntryType::Directory => {
                if !is_dir {
                    if there.is_some() {
                        remove(parent, name)?;
                    }
                    mkdirat(Some(parent.as_raw_fd()), name, Mode::from_bits_truncate(0o700))
                        .map_err(LabError::sys("mkdirat", name.to_string_lossy()))?;
                }
                Ok(Some(open_dir(Some(parent), name)?))
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                if is_dir {
                    bail!("it would replace a directory with a file");
                }
                if there.is_some() {
                    // A name the archive made before: removed, never written through.
                    remove(parent, name)?;
                }
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let fd = openat(Some(parent.as_raw_fd()), name, flags, Mode::from_bits_truncate(0o600))
                    .map_err(LabError::sys("openat(O_CREAT|O_EXCL|O_NOFOLLOW)", name.to_string_lossy()))?;
                let mut file = File::from(owned(fd));
                let declared = body.size();
                self.write_body(parent, name, &mut file, body, declared)?;
                Ok(Some(file.into()))
            }
            EntryType::Symlink => {
                if is_dir {
                    bail!("it would replace the directory `{}` with a symlink", name.to_string_lossy());
                }
                if there.is_some() {
                    remove(parent, name)?;
                }
                symlinkat(OsStr::from_bytes(link()?), Some(parent.as_raw_fd()), name)
                    .map_err(LabError::sys("symlinkat", name.to_string_lossy()))?;
                Ok(None)
            }
            EntryType::Link => {
                if is_dir {
                    bail!("it would replace a directory with a hard link");
                }
                if there.is_some() {
                    remove(parent, name)?;
                }
                self.hardlink(parent, name, link()?)?;
                Ok(None)
            }
            // Whatever the policy lets through is made: a device node, a fifo.
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if is_dir {
                    bail!("it would replace a directory with a special file");
                }
                if there.is_some() {
                    remove(parent, name)?;
                }
                let (sflag, dev) = match kind {
                    EntryType::Char | EntryType::Block => {
                        let major = body.header().device_major().context("its device major")?.unwrap_or(0);
                        let minor = body.header().device_minor().context("its device minor")?.unwrap_or(0);
                        let sflag = if kind == EntryType::Char { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
                        (sflag, makedev(major.into(), minor.into()))
                    }
                    _ => (SFlag::S_IFIFO, 0),
                };
                let mode = Mode::from_bits_truncate(body.header().mode().context("its mode")? & 0o777);
                mknodat(Some(parent.as_raw_fd()), name, sflag, mode, dev)
                    .map_err(LabError::sys("mknodat", name.to_string_lossy()))?;
                Ok(None)
            }
            other => bail!("entry type {other:?} is not imported"),
        }
        // STUDENT: end make-entry
    }

    /// Copies the entry's body into `file` (just made as `name` in `parent`), within the
    /// size limit; a file refused leaves nothing.
    fn write_body(
        &mut self,
        parent: BorrowedFd,
        name: &OsStr,
        file: &mut File,
        body: &mut impl Read,
        declared: u64,
    ) -> Result<()> {
        // STUDENT: begin size-limit
        // Hint: refuse before writing a byte when the header declares more than self.budget
        // allows (a gzip bomb's 2 GiB); copy at most `declared` bytes (Read::take), and
        // refuse a body that ends before it (a header that lies). Then spend the budget.
        // A file refused leaves nothing: unlink `name` from `parent`.
        let written = if declared > self.budget {
            Err(anyhow!(
                "it declares {declared} bytes, more than the {} left of the size limit ({SIZE_LIMIT} bytes)",
                self.budget
            ))
        } else {
            match std::io::copy(&mut body.take(declared), file).context("write its body") {
                Ok(copied) if copied != declared => {
                    Err(anyhow!("its body ends after {copied} of the {declared} bytes its header declares"))
                }
                other => other,
            }
        };
        match written {
            Ok(copied) => {
                self.budget -= copied;
                self.report.written += copied;
                Ok(())
            }
            Err(error) => {
                unlinkat(Some(parent.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)
                    .map_err(LabError::sys("unlinkat", name.to_string_lossy()))?;
                Err(error)
            }
        }
        // STUDENT: end size-limit
    }

    /// A hard link `name` in `parent` to `target`, a path in the archive.
    fn hardlink(&mut self, parent: BorrowedFd, name: &OsStr, target: &[u8]) -> Result<()> {
        // STUDENT: begin hardlink
        // Hint: the link's target is a path the archive chose, like an entry's: check it
        // with entry_components and open its parent with open_beneath. linkat(2) without
        // AT_SYMLINK_FOLLOW links to a symlink itself, never to what it points at.
        let parts = entry_components(target).context("its link target")?;
        let Some((last, dirs)) = parts.split_last() else {
            bail!("it links to the target directory itself");
        };
        let from = open_beneath(self.root.as_fd(), dirs)?;
        linkat(Some(from.as_raw_fd()), last.as_os_str(), Some(parent.as_raw_fd()), name, AtFlags::empty())
            .map_err(LabError::sys("linkat", String::from_utf8_lossy(target)))?;
        Ok(())
        // STUDENT: end hardlink
    }
}

/// The components of an entry's path, to be made beneath the target; an error names
/// what is wrong with the path.
fn entry_components(path: &[u8]) -> Result<Vec<OsString>> {
    // STUDENT: begin entry-path
    // Hint: refuse an absolute path, any `..` component, a control character (a newline)
    // and a path of libc::PATH_MAX bytes or more; skip empty and `.` components. Nothing
    // of the target's own path is in the result: only names to make beneath it.
    if path.len() >= libc::PATH_MAX as usize {
        bail!("its path is {} bytes long, the limit is {}", path.len(), libc::PATH_MAX - 1);
    }
    if path.iter().any(u8::is_ascii_control) {
        bail!("its path holds a control character");
    }
    if path.starts_with(b"/") {
        bail!("its path is absolute");
    }
    let mut parts = Vec::new();
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => bail!("its path climbs with `..`"),
            name => parts.push(OsStr::from_bytes(name).to_os_string()),
        }
    }
    Ok(parts)
    // STUDENT: end entry-path
}

/// Opens the directory `dirs` beneath `root`, one component at a time, making the ones
/// that are missing; never through a symlink.
fn open_beneath(root: BorrowedFd, dirs: &[OsString]) -> Result<OwnedFd> {
    // STUDENT: begin open-beneath
    // Hint: openat(2) each component from the one before with O_DIRECTORY|O_NOFOLLOW: a
    // symlink on the way is ELOOP or ENOTDIR (refuse it, naming it), a missing one is
    // ENOENT (mkdirat, then open). openat2(2)'s RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS does it
    // in one call.
    let mut at = root.try_clone_to_owned().context("dup the target's descriptor")?;
    for name in dirs {
        let next = match open_dir(Some(at.as_fd()), name) {
            Err(errno) if errno_of(&errno) == Some(Errno::ENOENT) => {
                mkdirat(Some(at.as_raw_fd()), name.as_os_str(), Mode::from_bits_truncate(0o755))
                    .map_err(LabError::sys("mkdirat", name.to_string_lossy()))?;
                open_dir(Some(at.as_fd()), name)?
            }
            Err(errno) if matches!(errno_of(&errno), Some(Errno::ELOOP | Errno::ENOTDIR)) => {
                bail!("`{}` on its way is a symlink or not a directory: not followed", name.to_string_lossy())
            }
            other => other?,
        };
        at = next;
    }
    Ok(at)
    // STUDENT: end open-beneath
}

/// The mode an entry gets under the sheet's policy; `None`: skipped; an error: refused.
fn policy(kind: EntryType, mode: u32) -> Result<Option<u32>> {
    // STUDENT: begin policy
    // Hint: refuse device nodes (EntryType::Char, Block) and GNU sparse files; skip a fifo
    // (None) and a PAX global header; drop the set-user-ID and set-group-ID bits (of
    // directories too); a world-writable directory keeps its write for others only with
    // the sticky bit (as /tmp has). make-entry makes whatever this lets through.
    match kind {
        EntryType::Char | EntryType::Block => bail!("a device node: an image does not make devices"),
        EntryType::GNUSparse => bail!("a GNU sparse file: not imported"),
        EntryType::Fifo => return Ok(None),
        // A PAX global header: records for every entry after it; ignored, as Docker does.
        EntryType::XGlobalHeader => return Ok(None),
        _ => {}
    }
    let mut mode = mode & 0o7777 & !(libc::S_ISUID | libc::S_ISGID);
    if kind == EntryType::Directory && mode & 0o002 != 0 && mode & libc::S_ISVTX == 0 {
        mode &= !0o002;
    }
    Ok(Some(mode))
    // STUDENT: end policy
}

/// Flattens the image in OCI layout at `oci` into `target`: the manifest's layers, lowest
/// first. Returns how many.
fn flatten(oci: &Path, target: &Path) -> Result<usize> {
    let blob = |digest: &str| oci.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let read_json = |path: PathBuf| -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(&path).map_err(LabError::io("read", &path))?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
    };
    let index = read_json(oci.join("index.json"))?;
    let manifest = index["manifests"][0]["digest"].as_str().context("index.json names no manifest")?;
    let manifest = read_json(blob(manifest))?;
    let layers = manifest["layers"].as_array().context("the manifest lists no layers")?;
    for layer in layers {
        let path = blob(layer["digest"].as_str().context("a layer without a digest")?);
        // First the layer's whiteouts, on what the layers below made; then its entries.
        let root = open_dir(None, target.as_os_str())?;
        for_each_entry(open_archive(&path)?, |_, entry| {
            let name = entry.path_bytes().into_owned();
            if is_whiteout(&name) {
                apply_whiteout(root.as_fd(), &name)
                    .with_context(|| format!("whiteout `{}`", String::from_utf8_lossy(&name)))?;
            }
            Ok(())
        })
        .with_context(|| format!("the whiteouts of {}", path.display()))?;
        import(open_archive(&path)?, target, true)?;
    }
    Ok(layers.len())
}

fn is_whiteout(path: &[u8]) -> bool {
    let name = path.rsplit(|b| *b == b'/').find(|p| !p.is_empty()).unwrap_or_default();
    name.starts_with(b".wh.")
}

/// Applies one whiteout entry of an upper layer to the tree the lower layers made.
fn apply_whiteout(root: BorrowedFd, path: &[u8]) -> Result<()> {
    // STUDENT: begin whiteouts
    // Hint: `dir/.wh..wh..opq` (opaque) empties dir of what lower layers put there;
    // `dir/.wh.name` removes dir/name, a whole tree if it is a directory. Open dir with
    // open_beneath, remove with remove(); what is already gone is no error.
    let parts = entry_components(path)?;
    let Some((last, dirs)) = parts.split_last() else {
        bail!("a whiteout without a name");
    };
    let dir = open_beneath(root, dirs)?;
    let last = last.as_bytes();
    if last == b".wh..wh..opq" {
        for name in names_in(dir.as_fd())? {
            remove(dir.as_fd(), &name)?;
        }
    } else if let Some(hidden) = last.strip_prefix(b".wh.") {
        // `.wh.`, `.wh..` and `.wh...` would hide the directory itself or its parent.
        if matches!(hidden, b"" | b"." | b"..") {
            bail!("a whiteout that names no entry of its directory: {:?}", OsStr::from_bytes(last));
        }
        if existing(dir.as_fd(), OsStr::from_bytes(hidden))?.is_some() {
            remove(dir.as_fd(), OsStr::from_bytes(hidden))?;
        }
    }
    Ok(())
    // STUDENT: end whiteouts
}

/// A process running busybox in the imported root.
struct Runner {
    pid: nix::unistd::Pid,
}

impl Runner {
    /// Forks ri-runner and returns once it has exec'd busybox (its close-on-exec pipe closed).
    fn start(lab: &Lab, root: &Path) -> Result<Self> {
        let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(LabError::sys("pipe2", "O_CLOEXEC"))?;
        let voice = lab.voice();
        let root = root.to_path_buf();
        let held = lab.mode() == labkit::Mode::Held;
        let (reader_fd, writer_fd) = (reader.as_raw_fd(), writer.as_raw_fd());
        let pid = child::spawn(RUNNER_COMM, move || {
            let _ = nix::unistd::close(reader_fd);
            let error = match enter_root(&root).and_then(|()| exec_busybox(held)) {
                Err(error) => error,
                Ok(never) => match never {},
            };
            voice.inside(&format!("{RUNNER_COMM} failed: {error:#}"));
            let _ = File::from(owned(writer_fd)).write_all(b"failed");
            1
        })?;
        drop(writer);
        let mut said = String::new();
        File::from(reader).read_to_string(&mut said).context("wait for busybox to start")?;
        if !said.is_empty() {
            let _ = child::wait(pid, "running busybox");
            bail!("{RUNNER_COMM} did not get to busybox (its error is above)");
        }
        // The shell says what it sees, then execs sleep: wait for that, at most child::deadline().
        let deadline = std::time::Instant::now() + child::deadline();
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim() != "sleep" {
            if std::time::Instant::now() > deadline {
                bail!("busybox (PID {pid}) did not get to `exec sleep` within {:?}", child::deadline());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(Runner { pid })
    }

    fn stop(self) -> Result<()> {
        nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL).map_err(LabError::sys("kill", self.pid))?;
        child::wait(self.pid, "stopping busybox")?;
        Ok(())
    }
}

/// In ri-runner: a mount namespace of its own, nothing propagating to the host, proc
/// mounted in the root, and the root made its own with chroot.
fn enter_root(root: &Path) -> Result<()> {
    // STUDENT: begin run-busybox
    // Hint: unshare(2) a mount namespace, make "/" and everything below it private
    // (MS_REC|MS_PRIVATE) before mounting anything, mount proc on root/proc, then
    // chroot(2) into root and chdir("/").
    unshare(CloneFlags::CLONE_NEWNS).map_err(LabError::sys("unshare", "CLONE_NEWNS"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(LabError::sys("mount(MS_REC|MS_PRIVATE)", "/"))?;
    let proc_dir = root.join("proc");
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(LabError::sys("mount(\"proc\")", proc_dir.display()))?;
    chroot(root).map_err(LabError::sys("chroot", root.display()))?;
    chdir("/").map_err(LabError::sys("chdir", "/"))?;
    Ok(())
    // STUDENT: end run-busybox
}

fn exec_busybox(held: bool) -> Result<std::convert::Infallible> {
    if held {
        // The harness reads stdout for the protocol: the shell speaks on stderr.
        nix::unistd::dup2(2, 1).map_err(LabError::sys("dup2", "stderr onto stdout"))?;
    }
    // Only the applets the rootfs has: sh, cat, ls, sleep (fixtures/rootfs/applets.txt).
    let script = "echo \"   inside:  $(cat /etc/motd); ls / ->\" $(ls /) \"; proc is mounted: ls /proc/self/ns ->\" $(ls /proc/self/ns); exec sleep 600";
    let argv = [c"sh".to_owned(), c"-c".to_owned(), CString::new(script).context("script")?];
    Err(LabError::sys("execve", "/bin/sh")(execv(c"/bin/sh", &argv).err().unwrap_or(Errno::UnknownErrno)).into())
}

/// The Docker variant: the same tarball through `docker import`, a container from it.
fn docker_variant(lab: &mut Lab, work: &Path) -> Result<()> {
    // ── Step 1 ───────────────────────────────────────────────────────────────
    lab.step(
        "docker import the same tarball, and run a container from the image",
        "(dockerd: one layer, whose diffID is the sha256 of the uncompressed tar; then clone, pivot_root, exec)",
        "docker import rootfs.tar.gz img && docker run -d img /bin/sleep 600",
    );
    let tarball = work.join(ROOTFS_TARBALL);
    let label = format!("{DOCKER_LABEL}={}", work.display());
    let image = format!("{DOCKER_REPOSITORY}:{}", std::process::id());
    let name = format!("{DOCKER_REPOSITORY}-{}", std::process::id());
    cleanup::track_undo(&["docker", "rmi", "-f", &image]);
    let tarball_text = tarball.display().to_string();
    docker_cli(&["import", "--change", &format!("LABEL {label}"), &tarball_text, &image])?;
    cleanup::track_undo(&["docker", "rm", "-f", &name]);
    docker_cli(&["run", "-d", "--name", &name, "--label", &label, "--network", "none", &image, "/bin/sleep", "600"])?;
    let layers = docker_cli(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", &image])?;
    lab.saw(&format!("docker image inspect: RootFS.Layers = {}", layers.trim()));
    let listing = docker_cli(&["exec", &name, "/bin/ls", "-a", "/"])?;
    lab.saw(&format!("docker exec ls -a / -> {}", listing.split_whitespace().collect::<Vec<_>>().join(" ")));
    lab.why("Docker keeps the tarball as the image's one layer; the container's root is that layer under a writable one, plus what Docker adds (.dockerenv, /etc/hosts, /etc/hostname, /etc/resolv.conf, /dev, /proc, /sys).");
    lab.hold(DOCKER_RUNNING, json!({ "container": name, "image": image }))?;

    // ── Step 2 ───────────────────────────────────────────────────────────────
    lab.step("Remove the container and the image", "(dockerd)", "docker rm -f <container>; docker rmi <image>");
    docker_cli(&["rm", "-f", &name])?;
    cleanup::forget_undo(&["docker", "rm", "-f", &name]);
    docker_cli(&["rmi", "-f", &image])?;
    cleanup::forget_undo(&["docker", "rmi", "-f", &image]);
    lab.hold(DOCKER_REMOVED, json!({}))?;
    Ok(())
}

/// How long a docker command may take.
const DOCKER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the docker client (at most DOCKER_DEADLINE) and returns what it printed; an error
/// names what failed.
fn docker_cli(args: &[&str]) -> Result<String> {
    let mut running = std::process::Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("start `docker` (is docker.io installed?)")?;
    // Its output is small (a pipe holds 64 KiB): read it once it has exited (its pidfd
    // turns readable), at most DOCKER_DEADLINE from now.
    if !child::exited_by(&running, std::time::Instant::now() + DOCKER_DEADLINE)? {
        let _ = running.kill();
        let _ = running.wait();
        bail!("`docker {}` did not finish within {DOCKER_DEADLINE:?}", args.join(" "));
    }
    let output = running.wait_with_output().context("wait for docker")?;
    if !output.status.success() {
        bail!(
            "`docker {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

// ── small helpers on directory descriptors ──────────────────────────────────────────

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: every caller passes a descriptor it was just given (by openat, or a pipe end
    // it owns in a forked child), which nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Opens the directory `name` (relative to `dir`, or the path itself) without following a
/// symlink at its end.
fn open_dir(dir: Option<BorrowedFd>, name: &OsStr) -> Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(dir.map(|d| d.as_raw_fd()), name, flags, Mode::empty())
        .map(owned)
        .map_err(|errno| LabError::sys("openat(O_DIRECTORY|O_NOFOLLOW)", name.to_string_lossy())(errno).into())
}

fn errno_of(error: &anyhow::Error) -> Option<Errno> {
    match error.downcast_ref::<LabError>() {
        Some(LabError::Sys { errno, .. }) => Some(*errno),
        _ => None,
    }
}

/// The kind of what is at `name` in `dir` (a symlink is a symlink), or None.
fn existing(dir: BorrowedFd, name: &OsStr) -> Result<Option<SFlag>> {
    match fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT))),
        Err(Errno::ENOENT) => Ok(None),
        Err(errno) => Err(LabError::sys("fstatat", name.to_string_lossy())(errno).into()),
    }
}

/// Removes `name` from `dir`: a whole tree if it is a directory, never following a symlink.
fn remove(dir: BorrowedFd, name: &OsStr) -> Result<()> {
    if existing(dir, name)? == Some(SFlag::S_IFDIR) {
        let inner = open_dir(Some(dir), name)?;
        for child in names_in(inner.as_fd())? {
            remove(inner.as_fd(), &child)?;
        }
        unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::RemoveDir)
    } else {
        unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)
    }
    .map_err(LabError::sys("unlinkat", name.to_string_lossy()))?;
    Ok(())
}

/// The names in a directory, `.` and `..` left out.
fn names_in(dir: BorrowedFd) -> Result<Vec<OsString>> {
    let fd = nix::unistd::dup(dir.as_raw_fd()).map_err(LabError::sys("dup", "a directory"))?;
    let mut listing = nix::dir::Dir::from_fd(fd).map_err(LabError::sys("fdopendir", "a directory"))?;
    Ok(listing
        .iter()
        .flatten()
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect())
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Every path under `dir`, relative, directories with a trailing `/`.
fn describe_tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for name in list(dir) {
            let path = dir.join(&name);
            let relative = path.strip_prefix(base).unwrap_or(&path).display().to_string();
            if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                out.push(format!("{relative}/"));
                walk(base, &path, out);
            } else {
                out.push(relative);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

#[cfg(test)]
mod tests;
