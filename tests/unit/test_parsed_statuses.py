"""A pass starts from the status the previous pass decided when the stored one is unchanged."""

from __future__ import annotations

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Phase
from modelrollout.engine.machine import decide
from modelrollout.runtime.cache import ParsedStatuses
from tests.unit.world import World, make_spec

KEY = ("ml", "fraud-scorer")


def test_an_unchanged_status_is_not_parsed_again_and_a_changed_one_is() -> None:
    world = World(make_spec())
    world.run(Phase.SUCCEEDED)
    world.metric_values["error-rate"] = Observation(value=0.01)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    statuses = ParsedStatuses()
    statuses.remember(KEY, world.status)
    stored = world.status.wire()
    assert statuses.read(KEY, stored) is world.status
    # deciding from it leaves it as it was: the next pass may start from it again
    before = world.status.wire()
    decide(world.ref(), world.status, world.observations(), world.now)
    assert world.status.wire() == before
    # someone else wrote status (or a restart): the stored dict is parsed
    edited = {**stored, "message": "edited by hand"}
    parsed = statuses.read(KEY, edited)
    assert parsed is not world.status and parsed.message == "edited by hand"
    statuses.forget(KEY)
    assert statuses.read(KEY, stored) is not world.status
