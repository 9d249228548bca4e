"""The backup inventory: manifests compatible with sha256sum, missing files, verification, settling."""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pypi_index_tools.inventory import newest_recent

TOOLS = Path(__file__).resolve().parents[1]


def run(root, *argv):
    """The CLI as the role runs it: a fresh python3 with the package on PYTHONPATH."""
    return subprocess.run(
        [sys.executable, "-m", "pypi_index_tools.inventory", "--root", str(root), *argv],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(TOOLS)},
    )


def sha256(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def host(tmp_path):
    """A fake filesystem root: packages in nested directories, a name with a space, a lone file."""
    root = tmp_path / "root"
    files = {
        "srv/packages/foo-1.0.tar.gz": b"foo one",
        "srv/packages/team/bar-2.0.zip": b"bar two!",
        "srv/packages/team/deep/baz qux-3.0.zip": b"spaced",
        "etc/pypi-index/htpasswd": b"user:hash\n",
        "etc/pypi-index/unrelated": b"not backed up",
    }
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root


PATHS = ["/srv/packages", "/etc/pypi-index/htpasswd", "/srv/not-there"]
LISTED = {
    "etc/pypi-index/htpasswd": b"user:hash\n",
    "srv/packages/foo-1.0.tar.gz": b"foo one",
    "srv/packages/team/bar-2.0.zip": b"bar two!",
    "srv/packages/team/deep/baz qux-3.0.zip": b"spaced",
}


def write_manifest(host, tmp_path):
    out = tmp_path / "FILES.sha256"
    result = run(host, "manifest", "--out", str(out), *PATHS)
    assert result.returncode == 0, result.stderr
    return out, result


def test_manifest_lists_every_file_sorted_in_sha256sum_format(host, tmp_path):
    out, _ = write_manifest(host, tmp_path)

    expected = "".join(f"{sha256(data)}  {relative}\n" for relative, data in sorted(LISTED.items()))
    assert out.read_text() == expected


def test_manifest_equals_what_sha256sum_writes_from_the_root(host, tmp_path):
    out, _ = write_manifest(host, tmp_path)

    relative = sorted(LISTED)
    real = subprocess.run(["sha256sum", *relative], cwd=host, capture_output=True, check=True, text=True, timeout=30)
    assert out.read_text() == real.stdout
    check = subprocess.run(["sha256sum", "--check", "--quiet", str(out)], cwd=host, capture_output=True, timeout=30)
    assert check.returncode == 0


def test_manifest_prints_file_count_and_total_bytes(host, tmp_path):
    _, result = write_manifest(host, tmp_path)

    assert json.loads(result.stdout) == {"files": 4, "bytes": sum(map(len, LISTED.values()))}


def test_manifest_escapes_a_newline_in_a_name_as_sha256sum_does(tmp_path):
    root = tmp_path / "root"
    (root / "srv").mkdir(parents=True)
    (root / "srv" / "odd\nname").write_bytes(b"x")
    out = tmp_path / "FILES.sha256"

    assert run(root, "manifest", "--out", str(out), "/srv").returncode == 0

    real = subprocess.run(["sha256sum", "srv/odd\nname"], cwd=root, capture_output=True, check=True, text=True, timeout=30)
    assert out.read_text() == real.stdout
    assert run(root, "verify", "--manifest", str(out)).returncode == 0


def test_missing_lists_the_deleted_files_only(host, tmp_path):
    out, _ = write_manifest(host, tmp_path)
    (host / "srv/packages/team/deep/baz qux-3.0.zip").unlink()
    (host / "etc/pypi-index/htpasswd").unlink()

    result = run(host, "missing", "--manifest", str(out))

    assert result.returncode == 0, result.stderr
    assert result.stdout == "etc/pypi-index/htpasswd\nsrv/packages/team/deep/baz qux-3.0.zip\n"


def test_missing_on_a_complete_host_lists_nothing(host, tmp_path):
    out, _ = write_manifest(host, tmp_path)

    assert run(host, "missing", "--manifest", str(out)).stdout == ""


def test_verify_passes_and_counts_files_and_bytes(host, tmp_path):
    out, _ = write_manifest(host, tmp_path)

    result = run(host, "verify", "--manifest", str(out))

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"verified": 4, "bytes": sum(map(len, LISTED.values()))}


