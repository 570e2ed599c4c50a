"""Comparison with stable, drift, minimum sample size, templates and monitoring, pass by pass."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Phase
from modelrollout.engine.monitoring import hook_backoff, record_hook_result
from modelrollout.engine.types import FireHook, HookResult
from modelrollout.vocabulary.samples import Sample

from .world import World, make_spec

DATA = Path(__file__).resolve().parents[2] / "devkit/modelrollout_devkit/sandbox/data/breast_cancer_feature_edges.json"
STEPS = {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1h"}}]}}


def cumulative(feature: str, edges: list[float], counts: list[float]) -> tuple[Sample, ...]:
    """Prometheus-style cumulative buckets of one feature's histogram."""
    samples, total = [], 0.0
    for edge, count in zip([*edges, float("inf")], counts, strict=True):
        total += count
        le = "+Inf" if edge == float("inf") else f"{edge:g}"
        samples.append(Sample({"feature": feature, "le": le}, total))
    return tuple(samples)


def metric(name: str, **judgement: object) -> dict[str, object]:
    return {"name": name, "prometheus": {"query": f'q{{version="{{{{candidate}}}}",m="{name}"}}'}, **judgement}


def world_with(*metrics: dict[str, object], **extra: object) -> World:
    world = World(make_spec("1.0.0", strategy=STEPS, analysis={"interval": "10s", "metrics": list(metrics)}, **extra))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    return world


TRAINING_DRIFT = {
    "statistic": "psi",
    "max": 0.2,
    "groupBy": "feature",
    "reference": "training",
    "trainingReference": {"configMap": "edges"},
}


def training_reference_and_drifted_inputs() -> tuple[dict[str, Any], str, list[float], tuple[Sample, ...]]:
    """The shipped training reference, one feature of it, its edges, and live inputs all above them."""
    reference = json.loads(DATA.read_text())
    feature = "mean radius"
    edges = reference["features"][feature]["edges"]
    return reference, feature, edges, cumulative(feature, edges, [0.0] * len(edges) + [500.0])


def test_compare_with_stable_rolls_back_a_candidate_much_worse_than_stable() -> None:
    world = world_with(metric("latency-vs-stable", compare={"maxRatio": 1.2}))
    world.metric_values["latency-vs-stable"] = Observation(value=None, values={"candidate": 0.31, "stable": 0.2})
    world.run(Phase.ROLLED_BACK, seconds=5)
    assert "latency-vs-stable" in world.status.message
    assert "1.55x" in world.status.message and "1.2x" in world.status.message
    # the stable side was queried with the stable version substituted
    assert any('version="1.0.0"' in query for query in world.queries)


def test_drift_against_stable_names_the_worst_feature() -> None:
    edges = [1.0, 2.0, 3.0]
    candidate = cumulative("mean radius", edges, [10, 10, 10, 470]) + cumulative("texture", edges, [125] * 4)
    stable = cumulative("mean radius", edges, [125] * 4) + cumulative("texture", edges, [125] * 4)
    world = world_with(metric("input-drift", drift={"statistic": "psi", "max": 0.2, "groupBy": "feature"}))
    world.metric_values["input-drift"] = Observation(value=None, vectors={"candidate": candidate, "reference": stable})
    world.run(Phase.ROLLED_BACK, seconds=5)
    assert "input-drift" in world.status.message and "'mean radius'" in world.status.message
    assert "PSI" in world.status.message


def test_drift_with_mismatched_edges_pauses_with_the_metric_named() -> None:
    candidate = cumulative("mean radius", [1.0, 2.0], [100, 100, 100])
    stable = cumulative("mean radius", [1.0, 5.0], [100, 100, 100])
    world = world_with(metric("input-drift", drift={"statistic": "psi", "max": 0.2, "groupBy": "feature"}))
    world.metric_values["input-drift"] = Observation(value=None, vectors={"candidate": candidate, "reference": stable})
    world.run(Phase.PAUSED, seconds=5)
    assert world.status.pause_reason == "Inconclusive"
    assert "metric 'input-drift'" in world.status.message and "mean radius" in world.status.message


