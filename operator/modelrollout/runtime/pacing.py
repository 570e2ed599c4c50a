"""Steps before measurements when the operator is busy.

Every rollout's daemon runs its own passes, and asyncio serves ready tasks in turn. At 10,000
rollouts measured every 30 s, 333 measurement passes a second share one Python process with the
passes that move rollouts on (a pause ending, a gate opening, a deadline), so when the process is
saturated a step that falls due waits behind thousands of measurements. A pass that only takes a
background measurement (the engine marks such deadlines `routine`) first takes one of a few slots;
every other pass runs at once. Measurements then wait when the operator is busy, steps do not.

Nothing is skipped: a pass that moves a rollout on measures every metric that is due in the same
pass, so a late background measurement can delay a step's analysis but never lets a step past it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

# Routine passes at once. Each spends most of its life waiting (for a Prometheus batch, for the API
# server), so the slots bound how many compete for the CPU, not the throughput: 64 passes waiting
# 50 ms for their batch are still 1,280 measurements a second.
ROUTINE_PASSES_AT_ONCE = 64


class RoutineGate:
    """A fair (first come, first served) limit on routine passes that an urgent one never waits for."""

    def __init__(self, slots: int = ROUTINE_PASSES_AT_ONCE) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = slots
        self.busy = 0
        self._queue: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for future in self._queue if not future.done())

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
                self._leave()

    async def _enter(self, patience: float, wake: asyncio.Event, stopping: asyncio.Future[Any]) -> bool:
        if self.busy < self.slots:  # then nobody waits: a slot freed is handed to a waiter first
            self.busy += 1
            return True
        if wake.is_set() or stopping.done():
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        woken = asyncio.ensure_future(wake.wait())
        try:
            waiters: set[asyncio.Future[Any]] = {turn, woken, stopping}
            await asyncio.wait(waiters, timeout=max(patience, 0.0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not turn.done():
                turn.cancel()  # skipped by _leave
        # A slot handed over as the wait ended is ours: taking it keeps the count right.
        return not turn.cancelled()

    def _leave(self) -> None:
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(None)  # hand the slot over: busy stays as it is
                return
        self.busy -= 1
