"""A project's status (PEP 792), set by playbooks/project-status.yml: the HTML <meta> and the JSON project-status
agree; quarantine hides every file from pip and uv, and answers 404 for its URL, and active brings them back; archive
refuses an upload; a status other than quarantine on a name the index does not hold fails before any change; the
audit trail records each."""

import json
import time


from playbooks import changed_count, output, run_playbook
from pypi_client import (client_env, fresh_venv, http_status, make_package, page_text, pip, run, twine_upload,
                         wait_for)

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
AUDIT_LOG = "/var/log/pypi-index/audit.log"
PROJECT = f"sa_status_{int(time.time())}"
NAME = PROJECT.replace("_", "-")
def stored(server, name):
    """Whether any package root holds the file (an absence asserted in the roots the host really uses)."""
    assert all(server.host.file(root).is_directory for root in server.package_roots), server.package_roots
    return any(server.host.file(f"{root}/{name}").exists for root in server.package_roots)


def set_status(status, reason=""):
    return run_playbook("project-status.yml", {"pypi_index_release_project": NAME, "pypi_index_release_status": status,
                                               "pypi_index_release_status_reason": reason})


def forms(server):
    """(HTML, JSON) of the project's page."""
    url = f"{server.url}/simple/{NAME}/"
    return page_text(url, missing=""), json.loads(page_text(url, headers={"Accept": JSON_TYPE}, missing="{}"))


def shows(server, status):
    html, page = forms(server)
    return f'<meta name="pypi:project-status" content="{status}">' in html and \
        page.get("project-status", {}).get("status") == status


def installs(server, tmp_path, client):
    python = fresh_venv(tmp_path / client)
    if client == "pip":
        return pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/", NAME)
    return run(["uv", "pip", "install", "--python", str(python), "--index-url", f"{server.url}/simple/", NAME],
               env=client_env(UV_NO_CONFIG="1", UV_NO_CACHE="1"))


def test_status_agrees_in_html_and_json_quarantine_hides_the_files_and_archive_refuses_uploads(
        server, uploader, tmp_path):
    files = make_package(tmp_path / "one", PROJECT, "1.0")
    assert twine_upload(server.url, files, uploader["name"], uploader["password"]).returncode == 0

    first, again = set_status("deprecated", "Use <the new one>"), set_status("deprecated", "Use <the new one>")
    assert first.returncode == 0 and changed_count(again) == 0, output(first) + output(again)
    wait_for(lambda: shows(server, "deprecated"), what="deprecated in both forms")
    html, page = forms(server)
    assert '<meta name="pypi:project-status-reason" content="Use &lt;the new one&gt;">' in html
    assert page["project-status"] == {"status": "deprecated", "reason": "Use <the new one>"}
    assert [entry["filename"] for entry in page["files"]] == sorted(path.name for path in files)

    assert set_status("quarantined", "Malware, advisory 42").returncode == 0
    wait_for(lambda: shows(server, "quarantined"), what="quarantined in both forms")
    assert forms(server)[1]["files"] == [] and files[0].name not in forms(server)[0]
    # Nor is any file offered by its URL, which a lock file may hold.
    assert all(http_status(f"{server.url}/packages/{path.name}") == 404 for path in files)
    for client in ("pip", "uv"):
        result = installs(server, tmp_path, client)
        assert result.returncode != 0, (client, result.stdout + result.stderr)

    assert set_status("archived", "Kept for history").returncode == 0
    wait_for(lambda: shows(server, "archived"), what="archived in both forms")
    late = make_package(tmp_path / "two", PROJECT, "2.0")
    refused = twine_upload(server.url, late, uploader["name"], uploader["password"])
    assert refused.returncode != 0 and "409" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    assert not stored(server, late[0].name)

    assert set_status("active").returncode == 0
    wait_for(lambda: forms(server), what="no status in either form",
             until=lambda both: "project-status" not in both[1] and "project-status" not in both[0])
    assert installs(server, tmp_path / "again", "pip").returncode == 0
    assert all(http_status(f"{server.url}/packages/{path.name}") == 200 for path in files)

    events = [json.loads(line) for line in server.host.check_output("cat %s", AUDIT_LOG).splitlines()]
    assert [(event["status"], event["reason"]) for event in events
            if event["event"] == "status" and event.get("project") == NAME] == [
        ("deprecated", "Use <the new one>"), ("quarantined", "Malware, advisory 42"),
        ("archived", "Kept for history"), ("active", "")]


def test_a_status_other_than_quarantine_on_a_name_the_index_does_not_hold_fails_before_any_change(server):
    result = run_playbook("project-status.yml", {"pypi_index_release_project": "not-held-here",
                                                 "pypi_index_release_status": "deprecated"})

    assert result.returncode != 0
    assert "not-held-here has no page on this index" in output(result), output(result)
    assert not stored(server, "not-held-here.status")
