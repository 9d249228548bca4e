"""Push the primary's package files, metadata and pages to its replicas with rsync.

pypi-index-replicate.service runs it on the primary. Each replica gets a pass
when the service starts, whenever the page service reports a build (it
renames a stamp, pages.BUILT, into the pages directory), and every --repair
seconds regardless, so that a replica that was down catches up once it is
back. A pass copies, in this order, so that a replica never lists a file it
lacks and never loses a file that one of its pages still names (the order of
Debian's mirror pushes: files first, indexes last):

1. new and changed package files and metadata, deleting nothing;
2. the pages, deleting those that are gone (all of them put in place at the
   end, --delay-updates), but those written since the pass began: they may
   name a file that step 1 did not see, and stay as they were on the replica
   until the next pass (which the build that wrote them asks for);
3. the package files and metadata again, deleting what is gone from the
   primary, which no page names any more; skipped when step 2 held a page
   back, which may still name a file gone from the primary;
4. the in-sync mark (MARK) in the replica's pages directory, which its
   /health serves, holding the time the pass began: a replica removes its
   mark when it boots or when it is older than its lag limit, so one that
   restarted or was cut off stays out of the balancer's pool until a whole
   pass reached it.

A step that fails (a full disk, a broken key) ends the pass, so that a
replica never lists a file it does not hold whole; the next pass repeats it.
Each replica has a thread of its own, so one that is down delays no other.
Hidden files (an upload being written, a page being replaced) are never
copied, the page service's records (.hashes.json) are, so that a promoted
replica reads no file again. Each pass logs one JSON line, a failed one with
the step, rsync's error and how far behind the replica is; --metrics keeps
each replica's last pass and lag in a file of Prometheus's text format (node
exporter's textfile collector reads it).
"""

import argparse
import os
import select
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from pypi_index_tools import metrics
from pypi_index_tools.metrics import family
from pypi_index_tools.pages import BUILT, drain, inotify, log, write

MARK = ".in-sync"
HIDDEN = ["--exclude=.*"]
PAGES_KEPT = ["--include=/.hashes.json"]
# Archive mode without owner and group: the replica's account owns its copy.
# A page rewritten within the second it was copied in keeps its size more
# often than not (a hash for a hash): rsync's quick check compares whole
# seconds unless the window is negative, and would skip it.
COPY = ["--recursive", "--links", "--perms", "--times", "--modify-window=-1"]


def module_arg(text):
    """NAME=PATH, a module of the replicas' rsyncd.conf and the directory that fills it."""
    name, _, path = text.partition("=")
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


class Passes:
    """The rsync commands of a pass, and running them for one replica."""

    def __init__(self, files, pages, dest, rsync_options):
        self.files = files
        self.pages = pages
        self.dest = dest
        self.rsync = ["rsync", *COPY, *rsync_options]

    def target(self, replica, module):
        return self.dest.format(host=replica, module=module)

    def young(self, since_ns):
        """The pages directory's entries (a project's pages, whose directory a page replaced in it touches,
        the root page) written at or after that file time."""
        with os.scandir(self.pages[1]) as entries:
            return sorted(entry.name for entry in entries
                          if not entry.name.startswith(".")
                          and entry.stat(follow_symlinks=False).st_mtime_ns >= since_ns)

    def steps(self, replica, mark, held_back=()):
        """The pass's steps, in order, each a list of commands; the pages' step leaves held_back out."""
        def copy(module, source, *options):
            return [*self.rsync, *options, f"{source}/", self.target(replica, module)]

        pages_name, pages_path = self.pages
        # Anchored, and before the other rules: an excluded page is neither
        # copied nor deleted. The names are normalized ones (a-z, 0-9, "-",
        # "_" for the page service's own), with no wildcard in them.
        keep = [f"--exclude=/{name}" for name in held_back]
        return [[copy(name, path, *HIDDEN) for name, path in self.files],
                [copy(pages_name, pages_path, "--delete", "--delay-updates", *keep, *PAGES_KEPT, *HIDDEN)],
                [] if held_back else [copy(name, path, "--delete", *HIDDEN) for name, path in self.files],
                [[*self.rsync, str(mark), self.target(replica, pages_name) + MARK]]]

    def run(self, replica, behind=None):
        """One pass to the replica; the time it began (time.time()) when every step succeeded, else None."""
        started, started_ns = time.monotonic(), time.time_ns()
        with tempfile.NamedTemporaryFile("w", prefix="mark-") as mark:
            mark.write(f"{started_ns / 1e9:.3f}\n")
            mark.flush()
            # The replica's Apache reads what its account was sent.
            os.chmod(mark.name, 0o644)
            # The pass's start as a file time: files' times come from the
            # kernel's coarse clock, a tick behind time.time_ns() at most.
            since_ns = os.stat(mark.name).st_mtime_ns
            if not self.execute(replica, self.steps(replica, mark.name)[0], behind):
                return None
            held_back = self.young(since_ns)
            if not self.execute(replica, sum(self.steps(replica, mark.name, held_back)[1:], []), behind):
                return None
        log(replica=replica, ok=True, seconds=round(time.monotonic() - started, 3), held_back=len(held_back))
        return started_ns / 1e9

    @staticmethod
    def execute(replica, commands, behind):
        """Run the commands in order; False, logged with why, at the first that fails."""
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                log(replica=replica, ok=False, step=command[-1], code=done.returncode,
                    error=done.stderr.strip().splitlines()[-3:], behind_seconds=behind)
                return False
        return True


