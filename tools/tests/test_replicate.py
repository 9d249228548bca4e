"""Replication to the replicas: what a pass copies, in which order, and what a failed step leaves."""

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from pypi_index_tools import replicate
from pypi_index_tools.pages import BUILT, build_all
from pypi_index_tools.replicate import MARK, Metrics, Passes, Replica, built

from distributions import wheel
from test_pages import TOOLS, add, wait_for


def build(root, metadata, pages):
    """Build the pages, then let the kernel's file clock tick on (up to 10 ms): a pass that begins within the
    tick of a page's write holds that page back, as one written during the pass."""
    build_all(pages, pages / ".hashes.json", [root], "sha256", metadata)
    time.sleep(0.02)


@pytest.fixture
def primary(tmp_path):
    """A primary's package root, metadata and pages, one project built, and a replica's place."""
    root, metadata, pages = tmp_path / "packages", tmp_path / "metadata", tmp_path / "simple"
    root.mkdir()
    add(root, "foo-1.0-py3-none-any.whl", wheel("foo", "1.0"))
    build(root, metadata, pages)
    (tmp_path / "replicas" / "r1").mkdir(parents=True)
    return {"root": root, "metadata": metadata, "pages": pages, "replica": tmp_path / "replicas" / "r1",
            "passes": Passes([("root0", root), ("metadata", metadata)], ("pages", pages),
                             str(tmp_path / "replicas") + "/{host}/{module}/", [])}


def copied(primary, module, name):
    return primary["replica"] / module / name


def test_a_pass_copies_files_metadata_pages_and_records_and_then_the_mark(primary):
    add(primary["root"], ".upload-in-progress", b"half")

    assert primary["passes"].run("r1")

    assert (copied(primary, "root0", "foo-1.0-py3-none-any.whl").read_bytes()
            == (primary["root"] / "foo-1.0-py3-none-any.whl").read_bytes())
    assert copied(primary, "metadata", "foo-1.0-py3-none-any.whl.metadata").exists()
    assert copied(primary, "pages", "foo/index.json").read_bytes() == (primary["pages"] / "foo/index.json").read_bytes()
    assert copied(primary, "pages", ".hashes.json").exists()
    # Served by the replica's Apache, which runs under another account.
    assert stat.S_IMODE(copied(primary, "pages", MARK).stat().st_mode) == 0o644
    # A file being written is never copied.
    assert not copied(primary, "root0", ".upload-in-progress").exists()


def test_files_go_before_the_pages_and_are_deleted_only_after_them(primary):
    steps = [command for step in primary["passes"].steps("r1", "/tmp/mark") for command in step]
    targets = [step[-1].rsplit("/", 2)[-2] if not step[-1].endswith(MARK) else MARK for step in steps]

    assert targets == ["root0", "metadata", "pages", "root0", "metadata", MARK]
    assert ["--delete" in step for step in steps] == [False, False, True, True, True, False]


def test_a_file_removed_on_the_primary_leaves_the_replica_with_its_page(primary):
    assert primary["passes"].run("r1")
    (primary["root"] / "foo-1.0-py3-none-any.whl").unlink()
    build(primary["root"], primary["metadata"], primary["pages"])

    assert primary["passes"].run("r1")

    assert not copied(primary, "root0", "foo-1.0-py3-none-any.whl").exists()
    assert not copied(primary, "pages", "foo").exists()
    assert 'href="foo/"' not in copied(primary, "pages", "index.html").read_text()


def test_a_failed_step_ends_the_pass_before_the_pages_and_the_mark(primary, capsys):
    # The metadata's place on the replica is a file: rsync cannot copy into it.
    (primary["replica"] / "metadata").write_text("in the way")

    assert not primary["passes"].run("r1")

    assert copied(primary, "root0", "foo-1.0-py3-none-any.whl").exists()
    assert not (primary["replica"] / "pages").exists()
    assert '"ok": false' in capsys.readouterr().out


