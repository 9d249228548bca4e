"""One index URL for private and public packages, with no dependency confusion.

The stand-in upstream (pypi-upstream) holds public packages and an attacker's
versions of a private name (corp-app 99.0) and of a reserved one (acme-secret).
The index holds corp-app 1.x, which depends on a public package.
"""

import json
import re
import time

import pytest
from playbooks import output, run_playbook
from pypi_client import (client_env, fresh_venv, http_response, make_package, metrics_from_inside, page_text, pip,
                         role_default, run, twine_upload, wait_for)
from stand_in import HOST_VARS, publish_upstream, upstream_requests

PRIVATE = "corp_app"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
# New versions each session, so that `molecule verify` can run again.
PRIVATE_VERSION = f"1.{int(time.time())}"
# Granted in host_vars, so that an upload here may shadow the upstream's.
SHADOWED = "public_shadow"
# The upstream has it and no grant claims it: an upload of it is refused.
TAKEN = "public_taken"
PAGE_TTL = HOST_VARS["pypi_index_upstream_page_ttl"]
UPSTREAM_TIMEOUT = HOST_VARS["pypi_index_upstream_timeout"]


@pytest.fixture(scope="session")
def upstream(upstream_host, tmp_path_factory):
    """Fill the stand-in upstream, every file older than the cooldown; returns its testinfra host."""
    root = tmp_path_factory.mktemp("upstream")
    publish_upstream(upstream_host,
                     make_package(root / "base", "public_base", "1.0")
                     + make_package(root / "dep", "public_dep", "1.0", ["public-base"])
                     + make_package(root / "shadowed", SHADOWED, "1.0")
                     + make_package(root / "taken", TAKEN, "1.0")
                     + make_package(root / "quarantined", "public_quarantined", "1.0")
                     + make_package(root / "locked", "public_locked", "1.0")
                     # The attacker's: a private name with a higher version, and a reserved name.
                     + make_package(root / "evil", PRIVATE, "99.0")
                     + make_package(root / "reserved", "acme_secret", "1.0"))
    return upstream_host


@pytest.fixture(scope="session")
def private_app(server, uploader, upstream, tmp_path_factory):
    """corp-app in the index, depending on a package only the upstream has."""
    files = make_package(tmp_path_factory.mktemp("private"), PRIVATE, PRIVATE_VERSION, ["public-dep"])
    result = twine_upload(server.url, files, uploader["name"], uploader["password"])
    assert result.returncode == 0, result.stdout + result.stderr
    return files


def installed_versions(python):
    listed = pip(python, "list", "--format", "json")
    return {entry["name"]: entry["version"] for entry in json.loads(listed.stdout)}


def test_private_app_with_public_dependencies_installs_with_pip(server, private_app, tmp_path):
    python = fresh_venv(tmp_path / "pip")
    result = pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/", "corp-app")
    assert result.returncode == 0, result.stdout + result.stderr
    versions = installed_versions(python)
    assert versions["corp_app"] == PRIVATE_VERSION
    assert versions["public_dep"] == "1.0" and versions["public_base"] == "1.0"


