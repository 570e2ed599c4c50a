"""Fixtures of the sandbox unit tests: a warm model cache and model-server subprocesses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelrollout_devkit.sandbox.model_server import VARIANTS, load_or_train
from tests.sandbox_units.sandbox_helpers import ServerProcess

#: The servers every test module may use, started together (start-up overlaps) and shared.
SERVER_ENVS: dict[str, dict[str, str]] = {
    "baseline": {"MODEL_VERSION": "1.0.0"},
    "slow": {"MODEL_VERSION": "1.1.0-slow", "FAULT_LATENCY_MS": "150"},
    "erroring": {"MODEL_VERSION": "1.1.0-err", "FAULT_ERROR_RATE": "0.3", "FAULT_SEED": "7"},
    "nulls": {"MODEL_VERSION": "1.1.0-null", "FAULT_NULL_RATE": "0.25", "FAULT_SEED": "11"},
    "drifted": {"MODEL_VERSION": "2.0.0", "MODEL_VARIANT": "drifted"},
    "disagreeing": {"MODEL_VERSION": "1.1.0-disagree", "FAULT_DISAGREE_RATE": "0.3", "FAULT_SEED": "5"},
}


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache with both variants trained once, so that each server starts in well under a second."""
    cache = tmp_path_factory.mktemp("model-cache")
    for variant in VARIANTS:
        load_or_train(variant, cache)
    return cache


@pytest.fixture(scope="session")
def servers(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    logs = tmp_path_factory.mktemp("server-logs")
    procs = {
        name: ServerProcess({**env, "MODEL_CACHE_DIR": str(model_cache)}, logs, name)
        for name, env in SERVER_ENVS.items()
    }
    try:
        for proc in procs.values():
            proc.wait_ready()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()
