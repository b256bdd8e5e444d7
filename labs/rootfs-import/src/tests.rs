use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::*;

#[test]
fn the_student_regions_are_the_expected_ones() {
    let regions = labkit::regions::parse(include_str!("main.rs")).expect("regions parse");
    let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "read-limits",
            "make-entry",
            "size-limit",
            "hardlink",
            "entry-path",
            "open-beneath",
            "policy",
            "whiteouts",
            "run-busybox"
        ]
    );
}

#[test]
fn entry_paths_are_checked() {
    assert!(entry_components(b"../x").is_err());
    assert!(entry_components(b"./a/../../x").is_err());
    assert!(entry_components(b"/etc/passwd").is_err());
    assert!(entry_components(b"bad\nname").is_err());
    assert_eq!(entry_components(b"./a//b/.").expect("a plain path"), [OsString::from("a"), OsString::from("b")]);
    assert!(entry_components(b"./").expect("the target itself").is_empty());
}

/// Every file under `dir`: (relative path, kind, content or link target), not following links.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("list").flatten() {
            let path = entry.path();
            let meta = path.symlink_metadata().expect("lstat");
            let what = if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if meta.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&path).expect("readlink").display())
            } else {
                use std::os::unix::fs::MetadataExt;
                format!("file {:?} links {}", std::fs::read(&path).expect("read"), meta.nlink())
            };
            out.insert(path.strip_prefix(dir).expect("below").display().to_string(), what);
        }
    }
    out
}

/// One entry of a random archive.
#[derive(Debug, Clone)]
enum Random {
    Dir(String),
    File(String),
    Symlink(String, String),
    Hardlink(String, String),
}

/// The outside, absolutely: replaced by the sentinel tree's real path.
const ABS: &str = "/ABS";

/// A path of 1 to 3 components, mostly names (`l` is often a symlink by then), sometimes
/// `..`, `.`, an empty component, or absolute.
fn name() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        2 => Just("a"),
        1 => Just("b"),
        4 => Just("l"),
        2 => Just("secret"),
        1 => Just(".."),
        1 => Just("."),
        1 => Just(""),
    ];
    (prop::collection::vec(part, 1..4), prop::bool::weighted(0.05)).prop_map(|(parts, absolute)| {
        let joined = parts.join("/");
        if absolute {
            format!("/{joined}")
        } else {
            joined
        }
    })
}

/// Where a link points: a name of the archive, or outside (relatively or absolutely).
fn link_target() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => name(),
        2 => Just("../../outside".to_string()),
        2 => Just(ABS.to_string()),
        2 => Just(format!("{ABS}/secret")),
        1 => Just("../../outside/secret".to_string()),
    ]
}

fn entry() -> impl Strategy<Value = Random> {
    prop_oneof![
        1 => name().prop_map(Random::Dir),
        3 => name().prop_map(Random::File),
        3 => (name(), link_target()).prop_map(|(n, t)| Random::Symlink(n, t)),
        2 => (name(), link_target()).prop_map(|(n, t)| Random::Hardlink(n, t)),
    ]
}

fn archive_of(entries: &[Random], outside: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let abs = outside.display().to_string();
    for entry in entries {
        let (kind, path, link, body): (EntryType, &str, String, &[u8]) = match entry {
            Random::Dir(p) => (EntryType::Directory, p, String::new(), b""),
            Random::File(p) => (EntryType::Regular, p, String::new(), b"random\n"),
            Random::Symlink(p, t) => (EntryType::Symlink, p, t.replace(ABS, &abs), b""),
            Random::Hardlink(p, t) => (EntryType::Link, p, t.replace(ABS, &abs), b""),
        };
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(0o755);
        header.set_size(body.len() as u64);
        // The test's own ids: a chown to them works as root and as anybody.
        header.set_uid(u64::from(nix::unistd::getuid().as_raw()));
        header.set_gid(u64::from(nix::unistd::getgid().as_raw()));
        header.set_mtime(0);
        let name = &path.as_bytes()[..path.len().min(99)];
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        let link = &link.as_bytes()[..link.len().min(99)];
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        header.set_cksum();
        builder.append(&header, body).expect("append");
    }
    builder.into_inner().expect("finish")
}

proptest! {
    // Bounded so that it fits CI: 512 archives of up to 24 entries, about two seconds in all.
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the archive holds, nothing lands outside the target: the sentinel tree
    /// beside it is unchanged, and the directory holding both holds nothing else.
    #[test]
    fn nothing_lands_outside_the_target(entries in prop::collection::vec(entry(), 1..24)) {
        let base = tempfile::tempdir().expect("tempdir");
        let area = base.path().join("x");
        let target = area.join("target");
        let outside = base.path().join("outside");
        std::fs::create_dir_all(&target).expect("mkdir");
        std::fs::create_dir_all(outside.join("a")).expect("mkdir");
        std::fs::create_dir_all(outside.join("l")).expect("mkdir");
        std::fs::write(outside.join("secret"), "sentinel").expect("write");
        let before = snapshot(base.path());
        let archive = archive_of(&entries, &outside);
        let _ = import(archive.as_slice(), &target, false);
        let after = snapshot(base.path());
        let changed: std::collections::BTreeSet<&String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| !k.starts_with("x/target/") && before.get(*k) != after.get(*k))
            .collect();
        prop_assert!(changed.is_empty(), "changed outside the target: {changed:?}");
    }
}

