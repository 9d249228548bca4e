"""The real public index through the index's one URL, where the host reaches it."""

from pypi_client import fresh_venv, http_status, pip


def test_public_package_with_a_dependency_installs_through_the_index(index, tmp_path):
    # The machines this runs on reach PyPI (through their proxy, whose CA the
    # inventory hands the pass-through): a 502, 503 or 504 here is a broken
    # upstream TLS setup, and fails.
    probe = http_status(f"{index.url}/simple/six/", cafile=index.ca)
    assert probe == 200, f"the pass-through answered {probe} for https://pypi.org/simple/six/"
    python = fresh_venv(tmp_path / "client")
    result = pip(python, "install", "--no-cache-dir", "--cert", index.ca, "--index-url", f"{index.url}/simple/",
                 "python-dateutil==2.9.0.post0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "six" in pip(python, "list").stdout
