"""The gates passes wait at. The routine gate: a few measurement passes at once, first come first
served, and never a wait for a pass that a change, a stop or its own patience makes urgent. The pass
gate: a bounded number of other passes, a freed slot going to a rollout under way first, and as many
slots as the API server's answer times allow."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from modelrollout.runtime.pacing import AnswerTimeLimit, PassGate, Priority, RoutineGate
from modelrollout.runtime.worker import priority_of


class Daemon:
    """What the gate needs of a rollout's daemon: its wake-up event and its stop future."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.stopping: asyncio.Future[None] = asyncio.get_running_loop().create_future()


async def hold(
    gate: RoutineGate, daemon: Daemon, patience: float, release: asyncio.Event, log: list[str], name: str
) -> None:
    async with gate.slot(patience, daemon.wake, daemon.stopping) as held:
        log.append(f"{name}:{'slot' if held else 'alone'}")
        await release.wait()


async def settle() -> None:
    """Let every task that can run go as far as it can (no timer is involved)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool], deadline: float = 30.0) -> None:
    """Wait for what a timer will bring about (a patience running out), however loaded the machine."""
    async with asyncio.timeout(deadline):
        while not condition():
            await asyncio.sleep(0.005)


async def test_passes_beyond_the_slots_wait_their_turn_in_order() -> None:
    gate, release = RoutineGate(slots=2), [asyncio.Event() for _ in range(5)]
    log: list[str] = []
    tasks = [asyncio.create_task(hold(gate, Daemon(), 60, release[i], log, f"p{i}")) for i in range(5)]
    await settle()
    assert log == ["p0:slot", "p1:slot"]
    release[1].set()
    await settle()
    assert log == ["p0:slot", "p1:slot", "p2:slot"]
    release[0].set()
    release[2].set()
    await settle()
    assert log[3:] == ["p3:slot", "p4:slot"]
    for event in release:
        event.set()
    await asyncio.gather(*tasks)
    assert gate.busy == 0


@pytest.mark.parametrize("urgency", ["patience", "wake", "stop"])
async def test_an_urgent_pass_does_not_wait_for_a_slot(urgency: str) -> None:
    gate = RoutineGate(slots=1)
    log: list[str] = []
    busy, released = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(gate, Daemon(), 60, busy, log, "holder"))
    await settle()
    daemon = Daemon()
    waiter = asyncio.create_task(hold(gate, daemon, 0.05 if urgency == "patience" else 60, released, log, "waiter"))
    await settle()
    assert log == ["holder:slot"]
    if urgency == "wake":
        daemon.wake.set()
    elif urgency == "stop":
        daemon.stopping.set_result(None)
    await until(lambda: len(log) == 2)
    assert log == ["holder:slot", "waiter:alone"]
    # Running without a slot takes none: the holder's, when freed, goes back to the gate.
    assert gate.busy == 1
    busy.set()
    released.set()
    await asyncio.gather(holder, waiter)
    assert gate.busy == 0


async def test_slots_are_never_overcommitted_or_lost() -> None:
    gate = RoutineGate(slots=3)
    inside = 0
    most = 0
    rng = random.Random(7)

    async def one() -> None:
        nonlocal inside, most
        daemon = Daemon()
        if rng.random() < 0.2:
            asyncio.get_running_loop().call_later(rng.random() * 0.02, daemon.wake.set)
        async with gate.slot(rng.random() * 0.03, daemon.wake, daemon.stopping) as held:
            if held:
                inside += 1
                most = max(most, inside)
            await asyncio.sleep(rng.random() * 0.01)
            if held:
                inside -= 1

    await asyncio.gather(*(one() for _ in range(300)))
    assert most == 3
    assert gate.busy == 0
    assert gate.waiting == 0


async def take_pass_slot(
    gate: PassGate,
    priority: Priority,
    stopping: asyncio.Future[None],
    release: asyncio.Event,
    log: list[str],
    name: str,
) -> None:
    async with gate.slot(priority, stopping) as held:
        log.append(f"{name}:{'slot' if held else 'alone'}")
        await release.wait()


async def test_a_freed_pass_slot_goes_to_a_rollout_under_way_before_earlier_starts() -> None:
    gate = PassGate(slots=1)
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    log: list[str] = []
    releases = {name: asyncio.Event() for name in ("first", "start1", "start2", "step1", "step2")}
    order = [
        ("first", Priority.OTHER),
        ("start1", Priority.OTHER),
        ("start2", Priority.OTHER),
        ("step1", Priority.UNDER_WAY),
        ("step2", Priority.UNDER_WAY),
    ]
    tasks = []
    for name, priority in order:
        tasks.append(asyncio.create_task(take_pass_slot(gate, priority, never, releases[name], log, name)))
        await settle()
    assert log == ["first:slot"] and gate.waiting == 4
    for name in ("first", "step1", "step2", "start1"):
        releases[name].set()
        await settle()
    assert log == ["first:slot", "step1:slot", "step2:slot", "start1:slot", "start2:slot"]
    releases["start2"].set()
    await asyncio.gather(*tasks)
    assert gate.busy == 0 and gate.waiting == 0


@dataclass
class OneSlotHeld:
    """A one-slot pass gate whose slot a holder keeps until `busy` is set."""

    gate: PassGate
    never: asyncio.Future[None]
    log: list[str]
    busy: asyncio.Event
    free: asyncio.Event  # set: a pass given this release leaves at once
    holder: asyncio.Task[None]


async def one_slot_held() -> OneSlotHeld:
    gate, log = PassGate(slots=1), []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    busy, free = asyncio.Event(), asyncio.Event()
    free.set()
    holder = asyncio.create_task(take_pass_slot(gate, Priority.OTHER, never, busy, log, "holder"))
    await settle()
    return OneSlotHeld(gate, never, log, busy, free, holder)


async def test_a_stopped_worker_leaves_the_pass_queue_without_a_slot() -> None:
    held = await one_slot_held()
    stopping: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiter = asyncio.create_task(take_pass_slot(held.gate, Priority.UNDER_WAY, stopping, held.free, held.log, "waiter"))
    await settle()
    stopping.set_result(None)
    await waiter
    assert held.log == ["holder:slot", "waiter:alone"] and held.gate.busy == 1 and held.gate.waiting == 0
    held.busy.set()
    await held.holder
    assert held.gate.busy == 0


async def test_a_waiter_cancelled_as_its_slot_is_handed_over_passes_it_on() -> None:
    """kopf cancels a daemon's task when it stops it: a slot handed over at that moment is not lost."""
    held = await one_slot_held()
    gate, never, log, free = held.gate, held.never, held.log, held.free
    cancelled = asyncio.create_task(take_pass_slot(gate, Priority.UNDER_WAY, never, free, log, "cancelled"))
    after = asyncio.create_task(take_pass_slot(gate, Priority.OTHER, never, free, log, "after"))
    await settle()
    held.busy.set()  # the holder leaves and hands its slot to `cancelled` ...
    await held.holder
    cancelled.cancel()  # ... which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await after
    assert log == ["holder:slot", "after:slot"]
    assert gate.busy == 0 and gate.waiting == 0


