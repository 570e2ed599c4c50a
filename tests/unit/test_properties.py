"""Property-based: any spec, valid or not, never crashes the engine, and an invalid one never moves
traffic and is reported with the field path."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelrollout.api.crd import crd_manifest
from modelrollout.api.models import Phase
from modelrollout.api.validation import InvalidSpec, parse_spec
from modelrollout.engine.machine import decide

from .world import World, make_spec

DURATIONS = st.sampled_from(["0s", "1s", "30s", "2m", "1h30m", "250ms", "soon", "", "5 minutes", "-1s", "1x"])
NAMES = st.sampled_from(["error-rate", "latency", "nope", ""])
VARIABLES = st.sampled_from(["{{name}}", "{{candidate}}", "{{stable}}", "{{namespace}}", "{{oops}}", "{{}}", ""])
NUMBERS = st.one_of(st.integers(-200, 200), st.floats(allow_nan=False, allow_infinity=False, width=32))

step = st.one_of(
    st.fixed_dictionaries({"setWeight": st.integers(-20, 140)}),
    st.fixed_dictionaries({"pause": st.one_of(st.just({}), st.fixed_dictionaries({"duration": DURATIONS}))}),
    st.fixed_dictionaries(
        {"analysis": st.fixed_dictionaries({"metrics": st.lists(NAMES, max_size=3), "count": st.integers(-1, 4)})}
    ),
    st.fixed_dictionaries({"mirror": st.fixed_dictionaries({"percent": st.integers(-10, 120)})}),
    st.fixed_dictionaries({"setHeaderRoute": st.fixed_dictionaries({"name": st.just("x-c"), "value": st.just("1")})}),
    st.fixed_dictionaries({"setWeight": st.integers(0, 100), "pause": st.just({})}),  # two kinds in one step
)
threshold = st.one_of(
    st.fixed_dictionaries({"max": NUMBERS}),
    st.fixed_dictionaries({"min": NUMBERS, "max": NUMBERS}),
    st.just({}),
)
metric = st.fixed_dictionaries(
    {
        "name": NAMES,
        "prometheus": st.fixed_dictionaries({"query": st.builds(lambda v: f'm{{version="{v}"}}', VARIABLES)}),
        "threshold": threshold,
    }
)
spec_changes = st.fixed_dictionaries(
    {},
    optional={
        "replicas": st.integers(-2, 12),
        "automation": st.sampled_from(["auto", "assisted", "manual", "sometimes"]),
        "strategy": st.one_of(
            st.fixed_dictionaries({"canary": st.fixed_dictionaries({"steps": st.lists(step, max_size=8)})}),
            st.fixed_dictionaries({"blueGreen": st.fixed_dictionaries({"scaleDownDelaySeconds": st.integers(-5, 60)})}),
        ),
        "analysis": st.fixed_dictionaries(
            {"interval": DURATIONS, "metrics": st.lists(metric, max_size=4), "failureLimit": st.integers(-1, 3)}
        ),
        "trafficRouting": st.one_of(st.just({}), st.just({"gatewayAPI": {"httpRoute": "r"}})),
        "progressDeadlineSeconds": st.integers(-5, 900),
    },
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=spec_changes)
def test_any_spec_never_crashes_and_an_invalid_one_never_moves_traffic(changes: dict[str, Any]) -> None:
    world = World(make_spec("1.0.0"))
    world.run(Phase.SUCCEEDED)
    before = copy.deepcopy(world.deployments)
    spec = {**make_spec("2.0.0"), **changes}
    try:
        parse_spec(spec)
        valid = True
    except InvalidSpec as invalid:
        valid = False
        assert all(error.path.startswith("spec") for error in invalid.errors)
    world.spec = spec
    world.generation += 1
    for _ in range(5):
        decision = world.step(7)
        if not valid:
            assert decision.actions == []
    if not valid:
        assert world.deployments == before
        assert world.status.phase == Phase.FAILED
        degraded = world.status.condition("Degraded")
        assert degraded is not None and degraded.reason == "InvalidSpec" and "spec." in degraded.message


@settings(max_examples=100, deadline=None)
@given(
    raw=st.dictionaries(
        st.text(max_size=8),
        st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)),
        max_size=5,
    )
)
def test_garbage_specs_are_refused_not_crashed_on(raw: dict[str, Any]) -> None:
    world = World(raw)
    decision = decide(world.ref(), world.status, world.observations(), world.now)
    assert decision.actions == []
    assert decision.status.phase == Phase.FAILED


def test_huge_specs_are_handled() -> None:
    steps: list[dict[str, Any]] = []
    for index in range(1000):
        steps.append({"setWeight": 1 + index // 11} if index % 11 == 0 else {"pause": {"duration": "1s"}})
    metrics = [
        {
            "name": f"m{index}",
            "prometheus": {"query": f'q{index}{{version="{{{{candidate}}}}"}}'},
            "threshold": {"max": 1},
        }
        for index in range(500)
    ]
    world = World(
        make_spec("1.0.0", strategy={"canary": {"steps": steps}}, analysis={"interval": "5s", "metrics": metrics})
    )
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    for _ in range(20):
        world.step(6)
    assert world.status.phase == Phase.PROGRESSING
    background = world.status.background_analysis
    assert background is not None and len(background.metrics) == 500
    assert all(len(result.measurements) <= 10 for result in background.metrics)
    assert len(world.status.wire()["backgroundAnalysis"]["metrics"]) == 500
    # Kubernetes stores objects up to about 1.5 MiB: the status of a huge spec stays well below.
    assert len(json.dumps(world.status.wire())) < 512 * 1024


# Bounded fields of the spec, as (CRD schema path, how to set it in a spec).
def _weight(value: float) -> dict[str, Any]:
    return {"strategy": {"canary": {"steps": [{"setWeight": value}]}}}


def _mirror(value: float) -> dict[str, Any]:
    return {
        "trafficRouting": {"gatewayAPI": {"httpRoute": "r"}},
        "strategy": {"canary": {"steps": [{"mirror": {"percent": value}}]}},
    }


def _metric(**fields: Any) -> dict[str, Any]:
    return {"analysis": {"metrics": [{"name": "m", "prometheus": {"query": "q"}, **fields}]}}


BOUNDED = {
    "replicas": lambda v: {"replicas": v},
    "progressDeadlineSeconds": lambda v: {"progressDeadlineSeconds": v},
    "service.port": lambda v: {"service": {"port": v}},
    "strategy.canary.steps[0].setWeight": _weight,
    "strategy.canary.steps[0].mirror.percent": _mirror,
    "strategy.blueGreen.scaleDownDelaySeconds": lambda v: {"strategy": {"blueGreen": {"scaleDownDelaySeconds": v}}},
    "analysis.failureLimit": lambda v: {"analysis": {"failureLimit": v}},
    "analysis.metrics[0].compare.maxRatio": lambda v: _metric(compare={"maxRatio": v}),
    "analysis.metrics[0].drift.minPValue": lambda v: _metric(drift={"statistic": "ks", "minPValue": v}),
    "analysis.metrics[0].minCount": lambda v: _metric(threshold={"max": 1}, minCount=v),
}


def _crd_allows(path: str, value: float) -> bool:
    """What the API server decides, from the CRD's own minimum/maximum/exclusiveMinimum."""
    node: dict[str, Any] = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for part in path.split("."):
        name, _, index = part.partition("[")
        node = node["properties"][name]
        if index:
            node = node["items"]
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None and (value < low or (node.get("exclusiveMinimum") is True and value == low)):
        return False
    return high is None or value <= high


@settings(max_examples=200, deadline=None)
@given(path=st.sampled_from(sorted(BOUNDED)), value=st.integers(-3, 70000) | st.sampled_from([0, 1, 100, 101, 65535]))
def test_the_operator_refuses_a_number_exactly_where_the_crd_does(path: str, value: int) -> None:
    # One source for each bound: the operator's judgement of a stored spec never disagrees with the
    # API server's, so a spec from an older CRD is refused for the same numbers, naming the field.
    if "minPValue" in path or "maxRatio" in path:
        value = value / 100  # these are fractions: 0, 0.01, ..., with 1 and above out of range for p
    spec = {**make_spec(), **BOUNDED[path](value)}
    try:
        parse_spec(spec)
        refused = []
    except InvalidSpec as invalid:
        refused = [str(error) for error in invalid.errors if error.path == f"spec.{path}"]
    if _crd_allows(path, value):
        assert refused == []
    else:
        assert len(refused) == 1 and "must be " in refused[0] and refused[0].endswith(f", got {value:g}"), refused
