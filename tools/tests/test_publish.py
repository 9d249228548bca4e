"""Who may publish what: an upload into a namespace, or of a project with a grant, by a user the rule does not
list is refused with 409 and stores nothing; names no rule covers stay open, but for a first upload of a name the
upstream has (409) or while the upstream cannot be asked (503); new rules apply without a restart."""

import hashlib
import json
import time

import pytest
from upload_app import Upstream, closed_port, has_page, index, remove, rewrite, rules, upload, upstream  # noqa: F401

from pypi_index_tools.publish import Rules

@pytest.mark.parametrize("user,project,refused_by", [
    ("alice", "acme", None),
    ("alice", "Acme_Tool", None),  # normalized first
    ("bob", "acme-tool", "in the namespace acme,"),
    ("bob", "acme-labs-x", None),  # the longest namespace rules
    ("alice", "acme-labs-x", "in the namespace acme-labs,"),
    ("carol", "acme-shared", None),  # a project grant rules its project alone
    ("alice", "acme-shared", "acme-shared has a project grant, and alice holds none for it"),
    ("bob", "acmecorp", None),  # a prefix of a name is not its namespace
    ("bob", "other", None),
    (None, "acme-tool", "an anonymous uploader"),
])
def test_the_rule_that_covers_a_name_decides(rules, user, project, refused_by):
    why = Rules(rules).current().refusal(user, project)
    if refused_by is None:
        assert why is None
    else:
        assert refused_by in why


def test_a_rules_file_without_namespaces_or_grants_claims_no_name(tmp_path):
    """As one written by hand may be: every name open, nothing raised."""
    path = tmp_path / "publish.json"
    path.write_text("{}")
    checked = Rules(path).current()
    assert (checked.namespaces, checked.projects) == ({}, {})
    assert checked.refusal("bob", "acme-tool") is None and not checked.claimed("acme-tool")


def test_a_changed_rules_file_applies_at_once(rules):
    checked = Rules(rules)
    assert checked.current().refusal("bob", "acme-tool")
    rewrite(rules, 1, namespaces={"acme": ["alice", "bob"]})
    assert checked.current().refusal("bob", "acme-tool") is None


@pytest.mark.parametrize("filename,because,asked", [
    ("acme_tool-1.0.tar.gz", "acme-tool is in the namespace acme, and bob holds no grant for it", []),
    ("six-99.0.tar.gz", "the upstream index has a project six, which this upload would shadow for every client",
     ["/simple/six/"]),
])
def test_an_upload_without_a_grant_or_shadowing_the_upstream_gets_409_and_stores_nothing(
        index, filename, because, asked):
    url, root, _, _ = index
    status, body = upload(url, "bob", filename, b"bob's")

    assert status == 409
    assert because in body
    assert list(root.iterdir()) == []
    assert Upstream.asked == asked


def test_an_upload_with_a_grant_or_outside_every_rule_is_stored(index):
    url, root, _, _ = index
    assert upload(url, "alice", "acme_tool-1.0.tar.gz", b"alice's")[0] == 200
    assert upload(url, "bob", "other-1.0.tar.gz", b"bob's")[0] == 200

    assert (root / "acme_tool-1.0.tar.gz").read_bytes() == b"alice's"
    assert (root / "other-1.0.tar.gz").read_bytes() == b"bob's"


def test_a_name_the_upstream_lacks_a_claimed_one_or_one_with_a_page_here_is_stored(index):
    url, root, pages, rules = index
    assert upload(url, "bob", "bobs_tool-1.0.tar.gz", b"new")[0] == 200
    assert Upstream.asked == ["/simple/bobs-tool/"]
    # Claimed names are the operator's: the upstream is not asked.
    assert upload(url, "alice", "acme_tool-1.0.tar.gz", b"claimed")[0] == 200
    rewrite(rules, 2, projects={"six": ["bob"]})
    assert upload(url, "bob", "six-99.0.tar.gz", b"granted")[0] == 200
    # A project the index already has: its next upload is not a first one.
    has_page(pages, "old-lib")
    assert upload(url, "bob", "old_lib-2.0.tar.gz", b"next")[0] == 200
    assert Upstream.asked == ["/simple/bobs-tool/"]
    assert sorted(path.name for path in root.iterdir()) == [
        "acme_tool-1.0.tar.gz", "bobs_tool-1.0.tar.gz", "old_lib-2.0.tar.gz", "six-99.0.tar.gz"]


def test_with_new_names_granted_only_a_claimed_name_or_one_the_index_has_is_stored(index):
    url, root, pages, rules = index
    rewrite(rules, 4, new_names="granted")
    has_page(pages, "old-lib")

    status, body = upload(url, "bob", "bobs_tool-1.0.tar.gz", b"new")
    assert status == 409
    assert "bobs-tool is a new name, and new names need a project grant or a namespace here" in body
    assert upload(url, "alice", "acme_tool-1.0.tar.gz", b"claimed")[0] == 200
    assert upload(url, "bob", "old_lib-2.0.tar.gz", b"next")[0] == 200
    assert sorted(path.name for path in root.iterdir()) == ["acme_tool-1.0.tar.gz", "old_lib-2.0.tar.gz"]
    assert Upstream.asked == []


