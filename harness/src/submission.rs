//! A student's submission, as `cilab grade` takes it: a directory (their tree) or a
//! tarball of it (.tar, .tar.gz, .tgz). Only the lab crates' sources are taken from it
//! (`labs/<lab>/src/**/*.rs` of the catalog's labs); everything else is the instructor's,
//! and what the submission changed there is only noted ("ignored: ... edited").
//!
//! Nothing of a submission is ever unpacked as it stands: tarballs are read entry by entry
//! into memory, each entry checked (no `..` or absolute paths: the tarball is refused; no
//! links or devices among the lab sources; sizes capped), and only the lab sources taken
//! are written later, as regular files, into a tree cilab made.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::catalog::LabSpec;
use crate::error::{Error, Result};

/// A lab source file larger than this is refused (a lab is a few hundred lines).
pub const MAX_SOURCE_BYTES: u64 = 1 << 20;
/// At most this much is read of one submission (all its entries together).
pub const MAX_SUBMISSION_BYTES: u64 = 256 << 20;
/// At most this many entries in one submission.
pub const MAX_ENTRIES: usize = 100_000;
/// At most this many "ignored: ..." notes per submission (then a count of the rest).
const MAX_NOTES: usize = 20;

/// One submission in the class directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The directory's name or the tarball's stem: the student's name in the results.
    pub name: String,
    pub path: PathBuf,
}

/// What cilab takes from a submission.
#[derive(Debug, Clone, Default)]
pub struct Taken {
    /// Per lab: its source files, relative to `labs/<lab>/src`, with their text.
    pub sources: BTreeMap<&'static str, BTreeMap<PathBuf, String>>,
    /// What the submission changed outside the lab sources, which grading ignores.
    pub notes: Vec<String>,
}

/// An entry of the class directory that is not a submission, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub entry: String,
    pub why: String,
}