async def test_pass_slots_are_never_overcommitted_or_lost() -> None:
    gate = PassGate(slots=4)
    rng = random.Random(11)
    inside = most = 0
    stops: list[asyncio.Future[None]] = []

    async def one() -> None:
        nonlocal inside, most
        stopping: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stops.append(stopping)
        async with gate.slot(rng.choice(list(Priority)), stopping) as held:
            if held:
                inside += 1
                most = max(most, inside)
            for _ in range(rng.randrange(5)):
                await asyncio.sleep(0)
            if held:
                inside -= 1

    tasks = [asyncio.create_task(one()) for _ in range(300)]
    await asyncio.sleep(0)
    for stopping in rng.sample(stops, 30):
        stopping.set_result(None)
    await asyncio.gather(*tasks)
    assert most == 4
    assert gate.busy == 0 and gate.waiting == 0


def window(limit: AnswerTimeLimit, start: float, answers: list[float], overloaded: int = -1) -> int | None:
    """Feed one window of answers (the last one a second after the first); what the last returned."""
    changed: int | None = None
    for index, seconds in enumerate(answers):
        now = start + (1.0 if index == len(answers) - 1 else index / len(answers))
        changed = limit.observe(seconds, index == overloaded, now)
        if index < len(answers) - 1:
            assert changed is None, "a window closes after a second and 20 answers, not before"
    return changed


