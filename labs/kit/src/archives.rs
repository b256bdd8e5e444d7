//! The archives the rootfs-import lab imports, made at run time (nothing is downloaded):
//! a busybox rootfs tarball, a two-layer image in OCI layout with whiteouts, a tree of many
//! small files (the benchmark's), and the hostile corpus. The harness plants them before a
//! run; run by hand, the lab makes them itself. Every archive is deterministic (fixed
//! owners, modes and mtimes), so the same busybox gives the same bytes.

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::protocol::rootfs_import::*;
use crate::{LabError, Result};

/// Every entry's mtime: the archives do not change from run to run.
const MTIME: u64 = 1_700_000_000;

/// Gzip of `bytes` (one member).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// `sha256:<hex>` of `bytes`: a layer's diffID when `bytes` is its uncompressed tar.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Builds an archive in memory.
struct Tar {
    builder: tar::Builder<Vec<u8>>,
}

impl Tar {
    fn new() -> Self {
        Tar { builder: tar::Builder::new(Vec::new()) }
    }

    fn header(kind: EntryType, mode: u32, owner: (u64, u64), size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(owner.0);
        header.set_gid(owner.1);
        header.set_mtime(MTIME);
        header.set_size(size);
        header
    }

    /// An entry whose name (and link name) are written as they are, unchecked: at most 100
    /// bytes each, or a GNU long-name entry first.
    fn raw(&mut self, name: &[u8], kind: EntryType, mode: u32, owner: (u64, u64), link: &[u8], body: &[u8]) {
        if name.len() > 100 {
            let mut long = Self::header(EntryType::GNULongName, 0o644, (0, 0), name.len() as u64 + 1);
            long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            long.set_cksum();
            let mut data = name.to_vec();
            data.push(0);
            let _ = self.builder.append(&long, data.as_slice());
        }
        let mut header = Self::header(kind, mode, owner, body.len() as u64);
        let short = &name[..name.len().min(100)];
        header.as_old_mut().name[..short.len()].copy_from_slice(short);
        let link = &link[..link.len().min(100)];
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        header.set_cksum();
        let _ = self.builder.append(&header, body);
    }

    fn dir(&mut self, name: &str, mode: u32, owner: (u64, u64)) {
        self.raw(format!("{name}/").as_bytes(), EntryType::Directory, mode, owner, b"", b"");
    }

    fn file(&mut self, name: &str, mode: u32, owner: (u64, u64), body: &[u8]) {
        self.raw(name.as_bytes(), EntryType::Regular, mode, owner, b"", body);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.raw(name.as_bytes(), EntryType::Symlink, 0o777, (0, 0), target.as_bytes(), b"");
    }

    /// A hard link; its header carries its target's mode, as GNU tar writes it (Docker
    /// applies the mode of a hard link's header to the inode both names share).
    fn hardlink(&mut self, name: &str, target: &str, mode: u32) {
        self.raw(name.as_bytes(), EntryType::Link, mode, (0, 0), target.as_bytes(), b"");
    }

    /// A PAX extended header whose `path` record replaces the next entry's name.
    fn pax_path(&mut self, path: &str) {
        let record = |len: usize| format!("{len} path={path}\n");
        let mut len = record(0).len();
        while record(len).len() != len {
            len = record(len).len();
        }
        let body = record(len);
        self.raw(b"PaxHeaders/entry", EntryType::XHeader, 0o644, (0, 0), b"", body.as_bytes());
    }

    /// A PAX *global* header (`g`) whose `path` record would apply to every entry after it.
    fn pax_global(&mut self, path: &str) {
        let record = |len: usize| format!("{len} path={path}\n");
        let mut len = record(0).len();
        while record(len).len() != len {
            len = record(len).len();
        }
        let body = record(len);
        self.raw(b"pax_global_header", EntryType::XGlobalHeader, 0o644, (0, 0), b"", body.as_bytes());
    }

    /// The harmless entry every corpus archive begins with.
    fn first(&mut self, salt: &Salt) {
        self.raw(salt.first_name.as_bytes(), EntryType::Regular, 0o644, (0, 0), b"", &salt.first_body);
    }

    /// The marker every corpus archive ends with: present after an import only if the
    /// importer went on to the end.
    fn marker(&mut self) {
        self.file(MARKER, 0o644, (0, 0), b"the importer went on to the end\n");
    }

    fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap_or_default()
    }

    /// The archive without its two end blocks (so that more raw bytes can follow).
    fn unfinished(self) -> Vec<u8> {
        let mut bytes = self.finish();
        bytes.truncate(bytes.len().saturating_sub(1024));
        bytes
    }
}

/// The owner of what belongs to the student account of the rootfs.
pub const STUDENT_OWNER: (u64, u64) = (1000, 1000);

/// The busybox rootfs as an uncompressed tar: directories (one owned by uid 1000, /tmp
/// sticky and world-writable), busybox with a hard link to it, a symlink per applet, /etc.
pub fn busybox_rootfs_tar(busybox: &Path) -> Result<Vec<u8>> {
    let binary = std::fs::read(busybox).map_err(LabError::io("read", busybox))?;
    let mut tar = Tar::new();
    let root = (0, 0);
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("var", 0o755),
        ("var/empty", 0o711),
    ] {
        tar.dir(dir, mode, root);
    }
    tar.dir("home/student", 0o750, STUDENT_OWNER);
    tar.file("bin/busybox", 0o755, root, &binary);
    for applet in crate::rootfs::applets() {
        tar.symlink(&format!("bin/{applet}"), "busybox");
    }
    tar.hardlink("usr/bin/busybox", "bin/busybox", 0o755);
    tar.symlink("usr/bin/env", "/bin/busybox");
    tar.file("etc/hostname", 0o644, root, b"imported\n");
    tar.file("etc/passwd", 0o644, root, b"root:x:0:0:root:/root:/bin/sh\nstudent:x:1000:1000::/home/student:/bin/sh\n");
    tar.file("etc/group", 0o644, root, b"root:x:0:\nstudent:x:1000:\n");
    tar.file("etc/motd", 0o644, root, b"a rootfs that was a tarball\n");
    tar.file("etc/shadow", 0o640, (0, 42), b"root:*:19000:0:99999:7:::\n");
    tar.file("home/student/notes.txt", 0o600, STUDENT_OWNER, b"their filesystems are literally tarballs\n");
    Ok(tar.finish())
}

/// A tree of `count` small files in directories of 100 (the benchmark's archive).
pub fn many_files_tar(count: usize) -> Vec<u8> {
    let mut tar = Tar::new();
    tar.dir("tree", 0o755, (0, 0));
    for index in 0..count {
        if index % 100 == 0 {
            tar.dir(&format!("tree/d{:03}", index / 100), 0o755, (0, 0));
        }
        let body = format!("file {index}\n");
        tar.file(&format!("tree/d{:03}/f{index:05}", index / 100), 0o644, (0, 0), body.as_bytes());
    }
    tar.finish()
}

/// One layer of the OCI image: its entries (path, content; None for a directory).
type Layer = &'static [(&'static str, Option<&'static str>)];

/// The lower layer: a config directory, a cache, an app.
pub const LOWER_LAYER: Layer = &[
    ("etc", None),
    ("etc/os-release", Some("NAME=lower\n")),
    ("etc/config", None),
    ("etc/config/a.conf", Some("a from the lower layer\n")),
    ("etc/config/b.conf", Some("b from the lower layer\n")),
    ("var", None),
    ("var/cache", None),
    ("var/cache/big.bin", Some("a big cache file\n")),
    ("opt", None),
    ("opt/app", None),
    ("opt/app/old.txt", Some("from the lower layer\n")),
    ("opt/gone", None),
    ("opt/gone/inside.txt", Some("deleted with its directory\n")),
];

/// The upper layer: a whiteout of a file and of a directory (which the same layer makes
/// again, with a new file: a whiteout hides only what the layers below made), a whiteout of
/// a name no layer made, an opaque directory, a file changed, a file added.
pub const UPPER_LAYER: Layer = &[
    ("etc", None),
    ("etc/os-release", Some("NAME=upper\n")),
    ("etc/config", None),
    ("etc/config/.wh..wh..opq", Some("")),
    ("etc/config/c.conf", Some("c from the upper layer\n")),
    ("var", None),
    ("var/cache", None),
    ("var/cache/.wh.big.bin", Some("")),
    ("var/.wh.never-made", Some("")),
    ("opt", None),
    ("opt/.wh.gone", Some("")),
    ("opt/gone", None),
    ("opt/gone/again.txt", Some("made again by the upper layer\n")),
    ("opt/app", None),
    ("opt/app/new.txt", Some("from the upper layer\n")),
];

