//! Checks for lab rootfs-import. The harness makes every archive itself before the run
//! (labkit::archives) and, in `prepare`, before the lab starts, keeps in its own memory
//! what it will compare with: the rootfs archive's model (each path's type, mode, owner,
//! link target and sha256) and diffID, the hostile corpus with the random first entry of
//! its archives, and a snapshot of the sentinel tree and the archives. Nothing it compares
//! with is read back from the scratch dir, which the lab could have changed. It walks what
//! the lab made with lstat from outside: path, type, mode, owner, link target, content
//! (sha256), and inode for hard links. busybox is found by its process: its root, its
//! executable and its mount table, through /proc. The hostile corpus is judged by what each
//! target holds (the archive's random first entry says the import read it, a marker entry
//! at its end whether the import went on, and a refused archive's target holds what the
//! entries before the refused one made, nothing else), by the bytes written, and by the
//! sentinel tree beside the targets, compared byte for byte and by metadata (owner, mode,
//! ctime among them); only the text of each refusal (does it name the entry?) is read from
//! the lab's report. With Docker, the image's layer is read from `docker image inspect`
//! and the container's root walked through /proc/<pid>/root.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use labkit::archives::{self, Hostile, Policy, Salt};
use labkit::protocol::rootfs_import::*;
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use std::os::fd::AsRawFd;

use super::{file_id, find_child_named, PROC_MOUNTED};
use crate::catalog::Observer;
use crate::error::{Error, Result};
use crate::facts::{Fact, Facts, Relation};
use crate::probe::procfs;
use crate::run::LabRun;
use crate::verdict::VerdictSpec;

// ── facts, by stage ──────────────────────────────────────────────────────────────
const ARCHIVE_ENTRIES: Fact<usize> = Fact::new("imported.archive_entries");
const TREE_DIFFERENCES: Fact<Vec<String>> = Fact::new("imported.tree_vs_archive_differences");

const RUNNER_ROOT: Fact<Relation> = Fact::new("running.busybox_root_vs_imported_tree");
const RUNNER_EXE: Fact<Relation> = Fact::new("running.busybox_executable_vs_imported_bin_busybox");
const RUNNER_MNT_NS: Fact<Relation> = Fact::new("running.busybox_mnt_namespace_vs_host");
const RUNNER_PROC: Fact<String> = Fact::new("running.mounted_at_proc_seen_by_busybox");
const RUNNER_PROC_INSTANCE: Fact<Relation> = Fact::new("running.proc_at_busybox_proc_vs_the_labs_proc_instance");
const RUNNER_HOST_CHANGES: Fact<Vec<String>> = Fact::new("running.host_mount_changes");

const FLAT_DIFFERENCES: Fact<Vec<String>> = Fact::new("flattened.tree_vs_expected_differences");

const OUTCOMES: Fact<BTreeMap<String, String>> = Fact::new("hostile.outcome_by_archive");
const OUTSIDE_CHANGES: Fact<Vec<String>> = Fact::new("hostile.changes_outside_the_targets");
const BOMB_BYTES_WRITTEN: Fact<bool> = Fact::new("hostile.gzip_bomb_target_within_size_limit");
const BOMB_WRITES: Fact<Vec<String>> = Fact::new("hostile.gzip_bomb_files_written_but_its_first");

const DOCKER_LAYERS: Fact<usize> = Fact::new("docker-running.image_layers");
const DOCKER_DIFF_ID: Fact<Relation> = Fact::new("docker-running.diff_id_vs_sha256_of_uncompressed_tar");
const DOCKER_DIFFERENCES: Fact<Vec<String>> = Fact::new("docker-running.container_root_vs_archive_differences");
const DOCKER_EXTRAS: Fact<Vec<String>> = Fact::new("docker-running.container_root_extras");
const DOCKER_LEFT: Fact<Vec<String>> = Fact::new("docker-removed.labelled_containers_and_images_left");

/// What the harness says of an archive that got its policy's outcome.
pub const AS_POLICY: &str = "as the policy says";

/// The archives whose outcome each verdict reads.
const PATH_ARCHIVES: [&str; 6] = ["dotdot", "dotdot-inner", "absolute", "pax-dotdot", "long-path", "newline-name"];
const SYMLINK_ARCHIVES: [&str; 3] = ["symlink-abs-write", "symlink-rel-write", "symlink-dir-through"];
const REPLACE_ARCHIVES: [&str; 5] =
    ["symlink-then-file", "symlink-then-dir", "hardlink-then-write", "file-then-dir", "dir-then-symlink"];
const HARDLINK_ARCHIVES: [&str; 3] = ["hardlink-abs", "hardlink-dotdot", "hardlink-via-symlink"];
const SIZE_ARCHIVES: [&str; 2] = ["gzip-bomb", "size-lie"];
const READ_ARCHIVES: [&str; 4] = ["long-name-bomb", "pax-bomb", "many-entries", "read-bomb"];
const POLICY_ARCHIVES: [&str; 7] =
    ["device-nodes", "gnu-sparse", "fifo", "setuid-root", "setgid-modes", "world-writable", "pax-global"];
const CHECKSUM_ARCHIVES: [&str; 2] = ["checksum-start", "checksum-middle"];

fn as_policy(e: &crate::facts::Evidence, names: &[&str]) -> Option<bool> {
    let outcomes = e.get(OUTCOMES)?;
    let outside = e.get(OUTSIDE_CHANGES)?;
    Some(outside.is_empty() && names.iter().all(|n| outcomes.get(*n).map(String::as_str) == Some(AS_POLICY)))
}

