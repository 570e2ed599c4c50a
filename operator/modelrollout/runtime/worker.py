"""A rollout's worker: passes one at a time, then sleep until the next deadline or a wake-up.

kopf runs one daemon per ModelRollout, and the daemon runs `run_rollout`, so a rollout never has
two passes racing. After each pass the worker sleeps until the soonest deadline the engine gave
(`decision.deadlines`), the resync interval, a held status falling due, or a wake-up. A pass that only
takes a background measurement first waits for a routine slot (`pacing.RoutineGate`), at most until
something urgent of the same rollout falls due; every other pass waits for a `pacing.PassGate` slot,
where a rollout under way goes before one that is not.

The pass itself is given (`run_pass`, `reconcile.reconcile` in the operator): the worker knows what a
pass needs and returns, not how it decides, so the runtime room does not import the reconcile layer.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from modelrollout.api.models import Phase
from modelrollout.engine.types import Decision, DeploymentState, Selector
from modelrollout.kube.api import ApiError, WriteFenced
from modelrollout.operator_metrics import OPERATOR_METRICS
from modelrollout.runtime.cache import OwnWrites, ParsedSpecs, ParsedStatuses, deployment_states, fresher
from modelrollout.runtime.pacing import PassGate, Priority, RoutineGate
from modelrollout.runtime.status_writer import HeldStatus
from modelrollout.runtime.wakeups import WakeUps

logger = logging.getLogger("modelrollout.handlers")  # the name these lines have always been logged under

# The fastest a rollout is looked at again after an error: enough to ride out an API hiccup
# without hammering the server.
ERROR_RETRY_SECONDS = 2.0
EVENT_RETRY_SECONDS = 5.0  # an Event the API server refused is posted again this soon

Key = tuple[str, str]
DeploymentIndex = Mapping[Key, Iterable[DeploymentState]]
ServiceIndex = Mapping[Key, Iterable[tuple[str, tuple[int, Selector]]]]


class ShardInDoubt(Exception):
    """This replica may no longer hold the rollout's shard: skip the pass."""


class Forgetful(Protocol):
    def forget(self, key: Key) -> None: ...


class WorkerContext(Protocol):
    """What the worker needs of the operator's runtime state (`reconcile.Runtime`)."""

    @property
    def written(self) -> OwnWrites: ...
    @property
    def statuses(self) -> ParsedStatuses: ...
    @property
    def specs(self) -> ParsedSpecs: ...
    @property
    def events(self) -> Forgetful: ...  # the Events delivered, per rollout
    @property
    def notifier(self) -> Forgetful: ...  # the notifications in flight or settled, per rollout
    @property
    def routine(self) -> RoutineGate: ...
    @property
    def passes(self) -> PassGate: ...
    @property
    def wakeups(self) -> WakeUps: ...
    @property
    def left_for_next_pass(self) -> dict[Key, Any]: ...  # a pass's outcome the next one decides on
    @property
    def quiet_write_seconds(self) -> float: ...

    def clock(self) -> datetime: ...

    def may_act(self) -> bool: ...  # False while a sharded replica's hold on the shard is in doubt


class PassOutcome(Protocol):
    """What a pass tells the worker (`reconcile.PassResult`)."""

    @property
    def decision(self) -> Decision: ...
    @property
    def written(self) -> Mapping[str, Any] | None: ...  # the object as our status write left it
    @property
    def held(self) -> HeldStatus | None: ...  # the status decided and not written yet
    @property
    def events_posted(self) -> bool: ...
    @property
    def at(self) -> datetime: ...


Context = TypeVar("Context", bound=WorkerContext)
RunPass = Callable[
    [Context, Mapping[str, Any], dict[str, DeploymentState], dict[str, Selector], HeldStatus | None],
    Awaitable[PassOutcome],
]


class Stopped(Protocol):
    """What the worker needs of kopf's DaemonStopped: is it set, and a way to wait for it."""

    def __bool__(self) -> bool: ...

    def wait(self) -> Awaitable[Any]: ...


