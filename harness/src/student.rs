//! A student stepping through the labs: progress and what is next (`cilab list`), the
//! history of attempts, hints from the last check (`cilab hint`), putting a lab's STUDENT
//! regions back to the starter (`cilab reset`), and what `cilab watch` needs: waiting for a
//! save and telling what changed between two checks.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::catalog::LabSpec;
use crate::error::{Error, Result};
use crate::registry::{Attempt, FailingVerdict, Results};
use crate::report::LabReport;
use crate::verdict::Outcome;

/// The verdicts a check failed, each with a hint: its own, or (where the report kept only
/// the first hint of a region, or none for a failure that follows from another) the
/// catalog's, with its region's hint. Those the report hints come first, in report order:
/// after a panic, the region it happened in is the first hint.
pub fn failing_verdicts(lab: &LabSpec, report: &LabReport) -> Vec<FailingVerdict> {
    let specs = lab.all_verdicts();
    let region_hints = lab.region_hints();
    let (hinted, others): (Vec<_>, Vec<_>) =
        report.verdicts.iter().filter(|v| v.outcome == Outcome::Fail).partition(|v| v.hint.is_some());
    hinted
        .into_iter()
        .chain(others)
        .map(|v| {
            let hint = v.hint.clone().unwrap_or_else(|| {
                let spec = specs.iter().find(|s| s.id == v.id);
                let own = spec.map(|s| s.hint.to_string()).unwrap_or_default();
                match v.region.as_ref().and_then(|r| region_hints.get(r).map(|h| (r, h))) {
                    Some((region, region_hint)) => format!(
                        "{own} (your code: STUDENT region `{region}` in labs/{}/src/main.rs: {region_hint})",
                        lab.name
                    ),
                    None => own,
                }
            });
            FailingVerdict {
                id: v.id.clone(),
                claim: v.claim.clone(),
                region: v.region.clone(),
                seen: v.detail.clone(),
                hint,
            }
        })
        .collect()
}

/// A lab is done once its best attempt passed with every point.
pub fn done(lab: &LabSpec, results: &Results) -> bool {
    results.best(lab.name).is_some_and(|best| best.result == "passed" && best.points >= lab.max_points())
}

/// The first lab in course order not yet passed with full points, and the command to run.
pub fn next_lab<'a>(labs: &'a [LabSpec], results: &Results) -> Option<(&'a LabSpec, String)> {
    let mut ordered: Vec<&LabSpec> = labs.iter().collect();
    ordered.sort_by_key(|l| l.order);
    let lab = ordered.into_iter().find(|lab| !done(lab, results))?;
    let command = match results.last(lab.name) {
        None => format!("cilab run {0} --step, then cilab check {0}", lab.name),
        Some(last) if last.result == "failed" => format!("cilab hint {0}, then cilab check {0}", lab.name),
        Some(_) => format!("cilab check {}", lab.name),
    };
    Some((lab, command))
}

/// "2026-11-25 14:03:07 UTC" for seconds since the epoch.
pub fn format_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// One attempt as `cilab list` shows it: "failed 10/16".
pub fn show_attempt(attempt: &Attempt) -> String {
    format!("{} {}/{}", attempt.result, attempt.points, attempt.max_points)
}

/// The attempts kept for each of `labs` (newest last), as `cilab list --history` shows them.
pub fn history_text(labs: &[&LabSpec], results: &Results) -> String {
    let mut out = String::new();
    for lab in labs {
        let attempts = results.labs.get(lab.name).map(|h| h.attempts.as_slice()).unwrap_or_default();
        out.push_str(&format!("{} {} ({} points)\n", lab.order, lab.name, lab.max_points()));
        if attempts.is_empty() {
            out.push_str("    not checked yet\n");
        }
        for attempt in attempts {
            out.push_str(&format!("    {}  {}\n", format_time(attempt.when), show_attempt(attempt)));
        }
        if let Some(best) = results.best(lab.name) {
            if !attempts.is_empty() {
                out.push_str(&format!("    best: {} ({})\n", show_attempt(best), format_time(best.when)));
            }
        }
    }
    out
}

/// The lab's source in a tree.
pub fn source_path(root: &Path, lab: &LabSpec) -> PathBuf {
    root.join("labs").join(lab.name).join("src").join("main.rs")
}

/// The STUDENT regions of the lab's source in `root` (the compiled-in source when the
/// file cannot be read: cilab without its tree).
pub fn regions_in(root: Option<&Path>, lab: &LabSpec) -> Result<Vec<labkit::regions::Region>> {
    let text = root.and_then(|root| std::fs::read_to_string(source_path(root, lab)).ok());
    match text {
        Some(text) => {
            labkit::regions::parse(&text).map_err(|e| Error::parse(format!("labs/{}/src/main.rs", lab.name), e))
        }
        None => lab.regions(),
    }
}

/// What `cilab reset` would do to a lab's source.
#[derive(Debug, Clone)]
pub struct ResetPlan {
    pub source: PathBuf,
    pub original: String,
    pub reset: String,
    /// The regions whose body changes: (name, body before, starter body).
    pub changed: Vec<(String, String, String)>,
}

