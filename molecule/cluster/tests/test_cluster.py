"""Past one host: uploads through HAProxy reach every replica, the nodes trust
the balancer at its private address and ban clients, never it, reads survive
a replica stopped, killed or drained and the primary lost, passwords rotate,
releases are yanked and removed and backups run on the cluster's inventory, a
replica added from nothing joins the pool only once caught up, and a promoted
replica takes uploads again with nothing lost.

The tests run in this order; each leaves the cluster whole for the next, but
the last, which loses the primary.
"""

import datetime
import hashlib
import http.client
import json
import os
import ssl
import subprocess
import time
from pathlib import Path

import pip
import pytest
import testinfra
import yaml
from cryptography import x509
from playbooks import changed_count, output, run_playbook
from pypi_client import (METRICS_PORT, WAIT_SECONDS, BackgroundRequests, demo_users, get_from_inside, http_status,
                         make_package, metrics_from_inside, page_text, raw_upload_status, role_default, twine_upload,
                         upload_from_inside, wait_for)

PRIMARY, REPLICA1, REPLICA2, BALANCER = ("pypi-cluster-primary", "pypi-cluster-replica1", "pypi-cluster-replica2",
                                         "pypi-cluster-lb")
# The second balancer, and a client on the clients' network only.
BALANCER2, CLIENT = "pypi-cluster-lb2", "pypi-cluster-client"
# The balancers' shared address (host_vars), and how long it may take to move.
FLOATING = "10.237.0.200"
MOVE_SECONDS = 3
# A client's pause before it tries a failed read again: longer than the move.
RETRY_PAUSE = MOVE_SECONDS + 1
# In no group of the scenario's inventory: the tests add it.
NEW_REPLICA = "pypi-cluster-replica3"
REPLICAS = (REPLICA1, REPLICA2)
BALANCER_PORT = 18447
CA = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "balancer-tls" / "server.crt"
URL = f"https://localhost:{BALANCER_PORT}"
PACKAGES = role_default("pypi_index_package_roots")[0]
PAGES = role_default("pypi_index_pages_dir")
# The scenario's host_vars: a replica that was down is caught up within this.
REPAIR_SECONDS = 10
# pypi_index_replication_max_lag's default, three repair periods: a replica
# cut off from the primary leaves the pool this long after its last pass.
MAX_LAG = 3 * REPAIR_SECONDS
# The times below are product figures (README, docs/cluster.md), measured and
# printed by each test; what an idle machine shows is far under each bound.
# The bounds leave room for a loaded 2-CPU CI machine, where HAProxy's
# checks, rsync, SSH, a booting container and the test itself wait for a CPU,
# and stay under what a broken or default set-up would take.
#
# A replica stopped or killed is out of the pool after `fall` (2) failed
# checks `inter` (0.5 s) apart: 0.5 to 1.7 s idle (README: "within 2 s"),
# timed from when its Apache or its container stopped (their own records,
# not when the test's command returned). HAProxy's default checks (inter 2 s,
# fall 3) would take 6 s and more.
OUT_SECONDS = 4
# An upload or a yank is on every replica's own pages within a second of the
# build idle (docs/cluster.md). Kept under the repair period, so that a
# replica that only a repair pass brought up to date can still fail it.
PUSH_SECONDS = 8
LOAD_REQUESTS = 2000
# Every package uploaded so far: none may be missing after the primary is lost.
UPLOADED = []
# Inventories beside Molecule's: the one that adds NEW_REPLICA, once added.
INVENTORIES = []


def host(name):
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")


