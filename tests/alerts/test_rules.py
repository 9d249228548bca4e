"""The pypi_monitor role's Prometheus files, rendered with its defaults for a
small cluster (hosts.yml) by render.yml on the controller, pass Debian's
promtool: the scrape configuration checks, and every alert fires on what it
is for and not on the healthy case beside it (pypi-index.test.yml).

promtool comes from Debian's prometheus package, unpacked by `make unit`
(PROMTOOL), not installed: no Prometheus server runs here.
"""
import os
import pathlib
import shutil
import subprocess

import pytest

HERE = pathlib.Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
PROMTOOL = os.environ.get("PROMTOOL", "promtool")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("prometheus")
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg")}
    subprocess.run(["ansible-playbook", "-i", str(HERE / "hosts.yml"), str(HERE / "render.yml"),
                    "-e", f"out={out}", "-e", f"ansible_python_interpreter={shutil.which('python')}"],
                   cwd=PROJECT, env=env, check=True, capture_output=True, text=True, timeout=300)
    shutil.copy(HERE / "pypi-index.test.yml", out)
    return out


def promtool(*args):
    result = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_scrape_configuration_checks(rendered):
    promtool("check", "config", "--syntax-only", str(rendered / "prometheus.yml"))


def test_the_rules_check_and_each_alert_fires_as_its_test_says(rendered):
    promtool("check", "rules", str(rendered / "pypi-index.yml"))
    assert "SUCCESS" in promtool("test", "rules", str(rendered / "pypi-index.test.yml"))
