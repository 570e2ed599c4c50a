"""Specs valid in shape but wrong in meaning get a message naming the field and what is allowed."""

from __future__ import annotations

from typing import Any

import pytest

from modelrollout.api.durations import format_duration, parse_duration
from modelrollout.api.validation import InvalidSpec, parse_spec

from .world import make_spec

METRIC = {"name": "latency", "prometheus": {"query": "q"}, "threshold": {"max": 1}}


def _steps(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"strategy": {"canary": {"steps": list(steps)}}}


CASES = [
    (
        _steps({"setWeight": 40}, {"setWeight": 40}),
        "spec.strategy.canary.steps[1].setWeight: must be greater than the previous weight (40), got 40",
    ),
    (_steps({"setWeight": 150}), "spec.strategy.canary.steps[0].setWeight: must be between 0 and 100, got 150"),
    (
        _steps({"analysis": {"metrics": ["latency", "drift"]}}) | {"analysis": {"metrics": [METRIC]}},
        "spec.strategy.canary.steps[0].analysis.metrics[1]: unknown metric 'drift'; "
        "defined in spec.analysis.metrics: latency",
    ),
    (
        {"analysis": {"metrics": [{**METRIC, "prometheus": {"query": "x{v='{{canary}}'}"}}]}},
        "spec.analysis.metrics[0].prometheus.query: unknown template variable {{canary}}; "
        "allowed: candidate, model, name, namespace, stable",
    ),
    (
        {"analysis": {"metrics": [{**METRIC, "threshold": {"min": 5, "max": 1}}]}},
        "spec.analysis.metrics[0].threshold: min (5) must not be greater than max (1)",
    ),
    (
        _steps({"pause": {"duration": "ten minutes"}}),
        "spec.strategy.canary.steps[0].pause.duration: 'ten minutes' is not a duration; expected a duration such "
        "as 30s, 5m, 1h30m or 250ms (units: ms, s, m, h)",
    ),
    (_steps({"setWeight": 10, "pause": {}}), "spec.strategy.canary.steps[0]: a step sets exactly one of"),
    ({"replicas": 0}, "spec.replicas: must be 1 or more, got 0"),
    ({"automation": "yolo"}, "spec.automation: Input should be 'manual', 'assisted' or 'auto' (got 'yolo')"),
    ({"model": {"name": "m"}}, "spec.model.version: is required"),
    ({"analysis": {"interval": "0s"}}, "spec.analysis.interval: must be longer than 0s"),
    (
        {"analysis": {"metrics": [METRIC, METRIC]}},
        "spec.analysis.metrics[1].name: 'latency' is defined twice",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), CASES, ids=[c[1].split(":")[0] for c in CASES])
def test_each_meaningless_spec_is_refused_with_its_field_path(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec) as refused:
        parse_spec(make_spec(**overrides))
    assert message in str(refused.value)


def test_a_good_spec_reads_with_its_defaults() -> None:
    spec = parse_spec(make_spec())
    assert spec.automation.value == "auto"
    assert spec.analysis.consecutive_error_limit == 4
    assert spec.progress_deadline_seconds == 600


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("2m", 120), ("1h30m", 5400), ("250ms", 0.25), ("1.5s", 1.5), ("0s", 0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_durations_format_for_people() -> None:
    assert format_duration(90) == "1m30s"
    assert format_duration(0.25) == "250ms"
    assert format_duration(3600) == "1h"


# What the CRD schema refuses on a real API server still gets a clear message where a spec reaches
# the operator without that check (a CRD from an older release): the path and the whole range.
BOUND_CASES = [
    (_steps({"setWeight": -5}), "spec.strategy.canary.steps[0].setWeight: must be between 0 and 100, got -5"),
    ({"replicas": -2}, "spec.replicas: must be 1 or more, got -2"),
    ({"progressDeadlineSeconds": 0}, "spec.progressDeadlineSeconds: must be 1 or more, got 0"),
    ({"service": {"port": 70000}}, "spec.service.port: must be between 1 and 65535, got 70000"),
    ({"service": {"targetPort": 0}}, "spec.service.targetPort: must be between 1 and 65535, got 0"),
    (
        _steps({"analysis": {"metrics": ["latency"], "count": 0}}) | {"analysis": {"metrics": [METRIC]}},
        "spec.strategy.canary.steps[0].analysis.count: must be 1 or more, got 0",
    ),
    (
        {"strategy": {"blueGreen": {"autoPromotionSeconds": -1}}},
        "spec.strategy.blueGreen.autoPromotionSeconds: must be 0 or more, got -1",
    ),
    ({"analysis": {"consecutiveErrorLimit": -1}}, "spec.analysis.consecutiveErrorLimit: must be 0 or more, got -1"),
    (
        {"analysis": {"metrics": [{**METRIC, "threshold": None, "compare": {"maxRatio": 0}}]}},
        "spec.analysis.metrics[0].compare.maxRatio: must be greater than 0, got 0",
    ),
    (
        {"analysis": {"metrics": [{**METRIC, "threshold": None, "compare": {"maxDifference": -0.5}}]}},
        "spec.analysis.metrics[0].compare.maxDifference: must be 0 or more, got -0.5",
    ),
    (
        {"analysis": {"metrics": [{**METRIC, "threshold": None, "drift": {"statistic": "ks", "minPValue": 1.5}}]}},
        "spec.analysis.metrics[0].drift.minPValue: must be greater than 0 and at most 1, got 1.5",
    ),
    (
        {"analysis": {"metrics": [{**METRIC, "threshold": None, "drift": {"statistic": "psi", "max": -0.1}}]}},
        "spec.analysis.metrics[0].drift.max: must be 0 or more, got -0.1",
    ),
    (
        {"analysis": {"metrics": [{**METRIC, "minCount": -1}]}},
        "spec.analysis.metrics[0].minCount: must be 0 or more, got -1",
    ),
    (
        {"analysis": {"metrics": [METRIC]}, "monitoring": {"metrics": ["latency"], "consecutiveFailures": 11}},
        "spec.monitoring.consecutiveFailures: must be between 1 and 10, got 11",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BOUND_CASES, ids=[c[1].split(":")[0] for c in BOUND_CASES])
def test_a_number_out_of_its_bounds_is_refused_with_the_range(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec) as refused:
        parse_spec(make_spec(**overrides))
    assert [str(error) for error in refused.value.errors] == [message]


def test_a_template_stored_out_of_bounds_is_refused_naming_the_field_inside_it() -> None:
    """A template stored under an older CRD (no bounds) reaches the operator: the message names
    the field of the template to fix, not only pydantic's words."""
    from modelrollout.api.templates import UnresolvedTemplate, resolve

    spec = {"analysis": {"metrics": [{"name": "errors", "template": {"name": "err"}}]}}
    template = {"prometheus": {"query": "up"}, "threshold": {"max": 1}, "minCount": -1}
    with pytest.raises(UnresolvedTemplate) as refused:
        resolve(spec, {"err": template})
    assert refused.value.path == "spec.analysis.metrics[0].template"
    assert "the template is invalid: spec.minCount:" in refused.value.message, refused.value.message
