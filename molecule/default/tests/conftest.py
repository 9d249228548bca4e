import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))

from pypi_client import Index  # noqa: E402


@pytest.fixture(scope="module")
def index(host):
    """The index of the host under test (testinfra runs each module once per host)."""
    return Index(host)
