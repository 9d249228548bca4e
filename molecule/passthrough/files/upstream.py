"""A stand-in upstream Simple index for the passthrough scenario, on port 80.

/simple/<name>/ lists the files of FILES_DIR whose project normalizes to
<name>, as PEP 691 JSON when the Accept header names it and as HTML
otherwise, with absolute links to /files/ on this host and their sha256.
The JSON gives each file's size and, as PEP 700's upload-time, its mtime,
which the tests set (a file whose mtime is 0 has none, as on an upstream
without PEP 700), and the project's versions.
Like the index reached from the test machine, it sends no Vary header, so a
cache in front must keep the two forms apart by itself, and it ignores a
query string (PEP 691's ?format= is optional). Like PyPI, it sends an ETag,
and answers 304 to a request that names it in If-None-Match. Every request
path is appended to LOG_FILE (and whether it carried an Authorization
header), so that the tests can tell what was asked.
"""

import hashlib
import html
import http.server
import json
import time
import re
import sys
import urllib.parse
from pathlib import Path

FILES_DIR, LOG_FILE = Path(sys.argv[1]), Path(sys.argv[2])
BASE = "http://pypi-upstream/files/"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def project_files(name):
    """The project's files, by version order of their names."""
    return [path for path in sorted(FILES_DIR.iterdir())
            if normalized(re.split(r"-\d", path.name, maxsplit=1)[0]) == name]


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def json_file(path):
    """A file's entry in the JSON form."""
    entry = {"filename": path.name, "url": BASE + path.name,
             "hashes": {"sha256": sha256_of(path)}, "size": path.stat().st_size}
    if path.stat().st_mtime:
        entry["upload-time"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(path.stat().st_mtime))
    return entry


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with LOG_FILE.open("a") as log:
            log.write(self.path + (" with Authorization" if "Authorization" in self.headers else "") + "\n")
        request_path = urllib.parse.urlsplit(self.path).path
        if request_path.startswith("/files/"):
            path = FILES_DIR / Path(request_path[len("/files/"):]).name
            if path.is_file():
                return self.answer(200, "application/octet-stream", path.read_bytes())
        match = re.fullmatch(r"/simple/([a-z0-9-]+)/", request_path)
        files = project_files(match.group(1)) if match else []
        if not files:
            return self.answer(404, "text/plain", b"not found\n")
        if JSON_TYPE in self.headers.get("Accept", ""):
            versions = sorted({re.match(r"[^-]+-([^-]+?)(?:-.*|\.tar\.gz)$", path.name).group(1) for path in files})
            body = {"meta": {"api-version": "1.1"}, "name": match.group(1), "versions": versions,
                    "files": [json_file(path) for path in files]}
            return self.answer(200, JSON_TYPE, json.dumps(body).encode())
        links = "".join(f'<a href="{BASE}{html.escape(path.name)}#sha256={sha256_of(path)}">{html.escape(path.name)}</a><br>\n'
                        for path in files)
        return self.answer(200, "text/html", f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n".encode())

    def answer(self, status, content_type, body):
        etag = f'"{hashlib.sha256(body).hexdigest()}"'
        if status == 200 and self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(status)
        self.send_header("ETag", etag)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# There from the start, so that a test reading it learns "never asked" from
# an empty file, never from a missing one.
LOG_FILE.touch()
http.server.ThreadingHTTPServer(("", 80), Handler).serve_forever()
