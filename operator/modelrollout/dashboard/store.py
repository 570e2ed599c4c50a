"""The rollouts the dashboard's identity may see, kept current by a watch, and fanned out to the pages.

Status holds only the weights in force; the traffic over time is what this process saw of them while
it ran (a point per change, from the watch), which the page says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

from modelrollout.dashboard.view import summary
from modelrollout.kube.api import MODELROLLOUTS, ApiError, KubeApi

logger = logging.getLogger(__name__)

Key = tuple[str, str]
#: Points of traffic history kept per rollout (a point per change of weights).
TRAFFIC_POINTS_KEPT = 2000
#: How long to wait before listing again after the API server refused or failed.
RETRY_SECONDS = 5.0


def _key(rollout: dict[str, Any]) -> Key:
    metadata = rollout.get("metadata") or {}
    return str(metadata.get("namespace")), str(metadata.get("name"))


def _weights(rollout: dict[str, Any]) -> tuple[int, int, int]:
    weights = (rollout.get("status") or {}).get("weights") or {}
    return int(weights.get("stable", 100)), int(weights.get("candidate", 0)), int(weights.get("mirror", 0))


class RolloutStore:
    """Every ModelRollout in `namespaces` (None: all), from list-then-watch, with listeners for changes."""

    def __init__(self, api: KubeApi, namespaces: list[str] | None, clock: Callable[[], float] = time.time):
        self.api = api
        self.namespaces = namespaces
        self.clock = clock
        self.started_at = clock()
        self.rollouts: dict[Key, dict[str, Any]] = {}
        self.traffic: dict[Key, list[dict[str, Any]]] = {}
        #: Why the list is incomplete (a refusal from the API server, said for a person), by scope.
        self.errors: dict[str, str] = {}
        self.synced = asyncio.Event()
        self._synced_scopes = 0
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()

    # --- what the pages read ------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [summary(rollout, now) for _, rollout in sorted(self.rollouts.items())]

    def error(self) -> str | None:
        return "; ".join(self.errors.values()) or None

    @contextlib.contextmanager
    def listen(self) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    def _publish(self, message: dict[str, Any]) -> None:
        for queue in list(self._listeners):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                # A page that stopped reading: it gets a fresh snapshot when it reconnects.
                self._listeners.discard(queue)

    # --- what the watch writes ----------------------------------------------------------------------

    def apply(self, kind: str, rollout: dict[str, Any]) -> None:
        key = _key(rollout)
        if kind == "DELETED":
            self.rollouts.pop(key, None)
            self.traffic.pop(key, None)
            self._publish({"type": "deleted", "namespace": key[0], "name": key[1]})
            return
        self.rollouts[key] = rollout
        history = self.traffic.setdefault(key, [])
        stable, candidate, mirror = _weights(rollout)
        if not history or (history[-1]["stable"], history[-1]["candidate"], history[-1]["mirror"]) != (
            stable,
            candidate,
            mirror,
        ):
            history.append({"at": self.clock(), "stable": stable, "candidate": candidate, "mirror": mirror})
            del history[:-TRAFFIC_POINTS_KEPT]
        self._publish({"type": "changed", "row": summary(rollout, self.clock())})

    def _replace_scope(self, namespace: str | None, items: list[dict[str, Any]]) -> None:
        listed = {_key(item) for item in items}
        for key in [k for k in self.rollouts if (namespace is None or k[0] == namespace) and k not in listed]:
            self.apply("DELETED", self.rollouts[key])
        for item in items:
            self.apply("MODIFIED", item)

    async def run(self) -> None:
        """List and watch every scope until cancelled."""
        scopes: list[str | None] = list(self.namespaces) if self.namespaces else [None]
        await asyncio.gather(*(self._follow(scope) for scope in scopes))

    async def _follow(self, namespace: str | None) -> None:
        scope = namespace or "all namespaces"
        listed = False
        while True:
            try:
                answer = await self.api.request("GET", MODELROLLOUTS.path(namespace))
                items = [{**item, "kind": "ModelRollout"} for item in answer.get("items") or []]
                self._replace_scope(namespace, items)
                self.errors.pop(scope, None)
                version = str((answer.get("metadata") or {}).get("resourceVersion") or "")
                if not listed:
                    listed = True
                    self._scope_synced(namespace)
                self._publish({"type": "error", "error": self.error()})
                while True:
                    async for kind, item in self.api.watch(MODELROLLOUTS, namespace, version):
                        if kind == "ERROR":
                            code, reason = int(item.get("code") or 500), str(item.get("reason"))
                            raise ApiError(code, reason, str(item.get("message")))
                        version = str((item.get("metadata") or {}).get("resourceVersion") or version)
                        if kind != "BOOKMARK":
                            self.apply(kind, item)
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                if error.status == 410:  # the version is too old: list afresh at once
                    continue
                self.errors[scope] = refusal(error, namespace)
                logger.warning("dashboard: %s", self.errors[scope])
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                self.errors[scope] = f"the API server did not answer for {scope}: {error or type(error).__name__}"
                logger.warning("dashboard: %s", self.errors[scope])
            if not listed:
                listed = True
                self._scope_synced(namespace)
            self._publish({"type": "error", "error": self.error()})
            await asyncio.sleep(RETRY_SECONDS)

    def _scope_synced(self, namespace: str | None) -> None:
        self._synced_scopes += 1
        if self._synced_scopes >= max(1, len(self.namespaces or [])):
            self.synced.set()


def refusal(error: ApiError, namespace: str | None) -> str:
    """An API server's refusal, in words that say what to do."""
    where = f"in namespace {namespace}" if namespace else "in all namespaces"
    if error.status == 403:
        hint = "" if namespace else "; grant it (docs/dashboard.md) or start the dashboard with -n NAMESPACE"
        return f"your identity may not list or watch modelrollouts {where} (403 Forbidden: {error.message}){hint}"
    if error.status == 401:
        return f"the API server did not accept your credentials (401 Unauthorized: {error.message})"
    if error.status == 404:
        return f"the ModelRollout CRD is not installed (404 on modelrollouts {where}): kubectl apply -f crds/"
    return f"the API server refused to list modelrollouts {where}: {error}"
