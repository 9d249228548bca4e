"""Ops add, rotate and remove upload users; uploaders and downloaders see the result at once."""

import urllib.request

import pytest
from playbooks import changed_count, output, run_playbook
from pypi_client import (BackgroundRequests, fresh_venv, make_package, pip, raw_upload_status,
                         twine_upload)

NAME = "ops_example"
ALICE_1, ALICE_2, ALICE_3 = "alice-first-password", "alice-second-password", "alice-unused-password"
BOB_1, BOB_2 = "bob-first-password", "bob-second-password"


def users(alice, bob=None):
    listed = [{"name": "alice", "password": alice}]
    if bob:
        listed.append({"name": "bob", "password": bob})
    return {"pypi_index_upload_users": listed}


@pytest.fixture(scope="module")
def converged():
    result = run_playbook("site.yml", users(ALICE_1, BOB_1), verbose=True)
    assert result.returncode == 0, output(result)
    return result


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    root = tmp_path_factory.mktemp("ops")
    return [make_package(root / version, NAME, version) for version in ("1.0.0", "2.0.0")]


def can_upload(server, dist, user, password):
    """Whether the server lets this user in: 401 (a wrong, old or removed password) is refused; 200 (stored) or
    409 (the same file again) got past the password; any other answer fails the test."""
    status = raw_upload_status(server.url, dist, (user, password))
    assert status in (200, 401, 409), (user, status)
    return status != 401


def test_converge_output_holds_no_password(converged):
    for secret in (ALICE_1, BOB_1):
        assert secret not in output(converged)


def test_rotation_changes_only_the_password_file(host, converged, dists, tmp_path, server):
    first = twine_upload(server.url, dists[0], "alice", ALICE_1)
    assert first.returncode == 0, first.stdout + first.stderr
    wheel = next(d for d in dists[0] if d.suffix == ".whl")
    apache_pid = _apache_pid(host)
    downloads = _download_loop([f"{server.url}/packages/{wheel.name}", f"{server.url}/simple/ops-example/"])

    with downloads:
        rotated = run_playbook("rotate-upload-passwords.yml", users(ALICE_2, BOB_1), verbose=True)
        # Still going once the play has swapped the file: the swap happened under load.
        assert downloads.running, f"the download loop ended after {downloads.done} requests, before the play did"

    assert rotated.returncode == 0, output(rotated)
    # The new file written beside the old one, then renamed over it.
    assert changed_count(rotated) == 2
    assert "RUNNING HANDLER" not in rotated.stdout
    for secret in (ALICE_1, ALICE_2, BOB_1):
        assert secret not in output(rotated)
    assert downloads.done > 0 and downloads.failures == [], downloads.failures
    assert _apache_pid(host) == apache_pid

    assert not can_upload(server, dists[1][0], "alice", ALICE_1)
    second = twine_upload(server.url, dists[1], "alice", ALICE_2)
    assert second.returncode == 0, second.stdout + second.stderr

    python = fresh_venv(tmp_path / "client")
    for version in ("1.0.0", "2.0.0"):
        installed = pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/",
                        f"{NAME}=={version}")
        assert installed.returncode == 0, installed.stdout + installed.stderr


def test_rotation_with_unchanged_passwords_changes_nothing(converged):
    again = run_playbook("rotate-upload-passwords.yml", users(ALICE_2, BOB_1))
    assert again.returncode == 0, output(again)
    assert changed_count(again) == 0


def test_rotating_one_user_leaves_the_others(converged, dists, server):
    only_bob = {**users(ALICE_3, BOB_2), "pypi_index_users_to_update": ["bob"]}
    result = run_playbook("rotate-upload-passwords.yml", only_bob)
    assert result.returncode == 0, output(result)

    assert can_upload(server, dists[1][0], "bob", BOB_2)
    assert not can_upload(server, dists[1][0], "bob", BOB_1)
    assert can_upload(server, dists[1][0], "alice", ALICE_2)
    assert not can_upload(server, dists[1][0], "alice", ALICE_3)


def test_removed_user_is_locked_out(converged, dists, server):
    result = run_playbook("rotate-upload-passwords.yml", users(ALICE_2))
    assert result.returncode == 0, output(result)

    assert not can_upload(server, dists[1][0], "bob", BOB_2)
    assert can_upload(server, dists[1][0], "alice", ALICE_2)


def _apache_pid(host):
    return host.check_output("systemctl show --property MainPID --value apache2")


def _download_loop(urls):
    """Downloads in the background until the block ends (at most 200,000 requests or 300 s: more than a rotation
    takes, so that the loop still runs when the play ends)."""

    def download(n):
        with urllib.request.urlopen(urls[n % len(urls)], timeout=10) as response:
            response.read()

    return BackgroundRequests(download, limit=200_000)
