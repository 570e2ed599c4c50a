"""The gates passes wait at. The routine gate: a few measurement passes at once, first come first
served, and never a wait for a pass that a change, a stop or its own patience makes urgent. The pass
gate: a bounded number of other passes, a freed slot going to a rollout under way first."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from modelrollout.runtime.pacing import PassGate, Priority, RoutineGate
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
