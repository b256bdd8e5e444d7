//! The student handout: a fresh tree (no history) of the workspace, with every STUDENT
//! region's body replaced by `todo!("<hint>")`, and nothing of the solution in it.
//!
//! What is left out is decided by file, never by editing text out of a file: the mistake
//! corpus (`harness/src/mistakes/<lab>.rs`, whose edits quote the solution) is written as
//! an empty list and `mistakes/edition.rs` says `HANDOUT = true`; a file whose first line
//! starts with [`AUTHORS_ONLY`] (an integration test that reads the corpus, say) is not
//! written at all; only the [`INCLUDED`] top-level entries are copied.

use std::path::{Path, PathBuf};

use crate::catalog;
use crate::error::{Error, Result};

/// The first line of a file that only course authors get (the handout leaves it out).
pub const AUTHORS_ONLY: &str = "//! Course authors only";

/// The top-level entries of the workspace a handout copies: the workspace, the labs and
/// their sheets, the harness (the grader), the fixtures and the VM setup. Not .git (the
/// answers are in its history), not the author's README (one for students is written),
/// not CI, not target/.
pub const INCLUDED: [&str; 9] =
    ["Cargo.toml", "Cargo.lock", "rustfmt.toml", ".gitignore", "Vagrantfile", "vagrant", "fixtures", "labs", "harness"];

/// Where the corpus lives, relative to the workspace: each lab's file there is written empty.
pub const CORPUS_DIR: &str = "harness/src/mistakes";
/// The file in `CORPUS_DIR` that says which tree this is.
const EDITION: &str = "edition.rs";

/// What a handout holds.
#[derive(Debug, Default)]
pub struct Summary {
    /// Files written, the README included.
    pub files: usize,
    /// STUDENT regions replaced by `todo!()`, as (lab source, region).
    pub regions: Vec<(PathBuf, String)>,
    /// Files of the workspace left out or emptied, relative to it.
    pub left_out: Vec<PathBuf>,
}

/// Writes the handout of `workspace` into `out`, which must be empty or not exist yet.
pub fn write(workspace: &Path, out: &Path) -> Result<Summary> {
    let workspace = workspace.canonicalize().map_err(Error::io("resolve", workspace))?;
    let out_resolved = resolve(out)?;
    if out_resolved.starts_with(&workspace) && !out_resolved.starts_with(workspace.join("target")) {
        return Err(Error::Handout(format!(
            "{} is inside the tree it would copy ({}): choose a directory outside it",
            out.display(),
            workspace.display()
        )));
    }
    refuse_unless_empty(out)?;
    let mut summary = Summary::default();
    for name in INCLUDED {
        let from = workspace.join(name);
        if from.symlink_metadata().is_err() {
            return Err(Error::Handout(format!("{} is missing: is this a cilab source tree?", from.display())));
        }
        copy(&workspace, Path::new(name), out, &mut summary)?;
    }
    let readme = out.join("README.md");
    std::fs::write(&readme, student_readme()).map_err(Error::io("write", &readme))?;
    summary.files += 1;
    Ok(summary)
}

/// `path` made absolute with its symlinks resolved, whether or not it exists yet.
fn resolve(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).map_err(Error::io("resolve", path))?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut resolved = existing.canonicalize().map_err(Error::io("resolve", existing))?;
    resolved.extend(rest.iter().rev());
    Ok(resolved)
}

fn refuse_unless_empty(out: &Path) -> Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::Handout(format!(
                    "{} is not empty: a handout is written into an empty or new directory, never over files",
                    out.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(Error::io("create directory", out))
        }
        Err(e) => Err(Error::io("list", out)(e)),
    }
}

/// Copies `relative` (a file, a directory or a symlink of the workspace) into `out`,
/// turning what holds the solution into its handout form.
fn copy(workspace: &Path, relative: &Path, out: &Path, summary: &mut Summary) -> Result<()> {
    let (from, to) = (workspace.join(relative), out.join(relative));
    let meta = from.symlink_metadata().map_err(Error::io("stat", &from))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&from).map_err(Error::io("read link", &from))?;
        return std::os::unix::fs::symlink(&target, &to).map_err(Error::io("make symlink", &to));
    }
    if meta.is_dir() {
        std::fs::create_dir_all(&to).map_err(Error::io("create directory", &to))?;
        let mut names: Vec<_> =
            std::fs::read_dir(&from).map_err(Error::io("list", &from))?.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            copy(workspace, &relative.join(name), out, summary)?;
        }
        return Ok(());
    }
    let bytes = std::fs::read(&from).map_err(Error::io("read", &from))?;
    let text = std::str::from_utf8(&bytes).ok();
    if text.is_some_and(|t| t.starts_with(AUTHORS_ONLY)) {
        summary.left_out.push(relative.to_path_buf());
        return Ok(());
    }
    let contents = match (text, handout_form(relative, text, summary)?) {
        (_, Some(changed)) => changed.into_bytes(),
        _ => bytes,
    };
    std::fs::write(&to, contents).map_err(Error::io("write", &to))?;
    std::fs::set_permissions(&to, meta.permissions()).map_err(Error::io("chmod", &to))?;
    summary.files += 1;
    Ok(())
}