/// Plans putting the STUDENT regions of `lab` in the tree at `root` (or only `region`)
/// back to the starter, `todo!("<hint>")`; code outside the regions stays as it is.
pub fn plan_reset(root: &Path, lab: &LabSpec, region: Option<&str>) -> Result<ResetPlan> {
    let source = source_path(root, lab);
    let original = std::fs::read_to_string(&source).map_err(Error::io("read", &source))?;
    let what = format!("labs/{}/src/main.rs", lab.name);
    let regions = labkit::regions::parse(&original).map_err(|e| Error::parse(what.clone(), e))?;
    if let Some(name) = region {
        if !regions.iter().any(|r| r.name == name) {
            let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
            return Err(Error::Lab {
                lab: lab.name.to_string(),
                message: format!("no STUDENT region `{name}` in {what}; its regions: {}", names.join(", ")),
            });
        }
    }
    let mut reset = original.clone();
    let mut changed = Vec::new();
    for r in regions.iter().filter(|r| region.is_none_or(|name| r.name == name)) {
        let starter = labkit::regions::todo_body(r);
        if r.body.trim() == starter {
            continue;
        }
        reset = labkit::regions::replace_body(&reset, &r.name, &starter).map_err(|e| Error::parse(what.clone(), e))?;
        changed.push((r.name.clone(), r.body.clone(), starter));
    }
    Ok(ResetPlan { source, original, reset, changed })
}

/// Where `cilab reset` keeps the student's files: in the tree, out of cargo's target dir
/// (which `cargo clean` empties) and out of the lab's src (which `cilab watch` watches).
pub fn backups_dir(root: &Path, lab: &LabSpec) -> PathBuf {
    root.join(".cilab-backups").join(lab.name)
}

/// Saves the student's file in `backups_dir`, then writes the reset source over it (a
/// temporary file renamed, so an editor or `cilab watch` never sees half of it). Returns
/// the backup's path.
pub fn apply_reset(root: &Path, lab: &LabSpec, plan: &ResetPlan, now: u64) -> Result<PathBuf> {
    let dir = backups_dir(root, lab);
    std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
    let stamp = format_time(now).replace([' ', ':'], "-").trim_end_matches("-UTC").to_string();
    let mut backup = dir.join(format!("main.rs.{stamp}"));
    let mut n = 1;
    while backup.exists() {
        backup = dir.join(format!("main.rs.{stamp}.{n}"));
        n += 1;
    }
    // `sudo cilab reset` must leave the student's files the student's: the backup and the
    // new file get the owner and mode of the file they replace.
    let meta = std::fs::metadata(&plan.source).map_err(Error::io("read the metadata of", &plan.source))?;
    std::fs::write(&backup, &plan.original).map_err(Error::io("write the backup", &backup))?;
    give_the_owner_of(&meta, &backup)?;
    give_the_owner_of(&meta, &dir)?;
    if let Some(backups) = dir.parent() {
        give_the_owner_of(&meta, backups)?;
    }
    let temporary = plan.source.with_extension("rs.cilab-reset");
    std::fs::write(&temporary, &plan.reset).map_err(Error::io("write", &temporary))?;
    if let Err(error) = give_the_owner_of(&meta, &temporary) {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    if let Err(error) = std::fs::rename(&temporary, &plan.source) {
        let _ = std::fs::remove_file(&temporary);
        return Err(Error::io("rename into", &plan.source)(error));
    }
    Ok(backup)
}

/// Gives `path` the owner and group of `meta` and, for a file, its permission bits.
fn give_the_owner_of(meta: &std::fs::Metadata, path: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid())).map_err(Error::io("chown", path))?;
    if path.is_file() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(Error::io("chmod", path))?;
    }
    Ok(())
}

/// What changed between two checks of a lab, for `cilab watch`.
pub fn changes(before: Option<&LabReport>, after: &LabReport) -> String {
    let Some(before) = before else {
        let (points, max) = after.points();
        return format!("First check in this watch: {points}/{max} points.\n");
    };
    let outcome = |report: &LabReport, id: &str| report.verdicts.iter().find(|v| v.id == id).map(|v| v.outcome);
    let mut fixed = Vec::new();
    let mut broke = Vec::new();
    for verdict in &after.verdicts {
        match (outcome(before, &verdict.id), verdict.outcome) {
            (Some(Outcome::Pass), Outcome::Pass) | (None, _) => {}
            (Some(_), Outcome::Pass) => fixed.push(verdict.id.clone()),
            (Some(Outcome::Pass), _) => broke.push(verdict.id.clone()),
            _ => {}
        }
    }
    let (old, _) = before.points();
    let (new, max) = after.points();
    let mut out = format!("Points: {old} -> {new} of {max}\n");
    if fixed.is_empty() && broke.is_empty() {
        out.push_str("No verdict changed.\n");
    }
    for id in fixed {
        out.push_str(&format!("  now passes (fail -> pass): {id}\n"));
    }
    for id in broke {
        out.push_str(&format!("  now FAILS  (pass -> fail): {id}\n"));
    }
    out
}