pub const VERDICTS: [VerdictSpec; 14] = [
    VerdictSpec {
        id: "tree-equals-archive",
        claim: "the imported tree holds exactly the archive's entries: every path with its type, mode, owner, link target and content (sha256), hard links sharing their target's inode",
        points: 3,
        region: Some("make-entry"),
        requires: &[],
        hint: "one entry of each type (directory, file, symlink, hard link), each made once where its path says; the owner and mode are set after the entry is made",
        decide: |e| Some(e.get(ARCHIVE_ENTRIES)? > 0 && e.get(TREE_DIFFERENCES)?.is_empty()),
    },
    VerdictSpec {
        id: "busybox-runs",
        claim: "busybox runs in the imported tree: its root is that tree, its executable the imported /bin/busybox, in a mount namespace of its own with a proc of its own at /proc (not the lab's bound in), the host's mounts unchanged",
        points: 2,
        region: Some("run-busybox"),
        requires: &[],
        hint: "unshare(CLONE_NEWNS), make / private (MS_REC|MS_PRIVATE) before mounting proc on root/proc, then chroot and chdir(\"/\")",
        decide: |e| {
            Some(
                e.get(RUNNER_ROOT)? == Relation::Same
                    && e.get(RUNNER_EXE)? == Relation::Same
                    && e.get(RUNNER_MNT_NS)? == Relation::Differs
                    && e.get(RUNNER_PROC)? == PROC_MOUNTED
                    && e.get(RUNNER_PROC_INSTANCE)? == Relation::Differs
                    && e.get(RUNNER_HOST_CHANGES)?.is_empty(),
            )
        },
    },
    VerdictSpec {
        id: "layers-flattened",
        claim: "the two OCI layers flattened hold what a runtime shows: the upper layer's files over the lower's, whited-out file and directory gone (the directory made again by the upper layer holding only its new file), a whiteout of a name no layer made ignored, the opaque directory holding only the upper layer's files, no .wh. entry left",
        points: 2,
        region: Some("whiteouts"),
        requires: &[],
        hint: "per layer, before its other entries: `.wh.name` removes name (a whole tree), `.wh..wh..opq` empties its directory of what lower layers put there",
        decide: |e| Some(e.get(FLAT_DIFFERENCES)?.is_empty()),
    },
    VerdictSpec {
        id: "paths-stay-inside",
        claim: "archives whose paths leave the target (`../`, `./a/../../`, absolute, a PAX path with `..`, 4096 characters, a newline) are refused with an error naming the entry, and nothing outside the targets changes",
        points: 3,
        region: Some("entry-path"),
        requires: &[],
        hint: "check every component of the path before making anything: no `..`, not absolute, no control character, shorter than PATH_MAX",
        decide: |e| as_policy(e, &PATH_ARCHIVES),
    },
    VerdictSpec {
        id: "no-symlink-followed",
        claim: "a file or a directory made through a symlink the archive made (to an absolute path outside, or to ../../outside) is refused, naming the entry, and nothing outside changes",
        points: 3,
        region: Some("open-beneath"),
        requires: &[],
        hint: "open each directory on the way with O_NOFOLLOW|O_DIRECTORY from the one before (or openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS): a symlink there is refused",
        decide: |e| as_policy(e, &SYMLINK_ARCHIVES),
    },
    VerdictSpec {
        id: "replacements-safe",
        claim: "an entry whose name exists replaces a file or a link without writing through it (a symlink then a file, a symlink then a directory, a hard link then a file, a file then a directory) and refuses to turn a directory into a symlink",
        points: 2,
        region: Some("make-entry"),
        requires: &[],
        hint: "remove what is there (unlinkat) unless it is a directory, and create with O_CREAT|O_EXCL|O_NOFOLLOW: never open an existing name for writing",
        decide: |e| as_policy(e, &REPLACE_ARCHIVES),
    },
    VerdictSpec {
        id: "hardlinks-inside",
        claim: "hard links to an absolute path, through `../` or through a symlink the archive made are refused, naming the entry: the sentinel's link count is unchanged",
        points: 2,
        region: Some("hardlink"),
        requires: &[],
        hint: "a hard link's target is a path the archive chose: check it as an entry's path and open its directory beneath the target",
        decide: |e| as_policy(e, &HARDLINK_ARCHIVES),
    },
    VerdictSpec {
        id: "size-limited",
        claim: "the gzip bomb (2 GiB of zeros in about 2 MB) is refused by the size limit before a byte of it is written (fanotify sees no write in its target), and a size larger than the body is refused, the part written unlinked; each error names the entry",
        points: 2,
        region: Some("size-limit"),
        requires: &[],
        hint: "compare the declared size with what is left of the limit before writing; copy at most the declared size and refuse a body that ends early",
        decide: |e| {
            Some(e.get(BOMB_BYTES_WRITTEN)? && e.get(BOMB_WRITES)?.is_empty() && as_policy(e, &SIZE_ARCHIVES)?)
        },
    },
    VerdictSpec {
        id: "reads-limited",
        claim: "reading an archive is limited: a GNU long name of 1 GiB and a PAX header of 200 MiB are refused once 1 MiB of headers is read, 1,000,000 entries at the 100,001st, 300 PAX global headers of 900 KiB each once 256 MiB is read in all; each error names the entry's number",
        points: 2,
        region: Some("read-limits"),
        requires: &[],
        hint: "the tar crate reads a long name or a PAX header whole into memory before it hands out the entry: the limit sits in the reader beneath it, counting what it reads between two entries, what it reads in all (bodies it skips too), and the entries taken",
        decide: |e| as_policy(e, &READ_ARCHIVES),
    },
    VerdictSpec {
        id: "policy-applied",
        claim: "device nodes and GNU sparse files are refused, a fifo and a PAX global header are skipped, set-user-ID and set-group-ID bits are dropped (of files and directories), a world-writable directory without the sticky bit loses its write for others",
        points: 2,
        region: Some("policy"),
        requires: &[],
        hint: "the policy function decides per entry type and mode: see the sheet's table",
        decide: |e| as_policy(e, &POLICY_ARCHIVES),
    },
    VerdictSpec {
        id: "bad-checksum-refused",
        claim: "a header with a bad checksum, at the start or in the middle, stops the import with an error naming the entry's number (python's tarfile stops silently in the middle)",
        points: 0,
        region: None,
        requires: &[],
        hint: "the tar crate's entries() reports the bad header as an error: pass it on, do not end the loop quietly",
        decide: |e| as_policy(e, &CHECKSUM_ARCHIVES),
    },
    VerdictSpec {
        id: "docker-one-layer",
        claim: "with --docker, docker import gives an image of one layer whose diffID is the sha256 of the uncompressed tarball",
        points: 0,
        region: None,
        requires: &[],
        hint: "`cilab run rootfs-import --variant docker`: the lab imports the tarball the harness planted, unchanged",
        decide: |e| Some(e.get(DOCKER_LAYERS)? == 1 && e.get(DOCKER_DIFF_ID)? == Relation::Same),
    },
    VerdictSpec {
        id: "docker-same-root",
        claim: "the Docker container's root holds every entry of the archive with the same type, mode, owner, link target and content (but etc/hostname's, which Docker mounts its own over), plus only what Docker adds: .dockerenv, etc/hosts, etc/mtab, etc/resolv.conf, sys, and the mounts on dev and proc",
        points: 0,
        region: None,
        requires: &[],
        hint: "the lab runs the container from the image it imported from the planted tarball",
        decide: |e| Some(e.get(DOCKER_DIFFERENCES)?.is_empty() && e.get(DOCKER_EXTRAS)? == DOCKER_ADDS),
    },
    VerdictSpec {
        id: "docker-removed",
        claim: "with --docker, the lab removes the container and the image it made",
        points: 0,
        region: None,
        requires: &[],
        hint: "docker rm -f the container, docker rmi the image",
        decide: |e| Some(e.get(DOCKER_LEFT)?.is_empty()),
    },
];

