"""The routine gate: a few measurement passes at once, first come first served, and never a wait
for a pass that a change, a stop or its own patience makes urgent."""

from __future__ import annotations

import asyncio
import random

import pytest

from modelrollout.runtime.pacing import RoutineGate


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


async def test_passes_beyond_the_slots_wait_their_turn_in_order() -> None:
    gate, release = RoutineGate(slots=2), [asyncio.Event() for _ in range(5)]
    log: list[str] = []
    tasks = [asyncio.create_task(hold(gate, Daemon(), 60, release[i], log, f"p{i}")) for i in range(5)]
    await asyncio.sleep(0.01)
    assert log == ["p0:slot", "p1:slot"]
    release[1].set()
    await asyncio.sleep(0.01)
    assert log == ["p0:slot", "p1:slot", "p2:slot"]
    release[0].set()
    release[2].set()
    await asyncio.sleep(0.01)
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
    await asyncio.sleep(0.01)
    daemon = Daemon()
    waiter = asyncio.create_task(hold(gate, daemon, 0.05 if urgency == "patience" else 60, released, log, "waiter"))
    await asyncio.sleep(0.01)
    assert log == ["holder:slot"]
    if urgency == "wake":
        daemon.wake.set()
    elif urgency == "stop":
        daemon.stopping.set_result(None)
    await asyncio.sleep(0.1)
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