/// Watches a lab's source directory (and the directories in it) for saves.
#[derive(Debug)]
pub struct SourceWatch {
    inotify: Inotify,
    dir: PathBuf,
}

/// How long the kernel must stay quiet after a save before the check starts: an editor
/// writes a temporary file, renames it, fixes modes, in a burst.
const QUIET_MS: u16 = 300;

/// What ended a wait.
#[derive(Debug, PartialEq, Eq)]
pub enum Woken {
    /// Source files were saved (their names).
    Saved(Vec<String>),
    /// The other fd (Ctrl-C's) became readable.
    Interrupted,
}

impl SourceWatch {
    pub fn new(dir: &Path) -> Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(Error::sys("inotify_init1", dir.display()))?;
        let flags = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MODIFY;
        let mut dirs = vec![dir.to_path_buf()];
        if let Ok(entries) = std::fs::read_dir(dir) {
            dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        for watched in &dirs {
            inotify.add_watch(watched, flags).map_err(Error::sys("inotify_add_watch", watched.display()))?;
        }
        Ok(SourceWatch { inotify, dir: dir.to_path_buf() })
    }

    /// Blocks until a `.rs` file is written and closed, renamed into place or removed,
    /// and then until the kernel has reported nothing more for a moment; or until
    /// `interrupt` is readable.
    pub fn wait_for_save(&self, interrupt: BorrowedFd<'_>) -> Result<Woken> {
        let mut saved: Vec<String> = Vec::new();
        loop {
            let timeout = if saved.is_empty() { PollTimeout::NONE } else { PollTimeout::from(QUIET_MS) };
            let mut fds =
                [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN), PollFd::new(interrupt, PollFlags::POLLIN)];
            let ready = match nix::poll::poll(&mut fds, timeout) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => other.map_err(Error::sys("poll", self.dir.display()))?,
            };
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return Ok(Woken::Interrupted);
            }
            if ready == 0 {
                return Ok(Woken::Saved(saved));
            }
            let events = match self.inotify.read_events() {
                Err(nix::errno::Errno::EAGAIN) => continue,
                other => other.map_err(Error::sys("read(inotify)", self.dir.display()))?,
            };
            for event in events {
                let name = event.name.map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let saves = AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_Q_OVERFLOW;
                let source = name.ends_with(".rs") || event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW);
                if source && event.mask.intersects(saves) && !saved.contains(&name) {
                    saved.push(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_by_root_leaves_the_students_file_and_backup_the_students() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !nix::unistd::geteuid().is_root() {
            panic!("this test gives files to another user: run it as root, as cilab's tests run");
        }
        let root = tempfile::tempdir().expect("a temporary tree");
        let lab = &crate::catalog::all()[0];
        let source = root.path().join("main.rs");
        std::fs::write(&source, "before").expect("write");
        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        std::os::unix::fs::chown(&source, Some(1234), Some(2345)).expect("chown");
        let plan =
            ResetPlan { source: source.clone(), original: "before".into(), reset: "after".into(), changed: Vec::new() };
        let backup = apply_reset(root.path(), lab, &plan, 0).expect("reset");
        for path in [&source, &backup] {
            let meta = std::fs::metadata(path).expect("metadata");
            assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (1234, 2345, 0o640), "{}", path.display());
        }
        assert_eq!(std::fs::read_to_string(&source).expect("read"), "after");
        assert_eq!(std::fs::read_to_string(&backup).expect("read"), "before");
        let backups = backups_dir(root.path(), lab);
        assert_eq!(std::fs::metadata(&backups).expect("metadata").uid(), 1234);
        assert_eq!(std::fs::metadata(backups.parent().expect("parent")).expect("metadata").uid(), 1234);
    }

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_time(1_764_079_387), "2025-11-25 14:03:07 UTC");
    }

    #[test]
    fn a_save_wakes_the_watch_once_the_burst_is_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let watch = SourceWatch::new(dir.path()).expect("watch");
        let (quiet, _keep) = std::os::unix::net::UnixStream::pair().expect("pair");
        // An editor's save: a temporary file written, then renamed over the source.
        let temporary = dir.path().join(".main.rs.swp");
        std::fs::write(&temporary, "fn main() {}").expect("write");
        std::fs::rename(&temporary, dir.path().join("main.rs")).expect("rename");
        std::fs::write(dir.path().join("notes.txt"), "not source").expect("write");
        assert_eq!(watch.wait_for_save(quiet.as_fd()).expect("wait"), Woken::Saved(vec!["main.rs".into()]));
        let (interrupt, mut ctrl_c) = std::os::unix::net::UnixStream::pair().expect("pair");
        std::io::Write::write_all(&mut ctrl_c, b"x").expect("write");
        assert_eq!(watch.wait_for_save(interrupt.as_fd()).expect("wait"), Woken::Interrupted);
    }
}
