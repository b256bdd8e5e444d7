//! A guest's initramfs, built here: a tree of files taken from this machine (each at the
//! path it has here, symlinks on the way kept as symlinks, so that a program finds its
//! libraries and interpreter in the guest as here), written as a cpio archive in the
//! kernel's "newc" format, and cached by content.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One entry of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir {
        mode: u32,
    },
    /// A regular file whose bytes are read from this machine when the image is written;
    /// `strip_debug`: without its debug sections (`strip --strip-debug`, when binutils is
    /// installed), for cilab's own debug builds: a third of the size, the same code.
    HostFile {
        source: PathBuf,
        mode: u32,
        strip_debug: bool,
    },
    File {
        bytes: Vec<u8>,
        mode: u32,
    },
    Symlink {
        target: PathBuf,
    },
    CharDevice {
        major: u32,
        minor: u32,
        mode: u32,
    },
}

/// The tree of an initramfs, by absolute path in the guest.
#[derive(Debug, Clone, Default)]
pub struct Image {
    entries: BTreeMap<PathBuf, Entry>,
}

/// How many symlinks one path may go through (as the kernel's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

impl Image {
    pub fn new() -> Self {
        let mut image = Image::default();
        image.dir("/");
        image
    }

    pub fn entries(&self) -> &BTreeMap<PathBuf, Entry> {
        &self.entries
    }

    /// A directory and its parents (0755).
    pub fn dir(&mut self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        for ancestor in path.ancestors().collect::<Vec<_>>().into_iter().rev() {
            self.entries.entry(ancestor.to_path_buf()).or_insert(Entry::Dir { mode: 0o755 });
        }
    }

    fn put(&mut self, path: &Path, entry: Entry) {
        if let Some(parent) = path.parent() {
            self.dir(parent);
        }
        self.entries.insert(path.to_path_buf(), entry);
    }

    pub fn bytes(&mut self, path: impl AsRef<Path>, bytes: impl Into<Vec<u8>>, mode: u32) {
        self.put(path.as_ref(), Entry::File { bytes: bytes.into(), mode });
    }

    pub fn symlink(&mut self, path: impl AsRef<Path>, target: &Path) {
        self.put(path.as_ref(), Entry::Symlink { target: target.to_path_buf() });
    }

    pub fn char_device(&mut self, path: impl AsRef<Path>, major: u32, minor: u32, mode: u32) {
        self.put(path.as_ref(), Entry::CharDevice { major, minor, mode });
    }

    /// This machine's file `source` (symlinks followed) at `path` in the guest.
    pub fn host_file(&mut self, path: impl AsRef<Path>, source: &Path) -> Result<()> {
        let meta = std::fs::metadata(source).map_err(Error::io("read", source))?;
        if !meta.is_file() {
            return Err(Error::Build(format!("{} is not a regular file", source.display())));
        }
        let mode = meta.permissions().mode() & 0o7777;
        self.put(path.as_ref(), Entry::HostFile { source: source.to_path_buf(), mode, strip_debug: false });
        Ok(())
    }

    /// As [`Image::host_file`], without the program's debug sections (an ELF program; a
    /// script goes as it is).
    pub fn host_program_stripped(&mut self, path: impl AsRef<Path>, source: &Path) -> Result<()> {
        self.host_file(path.as_ref(), source)?;
        let mut magic = [0u8; 4];
        let elf = std::fs::File::open(source).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
            && magic == *b"\x7fELF";
        if let Some(Entry::HostFile { strip_debug, .. }) = self.entries.get_mut(path.as_ref()) {
            *strip_debug = elf && which::which("strip").is_ok();
        }
        Ok(())
    }