def docker(*argv):
    result = subprocess.run(["docker", *argv], capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


# HAProxy's admin socket, read on the balancer: the state of each server.
STATES = r"""
import csv, io, json, socket, sys, time
server, backend, wanted, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
deadline, first = time.monotonic() + seconds, True
while True:
    connection = socket.socket(socket.AF_UNIX)
    connection.connect("/run/haproxy/admin.sock")
    connection.sendall(b"show stat\n")
    text = b"".join(iter(lambda: connection.recv(65536), b"")).decode()
    connection.close()
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    state = next(row["status"] for row in rows if row["pxname"] == backend and row["svname"] == server)
    if first:
        print("watching", flush=True)
        first = False
    if state.startswith(wanted) or time.monotonic() > deadline:
        print(json.dumps({"state": state, "at": time.time()}))
        break
    time.sleep(0.05)
"""


def wait_state(server, wanted, seconds=WAIT_SECONDS, backend="pypi_index_read"):
    """(state, wall time) once HAProxy shows the server in the wanted state (UP, DOWN, MAINT), or after seconds."""
    seen = json.loads(host(BALANCER).check_output("python3 -c %s %s %s %s %s", STATES, server, backend, wanted,
                                                  str(seconds)).splitlines()[-1])
    return seen["state"], seen["at"]


class StateWatch:
    """wait_state, begun before the event it times: on a loaded machine, starting the watch (docker exec, a
    python3) may take longer than the change itself, and a watch begun after would time itself."""

    def __init__(self, server, wanted, seconds=WAIT_SECONDS, backend="pypi_index_read"):
        self.seconds = seconds
        self.process = subprocess.Popen(["docker", "exec", BALANCER, "python3", "-c", STATES, server, backend,
                                         wanted, str(seconds)], stdout=subprocess.PIPE, text=True)
        started = self.process.stdout.readline()
        assert started.strip() == "watching", f"the watch of {server} did not start: {started!r}"

    def result(self):
        """(state, wall time) once in the wanted state, or after the seconds."""
        out, _ = self.process.communicate(timeout=self.seconds + 60)
        seen = json.loads(out.splitlines()[-1])
        return seen["state"], seen["at"]


class Reads:
    """A bounded loop of GETs through the balancer, pages and package files in turn, over one kept-alive
    HTTPS connection (a new one after any failure); every answer must be 200 with the right bytes."""

    def __init__(self, project, file_name, data):
        self.paths = [(f"/simple/{project}/", project.encode()), (f"/packages/{file_name}", data)]
        self.context = ssl.create_default_context(cafile=str(CA))
        self.connection = None

    def step(self, n):
        path, expected = self.paths[n % 2]
        try:
            if self.connection is None:
                self.connection = http.client.HTTPSConnection("localhost", BALANCER_PORT, timeout=30,
                                                              context=self.context)
            self.connection.request("GET", path)
            response = self.connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.connection = None
            return f"{path}: {error!r}"
        if response.status != 200 or (expected not in body if n % 2 == 0 else body != expected):
            return f"{path}: {response.status}"
        return None

    def __call__(self):
        # Each loop on a new connection: the last loop's, idle since, may have
        # been closed by HAProxy (its keep-alive timeout, a reload).
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        return BackgroundRequests(self.step, limit=100 * LOAD_REQUESTS, seconds=300)


def finish(load):
    """Let the loop reach its count (bounded: the loop itself stops after 300 s); the with-block's end stops it.
    The tests' `load.done >= LOAD_REQUESTS` says when it did not."""
    deadline = time.monotonic() + 300
    while load.done < LOAD_REQUESTS and time.monotonic() < deadline and load.running:
        time.sleep(0.1)


def page_inside(name, project):
    """The node's own project page (asked from inside it), or "" when it has none."""
    script = ("import urllib.request; print(urllib.request.urlopen("
              f"'http://127.0.0.1/simple/{project}/', timeout=5).read().decode())")
    result = host(name).run("python3 -c %s", script)
    return result.stdout if result.rc == 0 else ""


def listed_inside(name, file_name):
    """Whether the node's own Apache lists the file on its project page."""
    return file_name in page_inside(name, file_name.split("-")[0])


def wait_listed_inside(name, file_name, seconds=WAIT_SECONDS, listed=True):
    """Wait until the node's own project page lists the file (or, listed=False, no longer does)."""
    wait_for(lambda: page_inside(name, file_name.split("-")[0]), seconds,
             f"{file_name} {'listed' if listed else 'gone'} on {name}'s own page",
             until=lambda page: (file_name in page) == listed)


def pushed(name, since, observe, until, what):
    """Seconds from `since` (time.monotonic()) until what the primary wrote shows on the node: waited for up to
    WAIT_SECONDS, so that a slow push is measured, then held to PUSH_SECONDS."""
    wait_for(observe, WAIT_SECONDS, f"{what} on {name}", until=until)
    took = time.monotonic() - since
    assert took <= PUSH_SECONDS, f"{what} on {name} {took:.1f} s after the change: more than {PUSH_SECONDS} s"
    return took


def network_facts(name):
    """The host's network facts (default_ipv4, all_ipv4_addresses), as Ansible gathers them."""
    return host(name).ansible("setup", "gather_subset=!all,network")["ansible_facts"]


def logged_client(name, pattern):
    """The client address (Apache's %a) of the newest access-log line of that node that holds the pattern."""
    line = host(name).check_output("grep -F %s /var/log/apache2/pypi-index-access.log | tail -1", pattern)
    return line.split(" ", 1)[0]


def banned_on(name):
    """The addresses the node's fail2ban jail holds banned."""
    status = host(name).check_output("fail2ban-client status pypi-index")
    listed = next(line for line in status.splitlines() if "Banned IP list:" in line)
    return listed.split(":", 1)[1].split()


def health_inside(name):
    script = """
import urllib.request, urllib.error
try:
    print(urllib.request.urlopen("http://127.0.0.1/health", timeout=5).status)
except urllib.error.HTTPError as error:
    print(error.code)
"""
    result = host(name).run("python3 -c %s", script)
    return int(result.stdout) if result.rc == 0 else None


def upload(workdir, project, version, dependencies=()):
    user = demo_users()[0]
    files = make_package(workdir / f"{project}-{version}", project, version, dependencies)
    result = twine_upload(URL, files, user["name"], user["password"], cert=CA)
    assert result.returncode == 0, result.stdout + result.stderr
    UPLOADED.extend(files)
    return files


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def reads(workdir):
    """The loop's page and file: a package every node has."""
    files = upload(workdir, "steady", "1.0")
    for name in REPLICAS:
        wait_listed_inside(name, files[-1].name)
    return Reads("steady", files[-1].name, files[-1].read_bytes())


def test_a_second_run_on_the_whole_cluster_changes_nothing():
    result = run_playbook("site.yml")
    assert result.returncode == 0, output(result)
    assert changed_count(result) == 0, result.stdout


def test_an_upload_through_the_balancer_is_on_every_replica_within_the_push_bound_byte_for_byte(workdir):
    files = upload(workdir, "spread", "1.0")
    uploaded = time.monotonic()

    for name in REPLICAS:
        for path in files:
            pushed(name, uploaded, lambda name=name: page_inside(name, "spread"),
                   lambda page, path=path: path.name in page, f"{path.name} listed")
            assert host(name).file(f"{PACKAGES}/{path.name}").sha256sum == hashlib.sha256(path.read_bytes()).hexdigest()
    print(f"\nlisted on both replicas {time.monotonic() - uploaded:.2f} s after twine saw it listed"
          f" (bound {PUSH_SECONDS} s)")


def test_after_a_push_the_primary_tells_monitoring_each_replica_s_last_pass_and_no_lag(workdir):
    """Read from the primary's node exporter (the push service's replication.prom): once a pass began after the
    newest build, each replica's lag is 0 and its last pass is newer than that build."""
    uploaded = time.time()
    files = upload(workdir, "measured", "1.0")
    for name in REPLICAS:
        wait_listed_inside(name, files[-1].name)

    def by_replica(samples, metric):
        return {labels: value for (name, labels), value in samples.items() if name == metric}

    def caught_up(samples):
        lags = by_replica(samples, "pypi_index_replica_lag_seconds")
        return len(lags) == len(REPLICAS) and set(lags.values()) == {0}

    samples = wait_for(lambda: metrics_from_inside(host(PRIMARY)), what="every replica's lag 0", until=caught_up, pause=1)

    built = samples[("pypi_index_pages_built_timestamp_seconds", "")]
    assert built >= uploaded
    assert set(by_replica(samples, "pypi_index_replica_last_pass_ok").values()) == {1}
    assert min(by_replica(samples, "pypi_index_replica_last_pass_timestamp_seconds").values()) >= built


def test_a_balancer_serves_its_metrics_to_itself_and_403_to_an_address_not_allowed():
    """HAProxy's own exporter sees every node in the read pool, node exporter answers through HAProxy with the
    certificate's expiry, and the client container (no monitor, not in pypi_metrics_allow) gets 403 from the
    balancer and from a node."""
    haproxy = metrics_from_inside(host(BALANCER), "haproxy")
    assert haproxy[("haproxy_backend_active_servers", 'proxy="pypi_index_read"')] == 1 + len(REPLICAS)
    node = metrics_from_inside(host(BALANCER))
    assert ("node_load1", "") in node
    # The balancer's certificate (the one clients see here) and its expiry, as monitoring reads it.
    expiry = int(x509.load_pem_x509_certificate(CA.read_bytes()).not_valid_after_utc.timestamp())
    assert node[("pypi_index_tls_certificate_expiry_timestamp_seconds", "")] == expiry

    client = host(CLIENT)
    # Its address on the clients' network (host_vars: 10.237.0.0/24), the one network the client is on.
    balancer_address = next(address for address in network_facts(BALANCER)["ansible_all_ipv4_addresses"]
                            if address.startswith("10.237.0.") and address != FLOATING)
    for path in ("haproxy", "node"):
        assert get_from_inside(client, f"http://{balancer_address}:{METRICS_PORT}/{path}/metrics") == (403, "")
    node_address = network_facts(REPLICA1)["ansible_default_ipv4"]["address"]
    assert get_from_inside(host(BALANCER), f"http://{node_address}:{METRICS_PORT}/node/metrics") == (403, "")


def test_a_replica_has_no_upload_path_and_builds_no_page():
    replica = host(REPLICA1)
    user = demo_users()[0]

    # No method but GET and HEAD is served on a replica (docs/access-policy.md).
    assert upload_from_inside(replica, "sneaky-1.0.tar.gz", (user["name"], user["password"])) == 405
    assert not replica.file(f"{PACKAGES}/sneaky-1.0.tar.gz").exists
    assert not replica.service("pypi-index-pages").is_running


def test_the_balancer_reaches_the_nodes_from_a_private_address_which_they_trust(workdir):
    """As in production: the nodes see a balancer at its address on their private network, not at the one
    of its default route; its health checks pass there, and the client's address is what the nodes log."""
    balancers = {name: network_facts(name) for name in (BALANCER, BALANCER2)}
    # The newest health check's, from either balancer.
    seen = logged_client(PRIMARY, f"GET {role_default('pypi_index_health_endpoint')} ")
    [balancer] = [facts for facts in balancers.values() if seen in facts["ansible_all_ipv4_addresses"]]
    print(f"\nbalancer: default route {balancer['ansible_default_ipv4']['address']}, seen by the nodes as {seen}")
    # Else this layout would not tell the balancer's addresses apart.
    assert seen != balancer["ansible_default_ipv4"]["address"]
    for node in (PRIMARY, *REPLICAS):
        assert wait_state(node, "UP")[0].startswith("UP"), node

    probe = f"/simple/Layout_Probe_{time.monotonic_ns()}/"
    # Redirected to its normalized name, which no index has: 404 is the expected end.
    page_text(f"{URL}{probe}", cafile=CA, missing="")
    client = logged_client(PRIMARY, f"GET {probe} ")
    assert all(client not in facts["ansible_all_ipv4_addresses"] for facts in balancers.values()), client


def test_wrong_passwords_through_the_balancer_ban_the_client_and_never_the_balancer(workdir):
    user = demo_users()[0]
    balancer = [address for name in (BALANCER, BALANCER2)
                for address in network_facts(name)["ansible_all_ipv4_addresses"]]
    probe = workdir / "banned-1.0.tar.gz"
    probe.write_bytes(b"not really a tarball")
    right, wrong = (user["name"], user["password"]), (user["name"], "a-wrong-password")
    # A name to normalize: the balancer sends it to the primary, which redirects it (403 once banned).
    to_primary = f"{URL}/simple/Ban_Probe/"
    try:
        for _ in range(role_default("pypi_index_ban_max_retry")):
            assert raw_upload_status(URL, probe, wrong, cafile=str(CA)) == 401
        wait_for(lambda: http_status(to_primary, cafile=str(CA)), what=f"{to_primary} refused (403, banned)",
                 until=lambda status: status == 403)
        banned = banned_on(PRIMARY)
        # The balancer's checks still reach the primary: UP now, not after a wait.
        assert wait_state(PRIMARY, "UP", seconds=1, backend="pypi_index_primary")[0].startswith("UP")
    finally:
        host(PRIMARY).run("fail2ban-client unban --all")
    print(f"\nbanned on the primary: {banned}; the balancers' addresses: {balancer}")
    assert len(banned) == 1 and banned[0] not in balancer, banned
    assert raw_upload_status(URL, probe, right, cafile=str(CA)) == 200
    UPLOADED.append(probe)


def test_a_stopped_replica_costs_no_read_and_is_out_within_its_checks(reads):
    with reads() as load:
        time.sleep(1)
        watch = StateWatch(REPLICA1, "DOWN")
        before = time.time()
        host(REPLICA1).run("systemctl stop apache2")
        state, seen = watch.result()
        # Timed from systemd's record of the stop (it closes the listeners at once), not from the command's
        # return, which a loaded machine delays.
        stopped = wait_for(lambda: logged(REPLICA1, "apache2", "Stopping", before),
                           what=f"{REPLICA1}'s journal recording apache2 stopping")
        time.sleep(2)
        host(REPLICA1).run("systemctl start apache2")
        assert wait_state(REPLICA1, "UP")[0].startswith("UP")
        finish(load)

    print(f"\nstopped replica: out after {seen - stopped:.2f} s (bound {OUT_SECONDS} s); {load.done} reads,"
          f" {len(load.failures)} failed")
    assert state.startswith("DOWN") and seen - stopped <= OUT_SECONDS, (state, seen - stopped)
    assert load.done >= LOAD_REQUESTS and load.failures == []


def test_a_killed_replica_costs_no_read_and_returns_only_caught_up_within_the_repair_period(reads, workdir):
    with reads() as load:
        time.sleep(1)
        watch = StateWatch(REPLICA2, "DOWN")
        before = time.time()
        docker("kill", REPLICA2)
        state, seen = watch.result()
        # Timed from docker's record of its end, not from the command's return, which a loaded machine delays.
        killed = died(REPLICA2, before)
        missed = upload(workdir, "missed", "1.0")
        docker("start", REPLICA2)
        started = time.time()
        # From its boot on, the replica is healthy only once it holds what it missed.
        wait_for(lambda: health_inside(REPLICA2), REPAIR_SECONDS + WAIT_SECONDS, f"{REPLICA2}'s /health, once booted",
                 until=lambda status: status == 200)
        assert all(listed_inside(REPLICA2, path.name) for path in missed)
        back, back_at = wait_state(REPLICA2, "UP")
        returned = back_at - started
        assert all(host(REPLICA2).file(f"{PACKAGES}/{path.name}").exists for path in missed)
        finish(load)

    print(f"\nkilled replica: out after {seen - killed:.2f} s, back {returned:.1f} s after its start;"
          f" {load.done} reads, {len(load.failures)} failed")
    assert state.startswith("DOWN") and seen - killed <= OUT_SECONDS, (state, seen - killed)
    # Its boot, then the next repair pass (at most a period away), then two
    # good checks: 10-15 s idle. A loaded 2-CPU machine boots a container
    # (systemd, sshd, Apache) much more slowly.
    assert back.startswith("UP") and returned <= REPAIR_SECONDS + 40, returned
    assert load.done >= LOAD_REQUESTS and load.failures == []


def test_maintenance_drains_a_node_and_puts_it_back_without_a_failed_request(reads):
    with reads() as load:
        out = run_playbook("maintenance.yml", {"pypi_balancer_node": REPLICA1, "pypi_balancer_node_state": "disabled"})
        assert out.returncode == 0, output(out)
        # The play returns once HAProxy holds it so (it waits itself): now, not after a wait.
        assert wait_state(REPLICA1, "MAINT", seconds=1)[0].startswith("MAINT")
        back = run_playbook("maintenance.yml", {"pypi_balancer_node": REPLICA1, "pypi_balancer_node_state": "enabled"})
        assert back.returncode == 0, output(back)
        assert wait_state(REPLICA1, "UP")[0].startswith("UP")
        finish(load)

    print(f"\nmaintenance: {load.done} reads, {len(load.failures)} failed")
    assert load.done >= LOAD_REQUESTS and load.failures == []


def test_a_replica_cut_off_from_the_primary_leaves_the_pool_within_its_lag_limit_and_returns(reads, workdir):
    """The primary's key no longer opens the replica (its SSH connection gone too), while the balancer still
    reaches it: it leaves the pool by itself, no read returns a page older than the limit, and it returns once a
    pass reaches it again."""
    home = host(REPLICA1).check_output("getent passwd pypi-replica | cut -d: -f6")
    keys = f"{home}/.ssh/authorized_keys"
    with reads() as load:
        # Timed from just before the cut: the figures err long, never short.
        cut = time.time()
        host(REPLICA1).run_expect([0], f"mv {keys} {keys}.cut")
        host(PRIMARY).run("pkill -f pypi-index-ssh")
        missed = upload(workdir, "cutoff", "1.0")
        state, seen = wait_state(REPLICA1, "DOWN", seconds=MAX_LAG + WAIT_SECONDS)
        # Out of the pool: every read through the balancer lists what the replica missed.
        project = f"{URL}/simple/cutoff/"
        fresh = [missed[-1].name in page_text(project, cafile=str(CA)) for _ in range(20)]
        log = host(PRIMARY).check_output("journalctl -u pypi-index-replicate.service --since=-3min -o cat")
        watch = StateWatch(REPLICA1, "UP", seconds=REPAIR_SECONDS + WAIT_SECONDS)
        restored = time.time()
        host(REPLICA1).run_expect([0], f"mv {keys}.cut {keys}")
        back, back_at = watch.result()
        caught_up = all(listed_inside(REPLICA1, path.name) for path in missed)
        finish(load)

    print(f"\ncut-off replica: out after {seen - cut:.1f} s (limit {MAX_LAG} s), back {back_at - restored:.1f} s"
          f" after its key; {load.done} reads, {len(load.failures)} failed")
    # Not before its limit: its last whole pass began at most a repair period
    # before the cut, less a pass that was under way at the cut (it fails),
    # which may take seconds on a loaded machine. After it: the limit, the
    # stale check (every 5 s) and the balancer's checks, 28.8 s idle (README);
    # the margin is for a loaded 2-CPU machine.
    assert state.startswith("DOWN") and MAX_LAG - REPAIR_SECONDS - 3 <= seen - cut <= MAX_LAG + 30, (state, seen - cut)
    assert all(fresh), fresh
    # The primary's log names the replica (as the inventory reaches it) and why its passes fail.
    failed = [line for line in log.splitlines() if '"ok": false' in line and f'"replica": "{REPLICA1}"' in line]
    assert failed and "Permission denied" in failed[-1], log
    # The next pass (at most a repair period away) and two good checks: 5.2 s idle (README).
    assert back.startswith("UP") and back_at - restored <= REPAIR_SECONDS + 30 and caught_up, (back, back_at - restored)
    assert load.done >= LOAD_REQUESTS and load.failures == []


def replication_log(seconds):
    return host(PRIMARY).check_output(f"journalctl -u pypi-index-replicate.service --since=-{seconds}s -o cat")


def replication_metric(name, replica):
    """A figure of the primary's replication metrics (node exporter's textfile format) for that replica."""
    text = host(PRIMARY).file("/var/lib/pypi-index-metrics/replication.prom").content_string
    sample = f'{name}{{replica="{replica}"}} '
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(sample)))


