//! `cargo bench -p cilab --bench rootfs_import` (as root): the rootfs-import lab's importer
//! against GNU tar, on a busybox rootfs and a tree of 20,000 files in a tmpfs. It builds
//! the lab in release mode first. A benchmark, not a test: it prints, it never fails on a time.

use std::path::Path;

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then there is nothing
    // to test here, and no reason to build in release mode.
    if !std::env::args().any(|a| a == "--bench") {
        println!("rootfs_import: a benchmark; run it with `cargo bench -p cilab --bench rootfs_import`");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args(["build", "--quiet", "--offline", "--release", "-p", "lab-rootfs-import"])
        .current_dir(&root)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("rootfs_import bench: building lab-rootfs-import (release) failed");
        std::process::exit(1);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    let lab = target.join("release/lab-rootfs-import");
    match cilab::bench::rootfs_import(&lab, Path::new("/dev/shm")) {
        Ok(measurements) => {
            println!("importer (every check on) vs GNU tar -xpf, into a tmpfs, median of {} runs:", cilab::bench::RUNS);
            for m in &measurements {
                println!(
                    "  {:<16} {:>6} entries  importer {:>8.1} ms  GNU tar {:>8.1} ms  ratio {:.2}",
                    m.archive,
                    m.entries,
                    m.importer.as_secs_f64() * 1000.0,
                    m.gnu_tar.as_secs_f64() * 1000.0,
                    m.ratio()
                );
            }
        }
        Err(error) => {
            eprintln!("rootfs_import bench: {error}");
            std::process::exit(1);
        }
    }
}
