"""Who may read and who may upload: addresses, and passwords for reading."""

import pytest
from playbooks import output, run_playbook
from pypi_client import (basic_auth, fresh_venv, http_response, http_status, make_package, pip,
                         raw_upload_status, twine_upload, upload_from_inside, wait_listed)

NAME = "access_example"
USER, PASSWORD = "carol", "carol-long-password"
USERS = {"pypi_index_upload_users": [{"name": USER, "password": PASSWORD}]}
READER, READER_PASSWORD = "ci-runner", "ci-runner-token-0123456789abcdefghijklmn"
PRIVATE_READS = {**USERS, "pypi_index_read_users": [{"name": READER, "password": READER_PASSWORD}],
                 "pypi_index_authenticate": ["update", "download", "list"]}


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
    """Open addresses, but every read needs a password too; Apache checks it and
    still serves the pages and files itself."""
    result = run_playbook("site.yml", PRIVATE_READS)
    assert result.returncode == 0, output(result)
    uploaded = twine_upload(server.url, dists, USER, PASSWORD)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr


def with_credentials(url, user, password):
    return url.replace("http://", f"http://{user}:{password}@")


def test_anonymous_reads_are_401_pages_and_files_alike(private_reads, dists, tmp_path, server):
    for path in ("/simple/", f"/simple/{NAME.replace('_', '-')}/", f"/packages/{dists[0].name}",
                 # A public name: the password comes before any look-up upstream.
                 "/simple/requests/"):
        status, headers = http_response(f"{server.url}{path}")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic"), (path, status)
    python = fresh_venv(tmp_path / "anonymous")
    anonymous = pip(python, "install", "--no-cache-dir", "--no-input", "--index-url", f"{server.url}/simple/", NAME)
    assert anonymous.returncode != 0


def test_wrong_password_is_401(private_reads, dists, server):
    for credentials in ((READER, "not-the-password"), ("nobody", READER_PASSWORD)):
        status = http_status(f"{server.url}/packages/{dists[0].name}",
                             headers={"Authorization": basic_auth(credentials)})
        assert status == 401, (credentials[0], status)


def test_reader_installs_but_cannot_upload(private_reads, dists, tmp_path, server):
    python = fresh_venv(tmp_path / "reader")
    index = with_credentials(server.url, READER, READER_PASSWORD) + "/simple/"
    installed = pip(python, "install", "--no-cache-dir", "--index-url", index, NAME)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    late = make_package(tmp_path / "late", NAME, "1.0.1")
    assert raw_upload_status(server.url, late[0], (READER, READER_PASSWORD)) == 403


def test_uploader_reads_and_uploads(private_reads, tmp_path, server):
    files = make_package(tmp_path / "next", NAME, "1.1.0")
    uploaded = twine_upload(server.url, files, USER, PASSWORD)
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    python = fresh_venv(tmp_path / "uploader")
    index = with_credentials(server.url, USER, PASSWORD) + "/simple/"
    installed = pip(python, "install", "--no-cache-dir", "--index-url", index, f"{NAME}==1.1.0")
    assert installed.returncode == 0, installed.stdout + installed.stderr


def test_pages_and_files_stay_static_behind_the_password(private_reads, dists, server):
    """Apache sends them (its ETag), not pypiserver."""
    for path in (f"/simple/{NAME.replace('_', '-')}/", f"/packages/{dists[0].name}"):
        status, headers = http_response(f"{server.url}{path}",
                                        headers={"Authorization": basic_auth((READER, READER_PASSWORD))})
        assert status == 200 and "ETag" in headers, (path, status, dict(headers))
