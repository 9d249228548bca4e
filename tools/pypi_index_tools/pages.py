"""Write the index's Simple API pages (/simple/) as static files for Apache to serve.

The role runs it once per play; pypi-index-pages.service runs it with
--watch: it builds every page once, keeps what it listed in memory, and then,
whenever files in a package root are closed after writing, renamed or
deleted, rebuilds only the pages of their projects (and the root page when a
project appears or goes), so that an upload is listed as fast at 200,000
files as at 20. The roots are listed with pypiserver's own code, so the pages
name exactly what pypiserver would; a file is read again (digest, metadata)
only when its size or mtime changed. Each page is written in HTML and JSON
with a type-map (render.py); each wheel's METADATA goes to the metadata
directory for PEP 658. Each build logs how many pages it wrote and removed,
and each file it skips, with the reason (files.py). With the publish rules
(--rules), the pages carry PEP 752's namespaces: each project's in its JSON,
and the namespace list and details under _namespaces/, which Apache serves
at /simple/namespaces and /simple/namespace/<name>.

Every saved build also records what it was built from (beside the state
file, a digest of each root's file names, sizes and times, the settings and
this code), so that the role's run with --if-changed builds nothing when
nothing changed since (at 200,000 files, a walk of the roots instead of a
full build).
"""

import argparse
import ctypes
import gzip
import hashlib
import importlib.metadata
import json
import os
import select
import shutil
import struct
import tempfile
import time
from pathlib import Path

from pypiserver.backend import listdir, valid_packages
from pypiserver.pkg_helpers import guess_pkgname_and_version, is_listed_path, normalize_pkgname

from pypi_index_tools import files, metrics, render

# inotify(7): what makes a package appear, change or go; a directory, or
# events the kernel had to drop, mean that everything is listed again.
IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO, IN_DELETE = 0x08, 0x40, 0x80, 0x200
IN_Q_OVERFLOW, IN_ISDIR = 0x4000, 0x40000000
EVENT = struct.Struct("iIII")
# A burst of uploads (or a restore) becomes one build once the roots have
# been quiet this long, or after the longer wait at most.
QUIET_SECONDS = 0.1
MOST_SECONDS = 1.0
# Saving the records takes about a second at 200,000 files, so the watcher
# saves them once the roots have been quiet this long, not after every update.
SAVE_AFTER_SECONDS = 5.0

# A file's record as the state file keeps it (files.record's fields).
RECORD = ("size", "mtime", "digest", "requires_python", "metadata", "skip")
STATE_FORMAT = 2
YANKED = ".yanked"
# A project's PEP 792 status: `<project>.status` at the top of a package root,
# holding {"status": ..., "reason": ...} (pypi_index_release's status entry
# point writes it). A quarantined project lists no file; a status makes a
# page even for a name with no file here, so that a quarantined public name
# is answered here and never passed through to the upstream.
STATUS = ".status"
# PEP 752's namespace list and details, JSON only, in this directory of the
# pages: no project's page is ever called that (a PEP 503 name has no "_"),
# and replication pushes it with the pages (it copies no hidden file).
NAMESPACES = "_namespaces"
# An empty file here at each path (under /packages/) of a quarantined
# project's file: Apache answers 404 for it and its metadata (PEP 792: a
# quarantined project offers no file for download).
QUARANTINED = "_quarantined"
# Renamed into the pages directory after each build, for the replication
# service (replicate.py) to push what the build wrote; until a host's first
# build has ended, Apache answers 503 for /simple/ and /health (the
# first-build partial of the site), rather than a partial index.
BUILT = ".built"
# What the pages were last built from (Pages.inputs): a file beside the
# state file, named after it with this suffix.
INPUTS = ".inputs"


def entry(package):
    """A package pypiserver lists, with the size and mtime its record is kept for."""
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


def yanked(fn):
    """The reason a file is yanked (its `<file>.yanked` beside it, maybe empty), or None."""
    try:
        with open(fn + YANKED, encoding="utf-8", errors="replace") as handle:
            return " ".join(handle.read().split())
    except FileNotFoundError:
        return None


def covers(namespace, project):
    """Whether a namespace covers a project (PEP 752): its own name, or the name and a hyphen before the rest."""
    return project == namespace or project.startswith(namespace + "-")


def namespaces_from(rules):
    """The namespaces the publish rules file declares (normalized), none without one."""
    if rules is None or not Path(rules).is_file():
        return ()
    return tuple(sorted(json.loads(Path(rules).read_text()).get("namespaces", {})))


