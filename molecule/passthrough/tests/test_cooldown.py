"""A cooldown for public releases: a public file younger than the minimum age is neither listed nor served.

The stand-in upstream has public-cool 1.0, 2.0 and 3.0, uploaded 30 days, 2
days and 1 hour ago (upload-times set by the test), and public-untimed, whose
page gives no upload-time. host_vars keep the role's default cooldown, 7 days.
"""

import datetime
import json
import re
import time

import pytest
from playbooks import output, run_playbook
from pypi_client import client_env, fresh_venv, http_response, make_package, page_text, pip, run, wait_for
from stand_in import HOST_VARS, publish_upstream

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
COOL = "public_cool"
UNTIMED = "public_untimed"
# Uploaded just under the cooldown ago: old enough RIPE_IN seconds into its test.
RIPENING = "public_ripening"
RIPE_IN = 20
UPLOADED = {"1.0": "30 days ago", "2.0": "2 days ago", "3.0": "1 hour ago"}
PAGE_TTL = HOST_VARS["pypi_index_upstream_page_ttl"]


@pytest.fixture(scope="module")
def cool(upstream_host, tmp_path_factory):
    """public-cool's three versions and public-untimed on the stand-in upstream."""
    root = tmp_path_factory.mktemp("cool")
    for version, uploaded in UPLOADED.items():
        publish_upstream(upstream_host, make_package(root / version, COOL, version), uploaded)
    publish_upstream(upstream_host, make_package(root / "untimed", UNTIMED, "1.0"), uploaded=None)


def page_url(name):
    return f"/simple/{name.replace('_', '-')}/"


def json_page(server, name):
    return json.loads(page_text(f"{server.url}{page_url(name)}", headers={"Accept": JSON_TYPE}))


def versions_listed(page):
    return sorted({re.match(r"[^-]+-([^-]+?)(?:-.*|\.tar\.gz)$", entry["filename"]).group(1)
                   for entry in page["files"]})


def wheel_url(page):
    return next(entry["url"] for entry in page["files"] if entry["filename"].endswith(".whl"))


def installed(python, name):
    listed = json.loads(pip(python, "list", "--format", "json").stdout)
    return {entry["name"]: entry["version"] for entry in listed}.get(name)


def test_pip_and_uv_install_the_version_older_than_the_cooldown(server, cool, tmp_path):
    python = fresh_venv(tmp_path / "pip")
    by_pip = pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/", "public-cool")
    assert by_pip.returncode == 0, by_pip.stdout + by_pip.stderr
    assert installed(python, COOL) == "1.0"

    python = fresh_venv(tmp_path / "uv")
    by_uv = run(["uv", "pip", "install", "--python", str(python), "--index-url", f"{server.url}/simple/",
                 "public-cool"], env=client_env(UV_NO_CONFIG="1", UV_NO_CACHE="1"))
    assert by_uv.returncode == 0, by_uv.stdout + by_uv.stderr
    assert installed(python, COOL) == "1.0"


def test_a_version_younger_than_the_cooldown_is_not_listed_and_its_files_are_refused(server, cool, tmp_path):
    page = json_page(server, COOL)
    html = page_text(f"{server.url}{page_url(COOL)}")
    python = fresh_venv(tmp_path / "pip")
    young = pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/", "public-cool==3.0")

    assert versions_listed(page) == ["1.0"] and page["versions"] == ["1.0"], page
    assert "public_cool-2.0" not in html and "public_cool-3.0" not in html and "public_cool-1.0" in html, html
    assert young.returncode != 0 and installed(python, COOL) is None
    # Its file by the path the upstream gives it, or with the stamp it would
    # have (old enough in 7 days), is refused; a listed one is served.
    wheel = f"{COOL}-3.0-py3-none-any.whl"
    in_six_days = (datetime.datetime.now() + datetime.timedelta(days=6)).strftime("%Y%m%d%H%M%S")
    assert http_response(f"{server.url}/upstream-files/{wheel}")[0] == 404
    assert http_response(f"{server.url}/upstream-files/{in_six_days}/{wheel}")[0] == 404
    assert http_response(f"{server.url}{wheel_url(page)}")[0] == 200


def test_the_json_keeps_the_upstream_upload_time_and_size(server, cool, upstream_host):
    for entry in json_page(server, COOL)["files"]:
        path = f"/srv/upstream/files/{entry['filename']}"
        mtime = int(upstream_host.check_output(f"stat -c %Y {path}"))
        uploaded = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc)
        assert entry["size"] == upstream_host.file(path).size, entry
        assert entry["upload-time"] == uploaded.strftime("%Y-%m-%dT%H:%M:%S.000000Z"), entry


def test_uv_exclude_newer_through_the_index_reads_the_upload_times(server, cool, tmp_path):
    def uv_install(days_ago):
        python = fresh_venv(tmp_path / f"uv-{days_ago}")
        cutoff = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days_ago)).isoformat()
        result = run(["uv", "pip", "install", "--python", str(python), "--index-url", f"{server.url}/simple/",
                      "--exclude-newer", cutoff, "public-cool"], env=client_env(UV_NO_CONFIG="1", UV_NO_CACHE="1"))
        return result, installed(python, COOL)

    (recent, recent_version), (too_old, too_old_version) = uv_install(20), uv_install(40)
    assert recent.returncode == 0 and recent_version == "1.0", recent.stdout + recent.stderr
    assert too_old.returncode != 0 and too_old_version is None, too_old.stdout + too_old.stderr


