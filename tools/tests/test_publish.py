"""Who may publish what: an upload into a namespace, or of a project with a grant, by a user the rule does not
list is refused with 409 and stores nothing; names no rule covers stay open, but for a first upload of a name the
upstream has (409) or while the upstream cannot be asked (503); new rules apply without a restart."""

import base64
import hashlib
import json
import os
import http.server
import socket
import threading
import urllib.error
import urllib.request
import uuid
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pypiserver
import pytest
from pypiserver.config import Config

from pypi_index_tools.publish import Rules, use_publish_rights
from pypi_index_tools.uploads import use_pages

RULES = {"namespaces": {"acme": ["alice"], "acme-labs": ["bob"]}, "projects": {"acme-shared": ["carol"]}}


@pytest.fixture
def rules(tmp_path):
    path = tmp_path / "publish.json"
    path.write_text(json.dumps(RULES))
    return path


@pytest.mark.parametrize("user,project,refused_by", [
    ("alice", "acme", None),
    ("alice", "Acme_Tool", None),  # normalized first
    ("bob", "acme-tool", "in the namespace acme,"),
    ("bob", "acme-labs-x", None),  # the longest namespace rules
    ("alice", "acme-labs-x", "in the namespace acme-labs,"),
    ("carol", "acme-shared", None),  # a project grant rules its project alone
    ("alice", "acme-shared", "has a project grant"),
    ("bob", "acmecorp", None),  # a prefix of a name is not its namespace
    ("bob", "other", None),
    (None, "acme-tool", "an anonymous uploader"),
])
def test_the_rule_that_covers_a_name_decides(rules, user, project, refused_by):
    why = Rules(rules).current().refusal(user, project)
    if refused_by is None:
        assert why is None
    else:
        assert refused_by in why


def test_a_changed_rules_file_applies_at_once(rules):
    checked = Rules(rules)
    assert checked.current().refusal("bob", "acme-tool")
    rewrite(rules, 1, namespaces={"acme": ["alice", "bob"]})
    assert checked.current().refusal("bob", "acme-tool") is None


class RemoteUser:
    """WSGI middleware standing in for Apache: the Basic user becomes REMOTE_USER."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header.startswith("Basic "):
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
    rules.write_text(json.dumps({**RULES, "pages": str(pages), "upstream": {"url": upstream, "ca": None, "timeout": 2}}))
    config = Config.default_with_overrides(roots=[root], password_file=".", authenticate=[])
    config = use_publish_rights(use_pages(config, pages), rules, tmp_path / "audit.log")
    app = RemoteUser(pypiserver.setup_routes_from_config(pypiserver.app_from_config(config), config))
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


def upload(url, user, filename, data):
    """A file_upload POST as twine sends it: (status, body)."""
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    credentials = base64.b64encode(f"{user}:unchecked-here".encode()).decode()
    request = urllib.request.Request(url, data=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Basic {credentials}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.parametrize("filename,because,asked", [
    ("acme_tool-1.0.tar.gz", "acme-tool is in the namespace acme, and bob holds no grant for it", []),
    ("six-99.0.tar.gz", "the upstream index has a project six, which this upload would shadow for every client",
     ["/simple/six/"]),
])
def test_an_upload_without_a_grant_or_shadowing_the_upstream_gets_409_and_stores_nothing(
        index, filename, because, asked):
    url, root, _, _ = index
    status, body = upload(url, "bob", filename, b"bob's")

    assert status == 409
    assert because in body
    assert list(root.iterdir()) == []
    assert Upstream.asked == asked


def test_an_upload_with_a_grant_or_outside_every_rule_is_stored(index):
    url, root, _, _ = index
    assert upload(url, "alice", "acme_tool-1.0.tar.gz", b"alice's")[0] == 200
    assert upload(url, "bob", "other-1.0.tar.gz", b"bob's")[0] == 200

    assert (root / "acme_tool-1.0.tar.gz").read_bytes() == b"alice's"
    assert (root / "other-1.0.tar.gz").read_bytes() == b"bob's"


def test_a_name_the_upstream_lacks_a_claimed_one_or_one_with_a_page_here_is_stored(index):
    url, root, pages, rules = index
    assert upload(url, "bob", "bobs_tool-1.0.tar.gz", b"new")[0] == 200
    assert Upstream.asked == ["/simple/bobs-tool/"]
    # Claimed names are the operator's: the upstream is not asked.
    assert upload(url, "alice", "acme_tool-1.0.tar.gz", b"claimed")[0] == 200
    rewrite(rules, 2, projects={"six": ["bob"]})
    assert upload(url, "bob", "six-99.0.tar.gz", b"granted")[0] == 200
    # A project the index already has: its next upload is not a first one.
    has_page(pages, "old-lib")
    assert upload(url, "bob", "old_lib-2.0.tar.gz", b"next")[0] == 200
    assert Upstream.asked == ["/simple/bobs-tool/"]
    assert sorted(path.name for path in root.iterdir()) == [
        "acme_tool-1.0.tar.gz", "bobs_tool-1.0.tar.gz", "old_lib-2.0.tar.gz", "six-99.0.tar.gz"]


def test_with_new_names_granted_only_a_claimed_name_or_one_the_index_has_is_stored(index):
    url, root, pages, rules = index
    rewrite(rules, 4, new_names="granted")
    has_page(pages, "old-lib")

    status, body = upload(url, "bob", "bobs_tool-1.0.tar.gz", b"new")
    assert status == 409
    assert "bobs-tool is a new name, and new names need a project grant or a namespace here" in body
    assert upload(url, "alice", "acme_tool-1.0.tar.gz", b"claimed")[0] == 200
    assert upload(url, "bob", "old_lib-2.0.tar.gz", b"next")[0] == 200
    assert sorted(path.name for path in root.iterdir()) == ["acme_tool-1.0.tar.gz", "old_lib-2.0.tar.gz"]
    assert Upstream.asked == []


def test_an_upstream_that_cannot_be_asked_refuses_a_first_upload_and_says_why(index):
    url, root, _, rules = index
    rewrite(rules, 3, upstream={"url": f"http://127.0.0.1:{closed_port()}/simple/", "timeout": 2})

    status, body = upload(url, "bob", "bobs_tool-1.0.tar.gz", b"new")

    assert status == 503
    assert "the upstream index could not be asked whether it has bobs-tool" in body
    assert list(root.iterdir()) == []


def test_every_upload_stored_or_refused_is_in_the_audit_trail_with_no_secret(index, tmp_path):
    url, _, _, _ = index
    assert upload(url, "alice", "acme_tool-1.0.tar.gz", b"alice's")[0] == 200
    assert upload(url, "bob", "acme_tool-2.0.tar.gz", b"bob's")[0] == 409

    stored, refused = (json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines())
    assert {key: stored[key] for key in ("event", "file", "user", "client", "status")} == {
        "event": "upload", "file": "acme_tool-1.0.tar.gz", "user": "alice", "client": "127.0.0.1", "status": 200}
    assert stored["sha256"] == hashlib.sha256(b"alice's").hexdigest()
    assert (refused["user"], refused["status"]) == ("bob", 409)
    assert "in the namespace acme, and bob holds no grant" in refused["reason"]
    assert "unchecked-here" not in (tmp_path / "audit.log").read_text()
