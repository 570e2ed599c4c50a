"""List-and-watch for the sandbox's controllers, using only documented API semantics.

The simulator and the data plane run against the emulator or any real (node-less) API server, so
this is the informer pattern written against the wire protocol: list (taking the list's
``resourceVersion``), then watch from it; on ``410 Gone`` (an ERROR event or the HTTP status) list
again and turn the difference into events, so that a consumer never misses a deletion.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from modelrollout.kube.api import ApiError, KubeApi, Resource, load_configuration

PODS = Resource("", "v1", "pods")
NODES = Resource("", "v1", "nodes", namespaced=False)
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices")

log = logging.getLogger("modelrollout_devkit.sandbox.kube")

Obj = dict[str, Any]
#: (event type: ADDED | MODIFIED | DELETED, object)
Handler = Callable[[str, Obj], Awaitable[None]]

#: Server-side watch timeout: a real server closes watches on its own after a while anyway.
WATCH_TIMEOUT_S = 60


async def connect(kubeconfig: str) -> tuple[KubeApi, client.ApiClient]:
    """A :class:`KubeApi` on this kubeconfig, and a raw client for an :class:`Informer`'s watches.
    The caller closes both; one that needs no watch wants ``KubeApi.connect`` instead."""
    configuration = await load_configuration(kubeconfig)
    return KubeApi(configuration), client.ApiClient(configuration)


def key_of(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Informer:
    """Keeps ``objects`` in step with the API server and calls ``handler`` for every change."""

    def __init__(
        self,
        api: KubeApi,
        raw: client.ApiClient,
        resource: Resource,
        handler: Handler,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        name: str = "",
    ) -> None:
        self._api = api
        self._raw = raw
        self._resource = resource
        self._handler = handler
        self._selector = label_selector
        self._fields = field_selector
        self._name = name or resource.plural
        self.objects: dict[tuple[str, str], Obj] = {}
        self.synced = asyncio.Event()
        self.relists = 0

    async def run(self) -> None:
        """List and watch forever (cancel to stop); API errors are retried with a short backoff."""
        backoff = 0.2
        while True:
            try:
                listed = await self._relist()
                self.synced.set()
                backoff = 0.2
                version: str | None = listed
                while version is not None:
                    version = await self._watch(version)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, ApiError, aiohttp.ClientError, OSError, ValueError) as error:
                log.warning("%s: list/watch failed (%s); retrying in %.1fs", self._name, error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _relist(self) -> str:
        query = {}
        if self._selector:
            query["labelSelector"] = self._selector
        if self._fields:
            query["fieldSelector"] = self._fields
        answer = await self._api.request("GET", self._resource.path(None), query=query or None)
        self.relists += 1
        fresh = {key_of(item): item for item in answer.get("items", [])}
        for key in [key for key in self.objects if key not in fresh]:
            gone = self.objects.pop(key)
            await self._handler("DELETED", gone)
        for key, item in fresh.items():
            old = self.objects.get(key)
            self.objects[key] = item
            if old is None:
                await self._handler("ADDED", item)
            elif _rv(old) != _rv(item):
                await self._handler("MODIFIED", item)
        return str((answer.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, version: str) -> str | None:
        """Stream events from ``version``; the version to go on from, or None to list again (410)."""
        query = [
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_TIMEOUT_S)),
        ]
        if self._selector:
            query.append(("labelSelector", self._selector))
        if self._fields:
            query.append(("fieldSelector", self._fields))
        response = await self._raw.call_api(
            self._resource.path(None),
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(sock_read=WATCH_TIMEOUT_S + 30, connect=10),
        )
        async with response:
            if response.status == 410:
                return None
            if response.status != 200:
                text = await response.text()
                raise ApiError(response.status, response.reason or "", text[:300])
            while True:
                line = await response.content.readline()
                if not line:
                    return version  # the server ended the watch: go on from where we are
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = str(event.get("type")), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        log.info("%s: watch expired (410), listing again", self._name)
                        return None
                    raise ApiError(int(obj.get("code") or 500), str(obj.get("reason")), str(obj.get("message")))
                version = _rv(obj) or version
                if kind == "BOOKMARK":
                    continue
                key = key_of(obj)
                if kind == "DELETED":
                    self.objects.pop(key, None)
                else:
                    self.objects[key] = obj
                await self._handler(kind, obj)


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


async def cancel_and_wait(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
