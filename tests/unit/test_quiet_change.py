"""Which status changes may wait to be written: passing background measurements and nothing else."""

from __future__ import annotations

import pytest

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Phase
from modelrollout.runtime.status_writer import quiet_change
from tests.unit.world import World, make_spec

STEPS = [{"setWeight": 25}, {"pause": {"duration": "10m"}}, {"setWeight": 50}]


def pausing_canary(measured: bool = True) -> World:
    world = World(make_spec(strategy={"canary": {"steps": STEPS}}))
    world.run(Phase.SUCCEEDED)
    world.metric_values["error-rate"] = Observation(value=0.01)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    for _ in range(60):
        world.step(1)
        if world.status.current_step_index == 1:
            break
    assert world.status.background_analysis is not None
    if measured:
        while not world.status.background_analysis.metrics:
            world.step(1)
    return world


def test_a_passing_background_measurement_is_quiet_the_first_one_too() -> None:
    world = pausing_canary(measured=False)
    assert world.status.background_analysis is not None and not world.status.background_analysis.metrics
    before = world.status.wire()
    world.step(10)  # the first background measurement falls due, and passes
    after = world.status.wire()
    assert after["backgroundAnalysis"]["metrics"][0]["successful"] == 1
    assert quiet_change(before, after)
    world.step(10)  # and the next one
    assert world.status.wire()["backgroundAnalysis"]["metrics"][0]["successful"] == 2
    assert quiet_change(after, world.status.wire())


@pytest.mark.parametrize("measured", [True, False])
def test_a_failing_or_erroring_measurement_and_a_step_are_news(measured: bool) -> None:
    world = pausing_canary(measured)
    before = world.status.wire()
    world.metric_values["error-rate"] = Observation(value=None, error="Prometheus unreachable")
    world.step(10)
    assert world.status.phase == Phase.PROGRESSING  # one error is within the limits: only a counter moved
    assert not quiet_change(before, world.status.wire())

    world = pausing_canary(measured)
    before = world.status.wire()
    world.metric_values["error-rate"] = Observation(value=0.4)
    world.step(10)
    assert world.status.phase == Phase.ROLLED_BACK
    assert not quiet_change(before, world.status.wire())

    world = pausing_canary(measured)
    before = world.status.wire()
    world.step(600)  # the pause ends: a step, and a measurement with it
    assert world.status.current_step_index == 2
    assert not quiet_change(before, world.status.wire())


def test_no_change_and_a_metric_gone_are_not_quiet_changes() -> None:
    world = pausing_canary()
    before = world.status.wire()
    assert not quiet_change(before, before)  # nothing to hold
    after = world.status.wire()
    after["backgroundAnalysis"]["metrics"] = []
    assert not quiet_change(before, after)