def test_a_replica_whose_disk_fills_during_a_push_lists_no_file_it_lacks_and_catches_up_once_freed(workdir):
    """The replica's package root becomes a small disk of its own (a tmpfs holding what it had), filled to the
    last block: the upload's passes to it fail, the primary's log says why, no page of the replica names the new
    files, and once space is freed the next pass brings them, whole."""
    replica = host(REPLICA2)
    used = int(replica.check_output(f"du -sk {PACKAGES} | cut -f1"))
    replica.run_expect([0], f"cp -a {PACKAGES} /tmp/held && mount -t tmpfs -o size={used + 1024}k,mode=0755,"
                            f"uid=$(stat -c %u {PACKAGES}),gid=$(stat -c %g {PACKAGES}) replica-disk {PACKAGES}"
                            f" && cp -a /tmp/held/. {PACKAGES}/ && rm -rf /tmp/held")
    # Hidden: no pass copies or deletes it.
    replica.run(f"dd if=/dev/zero of={PACKAGES}/.filler bs=4k")
    files = upload(workdir, "filled", "1.0")

    read, failed = 0, []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not failed:
        assert not any(path.name in page_inside(REPLICA2, "filled") for path in files)
        read += 1
        failed = [line for line in replication_log(60).splitlines()
                  if '"ok": false' in line and f'"replica": "{REPLICA2}"' in line and "No space left" in line]
    for _ in range(10):
        assert not any(path.name in page_inside(REPLICA2, "filled") for path in files)
        read += 1
    assert failed, replication_log(60)
    assert json.loads(failed[-1])["behind_seconds"] > 0
    assert replication_metric("pypi_index_replica_last_pass_ok", REPLICA2) == 0

    replica.run_expect([0], f"rm {PACKAGES}/.filler && mount -o remount,size=256m {PACKAGES}")
    freed = time.monotonic()
    wait_for(lambda: page_inside(REPLICA2, "filled"), REPAIR_SECONDS + WAIT_SECONDS,
             f"{REPLICA2}'s own page listing {[path.name for path in files]} once space is freed",
             until=lambda page: all(path.name in page for path in files))
    caught_up = time.monotonic() - freed
    for path in files:
        assert replica.file(f"{PACKAGES}/{path.name}").sha256sum == hashlib.sha256(path.read_bytes()).hexdigest()
    wait_for(lambda: (replication_metric("pypi_index_replica_last_pass_ok", REPLICA2),
                      replication_metric("pypi_index_replica_lag_seconds", REPLICA2)),
             what=f"{REPLICA2}'s metrics: last pass ok, no lag", until=lambda figures: figures == (1, 0))
    print(f"\nfull replica disk: {read} reads of its page listed no missing file; the primary logged:"
          f" {json.loads(failed[-1])['error'][-1]}; caught up {caught_up:.1f} s after space was freed")
    # The next pass, at most a repair period away: 7.3 s idle (README); the
    # margin is for a loaded 2-CPU machine.
    assert caught_up <= REPAIR_SECONDS + 30, caught_up


