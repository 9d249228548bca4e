"""Who may read: the read allow-list covers the index pages and the package files alike.

In a module of its own: testinfra's `host` fixture makes pytest regroup the
tests that use it, which would run these between test_access's.
"""

import pytest
from playbooks import output, run_playbook
from pypi_client import http_status, status_from_inside, upload_from_inside

USER, PASSWORD = "carol", "carol-long-password"
PACKAGE = "/packages/ops_reader-1.0.tar.gz"


@pytest.fixture(scope="module")
def reads_from_loopback_only(host):
    """Reads allowed from the host itself; this machine reaches it through the published port."""
    result = run_playbook("site.yml", {"pypi_index_upload_users": [{"name": USER, "password": PASSWORD}],
                                       "pypi_index_read_allow_from": ["127.0.0.1"]})
    assert result.returncode == 0, output(result)
    assert upload_from_inside(host, "ops_reader-1.0.tar.gz", (USER, PASSWORD)) == 200


def test_reads_from_outside_the_read_list_are_403(reads_from_loopback_only, server):
    assert http_status(f"{server.url}/simple/") == 403
    # Apache sends package files itself; the same list applies.
    assert http_status(f"{server.url}{PACKAGE}") == 403
    # A public project passed through from upstream is read through the index too.
    assert http_status(f"{server.url}/simple/six/") == 403


def test_reads_from_inside_the_read_list_succeed(host, reads_from_loopback_only):
    assert status_from_inside(host, "/simple/") == 200
    assert status_from_inside(host, PACKAGE) == 200
