"""The tests' own deadlines (tests/support/deadline.py): wall time counts less as the machine is loaded."""

from __future__ import annotations

import pytest

from tests.support import deadline as module
from tests.support.deadline import MAX_SLOWNESS, Deadline, slowness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(module.time, "monotonic", fake)
    return fake


def loaded(monkeypatch: pytest.MonkeyPatch, load: float, cores: int = 2) -> None:
    monkeypatch.setattr(module.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(module.os, "cpu_count", lambda: cores)


def test_an_idle_machine_waits_exactly_as_long_as_asked(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded(monkeypatch, 0.3)
    deadline = Deadline(10)
    clock.now += 9.9
    assert not deadline.expired()
    clock.now += 0.2
    assert deadline.expired() and deadline.describe() == "10s"


def test_a_loaded_machine_stretches_only_the_loaded_part(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    deadline = Deadline(10)
    loaded(monkeypatch, 1.0)
    clock.now += 4
    assert not deadline.expired()  # 4 machine seconds
    loaded(monkeypatch, 8.0)  # 4 per core
    clock.now += 20
    assert not deadline.expired() and deadline.remaining() == pytest.approx(1)
    clock.now += 4.1
    assert deadline.expired()
    assert "10s of machine time (28s on the wall clock" in deadline.describe()


def test_slowness_is_bounded_so_a_wedged_machine_still_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded(monkeypatch, 500.0)
    assert slowness() == MAX_SLOWNESS
    loaded(monkeypatch, 0.0)
    assert slowness() == 1.0
