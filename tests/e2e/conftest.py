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
from tests.support.deadline import Deadline
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
        if running.config.namespaces:
            operator_sees_new_namespaces(running)
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


def operator_sees_new_namespaces(sandbox: Sandbox, timeout: float = 120.0) -> None:
    """Wait until a namespace created from now on reaches the operator, whose `--namespace` pattern
    makes kopf observe namespaces.

    kopf 1.45 lists namespaces once, then starts its namespace watch with a second list whose entries
    it ignores: a namespace created between the two lists (the operator's first moments) is never
    watched until it changes or the operator restarts (see docs/troubleshooting.md). So: probe
    namespaces, each with a rollout the operator refuses (weights that do not increase: it writes
    status and touches nothing else). Once one probe is seen, the first list is behind; the next
    probe created after that is seen only through the watch, and then every later namespace is.
    """
    deadline = Deadline(timeout)
    seen = 0
    attempt = 0
    while seen < 2:
        if deadline.expired():
            raise AssertionError(f"the operator saw no new namespace for {timeout:g}s; log:\n{sandbox.operator.logs()}")
        attempt += 1
        cluster = open_namespace(sandbox, f"probe{attempt}")
        try:
            spec = {
                "replicas": 1,
                "model": {"name": "probe", "version": "1"},
                "template": {"spec": {"containers": [{"name": "server", "image": "probe"}]}},
                "strategy": {"canary": {"steps": [{"setWeight": 50}, {"setWeight": 20}]}},
            }
            cluster.create_rollout("probe", spec)
            try:
                cluster.wait_for("the operator to see a probe", lambda c=cluster: c.status("probe").get("phase"), 10)
                seen += 1
            except AssertionError:
                seen = 0  # created between kopf's two lists: lost; the next one comes after them
        finally:
            close_namespace(sandbox, cluster)


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