def upload_users(password):
    """The inventory's upload users, the first with this password."""
    first, *others = demo_users()
    return {"pypi_index_upload_users": [{**first, "password": password}, *others]}


# A client's reads through the floating address, run inside the client
# container: pages and a wheel in turn over one kept-alive HTTPS connection,
# every body checked. A read that fails is tried once more after a pause, as
# pip's and uv's retries do (pip: 5 tries, backing off 0, 0.5, 1, 2 s: 3.5 s
# before its fourth).
FLOATING_READS = r"""
import hashlib, http.client, json, ssl, sys, time
address, project, file_name, digest = sys.argv[1:5]
least, seconds, longest, pause = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
context = ssl.create_default_context(cafile="/tmp/ca.crt")
paths = ["/simple/%s/" % project, "/packages/%s" % file_name]
connection = None

def get(path):
    global connection
    try:
        if connection is None:
            connection = http.client.HTTPSConnection(address, timeout=10, context=context)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as error:
        connection = None
        return repr(error)
    if response.status != 200:
        return str(response.status)
    good = file_name.encode() in body if path.startswith("/simple/") else hashlib.sha256(body).hexdigest() == digest
    return None if good else "a wrong body"

print("started", flush=True)
started = time.monotonic()
reads, first_tries, failures = 0, [], []
while time.monotonic() - started < longest and (reads < least or time.monotonic() - started < seconds):
    path = paths[reads % 2]
    error = get(path)
    if error:
        first_tries.append("%.2f %s: %s" % (time.time(), path, error))
        time.sleep(pause)
        error = get(path)
        if error:
            failures.append("%s: %s" % (path, error))
    reads += 1
print(json.dumps({"reads": reads, "first_tries": first_tries, "failures": failures}))
"""