def test_a_failed_pass_says_how_far_behind_the_replica_is(primary, capsys):
    (primary["replica"] / "metadata").write_text("in the way")

    assert primary["passes"].run("r1", behind=42.5) is None

    failed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert failed["ok"] is False and failed["behind_seconds"] == 42.5 and failed["step"].endswith("/metadata/")


def build_between_steps(primary, monkeypatch, change):
    """Make the change and rebuild the pages right after the pass's first step, as an upload or a removal
    landing while a pass runs would."""
    execute = Passes.execute
    calls = []

    def changing(replica, commands, behind):
        done = execute(replica, commands, behind)
        if not calls:
            change()
            build(primary["root"], primary["metadata"], primary["pages"])
        calls.append(commands)
        return done

    monkeypatch.setattr(Passes, "execute", staticmethod(changing))


def test_a_page_written_during_a_pass_waits_for_the_next_so_no_page_names_a_file_the_replica_lacks(
        primary, monkeypatch):
    assert primary["passes"].run("r1")
    build_between_steps(primary, monkeypatch,
                        lambda: add(primary["root"], "bar-2.0-py3-none-any.whl", wheel("bar", "2.0")))

    assert primary["passes"].run("r1")

    assert not copied(primary, "pages", "bar").exists()
    assert 'href="bar/"' not in copied(primary, "pages", "index.html").read_text()
    assert copied(primary, "pages", "foo/index.html").exists()
    assert copied(primary, "pages", MARK).exists()
    monkeypatch.undo()
    time.sleep(0.02)

    assert primary["passes"].run("r1")

    assert 'href="bar/"' in copied(primary, "pages", "index.html").read_text()
    assert copied(primary, "root0", "bar-2.0-py3-none-any.whl").exists()


def test_a_file_removed_during_a_pass_stays_on_the_replica_while_its_old_page_names_it(primary, monkeypatch):
    add(primary["root"], "foo-1.1-py3-none-any.whl", wheel("foo", "1.1"))
    build(primary["root"], primary["metadata"], primary["pages"])
    assert primary["passes"].run("r1")
    build_between_steps(primary, monkeypatch, (primary["root"] / "foo-1.0-py3-none-any.whl").unlink)

    assert primary["passes"].run("r1")

    assert "foo-1.0-py3-none-any.whl" in copied(primary, "pages", "foo/index.html").read_text()
    assert copied(primary, "root0", "foo-1.0-py3-none-any.whl").exists()
    monkeypatch.undo()
    time.sleep(0.02)

    assert primary["passes"].run("r1")

    assert "foo-1.0-py3-none-any.whl" not in copied(primary, "pages", "foo/index.html").read_text()
    assert not copied(primary, "root0", "foo-1.0-py3-none-any.whl").exists()


def test_the_metrics_give_each_replicas_last_pass_and_its_lag_behind_the_newest_build(tmp_path):
    (tmp_path / BUILT).write_text(f"{1_000_000_100 * 10**9}\n")
    metrics = Metrics(tmp_path / "replication.prom", tmp_path)

    metrics.record("r1", 1_000_000_040.0, True)
    metrics.record("r2", 1_000_000_200.0, False)
    metrics.record("r3", None, False)

    text = (tmp_path / "replication.prom").read_text()
    assert 'pypi_index_replica_last_pass_timestamp_seconds{replica="r1"} 1000000040.000' in text
    assert 'pypi_index_replica_last_pass_ok{replica="r2"} 0' in text
    assert 'pypi_index_replica_lag_seconds{replica="r1"} 60.000' in text
    assert 'pypi_index_replica_lag_seconds{replica="r2"} 0.000' in text
    assert 'pypi_index_replica_lag_seconds{replica="r3"} 1000000100.000' in text
    # The page service's own file gives the build's time (no two files give one series).
    assert "pypi_index_pages_built_timestamp_seconds" not in text


