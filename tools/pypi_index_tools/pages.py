"""Write the index's PEP 503 pages (/simple/) as static files for Apache to serve.

The role runs it once per play; pypi-index-pages.service runs it with
--watch: it builds every page once, keeps what it listed in memory, and then,
whenever files in a package root are closed after writing, renamed or
deleted, rebuilds only the pages of their projects (and the root page when a
project appears or goes), so that an upload is listed as fast at 200,000
files as at 20. The roots are listed with pypiserver's own code, so the pages
name exactly what pypiserver would; a file is hashed again only when its size
or mtime changed. Each build prints how many pages it wrote and removed.
"""

import argparse
import ctypes
import hashlib
import html
import json
import os
import select
import shutil
import struct
import tempfile
import time
import urllib.parse
from pathlib import Path

from pypiserver.backend import listdir, valid_packages
from pypiserver.pkg_helpers import guess_pkgname_and_version, is_listed_path, normalize_pkgname

# inotify(7): what makes a package appear, change or go; a directory, or
# events the kernel had to drop, mean that everything is listed again.
IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO, IN_DELETE = 0x08, 0x40, 0x80, 0x200
IN_Q_OVERFLOW, IN_ISDIR = 0x4000, 0x40000000
EVENT = struct.Struct("iIII")
# A burst of uploads (or a restore) becomes one build once the roots have
# been quiet this long, or after the longer wait at most.
QUIET_SECONDS = 0.1
MOST_SECONDS = 1.0
# Saving the hashes takes 0.75 s at 200,000 files, so the watcher saves them
# once the roots have been quiet this long, not after every update.
SAVE_AFTER_SECONDS = 5.0

PAGE = """<!DOCTYPE html>
<html lang="en">
    <head>
        <meta charset="utf-8">
        <title>{title}</title>
    </head>
    <body>
        <h1>{title}</h1>
{links}    </body>
</html>
"""


def entry(package):
    """A package pypiserver lists, with the size and mtime its hash is kept for."""
    stat = os.stat(package.fn)
    return package, stat.st_size, stat.st_mtime_ns


def scan(roots):
    """Every package file pypiserver lists, with its stat, by normalized project name."""
    projects = {}
    for root in roots:
        for package in listdir(Path(root)):
            projects.setdefault(package.pkgname_norm, []).append(entry(package))
    return projects


def listed(root, name):
    """The entry of the file `name` at the top of `root` as listdir would give it, or None."""
    root = Path(root).resolve()
    path = root / name
    if not is_listed_path(name) or not path.is_file():
        return None
    package = next(valid_packages(root, [path]), None)
    return entry(package) if package else None


def file_digest(path, algo):
    """The hex digest of a file, read in 1 MiB chunks so a large package needs little memory."""
    digest = hashlib.new(algo)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fragment(entry, algo, hashes):
    """#<algo>=<hex> for one file, from the previous run's hash while size and mtime still match."""
    if not algo:
        return ""
    package, size, mtime = entry
    known = hashes.get(package.fn)
    if known is None or known[:2] != [size, mtime]:
        known = hashes[package.fn] = [size, mtime, file_digest(package.fn, algo)]
    return f"#{algo}={known[2]}"


def label(filename):
    """A file's link text on its project's page, which ends its link."""
    return f">{html.escape(filename)}</a>"


def lists(page, filename):
    """Whether a project page (its text) has a link to a file of that name."""
    return label(filename) in page


def project_page(name, entries, algo, hashes):
    """The page of one project, its files sorted by version as pip ranks them."""
    entries = sorted(entries, key=lambda entry: (entry[0].parsed_version, entry[0].relfn))
    links = "".join(
        f'            <a href="../../packages/{urllib.parse.quote(entry[0].relfn_unix)}'
        f'{fragment(entry, algo, hashes)}"{label(os.path.basename(entry[0].relfn_unix))}<br>\n'
        for entry in entries
    )
    return PAGE.format(title=f"Links for {html.escape(name)}", links=links)


def index_page(names):
    """The root page: one link per project."""
    links = "".join(f'            <a href="{urllib.parse.quote(name)}/">{html.escape(name)}</a><br>\n'
                    for name in sorted(names))
    return PAGE.format(title="Simple Index", links=links)


