"""Only real distributions are stored: the upload-name check (names.py) through the upload application, and
fuzzed against pypiserver's own parser."""

import json
import string

import pytest
from distributions import sdist, wheel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypiserver.pkg_helpers import guess_pkgname_and_version, normalize_pkgname

from pypi_index_tools import names
from upload_app import index, rules, upload, upstream  # noqa: F401

REFUSED = {
    # An egg-style name pypiserver reads as the project zz: the page
    # builder would have taken it for a status mark.
    "zz-py3.1-z.status": "only wheels (.whl) and sdists (.tar.gz, PEP 625) are taken",
    # The empty name, whose page would have been /simple/ itself.
    "-1.0.tar.gz": "&#039;&#039; is not a valid project name",
    "-2.0.tar.gz": "is not a valid project name",
    "acme_tool-1.0.zip": "only wheels (.whl) and sdists (.tar.gz, PEP 625) are taken",
    "acme_tool-1.0.egg": "only wheels (.whl) and sdists (.tar.gz, PEP 625) are taken",
    # pypiserver reads acme 1.0-1.0, packaging acme-1-0 1.0: a grant of
    # either would be checked against the other.
    "acme-1.0-1.0.tar.gz": "pypiserver reads it otherwise (acme 1.0-1.0)",
    "acme-tool-1.0-py3-none-any.whl": "Invalid wheel filename",
    "acme_tool-1.0-x-py3-none-any.whl": "Invalid build number",
    "acme_tool-not.a.version.tar.gz": "invalid version",
    ".acme_tool-1.0.tar.gz": "does not start with a dot",
}


@pytest.mark.parametrize("filename,reason", sorted(REFUSED.items()))
def test_a_file_name_that_is_no_distribution_gets_400_is_audited_and_nothing_is_stored(index, tmp_path, filename,
                                                                                       reason):
    url, root, _, _ = index

    status, body = upload(url, "alice", filename, b"anything")

    assert status == 400, body
    assert f"{filename} was not stored" in body and reason in body
    assert [path.name for path in root.iterdir()] == []
    event = json.loads((tmp_path / "audit.log").read_text().splitlines()[-1])
    assert (event["event"], event["file"], event["status"]) == ("upload", filename, 400)


def test_the_next_upload_after_a_refused_one_is_stored(index):
    url, root, _, _ = index
    assert upload(url, "alice", "zz-py3.1-z.status", b"{}")[0] == 400
    assert upload(url, "alice", "zz-1.0.tar.gz", b"zz")[0] == 200
    assert [path.name for path in root.iterdir()] == ["zz-1.0.tar.gz"]


@pytest.mark.parametrize("filename,data,reason", [
    ("zz-1.0-py3-none-any.whl", wheel("acme_tool", "1.0"), "its metadata names the project acme_tool, not zz"),
    ("zz-1.0-py3-none-any.whl", b"not a zip", "it is not a wheel pip could install"),
    ("zz-1.0.tar.gz", None, "its metadata names the project acme_tool, not zz"),
])
def test_a_distribution_whose_metadata_names_another_project_gets_400_and_nothing_is_stored(index, filename, data,
                                                                                            reason):
    """A wheel's METADATA, or an sdist's PKG-INFO (data None: an sdist of acme_tool, built here)."""
    url, root, _, _ = index
    data = sdist("acme_tool", "1.0") if data is None else data

    status, body = upload(url, "alice", filename, data)

    assert status == 400 and reason in body, body
    assert list(root.iterdir()) == []


def test_a_wheel_whose_metadata_names_its_project_is_stored(index):
    url, root, _, _ = index
    assert upload(url, "alice", "zz-1.0-py3-none-any.whl", wheel("ZZ", "1.0"))[0] == 200
    assert (root / "zz-1.0-py3-none-any.whl").is_file()


@pytest.mark.parametrize("filename,reason", [
    # pypiserver's own name check refuses these before the index sees them;
    # the index refuses them too, whatever reaches it.
    ("acme/tool-1.0.tar.gz", "a file name has no path and does not start with a dot"),
    ("acme\\tool-1.0.tar.gz", "a file name has no path and does not start with a dot"),
    # Each part of an sdist's name before its version is the name.
    ("ok-b@d-1.0.tar.gz", "'ok-b@d' is not a valid project name (PEP 508)"),
])
def test_a_name_no_client_sends_is_refused_too(filename, reason):
    with pytest.raises(ValueError) as refused:
        names.distribution(filename)
    assert str(refused.value) == reason


NAME_CHARACTERS = string.ascii_letters + string.digits + "-_.+!~ " + "\u00e9"
SUFFIXES = [".tar.gz", ".whl", "-py3-none-any.whl", ".zip", ".status", ".tar.bz2", ".egg", ""]


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(NAME_CHARACTERS, max_size=24), st.sampled_from(SUFFIXES))
def test_any_name_pypiserver_reads_is_refused_or_names_one_valid_project(stem, suffix):
    """A file name pypiserver's parser accepts is either refused, or gives a non-empty normalized project name,
    the same as pypiserver's, in one of the two formats the index takes."""
    filename = stem + suffix
    try:
        project, _ = names.distribution(filename)
    except ValueError:
        return
    guessed = guess_pkgname_and_version(filename)
    assert guessed is not None
    assert names.is_project(project) and project == normalize_pkgname(guessed[0])
    assert filename.endswith((".whl", ".tar.gz")) and not filename.startswith(".")


def test_a_file_name_pypiserver_cannot_read_is_refused_by_pypiserver_itself(index):
    """Before any backend (so before the audit trail) sees it: 400 and nothing stored."""
    url, root, _, _ = index
    status, body = upload(url, "alice", "acme_tool-1.0-py3.whl", b"anything")
    assert status == 400 and "Bad filename: acme_tool-1.0-py3.whl" in body
    assert list(root.iterdir()) == []
