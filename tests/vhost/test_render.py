"""The vhost renders byte for byte as in expected/ for each test inventory.

Each inventory (a Molecule scenario's platforms and host_vars with the local
group_vars, as Molecule builds it, or one of inventories/) is rendered by
render.yml with ansible-playbook on the controller, from fixed facts: no
host is reached. A template change meant to change the
output rewrites expected/ with PYPI_INDEX_UPDATE_EXPECTED=1, and the commit
shows the difference.
"""
import difflib
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
EXPECTED = HERE / "expected"
# The documented demo Vault password of inventories/prod's example.
DEMO_VAULT_PASSWORD = "demo-vault-password"

INVENTORIES = sorted(
    [("molecule-" + path.parent.name, path.parent) for path in PROJECT.glob("molecule/*/molecule.yml")]
    + [("inventory-" + path.name, path) for path in PROJECT.glob("inventories/*") if path.is_dir()]
)


def molecule_inventory(scenario: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    """The inventory Molecule builds: each platform in its groups, the
    scenario's host_vars and the local group_vars (.config/molecule)."""
    groups: dict = {}
    for platform in yaml.safe_load((scenario / "molecule.yml").read_text())["platforms"]:
        for group in platform.get("groups", []):
            groups.setdefault(group, {"hosts": {}})["hosts"][platform["name"]] = None
    into.mkdir()
    (into / "hosts.yml").write_text(yaml.safe_dump(groups))
    (into / "group_vars").symlink_to(PROJECT / "inventories/local/group_vars")
    if (scenario / "host_vars").is_dir():
        (into / "host_vars").symlink_to(scenario / "host_vars")
    return into


def host_facts(index: int, floating: str = "") -> dict:
    """The index-th host's facts: Debian, two cores, one fixed address, and the floating address of its
    inventory (pypi_keepalived_address) as the balancer that holds it would have it, which no node may trust."""
    address = f"192.0.2.{index + 10}"
    return {
        "os_family": "Debian",
        "processor_vcpus": 2,
        "default_ipv4": {"address": address},
        "all_ipv4_addresses": [address] + ([floating.split("/")[0]] if floating else []),
    }


def ansible(command: list, env: dict) -> str:
    result = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("name,source", INVENTORIES, ids=[name for name, _ in INVENTORIES])
def test_vhost_renders_as_expected(name, source, tmp_path):
    inventory = molecule_inventory(source, tmp_path / "inventory") if name.startswith("molecule-") else source
    vault_pass = tmp_path / "vault-pass"
    vault_pass.write_text(DEMO_VAULT_PASSWORD + "\n")
    env = os.environ | {"ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "ANSIBLE_VAULT_PASSWORD_FILE": str(vault_pass)}
    listed = json.loads(ansible(["ansible-inventory", "-i", str(inventory), "--list"], env))
    facts = tmp_path / "facts.json"
    hosts = sorted({host for name, group in listed.items() if name != "_meta" for host in group.get("hosts", [])})
    hostvars = listed["_meta"]["hostvars"]
    facts.write_text(json.dumps({"render_facts": {
        host: host_facts(index, hostvars.get(host, {}).get("pypi_keepalived_address", ""))
        for index, host in enumerate(hosts)}}))
    out = tmp_path / "out"
    out.mkdir()
    ansible(["ansible-playbook", "-i", str(inventory), str(HERE / "render.yml"),
             # Over any connection the inventory names: nothing leaves this machine.
             "-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}",
             "-e", f"@{facts}", "-e", f"render_out={out}"], env)

    expected = EXPECTED / name
    rendered = {path.name: path.read_text() for path in sorted(out.iterdir())}
    if os.environ.get("PYPI_INDEX_UPDATE_EXPECTED") == "1":
        expected.mkdir(parents=True, exist_ok=True)
        for path in expected.iterdir():
            path.unlink()
        for file_name, text in rendered.items():
            (expected / file_name).write_text(text)
    assert rendered, f"{name}: no host of pypi_servers rendered"
    wanted = {path.name: path.read_text() for path in sorted(expected.iterdir())}
    assert sorted(rendered) == sorted(wanted)
    for file_name, text in rendered.items():
        diff = "".join(difflib.unified_diff(wanted[file_name].splitlines(keepends=True), text.splitlines(keepends=True),
                                            f"expected/{name}/{file_name}", "rendered"))
        assert not diff, diff
