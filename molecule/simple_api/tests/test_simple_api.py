"""The modern Simple API as pip and uv use it: JSON by negotiation, metadata, requires-python, yank, remove.

The access log (its format adds the answer's Content-Type and the request's
Accept) shows what each client fetched.
"""

import gzip
import json
import os
import re
import socket
import time
import urllib.parse
import urllib.request
import zipfile

import pytest
from pypi_client import (client_env, fresh_venv, http_response, make_package, page_text, pip, raw_upload_status, run,
                         twine_upload, upload_form, wait_for, wait_listed)
from playbooks import changed_count, output, run_playbook

ACCESS_LOG = "/var/log/apache2/pypi-index-access.log"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
V1_HTML_TYPE = "application/vnd.pypi.simple.v1+html"
PIP_ACCEPT = f"{JSON_TYPE}, {V1_HTML_TYPE}; q=0.1, text/html; q=0.01"
# New versions each session, so that `molecule verify` can run again.
STAMP = int(time.time())
LIB, PIN, APP, FUTURE, YANKY = (f"sa_{name}_{STAMP}" for name in ("lib", "pin", "app", "future", "yanky"))


def normalized(name):
    return name.replace("_", "-")


@pytest.fixture(scope="session")
def published(server, uploader, tmp_path_factory):
    """The session's packages, uploaded and listed: {name: [files]}."""
    root = tmp_path_factory.mktemp("packages")
    built = {
        # The app needs pin<2, and lib 2.0 needs pin>=2: a resolver must read
        # lib 2.0's metadata and go back to lib 1.0.
        LIB: make_package(root / "lib1", LIB, "1.0") + make_package(root / "lib2", LIB, "2.0", [f"{PIN}>=2"]),
        PIN: make_package(root / "pin1", PIN, "1.0") + make_package(root / "pin2", PIN, "2.0"),
        APP: make_package(root / "app", APP, "1.0", [normalized(LIB), f"{PIN}<2"]),
        FUTURE: (make_package(root / "future1", FUTURE, "1.0")
                 + make_package(root / "future2", FUTURE, "2.0", requires_python=">=3.99")),
        YANKY: make_package(root / "yanky1", YANKY, "1.0") + make_package(root / "yanky2", YANKY, "1.1"),
    }
    for files in built.values():
        result = twine_upload(server.url, files, uploader["name"], uploader["password"])
        assert result.returncode == 0, result.stdout + result.stderr
        assert all(wait_listed(server.url, path.name) for path in files)
    return built


def log_size(server):
    return int(server.host.check_output(f"stat -c %s {ACCESS_LOG}"))


def requests_since(server, offset):
    """The access log lines written since offset: (request line, status, User-Agent, Content-Type)."""
    text = server.host.check_output(f"tail -c +{offset + 1} {ACCESS_LOG}")
    lines = []
    for line in text.splitlines():
        # Apache escapes the quotes inside a field (pip's User-Agent has JSON in it).
        request, _, agent, kind, _ = re.findall(r'"((?:[^"\\]|\\.)*)"', line)
        status = line.split(f'"{request}"', 1)[1].split()[0]
        lines.append((request, status, agent, kind))
    return lines


def wheel_of(files):
    return next(path for path in files if path.name.endswith(".whl"))


@pytest.mark.parametrize("accept, expected", [
    (None, "text/html"),
    ("text/html", "text/html"),
    (PIP_ACCEPT, JSON_TYPE),
    (f"{JSON_TYPE}, {V1_HTML_TYPE};q=0.2", JSON_TYPE),  # uv
    (f"{JSON_TYPE}, */*;q=0.1", JSON_TYPE),  # poetry
    (V1_HTML_TYPE, V1_HTML_TYPE),
    ("*/*", "text/html"),
    (f"{JSON_TYPE}, text/html", "text/html"),  # a tie: HTML (PEP 691)
    (f"{JSON_TYPE};q=0.5, text/html;q=0.9", "text/html"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),  # a browser
])
@pytest.mark.parametrize("page", ["", "lib"])
def test_each_accept_gets_its_form_with_vary(server, published, accept, expected, page):
    url = f"{server.url}/simple/" + (f"{normalized(LIB)}/" if page else "")
    status, headers = http_response(url, headers={"Accept": accept} if accept else {})
    assert status == 200
    assert headers["Content-Type"] == expected
    assert "accept" in headers["Vary"].lower()
    body = page_text(url, headers={"Accept": accept} if accept else {})
    if expected == JSON_TYPE:
        assert json.loads(body)["meta"]["api-version"] == "1.5"
    else:
        assert body.startswith("<!DOCTYPE html>")


