"""Lists and watches: kinds, resourceVersions, selectors, pagination, and the watch stream contract."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from modelrollout_devkit.emulator import EmulatorServer
from tests.emulator.conftest import Api

CM_PATH = "/api/v1/namespaces/default/configmaps"


async def _watch(
    session: aiohttp.ClientSession, path: str, *, until: int | None = None, **params: Any
) -> tuple[aiohttp.ClientResponse, list[dict[str, Any]]]:
    """Read a watch stream until it ends, or until ``until`` events have arrived."""
    events: list[dict[str, Any]] = []
    query = {"watch": "true", **{k: str(v) for k, v in params.items()}}
    async with session.get(path, params=query) as response:
        async for line in response.content:
            if line.strip():
                events.append(json.loads(line))
            if until is not None and len(events) >= until:
                break
    return response, events


async def _make(api: Api, name: str, **labels: str) -> dict[str, Any]:
    return await api.ok("POST", CM_PATH, {"metadata": {"name": name, "labels": labels}})


async def test_list_has_kind_api_version_and_resource_version(api: Api) -> None:
    await _make(api, "a")
    last = await _make(api, "b")
    listing = await api.ok("GET", CM_PATH)
    assert listing["kind"] == "ConfigMapList" and listing["apiVersion"] == "v1"
    assert listing["metadata"]["resourceVersion"] == last["metadata"]["resourceVersion"]
    assert [item["metadata"]["name"] for item in listing["items"]] == ["a", "b"]
    deployments = await api.ok("GET", "/apis/apps/v1/deployments")
    assert deployments["kind"] == "DeploymentList" and deployments["apiVersion"] == "apps/v1"


async def test_label_selectors(api: Api) -> None:
    await _make(api, "a", app="web", tier="front")
    await _make(api, "b", app="web", tier="back")
    await _make(api, "c", app="db")
    await _make(api, "d")

    async def names(selector: str) -> list[str]:
        listing = await api.ok("GET", CM_PATH, **{"labelSelector": selector})
        return [item["metadata"]["name"] for item in listing["items"]]

    assert await names("app=web") == ["a", "b"]
    assert await names("app==web,tier!=front") == ["b"]
    assert await names("app in (web, db)") == ["a", "b", "c"]
    assert await names("app notin (web)") == ["c", "d"]
    assert await names("tier") == ["a", "b"]
    assert await names("!app") == ["d"]
    status, _ = await api.get(CM_PATH, labelSelector="app in web")
    assert status == 400


async def test_field_selectors(api: Api) -> None:
    await _make(api, "a")
    await _make(api, "b")
    await api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "other"}})
    await api.ok("POST", "/api/v1/namespaces/other/configmaps", {"metadata": {"name": "a"}})
    everywhere = await api.ok("GET", "/api/v1/configmaps", **{"fieldSelector": "metadata.name=a"})
    assert sorted(i["metadata"]["namespace"] for i in everywhere["items"]) == ["default", "other"]
    scoped = await api.ok("GET", "/api/v1/configmaps", **{"fieldSelector": "metadata.namespace=other"})
    assert [i["metadata"]["name"] for i in scoped["items"]] == ["a"]
    status, error = await api.get(CM_PATH, fieldSelector="data.x=y")
    assert status == 400 and "field label not supported" in error["message"]

    for name in ("p1", "p2"):
        await api.ok(
            "POST",
            "/api/v1/namespaces/default/events",
            {"metadata": {"generateName": "e-"}, "involvedObject": {"name": name, "namespace": "default"}},
        )
    events = await api.ok("GET", "/api/v1/namespaces/default/events", **{"fieldSelector": "involvedObject.name=p2"})
    assert [e["involvedObject"]["name"] for e in events["items"]] == ["p2"]


async def test_pagination_with_limit_and_continue(api: Api) -> None:
    for index in range(5):
        await _make(api, f"cm{index}")
    first = await api.ok("GET", CM_PATH, **{"limit": "2"})
    assert len(first["items"]) == 2 and first["metadata"]["remainingItemCount"] == 3
    second = await api.ok("GET", CM_PATH, **{"limit": "10", "continue": first["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in second["items"]] == ["cm2", "cm3", "cm4"]
    assert "continue" not in second["metadata"]


async def test_watch_without_version_replays_state_then_streams_live(emu: EmulatorServer, api: Api) -> None:
    await _make(api, "old")

    async def writer() -> None:
        await asyncio.sleep(0.1)
        await _make(api, "new")

    task = asyncio.create_task(writer())
    response, events = await _watch(api.session, CM_PATH, until=2, timeoutSeconds=5)
    await task
    assert response.headers["Content-Type"].startswith("application/json")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "old"), ("ADDED", "new")]
    assert events[0]["object"]["kind"] == "ConfigMap"


async def test_watch_from_a_version_sends_only_later_events(api: Api) -> None:
    await _make(api, "a")
    listing = await api.ok("GET", CM_PATH)
    await _make(api, "b")
    await api.ok("PATCH", f"{CM_PATH}/a", {"data": {"x": "y"}})
    await api.ok("DELETE", f"{CM_PATH}/b")
    _, events = await _watch(
        api.session, CM_PATH, until=3, resourceVersion=listing["metadata"]["resourceVersion"], timeoutSeconds=5
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(listing["metadata"]["resourceVersion"])


async def test_watch_timeout_ends_the_stream(api: Api) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    _, events = await _watch(api.session, CM_PATH, timeoutSeconds=1)
    assert events == []
    assert 0.9 < loop.time() - started < 3


async def test_too_old_version_is_410_in_stream() -> None:
    async with EmulatorServer(event_window=3) as emu, aiohttp.ClientSession(base_url=emu.url) as session:
        api = Api(session)
        first = await _make(api, "a")
        for index in range(5):
            await api.ok("PATCH", f"{CM_PATH}/a", {"data": {"n": str(index)}})
        response, events = await _watch(session, CM_PATH, resourceVersion=first["metadata"]["resourceVersion"])
        assert response.status == 200
        assert len(events) == 1 and events[0]["type"] == "ERROR"
        assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"


async def test_watch_with_a_selector_sees_objects_leave_and_enter(api: Api) -> None:
    start = await _make(api, "a", app="web")
    await api.ok("PATCH", f"{CM_PATH}/a", {"metadata": {"labels": {"app": "db"}}})
    await api.ok("PATCH", f"{CM_PATH}/a", {"metadata": {"labels": {"app": "web"}}})
    _, events = await _watch(
        api.session,
        CM_PATH,
        until=2,
        labelSelector="app=web",
        resourceVersion=start["metadata"]["resourceVersion"],
        timeoutSeconds=5,
    )
    assert [e["type"] for e in events] == ["DELETED", "ADDED"]


async def test_watch_loses_nothing_under_concurrent_writes(api: Api) -> None:
    count = 200
    listing = await api.ok("GET", CM_PATH)

    async def write(index: int) -> None:
        await _make(api, f"cm{index}")

    writers = asyncio.gather(*(write(index) for index in range(count)))
    # Start the watch from the pre-write version while the writes are in flight.
    _, events = await _watch(
        api.session, CM_PATH, until=count, resourceVersion=listing["metadata"]["resourceVersion"], timeoutSeconds=10
    )
    await writers
    names = [e["object"]["metadata"]["name"] for e in events]
    assert len(names) == count and set(names) == {f"cm{index}" for index in range(count)}

    # And a fresh state-replaying watch started mid-stream neither loses nor duplicates objects.
    more = asyncio.gather(*(write(index) for index in range(count, 2 * count)))
    await asyncio.sleep(0.01)
    _, events = await _watch(api.session, CM_PATH, until=2 * count, timeoutSeconds=10)
    await more
    names = [e["object"]["metadata"]["name"] for e in events]
    assert len(names) == len(set(names)) == 2 * count


async def test_table_for_kubectl(api: Api) -> None:
    await _make(api, "a")
    async with api.session.get(
        CM_PATH, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    ) as response:
        table = await response.json()
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert table["rows"][0]["cells"][0] == "a"
