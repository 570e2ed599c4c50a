"""The sandbox's simulated kubelet on the real control plane (skipped without its binaries).

The real controller manager makes the ReplicaSets and Pods, the real scheduler binds them to the
kubelet's own Node (the namespace is pinned to it), the real EndpointSlice controller lists the ready
ones; the kubelet runs a model-server process per pod and reports its status, and the data plane routes
by EndpointSlices through the kubelet's pod IP -> loopback port map.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from modelrollout.kube.api import DEPLOYMENTS, JOBS, NAMESPACES, SERVICES, KubeApi
from modelrollout_devkit.sandbox import procs
from modelrollout_devkit.sandbox.control_plane import NODE_SELECTOR_ANNOTATION
from modelrollout_devkit.sandbox.dataplane import POD_HEADER, DataPlane
from modelrollout_devkit.sandbox.kube import ENDPOINTSLICES, PODS
from modelrollout_devkit.sandbox.kubelet import POD_RANGE, SandboxKubelet
from modelrollout_devkit.sandbox.registry import PodRegistry
from modelrollout_devkit.sandbox.workloads import SimulatorOptions
from tests.sandbox.conftest import deployment, service, wait_until
from tests.support.control_plane import RealControlPlane

pytestmark = pytest.mark.timeout(180)


@dataclass
class Node:
    api: KubeApi
    kubelet: SandboxKubelet
    registry: PodRegistry
    dataplane: DataPlane
    namespace: str

    async def pods(self, selector: str) -> list[dict[str, Any]]:
        return await self.api.list(PODS, self.namespace, label_selector=selector)

    async def wait_for(self, what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
        return await wait_until(what, probe, timeout)


@pytest.fixture
async def node(real_control_plane: RealControlPlane, sandbox_workdir: Path) -> AsyncIterator[Node]:
    kubeconfig = str(real_control_plane.admin_kubeconfig)
    namespace = f"kubelet-{uuid.uuid4().hex[:6]}"
    node_name = f"kubelet-test-{uuid.uuid4().hex[:6]}"
    api = await KubeApi.connect(kubeconfig)
    annotations = {NODE_SELECTOR_ANNOTATION: f"kubernetes.io/hostname={node_name}"}
    await api.create(NAMESPACES, None, {"metadata": {"name": namespace, "annotations": annotations}})
    registry = PodRegistry()
    options = SimulatorOptions(backoff_base=0.5, backoff_cap=2.0, drain_delay=0.05, termination_grace=3.0)
    kubelet = SandboxKubelet(kubeconfig, registry, sandbox_workdir, options, node=node_name, namespaces=(namespace,))
    await kubelet.start()
    dataplane = DataPlane(kubeconfig, registry, port=0, seed=1, endpoint_slices=True)
    await dataplane.start()
    try:
        await kubelet.wait_cache()
        yield Node(api, kubelet, registry, dataplane, namespace)
    finally:
        await api.delete(NAMESPACES, None, namespace)
        await dataplane.stop()
        await kubelet.stop()
        await api.close()


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    return ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]


def _condition(pod: dict[str, Any], kind: str) -> str | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


async def test_pods_run_as_processes_on_pod_ips_and_the_dataplane_routes_by_endpointslices(node: Node) -> None:
    await node.api.create(DEPLOYMENTS, node.namespace, deployment("scorer-a", "1.0.0", 2))
    await node.api.create(SERVICES, node.namespace, service("scorer"))
    selector = "modelrollout.io/revision=scorer-a"

    async def ready_pods() -> list[dict[str, Any]]:
        pods = await node.pods(selector)
        return pods if len(pods) == 2 and all(_condition(p, "Ready") == "True" for p in pods) else []

    pods = await node.wait_for("2 Ready pods", ready_pods)
    for pod in pods:
        status = pod["status"]
        assert pod["spec"]["nodeName"] == node.kubelet.node  # bound by the real scheduler
        assert status["phase"] == "Running"
        assert _condition(pod, "ContainersReady") == "True"
        assert _container_status(pod)["ready"] is True and _container_status(pod)["restartCount"] == 0
        ip = status["podIP"]
        assert status["podIPs"] == [{"ip": ip}]
        assert ipaddress.ip_address(ip) in POD_RANGE
        mapped = node.registry.by_ip(ip)
        assert mapped is not None and mapped.name == pod["metadata"]["name"]
        assert mapped.host == "127.0.0.1" and mapped.pid is not None  # the process listens on loopback only

    async def sliced() -> set[str]:
        slices = await node.api.list(ENDPOINTSLICES, node.namespace, label_selector="kubernetes.io/service-name=scorer")
        return {
            address
            for item in slices
            for endpoint in item.get("endpoints") or []
            if (endpoint.get("conditions") or {}).get("ready")
            for address in endpoint.get("addresses") or []
        }

    ips = {pod["status"]["podIP"] for pod in pods}
    await node.wait_for("the EndpointSlice controller to list both pod IPs", _equal_later(sliced, ips))
    answered: set[str] = set()
    async with aiohttp.ClientSession() as session:
        for _ in range(30):
            async with session.get(f"{node.dataplane.url}/{node.namespace}/scorer/ready") as answer:
                assert answer.status == 200, await answer.text()
                answered.add(answer.headers[POD_HEADER])
    assert answered == {pod["metadata"]["name"] for pod in pods}


def _equal_later(probe: Callable[[], Any], wanted: set[str]) -> Callable[[], Any]:
    async def check() -> bool:
        return bool(await probe() == wanted)

    return check


async def test_crash_looping_pod_restarts_with_crashloopbackoff_in_its_status(node: Node) -> None:
    await node.api.create(
        DEPLOYMENTS, node.namespace, deployment("crash-a", "2.0.0-crash", 1, FAULT_CRASH_ON_START="1")
    )
    seen_backoff: list[dict[str, Any]] = []

    async def restarted_twice() -> bool:
        pods = await node.pods("modelrollout.io/revision=crash-a")
        if not pods:
            return False
        container = _container_status(pods[0])
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            seen_backoff.append(container)
        assert _condition(pods[0], "Ready") != "True", "a crashing pod is never Ready"
        return bool(seen_backoff) and int(container.get("restartCount") or 0) >= 2

    await node.wait_for("restartCount 2 and CrashLoopBackOff", restarted_twice, timeout=90)
    backoff = seen_backoff[-1]
    assert backoff["ready"] is False
    assert "back-off" in backoff["state"]["waiting"]["message"]
    assert backoff["lastState"]["terminated"]["exitCode"] != 0
    pod = (await node.pods("modelrollout.io/revision=crash-a"))[0]
    assert pod["status"]["phase"] == "Running"  # as a kubelet reports a crash-looping pod
    found = await node.api.get(DEPLOYMENTS, node.namespace, "crash-a")
    assert found is not None and not (found.get("status") or {}).get("readyReplicas")


async def test_pod_whose_readiness_probe_never_passes_runs_but_is_never_ready(node: Node) -> None:
    never = deployment("never-a", "1.0.0", 1)
    never["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/no-such-readiness-path", "port": 8080}
    }
    await node.api.create(DEPLOYMENTS, node.namespace, never)

    async def running() -> dict[str, Any] | None:
        pods = await node.pods("modelrollout.io/revision=never-a")
        return pods[0] if pods and (pods[0].get("status") or {}).get("phase") == "Running" else None

    pod = await node.wait_for("the pod Running", running)
    mapped = node.registry.by_ip(pod["status"]["podIP"])
    assert mapped is not None
    async with aiohttp.ClientSession() as session:

        async def serving() -> bool:
            try:
                async with session.get(f"http://{mapped.address}/ready") as answer:
                    return answer.status == 200
            except aiohttp.ClientError:
                return False

        # The server itself is up (its default /ready passes): only the configured probe fails.
        await node.wait_for("the model server to answer /ready", serving)
    # A window of several probe periods (0.5 s each) in which the pod must stay unready.
    until = time.monotonic() + 4 * node.kubelet.options.probe_interval + 1
    while time.monotonic() < until:
        pod = await running()
        assert pod is not None
        assert _condition(pod, "Ready") == "False" and _condition(pod, "ContainersReady") == "False"
        assert _container_status(pod)["ready"] is False and _container_status(pod)["restartCount"] == 0
        await asyncio.sleep(0.2)
    assert mapped.pid is not None and procs.pid_alive(mapped.pid)


async def test_deleted_pod_stops_its_process_and_is_removed(node: Node) -> None:
    await node.api.create(DEPLOYMENTS, node.namespace, deployment("gone-a", "1.0.0", 1))

    async def one_ready() -> dict[str, Any] | None:
        pods = await node.pods("modelrollout.io/revision=gone-a")
        return pods[0] if len(pods) == 1 and _condition(pods[0], "Ready") == "True" else None

    pod = await node.wait_for("a Ready pod", one_ready)
    name = pod["metadata"]["name"]
    mapped = node.registry.by_ip(pod["status"]["podIP"])
    assert mapped is not None and mapped.pid is not None
    pid = mapped.pid
    await node.api.delete(PODS, node.namespace, name)
    await node.wait_for("the process to stop", lambda: not procs.pid_alive(pid))
    await node.wait_for("the pod object to go", lambda: _gone(node, name))
    again = node.registry.by_ip(pod["status"]["podIP"])
    assert again is None or again.name != name  # its address went back to the pool
    # The real ReplicaSet controller replaces it, and the kubelet runs the new one.
    replacement = await node.wait_for("a replacement pod Ready", one_ready)
    assert replacement["metadata"]["name"] != name


async def _gone(node: Node, name: str) -> bool:
    return await node.api.get(PODS, node.namespace, name) is None


async def test_pods_of_namespaces_the_kubelet_does_not_own_are_left_alone(
    node: Node, real_control_plane: RealControlPlane
) -> None:
    foreign = f"not-ours-{uuid.uuid4().hex[:6]}"
    annotations = {NODE_SELECTOR_ANNOTATION: f"kubernetes.io/hostname={node.kubelet.node}"}
    await node.api.create(NAMESPACES, None, {"metadata": {"name": foreign, "annotations": annotations}})
    try:
        await node.api.create(DEPLOYMENTS, foreign, deployment("theirs", "1.0.0", 1))
        await node.api.create(DEPLOYMENTS, node.namespace, deployment("ours", "1.0.0", 1))

        async def ours_ready() -> bool:
            pods = await node.pods("modelrollout.io/revision=ours")
            return bool(pods) and _condition(pods[0], "Ready") == "True"

        await node.wait_for("our pod Ready", ours_ready)
        theirs = await node.wait_for(
            "their pod bound to our node",
            lambda: _bound(node, foreign),
        )
        assert (theirs.get("status") or {}).get("phase") == "Pending"
        assert not (theirs.get("status") or {}).get("podIP")
        assert all(pod.namespace == node.namespace for pod in node.registry.all())
    finally:
        await node.api.delete(NAMESPACES, None, foreign)


async def _bound(node: Node, namespace: str) -> dict[str, Any] | None:
    pods = await node.api.list(PODS, namespace)
    return pods[0] if pods and (pods[0].get("spec") or {}).get("nodeName") == node.kubelet.node else None


async def test_a_jobs_pod_runs_to_completion_with_its_termination_message(node: Node) -> None:
    """The real Job controller makes the pod; the kubelet runs it with the container's args (the model
    server's --evaluate), reports it Succeeded with the termination message, and the Job completes."""
    job = {
        "metadata": {"name": "evaluate"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "evaluate",
                            "image": "reference-model-server",
                            "args": ["--evaluate"],
                            "env": [{"name": "MODEL_URI", "value": "sandbox://drifted"}],
                        }
                    ],
                }
            },
        },
    }
    await node.api.create(JOBS, node.namespace, job)

    async def complete() -> dict[str, Any] | None:
        found = await node.api.get(JOBS, node.namespace, "evaluate")
        conditions = ((found or {}).get("status") or {}).get("conditions") or []
        return found if any(c["type"] == "Complete" and c["status"] == "True" for c in conditions) else None

    await node.wait_for("the Job to complete", complete, timeout=90)
    [pod] = await node.pods("batch.kubernetes.io/job-name=evaluate")
    assert pod["status"]["phase"] == "Succeeded"
    terminated = _container_status(pod)["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    value = json.loads(terminated["message"])["value"]
    assert 0.5 < value < 0.9  # the drifted model's accuracy on the evaluation set
