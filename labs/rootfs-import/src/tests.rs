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
        ["make-entry", "size-limit", "hardlink", "entry-path", "open-beneath", "policy", "whiteouts", "run-busybox"]
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
                format!("file {:?}", std::fs::read(&path).expect("read"))
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

fn name() -> impl Strategy<Value = String> {
    let part = prop_oneof![Just("a"), Just("b"), Just(".."), Just("."), Just(""), Just("l"), Just("outside")];
    (prop::collection::vec(part, 1..5), any::<bool>()).prop_map(|(parts, absolute)| {
        let joined = parts.join("/");
        if absolute {
            format!("/{joined}")
        } else {
            joined
        }
    })
}

fn entry() -> impl Strategy<Value = Random> {
    prop_oneof![
        name().prop_map(Random::Dir),
        name().prop_map(Random::File),
        (name(), name()).prop_map(|(n, t)| Random::Symlink(n, t)),
        (name(), prop_oneof![Just("../../outside".to_string()), Just("../outside/secret".to_string())])
            .prop_map(|(n, t)| Random::Symlink(n, t)),
        (name(), name()).prop_map(|(n, t)| Random::Hardlink(n, t)),
    ]
}

fn archive_of(entries: &[Random], outside: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let (kind, path, link, body): (EntryType, &str, String, &[u8]) = match entry {
            Random::Dir(p) => (EntryType::Directory, p, String::new(), b""),
            Random::File(p) => (EntryType::Regular, p, String::new(), b"random\n"),
            // A target named `outside` points at the real outside, absolutely.
            Random::Symlink(p, t) if t.ends_with("outside") && t.starts_with('/') => {
                (EntryType::Symlink, p, outside.display().to_string(), b"")
            }
            Random::Symlink(p, t) => (EntryType::Symlink, p, t.clone(), b""),
            Random::Hardlink(p, t) => (EntryType::Link, p, t.clone(), b""),
        };
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(0o755);
        header.set_size(body.len() as u64);
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
    // Bounded so that it fits CI: 256 archives of up to 24 entries, well under a second each.
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

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
        std::fs::write(outside.join("secret"), "sentinel").expect("write");
        let before = snapshot(base.path());
        let archive = archive_of(&entries, &outside);
        let _ = import(archive.as_slice(), &target, false);
        let after = snapshot(base.path());
        let changed: Vec<&String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| !k.starts_with("x/target/") && before.get(*k) != after.get(*k))
            .collect();
        prop_assert!(changed.is_empty(), "changed outside the target: {changed:?}");
    }
}
