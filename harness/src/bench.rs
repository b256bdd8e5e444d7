//! Benchmarks (not tests: timings vary from machine to machine). `rootfs_import` measures
//! the rootfs-import lab's importer, every check on, against GNU tar on the same archives
//! in a tmpfs: `cargo bench -p cilab --bench rootfs_import` prints it; a `cilab bench`
//! can call it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// One archive, imported by both.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measurement {
    pub archive: String,
    pub entries: usize,
    /// The median of the runs, each into a fresh directory.
    pub importer: Duration,
    pub gnu_tar: Duration,
}

impl Measurement {
    /// The importer's time over GNU tar's.
    pub fn ratio(&self) -> f64 {
        self.importer.as_secs_f64() / self.gnu_tar.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// How many times each import runs (the median is kept).
pub const RUNS: usize = 7;

/// Imports a busybox rootfs and a tree of 20,000 files with `lab_binary --import` and with
/// `tar -xpf`, each RUNS times into a fresh directory under `tmpfs_dir` (a tmpfs: /dev/shm),
/// which it leaves as it found it.
pub fn rootfs_import(lab_binary: &Path, tmpfs_dir: &Path) -> Result<Vec<Measurement>> {
    let busybox = labkit::rootfs::find_static_busybox().map_err(|e| Error::Harness(e.to_string()))?;
    let work = tmpfs_dir.join(format!("cilab-bench-{}", std::process::id()));
    std::fs::create_dir(&work).map_err(Error::io("create directory", &work))?;
    let measured = (|| {
        let busybox_tar = labkit::archives::busybox_rootfs_tar(&busybox).map_err(|e| Error::Harness(e.to_string()))?;
        let archives = [("busybox rootfs", busybox_tar), ("20,000 files", labkit::archives::many_files_tar(20_000))];
        let mut out = Vec::new();
        for (name, bytes) in archives {
            let entries = tar::Archive::new(bytes.as_slice()).entries().map(|e| e.count()).unwrap_or_default();
            let archive = work.join("archive.tar");
            std::fs::write(&archive, &bytes).map_err(Error::io("write", &archive))?;
            let importer = median(&work, |into| {
                let mut command = std::process::Command::new(lab_binary);
                command.arg("--import").arg(&archive).arg("--into").arg(into);
                command
            })?;
            let gnu_tar = median(&work, |into| {
                let mut command = std::process::Command::new("tar");
                command.arg("-xpf").arg(&archive).arg("-C").arg(into);
                command
            })?;
            out.push(Measurement { archive: name.to_string(), entries, importer, gnu_tar });
        }
        Ok(out)
    })();
    let _ = std::fs::remove_dir_all(&work);
    measured
}

/// The median time of RUNS runs of the command `make` gives for a fresh directory.
fn median(work: &Path, make: impl Fn(&Path) -> std::process::Command) -> Result<Duration> {
    let mut times = Vec::new();
    for run in 0..RUNS {
        let into: PathBuf = work.join(format!("into-{run}"));
        std::fs::create_dir(&into).map_err(Error::io("create directory", &into))?;
        let mut command = make(&into);
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        let started = Instant::now();
        let output = command.output().map_err(Error::io("run", format!("{command:?}")))?;
        times.push(started.elapsed());
        if !output.status.success() {
            return Err(Error::Harness(format!(
                "{command:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        std::fs::remove_dir_all(&into).map_err(Error::io("remove", &into))?;
    }
    times.sort();
    Ok(times[RUNS / 2])
}
