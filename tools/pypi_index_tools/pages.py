"""Write the index's PEP 503 pages (/simple/) as static files for Apache to serve.

The role runs it once per play; pypi-index-pages.service runs it with
--watch, and it then rebuilds the pages whenever a file in a package root is
closed after writing, renamed or deleted. The roots are listed with
pypiserver's own code, so the pages name exactly what pypiserver would; a
file is hashed again only when its size or mtime changed. Each build prints
how many pages it wrote and removed.
"""

import argparse
import ctypes
import hashlib
import html
import json
import os
import select
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path

from pypiserver.backend import listdir

# inotify(7): what makes a package appear, change or go.
IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO, IN_DELETE = 0x08, 0x40, 0x80, 0x200
# A burst of uploads (or a restore) becomes one build once the roots have
# been quiet this long, or after the longer wait at most.
QUIET_SECONDS = 0.1
MOST_SECONDS = 1.0

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


def scan(roots):
    """Every package file pypiserver lists, with its stat, by normalized project name."""
    projects = {}
    for root in roots:
        for package in listdir(Path(root)):
            stat = os.stat(package.fn)
            projects.setdefault(package.pkgname_norm, []).append((package, stat.st_size, stat.st_mtime_ns))
    return projects


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


def build_all(out, state, roots, algo):
    """One build of every page; the hashes already computed are kept in the state file.

    Prints the counts and returns them, so a caller (or a test) sees them too.
    """
    try:
        previous = json.loads(state.read_text())
    except (FileNotFoundError, ValueError):
        previous = {}
    hashes = previous.get("hashes", {}) if previous.get("algo") == algo else {}
    out.mkdir(parents=True, exist_ok=True)
    projects = scan(roots)
    written, removed = build(out, projects, algo, hashes)
    listed = {entry[0].fn for entries in projects.values() for entry in entries}
    write(state, json.dumps({"algo": algo,
                             "hashes": {fn: known for fn, known in hashes.items() if fn in listed}}))
    counts = {"written": written, "removed": removed}
    print(json.dumps(counts), flush=True)
    return counts


def inotify(roots):
    """A non-blocking inotify descriptor watching the roots. Events that arrive
    during a build wait in the kernel's queue, so no change is missed."""
    libc = ctypes.CDLL(None, use_errno=True)
    descriptor = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if descriptor < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    for root in roots:
        if libc.inotify_add_watch(descriptor, os.fsencode(root),
                                  IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {root}")
    return descriptor


def drain(descriptor):
    """Read away the queued events: only that something changed matters, not what."""
    try:
        while os.read(descriptor, 1 << 16):
            pass
    except BlockingIOError:
        pass


def watch(out, state, roots, algo):
    """Build, then build again after every burst of changes in the roots."""
    descriptor = inotify(roots)
    build_all(out, state, roots, algo)
    while True:
        select.select([descriptor], [], [])
        deadline = time.monotonic() + MOST_SECONDS
        drain(descriptor)
        while time.monotonic() < deadline and select.select([descriptor], [], [], QUIET_SECONDS)[0]:
            drain(descriptor)
        build_all(out, state, roots, algo)


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