class Metrics:
    """Each replica's last complete pass and how far it lags the primary's newest build, rewritten after every
    pass in Prometheus's text format (for node exporter's textfile collector); nowhere without a path."""

    def __init__(self, path, pages):
        self.path = path
        self.pages = pages
        self.lock = threading.Lock()
        self.passes = {}

    def newest_build(self):
        """When the page service last ended a build (its stamp holds time.time_ns()), or None."""
        try:
            return int((self.pages / BUILT).read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def families(self):
        passes = sorted(self.passes.items())
        families = [
            family("pypi_index_replica_last_pass_timestamp_seconds",
                   "When the last complete pass to the replica began (0: none since the push service started).",
                   [({"replica": name}, last or 0) for name, (last, _) in passes]),
            family("pypi_index_replica_last_pass_ok", "Whether the last pass to the replica succeeded.",
                   [({"replica": name}, int(ok)) for name, (_, ok) in passes]),
        ]
        built = self.newest_build()
        if built is not None:
            families.append(family(
                "pypi_index_replica_lag_seconds",
                "How much older the replica's copy is than the primary's newest build (0: its last complete pass"
                " began after that build).",
                [({"replica": name}, max(0.0, built - (last or 0))) for name, (last, _) in passes]))
        return families

    def record(self, replica, last, ok):
        """A pass ended: the replica's last complete pass (None: none yet) and whether this one succeeded."""
        with self.lock:
            self.passes[replica] = (last, ok)
            if self.path is not None:
                write(self.path, metrics.text(self.families()))


class Replica(threading.Thread):
    """Passes to one replica: at once, when wanted, and every `repair` seconds."""

    def __init__(self, name, passes, repair, metrics):
        super().__init__(name=name, daemon=True)
        self.passes = passes
        self.repair = repair
        self.metrics = metrics
        self.wanted = threading.Event()
        self.wanted.set()
        # Its last complete pass; until one, the service's start bounds how far behind it is.
        self.last = None
        self.since = time.time()

    def run(self):
        while True:
            self.wanted.wait(self.repair)
            self.wanted.clear()
            began = self.passes.run(self.name, behind=round(time.time() - (self.last or self.since), 3))
            self.last = began or self.last
            self.metrics.record(self.name, self.last, began is not None)


def built(changed):
    """Whether a read of the pages directory's events saw a build end (or lost events)."""
    return changed is None or any(name == BUILT for _, name in changed)


def watch(replicas, passes, repair, metrics):
    """Start a thread per replica, then ask each for a pass after every build."""
    descriptor, watches = inotify([passes.pages[1]])
    threads = [Replica(name, passes, repair, metrics) for name in replicas]
    for thread in threads:
        thread.start()
    while True:
        select.select([descriptor], [], [])
        if built(drain(descriptor, watches, set())):
            for thread in threads:
                thread.wanted.set()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=module_arg, action="append", required=True,
                        help="NAME=PATH: a package root or the metadata directory, and its module")
    parser.add_argument("--pages", type=module_arg, required=True, help="NAME=PATH: the pages and their module")
    parser.add_argument("--dest", default="{host}::{module}/",
                        help="where a module of a replica is, with {host} and {module}")
    parser.add_argument("--rsync-option", action="append", default=[],
                        help="an option for every rsync call (the remote shell, a timeout)")
    parser.add_argument("--repair", type=float, default=60.0, help="seconds between passes with no build")
    parser.add_argument("--metrics", type=Path, help="the file that holds each replica's last pass and lag")
    parser.add_argument("replicas", nargs="+")
    args = parser.parse_args()
    passes = Passes(args.files, args.pages, args.dest, args.rsync_option)
    log(replicas=args.replicas, modules=[name for name, _ in args.files] + [args.pages[0]])
    watch(args.replicas, passes, args.repair, Metrics(args.metrics, args.pages[1]))


if __name__ == "__main__":
    main()