/// What a runtime makes of the two layers: (path, content; None for a directory).
pub const FLATTENED: Layer = &[
    ("etc", None),
    ("etc/config", None),
    ("etc/config/c.conf", Some("c from the upper layer\n")),
    ("etc/os-release", Some("NAME=upper\n")),
    ("opt", None),
    ("opt/app", None),
    ("opt/app/new.txt", Some("from the upper layer\n")),
    ("opt/app/old.txt", Some("from the lower layer\n")),
    ("opt/gone", None),
    ("opt/gone/again.txt", Some("made again by the upper layer\n")),
    ("var", None),
    ("var/cache", None),
];

fn layer_tar(layer: Layer) -> Vec<u8> {
    let mut tar = Tar::new();
    for (path, content) in layer {
        match content {
            None => tar.dir(path, 0o755, (0, 0)),
            Some(body) => tar.file(path, 0o644, (0, 0), body.as_bytes()),
        }
    }
    tar.finish()
}

/// Writes a two-layer image in OCI layout into `dir` (made if missing): oci-layout,
/// index.json, and under blobs/sha256 the manifest, the config and both layers (gzip).
pub fn write_oci_layout(dir: &Path) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(LabError::io("create directory", &blobs))?;
    let put = |bytes: &[u8]| -> Result<String> {
        let digest = sha256_digest(bytes);
        let path = blobs.join(digest.trim_start_matches("sha256:"));
        std::fs::write(&path, bytes).map_err(LabError::io("write", &path))?;
        Ok(digest)
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in [LOWER_LAYER, UPPER_LAYER] {
        let tar = layer_tar(layer);
        diff_ids.push(sha256_digest(&tar));
        let compressed = gzip(&tar);
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": put(&compressed)?,
            "size": compressed.len(),
        }));
    }
    let config = serde_json::json!({
        "architecture": std::env::consts::ARCH,
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "config": {},
    })
    .to_string();
    let config_digest = put(config.as_bytes())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": layers,
    })
    .to_string();
    let manifest_digest = put(manifest.as_bytes())?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest.len() }],
    })
    .to_string();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(LabError::io("write", &path))
    };
    write("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    write("index.json", &index)
}

/// What the sheet's policy says an importer does with a hostile archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The import stops at the entry, with an error that names it (`names`). What the
    /// entries before it made stays: the target holds the archive's first entry and
    /// `leaves`, nothing else (`dir/` a directory, `name@` a symlink, `dir/*` anything
    /// below dir, a plain name a file).
    Refused { names: &'static str, leaves: &'static [&'static str] },
    /// The import goes on to the end; the entry is made harmless (the sheet says how).
    Neutralised,
}

/// One archive of the hostile corpus.
#[derive(Debug, Clone)]
pub struct Hostile {
    pub name: &'static str,
    /// The file name in the corpus directory (.tar or .tar.gz).
    pub file: String,
    pub policy: Policy,
    /// Whether the import must have made the archive's first entry (the salt's): false
    /// only where that very entry is the broken one (`checksum-start`).
    pub first_kept: bool,
    pub bytes: Vec<u8>,
}

/// What is picked at random for one set of archives: the harmless entry every hostile
/// archive begins with. Only an importer that read the archive knows its name and
/// content, so a target that holds it shows the import got that far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salt {
    pub first_name: String,
    pub first_body: Vec<u8>,
}

impl Salt {
    /// A name `cilab-first-<16 hex digits>` and 32 random bytes, from /dev/urandom.
    pub fn random() -> Result<Salt> {
        use std::io::Read;
        let path = Path::new("/dev/urandom");
        let mut bytes = [0u8; 40];
        std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut bytes)).map_err(LabError::io("read", path))?;
        let hex: String = bytes[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Salt { first_name: format!("{FIRST_PREFIX}{hex}"), first_body: bytes[8..].to_vec() })
    }
}

/// A path of 4096 characters: directories of 100 characters each.
pub fn long_path() -> String {
    let mut path = String::new();
    let mut index = 0;
    while path.len() + 100 < 4096 {
        path.push_str(&format!("{index:0>99}/"));
        index += 1;
    }
    let rest = 4096 - path.len();
    path.push_str(&"f".repeat(rest));
    path
}

