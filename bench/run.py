"""The project's benchmark (`make bench`): how close the index comes to Apache serving static files.

It provisions a fresh container with playbooks/site.yml over SSH, as an admin
whose sudo asks for a password (bench/ssh-host.yml; timing that run and a
no-change re-run), fills the index with a synthetic set (then times another
no-change re-run, with the files in), and measures from
inside the container on 127.0.0.1, in the same run, three servers of the
same files:
  index       the roles' Apache + mod_wsgi + pypiserver vhost (port 80);
  static      Apache serving the files and a static copy of the index (8081),
              the ceiling;
  standalone  `pypi-server run` from the same virtualenv (8082), the
              guide's first step;
and the index through HAProxy (the pypi_balancer role, 8090, the container
being its own balancer): on one machine that measures what the balancer
adds to a read, not what more nodes would add.
With a profile that turns TLS on and puts reads behind a password
(bench/profiles/private-reads.yml), the index and the static ceiling are
both measured over HTTPS (static on 8443, with the index's certificate), and
every request carries a read user's password (the static server ignores it);
pypi-server alone stays plain HTTP, as it has neither.
The ratio table (markdown and CSV), a chart and the machine it ran on go to
results/<UTC time>/. The container is removed at the end. With --memory, the
container has that much memory, swap included, as the smallest host would;
the report then says whether the kernel's OOM killer ran in it.
"""

import argparse
import base64
import csv
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "bench" / "files"
INVENTORY = ROOT / "inventories" / "bench"
CONTAINER = "pypi-bench"
# site.yml reaches the container over SSH, on this port of 127.0.0.1, as this
# admin, whose sudo asks for this (fake) password (bench/ssh-host.yml).
SSH_PORT = 18122
SSH_SUDO_PASSWORD = "bench-admin-sudo"
# Its hash (openssl passwd -6 -salt benchadmin bench-admin-sudo).
SSH_SUDO_PASSWORD_HASH = "$6$benchadmin$ICQKexlFh9YIU42aADmLgxXDX7N.BaxzXMay1betwk68YgwfmnRBzlPlRVbesPTSaGzl.v5YlWHe0pU78EiwZ."
PACKAGES = "/srv/pypi-index/packages"
PROBE_DIR = "/srv/bench-probe"
TOOLS_DIR = "/opt/bench"
CLIENT_VENV = "/opt/bench/client"
SERVERS = {
    "static": "http://127.0.0.1:8081",
    "index": "http://127.0.0.1",
    "standalone": "http://127.0.0.1:8082",
}
# HAProxy in front of the index, for the measures that go through it.
BALANCER = "http://127.0.0.1:8090"
STANDALONE_UNIT = "bench-standalone"
PAGES_DIR = "/var/cache/pypi-index/simple"
# Touched once every package file has landed.
LANDED = "/var/tmp/bench-files-landed"
# Longer than the page service waits, after its last build, before it saves its records.
PAGE_SERVICE_QUIET_SECONDS = 6


def page_build_command(out, state, metadata):
    """The page builder as the page service runs it, writing to these paths."""
    return ("runuser -u www-data -- env PYTHONPATH=/opt/pypi-index/lib /opt/pypi-index/venv/bin/python"
            f" -m pypi_index_tools.pages --out {out} --state {state} --metadata {metadata} {PACKAGES}")


# One full build of the pages, as each start of the page service runs it,
# and a play when the roots changed (the role's defaults; the hashes are
# known by then).
PAGE_BUILD = page_build_command(PAGES_DIR, f"{PAGES_DIR}/.hashes.json", "/var/cache/pypi-index/metadata")
# The same build as a host's first (one restored from a backup, say): into
# empty directories, every file hashed and every wheel's METADATA read.
COLD_DIR = "/var/tmp/bench-cold-build"
COLD_PAGE_BUILD = page_build_command(f"{COLD_DIR}/pages", f"{COLD_DIR}/hashes.json", f"{COLD_DIR}/metadata")
# The index's own CA (selfsigned mode), which the probes and pip trust.
TLS_CA = "/etc/pypi-index/tls/selfsigned/ca.crt"
# What the profile asks of every probe (BENCH_CA, BENCH_AUTH: see probe.py).
PROBE_ENV = {}
# A small public project with one file per release, fetched through the index.
UPSTREAM_PROJECT = "six"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
# The clients of the resolution measure, in the client virtualenv: releases
# that read PEP 658 metadata (pip's --dry-run downloads no wheel it has the
# metadata of), as the project's own tools pin them.
CLIENTS = ["pip==26.3", "uv==0.13.9"]
# Where the role's pip finds the CA of this machine's proxy to PyPI.
PIP_CA = "/opt/pypi-index/pip-ca.pem"
ACCESS_LOGS = {"index": "/var/log/apache2/pypi-index-access.log",
               "static": "/var/log/apache2/bench-static-access.log"}


