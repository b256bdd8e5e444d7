//! Finding the lab binaries, and building them first when cilab runs from its source tree.

use std::path::{Path, PathBuf};

use crate::catalog::LabSpec;
use crate::error::{Error, Result};

/// Names another source tree (a copy of the one cilab was built from) for cilab to build,
/// check, hint and reset instead: for cilab's tests, which never edit the real tree.
pub const SOURCE_TREE_ENV: &str = "CILAB_SOURCE_TREE";

/// The source tree cilab works on, if it is there: the one `CILAB_SOURCE_TREE` names,
/// else the workspace cilab was built from.
pub fn workspace_root() -> Option<PathBuf> {
    let root = match other_tree() {
        Some(tree) => tree,
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.to_path_buf(),
    };
    root.join("Cargo.toml").is_file().then_some(root)
}

fn other_tree() -> Option<PathBuf> {
    std::env::var_os(SOURCE_TREE_ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Lab binaries sit next to the cilab binary (target/<profile>/), or in the target dir of
/// the tree `CILAB_SOURCE_TREE` names (`CARGO_TARGET_DIR` when set, as cargo does).
pub fn binaries_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(Error::io("find", "the cilab binary"))?;
    let own = exe
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::Build(format!("{} has no directory", exe.display())))?;
    match other_tree() {
        Some(tree) => {
            let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| tree.join("target"));
            let profile = own.file_name().filter(|n| *n == "release").map_or("debug".into(), |n| n.to_owned());
            Ok(target.join(profile))
        }
        None => Ok(own),
    }
}

/// Builds the given labs with cargo (a no-op when they are up to date) unless `skip`,
/// and returns where their binaries are. Without cargo or the source tree, the binaries
/// must already be there.
pub fn ensure_built(labs: &[&LabSpec], skip: bool) -> Result<PathBuf> {
    let dir = binaries_dir()?;
    if let (false, Some(root), Some(_)) = (skip, workspace_root(), cargo_program()) {
        let packages: Vec<&str> = labs.iter().map(|l| l.package).collect();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let _progress = crate::progress::Progress::spinner(format!("building {}", packages.join(", ")));
        build(&root, &packages, release)?;
    }
    let missing: Vec<String> =
        labs.iter().map(|l| dir.join(l.binary)).filter(|p| !p.exists()).map(|p| p.display().to_string()).collect();
    if !missing.is_empty() {
        return Err(Error::Build(format!(
            "missing {}: run `cargo build --workspace` in the cilab source tree",
            missing.join(", ")
        )));
    }
    Ok(dir)
}

fn cargo_program() -> Option<PathBuf> {
    std::env::var_os("CARGO").map(PathBuf::from).or_else(|| which::which("cargo").ok())
}

/// `cargo build -p <package>...` (debug) in the workspace at `root`, offline: the crates
/// are already there once the workspace itself was built.
pub fn cargo_build(root: &Path, packages: &[&str]) -> Result<()> {
    build(root, packages, false)
}

/// `cargo build --workspace` (debug, offline) of the workspace at `root` into `target_dir`:
/// a tree of its own (a handout) never overwrites this tree's binaries.
pub fn cargo_build_workspace(root: &Path, target_dir: &Path) -> Result<()> {
    run_cargo(root, &["build", "--quiet", "--offline", "--workspace"], Some(target_dir))
}

fn build(root: &Path, packages: &[&str], release: bool) -> Result<()> {
    let mut args = vec!["build".to_string(), "--quiet".to_string(), "--offline".to_string()];
    if release {
        args.push("--release".into());
    }
    for package in packages {
        args.push("-p".into());
        args.push(package.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_cargo(root, &args, None)
}

fn run_cargo(root: &Path, args: &[&str], target_dir: Option<&Path>) -> Result<()> {
    let cargo = cargo_program().ok_or_else(|| Error::Build("cargo is not on PATH".into()))?;
    let mut command = duct::cmd(&cargo, args).dir(root);
    if let Some(dir) = target_dir {
        command = command.env("CARGO_TARGET_DIR", dir);
    }
    let output = command
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .map_err(|e| Error::Build(format!("running {} {}: {e}", cargo.display(), args.join(" "))))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).take(40).collect();
        return Err(Error::Build(format!(
            "`cargo {}` in {} failed:\n{}",
            args.join(" "),
            root.display(),
            errors.join("\n")
        )));
    }
    Ok(())
}

/// Mirrors a tree's sources (not target/, .git or `exclude`; regular files only) into `to`,
/// writing only what changed, so that cargo there rebuilds only what differs: the corpus's
/// and grading's copies of the workspace.
pub fn mirror_sources(from: &Path, to: &Path, exclude: &[PathBuf]) -> Result<()> {
    std::fs::create_dir_all(to).map_err(Error::io("create directory", to))?;
    for entry in std::fs::read_dir(from).map_err(Error::io("list", from))? {
        let entry = entry.map_err(Error::io("list", from))?;
        let name = entry.file_name();
        let source = entry.path();
        if name == "target" || name == ".git" || exclude.contains(&source) {
            continue;
        }
        let target = to.join(&name);
        let kind = entry.file_type().map_err(Error::io("stat", &source))?;
        if kind.is_dir() {
            mirror_sources(&source, &target, exclude)?;
        } else if kind.is_file() {
            let bytes = std::fs::read(&source).map_err(Error::io("read", &source))?;
            if std::fs::read(&target).ok().as_deref() != Some(bytes.as_slice()) {
                std::fs::write(&target, bytes).map_err(Error::io("write", &target))?;
            }
        }
    }
    Ok(())
}
