"""Which passes run first when the operator is busy: steps of rollouts under way, then new starts and
everything else, then background measurements.

Every rollout's daemon runs its own passes, and asyncio serves ready tasks in turn. At 10,000
rollouts measured every 30 s, 333 measurement passes a second share one Python process with the
passes that move rollouts on (a pause ending, a gate opening, a deadline), so when the process is
saturated a step that falls due waits behind thousands of measurements. A pass that only takes a
background measurement (the engine marks such deadlines `routine`) first takes one of a few
`RoutineGate` slots, at most until something urgent of its rollout falls due.

Every other pass takes one of the `PassGate` slots, and there the steps of rollouts already under way
(Progressing or Paused) go before the rest (a new version's start, a spec change, a restart's first
look at a settled rollout). Without that bound the queue formed where no order can be chosen: with
two shards at 10,000 rollouts the two processes asked the API server for more than it answered,
each filled its 100 connections, and a pause-ending pass's writes waited first come first served
behind thousands of starts (mean pass 18 s; docs/benchmarks.md). Bounded, the waiting happens here.

Nothing is skipped: a pass that moves a rollout on measures every metric that is due in the same
pass, so a late background measurement can delay a step's analysis but never lets a step past it.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

# Routine passes at once. Each spends most of its life waiting (for a Prometheus batch, for the API
# server), so the slots bound how many compete for the CPU, not the throughput: 64 passes waiting
# 50 ms for their batch are still 1,280 measurements a second.
ROUTINE_PASSES_AT_ONCE = 64
# Other passes at once. A pass makes its API requests one after another, so each holds at most one
# of the API client's 100 connections (`KubeApi`, kubernetes_asyncio's pool size); the rest are left
# for the shard Leases, the labeller's watch and Events, so a pass never waits for a connection.
# Not more: at 10,000 rollouts 96 helped a lone replica (decided p99 10.9 -> 6.0 s) but made two
# replicas overload the API server they share (applied p99 5.9 -> 9.6 s; docs/benchmarks.md).
PASSES_AT_ONCE = 64


class Priority(enum.IntEnum):
    """Which waiting pass gets a freed slot first: the lowest value, first come first served within it."""

    UNDER_WAY = 0  # a rollout between its start and its promotion or rollback: its next step
    OTHER = 1  # a new version's start, a spec change, a first look at a settled rollout


class _Slots:
    """A count of slots, and the waiters a freed slot is handed to, by priority then arrival."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = slots
        self.busy = 0
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, turn in self._queue if not turn.done())

    def take(self) -> bool:
        """Take a free slot, if there is one. A slot freed is handed to a waiter first, so a free
        one means nobody waits."""
        if self.busy < self.slots:
            self.busy += 1
            return True
        return False

    def queue(self, priority: int) -> asyncio.Future[None]:
        """A turn, done when a slot is handed to it; cancel it to give up the place."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (priority, next(self._arrivals), turn))
        return turn

    def give_up(self, turn: asyncio.Future[None]) -> None:
        """The waiter was cancelled: a slot already handed to it goes to the next one."""
        if turn.done() and not turn.cancelled():
            self.leave()
        else:
            turn.cancel()

    def leave(self) -> None:
        while self._queue:
            _, _, turn = heapq.heappop(self._queue)
            if not turn.done():  # a cancelled turn gave up its place
                turn.set_result(None)  # hand the slot over: busy stays as it is
                return
        self.busy -= 1


class _Gate:
    """What both gates show of their slots (for metrics and tests)."""

    def __init__(self, slots: int) -> None:
        self._slots = _Slots(slots)

    @property
    def slots(self) -> int:
        return self._slots.slots

    @property
    def busy(self) -> int:
        return self._slots.busy

    @property
    def waiting(self) -> int:
        return self._slots.waiting


class RoutineGate(_Gate):
    """A fair (first come, first served) limit on routine passes that an urgent one never waits for."""

    def __init__(self, slots: int = ROUTINE_PASSES_AT_ONCE) -> None:
        super().__init__(slots)

    @asynccontextmanager
    async def slot(self, patience: float, wake: asyncio.Event, stopping: asyncio.Future[Any]) -> AsyncIterator[bool]:
        """Hold a slot for the body, waiting at most `patience` seconds for one, or until `wake` is
        set (the rollout changed) or `stopping` completes: then the body runs at once without one.
        Yields whether it holds a slot."""
        held = await self._enter(patience, wake, stopping)
        try:
            yield held
        finally:
            if held:
                self._slots.leave()

    async def _enter(self, patience: float, wake: asyncio.Event, stopping: asyncio.Future[Any]) -> bool:
        if self._slots.take():
            return True
        if wake.is_set() or stopping.done():
            return False
        turn = self._slots.queue(0)
        woken = asyncio.ensure_future(wake.wait())
        try:
            waiters: set[asyncio.Future[Any]] = {turn, woken, stopping}
            await asyncio.wait(waiters, timeout=max(patience, 0.0), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._slots.give_up(turn)
            raise
        finally:
            woken.cancel()
            if not turn.done():
                turn.cancel()  # skipped by leave
        # A slot handed over as the wait ended is ours: taking it keeps the count right.
        return not turn.cancelled()


class PassGate(_Gate):
    """A limit on the passes that are not routine, handing freed slots to rollouts under way first."""

    def __init__(self, slots: int = PASSES_AT_ONCE) -> None:
        super().__init__(slots)

    @asynccontextmanager
    async def slot(self, priority: Priority, stopping: asyncio.Future[Any]) -> AsyncIterator[bool]:
        """Hold a slot for the body, waiting for one as long as it takes, unless `stopping` completes
        first: then the body runs without one (and the worker, stopped, leaves). Yields whether it
        holds a slot."""
        held = await self._enter(priority, stopping)
        try:
            yield held
        finally:
            if held:
                self._slots.leave()

    async def _enter(self, priority: Priority, stopping: asyncio.Future[Any]) -> bool:
        if self._slots.take():
            return True
        if stopping.done():
            return False
        turn = self._slots.queue(priority)
        try:
            await asyncio.wait({turn, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._slots.give_up(turn)
            raise
        if not turn.done():
            turn.cancel()  # skipped by leave
        return not turn.cancelled()
