"""Per-feature verdicts, the worst feature, the minimum sample size, and bad input."""

from __future__ import annotations

import math

import pytest

from modelrollout.analysis.drift import (
    DriftCriteria,
    Statistic,
    categorical_drift,
    feature_drift,
    histogram_drift,
    psi,
)
from modelrollout.analysis.histograms import EdgeMismatchError, Histogram
from modelrollout.api.models import Verdict

EDGES = (1.0, 2.0, 3.0)
PSI_02 = DriftCriteria(Statistic.PSI, max=0.2)


def hist(*counts: float) -> Histogram:
    return Histogram(EDGES, tuple(float(c) for c in counts))


def test_the_worst_feature_is_named_with_both_sample_sizes() -> None:
    reference = {"mean radius": hist(2386, 2386, 2386, 2386), "mean texture": hist(2386, 2386, 2386, 2386)}
    candidate = {"mean radius": hist(500, 200, 100, 12), "mean texture": hist(200, 210, 200, 202)}
    result = histogram_drift(candidate, reference, PSI_02)
    expected = psi([500, 200, 100, 12], [2386] * 4)
    assert result.verdict == Verdict.FAILED
    assert result.worst is not None and result.worst.feature == "mean radius"
    assert result.value == pytest.approx(expected)
    significance = result.worst.significance
    assert significance is not None and significance.family == 2
    assert result.message == (
        f"input drift: worst feature 'mean radius' PSI {expected:.3g} > 0.2, beyond sampling noise: "
        f"chi-square p={significance.pvalue:.3g}, Holm-adjusted {significance.adjusted:.3g} over 2 features "
        "< 0.005 (candidate n=812, reference n=9,544); 1 of 2 features drifted"
    )
    assert result.feature("mean texture").verdict == Verdict.SUCCESSFUL
    measurement = result.measurement("2025-01-01T00:00:00Z")
    assert measurement.phase == Verdict.FAILED
    assert measurement.value == result.value
    assert measurement.message == result.message


def test_all_within_limits_names_the_closest_feature() -> None:
    reference = {"a": hist(100, 100, 100, 100), "b": hist(100, 100, 100, 100)}
    candidate = {"a": hist(100, 100, 100, 101), "b": hist(90, 110, 100, 100)}
    result = histogram_drift(candidate, reference, PSI_02)
    assert result.verdict == Verdict.SUCCESSFUL
    assert result.worst is not None and result.worst.feature == "b"
    assert result.message.startswith("input drift: worst feature 'b' PSI ")
    assert result.message.endswith("; all 2 features within limits")


@pytest.mark.parametrize("statistic", list(Statistic))
def test_below_the_minimum_sample_size_is_inconclusive_never_a_pass(statistic: Statistic) -> None:
    criteria = (
        DriftCriteria(statistic, max=0.5, min_count=100)
        if not statistic.has_pvalue
        else DriftCriteria(statistic, min_pvalue=0.01, min_count=100)
    )
    # Identical shapes: with enough data this would pass.
    result = feature_drift("f", [10, 20, 30, 39], [100, 200, 300, 400], criteria)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.value is None
    assert result.message == "'f': candidate n=99 is below the minimum sample size 100"
    both = feature_drift("f", [1, 1], [2, 2], criteria)
    assert both.message == "'f': candidate n=2 and reference n=4 are below the minimum sample size 100"


def test_an_empty_side_is_inconclusive_even_with_min_count_zero() -> None:
    criteria = DriftCriteria(Statistic.PSI, max=0.2, min_count=0)
    assert feature_drift("f", [0, 0], [5, 5], criteria).verdict == Verdict.INCONCLUSIVE


def test_inconclusive_features_make_the_whole_inconclusive_unless_one_failed() -> None:
    reference = {"a": hist(100, 100, 100, 100), "b": hist(100, 100, 100, 100)}
    small = {"a": hist(100, 100, 100, 100), "b": hist(1, 1, 1, 1)}
    result = histogram_drift(small, reference, PSI_02)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.value is None
    assert result.message.startswith("input drift: 1 of 2 features below the minimum sample size 100: 'b'")
    drifted = {"a": hist(400, 0, 0, 0), "b": hist(1, 1, 1, 1)}
    failed = histogram_drift(drifted, reference, PSI_02)
    assert failed.verdict == Verdict.FAILED
    assert failed.message.endswith("; 1 of 2 features drifted; 1 inconclusive")


def test_no_feature_on_both_sides_is_inconclusive() -> None:
    result = histogram_drift({}, {"a": hist(1, 2, 3, 4)}, PSI_02)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.message == "input drift: no feature has data on both sides"
    assert result.notes == ("not compared, no candidate series: 'a'",)


def test_features_on_one_side_only_are_skipped_with_a_note_unless_named() -> None:
    reference = {"a": hist(100, 100, 100, 100), "old": hist(100, 100, 100, 100)}
    candidate = {"a": hist(100, 100, 100, 100), "new": hist(100, 100, 100, 100)}
    result = histogram_drift(candidate, reference, PSI_02)
    assert result.verdict == Verdict.SUCCESSFUL
    assert [f.feature for f in result.features] == ["a"]
    assert result.notes == ("not compared, no reference series: 'new'", "not compared, no candidate series: 'old'")
    named = histogram_drift(candidate, reference, PSI_02, features=["a", "old"])
    assert named.verdict == Verdict.INCONCLUSIVE
    assert "'old': candidate n=0" in named.feature("old").message


