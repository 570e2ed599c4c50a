"""Deadlines that count the machine's time, not the wall clock's.

A wait in a test gives the system so many seconds to do something. On a busy machine (CI runs on
such machines; `hack/with-cpu-burners` makes one) the same work takes longer in wall time, so a
wall-clock deadline fails a test whose code is right. A `Deadline` lets its clock run slower as the
machine is loaded: each second of wall time counts as `1 / slowness()` seconds, where slowness is the
runnable load per core (at least 1, so an idle machine waits exactly as long as asked; at most
`MAX_SLOWNESS`, so a wedged one still fails in bounded time). The load is read at every poll, so a
burst of load in the middle of a wait extends only that part.
"""

from __future__ import annotations

import os
import time

MAX_SLOWNESS = 6.0


def slowness() -> float:
    """The load average per core over the last minute, clipped to [1, MAX_SLOWNESS]."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform: count wall time
        return 1.0
    return min(MAX_SLOWNESS, max(1.0, load / (os.cpu_count() or 1)))


class Deadline:
    """`seconds` of machine time from now (see the module's docstring)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._used = 0.0
        self._started = self._last = time.monotonic()

    def expired(self) -> bool:
        now = time.monotonic()
        self._used += (now - self._last) / slowness()
        self._last = now
        return self._used >= self.seconds

    def remaining(self) -> float:
        """Machine seconds left (as of the last `expired()`), never negative."""
        return max(0.0, self.seconds - self._used)

    def describe(self) -> str:
        """For a failure message: what was allowed and what it took on the wall clock."""
        wall = time.monotonic() - self._started
        if wall <= self.seconds * 1.05:
            return f"{self.seconds:.0f}s"
        return f"{self.seconds:.0f}s of machine time ({wall:.0f}s on the wall clock, the machine being loaded)"
