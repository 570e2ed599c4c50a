"""The workload simulator and the data plane against the emulator, with real model-server processes."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from modelrollout.kube.api import DEPLOYMENTS
from modelrollout_devkit.sandbox import procs
from modelrollout_devkit.sandbox.dataplane import STATS_PATH, count_for
from tests.sandbox.conftest import Runtime, deployment, service


async def test_replicas_become_processes_and_status_follows_readiness(runtime: Runtime) -> None:
    await runtime.create(deployment("scorer-a", "1.0.0", 2, FAULT_STARTUP_DELAY_S="1.5"))
    pods = await runtime.wait_for("2 pods", lambda: len(runtime.registry.of_deployment("default", "scorer-a")) == 2)
    assert pods
    # The processes run but load slowly: the status must say "not ready" meanwhile, as a kubelet would.
    status = await runtime.wait_for("a first status", lambda: runtime.status("scorer-a"))
    assert status["replicas"] == 2 and status.get("readyReplicas", 0) == 0
    available = {c["type"]: c for c in status["conditions"]}["Available"]
    assert available["status"] == "False" and available["reason"] == "MinimumReplicasUnavailable"

    async def ready() -> dict[str, object] | None:
        current = await runtime.status("scorer-a")
        return current if current.get("readyReplicas") == 2 else None

    status = await runtime.wait_for("2 ready replicas", ready)
    assert status["availableReplicas"] == 2 and status["updatedReplicas"] == 2
    assert status["unavailableReplicas"] == 0 and status["observedGeneration"] == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    for pod in runtime.registry.of_deployment("default", "scorer-a"):
        assert pod.pid is not None and procs.pid_alive(pod.pid)
        async with aiohttp.ClientSession() as http, http.get(f"http://{pod.address}/ready") as answer:
            assert answer.status == 200 and (await answer.json())["version"] == "1.0.0"

    await runtime.scale("scorer-a", 3)
    await runtime.wait_for("3 ready", lambda: _ready_count(runtime, "scorer-a") == 3)
    before = {pod.name: pod.pid for pod in runtime.registry.of_deployment("default", "scorer-a")}

    await runtime.scale("scorer-a", 1)
    await runtime.wait_for("1 pod left", lambda: len(runtime.registry.of_deployment("default", "scorer-a")) == 1)
    stopped = [pid for name, pid in before.items() if name not in {p.name for p in runtime.registry.all()}]
    assert len(stopped) == 2
    await runtime.wait_for("stopped processes gone", lambda: not any(procs.pid_alive(pid) for pid in stopped if pid))

    async def scaled_status() -> bool:
        current = await runtime.status("scorer-a")
        return current.get("replicas") == 1 and current.get("readyReplicas") == 1 and current["observedGeneration"] == 3

    await runtime.wait_for("status of 1 replica", scaled_status)

    last = runtime.registry.of_deployment("default", "scorer-a")[0]
    await runtime.api.delete(DEPLOYMENTS, "default", "scorer-a")
    await runtime.wait_for("no pods", lambda: not runtime.registry.of_deployment("default", "scorer-a"))
    assert last.pid is None or not procs.pid_alive(last.pid)


def _ready_count(runtime: Runtime, name: str) -> int:
    return sum(1 for pod in runtime.registry.of_deployment("default", name) if pod.ready)


async def test_crash_looping_version_never_ready_and_backs_off(runtime: Runtime) -> None:
    await runtime.create(deployment("scorer-crash", "6.6.6", 1, FAULT_CRASH_ON_START="true", FAULT_CRASH_DELAY_S="0.1"))
    pod = (await runtime.wait_for("a pod", lambda: runtime.registry.of_deployment("default", "scorer-crash")))[0]
    started = time.monotonic()
    while time.monotonic() - started < 20 and pod.restarts < 3:
        assert not pod.ready, "a crash-looping pod must never be ready"
        await asyncio.sleep(0.05)
    assert pod.restarts >= 3
    # Back-off base 0.5 s, doubling after each crash (what waited, not wall-clock gaps: process
    # start-up time varies with the machine's load).
    assert pod.backoffs[:3] == [0.5, 1.0, 2.0]
    status = await runtime.status("scorer-crash")
    assert status.get("readyReplicas", 0) == 0 and status["unavailableReplicas"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]}["Available"] == "False"
    assert "FAULT_CRASH_ON_START" in Path(pod.log_path).read_text()


async def test_dataplane_splits_by_replica_ratio_and_counts(runtime: Runtime) -> None:
    await runtime.create(deployment("scorer-v1", "1.0.0", 3))
    await runtime.create(deployment("scorer-v2", "2.0.0", 1))
    await runtime.create(service("scorer"))
    await runtime.wait_for("4 ready endpoints", lambda: len(runtime.dataplane.endpoints("default", "scorer")) == 4)
    url = f"{runtime.dataplane.url}/default/scorer/predict"
    body = {"features": {"mean radius": 14.0, "mean texture": 19.0}}
    versions: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            async with http.post(url, json=body) as answer:
                assert answer.status == 200
                payload = await answer.json()
                assert answer.headers["X-Sandbox-Pod"].startswith(f"scorer-v{payload['version'][0]}-")
                versions[payload["version"]] = versions.get(payload["version"], 0) + 1
        # Query strings and methods reach the pod unchanged.
        async with http.get(f"{runtime.dataplane.url}/default/scorer/healthz?x=1") as answer:
            assert answer.status == 200 and (await answer.json())["status"] == "ok"
        async with http.get(runtime.dataplane.url + STATS_PATH) as answer:
            stats = await answer.json()
        async with http.get(runtime.dataplane.url + "/_dataplane/metrics") as answer:
            metrics = await answer.text()
    share = versions.get("2.0.0", 0) / 400
    # 1 of 4 ready pods: 25 %, binomial standard deviation 2.2 %; 8 % is beyond 3.5 of them.
    assert abs(share - 0.25) < 0.08, versions
    assert count_for(stats, "default", "scorer", "2.0.0") == versions["2.0.0"]
    assert count_for(stats, "default", "scorer", "1.0.0") == versions["1.0.0"] + 1  # and the /healthz
    assert stats["by_version"]["default/scorer/2.0.0"]["last_at"] <= stats["now"]
    assert (
        f'sandbox_dataplane_requests_total{{code="200",namespace="default",service="scorer",version="2.0.0"}} '
        f"{float(versions['2.0.0'])}" in metrics
    )

    # Scaled to zero: v2 gets nothing any more, at once.
    await runtime.scale("scorer-v2", 0)
    await runtime.wait_for(
        "v2 out of the endpoints", lambda: len(runtime.dataplane.endpoints("default", "scorer")) == 3
    )
    async with aiohttp.ClientSession() as http:
        for _ in range(50):
            async with http.post(url, json=body) as answer:
                assert (await answer.json())["version"] == "1.0.0"


async def test_dataplane_answers_503_without_ready_endpoints(runtime: Runtime) -> None:
    await runtime.create(service("lonely", rollout="nobody"))
    await runtime.create(deployment("slow-a", "1.0.0", 1, rollout="slow", FAULT_STARTUP_DELAY_S="30"))
    await runtime.create(service("slow", rollout="slow"))
    await runtime.wait_for("the services cached", lambda: runtime.dataplane.service_selector("default", "slow"))
    await runtime.wait_for(
        "the slow pod running", lambda: [p for p in runtime.registry.all() if p.deployment == "slow-a" and p.pid]
    )
    async with aiohttp.ClientSession() as http:
        for path, reason in [
            ("/default/lonely/predict", "no ready endpoints"),
            ("/default/slow/predict", "no ready endpoints"),  # running, but not ready
            ("/default/missing/predict", "no Service default/missing"),
        ]:
            async with http.post(runtime.dataplane.url + path, json={}) as answer:
                assert answer.status == 503
                assert reason in (await answer.json())["error"]
        async with http.get(runtime.dataplane.url + STATS_PATH) as answer:
            stats = json.loads(await answer.text())
    assert count_for(stats, "default", "slow", "none") == 1
