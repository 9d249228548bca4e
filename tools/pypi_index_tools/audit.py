"""The audit trail: one JSON line per event on the index (an upload stored or refused), appended to one file.

Each line says when (UTC, ISO 8601), what (the event, the file, its sha256
once stored), who (the user Apache authenticated) and from where (the client's
address: behind the load balancers, the one mod_remoteip took from
X-Forwarded-For), and the answer given. No password or token is ever written.
Lines are appended with O_APPEND, one write each, so that the processes that
take uploads, and the playbooks (`python -m pypi_index_tools.audit LOG
EVENT`), never interleave them nor lose one; logrotate rotates the file.
"""

import argparse
import datetime
import hashlib
import json
import os
import sys


def append(path, event):
    """Append one event, stamped with the time, as one JSON line in one write; raise OSError if it failed."""
    line = json.dumps({"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       **event}, sort_keys=True) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


class Audit:
    def __init__(self, path):
        self.path = path

    def record(self, **event):
        try:
            append(self.path, event)
        except OSError as error:
            # The answer stands (the file is stored, or refused); Apache's
            # error log says the line is missing.
            print(f"pypi-index audit: could not record {json.dumps(event, sort_keys=True)}: {error}",
                  file=sys.stderr)


class Hashing:
    """A stream that hashes what is read from it, so that a stored upload's sha256 costs no second read."""

    def __init__(self, stream):
        self.stream = stream
        self.sha256 = hashlib.sha256()

    def read(self, *size):
        chunk = self.stream.read(*size)
        self.sha256.update(chunk)
        return chunk


def main(argv=None):
    """Append one event (a JSON object) to the audit trail, as the playbooks record what they changed."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("log", help="the audit trail")
    parser.add_argument("event", type=json.loads, help="the event, a JSON object without its time")
    args = parser.parse_args(argv)
    if not isinstance(args.event, dict):
        parser.error("the event is a JSON object")
    append(args.log, args.event)


if __name__ == "__main__":
    main()
