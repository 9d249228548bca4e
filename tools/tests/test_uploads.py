"""pypiserver's upload backend: a file already in a root is refused, whatever root or folder holds it,
without walking the roots."""

import errno
import io
import os
import stat
import threading
import urllib.error
import urllib.request
import uuid
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pypiserver
import pytest
from pypiserver.bottle_wrapper import HTTPError
from pypiserver.config import Config

from pypi_index_tools.pages import build_all
from pypi_index_tools.uploads import PagesBackend, use_pages

from distributions import wheel


@pytest.fixture
def site(tmp_path):
    """Two package roots and the pages built from them."""
    roots = [tmp_path / "packages", tmp_path / "more-packages"]
    for root in roots:
        root.mkdir()
    (roots[1] / "archive").mkdir()
    (roots[1] / "archive" / "Old_Lib-1.0.tar.gz").write_bytes(b"old")
    (roots[0] / "app-1.0-py3-none-any.whl").write_bytes(wheel("app", "1.0"))
    site = {"roots": roots, "pages": tmp_path / "simple"}
    build_all(site["pages"], tmp_path / "pages-state.json", roots, "sha256", tmp_path / "metadata")
    return site


def backend(site):
    return PagesBackend(Config.default_with_overrides(roots=site["roots"]), site["pages"])


def test_a_listed_file_exists_in_whatever_root_or_folder(site):
    assert backend(site).exists("app-1.0-py3-none-any.whl")
    assert backend(site).exists("Old_Lib-1.0.tar.gz")


def test_a_file_not_yet_listed_exists_once_it_is_in_a_root(site):
    (site["roots"][1] / "app-2.0.tar.gz").write_bytes(b"new")

    assert backend(site).exists("app-2.0.tar.gz")


@pytest.mark.parametrize("filename", [
    "app-1.1-py3-none-any.whl",  # another version of a listed project
    "old-lib-1.0.tar.gz",  # the same project, another file name
    "new-1.0.tar.gz",  # a project with no page
    "notapackage",  # no name and version: pypiserver refuses it before asking
])
def test_other_files_do_not_exist(site, filename):
    assert not backend(site).exists(filename)


def test_the_roots_are_not_walked(site, monkeypatch):
    def walk(*_):
        raise AssertionError("os.walk called")

    monkeypatch.setattr(os, "walk", walk)

    assert backend(site).exists("Old_Lib-1.0.tar.gz")
    assert not backend(site).exists("old_lib-2.0.tar.gz")


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *_):
        pass


@pytest.fixture
def index(site):
    """pypiserver built as pypiserver.wsgi builds it, served on 127.0.0.1."""
    config = use_pages(Config.default_with_overrides(roots=site["roots"], password_file=".", authenticate=[]),
                       site["pages"])
    app = pypiserver.setup_routes_from_config(pypiserver.app_from_config(config), config)
    server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    thread.join(timeout=5)


def upload(url, filename, data):
    """A file_upload POST as twine sends it; the HTTP status."""
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_pypiserver_stores_a_new_file_and_refuses_one_a_root_holds(site, index):
    assert upload(index, "app-2.0.tar.gz", b"new") == 200
    assert (site["roots"][0] / "app-2.0.tar.gz").read_bytes() == b"new"

    assert upload(index, "app-2.0.tar.gz", b"other") == 409
    assert upload(index, "Old_Lib-1.0.tar.gz", b"attack") == 409
    assert (site["roots"][0] / "app-2.0.tar.gz").read_bytes() == b"new"
    assert not (site["roots"][0] / "Old_Lib-1.0.tar.gz").exists()
    assert (site["roots"][1] / "archive" / "Old_Lib-1.0.tar.gz").read_bytes() == b"old"


class FullDisk:
    """An upload stream whose copy fails as a full disk makes it fail: after the first chunk."""

    def __init__(self):
        self.reads = 0

    def read(self, _):
        self.reads += 1
        if self.reads > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return b"x" * 1024


def test_an_upload_that_fails_half_way_leaves_nothing_in_the_root(site):
    with pytest.raises(HTTPError) as refused:
        backend(site).add_package("app-3.0.tar.gz", FullDisk())

    assert refused.value.status_code == 507
    assert "app-3.0.tar.gz was not stored: No space left on device" in refused.value.body
    assert sorted(path.name for path in site["roots"][0].iterdir()) == ["app-1.0-py3-none-any.whl"]


def test_a_stored_upload_is_readable_by_apache_and_whole(site):
    backend(site).add_package("app-3.0.tar.gz", io.BytesIO(b"y" * (3 << 20)))

    stored = site["roots"][0] / "app-3.0.tar.gz"
    assert stored.read_bytes() == b"y" * (3 << 20)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o644
    assert sorted(path.name for path in site["roots"][0].iterdir()) == ["app-1.0-py3-none-any.whl", "app-3.0.tar.gz"]
