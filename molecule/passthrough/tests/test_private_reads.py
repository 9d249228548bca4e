"""With reads behind a password, public projects pass through as before: the
password is asked for them too, is never sent upstream, and the cache still
serves them.

A module of its own, after test_one_url (file order): it turns read
passwords on for the rest of the run.
"""

import time

import pytest
from playbooks import output, run_playbook
from pypi_client import basic_auth, http_response, make_package, page_text, wait_for
from stand_in import UPSTREAM_LOG, publish_upstream

READER = ("ci-runner", "ci-runner-token-0123456789abcdefghijklmn")
NAME = f"public_private_reads_{int(time.time())}"


@pytest.fixture(scope="module")
def private_reads(server, uploader, upstream_host, tmp_path_factory):
    """A public project only the upstream has, and reads behind a password."""
    upstream_host.run(f"rm -f {UPSTREAM_LOG}")
    publish_upstream(upstream_host, make_package(tmp_path_factory.mktemp("public"), NAME, "1.0"))
    result = run_playbook("site.yml", {
        "pypi_index_upload_users": [{"name": uploader["name"], "password": uploader["password"]}],
        "pypi_index_read_users": [{"name": READER[0], "password": READER[1]}],
        "pypi_index_authenticate": ["update", "download", "list"],
    })
    assert result.returncode == 0, output(result)


def test_public_project_needs_the_password_too(server, private_reads):
    page = f"{server.url}/simple/{NAME.replace('_', '-')}/"
    assert http_response(page)[0] == 401


def test_password_never_reaches_the_upstream_and_the_page_is_cached(server, private_reads, upstream_host):
    page = f"{server.url}/simple/{NAME.replace('_', '-')}/"
    assert f"{NAME}-1.0" in page_text(page, credentials=READER)
    # Stored once sent whole, fresh for the page TTL: on a busy machine the
    # next request may come before it is stored or after it went stale, so
    # ask again, without a pause, until one is a hit (bounded).
    wait_for(lambda: http_response(page, headers={"Authorization": basic_auth(READER)})[1],
             what="an answer from the cache (X-Cache: HIT)", pause=0,
             until=lambda headers: (headers.get("X-Cache") or "").startswith("HIT"))
    log = upstream_host.file(UPSTREAM_LOG).content_string
    assert NAME.replace("_", "-") in log and "Authorization" not in log, log