/// The hostile corpus. `outside` is the absolute path of the sentinel tree, which lies at
/// `../../outside` from each archive's target (`<hostile>/targets/<name>/`). Every archive
/// begins with the salt's harmless entry.
pub fn hostile_corpus(outside: &Path, salt: &Salt) -> Vec<Hostile> {
    let abs = outside.display().to_string();
    let mut corpus = Vec::new();
    let mut add = |name: &'static str, policy: Policy, build: &dyn Fn(&mut Tar)| {
        let mut tar = Tar::new();
        tar.first(salt);
        build(&mut tar);
        tar.marker();
        corpus.push(Hostile { name, file: format!("{name}.tar"), policy, first_kept: true, bytes: tar.finish() });
    };
    let refused = |names: &'static str| Policy::Refused { names, leaves: &[] };
    let root = (0, 0);
    add("dotdot", refused("../../outside/dotdot.txt"), &|t| {
        t.file("../../outside/dotdot.txt", 0o644, root, b"written outside by ../\n")
    });
    add("dotdot-inner", Policy::Refused { names: "./a/../../../outside/dotdot-inner.txt", leaves: &["a/"] }, &|t| {
        t.dir("a", 0o755, root);
        t.file("./a/../../../outside/dotdot-inner.txt", 0o644, root, b"written outside by a/../../\n")
    });
    let absolute: &'static str = Box::leak(format!("{abs}/absolute.txt").into_boxed_str());
    add("absolute", refused(absolute), &|t| t.file(absolute, 0o644, root, b"written outside by an absolute path\n"));
    add("pax-dotdot", refused("../../outside/pax.txt"), &|t| {
        t.pax_path("../../outside/pax.txt");
        t.file("pax.txt", 0o644, root, b"written outside by a PAX path\n")
    });
    add("pax-global", Policy::Neutralised, &|t| {
        t.pax_global("../../outside/global.txt");
        t.file("global.txt", 0o644, root, GLOBAL_TEXT.as_bytes())
    });
    let through_link = Policy::Refused { names: "link/abs-write.txt", leaves: &["link@"] };
    add("symlink-abs-write", through_link, &|t| {
        t.symlink("link", &abs);
        t.file("link/abs-write.txt", 0o644, root, b"written through an absolute symlink\n")
    });
    add("symlink-rel-write", Policy::Refused { names: "link/rel-write.txt", leaves: &["link@"] }, &|t| {
        t.symlink("link", "../../outside");
        t.file("link/rel-write.txt", 0o644, root, b"written through a relative symlink\n")
    });
    add("symlink-dir-through", Policy::Refused { names: "link/made-outside", leaves: &["link@"] }, &|t| {
        t.symlink("link", "../../outside");
        t.dir("link/made-outside", 0o755, root);
        t.file("link/made-outside/f.txt", 0o644, root, b"in a directory made through a symlink\n")
    });
    add("symlink-then-file", Policy::Neutralised, &|t| {
        t.symlink("secret", &format!("{abs}/{SENTINEL_FILE}"));
        t.file("secret", 0o644, root, REPLACED.as_bytes())
    });
    add("symlink-then-dir", Policy::Neutralised, &|t| {
        t.symlink("x", &abs);
        t.dir("x", 0o755, root);
        t.file("x/inner.txt", 0o644, root, b"inside the directory that replaced a symlink\n")
    });
    add("hardlink-abs", refused("stolen"), &|t| t.hardlink("stolen", &format!("{abs}/{SENTINEL_FILE}"), 0o644));
    add("hardlink-dotdot", refused("stolen"), &|t| {
        t.hardlink("stolen", &format!("../../outside/{SENTINEL_FILE}"), 0o644)
    });
    add("hardlink-via-symlink", Policy::Refused { names: "stolen", leaves: &["link@"] }, &|t| {
        t.symlink("link", &abs);
        t.hardlink("stolen", &format!("link/{SENTINEL_FILE}"), 0o644)
    });
    add("hardlink-then-write", Policy::Neutralised, &|t| {
        t.file("f", 0o644, root, ORIGINAL.as_bytes());
        t.hardlink("h", "f", 0o644);
        t.file("h", 0o644, root, REPLACED.as_bytes());
        t.symlink("s", &format!("{abs}/{SENTINEL_FILE}"));
        t.hardlink("hs", "s", 0o777);
        t.file("hs", 0o644, root, REPLACED.as_bytes())
    });
    add("device-nodes", Policy::Refused { names: "dev/evil-null", leaves: &["dev/"] }, &|t| {
        t.dir("dev", 0o755, root);
        let mut device = |name: &str, kind: EntryType, major: u32, minor: u32| {
            let mut header = Tar::header(kind, 0o666, root, 0);
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            let _ = header.set_device_major(major);
            let _ = header.set_device_minor(minor);
            header.set_cksum();
            let _ = t.builder.append(&header, &b""[..]);
        };
        device("dev/evil-null", EntryType::Char, 1, 3);
        device("dev/evil-disk", EntryType::Block, 8, 0);
    });
    add("fifo", Policy::Neutralised, &|t| t.raw(b"pipe", EntryType::Fifo, 0o644, root, b"", b""));
    add("setuid-root", Policy::Neutralised, &|t| {
        t.dir("bin", 0o755, root);
        t.file("bin/su", 0o4755, root, b"#!/bin/sh\n");
        t.file("bin/sg", 0o2755, root, b"#!/bin/sh\n")
    });
    add("setgid-modes", Policy::Neutralised, &|t| {
        t.file("g", 0o2644, root, b"set-group-ID without group execute\n");
        t.dir("gdir", 0o2775, root)
    });
    add("world-writable", Policy::Neutralised, &|t| {
        t.dir("shared", 0o777, root);
        t.dir("tmp", 0o1777, root)
    });
    add("gnu-sparse", refused("sparse.img"), &|t| {
        let mut header = Tar::header(EntryType::GNUSparse, 0o644, root, 512);
        header.as_old_mut().name[..10].copy_from_slice(b"sparse.img");
        if let Some(gnu) = header.as_gnu_mut() {
            gnu.sparse[0].offset = *b"00000000000\0";
            gnu.sparse[0].numbytes = *b"00000001000\0";
            // The real size: 8 MiB (within the size limit: only the policy refuses it) of
            // which 512 bytes are data (the map ends at the end).
            gnu.sparse[1].offset = *b"00040000000\0";
            gnu.sparse[1].numbytes = *b"00000000000\0";
            gnu.realsize = *b"00040000000\0";
        }
        header.set_cksum();
        let _ = t.builder.append(&header, &[b'x'; 512][..]);
    });
    let long: &'static str = Box::leak(long_path().into_boxed_str());
    add("long-path", refused(&long[..60]), &|t| t.file(long, 0o644, root, b"a path of 4096 characters\n"));
    add("newline-name", refused("bad\\nname.txt"), &|t| {
        t.file("bad\nname.txt", 0o644, root, b"a name with a newline\n")
    });
    add("file-then-dir", Policy::Neutralised, &|t| {
        t.file("x", 0o644, root, ORIGINAL.as_bytes());
        t.dir("x", 0o755, root);
        t.file("x/inner.txt", 0o644, root, b"inside the directory that replaced a file\n")
    });
    add("dir-then-symlink", Policy::Refused { names: "`d`", leaves: &["d/"] }, &|t| {
        t.dir("d", 0o755, root);
        t.symlink("d", &abs);
        t.file("d/pwned.txt", 0o644, root, b"written through a symlink that replaced a directory\n")
    });

    // The raw ones: a size that lies, broken checksums, bombs.
    let mut lie = Tar::new();
    lie.first(salt);
    lie.file("before.txt", 0o644, root, b"before the lie\n");
    let mut bytes = lie.unfinished();
    let mut header = Tar::header(EntryType::Regular, 0o644, root, 10_000);
    header.as_old_mut().name[..7].copy_from_slice(b"big.bin");
    header.set_cksum();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[b'y'; 100]);
    corpus.push(Hostile {
        name: "size-lie",
        file: "size-lie.tar".into(),
        policy: Policy::Refused { names: "big.bin", leaves: &["before.txt"] },
        first_kept: true,
        bytes,
    });

    // The first entry's header (the salt's: checksum-start) or the third's is broken.
    let broken = |first: bool| {
        let mut tar = Tar::new();
        tar.first(salt);
        tar.file("ok.txt", 0o644, root, b"a good entry\n");
        let third = tar.builder.get_ref().len();
        tar.file("broken.txt", 0o644, root, b"its header's checksum is wrong\n");
        tar.marker();
        let mut bytes = tar.finish();
        let at = if first { 148 } else { third + 148 };
        bytes[at..at + 6].copy_from_slice(b"000001");
        bytes
    };
    corpus.push(Hostile {
        name: "checksum-start",
        file: "checksum-start.tar".into(),
        policy: Policy::Refused { names: "entry #1", leaves: &[] },
        first_kept: false,
        bytes: broken(true),
    });
    corpus.push(Hostile {
        name: "checksum-middle",
        file: "checksum-middle.tar".into(),
        policy: Policy::Refused { names: "entry #3", leaves: &["ok.txt"] },
        first_kept: true,
        bytes: broken(false),
    });
    corpus.push(Hostile {
        name: "gzip-bomb",
        file: "gzip-bomb.tar.gz".into(),
        policy: Policy::Refused { names: "zeros.bin", leaves: &[] },
        first_kept: true,
        bytes: gzip_bomb(salt),
    });
    corpus.push(Hostile {
        name: "long-name-bomb",
        file: "long-name-bomb.tar.gz".into(),
        policy: Policy::Refused { names: "entry #2", leaves: &[] },
        first_kept: true,
        bytes: long_name_bomb(salt),
    });
    corpus.push(Hostile {
        name: "pax-bomb",
        file: "pax-bomb.tar.gz".into(),
        policy: Policy::Refused { names: "entry #2", leaves: &[] },
        first_kept: true,
        bytes: pax_bomb(salt),
    });
    let read_over: &'static str = Box::leak(format!("entry #{}", read_bomb_refused_at()).into_boxed_str());
    corpus.push(Hostile {
        name: "read-bomb",
        file: "read-bomb.tar.gz".into(),
        policy: Policy::Refused { names: read_over, leaves: &[] },
        first_kept: true,
        bytes: read_bomb(salt),
    });
    let over: &'static str = Box::leak(format!("entry #{}", MAX_ENTRIES + 1).into_boxed_str());
    corpus.push(Hostile {
        name: "many-entries",
        file: "many-entries.tar.gz".into(),
        policy: Policy::Refused { names: over, leaves: &["many/", "many/*"] },
        first_kept: true,
        bytes: many_entries_bomb(salt),
    });
    corpus
}

