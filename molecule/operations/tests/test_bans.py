"""fail2ban bans an address that keeps failing password checks; Apache refuses
it, other clients go on, and the ban lifts."""

import time

import pytest
from playbooks import output, run_playbook
from pypi_client import WAIT_SECONDS, basic_auth, http_status, metrics_from_inside, status_from_inside, wait_for

USER, PASSWORD = "carol", "carol-long-password"
MAX_RETRY, BAN_SECONDS = 3, 20
SETTINGS = {
    "pypi_index_upload_users": [{"name": USER, "password": PASSWORD}],
    "pypi_index_authenticate": ["update", "download", "list"],
    "pypi_index_ban_max_retry": MAX_RETRY,
    "pypi_index_ban_find_time": "1m",
    "pypi_index_ban_time": f"{BAN_SECONDS}s",
    # host_vars exempt this machine, for the other modules' wrong passwords.
    "pypi_index_ban_ignore_from": [],
}
GOOD = {"Authorization": basic_auth((USER, PASSWORD))}
WRONG = {"Authorization": basic_auth((USER, "a-wrong-password"))}


@pytest.fixture(scope="module")
def banned(host, server):
    """This machine fails MAX_RETRY password checks, then waits (bounded) to be refused: fail2ban reads the log
    on its own time, later still on a loaded machine."""
    result = run_playbook("site.yml", SETTINGS)
    assert result.returncode == 0, output(result)
    assert http_status(f"{server.url}/simple/", headers=GOOD) == 200
    for _ in range(MAX_RETRY):
        assert http_status(f"{server.url}/simple/", headers=WRONG) == 401
    wait_for(lambda: http_status(f"{server.url}/simple/", headers=GOOD), what="this machine banned (403)",
             until=lambda status: status == 403, pause=0.5)
    return time.monotonic()


def test_fail2ban_decides_the_ban(host, banned):
    status = host.check_output("fail2ban-client status pypi-index")
    assert "Currently banned:\t1" in status, status


def test_monitoring_counts_the_ban(host, banned):
    """mtail (pypi_metrics) counts it from fail2ban's log; this machine is the one address banned here."""
    bans = ("pypi_index_bans_total", "")
    wait_for(lambda: metrics_from_inside(host, "mtail"), what="the ban counted",
             until=lambda samples: samples[bans] >= 1, pause=1)


def test_banned_address_is_refused_even_with_the_right_password(banned, server):
    assert http_status(f"{server.url}/simple/", headers=GOOD) == 403
    assert http_status(f"{server.url}/", method="POST", data=b"", headers=GOOD) == 403


def test_other_clients_are_unaffected(host, banned):
    assert status_from_inside(host, "/simple/", headers=GOOD) == 200


def test_the_ban_lifts(banned, server):
    # After the ban time, plus fail2ban's own pace (slower on a loaded machine).
    wait_for(lambda: http_status(f"{server.url}/simple/", headers=GOOD),
             banned + BAN_SECONDS + WAIT_SECONDS - time.monotonic(), f"the ban ({BAN_SECONDS} s) lifted (200)",
             until=lambda status: status == 200, pause=1)
