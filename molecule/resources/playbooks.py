"""Run the project's playbooks against the Molecule instance, as an operator would."""

import json
import os
import subprocess
import tempfile

from pypi_client import PROJECT_DIR


def run_playbook(name, extra_vars=None, verbose=False, limit=None, inventories=(), check=False):
    """ansible-playbook playbooks/NAME against Molecule's inventory (plus any given); returns the completed process.

    The inventory is passed as its directory, as operators pass inventories/prod:
    the client files and backups the roles write there must not be read as inventory.

    Extra vars travel in a file, as `-e @vars.json`, the way secrets from a
    Vault would: never on the command line.
    """
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(PROJECT_DIR / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(PROJECT_DIR / "roles"),
        "ANSIBLE_FORCE_COLOR": "false",
        "ANSIBLE_NOCOLOR": "true",
    }
    inventory_dir = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    argv = ["ansible-playbook", "-i", inventory_dir, str(PROJECT_DIR / "playbooks" / name)]
    for inventory in inventories:
        argv += ["-i", str(inventory)]
    if limit:
        argv += ["--limit", limit]
    if verbose:
        argv.append("-v")
    if check:
        argv.append("--check")
    with tempfile.NamedTemporaryFile("w", suffix=".json") as vars_file:
        json.dump(extra_vars or {}, vars_file)
        vars_file.flush()
        argv += ["-e", f"@{vars_file.name}"]
        # A playbook that hangs (a host that stopped answering) raises
        # TimeoutExpired instead of holding the suite.
        return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=1200)


def changed_count(result):
    """The 'changed=' figure of the play recap (summed over hosts)."""
    return sum(int(word.split("=")[1]) for word in result.stdout.split() if word.startswith("changed="))


def output(result):
    return result.stdout + result.stderr
