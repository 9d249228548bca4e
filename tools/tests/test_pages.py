"""The /simple/ page builder: what pip sees, and that an unchanged index costs no hashing."""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pypi_index_tools import pages as pages_module
from pypi_index_tools.pages import EVENT, IN_CLOSE_WRITE, IN_ISDIR, IN_Q_OVERFLOW, Pages, build_all, events

from distributions import wheel

TOOLS = Path(__file__).resolve().parents[1]


@pytest.fixture
def site(tmp_path):
    """Two package roots, the pages' directory, the state file and the metadata directory."""
    roots = [tmp_path / "packages", tmp_path / "more-packages"]
    for root in roots:
        root.mkdir()
    return {"roots": roots, "out": tmp_path / "simple", "state": tmp_path / "pages-state.json",
            "metadata": tmp_path / "metadata"}


def add(root, name, data=None):
    path = root / name
    path.write_bytes(data if data is not None else name.encode())
    return path


def build(site, algo="sha256"):
    return build_all(site["out"], site["state"], site["roots"], algo, site["metadata"])


def page(site, project=None):
    return (site["out"] / project / "index.html" if project else site["out"] / "index.html").read_text()


def kept(site):
    """The records the state file keeps (a header line, then one JSON line per file), by file path."""
    lines = site["state"].read_text().splitlines()
    return {fn: record for fn, *record in map(json.loads, lines[1:])}


def link(name, data, algo="sha256"):
    return f'<a href="../../packages/{name}#{algo}={hashlib.new(algo, data).hexdigest()}">{name}</a><br>'


def test_index_lists_normalized_project_names(site):
    packages = site["roots"][0]
    add(packages, "Foo_Bar-1.0.tar.gz")
    add(packages, "foo_bar-1.1-py3-none-any.whl", wheel("foo_bar", "1.1"))
    add(packages, "other-2.0.zip")

    build(site)

    assert page(site) == """<!DOCTYPE html>
<html lang="en">
    <head>
        <meta charset="utf-8">
        <meta name="pypi:repository-version" content="1.5">
        <title>Simple Index</title>
    </head>
    <body>
        <h1>Simple Index</h1>
            <a href="foo-bar/">foo-bar</a><br>
            <a href="other/">other</a><br>
    </body>
</html>
"""
    # .built: the stamp of a finished build.
    assert sorted(path.name for path in site["out"].iterdir()) == [".built", "_namespaces",
        "foo-bar", "index.html", "index.json", "index.json.gz", "index.v1html", "index.var", "other"]
    assert json.loads((site["out"] / "index.json").read_text()) == {
        "meta": {"api-version": "1.5"}, "projects": [{"name": "foo-bar"}, {"name": "other"}]}


def test_project_page_links_each_file_with_its_sha256_sorted_by_version(site, capsys):
    packages = site["roots"][0]
    files = ["foo_bar-1.10.tar.gz", "Foo_Bar-1.0.tar.gz", "foo_bar-1.9.zip"]
    for name in files:
        add(packages, name, f"bytes of {name}".encode())

    assert build(site) == {"written": 2, "removed": 0}

    assert json.loads(capsys.readouterr().out) == {"written": 2, "removed": 0}
    text = page(site, "foo-bar")
    assert "<title>Links for foo-bar</title>" in text
    ordered = [files[1], files[2], files[0]]
    links = "".join(f"            {link(name, f'bytes of {name}'.encode())}\n" for name in ordered)
    assert f"<h1>Links for foo-bar</h1>\n{links}    </body>" in text


@pytest.mark.parametrize("bad", ["a&b-1.0.tar.gz", "-1.0.tar.gz", "-2.0.tar.gz", "_-1.0.tar.gz"])
def test_a_file_whose_name_gives_no_valid_project_is_left_off_and_every_other_page_is_built(site, bad, capsys):
    """The upload application takes no such name; one put in a root by hand (the empty name: its page would be
    /simple/ itself) is skipped, logged, and counted."""
    add(site["roots"][0], bad, b"bad")
    add(site["roots"][0], "foo-1.0.tar.gz", b"good")

    pages = Pages(site["out"], site["state"], site["roots"], "sha256", site["metadata"])
    pages.build_all()

    assert 'href="foo/"' in page(site) and link("foo-1.0.tar.gz", b"good") in page(site, "foo")
    assert bad not in page(site) and sorted(path.name for path in site["out"].iterdir() if path.is_dir()) == [
        "_namespaces", "foo"]
    assert pages.invalid == {str(site["roots"][0].resolve() / bad)}
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"skipped": str(site["roots"][0].resolve() / bad),
            "reason": "its file name gives no valid project name"} in logged


