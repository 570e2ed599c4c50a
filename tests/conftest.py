"""One real Prometheus and one real control plane for the whole test session (see tests/support/)."""

from __future__ import annotations

import os

import pytest

from tests.support.deadline import MAX_SLOWNESS

pytest_plugins = ["tests.support.prometheus", "tests.support.control_plane"]

# pytest-timeout only catches a test that hangs. The waits inside a test have their own deadlines,
# which stretch with the machine's load (tests/support/deadline.py) up to MAX_SLOWNESS times; a
# per-test limit written for an idle machine would cut them short, so it stretches as far.
TIMEOUT_FACTOR = float(os.environ.get("MODELROLLOUT_TEST_TIMEOUT_FACTOR", MAX_SLOWNESS / 2))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TIMEOUT_FACTOR == 1.0:
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        seconds = float(marker.args[0]) if marker and marker.args else default
        if seconds > 0:
            item.add_marker(pytest.mark.timeout(seconds * TIMEOUT_FACTOR), append=False)
