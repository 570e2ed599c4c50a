"""The built-in templates: SDK metric names, known variables only, arguments with defaults."""

from __future__ import annotations

import re

import pytest

from modelrollout.api.models import PrometheusQuery, render_template, template_variables
from modelrollout.vocabulary.builtin_templates import BUILTIN_TEMPLATES, TEMPLATE_VARIABLES, TemplateError, instantiate
from modelrollout_sdk import names

QUERY_KEYS = ("query", "stableQuery", "countQuery", "stableCountQuery")


def test_the_built_in_set() -> None:
    assert set(BUILTIN_TEMPLATES) >= {
        "latency-p99",
        "latency-p99-vs-stable",
        "error-rate",
        "input-drift",
        "output-drift",
        "output-score-drift",
        "null-predictions",
    }


@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
def test_every_template_instantiates_to_queries_the_spec_accepts(name: str) -> None:
    data = instantiate(name)
    assert data["args"]["window"] == "5m"
    for key in QUERY_KEYS:
        if key not in data:
            continue
        query = data[key]
        PrometheusQuery(query=query)  # only known {{variables}} are left
        assert set(template_variables(query)) <= set(TEMPLATE_VARIABLES)
        assert "[5m]" in query
        assert 'rollout="{{name}}"' in query and 'namespace="{{namespace}}"' in query
        version = "{{stable}}" if key.startswith("stable") else "{{candidate}}"
        assert f'version="{version}"' in query
        rendered = render_template(
            query, {"name": "r", "namespace": "ns", "stable": "1", "candidate": "2", "model": "m"}
        )
        assert "{{" not in rendered
        assert rendered.count("(") == rendered.count(")")
    limits = data[data["kind"]]
    assert all(isinstance(value, float) for key, value in limits.items() if key in {"max", "maxRatio", "minCount"})


def test_queries_use_the_sdk_metric_names() -> None:
    def metric(name: str) -> str:
        return str(instantiate(name)["query"])

    assert f"{names.REQUEST_DURATION_SECONDS}_bucket" in metric("latency-p99")
    assert names.REQUESTS_TOTAL in metric("error-rate") and 'outcome="error"' in metric("error-rate")
    assert metric("input-drift").startswith(f"sum by (le, feature) (increase({names.INPUT_FEATURE_VALUE_BUCKET}{{")
    assert metric("output-drift").startswith(f"sum by (class) (increase({names.PREDICTIONS_TOTAL}{{")
    assert f"{names.PREDICTION_SCORE}_bucket" in metric("output-score-drift")
    assert names.NULL_PREDICTIONS_TOTAL in metric("null-predictions")


def test_compare_and_drift_have_a_stable_side_differing_only_in_version() -> None:
    for name in ("latency-p99-vs-stable", "input-drift", "output-drift", "output-score-drift"):
        data = instantiate(name)
        assert data["stableQuery"] == data["query"].replace("{{candidate}}", "{{stable}}")


def test_limits_and_kinds() -> None:
    assert instantiate("latency-p99")["threshold"] == {"max": 0.5, "minCount": 100.0}
    assert instantiate("latency-p99-vs-stable")["compare"]["direction"] == "lowerIsBetter"
    drift = instantiate("input-drift")["drift"]
    assert (drift["statistic"], drift["max"], drift["groupBy"], drift["reference"]) == ("psi", 0.2, "feature", "stable")
    output = instantiate("output-drift")["drift"]
    assert (output["statistic"], output["minPValue"], output["label"]) == ("chiSquare", 0.005, "class")


def test_arguments_override_defaults() -> None:
    data = instantiate("input-drift", {"window": "10m", "maxPsi": "0.1"})
    assert "[10m]" in data["query"] and "[10m]" in data["stableQuery"]
    assert data["drift"]["max"] == 0.1
    assert not re.search(r"\{\{(window|maxPsi)\}\}", str(data))


@pytest.mark.parametrize(
    ("name", "args", "match"),
    [
        ("latency-p100", {}, "unknown analysis template 'latency-p100'; built-in templates: error-rate"),
        ("latency-p99", {"windw": "5m"}, "unknown argument\\(s\\) windw"),
        ("latency-p99", {"window": "5 minutes"}, "not a PromQL duration"),
        ("latency-p99", {"maxSeconds": "fast"}, "'maxSeconds': 'fast' is not a number"),
        ("latency-p99", {"maxSeconds": "nan"}, "is not a number"),
    ],
)
def test_bad_template_references(name: str, args: dict[str, str], match: str) -> None:
    with pytest.raises(TemplateError, match=match):
        instantiate(name, args)


def test_to_dict_keeps_placeholders() -> None:
    data = BUILTIN_TEMPLATES["input-drift"].to_dict()
    assert "{{window}}" in data["query"]
    assert data["drift"]["max"] == "{{maxPsi}}"
    assert {"name": "window", "default": "5m"}.items() <= data["args"][0].items()
