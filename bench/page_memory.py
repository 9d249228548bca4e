"""Time and memory of the page builder (tools/pypi_index_tools/pages.py) on a large synthetic index.

Runs on this machine, outside any container: makes --files wheels (the
benchmark's own, bench/files/make_packages.py: --versions versions of each
project, about 2 KiB each) in a package directory, then runs the page
builder as the page service and the role do, each run in its own child
process:

- first: a first build, into empty directories (every file hashed, every
  METADATA read);
- kept: a full build with every file's record kept (each start of the service);
- check: a run with --if-changed when nothing changed (each play of the role);
- watch: the page service (--watch), until its build has stamped .built.

For each run it prints the seconds, the CPU seconds of its processes, the
peak resident memory of the largest process (getrusage's ru_maxrss of the
run's processes) and the peak of the sum over the run's process tree
(sampled every 100 ms: a pool's workers count too); for the watcher, its
resident memory once built.

Run it with a Python that has pypiserver (the project's virtualenv, after
make setup): `python bench/page_memory.py`, or with --packages DIR to keep
the files for the next run, and --tools DIR to measure another checkout's
tools (say, `git archive HEAD tools` unpacked elsewhere).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "files"))
from make_packages import payload_module, wheel_bytes  # noqa: E402

TOOLS = Path(__file__).resolve().parents[1] / "tools"
# Runs a command and prints the peak resident KiB of its largest process and the CPU seconds of all of them, so
# each run is measured alone.
PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
        " usage = resource.getrusage(resource.RUSAGE_CHILDREN);"
        " print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime)")
SAMPLE_SECONDS = 0.1


def make_packages(packages, count, versions):
    """count wheels in packages, versions per project, unless it already holds them; the seconds it took."""
    packages.mkdir(parents=True, exist_ok=True)
    if sum(1 for _ in os.scandir(packages)) >= count:
        return 0.0
    started = time.monotonic()
    for number in range(count):
        name = f"bench-pkg-{number // versions:05d}"
        file_name, data = wheel_bytes(name, f"1.0.{number % versions}", payload_module(name, 1500))
        (packages / file_name).write_bytes(data)
    return time.monotonic() - started


def tree_rss_kib(pid, itself=True):
    """The summed VmRSS of a process (unless not itself) and all its descendants, in KiB."""
    children, rss = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except OSError:
            continue
        children.setdefault(int(fields["PPid"]), []).append(int(entry.name))
        rss[int(entry.name)] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, [pid] if itself else children.get(pid, [])
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo.extend(children.get(current, []))
    return total


def sampled(process, until, itself=True):
    """Sample the process tree's summed RSS until until() is true; the peak in KiB."""
    peak = 0
    while not until():
        peak = max(peak, tree_rss_kib(process.pid, itself))
        time.sleep(SAMPLE_SECONDS)
    return peak


def command(site, packages, *extra):
    """The page builder as the page service runs it, on these paths."""
    return [sys.executable, "-m", "pypi_index_tools.pages", "--out", str(site / "pages"),
            "--state", str(site / "hashes.json"), "--metadata", str(site / "metadata"), *extra, str(packages)]


def environment(tools):
    return {**os.environ, "PYTHONPATH": str(tools)}


def timed(tools, site, packages, *extra):
    """Seconds, CPU seconds, peak MiB of the largest process and peak MiB of the whole tree of one build."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-c", PEAK, *command(site, packages, *extra)],
                               env=environment(tools), stdout=subprocess.PIPE)
    # Without the measuring process itself.
    tree = sampled(process, lambda: process.poll() is not None, itself=False)
    seconds = time.monotonic() - started
    largest, cpu = process.stdout.read().split()
    return {"seconds": round(seconds, 1), "cpu_seconds": round(float(cpu), 1),
            "peak_mib": round(int(largest) / 1024, 1), "tree_peak_mib": round(tree / 1024, 1)}


def watched(tools, site, packages, settle):
    """Seconds until the watcher's first build stamped .built, and its resident MiB then and settle s later."""
    stamp = site / "pages" / ".built"
    stamp.unlink(missing_ok=True)
    started = time.monotonic()
    process = subprocess.Popen(command(site, packages, "--watch"), env=environment(tools), stdout=subprocess.DEVNULL)
    try:
        tree = sampled(process, stamp.exists)
        seconds = time.monotonic() - started
        built = tree_rss_kib(process.pid)
        time.sleep(settle)
        later = tree_rss_kib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    return {"seconds": round(seconds, 1), "tree_peak_mib": round(tree / 1024, 1),
            "rss_built_mib": round(built / 1024, 1), f"rss_after_{settle}s_mib": round(later / 1024, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--packages", type=Path, help="package directory to use (made if it holds fewer files),"
                        " kept afterwards; else a temporary one")
    parser.add_argument("--tools", type=Path, default=TOOLS, help="the tools directory whose pages.py to run")
    parser.add_argument("--settle", type=int, default=10,
                        help="seconds to wait before the watcher's second RSS reading")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="page-memory-") as temporary:
        site = Path(temporary)
        packages = args.packages.resolve() if args.packages else site / "packages"
        made = make_packages(packages, args.files, args.versions)
        print(json.dumps({"files": sum(1 for _ in os.scandir(packages)), "made_seconds": round(made, 1),
                          "cpus": os.cpu_count(), "tools": str(args.tools)}), flush=True)
        for name, extra in (("first", ()), ("kept", ()), ("check", ("--if-changed",))):
            print(json.dumps({"run": name, **timed(args.tools, site, packages, *extra)}), flush=True)
        print(json.dumps({"run": "watch", **watched(args.tools, site, packages, args.settle)}), flush=True)


if __name__ == "__main__":
    main()
