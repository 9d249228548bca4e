"""The defaults that keep a private index private and up."""

import re
import subprocess
import urllib.parse

from pypi_client import PROJECT_DIR, client_env, http_response, http_status

# Made by `make molecule` (requirements-sslyze.txt).
SSLYZE = PROJECT_DIR / ".cache" / "sslyze" / "bin" / "sslyze"


def test_http_redirects_to_https(index):
    status, headers = http_response(f"{index.http_url}/simple/linode-example/")
    assert status == 301
    assert headers["Location"] == f"{index.url}/simple/linode-example/"


def test_xmlrpc_endpoint_is_blocked(index):
    """POST reaches the upload path alone (docs/access-policy.md): pypiserver's XML-RPC never parses a byte."""
    body = b"<?xml version='1.0'?><methodCall><methodName>search</methodName></methodCall>"
    assert http_status(f"{index.url}/RPC2", method="POST", data=body, headers={"Content-Type": "text/xml"},
                       cafile=index.ca) == 405


def test_a_project_nobody_has_is_404_with_no_redirect(index):
    """Neither the index nor the public index it passes through to has it: no redirect to try elsewhere."""
    status, headers = http_response(f"{index.url}/simple/pypi-index-no-such-project-anywhere/", cafile=index.ca)
    assert status == 404
    assert "Location" not in headers


def test_server_header_names_no_version(index):
    _, headers = http_response(f"{index.url}/health", cafile=index.ca)
    assert headers["Server"] == "Apache"


def test_security_headers_are_sent(index):
    _, headers = http_response(f"{index.url}/simple/", cafile=index.ca)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_oversize_upload_gets_413_and_leaves_nothing(host, index, uploader, tmp_path):
    big = tmp_path / "oversize-1.0.tar.gz"
    with big.open("wb") as handle:
        handle.truncate(101 * 1024 * 1024)
    # curl reads the early 413 while it is still sending; urllib would only
    # see the connection close.
    status = subprocess.run(
        ["curl", "--silent", "--output", "/dev/null", "--write-out", "%{http_code}", "--cacert", index.ca,
         "--user", f"{uploader['name']}:{uploader['password']}", "--form", ":action=file_upload",
         "--form", f"content=@{big}", f"{index.url}/"],
        capture_output=True, text=True, check=False, timeout=300,
    ).stdout
    assert status == "413"
    assert not host.file(f"{index.packages_dir}/{big.name}").exists


def test_vhost_logs_are_rotated(host):
    plan = host.run("logrotate --debug /etc/logrotate.d/apache2")
    assert plan.rc == 0, plan.stderr
    for log in ("pypi-index-access.log", "pypi-index-error.log"):
        assert f"/var/log/apache2/{log}" in plan.stdout + plan.stderr


def test_tls_meets_mozillas_intermediate_profile(index):
    """sslyze's check against Mozilla's "intermediate" configuration finds nothing
    but the path validation of a certificate from the index's own CA."""
    assert SSLYZE.exists(), f"{SSLYZE} is missing: make molecule installs it"
    address = urllib.parse.urlsplit(index.url).netloc
    result = subprocess.run([str(SSLYZE), "--mozilla_config=intermediate", address], capture_output=True,
                            text=True, timeout=120, env=client_env())
    report = result.stdout[result.stdout.index("COMPLIANCE AGAINST"):]
    findings = re.findall(r"^\s+\* (\w+):", report, flags=re.MULTILINE)
    assert findings == ["certificate_path_validation"], report