/// What Docker adds to the root of a container from an imported image (below dev and proc,
/// mounts of its own, not walked).
const DOCKER_ADDS: [&str; 5] = [".dockerenv", "etc/hosts", "etc/mtab", "etc/resolv.conf", "sys"];

const DOCKER_TIMEOUT: Duration = Duration::from_secs(30);

/// What `prepare` made for one run and the checks compare with, computed before the lab
/// starts and kept where the lab cannot reach it: in the harness's memory, by the run's
/// scratch dir (the catalog's `prepare` is a plain function; the observer is made apart).
#[derive(Debug)]
struct Prepared {
    /// The rootfs archive's model (`archive_model`), and its diffID.
    rootfs: BTreeMap<String, String>,
    diff_id: String,
    /// The hostile corpus as written (bodies dropped) and its random first entry.
    corpus: Vec<Hostile>,
    salt: Salt,
    /// The hostile dir but its targets (archives and sentinel tree), as planted.
    before: BTreeMap<String, String>,
    /// Every write on the run's scratch filesystem from the moment the archives are
    /// planted, before the lab starts: a file written and then unlinked still shows here,
    /// whatever stage the lab wrote it in.
    writes: Fanotify,
}

static PREPARED: Mutex<BTreeMap<PathBuf, Prepared>> = Mutex::new(BTreeMap::new());

fn prepared_runs() -> std::sync::MutexGuard<'static, BTreeMap<PathBuf, Prepared>> {
    PREPARED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn prepare(scratch: &Path) -> Result<()> {
    let harness = |e: labkit::LabError| Error::Harness(format!("making the lab's archives: {e}"));
    let busybox = labkit::rootfs::find_static_busybox().map_err(harness)?;
    let tar = archives::busybox_rootfs_tar(&busybox).map_err(harness)?;
    let tarball = scratch.join(ROOTFS_TARBALL);
    std::fs::write(&tarball, archives::gzip(&tar)).map_err(Error::io("write", &tarball))?;
    archives::write_oci_layout(&scratch.join(OCI_DIR)).map_err(harness)?;
    let hostile = scratch.join(HOSTILE_DIR);
    let outside = hostile.join(OUTSIDE_DIR);
    archives::plant_sentinel_tree(&outside).map_err(harness)?;
    let salt = Salt::random().map_err(harness)?;
    let mut corpus = archives::write_hostile_corpus(&hostile.join(ARCHIVES_DIR), &outside, &salt).map_err(harness)?;
    for archive in &mut corpus {
        archive.bytes = Vec::new();
    }
    let prepared = Prepared {
        rootfs: archive_model(&tar)?,
        diff_id: archives::sha256_digest(&tar),
        corpus,
        salt,
        before: outside_the_targets(&hostile, &[])?,
        writes: watch_writes(scratch)?,
    };
    prepared_runs().insert(scratch.to_path_buf(), prepared);
    Ok(())
}

