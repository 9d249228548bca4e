"""A package goes up with twine and comes back down with pip, as the guide promises, over verified HTTPS."""

import hashlib
import ssl
import time
import urllib.request

import pytest
from pypi_client import (fresh_venv, http_status, make_package, page_text, pip, project_page,
                         raw_upload_status, role_default, run, twine_upload)

NAME = "linode_example"


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    # A new version each session, so that `molecule verify` can run again.
    version = f"0.1.{int(time.time())}"
    return version, make_package(tmp_path_factory.mktemp("package"), NAME, version)


@pytest.fixture(scope="module")
def uploaded(index, dists, uploader):
    result = twine_upload(index.url, dists[1], uploader["name"], uploader["password"], cert=index.ca)
    assert result.returncode == 0, result.stdout + result.stderr
    return dists


def test_health_endpoint_answers(index):
    assert http_status(f"{index.url}/health", cafile=index.ca) == 200


def test_until_the_first_build_of_the_pages_ends_simple_and_health_answer_503(host, index, uploaded):
    """As on a new or rebuilt host whose first build is still running: the builder's end-of-build stamp is not
    there yet. No partial index is listed (a private name would go on to the pass-through) and no balancer
    would send reads here."""
    stamp = f"{role_default('pypi_index_pages_dir')}/.built"
    host.run_expect([0], f"mv {stamp} {stamp}.away")
    try:
        answers = [http_status(f"{index.url}{path}", cafile=index.ca)
                   for path in ("/simple/", f"/simple/{NAME.replace('_', '-')}/", "/health")]
    finally:
        host.run_expect([0], f"mv {stamp}.away {stamp}")
    assert answers == [503, 503, 503]
    assert http_status(f"{index.url}/simple/", cafile=index.ca) == 200


def test_uploaded_package_installs_and_runs(index, uploaded, tmp_path):
    version, _ = uploaded
    python = fresh_venv(tmp_path / "client")
    result = pip(python, "install", "--no-cache-dir", "--cert", index.ca, "--index-url", f"{index.url}/simple/",
                 f"{NAME}=={version}")
    assert result.returncode == 0, result.stdout + result.stderr

    shown = pip(python, "show", "linode-example")
    assert shown.returncode == 0 and f"Version: {version}" in shown.stdout
    hello = run([str(python), "-c", f"from {NAME} import hello_world; hello_world()"])
    assert hello.stdout == "hello world\n", hello.stderr


def test_index_lists_the_name_with_a_dash(index, uploaded):
    context = ssl.create_default_context(cafile=index.ca)
    with urllib.request.urlopen(f"{index.url}/simple/", timeout=30, context=context) as response:
        page = response.read().decode()
    assert ">linode-example<" in page


def test_project_page_links_each_file_with_its_sha256(index, uploaded):
    """pip's --require-hashes users check downloads against these links."""
    _, files = uploaded
    page = page_text(project_page(index.url, files[0].name), cafile=index.ca)
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f'/packages/{path.name}#sha256={digest}"' in page, page


def test_upload_without_credentials_is_401(index, dists):
    assert raw_upload_status(index.url, dists[1][0], cafile=index.ca) == 401


def test_upload_with_wrong_password_is_401(index, dists, uploader):
    assert raw_upload_status(index.url, dists[1][0], (uploader["name"], "wrong-password"), cafile=index.ca) == 401
    result = twine_upload(index.url, dists[1], uploader["name"], "wrong-password", cert=index.ca)
    assert result.returncode != 0
    assert "401" in result.stdout + result.stderr


def test_reupload_is_refused_and_file_unchanged(host, index, uploaded, uploader):
    _, files = uploaded
    wheel = next(f for f in files if f.suffix == ".whl")
    stored = host.file(f"{index.packages_dir}/{wheel.name}")
    before = stored.sha256sum

    result = twine_upload(index.url, [wheel], uploader["name"], uploader["password"], cert=index.ca)

    # pypiserver answers twine's duplicate with 400, as pypi.org does.
    assert result.returncode != 0, result.stdout
    assert "400 Bad Request" in " ".join((result.stdout + result.stderr).split())
    assert stored.sha256sum == before == hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_packages_are_owned_by_the_wsgi_user(host, index, uploaded):
    _, files = uploaded
    assert host.file(index.packages_dir).user == "www-data"
    for dist in files:
        stored = host.file(f"{index.packages_dir}/{dist.name}")
        assert stored.exists
        assert (stored.user, stored.group) == ("www-data", "www-data")


def test_apache_is_enabled_and_running(host):
    apache = host.service("apache2")
    assert apache.is_enabled
    assert apache.is_running


def test_htpasswd_holds_hashes_only(host, index, uploader):
    htpasswd = host.file(index.htpasswd)
    assert (htpasswd.user, htpasswd.group, htpasswd.mode) == ("root", "www-data", 0o640)
    content = htpasswd.content_string
    assert uploader["password"] not in content
    assert content.startswith(f"{uploader['name']}:$2b$")
