"""The defaults that keep a private index private and up."""

import os
import subprocess

from pypi_client import demo_users, http_response, http_status

URL = os.environ["PYPI_INDEX_URL"]
HTTP_URL = os.environ["PYPI_INDEX_HTTP_URL"]
CA = os.environ["PYPI_INDEX_CA"]


def test_http_redirects_to_https():
    status, headers = http_response(f"{HTTP_URL}/simple/linode-example/")
    assert status == 301
    assert headers["Location"] == f"{URL}/simple/linode-example/"


def test_xmlrpc_endpoint_is_blocked():
    body = b"<?xml version='1.0'?><methodCall><methodName>search</methodName></methodCall>"
    assert http_status(f"{URL}/RPC2", method="POST", data=body, headers={"Content-Type": "text/xml"},
                       cafile=CA) == 403


def test_missing_package_is_not_sent_to_the_public_index():
    status, headers = http_response(f"{URL}/simple/requests/", cafile=CA)
    assert status == 404
    assert "Location" not in headers


def test_server_header_names_no_version():
    _, headers = http_response(f"{URL}/health", cafile=CA)
    assert headers["Server"] == "Apache"


def test_security_headers_are_sent():
    _, headers = http_response(f"{URL}/simple/", cafile=CA)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_oversize_upload_gets_413_and_leaves_nothing(host, tmp_path):
    user = demo_users()[0]
    big = tmp_path / "oversize-1.0.tar.gz"
    with big.open("wb") as handle:
        handle.truncate(101 * 1024 * 1024)
    # curl reads the early 413 while it is still sending; urllib would only
    # see the connection close.
    status = subprocess.run(
        ["curl", "--silent", "--output", "/dev/null", "--write-out", "%{http_code}", "--cacert", CA,
         "--user", f"{user['name']}:{user['password']}", "--form", ":action=file_upload",
         "--form", f"content=@{big}", f"{URL}/"],
        capture_output=True, text=True, check=False,
    ).stdout
    assert status == "413"
    assert not host.file(f"/srv/pypi-index/packages/{big.name}").exists


def test_vhost_logs_are_rotated(host):
    plan = host.run("logrotate --debug /etc/logrotate.d/apache2")
    assert plan.rc == 0, plan.stderr
    for log in ("pypi-index-access.log", "pypi-index-error.log"):
        assert f"/var/log/apache2/{log}" in plan.stdout + plan.stderr