/// The submissions in `dir`: each subdirectory and each tarball, by name, and every other
/// entry as skipped with why (hidden, a symlink, an archive cilab does not read); two
/// submissions of the same name are an error.
pub fn discover(dir: &Path) -> Result<(Vec<Submission>, Vec<Skipped>)> {
    let mut found: Vec<Submission> = Vec::new();
    let mut skipped = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(Error::io("list", dir))? {
        let entry = entry.map_err(Error::io("list", dir))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let mut skip = |why: &str| skipped.push(Skipped { entry: printable(&file_name), why: why.to_string() });
        if file_name.starts_with('.') {
            skip("hidden");
            continue;
        }
        let path = entry.path();
        let kind = std::fs::symlink_metadata(&path).map_err(Error::io("stat", &path))?.file_type();
        let stem = if kind.is_dir() {
            Some(file_name.as_str())
        } else if kind.is_file() {
            [".tar.gz", ".tgz", ".tar"].iter().find_map(|ext| file_name.strip_suffix(ext))
        } else {
            None
        };
        let Some(stem) = stem.filter(|s| !s.is_empty()) else {
            skip(if kind.is_symlink() {
                "a symlink (a submission is a directory or a tarball of its own, not a link)"
            } else if !kind.is_file() {
                "not a directory or a regular file"
            } else {
                "not a directory or a .tar, .tar.gz, .tgz (zip, xz, bz2 are not read)"
            });
            continue;
        };
        let name: String =
            stem.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
        if let Some(other) = found.iter().find(|s| s.name == name) {
            return Err(Error::parse(
                format!("the submissions in {}", dir.display()),
                format!("{} and {} are both named `{name}`", other.path.display(), path.display()),
            ));
        }
        found.push(Submission { name, path });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    skipped.sort_by(|a, b| a.entry.cmp(&b.entry));
    Ok((found, skipped))
}

/// `text` without control characters (terminal escapes, `\r`; a newline or tab becomes a
/// space): what a submission names or makes a compiler say is printed with this.
pub fn printable(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' | '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// A path of a student's tree that is never looked at: build output and git's store, at any
/// depth (but a lab's `src/target.rs` module dir is a source).
fn never_read(relative: &Path) -> bool {
    let mut in_src = false;
    for component in relative.components() {
        let part = component.as_os_str();
        if part == ".git" || (part == "target" && !in_src) {
            return true;
        }
        in_src |= part == "src";
    }
    false
}

/// An entry of a submission, as read.
#[derive(Debug)]
enum Item {
    File(Vec<u8>),
    /// A regular file not read (too large to matter): its size.
    Large(u64),
    /// A symlink, hard link, device, FIFO: never taken.
    Special(&'static str),
}

impl Submission {
    /// Reads the submission and takes the sources of `labs` from it, comparing the rest with
    /// `workspace` (the instructor's tree). `Err(reason)`: the submission is refused as a
    /// whole, with the reason to show the student (a hostile tarball, a link among the
    /// sources, a source too large).
    pub fn take(&self, labs: &[&'static LabSpec], workspace: &Path) -> std::result::Result<Taken, String> {
        let items = if self.path.is_dir() { read_dir_tree(&self.path)? } else { read_tarball(&self.path)? };
        classify(strip_top_dir(items), labs, workspace)
    }
}

fn read_dir_tree(root: &Path) -> std::result::Result<Vec<(PathBuf, Item)>, String> {
    let mut items = Vec::new();
    let mut total = 0u64;
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let name = entry.file_name();
            let relative = relative.join(&name);
            if never_read(&relative) {
                continue;
            }
            let metadata = std::fs::symlink_metadata(entry.path())
                .map_err(|e| format!("cannot stat {}: {e}", relative.display()))?;
            let kind = metadata.file_type();
            if kind.is_dir() {
                pending.push(relative);
                continue;
            }
            let item = if kind.is_symlink() {
                Item::Special("a symlink")
            } else if !kind.is_file() {
                Item::Special("not a regular file")
            } else if metadata.len() > MAX_SOURCE_BYTES {
                Item::Large(metadata.len())
            } else {
                total += metadata.len();
                if total > MAX_SUBMISSION_BYTES {
                    return Err(format!("the submission is larger than {} MiB", MAX_SUBMISSION_BYTES >> 20));
                }
                let path = entry.path();
                Item::File(std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", relative.display()))?)
            };
            items.push((relative, item));
            if items.len() > MAX_ENTRIES {
                return Err(format!("the submission has more than {MAX_ENTRIES} files"));
            }
        }
    }
    Ok(items)
}

fn read_tarball(path: &Path) -> std::result::Result<Vec<(PathBuf, Item)>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let name = path.to_string_lossy();
    let reader: Box<dyn Read> =
        if name.ends_with(".tar") { Box::new(file) } else { Box::new(flate2::read::GzDecoder::new(file)) };
    // Bounded however the archive lies about its sizes (a gzip bomb stops here).
    let mut archive = tar::Archive::new(reader.take(MAX_SUBMISSION_BYTES + (64 << 20)));
    let entries = archive.entries().map_err(|e| format!("not a tarball: {e}"))?;
    let mut items = Vec::new();
    let mut total = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("a broken tarball: {e}"))?;
        let raw = entry.path().map_err(|e| format!("a tarball entry with a bad path: {e}"))?.into_owned();
        let mut relative = PathBuf::new();
        for component in raw.components() {
            match component {
                Component::Normal(part) => relative.push(part),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(format!("the tarball has an entry outside its tree: {}", raw.display()))
                }
            }
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() || kind.is_gnu_longname()
        {
            continue;
        }
        if relative.as_os_str().is_empty() {
            return Err(format!("the tarball has an entry without a name: {}", raw.display()));
        }
        // `alice/target/...` too: the top dir is not stripped yet.
        if never_read(&relative) || never_read(&relative.components().skip(1).collect::<PathBuf>()) {
            continue;
        }
        let size = entry.size();
        let item = if kind.is_symlink() || kind.is_hard_link() {
            Item::Special("a link")
        } else if !kind.is_file() {
            Item::Special("not a regular file")
        } else if size > MAX_SOURCE_BYTES {
            Item::Large(size)
        } else {
            total += size;
            if total > MAX_SUBMISSION_BYTES {
                return Err(format!("the tarball holds more than {} MiB", MAX_SUBMISSION_BYTES >> 20));
            }
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            (&mut entry)
                .take(MAX_SOURCE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read {} in the tarball: {e}", relative.display()))?;
            Item::File(bytes)
        };
        items.push((relative, item));
        if items.len() > MAX_ENTRIES {
            return Err(format!("the tarball has more than {MAX_ENTRIES} entries"));
        }
    }
    Ok(items)
}

/// A tarball of `alice/...` is alice's tree: its one top directory is left out.
fn strip_top_dir(items: Vec<(PathBuf, Item)>) -> Vec<(PathBuf, Item)> {
    let first = |p: &Path| p.components().next().map(|c| c.as_os_str().to_owned());
    let at_top = items.iter().any(|(p, _)| p.components().count() == 1 || first(p).is_some_and(|f| f == "labs"));
    let top = items.first().and_then(|(p, _)| first(p));
    match top {
        Some(top) if !at_top && items.iter().all(|(p, _)| first(p).as_ref() == Some(&top)) => items
            .into_iter()
            .map(|(p, item)| (p.strip_prefix(&top).map(Path::to_path_buf).unwrap_or(p), item))
            .collect(),
        _ => items,
    }
}

fn classify(
    items: Vec<(PathBuf, Item)>,
    labs: &[&'static LabSpec],
    workspace: &Path,
) -> std::result::Result<Taken, String> {
    let mut taken = Taken::default();
    let mut notes = Vec::new();
    let mut handout_readme = None;
    for (relative, item) in items {
        if never_read(&relative) {
            continue;
        }
        let lab_source = labs.iter().find_map(|lab| {
            let inside = relative.strip_prefix(Path::new("labs").join(lab.name).join("src")).ok()?;
            (inside.extension().is_some_and(|e| e == "rs")).then(|| (*lab, inside.to_path_buf()))
        });
        if let Some((lab, inside)) = lab_source {
            // `._main.rs` (macOS), `.#main.rs` (Emacs): no `mod` can name a dot-file.
            if inside.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.')) {
                notes.push(format!("ignored: {} (a dot-file: no `mod` reaches it)", relative.display()));
                continue;
            }
            let text = match item {
                Item::File(bytes) => String::from_utf8(bytes)
                    .map_err(|_| format!("{} is not UTF-8 text: refused", relative.display()))?,
                Item::Large(size) => {
                    return Err(format!(
                        "{} is {size} bytes, more than the {MAX_SOURCE_BYTES} a lab source may have: refused",
                        relative.display()
                    ))
                }
                Item::Special(what) => return Err(format!("{} is {what}: refused", relative.display())),
            };
            taken.sources.entry(lab.name).or_default().insert(inside, text);
            continue;
        }
        let note = match item {
            Item::Special(what) => Some(format!("ignored: {} ({what})", relative.display())),
            Item::Large(_) => Some(format!("ignored: {} (large)", relative.display())),
            Item::File(bytes) => match instructors(workspace, &relative, &bytes) {
                Mine::Same => None,
                Mine::Differs if is_handout_form(&relative, &bytes, &mut handout_readme) => None,
                Mine::Differs => Some(format!("ignored: {} edited", relative.display())),
                Mine::Missing => Some(format!("ignored: {} added", relative.display())),
            },
        };
        notes.extend(note);
    }
    notes.sort();
    if notes.len() > MAX_NOTES {
        let more = notes.len() - MAX_NOTES;
        notes.truncate(MAX_NOTES);
        notes.push(format!("ignored: {more} more files"));
    }
    taken.notes = notes;
    Ok(taken)
}

/// How a submitted file compares with the instructor's file of the same path.
enum Mine {
    Same,
    Differs,
    Missing,
}

/// Sizes first: an instructor's file is read only when it is a regular file of the very
/// size of the submitted one (at most [`MAX_SOURCE_BYTES`]), never followed through a link.
fn instructors(workspace: &Path, relative: &Path, bytes: &[u8]) -> Mine {
    let mine = workspace.join(relative);
    match std::fs::symlink_metadata(&mine) {
        Ok(meta) if !meta.is_file() => Mine::Differs,
        Ok(meta) if meta.len() != bytes.len() as u64 || meta.len() > MAX_SOURCE_BYTES => Mine::Differs,
        Ok(_) => match std::fs::read(&mine) {
            Ok(original) if original == bytes => Mine::Same,
            _ => Mine::Differs,
        },
        Err(_) => Mine::Missing,
    }
}

/// Whether `bytes` is what `cilab handout` writes at `relative` (its README, the emptied
/// mistake corpus, edition.rs): a student's tree holds those by design.
fn is_handout_form(relative: &Path, bytes: &[u8], readme: &mut Option<String>) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else { return false };
    if relative == Path::new("README.md") {
        return readme.get_or_insert_with(crate::handout::student_readme).as_str() == text;
    }
    crate::handout::fixed_form(relative).is_some_and(|form| form == text)
}

