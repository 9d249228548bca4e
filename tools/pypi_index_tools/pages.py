"""Write the index's Simple API pages (/simple/) as static files for Apache to serve.

The role runs it once per play; pypi-index-pages.service runs it with
--watch: it builds every page once, keeps what it listed in memory, and then,
whenever files in a package root are closed after writing, renamed or
deleted, rebuilds only the pages of their projects (and the root page when a
project appears or goes), so that an upload is listed as fast at 200,000
files as at 20. The roots are listed with pypiserver's own code, so the pages
name exactly what pypiserver would; a file is read again (digest, metadata)
only when its size or mtime changed. What it keeps of each file is a tuple of
plain values (File), not pypiserver's object, so that the service's memory
stays small at 200,000 files; a build reads the files it has no record of
(a first build: all of them) in a pool of worker processes, one per core.
Each page is written in HTML and JSON with a type-map (render.py); each
wheel's METADATA goes to the metadata directory for PEP 658. Each build logs
how many pages it wrote and removed, and each file it skips, with the reason
(files.py). With the publish rules
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
import contextlib
import ctypes
import filecmp
import functools
import gzip
import hashlib
import importlib.metadata
import json
import multiprocessing
import os
import select
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from pypiserver.backend import listdir, valid_packages
from pypiserver.pkg_helpers import guess_pkgname_and_version, is_listed_path, normalize_pkgname, parse_version

from pypi_index_tools import files, metrics, render
from pypi_index_tools.names import is_project

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

# A file's record as the state file keeps it (files.record's fields), one
# JSON line per file after a header line: read and written a line at a time,
# so that neither needs the whole file in memory.
RECORD = ("size", "mtime", "digest", "requires_python", "metadata", "skip")
STATE_FORMAT = 3
# The header line is read at most this long: an older format's state is one
# long line, which is then ignored without being read whole.
STATE_HEADER_MAX = 200
# Below this many files to read, starting the pool's interpreters costs more than the pool saves.
POOL_FROM = 200
# Files handed to a worker at once: few enough that every worker stays busy until the end.
CHUNK = 32
YANKED = ".yanked"
# A project's PEP 792 status: `<project>.status` at the top of a package root,
# holding {"status": ..., "reason": ...} (pypi_index_release's status entry
# point writes it). A quarantined project lists no file; a status makes a
# page even for a name with no file here, so that a quarantined public name
# is answered here and never passed through to the upstream.
STATUS = ".status"
# PEP 792's statuses.
PROJECT_STATUSES = ("active", "archived", "quarantined", "deprecated")
# A file removed by the operators (pypi_index_release's remove entry point):
# `<file>.removed` beside where it was. Its project keeps a page, with no
# file, so that a name this index has held is never passed through to the
# upstream, and its file name is never taken by another upload (uploads.py),
# until the operators release the name (the release entry point deletes
# these marks).
REMOVED = ".removed"
# PEP 752's namespace list and details, JSON only, in this directory of the
# pages: no project's page is ever called that (a PEP 503 name has no "_"),
# and replication pushes it with the pages (it copies no hidden file).
NAMESPACES = "_namespaces"
# An empty file here at each path (under /packages/) of a quarantined
# project's file: Apache answers 404 for it and its metadata (PEP 792: a
# quarantined project offers no file for download).
QUARANTINED = "_quarantined"
# And a mark here for each quarantined project's name, in each spelling its
# files' names may give it (PEP 427 and PEP 625 write "_" for "-"), for the
# pass-through's file URLs (/upstream-files/...): a public project's files,
# cached or not, are 404 too.
QUARANTINED_PROJECTS = "_projects"
# Renamed into the pages directory after each build, for the replication
# service (replicate.py) to push what the build wrote; until a host's first
# build has ended, Apache answers 503 for /simple/ and /health (the
# first-build partial of the site), rather than a partial index.
BUILT = ".built"
# What the pages were last built from (Pages.inputs): a file beside the
# state file, named after it with this suffix.
INPUTS = ".inputs"


class File(NamedTuple):
    """A file the pages list, as they keep it between builds: plain values, shared where they repeat (the root,
    the version, Requires-Python), a few hundred bytes where pypiserver's PkgFile takes about a kilobyte.

    fn is the file's path (PkgFile.fn): the very string the state file's record was found under, when there was one,
    so that a build from kept records leaves no freed string behind for each file (holes that would keep the
    memory of the build). hashes is None until the file is read (a quarantined project's files are not), else the
    bytes of its digest followed by those of its METADATA's sha256 (none without metadata); size and mtime are
    those it was read at.
    """
    fn: str
    root: str
    version: str
    size: int
    mtime: int
    hashes: bytes | None
    requires_python: str | None
    skip: str | None

    @property
    def relfn(self):
        """The file's path under its root, as PkgFile.relfn."""
        return self.fn[len(self.root) + 1:]

    @property
    def path(self):
        """The file's path under its root in URLs, as PkgFile.relfn_unix."""
        return self.relfn.replace("\\", "/")


def rank(file):
    """pypiserver's order of a project's files (PkgFile.parsed_version, then relfn): the order pip ranks them in."""
    return parse_version(file.version), file.relfn


def listed(root, name):
    """The PkgFile of the file `name` at the top of `root` as listdir would give it, or None."""
    root = Path(root).resolve()
    path = root / name
    if not is_listed_path(name) or not path.is_file():
        return None
    return next(valid_packages(root, [path]), None)


def read(task):
    """Read one file (files.record) and write its METADATA for PEP 658, in a pool's worker or in the builder:
    File's hashes, requires_python and skip, and the note about the file, if any."""
    fn, size, mtime, algo, metadata = task
    facts, data = files.record(fn, size, mtime, algo)
    if data is not None:
        # Written before any page names it: an advertised file is always there.
        write(Path(metadata), data)
    hashes = bytes.fromhex(facts["digest"] or "") + bytes.fromhex(facts["metadata"] or "")
    return hashes, facts["requires_python"], facts["skip"], facts["note"]


@contextlib.contextmanager
def reading(count, workers):
    """A map of `read` over `count` files: a pool's across the workers (in order, a chunk at a time, so its memory
    stays bounded) when there are enough files to pay for it, else the builtin."""
    if workers < 2 or count < POOL_FROM:
        yield map
        return
    # Spawned, not forked: a forked worker would start with (and count) all the builder's memory.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield functools.partial(pool.imap, chunksize=CHUNK)


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
            project = status_project(path.name)
            status = read_status(path) if project else None
            if status:
                found[project] = status
    return found


def removal_marks(roots):
    """Each removal mark (`<file>.removed`) in the roots, as (its project's normalized name, its path)."""
    for root in roots:
        for path in Path(root).glob("*" + REMOVED):
            guessed = guess_pkgname_and_version(path.name[:-len(REMOVED)])
            if guessed and is_project(normalize_pkgname(guessed[0])):
                yield normalize_pkgname(guessed[0]), path


def held(roots):
    """The projects that have a file removed by the operators."""
    return {project for project, _ in removal_marks(roots)}


def status_project(name):
    """The normalized project a status mark's file name is for, or None when it names no valid project."""
    if name.startswith(".") or not name.endswith(STATUS):
        return None
    project = normalize_pkgname(name[:-len(STATUS)])
    return project if is_project(project) else None


def read_status(path):
    """A status mark's {status, reason}, or None when there is none, or it is active, or it is not one that
    pypi_index_release writes (logged): a status of PEP 792's and a text reason, if any."""
    try:
        status = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError, OSError) as error:
        log(skipped=str(path), reason=f"not a status mark: {error}")
        return None
    if not (isinstance(status, dict) and status.get("status") in PROJECT_STATUSES
            and isinstance(status.get("reason", ""), (str, type(None)))):
        log(skipped=str(path), reason="not a status mark: a status of PEP 792's and a text reason")
        return None
    return status if status["status"] != "active" else None


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


