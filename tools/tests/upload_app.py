"""The upload application as pypiserver.wsgi builds it (pypiserver, the static pages' backend, the grant check,
the token check), behind a stand-in for Apache, with a stand-in upstream index; and an upload as twine sends it."""

import base64
import http.server
import json
import os
import socket
import threading
import urllib.error
import urllib.request
import uuid
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pypiserver
import pytest
from pypiserver.config import Config

from pypi_index_tools.publish import use_publish_rights
from pypi_index_tools.tokens import use_tokens
from pypi_index_tools.uploads import use_pages

RULES = {"namespaces": {"acme": ["alice"], "acme-labs": ["bob"]}, "projects": {"acme-shared": ["carol"]}}


@pytest.fixture
def rules(tmp_path):
    """The rules file, and Apache's group file of the upload users beside it."""
    (tmp_path / "groups").write_text("pypi-index-uploaders: alice bob carol\n")
    path = tmp_path / "publish.json"
    path.write_text(json.dumps({**RULES, "uploaders": {"file": str(tmp_path / "groups"),
                                                       "group": "pypi-index-uploaders"}}))
    return path


class Apache:
    """WSGI middleware standing in for Apache: the Basic user becomes REMOTE_USER, or, for the user __token__,
    the credentials go on in PYPI_INDEX_TOKEN (the vhost's SetEnvIf); Python never sees the header."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        header = environ.pop("HTTP_AUTHORIZATION", "")
        if header.startswith("Basic X190b2tlbl9f"):
            environ["PYPI_INDEX_TOKEN"] = header[6:]
        elif header.startswith("Basic "):
            environ["REMOTE_USER"] = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        return self.app(environ, start_response)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *_):
        pass


class Upstream(http.server.BaseHTTPRequestHandler):
    """A stand-in upstream index that has six and nothing else; it notes what it was asked."""

    asked = []

    def do_GET(self):
        Upstream.asked.append(self.path)
        self.send_response(200 if self.path == "/simple/six/" else 404)
        self.end_headers()

    def log_message(self, *_):
        pass


@pytest.fixture
def upstream():
    Upstream.asked = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/simple/"
    server.shutdown()
    thread.join(timeout=5)


def closed_port():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return unused.getsockname()[1]


@pytest.fixture
def index(tmp_path, rules, upstream):
    """pypiserver built as pypiserver.wsgi builds it, with the pages and the grant check; the pass-through's
    upstream is the stand-in."""
    root, pages = tmp_path / "packages", tmp_path / "simple"
    root.mkdir()
    pages.mkdir()
    rewrite(rules, 0, roots=[str(root)], pages=str(pages), upstream={"url": upstream, "ca": None, "timeout": 2})
    config = Config.default_with_overrides(roots=[root], password_file=".", authenticate=[])
    config = use_publish_rights(use_pages(config, pages), rules, tmp_path / "audit.log", tmp_path / "uploads.prom")
    app = pypiserver.setup_routes_from_config(pypiserver.app_from_config(config), config)
    app = Apache(use_tokens(app, config, tmp_path / "tokens.json"))
    server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", root, pages, rules
    server.shutdown()
    thread.join(timeout=5)


def rewrite(rules, stamp, **changes):
    """Change the rules file, with a new stamp even within the file system's time resolution."""
    rules.write_text(json.dumps({**json.loads(rules.read_text()), **changes}))
    os.utime(rules, ns=(stamp, stamp))


def has_page(pages, project):
    """Mark a project as one the index already holds (its page exists)."""
    (pages / project).mkdir()
    (pages / project / "index.html").write_text("")


def post(url, user, password, fields, file=None):
    """A multipart POST / (status, body), the fields as given, and a file part as (name, data)."""
    boundary = uuid.uuid4().hex
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                    for name, value in fields.items())
    if file:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{file[0]}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + file[1] + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(url, data=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Basic {credentials}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def upload(url, user, filename, data, password="unchecked-here"):
    """A file_upload POST as twine sends it: (status, body)."""
    return post(url, user, password, {":action": "file_upload"}, (filename, data))


def remove(url, user, name, version, password="unchecked-here"):
    """pypiserver's remove_pkg action: (status, body)."""
    return post(url, user, password, {":action": "remove_pkg", "name": name, "version": version})
