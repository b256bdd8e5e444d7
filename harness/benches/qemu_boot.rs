//! `cargo bench -p cilab --bench qemu_boot` (as root): how long the qemu backend's guest
//! takes, in each cgroup layout: from starting qemu to the first answer of a command that
//! does nothing (the boot itself), and to the report of `cilab check --all` (the number the
//! issue sets a goal for). Debug binaries, as `cargo run` uses them; the image cache is
//! warmed first. A benchmark, not a test: it prints, it never fails on a time.
//!
//! `--machine microvm` measures qemu's microvm machine instead of pc.

use std::path::Path;
use std::time::{Duration, Instant};

use cilab::backend::qemu::{self, CgroupLayout, Machine, Qemu};
use cilab::backend::{check_in_guest, Guest, GuestCheck, Payload};
use cilab::catalog;

/// Boots per layout for the boot figure (the median is kept).
const BOOTS: usize = 3;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("qemu_boot: a benchmark; run it with `cargo bench -p cilab --bench qemu_boot`");
        return;
    }
    let machine = if std::env::args().any(|a| a == "microvm") { Machine::Microvm } else { Machine::Pc };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    let binaries = target.join("debug");
    let labs: Vec<_> = catalog::all().iter().collect();
    let payload = match Payload::for_labs(&labs, &binaries) {
        Ok(payload) => payload,
        Err(e) => {
            eprintln!("qemu_boot bench: {e} (cargo build --workspace first)");
            std::process::exit(1);
        }
    };
    let options = |cgroup| qemu::Options { cgroup, machine, ..qemu::Options::default() };
    let started = Instant::now();
    let warmed = Qemu::new(options(CgroupLayout::V2)).and_then(|q| q.initramfs(&payload));
    match warmed {
        Ok(image) => println!(
            "initramfs: {} MiB, built or found in {:.2?}",
            std::fs::metadata(&image).map(|m| m.len() >> 20).unwrap_or(0),
            started.elapsed()
        ),
        Err(e) => {
            eprintln!("qemu_boot bench: {e}");
            std::process::exit(1);
        }
    }
    for layout in [CgroupLayout::V2, CgroupLayout::V1, CgroupLayout::Hybrid] {
        let mut boots: Vec<Duration> = Vec::new();
        let mut accel = String::new();
        for _ in 0..BOOTS {
            let mut guest = match Qemu::new(options(layout)) {
                Ok(guest) => guest,
                Err(e) => return eprintln!("qemu_boot bench: {e}"),
            };
            let answered =
                guest.start(&payload).and_then(|()| guest.run_as_root(&["true".to_string()], Duration::from_secs(60)));
            let info = guest.describe();
            let _ = guest.stop();
            match (answered, guest.boot_to_report()) {
                (Ok(_), Some(took)) => boots.push(took),
                (Err(e), _) => return eprintln!("qemu_boot bench: {e}"),
                (Ok(_), None) => {}
            }
            accel = info.accelerator.unwrap_or_default();
        }
        boots.sort();
        let median = boots.get(boots.len() / 2).copied().unwrap_or_default();
        let mut guest = match Qemu::new(options(layout)) {
            Ok(guest) => guest,
            Err(e) => return eprintln!("qemu_boot bench: {e}"),
        };
        let check =
            GuestCheck { labs: labs.clone(), repeat: 1, fault: None, build: false, hold_timeout: None, sealed: false };
        let reports = check_in_guest(&mut guest, &payload, &check);
        let to_report = reports.first().and_then(|r| r.guest.as_ref()).and_then(|g| g.boot_to_report_ms);
        let failed = reports.iter().any(|r| r.harness_failure.is_some());
        println!(
            "{:<7} {machine:?} {accel}: boot to first answer {median:.2?} (median of {BOOTS}); \
             boot to the report of check --all {}{}",
            layout.name(),
            to_report.map_or("-".to_string(), |ms| format!("{:.2} s", ms as f64 / 1000.0)),
            if failed { " (the backend failed)" } else { "" }
        );
    }
}