@pytest.mark.parametrize("content", [b"\x1f\x8b not JSON", b'"quarantined"', b'{"status": 5}', b'{"status": "gone"}',
                                     b'{"status": "archived", "reason": ["a list"]}', b"\xff\xfe"])
def test_a_status_mark_the_role_did_not_write_changes_nothing_and_stops_nothing(site, watched, content, capsys):
    (site["roots"][0] / "foo.status").write_bytes(content)

    watched.update({(site["roots"][0], "foo.status")})
    watched.build_all()

    assert "foo-1.0.tar.gz" in page(site, "foo") and "project-status" not in page(site, "foo")
    assert "not a status mark" in capsys.readouterr().out
    add(site["roots"][0], "foo-1.1.tar.gz")
    watched.update({(site["roots"][0], "foo-1.1.tar.gz")})
    assert "foo-1.1.tar.gz" in page(site, "foo")


def test_an_update_of_a_file_whose_name_gives_no_valid_project_writes_no_page_and_counts_it(site, watched):
    root_page = page(site)
    add(site["roots"][0], "-1.0.tar.gz")

    assert watched.update({(site["roots"][0], "-1.0.tar.gz")}) == {"written": 0, "removed": 0}
    assert page(site) == root_page and len(watched.invalid) == 1
    (site["roots"][0] / "-1.0.tar.gz").unlink()
    watched.update({(site["roots"][0], "-1.0.tar.gz")})
    assert watched.invalid == set()


def test_an_unchanged_index_writes_no_page_and_hashes_nothing_again(site):
    package = add(site["roots"][0], "foo-1.0.tar.gz", b"original")
    build(site)
    before = package.stat()

    # Same size, same mtime: the builder must trust the hash it already has.
    package.write_bytes(b"tampered")
    os.utime(package, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert build(site) == {"written": 0, "removed": 0}
    assert link("foo-1.0.tar.gz", b"original") in page(site, "foo")


def test_a_file_with_a_new_mtime_is_hashed_again(site):
    package = add(site["roots"][0], "foo-1.0.tar.gz", b"original")
    build(site)
    before = package.stat()
    package.write_bytes(b"replaced")
    os.utime(package, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))

    assert build(site) == {"written": 1, "removed": 0}
    assert link("foo-1.0.tar.gz", b"replaced") in page(site, "foo")


def test_a_project_whose_files_are_gone_loses_its_page(site):
    add(site["roots"][0], "foo-1.0.tar.gz")
    gone = add(site["roots"][0], "bar-1.0.tar.gz")
    build(site)
    gone.unlink()

    assert build(site) == {"written": 1, "removed": 1}
    assert not (site["out"] / "bar").exists()
    assert 'href="bar/"' not in page(site)
    assert list(kept(site)) == [str(site["roots"][0] / "foo-1.0.tar.gz")]


def test_an_empty_hash_algo_gives_links_without_fragment(site):
    add(site["roots"][0], "foo-1.0.tar.gz")

    build(site, algo="")

    assert '<a href="../../packages/foo-1.0.tar.gz">foo-1.0.tar.gz</a><br>' in page(site, "foo")
    assert kept(site)[str(site["roots"][0] / "foo-1.0.tar.gz")][2] is None
    assert json.loads((site["out"] / "foo" / "index.json").read_text())["files"][0]["hashes"] == {}