def test_an_upstream_that_cannot_be_asked_refuses_a_first_upload_and_says_why(index):
    url, root, _, rules = index
    rewrite(rules, 3, upstream={"url": f"http://127.0.0.1:{closed_port()}/simple/", "timeout": 2})

    status, body = upload(url, "bob", "bobs_tool-1.0.tar.gz", b"new")

    assert status == 503
    assert "the upstream index could not be asked whether it has bobs-tool" in body
    assert list(root.iterdir()) == []


def test_every_upload_stored_or_refused_is_in_the_audit_trail_with_no_secret(index, tmp_path):
    url, _, _, _ = index
    assert upload(url, "alice", "acme_tool-1.0.tar.gz", b"alice's")[0] == 200
    assert upload(url, "bob", "acme_tool-2.0.tar.gz", b"bob's")[0] == 409

    stored, refused = (json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines())
    assert {key: stored[key] for key in ("event", "file", "user", "client", "status")} == {
        "event": "upload", "file": "acme_tool-1.0.tar.gz", "user": "alice", "client": "127.0.0.1", "status": 200}
    assert stored["sha256"] == hashlib.sha256(b"alice's").hexdigest()
    assert (refused["user"], refused["status"]) == ("bob", 409)
    assert "in the namespace acme, and bob holds no grant" in refused["reason"]
    assert "unchecked-here" not in (tmp_path / "audit.log").read_text()


def test_a_stored_upload_and_no_refused_one_gives_the_last_upload_time_to_monitoring(index, tmp_path):
    url, _, _, _ = index
    metrics = tmp_path / "uploads.prom"
    assert upload(url, "bob", "acme_tool-2.0.tar.gz", b"bob's")[0] == 409
    assert not metrics.exists()

    before = time.time()
    assert upload(url, "alice", "acme_tool-1.0.tar.gz", b"alice's")[0] == 200

    line = metrics.read_text().splitlines()[-1]
    name, value = line.split()
    assert name == "pypi_index_last_upload_timestamp_seconds"
    assert before - 0.001 <= float(value) <= time.time() + 0.001


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_a_removal_over_http_is_refused_to_everyone_and_is_in_the_audit_trail(index, tmp_path, user):
    """The owner (alice) and an uploader without a grant (bob) alike: a removal would leave the name, and the file
    name, free for other bytes; the operators remove a release with the playbook."""
    url, root, _, _ = index
    assert upload(url, "alice", "acme_tool-1.0.tar.gz", b"alice's")[0] == 200

    status, body = remove(url, user, "acme_tool", "1.0")

    assert status == 403
    assert "acme_tool-1.0.tar.gz was not removed: removal over HTTP is off" in body
    assert "playbooks/remove-release.yml" in body
    assert (root / "acme_tool-1.0.tar.gz").read_bytes() == b"alice's"
    events = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(event["event"], event["user"], event["status"]) for event in events] == [
        ("upload", "alice", 200), ("remove", user, 403)]


@pytest.mark.parametrize("status,refused,reason", [("archived", True, "moved to acme-tool2"),
                                                   ("quarantined", True, ""), ("deprecated", False, "")])
def test_an_archived_or_quarantined_project_takes_no_upload(index, status, refused, reason):
    url, root, _, _ = index
    (root / "acme-tool.status").write_text(json.dumps({"status": status, "reason": reason}))

    answer, body = upload(url, "alice", "acme_tool-2.0.tar.gz", b"late")

    if refused:
        assert answer == 409
        because = f": {reason}" if reason else ""
        assert f"acme-tool is {status} and takes no upload{because}.</pre>" in body
    else:
        assert answer == 200
    assert (root / "acme_tool-2.0.tar.gz").exists() != refused


def test_an_upload_pypiserver_refuses_itself_is_in_the_audit_trail_too(index, tmp_path):
    url, root, _, _ = index
    assert upload(url, "alice", "acme_tool-1.0.tar.gz", b"first")[0] == 200

    assert upload(url, "alice", "acme_tool-1.0.tar.gz", b"second")[0] == 409

    assert (root / "acme_tool-1.0.tar.gz").read_bytes() == b"first"
    again = json.loads((tmp_path / "audit.log").read_text().splitlines()[-1])
    assert (again["event"], again["user"], again["status"]) == ("upload", "alice", 409)
    assert "acme_tool-1.0.tar.gz is already here" in again["reason"]


def test_a_file_name_the_operators_removed_is_never_used_again_but_the_project_takes_new_versions(index, tmp_path):
    """A `<file>.removed` (the remove playbook's) keeps the name from other bytes; the owner uploads the next
    version as usual, the page (kept by the page builder) saying the name is the index's."""
    url, root, pages, _ = index
    (root / "acme_tool-1.0.tar.gz.removed").write_text("{}")
    has_page(pages, "acme-tool")

    status, _ = upload(url, "alice", "acme_tool-1.0.tar.gz", b"other bytes")

    assert status == 409 and not (root / "acme_tool-1.0.tar.gz").exists()
    refused = json.loads((tmp_path / "audit.log").read_text().splitlines()[-1])
    assert "acme_tool-1.0.tar.gz was removed by the operators, and its name is never used again" in refused["reason"]
    assert upload(url, "alice", "acme_tool-1.1.tar.gz", b"next")[0] == 200