def test_a_file_without_upload_time_is_refused_by_default(server, cool, tmp_path):
    python = fresh_venv(tmp_path / "pip")
    result = pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/", "public-untimed")
    assert json_page(server, UNTIMED)["files"] == []
    assert result.returncode != 0 and installed(python, UNTIMED) is None


def test_a_file_that_becomes_old_enough_while_its_page_is_cached_is_listed_within_the_page_ttl(
        server, upstream_host, tmp_path):
    """The upstream's page does not change (its ETag neither): a revalidated page would keep the file hidden."""
    files = make_package(tmp_path, RIPENING, "1.0")
    # Old enough RIPE_IN seconds from now: the first look must come before,
    # which two `docker cp`, a `touch` and one page fetch allow even on a
    # loaded 2-CPU machine; checked, since a later look would prove nothing.
    ripe_at = int(time.time()) + RIPE_IN
    publish_upstream(upstream_host, files, f"@{ripe_at - 7 * 86400}")
    hidden = json_page(server, RIPENING)["files"]
    looked = time.time()
    assert looked < ripe_at, f"first look {looked - ripe_at:.1f} s after the file became old enough: too late to tell"
    assert hidden == [], hidden
    # Listed within the page TTL once old enough; the bound adds a margin for
    # a loaded machine. A page revalidated instead of fetched again would never
    # list it.
    bound = ripe_at - time.time() + PAGE_TTL + 30
    listed = wait_for(lambda: json_page(server, RIPENING)["files"], bound, f"{RIPENING} listed once old enough")
    print(f"\nripened file: listed {time.time() - ripe_at:.1f} s after it became old enough (page TTL {PAGE_TTL} s)")
    assert http_response(f"{server.url}{wheel_url({'files': listed})}")[0] == 200


def test_exceptions_and_a_quarantined_cached_version_hold_at_once(server, cool, upstream_host, tmp_path):
    """One run of site.yml, as an operator would: 3.0 excepted, 1.0 (cached) quarantined, untimed files passed."""
    cached = wheel_url(json_page(server, COOL))
    assert http_response(f"{server.url}{cached}")[0] == 200
    rules = {"pypi_index_upstream_min_age_exceptions": [{"project": "Public.Cool", "version": "3.0",
                                                         "reason": "A security fix needed today"}],
             "pypi_index_upstream_quarantine": [{"project": "public-cool", "version": "1.0",
                                                 "reason": "Its maintainer's account was taken over"}],
             "pypi_index_upstream_untimed": "pass"}
    applied = run_playbook("site.yml", rules)
    try:
        assert applied.returncode == 0, output(applied)
        left = server.host.check_output("htcacheclean -A -p /var/cache/apache2/mod_cache_disk | cut -d' ' -f1")
        page = json_page(server, COOL)
        python = fresh_venv(tmp_path / "pip")
        result = pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/", "public-cool")
        untimed = pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/", "public-untimed")

        assert "/simple/" not in left, left
        assert versions_listed(page) == ["3.0"], page
        assert page["meta"]["_cooldown"] == {"min-age-seconds": 7 * 86400, "exceptions": ["3.0"],
                                             "quarantined": ["1.0"]}, page["meta"]
        assert result.returncode == 0 and installed(python, COOL) == "3.0", result.stdout + result.stderr
        assert untimed.returncode == 0, untimed.stdout + untimed.stderr
        assert http_response(f"{server.url}{cached}")[0] == 404
    finally:
        restored = run_playbook("site.yml")
        assert restored.returncode == 0, output(restored)


def test_upstream_down_serves_no_file_younger_than_the_cooldown_from_the_cache(server, cool, upstream_host):
    assert versions_listed(json_page(server, COOL)) == ["1.0"]
    stopped = upstream_host.run("systemctl stop pypi-upstream")
    try:
        assert stopped.rc == 0, stopped.stderr
        # Down as the index host sees it, and the cached page past its
        # freshness: what is served now is the stale copy, nothing fresher.
        asked = server.host.run("python3 -c \"import urllib.request; "
                                "urllib.request.urlopen('http://pypi-upstream/simple/', timeout=3)\"")
        assert asked.rc != 0, "the stand-in upstream still answers"
        time.sleep(PAGE_TTL + 1)
        status, headers = http_response(f"{server.url}{page_url(COOL)}", headers={"Accept": JSON_TYPE})
        page = json_page(server, COOL)
        assert status == 200, (status, dict(headers))
        # mod_cache's mark of a stale answer served while the origin fails.
        assert "111" in (headers.get("Warning") or ""), dict(headers)
        assert versions_listed(page) == ["1.0"], page
        # Downloaded by the installs above, so in the cache.
        assert http_response(f"{server.url}{wheel_url(page)}")[0] == 200
    finally:
        started = upstream_host.run("systemctl start pypi-upstream")
        assert started.rc == 0, started.stderr
