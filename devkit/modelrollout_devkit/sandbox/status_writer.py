"""Writing simulated status to the API server, shared by the kubelet and the workload simulator.

Both :class:`~modelrollout_devkit.sandbox.kubelet.SandboxKubelet` (pods) and
:class:`~modelrollout_devkit.sandbox.workloads.WorkloadSimulator` (Deployments) report what their processes
do through a ``/status`` subresource. Changes come in bursts (a process starts, its probe answers,
another pod of the Deployment flips) and only the latest state matters, so changes only mark an object
dirty and one task writes each dirty object once per burst: the API server sees one patch, not ten, and
never two patches of one object racing each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from modelrollout.kube.api import ApiError

#: (namespace, name) of the object whose status is written.
ObjectKey = tuple[str, str]


def _namespaced_name(key: ObjectKey) -> str:
    return f"{key[0]}/{key[1]}"


class CoalescingStatusWriter:
    """Writes the status of the objects :meth:`mark`-ed dirty, each once per wake-up, with ``write``.

    ``write(key)`` works out the status from the current state (and may skip the write when nothing
    changed or the object is gone from the simulation). A 404 means the object was deleted meanwhile:
    nothing left to report. Any other API error, or a connection error, is logged and the object marked
    again after ``retry_delay``, so that a status is never lost to a hiccup of the API server.
    """

    def __init__(
        self,
        write: Callable[[ObjectKey], Awaitable[None]],
        log: logging.Logger,
        *,
        describe: Callable[[ObjectKey], str] = _namespaced_name,
        retry_delay: float = 0.5,
    ) -> None:
        self._write = write
        self._log = log
        self._describe = describe
        self._retry_delay = retry_delay
        self._dirty: set[ObjectKey] = set()
        self._wakeup = asyncio.Event()

    def mark(self, key: ObjectKey) -> None:
        """Have ``key``'s status written soon; cheap, so call it on every change."""
        self._dirty.add(key)
        self._wakeup.set()

    async def run(self) -> None:
        """Write what is marked, forever (cancel to stop)."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            dirty, self._dirty = self._dirty, set()
            for key in dirty:
                try:
                    await self._write(key)
                except ApiError as error:
                    if error.status != 404:
                        await self._retry_later(key, error)
                except (aiohttp.ClientError, OSError) as error:
                    await self._retry_later(key, error)

    async def _retry_later(self, key: ObjectKey, error: Exception) -> None:
        self._log.warning("status of %s: %s; retrying", self._describe(key), error)
        await asyncio.sleep(self._retry_delay)
        self.mark(key)


def with_transition_times(
    conditions: list[dict[str, Any]], since: dict[str, tuple[str, str]], now: str
) -> list[dict[str, Any]]:
    """Copies of ``conditions`` with their ``lastTransitionTime``: ``now`` for a condition whose status
    is new or has flipped, else the time it last flipped, as in Kubernetes (clients read a condition's
    age from it). ``since`` (condition type -> (status, time)) remembers the flips and is updated."""
    stamped = []
    for condition in conditions:
        previous = since.get(condition["type"])
        if previous is None or previous[0] != condition["status"]:
            previous = since[condition["type"]] = (condition["status"], now)
        stamped.append({**condition, "lastTransitionTime": previous[1]})
    return stamped
