"""Run the project's playbooks against the Molecule instance, as an operator would."""

import json
import os
import subprocess
import tempfile

from pypi_client import PROJECT_DIR


def run_playbook(name, extra_vars=None, verbose=False, limit=None, inventories=()):
    """ansible-playbook playbooks/NAME against Molecule's inventory (plus any given); returns the completed process.

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
    argv = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(PROJECT_DIR / "playbooks" / name)]
    for inventory in inventories:
        argv += ["-i", str(inventory)]
    if limit:
        argv += ["--limit", limit]
    if verbose:
        argv.append("-v")
    with tempfile.NamedTemporaryFile("w", suffix=".json") as vars_file:
        json.dump(extra_vars or {}, vars_file)
        vars_file.flush()
        argv += ["-e", f"@{vars_file.name}"]
        return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def changed_count(result):
    """The 'changed=' figure of the play recap (summed over hosts)."""
    return sum(int(word.split("=")[1]) for word in result.stdout.split() if word.startswith("changed="))


def output(result):
    return result.stdout + result.stderr
