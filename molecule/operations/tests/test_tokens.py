"""Upload tokens, issued by playbooks/tokens.yml: twine, uv publish and poetry publish each publish into a granted
namespace with one (the user __token__), get 409 outside its user's grants and store nothing; a token expired by
date or revoked gets 403; bad input changes no token; the audit trail names the token, never holds it; and an index
that takes tokens only refuses a password upload."""

import datetime
import json
import re

import pytest
from playbooks import output, run_playbook
from pypi_client import basic_auth, http_status, make_package, poetry_publish, twine_upload, uv_publish

ALICE, BOB = "alice-publishes-acme", "bob-publishes-beta"
SETTINGS = {
    "pypi_index_upload_users": [{"name": "alice", "password": ALICE}, {"name": "bob", "password": BOB}],
    "pypi_index_namespaces": [{"name": "acme", "users": ["alice"]}, {"name": "beta", "users": ["bob"]}],
}
TOKENS_FILE = "/etc/pypi-index/tokens.json"
AUDIT_LOG = "/var/log/pypi-index/audit.log"
NEXT_YEAR = (datetime.date.today() + datetime.timedelta(days=365)).isoformat()


@pytest.fixture(scope="module")
def converged():
    result = run_playbook("site.yml", SETTINGS)
    assert result.returncode == 0, output(result)


def tokens_playbook(action, **token):
    return run_playbook("tokens.yml", {"pypi_index_tokens_action": action,
                                       **{f"pypi_index_tokens_{key}": value for key, value in token.items()}})


def issue(name, user="alice", namespaces=("acme",), expires=NEXT_YEAR):
    result = tokens_playbook("issue", name=name, user=user, namespaces=list(namespaces), expires=expires)
    assert result.returncode == 0, output(result)
    return re.search(r"pidx-[A-Za-z0-9]{43}", result.stdout).group(0)


@pytest.fixture(scope="module")
def alices_token(converged):
    return issue("alice-ci")


def stored(server, files):
    return [path.name for path in files if server.host.file(f"{server.packages_dir}/{path.name}").exists]


def publish(client, server, files, token, tmp_path):
    if client == "twine":
        return twine_upload(server.url, files, "__token__", token, reader=("alice", ALICE))
    if client == "uv":
        return uv_publish(server.url, files, token)
    return poetry_publish(server.url, files, token, tmp_path)