def statuses(roots):
    """Every project's status mark in the roots, by normalized name."""
    found = {}
    for root in roots:
        for path in Path(root).glob("*" + STATUS):
            status = read_status(path)
            if status:
                found[normalize_pkgname(path.name[:-len(STATUS)])] = status
    return found


def read_status(path):
    """A status mark's {status, reason}, or None when there is none (or it is not one)."""
    try:
        status = json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return status if isinstance(status, dict) and status.get("status") not in (None, "active") else None


def log(**fields):
    """One JSON line on standard output (the journal, under systemd)."""
    print(json.dumps(fields), flush=True)


def write(path, text):
    """Replace path with text atomically, unless it already holds it; True when written."""
    data = text.encode() if isinstance(text, str) else text
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=".", delete=False) as handle:
        handle.write(data)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)
    return True


def write_page(directory, html, json_text):
    """One page's forms, a gzip copy of the JSON and the type-map; 1 if the page changed, else 0."""
    changed = [write(directory / "index.html", html), write(directory / "index.json", json_text)]
    # mtime=0: the same page gives the same bytes, so an unchanged one is not rewritten.
    write(directory / "index.json.gz", gzip.compress(json_text.encode(), mtime=0))
    write(directory / "index.var", render.TYPE_MAP)
    alias = directory / "index.v1html"
    if not alias.is_symlink():
        alias.symlink_to("index.html")
    return int(any(changed))


def report(written, removed):
    """Print the counts of a build and return them, so a caller (or a test) sees them too."""
    counts = {"written": written, "removed": removed}
    log(**counts)
    return counts