def test_json_comes_gzip_encoded_to_a_client_that_takes_gzip(server, published):
    url = f"{server.url}/simple/{normalized(LIB)}/"
    request = urllib.request.Request(url, headers={"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip, deflate"})
    with urllib.request.urlopen(request, timeout=30) as response:
        encoding, vary, body = response.headers["Content-Encoding"], response.headers["Vary"], response.read()
    assert encoding == "gzip" and "accept-encoding" in vary.lower()
    assert json.loads(gzip.decompress(body)) == json.loads(page_text(url, headers={"Accept": PIP_ACCEPT}))


def test_no_form_that_fits_is_406(server, published):
    assert http_response(f"{server.url}/simple/{normalized(LIB)}/", headers={"Accept": "application/xml"})[0] == 406


@pytest.mark.parametrize("form, expected", [(f"{JSON_TYPE}", JSON_TYPE), (V1_HTML_TYPE, V1_HTML_TYPE)])
def test_format_query_names_the_form(server, published, form, expected):
    url = f"{server.url}/simple/{normalized(LIB)}/?format={form.replace('+', '%2B')}"
    assert http_response(url, headers={"Accept": "text/html"})[1]["Content-Type"] == expected


def test_json_page_lists_hashes_metadata_requires_python_and_versions(server, published):
    page = json.loads(page_text(f"{server.url}/simple/{normalized(FUTURE)}/", headers={"Accept": JSON_TYPE}))
    assert page["versions"] == ["1.0", "2.0"]
    by_name = {entry["filename"]: entry for entry in page["files"]}
    newer = wheel_of(published[FUTURE][2:])
    assert by_name[newer.name]["requires-python"] == ">=3.99"
    assert by_name[newer.name]["size"] == newer.stat().st_size
    assert set(by_name[newer.name]["core-metadata"]) == {"sha256"}
    assert all(entry["hashes"]["sha256"] for entry in page["files"])