@pytest.mark.parametrize("client", ["twine", "uv", "poetry"])
def test_each_client_publishes_into_the_granted_namespace_with_a_token(server, alices_token, client, tmp_path):
    files = make_package(tmp_path, f"acme_by_{client}", "1.0")

    result = publish(client, server, files, alices_token, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert stored(server, files) == [path.name for path in files]


@pytest.mark.parametrize("client", ["twine", "uv", "poetry"])
def test_each_client_gets_409_outside_the_tokens_user_grants_and_nothing_is_stored(server, alices_token, client,
                                                                                   tmp_path):
    files = make_package(tmp_path, f"beta_by_{client}", "1.0")

    result = publish(client, server, files, alices_token, tmp_path)

    assert result.returncode != 0
    assert "409" in result.stdout + result.stderr, result.stdout + result.stderr
    assert stored(server, files) == []
    assert http_status(f"{server.url}/simple/beta-by-{client}/",
                       headers={"Authorization": basic_auth(("bob", BOB))}) == 404


def expire(server, name):
    """Move a token's last day to yesterday, as the calendar would."""
    tokens = json.loads(server.host.file(TOKENS_FILE).content_string)
    for token in tokens["tokens"]:
        if token["name"] == name:
            token["expires"] = (datetime.date.today() - datetime.timedelta(days=1)).isoformat()
    server.host.run_test("printf '%%s' %s > %s", json.dumps(tokens), TOKENS_FILE)


@pytest.mark.parametrize("how", ["expired", "revoked"])
def test_a_token_expired_by_date_or_revoked_gets_403_at_once(server, converged, how, tmp_path):
    token = issue(f"alice-{how}")
    if how == "expired":
        expire(server, f"alice-{how}")
    else:
        assert tokens_playbook("revoke", name=f"alice-{how}").returncode == 0
    files = make_package(tmp_path, f"acme_{how}", "1.0")

    result = twine_upload(server.url, files, "__token__", token)

    assert result.returncode != 0
    assert "403" in result.stdout + result.stderr, result.stdout + result.stderr
    assert stored(server, files) == []


def test_the_list_shows_each_tokens_scope_and_state_and_no_secret(server, alices_token):
    issue("alice-listed")
    assert tokens_playbook("revoke", name="alice-listed").returncode == 0
    again = tokens_playbook("revoke", name="alice-listed")

    listed = tokens_playbook("list")

    assert again.returncode == 0 and "changed=0" in again.stdout, output(again)
    assert f"alice-ci: alice, scope namespace acme, until {NEXT_YEAR}, in force" in listed.stdout, output(listed)
    assert f"alice-listed: alice, scope namespace acme, until {NEXT_YEAR}, revoked on" in listed.stdout
    assert alices_token not in listed.stdout
    assert "sha256" not in listed.stdout


@pytest.mark.parametrize("token,because", [
    ({"user": "alice", "namespaces": ["beta"]}, "the scope is wider than alice's grants: beta is in the namespace beta"),
    ({"user": "mallory", "namespaces": ["acme"]}, "mallory is not an upload user"),
    ({"user": "alice", "namespaces": ["acme"], "expires": "2020-01-01"}, "the expiry 2020-01-01 is not between today"),
    ({"user": "alice", "namespaces": ["acme"], "expires": "2027-13-99"},
     "the expiry '2027-13-99' is not a day written YYYY-MM-DD"),
    ({"user": "alice", "namespaces": ["acme"], "expires": "2999-01-01"}, "(pypi_index_tokens_max_days: 366)"),
    ({"user": "alice", "namespaces": ["acme"], "name": "alice-ci"}, "A token named alice-ci exists"),
])
def test_bad_input_issues_no_token_and_says_why(server, alices_token, token, because):
    before = server.host.file(TOKENS_FILE).sha256sum

    result = tokens_playbook("issue", **{"name": "bad-one", "expires": NEXT_YEAR, **token})

    assert result.returncode != 0
    assert because in output(result), output(result)
    assert "No token was issued" in output(result)
    assert server.host.file(TOKENS_FILE).sha256sum == before


def test_the_audit_trail_names_each_token_event_and_never_a_token(server, alices_token):
    text = server.host.check_output("cat %s", AUDIT_LOG)
    events = [json.loads(line) for line in text.splitlines()]

    by_token = [event for event in events if event.get("token") == "alice-ci" and event["event"] == "upload"]
    assert {(event["user"], event["status"]) for event in by_token} == {("alice", 200), ("alice", 409)}, by_token
    assert all(event["client"] for event in by_token)
    issued = [event for event in events if event["event"] == "token-issue" and event["token"] == "alice-ci"]
    assert issued and issued[0]["namespaces"] == ["acme"] and issued[0]["owner"] == "alice"
    assert [event for event in events if event["event"] == "token-revoke" and event["token"] == "alice-revoked"]
    refused = [event for event in events if event.get("token") == "alice-expired" and event["status"] == 403]
    assert refused and "expired on" in refused[0]["reason"]
    assert "pidx-" not in text and ALICE not in text


def test_with_tokens_only_a_password_upload_is_refused_and_a_token_publishes(server, alices_token, tmp_path):
    result = run_playbook("site.yml", {**SETTINGS, "pypi_index_upload_passwords": False})
    assert result.returncode == 0, output(result)
    by_password = make_package(tmp_path / "password", "acme_by_password", "1.0")
    by_token = make_package(tmp_path / "token", "acme_by_token", "1.0")

    refused = twine_upload(server.url, by_password, "alice", ALICE)
    published = twine_upload(server.url, by_token, "__token__", alices_token, reader=("alice", ALICE))

    assert refused.returncode != 0 and "403" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    assert stored(server, by_password) == []
    assert published.returncode == 0, published.stdout + published.stderr
    restored = run_playbook("site.yml", SETTINGS)
    assert restored.returncode == 0, output(restored)


def test_a_token_written_to_the_operator_s_file_is_not_in_the_play_s_output(server, converged, tmp_path):
    """For a run whose output is logged (CI): the token goes to a file only its owner reads, and it publishes."""
    path = tmp_path / "ci.token"
    result = tokens_playbook("issue", name="alice-file", user="alice", namespaces=["acme"], expires=NEXT_YEAR,
                             output_file=str(path))
    assert result.returncode == 0, output(result)

    token = path.read_text().strip()
    assert re.fullmatch(r"pidx-[A-Za-z0-9]{43}", token)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert token not in output(result) and "pidx-" not in output(result)
    files = make_package(tmp_path, "acme_by_file", "1.0")
    published = twine_upload(server.url, files, "__token__", token, reader=("alice", ALICE))
    assert published.returncode == 0, output(published)