pub fn observer() -> Box<dyn Observer> {
    Box::new(RootfsImport::default())
}

#[derive(Default)]
struct RootfsImport {
    /// What prepare made for this run, taken from PREPARED at the first stage.
    prepared: Option<Prepared>,
    docker: bool,
}

impl Observer for RootfsImport {
    fn observe(&mut self, stage: &str, run: &mut LabRun, facts: &mut Facts) -> Result<()> {
        let scratch = run.scratch().to_path_buf();
        if self.prepared.is_none() {
            let prepared = prepared_runs().remove(&scratch);
            self.prepared =
                Some(prepared.ok_or_else(|| Error::Harness(format!("nothing prepared for {}", scratch.display())))?);
        }
        match stage {
            IMPORTED => {
                let archive = &self.prepared()?.rootfs;
                facts.record(ARCHIVE_ENTRIES, archive.len());
                facts.record(TREE_DIFFERENCES, compare_tree(archive, &scratch.join(ROOTFS_DIR), false)?.0);
                Ok(())
            }
            RUNNING => {
                let pid = find_child_named(run, "sleep")?;
                let root = scratch.join(ROOTFS_DIR);
                let proc_path = |what: &str| PathBuf::from(format!("/proc/{pid}/{what}"));
                facts.record(RUNNER_ROOT, Relation::of(&file_id(&proc_path("root")), &file_id(&root)));
                facts
                    .record(RUNNER_EXE, Relation::of(&file_id(&proc_path("exe")), &file_id(&root.join("bin/busybox"))));
                let mnt_ns = run.namespace_of(pid, "mnt")?;
                facts.record(RUNNER_MNT_NS, Relation::of(&mnt_ns, &Some(run.host_ns("mnt")?)));
                let mounts = procfs::read_mountinfo(&pid.to_string())?;
                facts.record(RUNNER_PROC, super::what_is_mounted_at(&mounts, "/proc"));
                // A proc of its own (a filesystem of its own: its device), not the lab's
                // bound in (`mount --rbind /proc`, with whatever is mounted below it).
                let proc_dev = |mounts: &[procfs::Mount]| {
                    mounts.iter().rev().find(|m| m.mount_point == "/proc").map(|m| m.dev.clone())
                };
                let lab_mounts = procfs::read_mountinfo(&run.pid().to_string())?;
                facts.record(RUNNER_PROC_INSTANCE, Relation::of(&proc_dev(&mounts), &proc_dev(&lab_mounts)));
                facts.record(RUNNER_HOST_CHANGES, run.mount_ns().changes()?.describe());
                Ok(())
            }
            FLATTENED => {
                facts.record(FLAT_DIFFERENCES, compare_flat(&scratch.join(FLAT_DIR)));
                Ok(())
            }
            HOSTILE => self.hostile(run, &scratch, facts),
            DOCKER_RUNNING => {
                self.docker = true;
                self.docker_running(run, &scratch, facts)
            }
            DOCKER_REMOVED => {
                let (containers, images) = labelled(&scratch)?;
                let left: Vec<String> = containers
                    .iter()
                    .map(|_| "a container".to_string())
                    .chain(images.iter().map(|_| "an image".to_string()))
                    .collect();
                facts.record(DOCKER_LEFT, left);
                Ok(())
            }
            other => Err(Error::Harness(format!("rootfs-import has no stage `{other}`"))),
        }
    }

    fn made_outside(&mut self) -> Vec<(PathBuf, String)> {
        if which::which("docker").is_err() {
            return Vec::new();
        }
        let Ok((containers, images)) = labelled_by(&format!("label={DOCKER_LABEL}")) else {
            return Vec::new();
        };
        let format = format!("{{{{.Id}}}} {{{{index .Config.Labels \"{DOCKER_LABEL}\"}}}}");
        let mut found = Vec::new();
        for (kind, ids) in [("container", containers), ("image", images)] {
            if ids.is_empty() {
                continue;
            }
            let mut args = vec![kind, "inspect", "--format", format.as_str()];
            args.extend(ids.iter().map(String::as_str));
            let text = docker(&args, DOCKER_TIMEOUT).unwrap_or_default();
            found.extend(
                text.lines()
                    .filter_map(|line| line.split_once(' '))
                    .map(|(id, scratch)| (PathBuf::from(scratch), format!("Docker {kind} {id}"))),
            );
        }
        found
    }

    fn clean_up_outside(&mut self, scratch: &Path, _killed: &[String]) -> Vec<String> {
        // A run that ended before its first stage never took what prepare made.
        prepared_runs().remove(scratch);
        if which::which("docker").is_err() {
            return Vec::new();
        }
        let mut leaks = Vec::new();
        let (containers, images) = match labelled(scratch) {
            Ok(found) => found,
            Err(error) if self.docker => {
                leaks.push(format!("could not ask Docker what is labelled with {}: {error}", scratch.display()));
                return leaks;
            }
            Err(_) => return leaks,
        };
        for id in containers {
            let removed = docker(&["rm", "-f", &id], DOCKER_TIMEOUT).map(drop);
            leaks.push(format!("the lab left Docker container {id} (removed: {removed:?})"));
        }
        for id in images {
            let removed = docker(&["rmi", "-f", &id], DOCKER_TIMEOUT).map(drop);
            leaks.push(format!("the lab left Docker image {id} (removed: {removed:?})"));
        }
        leaks
    }
}

impl RootfsImport {
    fn prepared(&self) -> Result<&Prepared> {
        self.prepared.as_ref().ok_or_else(|| Error::Harness("nothing prepared for this run".into()))
    }

