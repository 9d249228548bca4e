"""Each host serves its metrics (pypi_metrics) on its metrics port to itself and to the monitor (Prometheus on
the Debian 12 host), and refuses any other address: node exporter with the index's own figures, and the Apache
exporter (test_monitor.py: Prometheus)."""

import ssl
import time

import pytest
from pypi_client import METRICS_PORT, get_from_inside, make_package, metrics_from_inside, twine_upload, wait_for


@pytest.fixture(scope="module")
def uploaded_at(index, uploader, tmp_path_factory):
    dists = make_package(tmp_path_factory.mktemp("package"), "metrics_probe", f"0.1.{int(time.time())}")
    before = time.time()
    result = twine_upload(index.url, dists, uploader["name"], uploader["password"], cert=index.ca)
    assert result.returncode == 0, result.stdout + result.stderr
    return before


def node_metrics(host, wanted=bool, what="node exporter's samples"):
    """The node exporter's samples from the host's metrics port, once `wanted` holds of them (the page service
    writes its figures after its build, which follows an upload by a second or so)."""
    return wait_for(lambda: metrics_from_inside(host), what=what, until=wanted, pause=1)


def test_the_page_service_counts_every_file_and_project_it_lists(host, index, uploaded_at):
    files = len([name for name in host.file(index.packages_dir).listdir() if not name.startswith(".")])
    samples = node_metrics(host, lambda s: s.get(("pypi_index_files", "")) == files, f"pypi_index_files {files}")

    assert samples[("pypi_index_files", "")] == files
    assert samples[("pypi_index_projects", "")] >= 1
    assert samples[("pypi_index_pages_built_timestamp_seconds", "")] >= uploaded_at
    assert 0 <= samples[("pypi_index_pages_build_duration_seconds", "")] < 60


def test_the_last_upload_time_is_when_the_upload_was_stored(host, uploaded_at):
    samples = node_metrics(host)

    assert uploaded_at - 1 <= samples[("pypi_index_last_upload_timestamp_seconds", "")] <= time.time() + 1


def test_the_certificate_expiry_is_the_served_certificate_s(host, index):
    not_after = host.check_output("python3 -c %s", "import ssl; print(ssl._ssl._test_decode_cert("
                                  f"{index.tls_dir + '/selfsigned/server.crt'!r})['notAfter'])")
    expiry = ssl.cert_time_to_seconds(not_after)

    assert node_metrics(host)[("pypi_index_tls_certificate_expiry_timestamp_seconds", "")] == expiry


def test_the_apache_exporter_reads_apache(host):
    assert metrics_from_inside(host, "apache")[("apache_up", "")] == 1


def address(host):
    return host.ansible("setup", "gather_subset=network")["ansible_facts"]["ansible_default_ipv4"]["address"]


def other(host, name):
    return host.get_host(f"ansible://{name}", ansible_inventory=host.backend.ansible_inventory)


def test_the_package_root_s_disk_space_is_measured(host, index, uploaded_at):
    host.run_expect([0], "systemctl start pypi-metrics-directory-size.service")
    used = int(host.check_output(f"du --block-size=1 --summarize {index.packages_dir}").split()[0])

    samples = node_metrics(host)
    assert samples[("pypi_index_directory_size_bytes", f'directory="{index.packages_dir}"')] == used


def test_mtail_serves_the_pass_through_s_and_the_bans_counters(host):
    samples = metrics_from_inside(host, "mtail")

    assert {"pypi_index_upstream_requests_total", "pypi_index_upstream_errors_total",
            "pypi_index_bans_total"} <= {name for name, _ in samples}


@pytest.mark.parametrize("path", ["node", "apache", "mtail"])
def test_the_monitor_may_read_the_metrics_port_and_another_address_gets_403(host, path):
    """The Debian 13 host is no monitor and no allowed address: it gets 403 from the Debian 12 host (the
    monitor), which reads the Debian 13 host's metrics."""
    if host.backend.host == "pypi-index-debian12":
        stranger = other(host, "pypi-index-debian13")
        assert get_from_inside(stranger, f"http://{address(host)}:{METRICS_PORT}/{path}/metrics") == (403, "")
    else:
        monitor = other(host, "pypi-index-debian12")
        status, text = get_from_inside(monitor, f"http://{address(host)}:{METRICS_PORT}/{path}/metrics")
        assert status == 200 and "# TYPE" in text
