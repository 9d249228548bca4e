"""Upload tokens: sent as the user __token__, a token in force publishes as its user, within its scope (403
outside it) and its user's grants (409 outside them); an unknown, expired or revoked token, or one whose user is no
longer an upload user, gets 403 and stores nothing; the audit trail names the token and never holds it. A scope
wider than the user's grants is refused before a token is issued."""

import base64
import datetime
import hashlib
import json
import secrets

import pytest
from upload_app import RULES, Upstream, index, rules, upload, upstream  # noqa: F401

from pypi_index_tools.publish import Rules
from pypi_index_tools.tokens import main as check_scope
from pypi_index_tools.tokens import Tokens, expiry_refusal, scope_refusal

TODAY = datetime.datetime.now(datetime.timezone.utc).date()


def issue(tmp_path, name, user, namespaces=(), projects=(), expires=TODAY, revoked=None):
    """Add a token to the tokens file as the role does; the token itself."""
    token = "pidx-" + secrets.token_urlsafe(32)
    path = tmp_path / "tokens.json"
    tokens = json.loads(path.read_text())["tokens"] if path.exists() else []
    tokens.append({"name": name, "user": user, "namespaces": list(namespaces), "projects": list(projects),
                   "expires": expires.isoformat(), "sha256": hashlib.sha256(token.encode()).hexdigest(),
                   "issued": TODAY.isoformat(), "revoked": revoked})
    path.write_text(json.dumps({"tokens": tokens}))
    return token


def test_a_token_in_force_publishes_as_its_user_inside_its_scope(index, tmp_path):
    url, root, _, _ = index
    token = issue(tmp_path, "alice-ci", "alice", namespaces=["acme"])

    assert upload(url, "__token__", "acme_tool-1.0.tar.gz", b"by token", token)[0] == 200
    assert (root / "acme_tool-1.0.tar.gz").read_bytes() == b"by token"
    event = json.loads((tmp_path / "audit.log").read_text())
    assert (event["user"], event["token"], event["status"]) == ("alice", "alice-ci", 200)
    assert token not in (tmp_path / "audit.log").read_text()


def test_a_token_is_held_to_its_scope_and_to_its_users_grants(index, tmp_path):
    url, root, _, rules = index
    # Alice may publish acme-tool and any open name, but this token only acme-widget.
    narrow = issue(tmp_path, "alice-widget", "alice", projects=["acme-widget"])
    status, body = upload(url, "__token__", "acme_tool-1.0.tar.gz", b"x", narrow)
    assert status == 403
    assert "the token alice-widget is scoped to acme-widget" in body
    # A grant taken away after the token was issued: the grants of the day rule.
    wide = issue(tmp_path, "bob-acme", "bob", namespaces=["acme"])
    status, body = upload(url, "__token__", "acme_tool-1.0.tar.gz", b"x", wide)
    assert status == 409
    assert "bob holds no grant for it" in body
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("kind,because", [
    ("expired", "the token old expired on"),
    ("revoked", "the token old was revoked on 2026-01-02"),
    ("unknown", "this token is not one of this index's"),
    ("no longer an uploader", "belongs to dave, who is no longer an upload user"),
])
def test_a_token_out_of_force_gets_403_and_stores_nothing(index, tmp_path, kind, because):
    url, root, _, _ = index
    token = {
        "expired": lambda: issue(tmp_path, "old", "alice", ["acme"], expires=TODAY - datetime.timedelta(days=1)),
        "revoked": lambda: issue(tmp_path, "old", "alice", ["acme"], revoked="2026-01-02"),
        "unknown": lambda: "pidx-" + secrets.token_urlsafe(32),
        "no longer an uploader": lambda: issue(tmp_path, "old", "dave", ["acme"]),
    }[kind]()

    status, body = upload(url, "__token__", "acme_tool-1.0.tar.gz", b"x", token)

    assert status == 403
    assert because in body
    assert list(root.iterdir()) == []
    event = json.loads((tmp_path / "audit.log").read_text())
    assert (event["status"], event["client"]) == (403, "127.0.0.1")
    assert token not in (tmp_path / "audit.log").read_text()


@pytest.mark.parametrize("user,namespaces,projects,refused_by", [
    ("alice", ["acme"], [], None),
    ("alice", ["acme-widgets"], [], None),  # inside a granted namespace
    ("alice", [], ["acme-tool", "open-name"], None),
    ("bob", ["acme"], [], "wider than bob's grants: acme is in the namespace acme"),
    ("alice", ["acme-labs"], [], "wider than alice's grants: acme-labs is in the namespace acme-labs"),
    ("bob", [], ["acme-shared"], "acme-shared has a project grant"),
    ("alice", ["other"], [], "other is not inside a declared namespace"),
    ("alice", [], [], "a token needs a scope"),
    ("dave", [], ["open-name"], "dave is not an upload user"),
])
def test_a_scope_wider_than_the_users_grants_is_refused_before_issue(rules, user, namespaces, projects,
                                                                     refused_by):
    why = scope_refusal(Rules(rules).current(), user, namespaces, projects)
    if refused_by is None:
        assert why is None
    else:
        assert refused_by in why


def test_the_scope_check_exits_1_and_says_why(rules, capsys):
    expiry = ["--expires", TODAY.isoformat(), "--max-days", "30"]
    assert check_scope(["--rules", str(rules), "--user", "alice", "--namespace", "acme", *expiry]) == 0
    assert check_scope(["--rules", str(rules), "--user", "bob", "--namespace", "acme", *expiry]) == 1
    assert "wider than bob's grants" in capsys.readouterr().err
    assert check_scope(["--rules", str(rules), "--user", "carol", "--project", "acme-shared", *expiry]) == 0
    assert check_scope(["--rules", str(rules), "--user", "carol", "--project", "acme-shared", "--project", "acme-x",
                        *expiry]) == 1
    assert "acme-x is in the namespace acme" in capsys.readouterr().err
    assert check_scope(["--rules", str(rules), "--user", "alice", "--namespace", "acme", "--expires", "2027-13-99",
                        "--max-days", "30"]) == 1
    assert "is not a day written YYYY-MM-DD" in capsys.readouterr().err


@pytest.mark.parametrize("expires,refused_by", [
    ("2027-13-99", "is not a day written YYYY-MM-DD"),
    ("2027-02-30", "is not a day written YYYY-MM-DD"),
    ("20270101", "is not a day written YYYY-MM-DD"),
    ("2027-1-1", "is not a day written YYYY-MM-DD"),
    ("soon", "is not a day written YYYY-MM-DD"),
    ((TODAY - datetime.timedelta(days=1)).isoformat(), "is not between today"),
    ((TODAY + datetime.timedelta(days=91)).isoformat(), "(pypi_index_tokens_max_days: 90)"),
    (TODAY.isoformat(), None),
    ((TODAY + datetime.timedelta(days=90)).isoformat(), None),
])
def test_an_expiry_is_a_real_day_from_today_to_the_maximum(expires, refused_by):
    why = expiry_refusal(expires, TODAY, 90)
    assert why is None if refused_by is None else refused_by in why


@pytest.mark.parametrize("content", ['{}', '{"tokens": []}'])
def test_a_tokens_file_with_no_token_knows_none_and_fails_closed(tmp_path, content):
    path = tmp_path / "tokens.json"
    path.write_text(content)
    credentials = base64.b64encode(b"__token__:pidx-made-up").decode()

    token, why = Tokens(path).current().check(credentials, {"alice"}, TODAY.isoformat())

    assert token is None and why == "this token is not one of this index's"
