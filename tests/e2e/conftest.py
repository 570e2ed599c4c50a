"""One sandbox (API server, operator, kubelet or simulator, data plane, real Prometheus) per module.

On the session's real control plane (fixture ``control_plane``: KUBEBUILDER_ASSETS) the sandbox plays
only the kubelet, on a Node of its own, and its operator runs as the Helm chart's ServiceAccount (RBAC
enforced) watching only the sandbox's namespaces (``e2e-<token>-*``); else it runs on its own emulator,
or on the API server MODELROLLOUT_TEST_KUBECONFIG names.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelrollout_devkit.sandbox.supervisor import Sandbox
from tests.support.cluster import Cluster, external_kubeconfig, release_namespace
from tests.support.control_plane import RealControlPlane
from tests.support.prometheus import prometheus_binary


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, control_plane: RealControlPlane | None) -> Iterator[Sandbox]:
    prometheus_binary()  # skip (or fail, with MODELROLLOUT_REQUIRE_PROMETHEUS=1) without Prometheus
    directory: Path = tmp_path_factory.mktemp("e2e-sandbox")
    given = external_kubeconfig()
    if control_plane is not None:
        options = {
            "kubeconfig": control_plane.admin_kubeconfig,
            "operator_kubeconfig": control_plane.operator_kubeconfig,
            "namespaces": (f"e2e-{uuid.uuid4().hex[:4]}-*",),
        }
    else:
        options = {"kubeconfig": Path(given) if given else None, "emulator": True}
    with Sandbox(directory, dataplane_port=0, prometheus_port=0, api_port=0, scrape_interval=1.0, **options) as running:
        where = "real control plane" if running.real_api else "emulator"
        print(f"\nsandbox ready in {running.ready_after_s:.1f}s on the {where} ({directory})")
        yield running


def open_namespace(sandbox: Sandbox, prefix: str) -> Cluster:
    """A fresh namespace for one test, among the ones the sandbox owns."""
    owned = sandbox.config.namespaces
    base = owned[0].rstrip("*") if owned else "e2e-"
    cluster = Cluster(sandbox.kubeconfig, f"{base}{prefix}-{uuid.uuid4().hex[:6]}", emulated=sandbox.emulated)
    metadata = {"name": cluster.namespace, "annotations": sandbox.namespace_annotations()}
    cluster.core.create_namespace({"metadata": metadata})
    return cluster


def close_namespace(sandbox: Sandbox, cluster: Cluster) -> None:
    """Leave nothing running: on a real API server the rollouts go first (the operator, still running,
    releases its finalizer), then the namespace, whose deletion takes the pods and so their processes."""
    if sandbox.real_api:
        cluster.delete_all_rollouts()
        cluster.release_finalizers()
        cluster.core.delete_namespace(cluster.namespace)
    else:
        release_namespace(cluster)
    cluster.api_client.close()
