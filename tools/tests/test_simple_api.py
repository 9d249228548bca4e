"""The pages' modern Simple API: PEP 691 JSON, PEP 658 metadata, requires-python, yank, PEP 700,
and what the builder does with files it cannot offer."""

import gzip
import hashlib
import json
import os

import pytest

from pypi_index_tools import files
from pypi_index_tools.pages import Pages, build_all, namespaces_from
from pypi_index_tools.render import TYPE_MAP

from distributions import metadata, sdist, wheel

WHEEL = "holygrail-1.0-py3-none-any.whl"
SDIST = "holygrail-1.0.tar.gz"


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "packages"
    root.mkdir()
    return {"root": root, "out": tmp_path / "simple", "state": tmp_path / "state.json",
            "metadata": tmp_path / "metadata"}


def build(site):
    return build_all(site["out"], site["state"], [site["root"]], "sha256", site["metadata"])


def add(site, name, data):
    (site["root"] / name).write_bytes(data)
    return data


def html(site, project):
    return (site["out"] / project / "index.html").read_text()


def as_json(site, project):
    return json.loads((site["out"] / project / "index.json").read_text())


def logged(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_json_page_has_pep_691_and_700_fields(site):
    wheel_bytes = add(site, WHEEL, wheel("holygrail", "1.0", requires_python=">=3.7"))
    sdist_bytes = add(site, SDIST, sdist("holygrail", "1.0", requires_python=">=3.7"))
    add(site, "holygrail-0.9.tar.gz", sdist("holygrail", "0.9"))
    os.utime(site["root"] / SDIST, ns=(0, 1_700_000_000_123_456_000))

    build(site)

    page = as_json(site, "holygrail")
    assert page["meta"] == {"api-version": "1.5"}
    assert page["name"] == "holygrail"
    assert page["versions"] == ["0.9", "1.0"]
    assert [entry["filename"] for entry in page["files"]] == ["holygrail-0.9.tar.gz", WHEEL, SDIST]
    wheel_entry, sdist_entry = page["files"][1], page["files"][2]
    assert wheel_entry["url"] == f"../../packages/{WHEEL}"
    assert wheel_entry["hashes"] == {"sha256": hashlib.sha256(wheel_bytes).hexdigest()}
    assert wheel_entry["requires-python"] == ">=3.7"
    metadata_sha = hashlib.sha256(metadata("holygrail", "1.0", ">=3.7")).hexdigest()
    assert wheel_entry["core-metadata"] == {"sha256": metadata_sha}
    assert "dist-info-metadata" not in wheel_entry  # pip 22.3-23.1 crash on it in JSON
    assert wheel_entry["yanked"] is False
    assert sdist_entry["size"] == len(sdist_bytes)
    assert sdist_entry["upload-time"] == "2023-11-14T22:13:20.123456Z"
    assert sdist_entry["requires-python"] == ">=3.7"
    assert sdist_entry["core-metadata"] is False
    assert "requires-python" not in page["files"][0]


def test_html_link_carries_requires_python_escaped_and_both_metadata_attributes(site):
    add(site, WHEEL, wheel("holygrail", "1.0", requires_python=">=3.7,<4"))

    build(site)

    metadata_sha = hashlib.sha256(metadata("holygrail", "1.0", ">=3.7,<4")).hexdigest()
    assert (f'data-requires-python="&gt;=3.7,&lt;4" data-dist-info-metadata="sha256={metadata_sha}" '
            f'data-core-metadata="sha256={metadata_sha}">{WHEEL}</a>') in html(site, "holygrail")
    assert '<meta name="pypi:repository-version" content="1.5">' in html(site, "holygrail")


def test_the_metadata_served_is_byte_identical_to_the_wheels_own(site):
    add(site, WHEEL, wheel("holygrail", "1.0", requires_python=">=3.7"))

    build(site)

    served = (site["metadata"] / f"{WHEEL}.metadata").read_bytes()
    assert served == metadata("holygrail", "1.0", ">=3.7")
    assert as_json(site, "holygrail")["files"][0]["core-metadata"]["sha256"] == hashlib.sha256(served).hexdigest()


def test_a_yanked_file_says_why_and_unyanking_lists_it_plainly_again(site):
    add(site, SDIST, sdist("holygrail", "1.0"))
    add(site, "holygrail-1.1.tar.gz", sdist("holygrail", "1.1"))
    (site["root"] / f"{SDIST}.yanked").write_text("Had a <vulnerability>\n")
    (site["root"] / "holygrail-1.1.tar.gz.yanked").write_text("")
    pages = Pages(site["out"], site["state"], [site["root"]], "sha256", site["metadata"])
    pages.build_all()

    assert f'data-yanked="Had a &lt;vulnerability&gt;">{SDIST}</a>' in html(site, "holygrail")
    assert 'data-yanked="">holygrail-1.1.tar.gz</a>' in html(site, "holygrail")
    assert [entry["yanked"] for entry in as_json(site, "holygrail")["files"]] == ["Had a <vulnerability>", True]
    assert "holygrail-1.0.tar.gz.yanked" not in html(site, "holygrail")

    (site["root"] / f"{SDIST}.yanked").unlink()
    assert pages.update({(site["root"], f"{SDIST}.yanked")}) == {"written": 1, "removed": 0}
    assert f'">{SDIST}</a>' in html(site, "holygrail") and "data-yanked=\"Had" not in html(site, "holygrail")


def test_the_type_map_prefers_html_on_a_tie_and_aliases_v1_html(site):
    add(site, SDIST, sdist("holygrail", "1.0"))

    build(site)

    for directory in (site["out"], site["out"] / "holygrail"):
        assert (directory / "index.var").read_text() == TYPE_MAP
        assert os.readlink(directory / "index.v1html") == "index.html"
    variants = [block.splitlines() for block in TYPE_MAP.strip().split("\n\n")]
    assert [lines[1] for lines in variants] == [
        "Content-Type: text/html; qs=1",
        "Content-Type: application/vnd.pypi.simple.v1+html; qs=1",
        "Content-Type: application/vnd.pypi.simple.v1+json; qs=0.999",
    ]


def test_the_json_form_has_a_gzip_copy_rewritten_only_when_it_changes(site):
    add(site, SDIST, sdist("holygrail", "1.0"))
    build(site)
    copy = site["out"] / "holygrail" / "index.json.gz"
    before = copy.stat().st_mtime_ns

    assert gzip.decompress(copy.read_bytes()) == (site["out"] / "holygrail" / "index.json").read_bytes()
    build(site)
    assert copy.stat().st_mtime_ns == before


def test_metadata_goes_with_its_wheel(site):
    add(site, WHEEL, wheel("holygrail", "1.0"))
    add(site, SDIST, sdist("holygrail", "1.0"))
    pages = Pages(site["out"], site["state"], [site["root"]], "sha256", site["metadata"])
    pages.build_all()
    assert (site["metadata"] / f"{WHEEL}.metadata").is_file()

    (site["root"] / WHEEL).unlink()
    pages.update({(site["root"], WHEEL)})

    assert not (site["metadata"] / f"{WHEEL}.metadata").exists()
    assert WHEEL not in html(site, "holygrail")


def test_a_full_build_removes_metadata_no_file_lists(site):
    add(site, SDIST, sdist("holygrail", "1.0"))
    stale = site["metadata"] / "gone-1.0-py3-none-any.whl.metadata"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")

    build(site)

    assert not stale.exists()


def test_records_survive_a_restart_and_missing_metadata_is_written_again(site, monkeypatch):
    add(site, WHEEL, wheel("holygrail", "1.0"))
    build(site)
    (site["metadata"] / f"{WHEEL}.metadata").unlink()

    build(site)

    assert (site["metadata"] / f"{WHEEL}.metadata").is_file()

    def no_read(*_):
        raise AssertionError("a file was read again")

    monkeypatch.setattr(files, "record", no_read)
    assert build(site) == {"written": 0, "removed": 0}


@pytest.mark.parametrize("name, data, reason", [
    (WHEEL, b"not a zip at all", "not a readable zip"),
    (WHEEL, wheel("holygrail", "1.0", dist_info=False), "a wheel without one .dist-info/METADATA"),
])
def test_a_broken_wheel_is_skipped_with_a_logged_reason_and_the_rest_is_listed(site, capsys, name, data, reason):
    add(site, name, data)
    add(site, SDIST, sdist("holygrail", "1.0"))
    add(site, "other-1.0.tar.gz", sdist("other", "1.0"))

    build(site)

    assert name not in html(site, "holygrail") and SDIST in html(site, "holygrail")
    assert [entry["filename"] for entry in as_json(site, "holygrail")["files"]] == [SDIST]
    assert "other-1.0.tar.gz" in html(site, "other")
    skipped = [line for line in logged(capsys) if "skipped" in line]
    assert len(skipped) == 1 and skipped[0]["skipped"].endswith(name) and skipped[0]["reason"].startswith(reason)


def test_a_metadata_of_several_mib_is_listed_without_metadata(site, capsys):
    add(site, WHEEL, wheel("holygrail", "1.0", requires_python=">=3.8", extra=b"X" * (3 << 20)))

    build(site)

    assert f">{WHEEL}</a>" in html(site, "holygrail")
    assert "data-core-metadata" not in html(site, "holygrail")
    assert as_json(site, "holygrail")["files"][0]["core-metadata"] is False
    assert not (site["metadata"] / f"{WHEEL}.metadata").exists()
    assert any("METADATA larger than" in line.get("note", "") for line in logged(capsys))


def test_an_unknown_file_type_is_not_listed(site):
    add(site, "holygrail-1.0.exe", b"MZ")
    add(site, SDIST, sdist("holygrail", "1.0"))

    build(site)

    assert "holygrail-1.0.exe" not in html(site, "holygrail")


def test_an_sdist_that_is_not_an_archive_is_listed_without_requires_python(site):
    add(site, SDIST, b"not gzip")

    build(site)

    assert "requires-python" not in as_json(site, "holygrail")["files"][0]


def set_status(site, project, status, reason=""):
    (site["root"] / f"{project}.status").write_text(json.dumps({"status": status, "reason": reason}))


@pytest.mark.parametrize("status", ["deprecated", "archived"])
def test_a_project_status_is_in_the_html_meta_and_the_json_and_the_files_stay_listed(site, status):
    add(site, SDIST, sdist("holygrail", "1.0"))
    set_status(site, "HolyGrail", status, "Use <grail2>")
    build(site)

    assert f'<meta name="pypi:project-status" content="{status}">' in html(site, "holygrail")
    assert '<meta name="pypi:project-status-reason" content="Use &lt;grail2&gt;">' in html(site, "holygrail")
    assert as_json(site, "holygrail")["project-status"] == {"status": status, "reason": "Use <grail2>"}
    assert f">{SDIST}</a>" in html(site, "holygrail")
    assert [entry["filename"] for entry in as_json(site, "holygrail")["files"]] == [SDIST]


def test_a_quarantined_project_lists_no_file_and_lifting_it_lists_them_again(site):
    add(site, SDIST, sdist("holygrail", "1.0"))
    pages = Pages(site["out"], site["state"], [site["root"]], "sha256", site["metadata"])
    pages.build_all()
    set_status(site, "holygrail", "quarantined")

    assert pages.update({(site["root"], "holygrail.status")}) == {"written": 1, "removed": 0}
    assert SDIST not in html(site, "holygrail")
    # Apache refuses the file itself by this mark (the vhost's quarantine partial).
    assert (site["out"] / "_quarantined" / SDIST).is_file()
    # And the pass-through's file URLs by the project's name, in each spelling a file name may give it.
    assert sorted(path.name for path in (site["out"] / "_quarantined" / "_projects").iterdir()) == ["holygrail"]
    assert as_json(site, "holygrail")["files"] == [] and as_json(site, "holygrail")["versions"] == []
    assert as_json(site, "holygrail")["project-status"] == {"status": "quarantined"}
    assert '<meta name="pypi:project-status" content="quarantined">' in html(site, "holygrail")

    (site["root"] / "holygrail.status").unlink()
    pages.update({(site["root"], "holygrail.status")})
    assert f">{SDIST}</a>" in html(site, "holygrail") and "project-status" not in html(site, "holygrail")
    assert list((site["out"] / "_quarantined").iterdir()) == []


def test_a_status_for_a_name_with_no_file_here_makes_a_page_so_it_is_never_passed_through(site):
    add(site, SDIST, sdist("holygrail", "1.0"))
    pages = Pages(site["out"], site["state"], [site["root"]], "sha256", site["metadata"])
    pages.build_all()
    set_status(site, "evil-pkg", "quarantined", "Malware, see advisory 42")

    pages.update({(site["root"], "evil-pkg.status")})
    assert as_json(site, "evil-pkg") == {"meta": {"api-version": "1.5"}, "name": "evil-pkg", "versions": [],
                                         "files": [], "namespaces": None,
                                         "project-status": {"status": "quarantined",
                                                            "reason": "Malware, see advisory 42"}}
    assert "evil-pkg" in json.dumps(json.loads((site["out"] / "index.json").read_text()))
    assert pages.build_all() == {"written": 0, "removed": 0}

    (site["root"] / "evil-pkg.status").unlink()
    assert pages.update({(site["root"], "evil-pkg.status")}) == {"written": 1, "removed": 1}
    assert not (site["out"] / "evil-pkg").exists()


def test_pep_752_namespaces_are_in_each_projects_json_and_listed_with_their_details(site, tmp_path):
    rules = tmp_path / "publish.json"
    rules.write_text(json.dumps({"namespaces": {"acme": ["alice"], "acme-labs": ["bob"], "acme-labs-ml": ["bob"],
                                                "beta": ["carol"]}}))
    add(site, "acme_labs_x-1.0.tar.gz", sdist("acme_labs_x", "1.0"))
    add(site, SDIST, sdist("holygrail", "1.0"))
    pages = Pages(site["out"], site["state"], [site["root"]], "sha256", site["metadata"], namespaces_from(rules))
    pages.build_all()

    assert as_json(site, "acme-labs-x")["namespaces"] == [{"name": "acme", "owned": True},
                                                          {"name": "acme-labs", "owned": True}]
    assert as_json(site, "holygrail")["namespaces"] is None
    assert "namespace" not in html(site, "acme-labs-x")  # the HTML form is unchanged
    listed = site["out"] / "_namespaces"
    assert json.loads((listed / "list.json").read_text()) == [
        {"name": "acme"}, {"name": "acme-labs"}, {"name": "acme-labs-ml"}, {"name": "beta"}]
    assert json.loads((listed / "acme.json").read_text()) == {"name": "acme", "parent": None,
                                                              "children": ["acme-labs"]}
    assert json.loads((listed / "acme-labs.json").read_text()) == {"name": "acme-labs", "parent": "acme",
                                                                   "children": ["acme-labs-ml"]}

    Pages(site["out"], site["state"], [site["root"]], "sha256", site["metadata"], ("acme",)).build_all()
    assert sorted(path.name for path in listed.iterdir()) == ["acme.json", "list.json"]
    assert as_json(site, "acme-labs-x")["namespaces"] == [{"name": "acme", "owned": True}]


def test_a_quarantined_name_is_marked_in_each_spelling_a_file_name_may_give_it(site):
    set_status(site, "Holy.Grail_Kit", "quarantined")
    pages = Pages(site["out"], site["state"], [site["root"]], "sha256", site["metadata"])

    pages.build_all()

    assert sorted(path.name for path in (site["out"] / "_quarantined" / "_projects").iterdir()) == [
        "holy-grail-kit", "holy.grail.kit", "holy_grail_kit"]