def write(path, text):
    """Replace path with text atomically, unless it already holds it; True when written."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".", delete=False) as handle:
        handle.write(text)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)
    return True


def build(out, projects, algo, hashes):
    """Write the pages that changed and remove the directories of projects gone; both counts."""
    written = sum(write(out / name / "index.html", project_page(name, entries, algo, hashes))
                  for name, entries in projects.items())
    written += write(out / "index.html", index_page(projects))
    gone = [path for path in out.iterdir() if path.is_dir() and path.name not in projects]
    for path in gone:
        shutil.rmtree(path)
    return written, len(gone)


def report(written, removed):
    """Print the counts of a build and return them, so a caller (or a test) sees them too."""
    counts = {"written": written, "removed": removed}
    print(json.dumps(counts), flush=True)
    return counts


class Pages:
    """The pages of some package roots, and the files they list, kept between builds."""

    def __init__(self, out, state, roots, algo):
        self.out, self.state, self.roots, self.algo = Path(out), Path(state), roots, algo
        try:
            previous = json.loads(self.state.read_text())
        except (FileNotFoundError, ValueError):
            previous = {}
        self.hashes = previous.get("hashes", {}) if previous.get("algo") == algo else {}
        self.projects = {}

    def build_all(self):
        """List every root and write every page that changed."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.projects = scan(self.roots)
        counts = report(*build(self.out, self.projects, self.algo, self.hashes))
        self.save()
        return counts

    def update(self, changed):
        """Rebuild the pages of the projects whose files changed: (root, file name) pairs.

        A name pypiserver would not list as a package changes nothing. The
        hashes are not saved (see save).
        """
        before, touched = set(self.projects), set()
        for root, name in changed:
            guessed = guess_pkgname_and_version(name) if is_listed_path(name) else None
            if guessed is None:
                continue
            project = normalize_pkgname(guessed[0])
            fn = str(Path(root).resolve() / name)
            entries = [known for known in self.projects.get(project, []) if known[0].fn != fn]
            found = listed(root, name)
            if found:
                entries.append(found)
            if entries or project in self.projects:
                self.projects[project] = entries
                touched.add(project)
        gone = {project for project in touched if not self.projects[project]}
        written = sum(write(self.out / project / "index.html",
                            project_page(project, self.projects[project], self.algo, self.hashes))
                      for project in touched - gone)
        for project in gone:
            del self.projects[project]
        # The root page stops linking a project before its page goes.
        if set(self.projects) != before:
            written += write(self.out / "index.html", index_page(self.projects))
        for project in gone:
            shutil.rmtree(self.out / project, ignore_errors=True)
        return report(written, len(gone))

    def save(self):
        """Keep the hashes of the files listed now (only those), for the next start."""
        listed_now = {known[0].fn for entries in self.projects.values() for known in entries}
        self.hashes = {fn: known for fn, known in self.hashes.items() if fn in listed_now}
        write(self.state, json.dumps({"algo": self.algo, "hashes": self.hashes}))


def build_all(out, state, roots, algo):
    """One build of every page; the hashes already computed are kept in the state file."""
    return Pages(out, state, roots, algo).build_all()


def inotify(roots):
    """A non-blocking inotify descriptor watching the roots, and the root of
    each watch. Events that arrive during a build wait in the kernel's queue,
    so no change is missed."""
    libc = ctypes.CDLL(None, use_errno=True)
    descriptor = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if descriptor < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    watches = {}
    for root in roots:
        watch_id = libc.inotify_add_watch(descriptor, os.fsencode(root),
                                          IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE)
        if watch_id < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {root}")
        watches[watch_id] = root
    return descriptor, watches


def events(buffer, watches):
    """The (root, file name) pairs of a read of inotify events; None when
    the roots must be listed again (a directory, or events lost)."""
    changed, offset = set(), 0
    while offset < len(buffer):
        watch_id, mask, _, length = EVENT.unpack_from(buffer, offset)
        name = buffer[offset + EVENT.size:offset + EVENT.size + length].rstrip(b"\0")
        offset += EVENT.size + length
        if mask & (IN_Q_OVERFLOW | IN_ISDIR):
            return None
        if watch_id in watches and name:
            changed.add((watches[watch_id], os.fsdecode(name)))
    return changed


def drain(descriptor, watches, changed):
    """Read the queued events into `changed`; None once the roots must be listed again."""
    try:
        while buffer := os.read(descriptor, 1 << 16):
            more = events(buffer, watches)
            changed = None if changed is None or more is None else changed | more
    except BlockingIOError:
        pass
    return changed


def watch(out, state, roots, algo):
    """Build, then rebuild what changed after every burst of changes in the roots."""
    descriptor, watches = inotify(roots)
    pages = Pages(out, state, roots, algo)
    pages.build_all()
    unsaved = False
    while True:
        if not select.select([descriptor], [], [], SAVE_AFTER_SECONDS if unsaved else None)[0]:
            pages.save()
            unsaved = False
            continue
        deadline = time.monotonic() + MOST_SECONDS
        changed = drain(descriptor, watches, set())
        while time.monotonic() < deadline and select.select([descriptor], [], [], QUIET_SECONDS)[0]:
            changed = drain(descriptor, watches, changed)
        if changed is None:
            pages.build_all()
        else:
            pages.update(changed)
        unsaved = changed is not None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory the pages go to")
    parser.add_argument("--state", type=Path, required=True, help="JSON file of the hashes already computed")
    parser.add_argument("--hash-algo", default="sha256", help="hashlib name for the #fragment; empty for none")
    parser.add_argument("--watch", action="store_true", help="build, then build again on every change")
    parser.add_argument("roots", nargs="+")
    args = parser.parse_args()

    (watch if args.watch else build_all)(args.out, args.state, args.roots, args.hash_algo)


if __name__ == "__main__":
    main()
