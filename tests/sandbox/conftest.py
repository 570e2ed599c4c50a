"""Fixtures of the sandbox runtime tests: an emulator, and the simulator and data plane on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelrollout.kube.api import DEPLOYMENTS, SERVICES, KubeApi
from modelrollout_devkit.emulator.server import EmulatorServer
from modelrollout_devkit.sandbox.dataplane import DataPlane
from modelrollout_devkit.sandbox.registry import PodRegistry
from modelrollout_devkit.sandbox.workloads import SimulatorOptions, WorkloadSimulator

ROLLOUT_LABEL = "modelrollout.io/rollout"
REVISION_LABEL = "modelrollout.io/revision"
VERSION_LABEL = "modelrollout.io/version"


def deployment(name: str, version: str, replicas: int, *, rollout: str = "scorer", **env: str) -> dict[str, Any]:
    """A Deployment shaped as the operator makes them (labels, selector, env)."""
    labels = {ROLLOUT_LABEL: rollout, REVISION_LABEL: name, VERSION_LABEL: version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "modelrollout", **labels}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {ROLLOUT_LABEL: rollout, REVISION_LABEL: name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "reference-model-server",
                            "env": [{"name": "MODEL_VERSION", "value": version}]
                            + [{"name": k, "value": v} for k, v in env.items()],
                        }
                    ]
                },
            },
        },
    }


def service(name: str, rollout: str = "scorer") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {ROLLOUT_LABEL: rollout}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


async def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll ``probe`` (sync or async) until it returns something truthy; fail naming what was awaited."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = probe()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")


@dataclass
class Runtime:
    emulator: EmulatorServer
    api: KubeApi
    registry: PodRegistry
    simulator: WorkloadSimulator
    dataplane: DataPlane
    namespace: str = "default"

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        resource = DEPLOYMENTS if obj["kind"] == "Deployment" else SERVICES
        return await self.api.create(resource, self.namespace, obj)

    async def scale(self, name: str, replicas: int) -> None:
        await self.api.merge_patch(DEPLOYMENTS, self.namespace, name, {"spec": {"replicas": replicas}})

    async def status(self, name: str) -> dict[str, Any]:
        found = await self.api.get(DEPLOYMENTS, self.namespace, name)
        assert found is not None
        return dict(found.get("status") or {})

    async def wait_for(self, what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
        return await wait_until(what, probe, timeout, interval=0.1)


@pytest.fixture(scope="session")
def sandbox_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the tests, so that the model cache is warmed once per session."""
    return tmp_path_factory.mktemp("sandbox-runtime")


@pytest.fixture
async def runtime(sandbox_workdir: Path, tmp_path: Path) -> AsyncIterator[Runtime]:
    options = SimulatorOptions(backoff_base=0.5, backoff_cap=4.0, drain_delay=0.05, termination_grace=3.0)
    async with EmulatorServer() as emulator:
        kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
        registry = PodRegistry()
        simulator = WorkloadSimulator(kubeconfig, registry, sandbox_workdir, options)
        await simulator.start()
        dataplane = DataPlane(str(kubeconfig), registry, port=0, seed=1)
        await dataplane.start()
        api = await KubeApi.connect(str(kubeconfig))
        try:
            await simulator.wait_cache()
            yield Runtime(emulator, api, registry, simulator, dataplane)
        finally:
            await dataplane.stop()
            await simulator.stop()
            await api.close()