const MIB: usize = 1024 * 1024;

/// `first`, then gzip members of 1 MiB of zeros each until `zeros` bytes of zeros follow
/// it (a gzip stream may hold many members, one after the other: cheap to make, small).
fn with_zeros(first: Vec<u8>, zeros: u64) -> Vec<u8> {
    let mut bytes = gzip(&first);
    let member = gzip(&vec![0; MIB]);
    let members = usize::try_from(zeros).unwrap_or(usize::MAX) / MIB;
    bytes.reserve(member.len() * members);
    for _ in 0..members {
        bytes.extend_from_slice(&member);
    }
    bytes
}

/// 2 GiB of zeros in about 2 MB: the salt's entry, a tar header for one file of 2 GiB,
/// then its body in members of 1 MiB of zeros (the archive ends there, unfinished).
pub fn gzip_bomb(salt: &Salt) -> Vec<u8> {
    let mut tar = Tar::new();
    tar.first(salt);
    let mut first = tar.unfinished();
    let mut header = Tar::header(EntryType::Regular, 0o644, (0, 0), BOMB_BYTES);
    header.as_old_mut().name[..9].copy_from_slice(b"zeros.bin");
    header.set_cksum();
    first.extend_from_slice(header.as_bytes());
    with_zeros(first, BOMB_BYTES)
}