/// The property's check itself: a write through an outward symlink is seen.
#[test]
fn a_write_through_an_outward_symlink_is_refused() {
    let base = tempfile::tempdir().expect("tempdir");
    let target = base.path().join("x/target");
    let outside = base.path().join("outside");
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("secret"), "sentinel").expect("write");
    let before = snapshot(base.path());
    let entries = [Random::Symlink("l".into(), ABS.into()), Random::File("l/secret".into())];
    let result = import(archive_of(&entries, &outside).as_slice(), &target, false);
    assert!(result.is_err(), "the write through `l` is refused");
    let outside_before: BTreeMap<String, String> =
        before.iter().filter_map(|(k, v)| Some((k.strip_prefix("outside/")?.to_string(), v.clone()))).collect();
    assert_eq!(snapshot(&outside), outside_before);
    let error = format!("{:#}", result.err().map(|e| format!("{e:#}")).unwrap_or_default());
    assert!(error.contains("`l/secret`") && error.contains("not followed"), "{error}");
}

/// An archive of raw 512-byte headers and bodies, then the two end blocks.
fn raw_archive(parts: &[(tar::Header, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (header, body) in parts {
        builder.append(header, body.as_slice()).expect("append");
    }
    builder.into_inner().expect("finish")
}

fn header(name: &[u8], kind: EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(size);
    header.set_uid(u64::from(nix::unistd::getuid().as_raw()));
    header.set_gid(u64::from(nix::unistd::getgid().as_raw()));
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_cksum();
    header
}

/// A GNU long name past HEADER_LIMIT is refused while it is read, naming the entry's number.
#[test]
fn a_long_name_past_the_header_limit_is_refused() {
    let base = tempfile::tempdir().expect("tempdir");
    let size = HEADER_LIMIT + 4096;
    let archive = raw_archive(&[
        (header(b"first", EntryType::Regular, 3), b"ok\n".to_vec()),
        (header(b"././@LongLink", EntryType::GNULongName, size), vec![b'a'; size as usize]),
        (header(b"short", EntryType::Regular, 0), Vec::new()),
    ]);
    let error = import(archive.as_slice(), base.path(), false).map(|_| ()).expect_err("refused");
    let error = format!("{error:#}");
    assert!(error.contains("entry #2") && error.contains("headers and extensions"), "{error}");
    assert!(base.path().join("first").exists(), "the entry before stays");
}

#[test]
fn the_read_limits_say_which() {
    assert!(within_read_limits(MAX_ENTRIES, HEADER_LIMIT, READ_LIMIT).is_ok());
    let said = |r: Result<()>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(said(within_read_limits(MAX_ENTRIES + 1, 0, 0)).contains("entries"));
    assert!(said(within_read_limits(1, HEADER_LIMIT + 1, 0)).contains("headers"));
    assert!(said(within_read_limits(1, 0, READ_LIMIT + 1)).contains("read limit"));
}

/// A body that ends before its declared size leaves nothing of the file.
#[test]
fn a_refused_file_leaves_nothing() {
    let base = tempfile::tempdir().expect("tempdir");
    let mut archive = raw_archive(&[(header(b"before", EntryType::Regular, 3), b"ok\n".to_vec())]);
    archive.truncate(archive.len() - 1024);
    archive.extend_from_slice(header(b"big.bin", EntryType::Regular, 10_000).as_bytes());
    archive.extend_from_slice(&[b'y'; 100]);
    let error = import(archive.as_slice(), base.path(), false).map(|_| ()).expect_err("refused");
    assert!(format!("{error:#}").contains("big.bin"), "{error:#}");
    assert!(base.path().join("before").exists());
    assert!(base.path().join("big.bin").symlink_metadata().is_err(), "the partial file is unlinked");
}

/// A PAX global header is skipped (with a warning), its records applied to nothing.
#[test]
fn a_pax_global_header_is_ignored() {
    let base = tempfile::tempdir().expect("tempdir");
    let target = base.path().join("t");
    std::fs::create_dir(&target).expect("mkdir");
    let record = b"28 path=../../outside/g.txt\n".to_vec();
    let archive = raw_archive(&[
        (header(b"pax_global_header", EntryType::XGlobalHeader, 28), record[..28].to_vec()),
        (header(b"g.txt", EntryType::Regular, 3), b"in\n".to_vec()),
    ]);
    let report = import(archive.as_slice(), &target, false).expect("imported");
    assert_eq!(std::fs::read(target.join("g.txt")).expect("g.txt inside"), b"in\n");
    assert!(report.warnings.iter().any(|w| w.contains("XGlobalHeader")), "{:?}", report.warnings);
    assert!(base.path().join("outside").symlink_metadata().is_err());
}
