"""The cluster's own controllers: garbage collection, namespace termination; and fault injection."""

from __future__ import annotations

import asyncio
from typing import Any

from modelrollout_devkit.emulator import EmulatorServer
from tests.emulator.conftest import CR_PATH, Api, deployment, modelrollout

CM_PATH = "/api/v1/namespaces/default/configmaps"
DEPLOY_PATH = "/apis/apps/v1/namespaces/default/deployments"


def _owned(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {"metadata": {"name": name, "ownerReferences": [ref]}}


async def _gone(api: Api, path: str) -> bool:
    for _ in range(100):
        status, _ = await api.get(path)
        if status == 404:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_owned_objects_are_garbage_collected(crd_api: Api) -> None:
    owner = await crd_api.ok("POST", CR_PATH, modelrollout("mr"))
    deploy = deployment("web")
    deploy["metadata"]["ownerReferences"] = _owned("web", owner)["metadata"]["ownerReferences"]
    await crd_api.ok("POST", DEPLOY_PATH, deploy)
    await crd_api.ok("POST", CM_PATH, _owned("cm", owner))
    await crd_api.ok("POST", CM_PATH, {"metadata": {"name": "unrelated"}})
    await crd_api.ok("DELETE", f"{CR_PATH}/mr")
    assert await _gone(crd_api, f"{DEPLOY_PATH}/web")
    assert await _gone(crd_api, f"{CM_PATH}/cm")
    status, _ = await crd_api.get(f"{CM_PATH}/unrelated")
    assert status == 200


async def test_orphan_propagation_keeps_dependents(api: Api) -> None:
    owner = await api.ok("POST", CM_PATH, {"metadata": {"name": "owner"}})
    await api.ok("POST", CM_PATH, _owned("child", owner))
    await api.ok("DELETE", f"{CM_PATH}/owner", propagationPolicy="Orphan")
    await asyncio.sleep(0.05)
    child = await api.ok("GET", f"{CM_PATH}/child")
    assert "ownerReferences" not in child["metadata"]


async def test_foreground_deletion_waits_for_dependents(api: Api) -> None:
    owner = await api.ok("POST", CM_PATH, {"metadata": {"name": "owner"}})
    child = _owned("child", owner)
    child["metadata"]["finalizers"] = ["example.com/hold"]
    await api.ok("POST", CM_PATH, child)
    marked = await api.ok("DELETE", f"{CM_PATH}/owner", {"propagationPolicy": "Foreground"})
    assert marked["metadata"]["finalizers"] == ["foregroundDeletion"]
    await asyncio.sleep(0.05)
    assert (await api.ok("GET", f"{CM_PATH}/child"))["metadata"]["deletionTimestamp"]
    assert (await api.get(f"{CM_PATH}/owner"))[0] == 200
    await api.ok("PATCH", f"{CM_PATH}/child", {"metadata": {"finalizers": None}})
    assert await _gone(api, f"{CM_PATH}/owner")


async def test_dangling_owner_references_are_collected(api: Api) -> None:
    fake = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ghost", "uid": "no-such-uid"}}
    await api.ok("POST", CM_PATH, _owned("orphan", fake))
    assert await _gone(api, f"{CM_PATH}/orphan")


async def test_namespace_deletion_removes_its_content(api: Api) -> None:
    await api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "team"}})
    await api.ok("POST", "/api/v1/namespaces/team/configmaps", {"metadata": {"name": "cm"}})
    marked = await api.ok("DELETE", "/api/v1/namespaces/team")
    assert marked["status"]["phase"] == "Terminating"
    assert await _gone(api, "/api/v1/namespaces/team")
    status, _ = await api.get("/api/v1/namespaces/team/configmaps/cm")
    assert status == 404


async def test_fault_injection(emu: EmulatorServer, api: Api) -> None:
    rule = emu.inject_faults(429, verbs=["patch"], resources=["configmaps"], retry_after=3, limit=2)
    await api.ok("POST", CM_PATH, {"metadata": {"name": "cm"}})
    async with api.session.patch(
        f"{CM_PATH}/cm", json={"data": {"a": "b"}}, headers={"Content-Type": "application/merge-patch+json"}
    ) as response:
        assert response.status == 429 and response.headers["Retry-After"] == "3"
        assert (await response.json())["details"]["retryAfterSeconds"] == 3
    status, _ = await api.patch(f"{CM_PATH}/cm", {"data": {"a": "b"}})
    assert status == 429
    status, _ = await api.patch(f"{CM_PATH}/cm", {"data": {"a": "b"}})
    assert status == 200 and rule.injected == 2

    emu.inject_faults(500, ratio=0.5, verbs=["get"])
    statuses = [(await api.get(f"{CM_PATH}/cm"))[0] for _ in range(200)]
    assert set(statuses) == {200, 500} and 50 < statuses.count(500) < 150
    emu.clear_faults()
    emu.inject_faults(409, methods=["DELETE"])
    status, error = await api.delete(f"{CM_PATH}/cm")
    assert status == 409 and error["reason"] == "Conflict"
    emu.clear_faults()
    assert (await api.delete(f"{CM_PATH}/cm"))[0] == 200
