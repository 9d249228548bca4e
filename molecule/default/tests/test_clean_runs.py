"""Runs as an operator sees them on the provisioned hosts: check mode predicts
no change, and a normal run prints no warning and builds no page, with the inventory given as a
directory that also holds the client files the role wrote there. Each run
covers both hosts at once, as an operator's run covers the inventory."""

from playbooks import changed_count, output, run_playbook


def test_check_mode_on_provisioned_hosts_reports_no_change():
    result = run_playbook("site.yml", check=True)
    assert result.returncode == 0, output(result)
    assert changed_count(result) == 0, result.stdout


def test_a_second_run_prints_no_warning_and_builds_no_page():
    result = run_playbook("site.yml", verbose=True)
    assert result.returncode == 0, output(result)
    assert changed_count(result) == 0, result.stdout
    for marker in ("[WARNING]", "[DEPRECATION WARNING]"):
        assert marker not in output(result), output(result)
    # On each host the page build found the pages current (--if-changed) and built nothing.
    task = result.stdout.split("TASK [pypi_index : Build the pages now, if what they come from changed]")[1]
    answers = task.split("\nTASK [")[0].split("ok: [")[1:]
    assert len(answers) == 2 and all('"current": true' in answer for answer in answers), task