def test_mismatched_edges_raise_naming_the_feature() -> None:
    with pytest.raises(EdgeMismatchError, match="'a'"):
        histogram_drift({"a": Histogram((1.0, 2.5), (1.0, 1.0, 1.0))}, {"a": hist(1, 1, 1, 1)}, PSI_02)


def test_conversion_notes_are_carried_to_the_feature() -> None:
    noted = Histogram(EDGES, (100.0, 100.0, 100.0, 0.0), ("no +Inf bucket",))
    result = histogram_drift({"a": noted}, {"a": hist(100, 100, 100, 1)}, PSI_02)
    assert result.feature("a").notes == ("no +Inf bucket",)


def test_ks_judged_on_the_pvalue() -> None:
    criteria = DriftCriteria(Statistic.KS, min_pvalue=0.05)
    result = histogram_drift({"a": hist(300, 100, 50, 50)}, {"a": hist(100, 100, 150, 150)}, criteria)
    assert result.verdict == Verdict.FAILED
    assert result.worst is not None
    assert result.value == result.worst.pvalue
    assert result.message.startswith("input drift: 'a' KS p=")
    assert "statistic 0.4" in result.message


def test_ks_with_both_limits_fails_only_a_significant_shift_larger_than_max() -> None:
    # D = 0.4 with p ~ 1e-17: significant, but smaller than a max of 0.5, so it does not matter.
    small = feature_drift("a", [300, 100, 50, 50], [100, 100, 150, 150], DriftCriteria(Statistic.KS, 0.5, 0.05))
    assert small.verdict == Verdict.SUCCESSFUL
    assert small.message.startswith("'a' KS statistic 0.4 <= 0.5 (p=")
    large = feature_drift("a", [300, 100, 50, 50], [100, 100, 150, 150], DriftCriteria(Statistic.KS, 0.3, 0.05))
    assert large.verdict == Verdict.FAILED
    assert large.message.startswith("'a' KS statistic 0.4 > 0.3 and KS p=")
    # Larger than max but within noise: 40 observations a side cannot tell D = 0.2 from chance.
    noisy = feature_drift("a", [12, 10, 10, 8], [8, 10, 10, 12], DriftCriteria(Statistic.KS, 0.05, 0.05, min_count=0))
    assert noisy.verdict == Verdict.SUCCESSFUL
    assert " but KS p=" in noisy.message and ">= 0.05" in noisy.message


def test_output_drift_on_predicted_classes_with_chi_square() -> None:
    criteria = DriftCriteria(Statistic.CHI_SQUARE, min_pvalue=0.01)
    stable = {"class": {"benign": 6000.0, "malignant": 3500.0}}
    same = categorical_drift({"class": {"benign": 600.0, "malignant": 350.0}}, stable, criteria)
    assert same.verdict == Verdict.SUCCESSFUL
    assert same.message.startswith("output drift: 'class' chi-square p=")
    assert "dof 1" in same.message
    changed = categorical_drift({"class": {"benign": 300.0, "malignant": 650.0, "__other__": 5.0}}, stable, criteria)
    assert changed.verdict == Verdict.FAILED
    assert changed.value is not None and changed.value < 0.01
    # '__other__' expects 0.46 on the candidate's side: too few for the chi-square law, so it is pooled.
    assert "dof 1, 3 categories pooled into 2" in changed.message
    spread = categorical_drift({"class": {"benign": 300.0, "malignant": 600.0, "__other__": 100.0}}, stable, criteria)
    assert "dof 2" in spread.message and "pooled" not in spread.message


def test_categorical_drift_refuses_ks() -> None:
    with pytest.raises(ValueError, match="ordered bins"):
        categorical_drift({}, {}, DriftCriteria(Statistic.KS, max=0.1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"statistic": Statistic.PSI}, "set max, minPValue"),
        ({"statistic": Statistic.PSI, "min_pvalue": 0.05}, "applies to ks and chiSquare"),
        ({"statistic": Statistic.KS, "max": -1.0}, ">= 0"),
        ({"statistic": Statistic.KS, "min_pvalue": 2.0}, "between 0 and 1"),
        ({"statistic": Statistic.PSI, "max": 0.2, "min_count": math.nan}, "minCount"),
        ({"statistic": Statistic.PSI, "max": 0.2, "epsilon": 0.0}, "epsilon"),
    ],
)
def test_criteria_are_validated(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DriftCriteria(**kwargs)  # type: ignore[arg-type]


def test_single_bucket_and_huge_counts_judge_cleanly() -> None:
    single = feature_drift("f", [812], [9544], PSI_02)
    assert single.verdict == Verdict.SUCCESSFUL and single.value == 0.0
    huge = feature_drift("f", [3e12, 1e12, 2e12], [2.9e12, 1.1e12, 2e12], PSI_02)
    assert huge.verdict == Verdict.SUCCESSFUL
    assert "candidate n=6,000,000,000,000" in huge.message
