"""The audit trail: every writer appends whole lines, so that none is lost or torn while others write."""

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

from pypi_index_tools.audit import Audit

TOOLS = Path(__file__).resolve().parents[1]
WRITERS, LINES = 4, 300


def write_many(path, writer):
    audit = Audit(path)
    for line in range(LINES):
        audit.record(event="upload", file=f"w{writer}-{line}.tar.gz", status=200, reason="x" * 500)


def test_uploads_and_a_playbook_writing_at_once_lose_no_line(tmp_path):
    log = tmp_path / "audit.log"
    processes = [multiprocessing.get_context("spawn").Process(target=write_many, args=(str(log), writer))
                 for writer in range(WRITERS)]
    for process in processes:
        process.start()
    # The playbooks' writer, as the release and tokens roles run it, meanwhile.
    for release in range(5):
        subprocess.run([sys.executable, "-m", "pypi_index_tools.audit", str(log),
                        json.dumps({"event": "release", "file": f"release-{release}"})],
                       cwd=TOOLS, check=True, timeout=30)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(events) == WRITERS * LINES + 5
    assert {event["file"] for event in events} == (
        {f"w{writer}-{line}.tar.gz" for writer in range(WRITERS) for line in range(LINES)}
        | {f"release-{release}" for release in range(5)})
    assert all(event["time"].endswith("+00:00") for event in events)


def test_the_command_refuses_an_event_that_is_not_an_object(tmp_path):
    refused = subprocess.run([sys.executable, "-m", "pypi_index_tools.audit", str(tmp_path / "audit.log"), "[1]"],
                             cwd=TOOLS, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "the event is a JSON object" in refused.stderr
    assert not (tmp_path / "audit.log").exists()