/// Why a lab's sources may not be built: they read files at compile time (`include!`,
/// `include_str!`, `include_bytes!` of anything but a sibling source file taken from the
/// submission; `#[path]` modules), which would put the instructor's files (keys, tokens)
/// into the binary or the compiler's errors, and so into the report. `None`: none of that.
pub fn compile_time_reads(sources: &BTreeMap<PathBuf, String>) -> Option<String> {
    for (file, text) in sources {
        let siblings: Vec<String> = sources
            .keys()
            .filter(|other| other.parent() == file.parent())
            .filter_map(|other| other.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        // Words in comments and string literals are not code: they are blanked first.
        let code = code_only(text);
        for (at, word) in words(&code) {
            let rest = &code[at + word.len()..];
            let refused = match word {
                "include" | "include_str" | "include_bytes" => match literal_argument(&text[at + word.len()..]) {
                    Some(name) if siblings.contains(&name) => None,
                    Some(name) => {
                        Some(format!("`{word}!(\"{name}\")` reads a file that is not one of the lab's sources"))
                    }
                    None => Some(format!("`{word}` other than `{word}!(\"<a source file of the lab>\")`")),
                },
                "path" if is_path_attribute(&code[..at], rest) => Some("a `#[path]` module".to_string()),
                _ => None,
            };
            if let Some(why) = refused {
                let line = text[..at].matches('\n').count() + 1;
                return Some(format!(
                    "{}:{line}: {why}: a lab may not read files when it is compiled, so it is not built",
                    file.display()
                ));
            }
        }
    }
    None
}

/// `text` with its comments and the contents of its string and character literals
/// replaced by spaces (newlines kept; every byte stays where it was, so offsets match).
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for byte in &mut out[from..to.min(bytes.len())] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    };
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start = i == 0 || !ident(bytes[i - 1]);
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < bytes.len() && depth > 0 {
                    if bytes[j] == b'/' && bytes.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if bytes[j] == b'*' && bytes.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            b'r' | b'b' | b'c' if at_word_start && raw_string_start(&bytes[i..]).is_some() => {
                let (prefix, hashes) = raw_string_start(&bytes[i..]).unwrap_or_default();
                let open = i + prefix + hashes + 1;
                let closing: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                let end =
                    bytes[open..].windows(closing.len()).position(|w| w == closing).map_or(bytes.len(), |n| open + n);
                blank(&mut out, open, end);
                i = end + closing.len();
            }
            b'"' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b'"' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i + 1, j);
                i = j + 1;
            }
            b'\'' => {
                // A character literal ('x', '\n', '\u{..}'), or a lifetime or label ('a).
                let end = if bytes.get(i + 1) == Some(&b'\\') {
                    bytes[i + 2..].iter().position(|b| *b == b'\'').map(|n| i + 2 + n)
                } else {
                    let width = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                    (bytes.get(i + 1 + width) == Some(&b'\'')).then_some(i + 1 + width)
                };
                match end {
                    Some(end) => {
                        blank(&mut out, i + 1, end);
                        i = end + 1;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// At a raw string (`r"`, `r#"`, `br"`, `cr#"`): the length of its prefix letters and the
/// number of its hashes.
fn raw_string_start(bytes: &[u8]) -> Option<(usize, usize)> {
    let prefix = match bytes {
        [b'r', ..] => 1,
        [b'b' | b'c', b'r', ..] => 2,
        _ => return None,
    };
    let hashes = bytes[prefix..].iter().take_while(|b| **b == b'#').count();
    (bytes.get(prefix + hashes) == Some(&b'"')).then_some((prefix, hashes))
}

/// The identifiers of `text`, each with where it starts.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (start, ident(c)) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    out.into_iter()
}

/// `!("name")` at the start of `rest` (spaces allowed): the plain name.
fn literal_argument(rest: &str) -> Option<String> {
    let rest = rest.trim_start().strip_prefix('!')?.trim_start().strip_prefix('(')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let (name, after) = rest.split_once('"')?;
    after.trim_start().starts_with(')').then_some(())?;
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    (plain && name != "." && name != "..").then(|| name.to_string())
}

/// `path =` as an attribute: `#[path = ...]`, or inside `cfg_attr(...)`.
fn is_path_attribute(before: &str, rest: &str) -> bool {
    if !rest.trim_start().starts_with('=') {
        return false;
    }
    let before = before.trim_end();
    if before.ends_with('[') {
        return true;
    }
    (before.ends_with(',') || before.ends_with('('))
        && before.rfind("cfg_attr").is_some_and(|at| !before[at..].contains(']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, text: &str) -> BTreeMap<PathBuf, String> {
        BTreeMap::from([(PathBuf::from(name), text.to_string())])
    }

    #[test]
    fn a_lab_may_include_its_own_sources_only() {
        assert_eq!(compile_time_reads(&one("main.rs", "labkit::main(\"x\", include_str!(\"main.rs\"), f)")), None);
        assert_eq!(compile_time_reads(&one("main.rs", "let path = 1; println!(\"{path}\", path = 2);")), None);
        let words = "// the groups include 0\n/* include_str!(\"/etc/shadow\") */ let s = \"include\"; let c = '\"';";
        assert_eq!(compile_time_reads(&one("main.rs", words)), None);
        assert_eq!(compile_time_reads(&one("main.rs", "let s = r#\"a \" include\"#; let l: &'static str = s;")), None);
        for hostile in [
            "const K: &str = include_str!(\"/root/.ssh/id_rsa\");",
            "const K: &[u8] = include_bytes ! ( \"../../../Cargo.toml\" );",
            "include!(concat!(env!(\"HOME\"), \"/.ssh/id_rsa\"));",
            "use std::include_str as read; const K: &str = read!(\"x\");",
            "#[path = \"/root/.ssh/id_rsa\"] mod key;",
            "#[cfg_attr(all(), path = \"/etc/shadow\")] mod key;",
            "const K: &str = include_str!(\"other.rs\");",
            "let s = \"/*\"; const K: &str = include_str!(\"/root/x\"); // */",
            "let c = '\"'; const K: &str = include_str!(\"/root/x\"); // \"",
            "macro_rules! m { ($m:ident) => { $m!(\"/root/x\") }; } const K: &str = m!(include_str);",
        ] {
            let why = compile_time_reads(&one("main.rs", hostile));
            assert!(why.as_deref().is_some_and(|w| w.contains("not built")), "{hostile}: {why:?}");
        }
    }

    #[test]
    fn every_solution_of_the_catalog_is_built() {
        for lab in crate::catalog::all() {
            assert_eq!(compile_time_reads(&one("main.rs", lab.source)), None, "{}", lab.name);
        }
    }

    #[test]
    fn a_tarball_with_an_entry_outside_its_tree_is_refused() {
        let dir = std::env::temp_dir().join(format!("cilab-submission-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("mallory.tar");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o644);
        // `append_data` refuses `..`: the raw name is written into the header instead.
        header.as_gnu_mut().expect("gnu").name[..13].copy_from_slice(b"../escape.txt");
        header.set_cksum();
        builder.append(&header, &b"hi"[..]).expect("append");
        std::fs::write(&path, builder.into_inner().expect("tar")).expect("write");
        let submission = Submission { name: "mallory".into(), path: path.clone() };
        let refused = submission.take(&[], Path::new("/nonexistent")).expect_err("refused");
        assert!(refused.contains("outside its tree"), "{refused}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cilab-submission-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_handout_tree_gets_no_notes() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
        let dir = scratch("handout");
        let tree = dir.join("alice");
        crate::handout::write(workspace, &tree).expect("a handout");
        let labs: Vec<&'static LabSpec> = crate::catalog::all().iter().collect();
        let submission = Submission { name: "alice".into(), path: tree.clone() };
        let taken = submission.take(&labs, workspace).expect("taken");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(taken.notes, Vec::<String>::new());
        assert_eq!(taken.sources.len(), labs.len());
    }

    #[test]
    fn dot_files_target_and_git_are_left_out_at_any_depth() {
        let lab = &crate::catalog::all()[0];
        let src = Path::new("alice/labs").join(lab.name).join("src");
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in [
            (src.join("main.rs"), &b"fn main() {}"[..]),
            (src.join("._main.rs"), &[0xff, 0xfe][..]),
            (Path::new("alice/labs").join(lab.name).join("target/debug/x.rs"), &b"x"[..]),
            (PathBuf::from("alice/target/debug/cilab"), &b"x"[..]),
            (PathBuf::from("alice/harness/.git/HEAD"), &b"x"[..]),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, &path, bytes).expect("append");
        }
        let dir = scratch("dotfiles");
        let path = dir.join("alice.tar");
        std::fs::write(&path, builder.into_inner().expect("tar")).expect("write");
        let taken = Submission { name: "alice".into(), path }.take(&[lab], Path::new("/nonexistent")).expect("taken");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(taken.sources[lab.name].keys().collect::<Vec<_>>(), [Path::new("main.rs")]);
        assert_eq!(taken.notes.len(), 1, "{:?}", taken.notes);
        assert!(taken.notes[0].contains("._main.rs (a dot-file"), "{:?}", taken.notes);
    }

    #[test]
    fn every_entry_not_taken_is_listed_as_skipped() {
        let dir = scratch("discover");
        std::fs::create_dir(dir.join("alice")).expect("dir");
        std::fs::write(dir.join("bob.tar.gz"), b"").expect("file");
        for skipped in ["carol.zip", "dave.tar.xz", ".hidden"] {
            std::fs::write(dir.join(skipped), b"").expect("file");
        }
        std::os::unix::fs::symlink(dir.join("alice"), dir.join("erin")).expect("symlink");
        let (found, skipped) = discover(&dir).expect("discovered");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(found.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
        let entries: Vec<&str> = skipped.iter().map(|s| s.entry.as_str()).collect();
        assert_eq!(entries, [".hidden", "carol.zip", "dave.tar.xz", "erin"]);
        assert!(skipped.iter().all(|s| !s.why.is_empty()));
    }

    #[test]
    fn printable_drops_terminal_escapes() {
        assert_eq!(printable("a\x1b[2Jb\rc\nd\u{7}"), "a[2Jbc d");
    }
}