    fn hostile(&self, run: &LabRun, scratch: &Path, facts: &mut Facts) -> Result<()> {
        let dir = scratch.join(HOSTILE_DIR);
        let prepared = self.prepared()?;
        let before = &prepared.before;
        let names: Vec<&str> = prepared.corpus.iter().map(|a| a.name).collect();
        let after = outside_the_targets(&dir, &names)?;
        let mut changes: Vec<String> = before
            .keys()
            .chain(after.keys().filter(|k| !before.contains_key(*k)))
            .filter(|k| before.get(*k) != after.get(*k))
            .map(|k| match (before.get(k), after.get(k)) {
                (Some(_), None) => format!("{k}: removed"),
                (None, Some(now)) => format!("{k}: appeared ({now})"),
                (Some(was), Some(now)) => format!("{k}: {was} -> {now}"),
                (None, None) => k.clone(),
            })
            .collect();
        // A file beside the targets written and then restored or unlinked before this stage
        // leaves no trace in the snapshot but the watch's: every write counts.
        let written = files_written(&prepared.writes)?;
        let targets = dir.join(TARGETS_DIR);
        let in_a_target = |path: &str| {
            path.strip_prefix(&format!("{}/", targets.display()))
                .is_some_and(|rest| names.iter().any(|n| rest.starts_with(&format!("{n}/"))))
        };
        let redact = |path: &String| path.strip_prefix(&format!("{}/", dir.display())).unwrap_or(path).to_string();
        changes.extend(
            written
                .iter()
                .filter(|p| p.starts_with(&format!("{}/", dir.display())) && !in_a_target(p))
                .map(|p| format!("{}: written", redact(p))),
        );
        changes.sort();
        facts.record(OUTSIDE_CHANGES, changes);
        // The lab's report: only the text of each refusal is taken from it.
        let said = run
            .claims()
            .iter()
            .rev()
            .find(|(stage, _)| stage == HOSTILE)
            .map(|(_, claims)| claims["outcomes"].clone())
            .unwrap_or_default();
        let mut outcomes = BTreeMap::new();
        for archive in &prepared.corpus {
            let target = dir.join(TARGETS_DIR).join(archive.name);
            let error = said[archive.name]["error"].as_str().map(str::to_string);
            outcomes.insert(archive.name.to_string(), judge(archive, &prepared.salt, &target, error.as_deref()));
        }
        facts.record(OUTCOMES, outcomes);
        let bomb = dir.join(TARGETS_DIR).join("gzip-bomb");
        facts.record(BOMB_BYTES_WRITTEN, bytes_under(&bomb) <= SIZE_LIMIT);
        // What the bomb's first entry writes is its due: anything else in its target is not.
        let first = bomb.join(&prepared.salt.first_name).display().to_string();
        let in_bomb = |path: &&String| path.starts_with(&format!("{}/", bomb.display())) && **path != first;
        facts.record(BOMB_WRITES, written.iter().filter(in_bomb).map(redact).collect());
        Ok(())
    }

