"""One sandbox (emulator, operator, workload simulator, data plane, real Prometheus) per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelrollout.sandbox.supervisor import Sandbox
from tests.support.cluster import external_kubeconfig
from tests.support.prometheus import prometheus_binary


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The sandbox on its own emulator, or on the API server MODELROLLOUT_TEST_KUBECONFIG names
    (a node-less control plane: the sandbox's simulator plays the Deployment controller there)."""
    prometheus_binary()  # skip (or fail, with MODELROLLOUT_REQUIRE_PROMETHEUS=1) without Prometheus
    directory: Path = tmp_path_factory.mktemp("e2e-sandbox")
    given = external_kubeconfig()
    with Sandbox(
        directory,
        kubeconfig=Path(given) if given else None,
        dataplane_port=0,
        prometheus_port=0,
        api_port=0,
        scrape_interval=1.0,
    ) as running:
        print(f"\nsandbox ready in {running.ready_after_s:.1f}s ({directory})")
        yield running

