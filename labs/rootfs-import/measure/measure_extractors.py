#!/usr/bin/env python3
"""Feeds each archive of the rootfs-import hostile corpus to GNU tar and to python's
tarfile (no filter, and filter='data'), each into a fresh target beside a fresh copy of
the sentinel tree, and reports per archive: exit, whether anything outside the target
changed, whether an outward symlink is left in the target, whether it went to the end."""
import hashlib, os, shutil, subprocess, sys, json, threading, time

LIMIT = 150  # seconds an extractor may take on one archive

BASE = sys.argv[1]            # the hostile dir the archives were made for (…/hostile)
PRISTINE = sys.argv[2]        # a pristine copy of …/hostile/outside
ARCHIVES = os.path.join(BASE, "archives")

def snapshot(d):
    out = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            extra = os.readlink(p) if os.path.islink(p) else (hashlib.sha256(open(p, 'rb').read()).hexdigest() if os.path.isfile(p) else '')
            out[os.path.relpath(p, d)] = (st.st_mode, st.st_nlink, st.st_uid, st.st_size, extra)
    return out

def outward_symlinks(target):
    found = []
    real_target = os.path.realpath(target)
    for root, dirs, files in os.walk(target):
        for n in dirs + files:
            p = os.path.join(root, n)
            if os.path.islink(p):
                r = os.path.realpath(p)
                if not (r == real_target or r.startswith(real_target + "/")):
                    found.append(os.path.relpath(p, target))
    return found

TARFILE = """
import sys, tarfile
with tarfile.open(sys.argv[1]) as tf:
    if sys.argv[3] == "data":
        tf.extractall(sys.argv[2], filter="data")
    else:
        tf.extractall(sys.argv[2])
"""

def run(tool, archive, target):
    """Each extractor in a process of its own: its exit, its time and its peak memory."""
    if tool == "gnu-tar":
        argv = ["tar", "-xf", archive, "-C", target]
    else:
        argv = [sys.executable, "-c", TARFILE, archive, target, "data" if tool == "tarfile-data" else "none"]
    start = time.monotonic()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # An extractor that does not finish within LIMIT seconds is killed (python 3.11.7's
    # tarfile on the PAX bomb: its hdrcharset regex is quadratic, CVE-2024-6232).
    timer = threading.Timer(LIMIT, child.kill)
    timer.start()
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    timer.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - start
    if seconds >= LIMIT:
        err += f"\nkilled after {LIMIT} s"
    last = err.strip().splitlines()[-1][:90] if err.strip() else ""
    return f"exit {child.returncode}" + (f": {last}" if last else ""), round(seconds, 2), usage.ru_maxrss // 1024

def modes(target):
    out = {}
    for name in sorted(os.listdir(target))[:12]:
        st = os.lstat(os.path.join(target, name))
        out[name if not name.startswith("cilab-first-") else "cilab-first-…"] = oct(st.st_mode & 0o7777)
    return out

outside = os.path.join(BASE, "outside")
results = {}
for name in sorted(os.listdir(ARCHIVES)):
    archive = os.path.join(ARCHIVES, name)
    short = name.replace(".tar.gz", "").replace(".tar", "")
    for tool in ["gnu-tar", "tarfile", "tarfile-data"]:
        shutil.rmtree(outside, ignore_errors=True)
        shutil.copytree(PRISTINE, outside, symlinks=True)
        before = snapshot(outside)
        before_list = sorted(os.listdir(BASE))
        target = os.path.join(BASE, "targets", short)
        shutil.rmtree(os.path.join(BASE, "targets"), ignore_errors=True)
        os.makedirs(target)
        said, seconds, peak_mib = run(tool, archive, target)
        after = snapshot(outside)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        extra_top = sorted(set(os.listdir(BASE)) - set(before_list) - {"targets"})
        results.setdefault(short, {})[tool] = {
            "said": said,
            "seconds": seconds,
            "peak_memory_mib": peak_mib,
            "first_entry_made": any(n.startswith("cilab-first-") for n in os.listdir(target)),
            "modes": modes(target),
            "outside_changed": changed + extra_top,
            "outward_symlinks": outward_symlinks(target),
            "to_the_end": os.path.exists(os.path.join(target, "imported-to-the-end")),
        }
        shutil.rmtree(os.path.join(BASE, "targets"), ignore_errors=True)
print(json.dumps(results, indent=1))
