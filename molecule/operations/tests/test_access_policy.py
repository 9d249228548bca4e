"""Every row of the access policy (docs/access-policy.md), walked with real requests: every method, path and
credential the table names, with reads open and with reads behind a password.

The table is read from the document itself, so the policy is stated once and each of its rows is a test."""

import re
import uuid

import pytest
from playbooks import output, run_playbook
from pypi_client import PROJECT_DIR, basic_auth, http_status, make_package, twine_upload, upload_form, wait_listed

POLICY = PROJECT_DIR / "docs" / "access-policy.md"
NAME = "policy_example"
PROJECT = NAME.replace("_", "-")
UPLOADER = ("dora", "dora-long-password-0123")
READER = ("ci-policy", "ci-policy-read-password-0123456789")
USERS = {"pypi_index_upload_users": [{"name": UPLOADER[0], "password": UPLOADER[1]}]}
MODES = {
    "open": USERS,
    "private": {**USERS, "pypi_index_read_users": [{"name": READER[0], "password": READER[1]}],
                "pypi_index_authenticate": ["update", "download", "list"]},
}
# The table's credential columns, in its order: what each sends (None: no Authorization header).
CREDENTIALS = {
    "anonymous": None,
    "wrong password": (UPLOADER[0], "not-the-password"),
    "made-up token": ("__token__", "pypi-made-up-" + "0" * 40),
    "reader": READER,
    "uploader": UPLOADER,
}


def policy_rows():
    """The table's rows: (row, [paths], [methods], {credential: {mode: status or None}})."""
    text = POLICY.read_text()
    table = text[text.index("| row | path | methods |"):].split("\n\n")[0].splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[3:] == list(CREDENTIALS), header
    rows = []
    for line in table[2:]:
        row, paths, methods, *cells = [cell.strip() for cell in line.strip("|").split("|")]
        expected = {}
        for credential, cell in zip(CREDENTIALS, cells):
            statuses = [part.strip() for part in cell.split("/")]
            statuses = statuses * 2 if len(statuses) == 1 else statuses
            expected[credential] = {mode: None if status == "-" else int(status)
                                    for mode, status in zip(MODES, statuses)}
        rows.append((row, re.findall(r"`([^`]+)`", paths), methods.split(), expected))
    return rows


ROWS = policy_rows()


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("policy"), NAME, "1.0.0")


@pytest.fixture(scope="module", params=list(MODES))
def mode(request, dists, server):
    """The host in one read mode, holding the private project."""
    result = run_playbook("site.yml", MODES[request.param])
    assert result.returncode == 0, output(result)
    if http_status(f"{server.url}/packages/{dists[0].name}", headers={"Authorization": basic_auth(UPLOADER)}) != 200:
        uploaded = twine_upload(server.url, dists, *UPLOADER)
        assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert wait_listed(server.url, dists[1].name, credentials=UPLOADER)
    return request.param


def send(server, method, path, credentials, dists):
    """(status, the file name of the upload it carried or None): a POST to / carries an upload of a new file."""
    wheel = next(dist for dist in dists if dist.name.endswith(".whl")).name
    url = server.url + path.replace("<project>", PROJECT).replace("<Project>", NAME.title()).replace("<wheel>", wheel)
    headers = {"Authorization": basic_auth(credentials)} if credentials else {}
    data, probe = None, None
    if method == "POST" and path == "/":
        probe = f"policy_probe-{uuid.uuid4().int % 10**9}.tar.gz"
        data, form_headers = upload_form(probe, b"probe")
        headers.update(form_headers)
    elif method in ("POST", "PUT", "PATCH", "PROPFIND"):
        data = b"<?xml version='1.0'?><methodCall><methodName>search</methodName></methodCall>"
    return http_status(url, method=method, data=data, headers=headers), probe


@pytest.mark.parametrize("row,paths,methods,expected", ROWS, ids=[row[0] for row in ROWS])
def test_every_request_of_the_row_gets_the_table_s_answer(mode, dists, host, server, row, paths, methods, expected):
    """Each request's status is the table's; an upload is stored when it is answered 200, and only then."""
    wrong, sent = [], 0
    for path in paths:
        for method in methods:
            for credential, statuses in expected.items():
                if statuses[mode] is None:
                    continue
                got, probe = send(server, method, path, CREDENTIALS[credential], dists)
                sent += 1
                if got != statuses[mode]:
                    wrong.append(f"{method} {path} as {credential}: {got}, not {statuses[mode]}")
                if probe and host.file(f"{server.packages_dir}/{probe}").exists != (got == 200):
                    wrong.append(f"{method} {path} as {credential}: {got}, and {probe} stored or not the other way")
    assert sent >= len(paths) * len(methods) * 4, sent
    assert not wrong, f"{row} ({mode} reads):\n" + "\n".join(wrong)
