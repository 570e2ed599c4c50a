"""kopf, for real, against the emulator: finalizers, status patches, events, deletion; both modes."""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import kopf
import pytest

from modelrollout_devkit.emulator import ThreadedEmulator, start_in_thread
from tests.emulator.conftest import CR_PATH, GROUP, Api, modelrollout, modelrollout_crd

FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def _operator_registry(deleted: list[str]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 1
        settings.watching.client_timeout = 10
        settings.batching.exit_timeout = 0.1  # only to make the test's shutdown quick
        settings.batching.idle_timeout = 0.5

    @kopf.on.create(GROUP, "v1alpha1", "modelrollouts", registry=registry)
    def created(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        for step in range(3):
            kopf.info(body, reason="Step", message=f"step {step}")
        patch.status["phase"] = "Ready"

    @kopf.on.delete(GROUP, "v1alpha1", "modelrollouts", registry=registry)
    def removed(name: str, **_: Any) -> None:
        deleted.append(name)

    return registry


async def _eventually(check: Any, timeout: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
def threaded(tmp_path: pathlib.Path) -> Iterator[ThreadedEmulator]:
    # kopf treats every task spawned in its loop during its run as its own and waits for them at exit,
    # so the emulator gets its own thread and loop here, as a separate apiserver would.
    emulator = start_in_thread(crds=[modelrollout_crd()], kubeconfig_path=tmp_path / "kubeconfig")
    yield emulator
    emulator.stop()


@pytest.fixture
async def crd_api(threaded: ThreadedEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(base_url=threaded.url) as session:
        yield Api(session)


@pytest.mark.parametrize("clusterwide", [True, False], ids=["clusterwide", "namespaced"])
async def test_kopf_operator_lifecycle(
    clusterwide: bool, threaded: ThreadedEmulator, crd_api: Api, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    deleted: list[str] = []
    stop, ready = asyncio.Event(), asyncio.Event()
    namespaces = () if clusterwide else ("default", "team-*")  # a glob makes kopf watch namespaces too
    operator = asyncio.create_task(
        kopf.operator(
            registry=_operator_registry(deleted),
            clusterwide=clusterwide,
            namespaces=namespaces,
            standalone=True,
            stop_flag=stop,
            ready_flag=ready,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
        await crd_api.ok("POST", CR_PATH, modelrollout("mr"))

        async def processed() -> dict[str, Any] | None:
            obj = await crd_api.ok("GET", f"{CR_PATH}/mr")
            return obj if (obj.get("status") or {}).get("phase") == "Ready" else None

        obj = await _eventually(processed)
        assert FINALIZER in obj["metadata"]["finalizers"]

        async def events() -> list[dict[str, Any]]:
            listing = await crd_api.ok(
                "GET", "/api/v1/namespaces/default/events", fieldSelector="involvedObject.name=mr"
            )
            steps = [e for e in listing["items"] if e["reason"] == "Step"]
            return steps if len(steps) == 3 else []

        steps = await _eventually(events)
        assert sorted(e["message"] for e in steps) == ["step 0", "step 1", "step 2"]

        await crd_api.ok("DELETE", f"{CR_PATH}/mr")

        async def gone() -> bool:
            status, _ = await crd_api.get(f"{CR_PATH}/mr")
            return status == 404

        await _eventually(gone)
        assert deleted == ["mr"]
        history = threaded.call(lambda server: list(server.history))
        assert not [record for record in history if record.status >= 500]
    finally:
        stop.set()
        await asyncio.wait_for(operator, 10)
