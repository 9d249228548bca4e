"""The pypi_metrics role's mtail programs count what they are for from log
lines written as Apache (the pass-through's pypi_index_upstream format) and
fail2ban write them, run by Debian's mtail (`--one_shot`, unpacked by `make
unit` as MTAIL, not installed)."""
import os
import pathlib
import subprocess

HERE = pathlib.Path(__file__).resolve().parent
PROGRAMS = HERE.parents[1] / "roles/pypi_metrics/files/etc/mtail"
MTAIL = os.environ.get("MTAIL", "mtail")

UPSTREAM = """\
200 "-" "cache miss: attempting entity save"
200 "-" "cache hit"
502 "-" "cache miss: attempting entity save"
504 "-" "cache miss: attempting entity save"
200 "111 Revalidation failed" "cache hit"
404 "-" "cache miss: attempting entity save"
"""
FAIL2BAN = """\
2026-12-04 18:00:00,123 fail2ban.actions        [812]: NOTICE  [pypi-index] Ban 192.0.2.7
2026-12-04 18:00:01,456 fail2ban.actions        [812]: NOTICE  [pypi-index] Restore Ban 192.0.2.8
2026-12-04 18:00:02,789 fail2ban.actions        [812]: NOTICE  [sshd] Ban 192.0.2.9
2026-12-04 18:10:00,012 fail2ban.actions        [812]: NOTICE  [pypi-index] Unban 192.0.2.7
2026-12-04 18:20:00,345 fail2ban.actions        [812]: NOTICE  [pypi-index] Ban 192.0.2.10
"""


def counts(tmp_path):
    (tmp_path / "pypi-index-upstream.log").write_text(UPSTREAM)
    (tmp_path / "fail2ban.log").write_text(FAIL2BAN)
    result = subprocess.run(
        [MTAIL, "--progs", str(PROGRAMS), "--one_shot", "--one_shot_format", "prometheus",
         "--emit_prog_label=false", "--logtostderr",
         "--logs", f"{tmp_path / 'pypi-index-upstream.log'},{tmp_path / 'fail2ban.log'}"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(line.split() for line in result.stdout.splitlines() if line.startswith("pypi_index_"))


def test_every_pass_through_request_counts_and_errors_are_5xx_or_a_stale_copy(tmp_path):
    found = counts(tmp_path)
    assert found["pypi_index_upstream_requests_total"] == "6"
    # The 502, the 504 and the stale copy (Warning 111); a 404 is the upstream's answer, not its failure.
    assert found["pypi_index_upstream_errors_total"] == "3"


def test_only_new_bans_of_the_index_jail_count(tmp_path):
    assert counts(tmp_path)["pypi_index_bans_total"] == "2"
