"""A name the index has held stays the index's: a removal never hands it to the upstream, until the operators
release it on purpose.

The attack (issue #38): a private project's name is registered on the public index; a second uploader removes
the private project's only file over HTTP, its page goes, and from then on the pass-through serves the public
project of that name to every client, while the owners' re-upload is refused as a shadowing first upload.
"""

import json

import pytest
from playbooks import changed_count, output, run_playbook
from pypi_client import (fresh_venv, http_response, http_status, make_package, page_text, pip, post_form,
                         twine_upload, upload_form, wait_for, wait_listed)
from stand_in import publish_upstream, upstream_requests

HELD = "corp_held"
PAGE = f"/simple/{HELD.replace('_', '-')}/"
AUDIT_LOG = "/var/log/pypi-index/audit.log"
INTRUDER = {"name": "demo-intruder", "password": "demo-intruder-long-password"}


@pytest.fixture(scope="module")
def held(server, uploader, upstream_host, tmp_path_factory):
    """corp-held 1.0 uploaded here while the upstream has no such name; then the attacker publishes corp-held 5.0
    upstream (past the cooldown). A second upload user exists."""
    users = [uploader, INTRUDER]
    result = run_playbook("site.yml", {"pypi_index_upload_users": users})
    assert result.returncode == 0, output(result)
    files = make_package(tmp_path_factory.mktemp("held"), HELD, "1.0")
    uploaded = twine_upload(server.url, files, uploader["name"], uploader["password"])
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert wait_listed(server.url, files[0].name)
    publish_upstream(upstream_host, make_package(tmp_path_factory.mktemp("attacker"), HELD, "5.0"))
    return files


def remove_over_http(server, user, version):
    """pypiserver's remove_pkg action, as a script would send it."""
    body, headers = post_form({":action": "remove_pkg", "name": HELD, "version": version},
                              credentials=(user["name"], user["password"]))
    return http_status(f"{server.url}/", method="POST", data=body, headers=headers)


def test_a_removal_over_http_is_refused_to_another_uploader_and_to_the_owner(server, uploader, held):
    assert remove_over_http(server, INTRUDER, "1.0") == 403
    assert remove_over_http(server, uploader, "1.0") == 403
    assert all(server.host.file(f"{server.packages_dir}/{path.name}").exists for path in held)
    assert f"{HELD}-1.0" in page_text(f"{server.url}{PAGE}")


def test_after_the_playbook_removes_its_last_file_the_name_is_never_asked_upstream(server, uploader, held,
                                                                                    upstream_host, tmp_path):
    # Asked once already: the first upload's check (was the name public then?).
    asked_before = upstream_requests(upstream_host).splitlines().count(PAGE)
    removed = run_playbook("remove-release.yml", {"pypi_index_release_project": HELD,
                                                  "pypi_index_release_version": "1.0"})
    assert removed.returncode == 0, output(removed)
    assert all(not server.host.file(f"{server.packages_dir}/{path.name}").exists for path in held)
    wait_for(lambda: page_text(f"{server.url}{PAGE}"), what=f"{HELD} 1.0 gone from its page",
             until=lambda page: f"{HELD}-1.0" not in page)

    # The page stays, with no file: answered here, never passed through.
    assert http_response(f"{server.url}{PAGE}")[0] == 200
    assert json.loads(page_text(f"{server.url}{PAGE}", headers={"Accept": "application/vnd.pypi.simple.v1+json"}))[
        "files"] == []
    python = fresh_venv(tmp_path / "pip")
    installed = pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/", HELD)
    assert installed.returncode != 0 and "5.0" not in installed.stdout + installed.stderr
    assert upstream_requests(upstream_host).splitlines().count(PAGE) == asked_before


def test_a_removed_file_name_is_never_taken_again_but_a_new_version_uploads(server, uploader, held, tmp_path):
    again = twine_upload(server.url, [held[0]], uploader["name"], uploader["password"])
    assert again.returncode != 0 and "400" in again.stdout + again.stderr, again.stdout + again.stderr
    assert not server.host.file(f"{server.packages_dir}/{held[0].name}").exists
    body, headers = upload_form(held[0].name, b"other bytes", (uploader["name"], uploader["password"]))
    assert http_status(f"{server.url}/", method="POST", data=body, headers=headers) == 409

    files = make_package(tmp_path, HELD, "1.1")
    uploaded = twine_upload(server.url, files, uploader["name"], uploader["password"])
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert wait_listed(server.url, files[0].name)
    removed = run_playbook("remove-release.yml", {"pypi_index_release_project": HELD,
                                                  "pypi_index_release_version": "1.1"})
    assert removed.returncode == 0, output(removed)


def test_the_operators_release_the_name_on_purpose_and_the_trail_says_who(server, held, upstream_host):
    released = run_playbook("release-name.yml", {"pypi_index_release_project": HELD})
    again = run_playbook("release-name.yml", {"pypi_index_release_project": HELD})
    assert released.returncode == 0 and again.returncode == 0, output(released) + output(again)
    assert changed_count(again) == 0

    wait_for(lambda: page_text(f"{server.url}{PAGE}", missing=""), what=f"{HELD} passed through to the upstream",
             until=lambda page: f"{HELD}-5.0" in page)
    events = [json.loads(line) for line in server.host.check_output(f"cat {AUDIT_LOG}").splitlines()]
    releases = [event for event in events if event["event"] == "release"]
    assert {event["file"] for event in releases} == {f"{HELD}-{version}{suffix}.removed" for version in ("1.0", "1.1")
                                                      for suffix in (".tar.gz", "-py3-none-any.whl")}
    assert all(event["project"] == "corp-held" and event["client"] == "ansible-playbook" for event in releases)
