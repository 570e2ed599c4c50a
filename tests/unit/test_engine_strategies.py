"""Blue-green, shadow (mirror) and header-routed steps, and traffic routers, pass by pass."""

from __future__ import annotations

from collections import Counter

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Phase
from modelrollout.engine.machine import decide
from modelrollout.engine.types import CommandAction, EnsureService, Observations, SetRoute
from modelrollout.vocabulary.routes import HeaderMatch, RouteState, RouteView

from .world import World, make_spec

GOOD = Observation(value=0.01)
BAD = Observation(value=0.5)
GATEWAY = {"gatewayAPI": {"httpRoute": "fraud-scorer"}}
GATE = {"metrics": ["error-rate"], "count": 2, "interval": "5s"}


def routed(steps: list[dict[str, object]], **extra: object) -> World:
    world = World(make_spec("1.0.0", trafficRouting=GATEWAY, strategy={"canary": {"steps": steps}}, **extra))
    world.route = RouteState()
    world.run(Phase.SUCCEEDED)
    return world


def selector_revision(world: World, service: str) -> str | None:
    return dict(world.services[service]).get("modelrollout.io/revision")


# --- services ---------------------------------------------------------------------------------------


def test_with_a_router_stable_and_canary_services_select_one_version_each() -> None:
    world = routed([{"setWeight": 20}, {"pause": {}}])
    stable = world.status.stable_revision
    assert set(world.services) == {"fraud-scorer", "fraud-scorer-stable", "fraud-scorer-canary"}
    assert selector_revision(world, "fraud-scorer-stable") == stable
    assert selector_revision(world, "fraud-scorer-canary") == stable  # no candidate: routes stay valid
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.PAUSED)
    assert selector_revision(world, "fraud-scorer-canary") == world.status.candidate_revision
    assert selector_revision(world, "fraud-scorer-stable") == stable


# --- canary through a router -------------------------------------------------------------------------


def test_router_canary_sets_weights_on_the_route_and_keeps_stable_at_full_size() -> None:
    world = routed([{"setWeight": 20}, {"pause": {}}])
    world.metric_values["error-rate"] = GOOD
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.PAUSED)
    assert world.route == RouteState(candidate_weight=20)
    assert world.replicas("1.0.0") == 4 and world.replicas("2.0.0") == 1
    assert world.status.weights.candidate == 20 and world.status.weights.stable == 80
    world.command(CommandAction.PROMOTE)
    world.run(Phase.SUCCEEDED)
    assert world.route == RouteState()
    assert world.replicas("2.0.0") == 4 and world.replicas("1.0.0") == 0
    assert selector_revision(world, "fraud-scorer-stable") == world.status.stable_revision


def test_a_step_waits_until_the_router_reports_the_weight() -> None:
    world = routed([{"setWeight": 20}, {"setWeight": 60}])
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    world.step(1)
    lagging = RouteState()  # the route has not taken the edit yet
    observed = Observations(
        deployments=dict(world.deployments), services=dict(world.services), route=RouteView(state=lagging)
    )
    decision = decide(world.ref(), world.status, observed, world.now)
    assert decision.status.current_step_index == world.status.current_step_index
    assert SetRoute(world.route) in decision.actions or SetRoute(RouteState(candidate_weight=20)) in decision.actions


def test_shadow_then_canary_then_promote() -> None:
    steps = [
        {"mirror": {"percent": 100}},
        {"pause": {"duration": "10m"}},
        {"mirror": {"percent": 0}},
        {"setWeight": 50},
        {"pause": {"duration": "1m"}},
    ]
    world = routed(steps)
    world.metric_values["error-rate"] = GOOD
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    world.step(1)
    assert world.route == RouteState(mirror_percent=100)
    world.step(1)  # status reports what the router has in place, read back on the next pass
    assert world.status.weights.candidate == 0 and world.status.weights.mirror == 100
    assert world.replicas("2.0.0") == 4  # a full copy of traffic needs full capacity
    assert world.status.background_analysis is not None  # judged while nobody sees its answers
    world.run(Phase.SUCCEEDED, seconds=15)
    weights = [d.status.weights for d in world.decisions]
    assert any(w.mirror == 100 and w.candidate == 0 for w in weights)
    assert any(w.candidate == 50 and w.mirror == 0 for w in weights)


def test_a_failed_shadow_ends_the_rollout_before_any_user_saw_the_candidate() -> None:
    world = routed([{"mirror": {"percent": 100}}, {"pause": {"duration": "10m"}}, {"setWeight": 50}])
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.metric_values["error-rate"] = BAD
    world.run(Phase.ROLLED_BACK, seconds=5)
    assert all(d.status.weights.candidate == 0 for d in world.decisions)
    assert world.route == RouteState()  # mirror removed
    assert world.replicas("2.0.0") == 0


def test_header_route_sends_testers_to_the_candidate() -> None:
    world = routed([{"setHeaderRoute": {"name": "x-canary", "value": "yes"}}, {"pause": {}}])
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.PAUSED)
    assert world.route == RouteState(header=HeaderMatch("x-canary", "yes"))
    assert world.replicas("2.0.0") == 1
    assert world.status.weights.header_route is True and world.status.weights.candidate == 0
    world.command(CommandAction.ABORT)
    world.step(1)
    assert world.route == RouteState()