def test_verify_fails_naming_the_corrupted_and_the_missing_file(host, tmp_path):
    out, _ = write_manifest(host, tmp_path)
    (host / "srv/packages/foo-1.0.tar.gz").write_bytes(b"foo 0ne")
    (host / "srv/packages/team/deep/baz qux-3.0.zip").unlink()

    result = run(host, "verify", "--manifest", str(out))

    assert result.returncode == 1
    assert result.stdout == ""
    assert "/srv/packages/foo-1.0.tar.gz: sha256 differs" in result.stderr
    assert "/srv/packages/team/deep/baz qux-3.0.zip: missing" in result.stderr
    assert "bar-2.0.zip" not in result.stderr


def test_verify_only_checks_the_listed_files(host, tmp_path):
    out, _ = write_manifest(host, tmp_path)
    (host / "srv/packages/foo-1.0.tar.gz").write_bytes(b"corrupt, but not restored")
    only = tmp_path / "missing.txt"
    only.write_text("srv/packages/team/deep/baz qux-3.0.zip\netc/pypi-index/htpasswd\n")

    result = run(host, "verify", "--manifest", str(out), "--only", str(only))

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"verified": 2, "bytes": len(b"spaced") + len(b"user:hash\n")}


def test_verify_rejects_a_listed_file_the_manifest_does_not_name(host, tmp_path):
    out, _ = write_manifest(host, tmp_path)
    only = tmp_path / "missing.txt"
    only.write_text("etc/pypi-index/unrelated\n")

    result = run(host, "verify", "--manifest", str(out), "--only", str(only))

    assert result.returncode == 1
    assert "/etc/pypi-index/unrelated: not in the manifest" in result.stderr


def test_a_garbled_manifest_fails_with_its_line_number(host, tmp_path):
    out, _ = write_manifest(host, tmp_path)
    out.write_text(out.read_text() + "not a checksum line\n")

    result = run(host, "missing", "--manifest", str(out))

    assert result.returncode == 1
    assert "line 5: not a sha256sum line" in result.stderr


def test_newest_recent_names_the_newest_file_written_within_the_quiet_time(host):
    now = 1_000_000.0
    for path in (host / "srv").rglob("*"):
        os.utime(path, (now - 100, now - 100))
    os.utime(host / "srv/packages/team/bar-2.0.zip", (now - 2, now - 2))
    os.utime(host / "srv/packages/team/deep/baz qux-3.0.zip", (now - 1, now - 1))

    assert newest_recent(host, ["/srv/packages"], quiet=3, now=now) == "srv/packages/team/deep/baz qux-3.0.zip"
    assert newest_recent(host, ["/srv/packages"], quiet=1.5, now=now) == "srv/packages/team/deep/baz qux-3.0.zip"
    assert newest_recent(host, ["/srv/packages"], quiet=0.5, now=now) is None
    assert newest_recent(host, ["/srv/packages"], quiet=3, now=now + 10) is None


def test_newest_recent_counts_a_file_dated_in_the_future(host):
    now = 1_000_000.0
    for path in (host / "srv").rglob("*"):
        os.utime(path, (now - 100, now - 100))
    os.utime(host / "srv/packages/foo-1.0.tar.gz", (now + 60, now + 60))

    assert newest_recent(host, ["/srv/packages", "/srv/not-there"], quiet=3, now=now) == "srv/packages/foo-1.0.tar.gz"


def test_wait_settled_returns_at_once_on_an_old_tree(host):
    old = time.time() - 3600
    for path in (host / "srv").rglob("*"):
        os.utime(path, (old, old))

    started = time.monotonic()
    result = run(host, "wait-settled", "--quiet", "3", "--timeout", "10", "/srv/packages")

    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 5


def test_wait_settled_times_out_naming_the_file_still_changing(host):
    future = time.time() + 60
    os.utime(host / "srv/packages/team/bar-2.0.zip", (future, future))

    started = time.monotonic()
    result = run(host, "wait-settled", "--quiet", "3", "--timeout", "1", "/srv/packages")

    assert result.returncode == 1
    assert "/srv/packages/team/bar-2.0.zip" in result.stderr
    assert 1 <= time.monotonic() - started < 10
