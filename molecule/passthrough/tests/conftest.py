"""Fixtures shared by the scenario's modules."""

import pytest
from stand_in import upstream_testinfra_host


@pytest.fixture(scope="session")
def upstream_host():
    """The stand-in upstream's testinfra host."""
    return upstream_testinfra_host()