@dataclass
class Measure:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    target: float | None = None
    path: str = ""
    servers: tuple = tuple(SERVERS)
    accept: str = ""
    # The index's figure is taken through HAProxy.
    balanced: bool = False


MEASURES = [
    Measure("simple", "/simple/", "req/s", True, path="/simple/"),
    Measure("project", "/simple/<name>/, one project", "req/s", True, 0.5, "/simple/bench-pkg-0001/"),
    Measure("projects", "/simple/<name>/, random projects", "req/s", True),
    # pypi-server alone has no JSON form; the static server picks the index's
    # own JSON file by a rewrite on Accept.
    Measure("json", "/simple/<name>/, PEP 691 JSON", "req/s", True, 0.9, "/simple/bench-pkg-0001/",
            ("static", "index"), JSON_TYPE),
    Measure("small", "download, 2 KiB wheel", "req/s", True, 0.9, "/packages/bench_pkg_0001-1.0.0-py3-none-any.whl"),
    Measure("big", "download, 10 MiB wheel", "req/s", True, 0.9, "/packages/bench_big-1.0.0-py3-none-any.whl"),
    Measure("pip", "pip install, 20 dependencies", "s", False, 1.5),
    # Passed through from the public index and cached; the static server holds
    # copies at the same paths. pypi-server alone has no pass-through.
    Measure("upstream_page", "/simple/<name>/, cached from upstream", "req/s", True, 0.8,
            f"/simple/{UPSTREAM_PROJECT}/", ("static", "index")),
    Measure("upstream_file", "download, cached upstream file", "req/s", True, 0.8, servers=("static", "index")),
    Measure("balanced_project", "/simple/<name>/, one project, through HAProxy", "req/s", True, 0.8,
            "/simple/bench-pkg-0001/", ("static", "index"), balanced=True),
    Measure("balanced_small", "download, 2 KiB wheel, through HAProxy", "req/s", True, 0.8,
            "/packages/bench_pkg_0001-1.0.0-py3-none-any.whl", ("static", "index"), balanced=True),
]


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(argv, **kwargs):
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        sys.exit(f"{shlex.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def inside(script, env=None):
    """bash -c SCRIPT in the container, with the profile's probe settings; returns stdout."""
    options = [f"--env={key}={value}" for key, value in {**PROBE_ENV, **(env or {})}.items()]
    return run(["docker", "exec", *options, CONTAINER, "bash", "-euo", "pipefail", "-c", script])


def playbook(name, *args, env=None):
    return run(["ansible-playbook", str(ROOT / "playbooks" / name), *args], env={**os.environ, **(env or {})})


def container_vars(image, memory=""):
    ports = json.dumps({"pypi_demo_published_ports": [f"127.0.0.1:{SSH_PORT}:22"]})
    return ["-e", f"pypi_demo_container={CONTAINER}", "-e", f"pypi_demo_image={image}",
            "-e", ports, "-e", f"pypi_demo_memory={memory}"]


# The inventories site.yml runs with: the bench's, then reach_over_ssh's.
SITE_INVENTORIES = [INVENTORY]


def reach_over_ssh(directory):
    """sshd and the admin account in the container (through Docker's API); then an inventory in directory,
    read after inventories/bench (SITE_INVENTORIES), reaches the container over SSH instead."""
    key = directory / "admin_ed25519"
    playbook_vars = json.dumps({"bench_ssh_key": str(key), "bench_ssh_password_hash": SSH_SUDO_PASSWORD_HASH})
    run(["ansible-playbook", str(ROOT / "bench" / "ssh-host.yml"), "-i", str(INVENTORY), "-e", playbook_vars])
    over_ssh = directory / "ssh.yml"
    over_ssh.write_text(yaml.safe_dump({"pypi_servers": {"hosts": {CONTAINER: {
        "ansible_connection": "ansible.builtin.ssh", "ansible_host": "127.0.0.1", "ansible_port": SSH_PORT,
        "ansible_user": "admin", "ansible_become": True, "ansible_become_password": SSH_SUDO_PASSWORD,
        "ansible_ssh_private_key_file": str(key),
        # A new container, with a new host key, every run.
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"}}}}))
    SITE_INVENTORIES.append(over_ssh)


def site(extra_vars, env=None):
    """One site.yml run on the container: its seconds and its output."""
    args = [f"--inventory={path}" for path in SITE_INVENTORIES] + (["-e", f"@{extra_vars}"] if extra_vars else [])
    started = time.monotonic()
    output = playbook("site.yml", *args, env=env)
    return time.monotonic() - started, output


# Where a no-change run's time goes: its slowest tasks (ansible.posix's
# profile_tasks), written to no-change-profile.txt beside the report.
PROFILE_ENV = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks", "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "30"}


def rerun(extra_vars, profile, title):
    """A site.yml run that should change nothing: its seconds, and how many tasks changed; appends its
    slowest tasks to the file profile under title."""
    seconds, output = site(extra_vars, PROFILE_ENV)
    with profile.open("a") as recap:
        recap.write(f"## {title}: {seconds:.1f} s\n\n{output[output.rindex('TASKS RECAP'):]}\n")
    changed = sum(int(n) for n in re.findall(r"\bchanged=(\d+)", output))
    if changed:
        # The tasks of the re-run that changed something, by name.
        tasks = re.findall(r"^TASK \[(.+?)\] \**\n(?:(?!TASK ).*\n)*?changed:", output, re.MULTILINE)
        log(f"re-run changed: {tasks}")
    return seconds, changed


# Where a cgroup says how often the OOM killer ran in it ("oom_kill N") and
# its peak memory in bytes: cgroup v2's files, then v1's memory controller's.
CGROUP_MEMORY_FILES = (("memory.events", "memory.peak"), ("memory.oom_control", "memory.max_usage_in_bytes"))


def memory_events():
    """How many times the kernel's OOM killer ran in the container's cgroup, and the container's peak memory
    in MiB (None where the kernel does not keep it)."""
    identifier = run(["docker", "inspect", "--format", "{{.Id}}", CONTAINER]).strip()
    for events, peak in CGROUP_MEMORY_FILES:
        for group in Path("/sys/fs/cgroup").glob(f"**/*{identifier}*"):
            if (group / events).is_file():
                counts = dict(line.split() for line in (group / events).read_text().splitlines())
                peak_bytes = int((group / peak).read_text()) if (group / peak).is_file() else None
                return int(counts["oom_kill"]), None if peak_bytes is None else peak_bytes / 2**20
    sys.exit(f"no memory cgroup found for the container {identifier}")


def configure_profile(extra_vars):
    """HTTPS on both sides when the profile turns TLS on; a read user's password
    on every request when it puts reads behind one."""
    settings = yaml.safe_load(extra_vars.read_text()) if extra_vars else {}
    if settings.get("pypi_index_tls_mode", "off") != "off":
        SERVERS.update(index="https://127.0.0.1", static="https://127.0.0.1:8443")
        PROBE_ENV["BENCH_CA"] = TLS_CA
        # The balancer talks plain HTTP to its nodes, whose port 80 then only redirects.
        MEASURES[:] = [measure for measure in MEASURES if not measure.balanced]
    readers = settings.get("pypi_index_read_users") or []
    if {"download", "list"} & set(settings.get("pypi_index_authenticate", [])) and readers:
        PROBE_ENV["BENCH_AUTH"] = f"{readers[0]['name']}:{readers[0]['password']}"


def prepare_host(args):
    """Load tool, synthetic set, the static ceiling and the standalone server."""
    run(["docker", "cp", str(FILES), f"{CONTAINER}:{TOOLS_DIR}"])
    inside("apt-get install -y -qq wrk > /dev/null && python3 -m venv " + CLIENT_VENV
           + f" && {CLIENT_VENV}/bin/pip install --quiet --disable-pip-version-check"
           + f" $(test -f {PIP_CA} && echo --cert {PIP_CA}) " + shlex.join(CLIENTS))
    count = inside(
        f"python3 {TOOLS_DIR}/make_packages.py --projects {args.projects} --versions {args.versions}"
        f" --packages {PACKAGES} --static /srv/bench-static --probe {PROBE_DIR}"
        f" && chown -R www-data:www-data {PACKAGES} && touch {LANDED}")
    if inside("systemctl is-active pypi-index-pages.service || true").strip() == "active":
        wait_for_page_service()
        inside(f"cp {PAGES_DIR}/bench-pkg-0001/index.json /srv/bench-static/simple/bench-pkg-0001/")
    else:
        # No static pages, no JSON form and no metadata: nothing to compare.
        MEASURES[:] = [measure for measure in MEASURES if measure.key != "json"]
    cold = json.loads(inside(f"python3 {TOOLS_DIR}/probe.py mirror {SERVERS['index']} {UPSTREAM_PROJECT}"
                             " /srv/bench-static"))
    next(m for m in MEASURES if m.key == "upstream_file").path = cold["file_path"]
    sites = ["bench-static"] + (["bench-static-tls"] if "BENCH_CA" in PROBE_ENV else [])
    inside(" && ".join(f"cp {TOOLS_DIR}/{site}.conf /etc/apache2/sites-available/ && a2ensite -q {site}"
                       for site in sites) + " && apache2ctl configtest && systemctl reload apache2")
    inside(f"systemd-run --quiet --unit={STANDALONE_UNIT} --property=User=www-data"
           f" /opt/pypi-index/venv/bin/pypi-server run --host 127.0.0.1 --port 8082 {PACKAGES}"
           " && for _ in $(seq 100); do python3 -c 'import urllib.request as u; u.urlopen(\"http://127.0.0.1:8082/health\")'"
           " 2>/dev/null && exit 0; sleep 0.2; done; exit 1")
    return int(count), cold


def wait_for_page_service():
    """Until the page service has listed every file that landed: a build stamp newer than the
    last file, then no CPU used for longer than its wait before saving its records. A quiet
    stamp alone is not enough: at 200,000 files each build while they land has more projects
    to write (10,716 in the last one seen, 115 s), with no new stamp until it ends."""
    inside(f"stamp={PAGES_DIR}/.built; pid=$(systemctl show -p MainPID --value pypi-index-pages.service);"
           " cpu() { cut -d' ' -f14,15 /proc/$pid/stat; };"
           f" for _ in $(seq 600); do if test $stamp -nt {LANDED}; then"
           f" seen=$(cpu); sleep {PAGE_SERVICE_QUIET_SECONDS}; test \"$(cpu)\" = \"$seen\" && exit 0;"
           " else sleep 1; fi; done; echo 'the page service never went idle' >&2; exit 1")
    # Then every project has its page, or the figures would count 404s. A
    # directory whose name starts with "_" (_namespaces, _quarantined) is no
    # project's: no valid name starts so.
    listed, written = (inside(f"find {directory} -mindepth 1 -maxdepth 1 -type d -not -name '_*' | wc -l").strip()
                       for directory in (PAGES_DIR, "/srv/bench-static/simple"))
    if listed != written:
        sys.exit(f"the page service wrote {listed} project pages, the set has {written} projects")


def check_pages(base):
    """What each server answers is the same index, so that the figures compare like with like."""
    probe = f"python3 {TOOLS_DIR}/probe.py expect"
    inside(f"{probe} {base}/simple/ bench-pkg-0001"
           f" && {probe} {base}/simple/bench-pkg-0000/ 'bench_pkg_0000-1.0.0-py3-none-any.whl#sha256='")


def wrk(url, args, script=None, accept=""):
    """Requests per second wrk measures; any non-2xx answer or socket error invalidates the run."""
    options = ["-s", f"{TOOLS_DIR}/{script}"] if script else []
    if accept:
        options += ["-H", f"Accept: {accept}"]
    if "BENCH_AUTH" in PROBE_ENV:
        options += ["-H", "Authorization: Basic " + base64.b64encode(PROBE_ENV["BENCH_AUTH"].encode()).decode()]
    output = inside(shlex.join(["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
                                "--timeout", "60s", *options, url]),
                    env={"BENCH_PROJECTS": args.projects})
    problems = re.findall(r"(Non-2xx or 3xx responses: \d+|Socket errors: .*)", output)
    if problems:
        sys.exit(f"wrk {url}: {problems}\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def pip_seconds(base):
    """Wall time of a fresh `pip install bench-app` (20 dependencies), with no cache."""
    if "BENCH_AUTH" in PROBE_ENV:
        base = base.replace("://", f"://{PROBE_ENV['BENCH_AUTH']}@")
    cert = f" --cert {PROBE_ENV['BENCH_CA']}" if "BENCH_CA" in PROBE_ENV else ""
    output = inside(
        "rm -rf /tmp/bench-target && TIMEFORMAT=%R && { time "
        f"{CLIENT_VENV}/bin/pip install --quiet --no-cache-dir --disable-pip-version-check{cert}"
        f" --index-url {base}/simple/ --target /tmp/bench-target bench-app > /dev/null; }} 2>&1"
        " && python3 -c 'import sys; sys.path.insert(0, \"/tmp/bench-target\"); import bench_app'")
    return float(output.strip().splitlines()[-1])


def load(measure, base, args):
    """One figure of one server: requests per second, or seconds of pip."""
    if measure.key == "pip":
        return pip_seconds(base)
    if measure.key == "projects":
        return wrk(f"{base}/", args, script="random-project.lua")
    return wrk(f"{base}{measure.path}", args, accept=measure.accept)


def measure_all(args):
    """The median of --rounds rounds; each round measures the three servers back to back,
    so that a slow spell of the machine weighs on all of them alike."""
    for base in [*SERVERS.values(), *([BALANCER] if any(measure.balanced for measure in MEASURES) else [])]:
        check_pages(base)
    results = {server: {} for server in SERVERS}
    for measure in MEASURES:
        bases = {server: BALANCER if measure.balanced and server == "index" else SERVERS[server]
                 for server in measure.servers}
        rounds = [{server: load(measure, bases[server], args) for server in measure.servers}
                  for _ in range(args.rounds)]
        for server in measure.servers:
            results[server][measure.key] = statistics.median(figures[server] for figures in rounds)
        log(f"{measure.label}: " + ", ".join(f"{server} {results[server][measure.key]:.2f}"
                                              for server in measure.servers))
    return results


def timed(command):
    """Seconds of a shell command in the container (its output dropped)."""
    return float(inside(f"TIMEFORMAT=%R && {{ time {command} > /dev/null; }} 2>&1").strip().splitlines()[-1])


def sent_bytes(server, offset):
    """Bytes a server sent (%O) in the access-log lines written after offset."""
    script = ("import re, sys; log = open(sys.argv[1], 'rb'); log.seek(int(sys.argv[2]));"
              " print(sum(int(sent) for sent in re.findall(rb'\" \\d{3} (\\d+) ', log.read())))")
    return int(inside(shlex.join(["python3", "-c", script, ACCESS_LOGS[server], str(offset)])))


def resolution():
    """Seconds and bytes sent of a cold resolution of bench-heavy-app (20 dependencies, each a
    10 MiB wheel) by pip (install --dry-run) and by uv (pip compile), from the
    static server (HTML pages, no metadata) and from the index (JSON, PEP 658 metadata)."""
    results = {}
    for client in ("pip", "uv"):
        for server in ("static", "index"):
            base = SERVERS[server]
            if "BENCH_AUTH" in PROBE_ENV:
                base = base.replace("://", f"://{PROBE_ENV['BENCH_AUTH']}@")
            ca = PROBE_ENV.get("BENCH_CA")
            if client == "pip":
                command = (f"{CLIENT_VENV}/bin/pip install --dry-run --quiet --no-cache-dir"
                           f" --disable-pip-version-check{f' --cert {ca}' if ca else ''}"
                           f" --index-url {base}/simple/ bench-heavy-app")
            else:
                command = (f"echo bench-heavy-app | env UV_NO_CONFIG=1 UV_NO_CACHE=1"
                           f"{f' SSL_CERT_FILE={ca}' if ca else ''}"
                           f" {CLIENT_VENV}/bin/uv pip compile --quiet --index-url {base}/simple/ -")
            offset = int(inside(f"stat -c %s {ACCESS_LOGS[server]}"))
            seconds = timed(command)
            results[client, server] = seconds, sent_bytes(server, offset)
            log(f"{client} resolution from {server}: {seconds:.2f} s, {results[client, server][1] / 1e6:.1f} MB")
    return results


def freshness():
    """Seconds an upload's POST takes until its answer, and from that answer to the new file
    on a project page that was just served."""
    users = yaml.safe_load((INVENTORY / "group_vars/pypi_servers/main.yml").read_text())["pypi_index_upload_users"]
    base = SERVERS["index"]
    inside(f"python3 {TOOLS_DIR}/probe.py expect {base}/simple/bench-pkg-0000/ bench_pkg_0000")
    output = inside(shlex.join(["python3", f"{TOOLS_DIR}/probe.py", "fresh", base,
                                f"{PROBE_DIR}/bench_pkg_0000-9.9.9-py3-none-any.whl",
                                users[0]["name"], users[0]["password"]]))
    return json.loads(output)


def memory_mib():
    """Resident memory of each application server after the load, and of the page service."""
    output = inside("ps -eo rss=,args= | grep -E '^ *[0-9]+ (\\(wsgi:pypi-index\\)|.*pypi-server run"
                    "|.*pypi_index_tools.pages .*--watch)' || true")
    totals = {"index": 0, "standalone": 0, "pages": 0}
    for line in output.splitlines():
        rss, command = line.split(None, 1)
        kind = "index" if "wsgi:pypi-index" in command else "pages" if "--watch" in command else "standalone"
        totals[kind] += int(rss)
    return {kind: kib / 1024 for kind, kib in totals.items()}


def timed_build(command):
    """Seconds and peak resident MiB of a page build."""
    output = inside("python3 -c 'import resource, subprocess, sys, time; started = time.monotonic();"
                    " subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
                    " print(time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "
                    + command)
    seconds, kib = output.split()
    return float(seconds), int(kib) / 1024


def page_build():
    """(seconds, peak MiB) of a full build with every file's record kept, as each start of the page
    service runs it, of a play's check when nothing changed since (--if-changed), then of a first build into
    empty directories; None without the page service."""
    if inside("systemctl is-active pypi-index-pages.service || true").strip() != "active":
        return None
    kept = timed_build(PAGE_BUILD)
    check = timed_build(f"{PAGE_BUILD} --if-changed")
    inside(f"rm -rf {COLD_DIR} && install -d -o www-data {COLD_DIR}")
    cold = timed_build(COLD_PAGE_BUILD)
    inside(f"rm -rf {COLD_DIR}")
    return (*kept, *cold, *check)


def machine(file_count):
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024 // 1024
    versions = inside(
        "printf 'Debian %s; ' \"$(cat /etc/debian_version)\";"
        " apache2 -v | sed -n 's/^Server version: //p' | tr '\\n' ';';"
        " printf ' pypiserver %s; ' \"$(/opt/pypi-index/venv/bin/pip show pypiserver | sed -n 's/^Version: //p')\";"
        " { wrk -v 2>&1 || true; } | head -1 | cut -d' ' -f1-2")
    return {
        "CPU": f"{os.cpu_count()} × {cpu}",
        "memory": f"{memory} GiB",
        "kernel": platform.release(),
        "container": versions.strip(),
        "package files": f"{file_count:,}",
    }


def met(measure, value):
    if measure.target is None:
        return ""
    ok = value >= measure.target if measure.higher_is_better else value <= measure.target
    return "yes" if ok else "NO"


def report(out, args, results, provisioning, fresh, cold, memory, built, oom, resolved, described):
    """The table of every figure (markdown and CSV, with the chart); provisioning: the fresh run's seconds, then
    (seconds, tasks changed) of each no-change re-run by what it found."""
    rows = []
    for measure in MEASURES:
        static = results["static"][measure.key]
        index, standalone = results["index"][measure.key], results["standalone"].get(measure.key)
        target = "" if measure.target is None else f"{'≥' if measure.higher_is_better else '≤'} {measure.target}"
        rows.append({
            "measure": measure.label, "unit": measure.unit,
            "static": f"{static:.2f}", "index": f"{index:.2f}",
            "standalone": "" if standalone is None else f"{standalone:.2f}",
            "index/static": f"{index / static:.3g}",
            "standalone/static": "" if standalone is None else f"{standalone / static:.3g}",
            "target": target, "met": met(measure, index / static),
        })
    for label, value in ((f"first fetch of /simple/{UPSTREAM_PROJECT}/ from upstream", cold["page_seconds"]),
                         ("first fetch of its file from upstream", cold["file_seconds"])):
        rows.append({"measure": label, "unit": "s", "static": "", "index": f"{value:.2f}", "standalone": "",
                     "index/static": "", "standalone/static": "", "target": "", "met": ""})
    fresh_seconds, reruns = provisioning
    timed = [("upload POST answered", fresh["post_seconds"], 1, 0),
             ("fresh upload listed (HTML and JSON)", fresh["listed_seconds"], 1, 0),
             ("fresh provision (site.yml over SSH)", fresh_seconds, 120, 0)]
    timed += [(f"no-change re-run over SSH, {found} (changed={changed})", seconds, 30, changed)
              for found, (seconds, changed) in reruns.items()]
    for label, value, limit, changed in timed:
        rows.append({"measure": label, "unit": "s", "static": "", "index": f"{value:.2f}", "standalone": "",
                     "index/static": "", "standalone/static": "", "target": f"≤ {limit} s",
                     "met": "yes" if value <= limit and changed == 0 else "NO"})
    for client in ("pip", "uv") if resolved else ():
        command = "pip install --dry-run" if client == "pip" else "uv pip compile"
        for position, unit, scale in ((0, "s", 1), (1, "MB sent", 1e6)):
            static, index = resolved[client, "static"][position] / scale, resolved[client, "index"][position] / scale
            rows.append({"measure": f"cold {command}, 20 deps of 10 MiB wheels (static: no metadata)",
                         "unit": unit, "static": f"{static:.2f}", "index": f"{index:.2f}", "standalone": "",
                         "index/static": f"{index / static:.3g}" if static else "", "standalone/static": "",
                         "target": "", "met": ""})
    rows.append({"measure": "resident memory of the application", "unit": "MiB", "static": "",
                 "index": f"{memory['index']:.0f}", "standalone": f"{memory['standalone']:.0f}",
                 "index/static": "", "standalone/static": "", "target": "", "met": ""})
    if built:
        for label, unit, value in (("full page build (each start of the page service)", "s", built[0]),
                                   ("peak resident memory of that build", "MiB", built[1]),
                                   ("a no-change play's page check (--if-changed)", "s", built[4]),
                                   ("peak resident memory of that check", "MiB", built[5]),
                                   ("first full build (every file hashed, every METADATA read)", "s", built[2]),
                                   ("peak resident memory of that build", "MiB", built[3]),
                                   ("resident memory of the page service, after the load", "MiB", memory["pages"])):
            rows.append({"measure": label, "unit": unit, "static": "", "index": f"{value:.{2 if unit == 's' else 0}f}",
                         "standalone": "", "index/static": "", "standalone/static": "", "target": "", "met": ""})
    kills, peak = oom
    rows.append({"measure": "OOM kills in the container (its memory cgroup)", "unit": "", "static": "",
                 "index": str(kills), "standalone": "", "index/static": "", "standalone/static": "", "target": "0",
                 "met": "yes" if kills == 0 else "NO"})
    if peak is not None:
        rows.append({"measure": "peak memory of the whole container, page cache included", "unit": "MiB", "static": "",
                     "index": f"{peak:.0f}", "standalone": "", "index/static": "", "standalone/static": "",
                     "target": "", "met": ""})

    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    header = list(rows[0])
    lines = [
        "# Benchmark results", "",
        f"`make bench` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; settings: "
        f"{args.projects} projects × {args.versions} versions, wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s, median of {args.rounds} rounds, extra vars: {args.extra_vars or 'none (role defaults)'}"
        f"{f', memory limit {args.memory}' if args.memory else ''}.",
        "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
    ]
    lines += ["| " + " | ".join(row[key] for key in header) + " |" for row in rows]
    lines += ["", "## Machine", ""] + [f"- {key}: {value}" for key, value in described.items()]
    lines += ["", "![speed relative to static](chart.png)", ""]
    (out / "results.md").write_text("\n".join(lines))
    chart(out / "chart.png", results)
    return rows


def chart(path, results):
    """Speed relative to static Apache (log scale; 1 is the ceiling), with each target."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def speed(server, measure):
        value, static = results[server][measure.key], results["static"][measure.key]
        return value / static if measure.higher_is_better else static / value

    labels = [measure.label for measure in MEASURES]
    positions = range(len(MEASURES))
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for offset, server in ((-0.2, "index"), (0.2, "standalone")):
        shown = [(p + offset, speed(server, m)) for p, m in zip(positions, MEASURES) if m.key in results[server]]
        axes.barh([p for p, _ in shown], [value for _, value in shown], height=0.4, label=server)
    for position, measure in zip(positions, MEASURES):
        if measure.target is not None:
            goal = measure.target if measure.higher_is_better else 1 / measure.target
            axes.plot([goal, goal], [position - 0.45, position + 0.45], color="black", linewidth=2)
    axes.axvline(1, color="grey", linestyle="--", label="static Apache")
    axes.set_xscale("log")
    axes.set_yticks(list(positions), labels)
    axes.invert_yaxis()
    axes.set_xlabel("speed relative to static Apache (black bars: targets)")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="200 projects × 3 versions, one round")
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per figure and round")
    parser.add_argument("--rounds", type=int, default=5, help="each figure is the median of this many rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--image", default="pypi-index/debian:12")
    parser.add_argument("--extra-vars", type=Path, help="a vars file for site.yml, e.g. bench/profiles/guide.yml")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--keep", action="store_true", help="leave the container running")
    parser.add_argument("--memory", default="",
                        help="the container's memory limit, swap included (Docker's, e.g. 1g: the smallest host)")
    args = parser.parse_args()
    if args.quick:
        args.projects, args.versions, args.rounds = 200, 3, 1
    return args


def main():
    args = parse_args()
    ssh_dir = tempfile.TemporaryDirectory(prefix="bench-ssh-")
    configure_profile(args.extra_vars)
    out = args.out / datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True)
    playbook("demo-destroy.yml", *container_vars(args.image))
    try:
        playbook("stand-in-host.yml", *container_vars(args.image, args.memory))
        reach_over_ssh(Path(ssh_dir.name))
        log("provisioning (fresh, then again)")
        fresh_seconds, _ = site(args.extra_vars)
        profile = out / "no-change-profile.txt"
        reruns = {"empty index": rerun(args.extra_vars, profile, "empty index")}
        log(f"provision {fresh_seconds:.1f} s, re-run {reruns['empty index']}")
        file_count, cold = prepare_host(args)
        reruns[f"{file_count:,} files"] = rerun(args.extra_vars, profile, f"{file_count:,} files")
        log(f"{file_count} package files, re-run {reruns[f'{file_count:,} files']}; measuring")
        results = measure_all(args)
        resolved = resolution() if any(measure.key == "json" for measure in MEASURES) else None
        fresh = freshness()
        memory = memory_mib()
        built = page_build()
        oom = memory_events()
        rows = report(out, args, results, (fresh_seconds, reruns), fresh, cold, memory, built, oom, resolved,
                      machine(file_count))
    except Exception:
        # Said before the clean-up, whose own failure would hide it.
        log(traceback.format_exc())
        raise
    finally:
        if not args.keep:
            playbook("demo-destroy.yml", *container_vars(args.image))
        ssh_dir.cleanup()
    for row in rows:
        print(" | ".join(row.values()))
    log(f"report: {out}/results.md")


if __name__ == "__main__":
    main()
