"""Passwords rotate while other users keep installing and uploading: they see
no failure, the old passwords are refused at once, and the password file is
never seen half-written."""

import json
import threading
import urllib.request

import pytest
from playbooks import output, run_playbook
from pypi_client import (BackgroundRequests, basic_auth, http_status, raw_upload_status, role_default, wait_for,
                         wait_listed)

# Read users need 32 characters; the same suffixes serve the upload users.
OLD, NEW = "-first-token-0123456789abcdefghijkl", "-second-token-0123456789abcdefghijk"
WATCH_SECONDS = 120
# Reads the file as Apache and pypiserver do, in a loop, until told to stop:
# every read must hold every user, each with a whole hash (bcrypt for the
# upload users, {SHA} for the read users).
WATCHER = r"""
import json, os, re, sys, time
path, names, stop = sys.argv[1], set(sys.argv[2].split(",")), sys.argv[3]
line = re.compile(r"^([^:]+):(\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}|\{SHA\}[A-Za-z0-9+/]{27}=)$")
reads, partial, deadline = 0, [], time.monotonic() + float(sys.argv[4])
while not os.path.exists(stop) and time.monotonic() < deadline:
    text = open(path).read()
    found = [line.match(entry) for entry in text.splitlines()]
    if not all(found) or {match.group(1) for match in found} != names:
        partial.append(text[:200])
    reads += 1
print(json.dumps({"reads": reads, "partial": partial[:3]}))
"""


def users(rotated_password):
    return {
        "pypi_index_upload_users": [{"name": "alice", "password": "alice" + rotated_password},
                                    {"name": "bob", "password": "bob" + OLD}],
        "pypi_index_read_users": [{"name": "ci", "password": "ci" + rotated_password},
                                  {"name": "dev", "password": "dev" + OLD}],
        "pypi_index_authenticate": ["update", "download", "list"],
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("rotation")


def tarball(workdir, name):
    """A file to upload under that name (pypiserver only reads the name)."""
    path = workdir / name
    path.write_bytes(b"not really a tarball")
    return path


@pytest.fixture(scope="module")
def private_index(server, workdir):
    result = run_playbook("site.yml", users(OLD))
    assert result.returncode == 0, output(result)
    assert raw_upload_status(server.url, tarball(workdir, "ops_seed-1.0.tar.gz"), ("bob", "bob" + OLD)) == 200
    assert wait_listed(server.url, "ops_seed-1.0.tar.gz", ("dev", "dev" + OLD))


def _load(url, workdir):
    """dev reads pages and a file, bob uploads new files, until the block ends
    (at most 2000 requests or 300 s); every answer must be 200."""
    reader = {"Authorization": basic_auth(("dev", "dev" + OLD))}

    def step(n):
        if n % 10 == 9:
            status = raw_upload_status(url, tarball(workdir, f"ops_load-{n}.tar.gz"), ("bob", "bob" + OLD))
        else:
            path = ("/simple/ops-seed/", "/packages/ops_seed-1.0.tar.gz")[n % 2]
            with urllib.request.urlopen(urllib.request.Request(url + path, headers=reader), timeout=10) as response:
                response.read()
                status = response.status
        return None if status == 200 else status

    return BackgroundRequests(step, limit=2000)


def test_rotation_under_load(host, private_index, server, workdir):
    stop = "/tmp/stop-watching"
    host.run(f"rm -f {stop}")
    watched = {}

    def watch():
        watched["result"] = host.run("python3 -c %s %s %s %s %s", WATCHER, role_default("pypi_index_htpasswd_path"),
                                     "alice,bob,ci,dev", stop, str(WATCH_SECONDS))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with _load(server.url, workdir) as load:
        # Requests before and after the rotation, not a fixed time (a loaded machine sends fewer in it).
        wait_for(lambda: load.done, what="the load's first 20 requests", until=lambda done: done >= 20)
        rotated = run_playbook("rotate-upload-passwords.yml", users(NEW))
        after = load.done
        wait_for(lambda: load.done, what="20 more requests after the rotation",
                 until=lambda done: done >= min(after + 20, load.limit))
    host.run(f"touch {stop}")
    watcher.join(WATCH_SECONDS + 30)

    assert rotated.returncode == 0, output(rotated)
    assert load.done > 0 and load.failures == [], load.failures
    report = json.loads(watched["result"].stdout)
    assert report["reads"] > 0 and report["partial"] == [], report

    page = f"{server.url}/simple/ops-seed/"
    for user in ("alice", "ci"):
        assert http_status(page, headers={"Authorization": basic_auth((user, user + OLD))}) == 401
        assert http_status(page, headers={"Authorization": basic_auth((user, user + NEW))}) == 200
    assert raw_upload_status(server.url, tarball(workdir, "ops_after-1.0.tar.gz"), ("alice", "alice" + NEW)) == 200
    assert raw_upload_status(server.url, tarball(workdir, "ops_after-1.1.tar.gz"), ("ci", "ci" + NEW)) == 403
