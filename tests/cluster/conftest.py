"""A real cluster (kind, via hack/kind-e2e.sh) with the operator installed by the Helm chart.

Every test here is skipped unless MODELROLLOUT_CLUSTER_KUBECONFIG names a kubeconfig; these
machines have no Docker and no real API server, so the suite runs in the kind-e2e workflow.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

KUBECONFIG = os.environ.get("MODELROLLOUT_CLUSTER_KUBECONFIG", "")
SKIP_REASON = (
    "needs a real cluster with the operator installed (hack/kind-e2e.sh); "
    "set MODELROLLOUT_CLUSTER_KUBECONFIG to its kubeconfig to run"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.cluster)
            if not KUBECONFIG:
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def api_client() -> Iterator[Any]:
    from kubernetes import client, config

    loaded = client.Configuration()
    config.load_kube_config(config_file=KUBECONFIG, client_configuration=loaded)
    with client.ApiClient(loaded) as api:
        yield api


@pytest.fixture
def namespace(api_client: Any) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards with everything the operator made in it."""
    from kubernetes import client

    name = f"mro-e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name, "labels": {"modelrollout.io/e2e": "true"}}})
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Foreground")