/// A GNU long name of 1 GiB in about 1 MB: the salt's entry, a `././@LongLink` header of
/// 1 GiB, its body (zeros), then the entry it would name and the marker. A tar reader
/// without a limit holds the whole name in memory before it hands out the entry.
pub fn long_name_bomb(salt: &Salt) -> Vec<u8> {
    let mut tar = Tar::new();
    tar.first(salt);
    let mut first = tar.unfinished();
    let mut long = Tar::header(EntryType::GNULongName, 0o644, (0, 0), LONG_NAME_BOMB_BYTES);
    long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    long.set_cksum();
    first.extend_from_slice(long.as_bytes());
    let mut bytes = with_zeros(first, LONG_NAME_BOMB_BYTES);
    let mut rest = Tar::new();
    rest.file("named-by-the-long-name", 0o644, (0, 0), b"its name was 1 GiB long\n");
    rest.marker();
    bytes.extend_from_slice(&gzip(&rest.finish()));
    bytes
}

/// A PAX header of 200 MiB (one `comment` record) in about 200 KB: the salt's entry, the
/// header, then the harmless file it describes and the marker. A tar reader without a
/// limit holds it in memory, then goes on to the end as if nothing happened.
pub fn pax_bomb(salt: &Salt) -> Vec<u8> {
    let mut tar = Tar::new();
    tar.first(salt);
    let mut first = tar.unfinished();
    let size = usize::try_from(PAX_BOMB_BYTES).unwrap_or(usize::MAX);
    let mut pax = Tar::header(EntryType::XHeader, 0o644, (0, 0), PAX_BOMB_BYTES);
    pax.as_old_mut().name[..16].copy_from_slice(b"PaxHeaders/bomb\0");
    pax.set_cksum();
    first.extend_from_slice(pax.as_bytes());
    // One record of exactly `size` bytes: "<size> comment=000…0\n".
    let prefix = format!("{size} comment=");
    first.extend_from_slice(prefix.as_bytes());
    let digits = size - prefix.len() - 1;
    let mut bytes = gzip(&first);
    let member = gzip(&vec![b'0'; MIB]);
    for _ in 0..digits / MIB {
        bytes.extend_from_slice(&member);
    }
    let mut last = vec![b'0'; digits % MIB];
    last.push(b'\n');
    let mut rest = Tar::new();
    rest.file("described-by-the-pax-header", 0o644, (0, 0), b"after 200 MiB of PAX records\n");
    rest.marker();
    last.extend_from_slice(&rest.finish());
    bytes.extend_from_slice(&gzip(&last));
    bytes
}