def exec_output(name, *argv):
    """What a command run in the container printed; "" when it is not running (killed, still booting)."""
    return subprocess.run(["docker", "exec", name, *argv], capture_output=True, text=True, check=False,
                          timeout=300).stdout


def holders():
    """The running balancers that hold the floating address now."""
    return [name for name in (BALANCER, BALANCER2)
            if f" {FLOATING}/" in exec_output(name, "ip", "-o", "-4", "addr", "show")]


def logged(name, unit, pattern, after):
    """When the unit's journal on that host first logged a line holding the pattern after that time (the
    journal's clock: the host's, which every container shares), or None."""
    found = exec_output(name, "journalctl", "-u", unit, "-o", "short-unix", "--no-pager", "--grep", pattern)
    times = [float(line.split()[0]) for line in found.splitlines() if line[:1].isdigit()]
    return next((when for when in times if when > after), None)


def took_over(name, after):
    """When the balancer's keepalived took the address after that time, or None."""
    return logged(name, "keepalived", "Entering MASTER STATE", after)


def died(name, after):
    """When the container stopped, after that time, as docker recorded it (the host's clock)."""
    def finished():
        text = docker("inspect", "--format", "{{.State.FinishedAt}}", name).strip()
        return datetime.datetime.fromisoformat(text).timestamp()

    return wait_for(finished, what=f"docker's record of {name} stopping", until=lambda when: when > after)