def test_a_mark_left_by_a_pass_is_kept_by_the_next_pages_copy(primary):
    assert primary["passes"].run("r1")
    first = copied(primary, "pages", MARK).read_text()
    time.sleep(0.01)

    assert primary["passes"].run("r1")

    assert copied(primary, "pages", MARK).read_text() != first


def test_only_a_build_or_lost_events_ask_for_a_pass():
    assert built({("/simple", BUILT)})
    assert built(None)
    assert not built({("/simple", ".tmp1234"), ("/simple", "index.html")})


class CountingPasses:
    def __init__(self):
        self.calls = []

    def run(self, replica, behind=None):
        self.calls.append((replica, time.monotonic()))
        return None


def calls_by(passes, count, seconds=5):
    """The passes' calls once there are `count` of them, or after `seconds` (what came by then)."""
    deadline = time.monotonic() + seconds
    while len(passes.calls) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(passes.calls)


def test_a_replica_gets_a_pass_at_once_and_again_every_repair_period():
    passes = CountingPasses()
    started = time.monotonic()
    Replica("r1", passes, repair=0.1, metrics=Metrics(None, None)).start()

    calls = calls_by(passes, 3)

    assert len(calls) >= 3, calls
    assert calls[0][1] - started < 1
    # Again after each repair period, never sooner.
    gaps = [later[1] - earlier[1] for earlier, later in zip(calls, calls[1:3])]
    assert all(gap >= 0.09 for gap in gaps), gaps


def test_a_wanted_pass_runs_without_waiting_for_the_repair_period():
    passes = CountingPasses()
    thread = Replica("r1", passes, repair=60, metrics=Metrics(None, None))
    thread.start()
    assert len(calls_by(passes, 1)) == 1
    wanted = time.monotonic()
    thread.wanted.set()

    calls = calls_by(passes, 2)

    assert len(calls) == 2 and calls[1][1] - wanted < 5, calls


def test_an_upload_reaches_the_replica_through_both_watchers(primary, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(TOOLS)}
    p = primary
    watchers = [
        [sys.executable, "-m", "pypi_index_tools.pages", "--watch", "--out", str(p["pages"]),
         "--state", str(p["pages"] / ".hashes.json"), "--metadata", str(p["metadata"]), str(p["root"])],
        [sys.executable, "-m", "pypi_index_tools.replicate", "--files", f"root0={p['root']}",
         "--files", f"metadata={p['metadata']}", "--pages", f"pages={p['pages']}",
         "--dest", str(tmp_path / "replicas") + "/{host}/{module}/", "--repair", "600",
         "--metrics", str(tmp_path / "replication.prom"), "r1"],
    ]
    # Their logs go to files, read only once a wait failed: a pipe would
    # block the read of a watcher that is still running.
    logs = [tmp_path / "pages.log", tmp_path / "replicate.log"]
    processes = []
    for command, log in zip(watchers, logs):
        with open(log, "wb") as output:
            processes.append(subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT))
    try:
        assert wait_for(copied(p, "pages", MARK)), "\n".join(log.read_text() for log in logs)
        data = wheel("bar", "2.0")
        add(tmp_path, "bar-2.0-py3-none-any.whl", data).rename(p["root"] / "bar-2.0-py3-none-any.whl")

        assert wait_for(copied(p, "pages", "bar/index.html"))
        # The page came after the file it names.
        assert copied(p, "root0", "bar-2.0-py3-none-any.whl").read_bytes() == data
        assert wait_for(tmp_path / "replication.prom")
        assert 'pypi_index_replica_last_pass_ok{replica="r1"} 1' in (tmp_path / "replication.prom").read_text()
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def test_module_arguments_are_name_and_path():
    assert replicate.module_arg("root0=/srv/p") == ("root0", replicate.Path("/srv/p"))
    with pytest.raises(Exception, match="NAME=PATH"):
        replicate.module_arg("/srv/p")

