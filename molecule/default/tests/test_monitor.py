"""Prometheus (pypi_monitor, on the Debian 12 host) scrapes both hosts' metrics ports and fires an alert for
real: an upload that the pages do not list."""

import json
import time

from pypi_client import get_from_inside, make_package, raw_upload_status, wait_for

testinfra_hosts = ["pypi-index-debian12"]


def prometheus(monitor, query):
    status, text = get_from_inside(monitor, f"http://127.0.0.1:9090/api/v1/{query}")
    assert status == 200
    return json.loads(text)["data"]


def test_prometheus_scrapes_every_host_of_the_inventory(host):
    def health():
        return {(target["labels"]["job"], target["labels"]["instance"]): target["health"]
                for target in prometheus(host, "targets")["activeTargets"]}
    expected = {(job, name): "up" for job in ("node", "apache", "mtail")
                for name in ("pypi-index-debian12", "pypi-index-debian13")}

    assert wait_for(health, what="every target up", until=lambda seen: seen == expected, pause=2) == expected


def test_an_upload_the_stopped_page_service_does_not_list_fires_the_alert(host, index, uploader, tmp_path):
    """The scenario's thresholds (host_vars): an alert 10 s after an unlisted upload, rules evaluated every
    5 s; the test waits for it at most 120 s."""
    def firing():
        return [alert["labels"]["instance"] for alert in prometheus(host, "alerts")["alerts"]
                if alert["labels"]["alertname"] == "PypiIndexPagesBehindUploads" and alert["state"] == "firing"]

    host.run_expect([0], "systemctl stop pypi-index-pages.service")
    try:
        dist = make_package(tmp_path, "unlisted_probe", f"0.1.{int(time.time())}")[-1]
        # Not twine, which would wait for the file to be listed.
        assert raw_upload_status(index.url, dist, (uploader["name"], uploader["password"]), cafile=index.ca) == 200
        alerts = wait_for(firing, seconds=120, what="PypiIndexPagesBehindUploads firing", pause=2)
    finally:
        host.run_expect([0], "systemctl start pypi-index-pages.service")

    assert alerts == ["pypi-index-debian12"]
