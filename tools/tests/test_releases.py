"""The files of a release, as the yank and remove playbooks find them."""

import json
import subprocess
import sys
from pathlib import Path

from pypi_index_tools.releases import project_removal_marks, release_files

TOOLS = Path(__file__).resolve().parents[1]


def test_a_release_is_every_file_of_that_version_in_any_root_whatever_the_spelling(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    (second / "old").mkdir(parents=True)
    first.mkdir()
    for path in (first / "Acme_Lib-1.0.tar.gz", second / "old" / "acme.lib-1.0-py3-none-any.whl",
                 first / "acme_lib-1.1.tar.gz", first / "other-1.0.tar.gz"):
        path.write_bytes(b"x")

    assert release_files([first, second], "ACME-LIB", version="1.0") == [
        str(first / "Acme_Lib-1.0.tar.gz"), str(second / "old" / "acme.lib-1.0-py3-none-any.whl")]
    assert release_files([first, second], "acme-lib", filename="acme_lib-1.1.tar.gz") == [
        str(first / "acme_lib-1.1.tar.gz")]
    assert release_files([first, second], "acme-lib", version="9.9") == []


def test_the_command_prints_json_and_wants_a_version_or_a_file(tmp_path):
    (tmp_path / "foo-1.0.tar.gz").write_bytes(b"x")
    command = [sys.executable, "-m", "pypi_index_tools.releases", "--project", "foo"]

    found = subprocess.run([*command, "--version", "1.0", str(tmp_path)], capture_output=True, text=True,
                           cwd=TOOLS, check=True, timeout=30)
    refused = subprocess.run([*command, str(tmp_path)], capture_output=True, text=True, cwd=TOOLS, check=False,
                             timeout=30)

    assert json.loads(found.stdout) == [str(tmp_path / "foo-1.0.tar.gz")]
    assert refused.returncode == 2 and "name a --version or a --filename" in refused.stderr


def test_a_project_s_removal_marks_are_found_in_any_root_whatever_the_spelling(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    for path in (first / "Acme_Lib-1.0.tar.gz.removed", second / "acme.lib-1.1-py3-none-any.whl.removed",
                 first / "acme_lib-1.2.tar.gz", first / "other-1.0.tar.gz.removed"):
        path.write_bytes(b"{}")

    assert project_removal_marks([first, second], "ACME-LIB") == [
        str(first / "Acme_Lib-1.0.tar.gz.removed"), str(second / "acme.lib-1.1-py3-none-any.whl.removed")]