    fn docker_running(&self, run: &mut LabRun, scratch: &Path, facts: &mut Facts) -> Result<()> {
        let (containers, images) = labelled(scratch)?;
        let ([container], [image]) = (containers.as_slice(), images.as_slice()) else {
            return Err(Error::Lab {
                lab: run.lab().to_string(),
                message: format!(
                    "{} containers and {} images carry this run's label, not one each",
                    containers.len(),
                    images.len()
                ),
            });
        };
        let layers = docker(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", image], DOCKER_TIMEOUT)?;
        let layers: Vec<String> =
            serde_json::from_str(layers.trim()).map_err(|_| Error::parse("docker RootFS.Layers", layers.trim()))?;
        let prepared = self.prepared()?;
        facts.record(DOCKER_LAYERS, layers.len());
        facts.record(DOCKER_DIFF_ID, Relation::of(&layers.first().cloned(), &Some(prepared.diff_id.clone())));
        let pid = docker(&["inspect", "-f", "{{.State.Pid}}", container], DOCKER_TIMEOUT)?;
        let pid: i32 = pid.trim().parse().map_err(|_| Error::parse("docker inspect State.Pid", pid.trim()))?;
        run.track_pid(pid);
        let (differences, extras) = compare_tree(&prepared.rootfs, Path::new(&format!("/proc/{pid}/root")), true)?;
        facts.record(DOCKER_DIFFERENCES, differences);
        facts.record(DOCKER_EXTRAS, extras);
        Ok(())
    }
}

/// How an archive fared against its policy: AS_POLICY, or what went otherwise.
fn judge(archive: &Hostile, salt: &Salt, target: &Path, error: Option<&str>) -> String {
    // Only an importer that read the archive can have made its random first entry.
    if archive.first_kept && std::fs::read(target.join(&salt.first_name)).ok().as_deref() != Some(&salt.first_body[..])
    {
        return "its first entry is not in the target as the archive holds it: the archive was not read".into();
    }
    let marker = target.join(MARKER).exists();
    match archive.policy {
        Policy::Refused { names, leaves } => {
            if marker {
                return "imported to the end; the policy refuses it".to_string();
            }
            match error {
                None => "stopped without an error".to_string(),
                Some(error) if !error.contains(names) => format!("refused, the error does not name `{names}`"),
                Some(_) => {
                    let first = archive.first_kept.then_some(salt.first_name.as_str());
                    refused_leftovers(target, first, leaves).unwrap_or_else(|| AS_POLICY.to_string())
                }
            }
        }
        Policy::Neutralised => {
            if !marker {
                return match error {
                    Some(_) => "refused; the policy neutralises it".to_string(),
                    None => "stopped before its end".to_string(),
                };
            }
            neutralised(archive.name, target).unwrap_or_else(|| AS_POLICY.to_string())
        }
    }
}

/// For a refused archive: how its target differs from what the entries before the refused
/// one make (`first` and `leaves`: see `Policy::Refused`); None: it holds exactly that.
fn refused_leftovers(target: &Path, first: Option<&str>, leaves: &[&str]) -> Option<String> {
    let tree = walk(target);
    let expected = |path: &str, meta: &std::fs::Metadata| {
        Some(path) == first && meta.is_file()
            || leaves.iter().any(|leaf| {
                if let Some(dir) = leaf.strip_suffix("/*") {
                    path.starts_with(&format!("{dir}/"))
                } else if let Some(dir) = leaf.strip_suffix('/') {
                    path == dir && meta.is_dir()
                } else if let Some(link) = leaf.strip_suffix('@') {
                    path == link && meta.file_type().is_symlink()
                } else {
                    path == *leaf && meta.is_file()
                }
            })
    };
    if let Some((path, _)) = tree.iter().find(|(path, meta)| !expected(path, meta)) {
        return Some(format!("`{}` is in the target: a refused entry leaves nothing", path.escape_debug()));
    }
    let missing = leaves.iter().find(|leaf| {
        let path = leaf.trim_end_matches(['/', '@']);
        !leaf.ends_with("/*") && !tree.iter().any(|(p, _)| p == path)
    });
    missing.map(|leaf| format!("`{leaf}` is missing: the entries before the refused one were not all made"))
}

/// For a neutralised archive: how its target differs from what the sheet says (None: as said).
fn neutralised(name: &str, target: &Path) -> Option<String> {
    let content = |p: &str| {
        let path = target.join(p);
        match path.symlink_metadata() {
            Ok(m) if m.file_type().is_file() => std::fs::read_to_string(&path).unwrap_or_default(),
            Ok(m) if m.file_type().is_symlink() => "a symlink".to_string(),
            Ok(m) if m.is_dir() => "a directory".to_string(),
            Ok(_) => "a special file".to_string(),
            Err(_) => "missing".to_string(),
        }
    };
    let mode = |p: &str| target.join(p).symlink_metadata().map(|m| m.mode() & 0o7777).unwrap_or(u32::MAX);
    let wrong = |what: &str, seen: String| Some(format!("{what}: {seen}"));
    match name {
        "symlink-then-file" if content("secret") != REPLACED => wrong("secret", content("secret")),
        "symlink-then-dir" if content("x") != "a directory" || content("x/inner.txt") == "missing" => {
            wrong("x", content("x"))
        }
        "pax-global" if content("global.txt") != GLOBAL_TEXT => wrong("global.txt", content("global.txt")),
        "setgid-modes" if mode("g") != 0o644 || mode("gdir") != 0o775 => {
            wrong("modes of g, gdir", format!("{:o} {:o}", mode("g"), mode("gdir")))
        }
        "hardlink-then-write" => {
            if content("f") != ORIGINAL {
                wrong("f (written through the hard link h?)", content("f"))
            } else if content("h") != REPLACED || content("hs") != REPLACED {
                wrong("h, hs", format!("{} / {}", content("h"), content("hs")))
            } else if content("s") != "a symlink" {
                wrong("s", content("s"))
            } else {
                None
            }
        }
        "file-then-dir" if content("x") != "a directory" || content("x/inner.txt") == "missing" => {
            wrong("x", content("x"))
        }
        "fifo" if content("pipe") != "missing" => wrong("pipe", content("pipe")),
        "setuid-root" if mode("bin/su") != 0o755 || mode("bin/sg") != 0o755 => {
            wrong("modes of bin/su, bin/sg", format!("{:o} {:o}", mode("bin/su"), mode("bin/sg")))
        }
        "world-writable" if mode("shared") != 0o775 || mode("tmp") != 0o1777 => {
            wrong("modes of shared, tmp", format!("{:o} {:o}", mode("shared"), mode("tmp")))
        }
        _ => None,
    }
}

/// A fanotify group that reports every write (FAN_MODIFY) on the filesystem of `dir` (the
/// run's scratch tmpfs), through any mount of it: the lab's mount namespace has its own.
fn watch_writes(dir: &Path) -> Result<Fanotify> {
    let fan = Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_NONBLOCK | InitFlags::FAN_CLOEXEC,
        EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC | EventFFlags::O_LARGEFILE,
    )
    .map_err(Error::sys("fanotify_init", "the scratch's writes"))?;
    fan.mark(MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM, MaskFlags::FAN_MODIFY, None, Some(dir))
        .map_err(Error::sys("fanotify_mark(FAN_MARK_FILESYSTEM)", dir.display()))?;
    Ok(fan)
}

/// The paths of the files written since the watch began (an unlinked one ends in
/// " (deleted)"), from the descriptors the events carry.
fn files_written(watch: &Fanotify) -> Result<Vec<String>> {
    let mut written = Vec::new();
    loop {
        let events = match watch.read_events() {
            Ok(events) if events.is_empty() => break,
            Ok(events) => events,
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(errno) => return Err(Error::sys("read", "fanotify events")(errno)),
        };
        for event in events {
            let Some(fd) = event.fd() else {
                return Err(Error::Harness("fanotify's queue of writes overflowed".into()));
            };
            let link = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            let path = std::fs::read_link(&link).map_err(Error::io("readlink", &link))?;
            let path = path.display().to_string();
            if !written.contains(&path) {
                written.push(path);
            }
        }
    }
    Ok(written)
}

