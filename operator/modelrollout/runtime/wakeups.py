"""Wake-ups: which watch events wake a rollout's worker before its deadline.

Each rollout's worker sleeps until its next deadline or until it is woken. Only changes that can
move a rollout wake it: most watch events are the echoes of its own writes (status, replicas), and
a pass for each was most of the operator's work at scale. So each kind of object is reduced to what
matters of it (a Deployment's replicas and readiness, a Service's selector, a ModelRollout's
generation, command and deletion), an event that shows the same as the last one is dropped, and a
Deployment event that shows exactly what our own write answered (`OwnWrites.is_answer`) is its echo.
"""

from __future__ import annotations

import asyncio
from typing import Any

from modelrollout.engine.types import DeploymentState
from modelrollout.runtime.cache import OwnWrites

SeenKey = tuple[str, str | None, str | None]  # (kind, namespace, name) of the object an event is about


class WakeUps:
    """One asyncio.Event per rollout, set by watch events, awaited by the rollout's worker."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        self._seen: dict[SeenKey, tuple[Any, ...]] = {}

    def get(self, namespace: str, name: str) -> asyncio.Event:
        return self._events.setdefault((namespace, name), asyncio.Event())

    def wake(self, namespace: str | None, name: str | None) -> None:
        if namespace is not None and name is not None and (namespace, name) in self._events:
            self._events[(namespace, name)].set()

    def forget(self, namespace: str, name: str) -> None:
        self._events.pop((namespace, name), None)

    def changed(self, key: SeenKey, seen: tuple[Any, ...], gone: bool = False) -> bool:
        """Whether what matters of an object differs from what the last event showed."""
        if gone:
            self._seen.pop(key, None)  # nothing more will come of it; keep the memory bounded
            return True
        if self._seen.get(key) == seen:
            return False
        self._seen[key] = seen
        return True

    def forget_seen(self, namespace: str, name: str) -> None:
        self._seen.pop(("rollout", namespace, name), None)

    # --- what each kind of watch event means ---------------------------------------------------------

    def deployment_event(
        self,
        namespace: str | None,
        name: str | None,
        rollout: str | None,
        state: DeploymentState,
        deleted: bool,
        own_writes: OwnWrites,
    ) -> None:
        if not self.changed(("deployment", namespace, name), (state.replicas, state.ready_replicas), gone=deleted):
            return
        if (
            not deleted
            and namespace is not None
            and rollout is not None
            and own_writes.is_answer(namespace, rollout, state)
        ):
            return  # the echo of our own write: the worker has its answer already
        self.wake(namespace, rollout)

    def service_event(
        self, namespace: str | None, name: str | None, rollout: str | None, selector: object, deleted: bool
    ) -> None:
        if self.changed(("service", namespace, name), (str(selector),), gone=deleted):
            self.wake(namespace, rollout)

    def rollout_event(
        self, namespace: str | None, name: str | None, generation: object, command: object, deleting: object
    ) -> None:
        if self.changed(("rollout", namespace, name), (generation, command, deleting)):
            self.wake(namespace, name)
