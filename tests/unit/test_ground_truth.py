"""Accuracy metrics: the statistics, the judgement, waiting for labels, and ConceptDrift, pass by pass."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from modelrollout.analysis.accuracy import Side, drop_p_value, judge_accuracy, wilson_interval
from modelrollout.analysis.evaluate import Observation
from modelrollout.api.models import Metric, Phase, Verdict
from modelrollout.engine.types import FireHook

from .world import World, make_spec

AT = "2026-01-01T00:00:00Z"
STEPS = {"canary": {"steps": [{"setWeight": 50}, {"analysis": {"metrics": ["acc"], "count": 2, "interval": "10s"}}]}}


def accuracy_metric(**accuracy: object) -> Metric:
    return Metric.model_validate({"name": "acc", "accuracy": {"minLabelled": 50, **accuracy}})


def seen(hits: float, n: float, stable: tuple[float, float] | None = None) -> Observation:
    values: dict[str, float | None] = {"candidate": hits, "count": n}
    if stable is not None:
        values |= {"stable": stable[0], "stableCount": stable[1]}
    return Observation(value=None, values=values)


# --- the statistics --------------------------------------------------------------------------------------


def test_wilson_interval_matches_its_closed_form_and_covers_as_it_should() -> None:
    z = float(stats.norm.ppf(0.975))
    low, high = wilson_interval(81, 100, z)
    # Wilson (1927): the roots in p of (p_hat - p)^2 = z^2 p (1 - p) / n.
    roots = np.roots([1 + z * z / 100, -(2 * 0.81 + z * z / 100), 0.81**2])
    assert sorted(roots) == pytest.approx([low, high], abs=1e-9)
    rng = np.random.default_rng(3)
    hits = rng.binomial(200, 0.9, size=4000)
    covered = [lo <= 0.9 <= hi for lo, hi in (wilson_interval(k, 200, z) for k in hits)]
    assert 0.93 < float(np.mean(covered)) < 0.97


def test_drop_test_is_the_one_sided_z_test_and_holds_its_level() -> None:
    c, r = Side(80, 100), Side(90, 100)
    pc, pr = 81 / 102, 91 / 102
    z = ((pr - pc) - 0.02) / math.sqrt(pc * (1 - pc) / 102 + pr * (1 - pr) / 102)
    assert drop_p_value(c, r, 0.02) == pytest.approx(float(stats.norm.sf(z)))
    # Null true at its edge (a drop of exactly maxDrop): rejected at most about 5 % of the time.
    rng = np.random.default_rng(7)
    rejected = [
        drop_p_value(Side(kc, 400), Side(kr, 400), 0.05) < 0.05
        for kc, kr in zip(rng.binomial(400, 0.85, 3000), rng.binomial(400, 0.90, 3000), strict=True)
    ]
    assert float(np.mean(rejected)) < 0.07


# --- the judgement ---------------------------------------------------------------------------------------


def test_accuracy_against_a_bound_is_three_way() -> None:
    metric = accuracy_metric(min=0.9)
    assert judge_accuracy(metric, seen(460, 500), AT).phase == Verdict.SUCCESSFUL
    failed = judge_accuracy(metric, seen(310, 500), AT)
    assert failed.phase == Verdict.FAILED and failed.value == pytest.approx(0.62)
    assert "accuracy 0.620 (310 of 500) is below 0.9 beyond sampling noise" in failed.message
    noisy = judge_accuracy(metric, seen(88, 100), AT)
    assert noisy.phase == Verdict.INCONCLUSIVE and "less than sampling noise" in noisy.message


def test_accuracy_against_stable_fails_only_on_a_significant_drop() -> None:
    metric = accuracy_metric(maxDrop=0.05)
    assert judge_accuracy(metric, seen(455, 500, (470, 500)), AT).phase == Verdict.SUCCESSFUL
    failed = judge_accuracy(metric, seen(300, 500, (470, 500)), AT)
    assert failed.phase == Verdict.FAILED and "below stable's 0.940" in failed.message and "z-test" in failed.message
    assert judge_accuracy(metric, seen(52, 60, (57, 60)), AT).phase == Verdict.INCONCLUSIVE


def test_too_few_labels_on_either_side_is_never_a_verdict() -> None:
    metric = accuracy_metric(maxDrop=0.05)
    short = judge_accuracy(metric, seen(10, 10, (470, 500)), AT)
    assert short.phase == Verdict.INCONCLUSIVE and "fewer than minLabelled 50" in short.message
    assert "of the model" in short.message
    assert "of the reference" in judge_accuracy(metric, seen(470, 500, (1, 1)), AT).message
    assert judge_accuracy(metric, seen(None, None), AT).phase == Verdict.INCONCLUSIVE  # type: ignore[arg-type]


def test_recall_and_error() -> None:
    recall = accuracy_metric(statistic="recall", **{"class": "malignant"}, min=0.9)
    assert "recall of 'malignant' 0.500" in judge_accuracy(recall, seen(50, 100), AT).message
    error = accuracy_metric(statistic="error", max=2.0, maxDrop=0.5)
    worse = judge_accuracy(error, seen(300.0, 100, (150.0, 100)), AT)
    assert worse.phase == Verdict.FAILED and worse.value == pytest.approx(3.0)
    assert "above 2" in worse.message and "+1.5" in worse.message


@pytest.mark.parametrize(
    ("accuracy", "says"),
    [
        ({}, "set min (accuracy, recall), max (error) or maxDrop"),
        ({"statistic": "recall", "min": 0.5}, "recall needs class"),
        ({"statistic": "error", "min": 0.5}, "error is judged by max"),
        ({"max": 0.5}, "accuracy is judged by min"),
        ({"min": 0.5, "labelWait": "200h"}, "labelWait 200h is longer than 7d"),
        ({"min": 0.5, "window": "0s"}, "window must be longer than 0s"),
        ({"min": 0.5, "maxDrop": 2}, "maxDrop of accuracy is a share"),
    ],
)
def test_bad_accuracy_settings_say_what_is_wrong(accuracy: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        Metric.model_validate({"name": "acc", "accuracy": accuracy})


def test_an_accuracy_metric_takes_no_other_query_or_judgement() -> None:
    with pytest.raises(ValidationError, match="takes no prometheus, threshold"):
        Metric.model_validate(
            {"name": "acc", "accuracy": {"min": 0.9}, "prometheus": {"query": "q"}, "threshold": {"min": 1}}
        )


# --- in the engine ---------------------------------------------------------------------------------------


def gated(**accuracy: object) -> World:
    metric = {"name": "acc", "background": False, "accuracy": {"minLabelled": 50, "maxDrop": 0.05, **accuracy}}
    world = World(make_spec("1.0.0", strategy=STEPS, analysis={"interval": "10s", "metrics": [metric]}))
    world.run(Phase.SUCCEEDED)
    world.change_spec(model={"name": "fraud-scorer", "version": "2.0.0"})
    return world


def test_the_queries_are_built_from_the_feedback_series_for_both_versions() -> None:
    world = gated()
    world.metric_values["acc"] = seen(470, 500, (470, 500))
    world.run(Phase.SUCCEEDED, seconds=10)
    assert any(
        'model_feedback_total{rollout="fraud-scorer",namespace="ml",version="2.0.0",outcome="correct"}[5m]' in q
        for q in world.queries
    ), world.queries
    assert any(
        q == 'sum(increase(model_feedback_total{rollout="fraud-scorer",namespace="ml",version="1.0.0"}[5m]))'
        for q in world.queries
    )


def test_a_less_accurate_candidate_is_rolled_back_by_the_step() -> None:
    world = gated()
    world.metric_values["acc"] = seen(300, 500, (470, 500))
    world.run(Phase.ROLLED_BACK, seconds=10)
    assert "acc" in world.status.message and "below stable's" in world.status.message


def test_a_step_waits_for_labels_then_is_inconclusive_after_label_wait() -> None:
    world = gated(labelDelay="30s", labelWait="60s")
    world.metric_values["acc"] = seen(5, 5, (5, 5))
    for _ in range(8):  # 80 s: labelDelay, then labelWait not yet over
        world.step(10)
    assert world.status.phase == Phase.PROGRESSING
    analysis = world.status.step_analysis
    assert analysis is not None and analysis.metrics[0].count == 0  # waited: nothing was measured
    world.run(Phase.PAUSED, seconds=10)
    assert world.status.pause_reason == "Inconclusive"
    assert "fewer than minLabelled 50" in world.status.message


def test_no_measurement_before_label_delay_even_with_labels() -> None:
    world = gated(labelDelay="1h")
    world.metric_values["acc"] = seen(300, 500, (470, 500))
    for _ in range(6):
        world.step(10)
    assert world.status.phase == Phase.PROGRESSING


def watched(consecutive: int = 2) -> World:
    metric = {"name": "acc", "background": False, "accuracy": {"minLabelled": 50, "maxDrop": 0.05}}
    world = World(
        make_spec(
            "1.0.0",
            analysis={"metrics": [metric]},
            monitoring={
                "interval": "30s",
                "metrics": ["acc"],
                "consecutiveFailures": consecutive,
                "hook": {"webhook": {"url": "http://127.0.0.1:9/retrain"}},
            },
        )
    )
    world.run(Phase.SUCCEEDED)
    return world


def test_concept_drift_against_the_baseline_after_promotion_fires_the_hook_once() -> None:
    world = watched()
    world.metric_values["acc"] = seen(20, 20)  # too few labels: no baseline yet
    world.step(31)
    assert world.status.monitoring is not None and world.status.monitoring.accuracy_baselines == []
    world.metric_values["acc"] = seen(475, 500)
    world.step(31)
    baseline = world.status.monitoring.baseline("acc")
    assert baseline is not None and baseline.value == pytest.approx(0.95)
    assert "AccuracyBaseline" in world.reasons()
    condition = world.status.condition("ConceptDrift")
    assert condition is not None and condition.status == "False"
    # Within maxDrop of the baseline: no drift.
    world.metric_values["acc"] = seen(460, 500)
    world.step(31)
    assert world.status.condition("ConceptDrift").status == "False"  # type: ignore[union-attr]
    # The world changes: accuracy drops, twice in a row.
    world.metric_values["acc"] = seen(320, 500)
    fired: list[FireHook] = []
    for _ in range(4):
        fired += [a for a in world.step(31).actions if isinstance(a, FireHook)]
    condition = world.status.condition("ConceptDrift")
    assert condition is not None and condition.status == "True" and "baseline after promotion" in condition.message
    drifted = world.status.condition("Drifted")
    assert drifted is not None and drifted.status == "False"  # inputs and outputs did not drift
    assert Counter(world.reasons())["ConceptDrift"] == 1
    assert "Drifted" not in world.reasons()
    assert fired and {a.kind for a in fired} == {"ConceptDrift"}
    assert {a.episode for a in fired} == {world.status.monitoring.concept_drifted_since}
    # Accuracy comes back: the episode ends.
    world.metric_values["acc"] = seen(470, 500)
    world.step(31)
    assert world.status.condition("ConceptDrift").status == "False"  # type: ignore[union-attr]
    assert "ConceptDriftCleared" in world.reasons()


def test_no_label_is_in_status_or_events() -> None:
    world = watched(consecutive=1)
    world.metric_values["acc"] = seen(475, 500)
    world.step(31)
    world.metric_values["acc"] = seen(300, 500)
    world.step(31)
    text = world.status.model_dump_json() + " ".join(world.reasons())
    assert "malignant" not in text and "benign" not in text