FAST, SLOW = [0.02] * 30, [0.02] * 20 + [0.9] * 10


def test_answers_in_time_add_a_slot_per_window_only_while_passes_wait() -> None:
    limit = AnswerTimeLimit(limit=64, most=66)
    assert window(limit, 0, FAST) is None and limit.limit == 64  # nobody waited: more slots would not help
    for start, expected in ((10, 65), (20, 66), (30, None)):
        limit.waited()
        assert window(limit, start, FAST) == expected
    assert limit.limit == 66  # the most


def test_a_window_needs_a_second_and_twenty_answers() -> None:
    limit = AnswerTimeLimit(limit=64)
    limit.waited()
    assert all(limit.observe(0.01, False, 0.001 * i) is None for i in range(100))  # a tenth of a second
    assert limit.observe(0.01, False, 1.0) == 65
    limit.waited()
    assert all(limit.observe(0.01, False, 1.0 + 2 * i) is None for i in range(1, 20))  # 19 answers in 38 s
    assert limit.observe(0.01, False, 41.0) == 66


@pytest.mark.parametrize("waited", [True, False])
def test_slow_answers_take_a_tenth_of_the_slots_back_down_to_the_steady_count(waited: bool) -> None:
    limit = AnswerTimeLimit(limit=80, steady=64, fewest=16)
    seen = []
    for start in range(0, 40, 10):
        if waited:
            limit.waited()
        seen.append(window(limit, start, SLOW))
    assert seen == [72, 64, None, None]  # slow alone never goes below the steady count


def test_answers_saying_overloaded_take_slots_down_to_the_fewest() -> None:
    limit = AnswerTimeLimit(limit=20, steady=64, fewest=16)
    assert [window(limit, start, FAST, overloaded=3) for start in range(0, 30, 10)] == [18, 16, None]


def test_below_the_steady_count_slots_come_back_while_passes_wait_even_if_answers_are_slow() -> None:
    limit = AnswerTimeLimit(limit=64, steady=64)
    limit.waited()
    assert window(limit, 0, FAST, overloaded=0) == 57
    seen = []
    for start in range(10, 90, 10):
        limit.waited()
        seen.append(window(limit, start, SLOW))
    assert seen == [58, 59, 60, 61, 62, 63, 64, None]  # back at the steady count, slow answers hold it


def test_a_slow_tenth_is_in_time_and_more_is_not() -> None:
    limit = AnswerTimeLimit(limit=64, steady=16, target_seconds=0.5)
    limit.waited()
    assert window(limit, 0, [0.02] * 27 + [0.9] * 3) == 65  # the 90th percentile is still 0.02 s
    limit.waited()
    assert window(limit, 10, [0.02] * 26 + [0.9] * 4) == 58


def test_one_answer_saying_overloaded_takes_slots_away() -> None:
    limit = AnswerTimeLimit(limit=64)
    limit.waited()
    assert window(limit, 0, FAST, overloaded=3) == 57
    limit.waited()
    assert window(limit, 10, FAST) == 58  # the next window is judged on its own


@pytest.mark.parametrize(
    ("fewest", "start", "steady", "most"), [(0, 64, 64, 88), (16, 8, 64, 88), (16, 90, 64, 88), (16, 64, 90, 88)]
)
def test_a_limit_outside_its_bounds_is_refused(fewest: int, start: int, steady: int, most: int) -> None:
    with pytest.raises(ValueError, match="fewest <= limit, steady <= most"):
        AnswerTimeLimit(limit=start, fewest=fewest, steady=steady, most=most)


