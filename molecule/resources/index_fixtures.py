"""Fixtures every scenario's tests share: pytest loads this module as a plugin
(PYTEST_PLUGINS in .config/molecule/config.yml), so no conftest repeats it."""

import os

import pytest
import testinfra
from pypi_client import Index, demo_users


def group_index(group):
    """The index of the one host in an inventory group of the running scenario."""
    hosts = testinfra.get_hosts([f"ansible://{group}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}"])
    assert len(hosts) == 1, f"{group} holds {len(hosts)} hosts; these tests expect one"
    return Index(hosts[0])


@pytest.fixture(scope="module")
def index(host):
    """The index of the host under test, where testinfra runs a module once per host."""
    return Index(host)


@pytest.fixture(scope="session")
def server():
    """The index of a scenario whose pypi_servers group is one host."""
    return group_index("pypi_servers")


@pytest.fixture(scope="session")
def spare():
    """The host of the backup scenario that is only provisioned by the tests."""
    return group_index("pypi_spare")


@pytest.fixture(scope="session")
def uploader():
    """The first upload user of the local inventory: {name, password}."""
    return demo_users()[0]
