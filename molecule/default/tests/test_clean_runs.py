"""Runs as an operator sees them on the provisioned hosts: check mode predicts
no change, and a normal run prints no warning, with the inventory given as a
directory that also holds the client files the role wrote there. Each run
covers both hosts at once, as an operator's run covers the inventory."""

from playbooks import changed_count, output, run_playbook


def test_check_mode_on_provisioned_hosts_reports_no_change():
    result = run_playbook("site.yml", check=True)
    assert result.returncode == 0, output(result)
    assert changed_count(result) == 0, result.stdout


def test_a_second_run_prints_no_warning():
    result = run_playbook("site.yml")
    assert result.returncode == 0, output(result)
    assert changed_count(result) == 0, result.stdout
    for marker in ("[WARNING]", "[DEPRECATION WARNING]"):
        assert marker not in output(result), output(result)
