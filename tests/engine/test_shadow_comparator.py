"""A mirror step with compare: the engine runs the comparator while the candidate is in flight, judges the
agreement metric from its pairs, and takes the comparator away when the candidate leaves."""

from __future__ import annotations

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Phase
from modelrollout.engine.types import DeleteComparator, EnsureComparator, RouteState
from tests.unit.world import World, make_spec

ROUTED = {"gatewayAPI": {"httpRoute": "scorer"}}
STEPS = {
    "canary": {
        "steps": [
            {"mirror": {"percent": 50, "compare": {}}},
            {"analysis": {"metrics": ["agreement"], "count": 1, "interval": "10s"}},
            {"setWeight": 50},
        ]
    }
}
AGREEMENT = {"name": "agreement", "agreement": {"min": 0.97, "minPairs": 100}, "background": False}


def _world() -> World:
    spec = make_spec("1.0.0", trafficRouting=ROUTED, strategy=STEPS, analysis={"metrics": [AGREEMENT]})
    world = World(spec, route=RouteState())
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    return world


def _comparator_actions(world: World) -> list[object]:
    return [a for d in world.decisions for a in d.actions if isinstance(a, EnsureComparator | DeleteComparator)]


def test_a_disagreeing_shadow_is_rolled_back_and_its_comparator_removed() -> None:
    world = _world()
    world.metric_values["agreement"] = Observation(value=None, values={"agreed": 150.0, "pairs": 300.0})
    world.run(Phase.ROLLED_BACK)
    actions = _comparator_actions(world)
    ensured = [a for a in actions if isinstance(a, EnsureComparator)]
    assert ensured and ensured[0] == EnsureComparator(
        world.status.rolled_back_revision or "", stable_version="1.0.0", candidate_version="2.0.0"
    )
    assert isinstance(actions[-1], DeleteComparator)
    assert world.route == RouteState()  # no mirror left, no weight ever given
    queries = [q for q in world.queries if "modelrollout_shadow_pairs_total" in q]
    assert queries and 'rollout="fraud-scorer"' in queries[0] and 'candidate="2.0.0"' in queries[0]
    # Once gone, it is not asked for again on later passes.
    world.step(30)
    assert not [a for a in world.decisions[-1].actions if isinstance(a, EnsureComparator | DeleteComparator)]


def test_an_agreeing_shadow_goes_on_and_its_comparator_goes_at_promotion() -> None:
    world = _world()
    world.metric_values["agreement"] = Observation(value=None, values={"agreed": 300.0, "pairs": 300.0})
    world.run(Phase.SUCCEEDED)
    assert "RolledBack" not in world.reasons()
    assert isinstance(_comparator_actions(world)[-1], DeleteComparator)


def test_too_few_pairs_waits_rather_than_passing() -> None:
    world = _world()
    world.metric_values["agreement"] = Observation(value=None, values={"agreed": 10.0, "pairs": 10.0})
    for _ in range(40):
        world.step(5)
    assert world.status.phase in (Phase.PROGRESSING, Phase.PAUSED)
    assert world.status.candidate_version == "2.0.0" and world.status.weights.candidate == 0
