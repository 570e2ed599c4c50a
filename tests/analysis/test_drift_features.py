"""Drift per feature in status: the worst features first, bounded by drift.topFeatures, names and numbers only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelrollout.analysis.drift import DriftCriteria, Statistic, histogram_drift
from modelrollout.analysis.evaluate import FEATURES_BUDGET, Limits, features_kept, record
from modelrollout.analysis.evaluate import Observation as Observed
from modelrollout.analysis.histograms import Histogram
from modelrollout.analysis.judgement import judge_metric
from modelrollout.api.models import MAX_TOP_FEATURES, TOP_FEATURES, Drift, Measurement, Metric, MetricResult, Verdict
from modelrollout.vocabulary.samples import Sample

EDGES = (1.0, 2.0, 3.0)
PSI_02 = DriftCriteria(Statistic.PSI, max=0.2)
AT = "2026-12-02T12:00:00Z"
LIMITS = Limits(failure=0, inconclusive=0, consecutive_error=4)


def hist(*counts: float) -> Histogram:
    return Histogram(EDGES, tuple(float(c) for c in counts))


def fleet(
    features: int, drifted: set[int], few: frozenset[int] = frozenset()
) -> tuple[dict[str, Histogram], dict[str, Histogram]]:
    """`features` features; those in `drifted` shifted far (more for a higher index), `few` with 20 observations."""
    reference = {f"f{index:02d}": hist(500, 500, 500, 500) for index in range(features)}
    candidate: dict[str, Histogram] = {}
    for index in range(features):
        name = f"f{index:02d}"
        if index in few:
            candidate[name] = hist(5, 5, 5, 5)
        elif index in drifted:
            candidate[name] = hist(500 + 40 * index, 500, 500, 100)
        else:
            candidate[name] = hist(500 + index, 500, 500, 500 - index)
    return candidate, reference


def test_the_features_are_ranked_worst_first_the_drifted_ones_leading() -> None:
    candidate, reference = fleet(12, drifted={3, 7}, few=frozenset({11}))
    result = histogram_drift(candidate, reference, PSI_02)
    assert result.verdict == Verdict.FAILED
    shown = result.by_feature(AT, top=5)
    assert (shown.compared, shown.drifted, shown.inconclusive) == (12, 2, 1)
    assert shown.statistic == "psi" and shown.max == 0.2 and shown.p_value_level == pytest.approx(0.005)
    assert len(shown.features) == 5
    first, second, *rest = shown.features
    # The worst leads, and it is the one the measurement's message names.
    assert result.worst is not None and first.name == result.worst.feature == "f07"
    assert (first.drifted, second.name, second.drifted) == (True, "f03", True)
    assert not any(feature.drifted for feature in rest)
    assert first.value is not None and first.value > 0.2
    assert first.p_value is not None and first.p_value < 0.005
    # Those not drifted follow, closest to failing first (they are each a little further off with the index).
    assert [feature.name for feature in rest] == ["f10", "f09", "f08"]
    # All of them, with too few observations last and no statistic.
    everything = result.by_feature(AT, top=50).features
    assert len(everything) == 12 and everything[-1].name == "f11"
    assert everything[-1].value is None and everything[-1].p_value is None and not everything[-1].drifted


def test_top_zero_keeps_the_counts_and_no_feature() -> None:
    candidate, reference = fleet(4, drifted={1})
    shown = histogram_drift(candidate, reference, PSI_02).by_feature(AT, top=0)
    assert (shown.compared, shown.drifted, shown.features) == (4, 1, [])


def test_status_holds_names_and_numbers_only() -> None:
    candidate, reference = fleet(3, drifted={2})
    wire = histogram_drift(candidate, reference, PSI_02).by_feature(AT).wire()
    assert set(wire) == {"at", "statistic", "max", "pValueLevel", "compared", "drifted", "inconclusive", "features"}
    for feature in wire["features"]:
        assert set(feature) <= {"name", "value", "pValue", "drifted"}


def test_top_features_is_bounded_in_the_schema() -> None:
    assert Drift(max=0.2).top_features == TOP_FEATURES == 10
    assert Drift(max=0.2, top_features=0).top_features == 0
    for wrong in (-1, MAX_TOP_FEATURES + 1):
        with pytest.raises(ValidationError, match=r"top_?[fF]eatures"):
            Drift.model_validate({"max": 0.2, "topFeatures": wrong})


def cumulative(feature: str, counts: list[float]) -> tuple[Sample, ...]:
    samples, total = [], 0.0
    for edge, count in zip([*EDGES, float("inf")], counts, strict=True):
        total += count
        samples.append(Sample({"feature": feature, "le": "+Inf" if edge == float("inf") else f"{edge:g}"}, total))
    return tuple(samples)


def drift_metric(top: int | None = None) -> Metric:
    drift: dict[str, object] = {"statistic": "psi", "max": 0.2, "groupBy": "feature"}
    if top is not None:
        drift["topFeatures"] = top
    return Metric.model_validate({"name": "input-drift", "prometheus": {"query": "q"}, "drift": drift})


def observed(features: int, shifted: int) -> Observed:
    candidate: tuple[Sample, ...] = ()
    reference: tuple[Sample, ...] = ()
    for index in range(features):
        counts = [900.0, 500.0, 500.0, 100.0] if index == shifted else [500.0, 500.0, 500.0, 500.0]
        candidate += cumulative(f"feature-{index}", counts)
        reference += cumulative(f"feature-{index}", [500.0] * 4)
    return Observed(value=None, vectors={"candidate": candidate, "reference": reference})


def test_judging_a_drift_metric_carries_its_top_features_to_the_metrics_status() -> None:
    measurement = judge_metric(drift_metric(top=3), observed(8, shifted=5), AT)
    assert measurement.phase == Verdict.FAILED and "'feature-5'" in measurement.message
    assert measurement.features is not None and len(measurement.features.features) == 3
    assert "features" not in measurement.wire()  # never once per measurement
    tally = record(MetricResult(name="input-drift"), measurement, LIMITS, None)
    assert tally.drift is not None and tally.drift.compared == 8 and tally.drift.drifted == 1
    assert [feature.name for feature in tally.drift.features][:1] == ["feature-5"]
    assert tally.wire()["drift"]["features"][0] == {
        "name": "feature-5",
        "value": pytest.approx(tally.drift.features[0].value),
        "pValue": pytest.approx(tally.drift.features[0].p_value),
        "drifted": True,
    }


def test_the_default_shows_ten_and_the_budget_bounds_an_analysis_of_many_metrics() -> None:
    measurement = judge_metric(drift_metric(), observed(14, shifted=0), AT)
    assert measurement.features is not None and len(measurement.features.features) == 10
    tally = record(MetricResult(name="input-drift"), measurement, LIMITS, None, features_keep=features_kept(200))
    assert tally.drift is not None and len(tally.drift.features) == FEATURES_BUDGET // 200
    assert tally.drift.compared == 14  # the counts still cover every feature
    assert features_kept(1) == FEATURES_BUDGET and features_kept(10_000) == 1


def test_a_measurement_without_features_keeps_the_last_ones() -> None:
    first = record(MetricResult(name="input-drift"), judge_metric(drift_metric(), observed(3, 1), AT), LIMITS, None)
    error = Measurement(phase=Verdict.ERROR, at="2026-12-02T12:00:30Z", message="Prometheus unreachable")
    second = record(first, error, LIMITS, None)
    assert second.drift == first.drift and second.drift is not None and second.drift.at == AT
    later = judge_metric(drift_metric(), observed(3, 2), "2026-12-02T12:01:00Z")
    third = record(second, later, LIMITS, None)
    assert third.drift is not None and third.drift.at == "2026-12-02T12:01:00Z"
    assert third.drift.features[0].name == "feature-2"


def test_a_built_in_template_keeps_the_rollouts_top_features() -> None:
    from modelrollout.api.validation import parse_spec
    from tests.unit.world import make_spec

    metrics = [
        {"name": "input-drift", "template": {"name": "input-drift"}, "drift": {"topFeatures": 15}},
        {"name": "defaulted", "template": {"name": "input-drift"}},
    ]
    spec = parse_spec(make_spec(analysis={"metrics": metrics}))
    assert [metric.drift.top_features for metric in spec.analysis.metrics if metric.drift] == [15, TOP_FEATURES]


def test_features_whose_corrected_p_values_tie_at_one_are_ranked_by_their_statistic() -> None:
    # Thirty features a little off: Holm's correction clips their adjusted p-values at 1, so their
    # severities tie; the larger statistic is the closer to its limit, and the message names it.
    reference = {f"f{index:02d}": hist(500, 500, 500, 500) for index in range(30)}
    wobble = [(index * 7) % 30 for index in range(30)]
    candidate = {f"f{index:02d}": hist(500 + w, 500, 500, 500 - w) for index, w in enumerate(wobble)}
    result = histogram_drift(candidate, reference, PSI_02)
    assert result.verdict == Verdict.SUCCESSFUL
    shown = result.by_feature(AT, top=30).features
    assert all(feature.p_value == 1.0 for feature in shown)
    values = [feature.value for feature in shown]
    assert values == sorted(values, reverse=True)  # type: ignore[type-var]
    assert result.worst is not None and result.worst.feature == shown[0].name
    assert result.message.startswith(f"input drift: worst feature {shown[0].name!r} ")
