"""The real public index through the index's one URL, where the host reaches it."""

import pytest
from pypi_client import fresh_venv, http_status, pip


def test_public_package_with_a_dependency_installs_through_the_index(index, tmp_path):
    probe = http_status(f"{index.url}/simple/six/", cafile=index.ca)
    if probe in (502, 503, 504):
        pytest.skip(f"the index host does not reach https://pypi.org/simple/ (the pass-through answered {probe})")
    assert probe == 200
    python = fresh_venv(tmp_path / "client")
    result = pip(python, "install", "--no-cache-dir", "--cert", index.ca, "--index-url", f"{index.url}/simple/",
                 "python-dateutil==2.9.0.post0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "six" in pip(python, "list").stdout
