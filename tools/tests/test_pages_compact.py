"""The compact builder against a plain one: at a few thousand files, the pages, the metadata and the records it
keeps are what pypiserver's listing, files.py and render.py give when every PkgFile is kept and read in turn (the
builder before it kept Files), with or without its pool of readers."""

import gzip
import os
from pathlib import Path

import pytest
from pypiserver.backend import listdir

from pypi_index_tools import files, pages as pages_module, render
from pypi_index_tools.pages import RECORD, Pages, statuses, write, write_page, yanked

from distributions import sdist, wheel

PROJECTS = 200
ALGO = "sha256"


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Two package roots of about 3,000 files: wheels (some with Requires-Python) and sdists of several versions
    per project, a few in a subdirectory, a project in both roots, a yanked file, a broken wheel, a wheel without
    metadata, a zip sdist and an archived project."""
    top = tmp_path_factory.mktemp("roots")
    roots = [top / "packages", top / "more-packages"]
    for root in roots:
        (root / "sub").mkdir(parents=True)
    for number in range(PROJECTS):
        name = f"proj_{number:03d}"
        root = roots[number % 2]
        for minor in range(3 + number % 5):
            version = f"1.{minor}" if minor % 3 else f"1.{minor}.0rc1"
            python = ">=3.8" if minor % 2 else None
            (root / f"{name}-{version}-py3-none-any.whl").write_bytes(wheel(name, version, python))
            (root / ("sub" if number % 7 == 0 else "") / f"{name}-{version}.tar.gz").write_bytes(
                sdist(name, version, python))
    (roots[1] / "proj_000-2.0-py3-none-any.whl").write_bytes(wheel("proj_000", "2.0"))
    (roots[0] / "proj_001-1.1-py3-none-any.whl.yanked").write_text("broken <build>\n")
    (roots[0] / "proj_002-9.0-py3-none-any.whl").write_bytes(b"not a zip")
    (roots[0] / "proj_004-9.0-py3-none-any.whl").write_bytes(wheel("proj_004", "9.0", dist_info=False))
    (roots[0] / "proj_006-9.0.zip").write_bytes(b"a zip sdist pypiserver lists, hashed only")
    (roots[1] / "proj_003.status").write_text('{"status": "archived", "reason": "moved"}')
    return roots


def site(tmp_path, name):
    return {"out": tmp_path / name / "simple", "state": tmp_path / name / "state",
            "metadata": tmp_path / name / "metadata"}


def reference(roots, place):
    """The pages, metadata and records of the plain builder: pypiserver's PkgFiles sorted by (parsed_version,
    relfn), each file read with files.record and every page rendered with render.py; the records by path."""
    projects, records = {}, {}
    for root in roots:
        for package in listdir(Path(root)):
            projects.setdefault(package.pkgname_norm, []).append(package)
    found = statuses(roots)
    for name, packages in projects.items():
        shown, versions = [], []
        for package in sorted(packages, key=lambda package: (package.parsed_version, package.relfn)):
            stat = os.stat(package.fn)
            facts, data = files.record(package.fn, stat.st_size, stat.st_mtime_ns, ALGO)
            records[package.fn] = [facts[field] for field in RECORD]
            if data is not None:
                write(place["metadata"] / (package.relfn_unix + ".metadata"), data)
            if facts["skip"]:
                continue
            shown.append({**facts, "path": package.relfn_unix, "yanked": yanked(package.fn)})
            if package.version not in versions:
                versions.append(package.version)
        write_page(place["out"] / name, render.project_html(name, shown, ALGO, found.get(name)),
                   render.project_json(name, shown, versions, ALGO, found.get(name)))
    write_page(place["out"], render.index_html(projects), render.index_json(projects))
    write(place["out"] / "_namespaces" / "list.json", "[]")
    return records


def tree(directory):
    """Every file and link under a directory, by relative path: its bytes (a gzip file's, uncompressed), or where a
    link points. The build's stamp only says when."""
    found = {}
    for path in Path(directory).rglob("*"):
        relative = path.relative_to(directory).as_posix()
        if path.is_symlink():
            found[relative] = ("link", os.readlink(path))
        elif path.name == pages_module.BUILT:
            found[relative] = "stamp"
        elif path.is_file():
            found[relative] = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return found


def built(roots, place, workers):
    pages = Pages(place["out"], place["state"], roots, ALGO, place["metadata"], workers=workers)
    pages.build_all()
    pages_module.mark_built(place["out"])
    return pages


def test_the_pages_metadata_and_records_are_those_of_the_plain_builder(roots, tmp_path, monkeypatch):
    expected = site(tmp_path, "reference")
    records = reference(roots, expected)
    place = site(tmp_path, "compact")

    pages = built(roots, place, workers=1)

    assert len(records) > 2000 and any(record[5] for record in records.values())
    assert tree(place["out"]) == {**tree(expected["out"]), pages_module.BUILT: "stamp"}
    assert tree(place["metadata"]) == tree(expected["metadata"])
    assert dict(pages.records()) == records

    # A build with the records kept, in the state file (a start) or in memory (the watcher's rebuild), reads no
    # file and writes the same.
    monkeypatch.setattr(files, "record", lambda *_: pytest.fail("a kept record was read again"))
    again = built(roots, place, workers=1)
    again.build_all()
    assert dict(again.records()) == records
    assert tree(place["out"]) == {**tree(expected["out"]), pages_module.BUILT: "stamp"}


def test_a_first_build_with_a_pool_of_readers_writes_what_one_without_writes(roots, tmp_path, monkeypatch):
    alone, pooled = site(tmp_path, "alone"), site(tmp_path, "pooled")
    pools = []
    real = pages_module.multiprocessing.get_context

    def counted(method):
        pools.append(method)
        return real(method)

    monkeypatch.setattr(pages_module.multiprocessing, "get_context", counted)

    one = built(roots, alone, workers=1)
    assert not pools
    two = built(roots, pooled, workers=2)
    assert pools == ["spawn"]

    assert tree(pooled["out"]) == tree(alone["out"])
    assert tree(pooled["metadata"]) == tree(alone["metadata"])
    assert dict(two.records()) == dict(one.records())
    assert pooled["state"].read_text() == alone["state"].read_text()