class Pages:
    """The pages of some package roots, and the files they list, kept between builds."""

    def __init__(self, out, state, roots, algo, metadata, namespaces=()):
        self.out, self.state, self.roots, self.algo = Path(out), Path(state), roots, algo
        self.namespaces = tuple(namespaces)
        self.metadata = Path(metadata)
        try:
            previous = json.loads(self.state.read_text())
        except (FileNotFoundError, ValueError):
            previous = {}
        current = previous.get("format") == STATE_FORMAT and previous.get("algo") == algo
        self.records = previous.get("files", {}) if current else {}
        self.projects, self.statuses = {}, {}
        # What the pages now written were built from, when known without a new walk.
        self.built_from = None

    def inputs(self):
        """A digest of what the pages are built from: every entry of the roots (name, size, time), the
        settings, the namespaces, and this code with pypiserver's version."""
        digest = hashlib.sha256(json.dumps([
            STATE_FORMAT, str(self.out), str(self.state), [str(root) for root in self.roots], self.algo,
            str(self.metadata), self.namespaces, importlib.metadata.version("pypiserver")]).encode())
        for code in (files.__file__, render.__file__, __file__):
            digest.update(Path(code).read_bytes())
        for root in self.roots:
            for directory, subdirectories, names in os.walk(root):
                subdirectories.sort()
                for name in sorted(names):
                    path = os.path.join(directory, name)
                    facts = os.lstat(path)
                    digest.update(f"{path}\0{facts.st_size}\0{facts.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def inputs_file(self):
        return self.state.with_name(self.state.name + INPUTS)

    def current(self):
        """Whether the pages were built from exactly what is there now."""
        try:
            recorded = self.inputs_file().read_text()
        except FileNotFoundError:
            return False
        return ((self.out / "index.html").is_file() and (self.out / BUILT).is_file() and self.state.is_file()
                and recorded == self.inputs())

    def metadata_path(self, package):
        return self.metadata / (package.relfn_unix + ".metadata")

    def record(self, known):
        """A file's record, read from the file only when its size or mtime changed."""
        package, size, mtime = known
        kept = self.records.get(package.fn)
        if kept is not None and kept[:2] == [size, mtime]:
            facts = dict(zip(RECORD, kept))
            if not facts["metadata"] or self.metadata_path(package).is_file():
                return facts
        facts, data = files.record(package.fn, size, mtime, self.algo)
        if facts["skip"]:
            log(skipped=package.fn, reason=facts["skip"])
        elif facts["note"]:
            log(listed=package.fn, note=facts["note"])
        if data is not None:
            # Written before any page names it: an advertised file is always there.
            write(self.metadata_path(package), data)
        self.records[package.fn] = [facts[field] for field in RECORD]
        return facts

    def project_pages(self, name, entries):
        """A project's HTML and JSON, its files sorted by version as pip ranks them."""
        status = self.statuses.get(name)
        if status and status["status"] == "quarantined":
            entries = []
        entries = sorted(entries, key=lambda known: (known[0].parsed_version, known[0].relfn))
        shown, versions = [], []
        for known in entries:
            facts = self.record(known)
            if facts["skip"]:
                continue
            package = known[0]
            shown.append({**facts, "path": package.relfn_unix, "yanked": yanked(package.fn)})
            if package.version not in versions:
                versions.append(package.version)
        # PEP 752: every namespace that covers the project; an upload by
        # anyone its grant does not name is refused, so the project's owner
        # always owns it.
        covering = [{"name": namespace, "owned": True} for namespace in self.namespaces if covers(namespace, name)]
        return (render.project_html(name, shown, self.algo, status),
                render.project_json(name, shown, versions, self.algo, status, covering or None))

    def write_project(self, name):
        return write_page(self.out / name, *self.project_pages(name, self.projects[name]))

    def write_index(self):
        return write_page(self.out, render.index_html(self.projects), render.index_json(self.projects))

    def build_all(self):
        """List every root and write every page that changed."""
        self.out.mkdir(parents=True, exist_ok=True)
        # Before the listing: a file that lands during the build makes the
        # record differ, so the next check builds again.
        self.built_from = self.inputs()
        self.projects = scan(self.roots)
        self.statuses = statuses(self.roots)
        for name in self.statuses:
            self.projects.setdefault(name, [])
        self.write_quarantined()
        written = sum(self.write_project(name) for name in self.projects)
        written += self.write_index()
        self.write_namespaces()
        gone = [path for path in self.out.iterdir()
                if path.is_dir() and path.name not in (NAMESPACES, QUARANTINED) and path.name not in self.projects]
        for path in gone:
            shutil.rmtree(path)
        self.prune_metadata()
        counts = report(written, len(gone))
        self.save()
        return counts

    def write_namespaces(self):
        """PEP 752's namespace list and one detail per namespace, in _namespaces/ (not counted as pages)."""
        def parent(name):
            """The longest other namespace that covers this one, or None."""
            return max((other for other in self.namespaces if other != name and covers(other, name)),
                       key=len, default=None)

        directory = self.out / NAMESPACES
        write(directory / "list.json", json.dumps([{"name": name} for name in self.namespaces]))
        for name in self.namespaces:
            children = [other for other in self.namespaces if parent(other) == name]
            write(directory / f"{name}.json", json.dumps({"name": name, "parent": parent(name), "children": children}))
        for path in directory.glob("*.json"):
            if path.name != "list.json" and path.name[:-len(".json")] not in self.namespaces:
                path.unlink()

    def write_quarantined(self):
        """A mark for each file of a quarantined project, in QUARANTINED (written before its page drops it);
        the marks of files no longer quarantined are removed."""
        directory = self.out / QUARANTINED
        wanted = {known[0].relfn_unix for name, status in self.statuses.items() if status["status"] == "quarantined"
                  for known in self.projects.get(name, [])}
        for relative in wanted:
            write(directory / relative, "")
        for path in (directory.rglob("*") if directory.is_dir() else ()):
            if path.is_file() and path.relative_to(directory).as_posix() not in wanted:
                path.unlink()

    def prune_metadata(self):
        """Remove the metadata of files no longer listed (after the pages stopped naming them)."""
        if not self.metadata.is_dir():
            return
        wanted = {str(self.metadata_path(known[0])) for entries in self.projects.values() for known in entries}
        for directory, _, names in os.walk(self.metadata):
            for name in names:
                path = os.path.join(directory, name)
                if path not in wanted:
                    os.unlink(path)

    def update(self, changed):
        """Rebuild the pages of the projects whose files changed: (root, file name) pairs.

        A `<file>.yanked` counts as a change of its file, a `<project>.status`
        as a change of its project; a name pypiserver would not list as a
        package changes nothing. The records are not saved (see save).
        """
        before, touched, dropped = set(self.projects), set(), []
        self.built_from = None
        for root, name in changed:
            if name.endswith(STATUS) and not name.startswith("."):
                project = normalize_pkgname(name[:-len(STATUS)])
                found = [status for status in map(read_status, (Path(root) / name for root in self.roots)) if status]
                if found:
                    self.statuses[project] = found[0]
                else:
                    self.statuses.pop(project, None)
                self.projects.setdefault(project, [])
                touched.add(project)
                continue
            name = name[:-len(YANKED)] if name.endswith(YANKED) else name
            guessed = guess_pkgname_and_version(name) if is_listed_path(name) else None
            if guessed is None:
                continue
            project = normalize_pkgname(guessed[0])
            fn = str(Path(root).resolve() / name)
            entries = []
            for known in self.projects.get(project, []):
                (dropped if known[0].fn == fn else entries).append(known)
            found = listed(root, name)
            if found:
                entries.append(found)
            if entries or project in self.projects:
                self.projects[project] = entries
                touched.add(project)
        gone = {project for project in touched if not self.projects[project] and project not in self.statuses}
        self.write_quarantined()
        written = sum(self.write_project(project) for project in touched - gone)
        for project in gone:
            del self.projects[project]
        # The root page stops linking a project before its page goes.
        if set(self.projects) != before:
            written += self.write_index()
        for project in gone:
            shutil.rmtree(self.out / project, ignore_errors=True)
        self.drop_metadata(dropped)
        return report(written, len(gone))

    def drop_metadata(self, dropped):
        """Remove the metadata of files that left the pages, unless the same path is listed again."""
        still = {known[0].fn for entries in self.projects.values() for known in entries}
        for known in dropped:
            if known[0].fn not in still:
                self.metadata_path(known[0]).unlink(missing_ok=True)

    def save(self):
        """Keep the records of the files listed now (only those), for the next start."""
        listed_now = {known[0].fn for entries in self.projects.values() for known in entries}
        self.records = {fn: kept for fn, kept in self.records.items() if fn in listed_now}
        write(self.state, json.dumps({"format": STATE_FORMAT, "algo": self.algo, "files": self.records}))
        # After updates, the watcher saves once the roots have been quiet:
        # what they hold then is what the pages list.
        write(self.inputs_file(), self.built_from or self.inputs())


def build_all(out, state, roots, algo, metadata, namespaces=(), if_changed=False):
    """One build of every page, or none if_changed and nothing changed since the last; the records already
    read are kept in the state file."""
    pages = Pages(out, state, roots, algo, metadata, namespaces)
    if if_changed and pages.current():
        log(current=True)
        return report(0, 0)
    counts = pages.build_all()
    mark_built(out)
    return counts


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


def mark_built(out):
    """Tell the replication service that a build ended (a new stamp, renamed into place)."""
    write(Path(out) / BUILT, f"{time.time_ns()}\n")


def record_build(path, pages, began):
    """Tell monitoring, if given a metrics file, that a build (begun at `began`) ended: when, how long it took,
    what it listed."""
    ended = time.time()
    if path is not None:
        write(path, metrics.text([
            metrics.family("pypi_index_pages_built_timestamp_seconds", "When the page service last ended a build.",
                           [(None, ended)]),
            metrics.family("pypi_index_pages_build_duration_seconds", "How long the page service's last build took.",
                           [(None, ended - began)]),
            metrics.family("pypi_index_projects", "Projects the pages list.", [(None, len(pages.projects))]),
            metrics.family("pypi_index_files", "Files the pages list.",
                           [(None, sum(len(entries) for entries in pages.projects.values()))]),
        ]))


def watch(out, state, roots, algo, metadata, namespaces=(), metrics_path=None):
    """Build, then rebuild what changed after every burst of changes in the roots. A change of the namespaces
    restarts the service (the pypi_index role)."""
    descriptor, watches = inotify(roots)
    pages = Pages(out, state, roots, algo, metadata, namespaces)
    began = time.time()
    pages.build_all()
    mark_built(out)
    record_build(metrics_path, pages, began)
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
        began = time.time()
        if changed is None:
            pages.build_all()
        else:
            pages.update(changed)
        mark_built(out)
        record_build(metrics_path, pages, began)
        unsaved = changed is not None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory the pages go to")
    parser.add_argument("--state", type=Path, required=True, help="JSON file of the file records already read")
    parser.add_argument("--hash-algo", default="sha256", help="hashlib name for the #fragment; empty for none")
    parser.add_argument("--metadata", type=Path, required=True,
                        help="directory the wheels' METADATA files go to (PEP 658)")
    parser.add_argument("--watch", action="store_true", help="build, then build again on every change")
    parser.add_argument("--if-changed", action="store_true",
                        help="build only if the roots, the settings or this code changed since the last build")
    parser.add_argument("--rules", type=Path, help="the publish rules (publish.py), for PEP 752's namespaces")
    parser.add_argument("--metrics", type=Path,
                        help="with --watch, the file that holds each build's time, duration and counts (metrics.py)")
    parser.add_argument("roots", nargs="+")
    args = parser.parse_args()

    namespaces = namespaces_from(args.rules)
    if args.watch:
        watch(args.out, args.state, args.roots, args.hash_algo, args.metadata, namespaces, args.metrics)
    else:
        build_all(args.out, args.state, args.roots, args.hash_algo, args.metadata, namespaces, args.if_changed)


if __name__ == "__main__":
    main()
