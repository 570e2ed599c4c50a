"""`modelrollout status` draws what a person asks: phase, versions, weights, steps, measurements."""

from __future__ import annotations

from rich.console import Console

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Phase
from modelrollout.status_view import render

from .world import World, make_spec


def _screen(rollout: dict[str, object]) -> str:
    console = Console(record=True, width=160)
    console.print(render(rollout))
    return console.export_text()


def test_status_shows_the_current_step_weights_and_the_failing_measurement() -> None:
    world = World(make_spec("1.0.0"))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.metric_values["error-rate"] = Observation(value=0.01)
    world.step(1)
    world.step(1)
    world.step(10)
    screen = _screen(
        {"metadata": {"name": "fraud-scorer", "namespace": "ml"}, "spec": world.spec, "status": world.status.wire()}
    )
    assert "ml/fraud-scorer" in screen
    assert "Progressing" in screen
    assert "stable 75%  candidate 25%" in screen
    assert "setWeight 25" in screen and "done" in screen
    assert "pause 30s" in screen and "running" in screen
    assert "error-rate" in screen and "0.01" in screen and "Running" in screen

    world.metric_values["error-rate"] = Observation(value=0.5)
    world.run(Phase.ROLLED_BACK, seconds=10)
    screen = _screen(
        {"metadata": {"name": "fraud-scorer", "namespace": "ml"}, "spec": world.spec, "status": world.status.wire()}
    )
    assert "RolledBack" in screen and "0.5 is not at most 0.05" in screen


def test_status_of_a_rollout_not_yet_seen_by_the_operator() -> None:
    screen = _screen({"metadata": {"name": "new", "namespace": "ml"}, "spec": make_spec()})
    assert "Pending" in screen and "setWeight 25" in screen
