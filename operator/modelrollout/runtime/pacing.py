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

How many pass slots there are follows the API server's answers (`AnswerTimeLimit`): one more slot
each second in which passes waited for one while the server answered in time, a tenth fewer each
second in which it did not (down to the 64 it starts with) or said it was overloaded (down to 16).
No fixed count suited both cases measured at 10,000 rollouts: a lone replica was held back by 64
slots and gained from more, while two replicas sharing one server overloaded it with 96
(docs/benchmarks.md).

Nothing is skipped: a pass that moves a rollout on measures every metric that is due in the same
pass, so a late background measurement can delay a step's analysis but never lets a step past it.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from modelrollout.operator_metrics import OPERATOR_METRICS

logger = logging.getLogger(__name__)

# Routine passes at once. Each spends most of its life waiting (for a Prometheus batch, for the API
# server), so the slots bound how many compete for the CPU, not the throughput: 64 passes waiting
# 50 ms for their batch are still 1,280 measurements a second.
ROUTINE_PASSES_AT_ONCE = 64
# Other passes at once, to begin with (`AnswerTimeLimit` moves it between the fewest and the most).
PASSES_AT_ONCE = 64
# A pass makes its API requests one after another, so each holds at most one of the API client's 100
# connections (`KubeApi`, kubernetes_asyncio's pool size); the dozen left over are for the shard
# Leases, the labeller's watch and Events, so that a pass never waits for a connection.
MOST_PASSES_AT_ONCE = 88
# The fewest after answers that say the server is overloaded (slow answers alone stop at
# PASSES_AT_ONCE: on the real control plane at 1,000 rollouts its answers took p50 0.4-0.5 s at
# any count, and going down to 16 on them tripled the applied step lag p99, docs/benchmarks.md).
FEWEST_PASSES_AT_ONCE = 16
# Nine answers in ten within this time is a server keeping up (`modelrollout run
# --api-answer-target-seconds`). A healthy kube-apiserver answers the operator's small reads and
# writes in milliseconds. At 10,000 rollouts on the emulator, two replicas sharing it grew past 64
# slots with 0.5 s and doubled their applied step lag p99 (12.2 s against 5.9 s), which 0.25 s
# avoided; one replica gained from growing (7.0-7.8 s against 11.2 s; docs/benchmarks.md).
ANSWER_TARGET_SECONDS = 0.25


@dataclass
class AnswerTimeLimit:
    """How many passes may run at once, by additive increase and multiplicative decrease on the API
    server's answer times, decided once per window (at least a second and `window_answers` answers).

    A window with an answer that says the server is overloaded (429, a 5xx, no answer in time)
    takes a tenth of the slots away, down to `fewest`. A window whose 90th-percentile answer time is
    over the target takes a tenth away too, but not below `steady`: a slow answer does not say that
    the operator's own requests are the cause (on a busy control plane the server is slow for
    everyone), while an overload answer does. A window in which a pass had to wait for a slot adds
    one, when its answers were in time or the count is below `steady` (climbing back after
    overload answers stopped). Otherwise the count stays: with nobody waiting, answer times say
    nothing about whether more slots would help. Pure: the clock is the caller's."""

    limit: int = PASSES_AT_ONCE
    fewest: int = FEWEST_PASSES_AT_ONCE
    most: int = MOST_PASSES_AT_ONCE
    steady: int = PASSES_AT_ONCE
    target_seconds: float = ANSWER_TARGET_SECONDS
    window_seconds: float = 1.0
    window_answers: int = 20
    backoff: float = 0.9
    _opened: float | None = field(default=None, init=False)
    _answers: list[float] = field(default_factory=list, init=False)
    _overloaded: bool = field(default=False, init=False)
    _waited: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.fewest <= min(self.limit, self.steady) <= max(self.limit, self.steady) <= self.most:
            raise ValueError(
                "need 1 <= fewest <= limit, steady <= most, "
                f"got fewest {self.fewest}, limit {self.limit}, steady {self.steady}, most {self.most}"
            )

    def waited(self) -> None:
        """A pass had to wait for a slot in the current window."""
        self._waited = True

    def observe(self, seconds: float, overloaded: bool, now: float) -> int | None:
        """Count one answer (how long it took, whether it said the server is overloaded) that came
        at `now` (seconds on any monotonic clock); the new limit when this closed a window that
        changed it."""
        if self._opened is None:
            self._opened = now
        self._answers.append(seconds)
        self._overloaded = self._overloaded or overloaded
        if now - self._opened < self.window_seconds or len(self._answers) < self.window_answers:
            return None
        answers = sorted(self._answers)
        slow = answers[int(0.9 * (len(answers) - 1))] > self.target_seconds
        before = self.limit
        if self._overloaded:
            self.limit = max(self.fewest, int(self.limit * self.backoff))
        elif slow and self.limit > self.steady:
            self.limit = max(self.steady, int(self.limit * self.backoff))
        elif self._waited and (not slow or self.limit < self.steady):
            self.limit = min(self.most, self.limit + 1)
        self._opened, self._answers, self._overloaded, self._waited = None, [], False, False
        return self.limit if self.limit != before else None


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

    @property
    def queued(self) -> bool:
        """Whether anyone may be waiting (a cancelled turn counts until a freed slot skips it): cheap."""
        return bool(self._queue)

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
        # Over the count (it was lowered while the slots were held): the slot goes, not to a waiter.
        if self.busy > self.slots or not self._hand_over():
            self.busy -= 1

    def resize(self, slots: int) -> None:
        """Change the count; slots added go to waiters at once, and slots taken away go as they are
        left."""
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = slots
        while self.busy < self.slots and self._hand_over():
            self.busy += 1

    def _hand_over(self) -> bool:
        """Give a slot to the first waiter, if there is one (busy is the caller's to count)."""
        while self._queue:
            _, _, turn = heapq.heappop(self._queue)
            if not turn.done():  # a cancelled turn gave up its place
                turn.set_result(None)
                return True
        return False


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
    """A limit on the passes that are not routine, handing freed slots to rollouts under way first;
    with an `AnswerTimeLimit`, the API server's answer times (`observe_answer`) move the limit."""

    def __init__(self, slots: int = PASSES_AT_ONCE, limit: AnswerTimeLimit | None = None) -> None:
        super().__init__(limit.limit if limit is not None else slots)
        self._limit = limit
        OPERATOR_METRICS.pass_slots.set(self.slots)

    @classmethod
    def adaptive(cls) -> PassGate:
        return cls(limit=AnswerTimeLimit())

    def observe_answer(self, seconds: float, overloaded: bool, now: float) -> None:
        """An API answer came (`KubeApi.on_answer`): how long it took, whether it said overloaded."""
        if self._limit is None:
            return
        if self._slots.queued:  # still waiting since an earlier window
            self._limit.waited()
        changed = self._limit.observe(seconds, overloaded, now)
        if changed is not None:
            direction = "up" if changed > self.slots else "down"
            OPERATOR_METRICS.pass_slot_changes.labels(direction=direction).inc()
            OPERATOR_METRICS.pass_slots.set(changed)
            if direction == "down":
                logger.debug("API answers slow or refused: %d pass slots, from %d", changed, self.slots)
            self._slots.resize(changed)

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
        if self._limit is not None:
            self._limit.waited()
        turn = self._slots.queue(priority)
        try:
            await asyncio.wait({turn, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._slots.give_up(turn)
            raise
        if not turn.done():
            turn.cancel()  # skipped by leave
        return not turn.cancelled()