def test_metadata_served_is_the_wheels_own_byte_for_byte(server, published):
    wheel = wheel_of(published[LIB])
    with zipfile.ZipFile(wheel) as archive:
        own = archive.read(next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA")))
    served = page_text(f"{server.url}/packages/{wheel.name}.metadata")
    assert served.encode() == own


def test_pip_resolves_through_json_and_metadata_and_downloads_only_what_it_installs(server, published, tmp_path):
    python = fresh_venv(tmp_path / "client")
    offset = log_size(server)

    result = pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/", APP)

    assert result.returncode == 0, result.stdout + result.stderr
    assert {name: installed(python)[name] for name in (APP, LIB, PIN)} == {APP: "1.0", LIB: "1.0", PIN: "1.0"}
    seen = requests_since(server, offset)
    pages = {request: kind for request, _, agent, kind in seen if agent.startswith("pip/") and "/simple/" in request}
    assert pages == {f"GET /simple/{normalized(name)}/ HTTP/1.1": JSON_TYPE for name in (APP, LIB, PIN)}, seen
    fetched = {request.split()[1].rsplit("/", 1)[1] for request, status, _, _ in seen if status == "200"}
    lib2 = wheel_of(published[LIB][2:]).name
    assert f"{lib2}.metadata" in fetched, seen
    wheels = {wheel_of(published[name][:2]).name for name in (APP, LIB, PIN)}
    assert {name for name in fetched if name.endswith((".whl", ".tar.gz"))} == wheels, seen


def test_uv_installs_through_json(server, published, tmp_path):
    python = fresh_venv(tmp_path / "uv")
    offset = log_size(server)

    result = run(["uv", "pip", "install", "--python", str(python), "--index-url", f"{server.url}/simple/", APP],
                 env=client_env(UV_NO_CONFIG="1", UV_NO_CACHE="1"))

    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {kind for request, _, agent, kind in requests_since(server, offset)
             if agent.startswith("uv/") and "/simple/" in request}
    assert kinds == {JSON_TYPE}
    assert installed(python)[APP] == "1.0"


def installed(python):
    listed = pip(python, "list", "--format=json")
    return {entry["name"].replace("-", "_"): entry["version"] for entry in json.loads(listed.stdout)}


def test_a_file_for_a_future_python_is_skipped_without_being_downloaded(server, published, tmp_path):
    python = fresh_venv(tmp_path / "client")
    offset = log_size(server)

    result = pip(python, "install", "--no-cache-dir", "--index-url", f"{server.url}/simple/", FUTURE)

    assert result.returncode == 0, result.stdout + result.stderr
    assert installed(python)[FUTURE] == "1.0"
    requested = [request for request, *_ in requests_since(server, offset)]
    assert not any(f"{FUTURE}-2.0" in request for request in requested), requested


def yank(extra):
    return run_playbook("yank.yml", {"pypi_index_release_project": normalized(YANKY), **extra})


def test_a_yanked_release_is_skipped_unless_pinned_and_unyanking_brings_it_back(server, published, tmp_path):
    yanked = {"pypi_index_release_version": "1.1", "pypi_index_release_yank_reason": "Broken <build>"}
    first, again = yank(yanked), yank(yanked)
    assert first.returncode == 0 and again.returncode == 0, output(first) + output(again)
    # The marks, and their lines in the audit trail; a second run changes and records nothing.
    assert changed_count(first) == 2 and changed_count(again) == 0
    url = f"{server.url}/simple/{normalized(YANKY)}/"
    # The page service writes the HTML form, then the JSON one.
    def yanked_in_both(forms):
        html, page = forms
        return ('data-yanked="Broken &lt;build&gt;"' in html
                and {entry["yanked"] for entry in json.loads(page or "{}").get("files", [])} == {False, "Broken <build>"})

    wait_for(lambda: (page_text(url), page_text(url, headers={"Accept": JSON_TYPE})), what="the yank in both forms",
             until=yanked_in_both)

    python = fresh_venv(tmp_path / "client")
    index = ["--no-cache-dir", "--index-url", f"{server.url}/simple/"]
    assert pip(python, "install", *index, YANKY).returncode == 0
    assert installed(python)[YANKY] == "1.0"
    pinned = pip(python, "install", *index, f"{YANKY}==1.1")
    assert pinned.returncode == 0 and installed(python)[YANKY] == "1.1"
    assert "Broken <build>" in pinned.stdout + pinned.stderr

    back = yank({**yanked, "pypi_index_release_yank_state": "unyanked"})
    assert back.returncode == 0 and changed_count(back) == 2, output(back)
    wait_for(lambda: page_text(url), what="the yank gone from the page", until=lambda page: "data-yanked" not in page)

    audit = [json.loads(line) for line in server.host.check_output("cat /var/log/pypi-index/audit.log").splitlines()]
    recorded = [(event["event"], event.get("reason")) for event in audit
                if event["file"].startswith(f"{YANKY}-1.1") and event["event"] != "upload"]
    assert recorded == [("yank", "Broken <build>")] * 2 + [("unyank", None)] * 2, audit


def test_yanking_nothing_says_so_before_any_change(server, published):
    result = yank({"pypi_index_release_version": "9.9"})
    assert result.returncode != 0 and "is in the package roots: nothing to yank" in output(result)
    both = yank({"pypi_index_release_version": "1.0", "pypi_index_release_filename": "x.whl"})
    assert both.returncode != 0 and "either a version" in output(both)


def test_a_removed_release_leaves_the_pages_and_the_roots(server, published):
    remove = {"pypi_index_release_project": YANKY, "pypi_index_release_version": "1.0"}
    first, again = run_playbook("remove-release.yml", remove), run_playbook("remove-release.yml", remove)
    assert first.returncode == 0 and again.returncode == 0, output(first) + output(again)
    # The removal marks, the files, and their lines in the audit trail; a second run changes and records nothing.
    assert changed_count(first) == 3 and changed_count(again) == 0
    url = f"{server.url}/simple/{normalized(YANKY)}/"
    wait_for(lambda: page_text(url), what=f"{YANKY} 1.0 gone from the page, 1.1 still on it",
             until=lambda page: f"{YANKY}-1.0" not in page and f"{YANKY}-1.1" in page)
    for path in published[YANKY][:2]:
        assert not any(server.host.file(f"{root}/{path.name}").exists for root in server.package_roots)
        assert http_response(f"{server.url}/packages/{path.name}")[0] == 404
        # Its name is kept: no upload takes it again (pages.REMOVED).
        assert server.host.file(f"{server.packages_dir}/{path.name}.removed").exists


def pages_settled(server, uploader, tmp_path, name):
    """Upload a small package and wait until it is listed: the page service has then built from the roots as
    they were after what came before, so a file left there would be listed by now too. (A pause instead would
    prove nothing on a loaded machine, where the service may come later.)"""
    result = twine_upload(server.url, make_package(tmp_path / name, name, "1.0"), uploader["name"],
                          uploader["password"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upload_to_a_full_root_is_refused_and_leaves_nothing(server, published, uploader, tmp_path):
    name = f"sa_full_{STAMP}-1.0.tar.gz"
    big = tmp_path / name
    big.write_bytes(os.urandom(6 << 20))

    # A bare upload: twine would refuse to send random bytes as an sdist.
    assert raw_upload_status(server.url, big, (uploader["name"], uploader["password"])) == 507
    left = server.host.check_output(f"ls -A {server.packages_dir}")
    assert name not in left and ".part" not in left, left
    pages_settled(server, uploader, tmp_path, f"sa_after_full_{STAMP}")
    assert http_response(f"{server.url}/simple/sa-full-{STAMP}/")[0] == 404
    assert f"sa-full-{STAMP}" not in page_text(f"{server.url}/simple/")


def test_an_upload_whose_client_goes_away_half_way_leaves_nothing(server, published, uploader, tmp_path):
    name = f"sa_gone_{STAMP}-1.0.tar.gz"
    body, headers = upload_form(name, os.urandom(1 << 20), (uploader["name"], uploader["password"]))
    address = urllib.parse.urlsplit(server.url)
    offset = log_size(server)
    head = "".join(f"{key}: {value}\r\n" for key, value in {**headers, "Content-Length": len(body)}.items())
    with socket.create_connection((address.hostname, address.port), timeout=30) as client:
        # Headers and half the body, then gone (Apache reads end of file where the rest should be).
        client.sendall(f"POST / HTTP/1.1\r\nHost: {address.netloc}\r\n{head}\r\n".encode() + body[:len(body) // 2])
        time.sleep(0.5)

    def posts():
        return [status for request, status, *_ in requests_since(server, offset) if request == "POST / HTTP/1.1"]

    # Apache logged the POST past the password check (not 401 or 403): pypiserver read what came.
    statuses = wait_for(posts, what="the POST in the access log")
    assert statuses[0] not in ("401", "403"), statuses
    pages_settled(server, uploader, tmp_path, f"sa_after_gone_{STAMP}")
    left = server.host.check_output(f"ls -A {server.packages_dir}")
    assert name not in left and ".part" not in left, left
    assert http_response(f"{server.url}/simple/sa-gone-{STAMP}/")[0] == 404
    assert f"sa-gone-{STAMP}" not in page_text(f"{server.url}/simple/")