async def test_slots_added_go_to_waiters_at_once_and_slots_removed_as_they_are_left() -> None:
    gate = PassGate(limit=AnswerTimeLimit(limit=2, fewest=1, steady=2, most=3))
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    log: list[str] = []
    releases = [asyncio.Event() for _ in range(6)]
    tasks = [
        asyncio.create_task(take_pass_slot(gate, Priority.OTHER, never, releases[i], log, f"p{i}")) for i in range(6)
    ]
    await settle()
    assert log == ["p0:slot", "p1:slot"] and gate.waiting == 4
    for second in range(1, 3):  # two windows in time while passes wait: 2 -> 3 slots (the most)
        for answer in range(20):
            gate.observe_answer(0.01, False, second - 1 + answer / 20)
        gate.observe_answer(0.01, False, second)
    await settle()
    assert gate.slots == 3 and log == ["p0:slot", "p1:slot", "p2:slot"] and gate.busy == 3
    for answer in range(20):  # a slow window: 3 -> 2 slots, and the three held stay held
        gate.observe_answer(2.0, False, 2 + answer / 20)
    gate.observe_answer(2.0, False, 3)
    assert gate.slots == 2 and gate.busy == 3
    releases[0].set()  # over the count: this slot goes, not to p3
    await settle()
    assert log == ["p0:slot", "p1:slot", "p2:slot"] and gate.busy == 2
    releases[1].set()  # at the count: this one is handed over
    await settle()
    assert log[3:] == ["p3:slot"] and gate.busy == 2
    for release in releases:
        release.set()
    await asyncio.gather(*tasks)
    assert gate.busy == 0 and gate.waiting == 0


async def test_passes_still_waiting_from_an_earlier_window_count_as_waiting() -> None:
    gate = PassGate(limit=AnswerTimeLimit(limit=1, fewest=1, steady=1, most=10))
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    release, log = asyncio.Event(), []
    tasks = [asyncio.create_task(take_pass_slot(gate, Priority.OTHER, never, release, log, f"p{i}")) for i in range(9)]
    await settle()
    for second in range(3):  # nobody new queues in these windows: the eight queued before still wait
        for answer in range(21):
            gate.observe_answer(0.01, False, second + answer / 20)
    await settle()
    assert gate.slots == 4 and len(log) == 4
    release.set()
    await asyncio.gather(*tasks)


async def test_a_gate_without_a_limit_ignores_answer_times() -> None:
    gate = PassGate(slots=4)
    for answer in range(100):
        gate.observe_answer(5.0, True, answer)
    assert gate.slots == 4


async def test_pass_slots_resized_at_random_are_never_lost_or_overcommitted() -> None:
    gate = PassGate(limit=AnswerTimeLimit(limit=4, fewest=1, steady=4, most=8))
    rng = random.Random(5)
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    inside, clock, sizes = 0, 0.0, {gate.slots}

    async def one() -> None:
        nonlocal inside, clock
        async with gate.slot(rng.choice(list(Priority)), never):
            inside += 1
            # Busy counts the slots handed to waiters that have not run yet too. A slot handed over
            # just before the count was lowered is still held: within the most it has been.
            assert inside <= gate.busy <= max(sizes)
            for _ in range(rng.randrange(5)):
                clock += 0.05
                gate.observe_answer(0.01, rng.random() < 0.3, clock)
                sizes.add(gate.slots)
                await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(one() for _ in range(300)))
    assert gate.busy == 0 and gate.waiting == 0
    assert len(sizes) > 3, "the count moved both ways"


@pytest.mark.parametrize(
    ("status", "priority"),
    [
        (None, Priority.OTHER),
        ({"phase": "Pending"}, Priority.OTHER),
        ({"phase": "Progressing"}, Priority.UNDER_WAY),
        ({"phase": "Paused"}, Priority.UNDER_WAY),
        ({"phase": "Succeeded"}, Priority.OTHER),
        ({"phase": "RolledBack"}, Priority.OTHER),
        ({"phase": "Failed"}, Priority.OTHER),
    ],
)
def test_a_rollout_is_under_way_while_progressing_or_paused(status: dict[str, str] | None, priority: Priority) -> None:
    rollout: dict[str, object] = {"metadata": {"name": "m"}}
    if status is not None:
        rollout["status"] = status
    assert priority_of(rollout) == priority