/// Total size of the regular files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    walk(dir).into_iter().filter(|(_, m)| m.file_type().is_file()).map(|(_, m)| m.len()).sum()
}

/// Every path under `dir` (relative) with its lstat, not following symlinks, not crossing
/// into another filesystem's mount (`one_fs`).
fn walk_with(dir: &Path, one_fs: bool) -> Vec<(String, std::fs::Metadata)> {
    let device = dir.metadata().map(|m| m.dev()).unwrap_or_default();
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = path.symlink_metadata() else { continue };
            if meta.is_dir() && !(one_fs && meta.dev() != device) {
                stack.push(path.clone());
            }
            let relative = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().into_owned();
            out.push((relative, meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn walk(dir: &Path) -> Vec<(String, std::fs::Metadata)> {
    walk_with(dir, false)
}

/// The hostile dir but the targets of the archives named (and the directory `targets`
/// holding them): each path with its type, mode, owner, link count, size, inode, mtime,
/// ctime and content (or link target). Anything else in `targets` is outside.
fn outside_the_targets(dir: &Path, targets: &[&str]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (relative, meta) in walk(dir) {
        let in_target = |name: &&str| {
            relative
                .strip_prefix(TARGETS_DIR)
                .and_then(|r| r.strip_prefix('/'))
                .is_some_and(|r| r.strip_prefix(*name).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
        };
        if relative == TARGETS_DIR || targets.iter().any(in_target) {
            continue;
        }
        let path = dir.join(&relative);
        let what = if meta.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&path).map_err(Error::io("readlink", &path))?.display())
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
            archives::sha256_digest(&bytes)
        } else {
            String::new()
        };
        out.insert(
            relative,
            format!(
                "mode {:o} owner {}:{} links {} size {} inode {} mtime {}.{} ctime {}.{} {what}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.nlink(),
                meta.len(),
                meta.ino(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec()
            ),
        );
    }
    Ok(out)
}

/// One path of an archive: "dir 755 0:0", "file 644 0:0 sha256:…", "symlink -> busybox 0:0",
/// or "hardlink -> bin/busybox".
fn archive_model(tar: &[u8]) -> Result<BTreeMap<String, String>> {
    let mut model = BTreeMap::new();
    let mut archive = tar::Archive::new(tar);
    let bad = |e: std::io::Error| Error::Harness(format!("reading the harness's own archive: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let mut body = Vec::new();
        entry.read_to_end(&mut body).map_err(bad)?;
        let header = entry.header();
        let path = String::from_utf8_lossy(&entry.path_bytes()).trim_end_matches('/').to_string();
        let owner = format!("{}:{}", header.uid().map_err(bad)?, header.gid().map_err(bad)?);
        let mode = header.mode().map_err(bad)? & 0o7777;
        let link = entry.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()).unwrap_or_default();
        let what = match header.entry_type() {
            tar::EntryType::Directory => format!("dir {mode:o} {owner}"),
            tar::EntryType::Regular => format!("file {mode:o} {owner} {}", archives::sha256_digest(&body)),
            tar::EntryType::Symlink => format!("symlink -> {link} {owner}"),
            tar::EntryType::Link => format!("hardlink -> {link}"),
            other => format!("{other:?}"),
        };
        model.insert(path, what);
    }
    Ok(model)
}

/// Compares a tree with an archive's model: (differences, paths the archive does not
/// have). With `docker`, mounts of other filesystems are not walked into.
fn compare_tree(archive: &BTreeMap<String, String>, dir: &Path, docker: bool) -> Result<(Vec<String>, Vec<String>)> {
    let tree: BTreeMap<String, std::fs::Metadata> = walk_with(dir, docker).into_iter().collect();
    let root_dev = dir.metadata().map(|m| m.dev()).ok();
    // A file Docker mounts over the archive's (etc/hostname): its content is Docker's.
    let mounted_over = |path: &str| docker && tree.get(path).is_some_and(|m| Some(m.dev()) != root_dev);
    let describe = |path: &str| -> Option<String> {
        let meta = tree.get(path)?;
        let owner = format!("{}:{}", meta.uid(), meta.gid());
        let mode = meta.mode() & 0o7777;
        Some(if meta.is_dir() {
            format!("dir {mode:o} {owner}")
        } else if meta.file_type().is_symlink() {
            let link = std::fs::read_link(dir.join(path)).map(|l| l.display().to_string()).unwrap_or_default();
            format!("symlink -> {link} {owner}")
        } else if meta.is_file() && mounted_over(path) {
            format!("file {mode:o} {owner}")
        } else if meta.is_file() {
            let content = std::fs::read(dir.join(path)).map(|b| archives::sha256_digest(&b));
            format!("file {mode:o} {owner} {}", content.unwrap_or_else(|e| format!("unreadable ({e})")))
        } else {
            "special file".to_string()
        })
    };
    let mut differences = Vec::new();
    for (path, expected) in archive {
        if let Some(target) = expected.strip_prefix("hardlink -> ") {
            let same = match (tree.get(path), tree.get(target)) {
                (Some(a), Some(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                differences.push(format!("{path}: not a hard link to {target}"));
            }
            continue;
        }
        let expected = match expected.split_once(" sha256:") {
            Some((without_content, _)) if mounted_over(path) => without_content.to_string(),
            _ => expected.clone(),
        };
        match describe(path) {
            None => differences.push(format!("{path}: missing")),
            Some(seen) if seen != *expected => differences.push(format!("{path}: {seen}, the archive says {expected}")),
            Some(_) => {}
        }
    }
    let extras: Vec<String> = tree
        .keys()
        .filter(|p| !archive.contains_key(*p) && !(docker && (p.starts_with("dev/") || p.starts_with("proc/"))))
        .cloned()
        .collect();
    if !docker {
        differences.extend(extras.iter().map(|p| format!("{p}: not in the archive")));
    }
    Ok((differences, extras))
}

/// The flattened tree against labkit's FLATTENED.
fn compare_flat(dir: &Path) -> Vec<String> {
    let mut differences = Vec::new();
    let tree: BTreeMap<String, std::fs::Metadata> = walk(dir).into_iter().collect();
    for (path, content) in archives::FLATTENED {
        let full = dir.join(path);
        match (tree.get(*path), content) {
            (None, _) => differences.push(format!("{path}: missing")),
            (Some(meta), None) if !meta.is_dir() => differences.push(format!("{path}: not a directory")),
            (Some(meta), Some(text))
                if !meta.is_file() || std::fs::read_to_string(&full).ok().as_deref() != Some(*text) =>
            {
                differences.push(format!("{path}: not the upper layer's file"));
            }
            _ => {}
        }
    }
    for path in tree.keys() {
        if !archives::FLATTENED.iter().any(|(p, _)| p == path) {
            differences.push(format!("{path}: should not be there"));
        }
    }
    differences
}

// ── Docker ──────────────────────────────────────────────────────────────────────

/// Whether this machine can run the Docker variant: a client on PATH and a daemon that answers.
pub fn docker_available() -> std::result::Result<(), String> {
    super::nsenter_join::docker_available()
}

fn docker(args: &[&str], timeout: Duration) -> Result<String> {
    super::nsenter_join::docker(args, timeout)
}

fn labelled(scratch: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let scratch = scratch.canonicalize().unwrap_or_else(|_| scratch.to_path_buf());
    labelled_by(&format!("label={DOCKER_LABEL}={}", scratch.display()))
}

fn labelled_by(filter: &str) -> Result<(Vec<String>, Vec<String>)> {
    let ids = |text: String| text.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let containers = ids(docker(&["ps", "-aq", "--no-trunc", "--filter", filter], DOCKER_TIMEOUT)?);
    let images = ids(docker(&["images", "-q", "--no-trunc", "--filter", filter], DOCKER_TIMEOUT)?);
    Ok((containers, images))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (on the kernel's coarse clock, which stamps ctimes) until a change made now
    /// gets a ctime later than `path`'s.
    fn next_tick_after(path: &Path) {
        let ctime = path.symlink_metadata().map(|m| (m.ctime(), m.ctime_nsec())).expect("lstat");
        loop {
            // Raw libc: nix's clock_gettime needs its `time` feature, which the workspace does not enable.
            let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: clock_gettime writes one timespec into `now`, which lives across the call.
            assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) }, 0, "clock_gettime");
            if (now.tv_sec, now.tv_nsec) > ctime {
                return;
            }
            std::hint::spin_loop();
        }
    }

    #[test]
    fn a_chown_outside_to_the_same_owner_shows_in_the_ctime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(OUTSIDE_DIR).join("owned.txt");
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, "owned\n").expect("write");
        let before = outside_the_targets(dir.path(), &[]).expect("before");
        next_tick_after(&file);
        let meta = file.metadata().expect("stat");
        std::os::unix::fs::chown(&file, Some(meta.uid()), Some(meta.gid())).expect("chown");
        let after = outside_the_targets(dir.path(), &[]).expect("after");
        let key = format!("{OUTSIDE_DIR}/owned.txt");
        assert_ne!(before[&key], after[&key], "owner and mode are the same: only the ctime shows the chown");
    }

    #[test]
    fn a_stray_name_beside_the_targets_counts_as_outside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let targets = dir.path().join(TARGETS_DIR);
        for made in ["dotdot/inside.txt", "dotdot-inner/a/b", "dotdot.tmp", "stray/x"] {
            let path = targets.join(made);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, "x").expect("write");
        }
        let seen = outside_the_targets(dir.path(), &["dotdot", "dotdot-inner"]).expect("walk");
        let keys: Vec<&str> = seen.keys().map(String::as_str).collect();
        assert_eq!(keys, ["targets/dotdot.tmp", "targets/stray", "targets/stray/x"]);
    }

    #[test]
    fn a_refused_target_holds_its_first_entry_and_leaves_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path();
        std::fs::write(target.join("first"), "1").expect("write");
        std::os::unix::fs::symlink("/elsewhere", target.join("link")).expect("symlink");
        assert_eq!(refused_leftovers(target, Some("first"), &["link@"]), None);
        assert!(refused_leftovers(target, Some("first"), &["link@", "a/"]).is_some_and(|m| m.contains("`a/`")));
        assert!(refused_leftovers(target, Some("first"), &["link/"]).is_some_and(|m| m.contains("`link`")));
        std::fs::write(target.join("big.bin"), "partial").expect("write");
        assert!(refused_leftovers(target, Some("first"), &["link@"]).is_some_and(|m| m.contains("big.bin")));
        assert!(refused_leftovers(target, None, &["link@", "big.bin"]).is_some_and(|m| m.contains("first")));
    }
}