def write_lines(path, lines):
    """Replace path with these lines atomically, unless it already holds them, writing (and comparing) a line at a
    time rather than the whole text at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=".", delete=False) as handle:
        handle.writelines(lines)
    if path.is_file() and filecmp.cmp(handle.name, path, shallow=False):
        os.unlink(handle.name)
        return
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)


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

    def __init__(self, out, state, roots, algo, metadata, namespaces=(), workers=None):
        self.out, self.state, self.roots, self.algo = Path(out), Path(state), roots, algo
        self.namespaces = tuple(namespaces)
        self.metadata = Path(metadata)
        # The processes that read files a build has no record of: one per core it may use.
        self.workers = workers or len(os.sched_getaffinity(0))
        # How many of a File's hashes are the digest's (the rest: the METADATA's sha256).
        self.digest_size = hashlib.new(algo).digest_size if algo else 0
        # Each project's files (File), in pypiserver's order, by normalized name.
        self.projects, self.statuses = {}, {}
        # The paths of the files left off the pages because their name gives no valid project.
        self.invalid = set()
        # The projects with a file removed by the operators (REMOVED): each keeps a page.
        self.held = set()
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

    def metadata_path(self, file):
        return self.metadata / (file.path + ".metadata")

    def record(self, file):
        """A file's record as the state file keeps it (RECORD's fields)."""
        digest, metadata = file.hashes[:self.digest_size], file.hashes[self.digest_size:]
        return [file.size, file.mtime, digest.hex() if self.algo else None, file.requires_python,
                metadata.hex() or None, file.skip]

    def records(self):
        """The records of the files listed now (those read), by project name: (path, record) pairs."""
        for name in sorted(self.projects):
            for file in self.projects[name]:
                if file.hashes is not None:
                    yield file.fn, self.record(file)

    def is_state(self, header):
        """Whether the state file's header line is this format's, for this algorithm."""
        try:
            header = json.loads(header)
        except ValueError:
            return False
        return isinstance(header, dict) and header.get("format") == STATE_FORMAT and header.get("algo") == self.algo

    def read_state(self):
        """The records the state file keeps, as Files (without root or version) by path; none from another format
        or algorithm."""
        kept = {}
        try:
            with open(self.state, encoding="utf-8") as handle:
                if not self.is_state(handle.readline(STATE_HEADER_MAX)):
                    return {}
                for line in handle:
                    fn, size, mtime, digest, requires_python, metadata, skip = json.loads(line)
                    hashes = bytes.fromhex(digest or "") + bytes.fromhex(metadata or "")
                    kept[fn] = File(fn, None, None, size, mtime, hashes,
                                    requires_python and sys.intern(requires_python), skip)
        except (FileNotFoundError, ValueError, TypeError):
            return {}
        return kept

    def kept(self):
        """The records already read, as Files by path: those of the files listed now, else the state file's."""
        if not self.projects:
            return self.read_state()
        return {file.fn: file for files in self.projects.values() for file in files if file.hashes is not None}

    def file(self, package, kept=None):
        """A file pypiserver lists (its PkgFile) as the pages keep it: with its kept record (a File) if that is
        still the file's (same size and mtime, its metadata written), else unread."""
        stat = os.stat(package.fn)
        root, version = sys.intern(package.root), sys.intern(package.version)
        if kept is not None and (kept.size, kept.mtime) == (stat.st_size, stat.st_mtime_ns):
            file = kept._replace(root=root, version=version)
            if len(file.hashes) == self.digest_size or self.metadata_path(file).is_file():
                return file
        return File(package.fn, root, version, stat.st_size, stat.st_mtime_ns, None, None, None)

    def scan(self, kept):
        """Every file pypiserver lists in the roots, by normalized project name, in pypiserver's order; each
        PkgFile is kept only until its File is made. The records (kept) are taken out as they are used."""
        projects, self.invalid = {}, set()
        for root in self.roots:
            for package in listdir(Path(root)):
                if not is_project(package.pkgname_norm):
                    self.skip_invalid(package.fn)
                    continue
                projects.setdefault(package.pkgname_norm, []).append(self.file(package, kept.pop(package.fn, None)))
        for entries in projects.values():
            entries.sort(key=rank)
        return projects

    def skip_invalid(self, fn):
        """Leave off the pages a file whose name gives no valid project (the upload application takes none: one
        put in a root by hand), saying so; counted in the metrics."""
        self.invalid.add(fn)
        log(skipped=fn, reason="its file name gives no valid project name")

    def quarantined(self, name):
        status = self.statuses.get(name)
        return bool(status) and status["status"] == "quarantined"

    def read_unread(self, names, workers=1):
        """Read the files of these projects that have no record yet (all but a quarantined project's), with
        `workers` processes when they are many; yield each project's name once its files are read, so that its
        pages are written while the workers read on."""
        unread = {name: [index for index, file in enumerate(self.projects[name]) if file.hashes is None]
                  for name in names if not self.quarantined(name)}
        # Made as the pool takes them (in its own thread), each before its File is replaced here.
        tasks = ((file.fn, file.size, file.mtime, self.algo, str(self.metadata_path(file)))
                 for name, indices in unread.items() for file in map(self.projects[name].__getitem__, indices))
        with reading(sum(map(len, unread.values())), workers) as mapping:
            results = mapping(read, tasks)
            for name in names:
                for index in unread.get(name, ()):
                    self.projects[name][index] = self.with_record(self.projects[name][index], *next(results))
                yield name

    def with_record(self, file, hashes, requires_python, skip, note):
        """A File with what `read` found, which is logged when the file is skipped or noted."""
        if skip:
            log(skipped=file.fn, reason=skip)
        elif note:
            log(listed=file.fn, note=note)
        return file._replace(hashes=hashes, requires_python=requires_python and sys.intern(requires_python), skip=skip)

    def project_pages(self, name):
        """A project's HTML and JSON, its files sorted by version as pip ranks them."""
        status = self.statuses.get(name)
        shown, versions = [], []
        for file in ([] if self.quarantined(name) else self.projects[name]):
            if file.skip:
                continue
            size, mtime, digest, requires_python, metadata, _ = self.record(file)
            shown.append({"size": size, "mtime": mtime, "digest": digest, "requires_python": requires_python,
                          "metadata": metadata, "path": file.path, "yanked": yanked(file.fn)})
            if file.version not in versions:
                versions.append(file.version)
        # PEP 752: every namespace that covers the project; an upload by
        # anyone its grant does not name is refused, so the project's owner
        # always owns it.
        covering = [{"name": namespace, "owned": True} for namespace in self.namespaces if covers(namespace, name)]
        return (render.project_html(name, shown, self.algo, status),
                render.project_json(name, shown, versions, self.algo, status, covering or None))

    def write_project(self, name):
        return write_page(self.out / name, *self.project_pages(name))

    def write_index(self):
        return write_page(self.out, render.index_html(self.projects), render.index_json(self.projects))

    def build_all(self):
        """List every root, read the files without a record, and write every page that changed."""
        self.out.mkdir(parents=True, exist_ok=True)
        # Before the listing: a file that lands during the build makes the
        # record differ, so the next check builds again.
        self.built_from = self.inputs()
        self.statuses = statuses(self.roots)
        self.held = held(self.roots)
        kept = self.kept()
        # The last listing goes before the new one is made: both at once would double the memory.
        self.projects = {}
        self.projects = self.scan(kept)
        del kept
        for name in (*self.statuses, *self.held):
            self.projects.setdefault(name, [])
        self.write_quarantined()
        written = sum(self.write_project(name) for name in self.read_unread(list(self.projects), self.workers))
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
        """A mark for each file of a quarantined project, and for its name (QUARANTINED_PROJECTS), in QUARANTINED
        (written before its page drops them); the marks of files and names no longer quarantined are removed."""
        directory = self.out / QUARANTINED
        quarantined = [name for name in self.statuses if self.quarantined(name)]
        wanted = {file.path for name in quarantined for file in self.projects.get(name, [])}
        wanted |= {f"{QUARANTINED_PROJECTS}/{name.replace('-', separator)}"
                   for name in quarantined for separator in "-_."}
        for relative in wanted:
            write(directory / relative, "")
        # Deepest first, so that a directory its marks left empty goes too.
        for path in sorted(directory.rglob("*") if directory.is_dir() else (), reverse=True):
            if path.is_file() and path.relative_to(directory).as_posix() not in wanted:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()

    def prune_metadata(self):
        """Remove the metadata of files no longer listed (after the pages stopped naming them)."""
        if not self.metadata.is_dir():
            return
        # The listed files' paths (the very strings the Files hold), not their metadata's: no new string each.
        wanted = {file.path for entries in self.projects.values() for file in entries}
        prefix, suffix = len(str(self.metadata)) + 1, len(".metadata")
        for directory, _, names in os.walk(self.metadata):
            for name in names:
                path = os.path.join(directory, name)
                if not (name.endswith(".metadata") and path[prefix:-suffix] in wanted):
                    os.unlink(path)

    def update(self, changed):
        """Rebuild the pages of the projects whose files changed: (root, file name) pairs.

        A `<file>.yanked` or `<file>.removed` counts as a change of its file,
        a `<project>.status` as a change of its project; a name pypiserver
        would not list as a package changes nothing. The records are not saved
        (see save).
        """
        before, touched, dropped = set(self.projects), set(), []
        self.built_from = None
        # One listing of the marks for a burst, however many of them changed.
        if any(name.endswith(REMOVED) for _, name in changed):
            self.held = held(self.roots)
        for root, name in changed:
            if name.endswith(STATUS) and not name.startswith("."):
                project = status_project(name)
                if project is None:
                    continue
                found = [status for status in map(read_status, (Path(root) / name for root in self.roots)) if status]
                if found:
                    self.statuses[project] = found[0]
                else:
                    self.statuses.pop(project, None)
                self.projects.setdefault(project, [])
                touched.add(project)
                continue
            name = name[:-len(REMOVED)] if name.endswith(REMOVED) else name
            name = name[:-len(YANKED)] if name.endswith(YANKED) else name
            guessed = guess_pkgname_and_version(name) if is_listed_path(name) else None
            if guessed is None:
                continue
            project = normalize_pkgname(guessed[0])
            fn = str(Path(root).resolve() / name)
            if not is_project(project):
                if listed(root, name):
                    self.skip_invalid(fn)
                else:
                    self.invalid.discard(fn)
                continue
            entries, kept = [], None
            for file in self.projects.get(project, []):
                if file.fn == fn:
                    dropped.append(file)
                    kept = file if file.hashes is not None else None
                else:
                    entries.append(file)
            package = listed(root, name)
            if package:
                entries.append(self.file(package, kept))
            if entries or project in self.projects or project in self.held:
                self.projects[project] = sorted(entries, key=rank)
                touched.add(project)
        gone = {project for project in touched
                if not self.projects[project] and project not in self.statuses and project not in self.held}
        self.write_quarantined()
        written = sum(self.write_project(project) for project in self.read_unread(sorted(touched - gone)))
        for project in gone:
            del self.projects[project]
        # The root page stops linking a project before its page goes.
        if set(self.projects) != before:
            written += self.write_index()
        for project in gone:
            shutil.rmtree(self.out / project, ignore_errors=True)
        self.drop_metadata(dropped, touched)
        return report(written, len(gone))

    def drop_metadata(self, dropped, touched):
        """Remove the metadata of files that left the pages, unless the same path is listed again (in its project,
        one of those touched)."""
        still = {file.fn for project in touched for file in self.projects.get(project, [])}
        for file in dropped:
            if file.fn not in still:
                self.metadata_path(file).unlink(missing_ok=True)

    def state_lines(self):
        """The state file's lines: its header, then each record with its file's path."""
        yield json.dumps({"format": STATE_FORMAT, "algo": self.algo}) + "\n"
        for fn, record in self.records():
            yield json.dumps([fn, *record]) + "\n"

    def save(self):
        """Keep the records of the files listed now (only those), for the next start."""
        write_lines(self.state, self.state_lines())
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
            metrics.family("pypi_index_files_skipped", "Files in the package roots the pages leave off (unreadable, "
                           "or their name gives no valid project); the page service's log says why.",
                           [(None, len(pages.invalid) + sum(1 for entries in pages.projects.values()
                                                       for file in entries if file.skip))]),
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
