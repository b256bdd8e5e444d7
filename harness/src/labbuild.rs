//! Finding the lab binaries, and building them first when cilab runs from its source tree.

use std::path::{Path, PathBuf};

use crate::catalog::LabSpec;
use crate::error::{Error, Result};

/// The workspace cilab was built from, if it is still there.
pub fn workspace_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.to_path_buf();
    root.join("Cargo.toml").is_file().then_some(root)
}

/// Lab binaries sit next to the cilab binary (target/<profile>/).
pub fn binaries_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(Error::io("find", "the cilab binary"))?;
    exe.parent().map(Path::to_path_buf).ok_or_else(|| Error::Build(format!("{} has no directory", exe.display())))
}

/// Builds the given labs with cargo (a no-op when they are up to date) unless `skip`,
/// and returns where their binaries are. Without cargo or the source tree, the binaries
/// must already be there.
pub fn ensure_built(labs: &[&LabSpec], skip: bool) -> Result<PathBuf> {
    let dir = binaries_dir()?;
    let cargo = std::env::var_os("CARGO").map(PathBuf::from).or_else(|| which::which("cargo").ok());
    if let (false, Some(root), Some(cargo)) = (skip, workspace_root(), cargo) {
        let mut args = vec!["build".to_string(), "--quiet".to_string()];
        if dir.file_name().is_some_and(|n| n == "release") {
            args.push("--release".into());
        }
        for lab in labs {
            args.push("-p".into());
            args.push(lab.package.into());
        }
        let output = duct::cmd(&cargo, &args)
            .dir(&root)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .map_err(|e| Error::Build(format!("running {} {}: {e}", cargo.display(), args.join(" "))))?;
        if !output.status.success() {
            return Err(Error::Build(format!(
                "`cargo {}` in {} failed:\n{}",
                args.join(" "),
                root.display(),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
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