    /// This machine's `path` at the same path in the guest, with every symlink on the way
    /// (a merged /usr's `/lib -> usr/lib`, `python3 -> python3.11`) kept as a symlink.
    /// Returns where the file really is.
    pub fn same_path(&mut self, path: &Path) -> Result<PathBuf> {
        let mut path = absolute(path)?;
        'resolve: for _ in 0..MAX_LINKS {
            let mut prefix = PathBuf::from("/");
            let components: Vec<Component> = path.components().skip(1).collect();
            for (i, component) in components.iter().enumerate() {
                prefix.push(component);
                let meta = std::fs::symlink_metadata(&prefix).map_err(Error::io("read", &prefix))?;
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&prefix).map_err(Error::io("read the link", &prefix))?;
                    self.put(&prefix, Entry::Symlink { target: target.clone() });
                    let parent = prefix.parent().unwrap_or(Path::new("/"));
                    let mut next = normalize(&parent.join(target));
                    for rest in &components[i + 1..] {
                        next.push(rest);
                    }
                    path = next;
                    continue 'resolve;
                }
            }
            self.host_file(&path, &path)?;
            return Ok(path);
        }
        Err(Error::Build(format!("{}: too many levels of symbolic links", path.display())))
    }

    /// A program at its own path, with what it needs to run: the interpreter of a script
    /// (`#!`), the shared libraries of an ELF (as `ldd` lists them).
    pub fn program(&mut self, path: &Path) -> Result<()> {
        let real = self.same_path(path)?;
        if let Some(interpreter) = script_interpreter(&real)? {
            self.program(&interpreter)?;
            return Ok(());
        }
        self.libraries(&real)
    }

    /// The shared libraries an ELF of this machine needs (and its loader), each at its path.
    pub fn libraries(&mut self, elf: &Path) -> Result<()> {
        for library in shared_libraries(elf)? {
            self.same_path(&library)?;
        }
        Ok(())
    }

    /// The sha256 of everything the image holds (paths, modes, link targets, bytes): the
    /// cache key.
    pub fn digest(&self) -> Result<String> {
        let mut hasher = Sha256::new();
        for (path, entry) in &self.entries {
            hasher.update(path.as_os_str().as_encoded_bytes());
            hasher.update([0]);
            match entry {
                Entry::Dir { mode } => hasher.update(format!("d{mode:o}")),
                Entry::File { bytes, mode } => {
                    hasher.update(format!("f{mode:o}:{}:", bytes.len()));
                    hasher.update(bytes);
                }
                Entry::HostFile { source, mode, strip_debug } => {
                    let mut file = std::fs::File::open(source).map_err(Error::io("read", source))?;
                    let length = file.metadata().map_err(Error::io("read", source))?.len();
                    hasher.update(format!("f{mode:o}:{length}:{strip_debug}:"));
                    std::io::copy(&mut file, &mut hasher).map_err(Error::io("read", source))?;
                }
                Entry::Symlink { target } => {
                    hasher.update("l");
                    hasher.update(target.as_os_str().as_encoded_bytes());
                }
                Entry::CharDevice { major, minor, mode } => hasher.update(format!("c{major}:{minor}:{mode:o}")),
            }
            hasher.update([0]);
        }
        Ok(hex(&hasher.finalize()))
    }

    /// Writes the image as an uncompressed newc cpio archive (the kernel unpacks it
    /// faster than it would inflate one). `scratch`: a directory for stripped copies.
    pub fn write_cpio(&self, out: impl Write, scratch: &Path) -> Result<()> {
        let mut cpio = Cpio { out: BufWriter::new(out), ino: 1 };
        let io = |e| Error::io("write", "the initramfs")(e);
        for (path, entry) in &self.entries {
            let name = path.strip_prefix("/").unwrap_or(path);
            let name = if name.as_os_str().is_empty() { Path::new(".") } else { name };
            match entry {
                Entry::Dir { mode } => cpio.entry(name, libc::S_IFDIR | mode, (0, 0), &[]).map_err(io)?,
                Entry::File { bytes, mode } => cpio.entry(name, libc::S_IFREG | mode, (0, 0), bytes).map_err(io)?,
                Entry::HostFile { source, mode, strip_debug } => {
                    let bytes = if *strip_debug { stripped(source, scratch)? } else { read(source)? };
                    cpio.entry(name, libc::S_IFREG | mode, (0, 0), &bytes).map_err(io)?
                }
                Entry::Symlink { target } => cpio
                    .entry(name, libc::S_IFLNK | 0o777, (0, 0), target.as_os_str().as_encoded_bytes())
                    .map_err(io)?,
                Entry::CharDevice { major, minor, mode } => {
                    cpio.entry(name, libc::S_IFCHR | mode, (*major, *minor), &[]).map_err(io)?
                }
            }
        }
        cpio.entry(Path::new("TRAILER!!!"), 0, (0, 0), &[]).map_err(io)?;
        cpio.out.flush().map_err(io)
    }

    /// The image in `cache` (a file named by its digest), written there first if it is not
    /// there yet. Written to a temporary name and renamed: a reader never sees half of one.
    pub fn cached(&self, cache: &Path) -> Result<PathBuf> {
        let path = cache.join(format!("initramfs-{}.cpio", self.digest()?));
        if path.is_file() {
            // Used now: the eviction below keeps it.
            let _ = std::fs::File::options()
                .append(true)
                .open(&path)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            return Ok(path);
        }
        evict(cache, KEEP_IMAGES - 1);
        std::fs::create_dir_all(cache).map_err(Error::io("create", cache))?;
        let partial = cache.join(format!(".initramfs-{}.partial", scratch_id()));
        let written = std::fs::File::create(&partial)
            .map_err(Error::io("create", &partial))
            .and_then(|file| self.write_cpio(file, cache))
            .and_then(|()| std::fs::rename(&partial, &path).map_err(Error::io("rename", &partial)));
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written.map(|()| path)
    }
}