def test_too_few_samples_are_inconclusive_never_a_pass() -> None:
    world = world_with(metric("errors", threshold={"max": 0.05}, minCount=100))
    world.metric_values["errors"] = Observation(value=0.0, values={"value": 0.0, "count": 12})
    world.run(Phase.PAUSED, seconds=5)
    assert "12 samples in the window, fewer than minCount 100" in world.status.message


def test_a_built_in_template_is_resolved_and_judged() -> None:
    world = world_with({"name": "errors", "template": {"name": "error-rate", "args": {"maxRate": "0.02"}}})
    world.metric_values["errors"] = Observation(value=0.5, values={"value": 0.5, "count": 1000})
    world.run(Phase.ROLLED_BACK, seconds=5)
    assert "0.5 is not at most 0.02" in world.status.message
    assert any("model_requests_total" in query for query in world.queries)


def test_an_unknown_template_is_refused_with_its_path() -> None:
    world = World(make_spec(analysis={"metrics": [{"name": "x", "template": {"name": "no-such-template"}}]}))
    decision = world.step()
    assert decision.actions == []
    assert world.status.phase == Phase.FAILED
    assert "spec.analysis.metrics[0].template.name: unknown template 'no-such-template'" in world.status.message


def test_a_custom_template_fills_its_arguments() -> None:
    template = {
        "args": [{"name": "window", "default": "1m"}, {"name": "limit"}],
        "prometheus": {"query": 'rate(x{version="{{candidate}}"}[{{window}}])'},
        "threshold": {"max": 1.0},
    }
    spec = make_spec(
        strategy=STEPS,
        analysis={
            "interval": "10s",
            "metrics": [{"name": "custom", "template": {"name": "team-latency", "args": {"limit": "2"}}}],
        },
    )
    world = World(spec)
    world.templates = {"team-latency": template}
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    world.run(Phase.PROGRESSING)
    for _ in range(3):
        world.step(10)
    assert 'rate(x{version="2.0.0"}[1m])' in world.queries
    missing = World(spec)
    missing.templates = {"team-latency": {**template, "args": [{"name": "limit"}, {"name": "other"}]}}
    missing.step()
    assert "missing argument 'other'" in missing.status.message


def test_monitoring_after_promotion_fires_the_hook_once_per_drift_episode() -> None:
    reference, _, _, drifted = training_reference_and_drifted_inputs()
    monitoring = {"interval": "30s", "metrics": ["inputs"], "hook": {"webhook": {"url": "http://127.0.0.1:9/retrain"}}}
    drift = TRAINING_DRIFT
    world = World(
        make_spec(
            "1.0.0", analysis={"metrics": [metric("inputs", drift=drift, background=False)]}, monitoring=monitoring
        )
    )
    world.run(Phase.SUCCEEDED)
    world.metric_values["inputs"] = Observation(value=None, vectors={"candidate": drifted}, reference=reference)
    fired: list[FireHook] = []
    for _ in range(4):
        decision = world.step(31)
        fired += [action for action in decision.actions if isinstance(action, FireHook)]
    drifted_condition = world.status.condition("Drifted")
    assert drifted_condition is not None and drifted_condition.status == "True"
    assert Counter(world.reasons())["Drifted"] == 1
    assert world.status.monitoring is not None and world.status.monitoring.hook is not None
    hook = world.status.monitoring.hook
    # attempts fire at first, then back off: 10 s, 20 s, ... (all four passes were 31 s apart)
    assert len(fired) == hook.attempts >= 2
    assert {action.episode for action in fired} == {hook.episode}
    events = record_hook_result(world.status, HookResult(hook.episode, delivered=False, error="HTTP 500"))
    assert events[0][0] == "RetrainingHookFailed" and "HTTP 500" in events[0][1]
    events = record_hook_result(world.status, HookResult(hook.episode, delivered=True))
    assert events[0][0] == "RetrainingHookFired" and hook.state == "Delivered"
    for _ in range(3):
        decision = world.step(31)
        assert not any(isinstance(action, FireHook) for action in decision.actions)
    assert world.status.monitoring.drifted_since is not None


