//! Lab rootfs-import's mistake corpus: typical mistakes and lies, each with the
//! verdict that must catch it (each region's `todo!()` is added by the corpus itself).
//! Its edits quote the solution: a handout writes this file as an empty list.

use crate::corpus::{Edit, Mistake, MistakeKind};

pub const MISTAKES: &[Mistake] = &[
    Mistake {
        region: "entry-path",
        name: "the entry's path joined to the target unchecked: `..` climbs out",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "entry-path",
            "Ok(path.split(|b| *b == b'/').filter(|p| !p.is_empty()).map(|p| OsStr::from_bytes(p).to_os_string()).collect())",
        )],
        caught_by: "paths-stay-inside",
    },
    Mistake {
        region: "entry-path",
        name: "only a leading `../` refused: `./a/../../` gets through",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "entry-path",
            "if path.starts_with(b\"../\") || path.starts_with(b\"/\") {\n    \
             bail!(\"its path leaves the target\");\n\
             }\n\
             Ok(path.split(|b| *b == b'/').filter(|p| !p.is_empty() && *p != b\".\").map(|p| OsStr::from_bytes(p).to_os_string()).collect())",
        )],
        caught_by: "paths-stay-inside",
    },
    Mistake {
        region: "entry-path",
        name: "`..` and absolute paths refused, but no limit on length and no check for a newline",
        kind: MistakeKind::Mistake,
        edits: &[
            Edit::Replace("    if path.len() >= libc::PATH_MAX as usize {\n        bail!(\"its path is {} bytes long, the limit is {}\", path.len(), libc::PATH_MAX - 1);\n    }\n", ""),
            Edit::Replace("    if path.iter().any(u8::is_ascii_control) {\n        bail!(\"its path holds a control character\");\n    }\n", ""),
        ],
        caught_by: "paths-stay-inside",
    },
    Mistake {
        region: "open-beneath",
        name: "the directories on the way opened following symlinks (no O_NOFOLLOW)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "open-beneath",
            "let mut at = root.try_clone_to_owned().context(\"dup\")?;\n\
             for name in dirs {\n    \
             let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;\n    \
             let fd = match openat(Some(at.as_raw_fd()), name.as_os_str(), flags, Mode::empty()) {\n        \
             Err(Errno::ENOENT) => {\n            \
             mkdirat(Some(at.as_raw_fd()), name.as_os_str(), Mode::from_bits_truncate(0o755)).map_err(LabError::sys(\"mkdirat\", name.to_string_lossy()))?;\n            \
             openat(Some(at.as_raw_fd()), name.as_os_str(), flags, Mode::empty()).map_err(LabError::sys(\"openat\", name.to_string_lossy()))?\n        \
             }\n        \
             other => other.map_err(LabError::sys(\"openat\", name.to_string_lossy()))?,\n    \
             };\n    \
             at = owned(fd);\n\
             }\n\
             Ok(at)",
        )],
        caught_by: "no-symlink-followed",
    },
    Mistake {
        region: "make-entry",
        name: "an existing name opened for writing (O_TRUNC): a file written through the symlink the archive made",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "                if there.is_some() {\n                    // A name the archive made before: removed, never written through.\n                    remove(parent, name)?;\n                }\n                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;",
            "                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC;",
        )],
        caught_by: "replacements-safe",
    },
    Mistake {
        region: "make-entry",
        name: "a directory replaced by a symlink when an archive says so",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "                if is_dir {\n                    bail!(\"it would replace the directory `{}` with a symlink\", name.to_string_lossy());\n                }\n",
            "",
        )],
        caught_by: "replacements-safe",
    },
    Mistake {
        region: "hardlink",
        name: "the link target joined to the target unchecked (an absolute one is taken as it is)",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "hardlink",
            "linkat(Some(self.root.as_raw_fd()), OsStr::from_bytes(target), Some(parent.as_raw_fd()), name, AtFlags::empty())\n    \
             .map_err(LabError::sys(\"linkat\", String::from_utf8_lossy(target)))?;\n\
             Ok(())",
        )],
        caught_by: "hardlinks-inside",
    },
    Mistake {
        region: "hardlink",
        name: "the link target checked only after the link is made",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "hardlink",
            "let made = linkat(Some(self.root.as_raw_fd()), OsStr::from_bytes(target), Some(parent.as_raw_fd()), name, AtFlags::empty());\n\
             entry_components(target).context(\"its link target\")?;\n\
             made.map_err(LabError::sys(\"linkat\", String::from_utf8_lossy(target)))?;\n\
             Ok(())",
        )],
        caught_by: "hardlinks-inside",
    },
    Mistake {
        region: "size-limit",
        name: "no size limit: the body copied whatever its size",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Region(
            "size-limit",
            "let _ = declared;\n\
             let copied = std::io::copy(body, file).context(\"write its body\")?;\n\
             self.report.written += copied;\n\
             Ok(())",
        )],
        caught_by: "size-limited",
    },
    Mistake {
        region: "size-limit",
        name: "the limit checked, the body's length not: a header that lies passes",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "                Ok(copied) if copied != declared => {\n                    Err(anyhow!(\"its body ends after {copied} of the {declared} bytes its header declares\"))\n                }\n",
            "",
        )],
        caught_by: "size-limited",
    },
    Mistake {
        region: "size-limit",
        name: "a file refused halfway left in the target: what was written of it stays",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "                unlinkat(Some(parent.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)\n                    .map_err(LabError::sys(\"unlinkat\", name.to_string_lossy()))?;\n",
            "",
        )],
        caught_by: "size-limited",
    },
    Mistake {
        region: "size-limit",
        name: "the body written whole, then refused for its size and unlinked: nothing left to see but the writes",
        kind: MistakeKind::Lie,
        edits: &[Edit::Region(
            "size-limit",
            "let copied = std::io::copy(&mut body.take(declared), file).unwrap_or(u64::MAX);\n\
             if copied > self.budget || copied != declared {\n    \
             unlinkat(Some(parent.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir).map_err(LabError::sys(\"unlinkat\", name.to_string_lossy()))?;\n    \
             bail!(\"it declares {declared} bytes, more than the size limit ({SIZE_LIMIT} bytes), or its body ends early\");\n\
             }\n\
             self.budget -= copied;\n\
             self.report.written += copied;\n\
             Ok(())",
        )],
        caught_by: "size-limited",
    },
    Mistake {
        region: "make-entry",
        name: "a directory entry keeps what leads to a directory: a symlink to one is followed",
        kind: MistakeKind::Mistake,
        edits: &[
            Edit::Replace(
                "                if !is_dir {\n                    if there.is_some() {",
                "                let path = format!(\"/proc/self/fd/{}/{}\", parent.as_raw_fd(), name.to_string_lossy());\n                \
                 let leads_to_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());\n                \
                 if !is_dir && !leads_to_dir {\n                    if there.is_some() {",
            ),
            Edit::Replace(
                "                Ok(Some(open_dir(Some(parent), name)?))",
                "                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;\n                \
                 let fd = openat(Some(parent.as_raw_fd()), name, flags, Mode::empty()).map_err(LabError::sys(\"openat\", name.to_string_lossy()))?;\n                \
                 Ok(Some(owned(fd)))",
            ),
        ],
        caught_by: "replacements-safe",
    },
    Mistake {
        region: "hardlink",
        name: "the link target's directories joined into one path: a symlink on the way is followed",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "        let from = open_beneath(self.root.as_fd(), dirs)?;",
            "        let mut joined = PathBuf::from(\".\");\n        \
             joined.extend(dirs);\n        \
             let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;\n        \
             let from = owned(openat(Some(self.root.as_raw_fd()), joined.as_os_str(), flags, Mode::empty()).map_err(LabError::sys(\"openat\", joined.display()))?);",
        )],
        caught_by: "hardlinks-inside",
    },
    Mistake {
        region: "read-limits",
        name: "no limit on headers: the tar crate reads a 200 MiB PAX header into memory",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    if between > HEADER_LIMIT {\n        bail!(\"more than {HEADER_LIMIT} bytes of headers and extensions (GNU long name, PAX) before one entry\");\n    }\n",
            "",
        )],
        caught_by: "reads-limited",
    },
    Mistake {
        region: "read-limits",
        name: "no limit on entries: a million empty files are all made",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    if entries > MAX_ENTRIES {\n        bail!(\"more than {MAX_ENTRIES} entries: the limit of entries per import\");\n    }\n",
            "",
        )],
        caught_by: "reads-limited",
    },
    Mistake {
        region: "read-limits",
        name: "no limit on what is read in all: 264 MiB of PAX global headers read to the end",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    if total > READ_LIMIT {\n        bail!(\"more than {READ_LIMIT} bytes read from the archive: the read limit\");\n    }\n",
            "",
        )],
        caught_by: "reads-limited",
    },
    Mistake {
        region: "policy",
        name: "device nodes let through: the importer makes them",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "        EntryType::Char | EntryType::Block => bail!(\"a device node: an image does not make devices\"),\n",
            "",
        )],
        caught_by: "policy-applied",
    },
    Mistake {
        region: "policy",
        name: "GNU sparse files let through: imported as the file they describe",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace("        EntryType::GNUSparse => bail!(\"a GNU sparse file: not imported\"),\n", "")],
        caught_by: "policy-applied",
    },
    Mistake {
        region: "policy",
        name: "modes kept as the archive says: set-user-ID root files stay",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    let mut mode = mode & 0o7777 & !(libc::S_ISUID | libc::S_ISGID);",
            "    let mut mode = mode & 0o7777;",
        )],
        caught_by: "policy-applied",
    },
    Mistake {
        region: "whiteouts",
        name: "the opaque marker ignored: the lower layer's files stay in the opaque directory",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "        for name in names_in(dir.as_fd())? {\n            remove(dir.as_fd(), &name)?;\n        }\n",
            "",
        )],
        caught_by: "layers-flattened",
    },
    Mistake {
        region: "whiteouts",
        name: "a whiteout removes its name unchecked: one for a name no layer made stops the flattening",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "        if existing(dir.as_fd(), OsStr::from_bytes(hidden))?.is_some() {\n            remove(dir.as_fd(), OsStr::from_bytes(hidden))?;\n        }\n",
            "        remove(dir.as_fd(), OsStr::from_bytes(hidden))?;\n",
        )],
        caught_by: "layers-flattened",
    },
    Mistake {
        region: "run-busybox",
        name: "proc mounted before the mounts are made private: it shows on the host",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    mount(None::<&str>, \"/\", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)\n        .map_err(LabError::sys(\"mount(MS_REC|MS_PRIVATE)\", \"/\"))?;\n",
            "",
        )],
        caught_by: "busybox-runs",
    },
    Mistake {
        region: "run-busybox",
        name: "the lab's /proc bound in (mount --rbind /proc) instead of a proc of its own",
        kind: MistakeKind::Mistake,
        edits: &[Edit::Replace(
            "    mount(\n        Some(\"proc\"),\n        &proc_dir,\n        Some(\"proc\"),\n        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,\n        None::<&str>,\n    )",
            "    mount(Some(\"/proc\"), &proc_dir, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)",
        )],
        caught_by: "busybox-runs",
    },
    Mistake {
        region: "run-busybox",
        name: "no chroot: busybox runs with the host's root, the imported tree only its working directory",
        kind: MistakeKind::Lie,
        edits: &[Edit::Replace(
            "    chroot(root).map_err(LabError::sys(\"chroot\", root.display()))?;\n    chdir(\"/\").map_err(LabError::sys(\"chdir\", \"/\"))?;\n",
            "    chdir(root).map_err(LabError::sys(\"chdir\", root.display()))?;\n",
        )],
        caught_by: "busybox-runs",
    },
];
