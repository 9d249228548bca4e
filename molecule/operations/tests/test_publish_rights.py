"""Who may publish what: an upload into a namespace (PEP 752), or of a project with a grant, by an upload user
the rule does not grant gets 409 and stores nothing; the granted ones publish there, names outside every rule stay
open, the pass-through never looks a namespace's names up, and the audit trail records each upload."""

import json
import urllib.error
import urllib.request

import pytest
from playbooks import output, run_playbook
from pypi_client import basic_auth, http_status, make_package, twine_upload, upload_form

ALICE, BOB = "alice-publishes-acme", "bob-publishes-elsewhere"
SETTINGS = {
    "pypi_index_upload_users": [{"name": "alice", "password": ALICE}, {"name": "bob", "password": BOB}],
    "pypi_index_publish_groups": [{"name": "acme-team", "users": ["alice"]}],
    "pypi_index_namespaces": [{"name": "acme", "groups": ["acme-team"]}],
    "pypi_index_project_grants": [{"project": "acme-shared", "users": ["bob"]}],
}
AUDIT_LOG = "/var/log/pypi-index/audit.log"


@pytest.fixture(scope="module")
def converged():
    result = run_playbook("site.yml", SETTINGS)
    assert result.returncode == 0, output(result)


def refusal(url, path, credentials):
    """(status, body) of a bare upload of that file."""
    body, headers = upload_form(path.name, path.read_bytes(), credentials)
    request = urllib.request.Request(f"{url}/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def stored(server, files):
    return [path.name for path in files if server.host.file(f"{server.packages_dir}/{path.name}").exists]


def test_an_upload_into_a_namespace_without_a_grant_gets_409_and_stores_nothing(converged, server, tmp_path):
    files = make_package(tmp_path / "bob", "acme_tool", "1.0")

    result = twine_upload(server.url, files, "bob", BOB)
    status, body = refusal(server.url, files[0], ("bob", BOB))

    assert result.returncode != 0 and "409" in result.stdout + result.stderr, result.stdout + result.stderr
    assert status == 409
    assert "acme-tool is in the namespace acme, and bob holds no grant for it" in body
    assert stored(server, files) == []
    # Reserved for the pass-through too: never asked upstream, so nobody else's acme-tool installs.
    assert http_status(f"{server.url}/simple/acme-tool/") == 404


def test_the_granted_group_publishes_into_the_namespace_and_anyone_outside_it(converged, server, tmp_path):
    alices = make_package(tmp_path / "alice", "acme_tool", "1.0")
    bobs = make_package(tmp_path / "bob", "bobs_own_tool", "1.0")

    for files, user, password in ((alices, "alice", ALICE), (bobs, "bob", BOB)):
        result = twine_upload(server.url, files, user, password)
        assert result.returncode == 0, result.stdout + result.stderr
        assert stored(server, files) == [path.name for path in files]
    assert http_status(f"{server.url}/simple/acme-tool/",
                       headers={"Authorization": basic_auth(("alice", ALICE))}) == 200


def test_a_project_grant_rules_its_project_alone(converged, server, tmp_path):
    bobs = make_package(tmp_path / "bob", "acme_shared", "1.0")
    alices = make_package(tmp_path / "alice", "acme_shared", "2.0")

    assert twine_upload(server.url, bobs, "bob", BOB).returncode == 0
    assert refusal(server.url, alices[0], ("alice", ALICE))[0] == 409
    assert stored(server, alices) == []


def test_the_audit_trail_names_each_upload_its_user_client_and_answer_and_holds_no_password(converged, server):
    text = server.host.check_output("cat %s", AUDIT_LOG)
    events = [json.loads(line) for line in text.splitlines()]

    refused = [event for event in events if (event["user"], event["status"]) == ("bob", 409)
               and event["file"].startswith("acme_tool-1.0")]
    stored = [event for event in events if (event["user"], event["status"]) == ("alice", 200)
              and event["file"].startswith("acme_tool-1.0")]
    assert refused and "holds no grant" in refused[0]["reason"], events
    assert len(stored) == 2 and all(len(event["sha256"]) == 64 for event in stored), events
    assert all(event["client"] for event in events)
    assert ALICE not in text and BOB not in text


def test_pep_752_namespaces_are_served_in_json(converged, server, tmp_path):
    """The project's namespaces in its JSON page, the namespace list and a namespace's details (API 1.5)."""
    files = make_package(tmp_path, "acme_listed", "1.0")
    assert twine_upload(server.url, files, "alice", ALICE).returncode == 0
    auth = {"Authorization": basic_auth(("alice", ALICE))}

    def json_at(path):
        request = urllib.request.Request(f"{server.url}{path}",
                                         headers={**auth, "Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json", path
            return json.loads(response.read())

    project = json_at("/simple/acme-listed/")
    assert project["meta"]["api-version"] == "1.5"
    assert project["namespaces"] == [{"name": "acme", "owned": True}]
    assert json_at("/simple/namespaces") == [{"name": "acme"}]
    assert json_at("/simple/namespace/acme") == {"name": "acme", "parent": None, "children": []}
    assert http_status(f"{server.url}/simple/namespace/nobody", headers=auth) == 404
