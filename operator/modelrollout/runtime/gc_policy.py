"""Garbage collection for the operator's large, long-lived heap.

The operator keeps every rollout's objects for as long as the rollout lives: kopf's last view of
each ModelRollout, Deployment and Service, the parsed specs, the decided statuses. At 10,000
rollouts that is millions of objects, and CPython's full collection walks all of them. With the
default policy a full collection ran every half minute under load and stopped the event loop for
5.5 s each time: a quarter of the operator's CPU at 10,000 rollouts, and the tail of the step lag
(docs/benchmarks.md, "Result after the sixth round").

Those objects die by reference counting when kopf or a pass replaces them; a full collection finds
almost nothing among them. So the survivors of each full collection are frozen (`gc.freeze`), and
the next ones walk only what was created since. A garbage cycle that reaches into a frozen object
cannot be found while it stays frozen, so the next full collection gets the whole heap back first
(`gc.unfreeze`, a thaw) when the frozen objects have grown by a quarter since the last thaw (the
slack CPython's own policy gives garbage in its oldest generation) or after `thaw_seconds`,
whichever comes first. A thaw costs one long collection; in a fleet of steady size it happens
once an hour.

The switches happen in `gc.callbacks`, around the collections CPython decides to run, so the
collector keeps its own pacing, except that a young collection waits for 10,000 new objects rather
than 700: a pass keeps its objects alive across its awaits, and with hundreds of passes in flight
the young collections walked (and promoted) mostly objects about to die. At 1,000 rollouts that
took the collector's time from 7.3 to 3.1 s, the operator's CPU from 41.8 to 35.3 s.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

OLDEST_GENERATION = 2  # CPython's generations are 0, 1 and 2; a collection of 2 is a full one
THAW_SECONDS = 3600.0
THAW_GROWTH = 1.25
# Counting the frozen objects walks them all (tens of milliseconds at 10,000 rollouts): not at
# every full collection.
COUNT_SECONDS = 60.0
YOUNG_THRESHOLD = 10_000  # CPython's default is 700


class FreezeSurvivors:
    def __init__(
        self,
        thaw_seconds: float = THAW_SECONDS,
        growth: float = THAW_GROWTH,
        count_seconds: float = COUNT_SECONDS,
        young_threshold: int = YOUNG_THRESHOLD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.thaw_seconds = thaw_seconds
        self.growth = growth
        self.count_seconds = count_seconds
        self.young_threshold = young_threshold
        self._thresholds_before: tuple[int, int, int] | None = None
        self.clock = clock
        self.thawed_at = self.counted_at = clock()
        self.frozen_after_thaw: int | None = None  # None until a collection of the whole heap has ended
        self.thaws = 0
        self._whole_heap = True

    def install(self) -> None:
        if self._on_gc not in gc.callbacks:
            self._thresholds_before = gc.get_threshold()
            gc.set_threshold(self.young_threshold, *self._thresholds_before[1:])
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._thresholds_before is not None:
            gc.set_threshold(*self._thresholds_before)
            self._thresholds_before = None
        gc.unfreeze()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != OLDEST_GENERATION:
            return
        if phase == "start":
            # The callback runs before the collection gathers its generations: what is thawed here
            # is collected now.
            if self._thaw_due():
                gc.unfreeze()
                self.thawed_at = self.clock()
                self.thaws += 1
                self._whole_heap = True
            return
        gc.freeze()
        if self._whole_heap:
            self.frozen_after_thaw = gc.get_freeze_count()
            self._whole_heap = False

    def _thaw_due(self) -> bool:
        if self.frozen_after_thaw is None:
            return False  # the first full collection sees the whole heap anyway
        now = self.clock()
        if now - self.thawed_at >= self.thaw_seconds:
            return True
        if now - self.counted_at < self.count_seconds:
            return False
        self.counted_at = now
        return gc.get_freeze_count() > self.growth * self.frozen_after_thaw


FREEZE_SURVIVORS = FreezeSurvivors()