def test_a_missing_route_is_reported_and_nothing_moves() -> None:
    world = routed([{"setWeight": 20}])
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    observed = Observations(
        deployments=dict(world.deployments),
        services=dict(world.services),
        route=RouteView(error="HTTPRoute ml/fraud-scorer not found"),
    )
    decision = decide(world.ref(), world.status, observed, world.now)
    assert decision.actions == []
    assert decision.status.phase == Phase.FAILED
    degraded = decision.status.condition("Degraded")
    assert degraded is not None and degraded.reason == "TrafficRoutingInvalid"
    assert "HTTPRoute ml/fraud-scorer not found" in degraded.message


def test_mirror_without_a_router_is_an_invalid_spec() -> None:
    world = World(make_spec(strategy={"canary": {"steps": [{"mirror": {"percent": 50}}]}}))
    decision = world.step()
    assert decision.actions == []
    assert "spec.strategy.canary.steps[0].mirror: needs a traffic router" in world.status.message


# --- blue-green ----------------------------------------------------------------------------------------


def blue_green(**options: object) -> World:
    world = World(make_spec("1.0.0", strategy={"blueGreen": {"scaleDownDelaySeconds": 30, **options}}))
    world.run(Phase.SUCCEEDED)
    return world


def test_blue_green_brings_up_a_full_preview_switches_at_once_and_scales_blue_down_later() -> None:
    world = blue_green(prePromotionAnalysis=GATE)
    world.metric_values["error-rate"] = GOOD
    blue = world.status.stable_revision
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.step(1)
    green = world.status.candidate_revision
    assert world.replicas("2.0.0") == 4 and world.replicas("1.0.0") == 4
    assert selector_revision(world, "fraud-scorer") == blue
    assert selector_revision(world, "fraud-scorer-preview") == green
    for _ in range(20):
        world.step(1)
        if world.status.switched_at:
            break
    assert selector_revision(world, "fraud-scorer") == green  # the switch
    assert world.status.weights.candidate == 100
    assert world.replicas("1.0.0") == 4  # blue kept for the way back
    world.step(10)
    assert world.replicas("1.0.0") == 4
    world.run(Phase.SUCCEEDED, seconds=10)
    assert world.status.stable_version == "2.0.0"
    assert world.replicas("1.0.0") == 0
    assert "Switched" in world.reasons() and "Promoted" in world.reasons()


def test_blue_green_post_promotion_failure_switches_back_instantly() -> None:
    world = blue_green(postPromotionAnalysis=GATE)
    blue = world.status.stable_revision
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.metric_values["error-rate"] = BAD
    world.run(Phase.ROLLED_BACK, seconds=1)
    assert "post-promotion analysis" in world.status.message
    assert selector_revision(world, "fraud-scorer") == blue
    assert world.replicas("1.0.0") == 4 and world.replicas("2.0.0") == 0
    switched = [d for d in world.decisions if d.status.switched_at]
    assert switched  # it did switch before the analysis failed
    counts = Counter(world.reasons())
    assert counts["Switched"] == 1 and counts["AnalysisFailed"] == 1


def test_blue_green_without_auto_promotion_waits_for_a_person() -> None:
    world = blue_green(autoPromotion=False)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.PAUSED)
    assert world.status.pause_reason == "Promotion"
    assert selector_revision(world, "fraud-scorer") == world.status.stable_revision
    world.command(CommandAction.PROMOTE)
    world.run(Phase.SUCCEEDED, seconds=10)
    assert world.status.stable_version == "2.0.0"


def test_blue_green_auto_promotion_seconds_delays_the_switch() -> None:
    world = blue_green(autoPromotionSeconds=60)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    for _ in range(5):
        world.step(5)
    assert world.status.switched_at is None
    world.step(60)
    world.step(1)
    assert world.status.switched_at is not None


def test_blue_green_abort_after_the_switch_switches_back() -> None:
    world = blue_green(scaleDownDelaySeconds=600)
    blue = world.status.stable_revision
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    for _ in range(10):
        world.step(1)
    assert world.status.switched_at is not None
    world.command(CommandAction.ABORT)
    decision = world.step(1)
    assert (
        EnsureService(
            "fraud-scorer", (("modelrollout.io/revision", str(blue)), ("modelrollout.io/rollout", "fraud-scorer"))
        )
        in decision.actions
    )
    assert world.status.phase == Phase.ROLLED_BACK


def test_a_first_deployment_naming_a_missing_route_waits_for_it() -> None:
    world = World(make_spec("1.0.0", trafficRouting=GATEWAY))
    observed = Observations(route=RouteView(error="HTTPRoute ml/fraud-scorer does not exist"))
    decision = decide(world.ref(), world.status, observed, world.now)
    assert decision.actions == []
    assert decision.status.phase == Phase.FAILED
    assert "HTTPRoute ml/fraud-scorer does not exist" in decision.status.message