/// The read bomb: READ_BOMB_HEADERS PAX global headers of READ_BOMB_PAX bytes each (one
/// `comment` record, a multiple of 512: no padding; under HEADER_LIMIT).
pub const READ_BOMB_HEADERS: u64 = 300;
pub const READ_BOMB_PAX: u64 = 900 * 1024;

/// The number of the entry in whose body the read bomb passes READ_LIMIT: the salt's
/// entry (header and one block of body) is #1, global header k (from 1) is #k+1, and after
/// it 1024 + k * (512 + READ_BOMB_PAX) bytes are read.
pub fn read_bomb_refused_at() -> u64 {
    let per_header = 512 + READ_BOMB_PAX;
    // The first global header whose body takes the total past READ_LIMIT.
    let k = (READ_LIMIT - 1024) / per_header + 1;
    k + 1
}

/// 264 MiB read, nothing written, in about 300 KB: the salt's entry, then 300 times the
/// same gzip member, a PAX *global* header of 900 KiB (one `comment` record: every tar
/// reader reads it whole, GNU tar and Go's archive/tar as the tar crate does; the lab's
/// policy skips it), then the marker. Each header is within the header limit, no file has a
/// byte, 302 entries: only the limit on what is read in all stops it.
pub fn read_bomb(salt: &Salt) -> Vec<u8> {
    let mut tar = Tar::new();
    tar.first(salt);
    let mut bytes = gzip(&tar.unfinished());
    let size = usize::try_from(READ_BOMB_PAX).unwrap_or(MIB);
    let mut global = Tar::header(EntryType::XGlobalHeader, 0o644, (0, 0), READ_BOMB_PAX);
    global.as_old_mut().name[..17].copy_from_slice(b"pax_global_header");
    global.set_cksum();
    let mut member = global.as_bytes().to_vec();
    // One record of exactly `size` bytes: "<size> comment=000…0\n".
    let prefix = format!("{size} comment=");
    member.extend_from_slice(prefix.as_bytes());
    member.resize(512 + size - 1, b'0');
    member.push(b'\n');
    let member = gzip(&member);
    for _ in 0..READ_BOMB_HEADERS {
        bytes.extend_from_slice(&member);
    }
    let mut rest = Tar::new();
    rest.marker();
    bytes.extend_from_slice(&gzip(&rest.finish()));
    bytes
}

