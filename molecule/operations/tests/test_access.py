"""Who may read and who may upload: addresses, and passwords for reading."""

import pytest
from playbooks import output, run_playbook
from pypi_client import (fresh_venv, http_status, make_package, pip, raw_upload_status,
                         twine_upload, upload_from_inside, wait_listed)

NAME = "access_example"
USER, PASSWORD = "carol", "carol-long-password"
USERS = {"pypi_index_upload_users": [{"name": USER, "password": PASSWORD}]}


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("access"), NAME, "1.0.0")


@pytest.fixture(scope="module")
def uploads_from_loopback_only(dists):
    """Uploads allowed from the host itself; this machine reaches it through the published port."""
    result = run_playbook("site.yml", {**USERS, "pypi_index_upload_allow_from": ["127.0.0.1"]})
    assert result.returncode == 0, output(result)


def test_upload_from_outside_the_upload_list_is_403(uploads_from_loopback_only, dists, server):
    assert raw_upload_status(server.url, dists[0], (USER, PASSWORD)) == 403
    refused = twine_upload(server.url, dists, USER, PASSWORD)
    assert refused.returncode != 0 and "403" in refused.stdout + refused.stderr


def test_upload_from_inside_the_upload_list_succeeds(host, uploads_from_loopback_only, server):
    assert upload_from_inside(host, "insider-1.0.tar.gz", (USER, PASSWORD)) == 200
    assert wait_listed(server.url, "insider-1.0.tar.gz")


def test_reads_stay_open_to_everyone(uploads_from_loopback_only, server):
    assert http_status(f"{server.url}/simple/") == 200
    assert http_status(f"{server.url}/packages/insider-1.0.tar.gz") == 200


@pytest.fixture(scope="module")
def private_reads(dists, server):
    """Open addresses, but listing and downloading need a password too (pypiserver then
    answers every read, so the pass-through, which needs the static pages, is off)."""
    result = run_playbook("site.yml", {**USERS, "pypi_index_authenticate": ["update", "download", "list"],
                                       "pypi_index_upstream_url": ""})
    assert result.returncode == 0, output(result)
    uploaded = twine_upload(server.url, dists, USER, PASSWORD)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr


def test_anonymous_install_fails_with_read_auth(private_reads, dists, tmp_path, server):
    assert http_status(f"{server.url}/simple/") == 401
    # Not even a file under /packages/: pypiserver, not Apache, answers it then.
    assert http_status(f"{server.url}/packages/{dists[0].name}") == 401
    python = fresh_venv(tmp_path / "anonymous")
    anonymous = pip(python, "install", "--no-cache-dir", "--no-input", "--index-url", f"{server.url}/simple/", NAME)
    assert anonymous.returncode != 0


def test_authenticated_install_works_with_read_auth(private_reads, tmp_path, server):
    python = fresh_venv(tmp_path / "member")
    index = server.url.replace("http://", f"http://{USER}:{PASSWORD}@") + "/simple/"
    installed = pip(python, "install", "--no-cache-dir", "--index-url", index, NAME)
    assert installed.returncode == 0, installed.stdout + installed.stderr