def in_client(*argv):
    return subprocess.Popen(["docker", "exec", CLIENT, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_the_balancer_that_holds_the_floating_address_killed_costs_no_retried_read_and_an_install(workdir):
    """From a client on the clients' network: the balancer holding the address is killed under a read loop and
    a pip install; the other takes the address within MOVE_SECONDS, and the first, back, takes nothing."""
    [holder] = wait_for(holders, what="one balancer holding the floating address",
                        until=lambda held: len(held) == 1)
    other = BALANCER2 if holder == BALANCER else BALANCER
    dependencies = [f"floatingdep{n}" for n in range(1, 6)]
    for name in dependencies:
        upload(workdir, name, "1.0")
    wheel = next(path for path in upload(workdir, "floatingapp", "1.0", dependencies) if path.suffix == ".whl")
    # The client's CA and pip, this machine's (the client is Debian's bare python3).
    docker("cp", str(CA), f"{CLIENT}:/tmp/ca.crt")
    docker("exec", CLIENT, "mkdir", "-p", "/opt/pip")
    docker("cp", str(Path(pip.__file__).parent), f"{CLIENT}:/opt/pip/")

    loop = in_client("python3", "-c", FLOATING_READS, FLOATING, "floatingapp", wheel.name,
                     hashlib.sha256(wheel.read_bytes()).hexdigest(), str(LOAD_REQUESTS), "15", "120",
                     str(RETRY_PAUSE))
    assert loop.stdout.readline().strip() == "started"
    time.sleep(2)
    before = time.time()
    docker("kill", holder)
    # Timed from docker's record of its end, not from the command's return, which a loaded machine delays:
    # keepalived's own timing (three missed adverts, 0.5 s apart) is what the figure shows.
    killed = died(holder, before)
    install = in_client("env", "PYTHONPATH=/opt/pip", "python3", "-m", "pip", "install", "--no-cache-dir",
                        "--disable-pip-version-check", "--target", "/tmp/floating-app", "--cert", "/tmp/ca.crt",
                        "--index-url", f"https://{FLOATING}/simple/", "floatingapp")
    moved = wait_for(lambda: took_over(other, before), what=f"{other}'s keepalived entering MASTER STATE")
    # It logs the state, then adds the address.
    wait_for(holders, what=f"{other} alone holding the floating address", until=lambda held: held == [other])
    installed, _ = install.communicate(timeout=120)
    result = json.loads(loop.communicate(timeout=180)[0].splitlines()[-1])

    print(f"\nfloating address: moved {moved - killed:.2f} s after the kill; {result['reads']} reads,"
          f" {len(result['first_tries'])} failed first tries, {len(result['failures'])} failed after one retry")
    assert moved - killed <= MOVE_SECONDS, moved - killed
    assert result["reads"] >= LOAD_REQUESTS and result["failures"] == [], result
    assert install.returncode == 0, installed
    ran = docker("exec", CLIENT, "env", "PYTHONPATH=/tmp/floating-app", "python3", "-c",
                 "import floatingapp, floatingdep5; floatingapp.hello_world()")
    assert ran == "hello world\n"

    # Back: it joins as a backup and takes nothing from the healthy holder.
    docker("start", holder)
    # Its journal, once its systemd answers again.
    wait_for(lambda: exec_output(holder, "journalctl", "-u", "keepalived", "-b", "--no-pager"),
             what=f"{holder}'s keepalived entering BACKUP STATE",
             until=lambda journal: "Entering BACKUP STATE" in journal)
    watched = time.monotonic()
    while time.monotonic() - watched < 10:
        assert holders() == [other]
        time.sleep(0.5)
    # The published port's balancer serves the next tests again.
    wait_for(lambda: http_status(f"{URL}/simple/", cafile=str(CA)), what=f"{URL}/simple/ answering 200",
             until=lambda status: status == 200)


def test_upload_passwords_rotate_on_the_cluster_inventory(workdir):
    user = demo_users()[0]
    old, new = user["password"], user["password"] + "-rotated"
    rotated = run_playbook("rotate-upload-passwords.yml", upload_users(new))
    try:
        assert rotated.returncode == 0, output(rotated)
        refused, accepted = workdir / "rotated-1.0.tar.gz", workdir / "rotated-1.1.tar.gz"
        for path in (refused, accepted):
            path.write_bytes(b"not really a tarball")
        assert raw_upload_status(URL, refused, (user["name"], old), cafile=str(CA)) == 401
        assert raw_upload_status(URL, accepted, (user["name"], new), cafile=str(CA)) == 200
        UPLOADED.append(accepted)
    finally:
        back = run_playbook("rotate-upload-passwords.yml")
    assert back.returncode == 0, output(back)
    assert not host(PRIMARY).file(f"{PACKAGES}/{refused.name}").exists


def test_a_release_is_yanked_and_removed_on_the_primary_only_and_every_replica_follows(workdir):
    files = upload(workdir, "retired", "1.0")
    for path in files:
        UPLOADED.remove(path)
    release = {"pypi_index_release_project": "retired", "pypi_index_release_version": "1.0"}
    for name in REPLICAS:
        wait_listed_inside(name, files[-1].name)

    yanked = run_playbook("yank.yml", {**release, "pypi_index_release_yank_reason": "Superseded"})
    assert yanked.returncode == 0, output(yanked)
    changed = time.monotonic()
    for name in REPLICAS:
        pushed(name, changed, lambda name=name: page_inside(name, "retired"),
               lambda page: 'data-yanked="Superseded"' in page, "the yank")

    removed = run_playbook("remove-release.yml", release)
    assert removed.returncode == 0, output(removed)
    changed = time.monotonic()
    for name in (PRIMARY, *REPLICAS):
        pushed(name, changed, lambda name=name: page_inside(name, "retired"),
               lambda page: not any(path.name in page for path in files), "the removal")
        assert not any(host(name).file(f"{PACKAGES}/{path.name}").exists for path in files), name
    # The primary's audit trail: the upload through the balancer, with the client's address, then the operations.
    audit = [json.loads(line) for line in host(PRIMARY).check_output("cat /var/log/pypi-index/audit.log").splitlines()]
    events = [(event["event"], event["file"]) for event in audit if event["file"].startswith("retired-1.0")]
    assert sorted(events) == sorted((kind, path.name) for kind in ("upload", "yank", "remove") for path in files)
    balancer = network_facts(BALANCER)["ansible_all_ipv4_addresses"]
    assert all(event["client"] not in balancer for event in audit if event["event"] == "upload"), audit


def test_backup_on_the_cluster_inventory_holds_every_package_of_the_primary_only():
    result = run_playbook("backup.yml")
    assert result.returncode == 0, output(result)

    backups = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / "backups"
    assert sorted(path.name for path in backups.iterdir()) == [PRIMARY]
    newest = max((backups / PRIMARY).iterdir(), key=lambda path: path.stat().st_mtime)
    listed = dict(reversed(line.split("  ", 1)) for line in (newest / "FILES.sha256").read_text().splitlines())
    for path in UPLOADED:
        assert listed[f"{PACKAGES.lstrip('/')}/{path.name}"] == hashlib.sha256(path.read_bytes()).hexdigest()


# The newest change time of the replica's package files and pages (its
# in-sync mark, rewritten by every pass, aside).
NEWEST_WRITE = "find {} -type f ! -name '.*' -printf '%C@\\n' | sort -n | tail -1"


def test_an_added_replica_is_provisioned_caught_up_and_only_then_in_the_pool(tmp_path):
    added = tmp_path / "added.yml"
    added.write_text(yaml.safe_dump({"pypi_servers": {"hosts": {NEW_REPLICA: {}}},
                                     "pypi_replicas": {"hosts": {NEW_REPLICA: {}}}}))
    INVENTORIES.append(added)
    result = run_playbook("add-replica.yml", {"pypi_new_replica": NEW_REPLICA}, inventories=INVENTORIES)
    assert result.returncode == 0, output(result)

    # The play returns once HAProxy sends it reads (it waits itself): UP now, not after a wait.
    assert wait_state(NEW_REPLICA, "UP", seconds=1)[0].startswith("UP")
    replica = host(NEW_REPLICA)
    written = float(replica.check_output(NEWEST_WRITE.format(f"{PACKAGES} {PAGES}")))
    named = host(BALANCER).file("/etc/haproxy/haproxy.cfg").mtime.timestamp()
    print(f"\nadded replica: its last file written {named - written:.2f} s before the balancer named it")
    assert written < named
    for path in UPLOADED:
        assert listed_inside(NEW_REPLICA, path.name), path.name

    log = "/var/log/apache2/pypi-index-access.log"
    before = int(replica.check_output("grep -c 'GET /simple/steady/' %s || true", log))
    for _ in range(8):
        assert "steady" in page_text(f"{URL}/simple/steady/", cafile=CA)
    assert int(replica.check_output("grep -c 'GET /simple/steady/' %s || true", log)) > before


def test_the_primary_lost_reads_go_on_uploads_get_503_and_a_promoted_replica_takes_them(reads, workdir):
    user = demo_users()[0]
    with reads() as load:
        time.sleep(1)
        docker("stop", PRIMARY)
        assert wait_state(PRIMARY, "DOWN", backend="pypi_index_primary")[0].startswith("DOWN")
        refused = workdir / "refused-1.0.tar.gz"
        refused.write_bytes(b"not really a tarball")
        asked = time.monotonic()
        status = raw_upload_status(URL, refused, (user["name"], user["password"]), cafile=str(CA))
        answered = time.monotonic() - asked
        finish(load)

    print(f"\nprimary lost: upload answered {status} in {answered:.3f} s; {load.done} reads,"
          f" {len(load.failures)} failed")
    assert load.done >= LOAD_REQUESTS and load.failures == []
    # HAProxy answers at once for a backend with no server up: well under 1 s
    # idle. The bound leaves room for a loaded 2-CPU machine (the TLS
    # handshake, and the read loop sharing this process), and is still far
    # under an upload held for a connect timeout and retries, or the upload
    # timeout (300 s).
    assert status == 503 and answered <= 5, (status, answered)

    promoted = run_playbook("promote.yml", {"pypi_index_primary": REPLICA1}, limit=f"all:!{PRIMARY}",
                            inventories=INVENTORIES)
    assert promoted.returncode == 0, output(promoted)

    upload(workdir, "late", "1.0")
    for path in UPLOADED:
        assert path.name in page_text(f"{URL}/simple/{path.name.split('-')[0]}/", cafile=CA), path.name
        for name in (REPLICA2, NEW_REPLICA):
            wait_listed_inside(name, path.name)