/// A name for a scratch file no other image build uses: this process's id (which
/// `qemu::leftovers` reads back) and a counter, since one cilab may build several images at
/// once (`cilab grade`, a guest per submission).
fn scratch_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!("{}-{}", std::process::id(), COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(Error::io("read", path))
}

/// `source` without its debug sections, by `strip --strip-debug` into `scratch`.
fn stripped(source: &Path, scratch: &Path) -> Result<Vec<u8>> {
    let copy = scratch.join(format!(".stripped-{}", scratch_id()));
    let output = std::process::Command::new("strip").arg("--strip-debug").arg("-o").arg(&copy).arg(source).output();
    let result = match output {
        Ok(output) if output.status.success() => read(&copy),
        Ok(output) => Err(Error::Build(format!(
            "`strip --strip-debug {}` failed: {}",
            source.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
        Err(e) => Err(Error::Build(format!("running strip on {}: {e}", source.display()))),
    };
    let _ = std::fs::remove_file(&copy);
    result
}

/// How many images the cache keeps (each is the size of the binaries: ~150 MiB in debug).
const KEEP_IMAGES: usize = 3;

/// Removes all but the `keep` most recently used images in `cache`.
fn evict(cache: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(cache) else { return };
    let mut images: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("initramfs-"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    images.sort();
    let excess = images.len().saturating_sub(keep);
    for (_, path) in images.into_iter().take(excess) {
        let _ = std::fs::remove_file(path);
    }
}

/// The "newc" cpio format the kernel unpacks: per entry a 110-byte ASCII header, the
/// name with its NUL, padded to 4 bytes, then the data, padded to 4 bytes.
struct Cpio<W: Write> {
    out: W,
    ino: u32,
}

impl<W: Write> Cpio<W> {
    fn entry(&mut self, name: &Path, mode: u32, (rmajor, rminor): (u32, u32), data: &[u8]) -> std::io::Result<()> {
        let name = name.as_os_str().as_encoded_bytes();
        let size = u32::try_from(data.len())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a file of 4 GiB or more"))?;
        let nlink = if mode & libc::S_IFMT == libc::S_IFDIR { 2 } else { 1 };
        let fields = [self.ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, name.len() as u32 + 1, 0];
        self.ino += 1;
        let mut header = String::from("070701");
        for field in fields {
            header.push_str(&format!("{field:08X}"));
        }
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name)?;
        self.out.write_all(&[0])?;
        self.pad(header.len() + name.len() + 1)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    fn pad(&mut self, written: usize) -> std::io::Result<()> {
        self.out.write_all(&[0; 3][..(4 - written % 4) % 4])
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(normalize(path))
    } else {
        let here = std::env::current_dir().map_err(Error::io("find", "the current directory"))?;
        Ok(normalize(&here.join(path)))
    }
}

/// `a/./b/../c` as `a/c`, without touching the filesystem (the symlinks are resolved by
/// the caller one at a time).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The interpreter a script names on its `#!` line.
fn script_interpreter(path: &Path) -> Result<Option<PathBuf>> {
    let mut head = [0u8; 256];
    let mut file = std::fs::File::open(path).map_err(Error::io("read", path))?;
    let read = file.read(&mut head).map_err(Error::io("read", path))?;
    let head = &head[..read];
    let Some(line) = head.strip_prefix(b"#!") else { return Ok(None) };
    let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    Ok(line.split_whitespace().next().map(PathBuf::from))
}

/// The shared libraries (and the dynamic loader) an ELF needs, as `ldd` resolves them
/// here; none for a static one.
fn shared_libraries(path: &Path) -> Result<Vec<PathBuf>> {
    let output = std::process::Command::new("ldd")
        .arg(path)
        .output()
        .map_err(|e| Error::Build(format!("running `ldd {}`: {e} (apt-get install libc-bin)", path.display())))?;
    // ldd exits 1 for a static binary ("not a dynamic executable").
    if !output.status.success() {
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&String::from_utf8_lossy(&output.stdout)))
}

/// The absolute paths in `ldd` output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`
/// and `/lib64/ld-linux-x86-64.so.2 (0x...)`; `linux-vdso.so.1 (0x...)` has none.
pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = line.split_once("=>").map_or(line, |(_, right)| right.trim());
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The kernel modules `wanted` (by name, `-` and `_` alike) for kernel `release`, with
/// what they depend on, in the order to load them, from /lib/modules/<release>/modules.dep.
/// A module the kernel has built in (modules.builtin) needs nothing; so does any module
/// when the kernel has no /lib/modules here (a kernel built with everything in).
pub fn modules_for(release: &str, wanted: &[&str]) -> Result<Vec<PathBuf>> {
    let base = Path::new("/lib/modules").join(release);
    let dep_file = base.join("modules.dep");
    let Ok(deps) = std::fs::read_to_string(&dep_file) else { return Ok(Vec::new()) };
    let builtin = std::fs::read_to_string(base.join("modules.builtin")).unwrap_or_default();
    let key = |path: &str| {
        let file = path.rsplit('/').next().unwrap_or(path);
        file.split(".ko").next().unwrap_or(file).replace('-', "_")
    };
    let table: BTreeMap<String, (String, Vec<String>)> = deps
        .lines()
        .filter_map(|line| {
            let (module, needs) = line.split_once(':')?;
            Some((key(module), (module.to_string(), needs.split_whitespace().map(String::from).collect())))
        })
        .collect();
    let builtin: Vec<String> = builtin.lines().map(key).collect();
    let mut order: Vec<String> = Vec::new();
    for name in wanted {
        let name = name.replace('-', "_");
        if builtin.contains(&name) {
            continue;
        }
        let (module, needs) = table.get(&name).ok_or_else(|| {
            Error::Build(format!(
                "kernel {release} has no module {name} (neither in {} nor built in)",
                dep_file.display()
            ))
        })?;
        // modules.dep lists every dependency, deepest last: load them in reverse.
        for path in needs.iter().rev().chain([module]) {
            if !order.contains(path) {
                order.push(path.clone());
            }
        }
    }
    Ok(order.into_iter().map(|p| base.join(p)).collect())
}

/// A module's bytes as `insmod` takes them: a compressed one (.ko.xz, .ko.zst, .ko.gz)
/// is decompressed here, since busybox's insmod may not know the format.
pub fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some(("xz", "xz-utils"))
    } else if name.ends_with(".zst") {
        Some(("zstd", "zstd"))
    } else if name.ends_with(".gz") {
        Some(("gzip", "gzip"))
    } else {
        None
    };
    match tool {
        None => std::fs::read(path).map_err(Error::io("read", path)),
        Some((program, package)) => {
            let output = std::process::Command::new(program).arg("-dc").arg(path).output().map_err(|e| {
                Error::Build(format!(
                    "decompressing {} with {program}: {e} (apt-get install {package})",
                    path.display()
                ))
            })?;
            if !output.status.success() {
                return Err(Error::Build(format!(
                    "`{program} -dc {}` failed: {}",
                    path.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            Ok(output.stdout)
        }
    }
}

/// The release of a Linux kernel image (bzImage): the setup header has the offset of its
/// version string ("6.1.0-56-cloud-amd64 (debian-kernel@...) #1 SMP ...").
pub fn kernel_release(kernel: &Path) -> Result<String> {
    // The version string is in the setup code, within its first 64 KiB.
    let mut head = vec![0u8; 0x10000];
    let mut file = std::fs::File::open(kernel).map_err(Error::io("read", kernel))?;
    let read = read_up_to(&mut file, &mut head).map_err(Error::io("read", kernel))?;
    head.truncate(read);
    let not_bzimage = || Error::Build(format!("{} is not a Linux kernel image (bzImage)", kernel.display()));
    if head.get(0x202..0x206) != Some(b"HdrS") {
        return Err(not_bzimage());
    }
    let offset = u16::from_le_bytes([head[0x20E], head[0x20F]]) as usize + 0x200;
    let version = head.get(offset..).ok_or_else(not_bzimage)?;
    let end = version.iter().position(|b| *b == 0 || *b == b' ').unwrap_or(version.len());
    let release = String::from_utf8_lossy(&version[..end]).to_string();
    if release.is_empty() {
        return Err(not_bzimage());
    }
    Ok(release)
}

fn read_up_to(file: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The size in bytes of a host file (for messages).
pub fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.size()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_libraries_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"), PathBuf::from("/lib64/ld-linux-x86-64.so.2")]
        );
    }

    #[test]
    fn newc_entries_are_padded_and_end_with_the_trailer() {
        let mut image = Image::new();
        image.bytes("/init", b"#!/bin/sh\n".to_vec(), 0o755);
        image.char_device("/dev/console", 5, 1, 0o600);
        let mut out = Vec::new();
        image.write_cpio(&mut out, Path::new("/nonexistent")).expect("write");
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("070701"));
        assert!(text.contains("dev/console\0"));
        assert!(text.contains("TRAILER!!!\0"));
        // cpio itself reads it back, when it is installed.
        if which::which("cpio").is_ok() {
            let mut child = std::process::Command::new("cpio")
                .args(["-t", "--quiet"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("cpio");
            child.stdin.take().expect("stdin").write_all(&out).expect("write");
            let listed = child.wait_with_output().expect("cpio -t");
            let names = String::from_utf8_lossy(&listed.stdout);
            assert_eq!(names.lines().collect::<Vec<_>>(), [".", "dev", "dev/console", "init"]);
        }
    }

    #[test]
    fn a_path_through_symlinks_keeps_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("usr/lib");
        std::fs::create_dir_all(&real).expect("mkdir");
        std::fs::write(real.join("libx.so.1.2"), b"x").expect("write");
        std::os::unix::fs::symlink("libx.so.1.2", real.join("libx.so.1")).expect("link");
        std::os::unix::fs::symlink("usr/lib", dir.path().join("lib")).expect("link");
        let mut image = Image::new();
        let found = image.same_path(&dir.path().join("lib/libx.so.1")).expect("same path");
        assert_eq!(found, real.join("libx.so.1.2"));
        let entries = image.entries();
        assert_eq!(entries.get(&dir.path().join("lib")), Some(&Entry::Symlink { target: "usr/lib".into() }));
        assert_eq!(entries.get(&real.join("libx.so.1")), Some(&Entry::Symlink { target: "libx.so.1.2".into() }));
        assert!(matches!(entries.get(&real.join("libx.so.1.2")), Some(Entry::HostFile { .. })));
    }
}