/// 1,000,000 empty files in about 7 MB: the salt's entry, a directory `many/`, then
/// 1,000 times the same gzip member of 1,000 empty files `many/000` … `many/999` (each
/// name made 1,000 times), then the marker.
pub fn many_entries_bomb(salt: &Salt) -> Vec<u8> {
    let mut tar = Tar::new();
    tar.first(salt);
    tar.dir("many", 0o755, (0, 0));
    let mut bytes = gzip(&tar.unfinished());
    let mut round = Tar::new();
    for index in 0..1000 {
        round.file(&format!("many/{index:03}"), 0o644, (0, 0), b"");
    }
    let member = gzip(&round.unfinished());
    bytes.reserve(member.len() * 1000);
    for _ in 0..1000 {
        bytes.extend_from_slice(&member);
    }
    let mut rest = Tar::new();
    rest.marker();
    bytes.extend_from_slice(&gzip(&rest.finish()));
    bytes
}

/// Writes the corpus into `dir` (made if missing).
pub fn write_hostile_corpus(dir: &Path, outside: &Path, salt: &Salt) -> Result<Vec<Hostile>> {
    std::fs::create_dir_all(dir).map_err(LabError::io("create directory", dir))?;
    let corpus = hostile_corpus(outside, salt);
    for archive in &corpus {
        let path = dir.join(&archive.file);
        std::fs::write(&path, &archive.bytes).map_err(LabError::io("write", &path))?;
    }
    Ok(corpus)
}

/// The sentinel tree beside the targets: a file, a directory with a file, a symlink, and
/// a file owned by SENTINEL_OWNER (so that a chown outside shows, in its owner and its
/// ctime). Needs root (chown).
pub fn plant_sentinel_tree(outside: &Path) -> Result<()> {
    let dir = outside.join(SENTINEL_SUBDIR);
    std::fs::create_dir_all(&dir).map_err(LabError::io("create directory", &dir))?;
    let write =
        |path: std::path::PathBuf, text: &str| std::fs::write(&path, text).map_err(LabError::io("write", &path));
    write(outside.join(SENTINEL_FILE), SENTINEL_TEXT)?;
    write(dir.join("kept.txt"), "a file in a directory outside every target\n")?;
    let owned = outside.join(SENTINEL_OWNED);
    write(owned.clone(), "owned by someone else: no archive may change its owner\n")?;
    std::os::unix::fs::chown(&owned, Some(SENTINEL_OWNER), Some(SENTINEL_OWNER))
        .map_err(LabError::io("chown", &owned))?;
    let link = outside.join("link-to-secret");
    std::os::unix::fs::symlink(SENTINEL_FILE, &link).map_err(LabError::io("symlink", &link))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not a test: writes the sentinel tree and the corpus for measuring other extractors
    /// (labs/rootfs-import/measure/README.md). As root:
    /// `CILAB_CORPUS_DIR=/tmp/ri/hostile cargo test -p labkit write_corpus -- --ignored`.
    #[test]
    #[ignore = "a tool for labs/rootfs-import/measure, run by hand"]
    fn write_corpus() {
        let Some(dir) = std::env::var_os("CILAB_CORPUS_DIR") else {
            panic!("set CILAB_CORPUS_DIR to the hostile dir to write (…/hostile)");
        };
        let dir = Path::new(&dir);
        let outside = dir.join(OUTSIDE_DIR);
        plant_sentinel_tree(&outside).expect("plant the sentinel tree");
        let salt = Salt::random().expect("salt");
        write_hostile_corpus(&dir.join(ARCHIVES_DIR), &outside, &salt).expect("write the corpus");
    }

    #[test]
    fn every_archive_begins_with_the_salt_but_checksum_start() {
        let salt = Salt { first_name: format!("{FIRST_PREFIX}0123456789abcdef"), first_body: b"first".to_vec() };
        for archive in hostile_corpus(Path::new("/outside"), &salt) {
            if archive.file.ends_with(".gz") {
                continue;
            }
            let mut reader = tar::Archive::new(archive.bytes.as_slice());
            let first = reader.entries().expect("entries").next().expect("an entry");
            match first {
                Ok(entry) => {
                    assert!(archive.first_kept, "{}", archive.name);
                    assert_eq!(&*entry.path_bytes(), salt.first_name.as_bytes(), "{}", archive.name);
                }
                Err(_) => assert!(!archive.first_kept, "{}: its first header is broken", archive.name),
            }
        }
    }
}
