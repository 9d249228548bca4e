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
   end, --delay-updates);
3. the package files and metadata again, deleting what is gone from the
   primary, which no page names any more;
4. the in-sync mark (MARK) in the replica's pages directory, which its
   /health serves: a replica removes its mark when it boots, so one that
   restarted stays out of the balancer's pool until a whole pass reached it.

A step that fails ends the pass (the next one repeats it). Each replica has a
thread of its own, so one that is down delays no other. Hidden files (an
upload being written, a page being replaced) are never copied, the page
service's records (.hashes.json) are, so that a promoted replica reads no
file again. Each pass logs one JSON line.
"""

import argparse
import os
import select
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from pypi_index_tools.pages import BUILT, drain, inotify, log

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

    def commands(self, replica, mark):
        """The pass's steps, in order."""
        def copy(module, source, *options):
            return [*self.rsync, *options, f"{source}/", self.target(replica, module)]

        pages_name, pages_path = self.pages
        return ([copy(name, path, *HIDDEN) for name, path in self.files]
                + [copy(pages_name, pages_path, "--delete", "--delay-updates", *PAGES_KEPT, *HIDDEN)]
                + [copy(name, path, "--delete", *HIDDEN) for name, path in self.files]
                + [[*self.rsync, str(mark), self.target(replica, pages_name) + MARK]])

    def run(self, replica):
        """One pass to the replica; True when every step succeeded."""
        started = time.monotonic()
        with tempfile.NamedTemporaryFile("w", prefix="mark-") as mark:
            mark.write(f"{time.time():.3f}\n")
            mark.flush()
            # The replica's Apache reads what its account was sent.
            os.chmod(mark.name, 0o644)
            for command in self.commands(replica, mark.name):
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    log(replica=replica, ok=False, step=command[-1], code=done.returncode,
                        error=done.stderr.strip().splitlines()[-3:])
                    return False
        log(replica=replica, ok=True, seconds=round(time.monotonic() - started, 3))
        return True


class Replica(threading.Thread):
    """Passes to one replica: at once, when wanted, and every `repair` seconds."""

    def __init__(self, name, passes, repair):
        super().__init__(name=name, daemon=True)
        self.passes = passes
        self.repair = repair
        self.wanted = threading.Event()
        self.wanted.set()

    def run(self):
        while True:
            self.wanted.wait(self.repair)
            self.wanted.clear()
            self.passes.run(self.name)


def built(changed):
    """Whether a read of the pages directory's events saw a build end (or lost events)."""
    return changed is None or any(name == BUILT for _, name in changed)


def watch(replicas, passes, repair):
    """Start a thread per replica, then ask each for a pass after every build."""
    descriptor, watches = inotify([passes.pages[1]])
    threads = [Replica(name, passes, repair) for name in replicas]
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
    parser.add_argument("replicas", nargs="+")
    args = parser.parse_args()
    passes = Passes(args.files, args.pages, args.dest, args.rsync_option)
    log(replicas=args.replicas, modules=[name for name, _ in args.files] + [args.pages[0]])
    watch(args.replicas, passes, args.repair)


if __name__ == "__main__":
    main()