def test_the_state_is_one_file_of_json_lines_beside_the_pages(site):
    package = add(site["roots"][0], "foo-1.0.tar.gz", b"data")

    build(site)

    stat_ = package.stat()
    assert [json.loads(line) for line in site["state"].read_text().splitlines()] == [
        {"format": 3, "algo": "sha256"},
        [str(package), stat_.st_size, stat_.st_mtime_ns, hashlib.sha256(b"data").hexdigest(), None, None, None],
    ]
    written = sorted(str(path.relative_to(site["out"])) for path in site["out"].rglob("*"))
    forms = ["index.html", "index.json", "index.json.gz", "index.v1html", "index.var"]
    # With PEP 752's namespace list (empty: the rules declare none).
    assert written == [".built", "_namespaces", "_namespaces/list.json", "foo", *(f"foo/{form}" for form in forms),
                       *forms]


def test_a_state_file_of_an_older_format_is_ignored_and_its_files_read_again(site):
    package = add(site["roots"][0], "foo-1.0.tar.gz", b"data")
    stat_ = package.stat()
    record = [stat_.st_size, stat_.st_mtime_ns, hashlib.sha256(b"data").hexdigest(), None, None, None]
    # Format 2: one JSON document; this one with a digest the file does not have.
    site["state"].write_text(json.dumps({"format": 2, "algo": "sha256", "files": {str(package): [
        *record[:2], "0" * 64, *record[3:]]}}))

    build(site)

    assert link("foo-1.0.tar.gz", b"data") in page(site, "foo")
    assert kept(site) == {str(package): record}


