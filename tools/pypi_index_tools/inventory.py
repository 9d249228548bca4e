"""List, check and wait for the files of an index backup, in sha256sum's format.

The backup and restore tasks run it with the host's system python3, so it
uses the standard library only. Every path on the command line or in a
manifest is taken under --root (/ on a host), and a manifest names files
relative to that root, as `sha256sum` does when run from / -- so `sha256sum
--check` from / still verifies a manifest, and older backups still restore.
"""

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

CHUNK = 1 << 20
POLL_SECONDS = 0.5
# sha256sum escapes these in a name, and then starts the line with a backslash.
ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
UNESCAPES = {value[1]: key for key, value in ESCAPES.items()}
LINE = re.compile(r"(\\?)([0-9a-f]{64})  (.+)")
# A name is bytes on Linux; this keeps any that are not UTF-8 the same bytes through a manifest.
TEXT = {"encoding": "utf-8", "errors": "surrogateescape"}


def under(root, path):
    """path (absolute, as on the host) inside root."""
    return Path(root) / str(path).lstrip("/")


def regular_files(root, paths):
    """Every regular file under paths, by its path relative to root.

    Like `find PATHS -type f`: symlinks are neither followed nor listed, and a
    missing path lists nothing.
    """
    for path in paths:
        top = under(root, path)
        if top.is_symlink():
            continue
        if top.is_file():
            yield top.relative_to(root).as_posix()
        for directory, _, names in os.walk(top):
            for name in names:
                full = Path(directory, name)
                if full.is_file() and not full.is_symlink():
                    yield full.relative_to(root).as_posix()


def file_digest(path):
    """The sha256 of a file, read in 1 MiB chunks so a large package needs little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_line(digest, relative):
    """One line exactly as sha256sum writes it, escaping included."""
    if any(char in relative for char in ESCAPES):
        return "\\" + digest + "  " + "".join(ESCAPES.get(char, char) for char in relative) + "\n"
    return f"{digest}  {relative}\n"


def read_lines(path):
    """The lines of a file, split on newlines only: a name may hold any other character."""
    return Path(path).read_text(**TEXT).split("\n")[:-1]


def parse_manifest(path):
    """{relative path: hex digest} from sha256sum output: hex, two spaces, the rest is the path."""
    entries = {}
    for number, line in enumerate(read_lines(path), 1):
        match = LINE.fullmatch(line)
        if not match:
            raise ValueError(f"{path}, line {number}: not a sha256sum line")
        escaped, digest, relative = match.groups()
        if escaped:
            relative = re.sub(r"\\([\\nr])", lambda found: UNESCAPES[found.group(1)], relative)
        entries[relative] = digest
    return entries


def write_atomically(path, text):
    """Replace path with text in one rename, so a reader never sees half a file."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".", delete=False, **TEXT) as handle:
        handle.write(text)
    os.replace(handle.name, path)


def newest_recent(root, paths, quiet, now):
    """The newest file modified less than quiet seconds before now (or later), else None.

    A file being uploaded keeps getting newer, so none means nothing is in flight.
    """
    recent = [(mtime, relative) for mtime, relative in mtimes(root, paths) if mtime > now - quiet]
    return max(recent)[1] if recent else None


def mtimes(root, paths):
    """(mtime, relative path) of each regular file, skipping one renamed or deleted since it was listed."""
    for relative in regular_files(root, paths):
        try:
            yield os.stat(under(root, relative)).st_mtime, relative
        except FileNotFoundError:
            continue


def wait_settled(args):
    """Return once the paths have been quiet long enough; fail naming the newest file at the timeout."""
    deadline = time.monotonic() + args.timeout
    while (newest := newest_recent(args.root, args.paths, args.quiet, time.time())) is not None:
        if time.monotonic() >= deadline:
            sys.exit(f"still changing after {args.timeout:g} s: /{newest}")
        time.sleep(POLL_SECONDS)


def manifest(args):
    """Write the sorted manifest of the paths and print how many files and bytes it lists."""
    files = sorted(set(regular_files(args.root, args.paths)))
    write_atomically(args.out, "".join(manifest_line(file_digest(under(args.root, f)), f) for f in files))
    total = sum(os.stat(under(args.root, f)).st_size for f in files)
    print(json.dumps({"files": len(files), "bytes": total}))


def missing(args):
    """List the manifest's files the host lacks: the ones a restore extracts."""
    lacking = [relative for relative in parse_manifest(args.manifest)
               if not os.path.lexists(under(args.root, relative))]
    sys.stdout.buffer.write("".join(f"{relative}\n" for relative in lacking).encode(**TEXT))


def verify(args):
    """Check the files (all, or those --only lists) against the manifest; fail naming each bad one."""
    entries = parse_manifest(args.manifest)
    wanted = [line for line in read_lines(args.only) if line] if args.only else list(entries)
    problems, total = [], 0
    for relative in wanted:
        path = under(args.root, relative)
        if relative not in entries:
            problems.append(f"/{relative}: not in the manifest")
        elif not path.is_file():
            problems.append(f"/{relative}: missing")
        elif file_digest(path) != entries[relative]:
            problems.append(f"/{relative}: sha256 differs from the manifest's")
        else:
            total += path.stat().st_size
    if problems:
        sys.exit("\n".join(problems))
    print(json.dumps({"verified": len(wanted), "bytes": total}))


def parser():
    """The command line: one subcommand per step of the backup and restore tasks."""
    main_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    main_parser.add_argument("--root", type=Path, default=Path("/"), help="directory the paths are under")
    commands = main_parser.add_subparsers(dest="command", required=True)

    settle = commands.add_parser("wait-settled", help="wait until no file under the paths is being written")
    settle.add_argument("--quiet", type=float, required=True, help="seconds without a change that count as settled")
    settle.add_argument("--timeout", type=float, required=True, help="seconds to wait at most")
    settle.add_argument("paths", nargs="+")
    settle.set_defaults(run=wait_settled)

    listing = commands.add_parser("manifest", help="write the sha256sum list of every file under the paths")
    listing.add_argument("--out", type=Path, required=True)
    listing.add_argument("paths", nargs="+")
    listing.set_defaults(run=manifest)

    lacking = commands.add_parser("missing", help="list the manifest's files that do not exist")
    lacking.add_argument("--manifest", type=Path, required=True)
    lacking.set_defaults(run=missing)

    check = commands.add_parser("verify", help="check files against the manifest")
    check.add_argument("--manifest", type=Path, required=True)
    check.add_argument("--only", type=Path, help="file listing the paths to check, one per line")
    check.set_defaults(run=verify)
    return main_parser


def main():
    command_line = parser()
    args = command_line.parse_args()
    try:
        args.run(args)
    except (OSError, ValueError) as error:
        command_line.exit(1, f"{command_line.prog}: {error}\n")


if __name__ == "__main__":
    main()
