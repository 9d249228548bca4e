"""The stand-in upstream (pypi-upstream): its files and its request log; the index host's settings."""

import os
import subprocess
from pathlib import Path

import yaml

UPSTREAM = "pypi-upstream"
UPSTREAM_LOG = "/var/log/upstream-requests.log"
# The index host's settings, as the scenario gives them.
HOST_VARS = yaml.safe_load((Path(__file__).parents[1] / "host_vars" / "pypi-index-pt-debian12.yml").read_text())
# Older than the cooldown of host_vars: listed at once.
PUBLISHED_LONG_AGO = "30 days ago"


def upstream_testinfra_host():
    import testinfra
    return testinfra.get_host(f"ansible://{UPSTREAM}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")


def publish_upstream(host, paths, uploaded=PUBLISHED_LONG_AGO):
    """Put files on the stand-in upstream, uploaded when `touch -d` says (its JSON's upload-time), or with no
    upload-time when uploaded is None."""
    for path in paths:
        subprocess.run(["docker", "cp", str(path), f"{UPSTREAM}:/srv/upstream/files/{path.name}"],
                       check=True, capture_output=True, timeout=120)
    stamp = "@0" if uploaded is None else uploaded
    names = " ".join(f"/srv/upstream/files/{path.name}" for path in paths)
    host.run_expect([0], f"touch -d '{stamp}' {names}")


def upstream_requests(host):
    """What the stand-in upstream was asked, one path a line. Its log exists from its start: a missing one (a
    stand-in that never ran) fails, so that a check of what it was not asked cannot pass on it."""
    log = host.file(UPSTREAM_LOG)
    assert log.exists, f"{UPSTREAM_LOG} is missing on {host}: the stand-in upstream is not running"
    return log.content_string