def test_one_noisy_window_is_no_drift_but_consecutive_failures_in_a_row_are() -> None:
    """A drift statistic on one window of live traffic is noisy: only failures in a row make an episode."""
    reference, feature, edges, drifted = training_reference_and_drifted_inputs()
    like_training = cumulative(feature, edges, [float(c) for c in reference["features"][feature]["reference_counts"]])
    drift = TRAINING_DRIFT

    def watched(**monitoring: object) -> World:
        world = World(
            make_spec(
                "1.0.0",
                analysis={"metrics": [metric("inputs", drift=drift, background=False)]},
                monitoring={"interval": "30s", "metrics": ["inputs"], **monitoring},
            )
        )
        world.run(Phase.SUCCEEDED)
        world.step(31)  # monitoring starts; its first measurement falls due one interval later
        return world

    def measure(world: World, vectors: tuple[Sample, ...] | None) -> str | None:
        world.metric_values["inputs"] = (
            Observation(value=None, vectors={"candidate": vectors}, reference=reference)
            if vectors is not None
            else Observation(value=None, error="Prometheus unreachable")
        )
        world.step(31)
        drifted_condition = world.status.condition("Drifted")
        return drifted_condition.status if drifted_condition is not None else None

    world = watched()
    assert [measure(world, v) for v in (like_training, drifted, like_training, drifted, like_training)] == [
        "False",
        "False",
        "False",
        "False",
        "False",
    ]
    assert "Drifted" not in world.reasons()
    measure(world, drifted)
    why = world.status.condition("Drifted")
    assert why is not None and "(1 of 2 failures in a row that count as drift)" in why.message, why
    measure(world, like_training)
    # two failures in a row (an outage between them is no measurement) start the episode
    assert [measure(world, v) for v in (drifted, None, drifted)] == ["False", "False", "True"]
    assert Counter(world.reasons())["Drifted"] == 1

    eager = watched(consecutiveFailures=1)
    assert measure(eager, drifted) == "True"


def test_hook_backoff_doubles_and_is_capped() -> None:
    assert [hook_backoff(n) for n in (1, 2, 3)] == [10.0, 20.0, 40.0]
    assert hook_backoff(30) == 600.0


def test_a_template_keeps_its_values_when_the_api_server_fills_schema_defaults() -> None:
    """The API server defaults a partial drift block (reference: stable...); the template's choice stands."""
    from modelrollout.api.validation import parse_spec

    defaulted = {
        "reference": "stable",
        "statistic": "psi",
        "shape": "histogram",
        "label": "class",
        "trainingReference": {"configMap": "edges", "key": "feature-edges.json"},
    }
    spec = make_spec(
        analysis={"metrics": [{"name": "inputs", "template": {"name": "input-drift-vs-training"}, "drift": defaulted}]}
    )
    drift = parse_spec(spec).analysis.metrics[0].drift
    assert drift is not None and drift.reference == "training" and drift.group_by == "feature"
    assert drift.training_reference is not None and drift.training_reference.config_map == "edges"


def test_a_pipeline_metric_judges_the_upstream_candidate_on_the_downstream_models_inputs() -> None:
    """The VAD's rollout is judged on the ASR's input-size histogram: now against an hour ago."""
    query = 'sum by (le) (increase(model_input_size_bucket{rollout="asr",namespace="{{namespace}}"}[5m]))'
    reference = query.replace("[5m]))", "[5m] offset 1h))")
    pipeline = {
        "name": "asr-input-length",
        "prometheus": {"query": query, "stableQuery": reference},
        "drift": {"statistic": "psi", "max": 0.2},
        "minCount": 100,
    }
    world = world_with(pipeline)
    edges = [1.0, 2.0, 4.0]
    shorter = tuple(Sample({"le": s.labels["le"]}, s.value) for s in cumulative("x", edges, [400, 50, 30, 20]))
    before = tuple(Sample({"le": s.labels["le"]}, s.value) for s in cumulative("x", edges, [125, 125, 125, 125]))
    world.metric_values["asr-input-length"] = Observation(
        value=None, vectors={"candidate": shorter, "reference": before}
    )
    world.run(Phase.ROLLED_BACK, seconds=5)
    assert "asr-input-length" in world.status.message and "PSI" in world.status.message
    assert 'rollout="asr",namespace="ml"' in " ".join(world.queries)
    assert any("offset 1h" in q for q in world.queries)