def test_pages_are_world_readable_0644(site):
    add(site["roots"][0], "foo-1.0.tar.gz")

    build(site)

    for path in [*site["out"].glob("index.*"), *site["out"].glob("foo/index.*")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_projects_of_both_roots_are_listed(site):
    add(site["roots"][0], "foo-1.0.tar.gz")
    add(site["roots"][1], "bar-2.0.zip")
    add(site["roots"][1], "foo-1.1.zip")

    build(site)

    assert 'href="bar/"' in page(site) and 'href="foo/"' in page(site)
    assert "foo-1.0.tar.gz" in page(site, "foo") and "foo-1.1.zip" in page(site, "foo")


@pytest.fixture
def watched(site):
    """Pages built once, as the watcher starts; after that no root may be walked again."""
    add(site["roots"][0], "foo-1.0.tar.gz")
    add(site["roots"][1], "bar-1.0.tar.gz")
    pages = Pages(site["out"], site["state"], site["roots"], "sha256", site["metadata"])
    pages.build_all()
    return pages


@pytest.fixture
def no_walk(monkeypatch):
    def listdir(*_):
        raise AssertionError("a root was listed whole")

    monkeypatch.setattr(pages_module, "listdir", listdir)


def mtime(site, project):
    return (site["out"] / project / "index.html").stat().st_mtime_ns


def test_an_update_writes_only_the_page_of_the_project_that_changed(site, watched, no_walk):
    bar_before, root_before = mtime(site, "bar"), (site["out"] / "index.html").stat().st_mtime_ns
    add(site["roots"][0], "foo-1.1.tar.gz", b"new")

    assert watched.update({(site["roots"][0], "foo-1.1.tar.gz")}) == {"written": 1, "removed": 0}

    assert link("foo-1.1.tar.gz", b"new") in page(site, "foo") and "foo-1.0.tar.gz" in page(site, "foo")
    assert mtime(site, "bar") == bar_before
    assert (site["out"] / "index.html").stat().st_mtime_ns == root_before
    watched.save()
    assert str(site["roots"][0] / "foo-1.1.tar.gz") in kept(site)


def test_an_update_with_a_new_project_writes_its_page_and_the_root_page(site, watched, no_walk):
    add(site["roots"][1], "New_Comer-0.1-py3-none-any.whl", wheel("New_Comer", "0.1"))

    assert watched.update({(site["roots"][1], "New_Comer-0.1-py3-none-any.whl")}) == {"written": 2, "removed": 0}

    assert 'href="new-comer/"' in page(site)
    assert ">New_Comer-0.1-py3-none-any.whl</a>" in page(site, "new-comer")
    assert (site["metadata"] / "New_Comer-0.1-py3-none-any.whl.metadata").is_file()


def test_an_update_after_the_last_file_of_a_project_went_removes_its_page(site, watched, no_walk):
    (site["roots"][1] / "bar-1.0.tar.gz").unlink()

    assert watched.update({(site["roots"][1], "bar-1.0.tar.gz")}) == {"written": 1, "removed": 1}

    assert not (site["out"] / "bar").exists() and 'href="bar/"' not in page(site)
    watched.save()
    assert list(kept(site)) == [str(site["roots"][0] / "foo-1.0.tar.gz")]


def test_an_update_ignores_what_pypiserver_would_not_list(site, watched, no_walk):
    add(site["roots"][0], ".foo-2.0.tar.gz")  # hidden, as a file being written may be
    add(site["roots"][0], "README")  # no name and version

    changed = {(site["roots"][0], name) for name in (".foo-2.0.tar.gz", "README", "never-1.0.tar.gz")}
    assert watched.update(changed) == {"written": 0, "removed": 0}
    assert "foo-2.0" not in page(site, "foo")


def event(watch_id, mask, name):
    """One inotify event as the kernel queues it: the name NUL-padded."""
    padded = name.ljust((len(name) // 16 + 1) * 16, b"\0")
    return EVENT.pack(watch_id, mask, 0, len(padded)) + padded


def test_events_name_the_files_of_each_root():
    buffer = event(1, IN_CLOSE_WRITE, b"foo-1.0.tar.gz") + event(2, IN_CLOSE_WRITE, b"bar-1.0.tar.gz")

    assert events(buffer, {1: "/a", 2: "/b"}) == {("/a", "foo-1.0.tar.gz"), ("/b", "bar-1.0.tar.gz")}


@pytest.mark.parametrize("mask", [IN_Q_OVERFLOW, IN_CLOSE_WRITE | IN_ISDIR])
def test_lost_events_or_a_directory_mean_listing_everything_again(mask):
    assert events(event(1, IN_CLOSE_WRITE, b"foo-1.0.tar.gz") + event(-1 if mask == IN_Q_OVERFLOW else 1, mask, b"x"),
                  {1: "/a"}) is None


def test_watch_builds_the_page_of_a_file_copied_into_a_root(site, tmp_path):
    add(site["roots"][0], "foo-1.0.tar.gz")
    command = [sys.executable, "-m", "pypi_index_tools.pages", "--watch", "--out", str(site["out"]),
               "--state", str(site["state"]), "--metadata", str(site["metadata"]), *map(str, site["roots"])]
    # Its log goes to a file, read only once a wait failed: a pipe would
    # block the read of a watcher that is still running.
    log = tmp_path / "watch.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(TOOLS)},
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        assert wait_for(site["out"] / "index.html"), log.read_text()
        data = wheel("newcomer", "0.1")
        upload = add(tmp_path, "newcomer-0.1-py3-none-any.whl", data)
        shutil.copy(upload, site["roots"][1])

        assert wait_for(site["out"] / "newcomer" / "index.html")
        assert f"#sha256={hashlib.sha256(data).hexdigest()}" in page(site, "newcomer")

        (site["roots"][1] / "newcomer-0.1-py3-none-any.whl").unlink()
        assert wait_for(site["out"] / "newcomer" / "index.html", present=False)
        assert 'href="newcomer/"' not in page(site)
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for(path, seconds=10, present=True):
    """True once path exists (or is gone); the watcher's builds are asynchronous to the test."""
    deadline = time.monotonic() + seconds
    while path.exists() != present:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def built_if_changed(site, algo="sha256", namespaces=()):
    """Whether a run with --if-changed built the pages (else it found them current)."""
    counts = []
    real = Pages.build_all

    def counting(self):
        counts.append(1)
        return real(self)

    Pages.build_all = counting
    try:
        build_all(site["out"], site["state"], site["roots"], algo, site["metadata"], namespaces, if_changed=True)
    finally:
        Pages.build_all = real
    return bool(counts)


def test_a_run_if_changed_builds_nothing_when_nothing_changed_since_the_last_build(site):
    add(site["roots"][0], "foo-1.0.tar.gz")
    assert built_if_changed(site)

    assert not built_if_changed(site)
    assert not built_if_changed(site)


@pytest.mark.parametrize("change", [
    lambda site: add(site["roots"][1], "bar-1.0.tar.gz"),
    lambda site: add(site["roots"][0], "foo-1.0.tar.gz.yanked", b"a reason"),
    lambda site: add(site["roots"][0], "foo.status", b'{"status": "archived"}'),
    lambda site: (site["roots"][0] / "foo-1.0.tar.gz").unlink(),
    lambda site: os.utime(site["roots"][0] / "foo-1.0.tar.gz", ns=(0, 0)),
    lambda site: shutil.rmtree(site["out"]),
    lambda site: site["state"].unlink(),
    lambda site: (site["out"] / ".built").unlink(),
], ids=["a new file", "a yank", "a status", "a file gone", "a file's time", "the pages gone", "the records gone",
        "the stamp gone"])
def test_a_run_if_changed_builds_after_any_change_of_what_the_pages_come_from(site, change):
    add(site["roots"][0], "foo-1.0.tar.gz")
    assert built_if_changed(site)

    change(site)

    assert built_if_changed(site)


def test_a_run_if_changed_builds_after_a_change_of_settings(site):
    add(site["roots"][0], "foo-1.0.tar.gz")
    assert built_if_changed(site)

    assert built_if_changed(site, algo="md5")
    assert built_if_changed(site, algo="md5", namespaces=("acme",))
    assert not built_if_changed(site, algo="md5", namespaces=("acme",))


def test_the_watcher_records_what_its_updates_built_so_a_later_run_if_changed_builds_nothing(site, watched):
    add(site["roots"][0], "foo-1.1.tar.gz", b"new")
    watched.update({(str(site["roots"][0]), "foo-1.1.tar.gz")})
    pages_module.mark_built(site["out"])
    watched.save()

    assert not built_if_changed(site)
    assert "foo-1.1.tar.gz" in (site["out"] / "foo" / "index.html").read_text()


def test_a_build_tells_monitoring_when_it_ended_how_long_it_took_and_what_it_listed(site, watched, tmp_path):
    metrics = tmp_path / "pages.prom"
    began = time.time() - 1.5

    pages_module.record_build(metrics, watched, began)

    values = dict(line.split() for line in metrics.read_text().splitlines() if not line.startswith("#"))
    assert began + 1.5 - 0.01 <= float(values["pypi_index_pages_built_timestamp_seconds"]) <= time.time() + 0.001
    assert 1.5 <= float(values["pypi_index_pages_build_duration_seconds"]) < 60
    assert (float(values["pypi_index_projects"]), float(values["pypi_index_files"])) == (2, 2)
    assert float(values["pypi_index_files_skipped"]) == 0


def test_a_build_stamps_the_pages_built_only_once_every_page_is_written(site):
    add(site["roots"][0], "foo-1.0.tar.gz")

    build(site)

    stamp = (site["out"] / ".built").stat().st_mtime_ns
    assert all(path.stat().st_mtime_ns <= stamp for path in site["out"].rglob("index.*"))


def test_a_project_whose_files_the_operators_removed_keeps_an_empty_page(site, watched, no_walk):
    """Its name stays the index's: the pass-through never asks the upstream for it (pages.REMOVED)."""
    add(site["roots"][1], "bar-1.0.tar.gz.removed", b"{}")
    watched.update({(site["roots"][1], "bar-1.0.tar.gz.removed")})
    (site["roots"][1] / "bar-1.0.tar.gz").unlink()

    watched.update({(site["roots"][1], "bar-1.0.tar.gz")})

    assert "bar-1.0.tar.gz" not in page(site, "bar") and 'href="bar/"' in page(site)


def test_a_full_build_keeps_the_page_of_a_removed_project_and_a_release_lets_it_go(site, watched):
    add(site["roots"][1], "bar-1.0.tar.gz.removed", b"{}")
    (site["roots"][1] / "bar-1.0.tar.gz").unlink()
    watched.build_all()
    assert "<title>Links for bar</title>" in page(site, "bar") and "bar-1.0.tar.gz<" not in page(site, "bar")

    (site["roots"][1] / "bar-1.0.tar.gz.removed").unlink()
    assert watched.update({(site["roots"][1], "bar-1.0.tar.gz.removed")}) == {"written": 1, "removed": 1}

    assert not (site["out"] / "bar").exists() and 'href="bar/"' not in page(site)