def test_private_app_with_public_dependencies_installs_with_uv(server, private_app, tmp_path):
    python = fresh_venv(tmp_path / "uv")
    env = client_env(UV_NO_CONFIG="1", UV_NO_CACHE="1")
    result = run(["uv", "pip", "install", "--python", str(python), "--index-url", f"{server.url}/simple/",
                  "corp-app"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed_versions(python)["corp_app"] == PRIVATE_VERSION


def test_attacker_version_of_a_private_name_is_never_listed_nor_installed(server, private_app, upstream, tmp_path):
    page = page_text(f"{server.url}/simple/corp-app/")
    assert f"corp_app-{PRIVATE_VERSION}" in page and "99.0" not in page
    python = fresh_venv(tmp_path / "victim")
    result = pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/", "corp-app==99.0")
    assert result.returncode != 0
    assert "corp_app" not in installed_versions(python)
    assert "/simple/corp-app/" not in upstream_requests(upstream)


def test_a_name_not_normalized_is_sent_to_the_normalized_one_first(server, private_app):
    """Corp_App, corp.app and CORP-APP are corp-app: the private project, never an upstream lookup."""
    for spelling in ("Corp_App", "corp.app", "CORP-APP"):
        status, headers = http_response(f"{server.url}/simple/{spelling}/")
        assert status in (301, 302, 303, 307, 308), (spelling, status)
        assert headers["Location"].endswith("/simple/corp-app/"), headers["Location"]


def test_reserved_name_is_404_and_never_asked_upstream(server, upstream):
    for name in ("acme-secret", "acme-anything"):
        status, headers = http_response(f"{server.url}/simple/{name}/")
        assert status == 404 and "Location" not in headers
    assert "acme" not in upstream_requests(upstream)


@pytest.mark.parametrize("accept, form", [
    (None, "text/html"),
    ("text/html", "text/html"),
    (JSON_TYPE, JSON_TYPE),
    # pip's
    (f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01", JSON_TYPE),
])
def test_every_answer_names_accept_in_vary_from_upstream_or_from_the_cache(server, upstream, accept, form):
    def answer():
        return http_response(f"{server.url}/simple/public-base/", headers={"Accept": accept} if accept else {})[1]

    first = answer()
    # mod_cache stores an answer once it is sent whole, and keeps it fresh for
    # the page TTL (2 s here): on a busy machine the next request may come
    # before it is stored (no X-Cache at all) or after it went stale (a MISS
    # again), so ask again, without a pause, until one is a hit (bounded).
    hit = wait_for(answer, what="an answer from the cache (X-Cache: HIT)", pause=0,
                   until=lambda headers: (headers.get("X-Cache") or "").startswith("HIT"))
    # A hit has no mod_headers: its Vary comes from mod_rewrite.
    for attempt, headers in (("miss or hit", first), ("hit", hit)):
        assert headers["Content-Type"].startswith(form), (attempt, dict(headers))
        assert [value.strip() for value in headers.get("Vary", "").split(",")] == ["Accept"], (attempt, dict(headers))


def test_upstream_pages_come_in_the_form_asked_with_links_through_the_index(server, upstream):
    json_page = page_text(f"{server.url}/simple/public-dep/", headers={"Accept": JSON_TYPE})
    urls = [entry["url"] for entry in json.loads(json_page)["files"]]
    # /upstream-files/<when it became old enough>/<its path upstream>
    assert urls and all(re.match(r"/upstream-files/[0-9]{14}/public_dep-1\.0", url) for url in urls), urls

    _, html_headers = http_response(f"{server.url}/simple/public-dep/")
    assert html_headers["Content-Type"].startswith("text/html")
    html_page = page_text(f"{server.url}/simple/public-dep/")
    assert re.search(r'href="/upstream-files/[0-9]{14}/public_dep-1\.0-py3-none-any\.whl#sha256=', html_page), html_page


def test_a_first_upload_of_a_name_the_upstream_has_gets_409_and_clients_still_get_the_public_one(
        server, uploader, upstream, tmp_path):
    files = make_package(tmp_path, TAKEN, "99.0")
    result = twine_upload(server.url, files, uploader["name"], uploader["password"])

    assert result.returncode != 0 and "409" in result.stdout + result.stderr, result.stdout + result.stderr
    assert not any(server.host.file(f"{server.packages_dir}/{path.name}").exists for path in files)
    page = page_text(f"{server.url}/simple/{TAKEN.replace('_', '-')}/")
    assert f"{TAKEN}-1.0" in page and f"{TAKEN}-99.0" not in page


def test_a_granted_name_is_never_passed_through_and_its_upload_shadows_the_upstream(server, uploader, upstream,
                                                                                     tmp_path):
    """A project grant claims a name the upstream has: it is never looked up there (404 before its first upload,
    the upstream not asked), its grantee may upload it, and from then on only those files are listed."""
    page_url = f"{server.url}/simple/{SHADOWED.replace('_', '-')}/"
    for headers in ({}, {"Accept": JSON_TYPE}):
        assert http_response(page_url, headers=headers)[0] == 404
    assert f"/simple/{SHADOWED.replace('_', '-')}/" not in upstream_requests(upstream)
    files = make_package(tmp_path, SHADOWED, "0.1")
    result = twine_upload(server.url, files, uploader["name"], uploader["password"])
    assert result.returncode == 0, result.stdout + result.stderr
    for headers in ({}, {"Accept": JSON_TYPE}):
        page = page_text(page_url, headers=headers)
        assert f"{SHADOWED}-0.1" in page and f"{SHADOWED}-1.0" not in page


def test_upstream_down_costs_only_uncached_public_projects(server, uploader, private_app, upstream, tmp_path):
    # public-dep and public-base are cached by the installs above; past their
    # freshness lifetime they are stale, and served so while the upstream fails.
    # (A pause that only lets the entries age: a slower machine ages them more.)
    time.sleep(PAGE_TTL + 1)
    before = metrics_from_inside(server.host, "mtail")
    upstream.run("systemctl stop pypi-upstream")
    try:
        python = fresh_venv(tmp_path / "offline")
        cached = pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/", "corp-app")
        assert cached.returncode == 0, cached.stdout + cached.stderr

        started = time.monotonic()
        status, _ = http_response(f"{server.url}/simple/never-cached/")
        failed_in = time.monotonic() - started
        print(f"\nupstream down: an uncached name answered {status} in {failed_in:.2f} s"
              f" (timeout {UPSTREAM_TIMEOUT} s)")
        assert status in (502, 503, 504)
        # Within the upstream timeout plus a margin for a loaded 2-CPU machine
        # (one request may wait seconds for a CPU there): still far under
        # Apache's own Timeout (300 s on Debian), which a client would wait
        # out if the proxy had no timeout of its own.
        assert failed_in < UPSTREAM_TIMEOUT + 10, failed_in
        assert http_response(f"{server.url}/simple/corp-app/")[0] == 200

        # Monitoring counted the upstream's failures (mtail, from the
        # pass-through's log): the uncached name's 5xx at least, and the
        # stale copies served, whose Warning 111 mod_cache logs.
        errors = ("pypi_index_upstream_errors_total", "")
        after = wait_for(lambda: metrics_from_inside(server.host, "mtail"), what="the upstream's failures counted",
                         until=lambda samples: samples[errors] >= before[errors] + 1, pause=1)
        requests = ("pypi_index_upstream_requests_total", "")
        print(f"upstream down: {after[errors] - before[errors]:.0f} failures counted"
              f" of {after[requests] - before[requests]:.0f} pass-through requests")
        assert after[requests] - before[requests] >= after[errors] - before[errors]

        # A first upload cannot be checked against the upstream: refused, and it says why.
        files = make_package(tmp_path / "unchecked", "unchecked_app", "1.0")
        refused = twine_upload(server.url, files, uploader["name"], uploader["password"])
        assert refused.returncode != 0 and "503" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    finally:
        upstream.run("systemctl start pypi-upstream")


def test_cache_is_bounded_by_the_cache_cleaner(server):
    host = server.host
    cleaner = host.service("apache-htcacheclean")
    assert cleaner.is_running and cleaner.is_enabled
    assert " -l 1M" in host.check_output("ps -o args= -C htcacheclean")
    assert host.check_output("find /var/cache/apache2/mod_cache_disk -type f | wc -l") != "0"


def test_the_cache_s_disk_space_is_measured_for_monitoring(server):
    server.host.run_expect([0], "systemctl start pypi-metrics-directory-size.service")
    size = metrics_from_inside(server.host)[("pypi_index_directory_size_bytes",
                                             'directory="/var/cache/apache2/mod_cache_disk"')]
    # Something is cached, and the cleaner's 1 MiB bound (host_vars) holds, give or take its directories.
    assert 0 < size < 4 * 2**20


def test_a_quarantined_public_name_is_answered_here_with_no_file_and_never_asked_upstream(server, upstream, tmp_path):
    quarantine = {"pypi_index_release_project": "public-quarantined", "pypi_index_release_status": "quarantined",
                  "pypi_index_release_status_reason": "Taken over upstream"}
    result = run_playbook("project-status.yml", quarantine)
    assert result.returncode == 0, output(result)
    # The play writes the status mark; the page service then writes the page,
    # the JSON form last. Waited for on the host, not through Apache: a request
    # before it would be passed upstream.
    page_file = f"{role_default('pypi_index_pages_dir')}/public-quarantined/index.json"
    wait_for(lambda: server.host.file(page_file).exists and server.host.file(page_file).content_string,
             what=f"{page_file} with the quarantine", until=lambda text: '"quarantined"' in (text or ""))

    page = json.loads(page_text(f"{server.url}/simple/public-quarantined/", headers={"Accept": JSON_TYPE}))
    python = fresh_venv(tmp_path / "pip")
    installed = pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/", "public-quarantined")

    assert page.get("project-status") == {"status": "quarantined", "reason": "Taken over upstream"}, page
    assert page["files"] == []
    assert installed.returncode != 0
    assert "public-quarantined" not in upstream_requests(upstream)
    lifted = run_playbook("project-status.yml", {**quarantine, "pypi_index_release_status": "active"})
    assert lifted.returncode == 0, output(lifted)


def test_a_quarantined_public_project_s_file_urls_are_404_cached_or_not_whatever_the_stamp(server, upstream):
    """A lockfile records the pass-through's file URLs: after a quarantine none of them gives a byte, the one in
    the cache included, nor does one with another stamp; lifted, they answer again."""
    page = json.loads(page_text(f"{server.url}/simple/public-locked/", headers={"Accept": JSON_TYPE}))
    urls = sorted(entry["url"].split("#")[0] for entry in page["files"])
    assert len(urls) == 2, urls
    cached = urls[0]
    assert http_response(f"{server.url}{cached}")[0] == 200
    unstamped = re.sub(r"/upstream-files/[0-9]{14}/", "/upstream-files/00000000000000/", cached)
    quarantine = {"pypi_index_release_project": "Public_Locked", "pypi_index_release_status": "quarantined",
                  "pypi_index_release_status_reason": "Malware"}
    result = run_playbook("project-status.yml", quarantine)
    assert result.returncode == 0, output(result)
    mark = f"{role_default('pypi_index_pages_dir')}/_quarantined/_projects/public_locked"
    wait_for(lambda: server.host.file(mark).exists, what=f"{mark}, the page builder's mark of the quarantine")

    for url in (*urls, unstamped, f"{cached}.metadata"):
        assert http_response(f"{server.url}{url}")[0] == 404, url

    lifted = run_playbook("project-status.yml", {**quarantine, "pypi_index_release_status": "active"})
    assert lifted.returncode == 0, output(lifted)
    wait_for(lambda: http_response(f"{server.url}{cached}")[0], what=f"{cached} served again", until=lambda s: s == 200)


def test_a_hung_upstream_costs_a_miss_the_upstream_timeout_and_no_more(server, upstream, private_app):
    """A stopped upstream refuses at once; a hung one (its process frozen: connections accepted, never answered) is
    what the timeout is for."""
    frozen = upstream.run("systemctl kill --signal=SIGSTOP pypi-upstream")
    try:
        assert frozen.rc == 0, frozen.stderr
        started = time.monotonic()
        status, _ = http_response(f"{server.url}/simple/never-answered/")
        took = time.monotonic() - started
        print(f"\nupstream hung: an uncached name answered {status} in {took:.2f} s (timeout {UPSTREAM_TIMEOUT} s)")
        assert status in (502, 504)
        # It waited for the upstream, and gave up at the timeout (plus a
        # margin for a loaded 2-CPU machine), not at Apache's own 300 s.
        assert UPSTREAM_TIMEOUT - 0.5 <= took < UPSTREAM_TIMEOUT + 10, took
        assert http_response(f"{server.url}/simple/corp-app/")[0] == 200
    finally:
        thawed = upstream.run("systemctl kill --signal=SIGCONT pypi-upstream")
        assert thawed.rc == 0, thawed.stderr


def test_a_query_string_on_a_file_url_reaches_neither_the_upstream_nor_a_new_cache_entry(server, upstream):
    page = json.loads(page_text(f"{server.url}/simple/public-dep/", headers={"Accept": JSON_TYPE}))
    url = sorted(entry["url"].split("#")[0] for entry in page["files"])[0]
    assert http_response(f"{server.url}{url}")[0] == 200
    entries = server.host.check_output("htcacheclean -A -p /var/cache/apache2/mod_cache_disk | wc -l")

    for nonce in range(3):
        assert http_response(f"{server.url}{url}?nonce={nonce}")[0] == 200

    assert "nonce" not in upstream_requests(upstream)
    assert server.host.check_output("htcacheclean -A -p /var/cache/apache2/mod_cache_disk | wc -l") == entries


def test_a_name_the_upstream_lacks_is_asked_there_once_per_page_ttl(server, upstream):
    """A loop of requests for one made-up public name costs one upstream fetch, not one each (the 404 is cached
    for the page TTL)."""
    name = f"made-up-{time.monotonic_ns()}"
    started = time.monotonic()
    statuses = [http_response(f"{server.url}/simple/{name}/")[0] for _ in range(5)]
    took = time.monotonic() - started

    assert statuses == [404] * 5
    # All within the TTL (else the count below proves nothing).
    assert took < PAGE_TTL, f"5 requests took {took:.1f} s, past the page TTL ({PAGE_TTL} s)"
    assert upstream_requests(upstream).count(f"/simple/{name}/") == 1, upstream_requests(upstream)