/// The handout's text of a file of the mistake corpus (`CORPUS_DIR`), whatever the author's
/// is: the emptied corpus, or edition.rs. `None` for any other file.
pub fn fixed_form(relative: &Path) -> Option<&'static str> {
    if relative.parent() != Some(Path::new(CORPUS_DIR)) || relative.extension().is_none_or(|e| e != "rs") {
        return None;
    }
    match relative.file_name()?.to_str()? {
        EDITION => Some(EDITION_IN_A_HANDOUT),
        "mod.rs" => None,
        _ => Some(EMPTY_CORPUS),
    }
}

/// The handout's version of a file, when it differs from the author's.
fn handout_form(relative: &Path, text: Option<&str>, summary: &mut Summary) -> Result<Option<String>> {
    let Some(text) = text else { return Ok(None) };
    if relative.parent() == Some(Path::new(CORPUS_DIR)) && relative.extension().is_some_and(|e| e == "rs") {
        let file = relative.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if file == EDITION {
            return Ok(Some(EDITION_IN_A_HANDOUT.to_string()));
        }
        if file != "mod.rs" {
            summary.left_out.push(relative.to_path_buf());
            return Ok(Some(EMPTY_CORPUS.to_string()));
        }
        return Ok(None);
    }
    let is_lab_source =
        catalog::all().iter().any(|lab| relative == Path::new("labs").join(lab.name).join("src/main.rs"));
    if is_lab_source {
        let regions = labkit::regions::parse(text).map_err(|e| Error::parse(relative.display().to_string(), e))?;
        let mut starter = text.to_string();
        for region in &regions {
            starter = labkit::regions::replace_body(&starter, &region.name, &labkit::regions::todo_body(region))
                .map_err(|e| Error::parse(relative.display().to_string(), e))?;
            summary.regions.push((relative.to_path_buf(), region.name.clone()));
        }
        return Ok(Some(starter));
    }
    Ok(None)
}

const EDITION_IN_A_HANDOUT: &str = "//! Which tree this harness was built from: written by `cilab handout`.

/// A student handout: the mistake corpus is in the course author's tree, not here.
pub const HANDOUT: bool = true;
";

const EMPTY_CORPUS: &str = "//! This lab's mistake corpus quotes the solution: in a student handout it is empty, and
//! it is in the course author's tree.

use crate::corpus::Mistake;

pub const MISTAKES: &[Mistake] = &[];
";

/// The handout's README: what the course is, and how to work through it.
pub fn student_readme() -> String {
    let mut labs = String::new();
    for lab in catalog::all() {
        let regions: Vec<String> =
            lab.regions().unwrap_or_default().into_iter().map(|r| format!("`{}`", r.name)).collect();
        labs.push_str(&format!(
            "| {} | `{}` | {} | [sheet](labs/{}/README.md) | {} |\n",
            lab.order,
            lab.name,
            lab.summary,
            lab.name,
            regions.join(", ")
        ));
    }
    format!(
        "# cilab: containers from kernel primitives, one lab at a time

Each lab is a small Rust program that builds one piece of a container out of kernel
primitives (a chroot jail, a PID namespace, a cgroup, ...) and narrates every step. Parts
of each lab are yours to write: the STUDENT regions of `labs/<lab>/src/main.rs`, each
marked `// STUDENT: begin <name>` with a hint, and for now `todo!(\"<the hint>\")`. The
`cilab` grader runs your lab and checks **from outside** what the kernel really did (it
reads /proc, namespaces, mounts and cgroups); what your lab prints decides nothing.

Work as root in a VM you may break (`vagrant up` makes one from the Vagrantfile). You
need Rust and `apt-get install -y busybox-static util-linux libc-bin`.

| # | lab | what you build | sheet | your regions |
|---|---|---|---|---|
{labs}
Start with lab 1's sheet. For each lab:

```sh
cargo build --workspace                   # the labs and the grader
target/debug/lab-chroot-jail              # run your lab by hand (as root)
cargo run -p cilab -- run chroot-jail --step   # or narrated, Enter before each step
cargo run -p cilab -- check chroot-jail   # graded: a table of verdicts, each failure with a hint
cargo run -p cilab -- hint chroot-jail    # the hint of the first verdict that fails
cargo run -p cilab -- list                # every lab, your last and best result
```

`cilab check --all` grades the whole course; `cilab doctor` says whether this machine is
ready. A lab's own tests: `cargo test --test lab_chroot_jail` (they fail until your lab
passes). Until you write a region, the lab stops there with its hint.
"
    )
}
