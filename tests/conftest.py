"""Session-wide setup: Prefect in a temporary home, one test server for the whole run."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
_HOME = tempfile.mkdtemp(prefix="emucamp-prefect-home-")


def pytest_configure(config: pytest.Config) -> None:
    # Set before anything imports prefect: its settings are read once, at import.
    os.environ["PREFECT_HOME"] = _HOME
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["DASK_LOGGING__DISTRIBUTED"] = "error"


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect server for the whole session; yields its API URL."""
    from prefect.settings import get_current_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        url = get_current_settings().api.url
        assert url
        yield url


@pytest.fixture
def sims_dir() -> Path:
    """Folder of the tests' own cheap simulators (``campaign_sims.py``, ``campaign_cmd.py``)."""
    return TESTS / "sims"
