"""One decision per pass: the engine says what it needs observed, and what a pass's actions gave
(a hook's outcome, a refused route write) is an observation of the next pass."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Phase
from modelrollout.engine.machine import needs
from modelrollout.engine.types import Deadlines, FireHook, HookResult, RouteState
from tests.unit.test_engine_analysis import TRAINING_DRIFT, metric, training_reference_and_drifted_inputs
from tests.unit.world import World, make_spec

ROUTED = {"gatewayAPI": {"httpRoute": "scorer"}}


def test_a_refused_route_write_freezes_the_rollout_on_the_next_pass() -> None:
    world = World(make_spec("1.0.0", trafficRouting=ROUTED), route=RouteState())
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    refusal = "HTTPRoute ml/scorer: its rule mirrors to another backend already"
    world.route_refusal = refusal
    refused = world.step(0)
    assert world.status.phase == Phase.FAILED
    assert world.status.message == refusal
    degraded = world.status.condition("Degraded")
    assert degraded is not None and degraded.status == "True" and degraded.reason == "TrafficRoutingInvalid"
    assert [event.reason for event in refused.events] == ["TrafficRoutingInvalid"]
    assert refused.actions == [], "nothing moves while the router refuses the route"
    # The route may be fixed: the next pass without a refusal goes on from where the rollout stood.
    world.step(1)
    assert world.status.phase in (Phase.PROGRESSING, Phase.PAUSED)
    assert "SpecValid" in world.reasons()


def test_a_hook_outcome_is_folded_into_status_by_the_pass_after_the_one_that_fired() -> None:
    reference, _, _, drifted = training_reference_and_drifted_inputs()
    monitoring = {"interval": "30s", "metrics": ["inputs"], "hook": {"webhook": {"url": "http://127.0.0.1:9/retrain"}}}
    world = World(
        make_spec(
            "1.0.0",
            analysis={"metrics": [metric("inputs", drift=TRAINING_DRIFT, background=False)]},
            monitoring=monitoring,
        )
    )
    world.run(Phase.SUCCEEDED)
    world.metric_values["inputs"] = Observation(value=None, vectors={"candidate": drifted}, reference=reference)
    fired: list[FireHook] = []
    while not fired:
        fired = [action for action in world.step(31).actions if isinstance(action, FireHook)]
    assert world.status.monitoring is not None and world.status.monitoring.hook is not None
    episode = world.status.monitoring.hook.episode
    world.hook_result = HookResult(episode, delivered=False, error="HTTP 500")
    failed = world.step(0)
    assert [event.reason for event in failed.events] == ["RetrainingHookFailed"]
    assert world.status.monitoring.hook.last_error == "HTTP 500"
    assert not any(isinstance(action, FireHook) for action in failed.actions), "the retry waits for its backoff"
    world.step(11)
    world.hook_result = HookResult(episode, delivered=True)
    world.step(0)
    assert world.status.monitoring.hook.state == "Delivered" and world.status.monitoring.hook.last_error == ""
    assert Counter(world.reasons())["RetrainingHookFired"] == 1
    # An outcome of an episode that is no longer the current one changes nothing.
    world.hook_result = HookResult("another-episode", delivered=False, error="late")
    assert "RetrainingHookFailed" not in [event.reason for event in world.step(0).events]


def test_fresh_deployments_are_asked_for_only_when_a_deadline_may_fail_a_version() -> None:
    world = World(make_spec("1.0.0", progressDeadlineSeconds=30))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    candidate = world.status.candidate_revision
    assert candidate is not None
    assert not needs(world.ref(), world.status, world.now, world.deployments).fresh_deployments
    later = world.now + timedelta(seconds=31)
    # Ready per the watch: no deadline can fail it, no read.
    assert not needs(world.ref(), world.status, later, world.deployments).fresh_deployments
    world.unready.add(candidate)
    world._set(candidate, world.deployments[candidate].replicas)
    assert needs(world.ref(), world.status, later, world.deployments).fresh_deployments


def test_the_decision_says_when_to_look_again_as_data() -> None:
    world = World(make_spec("1.0.0"))
    world.run(Phase.SUCCEEDED)
    settled = world.step(1)
    assert settled.deadlines == Deadlines(), "a settled rollout waits for the periodic resync"
    assert Deadlines.at_once() == Deadlines(next=0.0, urgent=0.0)
