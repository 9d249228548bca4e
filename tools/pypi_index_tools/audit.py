"""The audit trail: one JSON line per event on the index (an upload stored or refused), appended to one file.

Each line says when (UTC, ISO 8601), what (the event, the file, its sha256
once stored), who (the user Apache authenticated) and from where (the client's
address: behind the load balancers, the one mod_remoteip took from
X-Forwarded-For), and the answer given. No password or token is ever written.
Lines are appended with O_APPEND, one write each, so that the processes that
take uploads never interleave them; logrotate rotates the file.
"""

import datetime
import hashlib
import json
import os
import sys


class Audit:
    def __init__(self, path):
        self.path = path

    def record(self, **event):
        line = json.dumps({"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                           **event}, sort_keys=True) + "\n"
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(descriptor, line.encode())
            finally:
                os.close(descriptor)
        except OSError as error:
            # The answer stands (the file is stored, or refused); Apache's
            # error log says the line is missing.
            print(f"pypi-index audit: could not record {line.strip()}: {error}", file=sys.stderr)


class Hashing:
    """A stream that hashes what is read from it, so that a stored upload's sha256 costs no second read."""

    def __init__(self, stream):
        self.stream = stream
        self.sha256 = hashlib.sha256()

    def read(self, *size):
        chunk = self.stream.read(*size)
        self.sha256.update(chunk)
        return chunk