async def run_rollout(
    runtime: Context,
    run_pass: RunPass[Context],
    body: Mapping[str, Any],
    namespace: str,
    name: str,
    deployments_index: DeploymentIndex,
    services_index: ServiceIndex,
    stopped: Stopped,
    resync_seconds: float,
) -> None:
    """Run the rollout's passes until kopf stops the daemon or the rollout is being deleted."""
    wake = runtime.wakeups.get(namespace, name)
    written: Mapping[str, Any] | None = None
    held: HeldStatus | None = None
    # One waiter for the stop, for the worker's life: kopf makes each `stopped.wait()` a new task,
    # and at 10,000 rollouts one per sleep was a quarter of the operator's CPU.
    stopping = asyncio.ensure_future(stopped.wait())
    # Set when the coming pass only takes a background measurement: the longest it may wait for
    # a routine slot (modelrollout.runtime.pacing) before something urgent falls due.
    patience: float | None = None
    due_at: float | None = None  # the deadline the worker slept until, when it was not woken before it
    key = (namespace, name)
    loop = asyncio.get_running_loop()
    try:
        while not stopped:
            async with _admitted(runtime, patience, priority_of(fresher(body, written)), wake, stopping):
                if stopped:  # stopped while waiting for a slot: no last pass on the way out
                    break
                if due_at is not None:
                    kind = "routine" if patience is not None else "urgent"
                    OPERATOR_METRICS.pass_lateness.labels(kind=kind).observe(max(0.0, loop.time() - due_at))
                wake.clear()
                current = fresher(body, written)
                if current.get("metadata", {}).get("deletionTimestamp"):
                    return
                started = loop.time()
                try:
                    if not runtime.may_act():
                        # The shard's Lease was not renewed in time: another replica may take it
                        # over, so no pass begins here until this replica's supervisor settles it.
                        raise ShardInDoubt
                    indexed = deployment_states(list(deployments_index.get(key, [])))
                    deployments = runtime.written.merged_deployments(key, indexed)
                    services = runtime.written.merged_services(key, dict(services_index.get(key, [])))
                    result = await run_pass(runtime, current, deployments, services, held)
                    written = result.written or written
                    held = result.held
                    deadlines = result.decision.deadlines
                    urgent = deadlines.urgent if deadlines.urgent is not None else math.inf
                    delay = min(deadlines.next if deadlines.next is not None else resync_seconds, resync_seconds)
                    if held is not None:  # written by this deadline at the latest
                        age = (runtime.clock() - held.since).total_seconds()
                        delay = min(delay, max(0.0, runtime.quiet_write_seconds - age))
                    if not result.events_posted:
                        delay = min(delay, EVENT_RETRY_SECONDS)
                    OPERATOR_METRICS.observe_pass(namespace, name, result.decision, result.at, loop.time() - started)
                except (ShardInDoubt, WriteFenced):
                    # The hold lapsed before or during the pass: the rest of its writes were not
                    # made, and the next pass (here, or where the shard goes) starts from the server.
                    delay, urgent = ERROR_RETRY_SECONDS, ERROR_RETRY_SECONDS
                except ApiError as error:
                    logger.warning("%s/%s: API error, retrying: %s", namespace, name, error)
                    OPERATOR_METRICS.reconcile_errors.labels(kind="api").inc()
                    delay, urgent = ERROR_RETRY_SECONDS, ERROR_RETRY_SECONDS
                except Exception:
                    # One rollout's surprise must not stop the others or kill this loop: log it with
                    # the traceback and look again shortly.
                    logger.exception("%s/%s: reconcile failed", namespace, name)
                    OPERATOR_METRICS.reconcile_errors.labels(kind="internal").inc()
                    delay, urgent = ERROR_RETRY_SECONDS, ERROR_RETRY_SECONDS
            patience = due_at = None
            if delay > 0:
                deadline = loop.time() + delay
                if not await _sleep(wake, stopping, delay):
                    due_at = deadline
                    if delay < urgent:
                        patience = min(urgent - delay, resync_seconds)
    finally:
        stopping.cancel()
        runtime.wakeups.forget(namespace, name)
        if body.get("metadata", {}).get("deletionTimestamp"):
            forget_rollout(runtime, namespace, name)


# The phases between a start and its promotion or rollback.
UNDER_WAY_PHASES = frozenset({Phase.PROGRESSING.value, Phase.PAUSED.value})


def priority_of(rollout: Mapping[str, Any]) -> Priority:
    """Whether the rollout's next pass is a step of a delivery under way, by the status it last wrote."""
    status = rollout.get("status") or {}
    return Priority.UNDER_WAY if status.get("phase") in UNDER_WAY_PHASES else Priority.OTHER


@asynccontextmanager
async def _admitted(
    runtime: WorkerContext,
    patience: float | None,
    priority: Priority,
    wake: asyncio.Event,
    stopping: asyncio.Future[Any],
) -> AsyncIterator[None]:
    """Hold what the coming pass may run under: a routine slot when it only takes a background
    measurement (`patience` set); else, or when its patience runs out first, a pass slot."""
    if patience is not None:
        async with runtime.routine.slot(patience, wake, stopping) as held:
            if held:
                yield
                return
    async with runtime.passes.slot(priority, stopping):
        yield


def forget_rollout(runtime: WorkerContext, namespace: str, name: str) -> None:
    """Drop everything kept for a rollout that is gone, so memory follows the live fleet."""
    key = (namespace, name)
    OPERATOR_METRICS.forget(namespace, name)
    runtime.written.forget(key)
    runtime.statuses.forget(key)
    runtime.specs.forget(key)
    runtime.events.forget(key)
    runtime.notifier.forget(key)
    runtime.wakeups.forget_seen(namespace, name)
    runtime.left_for_next_pass.pop(key, None)


async def _sleep(wake: asyncio.Event, stopping: asyncio.Future[Any], seconds: float) -> bool:
    """Sleep until the deadline, a wake-up, or the worker being stopped, whichever comes first;
    whether it ended before the deadline."""
    woken = asyncio.ensure_future(wake.wait())
    try:
        done, _ = await asyncio.wait({woken, stopping}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
    return bool(done)
